//! Which job goes to which jobmanager, and moving jobs between their places.
//!
//! A job goes to the member of its queue with a free slot and the highest
//! weight; among equal weights, the one least recently given a job of that
//! queue. A jobmanager that announces a slot gets the oldest waiting job of
//! its highest-weight queue that has one.

use std::cmp::Reverse;
use std::time::Instant;

use super::jobs::{Job, JobKey, Place};
use super::{Carries, Endpoint, Outgoing, PeerId, Router};

impl Router {
    /// Put job `key` (in the jobs map) in its queue's waiting list: at the
    /// end for a new job, at the front for one handed back.
    pub(super) fn enqueue(&mut self, key: &JobKey, front: bool) {
        let Some(job) = self.jobs.get_mut(key) else { return };
        job.place = Place::Waiting;
        let queue = job.queue.clone();
        self.queues.push(&queue, key.clone(), front);
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
            }
            Place::Waiting => {
                self.queues.remove(&job.queue, key);
            }
            // Its timer entry goes stale and is skipped when due.
            Place::Delayed { .. } => {}
        }
    }

    /// The member of `queue` to get the next job: highest weight first, and
    /// among equal weights the least recently used, counting only jobmanagers
    /// with a free slot.
    pub(super) fn pick_jobmanager(&self, queue: &str) -> Option<usize> {
        let q = self.queues.get(queue)?;
        q.members
            .iter()
            .enumerate()
            .filter(|(_, m)| self.fleet.get(&m.peer).is_some_and(|jm| jm.slots > 0))
            .min_by_key(|(_, m)| (Reverse(m.weight), m.last_used))
            .map(|(i, _)| i)
    }

    /// Send waiting jobs of `queue` while someone has a free slot.
    pub(super) fn dispatch_queue(&mut self, now: Instant, queue: &str) {
        while self.queues.has_waiting(queue) {
            let Some(i) = self.pick_jobmanager(queue) else {
                return;
            };
            let peer = self.queues.get(queue).expect("has waiting jobs").members[i]
                .peer
                .clone();
            self.dispatch_one(now, queue, &peer);
        }
    }

    /// A jobmanager has a new slot: give it the oldest waiting job of its
    /// highest-weight queue that has one.
    pub(super) fn dispatch_to(&mut self, now: Instant, peer: &PeerId) {
        let Some(jm) = self.fleet.get(peer) else {
            return;
        };
        let mut queues = jm.queues.clone();
        queues.sort_by_key(|(w, _)| Reverse(*w));
        for (_, name) in queues {
            while self.fleet.get(peer).is_some_and(|jm| jm.slots > 0) && self.queues.has_waiting(&name) {
                self.dispatch_one(now, &name, peer);
            }
        }
    }

    /// Pop the front of `queue` and send it to `peer`, which has a slot.
    fn dispatch_one(&mut self, now: Instant, queue: &str, peer: &PeerId) {
        let Some(key) = self.queues.pop_front(queue) else {
            return;
        };
        self.seq += 1;
        let seq = self.seq;
        if let Some(m) = self
            .queues
            .get_mut(queue)
            .and_then(|q| q.members.iter_mut().find(|m| &m.peer == peer))
        {
            m.last_used = seq;
        }
        let jm = self.fleet.get_mut(peer).expect("dispatching to a known jobmanager");
        jm.slots -= 1;
        jm.running.insert(key.clone());
        let ask_for_reply = jm.is_eventmq();
        let jobmanager = jm.id.clone();
        let job = self.jobs.get_mut(&key).expect("a waiting job is in the jobs map");
        job.place = Place::Running {
            jobmanager,
            dispatch_seq: seq,
            since: now,
        };
        job.attempts = job.attempts.saturating_add(1);
        let (guarantee, attempt, max) = (job.guarantee, job.attempts, job.max_attempts);
        // An EventMQ jobmanager only replies to jobs that ask for a reply,
        // and the router needs every reply to know a job has finished.
        let headers: std::borrow::Cow<'_, str> = match (ask_for_reply && !job.reply_requested, job.headers.is_empty()) {
            (true, true) => "reply-requested".into(),
            (true, false) => format!("reply-requested,{}", job.headers).into(),
            (false, _) => std::borrow::Cow::Borrowed(&*job.headers),
        };
        let frames = emq_proto::request_frames(&key, queue, &headers, &job.body);
        self.out.push(Outgoing {
            endpoint: Endpoint::Backend,
            peer: peer.clone(),
            frames,
            after_commit: false,
            carries: Carries::Job(key.clone()),
        });
        if guarantee {
            self.track_dispatch(&key, attempt, max, peer);
        }
    }
}
