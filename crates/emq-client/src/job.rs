//! What a caller submits ([`Job`]) and what it gets back ([`JobOutput`]).

use std::fmt;
use std::time::Duration;

use emq_proto::{ContentType, Headers, JobCall, JobKeyHeader, TimeSpec, Value};

/// A job's id: the msgid of its REQUEST (a uuid4 string).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId(pub String);

impl JobId {
    /// A fresh id: a random uuid string, as EventMQ makes msgids.
    #[allow(clippy::new_without_default)]
    pub fn new() -> JobId {
        JobId(emq_proto::uuid_text(emq_net::random_seed()))
    }
}

/// Fresh ids for many jobs: counting from one random seed, so a batch of
/// ids costs one draw from the OS, not one each (ids are as unique as
/// [`JobId::new`]'s; ids of one batch are consecutive).
#[derive(Debug, Clone)]
pub struct JobIds(emq_proto::MsgIds);

impl JobIds {
    /// Ids counting from a fresh random seed.
    #[allow(clippy::new_without_default)]
    pub fn new() -> JobIds {
        JobIds(emq_proto::MsgIds::from_seed(emq_net::random_seed()))
    }
}

impl Iterator for JobIds {
    type Item = JobId;

    fn next(&mut self) -> Option<JobId> {
        Some(JobId(self.0.next()))
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A job to submit: a handler call plus routing and delivery options.
#[derive(Debug, Clone)]
pub struct Job {
    /// The handler and its arguments.
    pub call: JobCall,
    /// The queue it goes to.
    pub queue: String,
    /// Killed after this long on the worker (whole seconds on the wire).
    pub timeout: Option<Duration>,
    /// Retries after a failed attempt.
    pub retries: u32,
    /// Ask the router to journal it and acknowledge the submission.
    pub guarantee: bool,
    /// Ask for the result to be sent back (on by default).
    pub reply: bool,
    /// The body's encoding.
    pub content_type: ContentType,
    /// Use this id instead of a fresh one (resubmitting the same id does not
    /// run the job twice).
    pub id: Option<JobId>,
    /// Not to start before this (a delayed job: journaled and acknowledged
    /// like a guaranteed one).
    pub not_before: Option<TimeSpec>,
    /// Not to start after this: it ends EXPIRED instead.
    pub expires: Option<TimeSpec>,
    /// Its `coalesce` or `unique` key.
    pub key: Option<JobKeyHeader>,
}

impl Job {
    /// A job calling `handler`, on the default queue, with the result sent back.
    pub fn new(handler: impl Into<String>) -> Job {
        Job {
            call: JobCall::new(handler),
            queue: emq_proto::DEFAULT_QUEUE.to_string(),
            timeout: None,
            retries: 0,
            guarantee: false,
            reply: true,
            content_type: ContentType::Json,
            id: None,
            not_before: None,
            expires: None,
            key: None,
        }
    }

    /// A job running a program through the `emq.exec` built-in.
    pub fn exec<S: Into<String>>(argv: impl IntoIterator<Item = S>) -> Job {
        let argv: Vec<Value> = argv.into_iter().map(|s| Value::String(s.into())).collect();
        Job::new("emq.exec").kwarg("argv", Value::Array(argv))
    }

    /// Add a positional argument.
    pub fn arg(mut self, v: impl Into<Value>) -> Job {
        self.call.args.push(v.into());
        self
    }

    /// Add positional arguments.
    pub fn args(mut self, v: impl IntoIterator<Item = Value>) -> Job {
        self.call.args.extend(v);
        self
    }

    /// Add a keyword argument.
    pub fn kwarg(mut self, k: impl Into<String>, v: impl Into<Value>) -> Job {
        self.call.kwargs.insert(k.into(), v.into());
        self
    }

    /// Send it to queue `q`.
    pub fn queue(mut self, q: impl Into<String>) -> Job {
        self.queue = q.into();
        self
    }

    /// Kill it after `t` on its worker (rounded up to whole seconds).
    pub fn timeout(mut self, t: Duration) -> Job {
        self.timeout = Some(t);
        self
    }

    /// Allow `n` retries after a failed attempt.
    pub fn retries(mut self, n: u32) -> Job {
        self.retries = n;
        self
    }

    /// Have the router journal it and acknowledge the submission.
    pub fn guarantee(mut self, yes: bool) -> Job {
        self.guarantee = yes;
        self
    }

    /// Ask for the result to be sent back (the default).
    pub fn reply(mut self, yes: bool) -> Job {
        self.reply = yes;
        self
    }

    /// Encode the body as MessagePack.
    pub fn msgpack(mut self) -> Job {
        self.content_type = ContentType::MsgPack;
        self
    }

    /// Submit under this id (resubmitting an id never runs a job twice).
    pub fn with_id(mut self, id: JobId) -> Job {
        self.id = Some(id);
        self
    }

    /// Start it no sooner than `d` after the router accepts it (millisecond
    /// precision). The router journals it until then.
    pub fn delay(mut self, d: Duration) -> Job {
        self.not_before = Some(TimeSpec::After(Duration::from_millis(
            u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
        )));
        self
    }

    /// Start it no sooner than `t` (millisecond precision; a time already
    /// past runs it now). The router journals it until then.
    pub fn at(mut self, t: std::time::SystemTime) -> Job {
        self.not_before = Some(TimeSpec::At(unix_ms(t)));
        self
    }

    /// Not to start later than `d` after the router accepts it: if it has
    /// not started by then it ends EXPIRED and never runs.
    pub fn expires(mut self, d: Duration) -> Job {
        self.expires = Some(TimeSpec::After(d));
        self
    }

    /// Not to start after `t`: it ends EXPIRED instead.
    pub fn expires_at(mut self, t: std::time::SystemTime) -> Job {
        self.expires = Some(TimeSpec::At(unix_ms(t)));
        self
    }

    /// Coalesce by `key`: this job replaces the job of that key waiting in
    /// its queue, if any (which ends SUPERSEDED); a running one is not
    /// touched.
    pub fn coalesce(mut self, key: impl Into<String>) -> Job {
        self.key = Some(JobKeyHeader::Coalesce(key.into()));
        self
    }

    /// Unique by `key`: while a job of that key waits or runs in its queue,
    /// submitting this one returns that job instead of making another.
    pub fn unique(mut self, key: impl Into<String>) -> Job {
        self.key = Some(JobKeyHeader::Unique(key.into()));
        self
    }

    /// Whether the router acknowledges it (guaranteed, delayed or keyed).
    pub(crate) fn is_acknowledged(&self) -> bool {
        self.guarantee || self.not_before.is_some() || self.key.is_some()
    }

    pub(crate) fn headers(&self) -> Headers {
        Headers {
            reply_requested: self.reply,
            guarantee: self.guarantee,
            retry_count: self.retries,
            // Round up: a 1.5 s timeout must not become 1 s.
            timeout_secs: self
                .timeout
                .map_or(0, |t| t.as_secs() + u64::from(t.subsec_nanos() > 0)),
            content_type: self.content_type,
            not_before: self.not_before.clone(),
            expires: self.expires.clone(),
            key: self.key.clone(),
            // This client reads BATCHes: results may come several at once.
            batch_reply: true,
            other: Vec::new(),
        }
    }
}

/// Milliseconds since the Unix epoch.
fn unix_ms(t: std::time::SystemTime) -> i64 {
    match t.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

/// A successful job's output.
#[derive(Debug, Clone, PartialEq)]
pub struct JobOutput {
    /// The job.
    pub id: JobId,
    /// What its handler returned.
    pub value: Value,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_of_a_batch_are_distinct_uuids_and_batches_differ() {
        let a: Vec<JobId> = JobIds::new().take(1000).collect();
        let b: Vec<JobId> = JobIds::new().take(1000).collect();
        let all: std::collections::HashSet<&str> = a.iter().chain(&b).map(|id| id.0.as_str()).collect();
        assert_eq!(all.len(), 2000);
        assert!(all.iter().all(|id| id.len() == 36 && id.as_bytes()[8] == b'-'));
    }
}
