//! Guaranteed jobs: journaled before they are acknowledged, retried with
//! exponential backoff and jitter when an attempt fails or its jobmanager
//! dies, dead-lettered past their maximum attempts, tracked with a status log
//! until their retention passes, and restored after a router restart.
//!
//! Everything here only changes state and queues [`StoreOp`]s; the transport
//! commits those (one transaction per batch) before it sends any message that
//! was produced with them, so an ACK never leaves before its journal entry is
//! durable.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use emq_proto::views::{timestamp_ms, DeadJob, DeadList, Discarded, JobDetail, LogEntry};
use emq_proto::{
    ContentType, ErrorCode, Headers, JobResult, JobState, Message, Outcome, Reply, ReplyNotice, ResultFrames,
};
use log::{info, warn};

use super::jobs::{Job, JobKey, Place, ResultTo};
use super::{Carries, Endpoint, Outgoing, PeerId, Router};
use crate::journal::{CorruptRow, Row, StoreOp, Table};
use crate::tracking::{rows, JobBody, JobRecord, StoredOutcome};
use crate::{HashMap, HashSet};

/// The state a new guaranteed job enters.
pub(super) enum Entry {
    /// Its queue.
    Queue,
    /// A timer, until this time (ms since the Unix epoch).
    WaitUntil(i64),
    /// Blocked (a graph's node waiting for its parents), saying for what.
    Blocked(String),
}

/// A guaranteed job as read back from the journal.
struct Loaded {
    /// The key of its rows as loaded.
    row: String,
    record: JobRecord,
    /// Its body's row, encoded.
    body: Option<Row>,
}

/// What the router keeps about guaranteed jobs besides the jobs themselves.
pub(crate) struct Guaranteed {
    /// Every guaranteed job, pending or finished (until its retention passes).
    tracked: HashMap<JobKey, JobRecord>,
    /// Dead-lettered jobs with their bodies, for RETRY.
    dead: HashMap<JobKey, Box<Job>>,
    /// Ended jobs (not dead-lettered) by the time their retention ends;
    /// at most `result_capacity` of them, the oldest purged first.
    purge: VecDeque<(Instant, JobKey)>,
    /// Dead-lettered jobs by the time their retention ends: never purged
    /// early, so that a flood of finished jobs does not take them before
    /// an operator has seen them.
    purge_dead: VecDeque<(Instant, JobKey)>,
    /// Ended jobs taken off `purge` for its capacity while their result
    /// was still owed to an unreachable client: kept for their retention.
    purge_owed: VecDeque<(Instant, JobKey)>,
    /// Acceptance order, journaled so that a restart re-queues in order.
    accepted_seq: u64,
    /// Results whose client was unreachable, resent at every heartbeat
    /// until delivered or the job is purged.
    redeliver: Vec<Outgoing>,
    /// The jobs of `redeliver`'s results: the capacity purge asks for each
    /// ended job, and a mass disconnect can owe many thousands.
    owed: HashSet<JobKey>,
}

impl Guaranteed {
    pub(super) fn new(hasher: crate::Hasher) -> Guaranteed {
        Guaranteed {
            tracked: HashMap::with_hasher(hasher.clone()),
            dead: HashMap::with_hasher(hasher.clone()),
            owed: HashSet::with_hasher(hasher),
            purge: VecDeque::new(),
            purge_dead: VecDeque::new(),
            purge_owed: VecDeque::new(),
            accepted_seq: 0,
            redeliver: Vec::new(),
        }
    }

    /// A tracked job's record, if it has one.
    pub(super) fn record(&self, key: &JobKey) -> Option<&JobRecord> {
        self.tracked.get(key)
    }

    pub(super) fn is_tracked(&self, id: &JobKey) -> bool {
        self.tracked.contains_key(id)
    }

    pub(super) fn next_purge(&self) -> Option<Instant> {
        [&self.purge, &self.purge_dead, &self.purge_owed]
            .into_iter()
            .filter_map(|q| q.front().map(|(at, _)| *at))
            .min()
    }

    /// An ended job whose retention has passed by `now`, and whether it
    /// was queued dead-lettered.
    fn pop_due(&mut self, now: Instant) -> Option<(JobKey, bool)> {
        let due = |(at, _): &mut (Instant, JobKey)| *at <= now;
        if let Some((_, key)) = self.purge.pop_front_if(due) {
            return Some((key, false));
        }
        if let Some((_, key)) = self.purge_owed.pop_front_if(due) {
            return Some((key, false));
        }
        self.purge_dead.pop_front_if(due).map(|(_, key)| (key, true))
    }

    /// Queue an ended job (`status`) for purging at `at`.
    fn purge_at(&mut self, at: Instant, key: JobKey, status: JobState) {
        if status == JobState::Dead {
            self.purge_dead.push_back((at, key));
        } else {
            self.purge.push_back((at, key));
        }
    }

    pub(super) fn redeliver_later(&mut self, out: Outgoing) {
        if let Carries::Result { of, .. } = &out.carries {
            self.owed.insert(of.clone());
        }
        self.redeliver.push(out);
    }

    /// The results to send again, handed over whole (what fails again
    /// comes back through `redeliver_later`).
    fn take_redeliveries(&mut self) -> Vec<Outgoing> {
        self.owed.clear();
        std::mem::take(&mut self.redeliver)
    }

    /// Whether job `key`'s result waits to be sent again to its client.
    fn awaits_redelivery(&self, key: &JobKey) -> bool {
        self.owed.contains(key)
    }
}

impl Router {
    /// Journal job `key`'s record (and its body, the first time).
    /// `body`: its body row (`tracking::rows::body`), when it is new.
    fn persist(&mut self, key: &JobKey, body: Option<Vec<u8>>) {
        if let Some(record) = self.guaranteed.tracked.get(key) {
            let row = record.row_key();
            if let Some(body) = body {
                self.store_ops.push(StoreOp::put_row(Table::Bodies, row.as_str(), body));
            }
            self.store_ops
                .push(StoreOp::put_row(Table::Records, row, rows::record(record)));
        }
    }

    /// Remove job `key` (tracked) from the journal and from tracking.
    fn untrack(&mut self, key: &JobKey) {
        if let Some(record) = self.guaranteed.tracked.remove(key) {
            self.unjournal(record.row_key());
        }
    }

    /// Remove the rows under journal key `row`.
    fn unjournal(&mut self, row: String) {
        self.store_ops.push(StoreOp::delete(Table::Bodies, row.as_str()));
        self.store_ops.push(StoreOp::delete(Table::Records, row));
    }

    /// Which failures of a guaranteed job the router retries: those another
    /// attempt may survive (failed, crashed, timeout) and an unknown handler
    /// (during a rolling deploy the next jobmanager may have it). A body no
    /// jobmanager can decode (bad-request) and a cancellation are final.
    pub(super) fn retried_when_guaranteed(outcome: Outcome) -> bool {
        outcome.is_retryable() || outcome == Outcome::UnknownHandler
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

    /// A new guaranteed job: journal it (with its body) and track it, in
    /// the state `entry` says; `origin`: where it came from, for its log.
    pub(super) fn accept_guaranteed(&mut self, key: &JobKey, job: &Job, entry: Entry, origin: String) {
        self.guaranteed.accepted_seq += 1;
        let not_before = match entry {
            Entry::WaitUntil(t) => Some(t),
            _ => None,
        };
        let mut record = JobRecord {
            id: Some(key.to_text()),
            queue: job.queue.to_string(),
            client: job.client.0.clone(),
            accepted_seq: self.guaranteed.accepted_seq,
            attempts: 0,
            max_attempts: job.max_attempts as u32,
            status: JobState::Accepted,
            log: Vec::new(),
            result: None,
            finished_unix_ms: None,
            not_before_unix_ms: not_before,
            flow: job.extra.as_deref().and_then(super::flow::JobExtra::as_headers),
        };
        let at = self.wall_ms;
        record.push_log(at, JobState::Accepted, origin);
        match entry {
            Entry::WaitUntil(t) => record.push_log(
                at,
                JobState::Scheduled,
                format!("waits until {} for queue {}", timestamp_ms(t), job.queue),
            ),
            Entry::Queue => record.push_log(at, JobState::Queued, format!("queued in {}", job.queue)),
            Entry::Blocked(why) => record.push_log(at, JobState::Blocked, why),
        }
        self.guaranteed.tracked.insert(key.clone(), record);
        self.persist(key, Some(rows::body(&job.headers, &job.body)));
    }

    /// A graph's node was released by its parents: journaled (with its new
    /// body, when its parents' results were added to it) in the batch of
    /// the parent's end.
    pub(super) fn track_released(&mut self, key: &JobKey, queue: &str, new_body: Option<Vec<u8>>) {
        let at = self.wall_ms;
        let Some(r) = self.guaranteed.tracked.get_mut(key) else {
            return;
        };
        r.push_log(at, JobState::Queued, format!("parents ended: queued in {queue}"));
        let body = new_body.map(|body| rows::body(self.jobs.get(key).map_or("", |j| &j.headers), &body));
        self.persist(key, body);
    }

    /// Forget a tracked job, here and in the journal.
    pub(super) fn forget_tracked(&mut self, key: &JobKey) {
        self.guaranteed.dead.remove(key);
        self.untrack(key);
    }

    /// A delayed job's time came: it enters its queue (logged, not
    /// journaled: a restart queues a job whose time has passed anyway).
    pub(super) fn track_due(&mut self, key: &JobKey) {
        let at = self.wall_ms;
        if let Some(r) = self.guaranteed.tracked.get_mut(key) {
            let queue = r.queue.clone();
            r.push_log(at, JobState::Queued, format!("due: queued in {queue}"));
        }
    }

    /// A guaranteed job was sent to a jobmanager (logged, not journaled: a
    /// restart re-queues whatever was running anyway).
    pub(super) fn track_dispatch(&mut self, key: &JobKey, attempt: u16, max: u16, peer: &PeerId) {
        let at = self.wall_ms;
        if let Some(r) = self.guaranteed.tracked.get_mut(key) {
            r.attempts = attempt as u32;
            // Sized at once: `format!` grew it for the identity.
            let peer = peer.text();
            let mut line = String::with_capacity(48 + peer.len());
            let _ = write!(line, "attempt {attempt} of {max} on jobmanager {peer}");
            r.push_log(at, JobState::Running, line);
        }
    }

    /// Exponential backoff with ±25% jitter, capped.
    fn backoff(&mut self, attempt: u16) -> Duration {
        let exp = self
            .config
            .retry_backoff
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
        let base = exp.min(self.config.retry_backoff_max);
        // xorshift64 from the seed: no clock or OS randomness here.
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        let jitter = 0.75 + (x % 1000) as f64 / 2000.0;
        base.mul_f64(jitter)
    }

    /// Put a job back in its queue after a backoff, counting the failed attempt.
    pub(super) fn retry_later(&mut self, now: Instant, key: JobKey, job: Box<Job>, why: &str) {
        let delay = self.backoff(job.attempts);
        info!("job {key} attempt {} {why}: retrying in {delay:?}", job.attempts);
        self.note_retry(&key, &job, delay.as_millis());
        if job.guarantee {
            let at = self.wall_ms;
            if let Some(r) = self.guaranteed.tracked.get_mut(&key) {
                r.push_log(
                    at,
                    JobState::Queued,
                    format!("attempt {} {why}; retry in {} ms", job.attempts, delay.as_millis()),
                );
            }
            self.persist(&key, None);
        }
        self.jobs.insert(key.clone(), job);
        self.delay(key, now + delay);
    }

    /// Record a guaranteed job's end: FINISHED, FAILED, DEAD or CANCELLED.
    pub(super) fn track_finish(&mut self, now: Instant, key: &JobKey, job: &Job, result: &ResultFrames) {
        let status = match result.outcome {
            o if Self::retried_when_guaranteed(o) => JobState::Dead,
            o => super::clients::ended(o),
        };
        let at = self.wall_ms;
        let error = match result.outcome {
            Outcome::Ok => String::new(),
            o => JobResult::decode_body(o, &result.body, result.content_type)
                .ok()
                .and_then(|r| r.error)
                .unwrap_or_default(),
        };
        let message = match status {
            JobState::Finished => format!("finished after {} attempt(s)", job.attempts),
            JobState::Dead => format!(
                "dead-lettered after {} attempt(s): {}: {error}",
                job.attempts,
                result.outcome.as_str()
            ),
            _ => format!("{}: {error}", result.outcome.as_str()),
        };
        let fired = self
            .guaranteed
            .tracked
            .get(key)
            .is_some_and(|r| r.client == super::schedules::SCHEDULER_PEER);
        if fired && self.fired_job_ended(key, status, &error) && status != JobState::Dead {
            // Its outcome is in its schedule's row: nobody else asks for it.
            self.untrack(key);
            return;
        }
        if let Some(r) = self.guaranteed.tracked.get_mut(key) {
            r.attempts = r.attempts.max(u32::from(job.attempts));
            r.push_log(at, status, message);
            r.result = Some(StoredOutcome::from_frames(result));
            r.finished_unix_ms = Some(at);
        }
        self.persist(key, None);
        // A graph's node is kept as long as its graph.
        if !self.graph_node_ended(key, status) {
            let at = now + self.config.result_retention;
            self.guaranteed.purge_at(at, key.clone(), status);
            self.purge_over_capacity();
        }
        if status == JobState::Dead {
            warn!("job {key} dead-lettered after {} attempt(s)", job.attempts);
        }
    }

    /// A dead-lettered job keeps its body (for RETRY) until it is purged.
    pub(super) fn keep_if_dead(&mut self, key: &JobKey, job: Box<Job>) {
        if self
            .guaranteed
            .tracked
            .get(key)
            .is_some_and(|r| r.status == JobState::Dead)
        {
            self.guaranteed.dead.insert(key.clone(), job);
        }
    }

    /// Forget ended jobs whose retention has passed, here and in the store.
    pub(super) fn purge_expired(&mut self, now: Instant) {
        while let Some((key, dead)) = self.guaranteed.pop_due(now) {
            self.purge_ended(&key, dead);
        }
    }

    /// Forget the oldest ended jobs beyond `result_capacity` (dead-lettered
    /// ones excepted): at 50,000 guaranteed jobs a second the retention
    /// alone would keep millions of records, in memory and in the journal.
    /// A job whose result still waits for its client (unreachable when it
    /// was sent) is owed: it leaves the count and is kept until its
    /// retention ends. Returns how many it forgot.
    fn purge_over_capacity(&mut self) -> usize {
        let mut purged = 0;
        while self.guaranteed.purge.len() > self.config.result_capacity {
            let (at, key) = self.guaranteed.purge.pop_front().expect("over capacity");
            if self.guaranteed.awaits_redelivery(&key) {
                self.guaranteed.purge_owed.push_back((at, key));
            } else {
                purged += usize::from(self.purge_ended(&key, false));
            }
        }
        purged
    }

    /// Forget job `key` if it is still in the state it was queued for
    /// purging in (`dead`, or ended otherwise): a dead job retried since is
    /// not final any more, or has ended again and was queued again.
    fn purge_ended(&mut self, key: &JobKey, dead: bool) -> bool {
        let still = self
            .guaranteed
            .tracked
            .get(key)
            .is_some_and(|r| r.status.is_final() && (r.status == JobState::Dead) == dead);
        if still {
            self.guaranteed.dead.remove(key);
            self.untrack(key);
        }
        still
    }

    /// Send again the results whose client was unreachable, for jobs still
    /// tracked (every heartbeat).
    pub(super) fn redeliver_results(&mut self) {
        for out in self.guaranteed.take_redeliveries() {
            if let Carries::Result { of, .. } = &out.carries {
                if self.guaranteed.tracked.contains_key(of) {
                    self.push_alone(out);
                }
            }
        }
    }

    /// The JOB answer for a tracked job, with its log.
    pub(super) fn tracked_job_message(&self, of: &JobKey) -> Option<Message> {
        let r = self.guaranteed.tracked.get(of)?;
        let flow_headers = Headers::parse(r.flow.as_deref().unwrap_or(""));
        let jobmanager = match self.jobs.get(of).map(|j| &j.place) {
            Some(Place::Running { jobmanager, .. }) => Some(jobmanager.to_string()),
            _ => None,
        };
        let log = r
            .log
            .iter()
            .map(|e| LogEntry {
                time: timestamp_ms(e.unix_ms),
                status: e.status,
                message: e.message.clone(),
            })
            .collect();
        Some(Message::Job {
            of: of.to_text(),
            state: r.status,
            detail: Box::new(JobDetail {
                queue: r.queue.clone(),
                guaranteed: true,
                attempts: Some(r.attempts),
                max_attempts: Some(r.max_attempts),
                jobmanager,
                not_before: r.not_before_unix_ms.map(timestamp_ms),
                expires: flow_headers
                    .expires
                    .as_ref()
                    .and_then(|t| t.resolve(0).ok())
                    .map(timestamp_ms),
                key: flow_headers.key.as_ref().map(emq_proto::JobKeyHeader::encode),
                log,
                ..JobDetail::default()
            }),
            result: r.result.as_ref().map(|o| o.to_frames(&of.text())),
        })
    }

    /// DEAD: the dead-letter set, in acceptance order.
    pub(super) fn dead_list(&self) -> DeadList {
        let mut dead: Vec<(&JobKey, &JobRecord)> = self
            .guaranteed
            .tracked
            .iter()
            .filter(|(_, r)| r.status == JobState::Dead)
            .collect();
        dead.sort_by_key(|(_, r)| r.accepted_seq);
        DeadList {
            dead: dead
                .into_iter()
                .map(|(id, r)| DeadJob {
                    id: id.to_text(),
                    queue: r.queue.clone(),
                    attempts: r.attempts,
                    last: r.log.last().map(|e| e.message.clone()),
                })
                .collect(),
        }
    }

    /// RETRY: a dead-lettered job goes back to its queue with fresh attempts.
    pub(super) fn retry_dead(&mut self, now: Instant, peer: &PeerId, of: &str) {
        let key = JobKey::from(of);
        if let Some(graph) = self.graph_of(&key) {
            let reason =
                format!("job {of} belongs to graph {graph}, which has moved on without it: submit the graph again");
            return self.error(Endpoint::Admin, peer, of, ErrorCode::WrongState, &reason);
        }
        let Some(mut job) = self.guaranteed.dead.remove(&key) else {
            let (code, reason) = match self.state_of(of) {
                Some(state) => (
                    ErrorCode::WrongState,
                    format!("job {of} is {state}: only a dead-lettered job can be retried"),
                ),
                None => (
                    ErrorCode::UnknownJob,
                    format!("no job {of} (never seen, or its result has expired)"),
                ),
            };
            return self.error(Endpoint::Admin, peer, of, code, &reason);
        };
        job.attempts = 0;
        let at = self.wall_ms;
        if let Some(r) = self.guaranteed.tracked.get_mut(&key) {
            r.attempts = 0;
            r.result = None;
            r.finished_unix_ms = None;
            r.push_log(
                at,
                JobState::Queued,
                format!("re-queued from the dead-letter set by {peer}"),
            );
        }
        self.persist(&key, None);
        let queue = job.queue.clone();
        self.jobs.insert(key.clone(), job);
        self.enqueue(&key, false);
        self.dispatch_queue(now, &queue);
        self.answer_query(Endpoint::Admin, peer, of);
    }

    /// A dead-lettered job, body and all.
    pub(super) fn dead_job(&self, of: &JobKey) -> Option<&Job> {
        self.guaranteed.dead.get(of).map(|j| &**j)
    }

    /// DISCARD: drop a dead-lettered job for good, here and in the journal.
    pub(super) fn discard_dead(&mut self, peer: &PeerId, of: &str) {
        let key = JobKey::from(of);
        if let Some(graph) = self.graph_of(&key) {
            let reason =
                format!("job {of} belongs to graph {graph}: it goes with the graph when the graph's retention ends");
            return self.error(Endpoint::Admin, peer, of, ErrorCode::WrongState, &reason);
        }
        let Some(job) = self.guaranteed.dead.get(&key) else {
            let (code, reason) = match self.state_of(of) {
                Some(state) => (
                    ErrorCode::WrongState,
                    format!("job {of} is {state}: only a dead-lettered job can be discarded"),
                ),
                None => (
                    ErrorCode::UnknownJob,
                    format!("no job {of} (never seen, or its result has expired)"),
                ),
            };
            return self.error(Endpoint::Admin, peer, of, code, &reason);
        };
        let view = Discarded {
            id: of.to_string(),
            queue: job.queue.to_string(),
        };
        self.forget_tracked(&key);
        info!("dead job {of} discarded by {peer}");
        let notice = Message::Reply(Reply::Notice(ReplyNotice::of(&view)));
        self.push(Endpoint::Admin, peer, notice, true, Carries::Other);
    }

    /// After a restart: every stored job that had not finished is queued
    /// again, in the order it was accepted; finished ones are kept for
    /// status, idempotency and their retention. `records` and `bodies` are
    /// the rows of those tables.
    pub(super) fn restore_guaranteed(
        &mut self,
        now: emq_proto::Now,
        records: Vec<Row>,
        bodies: Vec<Row>,
    ) -> Result<(), CorruptRow> {
        let mut bodies: std::collections::HashMap<String, Row> =
            bodies.into_iter().map(|r| (r.key.clone(), r)).collect();
        let mut loaded = Vec::with_capacity(records.len());
        for row in records {
            let record: JobRecord = row.decode()?;
            let body = bodies.remove(&row.key);
            loaded.push(Loaded {
                row: row.key,
                record,
                body,
            });
        }
        // A body without its record (not written by this router) is only
        // taking room.
        for orphan in bodies.into_keys() {
            self.unjournal(orphan);
        }
        let (now, at) = (now.mono, now.unix_ms);
        loaded.sort_by_key(|l| l.record.accepted_seq);
        let top = loaded.last().map_or(0, |l| l.record.accepted_seq);
        self.guaranteed.accepted_seq = self.guaranteed.accepted_seq.max(top);
        let mut seqs = std::collections::HashSet::with_capacity(loaded.len());
        let (mut requeued, mut delayed, mut kept, mut blocked_nodes) = (0usize, 0usize, 0usize, 0usize);
        for Loaded { row, mut record, body } in loaded {
            // A row keyed by its msgid (an older journal), or one whose
            // acceptance number another row has, moves to its own key in
            // arrival order: the old rows go in the same commit.
            let id = record.id.get_or_insert_with(|| row.clone()).clone();
            if !seqs.insert(record.accepted_seq) {
                self.guaranteed.accepted_seq += 1;
                record.accepted_seq = self.guaranteed.accepted_seq;
            }
            let moved = row != record.row_key();
            if moved {
                self.unjournal(row);
            }
            let key: JobKey = id.into();
            let body = match body {
                Some(b) => {
                    let decoded = b.decode::<JobBody>()?;
                    if moved {
                        let value = b.value;
                        self.store_ops.push(StoreOp::Put {
                            table: Table::Bodies,
                            key: record.row_key(),
                            value,
                        });
                    }
                    Some(decoded)
                }
                None => None,
            };
            let needs_body = !record.status.is_final() || record.status == JobState::Dead;
            let job = match (needs_body, body) {
                (true, Some(b)) => {
                    let headers = Headers::parse(&b.headers);
                    let client = self.intern(super::PeerId(record.client.clone()));
                    let queue = self.queues.entry(&record.queue).name.clone();
                    Some(Box::new(Job {
                        client,
                        queue,
                        result_to: ResultTo::of(&headers),
                        headers: self.shared_headers(b.headers),
                        body: b.body.into_boxed_slice(),
                        guarantee: true,
                        handler: super::handlers::HandlerId::UNREAD,
                        attempts: record.attempts.min(u16::MAX as u32) as u16,
                        max_attempts: record.max_attempts.min(u16::MAX as u32) as u16,
                        // Ready again from the restart.
                        ready: super::observe::Stamp::at(self.started, now),
                        place: Place::Waiting,
                        extra: self
                            .job_extra(&Headers::parse(record.flow.as_deref().unwrap_or("")))
                            .ok()
                            .flatten(),
                    }))
                }
                (true, None) => {
                    warn!("stored job {key} has no body: cannot run it again, dropping it");
                    self.unjournal(record.row_key());
                    continue;
                }
                (false, _) => None,
            };
            if !record.status.is_final() {
                let job = job.expect("pending jobs have a body");
                if let Some(extra) = &job.extra {
                    self.hold_flow(&key, &job.queue.clone(), extra, record.attempts > 0);
                }
                let blocked = record.status == JobState::Blocked;
                self.jobs.insert(key.clone(), job);
                let wait = record.not_before_unix_ms.map_or(0, |t| t.saturating_sub(at));
                if blocked {
                    // A graph's node still waiting for its parents: its
                    // graph releases it (`restore_graph_progress`).
                    if let Some(job) = self.jobs.get_mut(&key) {
                        job.place = Place::Blocked;
                    }
                    self.guaranteed.tracked.insert(key.clone(), record);
                    if moved {
                        self.persist(&key, None);
                    }
                    blocked_nodes += 1;
                    continue;
                } else if wait > 0 && record.attempts == 0 {
                    record.push_log(at, JobState::Scheduled, "router restarted: waits for its time again");
                    self.delay(key.clone(), now + Duration::from_millis(wait as u64));
                    delayed += 1;
                } else {
                    record.push_log(at, JobState::Queued, "router restarted: queued again");
                    self.enqueue(&key, false);
                    requeued += 1;
                }
                self.guaranteed.tracked.insert(key.clone(), record);
                self.persist(&key, None);
            } else {
                let finished = record.finished_unix_ms.unwrap_or(at);
                let age = Duration::from_millis(at.saturating_sub(finished).max(0) as u64);
                let expires = now + self.config.result_retention.saturating_sub(age);
                if let Some(job) = job.filter(|_| record.status == JobState::Dead) {
                    self.guaranteed.dead.insert(key.clone(), job);
                }
                // A graph's node is purged with its graph.
                if !self.graphs.owns(&key) {
                    self.guaranteed.purge_at(expires, key.clone(), record.status);
                }
                self.guaranteed.tracked.insert(key.clone(), record);
                if moved {
                    self.persist(&key, None);
                }
                kept += 1;
            }
        }
        self.guaranteed.purge.make_contiguous().sort_by_key(|(at, _)| *at);
        self.guaranteed.purge_dead.make_contiguous().sort_by_key(|(at, _)| *at);
        kept = kept.saturating_sub(self.purge_over_capacity());
        if requeued + delayed + kept + blocked_nodes > 0 {
            info!(
                "restored from the journal: {requeued} unfinished guaranteed job(s) queued again, \
                 {delayed} delayed job(s) waiting for their time, {blocked_nodes} graph job(s) waiting \
                 for their parents, {kept} finished one(s) kept"
            );
        }
        Ok(())
    }

    /// A result for a guaranteed job that finished earlier (resubmitted msgid).
    pub(super) fn resend_tracked(&mut self, client: &PeerId, key: &JobKey, reply_requested: bool) {
        let Some((key, r)) = self.guaranteed.tracked.get_key_value(key) else {
            return;
        };
        let key = key.clone();
        let result = r.result.as_ref().map(|o| o.to_frames(&key.text()));
        let carries = Carries::Result {
            of: key.clone(),
            queue: r.queue.as_str().into(),
        };
        let ack = Message::Ack {
            of: key.to_text(),
            timing: None,
            admission: None,
            capabilities: Default::default(),
        };
        self.send_journaled(client, ack, Carries::Other);
        if let (true, Some(result)) = (reply_requested, result) {
            self.send_journaled(client, Message::Reply(Reply::Result(result)), carries);
        }
    }

    /// The result reported for a job whose jobmanager died on its last attempt.
    pub(super) fn lost_with_jobmanager(key: &JobKey, peer: &PeerId, attempts: u16) -> ResultFrames {
        let msg = format!("jobmanager {peer} was lost while running it (attempt {attempts})");
        ResultFrames {
            of: key.to_text(),
            outcome: Outcome::Crashed,
            content_type: ContentType::Json,
            body: JobResult::failed(Outcome::Crashed, msg).encode_body(ContentType::Json),
        }
    }
}
