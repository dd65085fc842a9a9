//! What the router tells the outside about its work: the event stream
//! (protocol.md section 17) and the per-queue counters and time histograms
//! behind `/metrics` and STATUS. Every job and fleet transition calls one
//! `note_*` method here, which counts it and, when events are on, writes
//! its event.
//!
//! Events are encoded here, into a buffer that the transport swaps out
//! ([`Router::swap_events`]) and publishes, a burst at a time, after the
//! journal commit they follow: an event never describes what a crash could
//! undo. What each transition costs: a counter always (STATUS shows them);
//! the time histograms only with `--http` (nothing else reads them); an
//! encoded event only with `--events` and someone subscribed (otherwise it
//! only takes its sequence number).

use std::rc::Rc;
use std::time::{Duration, Instant};

use emq_proto::events::{Event, EventKind};
use emq_proto::views::QueueCounts;
use emq_proto::{JobManagerState, Outcome};
use strum::VariantArray;

use super::jobs::{Job, JobKey};
use super::{PeerId, Router};
use crate::metrics::QueueTimes;
use crate::HashMap;

/// Largest body or result that `--events-bodies` puts into an event;
/// bigger ones are left out (the job is still in its events).
pub(super) const MAX_EVENT_BODY: usize = 64 * 1024;

/// Events encoded and not yet published, as the messages they go out in:
/// one per topic (`KIND QUEUE`), each an envelope written in place as its
/// events come, so that publishing copies nothing. The transport and the
/// core swap two of these back and forth; each keeps its allocations.
#[derive(Debug, Default)]
pub struct EventBurst {
    /// Messages; those from `used` on are spare, kept for their memory.
    groups: Vec<TopicGroup>,
    used: usize,
    events: usize,
    /// Bytes of the envelopes so far.
    bytes: usize,
}

#[derive(Debug, Default)]
struct TopicGroup {
    kind: Option<EventKind>,
    topic: Vec<u8>,
    /// Where the queue starts in `topic`.
    queue_at: usize,
    envelope: Vec<u8>,
    events: usize,
}

impl EventBurst {
    /// Events in the burst.
    pub fn len(&self) -> usize {
        self.events
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.events == 0
    }

    /// Bytes encoded so far.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The message for events of `kind` and `queue`, opened if new.
    #[inline]
    fn group(&mut self, router: &str, kind: EventKind, queue: Option<&str>) -> &mut TopicGroup {
        let queue_bytes = queue.unwrap_or("").as_bytes();
        let found = self.groups[..self.used]
            .iter()
            .position(|g| g.kind == Some(kind) && &g.topic[g.queue_at..] == queue_bytes);
        let i = match found {
            Some(i) => i,
            None => {
                if self.used == self.groups.len() {
                    self.groups.push(TopicGroup::default());
                }
                let g = &mut self.groups[self.used];
                g.kind = Some(kind);
                g.topic.clear();
                g.topic.extend_from_slice(kind.as_str().as_bytes());
                g.topic.push(b' ');
                g.queue_at = g.topic.len();
                g.topic.extend_from_slice(queue_bytes);
                g.envelope.clear();
                emq_proto::events::open_envelope(&mut g.envelope, router, kind, queue);
                g.events = 0;
                self.used += 1;
                self.used - 1
            }
        };
        &mut self.groups[i]
    }

    /// Close every message as part of burst number `burst`; then
    /// [`EventBurst::messages`] are ready to send.
    pub fn close(&mut self, burst: u64) {
        let parts = self.used as u32;
        for (part, g) in self.groups[..self.used].iter_mut().enumerate() {
            emq_proto::events::close_envelope(&mut g.envelope, burst, part as u32, parts);
        }
    }

    /// Each message's topic and envelope frames.
    pub fn messages(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.groups[..self.used]
            .iter()
            .map(|g| (g.topic.as_slice(), g.envelope.as_slice()))
    }

    /// Empty it, keeping its memory.
    pub fn clear(&mut self) {
        self.used = 0;
        self.events = 0;
        self.bytes = 0;
    }
}

/// The event stream's state.
#[derive(Debug)]
struct EventLog {
    /// The router instance, in every message.
    instance: String,
    /// Bodies and results go into events (`--events-bodies`).
    bodies: bool,
    seq: u64,
    /// Someone subscribes: with nobody, events are numbered, not encoded.
    wanted: bool,
    burst: EventBurst,
    /// The latest event time and its decimal text: events come many to a
    /// millisecond.
    time_text: (i64, Vec<u8>),
}

/// One queue's counters and times.
#[derive(Debug, Default)]
struct QueueMetrics {
    submitted: u64,
    /// Ends by outcome, indexed like `Outcome::VARIANTS`.
    finished: [u64; Outcome::VARIANTS.len()],
    dead: u64,
    retried: u64,
    abandoned: u64,
    deduplicated: u64,
    times: QueueTimes,
}

/// Counters per queue and the event log.
#[derive(Debug)]
pub(super) struct Observer {
    events: Option<EventLog>,
    /// The time histograms are kept (someone can read them: `--http`).
    timing: bool,
    queues: HashMap<Rc<str>, QueueMetrics>,
}

impl Observer {
    pub(super) fn new(events: bool, bodies: bool, timing: bool, instance: String, hasher: crate::Hasher) -> Observer {
        Observer {
            timing,
            events: events.then(|| EventLog {
                instance,
                bodies,
                seq: 0,
                wanted: true,
                burst: EventBurst::default(),
                time_text: (i64::MIN, Vec::new()),
            }),
            queues: HashMap::with_hasher(hasher),
        }
    }

    #[inline]
    fn queue(&mut self, name: &Rc<str>) -> &mut QueueMetrics {
        // One lookup; cloning the shared name only bumps its count.
        self.queues.entry(name.clone()).or_default()
    }

    /// The counters of `queue` as STATUS shows them.
    pub(super) fn counts(&self, queue: &str) -> QueueCounts {
        let Some(m) = self.queues.get(queue) else {
            return QueueCounts::default();
        };
        QueueCounts {
            submitted: m.submitted,
            finished: Outcome::VARIANTS
                .iter()
                .zip(m.finished)
                .filter(|(_, n)| *n > 0)
                .map(|(o, n)| (o.as_str().to_string(), n))
                .collect(),
            dead: m.dead,
            retried: m.retried,
            abandoned: m.abandoned,
            deduplicated: m.deduplicated,
        }
    }

    /// Every queue's time histograms.
    pub(super) fn times(&self) -> impl Iterator<Item = (&str, &QueueTimes)> {
        self.queues.iter().map(|(q, m)| (&**q, &m.times))
    }

    /// Events published so far (the last sequence number).
    pub(super) fn events_seq(&self) -> u64 {
        self.events.as_ref().map_or(0, |e| e.seq)
    }
}

/// A moment on the router's clock (microseconds since it started) in 48
/// bits, as two fields that pack beside a job's other small fields, so
/// that a job is no bigger for carrying it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C, packed(2))]
pub(crate) struct Stamp {
    low: u32,
    high: u16,
}

impl Stamp {
    /// `now` on the clock of a router started at `started`.
    #[inline]
    pub(super) fn at(started: Instant, now: Instant) -> Stamp {
        let us = now.saturating_duration_since(started).as_micros() as u64;
        Stamp {
            low: us as u32,
            high: (us >> 32) as u16,
        }
    }

    fn micros(self) -> u64 {
        (u64::from(self.high) << 32) | u64::from(self.low)
    }

    /// Seconds from this moment to `now`.
    #[inline]
    fn seconds_until(self, started: Instant, now: Instant) -> f64 {
        Stamp::at(started, now).micros().saturating_sub(self.micros()) as f64 / 1e6
    }
}

impl Router {
    /// Encode one event, if events are on: `fill` sets what its kind
    /// carries.
    #[inline]
    fn emit<'f>(&mut self, kind: EventKind, fill: impl FnOnce(&mut Event<'f>)) {
        let Some(log) = self.observer.events.as_mut() else {
            return;
        };
        log.seq += 1;
        if !log.wanted {
            return;
        }
        // The router instance goes in each message's envelope, not in
        // every event.
        let mut event: Event<'f> = Event::new(log.seq, "", self.wall_ms, kind);
        fill(&mut event);
        if log.time_text.0 != self.wall_ms {
            log.time_text.0 = self.wall_ms;
            log.time_text.1.clear();
            emq_proto::events::write_i64(&mut log.time_text.1, self.wall_ms);
        }
        let group = log.burst.group(&log.instance, kind, event.queue.as_deref());
        let before = group.envelope.len();
        if group.events > 0 {
            group.envelope.push(b',');
        }
        event.write_in_envelope(&mut group.envelope, Some(&log.time_text.1));
        group.events += 1;
        let grown = group.envelope.len() - before;
        log.burst.events += 1;
        log.burst.bytes += grown;
    }

    /// Hand the transport the events encoded so far, taking back its empty
    /// burst (no allocation in the steady state).
    pub fn swap_events(&mut self, empty: &mut EventBurst) {
        if let Some(log) = self.observer.events.as_mut() {
            std::mem::swap(&mut log.burst, empty);
        }
    }

    /// What `/metrics` shows now; `stats` are the transport's own figures.
    pub fn metrics_snapshot(
        &self,
        now: emq_proto::Now,
        mut stats: crate::metrics::LoopStats,
    ) -> crate::metrics::Snapshot {
        stats.events = self.observer.events_seq();
        crate::metrics::Snapshot {
            status: self.status_view(now.mono),
            times: self.observer.times().map(|(q, t)| (q.to_string(), t.clone())).collect(),
            stats,
        }
    }

    /// Events encoded and not yet taken by [`Router::swap_events`].
    pub fn pending_events(&self) -> usize {
        self.observer.events.as_ref().map_or(0, |e| e.burst.len())
    }

    /// Bytes of the events not yet taken.
    pub fn pending_event_bytes(&self) -> usize {
        self.observer.events.as_ref().map_or(0, |e| e.burst.bytes())
    }

    /// Whether events carry bodies (`--events-bodies`).
    fn event_bodies(&self) -> bool {
        self.observer.events.as_ref().is_some_and(|e| e.bodies)
    }

    /// Whether anyone subscribes to the events (the transport knows): with
    /// nobody, events still take their sequence numbers but are not
    /// encoded.
    pub fn set_events_wanted(&mut self, wanted: bool) {
        if let Some(log) = self.observer.events.as_mut() {
            log.wanted = wanted;
        }
    }

    /// How long `job` has been ready to run, when the router keeps times
    /// (`--http`).
    pub(super) fn since_ready(&self, now: Instant, job: &Job) -> Option<Duration> {
        self.observer
            .timing
            .then(|| Duration::from_secs_f64(job.ready.seconds_until(self.started, now)))
    }

    /// Whether events are on.
    pub fn events_on(&self) -> bool {
        self.observer.events.is_some()
    }

    /// A job was accepted: it is ready from now (a delayed job again when
    /// its time comes).
    pub(super) fn note_submitted(&mut self, now: Instant, key: &JobKey, job: &mut Job, origin: Option<&str>) {
        if self.observer.timing {
            job.ready = Stamp::at(self.started, now);
        }
        self.observer.queue(&job.queue).submitted += 1;
        let bodies = self.event_bodies();
        self.emit(EventKind::Submitted, |e| {
            e.job = Some(key.into());
            e.queue = Some((*job.queue).into());
            e.origin = origin.map(Into::into);
            if bodies && job.body.len() <= MAX_EVENT_BODY {
                e.set_body(&job.body);
            }
        });
    }

    /// A `unique` submission `msgid` was answered with live job `holder`.
    pub(super) fn note_deduplicated(&mut self, msgid: &str, holder: &JobKey) {
        let queue = self.jobs.get(holder).map(|j| j.queue.clone());
        if let Some(q) = &queue {
            self.observer.queue(q).deduplicated += 1;
        }
        self.emit(EventKind::Deduplicated, |e| {
            e.job = Some(msgid.into());
            e.queue = queue.as_deref().map(Into::into);
            e.detail = Some(holder.into());
        });
    }

    /// Attempt `job.attempts` of `key` went to `peer`.
    #[inline]
    pub(super) fn note_dispatched(
        &mut self,
        now: Instant,
        key: &JobKey,
        queue: &Rc<str>,
        attempt: u16,
        ready: Stamp,
        peer: &PeerId,
    ) {
        if attempt == 1 && self.observer.timing {
            let waited = ready.seconds_until(self.started, now);
            self.observer.queue(queue).times.waiting.observe(waited);
        }
        if self.observer.events.is_some() {
            self.emit(EventKind::Dispatched, |e| {
                e.job = Some(key.into());
                e.queue = Some((**queue).into());
                e.jobmanager = Some(peer.text());
                e.attempt = Some(u32::from(attempt));
            });
        }
    }

    /// A job ended with `outcome`; `dead`: a guaranteed job dead-lettered.
    /// `result` is the result's body (events with bodies carry it).
    pub(super) fn note_ended(
        &mut self,
        now: Instant,
        key: &JobKey,
        job: &Job,
        outcome: Outcome,
        dead: bool,
        result: &[u8],
    ) {
        let (started, timing) = (self.started, self.observer.timing);
        let m = self.observer.queue(&job.queue);
        m.finished[outcome as usize] += 1;
        m.dead += u64::from(dead);
        if timing {
            m.times.end_to_end.observe(job.ready.seconds_until(started, now));
            if let super::jobs::Place::Running { since, .. } = &job.place {
                m.times.run.observe_duration(now.saturating_duration_since(*since));
            }
        }
        let bodies = self.event_bodies();
        self.emit(EventKind::of_outcome(outcome, dead), |e| {
            e.job = Some(key.into());
            e.queue = Some((*job.queue).into());
            e.attempt = Some(u32::from(job.attempts));
            e.outcome = Some(outcome);
            if bodies && result.len() <= MAX_EVENT_BODY {
                e.set_body(result);
            }
        });
    }

    /// A guaranteed job's failed attempt will be retried after `delay_ms`.
    pub(super) fn note_retry(&mut self, key: &JobKey, job: &Job, delay_ms: u128) {
        self.observer.queue(&job.queue).retried += 1;
        self.emit(EventKind::Retry, |e| {
            e.job = Some(key.into());
            e.queue = Some((*job.queue).into());
            e.attempt = Some(u32::from(job.attempts));
            e.detail = Some(delay_ms.to_string().into());
        });
    }

    /// `job`'s jobmanager `peer` was lost while it ran.
    pub(super) fn note_abandoned(&mut self, key: &JobKey, job: &Job, peer: &PeerId) {
        self.observer.queue(&job.queue).abandoned += 1;
        if self.observer.events.is_some() {
            self.emit(EventKind::Abandoned, |e| {
                e.job = Some(key.into());
                e.queue = Some((*job.queue).into());
                e.jobmanager = Some(peer.text());
                e.attempt = Some(u32::from(job.attempts));
            });
        }
    }

    /// Schedule `name` fired job `key`.
    pub(super) fn note_fired(&mut self, name: &str, key: &JobKey, queue: &str) {
        self.emit(EventKind::ScheduleFired, |e| {
            e.job = Some(key.into());
            e.queue = Some(queue.into());
            e.origin = Some(name.into());
        });
    }

    /// Graph `id` was accepted (`Submitted`) or ended (`Ended`, in `state`).
    pub(super) fn note_graph(&mut self, kind: EventKind, id: &str, nodes: usize, state: Option<&str>) {
        self.emit(kind, |e| {
            e.origin = Some(id.into());
            e.detail = Some(match state {
                Some(s) => s.into(),
                None => format!("{nodes} nodes").into(),
            });
        });
    }

    /// A jobmanager joined, left (`why`) or reported a new state.
    pub(super) fn note_jobmanager(
        &mut self,
        kind: EventKind,
        peer: &PeerId,
        queues: &[(i64, String)],
        state: Option<JobManagerState>,
        why: Option<&str>,
    ) {
        if self.observer.events.is_none() {
            return;
        }
        let queues = queues.iter().map(|(_, q)| q.as_str()).collect::<Vec<_>>().join(",");
        self.emit(kind, |e| {
            e.jobmanager = Some(peer.text());
            e.queue = Some(queues.into());
            e.state = state;
            e.detail = why.map(Into::into);
        });
    }
}
