//! The jobmanagers: INFORM and its ACK, slots (READY), liveness, results
//! (REPLY), and what happens to their jobs when they leave or die.

use std::rc::Rc;
use std::time::{Duration, Instant};

use emq_proto::events::EventKind;
use emq_proto::views::WorkerCounts;
use emq_proto::{ErrorCode, Inform, JobManagerState, Message, PeerType, Reply, ResultFrames, Timing};
use log::{debug, info, warn};

use super::handlers::HandlerId;
use super::jobs::{JobKey, Place};
use super::{Endpoint, PeerId, Router};
use crate::HashSet;

/// A jobmanager as the router knows it.
#[derive(Debug)]
pub(crate) struct JobManager {
    /// Its identity, shared with the jobs it runs.
    pub id: Rc<PeerId>,
    pub queues: Vec<(i64, String)>,
    /// Slots announced (READY) and not yet filled.
    pub slots: u32,
    pub last_seen: Instant,
    /// Silence after which it is dead.
    pub window: Duration,
    pub running: HashSet<JobKey>,
    /// Its own state, when it reports one (emq extension).
    pub state: Option<JobManagerState>,
    pub processed: u64,
    /// The heartbeat timing it announced at INFORM; EventMQ announces none.
    pub timing: Option<Timing>,
    /// The handlers it declared at INFORM (`None`: any, as EventMQ).
    pub handlers: Option<HashSet<HandlerId>>,
    /// It reads BATCHes of REQUESTs (declared at INFORM).
    pub batch: bool,
    /// Its workers, as its latest HEARTBEAT reported them.
    pub workers: Option<WorkerCounts>,
}

impl JobManager {
    /// Whether it has `handler` (or takes any).
    pub(super) fn has(&self, handler: HandlerId) -> bool {
        self.handlers.as_ref().is_none_or(|h| h.contains(&handler))
    }
}

impl JobManager {
    /// An EventMQ jobmanager (it announced no timing) only replies to
    /// `reply-requested` jobs.
    pub(super) fn is_eventmq(&self) -> bool {
        self.timing.is_none()
    }
}

impl Router {
    pub(super) fn on_jobmanager(&mut self, now: Instant, peer: &PeerId, msgid: String, msg: Message) {
        if let Message::Inform(inform) = msg {
            return self.on_inform(now, peer.clone(), msgid, inform);
        }
        let Some(jm) = self.fleet.get_mut(peer) else {
            return self.before_inform(now, peer, msgid, msg);
        };
        jm.last_seen = now;
        match msg {
            Message::Ready { count } => {
                jm.slots = jm.slots.saturating_add(count);
                self.dispatch_to(now, peer);
            }
            Message::Reply(Reply::Result(result)) => self.on_reply(now, peer, result),
            Message::Heartbeat {
                state: Some(state),
                workers,
                ..
            } => {
                jm.workers = workers.or(jm.workers);
                let echo = jm.timing.is_some();
                if jm.state != Some(state) {
                    info!("jobmanager {peer} is {state}");
                    jm.state = Some(state);
                    let queues = jm.queues.clone();
                    self.note_jobmanager(EventKind::JobManagerState, peer, &queues, Some(state), None);
                }
                // An emq jobmanager holding jobs it has not started probes a
                // silent link with a HEARTBEAT: answer at once.
                if echo {
                    self.send(Endpoint::Backend, peer, self.heartbeat_message());
                }
            }
            Message::Heartbeat { state: None, .. } | Message::Ack { .. } => {}
            Message::Kbye => {
                info!("jobmanager {peer} said KBYE");
                self.remove_jobmanager(now, peer, "said KBYE");
            }
            other => {
                let reason = format!("{} is not a jobmanager command", other.command().as_str());
                self.refuse(Endpoint::Backend, peer, &msgid, ErrorCode::UnknownCommand, &reason);
            }
        }
    }

    /// A message from a jobmanager the router does not know: it INFORMed a
    /// router that has since restarted, or it is no jobmanager at all.
    fn before_inform(&mut self, now: Instant, peer: &PeerId, msgid: String, msg: Message) {
        match msg {
            // A jobmanager that finished jobs while this router was down
            // reports them before it has INFORMed again: a result for a job
            // the router holds is still a result (first one wins).
            Message::Reply(Reply::Result(result)) => {
                debug!(
                    "result of {} from {peer}, which has not informed this router",
                    result.of
                );
                self.on_reply(now, peer, result);
            }
            // emq's jobmanager (it reports its state) INFORMs again when told.
            Message::Heartbeat { state: Some(_), .. } => {
                let reason = "HEARTBEAT before INFORM: this router does not know you (it restarted?)";
                self.error(Endpoint::Backend, peer, &msgid, ErrorCode::NotInformed, reason);
            }
            // EventMQ's jobmanager takes any message as a sign of life and
            // would never INFORM again: silence makes it declare this router
            // dead (3 x 5 s) and reconnect with an INFORM.
            Message::Heartbeat { state: None, .. } | Message::Ready { .. } | Message::Ack { .. } | Message::Kbye => {
                debug!("{} from {peer} before INFORM: not answered", msg.command().as_str());
            }
            Message::Request(_) => {
                let reason = format!(
                    "REQUEST on the jobmanager endpoint: clients submit to the client endpoint ({})",
                    self.config.frontend
                );
                self.refuse(Endpoint::Backend, peer, &msgid, ErrorCode::NotInformed, &reason);
            }
            other => {
                let reason = format!("{} before INFORM", other.command().as_str());
                self.refuse(Endpoint::Backend, peer, &msgid, ErrorCode::NotInformed, &reason);
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
        if self.stopping() {
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
        let previous = self.fleet.remove(&peer);
        if let Some(jm) = &previous {
            info!("jobmanager {peer} informed again");
            self.queues.remove_member(&peer);
            for (_, name) in &jm.queues {
                self.refresh_mixed(name);
            }
        }
        let (running, processed) = match previous {
            Some(jm) => (jm.running, jm.processed),
            None => (HashSet::with_hasher(self.hasher.clone()), 0),
        };
        let peer_hb = inform.timing.map_or(self.config.assumed_peer_heartbeat, |t| {
            Duration::from_millis(t.heartbeat_ms)
        });
        let window = self.config.liveness.max(peer_hb * 2);
        info!("jobmanager {peer} joined: queues {queues:?}, liveness window {window:?}");
        // Only an emq jobmanager (it announces its timing) may ask for batches.
        let batch = inform.capabilities.batch && inform.timing.is_some();
        let handlers = inform.capabilities.handlers.map(|names| {
            let mut set = HashSet::with_hasher(self.hasher.clone());
            set.extend(names.iter().map(|n| self.handler_names.intern(n)));
            set
        });
        for (weight, name) in &queues {
            let q = self.queues.entry(name);
            q.members.retain(|m| m.peer != peer);
            q.members.push(super::queues::Member {
                weight: *weight,
                peer: peer.clone(),
                last_used: 0,
            });
        }
        self.fleet.insert(
            peer.clone(),
            JobManager {
                id: Rc::new(peer.clone()),
                queues,
                slots: 0,
                last_seen: now,
                window,
                running,
                state: None,
                processed,
                timing: inform.timing,
                handlers,
                workers: None,
                batch,
            },
        );
        let queues = self.fleet[&peer].queues.clone();
        self.note_jobmanager(EventKind::JobManagerJoined, &peer, &queues, None, None);
        for (_, name) in &self.fleet[&peer].queues.clone() {
            self.refresh_mixed(name);
        }
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
                admission: None,
                // It reads our BATCHes: we read its.
                capabilities: emq_proto::Capabilities { handlers: None, batch },
            },
        );
    }

    pub(super) fn on_reply(&mut self, now: Instant, peer: &PeerId, result: ResultFrames) {
        let key = JobKey::from(result.of.as_str());
        let Some(job) = self.jobs.get(&key) else {
            debug!(
                "REPLY from {peer} for {} which is not in flight (late or duplicate): ignored",
                result.of
            );
            return;
        };
        let mut withdraw_from = None;
        match &job.place {
            Place::Blocked => {
                debug!(
                    "REPLY from {peer} for {}, which waits for its parents: ignored",
                    result.of
                );
                return;
            }
            Place::Running { jobmanager, .. } if **jobmanager == *peer => {}
            Place::Running { jobmanager, .. } => {
                debug!(
                    "REPLY for {} from {peer}, but the job now runs on {jobmanager}: first result wins",
                    result.of
                );
                // A late result (from a jobmanager cut off, or one that
                // reconnected): the second copy is withdrawn if no worker
                // of an emq jobmanager has started it yet.
                if self.fleet.get(&**jobmanager).is_some_and(|jm| !jm.is_eventmq()) {
                    withdraw_from = Some(jobmanager.clone());
                }
            }
            Place::Waiting | Place::Delayed { .. } => {
                debug!(
                    "REPLY for {} from {peer} after it was handed back: first result wins",
                    result.of
                );
            }
        }
        let running = matches!(job.place, Place::Running { .. });
        if let Some(second) = withdraw_from {
            let of = result.of.clone();
            self.send(Endpoint::Backend, &second, Message::Cancel { of });
        }
        let mut job = self.jobs.remove(&key).expect("checked above");
        if !running {
            // A result for a job waiting again: it came from an attempt made
            // before the job was handed back, or before the router restarted
            // (which does not journal dispatches): that attempt counts.
            job.attempts = job.attempts.max(1);
        }
        self.detach(&key, &job, Some(peer));
        if let Some(q) = self.queues.get_mut(&job.queue) {
            q.processed += 1;
        }
        if job.guarantee && Self::retried_when_guaranteed(result.outcome) && job.attempts < job.max_attempts {
            let why = format!("ended {}", result.outcome.as_str());
            return self.retry_later(now, key, job, &why);
        }
        self.finish(now, &key, job, result, false);
    }

    /// Declare dead every jobmanager silent for its whole window.
    pub(super) fn expire_silent_jobmanagers(&mut self, now: Instant) {
        let mut dead: Vec<PeerId> = self
            .fleet
            .iter()
            .filter(|(_, jm)| now >= jm.last_seen + jm.window)
            .map(|(p, _)| p.clone())
            .collect();
        dead.sort_unstable();
        for peer in dead {
            warn!("jobmanager {peer} silent for its liveness window: declaring it dead");
            self.remove_jobmanager(now, &peer, "silent for its liveness window");
        }
    }

    /// Forget a jobmanager and hand its running jobs back to the front of their
    /// queues, in the order they were dispatched.
    pub(super) fn remove_jobmanager(&mut self, now: Instant, peer: &PeerId, why: &str) {
        let Some(jm) = self.fleet.remove(peer) else {
            return;
        };
        self.note_jobmanager(EventKind::JobManagerLeft, peer, &jm.queues, jm.state, Some(why));
        self.queues.remove_member(peer);
        for (_, name) in &jm.queues {
            self.refresh_mixed(name);
        }
        let mut running: Vec<(u64, JobKey)> = jm
            .running
            .into_iter()
            .filter_map(|id| match self.jobs.get(&id).map(|j| &j.place) {
                Some(Place::Running { dispatch_seq, .. }) => Some((*dispatch_seq, id)),
                _ => None,
            })
            .collect();
        running.sort_unstable();
        // Queues in the order their first job comes back: deterministic.
        let mut touched: Vec<Rc<str>> = Vec::new();
        for (_, id) in running.into_iter().rev() {
            let (key, job) = self.jobs.remove_entry(&id).expect("a running job is in the jobs map");
            self.count_run_ended(&job.queue);
            self.note_abandoned(&key, &job, peer);
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
                if !touched.contains(&job.queue) {
                    touched.push(job.queue.clone());
                }
                self.jobs.insert(key.clone(), job);
                self.enqueue(&key, true);
            }
        }
        for queue in touched {
            self.dispatch_queue(now, &queue);
        }
    }
}
