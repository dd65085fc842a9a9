//! A job as the router holds it, and where it is.

use std::rc::Rc;
use std::time::Instant;

use super::handlers::HandlerId;
use super::PeerId;

/// A job's msgid, shared by the jobs map and its queue's waiting list.
pub(crate) type JobKey = Rc<str>;

/// Where a job is. A job is in exactly one of these places until its first
/// REPLY (or its cancellation) removes it from the router.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Place {
    /// In its queue's waiting list.
    Waiting,
    /// Waiting for a time (a retry's backoff), in the timers, not in a list.
    Delayed { until: Instant },
    /// A graph's node waiting for its parents: in no queue.
    Blocked,
    /// Sent to a jobmanager.
    Running {
        jobmanager: Rc<PeerId>,
        /// When it was sent, in dispatch order.
        dispatch_seq: u64,
        since: Instant,
    },
}

/// A job the router holds. Kept small: a million of them may wait, so peers
/// and queue names are shared, not copied, and the job itself is boxed so
/// that the jobs map's spare capacity costs a pointer, not a job.
#[derive(Debug)]
pub(crate) struct Job {
    pub client: Rc<PeerId>,
    pub queue: Rc<str>,
    /// The headers frame, forwarded to the jobmanager; shared between jobs
    /// with the same headers. A thin pointer (`Rc<String>`, not `Rc<str>`):
    /// the 8 bytes saved make a `Job` 104 bytes, one malloc size class
    /// (16 bytes) below 112.
    pub headers: Rc<String>,
    pub body: Box<[u8]>,
    pub reply_requested: bool,
    pub guarantee: bool,
    /// The handler it calls, read from its body only when routing needs it.
    pub handler: HandlerId,
    /// Attempts started so far (dispatches).
    pub attempts: u16,
    pub max_attempts: u16,
    /// When it became ready to run (accepted, or its not-before time came):
    /// the waiting and end-to-end times count from here. Microseconds on
    /// the router's clock in 48 bits (8.9 years), split so that they fit
    /// the room the other small fields leave ([`super::observe::Stamp`]).
    pub ready: super::observe::Stamp,
    pub place: Place,
    /// Key, expiry, extra result recipients: most jobs have none.
    pub extra: Option<Box<super::flow::JobExtra>>,
}

impl Job {
    /// Not started yet: waiting in its queue, for a time, or for its parents.
    pub(super) fn is_waiting(&self) -> bool {
        matches!(self.place, Place::Waiting | Place::Delayed { .. } | Place::Blocked)
    }
}

#[cfg(test)]
mod tests {
    /// A million waiting jobs are a million of these (plus their key, body
    /// and map and list entries): its size is part of the memory budget.
    #[test]
    fn a_job_fits_a_112_byte_malloc_chunk() {
        assert_eq!(std::mem::size_of::<super::Job>(), 104);
    }
}
