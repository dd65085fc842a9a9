//! The worker processes: spawn (re-executing this binary in worker mode),
//! queue jobs where every idle worker takes from, read what they report,
//! notice deaths the moment a pipe closes, kill on timeout, recycle after N
//! jobs or above a memory limit.
//!
//! Jobs go into the shared queue (`queue.rs`) in order; a worker says which
//! job it took (that is when the job starts) and later its result, on its
//! stdout, a non-blocking pipe polled by the transport. EOF on it means the
//! worker is gone, whatever killed it.

use std::collections::{HashMap, VecDeque};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use emq_proto::{ContentType, JobResult, Outcome};
use log::{debug, info, warn};

use crate::ipc::{self, RecordReader, Report};
use crate::queue::{SharedQueue, QUEUE_FD_ENV};
use crate::worker::{MAX_JOBS_ENV, PARENT_ENV, WORKER_ENV};

/// What the pool reports back to the core.
#[derive(Debug)]
pub(crate) enum Event {
    /// A job finished, failed, or was lost with its worker.
    Done(Completion),
    /// A worker took the job from the queue: it runs from now.
    Started { msgid: String },
    /// A job taken back from the queue before any worker took it.
    Returned { msgid: String },
}

#[derive(Debug)]
pub(crate) struct Completion {
    pub msgid: String,
    pub outcome: Outcome,
    pub content_type: ContentType,
    pub body: Vec<u8>,
}

struct Worker {
    child: Child,
    /// Closed to retire it: it exits before taking another job.
    stdin: Option<ChildStdin>,
    stdout: ChildStdout,
    reader: RecordReader,
    /// The job it took and has not answered.
    running: Option<(String, ContentType)>,
    jobs_done: u64,
    /// The job limit it was started with (it exits by itself there).
    max_jobs: u64,
    /// Its stdin is closed: it ends after its current job.
    retiring: bool,
    started: Instant,
}

impl Worker {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether ending now, with no job, is the end it was asked for.
    fn expected_to_end(&self) -> bool {
        self.running.is_none() && (self.retiring || (self.max_jobs > 0 && self.jobs_done >= self.max_jobs))
    }
}

/// A job in the queue that no worker has said it took.
struct Queued {
    content_type: ContentType,
    /// A ticket's body, written to the worker that takes it.
    ticket_body: Option<Vec<u8>>,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot start a worker process ({exe}): {source}")]
pub struct SpawnError {
    exe: String,
    source: std::io::Error,
}

pub(crate) struct Pool {
    exe: PathBuf,
    workers: Vec<Worker>,
    /// Retired or killed workers not yet reaped.
    dying: Vec<Child>,
    target: usize,
    pub max_jobs: u64,
    pub max_rss_bytes: u64,
    /// Workers that died young without finishing a job, in a row.
    early_deaths: u32,
    /// Where worker pipes are read into; kept, because a fresh 64 KiB
    /// buffer per read (zeroed) was half of the jobmanager's instructions.
    read_buf: Box<[u8]>,
    queue: SharedQueue,
    /// Job messages the queue had no room for yet, oldest first.
    overflow: VecDeque<(String, Vec<u8>)>,
    /// Jobs queued (in the socket or `overflow`) and not yet taken.
    waiting: HashMap<String, Queued, foldhash::fast::RandomState>,
    /// Jobs that left the queue when a worker died without saying it took
    /// one: the dead worker's, unless a live worker reports it by then.
    suspects: Vec<(String, Instant, String)>,
    /// Workers started, died, and recycled, since the start.
    pub(crate) counts: PoolCounts,
}

/// What happened to the pool's workers since the start (`/metrics`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct PoolCounts {
    /// Worker processes started (replacements and recycling included).
    pub spawned: u64,
    /// Workers that died (crashed, killed at a timeout).
    pub died: u64,
    /// Workers recycled (after --max-jobs, or above --max-rss-mb).
    pub recycled: u64,
}

/// After this many workers in a row die before finishing a job, give up.
const MAX_EARLY_DEATHS: u32 = 50;
/// How long a live worker has to report a job it took, after another
/// worker died, before the job is counted as the dead one's.
const SUSPECT_GRACE: Duration = Duration::from_secs(1);

impl Pool {
    pub(crate) fn new(max_jobs: u64, max_rss_bytes: u64) -> Result<Pool, SpawnError> {
        let exe = std::env::current_exe().map_err(|source| SpawnError {
            exe: "current executable".into(),
            source,
        })?;
        let queue = SharedQueue::new().map_err(|source| SpawnError {
            exe: "the workers' job queue".into(),
            source,
        })?;
        Ok(Pool {
            exe,
            workers: Vec::new(),
            dying: Vec::new(),
            target: 0,
            max_jobs,
            max_rss_bytes,
            early_deaths: 0,
            read_buf: vec![0; 64 * 1024].into_boxed_slice(),
            queue,
            overflow: VecDeque::new(),
            waiting: HashMap::default(),
            suspects: Vec::new(),
            counts: PoolCounts::default(),
        })
    }

    pub(crate) fn is_failing(&self) -> bool {
        self.early_deaths >= MAX_EARLY_DEATHS
    }

    fn spawn(&self) -> Result<Worker, SpawnError> {
        let mut child = Command::new(&self.exe)
            .env(WORKER_ENV, "1")
            .env(PARENT_ENV, std::process::id().to_string())
            .env(QUEUE_FD_ENV, self.queue.take_fd().to_string())
            .env(MAX_JOBS_ENV, self.max_jobs.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|source| SpawnError {
                exe: self.exe.display().to_string(),
                source,
            })?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout is piped");
        set_nonblocking(stdout.as_raw_fd());
        debug!("worker {} started", child.id());
        Ok(Worker {
            child,
            stdin,
            stdout,
            reader: RecordReader::default(),
            running: None,
            jobs_done: 0,
            max_jobs: self.max_jobs,
            retiring: false,
            started: Instant::now(),
        })
    }

    fn serving(&self) -> usize {
        self.workers.iter().filter(|w| !w.retiring).count()
    }

    /// Keep `n` workers: start missing ones, retire extras (idle ones first;
    /// a busy one finishes its job).
    pub(crate) fn resize(&mut self, n: usize) -> Result<(), SpawnError> {
        self.target = n;
        self.fill()?;
        while self.serving() > self.target {
            let pick = |idle: bool| {
                self.workers
                    .iter()
                    .position(|w| !w.retiring && w.running.is_none() == idle)
            };
            match pick(true).or_else(|| pick(false)) {
                Some(i) => self.retire(i),
                None => break,
            }
        }
        Ok(())
    }

    fn fill(&mut self) -> Result<(), SpawnError> {
        while self.serving() < self.target {
            let w = self.spawn()?;
            self.counts.spawned += 1;
            self.workers.push(w);
        }
        Ok(())
    }

    /// Queue a job for the next idle worker.
    pub(crate) fn start(&mut self, msgid: &str, ct: ContentType, body: &[u8]) {
        let msg = ipc::encode_job(msgid, ct, body);
        let ticket_body = (msg[0] == b'T').then(|| body.to_vec());
        self.waiting.insert(
            msgid.to_string(),
            Queued {
                content_type: ct,
                ticket_body,
            },
        );
        self.overflow.push_back((msgid.to_string(), msg));
    }

    /// Move queued job messages into the shared queue while it has room, and
    /// keep the worker count.
    pub(crate) fn flush_writes(&mut self) -> Result<(), SpawnError> {
        while !self.overflow.is_empty() {
            match self.queue.send(self.overflow.iter().map(|(_, msg)| msg.as_slice())) {
                Ok(0) => break,
                Ok(sent) => drop(self.overflow.drain(..sent)),
                Err(e) => {
                    // Not expected on a socket pair we hold both ends of.
                    warn!("cannot queue a job for the workers: {e}");
                    break;
                }
            }
        }
        self.fill()
    }

    /// The queue's descriptor, when jobs wait for room in it and the workers
    /// may run out of jobs before another event wakes the jobmanager (poll
    /// POLLOUT). While the queue holds a job per worker, every job taken is
    /// reported, and that wakes it to top the queue up: waking for every
    /// message's worth of room too made a deep prefetch slower.
    pub(crate) fn wants_room(&self) -> Option<RawFd> {
        let in_queue = self.waiting.len() - self.overflow.len();
        (!self.overflow.is_empty() && in_queue < self.workers.len()).then(|| self.queue.send_fd())
    }

    /// Take back every job no worker has taken, as `Returned` events, newest
    /// first (the core puts each at the front of its backlog).
    pub(crate) fn withdraw(&mut self, out: &mut Vec<Event>) {
        let mut ids: Vec<String> = self.take_back().into_iter().map(|(id, _)| id).collect();
        ids.extend(self.overflow.drain(..).map(|(id, _)| id));
        for msgid in &ids {
            self.waiting.remove(msgid);
        }
        out.extend(ids.into_iter().rev().map(|msgid| Event::Returned { msgid }));
    }

    /// Empty the socket; the jobs it held (msgid, message), oldest first.
    fn take_back(&mut self) -> Vec<(String, Vec<u8>)> {
        let msgs = self.queue.take_back(&mut self.read_buf);
        msgs.into_iter()
            .filter_map(|msg| Some((ipc::decode_job(&msg)?.msgid, msg)))
            .collect()
    }

    /// The pipes the transport polls, with their worker pids.
    pub(crate) fn fds(&self) -> Vec<(u32, RawFd)> {
        self.workers.iter().map(|w| (w.pid(), w.stdout.as_raw_fd())).collect()
    }

    /// Read what worker `pid` wrote; a closed pipe means it ended.
    pub(crate) fn on_readable(&mut self, pid: u32, out: &mut Vec<Event>) -> Result<(), SpawnError> {
        let Some(i) = self.workers.iter().position(|w| w.pid() == pid) else {
            return Ok(());
        };
        let buf = &mut self.read_buf;
        let mut closed = false;
        loop {
            match self.workers[i].stdout.read(buf) {
                Ok(0) => {
                    closed = true;
                    break;
                }
                // A short read drained the pipe: poll tells us about the rest,
                // without a read that would only say EAGAIN.
                Ok(n) if n < buf.len() => {
                    self.workers[i].reader.push(&buf[..n]);
                    break;
                }
                Ok(n) => self.workers[i].reader.push(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    closed = true;
                    break;
                }
            }
        }
        loop {
            let report = match self.workers[i].reader.next_record() {
                Ok(Some(rec)) => ipc::decode_report(&rec),
                Ok(None) => break,
                Err(()) => None,
            };
            let ok = match report {
                Some(Report::Started(msgid)) => self.on_started(i, msgid, out),
                Some(Report::Result {
                    msgid,
                    outcome,
                    content_type,
                    body,
                }) => self.on_result(i, msgid, outcome, content_type, body, out),
                None => false,
            };
            if !ok {
                warn!("worker {} broke the pipe protocol: stopping it", self.workers[i].pid());
                kill_group(self.workers[i].pid());
                closed = true;
                break;
            }
        }
        if closed {
            if self.workers[i].expected_to_end() {
                let w = self.workers.swap_remove(i);
                debug!("worker {} ended after {} jobs", w.pid(), w.jobs_done);
                self.dying.push(w.child);
            } else {
                self.on_death(i, out);
            }
            // Its SIGCHLD may have come before it was counted as dying.
            self.reap();
            return self.fill();
        }
        if !self.workers[i].retiring && self.should_recycle(i) {
            self.counts.recycled += 1;
            self.retire(i);
            return self.fill();
        }
        Ok(())
    }

    fn on_started(&mut self, i: usize, msgid: String, out: &mut Vec<Event>) -> bool {
        let w = &mut self.workers[i];
        if w.running.is_some() {
            return false;
        }
        let Some(q) = self.waiting.remove(&msgid) else {
            return false;
        };
        self.suspects.retain(|(id, _, _)| *id != msgid);
        if let Some(body) = q.ticket_body {
            let ok = w
                .stdin
                .as_mut()
                .is_some_and(|s| s.write_all(&ipc::encode_body(&body)).is_ok());
            if !ok {
                // Retired (or dying) just as it took the ticket: it ends
                // without the body, and the job never started.
                debug!("worker {} took job {msgid} as it was leaving: taken back", w.pid());
                out.push(Event::Returned { msgid });
                return true;
            }
        }
        debug!("job {msgid} started on worker {}", w.pid());
        w.running = Some((msgid.clone(), q.content_type));
        out.push(Event::Started { msgid });
        true
    }

    fn on_result(
        &mut self,
        i: usize,
        msgid: String,
        outcome: Outcome,
        content_type: ContentType,
        body: Vec<u8>,
        out: &mut Vec<Event>,
    ) -> bool {
        let w = &mut self.workers[i];
        if w.running.as_ref().is_none_or(|(id, _)| *id != msgid) {
            return false;
        }
        w.running = None;
        w.jobs_done += 1;
        self.early_deaths = 0;
        out.push(Event::Done(Completion {
            msgid,
            outcome,
            content_type,
            body,
        }));
        true
    }

    fn should_recycle(&self, i: usize) -> bool {
        let w = &self.workers[i];
        if self.max_jobs > 0 && w.jobs_done >= self.max_jobs {
            info!("worker {} recycled after {} jobs", w.pid(), w.jobs_done);
            return true;
        }
        if self.max_rss_bytes > 0 && w.running.is_none() {
            if let Some(rss) = emq_net::resident_bytes(w.pid()) {
                if rss > self.max_rss_bytes {
                    info!(
                        "worker {} recycled: {} MiB resident, limit {} MiB",
                        w.pid(),
                        rss >> 20,
                        self.max_rss_bytes >> 20
                    );
                    return true;
                }
            }
        }
        false
    }

    /// Close the worker's stdin: it exits instead of taking another job (it
    /// stays in the pool until its pipe closes, to report its last job).
    fn retire(&mut self, i: usize) {
        let w = &mut self.workers[i];
        debug!("worker {} retiring", w.pid());
        w.stdin = None;
        w.retiring = true;
    }

    fn on_death(&mut self, i: usize, out: &mut Vec<Event>) {
        self.counts.died += 1;
        let mut w = self.workers.swap_remove(i);
        let status = w.child.try_wait().ok().flatten();
        let how = status.map_or_else(|| "pipe closed".to_string(), |s| s.to_string());
        match w.running.take() {
            Some((msgid, ct)) => {
                warn!("worker {} died ({how}) running job {msgid}: replacing it", w.pid());
                out.push(Event::Done(lost(&msgid, ct, &format!("worker process died ({how})"))));
            }
            None => {
                warn!("worker {} died ({how}) between jobs: replacing it", w.pid());
                self.find_taken(&format!("worker process died ({how})"));
            }
        }
        if w.jobs_done == 0 && w.started.elapsed() < Duration::from_secs(5) {
            self.early_deaths += 1;
        }
        if status.is_none() {
            self.dying.push(w.child);
        }
    }

    /// A worker died between jobs, perhaps just after taking one (before it
    /// could say so). Take the queue back and queue it again in order: a
    /// queued job no longer in it was taken, by a live worker (which reports
    /// it within moments) or by the dead one.
    fn find_taken(&mut self, why: &str) {
        let back = self.take_back();
        let unsent: std::collections::HashSet<&str> = back
            .iter()
            .map(|(id, _)| id.as_str())
            .chain(self.overflow.iter().map(|(id, _)| id.as_str()))
            .collect();
        let until = Instant::now() + SUSPECT_GRACE;
        for id in self.waiting.keys() {
            if !unsent.contains(id.as_str()) && !self.suspects.iter().any(|(s, _, _)| s == id) {
                self.suspects.push((id.clone(), until, why.to_string()));
            }
        }
        for job in back.into_iter().rev() {
            self.overflow.push_front(job);
        }
    }

    /// When `tick` next has something to do.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.suspects.iter().map(|(_, t, _)| *t).min()
    }

    /// Jobs taken by a worker that died, as no live worker reported them.
    pub(crate) fn tick(&mut self, out: &mut Vec<Event>) {
        let now = Instant::now();
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.suspects)
            .into_iter()
            .partition(|(_, t, _)| *t <= now);
        self.suspects = later;
        for (msgid, _, why) in due {
            if let Some(q) = self.waiting.remove(&msgid) {
                warn!("job {msgid} was taken by a worker that died before starting it");
                out.push(Event::Done(lost(&msgid, q.content_type, &why)));
            }
        }
    }

    /// Kill the worker running `msgid` (and its process group).
    pub(crate) fn kill_job(&mut self, msgid: &str) {
        if let Some(w) = self
            .workers
            .iter()
            .find(|w| w.running.as_ref().is_some_and(|(id, _)| id == msgid))
        {
            kill_group(w.pid());
        }
    }

    pub(crate) fn kill_all(&mut self) {
        for w in &self.workers {
            kill_group(w.pid());
        }
        for c in &self.dying {
            kill_group(c.id());
        }
    }

    /// Reap exited workers (on SIGCHLD).
    pub(crate) fn reap(&mut self) {
        self.dying.retain_mut(|c| match c.try_wait() {
            Ok(Some(status)) => {
                debug!("worker {} exited: {status}", c.id());
                false
            }
            Ok(None) => true,
            Err(_) => false,
        });
    }

    /// Stop every worker and wait for them, killing stragglers after `within`.
    pub(crate) fn shutdown(&mut self, within: Duration) {
        self.take_back();
        self.overflow.clear();
        for w in self.workers.drain(..) {
            drop(w.stdin);
            self.dying.push(w.child);
        }
        let deadline = Instant::now() + within;
        while !self.dying.is_empty() && Instant::now() < deadline {
            self.reap();
            std::thread::sleep(Duration::from_millis(5));
        }
        self.kill_all();
        for mut c in self.dying.drain(..) {
            let _ = c.wait();
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.kill_all();
        for w in &mut self.workers {
            let _ = w.child.wait();
        }
        for c in &mut self.dying {
            let _ = c.wait();
        }
    }
}

fn lost(msgid: &str, ct: ContentType, why: &str) -> Completion {
    Completion {
        msgid: msgid.to_string(),
        outcome: Outcome::Crashed,
        content_type: ct,
        body: JobResult::failed(Outcome::Crashed, why).encode_body(ct),
    }
}

fn kill_group(pid: u32) {
    // Workers lead their own process group; programs they started are in it.
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
}

fn set_nonblocking(fd: RawFd) {
    // SAFETY: fcntl on a descriptor we own.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
    }
}
