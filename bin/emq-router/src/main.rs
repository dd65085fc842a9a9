//! `emq-router`: flags (and a TOML config file under them) to a validated
//! `emq_broker::Config`, logging, then `emq_broker::run`. Prints one
//! `emq-router ready ...` line on stdout once everything is open (journal,
//! endpoints); tests and scripts read the resolved ports from it. With a
//! Postgres journal that is when it becomes the active router (the line
//! ends `epoch=N`), and `emq-router stepped-down` when it loses the lease;
//! it may become active again later. Exit codes:
//! 0 stopped cleanly, 1 failed (the reason on stderr), 64 bad usage.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, ValueEnum};

use emq_broker::{Config, DashboardConfig, Journal, Role, Security, UnknownQueuePolicy};
use emq_net::curve::load_key_pair;
use emq_proto::views::{QueueChange, Rate};

#[derive(Clone, Copy, ValueEnum)]
enum UnknownQueue {
    /// Keep the job until a jobmanager serves its queue.
    Wait,
    /// Send it to the `default` queue (EventMQ's behaviour).
    Reroute,
}

/// The emq router (broker): clients submit jobs to it, jobmanagers take them.
///
/// Every flag can also be set in a TOML file given with --config, under the
/// flag's long name (`max-waiting = 100000`); a flag or environment variable
/// wins over the file.
#[derive(Parser)]
#[command(version, about, long_about)]
struct Args {
    /// TOML file of settings (keys are the long flag names).
    #[arg(long, env = "EMQ_ROUTER_CONFIG")]
    config: Option<PathBuf>,
    /// Endpoint clients connect to.
    #[arg(long, env = "EMQ_FRONTEND", default_value = "tcp://127.0.0.1:47291", value_parser = emq_cmd::endpoint)]
    frontend: String,
    /// Endpoint jobmanagers connect to.
    #[arg(long, env = "EMQ_BACKEND", default_value = "tcp://127.0.0.1:47290", value_parser = emq_cmd::endpoint)]
    backend: String,
    /// Endpoint admin tools connect to (the only one that takes admin commands).
    #[arg(long, env = "EMQ_ADMIN", default_value = "tcp://127.0.0.1:47293", value_parser = emq_cmd::endpoint)]
    admin: String,
    /// Interval between heartbeats sent to jobmanagers, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    heartbeat_ms: u64,
    /// Silence after which a jobmanager is dead, in milliseconds (at least twice
    /// the heartbeat interval the jobmanager announces).
    #[arg(long, default_value_t = 5000)]
    liveness_ms: u64,
    /// Heartbeat interval assumed for jobmanagers that announce none (EventMQ's
    /// default is 3000), in milliseconds.
    #[arg(long, default_value_t = 3000)]
    eventmq_heartbeat_ms: u64,
    /// Jobs that may wait in one queue before submissions get ERROR queue-full.
    #[arg(long, default_value_t = 1_000_000)]
    max_waiting_per_queue: usize,
    /// Jobs that may wait across all queues.
    #[arg(long, default_value_t = 4_000_000)]
    max_waiting: usize,
    /// Jobs that may wait for a time (delayed jobs, retries backing off)
    /// before delayed submissions get ERROR queue-full.
    #[arg(long, default_value_t = 1_000_000)]
    max_delayed: usize,
    /// Most jobs one graph (workflow) may have.
    #[arg(long, default_value_t = emq_proto::graph::DEFAULT_MAX_GRAPH_NODES)]
    max_graph_nodes: usize,
    /// Graph jobs that may wait for their parents, across all graphs, before
    /// a graph gets ERROR queue-full.
    #[arg(long, default_value_t = 1_000_000)]
    max_blocked: usize,
    /// Most jobs of QUEUE running at once across all jobmanagers, as
    /// QUEUE=N (repeat for several queues; 0: no limit). Wins over what
    /// `emq-cli queue set` journaled for that queue.
    #[arg(long = "concurrency", value_name = "QUEUE=N", value_parser = concurrency)]
    concurrency: Vec<(String, u64)>,
    /// Most jobs of QUEUE started per period, as QUEUE=N/PERIOD (10/s,
    /// 100/m, 5/30s; none: no limit); repeat for several queues.
    #[arg(long = "rate", value_name = "QUEUE=N/PERIOD", value_parser = rate)]
    rate: Vec<(String, (u32, u64))>,
    /// What to do with jobs for a queue no jobmanager serves.
    #[arg(long, value_enum, default_value = "wait")]
    unknown_queue: UnknownQueue,
    /// Seconds a finished job's result stays available by msgid.
    #[arg(long, default_value_t = 600)]
    result_retention_s: u64,
    /// Most results kept at once: of ordinary jobs, and apart of ended
    /// guaranteed jobs (their records; dead-lettered ones, and those whose
    /// result is owed to an unreachable client, not counted).
    #[arg(long, default_value_t = 100_000)]
    result_capacity: usize,
    /// After a restart or a takeover on a journal with state, how long
    /// nothing is dispatched, in milliseconds: jobmanagers reconnecting with
    /// results of runs the last router started are heard first.
    #[arg(long, default_value_t = 1000)]
    restore_grace_ms: u64,
    /// Largest frame accepted, in bytes.
    #[arg(long, default_value_t = 16 * 1024 * 1024)]
    max_frame: usize,
    /// Largest message (all frames together) accepted, in bytes.
    #[arg(long, default_value_t = 64 * 1024 * 1024)]
    max_message: usize,
    /// Journal for guaranteed jobs: a redb file (created if missing), or a
    /// Postgres URL (`postgres://user@host/db`) shared by an active router
    /// and its standbys.
    #[arg(long, env = "EMQ_JOURNAL", default_value = "emq-router.redb")]
    journal: String,
    /// With a Postgres journal: how long the active router's lease lasts
    /// without renewal, in milliseconds (a standby takes over at most this
    /// long after the active router dies).
    #[arg(long, default_value_t = 2000)]
    lease_ms: u64,
    /// With a Postgres journal: this router's name among those sharing it
    /// (default: host name and process id).
    #[arg(long, env = "EMQ_ROUTER_NAME")]
    name: Option<String>,
    /// Keep guaranteed jobs in memory only (lost if the router dies).
    #[arg(long, conflicts_with = "journal")]
    no_journal: bool,
    /// Retries for jobs whose headers give no retry-count.
    #[arg(long, default_value_t = 3)]
    default_retries: u32,
    /// First retry delay of a guaranteed job, in milliseconds (doubles per
    /// attempt, with jitter).
    #[arg(long, default_value_t = 100)]
    retry_backoff_ms: u64,
    /// Longest retry delay, in milliseconds.
    #[arg(long, default_value_t = 60_000)]
    retry_backoff_max_ms: u64,
    /// Turn on CURVE on every endpoint with this key pair file (from
    /// `emq-cli keygen`). Peers then need a key on the endpoint's allowlist.
    #[arg(long, env = "EMQ_CURVE_KEY")]
    curve_key: Option<PathBuf>,
    /// Public keys allowed to submit jobs [default: clients.allow beside the key].
    #[arg(long, requires = "curve_key")]
    allow_clients: Option<PathBuf>,
    /// Public keys allowed to connect as jobmanagers [default: jobmanagers.allow beside the key].
    #[arg(long, requires = "curve_key")]
    allow_jobmanagers: Option<PathBuf>,
    /// Public keys allowed on the admin endpoint [default: admins.allow beside the key].
    #[arg(long, requires = "curve_key")]
    allow_admins: Option<PathBuf>,
    /// Most open connections on each endpoint; more are refused at handshake.
    #[arg(long, default_value_t = 10_000)]
    max_connections: usize,
    /// Publish every job and fleet transition on this endpoint (a ZeroMQ
    /// PUB socket; `emq-cli watch` reads it). CURVE and the admins'
    /// allowlist apply as on the admin endpoint.
    #[arg(long, env = "EMQ_EVENTS", value_parser = emq_cmd::endpoint)]
    events: Option<String>,
    /// Put job bodies and results into events (those up to 64 KiB).
    #[arg(long, requires = "events")]
    events_bodies: bool,
    /// Event messages queued per subscriber (one per topic per burst; a
    /// burst is at most 5 ms of events); a slower subscriber loses events
    /// (and sees the gap in their sequence numbers), never the router's time.
    #[arg(long, default_value_t = 1000, requires = "events")]
    events_hwm: i32,
    /// Serve /metrics (Prometheus), /healthz and /status over HTTP on
    /// HOST:PORT, or PORT on 127.0.0.1.
    #[arg(long, env = "EMQ_HTTP", value_parser = emq_cmd::http_addr)]
    http: Option<String>,
    /// Serve the web dashboard on the --http endpoint: queues, jobs, dead
    /// jobs, schedules, workflows. Read-only unless --dashboard-token-file
    /// is given.
    #[arg(long, requires = "http")]
    dashboard: bool,
    /// A file whose first line is the dashboard's admin token (at least 16
    /// characters): logging in with it allows changes (pause, purge, cancel,
    /// retry, discard, ...).
    #[arg(long, requires = "dashboard", env = "EMQ_DASHBOARD_TOKEN_FILE")]
    dashboard_token_file: Option<PathBuf>,
}

/// The dashboard's settings from the flags, its token read from its file.
fn dashboard(args: &Args) -> anyhow::Result<Option<DashboardConfig>> {
    if !args.dashboard {
        return Ok(None);
    }
    let token = match &args.dashboard_token_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the dashboard token from {}", path.display()))?;
            Some(text.lines().next().unwrap_or("").trim().to_string())
        }
        None => None,
    };
    Ok(Some(DashboardConfig { token }))
}

fn concurrency(s: &str) -> Result<(String, u64), String> {
    emq_cmd::named(s, |v| v.parse::<u64>().map_err(|_| format!("{v:?} is not a number")))
}

fn rate(s: &str) -> Result<(String, (u32, u64)), String> {
    emq_cmd::named(s, emq_cmd::rate)
}

/// The flow control the flags set, per queue.
fn queue_controls(args: &Args) -> Vec<(String, QueueChange)> {
    let mut by_queue: BTreeMap<String, QueueChange> = BTreeMap::new();
    for (queue, n) in &args.concurrency {
        by_queue.entry(queue.clone()).or_default().concurrency = Some(*n);
    }
    for (queue, (jobs, per_ms)) in &args.rate {
        by_queue.entry(queue.clone()).or_default().rate = Some(Rate {
            jobs: *jobs,
            per_ms: *per_ms,
        });
    }
    by_queue.into_iter().collect()
}

fn main() -> ExitCode {
    let args: Args = emq_cmd::parse_with_config("config");
    emq_cmd::init_logging("info");
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("emq-router: {e}");
            ExitCode::FAILURE
        }
    }
}

fn security(args: &Args) -> anyhow::Result<Option<Security>> {
    let Some(key_path) = &args.curve_key else {
        return Ok(None);
    };
    let key = load_key_pair(key_path)?;
    let dir = key_path.parent().unwrap_or(Path::new("."));
    let beside = |given: &Option<PathBuf>, name: &str| given.clone().unwrap_or_else(|| dir.join(name));
    Ok(Some(Security {
        key,
        clients: beside(&args.allow_clients, "clients.allow"),
        jobmanagers: beside(&args.allow_jobmanagers, "jobmanagers.allow"),
        admins: beside(&args.allow_admins, "admins.allow"),
    }))
}

fn run(args: Args) -> anyhow::Result<()> {
    let security = security(&args)?;
    let queue_controls = queue_controls(&args);
    let dashboard = dashboard(&args)?;
    let config = Config {
        frontend: args.frontend,
        backend: args.backend,
        admin: args.admin,
        heartbeat: Duration::from_millis(args.heartbeat_ms),
        liveness: Duration::from_millis(args.liveness_ms),
        assumed_peer_heartbeat: Duration::from_millis(args.eventmq_heartbeat_ms),
        max_waiting_per_queue: args.max_waiting_per_queue,
        max_waiting_total: args.max_waiting,
        max_delayed: args.max_delayed,
        max_graph_nodes: args.max_graph_nodes,
        max_blocked: args.max_blocked,
        queue_controls,
        unknown_queue: match args.unknown_queue {
            UnknownQueue::Wait => UnknownQueuePolicy::Wait,
            UnknownQueue::Reroute => UnknownQueuePolicy::Reroute,
        },
        result_retention: Duration::from_secs(args.result_retention_s),
        result_capacity: args.result_capacity,
        restore_grace: Duration::from_millis(args.restore_grace_ms),
        max_frame: args.max_frame,
        max_message: args.max_message,
        journal: (!args.no_journal).then(|| match Journal::parse(&args.journal) {
            Journal::Postgres(mut pg) => {
                pg.lease = Duration::from_millis(args.lease_ms);
                if let Some(name) = args.name {
                    pg.name = name;
                }
                Journal::Postgres(pg)
            }
            file => file,
        }),
        default_retries: args.default_retries,
        retry_backoff: Duration::from_millis(args.retry_backoff_ms),
        retry_backoff_max: Duration::from_millis(args.retry_backoff_max_ms),
        security,
        max_connections: args.max_connections,
        events: args.events,
        events_bodies: args.events_bodies,
        events_hwm: args.events_hwm,
        http: args.http,
        dashboard,
        ..Config::default()
    };
    emq_broker::run(config, |role| {
        let mut out = std::io::stdout().lock();
        let line = match role {
            Role::Active(b) => {
                let mut line = format!(
                    "emq-router ready frontend={} backend={} admin={}",
                    b.frontend, b.backend, b.admin
                );
                if let Some(events) = &b.events {
                    line.push_str(&format!(" events={events}"));
                }
                if let Some(http) = &b.http {
                    line.push_str(&format!(" http={http}"));
                }
                if let Some(epoch) = b.epoch {
                    line.push_str(&format!(" epoch={epoch}"));
                }
                line
            }
            Role::SteppedDown { .. } => "emq-router stepped-down".to_string(),
        };
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    })?;
    Ok(())
}
