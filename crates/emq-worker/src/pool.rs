//! The worker processes: spawn (re-executing this binary in worker mode),
//! hand a job to an idle one, read results, notice deaths the moment a pipe
//! closes, kill on timeout, recycle after N jobs or above a memory limit.
//!
//! Each worker's stdout is a non-blocking pipe polled by the transport; EOF on
//! it means the worker is gone, whatever killed it.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use emq_proto::{ContentType, JobResult, Outcome};
use log::{debug, info, warn};

use crate::ipc::{self, RecordReader};
use crate::worker::{PARENT_ENV, WORKER_ENV};

/// What the pool reports back to the core.
#[derive(Debug)]
pub(crate) enum Event {
    /// A job finished, failed, or was lost with its worker.
    Done(Completion),
    /// A job reached the head of its worker's queue: it runs from now.
    Started { msgid: String },
    /// A job queued behind another on a worker that died: never attempted.
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
    stdin: Option<ChildStdin>,
    stdout: ChildStdout,
    reader: RecordReader,
    /// Jobs given to this worker, in order; the first one is running.
    /// `(msgid, content type, record length)`.
    queue: VecDeque<(String, ContentType, usize)>,
    /// Bytes of the records queued behind the running job, still in the pipe
    /// (kept under the pipe's capacity so a write never blocks).
    queued_bytes: usize,
    /// Records not yet written: one write per worker per loop turn.
    outbuf: Vec<u8>,
    jobs_done: u64,
    /// Takes no more jobs; retired once its queue is empty.
    retiring: bool,
    started: Instant,
}

impl Worker {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn idle(&self) -> bool {
        self.queue.is_empty()
    }
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
    /// Most jobs given to one worker at once (1 = only when it is idle).
    pub depth: usize,
    pub max_jobs: u64,
    pub max_rss_bytes: u64,
    /// Workers that died young without finishing a job, in a row.
    early_deaths: u32,
    /// Where worker pipes are read into; kept, because a fresh 64 KiB
    /// buffer per read (zeroed) was half of the jobmanager's instructions.
    read_buf: Box<[u8]>,
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
/// Bytes that may wait in a busy worker's pipe (Linux pipes hold 64 KiB).
const MAX_QUEUED_BYTES: usize = 48 * 1024;

impl Pool {
    pub(crate) fn new(depth: usize, max_jobs: u64, max_rss_bytes: u64) -> Result<Pool, SpawnError> {
        let exe = std::env::current_exe().map_err(|source| SpawnError {
            exe: "current executable".into(),
            source,
        })?;
        Ok(Pool {
            exe,
            workers: Vec::new(),
            dying: Vec::new(),
            target: 0,
            depth: depth.max(1),
            max_jobs,
            max_rss_bytes,
            early_deaths: 0,
            read_buf: vec![0; 64 * 1024].into_boxed_slice(),
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
            queue: VecDeque::new(),
            queued_bytes: 0,
            outbuf: Vec::new(),
            jobs_done: 0,
            retiring: false,
            started: Instant::now(),
        })
    }

    /// Keep `n` workers: start missing ones, retire idle extras.
    pub(crate) fn resize(&mut self, n: usize) -> Result<(), SpawnError> {
        self.target = n;
        self.fill()?;
        while self.workers.len() > self.target {
            match self.workers.iter().position(Worker::idle) {
                Some(i) => self.retire(i),
                None => break, // Busy ones retire when their queue empties.
            }
        }
        Ok(())
    }

    fn fill(&mut self) -> Result<(), SpawnError> {
        while self.workers.len() < self.target {
            let w = self.spawn()?;
            self.counts.spawned += 1;
            self.workers.push(w);
        }
        Ok(())
    }

    fn accepts(&self, w: &Worker, rec_len: usize) -> bool {
        if w.stdin.is_none() || w.retiring {
            return false;
        }
        if self.max_jobs > 0 && w.jobs_done + w.queue.len() as u64 >= self.max_jobs {
            return false;
        }
        w.idle() || (w.queue.len() < self.depth && w.queued_bytes + rec_len <= MAX_QUEUED_BYTES)
    }

    /// Give a job to an idle worker, or queue it behind the shortest queue
    /// when pipelining is on. A job no worker can take comes back as a
    /// completion (a crash) for the core to decide on.
    pub(crate) fn start(&mut self, msgid: &str, ct: ContentType, body: &[u8], out: &mut Vec<Event>) {
        let rec = ipc::encode_request(msgid, ct, body);
        let choice = self
            .workers
            .iter()
            .enumerate()
            .filter(|(_, w)| self.accepts(w, rec.len()))
            .min_by_key(|(_, w)| w.queue.len())
            .map(|(i, _)| i);
        let Some(i) = choice else {
            warn!("no worker can take job {msgid}");
            return out.push(Event::Done(lost(msgid, ct, "no worker available")));
        };
        let w = &mut self.workers[i];
        if w.idle() {
            out.push(Event::Started {
                msgid: msgid.to_string(),
            });
        } else {
            w.queued_bytes += rec.len();
        }
        debug!("job {msgid} on worker {} (queue {})", w.pid(), w.queue.len());
        w.outbuf.extend_from_slice(&rec);
        w.queue.push_back((msgid.to_string(), ct, rec.len()));
    }

    /// Write what `start` queued, one write per worker.
    pub(crate) fn flush_writes(&mut self, out: &mut Vec<Event>) -> Result<(), SpawnError> {
        let mut dead = Vec::new();
        for (i, w) in self.workers.iter_mut().enumerate() {
            if w.outbuf.is_empty() {
                continue;
            }
            let ok = w.stdin.as_mut().is_some_and(|s| s.write_all(&w.outbuf).is_ok());
            w.outbuf.clear();
            if !ok {
                warn!("worker {} did not take its jobs: its pipe is closed", w.pid());
                w.stdin = None;
                dead.push(i);
            }
        }
        for i in dead.into_iter().rev() {
            self.on_death(i, out);
        }
        self.fill()
    }

    /// The pipes the transport polls, with their worker pids.
    pub(crate) fn fds(&self) -> Vec<(u32, RawFd)> {
        self.workers.iter().map(|w| (w.pid(), w.stdout.as_raw_fd())).collect()
    }

    /// Read what worker `pid` wrote; a closed pipe means it died.
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
            match self.workers[i].reader.next_record() {
                Ok(Some(rec)) => {
                    let Some((msgid, outcome, content_type, body)) = ipc::decode_response(&rec) else {
                        closed = true;
                        break;
                    };
                    let w = &mut self.workers[i];
                    if w.queue.front().is_none_or(|(id, _, _)| *id != msgid) {
                        warn!("worker {} answered {msgid} out of turn: stopping it", w.pid());
                        kill_group(w.pid());
                        closed = true;
                        break;
                    }
                    w.queue.pop_front();
                    w.jobs_done += 1;
                    self.early_deaths = 0;
                    out.push(Event::Done(Completion {
                        msgid,
                        outcome,
                        content_type,
                        body,
                    }));
                    if let Some((next, _, len)) = w.queue.front() {
                        w.queued_bytes = w.queued_bytes.saturating_sub(*len);
                        out.push(Event::Started { msgid: next.clone() });
                    }
                }
                Ok(None) => break,
                Err(()) => {
                    closed = true;
                    break;
                }
            }
        }
        if closed {
            self.on_death(i, out);
            return self.fill();
        }
        if !self.workers[i].retiring && self.should_recycle(i) {
            self.workers[i].retiring = true;
            self.counts.recycled += 1;
        }
        let w = &self.workers[i];
        if w.idle() && (w.retiring || self.workers.len() > self.target) {
            self.retire(i);
            return self.fill();
        }
        Ok(())
    }

    fn should_recycle(&self, i: usize) -> bool {
        let w = &self.workers[i];
        if self.max_jobs > 0 && w.jobs_done >= self.max_jobs {
            info!("worker {} recycled after {} jobs", w.pid(), w.jobs_done);
            return true;
        }
        if self.max_rss_bytes > 0 {
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

    /// Close the worker's input: it exits after its current read.
    fn retire(&mut self, i: usize) {
        let w = self.workers.swap_remove(i);
        debug!("worker {} retired", w.pid());
        self.dying.push(w.child);
    }

    fn on_death(&mut self, i: usize, out: &mut Vec<Event>) {
        self.counts.died += 1;
        let mut w = self.workers.swap_remove(i);
        let status = w.child.try_wait().ok().flatten();
        let how = status.map_or_else(|| "pipe closed".to_string(), |s| s.to_string());
        match w.queue.pop_front() {
            Some((msgid, ct, _)) => {
                warn!("worker {} died ({how}) running job {msgid}: replacing it", w.pid());
                out.push(Event::Done(lost(&msgid, ct, &format!("worker process died ({how})"))));
            }
            None => warn!("worker {} died ({how}) while idle: replacing it", w.pid()),
        }
        for (msgid, _, _) in w.queue.drain(..) {
            out.push(Event::Returned { msgid });
        }
        if w.jobs_done == 0 && w.started.elapsed() < Duration::from_secs(5) {
            self.early_deaths += 1;
        }
        if status.is_none() {
            self.dying.push(w.child);
        }
    }

    /// Kill the worker running `msgid` (and its process group).
    pub(crate) fn kill_job(&mut self, msgid: &str) {
        if let Some(w) = self
            .workers
            .iter()
            .find(|w| w.queue.front().is_some_and(|(id, _, _)| id == msgid))
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
