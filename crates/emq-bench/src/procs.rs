//! Starting and measuring the processes under test.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use anyhow::Context;

fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let path = exe.parent().context("exe dir")?.join(name);
    anyhow::ensure!(
        path.exists(),
        "{} not built (cargo build --release --workspace)",
        path.display()
    );
    Ok(path)
}

fn next_id() -> usize {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// A loopback TCP endpoint on a port that was free a moment ago.
pub(crate) fn free_endpoint() -> anyhow::Result<String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(format!("tcp://127.0.0.1:{}", l.local_addr()?.port()))
}

/// A child process, killed and reaped on drop.
pub(crate) struct Spawned {
    child: Child,
    journal: Option<PathBuf>,
    pub frontend: String,
    pub backend: String,
    pub admin: String,
    /// The event endpoint (`--events`), if started with one.
    pub events: Option<String>,
    /// The HTTP address (`--http`), if started with one.
    pub http: Option<String>,
}

impl Spawned {
    fn spawn(mut cmd: Command) -> anyhow::Result<Spawned> {
        cmd.env(
            "RUST_LOG",
            std::env::var("EMQ_BENCH_LOG").unwrap_or_else(|_| "error".into()),
        );
        let child = cmd.spawn()?;
        Ok(Spawned {
            child,
            journal: None,
            frontend: String::new(),
            backend: String::new(),
            admin: String::new(),
            events: None,
            http: None,
        })
    }

    pub(crate) fn bench_role(args: &[&str]) -> anyhow::Result<Spawned> {
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.args(args);
        Spawned::spawn(cmd)
    }

    pub(crate) fn router(extra: &[&str]) -> anyhow::Result<Spawned> {
        Spawned::router_on(None, extra)
    }

    /// A router on a journal of its own, or on the Postgres journal `url`.
    pub(crate) fn router_on(url: Option<&str>, extra: &[&str]) -> anyhow::Result<Spawned> {
        let mut cmd = Command::new(sibling("emq-router")?);
        cmd.args([
            "--frontend",
            "tcp://127.0.0.1:*",
            "--backend",
            "tcp://127.0.0.1:*",
            "--admin",
            "tcp://127.0.0.1:*",
        ]);
        // A fresh journal per router, on the same disk a deployment would use.
        let journal = std::env::temp_dir().join(format!("emq-bench-{}-{}.redb", std::process::id(), next_id()));
        match url {
            Some(url) => {
                cmd.args(["--journal", url]);
            }
            None => {
                let _ = std::fs::remove_file(&journal);
                cmd.arg("--journal").arg(&journal);
            }
        }
        cmd.args(extra).stdout(Stdio::piped());
        let mut s = Spawned::spawn(cmd)?;
        s.journal = url.is_none().then_some(journal);
        let mut line = String::new();
        BufReader::new(s.child.stdout.take().context("stdout")?).read_line(&mut line)?;
        let field = |k: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{k}=")))
                .map(str::to_string)
                .context("ready line")
        };
        s.frontend = field("frontend")?;
        s.backend = field("backend")?;
        s.admin = field("admin")?;
        s.events = field("events").ok();
        s.http = field("http").ok();
        Ok(s)
    }

    pub(crate) fn jobmanager<S: AsRef<std::ffi::OsStr>>(backend: &str, extra: &[S]) -> anyhow::Result<Spawned> {
        let mut cmd = Command::new(sibling("emq-jobmanager")?);
        cmd.args(["--router", backend]).args(extra);
        Spawned::spawn(cmd)
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory of this process and its children.
    pub(crate) fn tree_rss(&self) -> u64 {
        let pid = self.pid();
        let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        rss_bytes(pid)
            + children
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .map(rss_bytes)
                .sum::<u64>()
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(j) = &self.journal {
            let _ = std::fs::remove_file(j);
        }
    }
}

pub(crate) fn rss_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}
