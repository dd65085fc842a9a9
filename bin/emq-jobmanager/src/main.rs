//! `emq-jobmanager`: the stock jobmanager with the built-in handlers. Parses
//! flags into an `emq_worker::Config` and hands over to `emq_worker::main`,
//! which also serves as the entry point of its re-executed worker processes.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use emq_net::curve::ClientKeys;
use emq_worker::{Config, Registry};

/// Run jobs from an emq (or EventMQ) router in a pool of worker processes.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// Router backend endpoint; repeat for failover, tried in order.
    #[arg(
        short = 'R',
        long = "router",
        env = "EMQ_BACKEND",
        value_delimiter = ',',
        default_value = "tcp://127.0.0.1:47290"
    )]
    routers: Vec<String>,
    /// Queue to serve as WEIGHT:NAME (or NAME, weight 10); repeatable.
    #[arg(short = 'Q', long = "queue", default_value = "10:default")]
    queues: Vec<String>,
    /// Worker processes (default: one per core).
    #[arg(short = 'J', long = "jobs")]
    jobs: Option<usize>,
    /// Slots announced beyond the worker count (hides the router round trip).
    #[arg(long, default_value_t = 0)]
    prefetch: usize,
    /// Jobs queued in one worker's pipe at once (more than 1 suits many short
    /// jobs: workers never wait for the jobmanager, but a job can wait
    /// behind a slow one).
    #[arg(long, default_value_t = 1)]
    pipeline: usize,
    /// Recycle a worker after this many jobs (0 = never).
    #[arg(long, default_value_t = 0)]
    max_jobs: u64,
    /// Recycle a worker above this resident memory, in MiB (0 = no limit).
    #[arg(long, default_value_t = 0)]
    max_rss_mb: u64,
    /// Timeout for jobs whose headers give none, in seconds (0 = none).
    #[arg(long, default_value_t = 0.0)]
    timeout_s: f64,
    /// Interval between heartbeats to the router, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    heartbeat_ms: u64,
    /// Router silence after which we reconnect, in milliseconds.
    #[arg(long, default_value_t = 5000)]
    liveness_ms: u64,
    /// Seconds running jobs may take to finish after SIGTERM.
    #[arg(long, default_value_t = 30.0)]
    grace_s: f64,
    /// JSON file with queues, concurrency, prefetch, max_jobs, max_rss_bytes,
    /// default_timeout_s, grace_s; read at start and on SIGHUP.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The router's CURVE public key (Z85 text or a key file): turns CURVE on.
    #[arg(long, env = "EMQ_SERVER_KEY", requires = "key")]
    server_key: Option<String>,
    /// Our CURVE key pair file; its public key must be on the router's
    /// jobmanager allowlist.
    #[arg(long, env = "EMQ_KEY", requires = "server_key")]
    key: Option<PathBuf>,
}

fn parse_queue(s: &str) -> Result<(i64, String), String> {
    match s.split_once(':') {
        Some((w, name)) if !name.is_empty() => {
            Ok((w.parse().map_err(|_| format!("bad weight in {s:?}"))?, name.to_string()))
        }
        None if !s.is_empty() => Ok((10, s.to_string())),
        _ => Err(format!("bad queue {s:?}: expected WEIGHT:NAME")),
    }
}

fn config(args: Args) -> Result<Config, String> {
    let queues = args
        .queues
        .iter()
        .map(|q| parse_queue(q))
        .collect::<Result<Vec<_>, _>>()?;
    let curve = ClientKeys::from_args(args.server_key.as_deref(), args.key.as_deref())
        .map_err(|e| format!("--server-key/--key: {e}"))?;
    let secs = |s: f64, what: &str| Duration::try_from_secs_f64(s).map_err(|e| format!("{what}: {e}"));
    Ok(Config {
        routers: args.routers,
        queues,
        concurrency: args.jobs.unwrap_or(Config::default().concurrency),
        prefetch: args.prefetch,
        pipeline: args.pipeline,
        max_jobs: args.max_jobs,
        max_rss_bytes: args.max_rss_mb * 1024 * 1024,
        default_timeout: secs(args.timeout_s, "--timeout-s")?,
        heartbeat: Duration::from_millis(args.heartbeat_ms),
        liveness: Duration::from_millis(args.liveness_ms),
        grace: secs(args.grace_s, "--grace-s")?,
        config_file: args.config,
        curve,
    })
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    emq_worker::main(Registry::with_builtins(), || {
        config(Args::parse()).unwrap_or_else(|e| {
            eprintln!("emq-jobmanager: {e}");
            std::process::exit(2)
        })
    })
}
