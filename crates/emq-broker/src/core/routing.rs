//! Which job goes to which jobmanager, and moving jobs between their places.
//!
//! A job goes to the member of its queue with a free slot and the highest
//! weight; among equal weights, the one least recently given a job of that
//! queue. A jobmanager that announces a slot gets the oldest waiting job of
//! its highest-weight queue that has one.
//!
//! Handlers: jobmanagers may declare the handlers they have (emq's do;
//! EventMQ's take any job). While every member of a queue declares the same
//! set, routing ignores handlers and no job body is read. When the sets
//! differ, the queue is *mixed*: a job's handler is read from its body (once)
//! and it goes only to a member that has it; a job whose handler no member
//! declares (or whose body cannot be read) goes to any member, which reports
//! it unknown. Per-handler counts of the waiting jobs let a free jobmanager
//! see at once whether anything waits for it.

use std::cmp::Reverse;
use std::time::Instant;

use emq_proto::{Headers, JobCall};

use super::handlers::HandlerId;
use super::jobs::{Job, JobKey, Place};
use super::queues::{Mixed, Queue};
use super::{Carries, Endpoint, Outgoing, PeerId, Router};

impl Router {
    /// Put job `key` (in the jobs map) in its queue's waiting list: at the
    /// end for a new job, at the front for one handed back.
    pub(super) fn enqueue(&mut self, key: &JobKey, front: bool) {
        let Some(job) = self.jobs.get_mut(key) else { return };
        job.place = Place::Waiting;
        let (queue, mut handler) = (job.queue.clone(), job.handler);
        if self.queues.is_mixed(&queue) {
            handler = self.read_handler(key);
        }
        self.queues.push(&queue, key.clone(), handler, front);
    }

    /// Take a job (already out of the jobs map) out of wherever it was.
    pub(super) fn detach(&mut self, key: &JobKey, job: &Job, replied_by: Option<&PeerId>) {
        match &job.place {
            Place::Running { jobmanager, .. } => {
                if let Some(jm) = self.fleet.get_mut(&**jobmanager) {
                    jm.running.remove(key);
                    if replied_by == Some(&**jobmanager) {
                        jm.processed += 1;
                    }
                }
                self.count_run_ended(&job.queue);
            }
            Place::Waiting => {
                self.queues.remove(&job.queue, key, job.handler);
            }
            // Its timer entry goes stale and is skipped when due.
            Place::Delayed { .. } => self.timers.forget(),
            Place::Blocked => self.graphs.left_blocked(),
        }
    }

    /// The handler job `key` calls, read from its body the first time.
    pub(super) fn read_handler(&mut self, key: &JobKey) -> HandlerId {
        let Some(job) = self.jobs.get(key) else {
            return HandlerId::UNREADABLE;
        };
        if job.handler != HandlerId::UNREAD {
            return job.handler;
        }
        let content_type = Headers::parse(&job.headers).content_type;
        let handler = match JobCall::handler_of(&job.body, content_type) {
            Ok(name) => self.handler_names.intern(&name),
            Err(_) => HandlerId::UNREADABLE,
        };
        if let Some(job) = self.jobs.get_mut(key) {
            job.handler = handler;
        }
        handler
    }

    /// After a change of `queue`'s members: whether their handler sets
    /// differ, and if so the per-handler counts of its waiting jobs.
    pub(super) fn refresh_mixed(&mut self, queue: &str) {
        let Some(q) = self.queues.get(queue) else { return };
        let mut sets = q
            .members
            .iter()
            .filter_map(|m| self.fleet.get(&m.peer))
            .map(|jm| &jm.handlers);
        let first = sets.next();
        let differ = first.is_some_and(|first| sets.any(|s| s != first));
        if !differ {
            return self.queues.set_mixed(queue, None);
        }
        let mut declared = crate::HashSet::with_hasher(self.hasher.clone());
        let mut takes_any = false;
        for jm in q.members.iter().filter_map(|m| self.fleet.get(&m.peer)) {
            match &jm.handlers {
                Some(set) => declared.extend(set.iter().copied()),
                None => takes_any = true,
            }
        }
        let waiting: Vec<JobKey> = q.waiting().cloned().collect();
        let mut counts = crate::HashMap::with_hasher(self.hasher.clone());
        for key in &waiting {
            *counts.entry(self.read_handler(key)).or_default() += 1;
        }
        let mixed = Mixed {
            counts,
            declared,
            takes_any,
        };
        self.queues.set_mixed(queue, Some(mixed));
    }

    /// Whether member `peer` of a mixed queue may run a job calling
    /// `handler`: if it has it, or if no member has it.
    fn may_run(&self, mixed: &Mixed, peer: &PeerId, handler: HandlerId) -> bool {
        let nobody_has_it = !mixed.declared.contains(&handler) && !mixed.takes_any;
        if handler == HandlerId::UNREADABLE || nobody_has_it {
            return true;
        }
        self.fleet.get(peer).is_some_and(|jm| jm.has(handler))
    }

    /// Whether anything waiting in mixed queue `queue` may run on `peer`.
    fn has_work_for(&self, queue: &str, peer: &PeerId) -> bool {
        let Some(q) = self.queues.get(queue) else { return false };
        match q.mixed() {
            None => q.has_waiting(),
            Some(mixed) => mixed.counts.keys().any(|h| self.may_run(mixed, peer, *h)),
        }
    }

    /// The member of `queue` to get a job calling `handler`: highest weight
    /// first, and among equal weights the least recently used, counting only
    /// jobmanagers with a free slot (and, in a mixed queue, that may run it).
    fn pick_jobmanager(&self, q: &Queue, handler: HandlerId) -> Option<usize> {
        q.members
            .iter()
            .enumerate()
            .filter(|(_, m)| self.fleet.get(&m.peer).is_some_and(|jm| jm.slots > 0))
            .filter(|(_, m)| q.mixed().is_none_or(|mixed| self.may_run(mixed, &m.peer, handler)))
            .min_by_key(|(_, m)| (Reverse(m.weight), m.last_used))
            .map(|(i, _)| i)
    }

    /// Whether a job for `queue` would be dispatched now: a member has a
    /// free slot and the queue's flow control allows.
    pub(super) fn has_free_jobmanager(&self, queue: &str) -> bool {
        if self.dispatch_blocked(queue, self.mono_at_wall).is_some() {
            return false;
        }
        self.queues.get(queue).is_some_and(|q| {
            q.members
                .iter()
                .any(|m| self.fleet.get(&m.peer).is_some_and(|jm| jm.slots > 0))
        })
    }

    /// Send waiting jobs of `queue` while someone has a free slot for them
    /// and its flow control allows.
    pub(super) fn dispatch_queue(&mut self, now: Instant, queue: &str) {
        if !self.queues.is_mixed(queue) {
            // The oldest job to the best free member, while both exist.
            loop {
                let Some(q) = self.queues.get(queue).filter(|q| q.has_waiting()) else {
                    return;
                };
                let Some(i) = self.pick_jobmanager(q, HandlerId::UNREAD) else {
                    return;
                };
                let peer = q.members[i].peer.clone();
                if !self.may_dispatch(queue, now) {
                    return;
                }
                self.dispatch_one(now, queue, 0, &peer);
            }
        }
        // Mixed: each job to a free member that has its handler; a job
        // whose members are all busy waits, and jobs behind it may go.
        let mut index = 0;
        loop {
            if !self.may_dispatch(queue, now) {
                return;
            }
            let Some(q) = self.queues.get(queue) else { return };
            let Some(key) = q.waiting_at(index).cloned() else {
                return;
            };
            let free_with_work = q
                .members
                .iter()
                .any(|m| self.fleet.get(&m.peer).is_some_and(|jm| jm.slots > 0) && self.has_work_for(queue, &m.peer));
            if !free_with_work {
                return;
            }
            let handler = self.read_handler(&key);
            let q = self.queues.get(queue).expect("exists");
            match self.pick_jobmanager(q, handler) {
                Some(i) => {
                    let peer = q.members[i].peer.clone();
                    self.dispatch_one(now, queue, index, &peer);
                }
                None => index += 1,
            }
        }
    }

    /// A jobmanager has a new slot: give it the oldest waiting job of its
    /// highest-weight queue that has one it may run.
    pub(super) fn dispatch_to(&mut self, now: Instant, peer: &PeerId) {
        let Some(jm) = self.fleet.get(peer) else {
            return;
        };
        let mut queues = jm.queues.clone();
        queues.sort_by_key(|(w, _)| Reverse(*w));
        for (_, name) in queues {
            let mut index = 0;
            while self.fleet.get(peer).is_some_and(|jm| jm.slots > 0)
                && self.has_work_for(&name, peer)
                && self.may_dispatch(&name, now)
            {
                let Some(q) = self.queues.get(&name) else { break };
                let Some(key) = q.waiting_at(index).cloned() else { break };
                let fits = match q.mixed() {
                    None => true,
                    Some(_) => {
                        let handler = self.read_handler(&key);
                        let q = self.queues.get(&name).expect("exists");
                        q.mixed().is_none_or(|mixed| self.may_run(mixed, peer, handler))
                    }
                };
                if fits {
                    self.dispatch_one(now, &name, index, peer);
                } else {
                    index += 1;
                }
            }
        }
    }

    /// Send the job at `index` of `queue`'s waiting list to `peer`, which
    /// has a slot.
    fn dispatch_one(&mut self, now: Instant, queue: &str, index: usize, peer: &PeerId) {
        // Only a mixed queue counts its jobs by handler.
        let handler = match self.queues.is_mixed(queue) {
            true => self
                .queues
                .get(queue)
                .and_then(|q| q.waiting_at(index))
                .and_then(|k| self.jobs.get(k))
                .map_or(HandlerId::UNREAD, |j| j.handler),
            false => HandlerId::UNREAD,
        };
        let Some(key) = self.queues.take_at(queue, index, handler) else {
            return;
        };
        self.seq += 1;
        let (seq, wall) = (self.seq, self.wall_ms);
        // One lookup of the job and one of the jobmanager serve everything.
        let jm = self.fleet.get_mut(peer).expect("dispatching to a known jobmanager");
        let job = self.jobs.get_mut(&key).expect("a waiting job is in the jobs map");
        let mut coalesced = false;
        if let Some(extra) = &job.extra {
            // Past its expiry (its timer not yet seen): it never starts,
            // and the slot stays free.
            if extra.expires_ms.is_some_and(|at| at <= wall) {
                let (key, job) = self.jobs.remove_entry(&key).expect("checked above");
                return self.finish_expired(now, &key, job);
            }
            coalesced = matches!(extra.key, Some((super::flow::KeyMode::Coalesce, _)));
        }
        jm.slots -= 1;
        jm.running.insert(key.clone());
        let ask_for_reply = jm.is_eventmq();
        let batch = jm.batch.then(|| jm.id.clone());
        job.place = Place::Running {
            jobmanager: jm.id.clone(),
            dispatch_seq: seq,
            since: now,
        };
        job.attempts = job.attempts.saturating_add(1);
        let (guarantee, attempt, max, ready) = (job.guarantee, job.attempts, job.max_attempts, job.ready);
        let job_queue = job.queue.clone();
        // An EventMQ jobmanager only replies to jobs that ask for a reply,
        // and the router needs every reply to know a job has finished.
        let headers: std::borrow::Cow<'_, str> =
            match (ask_for_reply && !job.result_to.requested(), job.headers.is_empty()) {
                (true, true) => "reply-requested".into(),
                (true, false) => format!("reply-requested,{}", job.headers).into(),
                (false, _) => std::borrow::Cow::Borrowed(job.headers.as_str()),
            };
        // A job a schedule fired runs only once its fire is durable: a
        // crash before the commit must leave the slot unfired, not run and
        // then counted missed. (A client's job may go before its commit:
        // the client, not yet acknowledged, sends it again.)
        let after_commit = std::rc::Rc::ptr_eq(&job.client, &self.scheduler);
        let key_text = key.text();
        let request = [
            emq_proto::Command::Request.as_str().as_bytes(),
            key_text.as_bytes(),
            queue.as_bytes(),
            headers.as_bytes(),
            &job.body,
        ];
        match batch.filter(|_| emq_proto::batchable(&request)) {
            Some(jm) => {
                let to = (Endpoint::Backend, &jm);
                let jobs = || Carries::Jobs(Vec::new());
                let out = Outgoing::open_batch(
                    &mut self.out,
                    &mut self.open_batches,
                    &mut self.ids,
                    to,
                    after_commit,
                    jobs,
                );
                emq_proto::push_entry(&mut out.frames[4], &request);
                if let Carries::Jobs(keys) = &mut out.carries {
                    keys.push(key.clone());
                }
            }
            None => {
                let alone = Outgoing {
                    endpoint: Endpoint::Backend,
                    peer: peer.clone(),
                    frames: emq_proto::request_frames(&key_text, queue, &headers, &job.body),
                    after_commit,
                    carries: Carries::Job(key.clone()),
                };
                self.push_alone(alone);
            }
        }
        if let Some(m) = self
            .queues
            .get_mut(queue)
            .and_then(|q| q.members.iter_mut().find(|m| &m.peer == peer))
        {
            m.last_used = seq;
        }
        if coalesced {
            self.release_coalesce_key(&key);
        }
        self.count_dispatch(queue, now);
        self.note_dispatched(now, &key, &job_queue, attempt, ready, peer);
        if guarantee {
            self.track_dispatch(&key, attempt, max, peer);
        }
    }
}
