//! Router configuration: endpoints, timing and bounds, validated once at start.

use std::path::PathBuf;
use std::time::Duration;

pub use crate::gate::Security;

/// What to do with a job for a queue that no jobmanager serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownQueuePolicy {
    /// Keep it in that queue's waiting buffer until someone serves the queue.
    Wait,
    /// EventMQ's behaviour: rewrite the queue to `default`.
    Reroute,
}

/// Where the router journals.
#[derive(Debug, Clone, PartialEq)]
pub enum Journal {
    /// A redb file of this router's own.
    File(PathBuf),
    /// A Postgres database, shared by an active router and its standbys.
    Postgres(PostgresJournal),
}

impl Journal {
    /// `postgres://...` or `postgresql://...` is a database; anything else a
    /// file path.
    pub fn parse(text: &str) -> Journal {
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            Journal::Postgres(PostgresJournal::new(text))
        } else {
            Journal::File(PathBuf::from(text))
        }
    }
}

/// A journal in Postgres, with the lease that makes one router active.
#[derive(Debug, Clone, PartialEq)]
pub struct PostgresJournal {
    /// libpq-style URL (`postgres://user@host/db`, `?host=/run/dir` for a
    /// unix socket).
    pub url: String,
    /// How long a lease lasts without renewal: a dead active router's
    /// standby takes over this long after its last renewal at most.
    pub lease: Duration,
    /// This router's name among those sharing the database (status, logs).
    pub name: String,
}

impl PostgresJournal {
    /// The defaults for `url`: a 2 s lease, named after the host and pid.
    pub fn new(url: &str) -> PostgresJournal {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        PostgresJournal {
            url: url.to_string(),
            lease: Duration::from_secs(2),
            name: format!("{}:{}", host.trim(), std::process::id()),
        }
    }
}

/// The router's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where clients connect (ZeroMQ endpoint to bind).
    pub frontend: String,
    /// Where jobmanagers connect.
    pub backend: String,
    /// Where admin tools connect; the only endpoint that takes admin commands.
    pub admin: String,
    /// How often the router sends HEARTBEAT to each jobmanager.
    pub heartbeat: Duration,
    /// Shortest silence after which a jobmanager is declared dead. A peer that
    /// announces a slower heartbeat gets twice its interval instead.
    pub liveness: Duration,
    /// Heartbeat interval assumed for peers that announce none (EventMQ: 3 s).
    pub assumed_peer_heartbeat: Duration,
    /// Jobs that may wait in one queue's buffer; past it the client gets
    /// `ERROR queue-full`.
    pub max_waiting_per_queue: usize,
    /// Jobs that may wait across all queues.
    pub max_waiting_total: usize,
    /// Jobs that may wait for a time (delayed jobs and retries backing off);
    /// past it a delayed job gets `ERROR queue-full`.
    pub max_delayed: usize,
    /// Most nodes one graph may have.
    pub max_graph_nodes: usize,
    /// Graph jobs that may wait for their parents, across all graphs; past
    /// it a graph gets `ERROR queue-full`.
    pub max_blocked: usize,
    /// Flow control set at start for these queues (pause, concurrency,
    /// rate); it wins over what the journal holds for the settings it names.
    pub queue_controls: Vec<(String, emq_proto::views::QueueChange)>,
    /// What to do with a job for a queue no jobmanager serves.
    pub unknown_queue: UnknownQueuePolicy,
    /// Queues given to a jobmanager whose INFORM names none.
    pub default_queues: Vec<(i64, String)>,
    /// How long a finished job's result is kept for lookup by msgid.
    pub result_retention: Duration,
    /// Most results kept at once; the oldest go first. Ordinary results and
    /// ended guaranteed jobs' records count apart; dead-lettered jobs, and
    /// those whose result is owed to an unreachable client, not.
    pub result_capacity: usize,
    /// After a restart (or a takeover) on a journal with state, how long
    /// nothing is dispatched: jobmanagers reconnecting with results of runs
    /// the last incarnation started (dispatches are not journaled), and
    /// clients sending again what it had not journaled, are heard first, so
    /// that those jobs do not run twice.
    pub restore_grace: Duration,
    /// Largest frame accepted from any peer.
    pub max_frame: usize,
    /// Largest message (all its frames together) accepted from any peer.
    pub max_message: usize,
    /// Where guaranteed jobs (and everything else durable) are journaled.
    /// `None` keeps them in memory only: still retried and tracked, but lost
    /// with the router.
    pub journal: Option<Journal>,
    /// Retries for jobs whose headers give no `retry-count` (guaranteed jobs
    /// retry failed attempts; every job is redelivered after its jobmanager
    /// dies at most this many times).
    pub default_retries: u32,
    /// First retry delay of a guaranteed job; doubles per attempt, with ±25%
    /// jitter.
    pub retry_backoff: Duration,
    /// Longest retry delay.
    pub retry_backoff_max: Duration,
    /// CURVE on every endpoint, with per-endpoint allowlists. `None`: plain
    /// ZeroMQ (NULL mechanism), which only loopback should use.
    pub security: Option<Security>,
    /// Where the event stream is published (a PUB socket); `None`: no
    /// events.
    pub events: Option<String>,
    /// Events carry job bodies and results.
    pub events_bodies: bool,
    /// Event messages (one per topic per burst) queued per subscriber
    /// before that subscriber loses some.
    pub events_hwm: i32,
    /// Where `/metrics` and `/healthz` are served (`host:port`); `None`: no
    /// HTTP server.
    pub http: Option<String>,
    /// The web dashboard on the HTTP server; `None`: no dashboard.
    pub dashboard: Option<DashboardConfig>,
    /// Most open connections per endpoint; further ones are refused during
    /// their handshake (ZAP status 500).
    pub max_connections: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            frontend: format!("tcp://127.0.0.1:{}", emq_proto::DEFAULT_FRONTEND_PORT),
            backend: format!("tcp://127.0.0.1:{}", emq_proto::DEFAULT_BACKEND_PORT),
            admin: format!("tcp://127.0.0.1:{}", emq_proto::DEFAULT_ADMIN_PORT),
            heartbeat: Duration::from_secs(1),
            liveness: Duration::from_secs(5),
            assumed_peer_heartbeat: Duration::from_secs(3),
            max_waiting_per_queue: 1_000_000,
            max_waiting_total: 4_000_000,
            max_delayed: 1_000_000,
            max_graph_nodes: emq_proto::graph::DEFAULT_MAX_GRAPH_NODES,
            max_blocked: 1_000_000,
            queue_controls: Vec::new(),
            unknown_queue: UnknownQueuePolicy::Wait,
            default_queues: vec![(emq_proto::DEFAULT_WEIGHT, emq_proto::DEFAULT_QUEUE.to_string())],
            result_retention: Duration::from_secs(600),
            result_capacity: 100_000,
            restore_grace: Duration::from_secs(1),
            max_frame: emq_proto::DEFAULT_MAX_FRAME,
            max_message: 4 * emq_proto::DEFAULT_MAX_FRAME,
            journal: None,
            default_retries: 3,
            retry_backoff: Duration::from_millis(100),
            retry_backoff_max: Duration::from_secs(60),
            security: None,
            max_connections: 10_000,
            events: None,
            events_bodies: false,
            events_hwm: 1000,
            http: None,
            dashboard: None,
        }
    }
}

/// The web dashboard's settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DashboardConfig {
    /// The admin token that opens a session that may change things;
    /// `None`: the dashboard is read-only for everyone.
    pub token: Option<String>,
}

/// A configuration value out of range.
#[derive(Debug, thiserror::Error)]
#[error("invalid router configuration: {0}")]
pub struct ConfigError(String);

impl Config {
    /// Check ranges and consistency; `run` does.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |s: &str| Err(ConfigError(s.to_string()));
        if self.heartbeat.is_zero() || self.liveness.is_zero() {
            return bad("heartbeat and liveness must be positive");
        }
        if self.liveness <= self.heartbeat {
            return bad("liveness must be longer than the heartbeat interval");
        }
        if self.max_waiting_per_queue == 0
            || self.max_waiting_total == 0
            || self.max_delayed == 0
            || self.max_graph_nodes == 0
            || self.max_blocked == 0
        {
            return bad("waiting bounds must be at least 1");
        }
        if self.default_queues.is_empty() {
            return bad("at least one default queue is needed");
        }
        if self.max_connections == 0 {
            return bad("max_connections must be at least 1");
        }
        if let Some(Journal::Postgres(pg)) = &self.journal {
            if pg.lease < Duration::from_millis(300) {
                return bad("the lease must be at least 300 ms");
            }
            if pg.name.is_empty() {
                return bad("the router name must not be empty");
            }
        }
        if let Some(d) = &self.dashboard {
            if self.http.is_none() {
                return bad("the dashboard is served on the HTTP endpoint: give --http too");
            }
            if d.token
                .as_ref()
                .is_some_and(|t| t.trim().len() < crate::dashboard::MIN_TOKEN)
            {
                return bad("the dashboard token must be at least 16 characters (e.g. `openssl rand -hex 32`)");
            }
        }
        if self.max_message < self.max_frame {
            return bad("the message size limit must be at least the frame size limit");
        }
        Ok(())
    }
}
