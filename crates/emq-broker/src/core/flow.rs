//! Flow control: what decides whether a job may be dispatched now, and the
//! keys and expiry times jobs carry.
//!
//! - **Keys** (`coalesce:KEY`, `unique:KEY`, per queue): a coalesce key maps
//!   to its waiting job, which a newer job of the key replaces (the old one
//!   ends SUPERSEDED; the new one takes its place in the queue); a unique key
//!   maps to its live job (waiting, backing off or running), which a new
//!   submission of the key becomes. A key is released when its job leaves
//!   the router, whatever the way (`finish` is the one door out), so a lock
//!   can never outlive its job; the keys of guaranteed jobs are journaled in
//!   their records and rebuilt at restore.
//! - **Expiry** (`expires:SECONDS`, `expires-at:TIME`): a job not started by
//!   then ends EXPIRED and never runs, retries included. One heap by time,
//!   entries going stale when their job starts or ends.
//! - **Queue controls**, journaled (table `queues`): paused, concurrency (most
//!   jobs of the queue running at once, across jobmanagers, counted by
//!   `Queue::running` while the queue has controls), rate (`jobs` per `per_ms`, evenly: a start at most
//!   every `per_ms / jobs`, no bursts). The router enforces them at
//!   dispatch; jobmanagers know nothing of them.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use emq_proto::views::{timestamp_ms, QueueChange, QueueStatus, QueueView, Rate};
use emq_proto::{ContentType, JobResult, Outcome, ResultFrames};
use log::info;
use serde::{Deserialize, Serialize};

use super::jobs::{Job, JobKey, Place};
use super::{PeerId, Router};
use crate::journal::{CorruptRow, Row, StoreOp, Table};
use crate::HashMap;

/// How a job's key works.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) enum KeyMode {
    /// The latest waiting job of the key replaces the one before.
    Coalesce,
    /// One live job per key; a new submission is that job.
    Unique,
}

/// What a few jobs carry beyond the common fields; boxed in `Job::extra`, so
/// that the many jobs without it pay a pointer.
#[derive(Debug, Default)]
pub(crate) struct JobExtra {
    /// Its key, per queue.
    pub key: Option<(KeyMode, Rc<str>)>,
    /// Not to start after this (ms since the Unix epoch).
    pub expires_ms: Option<i64>,
    /// Clients whose `unique` submission became this job and asked for its
    /// result.
    pub also_reply: Vec<Rc<PeerId>>,
}

impl JobExtra {
    fn key_header(&self) -> Option<emq_proto::JobKeyHeader> {
        self.key.as_ref().map(|(mode, k)| match mode {
            KeyMode::Coalesce => emq_proto::JobKeyHeader::Coalesce(k.to_string()),
            KeyMode::Unique => emq_proto::JobKeyHeader::Unique(k.to_string()),
        })
    }

    /// Its key as shown in a job's detail: `coalesce:K` or `unique:K`.
    pub(super) fn key_text(&self) -> Option<String> {
        self.key_header().map(|k| k.encode())
    }

    /// Its key and expiry as headers, for the journal (`None`: neither).
    pub(crate) fn as_headers(&self) -> Option<String> {
        let h = emq_proto::Headers {
            key: self.key_header(),
            expires: self.expires_ms.map(emq_proto::TimeSpec::At),
            ..emq_proto::Headers::default()
        };
        let text = h.encode();
        (!text.is_empty()).then_some(text)
    }
}

/// A queue's flow control as journaled (table `queues`, by queue name).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct QueueControl {
    pub paused: bool,
    pub concurrency: Option<u64>,
    pub rate: Option<Rate>,
}

impl QueueControl {
    fn is_default(&self) -> bool {
        *self == QueueControl::default()
    }
}

/// Why a queue may not dispatch now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Blocked {
    /// Nothing is dispatched yet after a restart (`Router::dispatch_hold`).
    Held,
    Paused,
    Concurrency,
    /// The next rate token comes at this instant.
    Rate(Instant),
}

/// The flow control state of the router.
pub(crate) struct Flow {
    controls: HashMap<String, QueueControl>,
    /// When each rate-limited queue may next start a job; not journaled (a
    /// restart may start one at once).
    tat: HashMap<String, Instant>,
    /// `(mode, queue, key)` -> the job holding it.
    keys: HashMap<(KeyMode, Rc<str>, Rc<str>), JobKey>,
    /// `(expiry ms, job)`, earliest first.
    expiries: BinaryHeap<Reverse<(i64, JobKey)>>,
    /// Queues held back by their rate with jobs waiting: when to try again.
    rate_wait: HashMap<String, Instant>,
    /// Queues whose running count just fell: dispatch them after the event.
    freed: Vec<Rc<str>>,
}

impl Flow {
    pub(super) fn new(hasher: crate::Hasher) -> Flow {
        Flow {
            controls: HashMap::with_hasher(hasher.clone()),
            tat: HashMap::with_hasher(hasher.clone()),
            keys: HashMap::with_hasher(hasher.clone()),
            expiries: BinaryHeap::new(),
            rate_wait: HashMap::with_hasher(hasher),
            freed: Vec::new(),
        }
    }

    /// The control of `queue`, if it has any.
    #[inline]
    pub(super) fn control(&self, queue: &str) -> Option<&QueueControl> {
        if self.controls.is_empty() {
            return None;
        }
        self.controls.get(queue)
    }

    /// The earliest expiry, in ms since the Unix epoch.
    pub(super) fn next_expiry_ms(&self) -> Option<i64> {
        self.expiries.peek().map(|Reverse((at, _))| *at)
    }

    /// When a rate-limited queue may dispatch again.
    pub(super) fn next_rate_wakeup(&self) -> Option<Instant> {
        if self.rate_wait.is_empty() {
            return None;
        }
        self.rate_wait.values().min().copied()
    }

    /// The job holding `key` in `queue`.
    pub(super) fn holder(&self, mode: KeyMode, queue: &Rc<str>, key: &Rc<str>) -> Option<&JobKey> {
        if self.keys.is_empty() {
            return None;
        }
        self.keys.get(&(mode, queue.clone(), key.clone()))
    }

    /// Every key and the job holding it (tests check none outlives its job).
    #[cfg(test)]
    pub(super) fn keys(&self) -> impl Iterator<Item = (&(KeyMode, Rc<str>, Rc<str>), &JobKey)> {
        self.keys.iter()
    }

    fn rate_interval(rate: &Rate) -> Duration {
        Duration::from_millis(rate.per_ms) / rate.jobs.max(1)
    }
}

/// The result of a job that ended without running: `outcome` and why.
fn unrun(of: &JobKey, outcome: Outcome, why: String, value: serde_json::Value) -> ResultFrames {
    let result = JobResult {
        outcome,
        value,
        error: Some(why),
    };
    ResultFrames {
        of: of.to_text(),
        outcome,
        content_type: ContentType::Json,
        body: result.encode_body(ContentType::Json),
    }
}

impl Router {
    /// Whether `queue` may dispatch a job now, and if not, why.
    #[inline]
    pub(super) fn dispatch_blocked(&self, queue: &str, now: Instant) -> Option<Blocked> {
        if self.dispatch_hold.is_some() {
            return Some(Blocked::Held);
        }
        if self.flow.controls.is_empty() {
            return None;
        }
        self.controlled_dispatch_blocked(queue, now)
    }

    fn controlled_dispatch_blocked(&self, queue: &str, now: Instant) -> Option<Blocked> {
        let control = self.flow.control(queue)?;
        if control.paused {
            return Some(Blocked::Paused);
        }
        if let Some(limit) = control.concurrency {
            let running = self.queues.get(queue).map_or(0, |q| q.running);
            if running as u64 >= limit {
                return Some(Blocked::Concurrency);
            }
        }
        if control.rate.is_some() {
            // A job may start once the one before it is an interval behind.
            if let Some(tat) = self.flow.tat.get(queue) {
                if *tat > now {
                    return Some(Blocked::Rate(*tat));
                }
            }
        }
        None
    }

    /// Whether `queue` may dispatch now; when its rate holds it back with
    /// jobs waiting, note when to try again.
    pub(super) fn may_dispatch(&mut self, queue: &str, now: Instant) -> bool {
        match self.dispatch_blocked(queue, now) {
            None => true,
            Some(Blocked::Rate(at)) => {
                self.flow.rate_wait.insert(queue.to_string(), at);
                false
            }
            Some(_) => false,
        }
    }

    /// A job of `queue` was dispatched: count it, take a rate token. (Only
    /// queues with controls count: the others pay nothing here.)
    pub(super) fn count_dispatch(&mut self, queue: &str, now: Instant) {
        let Some(control) = self.flow.control(queue) else {
            return;
        };
        let rate = control.rate;
        if let Some(q) = self.queues.get_mut(queue) {
            q.running += 1;
        }
        if let Some(rate) = rate {
            let interval = Flow::rate_interval(&rate);
            let tat = self.flow.tat.get(queue).copied().unwrap_or(now).max(now);
            self.flow.tat.insert(queue.to_string(), tat + interval);
        }
    }

    /// A job of `queue` stopped running: its queue may dispatch again.
    pub(super) fn count_run_ended(&mut self, queue: &Rc<str>) {
        let Some(control) = self.flow.control(queue) else {
            return;
        };
        let limited = control.concurrency.is_some();
        if let Some(q) = self.queues.get_mut(queue) {
            q.running = q.running.saturating_sub(1);
        }
        if limited && !self.flow.freed.contains(queue) {
            self.flow.freed.push(queue.clone());
        }
    }

    /// After each event: dispatch the queues whose concurrency room grew,
    /// and those whose rate allows again.
    #[inline]
    pub(super) fn dispatch_freed(&mut self, now: Instant) {
        if self.flow.freed.is_empty() && self.flow.rate_wait.is_empty() {
            return;
        }
        self.dispatch_freed_queues(now);
    }

    fn dispatch_freed_queues(&mut self, now: Instant) {
        for queue in std::mem::take(&mut self.flow.freed) {
            self.dispatch_queue(now, &queue);
        }
        if self.flow.rate_wait.is_empty() {
            return;
        }
        let due: Vec<String> = self
            .flow
            .rate_wait
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(q, _)| q.clone())
            .collect();
        for queue in due {
            self.flow.rate_wait.remove(&queue);
            self.dispatch_queue(now, &queue);
        }
    }

    /// The extra state of a new job from its headers; `Err` with the
    /// reason for an unreadable key or expiry.
    pub(super) fn job_extra(&self, headers: &emq_proto::Headers) -> Result<Option<Box<JobExtra>>, String> {
        if headers.key.is_none() && headers.expires.is_none() {
            return Ok(None);
        }
        let key = match &headers.key {
            None => None,
            Some(emq_proto::JobKeyHeader::Coalesce(k)) => Some((KeyMode::Coalesce, Rc::from(k.as_str()))),
            Some(emq_proto::JobKeyHeader::Unique(k)) => Some((KeyMode::Unique, Rc::from(k.as_str()))),
            Some(emq_proto::JobKeyHeader::Unreadable(h)) => {
                return Err(format!(
                    "header {h}: give one of coalesce:KEY or unique:KEY, a key of 1 to 256 characters without control characters"
                ))
            }
        };
        let expires_ms = match &headers.expires {
            None => None,
            Some(t) => Some(t.resolve(self.wall_ms).map_err(|h| {
                format!("header {h}: give expires:SECONDS or expires-at:TIME (RFC 3339, e.g. 2026-12-01T10:00:00Z)")
            })?),
        };
        Ok(Some(Box::new(JobExtra {
            key,
            expires_ms,
            also_reply: Vec::new(),
        })))
    }

    /// Register a job's key and expiry (a new job, or one restored).
    pub(super) fn hold_flow(&mut self, key: &JobKey, queue: &Rc<str>, extra: &JobExtra, started: bool) {
        if let Some((mode, k)) = &extra.key {
            // A coalesce key names the job waiting for its first start only.
            if *mode == KeyMode::Unique || !started {
                self.flow.keys.insert((*mode, queue.clone(), k.clone()), key.clone());
            }
        }
        if let Some(at) = extra.expires_ms {
            self.flow.expiries.push(Reverse((at, key.clone())));
        }
    }

    /// Job `key` is starting: a coalesce key no longer names it.
    pub(super) fn release_coalesce_key(&mut self, key: &JobKey) {
        let Some(job) = self.jobs.get(key) else { return };
        if let Some((KeyMode::Coalesce, k)) = job.extra.as_ref().and_then(|e| e.key.clone()) {
            let queue = job.queue.clone();
            self.release_key(key, KeyMode::Coalesce, &queue, &k);
        }
    }

    fn release_key(&mut self, key: &JobKey, mode: KeyMode, queue: &Rc<str>, k: &Rc<str>) {
        let entry = (mode, queue.clone(), k.clone());
        if self.flow.keys.get(&entry).is_some_and(|holder| holder == key) {
            self.flow.keys.remove(&entry);
        }
    }

    /// A job is leaving the router: its key is free again.
    pub(super) fn release_flow(&mut self, key: &JobKey, job: &Job) {
        if let Some((mode, k)) = job.extra.as_ref().and_then(|e| e.key.clone()) {
            self.release_key(key, mode, &job.queue, &k);
        }
    }

    /// End every job whose expiry has come and that has not started.
    pub(super) fn expire_due(&mut self, now: Instant) {
        while let Some(Reverse((at, _))) = self.flow.expiries.peek() {
            if *at > self.wall_ms {
                return;
            }
            let Some(Reverse((at, key))) = self.flow.expiries.pop() else {
                return;
            };
            let current = self.jobs.get(&key).is_some_and(|j| {
                !matches!(j.place, Place::Running { .. }) && j.extra.as_ref().and_then(|e| e.expires_ms) == Some(at)
            });
            if current {
                let (key, job) = self.jobs.remove_entry(&key).expect("checked above");
                self.detach(&key, &job, None);
                self.finish_expired(now, &key, job);
            }
        }
    }

    /// End `job` (out of the jobs map and its place) as EXPIRED.
    pub(super) fn finish_expired(&mut self, now: Instant, key: &JobKey, job: Box<Job>) {
        let at = job.extra.as_ref().and_then(|e| e.expires_ms).unwrap_or(self.wall_ms);
        info!("job {key} expired (not started by {})", timestamp_ms(at));
        let result = unrun(
            key,
            Outcome::Expired,
            format!("not started by {}: expired", timestamp_ms(at)),
            serde_json::Value::Null,
        );
        self.finish(now, key, job, result, false);
    }

    /// End waiting job `old` as SUPERSEDED by `by`. A plain job's result is
    /// not kept (only a client waiting for it hears of it): coalescing keeps
    /// memory in proportion to keys, not to submissions.
    pub(super) fn finish_superseded(&mut self, now: Instant, old: &JobKey, job: Box<Job>, by: &JobKey) {
        let value = serde_json::json!({ "superseded_by": by.to_text() });
        let result = unrun(old, Outcome::Superseded, format!("superseded by {by}"), value);
        if job.guarantee {
            self.finish(now, old, job, result, false);
            return;
        }
        self.release_flow(old, &job);
        if job.result_to.requested() {
            let carries = super::Carries::Result {
                of: old.clone(),
                queue: job.queue.clone(),
            };
            let reply = emq_proto::Message::Reply(emq_proto::Reply::Result(result));
            self.push(super::Endpoint::Frontend, &job.client, reply, false, carries);
        }
    }

    /// The job whose `unique` key a new submission of `queue` carries, if
    /// one lives.
    pub(super) fn unique_holder(&self, queue: &Rc<str>, extra: Option<&JobExtra>) -> Option<JobKey> {
        let (KeyMode::Unique, k) = extra?.key.as_ref()? else {
            return None;
        };
        let holder = self.flow.holder(KeyMode::Unique, queue, k)?;
        (self.jobs.contains_key(holder)).then(|| holder.clone())
    }

    /// The waiting job a new `coalesce` submission of `queue` replaces.
    pub(super) fn coalesce_holder(&self, queue: &Rc<str>, extra: Option<&JobExtra>) -> Option<JobKey> {
        let (KeyMode::Coalesce, k) = extra?.key.as_ref()? else {
            return None;
        };
        let holder = self.flow.holder(KeyMode::Coalesce, queue, k)?;
        self.jobs.get(holder).filter(|j| j.is_waiting()).map(|_| holder.clone())
    }

    /// QUEUE_SET: change `queue`'s controls, journal them, answer with the
    /// queue.
    pub(super) fn set_queue_control(
        &mut self,
        now: Instant,
        queue: &str,
        change: &QueueChange,
    ) -> Result<QueueView, String> {
        if let Some(rate) = &change.rate {
            if rate.jobs > 0 && rate.per_ms == 0 {
                return Err("a rate's period must be longer than zero".into());
            }
        }
        let mut control = self.flow.controls.get(queue).cloned().unwrap_or_default();
        if let Some(p) = change.paused {
            control.paused = p;
        }
        if let Some(c) = change.concurrency {
            control.concurrency = (c > 0).then_some(c);
        }
        if let Some(r) = change.rate {
            control.rate = (r.jobs > 0).then_some(r);
            self.flow.tat.remove(queue);
        }
        self.apply_queue_control(queue, control);
        self.dispatch_queue(now, queue);
        Ok(self.queue_view(queue))
    }

    /// Make `control` the queue's and journal it.
    fn apply_queue_control(&mut self, queue: &str, control: QueueControl) {
        if control.is_default() {
            self.flow.controls.remove(queue);
            self.flow.rate_wait.remove(queue);
            self.store_ops.push(StoreOp::delete(Table::Queues, queue));
        } else {
            self.store_ops.push(StoreOp::put(Table::Queues, queue, &control));
            info!("queue {queue:?}: {control:?}");
            self.flow.controls.insert(queue.to_string(), control);
        }
        // Only queues with controls count their running jobs as they go:
        // start from the truth.
        let running = self.running_in(queue);
        self.queues.entry(queue).running = running;
    }

    /// Jobs of `queue` running now, counted the slow way.
    fn running_in(&self, queue: &str) -> usize {
        self.jobs
            .values()
            .filter(|j| &*j.queue == queue && matches!(j.place, Place::Running { .. }))
            .count()
    }

    /// The queue controls journaled before a restart, then those of the
    /// configuration, which win for the queues and settings they name.
    pub(super) fn restore_queue_controls(&mut self, rows: Vec<Row>) -> Result<(), CorruptRow> {
        for row in rows {
            let control: QueueControl = row.decode()?;
            self.queues.entry(&row.key);
            self.flow.controls.insert(row.key, control);
        }
        for (queue, change) in self.config.queue_controls.clone() {
            let mut control = self.flow.controls.get(&queue).cloned().unwrap_or_default();
            if let Some(c) = change.concurrency {
                control.concurrency = (c > 0).then_some(c);
            }
            if let Some(r) = change.rate {
                control.rate = (r.jobs > 0).then_some(r);
            }
            if let Some(p) = change.paused {
                control.paused = p;
            }
            if self.flow.controls.get(&queue) != Some(&control) {
                self.apply_queue_control(&queue, control);
            }
        }
        Ok(())
    }

    /// One queue's view: its counts and controls.
    pub(super) fn queue_view(&self, queue: &str) -> QueueView {
        QueueView {
            queue: queue.to_string(),
            status: self.queue_status(queue, self.running_in(queue) as u64),
        }
    }

    /// One queue's status, given how many of its jobs run.
    pub(super) fn queue_status(&self, queue: &str, running: u64) -> QueueStatus {
        let q = self.queues.get(queue);
        let control = self.flow.control(queue).cloned().unwrap_or_default();
        QueueStatus {
            waiting: q.map_or(0, |q| q.waiting_len() as u64),
            running,
            processed: q.map_or(0, |q| q.processed),
            jobmanagers: q.map_or_else(Vec::new, |q| {
                q.members.iter().map(|m| (m.weight, m.peer.to_string())).collect()
            }),
            paused: control.paused,
            counts: self.observer.counts(queue),
            concurrency: control.concurrency,
            rate: control.rate,
        }
    }
}
