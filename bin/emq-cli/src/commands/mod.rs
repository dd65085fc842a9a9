//! One file per command: its arguments, what it does, what it prints.

pub mod admin;
pub mod bulk;
pub mod cancel;
pub mod graph;
pub mod keys;
pub mod queue;
pub mod result;
pub mod schedule;
pub mod send;
pub mod status;
pub mod watch;

use std::time::Duration;

use clap::Args;
use emq_client::Job;

use crate::exit::Failure;

/// How a job is sent: `send` and `bulk` share these.
#[derive(Args, Debug, Clone)]
pub struct JobOpts {
    /// Queue to send to.
    #[arg(short, long, default_value = "default")]
    pub queue: String,
    /// Kill the job after this many seconds on its worker.
    #[arg(long)]
    pub timeout: Option<f64>,
    /// Retries after a failed attempt [default: none for an ordinary job; for
    /// a guaranteed job the router's --default-retries, 3 unless set there].
    #[arg(long)]
    pub retries: Option<u32>,
    /// Have the router journal the job before acknowledging it, and retry it
    /// (with backoff) until it succeeds or runs out of attempts.
    #[arg(long)]
    pub guarantee: bool,
    /// Encode the body as MessagePack instead of JSON (emq jobmanagers only).
    #[arg(long)]
    pub msgpack: bool,
    /// Start the job no sooner than this after the router accepts it (30s,
    /// 5m, 1h30m, 1d...). The router journals it until then.
    #[arg(long, value_parser = emq_cmd::duration, conflicts_with = "at")]
    pub delay: Option<Duration>,
    /// Start the job no sooner than this time (RFC 3339, e.g.
    /// 2026-12-01T10:00:00Z). The router journals it until then.
    #[arg(long, value_parser = timestamp)]
    pub at: Option<jiff::Timestamp>,
    /// If the job has not started this long after the router accepts it
    /// (30s, 5m...), it never runs: it ends EXPIRED.
    #[arg(long, value_parser = emq_cmd::duration, conflicts_with = "expires_at")]
    pub expires: Option<Duration>,
    /// If the job has not started by this time (RFC 3339), it never runs.
    #[arg(long, value_parser = timestamp)]
    pub expires_at: Option<jiff::Timestamp>,
    /// Coalesce by KEY: replace the job of that key waiting in the queue,
    /// if any (it ends SUPERSEDED); a running one is not touched.
    #[arg(long, value_name = "KEY", conflicts_with = "unique")]
    pub coalesce: Option<String>,
    /// Unique by KEY: while a job of that key waits or runs in the queue,
    /// send nothing new: that job is the answer (its id is printed).
    #[arg(long, value_name = "KEY")]
    pub unique: Option<String>,
}

/// An RFC 3339 time, for clap.
fn timestamp(s: &str) -> Result<jiff::Timestamp, String> {
    s.parse()
        .map_err(|_| format!("{s:?}: expected an RFC 3339 time with its offset, e.g. 2026-12-01T10:00:00Z"))
}

/// Seconds from the command line as a duration.
pub fn secs(what: &str, s: f64) -> Result<Duration, Failure> {
    Duration::try_from_secs_f64(s).map_err(|e| Failure::usage(format!("{what} {s}: {e}")))
}

impl JobOpts {
    /// `job` with these options.
    pub fn apply(&self, mut job: Job) -> Result<Job, Failure> {
        job = job.queue(&self.queue).guarantee(self.guarantee);
        if let Some(n) = self.retries {
            job = job.retries(n);
        }
        if let Some(t) = self.timeout {
            job = job.timeout(secs("--timeout", t)?);
        }
        if self.msgpack {
            job = job.msgpack();
        }
        if let Some(d) = self.delay {
            job = job.delay(d);
        }
        if let Some(t) = self.at {
            job = job.at(t.into());
        }
        if let Some(d) = self.expires {
            job = job.expires(d);
        }
        if let Some(t) = self.expires_at {
            job = job.expires_at(t.into());
        }
        if let Some(k) = &self.coalesce {
            job = job.coalesce(k);
        }
        if let Some(k) = &self.unique {
            job = job.unique(k);
        }
        Ok(job)
    }

    /// Whether the job waits for a time before it may start.
    pub fn is_delayed(&self) -> bool {
        self.delay.is_some_and(|d| !d.is_zero()) || self.at.is_some_and(|t| t > jiff::Timestamp::now())
    }
}
