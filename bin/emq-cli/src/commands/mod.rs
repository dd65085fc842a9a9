//! One file per command: its arguments, what it does, what it prints.

pub mod admin;
pub mod bulk;
pub mod cancel;
pub mod keys;
pub mod result;
pub mod send;
pub mod status;

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
        Ok(job)
    }
}
