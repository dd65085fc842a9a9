//! The queues: each one's waiting list, the jobmanagers that serve it, and
//! the total waiting across all of them. [`Queues`] is the only owner of the
//! waiting lists, so the total can never drift from their lengths.

use std::collections::VecDeque;
use std::rc::Rc;

use super::handlers::HandlerId;
use super::jobs::JobKey;
use super::PeerId;
use crate::{HashMap, HashSet};

/// A jobmanager serving a queue.
#[derive(Debug)]
pub(crate) struct Member {
    pub weight: i64,
    pub peer: PeerId,
    /// Dispatch sequence number of the last job it got from this queue.
    pub last_used: u64,
}

/// What a queue keeps while its jobmanagers declare different handlers:
/// routing must then look at each job's handler.
#[derive(Debug, Default)]
pub(crate) struct Mixed {
    /// Waiting jobs per handler.
    pub counts: HashMap<HandlerId, usize>,
    /// Every handler some member declares.
    pub declared: HashSet<HandlerId>,
    /// Some member declares none: it takes any job (EventMQ).
    pub takes_any: bool,
}

#[derive(Debug)]
pub(crate) struct Queue {
    pub name: Rc<str>,
    pub members: Vec<Member>,
    waiting: VecDeque<JobKey>,
    /// Jobs of this queue that ended, since the router started.
    pub processed: u64,
    /// Jobs of this queue running on a jobmanager now, counted while the
    /// queue has flow control (its concurrency limit counts these).
    pub running: usize,
    /// `Some` while the members' handler sets differ ([`Queues::set_mixed`]).
    mixed: Option<Mixed>,
}

impl Queue {
    fn new(name: &str) -> Queue {
        Queue {
            name: name.into(),
            members: Vec::new(),
            waiting: VecDeque::new(),
            processed: 0,
            running: 0,
            mixed: None,
        }
    }

    /// What a mixed queue keeps (`None`: its members' handlers agree).
    pub(super) fn mixed(&self) -> Option<&Mixed> {
        self.mixed.as_ref()
    }

    /// The waiting jobs, oldest first.
    pub(super) fn waiting(&self) -> impl Iterator<Item = &JobKey> {
        self.waiting.iter()
    }

    /// The waiting job at `index` (0: the oldest).
    pub(super) fn waiting_at(&self, index: usize) -> Option<&JobKey> {
        self.waiting.get(index)
    }

    fn count(&mut self, handler: HandlerId, delta: isize) {
        if let Some(m) = &mut self.mixed {
            let n = m.counts.entry(handler).or_default();
            *n = n.saturating_add_signed(delta);
            if *n == 0 {
                m.counts.remove(&handler);
            }
        }
    }

    pub(super) fn waiting_len(&self) -> usize {
        self.waiting.len()
    }

    pub(super) fn has_waiting(&self) -> bool {
        !self.waiting.is_empty()
    }
}

#[derive(Debug)]
pub(crate) struct Queues {
    by_name: HashMap<String, Queue>,
    waiting_total: usize,
    /// Queues that are mixed: while none is, routing skips every handler
    /// check without looking a queue up.
    mixed_count: usize,
}

impl Queues {
    pub(super) fn new(hasher: crate::Hasher) -> Queues {
        Queues {
            by_name: HashMap::with_hasher(hasher),
            waiting_total: 0,
            mixed_count: 0,
        }
    }

    pub(super) fn get(&self, name: &str) -> Option<&Queue> {
        self.by_name.get(name)
    }

    pub(super) fn get_mut(&mut self, name: &str) -> Option<&mut Queue> {
        self.by_name.get_mut(name)
    }

    /// The queue of that name, created empty if new.
    pub(super) fn entry(&mut self, name: &str) -> &mut Queue {
        if !self.by_name.contains_key(name) {
            self.by_name.insert(name.to_string(), Queue::new(name));
        }
        self.by_name.get_mut(name).expect("just inserted")
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (&String, &Queue)> {
        self.by_name.iter()
    }

    /// Whether `name`'s members declare different handlers.
    pub(super) fn is_mixed(&self, name: &str) -> bool {
        self.mixed_count > 0 && self.get(name).is_some_and(|q| q.mixed.is_some())
    }

    /// Make `name` mixed (with its counts) or not.
    pub(super) fn set_mixed(&mut self, name: &str, mixed: Option<Mixed>) {
        let q = self.entry(name);
        let was = q.mixed.is_some();
        let is = mixed.is_some();
        q.mixed = mixed;
        match (was, is) {
            (false, true) => self.mixed_count += 1,
            (true, false) => self.mixed_count -= 1,
            _ => {}
        }
    }

    /// Jobs waiting across all queues.
    pub(super) fn waiting_total(&self) -> usize {
        self.waiting_total
    }

    pub(super) fn waiting_len(&self, name: &str) -> usize {
        self.get(name).map_or(0, Queue::waiting_len)
    }

    /// Add a job calling `handler` at the end of its queue (new jobs) or at
    /// the front (jobs handed back, which had waited their turn already).
    pub(super) fn push(&mut self, name: &str, key: JobKey, handler: HandlerId, front: bool) {
        let q = self.entry(name);
        if front {
            q.waiting.push_front(key);
        } else {
            q.waiting.push_back(key);
        }
        q.count(handler, 1);
        self.waiting_total += 1;
    }

    /// Take the job at `index` of the queue's list (0: the oldest); it calls
    /// `handler`.
    pub(super) fn take_at(&mut self, name: &str, index: usize, handler: HandlerId) -> Option<JobKey> {
        let q = self.by_name.get_mut(name)?;
        let key = q.waiting.remove(index)?;
        q.count(handler, -1);
        self.waiting_total -= 1;
        Some(key)
    }

    /// Put job `new` where `old` waits in `name`'s list (a coalesced job
    /// takes the place of the one it replaces). Linear in the queue's length.
    pub(super) fn replace(&mut self, name: &str, old: &JobKey, new: JobKey, handlers: (HandlerId, HandlerId)) -> bool {
        let Some(q) = self.by_name.get_mut(name) else {
            return false;
        };
        let Some(slot) = q.waiting.iter_mut().find(|k| *k == old) else {
            return false;
        };
        *slot = new;
        q.count(handlers.0, -1);
        q.count(handlers.1, 1);
        true
    }

    /// Take one job out of its queue's list (a cancellation). Linear in the
    /// queue's length; a whole queue goes with [`Queues::take_all`].
    pub(super) fn remove(&mut self, name: &str, key: &JobKey, handler: HandlerId) -> bool {
        let Some(q) = self.by_name.get_mut(name) else {
            return false;
        };
        let Some(i) = q.waiting.iter().position(|k| k == key) else {
            return false;
        };
        self.take_at(name, i, handler).is_some()
    }

    /// Take a queue's whole waiting list.
    pub(super) fn take_all(&mut self, name: &str) -> VecDeque<JobKey> {
        let Some(q) = self.by_name.get_mut(name) else {
            return VecDeque::new();
        };
        if let Some(m) = &mut q.mixed {
            m.counts.clear();
        }
        let taken = std::mem::take(&mut q.waiting);
        self.waiting_total -= taken.len();
        taken
    }

    /// Stop `peer` serving any queue.
    pub(super) fn remove_member(&mut self, peer: &PeerId) {
        for q in self.by_name.values_mut() {
            q.members.retain(|m| &m.peer != peer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_total_follows_every_list_operation() {
        let mut q = Queues::new(crate::Hasher::default());
        let key = |s: &str| -> JobKey { s.into() };
        let h = HandlerId::UNREAD;
        q.push("a", key("1"), h, false);
        q.push("a", key("2"), h, false);
        q.push("a", key("0"), h, true);
        q.push("b", key("x"), h, false);
        assert_eq!(q.waiting_total(), 4);
        assert_eq!(q.take_at("a", 0, h), Some(key("0")));
        assert!(q.remove("a", &key("2"), h));
        assert!(!q.remove("a", &key("2"), h));
        assert!(!q.remove("nowhere", &key("2"), h));
        assert_eq!(q.waiting_total(), 2);
        assert_eq!(q.take_all("b").len(), 1);
        assert_eq!(q.take_all("b").len(), 0);
        assert_eq!(q.waiting_total(), 1);
        assert_eq!(q.take_at("a", 0, h), Some(key("1")));
        assert_eq!(q.take_at("a", 0, h), None);
        assert_eq!(q.waiting_total(), 0);
    }
}
