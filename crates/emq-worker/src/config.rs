//! Jobmanager configuration, validated once at start and again on SIGHUP.

use std::path::PathBuf;
use std::time::Duration;

use emq_net::curve::ClientKeys;

/// The jobmanager's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Routers' backend endpoints, in failover order.
    pub routers: Vec<String>,
    /// `(weight, queue)` pairs announced in INFORM.
    pub queues: Vec<(i64, String)>,
    /// Worker processes, each one job at a time.
    pub concurrency: usize,
    /// Jobs handed to one worker at once: 1 gives a job only to an idle
    /// worker; more queues short jobs in its pipe so that it never waits for
    /// the jobmanager (a job may then wait behind a slow one).
    pub pipeline: usize,
    /// Slots announced beyond the worker count, so that a worker finds its
    /// next job already here instead of waiting a round trip to the router.
    pub prefetch: usize,
    /// Recycle a worker after this many jobs (0 = never).
    pub max_jobs: u64,
    /// Recycle a worker whose resident memory passes this many bytes after a
    /// job (0 = no limit).
    pub max_rss_bytes: u64,
    /// Timeout for jobs whose headers name none (zero = none).
    pub default_timeout: Duration,
    /// Interval between our heartbeats to the router.
    pub heartbeat: Duration,
    /// Silence after which the router is presumed gone and we reconnect.
    /// The router's announced heartbeat can lengthen it, never shorten it.
    pub liveness: Duration,
    /// How long running jobs may take to finish after SIGTERM.
    pub grace: Duration,
    /// A JSON file re-read on SIGHUP (queues, concurrency, max_jobs, ...).
    pub config_file: Option<PathBuf>,
    /// CURVE: the router's public key and ours (on the router's jobmanager
    /// allowlist). `None` for a plain router.
    pub curve: Option<ClientKeys>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            routers: vec![format!("tcp://127.0.0.1:{}", emq_proto::DEFAULT_BACKEND_PORT)],
            queues: vec![(emq_proto::DEFAULT_WEIGHT, emq_proto::DEFAULT_QUEUE.to_string())],
            concurrency: std::thread::available_parallelism().map_or(2, |n| n.get()),
            pipeline: 1,
            prefetch: 0,
            max_jobs: 0,
            max_rss_bytes: 0,
            default_timeout: Duration::ZERO,
            heartbeat: Duration::from_secs(1),
            liveness: Duration::from_secs(5),
            grace: Duration::from_secs(30),
            config_file: None,
            curve: None,
        }
    }
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A value out of range.
    #[error("invalid jobmanager configuration: {0}")]
    Invalid(String),
    /// The config file cannot be read or parsed.
    #[error("cannot read {path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

/// Keys a config file may set; each overrides the running value.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    queues: Option<Vec<(i64, String)>>,
    concurrency: Option<usize>,
    prefetch: Option<usize>,
    pipeline: Option<usize>,
    max_jobs: Option<u64>,
    max_rss_bytes: Option<u64>,
    default_timeout_s: Option<f64>,
    grace_s: Option<f64>,
}

impl Config {
    /// Check ranges; called at start and on SIGHUP.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |s: &str| Err(ConfigError::Invalid(s.into()));
        if self.routers.is_empty() {
            return bad("at least one router endpoint is needed");
        }
        if self.queues.is_empty() {
            return bad("at least one queue is needed");
        }
        if self.concurrency == 0 || self.concurrency > 4096 {
            return bad("concurrency must be between 1 and 4096");
        }
        if self.pipeline == 0 || self.pipeline > 1024 {
            return bad("pipeline must be between 1 and 1024");
        }
        if self.heartbeat.is_zero() || self.liveness <= self.heartbeat {
            return bad("liveness must be longer than the (non-zero) heartbeat interval");
        }
        Ok(())
    }

    /// This configuration with the config file's values applied over it.
    pub fn with_file(&self) -> Result<Config, ConfigError> {
        let Some(path) = &self.config_file else {
            return Ok(self.clone());
        };
        let err = |reason: String| ConfigError::File {
            path: path.display().to_string(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let f: FileConfig = serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
        let mut c = self.clone();
        if let Some(q) = f.queues {
            c.queues = q;
        }
        if let Some(n) = f.concurrency {
            c.concurrency = n;
        }
        if let Some(n) = f.pipeline {
            c.pipeline = n;
        }
        if let Some(n) = f.prefetch {
            c.prefetch = n;
        }
        if let Some(n) = f.max_jobs {
            c.max_jobs = n;
        }
        if let Some(n) = f.max_rss_bytes {
            c.max_rss_bytes = n;
        }
        if let Some(s) = f.default_timeout_s {
            c.default_timeout = Duration::try_from_secs_f64(s).map_err(|e| err(e.to_string()))?;
        }
        if let Some(s) = f.grace_s {
            c.grace = Duration::try_from_secs_f64(s).map_err(|e| err(e.to_string()))?;
        }
        c.validate()?;
        Ok(c)
    }
}
