//! The routing core: every decision the router makes, with no sockets and no
//! clock. The transport feeds it `(now, endpoint, peer, frames)` and sends what
//! [`Router::take_outgoing`] returns; [`Router::next_deadline`] tells it how long
//! it may block in poll.
//!
//! Invariants:
//! - a job is in exactly one place: a queue's waiting buffer, or running on one
//!   jobmanager (`Job::state`), until its REPLY arrives;
//! - a jobmanager's `slots` counts READYs not yet answered with a REQUEST;
//! - nothing a client sent is dropped without an ERROR telling it so.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::rc::Rc;

use crate::{HashMap, HashSet};
use std::fmt;
use std::time::{Duration, Instant};

use emq_proto::{
    decode_with_limit, peek_msgid, ContentType, ErrorCode, Inform, Message, Outcome, PeerType, Reply, Request,
    ResultFrames, Timing,
};
use log::{debug, info, warn};

use crate::results::ResultStore;
use crate::tracking::{JobRecord, StoreOp};
use crate::{Config, UnknownQueuePolicy};

/// Which socket a message came in on or goes out of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    Frontend,
    Backend,
    Admin,
}

/// A ZeroMQ peer identity as the ROUTER socket reports it.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub Vec<u8>);

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match std::str::from_utf8(&self.0) {
            Ok(s) if s.chars().all(|c| c.is_ascii_graphic()) => f.write_str(s),
            _ => self.0.iter().try_for_each(|b| write!(f, "{b:02x}")),
        }
    }
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A message for the transport to send: `[peer identity] + frames` on `endpoint`.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    pub endpoint: Endpoint,
    pub peer: PeerId,
    pub frames: Vec<Vec<u8>>,
    /// A promise that rests on the journal (the ACK or result of a guaranteed
    /// job): sent only once the store operations queued with it are committed.
    pub after_commit: bool,
}

/// A job's msgid, shared by the jobs map and its queue's waiting list.
type JobKey = Rc<str>;

#[derive(Debug, Clone, PartialEq, Eq)]
enum JobState {
    /// In its queue's waiting list.
    Waiting,
    /// Backing off before another attempt (guaranteed jobs); not in a list.
    Delayed { until: Instant },
    Running {
        worker: Rc<PeerId>,
        dispatch_seq: u64,
        since: Instant,
    },
}

/// A job the router holds. Kept small: a million of them may wait, so peers
/// and queue names are shared, not copied, and the job itself is boxed so
/// that the jobs map's spare capacity costs a pointer, not a job.
#[derive(Debug)]
struct Job {
    client: Rc<PeerId>,
    queue: Rc<str>,
    /// The headers frame, forwarded to the jobmanager; shared between jobs
    /// with the same headers.
    headers: Rc<str>,
    body: Box<[u8]>,
    reply_requested: bool,
    guarantee: bool,
    /// Attempts started so far (dispatches).
    attempts: u16,
    max_attempts: u16,
    state: JobState,
}

#[derive(Debug)]
pub(crate) struct Worker {
    /// Its identity, shared with the jobs it runs.
    id: Rc<PeerId>,
    pub queues: Vec<(i64, String)>,
    pub slots: u32,
    pub last_seen: Instant,
    /// Silence after which this jobmanager is dead.
    pub window: Duration,
    pub running: HashSet<JobKey>,
    /// The jobmanager's own state name, when it reports one (emq extension).
    pub state: Option<String>,
    pub processed: u64,
    /// An EventMQ jobmanager only replies to `reply-requested` jobs, so the
    /// router asks it for every reply in order to know when a job is done.
    pub is_eventmq: bool,
}

#[derive(Debug)]
struct Member {
    weight: i64,
    peer: PeerId,
    last_used: u64,
}

#[derive(Debug)]
pub(crate) struct Queue {
    name: Rc<str>,
    members: Vec<Member>,
    waiting: VecDeque<JobKey>,
    pub processed: u64,
}

impl Queue {
    fn new(name: &str) -> Queue {
        Queue {
            name: name.into(),
            members: Vec::new(),
            waiting: VecDeque::new(),
            processed: 0,
        }
    }

    pub fn waiting_len(&self) -> usize {
        self.waiting.len()
    }
    pub fn member_ids(&self) -> impl Iterator<Item = (i64, &PeerId)> {
        self.members.iter().map(|m| (m.weight, &m.peer))
    }
}

/// The router's state and decisions.
pub struct Router {
    config: Config,
    pub(crate) workers: HashMap<PeerId, Worker>,
    pub(crate) queues: HashMap<String, Queue>,
    jobs: HashMap<JobKey, Box<Job>>,
    /// One shared copy of each peer identity that jobs refer to.
    peers: HashSet<Rc<PeerId>>,
    /// Guaranteed jobs' results whose client was unreachable, resent at every
    /// heartbeat until delivered or the job is purged.
    redeliver: Vec<(String, Outgoing)>,
    /// One shared copy of each distinct headers frame.
    header_frames: HashSet<Rc<str>>,
    /// Guaranteed jobs, pending and finished (until their retention passes).
    tracked: HashMap<JobKey, JobRecord>,
    /// Dead-lettered jobs with their bodies, for RETRY.
    dead: HashMap<JobKey, Box<Job>>,
    /// Jobs backing off before a retry, by due time.
    delayed: BinaryHeap<Reverse<(Instant, u64, JobKey)>>,
    delayed_count: usize,
    /// Finished tracked jobs by the time their retention ends.
    purge: VecDeque<(Instant, JobKey)>,
    store_ops: Vec<StoreOp>,
    accepted_seq: u64,
    rng: u64,
    pub(crate) results: ResultStore,
    out: Vec<Outgoing>,
    waiting_total: usize,
    seq: u64,
    next_heartbeat: Instant,
    started: Instant,
    /// Wall-clock seconds at `started`, for HEARTBEAT payloads.
    unix_at_start: f64,
    /// Peers already logged for bad input: later offences go to debug.
    offenders: HashSet<PeerId>,
    stopping: bool,
    stop_requested: bool,
}

impl Router {
    /// `unix_now` is the wall clock at `now`, in seconds; the core never reads a
    /// clock itself.
    pub fn new(config: Config, now: Instant, unix_now: f64) -> Router {
        let results = ResultStore::new(config.result_retention, config.result_capacity);
        Router {
            next_heartbeat: now + config.heartbeat,
            config,
            workers: HashMap::default(),
            queues: HashMap::default(),
            jobs: HashMap::default(),
            peers: HashSet::default(),
            header_frames: HashSet::default(),
            redeliver: Vec::new(),
            tracked: HashMap::default(),
            dead: HashMap::default(),
            delayed: BinaryHeap::new(),
            delayed_count: 0,
            purge: VecDeque::new(),
            store_ops: Vec::new(),
            accepted_seq: 0,
            rng: (unix_now * 1e6) as u64 | 1,
            results,
            out: Vec::new(),
            waiting_total: 0,
            seq: 0,
            started: now,
            unix_at_start: unix_now,
            offenders: HashSet::default(),
            stopping: false,
            stop_requested: false,
        }
    }

    /// Messages to send, in order. The caller sends them all before the next
    /// call to `handle` or `tick`.
    pub fn take_outgoing(&mut self) -> std::vec::Drain<'_, Outgoing> {
        self.out.drain(..)
    }

    /// Whether an admin asked the router to stop (DISCONNECT).
    pub fn stop_requested(&self) -> bool {
        self.stop_requested
    }

    /// The next instant at which `tick` has work to do.
    pub fn next_deadline(&self) -> Instant {
        let mut next = self.next_heartbeat;
        for w in self.workers.values() {
            next = next.min(w.last_seen + w.window);
        }
        if let Some(at) = self.results.next_expiry() {
            next = next.min(at);
        }
        if let Some(Reverse((at, _, _))) = self.delayed.peek() {
            next = next.min(*at);
        }
        if let Some((at, _)) = self.purge.front() {
            next = next.min(*at);
        }
        next
    }

    /// Send heartbeats that are due, expire silent jobmanagers and old results.
    pub fn tick(&mut self, now: Instant) {
        if now >= self.next_heartbeat {
            let unix = self.unix_at_start + now.saturating_duration_since(self.started).as_secs_f64();
            let hb = Message::Heartbeat {
                unix_time: format!("{unix:.3}"),
                state: None,
            }
            .encode();
            let workers: Vec<PeerId> = self.workers.keys().cloned().collect();
            self.broadcast(Endpoint::Backend, workers, &hb);
            self.next_heartbeat = now + self.config.heartbeat;
            for (of, out) in std::mem::take(&mut self.redeliver) {
                if self.tracked.contains_key(of.as_str()) {
                    self.out.push(out);
                }
            }
            // Forget identities no job refers to any more.
            self.peers.retain(|rc| Rc::strong_count(rc) > 1);
            self.header_frames.retain(|h| Rc::strong_count(h) > 1);
        }
        let dead: Vec<PeerId> = self
            .workers
            .iter()
            .filter(|(_, w)| now >= w.last_seen + w.window)
            .map(|(p, _)| p.clone())
            .collect();
        for peer in dead {
            warn!("jobmanager {peer} silent for its liveness window: declaring it dead");
            self.remove_worker(now, &peer);
        }
        self.results.expire(now);
        self.release_delayed(now);
        self.purge_expired(now);
    }

    /// Stop taking work and say KBYE to every jobmanager.
    pub fn shutdown(&mut self) {
        self.stopping = true;
        let kbye = Message::Kbye.encode();
        let workers: Vec<PeerId> = self.workers.keys().cloned().collect();
        self.broadcast(Endpoint::Backend, workers, &kbye);
        let clients: HashSet<PeerId> = self.jobs.values().map(|j| PeerId::clone(&j.client)).collect();
        self.broadcast(Endpoint::Frontend, clients, &kbye);
    }

    /// The same frames to each of `peers`.
    fn broadcast(&mut self, endpoint: Endpoint, peers: impl IntoIterator<Item = PeerId>, frames: &[Vec<u8>]) {
        for peer in peers {
            self.out.push(Outgoing {
                endpoint,
                peer,
                frames: frames.to_vec(),
                after_commit: false,
            });
        }
    }

    /// The transport could not deliver `out` (peer gone, or its queue full).
    pub fn undeliverable(&mut self, now: Instant, out: Outgoing) {
        let Ok(env) = emq_proto::decode(&out.frames) else {
            return;
        };
        match (out.endpoint, env.message) {
            (Endpoint::Backend, Message::Request(_)) => {
                warn!("jobmanager {} unreachable: taking its jobs back", out.peer);
                self.remove_worker(now, &out.peer);
            }
            (Endpoint::Frontend, Message::Reply(Reply::Result(r))) if self.tracked.contains_key(r.of.as_str()) => {
                // A guaranteed job's result is owed to its client: try again
                // at every heartbeat (a client reconnecting after a router
                // restart is often not back when the first results are).
                debug!("client {} unreachable; result of {} will be sent again", out.peer, r.of);
                self.redeliver.push((r.of, out));
            }
            (Endpoint::Frontend, Message::Reply(Reply::Result(r))) => {
                debug!("client {} gone; result of {} kept for lookup", out.peer, r.of);
                self.results.insert(now, String::new(), r);
            }
            _ => {}
        }
    }

    /// Handle one message received on `endpoint` from `peer`.
    pub fn handle(&mut self, now: Instant, endpoint: Endpoint, peer: PeerId, frames: &[impl emq_proto::Frame]) {
        let size: usize = frames.iter().map(|f| f.bytes().len()).sum();
        if size > self.config.max_message {
            let reason = format!("message of {size} bytes, the limit is {}", self.config.max_message);
            self.offence(&peer, endpoint, &reason);
            let of = peek_msgid(frames).unwrap_or_default();
            return self.error(endpoint, &peer, &of, ErrorCode::TooLarge, &reason);
        }
        let env = match decode_with_limit(frames, self.config.max_frame) {
            Ok(env) => env,
            Err(e) => {
                self.offence(&peer, endpoint, &e.to_string());
                let of = peek_msgid(frames).unwrap_or_default();
                self.error(endpoint, &peer, &of, e.code(), &e.to_string());
                return;
            }
        };
        match endpoint {
            Endpoint::Frontend => self.on_client(now, peer, env.msgid, env.message),
            Endpoint::Backend => self.on_jobmanager(now, peer, env.msgid, env.message),
            Endpoint::Admin => self.on_admin(now, peer, env.msgid, env.message),
        }
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

    fn send(&mut self, endpoint: Endpoint, peer: &PeerId, msg: Message) {
        self.out.push(Outgoing {
            endpoint,
            peer: peer.clone(),
            frames: msg.into_frames(&emq_proto::new_msgid()),
            after_commit: false,
        });
    }

    /// Send once this batch's journal entries are durable.
    fn send_journaled(&mut self, peer: &PeerId, msg: Message) {
        self.out.push(Outgoing {
            endpoint: Endpoint::Frontend,
            peer: peer.clone(),
            frames: msg.into_frames(&emq_proto::new_msgid()),
            after_commit: true,
        });
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

    fn refuse(&mut self, endpoint: Endpoint, peer: &PeerId, msgid: &str, code: ErrorCode, reason: &str) {
        self.offence(peer, endpoint, reason);
        self.error(endpoint, peer, msgid, code, reason);
    }

    /// The shared copy of a peer identity.
    fn intern(&mut self, peer: PeerId) -> Rc<PeerId> {
        shared(&mut self.peers, peer)
    }

    /// The shared copy of a headers frame.
    fn shared_headers(&mut self, headers: String) -> Rc<str> {
        shared(&mut self.header_frames, headers)
    }

    /// The queue of that name, created empty if new.
    fn queue_mut(&mut self, name: &str) -> &mut Queue {
        if !self.queues.contains_key(name) {
            self.queues.insert(name.to_string(), Queue::new(name));
        }
        self.queues.get_mut(name).expect("just inserted")
    }

    // ---------------------------------------------------------------- clients

    fn on_client(&mut self, now: Instant, peer: PeerId, msgid: String, msg: Message) {
        match msg {
            Message::Request(req) => self.on_request(now, peer, msgid, req),
            Message::Query { of } => self.answer_query(Endpoint::Frontend, &peer, &of),
            Message::Cancel { of } => self.cancel(now, Endpoint::Frontend, &peer, &of),
            Message::Heartbeat { .. } | Message::Kbye | Message::Ack { .. } | Message::Hello => {}
            Message::Disconnect
            | Message::Status
            | Message::RouterShowWorkers
            | Message::RouterShowSchedulers
            | Message::Dead
            | Message::Retry { .. }
            | Message::Purge { .. } => self.refuse(
                Endpoint::Frontend,
                &peer,
                &msgid,
                ErrorCode::AdminOnly,
                "admin commands are only accepted on the admin endpoint",
            ),
            Message::Schedule { .. }
            | Message::Unschedule { .. }
            | Message::Inform(Inform {
                peer_type: PeerType::Scheduler,
                ..
            }) => self.refuse(
                Endpoint::Frontend,
                &peer,
                &msgid,
                ErrorCode::UnknownCommand,
                "emq-router does not run EventMQ schedulers",
            ),
            other => {
                let reason = format!("{} is not a client command", other.command().as_str());
                self.refuse(Endpoint::Frontend, &peer, &msgid, ErrorCode::UnknownCommand, &reason)
            }
        }
    }

    fn on_request(&mut self, now: Instant, client: PeerId, msgid: String, req: Request) {
        if self.stopping {
            return self.error(
                Endpoint::Frontend,
                &client,
                &msgid,
                ErrorCode::ShuttingDown,
                "router is shutting down",
            );
        }
        if msgid.is_empty() {
            return self.refuse(
                Endpoint::Frontend,
                &client,
                &msgid,
                ErrorCode::Malformed,
                "REQUEST needs a msgid",
            );
        }
        if self.jobs.contains_key(msgid.as_str()) {
            debug!("duplicate REQUEST {msgid} from {client}: already queued or running");
            if req.headers.guarantee {
                self.send_journaled(
                    &client,
                    Message::Ack {
                        of: msgid,
                        timing: None,
                    },
                );
            }
            return;
        }
        if self.tracked.contains_key(msgid.as_str()) {
            debug!("duplicate REQUEST {msgid} from {client}: a guaranteed job already finished");
            return self.resend_tracked(&client, &msgid, req.headers.reply_requested);
        }
        if let Some(done) = self.results.get(&msgid) {
            debug!("duplicate REQUEST {msgid} from {client}: already finished");
            if req.headers.reply_requested {
                let result = done.result.clone();
                self.send(Endpoint::Frontend, &client, Message::Reply(Reply::Result(result)));
            }
            return;
        }
        let mut queue = req.queue;
        if queue.is_empty() {
            queue = emq_proto::DEFAULT_QUEUE.to_string();
        }
        let served = self.queues.get(&queue).is_some_and(|q| !q.members.is_empty());
        if !served && self.config.unknown_queue == UnknownQueuePolicy::Reroute {
            debug!("no jobmanager serves queue {queue:?}: rerouting {msgid} to default");
            queue = emq_proto::DEFAULT_QUEUE.to_string();
        }
        // Refuse only when the job would have to wait and there is no room.
        if self.pick_worker(&queue).is_none() {
            let q_len = self.queues.get(&queue).map_or(0, |q| q.waiting.len());
            if q_len >= self.config.max_waiting_per_queue || self.waiting_total >= self.config.max_waiting_total {
                warn!(
                    "queue {queue:?} full ({q_len} waiting, {} in all): refusing {msgid} from {client}",
                    self.waiting_total
                );
                return self.error(
                    Endpoint::Frontend,
                    &client,
                    &msgid,
                    ErrorCode::QueueFull,
                    &format!("queue {queue} is full"),
                );
            }
        }
        let guarantee = req.headers.guarantee;
        let max_attempts = self.max_attempts(&req.headers);
        let mut headers = req.headers;
        if guarantee {
            // The router owns a guaranteed job's retries: the jobmanager must
            // not retry it on its own as well.
            headers.retry_count = 0;
        }
        let acked = client.clone();
        let client = self.intern(client);
        let headers_frame = self.shared_headers(headers.encode());
        let q = self.queue_mut(&queue);
        let key: JobKey = msgid.into();
        q.waiting.push_back(key.clone());
        let job = Box::new(Job {
            client,
            queue: q.name.clone(),
            headers: headers_frame,
            body: req.body.into_boxed_slice(),
            reply_requested: headers.reply_requested,
            guarantee,
            attempts: 0,
            max_attempts,
            state: JobState::Waiting,
        });
        if guarantee {
            // Journaled in this batch; the transport commits it before it
            // sends the ACK.
            self.accept_guaranteed(now, &key, &job);
            self.send_journaled(
                &acked,
                Message::Ack {
                    of: key.to_string(),
                    timing: None,
                },
            );
        }
        self.jobs.insert(key, job);
        self.waiting_total += 1;
        self.dispatch_queue(now, &queue);
    }

    fn answer_query(&mut self, endpoint: Endpoint, peer: &PeerId, of: &str) {
        let msg = if let Some(msg) = self.tracked_job_message(of) {
            msg
        } else if let Some(job) = self.jobs.get(of) {
            let (state, worker) = match &job.state {
                JobState::Waiting | JobState::Delayed { .. } => ("QUEUED", None),
                JobState::Running { worker, .. } => ("RUNNING", Some(worker.to_string())),
            };
            let detail = serde_json::json!({"queue": &*job.queue, "jobmanager": worker});
            Message::Job {
                of: of.to_string(),
                state: state.into(),
                detail: detail.to_string(),
                result: None,
            }
        } else if let Some(done) = self.results.get(of) {
            let state = match done.result.outcome {
                Outcome::Ok => "FINISHED",
                Outcome::Cancelled => "CANCELLED",
                _ => "FAILED",
            };
            let detail = serde_json::json!({"queue": done.queue});
            Message::Job {
                of: of.to_string(),
                state: state.into(),
                detail: detail.to_string(),
                result: Some(done.result.clone()),
            }
        } else {
            Message::Error {
                of: of.to_string(),
                code: ErrorCode::UnknownJob,
                reason: format!("no job {of} (never seen, or its result has expired)"),
            }
        };
        self.send(endpoint, peer, msg);
    }

    fn cancel(&mut self, now: Instant, endpoint: Endpoint, peer: &PeerId, of: &str) {
        if self.cancel_waiting(now, of) {
            info!("job {of} cancelled by {peer}");
        }
        self.answer_query(endpoint, peer, of);
    }

    /// Cancel job `of` if it has not started; its client gets a cancelled
    /// result. Returns whether it was cancelled.
    fn cancel_waiting(&mut self, now: Instant, of: &str) -> bool {
        if !self.jobs.get(of).is_some_and(|j| is_waiting(j)) {
            return false;
        }
        let (key, job) = self.jobs.remove_entry(of).expect("checked above");
        self.detach(&key, &job, None);
        self.finish_cancelled(now, &key, job);
        true
    }

    fn finish_cancelled(&mut self, now: Instant, key: &JobKey, job: Box<Job>) {
        let result = ResultFrames {
            of: key.to_string(),
            outcome: Outcome::Cancelled,
            content_type: ContentType::Json,
            body: br#"{"value":null,"error":"cancelled"}"#.to_vec(),
        };
        self.finish(now, key, job, result, true);
    }

    /// PURGE: cancel every job waiting (or backing off) in `queue`. The
    /// waiting list is taken whole (cancelling one by one would search it
    /// once per job).
    fn purge_queue(&mut self, now: Instant, peer: &PeerId, queue: &str) {
        let waiting = self
            .queues
            .get_mut(queue)
            .map(|q| std::mem::take(&mut q.waiting))
            .unwrap_or_default();
        let mut purged = 0;
        for key in waiting {
            if let Some(job) = self.jobs.remove(&key) {
                debug_assert!(matches!(job.state, JobState::Waiting));
                self.waiting_total -= 1;
                self.finish_cancelled(now, &key, job);
                purged += 1;
            }
        }
        let delayed: Vec<JobKey> = self
            .jobs
            .iter()
            .filter(|(_, j)| &*j.queue == queue && matches!(j.state, JobState::Delayed { .. }))
            .map(|(k, _)| k.clone())
            .collect();
        purged += delayed.iter().filter(|id| self.cancel_waiting(now, id)).count();
        warn!("queue {queue:?} purged by {peer}: {purged} waiting jobs cancelled");
        let json = serde_json::json!({ "queue": queue, "purged": purged }).to_string();
        self.send(
            Endpoint::Admin,
            peer,
            Message::Reply(Reply::Notice(emq_proto::ReplyNotice(json))),
        );
    }

    // ------------------------------------------------------------ jobmanagers

    fn on_jobmanager(&mut self, now: Instant, peer: PeerId, msgid: String, msg: Message) {
        if let Message::Inform(inform) = msg {
            return self.on_inform(now, peer, msgid, inform);
        }
        let Some(worker) = self.workers.get_mut(&peer) else {
            if matches!(msg, Message::Kbye) {
                return;
            }
            let reason = format!("{} before INFORM", msg.command().as_str());
            if let Message::Reply(Reply::Result(result)) = msg {
                // A jobmanager that finished jobs while this router was down
                // reports them before it has INFORMed again: a result for a
                // job the router holds is still a result (first one wins).
                self.on_reply(now, &peer, result);
            }
            self.refuse(Endpoint::Backend, &peer, &msgid, ErrorCode::NotInformed, &reason);
            return;
        };
        worker.last_seen = now;
        match msg {
            Message::Ready { count } => {
                worker.slots = worker.slots.saturating_add(count);
                self.dispatch_to(now, &peer);
            }
            Message::Reply(Reply::Result(result)) => self.on_reply(now, &peer, result),
            Message::Heartbeat { state, .. } => {
                if let Some(state) = state {
                    if worker.state.as_ref() != Some(&state) {
                        info!("jobmanager {peer} is {state}");
                        worker.state = Some(state);
                    }
                }
            }
            Message::Kbye => {
                info!("jobmanager {peer} said KBYE");
                self.remove_worker(now, &peer);
            }
            Message::Ack { .. } => {}
            other => {
                let reason = format!("{} is not a jobmanager command", other.command().as_str());
                self.refuse(Endpoint::Backend, &peer, &msgid, ErrorCode::UnknownCommand, &reason);
            }
        }
    }

    fn on_inform(&mut self, now: Instant, peer: PeerId, msgid: String, inform: Inform) {
        if inform.peer_type != PeerType::Worker {
            return self.refuse(
                Endpoint::Backend,
                &peer,
                &msgid,
                ErrorCode::UnknownCommand,
                "only workers INFORM on the backend",
            );
        }
        if self.stopping {
            return self.error(
                Endpoint::Backend,
                &peer,
                &msgid,
                ErrorCode::ShuttingDown,
                "router is shutting down",
            );
        }
        let queues = if inform.queues.is_empty() {
            self.config.default_queues.clone()
        } else {
            inform.queues
        };
        // A known peer informing again (new queues, or it lost track of us)
        // keeps its running jobs; its slots are announced afresh after the ACK.
        let previous = self.workers.remove(&peer);
        if previous.is_some() {
            info!("jobmanager {peer} informed again");
            for q in self.queues.values_mut() {
                q.members.retain(|m| m.peer != peer);
            }
        }
        let (running, processed) = previous.map_or_else(Default::default, |w| (w.running, w.processed));
        let peer_hb = inform.timing.map_or(self.config.assumed_peer_heartbeat, |t| {
            Duration::from_millis(t.heartbeat_ms)
        });
        let window = self.config.liveness.max(peer_hb * 2);
        info!("jobmanager {peer} joined: queues {queues:?}, liveness window {window:?}");
        for (weight, name) in &queues {
            let q = self.queue_mut(name);
            q.members.retain(|m| m.peer != peer);
            q.members.push(Member {
                weight: *weight,
                peer: peer.clone(),
                last_used: 0,
            });
        }
        self.workers.insert(
            peer.clone(),
            Worker {
                id: Rc::new(peer.clone()),
                queues,
                slots: 0,
                last_seen: now,
                window,
                running,
                state: None,
                processed,
                is_eventmq: inform.timing.is_none(),
            },
        );
        let timing = Timing {
            heartbeat_ms: self.config.heartbeat.as_millis() as u64,
            liveness_ms: window.as_millis() as u64,
        };
        self.send(
            Endpoint::Backend,
            &peer,
            Message::Ack {
                of: msgid,
                timing: Some(timing),
            },
        );
    }

    fn on_reply(&mut self, now: Instant, peer: &PeerId, result: ResultFrames) {
        let Some(job) = self.jobs.get(result.of.as_str()) else {
            debug!(
                "REPLY from {peer} for {} which is not in flight (late or duplicate): ignored",
                result.of
            );
            return;
        };
        match &job.state {
            JobState::Running { worker, .. } if **worker == *peer => {}
            JobState::Running { worker, .. } => {
                debug!(
                    "REPLY for {} from {peer}, but the job now runs on {worker}: first result wins",
                    result.of
                );
            }
            JobState::Waiting | JobState::Delayed { .. } => {
                debug!(
                    "REPLY for {} from {peer} after it was handed back: first result wins",
                    result.of
                );
            }
        }
        let (key, job) = self.jobs.remove_entry(result.of.as_str()).expect("checked above");
        self.detach(&key, &job, Some(peer));
        if let Some(q) = self.queues.get_mut(&*job.queue) {
            q.processed += 1;
        }
        if job.guarantee && result.outcome.is_retryable() && job.attempts < job.max_attempts {
            let why = format!("ended {}", result.outcome.as_str());
            return self.retry_later(now, key, job, &why);
        }
        self.finish(now, &key, job, result, false);
    }

    /// Take a job out of wherever it is (a worker, a waiting list, a backoff).
    fn detach(&mut self, key: &JobKey, job: &Job, replied_by: Option<&PeerId>) {
        match &job.state {
            JobState::Running { worker, .. } => {
                if let Some(w) = self.workers.get_mut(&**worker) {
                    w.running.remove(key);
                    if replied_by == Some(&**worker) {
                        w.processed += 1;
                    }
                }
            }
            JobState::Waiting => {
                if let Some(q) = self.queues.get_mut(&*job.queue) {
                    q.waiting.retain(|id| id != key);
                }
                self.waiting_total -= 1;
            }
            // Its heap entry goes stale and is skipped when due.
            JobState::Delayed { .. } => self.delayed_count -= 1,
        }
    }

    /// Send a finished job's result to its client when it asked for it;
    /// keep it for lookup when nobody is waiting for it (or `keep`). A result
    /// that cannot be delivered is kept too (see `undeliverable`).
    fn finish(&mut self, now: Instant, key: &JobKey, job: Box<Job>, result: ResultFrames, keep: bool) {
        if job.guarantee {
            self.track_finish(now, key, job.as_ref(), &result);
            if job.reply_requested {
                // Only once its end is journaled: a client that has the result
                // must never see the job run again after a crash.
                self.send_journaled(&job.client, Message::Reply(Reply::Result(result)));
            }
            self.keep_if_dead(key, job);
            return;
        }
        if keep || !job.reply_requested {
            self.results.insert(now, job.queue.to_string(), result.clone());
        }
        if job.reply_requested {
            // The common case moves the result; only a kept one is copied.
            self.send(Endpoint::Frontend, &job.client, Message::Reply(Reply::Result(result)));
        }
    }

    /// Forget a jobmanager and hand its running jobs back to the front of their
    /// queues, in the order they were dispatched.
    fn remove_worker(&mut self, now: Instant, peer: &PeerId) {
        let Some(worker) = self.workers.remove(peer) else {
            return;
        };
        for (_, name) in &worker.queues {
            if let Some(q) = self.queues.get_mut(name) {
                q.members.retain(|m| &m.peer != peer);
            }
        }
        let mut running: Vec<(u64, JobKey)> = worker
            .running
            .into_iter()
            .filter_map(|id| match self.jobs.get(&id).map(|j| &j.state) {
                Some(JobState::Running { dispatch_seq, .. }) => Some((*dispatch_seq, id)),
                _ => None,
            })
            .collect();
        running.sort_unstable();
        let mut touched = HashSet::default();
        for (_, id) in running.into_iter().rev() {
            let (key, mut job) = self.jobs.remove_entry(&id).expect("running job is tracked");
            job.state = JobState::Waiting;
            if job.attempts >= job.max_attempts {
                // A job that keeps taking its jobmanager down must not cycle forever.
                warn!(
                    "job {key} lost with jobmanager {peer} on its last attempt ({})",
                    job.attempts
                );
                let result = Self::lost_with_jobmanager(&key, peer, job.attempts);
                self.finish(now, &key, job, result, false);
            } else if job.guarantee {
                self.retry_later(now, key, job, &format!("lost with jobmanager {peer}"));
            } else {
                info!(
                    "job {key} handed back to queue {:?} (jobmanager {peer} gone)",
                    job.queue
                );
                let queue = job.queue.clone();
                self.jobs.insert(key.clone(), job);
                self.queue_mut(&queue).waiting.push_front(key);
                self.waiting_total += 1;
                touched.insert(queue);
            }
        }
        for queue in touched {
            self.dispatch_queue(now, &queue);
        }
    }

    // ---------------------------------------------------------------- routing

    /// The member of `queue` to get the next job: highest weight first, and
    /// among equal weights the least recently used, counting only jobmanagers
    /// with a free slot.
    fn pick_worker(&self, queue: &str) -> Option<usize> {
        let q = self.queues.get(queue)?;
        q.members
            .iter()
            .enumerate()
            .filter(|(_, m)| self.workers.get(&m.peer).is_some_and(|w| w.slots > 0))
            .min_by_key(|(_, m)| (std::cmp::Reverse(m.weight), m.last_used))
            .map(|(i, _)| i)
    }

    /// Send waiting jobs of `queue` while someone has a free slot.
    fn dispatch_queue(&mut self, now: Instant, queue: &str) {
        while self.queues.get(queue).is_some_and(|q| !q.waiting.is_empty()) {
            let Some(i) = self.pick_worker(queue) else {
                return;
            };
            let peer = self.queues[queue].members[i].peer.clone();
            self.dispatch_one(now, queue, &peer);
        }
    }

    /// A jobmanager has a new slot: give it the oldest waiting job of its
    /// highest-weight queue that has one.
    fn dispatch_to(&mut self, now: Instant, peer: &PeerId) {
        let Some(worker) = self.workers.get(peer) else {
            return;
        };
        let mut queues: Vec<(i64, String)> = worker.queues.clone();
        queues.sort_by_key(|(w, _)| std::cmp::Reverse(*w));
        for (_, name) in queues {
            if self.workers.get(peer).is_none_or(|w| w.slots == 0) {
                return;
            }
            while self.queues.get(&name).is_some_and(|q| !q.waiting.is_empty()) && self.workers[peer].slots > 0 {
                self.dispatch_one(now, &name, peer);
            }
        }
    }

    /// Pop the front of `queue` and send it to `peer`, which has a slot.
    fn dispatch_one(&mut self, now: Instant, queue: &str, peer: &PeerId) {
        self.seq += 1;
        let seq = self.seq;
        let q = self.queues.get_mut(queue).expect("queue exists");
        let Some(id) = q.waiting.pop_front() else {
            return;
        };
        self.waiting_total -= 1;
        if let Some(m) = q.members.iter_mut().find(|m| &m.peer == peer) {
            m.last_used = seq;
        }
        let worker = self.workers.get_mut(peer).expect("worker exists");
        worker.slots -= 1;
        worker.running.insert(id.clone());
        let eventmq = worker.is_eventmq;
        let worker_id = worker.id.clone();
        let job = self.jobs.get_mut(&id).expect("waiting job is tracked");
        job.state = JobState::Running {
            worker: worker_id,
            dispatch_seq: seq,
            since: now,
        };
        job.attempts = job.attempts.saturating_add(1);
        let (guarantee, attempt, max) = (job.guarantee, job.attempts, job.max_attempts);
        let headers = match (eventmq && !job.reply_requested, job.headers.is_empty()) {
            (true, true) => "reply-requested".to_string(),
            (true, false) => format!("reply-requested,{}", job.headers),
            (false, _) => job.headers.to_string(),
        };
        let frames = vec![
            Vec::new(),
            emq_proto::VERSION.as_bytes().to_vec(),
            b"REQUEST".to_vec(),
            id.as_bytes().to_vec(),
            queue.as_bytes().to_vec(),
            headers.into_bytes(),
            job.body.to_vec(),
        ];
        self.out.push(Outgoing {
            endpoint: Endpoint::Backend,
            peer: peer.clone(),
            frames,
            after_commit: false,
        });
        if guarantee {
            self.track_dispatch(now, &id, attempt, max, peer);
        }
    }

    // ------------------------------------------------------------------ admin

    fn on_admin(&mut self, now: Instant, peer: PeerId, msgid: String, msg: Message) {
        match msg {
            Message::Disconnect => {
                info!("DISCONNECT from admin {peer}: stopping");
                self.send(
                    Endpoint::Admin,
                    &peer,
                    Message::Ack {
                        of: msgid,
                        timing: None,
                    },
                );
                self.stop_requested = true;
            }
            Message::Status | Message::RouterShowWorkers | Message::RouterShowSchedulers | Message::Dead => {
                let json = match msg {
                    Message::Status => crate::status::status_json(self, now),
                    Message::RouterShowWorkers => crate::status::workers_json(self, now),
                    Message::Dead => self.dead_list_json(),
                    _ => r#"{"connected_schedulers": {}}"#.to_string(),
                };
                self.send(
                    Endpoint::Admin,
                    &peer,
                    Message::Reply(Reply::Notice(emq_proto::ReplyNotice(json))),
                );
            }
            Message::Query { of } => self.answer_query(Endpoint::Admin, &peer, &of),
            Message::Cancel { of } => self.cancel(now, Endpoint::Admin, &peer, &of),
            Message::Retry { of } => self.retry_dead(now, &peer, &of),
            Message::Purge { queue } => self.purge_queue(now, &peer, &queue),
            Message::Heartbeat { .. } | Message::Kbye | Message::Hello => {}
            other => {
                let reason = format!("{} is not an admin command", other.command().as_str());
                self.refuse(Endpoint::Admin, &peer, &msgid, ErrorCode::UnknownCommand, &reason)
            }
        }
    }

    // --------------------------------------------------------- for status.rs

    pub(crate) fn running_by_queue(&self, now: Instant) -> HashMap<&str, (u64, u128, u128)> {
        let mut by_queue: HashMap<&str, (u64, u128, u128)> = HashMap::default();
        for job in self.jobs.values() {
            if let JobState::Running { since, .. } = job.state {
                let age = now.saturating_duration_since(since).as_millis();
                let e = by_queue.entry(&*job.queue).or_default();
                e.0 += 1;
                e.1 += age;
                e.2 = e.2.max(age);
            }
        }
        by_queue
    }

    pub(crate) fn waiting_total(&self) -> usize {
        self.waiting_total
    }

    pub(crate) fn uptime(&self, now: Instant) -> Duration {
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

mod guaranteed;
#[cfg(test)]
mod tests;

/// Not started yet: waiting in its queue, or backing off before a retry.
fn is_waiting(job: &Job) -> bool {
    matches!(job.state, JobState::Waiting | JobState::Delayed { .. })
}
