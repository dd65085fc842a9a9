//! The journal's commits on a thread of their own, pipelined with routing.
//!
//! The routing loop hands each batch's `StoreOp`s to this thread and goes on
//! routing; the messages that rest on the batch (ACKs, guaranteed results:
//! `after_commit`) wait here until the commit is done. While one commit
//! runs, the next batches pile up and go as one commit once it has ended
//! and its messages are sent (so a crash leaves at most the running commit
//! journaled with its results unsent); batches grow with the load (group
//! commit) and the loop never waits for the disk or the database, except
//! when the lease of a shared journal must be renewed before anything may
//! be sent.
//!
//! Commits are applied in order, and a message waits for every commit
//! handed over before it, not only its own batch's: a message whose batch
//! journaled nothing may still rest on an earlier batch's commit.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use emq_proto::views::HaStatus;

use crate::core::Outgoing;
use crate::journal::StoreOp;
use crate::store::{JobStore, StoreError};

enum Request {
    /// Apply these operations (with a shared journal, renewing the lease).
    Commit(Vec<StoreOp>),
    /// Renew the lease of a shared journal if it is due.
    Keep(Instant),
    /// A clean stop: let a standby take over at once.
    Release,
}

/// A request carried out.
struct Done {
    result: Result<(), StoreError>,
    tenure: Option<Instant>,
    next_keep: Option<Instant>,
    peers: Option<HaStatus>,
    /// For a commit: how long it took and how many operations it applied.
    commit: Option<(Duration, usize)>,
}

/// What became of a commit, for the loop's figures.
pub(crate) struct Committed {
    /// Messages that waited for it, to send now.
    pub(crate) released: Vec<Outgoing>,
    /// How long it took and how many operations it applied.
    pub(crate) took: Duration,
    /// How many operations.
    pub(crate) ops: usize,
}

/// The commit thread and the messages waiting for it.
pub(crate) struct Committer {
    requests: mpsc::Sender<Request>,
    done: mpsc::Receiver<Done>,
    /// Readable when a request is done (one byte each): in the loop's poll.
    wake: UnixStream,
    thread: Option<JoinHandle<()>>,
    /// Requests handed over and not yet done.
    outstanding: usize,
    /// Whether a commit is among them.
    committing: bool,
    /// Messages that wait for the commit running now.
    held: Vec<Outgoing>,
    /// Operations and messages of the batches since, for the next commit.
    next_ops: Vec<StoreOp>,
    next_held: Vec<Outgoing>,
    tenure: Option<Instant>,
    next_keep: Option<Instant>,
    peers: Option<HaStatus>,
    /// `peers` changed since the last [`Committer::changed_peers`].
    peers_changed: bool,
}

impl Committer {
    /// Take over `store` (already loaded) on a thread of its own.
    pub(crate) fn start(mut store: Box<dyn JobStore>) -> std::io::Result<Committer> {
        let (requests, inbox) = mpsc::channel::<Request>();
        let (outbox, done) = mpsc::channel::<Done>();
        let (wake, mut waker) = UnixStream::pair()?;
        wake.set_nonblocking(true)?;
        let (tenure, next_keep, peers) = (store.tenure(), store.next_keep(), store.peers());
        let thread = std::thread::Builder::new().name("emq-journal".into()).spawn(move || {
            for request in inbox {
                let (result, commit) = match request {
                    Request::Commit(ops) => {
                        let started = Instant::now();
                        // A commit renews a shared journal's lease; what
                        // else is due (its standbys read) follows it.
                        let r = store.commit(&ops).and_then(|()| store.keep(Instant::now()));
                        (r, Some((started.elapsed(), ops.len())))
                    }
                    Request::Keep(now) => (store.keep(now), None),
                    Request::Release => {
                        store.release();
                        (Ok(()), None)
                    }
                };
                let done = Done {
                    result,
                    tenure: store.tenure(),
                    next_keep: store.next_keep(),
                    peers: store.peers(),
                    commit,
                };
                if outbox.send(done).is_err() || waker.write_all(&[1]).is_err() {
                    break;
                }
            }
        })?;
        Ok(Committer {
            requests,
            done,
            wake,
            thread: Some(thread),
            outstanding: 0,
            committing: false,
            held: Vec::new(),
            next_ops: Vec::new(),
            next_held: Vec::new(),
            tenure,
            next_keep,
            peers,
            peers_changed: false,
        })
    }

    /// The descriptor to poll: readable when something is done.
    pub(crate) fn wake_fd(&self) -> &UnixStream {
        &self.wake
    }

    /// Until when sending is allowed without a renewal (shared journal).
    pub(crate) fn tenure(&self) -> Option<Instant> {
        self.tenure
    }

    /// When the lease should next be renewed, if nothing commits before
    /// (none while a request runs: its answer brings the next).
    pub(crate) fn next_keep(&self) -> Option<Instant> {
        if self.outstanding > 0 {
            return None;
        }
        self.next_keep
    }

    /// The shared journal's routers, for the status view.
    pub(crate) fn peers(&self) -> Option<HaStatus> {
        self.peers.clone()
    }

    /// The shared journal's routers, if they changed since the last call.
    pub(crate) fn changed_peers(&mut self) -> Option<Option<HaStatus>> {
        std::mem::take(&mut self.peers_changed).then(|| self.peers.clone())
    }

    fn hand_over(&mut self, request: Request) -> Result<(), StoreError> {
        self.requests
            .send(request)
            .map_err(|_| StoreError::Failed("the journal thread ended".into()))?;
        self.outstanding += 1;
        Ok(())
    }

    /// A batch: its operations and the messages that rest on the journal.
    /// Returns the messages that can go at once (nothing waits for a commit).
    pub(crate) fn submit(&mut self, ops: Vec<StoreOp>, journaled: Vec<Outgoing>) -> Result<Vec<Outgoing>, StoreError> {
        if !self.committing && self.next_ops.is_empty() {
            if ops.is_empty() {
                return Ok(journaled);
            }
            self.committing = true;
            self.held = journaled;
            self.hand_over(Request::Commit(ops))?;
            return Ok(Vec::new());
        }
        if self.committing && ops.is_empty() && self.next_ops.is_empty() {
            // Rests on the commit running now at most.
            self.held.extend(journaled);
        } else {
            self.next_ops.extend(ops);
            self.next_held.extend(journaled);
        }
        self.start_next()?;
        Ok(Vec::new())
    }

    /// Hand the batches gathered during the last commit over as the next
    /// commit, once no commit runs. Called after the last commit's messages
    /// are sent, never before: then only the commit running at a crash can
    /// be journaled with its results unsent, as with a commit in the loop.
    pub(crate) fn start_next(&mut self) -> Result<(), StoreError> {
        if !self.committing && !self.next_ops.is_empty() {
            self.committing = true;
            self.held = std::mem::take(&mut self.next_held);
            let ops = std::mem::take(&mut self.next_ops);
            self.hand_over(Request::Commit(ops))?;
        }
        Ok(())
    }

    /// Renew the lease if due and nothing else would (a commit renews it).
    pub(crate) fn keep(&mut self, now: Instant) -> Result<(), StoreError> {
        if self.outstanding == 0 && self.next_keep.is_some_and(|at| now >= at) {
            // Asked once; the next keep is due again only if it fails.
            self.next_keep = None;
            self.hand_over(Request::Keep(now))?;
        }
        Ok(())
    }

    /// Take in what the thread has done (the wake descriptor was readable,
    /// or `wait` says to block for it): the messages commits released, to
    /// send before [`Committer::start_next`]. `Deposed` or `Failed` end the
    /// routing.
    pub(crate) fn collect(&mut self, wait: bool) -> Result<Vec<Committed>, StoreError> {
        let mut buf = [0u8; 64];
        while matches!((&self.wake).read(&mut buf), Ok(n) if n > 0) {}
        let mut out = Vec::new();
        loop {
            let done = match self.done.try_recv() {
                Ok(d) => d,
                Err(mpsc::TryRecvError::Empty) if wait && self.outstanding > 0 && out.is_empty() => self
                    .done
                    .recv()
                    .map_err(|_| StoreError::Failed("the journal thread ended".into()))?,
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => {
                    return Err(StoreError::Failed("the journal thread ended".into()))
                }
            };
            self.outstanding -= 1;
            self.tenure = done.tenure;
            self.next_keep = done.next_keep;
            if done.peers != self.peers {
                self.peers = done.peers;
                self.peers_changed = true;
            }
            done.result?;
            if let Some((took, ops)) = done.commit {
                self.committing = false;
                out.push(Committed {
                    released: std::mem::take(&mut self.held),
                    took,
                    ops,
                });
            }
        }
        Ok(out)
    }

    /// Whether anything is handed over or waiting.
    pub(crate) fn busy(&self) -> bool {
        self.outstanding > 0 || !self.next_ops.is_empty()
    }

    /// With the lease past its tenure: renew it now, waiting (nothing may be
    /// sent until then). Returns what commits released meanwhile.
    pub(crate) fn renew_now(&mut self) -> Result<Vec<Committed>, StoreError> {
        let mut released = Vec::new();
        if self.outstanding == 0 {
            self.hand_over(Request::Keep(Instant::now()))?;
        }
        while self.outstanding > 0 {
            released.extend(self.collect(true)?);
        }
        if self.tenure.is_some_and(|t| Instant::now() >= t) {
            return Err(StoreError::Deposed("the lease could not be renewed in time".into()));
        }
        Ok(released)
    }

    /// Wait for every commit handed over or waiting, then release the lease
    /// of a shared journal and end the thread.
    pub(crate) fn finish(mut self) -> Result<Vec<Committed>, StoreError> {
        let mut released = Vec::new();
        while self.busy() {
            released.extend(self.collect(true)?);
            self.start_next()?;
        }
        self.hand_over(Request::Release)?;
        while self.outstanding > 0 {
            self.collect(true)?;
        }
        Ok(released)
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        // Closing the channel ends the thread once its request is done.
        let (dead, _) = mpsc::channel();
        self.requests = dead;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{Carries, Endpoint, PeerId};
    use crate::journal::{Row, Table};

    /// A store whose commits wait for the test's go, and which reports each
    /// commit's keys as it starts.
    struct Gated {
        started: mpsc::Sender<Vec<String>>,
        go: mpsc::Receiver<()>,
    }

    impl JobStore for Gated {
        fn load(&mut self) -> Result<Vec<Row>, StoreError> {
            Ok(Vec::new())
        }

        fn commit(&mut self, ops: &[StoreOp]) -> Result<(), StoreError> {
            let keys = ops.iter().map(|op| op.row().1.to_string()).collect();
            self.started.send(keys).unwrap();
            self.go.recv().unwrap();
            Ok(())
        }
    }

    fn message(name: &str) -> Outgoing {
        Outgoing {
            endpoint: Endpoint::Frontend,
            peer: PeerId(name.as_bytes().to_vec()),
            frames: Vec::new(),
            after_commit: true,
            carries: Carries::Other,
        }
    }

    fn names(out: &[Outgoing]) -> Vec<String> {
        out.iter()
            .map(|o| String::from_utf8_lossy(&o.peer.0).into_owned())
            .collect()
    }

    fn released(done: Vec<Committed>) -> Vec<String> {
        done.into_iter().flat_map(|c| names(&c.released)).collect()
    }

    #[test]
    fn messages_wait_for_their_commit_and_the_next_commit_waits_for_their_release() {
        let (started_tx, started) = mpsc::channel();
        let (go, go_rx) = mpsc::channel();
        let mut c = Committer::start(Box::new(Gated {
            started: started_tx,
            go: go_rx,
        }))
        .unwrap();
        let op = |key: &str| StoreOp::delete(Table::Records, key);

        // Idle: a message that rests on nothing goes at once.
        assert_eq!(names(&c.submit(Vec::new(), vec![message("now")]).unwrap()), ["now"]);

        // A batch with a write: its ACK waits for the commit.
        assert!(c.submit(vec![op("a")], vec![message("ack-a")]).unwrap().is_empty());
        assert_eq!(started.recv().unwrap(), ["a"]);
        // Meanwhile: the next batches gather, and a message after them
        // waits for them too.
        assert!(c.submit(vec![op("b")], vec![message("ack-b")]).unwrap().is_empty());
        assert!(c.submit(vec![op("c")], Vec::new()).unwrap().is_empty());
        assert!(c.submit(Vec::new(), vec![message("after-c")]).unwrap().is_empty());

        go.send(()).unwrap();
        assert_eq!(released(c.collect(true).unwrap()), ["ack-a"]);
        // Not handed over before the caller sent what the first released.
        assert!(started.try_recv().is_err());
        c.start_next().unwrap();
        assert_eq!(started.recv().unwrap(), ["b", "c"]);
        go.send(()).unwrap();
        assert_eq!(released(c.collect(true).unwrap()), ["ack-b", "after-c"]);
        c.start_next().unwrap();
        assert!(!c.busy());
        assert!(c.finish().unwrap().is_empty());
    }
}
