//! The typed answers of admin commands and job queries: one serde struct per
//! kind of answer, encoded as the JSON frame the router sends and decoded by
//! the client. The router, the client library, `emq-cli --json` and the
//! dashboard all use these, so each answer has exactly one shape
//! (documented in protocol.md section 4). Times are RFC 3339 in UTC.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{DecodeError, ReplyNotice};

/// Wall-clock time on the wire: RFC 3339, UTC, milliseconds.
pub type Timestamp = jiff::Timestamp;

/// A wall-clock time from milliseconds since the Unix epoch (clamped to
/// what RFC 3339 can write).
pub fn timestamp_ms(unix_ms: i64) -> Timestamp {
    Timestamp::from_millisecond(unix_ms).unwrap_or(if unix_ms < 0 { Timestamp::MIN } else { Timestamp::MAX })
}

/// Where a job is, as QUERY answers it and the log records it.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    strum::Display,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::EnumIter,
    Serialize,
    Deserialize,
)]
#[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobState {
    /// Journaled and acknowledged (guaranteed jobs).
    #[serde(alias = "Accepted")]
    Accepted,
    /// Waiting for its not-before time (a delayed job).
    Scheduled,
    /// A graph's job waiting for its parents to end.
    Blocked,
    /// Waiting for a slot, or backing off before a retry.
    #[serde(alias = "Queued")]
    Queued,
    /// Sent to a jobmanager.
    #[serde(alias = "Running")]
    Running,
    /// Ended with outcome `ok`.
    #[serde(alias = "Finished")]
    Finished,
    /// Ended with a failure that is not retried.
    #[serde(alias = "Failed")]
    Failed,
    /// Failed its last allowed attempt: in the dead-letter set.
    #[serde(alias = "Dead")]
    Dead,
    /// Cancelled before it ran.
    #[serde(alias = "Cancelled")]
    Cancelled,
    /// Replaced before it ran by a newer job of its `coalesce` key.
    Superseded,
    /// Not started by its expiry time: never ran.
    Expired,
}

impl JobState {
    /// The state as it travels (`QUEUED`, ...).
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// No more transitions (unless a dead job is retried by hand).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Finished
                | JobState::Failed
                | JobState::Dead
                | JobState::Cancelled
                | JobState::Superseded
                | JobState::Expired
        )
    }
}

/// A jobmanager's state, as decisionengine's task manager names them; sent
/// in HEARTBEAT (emq extension) and shown in status.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    strum::Display,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::EnumIter,
    Serialize,
    Deserialize,
)]
#[strum(serialize_all = "UPPERCASE")]
#[serde(rename_all = "UPPERCASE")]
pub enum JobManagerState {
    /// Starting: not yet acknowledged by any router.
    Boot,
    /// Connected, no job running.
    Idle,
    /// Connected, running jobs, with free slots.
    Active,
    /// Connected, every slot busy.
    Steady,
    /// Lost the router; reconnecting.
    Offline,
    /// Draining after SIGTERM: no new jobs.
    ShuttingDown,
    /// Done; the process exits.
    Shutdown,
    /// Cannot go on (workers cannot be started).
    Error,
}

impl JobManagerState {
    /// The state as it travels (`IDLE`, ...).
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// Which software a jobmanager runs, as far as the router can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, strum::Display)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum PeerKind {
    /// emq's jobmanager (it announced its timing).
    Emq,
    /// EventMQ's jobmanager.
    Eventmq,
}

/// `(weight, name)`: a queue a jobmanager serves, or a jobmanager serving a
/// queue. A JSON array of two on the wire, as in EventMQ.
pub type Weighted = (i64, String);

/// One queue in [`RouterStatus`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QueueStatus {
    /// Jobs waiting for a slot.
    pub waiting: u64,
    /// Jobs sent to a jobmanager and not finished.
    pub running: u64,
    /// Jobs that ended (any outcome) since the router started.
    pub processed: u64,
    /// The jobmanagers serving it, with their weights.
    pub jobmanagers: Vec<Weighted>,
    /// Paused: it takes jobs but dispatches none.
    #[serde(default)]
    pub paused: bool,
    /// What happened to its jobs since the router started.
    #[serde(default)]
    pub counts: QueueCounts,
    /// Most of its jobs running at once, across all jobmanagers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u64>,
    /// Most of its jobs started per period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<Rate>,
}

/// Counters of one queue since the router started (the `/metrics`
/// counters are these).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueCounts {
    /// Jobs accepted (from clients, schedules and graphs).
    pub submitted: u64,
    /// Jobs that ended, by outcome (`ok`, `failed`, `cancelled`, ...).
    pub finished: BTreeMap<String, u64>,
    /// Of those, guaranteed jobs dead-lettered.
    pub dead: u64,
    /// Failed attempts of guaranteed jobs that were retried.
    pub retried: u64,
    /// Attempts whose jobmanager was lost while they ran.
    pub abandoned: u64,
    /// `unique` submissions answered with a live job of their key.
    pub deduplicated: u64,
}

impl QueueCounts {
    /// Jobs that ended ok.
    pub fn ok(&self) -> u64 {
        self.finished.get(crate::Outcome::Ok.as_str()).copied().unwrap_or(0)
    }

    /// Jobs that ended in failure ([`crate::Outcome::is_failure`]).
    pub fn failed(&self) -> u64 {
        self.finished
            .iter()
            .filter(|(o, _)| crate::Outcome::parse(o).is_some_and(crate::Outcome::is_failure))
            .map(|(_, n)| n)
            .sum()
    }
}

/// A rate limit: `jobs` started per `per_ms`, evenly: one at most every
/// `per_ms / jobs`, without bursts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rate {
    /// Jobs per period.
    pub jobs: u32,
    /// The period in milliseconds.
    pub per_ms: u64,
}

/// QUEUE_SET's change to a queue's flow control: each field given is set,
/// the others are kept.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueChange {
    /// Pause (true) or resume (false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,
    /// Most jobs running at once; 0 removes the limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u64>,
    /// Most jobs started per period; `jobs: 0` removes the limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<Rate>,
}

/// One queue: the answer to QUEUE_SET.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QueueView {
    /// Its name.
    pub queue: String,
    /// Its state and flow control.
    #[serde(flatten)]
    pub status: QueueStatus,
}

/// What the router made of a submission with a key (the ACK's extension
/// frame).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Admission {
    /// The job that carries the submission: its own id, or the existing
    /// job's when it was deduplicated (`unique`).
    pub job: String,
    /// The submission made no job: a job of its `unique` key lives.
    #[serde(default)]
    pub deduplicated: bool,
    /// The waiting job it replaced (`coalesce`), which ended SUPERSEDED.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaced: Option<String>,
}

/// One jobmanager in [`RouterStatus`] and [`WorkersView`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobManagerStatus {
    /// The queues it serves.
    pub queues: Vec<Weighted>,
    /// Slots it announced that the router has not filled.
    pub slots: u64,
    /// Jobs it is running.
    pub running: u64,
    /// Jobs it finished.
    pub processed: u64,
    /// Its own state, when it reports one (emq jobmanagers do).
    pub state: Option<JobManagerState>,
    /// Milliseconds since the router last heard from it.
    pub last_seen_ms: u64,
    /// Silence after which the router declares it dead.
    pub liveness_ms: u64,
    /// emq or EventMQ.
    pub kind: PeerKind,
    /// Its workers, as its latest HEARTBEAT reported them (emq jobmanagers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workers: Option<WorkerCounts>,
}

/// A jobmanager's workers, as its HEARTBEAT reports them (emq extension).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerCounts {
    /// Worker processes it keeps.
    pub workers: u32,
    /// Of those, running a job.
    pub busy: u32,
    /// Jobs it holds that wait for a worker (prefetched or pipelined).
    #[serde(default)]
    pub queued: u32,
}

/// The answer to STATUS. EventMQ's keys come first and keep their meaning
/// (its admin shell prints them); emq's follow.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RouterStatus {
    /// EventMQ: running jobs per queue.
    pub inflight_messages_by_queue: BTreeMap<String, u64>,
    /// EventMQ: mean age in ms of the running jobs per queue.
    pub latency_messages_by_queue: BTreeMap<String, u64>,
    /// EventMQ: age in ms of the oldest running job per queue.
    pub max_latency_messages_by_queue: BTreeMap<String, u64>,
    /// EventMQ: waiting jobs per queue (queues with none left out).
    pub waiting_messages_by_queue: BTreeMap<String, u64>,
    /// EventMQ: ended jobs per queue.
    pub processed_messages_by_queue: BTreeMap<String, u64>,
    /// EventMQ: ended jobs per jobmanager.
    pub processed_messages_by_worker: BTreeMap<String, u64>,
    /// Every queue the router knows.
    pub queues: BTreeMap<String, QueueStatus>,
    /// Every connected jobmanager, by identity.
    pub jobmanagers: BTreeMap<String, JobManagerStatus>,
    /// Jobs waiting across all queues.
    pub waiting_total: u64,
    /// Finished jobs' results kept for lookup.
    pub results_kept: u64,
    /// Jobs waiting for a time: delayed jobs and retries backing off.
    #[serde(default)]
    pub delayed: u64,
    /// Schedules the router keeps (paused ones included).
    #[serde(default)]
    pub schedules: u64,
    /// Graphs the router holds (running, and ended ones within their
    /// retention).
    #[serde(default)]
    pub graphs: u64,
    /// Graph jobs waiting for their parents.
    #[serde(default)]
    pub blocked: u64,
    /// Seconds since the router started.
    pub uptime_s: u64,
    /// With a shared (Postgres) journal: this router's lease and the other
    /// routers sharing it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ha: Option<HaStatus>,
}

/// The active router of a shared journal and the routers standing by.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HaStatus {
    /// The active router's name (the one answering).
    pub active: String,
    /// Its fencing epoch: one more at every takeover.
    pub epoch: u64,
    /// How long its lease lasts without renewal, in ms.
    pub lease_ms: u64,
    /// The other routers that checked in recently (standbys).
    pub standbys: Vec<StandbyRouter>,
}

/// A router standing by on the shared journal.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StandbyRouter {
    /// Its name.
    pub name: String,
    /// Its endpoints (bound once it takes over).
    pub endpoints: String,
    /// Since it last checked in, in ms.
    pub seen_ms_ago: u64,
}

impl RouterStatus {
    /// The workers of every jobmanager that reports them, added up.
    pub fn workers(&self) -> WorkerCounts {
        self.jobmanagers
            .values()
            .filter_map(|jm| jm.workers)
            .fold(WorkerCounts::default(), |sum, w| WorkerCounts {
                workers: sum.workers + w.workers,
                busy: sum.busy + w.busy,
                queued: sum.queued + w.queued,
            })
    }
}

/// One jobmanager in EventMQ's ROUTER_SHOW_WORKERS shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventMqWorker {
    /// The queues it serves.
    pub queues: Vec<Weighted>,
    /// Seconds since it was last heard from, negated (EventMQ's convention).
    pub hb: f64,
    /// Free slots.
    pub available_slots: u64,
    /// Its own state, when it reports one.
    pub state: Option<JobManagerState>,
}

/// The answer to ROUTER_SHOW_WORKERS: EventMQ's two maps plus emq's view.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkersView {
    /// EventMQ: jobmanagers by identity.
    pub connected_workers: BTreeMap<String, EventMqWorker>,
    /// EventMQ: for each queue, its jobmanagers with their weights.
    pub connected_queues: BTreeMap<String, Vec<Weighted>>,
    /// The same jobmanagers as in [`RouterStatus::jobmanagers`].
    pub jobmanagers: BTreeMap<String, JobManagerStatus>,
}

/// The answer to ROUTER_SHOW_SCHEDULERS.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SchedulersView {
    /// EventMQ: connected scheduler processes. Always empty: emq-router runs
    /// schedules itself and refuses scheduler processes.
    pub connected_schedulers: BTreeMap<String, serde_json::Value>,
    /// The schedules the router itself keeps (see SCHEDULES).
    #[serde(default)]
    pub schedules: u64,
    /// When the next one fires.
    #[serde(default)]
    pub next_fire: Option<Timestamp>,
}

/// What to do with the slots of a schedule that passed while the router
/// was down.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, strum::Display, strum::EnumString)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum MissedPolicy {
    /// Fire once, at restart, for all of them.
    #[default]
    Coalesce,
    /// Fire none of them; go on from the next slot.
    Skip,
}

/// SCHEDULE_CTL's action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::Display, strum::EnumString, strum::IntoStaticStr)]
#[strum(serialize_all = "lowercase")]
pub enum ScheduleAction {
    /// Stop firing until resumed.
    Pause,
    /// Fire again, from the next slot (slots passed while paused are not fired).
    Resume,
    /// Forget it.
    Remove,
}

impl ScheduleAction {
    /// The action as it travels.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// When a schedule fires: exactly one of `every_ms` and `cron`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleSpec {
    /// Its name: letters, digits, `.`, `_`, `-`; at most 128.
    pub name: String,
    /// The queue its jobs go to.
    pub queue: String,
    /// The fired jobs' headers frame (`timeout:N`, `retry-count:N`, ...).
    #[serde(default)]
    pub headers: String,
    /// Fire every this many milliseconds, from when it is created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every_ms: Option<u64>,
    /// Fire at the times of this cron expression (5 fields, or 6 with seconds first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    /// The IANA time zone `cron` is read in (default UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tz: Option<String>,
    /// Do not fire when created, only at the first slot.
    #[serde(default)]
    pub nohaste: bool,
    /// Fire this many times, then end (and be removed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_count: Option<u64>,
    /// Slots passed while the router was down.
    #[serde(default)]
    pub missed: MissedPolicy,
    /// Created paused.
    #[serde(default)]
    pub paused: bool,
}

/// One schedule in SCHEDULES, and the answer to SCHEDULE_SET and SCHEDULE_CTL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleInfo {
    /// Its name.
    pub name: String,
    /// The queue its jobs go to.
    pub queue: String,
    /// The handler its jobs call.
    pub handler: String,
    /// Every this many milliseconds (interval schedules).
    pub every_ms: Option<u64>,
    /// Its cron expression (cron schedules).
    pub cron: Option<String>,
    /// The time zone of `cron`.
    pub tz: Option<String>,
    /// Who made it: `admin` (SCHEDULE_SET) or `eventmq` (SCHEDULE).
    pub origin: String,
    /// When it was created (or last replaced).
    pub created: Timestamp,
    /// Its next slot; `None` while paused.
    pub next: Option<Timestamp>,
    /// The slot it last fired for.
    pub last_slot: Option<Timestamp>,
    /// When it last fired.
    pub last_fire: Option<Timestamp>,
    /// The job it last fired (`sched:NAME:SLOT_MS`).
    pub last_job: Option<String>,
    /// How the last fired job that ended ended.
    pub last_outcome: Option<JobState>,
    /// Its error, if it failed.
    pub last_error: Option<String>,
    /// Jobs fired so far.
    pub fires: u64,
    /// Slots not fired: passed while the router was down (beyond the one a
    /// coalesce fires), or with the queue full.
    pub missed_slots: u64,
    /// Fires left, for a schedule with a run count.
    pub remaining: Option<u64>,
    /// Slots passed while the router was down.
    pub missed: MissedPolicy,
    /// Whether it is paused.
    pub paused: bool,
}

/// The answer to SCHEDULES: every schedule, by name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ScheduleList {
    /// The schedules.
    pub schedules: Vec<ScheduleInfo>,
}

/// One transition in a job's log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    /// When it happened.
    pub time: Timestamp,
    /// The state entered.
    pub status: JobState,
    /// What happened, for people.
    pub message: String,
}

/// The `detail` of a JOB answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JobDetail {
    /// The job's queue.
    pub queue: String,
    /// Whether the router journals and retries it.
    #[serde(default)]
    pub guaranteed: bool,
    /// Attempts started so far (guaranteed jobs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    /// Attempts it may have (guaranteed jobs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// The jobmanager running it, while it runs.
    #[serde(default)]
    pub jobmanager: Option<String>,
    /// When it may start (delayed jobs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<Timestamp>,
    /// When it expires if not started by then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<Timestamp>,
    /// Its `coalesce` or `unique` key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Its transitions, oldest first (guaranteed jobs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub log: Vec<LogEntry>,
    /// The handler it calls, while the router holds its body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handler: Option<String>,
    /// Its headers frame, while the router holds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<String>,
    /// Its body, cut to [`BODY_PREVIEW`] bytes (invalid UTF-8 replaced),
    /// while the router holds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// The body's whole length in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_bytes: Option<u64>,
}

/// Most bytes of a job's body that a JOB answer shows.
pub const BODY_PREVIEW: usize = 2048;

/// The first [`BODY_PREVIEW`] bytes of `body` as text, cut at a character
/// boundary, invalid UTF-8 replaced.
pub fn body_preview(body: &[u8]) -> String {
    let mut end = body.len().min(BODY_PREVIEW);
    // Cut inside a character: back off to its first byte (at most 3 back).
    let mut back = 0;
    while end < body.len() && end > 0 && back < 3 && body[end] & 0xC0 == 0x80 {
        end -= 1;
        back += 1;
    }
    String::from_utf8_lossy(&body[..end]).into_owned()
}

/// One waiting job in a [`JobPage`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WaitingJob {
    /// Its id.
    pub id: String,
    /// The handler it calls (`None`: its body names none the router can read).
    pub handler: Option<String>,
    /// Whether the router journals and retries it.
    pub guaranteed: bool,
    /// Attempts started so far.
    pub attempts: u32,
    /// Milliseconds it has been ready to run (routers that keep times:
    /// `--http`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waited_ms: Option<u64>,
}

/// The answer to WAITING: a page of a queue's waiting jobs, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JobPage {
    /// The queue.
    pub queue: String,
    /// Jobs waiting in it now.
    pub total: u64,
    /// Jobs skipped from the oldest.
    pub offset: u64,
    /// The jobs of this page.
    pub jobs: Vec<WaitingJob>,
}

/// The answer to DISCARD.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Discarded {
    /// The job dropped.
    pub id: String,
    /// Its queue.
    pub queue: String,
}

/// One job of the dead-letter set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadJob {
    /// The job's id.
    pub id: String,
    /// Its queue.
    pub queue: String,
    /// Attempts it had.
    pub attempts: u32,
    /// Its last log message (why it died).
    pub last: Option<String>,
}

/// The answer to DEAD: the dead-lettered jobs in acceptance order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeadList {
    /// The jobs.
    pub dead: Vec<DeadJob>,
}

/// The answer to PURGE.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Purged {
    /// The queue purged.
    pub queue: String,
    /// Waiting jobs cancelled.
    pub purged: u64,
}

impl ReplyNotice {
    /// A notice carrying `view` as its JSON frame.
    pub fn of<T: Serialize>(view: &T) -> ReplyNotice {
        // Plain serde-derived data with string keys: cannot fail to encode.
        ReplyNotice(serde_json::to_string(view).unwrap_or_default())
    }

    /// The typed answer this notice carries.
    pub fn view<T: serde::de::DeserializeOwned>(&self) -> Result<T, DecodeError> {
        serde_json::from_str(&self.0).map_err(|e| DecodeError::bad("answer", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_counts_tell_ok_from_failures_and_workers_add_up() {
        let mut c = QueueCounts::default();
        for (o, n) in [
            ("ok", 5),
            ("failed", 2),
            ("timeout", 1),
            ("expired", 1),
            ("cancelled", 7),
            ("superseded", 3),
        ] {
            c.finished.insert(o.into(), n);
        }
        assert_eq!((c.ok(), c.failed()), (5, 4));
        let mut status = RouterStatus::default();
        for (id, workers) in [("a", Some((4, 3, 1))), ("b", Some((2, 0, 0))), ("eventmq", None)] {
            let jm = JobManagerStatus {
                queues: vec![],
                slots: 0,
                running: 0,
                processed: 0,
                state: None,
                last_seen_ms: 0,
                liveness_ms: 0,
                kind: PeerKind::Emq,
                workers: workers.map(|(workers, busy, queued)| WorkerCounts { workers, busy, queued }),
            };
            status.jobmanagers.insert(id.into(), jm);
        }
        assert_eq!(
            status.workers(),
            WorkerCounts {
                workers: 6,
                busy: 3,
                queued: 1
            }
        );
    }

    #[test]
    fn a_body_preview_is_cut_at_a_character_boundary() {
        assert_eq!(body_preview(b"short"), "short");
        let mut body = vec![b'a'; BODY_PREVIEW - 1];
        body.extend("é and more".as_bytes());
        // 'é' is 2 bytes starting at BODY_PREVIEW - 1: it is left out whole.
        assert_eq!(body_preview(&body), "a".repeat(BODY_PREVIEW - 1));
        let binary = [0xffu8, 0xfe, b'x'];
        assert_eq!(body_preview(&binary), "\u{fffd}\u{fffd}x");
    }

    #[test]
    fn states_have_their_wire_names_and_read_old_journal_names() {
        assert_eq!(JobState::Cancelled.as_str(), "CANCELLED");
        assert_eq!("DEAD".parse::<JobState>().unwrap(), JobState::Dead);
        assert_eq!(serde_json::to_string(&JobState::Queued).unwrap(), "\"QUEUED\"");
        // Journals written before the states were shared say "Queued".
        assert_eq!(
            serde_json::from_str::<JobState>("\"Queued\"").unwrap(),
            JobState::Queued
        );
        assert_eq!(JobManagerState::ShuttingDown.as_str(), "SHUTTINGDOWN");
        assert_eq!("STEADY".parse::<JobManagerState>().unwrap(), JobManagerState::Steady);
        assert!("steady\x1b[2J".parse::<JobManagerState>().is_err());
    }

    #[test]
    fn status_keeps_eventmq_keys_and_times_are_rfc3339() {
        let mut status = RouterStatus::default();
        status.waiting_messages_by_queue.insert("default".into(), 3);
        let json: serde_json::Value = serde_json::from_str(&ReplyNotice::of(&status).0).unwrap();
        assert_eq!(json["waiting_messages_by_queue"]["default"], 3);
        assert!(json["inflight_messages_by_queue"].is_object());
        let entry = LogEntry {
            time: timestamp_ms(1_795_396_557_152),
            status: JobState::Queued,
            message: "queued".into(),
        };
        let json = serde_json::to_value(&entry).unwrap();
        assert_eq!(json["time"], "2026-11-23T01:15:57.152Z");
        assert_eq!(json["status"], "QUEUED");
        let back: LogEntry = serde_json::from_value(json).unwrap();
        assert_eq!(back, entry);
    }
}
