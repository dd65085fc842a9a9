//! Jobs waiting for a time, in one heap by due time: a retry's backoff.
//! Entries are not removed when their job is cancelled or finishes
//! meanwhile; they are stale, and skipped when due (a job's `Place` says
//! whether it still waits for exactly that time).

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
}

impl Timers {
    pub(super) fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _, _))| *at)
    }

    fn push(&mut self, at: Instant, key: JobKey) {
        self.inserted += 1;
        self.heap.push(Reverse((at, self.inserted, key)));
    }

    fn pop_due(&mut self, now: Instant) -> Option<(Instant, JobKey)> {
        if self.next()? > now {
            return None;
        }
        self.heap.pop().map(|Reverse((at, _, key))| (at, key))
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

    /// Move jobs whose time has come to the front of their queues.
    pub(super) fn release_due(&mut self, now: Instant) {
        let mut touched = Vec::new();
        while let Some((until, key)) = self.timers.pop_due(now) {
            let Some(job) = self.jobs.get_mut(&key) else { continue };
            if job.place != (Place::Delayed { until }) {
                continue;
            }
            let queue = job.queue.clone();
            self.enqueue(&key, true);
            touched.push(queue);
        }
        for queue in touched {
            self.dispatch_queue(now, &queue);
        }
    }
}
