//! Finished jobs' results, kept for a retention period so that a client that
//! went away (or did not ask for a reply) can fetch them by msgid.

use std::collections::VecDeque;

use crate::HashMap;
use std::time::{Duration, Instant};

use emq_proto::ResultFrames;

pub(crate) struct StoredResult {
    pub result: ResultFrames,
    pub queue: String,
    pub finished_at: Instant,
}

/// Bounded by count and age; the oldest result is dropped first.
pub(crate) struct ResultStore {
    by_id: HashMap<String, StoredResult>,
    order: VecDeque<(Instant, String)>,
    retention: Duration,
    capacity: usize,
}

impl ResultStore {
    pub(crate) fn new(retention: Duration, capacity: usize, hasher: crate::Hasher) -> Self {
        ResultStore {
            by_id: HashMap::with_hasher(hasher),
            order: VecDeque::new(),
            retention,
            capacity,
        }
    }

    pub(crate) fn insert(&mut self, now: Instant, queue: String, result: ResultFrames) {
        if self.capacity == 0 {
            return;
        }
        while self.by_id.len() >= self.capacity {
            if !self.pop_oldest() {
                break;
            }
        }
        let id = result.of.clone();
        self.order.push_back((now, id.clone()));
        self.by_id.insert(
            id,
            StoredResult {
                result,
                queue,
                finished_at: now,
            },
        );
    }

    pub(crate) fn get(&self, id: &str) -> Option<&StoredResult> {
        self.by_id.get(id)
    }

    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Drop results older than the retention.
    pub(crate) fn expire(&mut self, now: Instant) {
        while let Some((at, _)) = self.order.front() {
            if now.saturating_duration_since(*at) < self.retention {
                break;
            }
            self.pop_oldest();
        }
    }

    pub(crate) fn next_expiry(&self) -> Option<Instant> {
        self.order.front().map(|(at, _)| *at + self.retention)
    }

    fn pop_oldest(&mut self) -> bool {
        match self.order.pop_front() {
            Some((at, id)) => {
                // A re-inserted id has a newer entry; only remove the matching one.
                if self.by_id.get(&id).is_some_and(|r| r.finished_at == at) {
                    self.by_id.remove(&id);
                }
                true
            }
            None => false,
        }
    }
}
