//! Harness for the cross-process tests: find the built binaries, start them on
//! ephemeral loopback endpoints, talk to them with raw DEALER sockets, wait on
//! conditions with deadlines, and reap every process on drop.
//!
//! The binaries must be built first (`cargo build --workspace`), which
//! `scripts/test.sh` and `.ci/run` do.

// A test fails by panicking, helpers included.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use emq_proto::{decode, Envelope, Message};

pub mod browser;
pub mod netbed;
pub mod netem;
pub mod postgres;

/// Path of a workspace binary next to this test executable's `deps/` folder.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built: run `cargo build --workspace` first (scripts/test.sh does)",
        path.display()
    );
    path
}

/// Poll `cond` until it is true or `within` has passed.
pub fn wait_until(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A child process that is killed and reaped when dropped.
pub struct Proc {
    /// What it is, for messages.
    pub name: String,
    child: Option<Child>,
    status: Option<ExitStatus>,
    /// Leads its own process group, killed whole on drop (for programs that
    /// fork helpers of their own, like EventMQ's jobmanager).
    group: bool,
}

impl Proc {
    /// Start `cmd`; it is killed and reaped when dropped.
    pub fn spawn(mut cmd: Command, name: &str) -> Proc {
        let own_level = cmd.get_envs().any(|(k, _)| k == "RUST_LOG");
        if std::env::var_os("RUST_LOG").is_none() && !own_level {
            cmd.env(
                "RUST_LOG",
                std::env::var("EMQ_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            );
        }
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        Proc {
            name: name.to_string(),
            child: Some(child),
            status: None,
            group: false,
        }
    }

    /// Spawn as the leader of a new process group; drop kills the whole group.
    pub fn spawn_group(mut cmd: Command, name: &str) -> Proc {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
        let mut p = Proc::spawn(cmd, name);
        p.group = true;
        p
    }

    /// Its process id.
    pub fn pid(&self) -> i32 {
        self.child.as_ref().map_or(0, |c| c.id() as i32)
    }

    /// The child, to take its pipes.
    pub fn child_mut(&mut self) -> &mut Child {
        self.child.as_mut().expect("running")
    }

    /// Send it `sig` (unless it has exited).
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        if self.status.is_none() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig);
        }
    }

    /// Kill it with SIGKILL and wait until it is gone.
    pub fn kill9(&mut self) {
        self.signal(nix::sys::signal::Signal::SIGKILL);
        self.wait_exit(Duration::from_secs(10)).expect("killed process exits");
    }

    /// Wait for the process to exit, up to `within`.
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        if let Some(s) = self.status {
            return Some(s);
        }
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(s)) = child.try_wait() {
                self.status = Some(s);
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Whether it has not exited yet.
    pub fn is_running(&mut self) -> bool {
        self.wait_exit(Duration::ZERO).is_none()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.group {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(self.pid()),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        if self.status.is_none() {
            if let Some(mut c) = self.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// Read the first line of a child's stdout that starts with `prefix`.
pub fn read_ready_line(child: &mut Child, prefix: &str, within: Duration) -> String {
    let stdout = child.stdout.take().expect("stdout piped");
    let (tx, rx) = mpsc::channel();
    let prefix = prefix.to_string();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        for line in lines.by_ref().map_while(Result::ok) {
            if line.starts_with(&prefix) {
                let _ = tx.send(line);
                break;
            }
        }
        // Keep draining so the child never blocks on a full pipe.
        for _ in lines {}
    });
    rx.recv_timeout(within).expect("child printed its ready line in time")
}

/// The next number of a xorshift64 sequence (random crash moments; seed it
/// from the clock and print the seed, so a failing run can be replayed).
pub fn next_random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// A scratch directory (keys, allowlists, marker files, journals), removed
/// when dropped, also when a test panics.
pub struct Scratch(tempfile::TempDir);

impl Scratch {
    /// A fresh directory.
    pub fn new() -> Scratch {
        Scratch(
            tempfile::Builder::new()
                .prefix("emq-test-")
                .tempdir()
                .expect("a scratch directory"),
        )
    }

    /// A scratch directory in memory (`/dev/shm`, else the temp dir): for
    /// what must not wait on the shared disk's flushes.
    pub fn in_memory() -> Scratch {
        let shm = std::path::Path::new("/dev/shm");
        let mut b = tempfile::Builder::new();
        b.prefix("emq-test-");
        Scratch(
            match shm.is_dir() {
                true => b.tempdir_in(shm),
                false => b.tempdir(),
            }
            .expect("a scratch directory"),
        )
    }

    /// A path inside it.
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }

    /// A path inside it, as text (for command-line arguments).
    pub fn arg(&self, name: &str) -> String {
        self.path(name).to_str().expect("UTF-8 temp path").to_string()
    }
}

impl Default for Scratch {
    fn default() -> Self {
        Scratch::new()
    }
}

/// A running `emq-router` on ephemeral loopback ports, with its own journal.
pub struct RouterProc {
    /// The process.
    pub proc: Proc,
    /// Where clients connect.
    pub frontend: String,
    /// Where jobmanagers connect.
    pub backend: String,
    /// Where admin tools connect.
    pub admin: String,
    /// Where it publishes events (started with `--events`).
    pub events: Option<String>,
    /// Where it serves `/metrics` (started with `--http`), `host:port`.
    pub http: Option<String>,
    /// Its journal file.
    pub journal: PathBuf,
    /// Holds the journal of a router started with [`RouterProc::start`]; a
    /// router restarted on it with [`RouterProc::start_on`] borrows its path.
    _scratch: Option<Scratch>,
}

impl RouterProc {
    /// Start a router on free ports ([`router_endpoints`]) with a journal of
    /// its own.
    pub fn start(extra: &[&str]) -> RouterProc {
        let scratch = Scratch::new();
        let mut r = Self::start_with(&scratch.path("router.redb"), extra);
        r._scratch = Some(scratch);
        r
    }

    /// Start on free ports ([`router_endpoints`]: a test may kill it and
    /// start it again where it was) with the journal at `journal`.
    pub fn start_with(journal: &std::path::Path, extra: &[&str]) -> RouterProc {
        let [f, b, a] = router_endpoints();
        Self::start_on([&f, &b, &a], journal, extra)
    }

    /// Start on given endpoints and journal (to restart a router where it was).
    pub fn start_on(endpoints: [&str; 3], journal: &std::path::Path, extra: &[&str]) -> RouterProc {
        Self::start_cmd(Command::new(bin("emq-router")), endpoints, journal, extra)
    }

    /// Start inside `host` of a test bed, on ephemeral ports of its
    /// loopback (put a [`netem::DelayProxy`] in the host to reach it).
    pub fn start_in(host: &netbed::Host, extra: &[&str]) -> RouterProc {
        let scratch = Scratch::new();
        let cmd = host.command(bin("emq-router"));
        let mut r = Self::start_cmd(cmd, ["tcp://127.0.0.1:*"; 3], &scratch.path("router.redb"), extra);
        r._scratch = Some(scratch);
        r
    }

    /// Start again inside `host`, on the ports and journal of `killed`.
    pub fn restart_in(host: &netbed::Host, killed: &RouterProc, extra: &[&str]) -> RouterProc {
        let endpoints = [&*killed.frontend, &*killed.backend, &*killed.admin];
        Self::start_cmd(host.command(bin("emq-router")), endpoints, &killed.journal, extra)
    }

    fn start_cmd(mut cmd: Command, endpoints: [&str; 3], journal: &std::path::Path, extra: &[&str]) -> RouterProc {
        cmd.args([
            "--frontend",
            endpoints[0],
            "--backend",
            endpoints[1],
            "--admin",
            endpoints[2],
        ]);
        cmd.arg("--journal").arg(journal);
        cmd.args(extra).stdout(Stdio::piped());
        let mut proc = Proc::spawn(cmd, "emq-router");
        let line = read_ready_line(proc.child_mut(), "emq-router ready", Duration::from_secs(10));
        let field = |k: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{k}=")))
                .expect("endpoint in ready line")
                .to_string()
        };
        let optional = |k: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{k}=")))
                .map(str::to_string)
        };
        RouterProc {
            frontend: field("frontend"),
            backend: field("backend"),
            admin: field("admin"),
            events: optional("events"),
            http: optional("http"),
            journal: journal.to_path_buf(),
            proc,
            _scratch: None,
        }
    }
}

/// A raw DEALER socket speaking eMQP frames, for driving the router by hand.
pub struct Dealer {
    /// The socket.
    pub socket: zmq::Socket,
}

impl Dealer {
    /// Connect to `endpoint`, with `identity` if given.
    pub fn connect(ctx: &zmq::Context, endpoint: &str, identity: Option<&str>) -> Dealer {
        let socket = ctx.socket(zmq::DEALER).expect("dealer");
        socket.set_linger(0).unwrap();
        if let Some(id) = identity {
            socket.set_identity(id.as_bytes()).unwrap();
        }
        socket.connect(endpoint).expect("connect");
        Dealer { socket }
    }

    /// Submit `call` to `queue` as job `id` (JSON body unless the headers say
    /// otherwise).
    pub fn request(&self, id: &str, queue: &str, call: &emq_proto::JobCall, headers: emq_proto::Headers) {
        let body = call.encode(headers.content_type);
        self.send(
            &Message::Request(emq_proto::Request {
                queue: queue.into(),
                headers,
                body,
            }),
            id,
        );
    }

    /// Send `msg` with msgid `msgid`.
    pub fn send(&self, msg: &Message, msgid: &str) {
        self.send_raw(msg.encode_with_id(msgid));
    }

    /// Send frames as they are.
    pub fn send_raw(&self, frames: Vec<Vec<u8>>) {
        self.socket.send_multipart(frames, 0).expect("send");
    }

    /// The next message's frames, if one comes within `within`.
    pub fn recv_raw(&self, within: Duration) -> Option<Vec<Vec<u8>>> {
        let mut items = [self.socket.as_poll_item(zmq::POLLIN)];
        let ms = within.as_millis() as i64;
        if zmq::poll(&mut items, ms).ok()? == 0 {
            return None;
        }
        self.socket.recv_multipart(0).ok()
    }

    /// The next message, decoded, if one comes within `within`.
    pub fn recv(&self, within: Duration) -> Option<Envelope> {
        self.recv_raw(within)
            .map(|f| decode(&f).expect("router sends valid frames"))
    }

    /// Receive until a message matches `pred` (skipping e.g. heartbeats).
    pub fn recv_until(&self, within: Duration, mut pred: impl FnMut(&Envelope) -> bool) -> Option<Envelope> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            let env = self.recv(left)?;
            if pred(&env) {
                return Some(env);
            }
        }
    }
}

/// A running `emq-jobmanager` connected to a router.
pub struct JobManagerProc {
    /// The process.
    pub proc: Proc,
}

impl JobManagerProc {
    /// Start with fast heartbeats (unless `extra` sets `--liveness-ms`);
    /// `extra` adds flags (`-J`, `-Q`, ...).
    pub fn start(router: &RouterProc, extra: &[&str]) -> JobManagerProc {
        Self::start_at(&router.backend, extra)
    }

    /// As [`JobManagerProc::start`], connecting to `backend` (a proxy in
    /// front of the router's backend, say).
    pub fn start_at(backend: &str, extra: &[&str]) -> JobManagerProc {
        Self::start_with_env(backend, extra, &[])
    }

    /// As [`JobManagerProc::start_at`], with environment variables (for it
    /// and its workers).
    pub fn start_with_env(backend: &str, extra: &[&str], env: &[(&str, &str)]) -> JobManagerProc {
        Self::start_cmd(Command::new(bin("emq-jobmanager")), backend, extra, env)
    }

    /// As [`JobManagerProc::start_with_env`], inside `host` of a test bed.
    pub fn start_in(host: &netbed::Host, backend: &str, extra: &[&str], env: &[(&str, &str)]) -> JobManagerProc {
        Self::start_cmd(host.command(bin("emq-jobmanager")), backend, extra, env)
    }

    fn start_cmd(mut cmd: Command, backend: &str, extra: &[&str], env: &[(&str, &str)]) -> JobManagerProc {
        cmd.args(["--router", backend]);
        if !extra.contains(&"--liveness-ms") {
            cmd.args(["--heartbeat-ms", "100", "--liveness-ms", "1000"]);
        }
        cmd.args(extra).envs(env.iter().copied());
        JobManagerProc {
            proc: Proc::spawn(cmd, "emq-jobmanager"),
        }
    }

    /// Pids of this jobmanager's worker processes (its children).
    pub fn worker_pids(&self) -> Vec<i32> {
        children_of(self.proc.pid())
    }
}

/// Collect a child's stderr in the background (the child must have been
/// spawned with `Stdio::piped()` stderr); read it with [`StderrLog::text`].
#[derive(Clone, Default)]
pub struct StderrLog(std::sync::Arc<std::sync::Mutex<String>>);

impl StderrLog {
    /// Collect `child`'s stderr from now on.
    pub fn capture(child: &mut Child) -> StderrLog {
        let log = StderrLog::default();
        let stderr = child.stderr.take().expect("stderr piped");
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut text = sink.0.lock().unwrap_or_else(|e| e.into_inner());
                text.push_str(&line);
                text.push('\n');
            }
        });
        log
    }

    /// Everything collected so far.
    pub fn text(&self) -> String {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Pids whose parent is `pid`, from /proc.
pub fn children_of(pid: i32) -> Vec<i32> {
    let path = format!("/proc/{pid}/task/{pid}/children");
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Whether a process with this pid exists (and is not a zombie).
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'),
        Err(_) => false,
    }
}

/// What a finished command printed.
#[derive(Debug)]
pub struct Output {
    /// Its exit code (`None`: killed by a signal).
    pub code: Option<i32>,
    /// What it printed on stdout.
    pub stdout: String,
    /// What it printed on stderr.
    pub stderr: String,
    /// How long it ran.
    pub took: Duration,
}

/// A free loopback TCP port for a process to listen on, that stays ours
/// while the process is down: taken below the kernel's ephemeral range, so
/// no outgoing connection can be given it when a test kills a router and
/// starts it again on the same endpoints (with `:*` ports that happened in
/// CI: the restarted router could not bind), and from a counter shared by
/// the tests of this process, so two tests never pick the same one. Each
/// is checked free before it is handed out.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    static RANGE: std::sync::OnceLock<(u32, u32)> = std::sync::OnceLock::new();
    let &(first, count) = RANGE.get_or_init(|| {
        let ephemeral_low: u32 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .and_then(|r| r.split_whitespace().next()?.parse().ok())
            .unwrap_or(32768);
        let first = ephemeral_low.saturating_sub(12_000).max(1024);
        assert!(
            ephemeral_low > first + 1000,
            "no room below the ephemeral ports ({ephemeral_low})"
        );
        // Another run of the tests on this machine starts elsewhere.
        let offset = (u64::from(std::process::id()) * 7919 % u64::from(ephemeral_low - first)) as u32;
        NEXT.store(offset, Ordering::Relaxed);
        (first, ephemeral_low - first)
    });
    for _ in 0..count {
        let port = (first + NEXT.fetch_add(1, Ordering::Relaxed) % count) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port from {first} to {}", first + count - 1)
}

/// Three free ports as a router's endpoints ([`free_port`]).
pub fn router_endpoints() -> [String; 3] {
    std::array::from_fn(|_| format!("tcp://127.0.0.1:{}", free_port()))
}

/// Router flags for tests: heartbeats every 100 ms, a jobmanager silent for
/// 600 ms is dead.
pub const FAST_TIMING: &[&str] = &["--heartbeat-ms", "100", "--liveness-ms", "600"];

/// How many jobmanagers the router's STATUS lists.
pub fn jobmanager_count(router: &RouterProc) -> usize {
    router_status(router)["jobmanagers"].as_object().map_or(0, |m| m.len())
}

/// The router's STATUS, as `emq-cli --json status` prints it.
pub fn router_status(router: &RouterProc) -> serde_json::Value {
    let out = emq_cli(router, &["--json", "status"], None, Duration::from_secs(10));
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    serde_json::from_str(out.stdout.trim()).expect("emq-cli --json status prints JSON")
}

/// Run `emq-cli` against `router` and wait for it, killing it after `within`.
pub fn emq_cli(router: &RouterProc, args: &[&str], stdin: Option<&str>, within: Duration) -> Output {
    let mut cmd = Command::new(bin("emq-cli"));
    cmd.env("EMQ_ROUTER", &router.frontend).env("EMQ_ADMIN", &router.admin);
    if let Some(events) = &router.events {
        cmd.env("EMQ_EVENTS", events);
    }
    run_with_deadline(cmd, args, stdin, within)
}

/// `GET path` from an HTTP server at `addr` (`host:port`): the status code
/// and the body. Plain HTTP/1.1 over a std socket, with a deadline.
pub fn http_get(addr: &str, path: &str, within: Duration) -> std::io::Result<(u16, String)> {
    http_request(addr, "GET", path, None, within)
}

/// `method path` with a JSON `body` to an HTTP server at `addr`: the status
/// code and the body (chunked bodies joined). One connection per request.
pub fn http_request(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
    within: Duration,
) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let sock_addr: std::net::SocketAddr = addr.parse().map_err(std::io::Error::other)?;
    let mut stream = std::net::TcpStream::connect_timeout(&sock_addr, within)?;
    stream.set_read_timeout(Some(within))?;
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(b) = body {
        request.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    request.push_str("\r\n");
    request.push_str(body.unwrap_or(""));
    stream.write_all(request.as_bytes())?;
    // Read to the end of the body: its Content-Length when given (some
    // servers keep the connection open whatever the request asked), else
    // until the server closes.
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let (split, length) = loop {
        let n = stream.read(&mut buf)?;
        raw.extend_from_slice(&buf[..n]);
        if let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok());
            break (split, length);
        }
        if n == 0 {
            break (raw.len(), Some(0));
        }
    };
    match length {
        Some(len) => {
            while raw.len() < split + 4 + len {
                let n = stream.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                raw.extend_from_slice(&buf[..n]);
            }
        }
        None => {
            stream.read_to_end(&mut raw)?;
        }
    }
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let body = raw.get(split + 4..).unwrap_or_default();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status line in {head:?}")))?;
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked { unchunk(body) } else { body.to_vec() };
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// A chunked HTTP body joined.
fn unchunk(mut rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
        let size = String::from_utf8_lossy(&rest[..eol]).into_owned();
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        let after = &rest[eol + 2..];
        if n == 0 || after.len() < n {
            break;
        }
        out.extend_from_slice(&after[..n]);
        rest = after[n..].strip_prefix(b"\r\n").unwrap_or(&after[n..]);
    }
    out
}

/// What `emq-cli bulk` did across a router crash ([`bulk_across_a_router_crash`]).
pub struct Crashed {
    /// How `bulk` exited.
    pub status: ExitStatus,
    /// What it printed.
    pub stdout: String,
    /// What it logged.
    pub stderr: String,
    /// From the crash to the end of `bulk`.
    pub after_kill: Duration,
    /// The jobs' runs: one job id per line.
    pub runs: String,
}

impl Crashed {
    /// Check that `bulk` of `n` jobs ended with all of them ok, without a
    /// stall (within 45 s of the crash), each having run; returns how many
    /// ran more than once.
    pub fn assert_all_ok(&self, n: usize) -> usize {
        assert!(self.status.success(), "{}{}", self.stdout, self.stderr);
        assert!(
            self.stdout.contains(&format!("{n} jobs: {n} ok, 0 failed")),
            "{}",
            self.stdout
        );
        assert!(
            self.after_kill < Duration::from_secs(45),
            "no stall: {:?}",
            self.after_kill
        );
        let counts = self.run_counts();
        assert_eq!(counts.len(), n, "every job ran");
        counts.values().filter(|c| **c > 1).count()
    }

    /// How many times each job ran.
    pub fn run_counts(&self) -> std::collections::HashMap<&str, usize> {
        let mut counts = std::collections::HashMap::new();
        for id in self.runs.lines() {
            *counts.entry(id).or_default() += 1;
        }
        counts
    }
}

/// Start `bulk` (an `emq-cli bulk` command, its output read here), whose
/// jobs append their id to `runs` each time they run; once `ran` have run,
/// `crash` kills the router and starts it again (what it returns, the new
/// router, lives until `bulk` ends); wait up to `within` for `bulk` to end.
pub fn bulk_across_a_router_crash<R>(
    mut bulk: Command,
    runs: &std::path::Path,
    ran: usize,
    within: Duration,
    crash: impl FnOnce() -> R,
) -> Crashed {
    bulk.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut bulk = Proc::spawn(bulk, "emq-cli bulk");
    let lines = || std::fs::read_to_string(runs).map_or(0, |t| t.lines().count());
    assert!(
        wait_until(Duration::from_secs(60), || lines() >= ran),
        "jobs ran before the crash"
    );
    let killed_at = Instant::now();
    let _restarted = crash();
    let status = bulk.wait_exit(within).expect("bulk ends well before its idle timeout");
    let after_kill = killed_at.elapsed();
    let (mut stdout, mut stderr) = (String::new(), String::new());
    std::io::Read::read_to_string(&mut bulk.child_mut().stdout.take().unwrap(), &mut stdout).unwrap();
    std::io::Read::read_to_string(&mut bulk.child_mut().stderr.take().unwrap(), &mut stderr).unwrap();
    Crashed {
        status,
        stdout,
        stderr,
        after_kill,
        runs: std::fs::read_to_string(runs).unwrap_or_default(),
    }
}

/// Run a command with piped output, killing it (by pid) after `within`.
pub fn run_with_deadline(mut cmd: Command, args: &[&str], stdin: Option<&str>, within: Duration) -> Output {
    use std::io::Write;
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    let started = Instant::now();
    let mut child = cmd.spawn().expect("spawn command");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin piped");
        let input = input.to_string();
        std::thread::spawn(move || {
            let _ = pipe.write_all(input.as_bytes());
        });
    }
    let pid = child.id() as i32;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(within) {
        Ok(r) => r.expect("wait for command"),
        Err(_) => {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            let r = rx.recv().expect("killed command is reaped").expect("output");
            panic!(
                "{:?} {args:?} did not finish within {within:?}; stderr: {}",
                cmd.get_program(),
                String::from_utf8_lossy(&r.stderr)
            );
        }
    };
    Output {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        took: started.elapsed(),
    }
}

/// The virtualenv with EventMQ 0.3.13 that `scripts/eventmq-env.sh` makes.
pub fn eventmq_venv() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf();
    let venv = std::env::var_os("EMQ_EVENTMQ_VENV").map_or_else(|| root.join(".venv-eventmq"), PathBuf::from);
    assert!(
        venv.join("bin/python").exists(),
        "{} has no EventMQ: run scripts/eventmq-env.sh (scripts/test.sh does)",
        venv.display()
    );
    venv
}

/// `tests/eventmq`, where the Python helpers and job functions live.
pub fn eventmq_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("eventmq")
}

#[cfg(test)]
mod tests {
    #[test]
    fn free_ports_are_distinct_and_below_the_ephemeral_range() {
        let ephemeral_low: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let ports: Vec<u16> = (0..200).map(|_| super::free_port()).collect();
        assert!(ports.iter().all(|p| *p < ephemeral_low), "{ports:?}");
        let distinct: std::collections::HashSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), ports.len());
    }
}
