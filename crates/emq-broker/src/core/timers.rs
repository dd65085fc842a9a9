//! Jobs waiting for a time, in one heap by due time: a delayed job's
//! not-before time, a retry's backoff. Entries are not removed when their
//! job is cancelled meanwhile; they go stale and are skipped when due (a
//! job's `Place` says whether it still waits for exactly that time), and
//! the heap is compacted when stale entries outnumber live ones.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

use super::jobs::{JobKey, Place};
use super::Router;

#[derive(Debug, Default)]
pub(crate) struct Timers {
    /// `(due, insertion order, job)`: earliest first, ties in order.
    heap: BinaryHeap<Reverse<(Instant, u64, JobKey)>>,
    inserted: u64,
    /// Jobs in `Place::Delayed` (the heap also holds stale entries).
    live: usize,
}

impl Timers {
    pub(super) fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _, _))| *at)
    }

    /// Jobs waiting for a time.
    pub(super) fn len(&self) -> usize {
        self.live
    }

    fn push(&mut self, at: Instant, key: JobKey) {
        self.inserted += 1;
        self.live += 1;
        self.heap.push(Reverse((at, self.inserted, key)));
    }

    fn pop_due(&mut self, now: Instant) -> Option<(Instant, JobKey)> {
        if self.next()? > now {
            return None;
        }
        self.heap.pop().map(|Reverse((at, _, key))| (at, key))
    }

    /// A job left `Place::Delayed` other than by coming due (cancelled):
    /// its entry is now stale.
    pub(super) fn forget(&mut self) {
        self.live = self.live.saturating_sub(1);
    }
}

impl Router {
    /// Hold job `key` (already in the jobs map) until `until`.
    pub(super) fn delay(&mut self, key: JobKey, until: Instant) {
        if let Some(job) = self.jobs.get_mut(&key) {
            job.place = Place::Delayed { until };
            self.timers.push(until, key);
        }
    }

    /// Move jobs whose time has come to their queues: a retry to the front
    /// (it was waiting before), a delayed job to the back, like any new job.
    pub(super) fn release_due(&mut self, now: Instant) {
        let mut touched = Vec::new();
        while let Some((until, key)) = self.timers.pop_due(now) {
            let Some(job) = self.jobs.get_mut(&key) else { continue };
            if job.place != (Place::Delayed { until }) {
                continue;
            }
            self.timers.live -= 1;
            let (queue, retry) = (job.queue.clone(), job.attempts > 0);
            if !retry {
                job.ready = super::observe::Stamp::at(self.started, now);
                self.track_due(&key);
            }
            self.enqueue(&key, retry);
            touched.push(queue);
        }
        for queue in touched {
            self.dispatch_queue(now, &queue);
        }
        // Cancelled delayed jobs leave stale entries behind; drop them once
        // they are most of the heap.
        if self.timers.heap.len() > 1024 && self.timers.heap.len() > 2 * self.timers.live {
            let jobs = &self.jobs;
            self.timers.heap.retain(|Reverse((until, _, key))| {
                jobs.get(key)
                    .is_some_and(|j| j.place == Place::Delayed { until: *until })
            });
        }
    }
}
