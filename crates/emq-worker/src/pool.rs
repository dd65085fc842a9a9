//! The worker processes: spawn (re-executing this binary in worker mode),
//! hand a job to an idle one, read results, notice deaths the moment a pipe
//! closes, kill on timeout, recycle after N jobs or above a memory limit.
//!
//! Each worker's stdout is a non-blocking pipe polled by the transport; EOF on
//! it means the worker is gone, whatever killed it.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use emq_proto::{ContentType, JobResult, Outcome};
use log::{debug, info, warn};

use crate::ipc::{self, RecordReader};
use crate::worker::{PARENT_ENV, WORKER_ENV};

/// A job finished, failed, or lost with its worker.
#[derive(Debug)]
pub struct Completion {
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
    job: Option<(String, ContentType)>,
    jobs_done: u64,
    started: Instant,
}

impl Worker {
    fn pid(&self) -> u32 {
        self.child.id()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot start a worker process ({exe}): {source}")]
pub struct SpawnError {
    exe: String,
    source: std::io::Error,
}

pub struct Pool {
    exe: PathBuf,
    workers: Vec<Worker>,
    /// Retired or killed workers not yet reaped.
    dying: Vec<Child>,
    target: usize,
    pub max_jobs: u64,
    pub max_rss_bytes: u64,
    /// Workers that died young without finishing a job, in a row.
    early_deaths: u32,
}

/// After this many workers in a row die before finishing a job, give up.
const MAX_EARLY_DEATHS: u32 = 50;

impl Pool {
    pub fn new(max_jobs: u64, max_rss_bytes: u64) -> Result<Pool, SpawnError> {
        let exe = std::env::current_exe().map_err(|source| SpawnError {
            exe: "current executable".into(),
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
        })
    }

    pub fn is_failing(&self) -> bool {
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
            job: None,
            jobs_done: 0,
            started: Instant::now(),
        })
    }

    /// Keep `n` workers: start missing ones, retire idle extras.
    pub fn resize(&mut self, n: usize) -> Result<(), SpawnError> {
        self.target = n;
        self.fill()?;
        while self.workers.len() > self.target {
            match self.workers.iter().position(|w| w.job.is_none()) {
                Some(i) => self.retire(i),
                None => break, // Busy ones retire when their job ends.
            }
        }
        Ok(())
    }

    fn fill(&mut self) -> Result<(), SpawnError> {
        while self.workers.len() < self.target {
            let w = self.spawn()?;
            self.workers.push(w);
        }
        Ok(())
    }

    /// Give a job to an idle worker. If none is idle or the write fails, the
    /// job comes back as a completion (a crash) for the core to decide on.
    pub fn start(&mut self, msgid: &str, ct: ContentType, body: &[u8]) -> Option<Completion> {
        let Some(i) = self.workers.iter().position(|w| w.job.is_none() && w.stdin.is_some()) else {
            warn!("no idle worker for job {msgid}");
            return Some(lost(msgid, ct, "no idle worker"));
        };
        let w = &mut self.workers[i];
        let rec = ipc::encode_request(msgid, ct, body);
        let ok = w.stdin.as_mut().is_some_and(|s| s.write_all(&rec).is_ok());
        if !ok {
            warn!("worker {} did not take job {msgid}: its pipe is closed", w.pid());
            w.stdin = None;
            return Some(lost(msgid, ct, "worker died before taking the job"));
        }
        debug!("job {msgid} on worker {}", w.pid());
        w.job = Some((msgid.to_string(), ct));
        None
    }

    /// The pipes the transport polls, with their worker pids.
    pub fn fds(&self) -> Vec<(u32, RawFd)> {
        self.workers.iter().map(|w| (w.pid(), w.stdout.as_raw_fd())).collect()
    }

    /// Read what worker `pid` wrote; a closed pipe means it died.
    pub fn on_readable(&mut self, pid: u32, out: &mut Vec<Completion>) -> Result<(), SpawnError> {
        let Some(i) = self.workers.iter().position(|w| w.pid() == pid) else {
            return Ok(());
        };
        let mut buf = [0u8; 64 * 1024];
        let mut closed = false;
        loop {
            match self.workers[i].stdout.read(&mut buf) {
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
        let mut finished = false;
        loop {
            match self.workers[i].reader.next_record() {
                Ok(Some(rec)) => match ipc::decode_response(&rec) {
                    Some((msgid, outcome, content_type, body)) => {
                        let w = &mut self.workers[i];
                        if w.job.as_ref().is_some_and(|(id, _)| *id == msgid) {
                            w.job = None;
                            w.jobs_done += 1;
                            finished = true;
                            self.early_deaths = 0;
                            out.push(Completion {
                                msgid,
                                outcome,
                                content_type,
                                body,
                            });
                        }
                    }
                    None => closed = true,
                },
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
        if finished && self.should_recycle(i) {
            self.retire(i);
            return self.fill();
        }
        if self.workers.len() > self.target && self.workers[i].job.is_none() {
            self.retire(i);
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
            if let Some(rss) = resident_bytes(w.pid()) {
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

    fn on_death(&mut self, i: usize, out: &mut Vec<Completion>) {
        let mut w = self.workers.swap_remove(i);
        let status = w.child.try_wait().ok().flatten();
        let how = status.map_or_else(|| "pipe closed".to_string(), |s| s.to_string());
        match w.job.take() {
            Some((msgid, ct)) => {
                warn!("worker {} died ({how}) running job {msgid}: replacing it", w.pid());
                out.push(lost(&msgid, ct, &format!("worker process died ({how})")));
            }
            None => warn!("worker {} died ({how}) while idle: replacing it", w.pid()),
        }
        if w.jobs_done == 0 && w.started.elapsed() < Duration::from_secs(5) {
            self.early_deaths += 1;
        }
        if status.is_none() {
            self.dying.push(w.child);
        }
    }

    /// Kill the worker running `msgid` (and its process group).
    pub fn kill_job(&mut self, msgid: &str) {
        if let Some(w) = self
            .workers
            .iter()
            .find(|w| w.job.as_ref().is_some_and(|(id, _)| id == msgid))
        {
            kill_group(w.pid());
        }
    }

    pub fn kill_all(&mut self) {
        for w in &self.workers {
            kill_group(w.pid());
        }
        for c in &self.dying {
            kill_group(c.id());
        }
    }

    /// Reap exited workers (on SIGCHLD).
    pub fn reap(&mut self) {
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
    pub fn shutdown(&mut self, within: Duration) {
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

/// Resident set size of `pid`, from /proc.
fn resident_bytes(pid: u32) -> Option<u64> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as u64;
    Some(pages * page)
}
