//! Schedules: jobs fired on an interval or at the times of a cron
//! expression, kept in the journal beside guaranteed jobs (table
//! `schedules`, one row per schedule).
//!
//! Slots are wall-clock times in ms since the Unix epoch. An interval
//! schedule's slots are `anchor + k * every` (the anchor is its creation
//! time, journaled, so the phase survives restarts); a cron schedule's are
//! the expression's times in its time zone, as croner computes them on jiff
//! (DST: a time the clock skips fires at the first instant after the gap,
//! a fixed time the clock repeats fires once, a repeating field such as
//! `*/15` fires in both halves of the overlap).
//!
//! Exactly once per slot: firing a slot queues a guaranteed job with the
//! id `sched:NAME:SLOT_MS` and rewrites the schedule's row with its next
//! slot, both in the same batch, which the transport commits in one
//! transaction; the job goes to a jobmanager only after that commit
//! (`after_commit`). After a crash either both are in the journal (the job
//! is restored, the slot is not fired again) or neither is and the job has
//! not run (the slot is due again and fires, or is counted missed).
//!
//! Slots passed while the router was down: `coalesce` (the default) fires
//! once, at restart, for the latest of them; `skip` fires none. Several
//! slots due at once while running (a stalled router, a wall clock stepped
//! forward) fire once, for the latest. Slots not fired are counted in the
//! schedule's `missed_slots`.
//!
//! A fired job is a guaranteed job like any other (retried, dead-lettered)
//! whose client is the router itself; once it ends, its outcome goes to
//! the schedule's row and the job is forgotten (a dead one is kept for
//! RETRY, as usual).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::rc::Rc;
use std::time::Duration;

use emq_proto::views::{timestamp_ms, MissedPolicy, ScheduleAction, ScheduleInfo, ScheduleList, ScheduleSpec};
use emq_proto::{ErrorCode, Headers, JobCall, JobState, Message, Now, Reply, ReplyNotice, ScheduleRequest};
use log::{info, warn};
use serde::{Deserialize, Serialize};

use super::handlers::HandlerId;
use super::jobs::{Job, JobKey, Place, ResultTo};
use super::{Carries, Endpoint, PeerId, Router};
use crate::journal::{CorruptRow, Row, StoreOp, Table};

/// The client identity of fired jobs. ZeroMQ never gives a peer an identity
/// that starts with a zero byte and is this long, so no client can pose as it.
pub(crate) const SCHEDULER_PEER: &[u8] = b"\0emq-schedules";

/// Schedules fired in one tick at most. Smaller slices were measured to
/// send the last of ten thousand simultaneous fires later, not sooner
/// (1,000: p99 lateness 410 ms instead of 260 ms), so a slice is large.
const FIRES_PER_TICK: usize = 5000;

/// The id prefix of fired jobs: `sched:NAME:SLOT_MS`.
const FIRED_PREFIX: &str = "sched:";

/// Cron slots counted one by one when many passed at once; past this the
/// count is a lower bound.
const MAX_SLOTS_COUNTED: u64 = 100_000;

/// When a schedule fires, as journaled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum When {
    /// Slots `anchor_ms + k * every_ms`, k >= 0.
    Every { every_ms: u64, anchor_ms: i64 },
    /// The expression's times in time zone `tz` (an IANA name).
    Cron { expr: String, tz: String },
}

/// Who made a schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Origin {
    /// SCHEDULE_SET on the admin endpoint (`emq-cli schedule add`).
    Admin,
    /// EventMQ's SCHEDULE from a client.
    EventMq,
}

/// What a schedule is, as journaled (table `schedules`): written when it is
/// created or replaced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ScheduleDef {
    pub queue: String,
    /// The fired jobs' headers frame, as forwarded to jobmanagers.
    pub headers: String,
    #[serde(with = "crate::tracking::serde_bytes_compat")]
    pub body: Vec<u8>,
    /// The handler `body` calls (for listings).
    pub handler: String,
    /// Attempts each fired job may have.
    pub max_attempts: u16,
    pub when: When,
    /// Fires allowed in all; it ends after the last.
    pub run_count: Option<u64>,
    pub nohaste: bool,
    pub missed: MissedPolicy,
    pub origin: Origin,
    pub created_ms: i64,
}

/// Where a schedule is, as journaled (table `schedule_state`): a small row
/// rewritten at each fire, in the same batch as the job it fired.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct ScheduleState {
    /// The next slot to fire (while paused: not yet recomputed).
    pub next_ms: i64,
    pub paused: bool,
    pub fires: u64,
    pub missed_slots: u64,
    pub last_slot_ms: Option<i64>,
    pub last_fire_ms: Option<i64>,
    pub last_job: Option<String>,
    pub last_outcome: Option<JobState>,
    pub last_error: Option<String>,
}

/// A schedule in memory: what it is, where it is, its cron expression
/// parsed once.
struct Schedule {
    def: ScheduleDef,
    state: ScheduleState,
    cron: Option<(Box<croner::Cron>, jiff::tz::TimeZone)>,
    /// Bumped whenever its heap entry changes; older entries are stale.
    version: u64,
}

impl Schedule {
    /// A schedule from its rows, parsing what it needs.
    fn new(def: ScheduleDef, state: ScheduleState) -> Result<Schedule, String> {
        let cron = match &def.when {
            When::Every { every_ms: 0, .. } => return Err("an interval must be longer than zero".into()),
            When::Every { .. } => None,
            When::Cron { expr, tz } => Some(parse_cron(expr, tz)?),
        };
        Ok(Schedule {
            def,
            state,
            cron,
            version: 0,
        })
    }

    /// The first slot strictly after `t`; `None` if there is none (a cron
    /// expression that never matches again).
    fn slot_after(&self, t: i64) -> Option<i64> {
        match (&self.def.when, &self.cron) {
            (When::Every { every_ms, anchor_ms }, _) => {
                let every = i64::try_from(*every_ms).ok()?;
                if t < *anchor_ms {
                    return Some(*anchor_ms);
                }
                let k = (t - anchor_ms) / every + 1;
                anchor_ms.checked_add(k.checked_mul(every)?)
            }
            (When::Cron { .. }, Some((cron, tz))) => {
                let from = jiff::Timestamp::from_millisecond(t).ok()?.to_zoned(tz.clone());
                let next = cron.find_next_occurrence(&from, false).ok()?;
                Some(next.timestamp().as_millisecond())
            }
            (When::Cron { .. }, None) => None,
        }
    }

    /// From slot `first` (<= `t`): the latest slot at or before `t`, and
    /// how many slots that is counting `first`.
    fn due_slots(&self, first: i64, t: i64) -> (i64, u64) {
        if let When::Every { every_ms, .. } = self.def.when {
            let every = i64::try_from(every_ms).unwrap_or(i64::MAX);
            let k = (t - first) / every;
            return (first + k * every, k as u64 + 1);
        }
        let (mut latest, mut count) = (first, 1);
        while count < MAX_SLOTS_COUNTED {
            match self.slot_after(latest) {
                Some(next) if next <= t => {
                    latest = next;
                    count += 1;
                }
                _ => return (latest, count),
            }
        }
        // Very many: find the latest directly.
        if let Some((cron, tz)) = &self.cron {
            if let Ok(at) = jiff::Timestamp::from_millisecond(t) {
                if let Ok(prev) = cron.find_previous_occurrence(&at.to_zoned(tz.clone()), true) {
                    latest = latest.max(prev.timestamp().as_millisecond());
                }
            }
        }
        (latest, count)
    }

    fn info(&self, name: &str) -> ScheduleInfo {
        let (d, r) = (&self.def, &self.state);
        let (every_ms, cron, tz) = match &d.when {
            When::Every { every_ms, .. } => (Some(*every_ms), None, None),
            When::Cron { expr, tz } => (None, Some(expr.clone()), Some(tz.clone())),
        };
        ScheduleInfo {
            name: name.to_string(),
            queue: d.queue.clone(),
            handler: d.handler.clone(),
            every_ms,
            cron,
            tz,
            origin: match d.origin {
                Origin::Admin => "admin".into(),
                Origin::EventMq => "eventmq".into(),
            },
            created: timestamp_ms(d.created_ms),
            next: (!r.paused).then(|| timestamp_ms(r.next_ms)),
            last_slot: r.last_slot_ms.map(timestamp_ms),
            last_fire: r.last_fire_ms.map(timestamp_ms),
            last_job: r.last_job.clone(),
            last_outcome: r.last_outcome,
            last_error: r.last_error.clone(),
            fires: r.fires,
            missed_slots: r.missed_slots,
            remaining: d.run_count.map(|n| n.saturating_sub(r.fires)),
            missed: d.missed,
            paused: r.paused,
        }
    }
}

/// A cron expression (5 fields, or 6 with seconds first) in time zone `tz`.
fn parse_cron(expr: &str, tz: &str) -> Result<(Box<croner::Cron>, jiff::tz::TimeZone), String> {
    let fields = expr.split_whitespace().count();
    if !(5..=6).contains(&fields) && !expr.trim_start().starts_with('@') {
        return Err(format!(
            "cron expression {expr:?} has {fields} fields: give 5 (minute hour day month weekday) or 6 (seconds first)"
        ));
    }
    let parser = croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Optional)
        .year(croner::parser::Year::Disallowed)
        .build();
    let cron = parser
        .parse(expr)
        .map_err(|e| format!("cron expression {expr:?}: {e}"))?;
    let zone = jiff::tz::TimeZone::get(tz).map_err(|e| {
        format!("time zone {tz:?}: {e} (an IANA name such as Europe/Berlin; the system's tzdata must be installed)")
    })?;
    Ok((Box::new(cron), zone))
}

/// Whether `name` may name a schedule: it ends up in job ids and on terminals.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The schedules the router keeps, and when each fires next.
pub(crate) struct Schedules {
    by_name: BTreeMap<Rc<str>, Schedule>,
    /// Schedules whose slots piled up while running, logged at most once a second.
    behind: emq_net::Throttle,
    /// `(next slot, version, name)`, earliest first; stale entries (an older
    /// version, a paused or removed schedule) are skipped when popped.
    due: BinaryHeap<Reverse<(i64, u64, Rc<str>)>>,
    versions: u64,
}

impl Default for Schedules {
    fn default() -> Schedules {
        Schedules {
            by_name: BTreeMap::new(),
            behind: emq_net::Throttle::new(Duration::from_secs(1)),
            due: BinaryHeap::new(),
            versions: 0,
        }
    }
}

impl Schedules {
    pub(super) fn len(&self) -> usize {
        self.by_name.len()
    }

    /// The earliest slot to fire, in ms since the Unix epoch.
    pub(super) fn next_due_ms(&self) -> Option<i64> {
        self.due.peek().map(|Reverse((at, _, _))| *at)
    }

    /// (Re)enter schedule `name` in the heap at its next slot.
    fn arm(&mut self, name: &Rc<str>) {
        self.versions += 1;
        let version = self.versions;
        if let Some(s) = self.by_name.get_mut(name) {
            s.version = version;
            if !s.state.paused {
                self.due.push(Reverse((s.state.next_ms, version, name.clone())));
            }
        }
        // Replaced and removed schedules leave stale entries: drop them
        // once they are most of the heap.
        if self.due.len() > 1024 && self.due.len() > 2 * self.by_name.len() {
            let by_name = &self.by_name;
            self.due
                .retain(|Reverse((_, v, n))| by_name.get(n).is_some_and(|s| s.version == *v && !s.state.paused));
        }
    }

    /// The name of a schedule whose slot is at or before `t_ms`.
    fn pop_due(&mut self, t_ms: i64) -> Option<Rc<str>> {
        while let Some(Reverse((at, _, _))) = self.due.peek() {
            if *at > t_ms {
                return None;
            }
            let Reverse((_, version, name)) = self.due.pop()?;
            if self
                .by_name
                .get(&name)
                .is_some_and(|s| s.version == version && !s.state.paused)
            {
                return Some(name);
            }
        }
        None
    }
}

/// What a schedule is, before the router makes it.
struct Definition {
    queue: String,
    headers: Headers,
    body: Vec<u8>,
    when: When,
    run_count: Option<u64>,
    nohaste: bool,
    missed: MissedPolicy,
    paused: bool,
    origin: Origin,
}

/// A refusal: the code and reason of the ERROR that answers.
type Refusal = (ErrorCode, String);

fn invalid(reason: impl Into<String>) -> Refusal {
    (ErrorCode::Invalid, reason.into())
}

impl Router {
    /// The schedules' rows (`defs` and `states`), after a restart. Slots
    /// that passed while the router was down are handled by each
    /// schedule's missed-slot policy.
    pub(super) fn restore_schedules(&mut self, now: Now, defs: Vec<Row>, states: Vec<Row>) -> Result<(), CorruptRow> {
        let mut states: std::collections::HashMap<String, Row> =
            states.into_iter().map(|r| (r.key.clone(), r)).collect();
        let mut overdue = Vec::new();
        for row in defs {
            let def: ScheduleDef = row.decode()?;
            // Both rows are written together when a schedule is made.
            let corrupt = |reason: String| CorruptRow {
                table: Table::Schedules.name(),
                key: row.key.clone(),
                reason,
            };
            let state: ScheduleState = states
                .remove(&row.key)
                .ok_or_else(|| corrupt("a schedule without its state row".into()))?
                .decode()?;
            let schedule = Schedule::new(def, state).map_err(corrupt)?;
            let name: Rc<str> = row.key.into();
            if !schedule.state.paused && schedule.state.next_ms <= now.unix_ms {
                overdue.push(name.clone());
            }
            self.schedules.by_name.insert(name.clone(), schedule);
            self.schedules.arm(&name);
        }
        // A state without its schedule (not written by this router) is only
        // taking room.
        for orphan in states.into_keys() {
            self.store_ops.push(StoreOp::delete(Table::ScheduleState, &orphan));
        }
        let n = self.schedules.len();
        for name in &overdue {
            self.fire(name, now, true);
        }
        if n > 0 {
            info!(
                "restored {n} schedule(s) from the journal; {} had slots pass while the router was down \
                 (fired once each under coalesce, not at all under skip)",
                overdue.len()
            );
        }
        Ok(())
    }

    /// Fire the schedules whose slot has come, at most [`FIRES_PER_TICK`]
    /// of them: with a hundred thousand due at once, the router still reads
    /// its sockets (heartbeats) between slices. The rest stay due, so the
    /// transport ticks again at once.
    pub(super) fn fire_due_schedules(&mut self, now: Now) {
        for _ in 0..FIRES_PER_TICK {
            let Some(name) = self.schedules.pop_due(now.unix_ms) else {
                return;
            };
            self.fire(&name, now, false);
        }
    }

    /// Fire schedule `name`, whose next slot is due: one job for the latest
    /// due slot (none for slots missed during a restart under `skip`), the
    /// schedule's row rewritten with its next slot in the same batch.
    /// Returns the schedule as it ended, if that was its last fire.
    fn fire(&mut self, name: &Rc<str>, now: Now, after_restart: bool) -> Option<ScheduleInfo> {
        let s = self.schedules.by_name.get(name)?;
        let first = s.state.next_ms;
        let (latest, due) = s.due_slots(first, now.unix_ms.max(first));
        let next = s.slot_after(latest);
        let fire = !(after_restart && s.def.missed == MissedPolicy::Skip);
        let (queue, max_attempts) = (s.def.queue.clone(), s.def.max_attempts);
        let full = fire && self.queue_is_full(&queue);
        let mut fired = None;
        if fire && !full {
            let key: JobKey = format!("{FIRED_PREFIX}{name}:{latest}").into();
            // Already fired (cannot happen while the row and the job are
            // committed together; checked so that it never runs twice).
            if !self.jobs.contains_key(&key) && !self.guaranteed.is_tracked(&key) {
                let (headers, body) = {
                    let d = &self.schedules.by_name[name].def;
                    (d.headers.clone(), d.body.clone())
                };
                let client = self.scheduler.clone();
                let queue_name = self.queues.entry(&queue).name.clone();
                let mut job = Box::new(Job {
                    client,
                    queue: queue_name,
                    headers: self.shared_headers(headers),
                    body: body.into_boxed_slice(),
                    result_to: ResultTo::Nobody,
                    guarantee: true,
                    handler: HandlerId::UNREAD,
                    attempts: 0,
                    max_attempts,
                    ready: Default::default(),
                    place: Place::Waiting,
                    extra: None,
                });
                let origin = format!("fired by schedule {name} for {}", timestamp_ms(latest));
                self.accept_guaranteed(&key, &job, super::guaranteed::Entry::Queue, origin);
                self.note_submitted(now.mono, &key, &mut job, Some(name));
                self.note_fired(name, &key, &queue);
                self.jobs.insert(key.clone(), job);
                self.enqueue(&key, false);
                self.dispatch_queue(now.mono, &queue);
            }
            fired = Some(key);
        }
        let s = self.schedules.by_name.get_mut(name)?;
        let r = &mut s.state;
        r.missed_slots += due - u64::from(fired.is_some());
        if full {
            r.last_error = Some(format!(
                "queue {queue} full at {}: slot not fired",
                timestamp_ms(latest)
            ));
        }
        if let Some(key) = fired {
            r.fires += 1;
            r.last_slot_ms = Some(latest);
            r.last_fire_ms = Some(now.unix_ms);
            r.last_job = Some(key.to_text());
        }
        if due > 1 && !after_restart {
            // Restarts are summed up by `restore_schedules`; a router
            // falling behind is said at most once a second.
            if let Some(more) = self.schedules.behind.report(now.mono) {
                warn!("schedule {name}: {due} slots due at once (the router fell behind): fired once for the latest{more}");
            }
        }
        let ended = s.def.run_count.is_some_and(|n| r.fires >= n);
        match next {
            Some(next) if !ended => {
                r.next_ms = next;
                self.store_ops
                    .push(StoreOp::put(Table::ScheduleState, &**name, &s.state));
                self.schedules.arm(name);
                None
            }
            _ => {
                info!(
                    "schedule {name} ended after {} fire(s){}",
                    r.fires,
                    if ended {
                        ""
                    } else {
                        ": its cron expression matches no later time"
                    }
                );
                self.forget_schedule(name).map(|s| s.info(name))
            }
        }
    }

    /// Remove schedule `name`, here and in the journal.
    fn forget_schedule(&mut self, name: &str) -> Option<Schedule> {
        let s = self.schedules.by_name.remove(name)?;
        self.store_ops.push(StoreOp::delete(Table::Schedules, name));
        self.store_ops.push(StoreOp::delete(Table::ScheduleState, name));
        Some(s)
    }

    /// Whether a job for `queue` would be refused for want of room.
    fn queue_is_full(&self, queue: &str) -> bool {
        !self.has_free_jobmanager(queue)
            && (self.queues.waiting_len(queue) >= self.config.max_waiting_per_queue
                || self.queues.waiting_total() >= self.config.max_waiting_total)
    }

    /// Create or replace schedule `name`. A schedule without `nohaste` fires
    /// at once, in the same batch.
    fn upsert_schedule(&mut self, now: Now, name: &str, def: Definition) -> Result<ScheduleInfo, Refusal> {
        if self.stopping() {
            return Err((ErrorCode::ShuttingDown, "router is shutting down".into()));
        }
        if !valid_name(name) {
            return Err(invalid(format!(
                "schedule name {:?}: use 1 to 128 letters, digits, '.', '_' or '-'",
                emq_proto::printable(name)
            )));
        }
        if def.run_count == Some(0) {
            return Err(invalid("run_count must be at least 1"));
        }
        let Definition {
            queue,
            mut headers,
            body,
            when,
            run_count,
            nohaste,
            missed,
            paused,
            origin,
        } = def;
        if headers.not_before.is_some() {
            return Err(invalid(
                "a schedule's jobs cannot carry delay or not-before: the schedule says when",
            ));
        }
        let handler = JobCall::handler_of(&body, headers.content_type)
            .map_err(|e| invalid(format!("the job body is not a handler call: {e}")))?;
        let queue = if queue.is_empty() {
            emq_proto::DEFAULT_QUEUE.to_string()
        } else {
            queue
        };
        let max_attempts = self.max_attempts(&headers);
        // As for any guaranteed job: the router owns the retries, and it is
        // the client, which needs no reply.
        headers.retry_count = 0;
        headers.reply_requested = false;
        headers.guarantee = true;
        headers.other.retain(|h| h != "nohaste" && !h.starts_with("run_count:"));
        let def = ScheduleDef {
            queue,
            headers: headers.encode(),
            body,
            handler,
            max_attempts,
            when,
            run_count,
            nohaste,
            missed,
            origin,
            created_ms: now.unix_ms,
        };
        let state = ScheduleState {
            paused,
            ..ScheduleState::default()
        };
        let mut schedule = Schedule::new(def, state).map_err(invalid)?;
        let first = schedule
            .slot_after(now.unix_ms)
            .ok_or_else(|| invalid("the cron expression matches no time in the coming years"))?;
        // Haste (EventMQ's default): the first fire is now, then the slots.
        if !nohaste && !paused {
            schedule.state.next_ms = now.unix_ms;
        } else {
            schedule.state.next_ms = first;
        }
        let name: Rc<str> = name.into();
        let replaced = self.schedules.by_name.insert(name.clone(), schedule).is_some();
        info!("schedule {name} {}", if replaced { "replaced" } else { "created" });
        let s = &self.schedules.by_name[&name];
        self.store_ops.push(StoreOp::put(Table::Schedules, &*name, &s.def));
        self.store_ops
            .push(StoreOp::put(Table::ScheduleState, &*name, &s.state));
        self.schedules.arm(&name);
        if !nohaste && !paused {
            if let Some(ended) = self.fire(&name, now, false) {
                return Ok(ended);
            }
        }
        Ok(self.schedules.by_name[&name].info(&name))
    }

    /// SCHEDULES: every schedule, by name.
    pub(super) fn schedule_list(&self) -> ScheduleList {
        ScheduleList {
            schedules: self.schedules.by_name.iter().map(|(n, s)| s.info(n)).collect(),
        }
    }

    /// When the next schedule fires (ROUTER_SHOW_SCHEDULERS).
    pub(super) fn next_fire(&self) -> Option<i64> {
        self.schedules
            .by_name
            .values()
            .filter(|s| !s.state.paused)
            .map(|s| s.state.next_ms)
            .min()
    }

    /// SCHEDULE_SET from an admin.
    pub(super) fn on_schedule_set(&mut self, now: Now, peer: &PeerId, msgid: &str, spec: ScheduleSpec, body: Vec<u8>) {
        let when = match (spec.every_ms, &spec.cron) {
            (Some(every_ms), None) => Ok(When::Every {
                every_ms,
                anchor_ms: now.unix_ms,
            }),
            (None, Some(expr)) => Ok(When::Cron {
                expr: expr.clone(),
                tz: spec.tz.clone().unwrap_or_else(|| "UTC".into()),
            }),
            _ => Err(invalid("give exactly one of every_ms and cron")),
        };
        let answer = when.and_then(|when| {
            if spec.tz.is_some() && matches!(when, When::Every { .. }) {
                return Err(invalid("a time zone only applies to a cron schedule"));
            }
            let def = Definition {
                queue: spec.queue,
                headers: Headers::parse(&spec.headers),
                body,
                when,
                run_count: spec.run_count,
                nohaste: spec.nohaste,
                missed: spec.missed,
                paused: spec.paused,
                origin: Origin::Admin,
            };
            self.upsert_schedule(now, &spec.name, def)
        });
        self.answer_schedule(Endpoint::Admin, peer, msgid, answer);
    }

    /// SCHEDULE_CTL from an admin: pause, resume or remove.
    pub(super) fn on_schedule_ctl(&mut self, now: Now, peer: &PeerId, msgid: &str, name: &str, action: ScheduleAction) {
        let answer = match self.schedules.by_name.get_mut(name) {
            None => Err((
                ErrorCode::UnknownSchedule,
                format!("no schedule {}", emq_proto::printable(name)),
            )),
            Some(s) => {
                let key: Rc<str> = name.into();
                match action {
                    ScheduleAction::Pause => {
                        s.state.paused = true;
                        self.store_ops.push(StoreOp::put(Table::ScheduleState, name, &s.state));
                        self.schedules.arm(&key);
                        info!("schedule {name} paused by {peer}");
                    }
                    ScheduleAction::Resume => {
                        // Slots passed while paused are not fired: go on
                        // from the next one.
                        if s.state.paused {
                            s.state.paused = false;
                            if let Some(next) = s.slot_after(now.unix_ms) {
                                s.state.next_ms = next;
                            }
                            self.store_ops.push(StoreOp::put(Table::ScheduleState, name, &s.state));
                            self.schedules.arm(&key);
                            info!("schedule {name} resumed by {peer}");
                        }
                    }
                    ScheduleAction::Remove => {
                        let info = s.info(name);
                        self.forget_schedule(name);
                        info!("schedule {name} removed by {peer}");
                        self.answer_schedule(Endpoint::Admin, peer, msgid, Ok(info));
                        return;
                    }
                }
                Ok(self.schedules.by_name[name].info(name))
            }
        };
        self.answer_schedule(Endpoint::Admin, peer, msgid, answer);
    }

    /// EventMQ's SCHEDULE from a client: the same call on the same queue is
    /// one schedule, replaced by each SCHEDULE. Answered with ACK once
    /// journaled.
    pub(super) fn on_eventmq_schedule(&mut self, now: Now, peer: &PeerId, msgid: &str, req: ScheduleRequest) {
        let answer = self.eventmq_schedule(now, req);
        self.answer_eventmq(peer, msgid, answer, "set");
    }

    /// ACK once journaled, or ERROR with the reason.
    fn answer_eventmq(&mut self, peer: &PeerId, msgid: &str, answer: Result<String, Refusal>, done: &str) {
        match answer {
            Ok(name) => {
                info!("schedule {name} {done} by EventMQ client {peer}");
                let ack = Message::Ack {
                    of: msgid.to_string(),
                    timing: None,
                    admission: None,
                    capabilities: Default::default(),
                };
                self.send_journaled(peer, ack, Carries::Other);
            }
            Err((code, reason)) => self.refuse(Endpoint::Frontend, peer, msgid, code, &reason),
        }
    }

    fn eventmq_schedule(&mut self, now: Now, req: ScheduleRequest) -> Result<String, Refusal> {
        let name = eventmq_schedule_name(&req)?;
        let when = match req.interval {
            Some(d) if d.is_zero() => {
                return Err(invalid(
                    "interval_secs must be more than 0 (or -1 with a cron expression)",
                ))
            }
            Some(d) => When::Every {
                every_ms: u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
                anchor_ms: now.unix_ms,
            },
            None if req.cron.is_empty() => {
                return Err(invalid(
                    "interval_secs is -1 and there is no cron expression: nothing says when",
                ))
            }
            None => When::Cron {
                expr: req.cron.clone(),
                tz: "UTC".into(),
            },
        };
        let mut run_count = None;
        let mut nohaste = false;
        for h in &req.headers.other {
            if h == "nohaste" {
                nohaste = true;
            } else if let Some(n) = h.strip_prefix("run_count:") {
                // EventMQ: -1 (or anything negative) is "forever".
                match n.trim().parse::<i64>() {
                    Ok(n) if n < 0 => {}
                    Ok(n) => run_count = Some(n as u64),
                    Err(_) => return Err(invalid(format!("header {h}: not a number"))),
                }
            }
        }
        let def = Definition {
            queue: req.queue,
            headers: req.headers,
            body: req.body,
            when,
            run_count,
            nohaste,
            missed: MissedPolicy::default(),
            paused: false,
            origin: Origin::EventMq,
        };
        self.upsert_schedule(now, &name, def)?;
        Ok(name)
    }

    /// EventMQ's UNSCHEDULE: remove the schedule of that call and queue.
    pub(super) fn on_eventmq_unschedule(&mut self, peer: &PeerId, msgid: &str, req: ScheduleRequest) {
        let answer = eventmq_schedule_name(&req).and_then(|name| {
            if self.forget_schedule(&name).is_none() {
                return Err((
                    ErrorCode::UnknownSchedule,
                    format!("no schedule of that call on queue {} (name {name})", req.queue),
                ));
            }
            Ok(name)
        });
        self.answer_eventmq(peer, msgid, answer, "removed");
    }

    fn answer_schedule(
        &mut self,
        endpoint: Endpoint,
        peer: &PeerId,
        msgid: &str,
        answer: Result<ScheduleInfo, Refusal>,
    ) {
        match answer {
            Ok(info) => {
                let notice = Message::Reply(Reply::Notice(ReplyNotice::of(&info)));
                self.push(endpoint, peer, notice, true, Carries::Other);
            }
            Err((code, reason)) => self.refuse(endpoint, peer, msgid, code, &reason),
        }
    }

    /// A fired job ended: its outcome goes to its schedule's row. Returns
    /// whether `key` is a fired job.
    pub(super) fn fired_job_ended(&mut self, key: &JobKey, status: JobState, error: &str) -> bool {
        let key = key.text();
        let Some(name) = key
            .strip_prefix(FIRED_PREFIX)
            .and_then(|rest| rest.rsplit_once(':'))
            .map(|(name, _)| name)
        else {
            return false;
        };
        if let Some(s) = self.schedules.by_name.get_mut(name) {
            let error = (!error.is_empty()).then(|| error.to_string());
            if status == JobState::Dead || status == JobState::Failed {
                warn!(
                    "schedule {name}: job {} ended {status}: {}",
                    &*key,
                    error.as_deref().unwrap_or("")
                );
            }
            // Written when it changes: a schedule that keeps succeeding
            // costs one row per fire, not two.
            if s.state.last_outcome != Some(status) || s.state.last_error != error {
                s.state.last_outcome = Some(status);
                s.state.last_error = error;
                self.store_ops.push(StoreOp::put(Table::ScheduleState, name, &s.state));
            }
        }
        true
    }
}

/// The name EventMQ's identity of a schedule maps to: the same call (path,
/// callable, args, kwargs, class args and kwargs) on the same queue is the
/// same schedule. `eventmq-CALLABLE-HASH`, the hash a 64-bit FNV-1a of the
/// call in canonical JSON (keys sorted) and the queue.
fn eventmq_schedule_name(req: &ScheduleRequest) -> Result<String, Refusal> {
    let call = JobCall::decode(&req.body, req.headers.content_type)
        .map_err(|e| invalid(format!("the job body is not an EventMQ run call: {e}")))?;
    let queue = if req.queue.is_empty() {
        emq_proto::DEFAULT_QUEUE
    } else {
        &req.queue
    };
    let canonical = serde_json::json!({
        "handler": call.handler,
        "args": call.args,
        "kwargs": call.kwargs,
        "class_args": call.class_args,
        "class_kwargs": call.class_kwargs,
        "queue": queue,
    });
    let text = serde_json::to_string(&canonical).unwrap_or_default();
    let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    let callable = call.handler.rsplit('.').next().unwrap_or_default();
    let callable: String = callable
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' })
        .take(64)
        .collect();
    Ok(format!("eventmq-{callable}-{hash:016x}"))
}
