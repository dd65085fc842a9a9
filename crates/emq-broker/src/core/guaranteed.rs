//! Guaranteed jobs: journaled before they are acknowledged, retried with
//! exponential backoff and jitter when an attempt fails or its jobmanager
//! dies, dead-lettered past their maximum attempts, tracked with a status log
//! until their retention passes, and restored after a router restart.
//!
//! Everything here only changes state and queues [`StoreOp`]s; the transport
//! commits those (one transaction per batch) before it sends any message that
//! was produced with them, so an ACK never leaves before its journal entry is
//! durable.

use std::cmp::Reverse;
use std::time::{Duration, Instant};

use emq_proto::{ContentType, ErrorCode, Headers, JobResult, Message, Outcome, Reply, ResultFrames};
use log::{info, warn};
use serde_json::json;

use super::{Endpoint, Job, JobKey, JobState, PeerId, Router};
use crate::store::Loaded;
use crate::tracking::{JobBody, JobRecord, Status, StoreOp, StoredOutcome};

impl Router {
    pub(super) fn unix_ms(&self, now: Instant) -> u64 {
        let secs = self.unix_at_start + now.saturating_duration_since(self.started).as_secs_f64();
        (secs * 1000.0) as u64
    }

    fn persist(&mut self, key: &JobKey, body: Option<JobBody>) {
        if let Some(record) = self.tracked.get(key) {
            self.store_ops.push(StoreOp::put(key, record, body.as_ref()));
        }
    }

    /// Store operations to commit before the next flush of outgoing messages.
    pub fn take_store_ops(&mut self) -> Vec<StoreOp> {
        std::mem::take(&mut self.store_ops)
    }

    /// Attempts a job may have: one plus its `retry-count`, or plus the
    /// configured default.
    pub(super) fn max_attempts(&self, headers: &Headers) -> u16 {
        let retries = if headers.retry_count > 0 {
            headers.retry_count
        } else {
            self.config.default_retries
        };
        retries.saturating_add(1).min(u16::MAX as u32) as u16
    }

    /// A new guaranteed job: journal it (with its body) and track it.
    pub(super) fn accept_guaranteed(&mut self, now: Instant, key: &JobKey, job: &Job) {
        self.accepted_seq += 1;
        let mut record = JobRecord {
            queue: job.queue.to_string(),
            client: job.client.0.clone(),
            accepted_seq: self.accepted_seq,
            attempts: 0,
            max_attempts: job.max_attempts as u32,
            status: Status::Accepted,
            log: Vec::new(),
            result: None,
            finished_unix_ms: None,
        };
        let at = self.unix_ms(now);
        record.push_log(at, Status::Accepted, format!("accepted from {}", job.client));
        record.push_log(at, Status::Queued, format!("queued in {}", job.queue));
        self.tracked.insert(key.clone(), record);
        let body = JobBody {
            headers: job.headers.to_string(),
            body: job.body.to_vec(),
        };
        self.persist(key, Some(body));
    }

    /// A guaranteed job was sent to a jobmanager (logged, not journaled: a
    /// restart re-queues whatever was running anyway).
    pub(super) fn track_dispatch(&mut self, now: Instant, key: &JobKey, attempt: u16, max: u16, peer: &PeerId) {
        let at = self.unix_ms(now);
        if let Some(r) = self.tracked.get_mut(key) {
            r.attempts = attempt as u32;
            r.push_log(
                at,
                Status::Running,
                format!("attempt {attempt} of {max} on jobmanager {peer}"),
            );
        }
    }

    /// Exponential backoff with ±25% jitter, capped.
    pub(super) fn backoff(&mut self, attempt: u16) -> Duration {
        let exp = self
            .config
            .retry_backoff
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
        let base = exp.min(self.config.retry_backoff_max);
        // xorshift64: deterministic per router, no clock or OS randomness.
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        let jitter = 0.75 + (x % 1000) as f64 / 2000.0;
        base.mul_f64(jitter)
    }

    /// Put a job back in its queue after `delay`, counting the failed attempt.
    pub(super) fn retry_later(&mut self, now: Instant, key: JobKey, mut job: Box<Job>, why: &str) {
        let delay = self.backoff(job.attempts);
        let until = now + delay;
        info!("job {key} attempt {} {why}: retrying in {delay:?}", job.attempts);
        job.state = JobState::Delayed { until };
        if job.guarantee {
            let at = self.unix_ms(now);
            if let Some(r) = self.tracked.get_mut(&key) {
                r.push_log(
                    at,
                    Status::Queued,
                    format!("attempt {} {why}; retry in {} ms", job.attempts, delay.as_millis()),
                );
            }
            self.persist(&key, None);
        }
        self.delayed.push(Reverse((until, self.seq, key.clone())));
        self.delayed_count += 1;
        self.jobs.insert(key, job);
    }

    /// Move jobs whose backoff is over to the front of their queues.
    pub(super) fn release_delayed(&mut self, now: Instant) {
        let mut touched = Vec::new();
        while let Some(Reverse((until, _, _))) = self.delayed.peek() {
            if *until > now {
                break;
            }
            let Reverse((until, _, key)) = self.delayed.pop().expect("peeked");
            // Cancelled or finished meanwhile: the heap entry is stale.
            let Some(job) = self.jobs.get_mut(&key) else { continue };
            if job.state != (JobState::Delayed { until }) {
                continue;
            }
            job.state = JobState::Waiting;
            self.delayed_count -= 1;
            let queue = job.queue.clone();
            self.queue_mut(&queue).waiting.push_front(key);
            self.waiting_total += 1;
            touched.push(queue);
        }
        for queue in touched {
            self.dispatch_queue(now, &queue);
        }
    }

    /// Record a guaranteed job's end: FINISHED, FAILED, DEAD or CANCELLED.
    pub(super) fn track_finish(&mut self, now: Instant, key: &JobKey, job: &Job, result: &ResultFrames) {
        let status = match result.outcome {
            Outcome::Ok => Status::Finished,
            Outcome::Cancelled => Status::Cancelled,
            o if o.is_retryable() => Status::Dead,
            _ => Status::Failed,
        };
        let at = self.unix_ms(now);
        let error = match result.outcome {
            Outcome::Ok => String::new(),
            o => JobResult::decode_body(o, &result.body, result.content_type)
                .ok()
                .and_then(|r| r.error)
                .unwrap_or_default(),
        };
        let message = match status {
            Status::Finished => format!("finished after {} attempt(s)", job.attempts),
            Status::Dead => format!(
                "dead-lettered after {} attempt(s): {}: {error}",
                job.attempts,
                result.outcome.as_str()
            ),
            _ => format!("{}: {error}", result.outcome.as_str()),
        };
        if let Some(r) = self.tracked.get_mut(key) {
            r.push_log(at, status, message);
            r.result = Some(StoredOutcome::from_frames(result));
            r.finished_unix_ms = Some(at);
        }
        self.persist(key, None);
        self.purge.push_back((now + self.config.result_retention, key.clone()));
        if status == Status::Dead {
            warn!("job {key} dead-lettered after {} attempt(s)", job.attempts);
        }
    }

    /// A dead-lettered job keeps its body (for RETRY) until it is purged.
    pub(super) fn keep_if_dead(&mut self, key: &JobKey, job: Box<Job>) {
        if self.tracked.get(key).is_some_and(|r| r.status == Status::Dead) {
            self.dead.insert(key.clone(), job);
        }
    }

    /// Forget finished jobs whose retention has passed, here and in the store.
    pub(super) fn purge_expired(&mut self, now: Instant) {
        while let Some((at, _)) = self.purge.front() {
            if *at > now {
                break;
            }
            let (_, key) = self.purge.pop_front().expect("peeked");
            // Retried (dead job) since: not final any more, keep it.
            if self.tracked.get(&key).is_some_and(|r| r.status.is_final()) {
                self.tracked.remove(&key);
                self.dead.remove(&key);
                self.store_ops.push(StoreOp::Delete { id: key.to_string() });
            }
        }
    }

    /// The JOB answer for a tracked job, with its log.
    pub(super) fn tracked_job_message(&self, of: &str) -> Option<Message> {
        let r = self.tracked.get(of)?;
        let worker = match self.jobs.get(of).map(|j| &j.state) {
            Some(JobState::Running { worker, .. }) => Some(worker.to_string()),
            _ => None,
        };
        let log: Vec<_> = r
            .log
            .iter()
            .map(|e| json!({"time": format!("{:.3}", e.unix_ms as f64 / 1000.0), "status": e.status.as_str(), "message": e.message}))
            .collect();
        let detail = json!({
            "queue": r.queue,
            "attempts": r.attempts,
            "max_attempts": r.max_attempts,
            "guaranteed": true,
            "jobmanager": worker,
            "log": log,
        });
        Some(Message::Job {
            of: of.to_string(),
            state: r.status.as_str().into(),
            detail: detail.to_string(),
            result: r.result.as_ref().map(|o| o.to_frames(of)),
        })
    }

    /// DEAD: the dead-letter set as JSON.
    pub(super) fn dead_list_json(&self) -> String {
        let mut dead: Vec<(&JobKey, &JobRecord)> =
            self.tracked.iter().filter(|(_, r)| r.status == Status::Dead).collect();
        dead.sort_by_key(|(_, r)| r.accepted_seq);
        let list: Vec<_> = dead
            .iter()
            .map(|(id, r)| {
                json!({
                    "id": &***id,
                    "queue": r.queue,
                    "attempts": r.attempts,
                    "last": r.log.last().map(|e| e.message.clone()),
                })
            })
            .collect();
        json!({ "dead": list }).to_string()
    }

    /// RETRY: a dead-lettered job goes back to its queue with fresh attempts.
    pub(super) fn retry_dead(&mut self, now: Instant, peer: &PeerId, of: &str) {
        let Some((key, mut job)) = self.dead.remove_entry(of) else {
            return self.error(
                Endpoint::Admin,
                peer,
                of,
                ErrorCode::UnknownJob,
                &format!("{of} is not dead-lettered"),
            );
        };
        job.attempts = 0;
        job.state = JobState::Waiting;
        let at = self.unix_ms(now);
        if let Some(r) = self.tracked.get_mut(&key) {
            r.attempts = 0;
            r.result = None;
            r.finished_unix_ms = None;
            r.push_log(
                at,
                Status::Queued,
                format!("re-queued from the dead-letter set by {peer}"),
            );
        }
        self.persist(&key, None);
        let queue = job.queue.clone();
        self.jobs.insert(key.clone(), job);
        self.queue_mut(&queue).waiting.push_back(key);
        self.waiting_total += 1;
        self.dispatch_queue(now, &queue);
        self.answer_query(Endpoint::Admin, peer, of);
    }

    /// After a restart: every stored job that had not finished is queued
    /// again, in the order it was accepted; finished ones are kept for
    /// status, idempotency and their retention.
    pub fn restore(&mut self, now: Instant, mut loaded: Vec<Loaded>) {
        loaded.sort_by_key(|l| l.record.accepted_seq);
        let at = self.unix_ms(now);
        let (mut requeued, mut kept) = (0usize, 0usize);
        for Loaded { id, mut record, body } in loaded {
            self.accepted_seq = self.accepted_seq.max(record.accepted_seq);
            let key: JobKey = id.into();
            let needs_body = !record.status.is_final() || record.status == Status::Dead;
            let job = match (needs_body, body) {
                (true, Some(b)) => {
                    let headers = Headers::parse(&b.headers);
                    let client = self.intern(PeerId(record.client.clone()));
                    let queue = self.queue_mut(&record.queue).name.clone();
                    Some(Box::new(Job {
                        client,
                        queue,
                        reply_requested: headers.reply_requested,
                        headers: self.shared_headers(b.headers),
                        body: b.body.into_boxed_slice(),
                        guarantee: true,
                        attempts: record.attempts.min(u16::MAX as u32) as u16,
                        max_attempts: record.max_attempts.min(u16::MAX as u32) as u16,
                        state: JobState::Waiting,
                    }))
                }
                (true, None) => {
                    warn!("stored job {key} has no body: cannot run it again, dropping it");
                    self.store_ops.push(StoreOp::Delete { id: key.to_string() });
                    continue;
                }
                (false, _) => None,
            };
            if !record.status.is_final() {
                record.push_log(at, Status::Queued, "router restarted: queued again");
                let job = job.expect("pending jobs have a body");
                let queue = job.queue.clone();
                self.jobs.insert(key.clone(), job);
                self.queue_mut(&queue).waiting.push_back(key.clone());
                self.waiting_total += 1;
                self.tracked.insert(key.clone(), record);
                self.persist(&key, None);
                requeued += 1;
            } else {
                let age = Duration::from_millis(at.saturating_sub(record.finished_unix_ms.unwrap_or(at)));
                let expires = now + self.config.result_retention.saturating_sub(age);
                if let Some(job) = job.filter(|_| record.status == Status::Dead) {
                    self.dead.insert(key.clone(), job);
                }
                self.tracked.insert(key.clone(), record);
                self.purge.push_back((expires, key));
                kept += 1;
            }
        }
        self.purge.make_contiguous().sort_by_key(|(at, _)| *at);
        info!("restored {requeued} unfinished guaranteed job(s) and {kept} finished one(s) from the journal");
    }

    /// A result for a guaranteed job that finished earlier (resubmitted msgid).
    pub(super) fn resend_tracked(&mut self, client: &PeerId, key: &str, reply_requested: bool) {
        let Some(r) = self.tracked.get(key) else { return };
        let result = r.result.as_ref().map(|o| o.to_frames(key));
        self.send_journaled(
            client,
            Message::Ack {
                of: key.to_string(),
                timing: None,
            },
        );
        if let (true, Some(result)) = (reply_requested, result) {
            self.send_journaled(client, Message::Reply(Reply::Result(result)));
        }
    }

    /// The result reported for a job whose jobmanager died on its last attempt.
    pub(super) fn lost_with_jobmanager(key: &str, peer: &PeerId, attempts: u16) -> ResultFrames {
        let msg = format!("jobmanager {peer} was lost while running it (attempt {attempts})");
        ResultFrames {
            of: key.to_string(),
            outcome: Outcome::Crashed,
            content_type: ContentType::Json,
            body: JobResult::failed(Outcome::Crashed, msg).encode_body(ContentType::Json),
        }
    }
}
