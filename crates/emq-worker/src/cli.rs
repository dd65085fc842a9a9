//! The jobmanager's command line, shared by the stock `emq-jobmanager` and
//! every jobmanager binary built with [`crate::main`]: the same flags, the
//! same `--help`, the same TOML config file (keys are the long flag names,
//! re-read on SIGHUP), the same logging.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use emq_net::curve::ClientKeys;

use crate::{Config, ConfigError};

/// Run jobs from an emq (or EventMQ) router in a pool of worker processes.
///
/// Every flag can also be set in a TOML file given with --config, under the
/// flag's long name (`jobs = 8`, `queue = ["10:default", "5:images"]`,
/// `max-rss-mb = 512`); a flag or environment variable wins over the file.
/// SIGHUP re-reads the file: queues, jobs, prefetch, max-jobs,
/// max-rss-mb, timeout-s, grace-s and the routers take effect at once.
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
struct Args {
    /// TOML file of settings (keys are the long flag names); re-read on SIGHUP.
    #[arg(long, env = "EMQ_JOBMANAGER_CONFIG")]
    config: Option<PathBuf>,
    /// Router backend endpoint; several (comma-separated or repeated) for
    /// failover, tried in order.
    #[arg(
        short = 'R',
        long = "router",
        env = "EMQ_BACKEND",
        value_delimiter = ',',
        default_value = "tcp://127.0.0.1:47290",
        value_parser = emq_cmd::endpoint
    )]
    routers: Vec<String>,
    /// Queue to serve, as WEIGHT:NAME (or NAME, weight 10); repeat for several.
    #[arg(short = 'Q', long = "queue", default_value = "10:default", value_parser = parse_queue)]
    queues: Vec<(i64, String)>,
    /// Worker processes [default: one per core].
    #[arg(short = 'J', long = "jobs")]
    jobs: Option<usize>,
    /// Jobs asked for beyond the worker count, held for the next idle worker
    /// (hides the router round trip) [default: as many as cover the measured
    /// round trip at the rate jobs end].
    #[arg(long)]
    prefetch: Option<usize>,
    /// Accepted for old command lines and ignored: workers take jobs from
    /// one shared queue, so there is no per-worker pipeline.
    #[arg(long, hide = true)]
    pipeline: Option<usize>,
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
    /// The router's CURVE public key (Z85 text or a key file): turns CURVE on.
    #[arg(long, env = "EMQ_SERVER_KEY", requires = "key")]
    server_key: Option<String>,
    /// Our CURVE key pair file; its public key must be on the router's
    /// jobmanager allowlist.
    #[arg(long, env = "EMQ_KEY", requires = "server_key")]
    key: Option<PathBuf>,
    /// Serve this jobmanager's /metrics (Prometheus) and /healthz over HTTP
    /// on HOST:PORT, or PORT on 127.0.0.1.
    #[arg(long, env = "EMQ_JOBMANAGER_HTTP", value_parser = emq_cmd::http_addr)]
    http: Option<String>,
}

fn parse_queue(s: &str) -> Result<(i64, String), String> {
    let bad = || format!("{s:?}: expected WEIGHT:NAME (e.g. 10:default) or NAME");
    match s.split_once(':') {
        Some((w, name)) if !name.is_empty() => match w.parse::<i64>() {
            Ok(w) if w >= 0 => Ok((w, name.to_string())),
            _ => Err(bad()),
        },
        None if !s.is_empty() => Ok((emq_proto::DEFAULT_WEIGHT, s.to_string())),
        _ => Err(bad()),
    }
}

impl Args {
    fn into_config(self, argv: Vec<OsString>) -> Result<Config, ConfigError> {
        let curve = ClientKeys::from_args(self.server_key.as_deref(), self.key.as_deref())
            .map_err(|e| ConfigError::Invalid(format!("--server-key/--key: {e}")))?;
        let secs = |s: f64, what: &str| {
            Duration::try_from_secs_f64(s).map_err(|e| ConfigError::Invalid(format!("{what}: {e}")))
        };
        if self.pipeline.is_some() {
            log::warn!("--pipeline is ignored: workers take jobs from one shared queue (see --prefetch)");
        }
        let config = Config {
            routers: self.routers,
            queues: self.queues,
            concurrency: self.jobs.unwrap_or(Config::default().concurrency),
            prefetch: self.prefetch,
            max_jobs: self.max_jobs,
            max_rss_bytes: self.max_rss_mb.saturating_mul(1024 * 1024),
            default_timeout: secs(self.timeout_s, "--timeout-s")?,
            heartbeat: Duration::from_millis(self.heartbeat_ms),
            liveness: Duration::from_millis(self.liveness_ms),
            grace: secs(self.grace_s, "--grace-s")?,
            reload_from: self.config.is_some().then_some(argv),
            curve,
            handlers: Vec::new(),
            http: self.http,
        };
        config.validate()?;
        Ok(config)
    }
}

/// The configuration from this process's command line (and its config
/// file), or the usage message and exit code 64.
pub(crate) fn config_from_args() -> Config {
    let argv: Vec<OsString> = std::env::args_os().collect();
    let args: Args = emq_cmd::parse_with_config("config");
    match args.into_config(argv) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{}: {e}", emq_cmd::program_name());
            std::process::exit(emq_cmd::EXIT_USAGE.into());
        }
    }
}

/// The configuration from `argv` again, with the config file as it is now
/// (SIGHUP).
pub(crate) fn reload(argv: &[OsString]) -> Result<Config, ConfigError> {
    let args: Args = emq_cmd::parse_from(argv.to_vec(), "config").map_err(|e| ConfigError::Invalid(e.to_string()))?;
    args.into_config(argv.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queues_take_weight_and_name() {
        assert_eq!(parse_queue("5:images"), Ok((5, "images".to_string())));
        assert_eq!(parse_queue("default"), Ok((10, "default".to_string())));
        for bad in ["-1:q", "x:q", "10:", ""] {
            assert!(parse_queue(bad).unwrap_err().contains("WEIGHT:NAME"), "{bad}");
        }
    }

    #[test]
    fn a_config_file_uses_the_flag_names() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("jm.toml");
        std::fs::write(
            &file,
            "jobs = 3\nqueue = [\"10:cfg\", \"2:low\"]\nmax-rss-mb = 512\ntimeout-s = 1.5\n",
        )
        .unwrap();
        let argv: Vec<OsString> = ["emq-jobmanager", "--config", file.to_str().unwrap(), "--prefetch", "4"]
            .into_iter()
            .map(OsString::from)
            .collect();
        let c = reload(&argv).unwrap();
        assert_eq!(c.concurrency, 3);
        assert_eq!(c.queues, vec![(10, "cfg".to_string()), (2, "low".to_string())]);
        assert_eq!(c.max_rss_bytes, 512 << 20);
        assert_eq!(c.default_timeout, Duration::from_millis(1500));
        assert_eq!(c.prefetch, Some(4));
        assert_eq!(c.reload_from.as_deref(), Some(&argv[..]));
    }
}
