//! The routing core: every decision the router makes, with no sockets, no
//! clock and no randomness of its own. The transport feeds it
//! `(now, endpoint, peer, frames)` and sends what [`Router::take_outgoing`]
//! returns, after committing what [`Router::take_store_ops`] returns;
//! [`Router::next_deadline`] tells it how long it may block in poll.
//!
//! How to drive it, in this order each loop turn:
//! 1. [`Router::tick`] when [`Router::next_deadline`] has passed;
//! 2. [`Router::handle`] for each message received;
//! 3. [`Router::take_store_ops`], commit them, then send
//!    [`Router::take_outgoing`] (those marked `after_commit` only once the
//!    commit is durable); hand what could not be sent to
//!    [`Router::undeliverable`], which may produce more to send.
//!
//! This file is the dispatcher: it decodes a message and hands it to the
//! module that owns that part of the router's state:
//!
//! | module | owns |
//! |---|---|
//! | `clients.rs` | submissions, queries, cancellation |
//! | `fleet.rs` | jobmanagers: INFORM, slots, liveness, results |
//! | `routing.rs` | which job goes to which jobmanager |
//! | `handlers.rs` | handler names, declared by jobmanagers and called by jobs |
//! | `queues.rs` | the waiting lists and their totals |
//! | `guaranteed.rs` | journal, retries, dead letters, tracking, restore |
//! | `timers.rs` | jobs waiting for a time (not-before, retry backoff) |
//! | `flow.rs` | keys (coalesce, unique), expiry, queue controls (pause, concurrency, rate) |
//! | `schedules.rs` | interval and cron schedules, their slots and fires |
//! | `graphs.rs` | workflows: graphs of jobs with `after` edges, batches |
//! | `observe.rs` | the event stream, per-queue counters and time histograms |
//! | `admin.rs` | admin commands and the status views |
//!
//! Invariants:
//! - a job is in exactly one place (`Job::place`): a queue's waiting list,
//!   backing off, or running on one jobmanager, until its first REPLY;
//! - a jobmanager's `slots` counts READYs not yet answered with a REQUEST;
//! - nothing a client sent is dropped without an ERROR telling it so.

use std::fmt;
use std::rc::Rc;
use std::time::{Duration, Instant};

use emq_proto::{decode_with_limit, peek_msgid, ErrorCode, Message, MsgIds, Now, Reply};
use log::{debug, warn};

use crate::journal::{CorruptRow, Row, StoreOp, Table};
use crate::results::ResultStore;
use crate::{Config, HashMap, HashSet};

mod admin;
mod clients;
mod fleet;
mod flow;
mod graphs;
mod guaranteed;
mod handlers;
mod jobs;
mod observe;
mod queues;
mod routing;
mod schedules;
mod timers;

use fleet::JobManager;
use flow::Flow;
use graphs::Graphs;
use guaranteed::Guaranteed;
use handlers::HandlerNames;
use jobs::Job;
pub use jobs::JobKey;
pub use observe::EventBurst;
use observe::Observer;
use queues::Queues;
use schedules::Schedules;
use timers::Timers;

/// Which socket a message came in on or goes out of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// Clients.
    Frontend,
    /// Jobmanagers.
    Backend,
    /// Admin tools.
    Admin,
}

/// A ZeroMQ peer identity as the ROUTER socket reports it.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub Vec<u8>);

impl PeerId {
    /// The identity as text: as it is when it is printable ASCII (emq's
    /// identities are UUIDs), in hexadecimal otherwise.
    pub fn text(&self) -> std::borrow::Cow<'_, str> {
        match std::str::from_utf8(&self.0) {
            Ok(s) if s.bytes().all(|b| b.is_ascii_graphic()) => std::borrow::Cow::Borrowed(s),
            _ => std::borrow::Cow::Owned(self.0.iter().map(|b| format!("{b:02x}")).collect()),
        }
    }

    /// `prefix` and the identity as text, for a log line: sized at once
    /// (through `format!` the identity made it grow, a `realloc` per job).
    pub fn after(&self, prefix: &str) -> String {
        let text = self.text();
        let mut line = String::with_capacity(prefix.len() + text.len());
        line.push_str(prefix);
        line.push_str(&text);
        line
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text())
    }
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// What an [`Outgoing`] message carries, so that a message the transport
/// could not deliver is handled without reading its frames again.
#[derive(Debug, Clone, PartialEq)]
pub enum Carries {
    /// A job for a jobmanager (a REQUEST).
    Job(JobKey),
    /// Jobs for a jobmanager, in one BATCH of REQUESTs.
    Jobs(Vec<JobKey>),
    /// Results for a client, in one BATCH of REPLYs: (job, queue) each.
    Results(Vec<(JobKey, Rc<str>)>),
    /// A job's result for its client (a REPLY).
    Result {
        /// The job.
        of: JobKey,
        /// Its queue, for the result kept if the client is gone.
        queue: Rc<str>,
    },
    /// Anything else: acknowledgements, errors, answers, heartbeats.
    Other,
}

/// A message for the transport to send: `[peer identity] + frames` on `endpoint`.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    /// The socket to send it on.
    pub endpoint: Endpoint,
    /// Its recipient.
    pub peer: PeerId,
    /// The message, built by `emq-proto`.
    pub frames: Vec<Vec<u8>>,
    /// A promise that rests on the journal (the ACK or result of a guaranteed
    /// job): sent only once the store operations queued with it are committed.
    pub after_commit: bool,
    /// What it is.
    pub carries: Carries,
}

impl Outgoing {
    /// The BATCH in `out` that messages for `peer` on `endpoint` join now:
    /// its open one if it has one sent at the same time (`after_commit`)
    /// with room left, else a new one carrying `carries` (empty).
    fn open_batch<'a>(
        out: &'a mut Vec<Outgoing>,
        open: &mut Vec<(Endpoint, Rc<PeerId>, usize)>,
        ids: &mut MsgIds,
        (endpoint, peer): (Endpoint, &Rc<PeerId>),
        after_commit: bool,
        carries: fn() -> Carries,
    ) -> &'a mut Outgoing {
        let found = open.iter().position(|(e, p, _)| *e == endpoint && Rc::ptr_eq(p, peer));
        let reusable = found.filter(|&i| {
            let batch = &out[open[i].2];
            batch.after_commit == after_commit && batch.frames[4].len() < emq_proto::BATCH_BYTES
        });
        let index = match reusable {
            Some(i) => open[i].2,
            None => {
                if let Some(i) = found {
                    open.swap_remove(i);
                }
                out.push(Outgoing {
                    endpoint,
                    peer: PeerId::clone(peer),
                    frames: emq_proto::batch_frames(&ids.next(), Vec::with_capacity(4096)),
                    after_commit,
                    carries: carries(),
                });
                open.push((endpoint, peer.clone(), out.len() - 1));
                out.len() - 1
            }
        };
        &mut out[index]
    }
}

/// Where the router is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lifecycle {
    Serving,
    /// An admin sent DISCONNECT; the transport stops the loop and calls
    /// [`Router::shutdown`].
    StopRequested,
    /// Saying goodbye: new work is refused.
    Stopping,
}

/// The router's state and decisions.
pub struct Router {
    config: Config,
    lifecycle: Lifecycle,
    /// Msgids of the messages the router makes.
    ids: MsgIds,
    /// State of the jitter generator (xorshift64), from the seed.
    rng: u64,
    /// Every map's hasher, seeded from the seed.
    hasher: crate::Hasher,
    /// The wall clock at the latest event (logs, schedules, not-before times).
    wall_ms: i64,
    /// The monotonic clock at that same moment, to turn wall-clock times
    /// into deadlines.
    mono_at_wall: Instant,
    started: Instant,
    jobs: HashMap<JobKey, Box<Job>>,
    queues: Queues,
    fleet: HashMap<PeerId, JobManager>,
    /// One shared copy of each peer identity that jobs refer to.
    peers: HashSet<Rc<PeerId>>,
    /// The client of the jobs schedules fire (one of `peers`, kept there
    /// by this reference).
    scheduler: Rc<PeerId>,
    /// One shared copy of each distinct headers frame.
    header_frames: HashSet<Rc<String>>,
    guaranteed: Guaranteed,
    handler_names: HandlerNames,
    timers: Timers,
    schedules: Schedules,
    flow: Flow,
    graphs: Graphs,
    results: ResultStore,
    observer: Observer,
    out: Vec<Outgoing>,
    /// BATCHes in `out` that more messages may join: (endpoint, peer, index
    /// in `out`). A batch closes when anything else is sent to its peer, so
    /// that a peer's messages keep their order.
    open_batches: Vec<(Endpoint, Rc<PeerId>, usize)>,
    store_ops: Vec<StoreOp>,
    /// Counts dispatches: the order jobs were sent in, and which member of a
    /// queue was used least recently.
    seq: u64,
    next_heartbeat: Instant,
    /// Peers already logged for bad input: later offences go to debug.
    offenders: HashSet<PeerId>,
    /// Refused submissions (queue full) are logged at most once a second.
    refusals: emq_net::Throttle,
    /// With a shared journal: the lease and the standbys, as the transport
    /// last read them (shown by STATUS).
    ha: Option<emq_proto::views::HaStatus>,
    /// After a restart on a journal with state: no job is dispatched until
    /// then (`Config::restore_grace`), so that jobmanagers reconnecting
    /// with results of runs the last incarnation started (dispatches are
    /// not journaled) are heard before anything runs again.
    dispatch_hold: Option<Instant>,
}

impl Router {
    /// A router starting at `now`. `seed` feeds its msgids and retry jitter:
    /// the transport draws it from the OS, tests pass a constant.
    pub fn new(config: Config, now: Now, seed: u128) -> Router {
        let hasher = crate::Hasher::with_seed(seed as u64);
        let results = ResultStore::new(config.result_retention, config.result_capacity, hasher.clone());
        let scheduler = Rc::new(PeerId(schedules::SCHEDULER_PEER.to_vec()));
        let mut peers = HashSet::with_hasher(hasher.clone());
        peers.insert(scheduler.clone());
        Router {
            next_heartbeat: now.mono + config.heartbeat,
            lifecycle: Lifecycle::Serving,
            ids: MsgIds::from_seed(seed),
            rng: (seed as u64 ^ (seed >> 64) as u64) | 1,
            wall_ms: now.unix_ms,
            mono_at_wall: now.mono,
            started: now.mono,
            jobs: HashMap::with_hasher(hasher.clone()),
            queues: Queues::new(hasher.clone()),
            fleet: HashMap::with_hasher(hasher.clone()),
            peers,
            scheduler,
            header_frames: HashSet::with_hasher(hasher.clone()),
            guaranteed: Guaranteed::new(hasher.clone()),
            handler_names: HandlerNames::new(hasher.clone()),
            timers: Timers::default(),
            schedules: Schedules::default(),
            flow: Flow::new(hasher.clone()),
            graphs: Graphs::new(hasher.clone()),
            results,
            observer: Observer::new(
                config.events.is_some(),
                config.events_bodies,
                config.http.is_some(),
                emq_proto::uuid_text(seed.rotate_left(64) ^ 0x5eed),
                hasher.clone(),
            ),
            out: Vec::new(),
            open_batches: Vec::new(),
            store_ops: Vec::new(),
            seq: 0,
            offenders: HashSet::with_hasher(hasher.clone()),
            refusals: emq_net::Throttle::new(Duration::from_secs(1)),
            ha: None,
            dispatch_hold: None,
            hasher,
            config,
        }
    }

    /// Messages to send, in order. The caller sends them all before the next
    /// call to `handle` or `tick`.
    #[must_use]
    pub fn take_outgoing(&mut self) -> std::vec::Drain<'_, Outgoing> {
        self.open_batches.clear();
        self.out.drain(..)
    }

    /// Store operations to commit before the messages produced with them
    /// that are marked `after_commit` are sent.
    #[must_use]
    pub fn take_store_ops(&mut self) -> Vec<StoreOp> {
        std::mem::take(&mut self.store_ops)
    }

    /// Whether an admin asked the router to stop (DISCONNECT).
    pub fn stop_requested(&self) -> bool {
        self.lifecycle == Lifecycle::StopRequested
    }

    fn stopping(&self) -> bool {
        self.lifecycle == Lifecycle::Stopping
    }

    /// The next instant at which `tick` has work to do.
    pub fn next_deadline(&self) -> Instant {
        let mut next = self.next_heartbeat;
        for jm in self.fleet.values() {
            next = next.min(jm.last_seen + jm.window);
        }
        for at in [
            self.results.next_expiry(),
            self.timers.next(),
            self.dispatch_hold,
            self.guaranteed.next_purge(),
            self.flow.next_rate_wakeup(),
            self.graphs.next_purge(),
        ]
        .into_iter()
        .flatten()
        {
            next = next.min(at);
        }
        // Wall-clock times: the earliest, once, as a deadline.
        let wall = match (self.schedules.next_due_ms(), self.flow.next_expiry_ms()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let Some(ms) = wall {
            next = next.min(self.wall_deadline(ms));
        }
        next
    }

    /// Send heartbeats that are due, expire silent jobmanagers and old
    /// results, release jobs whose wait is over.
    pub fn tick(&mut self, now: Now) {
        self.set_now(now);
        self.fire_due_schedules(now);
        let now = now.mono;
        if now >= self.next_heartbeat {
            let hb = self.heartbeat_message();
            let mut all: Vec<PeerId> = self.fleet.keys().cloned().collect();
            all.sort_unstable();
            self.broadcast(Endpoint::Backend, all, &hb);
            self.next_heartbeat = now + self.config.heartbeat;
            self.redeliver_results();
            // Forget identities and header frames no job refers to any more.
            self.peers.retain(|rc| Rc::strong_count(rc) > 1);
            self.header_frames.retain(|h| Rc::strong_count(h) > 1);
        }
        self.expire_silent_jobmanagers(now);
        self.results.expire(now);
        self.release_due(now);
        self.expire_due(now);
        self.purge_expired(now);
        self.purge_graphs(now);
        if self.dispatch_hold.is_some_and(|until| now >= until) {
            self.dispatch_hold = None;
            let mut queues: Vec<String> = self.queues.iter().map(|(name, _)| name.clone()).collect();
            queues.sort_unstable();
            for queue in queues {
                self.dispatch_queue(now, &queue);
            }
        }
        self.after_event(now);
    }

    /// After a restart: hand each module the journal rows it owns.
    pub fn restore(&mut self, now: Now, rows: Vec<Row>) -> Result<(), CorruptRow> {
        self.set_now(now);
        if !rows.is_empty() && !self.config.restore_grace.is_zero() {
            // Dispatches are not journaled: a job may be running, or done,
            // on a jobmanager about to reconnect with its result; and a job
            // whose submission the last incarnation dispatched but had not
            // journaled may come again from its client. Nothing is
            // dispatched until they have had the time to be heard.
            self.dispatch_hold = Some(now.mono + self.config.restore_grace);
        }
        let (mut records, mut bodies, mut schedules, mut states, mut queues, mut graphs) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for row in rows {
            match row.table {
                Table::Records => records.push(row),
                Table::Bodies => bodies.push(row),
                Table::Schedules => schedules.push(row),
                Table::ScheduleState => states.push(row),
                Table::Queues => queues.push(row),
                Table::Graphs => graphs.push(row),
            }
        }
        // Queue controls first (a paused queue must not dispatch what is
        // restored), graphs before jobs (their nodes' records are theirs to
        // keep), then jobs, the graphs' progress, then schedules (their fired
        // jobs are jobs).
        self.restore_queue_controls(queues)?;
        self.restore_graph_defs(graphs)?;
        self.restore_guaranteed(now, records, bodies)?;
        self.restore_graph_progress(now);
        self.restore_schedules(now, schedules, states)
    }

    /// What STATUS says about the shared journal's routers (the transport
    /// reads it from the journal).
    pub fn set_ha(&mut self, ha: Option<emq_proto::views::HaStatus>) {
        self.ha = ha;
    }

    /// Stop taking work and say KBYE to every jobmanager and client.
    pub fn shutdown(&mut self) {
        self.lifecycle = Lifecycle::Stopping;
        let mut jobmanagers: Vec<PeerId> = self.fleet.keys().cloned().collect();
        jobmanagers.sort_unstable();
        self.broadcast(Endpoint::Backend, jobmanagers, &Message::Kbye);
        // Not the router itself, the client of the jobs its schedules fire.
        let mut clients: Vec<PeerId> = self
            .jobs
            .values()
            .filter(|j| !Rc::ptr_eq(&j.client, &self.scheduler))
            .map(|j| PeerId::clone(&j.client))
            .collect();
        clients.sort_unstable();
        clients.dedup();
        self.broadcast(Endpoint::Frontend, clients, &Message::Kbye);
    }

    /// The same message to each of `peers`.
    /// A HEARTBEAT of the router's, stamped with the latest event's time.
    fn heartbeat_message(&self) -> Message {
        Message::Heartbeat {
            unix_time: self.now().unix_secs_text(),
            state: None,
            workers: None,
        }
    }

    fn broadcast(&mut self, endpoint: Endpoint, peers: impl IntoIterator<Item = PeerId>, msg: &Message) {
        let frames = msg.encode_with_id(&self.ids.next());
        for peer in peers {
            self.push_alone(Outgoing {
                endpoint,
                peer,
                frames: frames.clone(),
                after_commit: false,
                carries: Carries::Other,
            });
        }
    }

    /// The transport could not deliver `out` (peer gone, or its queue full).
    pub fn undeliverable(&mut self, now: Now, out: Outgoing) {
        self.set_now(now);
        match out.carries {
            Carries::Job(_) | Carries::Jobs(_) => {
                warn!("jobmanager {} unreachable: taking its jobs back", out.peer);
                self.remove_jobmanager(now.mono, &out.peer, "unreachable");
            }
            Carries::Result { ref of, .. } if self.guaranteed.is_tracked(of) => {
                // A guaranteed job's result is owed to its client: try again
                // at every heartbeat (a client reconnecting after a router
                // restart is often not back when the first results are).
                debug!("client {} unreachable; result of {of} will be sent again", out.peer);
                self.guaranteed.redeliver_later(out);
            }
            Carries::Result { of, queue } => match emq_proto::ResultFrames::from_reply_frames(out.frames) {
                Ok(result) => {
                    debug!("client {} gone; result of {of} kept for lookup", out.peer);
                    self.results.insert(now.mono, queue.to_string(), result);
                }
                Err(e) => warn!("result of {of} could not be kept: {e}"),
            },
            Carries::Results(kept) => {
                debug!("client {} unreachable with {} results", out.peer, kept.len());
                let mut results = emq_proto::unbatched_results(&out.frames).into_iter();
                for (of, queue) in kept {
                    let Some(result) = results.next().filter(|r| of == r.of.as_str()) else {
                        warn!("result of {of} could not be kept");
                        continue;
                    };
                    if self.guaranteed.is_tracked(&of) {
                        // Owed to its client: sent again, alone, at every heartbeat.
                        let frames = Message::Reply(emq_proto::Reply::Result(result)).into_frames(&self.ids.next());
                        self.guaranteed.redeliver_later(Outgoing {
                            endpoint: Endpoint::Frontend,
                            peer: out.peer.clone(),
                            frames,
                            after_commit: true,
                            carries: Carries::Result { of, queue },
                        });
                    } else {
                        self.results.insert(now.mono, queue.to_string(), result);
                    }
                }
            }
            Carries::Other => {}
        }
        self.after_event(now.mono);
    }

    /// The connection `peer` sent its messages on closed (the transport
    /// saw it go): a jobmanager there is dead now, its jobs go back to their
    /// queues without waiting out its liveness window.
    pub fn connection_closed(&mut self, now: Now, peer: &PeerId) {
        self.set_now(now);
        if self.fleet.contains_key(peer) {
            warn!("jobmanager {peer} closed its connection: declaring it dead");
            self.remove_jobmanager(now.mono, peer, "its connection closed");
        }
    }

    /// Handle one message received on `endpoint` from `peer`.
    pub fn handle(&mut self, now: Now, endpoint: Endpoint, peer: PeerId, frames: &[impl emq_proto::Frame]) {
        self.set_now(now);
        let now = now.mono;
        let size: usize = frames.iter().map(|f| f.bytes().len()).sum();
        if size > self.config.max_message {
            let reason = format!("message of {size} bytes, the limit is {}", self.config.max_message);
            let of = peek_msgid(frames).unwrap_or_default();
            return self.refuse(endpoint, &peer, &of, ErrorCode::TooLarge, &reason);
        }
        if let Some(batch) = emq_proto::batch_entries(frames) {
            self.on_batch(now, endpoint, &peer, frames, batch);
            return self.after_event(now);
        }
        let env = match decode_with_limit(frames, self.config.max_frame) {
            Ok(env) => env,
            Err(e) => {
                let of = peek_msgid(frames).unwrap_or_default();
                return self.refuse(endpoint, &peer, &of, e.code(), &e.to_string());
            }
        };
        match endpoint {
            Endpoint::Frontend => self.on_client(now, peer, env.msgid, env.message),
            Endpoint::Backend => self.on_jobmanager(now, &peer, env.msgid, env.message),
            Endpoint::Admin => self.on_admin(now, peer, env.msgid, env.message),
        }
        self.after_event(now);
    }

    /// A BATCH: each entry handled as if it had come alone, in order.
    /// Jobmanagers send them to a router whose ACK said it reads them,
    /// clients to a router that sent them one.
    fn on_batch(
        &mut self,
        now: Instant,
        endpoint: Endpoint,
        peer: &PeerId,
        frames: &[impl emq_proto::Frame],
        batch: Result<emq_proto::BatchEntries<'_>, emq_proto::DecodeError>,
    ) {
        let mut entries = match batch {
            Ok(entries) if endpoint != Endpoint::Admin => entries,
            Ok(entries) => {
                let reason = "BATCH is read only from jobmanagers and clients";
                return self.refuse(endpoint, peer, entries.msgid, ErrorCode::UnknownCommand, reason);
            }
            Err(e) => {
                let of = peek_msgid(frames).unwrap_or_default();
                return self.refuse(endpoint, peer, &of, e.code(), &e.to_string());
            }
        };
        let mut entry: Vec<&[u8]> = Vec::with_capacity(emq_proto::MAX_FRAMES);
        while let Some(read) = entries.next_message(&mut entry, self.config.max_frame) {
            match read {
                Ok(env) if endpoint == Endpoint::Backend => self.on_jobmanager(now, peer, env.msgid, env.message),
                Ok(env) => self.on_client(now, peer.clone(), env.msgid, env.message),
                Err(e) => {
                    let of = peek_msgid(&entry).unwrap_or_default();
                    self.refuse(endpoint, peer, &of, e.code(), &e.to_string());
                }
            }
        }
    }

    /// What every event ends with: graph nodes that ended are settled
    /// (their children released or cancelled, in this same batch), and
    /// queues freed by flow control dispatched.
    #[inline]
    fn after_event(&mut self, now: Instant) {
        if !self.graphs.is_settled() {
            self.settle_graphs(now);
        }
        self.dispatch_freed(now);
    }

    // ------------------------------------------------------------ helpers

    fn set_now(&mut self, now: Now) {
        self.wall_ms = now.unix_ms;
        self.mono_at_wall = now.mono;
    }

    /// The latest event's time on both clocks.
    fn now(&self) -> Now {
        Now::new(self.mono_at_wall, self.wall_ms)
    }

    /// A wall-clock time (ms since the Unix epoch) as a deadline on the
    /// monotonic clock, from the latest event's pair of clocks.
    fn wall_deadline(&self, unix_ms: i64) -> Instant {
        let wait = unix_ms.saturating_sub(self.wall_ms).max(0) as u64;
        self.mono_at_wall + Duration::from_millis(wait)
    }

    fn offence(&mut self, peer: &PeerId, endpoint: Endpoint, what: &str) {
        if self.offenders.len() > 10_000 {
            self.offenders.clear();
        }
        if self.offenders.insert(peer.clone()) {
            warn!("bad input from {endpoint:?} peer {peer}: {what} (further offences from it are logged at debug)");
        } else {
            debug!("bad input from {endpoint:?} peer {peer}: {what}");
        }
    }

    fn push(&mut self, endpoint: Endpoint, peer: &PeerId, msg: Message, after_commit: bool, carries: Carries) {
        let frames = msg.into_frames(&self.ids.next());
        self.push_alone(Outgoing {
            endpoint,
            peer: peer.clone(),
            frames,
            after_commit,
            carries,
        });
    }

    /// The one way a message not in a BATCH joins the output: its peer's
    /// open BATCH closes first, so that what follows goes after it.
    fn push_alone(&mut self, out: Outgoing) {
        if !self.open_batches.is_empty() {
            self.open_batches
                .retain(|(e, p, _)| *e != out.endpoint || **p != out.peer);
        }
        self.out.push(out);
    }

    fn send(&mut self, endpoint: Endpoint, peer: &PeerId, msg: Message) {
        self.push(endpoint, peer, msg, false, Carries::Other);
    }

    /// Send to a client once this batch's journal entries are durable.
    fn send_journaled(&mut self, peer: &PeerId, msg: Message, carries: Carries) {
        self.push(Endpoint::Frontend, peer, msg, true, carries);
    }

    /// Send `msg` to a client that reads BATCH (its job said
    /// `batch-reply`): in the turn's BATCH for it of the messages sent at
    /// the same time (`after_commit`: ACKs and guaranteed results), alone
    /// if too large. `result`: the job and queue of a result, kept (or sent
    /// again) if it cannot be delivered.
    fn send_batched(
        &mut self,
        client: &Rc<PeerId>,
        msg: Message,
        after_commit: bool,
        result: Option<(JobKey, Rc<str>)>,
    ) {
        let msgid = self.ids.next();
        // The common case, a result, goes in from its parts; anything else
        // as its frames from COMMAND on, or alone if too large for a BATCH.
        let (reply, frames) = match msg {
            Message::Reply(Reply::Result(r)) if r.body.len() <= emq_proto::BATCH_ENTRY_FRAME_MAX => {
                (Some(r), Vec::new())
            }
            other => (None, other.into_frames(&msgid)),
        };
        let entry: Vec<&[u8]> = frames.iter().skip(2).map(Vec::as_slice).collect();
        if reply.is_none() && !emq_proto::batchable(&entry) {
            let carries = result.map_or(Carries::Other, |(of, queue)| Carries::Result { of, queue });
            return self.push_alone(Outgoing {
                endpoint: Endpoint::Frontend,
                peer: PeerId::clone(client),
                frames,
                after_commit,
                carries,
            });
        }
        let out = Outgoing::open_batch(
            &mut self.out,
            &mut self.open_batches,
            &mut self.ids,
            (Endpoint::Frontend, client),
            after_commit,
            || Carries::Results(Vec::new()),
        );
        match &reply {
            Some(r) => emq_proto::push_reply(&mut out.frames[4], &msgid, r),
            None => emq_proto::push_entry(&mut out.frames[4], &entry),
        }
        if let (Some(r), Carries::Results(kept)) = (result, &mut out.carries) {
            kept.push(r);
        }
    }

    fn error(&mut self, endpoint: Endpoint, peer: &PeerId, of: &str, code: ErrorCode, reason: &str) {
        self.send(
            endpoint,
            peer,
            Message::Error {
                of: of.to_string(),
                code,
                reason: reason.to_string(),
            },
        );
    }

    /// Answer bad input with an ERROR and log it (rate-limited per peer).
    fn refuse(&mut self, endpoint: Endpoint, peer: &PeerId, msgid: &str, code: ErrorCode, reason: &str) {
        self.offence(peer, endpoint, reason);
        self.error(endpoint, peer, msgid, code, reason);
    }

    /// The shared copy of a peer identity.
    fn intern(&mut self, peer: PeerId) -> Rc<PeerId> {
        shared(&mut self.peers, peer)
    }

    /// The shared copy of a headers frame.
    fn shared_headers(&mut self, headers: String) -> Rc<String> {
        shared(&mut self.header_frames, headers)
    }

    fn uptime(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.started)
    }
}

/// The copy of `value` in `set`, added if absent: one allocation shared by
/// every job that refers to it.
fn shared<T, V>(set: &mut HashSet<Rc<T>>, value: V) -> Rc<T>
where
    T: ?Sized + std::hash::Hash + Eq,
    V: std::borrow::Borrow<T> + Into<Rc<T>>,
{
    if let Some(rc) = set.get(value.borrow()) {
        return rc.clone();
    }
    let rc: Rc<T> = value.into();
    set.insert(rc.clone());
    rc
}

#[cfg(test)]
mod tests;
