//! A private PostgreSQL cluster for the HA tests, and routers sharing it.
//!
//! The cluster is Debian's PostgreSQL (`scripts/test-deps.sh` installs it),
//! made by `initdb` in a scratch directory and listening only on a unix
//! socket there; as root it runs as `nobody` (Postgres refuses root). No
//! Postgres installed is a failure that says how to get it, never a skip.
//!
//! Its data lives in memory (`/dev/shm`): the shared disk of a CI machine
//! has held a WAL flush for five seconds, and these tests are about routers
//! failing over, not about that disk. Every fault they make is a process
//! fault (kill -9, a restart, a cut session), which memory survives like a
//! disk; `emq-bench --postgres` measures a cluster on a real disk.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::{bin, free_port, wait_until, Proc, Scratch};

/// The superuser the cluster is made with.
pub const SUPERUSER: &str = "emq";

/// The newest installed PostgreSQL's programs.
fn pg_bin() -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, b)| b)
        .expect("PostgreSQL is not installed: run scripts/test-deps.sh (Debian package postgresql)")
}

/// Run as `nobody` when we are root (Postgres will not run as root). Done
/// in `pre_exec`, after the closures registered before it (entering a test
/// bed host's namespace needs root still).
fn unprivileged(cmd: &mut Command) {
    if nix::unistd::geteuid().is_root() {
        // SAFETY: between fork and exec the child only calls setgroups(2),
        // setgid(2) and setuid(2), which are async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                let nobody = 65534;
                nix::unistd::setgroups(&[]).map_err(std::io::Error::from)?;
                nix::unistd::setgid(nobody.into()).map_err(std::io::Error::from)?;
                nix::unistd::setuid(nobody.into()).map_err(std::io::Error::from)?;
                Ok(())
            });
        }
    }
}

/// A running private cluster.
pub struct PgCluster {
    dir: Scratch,
    bin: PathBuf,
    /// The port its socket is named after (`.s.PGSQL.PORT`), and its TCP
    /// port in a test bed host.
    pub port: u16,
    server: Option<Proc>,
    /// The test bed host it runs in (listening on its address too).
    host: Option<crate::netbed::Host>,
}

impl PgCluster {
    /// Make and start a cluster.
    pub fn start() -> PgCluster {
        Self::start_on(None)
    }

    /// Make and start a cluster inside `host` of a test bed, taking TCP
    /// connections on its address from the bed (and its unix socket, for
    /// the test itself).
    pub fn start_in(host: &crate::netbed::Host) -> PgCluster {
        Self::start_on(Some(host.clone()))
    }

    fn start_on(host: Option<crate::netbed::Host>) -> PgCluster {
        let bin = pg_bin();
        let dir = Scratch::in_memory();
        let home = dir.path("pg");
        std::fs::create_dir(&home).unwrap();
        if nix::unistd::geteuid().is_root() {
            // `nobody` must reach its directory inside ours.
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(""), std::fs::Permissions::from_mode(0o755)).unwrap();
            nix::unistd::chown(&home, Some(65534.into()), Some(65534.into())).unwrap();
        }
        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .arg("-D")
            .arg(home.join("data"))
            .args([
                "-U",
                SUPERUSER,
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        unprivileged(&mut initdb);
        let out = initdb.output().expect("run initdb");
        assert!(out.status.success(), "initdb: {}", String::from_utf8_lossy(&out.stderr));
        if host.is_some() {
            use std::io::Write;
            let mut hba = std::fs::OpenOptions::new()
                .append(true)
                .open(home.join("data/pg_hba.conf"))
                .unwrap();
            writeln!(hba, "host all all 10.199.0.0/24 trust").unwrap();
        }
        let mut pg = PgCluster {
            dir,
            bin,
            port: free_port(),
            server: None,
            host,
        };
        pg.start_again();
        pg
    }

    fn home(&self) -> PathBuf {
        self.dir.path("pg")
    }

    /// Start the server (again, after [`PgCluster::stop`]) and wait until it
    /// takes connections.
    pub fn start_again(&mut self) {
        let home = self.home();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(home.join("log"))
            .unwrap();
        let program = self.bin.join("postgres");
        let (mut cmd, listen) = match &self.host {
            Some(h) => (h.command(program), format!("listen_addresses={}", h.addr)),
            None => (Command::new(program), "listen_addresses=".to_string()),
        };
        cmd.arg("-D")
            .arg(home.join("data"))
            .arg("-k")
            .arg(&home)
            .args(["-p", &self.port.to_string(), "-c", &listen, "-c", "max_connections=50"])
            .stdout(Stdio::null())
            .stderr(log);
        unprivileged(&mut cmd);
        self.server = Some(Proc::spawn(cmd, "postgres"));
        assert!(
            wait_until(Duration::from_secs(30), || self.client(SUPERUSER).is_ok()),
            "postgres took connections; its log: {}",
            std::fs::read_to_string(home.join("log")).unwrap_or_default()
        );
    }

    /// Fast shutdown (SIGINT: sessions are ended, nothing committed lost),
    /// waiting until the server is gone.
    pub fn stop(&mut self) {
        if let Some(mut p) = self.server.take() {
            p.signal(nix::sys::signal::Signal::SIGINT);
            p.wait_exit(Duration::from_secs(30)).expect("postgres stops");
        }
    }

    /// The journal URL for routers connecting as `user` over the bed's
    /// network (a cluster started with [`PgCluster::start_in`]).
    pub fn tcp_url(&self, user: &str) -> String {
        let host = self.host.as_ref().expect("a cluster in a bed host");
        format!("postgres://{user}@{}:{}/postgres", host.addr, self.port)
    }

    /// The journal URL for routers connecting as `user`.
    pub fn url(&self, user: &str) -> String {
        let socket_dir = self.home().display().to_string().replace('/', "%2F");
        format!("postgres://{user}@{socket_dir}:{}/postgres", self.port)
    }

    /// A connection as `user`.
    pub fn client(&self, user: &str) -> Result<postgres::Client, postgres::Error> {
        postgres::Config::new()
            .host_path(self.home())
            .port(self.port)
            .user(user)
            .dbname("postgres")
            .connect_timeout(Duration::from_secs(2))
            .connect(postgres::NoTls)
    }

    /// Run SQL as the superuser.
    pub fn sql(&self, sql: &str) {
        self.client(SUPERUSER)
            .and_then(|mut c| c.batch_execute(sql))
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// The server's log so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.home().join("log")).unwrap_or_default()
    }

    /// The server's sessions, for failure messages.
    pub fn activity(&self) -> String {
        let Ok(mut c) = self.client(SUPERUSER) else {
            return "(cannot connect)".into();
        };
        c.query(
            "SELECT coalesce(application_name, ''), coalesce(state, ''), coalesce(wait_event_type, ''), \
             coalesce(query, '') FROM pg_stat_activity WHERE pid <> pg_backend_pid()",
            &[],
        )
        .map(|rows| {
            rows.iter()
                .map(|r| {
                    let (app, state, wait, query): (String, String, String, String) =
                        (r.get(0), r.get(1), r.get(2), r.get(3));
                    format!(
                        "{app} [{state}] wait={wait}: {}\n",
                        query.split_whitespace().collect::<Vec<_>>().join(" ")
                    )
                })
                .collect()
        })
        .unwrap_or_else(|e| e.to_string())
    }

    /// The lease row: (epoch, holder).
    pub fn lease(&self) -> (i64, Option<String>) {
        let row = self
            .client(SUPERUSER)
            .and_then(|mut c| c.query_one("SELECT epoch, holder FROM emq_lease", &[]))
            .expect("read the lease");
        (row.get(0), row.get(1))
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        // Immediate shutdown; the directory goes with the scratch.
        if let Some(p) = self.server.as_ref() {
            p.signal(nix::sys::signal::Signal::SIGQUIT);
        }
        if let Some(mut p) = self.server.take() {
            let _ = p.wait_exit(Duration::from_secs(10));
        }
    }
}

/// What a router sharing a Postgres journal printed, as the test saw it.
#[derive(Debug, Clone)]
pub enum RoleLine {
    /// `emq-router ready ... epoch=N`.
    Active {
        /// Its epoch.
        epoch: u64,
        /// When the test read the line.
        at: Instant,
    },
    /// `emq-router stepped-down`.
    SteppedDown {
        /// When the test read the line.
        at: Instant,
    },
}

/// An `emq-router` on a Postgres journal, on fixed loopback ports (its
/// standbys' ports are known before they bind).
pub struct HaRouter {
    /// The process.
    pub proc: Proc,
    /// Its name.
    pub name: String,
    /// Where clients connect.
    pub frontend: String,
    /// Where jobmanagers connect.
    pub backend: String,
    /// Where admin tools connect.
    pub admin: String,
    lines: mpsc::Receiver<RoleLine>,
    /// Its stderr (at info level).
    pub log: crate::StderrLog,
    /// The test bed host it runs in.
    pub host: Option<crate::netbed::Host>,
}

impl HaRouter {
    /// Start router `name` on `url` with its own fresh ports.
    pub fn start(name: &str, url: &str, extra: &[&str]) -> HaRouter {
        Self::start_on(name, url, crate::router_endpoints(), extra, None)
    }

    /// Start router `name` inside `host` of a test bed, on its address.
    pub fn start_in(host: &crate::netbed::Host, name: &str, url: &str, extra: &[&str]) -> HaRouter {
        let ports = [free_port(), free_port(), free_port()].map(|p| format!("tcp://{}:{p}", host.addr));
        Self::start_on(name, url, ports, extra, Some(host.clone()))
    }

    /// Start it again where `old` was (same name, ports and bed host).
    pub fn restart(old: &HaRouter, url: &str, extra: &[&str]) -> HaRouter {
        let ports = [old.frontend.clone(), old.backend.clone(), old.admin.clone()];
        Self::start_on(&old.name, url, ports, extra, old.host.clone())
    }

    fn start_on(
        name: &str,
        url: &str,
        ports: [String; 3],
        extra: &[&str],
        host: Option<crate::netbed::Host>,
    ) -> HaRouter {
        let program = bin("emq-router");
        let mut cmd = match &host {
            Some(h) => h.command(program),
            None => Command::new(program),
        };
        cmd.args(["--frontend", &ports[0], "--backend", &ports[1], "--admin", &ports[2]])
            .args(["--journal", url, "--name", name])
            .args(extra)
            .stdout(Stdio::piped());
        // Its log is read by the tests (stepping down, retrying).
        cmd.stderr(Stdio::piped()).env("RUST_LOG", "info");
        let mut proc = Proc::spawn(cmd, &format!("emq-router {name}"));
        let log = crate::StderrLog::capture(proc.child_mut());
        let stdout = proc.child_mut().stdout.take().expect("stdout piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                let at = Instant::now();
                let role = if line.starts_with("emq-router ready") {
                    let epoch = line
                        .split_whitespace()
                        .find_map(|w| w.strip_prefix("epoch="))
                        .and_then(|e| e.parse().ok())
                        .expect("an epoch in the ready line");
                    RoleLine::Active { epoch, at }
                } else if line.starts_with("emq-router stepped-down") {
                    RoleLine::SteppedDown { at }
                } else {
                    continue;
                };
                if tx.send(role).is_err() {
                    break;
                }
            }
        });
        let [frontend, backend, admin] = ports;
        HaRouter {
            proc,
            name: name.to_string(),
            frontend,
            backend,
            admin,
            lines,
            log,
            host,
        }
    }

    /// The next role line it prints, within `within`.
    pub fn next_role(&self, within: Duration) -> Option<RoleLine> {
        self.lines.recv_timeout(within).ok()
    }

    /// Wait until it is active; its epoch and when it said so.
    pub fn wait_active(&self, within: Duration) -> Option<(u64, Instant)> {
        let deadline = Instant::now() + within;
        loop {
            match self.next_role(deadline.saturating_duration_since(Instant::now()))? {
                RoleLine::Active { epoch, at } => return Some((epoch, at)),
                RoleLine::SteppedDown { .. } => {}
            }
        }
    }

    /// Its log so far.
    pub fn log_text(&self) -> String {
        self.log.text()
    }
}
