//! The jobmanager's decisions, with no sockets, processes or clock: its state
//! machine, the router link (INFORM/ACK, heartbeats, liveness, failover), slot
//! accounting (READY), job timeouts, local retries and the shutdown drain.
//!
//! The transport feeds it router messages, job completions from the pool and
//! the time, and carries out the [`Action`]s it returns.
//!
//! Invariant: `announced` (READYs the router has not answered) never exceeds
//! the free capacity, so the router is never promised a slot that is not there.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use emq_proto::views::WorkerCounts;
use emq_proto::{
    Capabilities, ContentType, ErrorCode, Headers, Inform, JobResult, Message, MsgIds, Now, Outcome, PeerType, Reply,
    Request, ResultFrames, Timing,
};
use log::{debug, info, warn};

use crate::Config;

mod slots;
use slots::Slots;

/// How long before the router last spoke results may still have been lost
/// with its link (in flight, or not yet journaled by it).
const RESEND_MARGIN: Duration = Duration::from_secs(1);

/// Shortest stay on a router that refuses connections before trying the
/// next (see `on_router_refused`).
const REFUSED_PAUSE: Duration = Duration::from_millis(200);

/// The jobmanager's state, as decisionengine's task manager names them (the
/// names travel in HEARTBEAT).
pub use emq_proto::JobManagerState as State;

/// Where the jobmanager is in its life; with the router link and the running
/// jobs it gives the [`State`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lifecycle {
    Serving,
    /// Stopping after SIGTERM: no new jobs; running ones may finish until
    /// `deadline`.
    Draining {
        deadline: Instant,
    },
    /// Done: KBYE said, the process exits.
    Done,
    /// Cannot go on (workers cannot be started).
    Failed,
}

/// What the transport must do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Close the current router connection (if any) and open one to
    /// `routers[index]` with a fresh identity.
    Connect {
        /// Index into the configured routers.
        router: usize,
    },
    /// Send to the current router.
    Send {
        /// The message's id.
        msgid: String,
        /// The message.
        message: Message,
    },
    /// Queue a job for the next idle worker.
    Start {
        /// The job.
        msgid: String,
        /// Its body's encoding.
        content_type: ContentType,
        /// Its body, undecoded.
        body: Vec<u8>,
    },
    /// Kill the worker running this job (timeout).
    Kill {
        /// The job.
        msgid: String,
    },
    /// Kill every worker now (grace period over, or second signal).
    KillAll,
    /// Take back the jobs no worker has taken yet (they come back as
    /// [`JobManager::on_job_returned`]).
    Withdraw,
    /// Resize the pool to this many workers.
    Resize {
        /// Workers wanted.
        workers: usize,
    },
    /// Leave the event loop; the process exits 0.
    Exit,
}

#[derive(Debug)]
enum Link {
    /// INFORM sent; no ACK yet.
    Informing {
        router: usize,
        inform_id: String,
        since: Instant,
    },
    Connected {
        router: usize,
        window: Duration,
        last_heard: Instant,
        /// The router is emq's (it announced timing), so one READY may carry
        /// a count instead of one message per slot.
        counted_ready: bool,
        /// The router reads BATCHes of our messages (its ACK said so).
        batches: bool,
        /// Silent for `quiet_after`: no job starts until it speaks again
        /// (the jobs no worker took are taken back, kept for then), so that
        /// fewer of the jobs it may soon give to another jobmanager run here.
        quiet: bool,
        /// Three of the router's heartbeats, at most half the window.
        quiet_after: Duration,
        /// A HEARTBEAT sent to see whether an emq router is still there
        /// (it answers at once), unanswered so far: see [`JobManager::probe_after`].
        probed: bool,
    },
}

#[derive(Debug)]
struct Job {
    msgid: String,
    headers: Headers,
    body: Vec<u8>,
}

/// Where a job handed to the pool is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// In the queue the workers take from: its timeout has not started.
    Queued,
    /// Running on a worker since `since`; killed at `deadline` (none: no
    /// timeout).
    Started { since: Instant, deadline: Option<Instant> },
    /// Past its timeout: its worker was killed, its end is on the way.
    Killed,
}

#[derive(Debug)]
struct Running {
    job: Job,
    attempt: u32,
    timeout: Duration,
    phase: Phase,
}

/// The jobmanager's state and decisions: fed router messages, pool events
/// and the time by the transport, it answers with [`Action`]s.
pub struct JobManager {
    config: Config,
    lifecycle: Lifecycle,
    /// The state last reported, derived from the lifecycle, the link and
    /// the running jobs (kept to log changes).
    state: State,
    link: Link,
    ever_connected: bool,
    /// Jobs handed to the pool, by msgid (a seeded fast hasher: at most
    /// its slots, so no flooding to fear).
    running: HashMap<String, Running, foldhash::fast::FixedState>,
    /// Jobs received beyond the running workers (prefetched), oldest first.
    backlog: VecDeque<Job>,
    /// Results finished while no router was connected.
    unsent: Vec<ResultFrames>,
    /// Guaranteed jobs that ended ok here, with their results, for a while.
    delivered: Delivered,
    announced: usize,
    /// Sizes the slots beyond the workers (without a fixed `--prefetch`).
    slots: Slots,
    /// When the HEARTBEAT after an emq router's ACK went out: its answer
    /// times the link's round trip (INFORM to ACK also counts the TCP and
    /// ZMTP handshakes of a new connection).
    echo_since: Option<Instant>,
    /// Guaranteed jobs' results kept since then go to the next router
    /// after its ACK (see [`JobManager::connect`]).
    resend_from: Option<Instant>,
    /// Jobs the router withdrew (CANCEL: they ended elsewhere) while in the
    /// workers' queue: dropped when they come back from it.
    withdrawn: Vec<String>,
    /// The monotonic time of the latest event.
    mono: Instant,
    out: Vec<Action>,
    next_heartbeat: Instant,
    /// Msgids of the messages it sends, from the seed.
    ids: MsgIds,
    /// The wall clock at the latest event, for HEARTBEAT payloads.
    wall_ms: i64,
    /// Jobs finished (any outcome) since the start.
    pub processed: u64,
    /// Of those, by outcome (indexed like `Outcome::VARIANTS`).
    ended: [u64; <Outcome as strum::VariantArray>::VARIANTS.len()],
    /// Attempts started on a worker (local retries included).
    started: u64,
}

/// What `/metrics` shows of a jobmanager (see [`JobManager::metrics`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Metrics {
    /// Its state, as reported to the router.
    pub state: State,
    /// Whether a router has answered its INFORM.
    pub connected: bool,
    /// Its workers now.
    pub workers: WorkerCounts,
    /// Jobs ended, by outcome.
    pub ended: Vec<(Outcome, u64)>,
    /// Attempts started on a worker.
    pub started: u64,
}

impl JobManager {
    /// A jobmanager starting at `now`; the core never reads a clock. `seed`
    /// feeds its msgids (the transport draws it from the OS).
    pub fn new(config: Config, now: Now, seed: u128) -> JobManager {
        let mut jm = JobManager {
            link: Link::Informing {
                router: 0,
                inform_id: String::new(),
                since: now.mono,
            },
            next_heartbeat: now.mono + config.heartbeat,
            config,
            lifecycle: Lifecycle::Serving,
            state: State::Boot,
            ever_connected: false,
            running: HashMap::with_hasher(foldhash::fast::FixedState::with_seed((seed >> 64) as u64)),
            backlog: VecDeque::new(),
            delivered: Delivered::new(seed as u64),
            echo_since: None,
            resend_from: None,
            withdrawn: Vec::new(),
            unsent: Vec::new(),
            announced: 0,
            slots: Slots::new(),
            mono: now.mono,
            out: Vec::new(),
            ids: MsgIds::from_seed(seed),
            wall_ms: now.unix_ms,
            processed: 0,
            ended: Default::default(),
            started: 0,
        };
        jm.out.push(Action::Resize {
            workers: jm.config.concurrency,
        });
        jm.connect(now.mono, 0);
        jm
    }

    fn draining(&self) -> bool {
        matches!(self.lifecycle, Lifecycle::Draining { .. })
    }

    /// Its state, as reported to the router.
    pub fn state(&self) -> State {
        self.state
    }

    /// What `/metrics` shows of it.
    pub fn metrics(&self) -> Metrics {
        use strum::VariantArray;
        Metrics {
            state: self.state,
            connected: matches!(self.link, Link::Connected { .. }),
            workers: self.worker_counts(),
            ended: Outcome::VARIANTS.iter().copied().zip(self.ended).collect(),
            started: self.started,
        }
    }

    /// What to do now, in order. Announces freed slots first.
    pub fn take_actions(&mut self) -> std::vec::Drain<'_, Action> {
        self.top_up();
        self.out.drain(..)
    }

    /// Jobs handed to the pool (running, or queued for a worker).
    pub fn running(&self) -> usize {
        self.running.len()
    }

    /// Jobs this jobmanager holds: handed to the pool, or prefetched.
    pub fn held(&self) -> usize {
        self.running.len() + self.backlog.len()
    }

    /// Most jobs it may hold: what it may announce to the router. Workers
    /// plus `--prefetch`, or plus what covers the round trip at the rate
    /// jobs end (`core/slots.rs`).
    pub fn capacity(&self) -> usize {
        let workers = self.config.concurrency;
        workers + self.config.prefetch.unwrap_or_else(|| self.slots.extra(workers))
    }

    /// When `tick` next has work to do.
    pub fn next_deadline(&self) -> Instant {
        let mut next = self.next_heartbeat;
        let mut queued = false;
        for r in self.running.values() {
            match r.phase {
                Phase::Started { deadline: Some(d), .. } => next = next.min(d),
                Phase::Queued => queued = true,
                _ => {}
            }
        }
        match self.link {
            Link::Informing { since, .. } => next = next.min(since + self.config.liveness),
            Link::Connected { last_heard, .. } => {
                next = next.min(last_heard + self.silence_allowed(queued || !self.backlog.is_empty()));
            }
        }
        if let Lifecycle::Draining { deadline } = self.lifecycle {
            next = next.min(deadline);
        }
        next
    }

    /// Whether the messages of one turn may go to the router as one
    /// BATCH (its ACK said it reads them).
    pub fn router_reads_batches(&self) -> bool {
        matches!(self.link, Link::Connected { batches: true, .. })
    }

    /// A msgid for a message the transport makes (a BATCH).
    pub fn next_msgid(&mut self) -> String {
        self.ids.next()
    }

    fn free(&self) -> usize {
        self.capacity().saturating_sub(self.running.len() + self.backlog.len())
    }

    fn send(&mut self, message: Message) {
        self.out.push(Action::Send {
            msgid: self.ids.next(),
            message,
        });
    }

    fn connect(&mut self, now: Instant, router: usize) {
        if let Link::Connected { last_heard, .. } = self.link {
            // Results sent since shortly before the router last spoke may
            // be lost with the link (on the wire, or not yet journaled):
            // the guaranteed ones kept here go again after the next ACK.
            let from = last_heard.checked_sub(RESEND_MARGIN).unwrap_or(last_heard);
            self.resend_from = Some(self.resend_from.map_or(from, |t| t.min(from)));
        }
        self.abandon_unstarted();
        self.out.push(Action::Connect { router });
        self.inform(now, router);
    }

    /// The router we had is gone (or forgot us): the jobs it gave us that no
    /// worker has started are its to give again, so none of them starts here
    /// now (that would run them twice). Running jobs finish; their results
    /// wait for the next router.
    fn abandon_unstarted(&mut self) {
        let queued = self.running.values().filter(|r| r.phase == Phase::Queued).count();
        if self.backlog.is_empty() && queued == 0 {
            return;
        }
        info!(
            "leaving {} job(s) no worker started to the router",
            self.backlog.len() + queued
        );
        self.backlog.clear();
        if queued > 0 {
            self.out.push(Action::Withdraw);
        }
    }

    fn inform(&mut self, now: Instant, router: usize) {
        let inform_id = self.ids.next();
        let timing = Timing {
            heartbeat_ms: self.config.heartbeat.as_millis() as u64,
            liveness_ms: self.config.liveness.as_millis() as u64,
        };
        let handlers = (!self.config.handlers.is_empty()).then(|| self.config.handlers.clone());
        let message = Message::Inform(Inform {
            queues: self.config.queues.clone(),
            peer_type: PeerType::Worker,
            timing: Some(timing),
            capabilities: Capabilities { handlers, batch: true },
        });
        self.out.push(Action::Send {
            msgid: inform_id.clone(),
            message,
        });
        self.link = Link::Informing {
            router,
            inform_id,
            since: now,
        };
        self.announced = 0;
        self.update_state();
    }

    /// The state, from the lifecycle, the router link and the running jobs:
    /// the one place it is decided.
    fn derived_state(&self) -> State {
        match self.lifecycle {
            Lifecycle::Failed => State::Error,
            Lifecycle::Done => State::Shutdown,
            Lifecycle::Draining { .. } => State::ShuttingDown,
            Lifecycle::Serving if !matches!(self.link, Link::Connected { .. }) => {
                if self.ever_connected {
                    State::Offline
                } else {
                    State::Boot
                }
            }
            Lifecycle::Serving if self.running.is_empty() => State::Idle,
            // Every worker busy (pipelined jobs count as busy too).
            Lifecycle::Serving if self.running.len() >= self.config.concurrency => State::Steady,
            Lifecycle::Serving => State::Active,
        }
    }

    fn update_state(&mut self) {
        let next = self.derived_state();
        if next != self.state {
            // IDLE, ACTIVE and STEADY alternate with every job when jobs are
            // few: at info level that was a log line per job.
            let busy = |s: State| matches!(s, State::Idle | State::Active | State::Steady);
            if busy(self.state) && busy(next) {
                debug!("state {} -> {}", self.state, next);
            } else {
                info!("state {} -> {}", self.state, next);
            }
            self.state = next;
        }
    }

    /// Announce every free slot the router does not know about yet. Called
    /// once per batch of events (from `take_actions`), so that slots freed
    /// together go out in one READY to an emq router.
    fn top_up(&mut self) {
        let Link::Connected { counted_ready, .. } = self.link else {
            return;
        };
        if self.lifecycle != Lifecycle::Serving || self.announced >= self.free() {
            return;
        }
        let deficit = self.free() - self.announced;
        self.announced += deficit;
        self.slots.announced(self.mono, deficit as u32);
        if counted_ready {
            self.send(Message::Ready { count: deficit as u32 });
        } else {
            for _ in 0..deficit {
                self.send(Message::Ready { count: 1 });
            }
        }
    }

    /// Hand a job to the pool.
    fn start(&mut self, job: Job, attempt: u32) {
        let secs = job.headers.timeout_secs;
        let timeout = if secs > 0 {
            Duration::from_secs(secs)
        } else {
            self.config.default_timeout
        };
        debug!("job {} attempt {attempt} to a worker (timeout {timeout:?})", job.msgid);
        self.out.push(Action::Start {
            msgid: job.msgid.clone(),
            content_type: job.headers.content_type,
            body: job.body.clone(),
        });
        self.running.insert(
            job.msgid.clone(),
            Running {
                job,
                attempt,
                timeout,
                phase: Phase::Queued,
            },
        );
    }

    /// A worker took the job: its timeout counts from now.
    pub fn on_job_started(&mut self, now: Now, msgid: &str) {
        self.mono = now.mono;
        if !self.withdrawn.is_empty() {
            // Taken by a worker before it could be withdrawn: it runs.
            self.withdrawn.retain(|w| w != msgid);
        }
        if let Some(r) = self.running.get_mut(msgid) {
            self.started += u64::from(r.phase == Phase::Queued);
            r.phase = Phase::Started {
                since: now.mono,
                deadline: (!r.timeout.is_zero()).then(|| now.mono + r.timeout),
            };
        }
    }

    /// The job was taken back from the workers' queue before any worker
    /// took it: never attempted. While serving a connected router it goes
    /// back to the front of the backlog (jobs taken back together come
    /// newest first, so they keep their order); otherwise it is the
    /// router's to give again (after KBYE, or to another jobmanager).
    pub fn on_job_returned(&mut self, msgid: &str) {
        let Some(r) = self.running.remove(msgid) else { return };
        if let Some(i) = self.withdrawn.iter().position(|w| w == msgid) {
            self.withdrawn.swap_remove(i);
            info!("job {msgid} ended elsewhere: dropped before any worker took it");
            self.start_backlog_now();
        } else if self.lifecycle == Lifecycle::Serving && matches!(self.link, Link::Connected { .. }) {
            debug!("job {msgid} taken back before any worker took it");
            self.backlog.push_front(r.job);
            self.start_backlog_now();
        } else {
            debug!("job {msgid} taken back before any worker took it: left to the router");
        }
        if self.draining() && self.running.is_empty() {
            self.finish();
        }
    }

    /// Start backlog jobs while the pool has room.
    fn start_backlog_now(&mut self) {
        if self.lifecycle != Lifecycle::Serving || matches!(self.link, Link::Connected { quiet: true, .. }) {
            return;
        }
        while self.running.len() < self.capacity() {
            let Some(job) = self.backlog.pop_front() else { break };
            self.start(job, 1);
        }
        self.update_state();
    }

    /// How long an emq router may be silent, while this jobmanager holds
    /// jobs no worker has started (`holding`), before it is probed with a
    /// HEARTBEAT; unanswered for as long again, the link is quiet. Four
    /// round trips, at least 50 ms, at most half of `quiet_after`: a cut link
    /// is noticed within a few round trips, so few held jobs start on a
    /// jobmanager the router may soon declare dead. None: not holding, or
    /// a router that does not answer probes (EventMQ's).
    fn probe_after(&self, holding: bool) -> Option<Duration> {
        match self.link {
            Link::Connected {
                counted_ready: true,
                quiet_after,
                ..
            } if holding => Some((self.slots.round_trip() * 4).clamp(Duration::from_millis(50), quiet_after / 2)),
            _ => None,
        }
    }

    /// How long a connected router may be silent before the link's next
    /// step: when quiet, its window (then it is presumed gone); holding jobs
    /// no worker started (`holding`), with an emq router, until the probe,
    /// then as long again (then quiet); otherwise `quiet_after`.
    fn silence_allowed(&self, holding: bool) -> Duration {
        match self.link {
            Link::Connected {
                window, quiet: true, ..
            } => window,
            Link::Connected {
                probed, quiet_after, ..
            } => match self.probe_after(holding) {
                Some(p) if probed => p * 2,
                Some(p) => p,
                None => quiet_after,
            },
            Link::Informing { .. } => self.config.liveness,
        }
    }

    /// Whether it holds jobs no worker has started.
    fn holding(&self) -> bool {
        !self.backlog.is_empty() || self.any_queued()
    }

    /// Whether the workers' queue holds jobs of ours no worker took yet.
    fn any_queued(&self) -> bool {
        self.running.values().any(|r| r.phase == Phase::Queued)
    }

    /// A message from the router.
    pub fn on_router(&mut self, now: Now, msgid: &str, message: Message) {
        self.wall_ms = now.unix_ms;
        let now = now.mono;
        self.mono = now;
        if let Link::Connected {
            last_heard,
            quiet,
            probed,
            ..
        } = &mut self.link
        {
            *last_heard = now;
            *probed = false;
            if std::mem::take(quiet) {
                info!("router speaks again: starting jobs");
                self.start_backlog_now();
            }
        }
        match message {
            Message::Ack {
                of,
                timing,
                capabilities,
                ..
            } => self.on_ack(now, &of, timing, capabilities.batch),
            Message::Request(req) => self.on_request(now, msgid, req),
            Message::Heartbeat { .. } => {
                if let Some(sent) = self.echo_since.take() {
                    self.slots.link_measured(now.saturating_duration_since(sent));
                }
            }
            Message::Kbye => {
                let router = self.router_index();
                warn!("router {router} said KBYE: reconnecting");
                self.connect(now, self.next_router(router));
            }
            Message::Error {
                code: ErrorCode::NotInformed,
                ..
            } => {
                if let Link::Connected { router, .. } = self.link {
                    warn!("router {router} does not know us (restarted?): informing again");
                    self.abandon_unstarted();
                    self.inform(now, router);
                }
            }
            Message::Error { of, code, reason } => warn!("router refused {of}: {code}: {reason}"),
            Message::Cancel { of } => self.withdraw_copy(&of),
            other => debug!("ignoring {} from router", other.command().as_str()),
        }
    }

    /// The router has another jobmanager's (late) result for job `of`:
    /// this copy is dropped unless a worker has started it.
    fn withdraw_copy(&mut self, of: &str) {
        if let Some(i) = self.backlog.iter().position(|j| j.msgid == of) {
            self.backlog.remove(i);
            info!("job {of} ended elsewhere: dropped before it started");
        } else if self.running.get(of).is_some_and(|r| r.phase == Phase::Queued) {
            self.withdrawn.push(of.to_string());
            self.out.push(Action::Withdraw);
        } else {
            debug!("job {of} ended elsewhere but runs here (or ran): its result will be ignored");
        }
        self.update_state();
    }

    fn router_index(&self) -> usize {
        match self.link {
            Link::Informing { router, .. } | Link::Connected { router, .. } => router,
        }
    }

    fn next_router(&self, current: usize) -> usize {
        (current + 1) % self.config.routers.len()
    }

    fn on_ack(&mut self, now: Instant, of: &str, timing: Option<Timing>, batches: bool) {
        let Link::Informing {
            router,
            inform_id,
            since,
        } = &self.link
        else {
            return;
        };
        if of != inform_id {
            return;
        }
        let router = *router;
        self.slots.reconnected(now.saturating_duration_since(*since));
        // The router's announced heartbeat can only lengthen our patience.
        let router_hb = timing.map_or(Duration::from_secs(3), |t| Duration::from_millis(t.heartbeat_ms));
        let window = self.config.liveness.max(router_hb * 3);
        info!(
            "connected to router {} ({}), liveness window {window:?}",
            router, self.config.routers[router]
        );
        self.link = Link::Connected {
            router,
            window,
            last_heard: now,
            counted_ready: timing.is_some(),
            batches,
            quiet: false,
            quiet_after: (router_hb * 3).min(window / 2),
            probed: false,
        };
        self.ever_connected = true;
        self.announced = 0;
        let unsent = std::mem::take(&mut self.unsent);
        if let Some(from) = self.resend_from.take() {
            let again: Vec<ResultFrames> = self
                .delivered
                .kept_since(from)
                .filter(|r| !unsent.iter().any(|u| u.of == r.of))
                .collect();
            if !again.is_empty() {
                info!(
                    "sending again {} guaranteed result(s) the last router may not have kept",
                    again.len()
                );
            }
            for result in again {
                self.send(Message::Reply(Reply::Result(result)));
            }
        }
        for result in unsent {
            self.send(Message::Reply(Reply::Result(result)));
        }
        self.update_state();
        // Let the router show our state now rather than at the next beat.
        self.heartbeat(now);
        self.echo_since = timing.is_some().then_some(now);
    }

    fn heartbeat(&mut self, now: Instant) {
        // Only an emq router (it announced its timing) reads the counts.
        let workers = matches!(
            self.link,
            Link::Connected {
                counted_ready: true,
                ..
            }
        )
        .then(|| self.worker_counts());
        self.send(Message::Heartbeat {
            unix_time: Now::new(now, self.wall_ms).unix_secs_text(),
            state: Some(self.state),
            workers,
        });
        self.next_heartbeat = now + self.config.heartbeat;
    }

    /// Its workers for the router's gauges: how many it keeps, how many run
    /// a job, how many jobs wait for one.
    fn worker_counts(&self) -> WorkerCounts {
        let busy = self
            .running
            .values()
            .filter(|r| !matches!(r.phase, Phase::Queued))
            .count();
        let queued = self.running.len() - busy + self.backlog.len();
        WorkerCounts {
            workers: self.config.concurrency as u32,
            busy: busy.min(self.config.concurrency) as u32,
            queued: queued as u32,
        }
    }

    fn on_request(&mut self, now: Instant, msgid: &str, req: Request) {
        let announced = self.announced > 0;
        self.announced = self.announced.saturating_sub(1);
        self.slots.filled(now, req.body.len());
        if self.running.contains_key(msgid) || self.backlog.iter().any(|j| j.msgid == msgid) {
            debug!("job {msgid} already here: duplicate REQUEST ignored");
            return;
        }
        if let Some(result) = self.delivered.get(msgid) {
            // The router lost our result (it crashed before journaling it):
            // the result again, not a second run.
            info!("job {msgid} already ran here: its result sent again instead of running it twice");
            self.send(Message::Reply(Reply::Result(result)));
            self.update_state();
            return;
        }
        let job = Job {
            msgid: msgid.to_string(),
            headers: req.headers,
            body: req.body,
        };
        // (A REQUEST is the router speaking: the link is not quiet here.)
        if self.lifecycle == Lifecycle::Serving && self.running.len() < self.capacity() {
            self.start(job, 1);
        } else {
            if self.lifecycle == Lifecycle::Serving && !announced {
                warn!("job {msgid} arrived with no free slot: keeping it until one frees");
            } else {
                // Announced while jobs looked shorter: slots sized to the
                // round trip shrink, and slots already announced stay.
                debug!("job {msgid} waits for a free slot");
            }
            self.backlog.push_back(job);
        }
        self.update_state();
    }

    /// A worker finished (or lost) a job.
    pub fn on_job_done(&mut self, now: Now, msgid: &str, outcome: Outcome, content_type: ContentType, body: Vec<u8>) {
        self.mono = now.mono;
        let Some(run) = self.running.remove(msgid) else {
            debug!("completion for unknown job {msgid} ignored");
            return;
        };
        if let Phase::Started { since, .. } = run.phase {
            self.slots.ran(now.mono.saturating_duration_since(since));
        }
        let (outcome, body) = if run.phase == Phase::Killed {
            let msg = format!("job ran past its timeout ({:?}) and was killed", run.timeout);
            (
                Outcome::TimedOut,
                JobResult::failed(Outcome::TimedOut, msg).encode_body(content_type),
            )
        } else {
            (outcome, body)
        };
        if outcome.is_retryable() && run.attempt <= run.job.headers.retry_count && self.lifecycle == Lifecycle::Serving
        {
            info!(
                "job {msgid} attempt {} ended {}: retrying ({} retries allowed)",
                run.attempt,
                outcome.as_str(),
                run.job.headers.retry_count
            );
            self.start(run.job, run.attempt + 1);
            return;
        }
        self.processed += 1;
        self.ended[outcome as usize] += 1;
        if !outcome.is_ok() {
            info!("job {msgid} ended {}", outcome.as_str());
        }
        let result = ResultFrames {
            of: msgid.to_string(),
            outcome,
            content_type,
            body,
        };
        if outcome.is_ok() && run.job.headers.guarantee {
            self.delivered.keep(&result, now.mono);
        }
        if matches!(self.link, Link::Connected { .. }) {
            self.send(Message::Reply(Reply::Result(result)));
        } else {
            self.unsent.push(result);
        }
        self.start_backlog_now();
        self.update_state();
        if self.draining() && self.running.is_empty() {
            self.finish();
        }
    }

    /// The connection to the router closed (its process died, or it closed
    /// it): no need to wait out the liveness window for that. Silence stays
    /// the test for a router that is frozen or cut off.
    pub fn on_router_disconnected(&mut self, now: Now) {
        self.wall_ms = now.unix_ms;
        self.mono = now.mono;
        if let Link::Connected { router, .. } = self.link {
            warn!("connection to router {router} closed: presumed gone, reconnecting");
            self.connect(now.mono, self.next_router(router));
        }
    }

    /// The router we are informing refused the TCP connection (nothing
    /// listens there: it is down, or a standby that has not taken over):
    /// with several routers configured, try the next rather than wait a
    /// whole liveness window; but not sooner than `REFUSED_PAUSE` after the
    /// last try, or routers that all refuse would be cycled through as fast
    /// as sockets can be made (ZeroMQ reports the refusal again at each of
    /// its own retries, so the move comes at one of those).
    pub fn on_router_refused(&mut self, now: Now) {
        self.wall_ms = now.unix_ms;
        self.mono = now.mono;
        if let Link::Informing { router, since, .. } = self.link {
            if self.config.routers.len() > 1 && now.mono >= since + REFUSED_PAUSE {
                debug!("router {router} refused the connection: trying the next");
                self.connect(now.mono, self.next_router(router));
            }
        }
    }

    /// Time passes: heartbeats, router liveness, job timeouts, drain deadline.
    pub fn tick(&mut self, now: Now) {
        self.wall_ms = now.unix_ms;
        let now = now.mono;
        self.mono = now;
        if now >= self.next_heartbeat {
            if matches!(self.link, Link::Connected { .. }) {
                self.heartbeat(now);
            } else {
                self.next_heartbeat = now + self.config.heartbeat;
            }
        }
        match self.link {
            Link::Connected {
                router,
                window,
                last_heard,
                ..
            } if now >= last_heard + window => {
                warn!("router {router} silent for {window:?}: presumed gone, reconnecting");
                self.connect(now, self.next_router(router));
            }
            Link::Connected {
                router,
                last_heard,
                quiet: false,
                probed,
                ..
            } => {
                let silent = now.saturating_duration_since(last_heard);
                let holding = self.holding();
                if silent >= self.silence_allowed(holding) {
                    match self.probe_after(holding) {
                        Some(_) if !probed => {
                            debug!("router {router} silent for {silent:?} while jobs wait here: probing it");
                            if let Link::Connected { probed, .. } = &mut self.link {
                                *probed = true;
                            }
                            self.heartbeat(now);
                        }
                        Some(_) => {
                            info!("router {router} silent for {silent:?}, probe unanswered: starting no job until it speaks");
                            self.go_quiet();
                        }
                        None => {
                            warn!("router {router} silent for {silent:?}: starting no job until it speaks");
                            self.go_quiet();
                        }
                    }
                }
            }
            Link::Informing { router, since, .. } if now >= since + self.config.liveness => {
                debug!("no ACK from router {router}: trying again");
                self.connect(now, self.next_router(router));
            }
            _ => {}
        }
        let mut expired: Vec<String> = self
            .running
            .iter()
            .filter(|(_, r)| matches!(r.phase, Phase::Started { deadline: Some(d), .. } if now >= d))
            .map(|(id, _)| id.clone())
            .collect();
        expired.sort_unstable();
        for msgid in expired {
            warn!("job {msgid} past its timeout: killing its worker");
            if let Some(r) = self.running.get_mut(&msgid) {
                r.phase = Phase::Killed;
            }
            self.out.push(Action::Kill { msgid });
        }
        if matches!(self.lifecycle, Lifecycle::Draining { deadline } if now >= deadline) {
            warn!(
                "grace period over with {} job(s) running: killing them",
                self.running.len()
            );
            self.out.push(Action::KillAll);
            self.finish();
        }
    }

    /// Start no job until the router speaks; take back those no worker took.
    fn go_quiet(&mut self) {
        if let Link::Connected { quiet, .. } = &mut self.link {
            *quiet = true;
        }
        if self.any_queued() {
            self.out.push(Action::Withdraw);
        }
    }

    /// SIGTERM/SIGINT: stop taking jobs and let running ones finish within the
    /// grace period. A second call stops at once.
    pub fn shutdown(&mut self, now: Now) {
        if self.draining() {
            warn!("second stop request: stopping now");
            self.out.push(Action::KillAll);
            return self.finish();
        }
        info!(
            "stopping: {} job(s) running, {:?} grace",
            self.running.len(),
            self.config.grace
        );
        self.lifecycle = Lifecycle::Draining {
            deadline: now.mono + self.config.grace,
        };
        self.update_state();
        if self.running.is_empty() {
            self.finish();
        } else {
            // Jobs no worker took yet go back to the router with KBYE.
            self.out.push(Action::Withdraw);
        }
    }

    /// Say KBYE (the router hands back whatever we did not finish) and exit.
    fn finish(&mut self) {
        if self.lifecycle == Lifecycle::Done {
            return;
        }
        if matches!(self.link, Link::Connected { .. }) {
            self.send(Message::Kbye);
        }
        self.lifecycle = Lifecycle::Done;
        self.update_state();
        self.out.push(Action::Exit);
    }

    /// The pool could not keep workers alive.
    pub fn fail(&mut self, why: &str) {
        log::error!("{why}");
        self.lifecycle = Lifecycle::Failed;
        self.update_state();
        if matches!(self.link, Link::Connected { .. }) {
            self.send(Message::Kbye);
        }
        self.out.push(Action::KillAll);
        self.out.push(Action::Exit);
    }

    /// SIGHUP: apply a new configuration.
    pub fn reconfigure(&mut self, now: Now, config: Config) {
        let now = now.mono;
        let queues_changed = config.queues != self.config.queues;
        let resized = config.concurrency != self.config.concurrency;
        info!(
            "configuration reloaded (queues changed: {queues_changed}, concurrency {} -> {})",
            self.config.concurrency, config.concurrency
        );
        let routers_changed = config.routers != self.config.routers;
        self.config = config;
        if resized {
            self.out.push(Action::Resize {
                workers: self.config.concurrency,
            });
        }
        if routers_changed {
            self.connect(now, 0);
        } else if queues_changed {
            let router = self.router_index();
            self.inform(now, router);
        } else {
            self.start_backlog_now();
        }
        self.update_state();
    }
}

/// Results of guaranteed jobs that ended ok here: the latest 1024 of up
/// to 16 KiB each. A router that crashed after our REPLY but before
/// journaling it sends the job again; it gets this result instead of a
/// second run. Failures are not kept: the router sends a failed job again
/// to retry it. A ring of slots whose buffers are reused, found by the
/// hash of the job id: no allocation per job once the ring is full.
struct Delivered {
    slots: Vec<DeliveredSlot>,
    /// The slot the next result overwrites.
    next: usize,
    /// Hash of a job id -> its slot (checked against the slot's id).
    by_hash: std::collections::HashMap<u64, u32, foldhash::fast::FixedState>,
    hasher: foldhash::fast::FixedState,
}

struct DeliveredSlot {
    kept_at: Instant,
    id: String,
    hash: u64,
    content_type: ContentType,
    body: Vec<u8>,
}

impl Delivered {
    const SLOTS: usize = 1024;
    const MAX_BODY: usize = 16 << 10;

    fn new(seed: u64) -> Delivered {
        let hasher = foldhash::fast::FixedState::with_seed(seed);
        Delivered {
            slots: Vec::new(),
            next: 0,
            by_hash: std::collections::HashMap::with_capacity_and_hasher(Self::SLOTS, hasher.clone()),
            hasher,
        }
    }

    /// Job `id`'s kept result (outcome ok), as a REPLY would carry it.
    #[inline]
    fn get(&self, id: &str) -> Option<ResultFrames> {
        if self.slots.is_empty() {
            return None;
        }
        let slot = &self.slots[*self.by_hash.get(&std::hash::BuildHasher::hash_one(&self.hasher, id))? as usize];
        (slot.id == id).then(|| ResultFrames {
            of: id.to_string(),
            outcome: Outcome::Ok,
            content_type: slot.content_type,
            body: slot.body.clone(),
        })
    }

    /// The results kept at or after `from`, newest first.
    fn kept_since(&self, from: Instant) -> impl Iterator<Item = ResultFrames> + '_ {
        let len = self.slots.len();
        (0..len)
            .map(move |k| &self.slots[(self.next + 2 * len - 1 - k) % len])
            .take_while(move |slot| slot.kept_at >= from)
            .map(|slot| ResultFrames {
                of: slot.id.clone(),
                outcome: Outcome::Ok,
                content_type: slot.content_type,
                body: slot.body.clone(),
            })
    }

    fn keep(&mut self, result: &ResultFrames, now: Instant) {
        if result.body.len() > Self::MAX_BODY {
            return;
        }
        let hash = std::hash::BuildHasher::hash_one(&self.hasher, result.of.as_str());
        let i = self.next;
        self.next = (i + 1) % Self::SLOTS;
        if i == self.slots.len() {
            self.slots.push(DeliveredSlot {
                kept_at: now,
                id: result.of.clone(),
                hash,
                content_type: result.content_type,
                body: result.body.clone(),
            });
        } else {
            let slot = &mut self.slots[i];
            if self.by_hash.get(&slot.hash) == Some(&(i as u32)) {
                self.by_hash.remove(&slot.hash);
            }
            slot.kept_at = now;
            slot.id.clear();
            slot.id.push_str(&result.of);
            slot.hash = hash;
            slot.content_type = result.content_type;
            slot.body.clear();
            slot.body.extend_from_slice(&result.body);
        }
        self.by_hash.insert(hash, i as u32);
    }
}

#[cfg(test)]
mod tests;
