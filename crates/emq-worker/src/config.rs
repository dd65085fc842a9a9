//! Jobmanager configuration, validated once at start and again on SIGHUP.

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
    /// Slots announced beyond the worker count, so that a worker finds its
    /// next job already here instead of waiting a round trip to the router
    /// (`None`: as many as cover the measured round trip at the rate jobs
    /// end; see `core/slots.rs`). Workers take jobs from one shared queue,
    /// so a job held here never waits behind another while a worker is idle.
    pub prefetch: Option<usize>,
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
    /// The command line parsed again on SIGHUP, with its config file as it
    /// is then (`None`: SIGHUP changes nothing).
    pub reload_from: Option<Vec<std::ffi::OsString>>,
    /// Handlers this jobmanager has, declared to the router at INFORM so that
    /// it sends only jobs this jobmanager can run (empty: declare none, take
    /// any; what EventMQ jobmanagers do). [`crate::run`] fills it from the
    /// registry.
    pub handlers: Vec<String>,
    /// CURVE: the router's public key and ours (on the router's jobmanager
    /// allowlist). `None` for a plain router.
    pub curve: Option<ClientKeys>,
    /// Where this jobmanager serves `/metrics` and `/healthz`
    /// (`host:port`); `None`: no HTTP server. Read at start only.
    pub http: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            routers: vec![format!("tcp://127.0.0.1:{}", emq_proto::DEFAULT_BACKEND_PORT)],
            queues: vec![(emq_proto::DEFAULT_WEIGHT, emq_proto::DEFAULT_QUEUE.to_string())],
            concurrency: std::thread::available_parallelism().map_or(2, |n| n.get()),
            prefetch: None,
            max_jobs: 0,
            max_rss_bytes: 0,
            default_timeout: Duration::ZERO,
            heartbeat: Duration::from_secs(1),
            liveness: Duration::from_secs(5),
            grace: Duration::from_secs(30),
            reload_from: None,
            handlers: Vec::new(),
            curve: None,
            http: None,
        }
    }
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A value out of range, or a command line (or config file) that does
    /// not parse.
    #[error("invalid jobmanager configuration: {0}")]
    Invalid(String),
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
        if self.prefetch.is_some_and(|p| p > 100_000) {
            return bad("prefetch must be at most 100000");
        }
        if self.heartbeat.is_zero() || self.liveness <= self.heartbeat {
            return bad("liveness must be longer than the (non-zero) heartbeat interval");
        }
        Ok(())
    }
}
