//! A multi-host test bed on one machine: each host is a network namespace
//! the test creates, wired by a veth pair to a bridge in a "switch"
//! namespace of its own (addresses 10.199.0.N/24, reachable only inside the
//! bed), with packet loss and partitions made by iptables inside the hosts.
//! Delay comes from [`crate::netem::DelayProxy`] run inside a host (this
//! machine's kernel has no `netem` qdisc).
//!
//! Making namespaces needs root (CI runs as root); [`NetBed::new`] says why
//! it cannot, and the tests print that and skip. Dropping the bed deletes
//! its namespaces (the processes started in them must be gone first: keep
//! the bed declared before them).

use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use nix::sched::{setns, CloneFlags};

/// One host of the bed: a network namespace with one interface, `eth0`.
#[derive(Clone)]
pub struct Host {
    /// The name the test gave it.
    pub name: String,
    /// Its address on the bed's network.
    pub addr: String,
    ns: String,
}

/// Namespaces standing for hosts on one switched network.
pub struct NetBed {
    switch: String,
    hosts: Vec<Host>,
}

/// Beds made by this process, to name their namespaces apart.
static BEDS: AtomicU32 = AtomicU32::new(0);

impl NetBed {
    /// A bed of hosts named `names` (10.199.0.1, .2, ... in that order), or
    /// why it cannot be made here.
    pub fn new(names: &[&str]) -> Result<NetBed, String> {
        if !nix::unistd::Uid::effective().is_root() {
            return Err("network namespaces need root".into());
        }
        let tag = format!("emqt{}x{}", std::process::id(), BEDS.fetch_add(1, Ordering::Relaxed));
        let switch = format!("{tag}sw");
        let mut bed = NetBed {
            switch: switch.clone(),
            hosts: Vec::new(),
        };
        ip(&["netns", "add", &switch])?;
        ip(&["-n", &switch, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &switch, "link", "set", "br0", "up"])?;
        for (i, name) in names.iter().enumerate() {
            let ns = format!("{tag}h{i}");
            ip(&["netns", "add", &ns])?;
            let host = Host {
                name: name.to_string(),
                addr: format!("10.199.0.{}", i + 1),
                ns: ns.clone(),
            };
            bed.hosts.push(host);
            let port = format!("p{i}");
            ip(&[
                "-n", &switch, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ])?;
            ip(&["-n", &switch, "link", "set", &port, "master", "br0", "up"])?;
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("10.199.0.{}/24", i + 1),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        // A first iptables call tells whether netfilter works here at all.
        bed.hosts[0].iptables(&["-L", "INPUT", "-n"])?;
        Ok(bed)
    }

    /// The host named `name`.
    pub fn host(&self, name: &str) -> &Host {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .unwrap_or_else(|| panic!("no host {name} in the bed"))
    }

    /// Drop `percent` of the packets every host receives from the network.
    pub fn lose(&self, percent: f64) {
        for h in &self.hosts {
            let p = format!("{:.4}", percent / 100.0);
            h.iptables(&[
                "-A",
                "INPUT",
                "-i",
                "eth0",
                "-m",
                "statistic",
                "--mode",
                "random",
                "--probability",
                &p,
                "-j",
                "DROP",
            ])
            .expect("add a loss rule");
        }
    }

    /// Cut `host` off from every other host (nothing passes either way;
    /// connections stay open, as when a cable is pulled) until [`NetBed::heal`].
    pub fn cut(&self, host: &str) {
        self.partition(host, "-I");
    }

    /// Undo [`NetBed::cut`].
    pub fn heal(&self, host: &str) {
        self.partition(host, "-D");
    }

    /// Insert (`-I`) or delete (`-D`) the rules that drop what `host`
    /// receives, and what the others receive from it.
    fn partition(&self, host: &str, op: &str) {
        let h = self.host(host);
        h.iptables(&[op, "INPUT", "-i", "eth0", "-j", "DROP"])
            .expect("change the host's partition rule");
        for other in self.hosts.iter().filter(|o| o.name != host) {
            other
                .iptables(&[op, "INPUT", "-i", "eth0", "-s", &h.addr, "-j", "DROP"])
                .expect("change the host's partition rule");
        }
    }
}

impl Drop for NetBed {
    fn drop(&mut self) {
        for h in &self.hosts {
            let _ = ip(&["netns", "del", &h.ns]);
        }
        let _ = ip(&["netns", "del", &self.switch]);
    }
}

impl Host {
    /// `program`, to be started inside this host.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let ns = self.ns_file();
        let mut cmd = Command::new(program);
        // SAFETY: between fork and exec the child only calls setns(2), which
        // is async-signal-safe, on a descriptor opened before the fork.
        unsafe {
            cmd.pre_exec(move || {
                setns(ns.as_fd(), CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)?;
                Ok(())
            });
        }
        cmd
    }

    /// Run `f` on this thread inside this host (sockets it makes, and the
    /// threads it starts, such as a ZeroMQ context's, stay there), then
    /// return the thread to where it was.
    pub fn within<T>(&self, f: impl FnOnce() -> T) -> T {
        let home = File::open("/proc/thread-self/ns/net").expect("this thread's namespace");
        setns(self.ns_file().as_fd(), CloneFlags::CLONE_NEWNET).expect("enter the host's namespace");
        let out = f();
        setns(home.as_fd(), CloneFlags::CLONE_NEWNET).expect("leave the host's namespace");
        out
    }

    fn ns_file(&self) -> File {
        File::open(format!("/run/netns/{}", self.ns)).expect("the host's namespace file")
    }

    /// Run iptables inside this host.
    fn iptables(&self, args: &[&str]) -> Result<(), String> {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns, "iptables", "-w"]).args(args);
        run(cmd)
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    let mut cmd = Command::new("ip");
    cmd.args(args);
    run(cmd)
}

fn run(mut cmd: Command) -> Result<(), String> {
    let out = cmd.stdin(Stdio::null()).output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr).trim()))
    }
}
