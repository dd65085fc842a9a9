//! The worker side: this binary re-executed with `EMQ_WORKER_MODE=1`. It
//! takes jobs from the queue all workers share (`queue.rs`), runs handlers,
//! and reports on its original stdout (that it took a job, then its result),
//! one job at a time, until the jobmanager closes its stdin, or after
//! `--max-jobs` jobs.
//!
//! Before running any handler it moves the protocol pipes out of the way
//! (handler prints go to stderr, stdin reads /dev/null), joins a process group
//! of its own (so a timeout kill takes the programs it started with it) and
//! asks the kernel to kill it if the jobmanager dies.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use emq_proto::{JobCall, JobResult, Outcome};

use crate::ipc;
use crate::queue::{self, QUEUE_FD_ENV};
use crate::Registry;

pub(crate) const WORKER_ENV: &str = "EMQ_WORKER_MODE";
pub(crate) const PARENT_ENV: &str = "EMQ_WORKER_PARENT";
/// Jobs after which a worker exits by itself (absent or 0: no limit).
pub(crate) const MAX_JOBS_ENV: &str = "EMQ_WORKER_MAX_JOBS";
/// Fault injection for the tests: `1` makes a worker die right after taking
/// a job, before it can say so (the moment a `kill -9` can hit but a test
/// cannot aim at).
const DIE_AFTER_TAKE_ENV: &str = "EMQ_TEST_WORKER_DIES_AFTER_TAKING";

/// How long a worker goes from job to job without looking at its stdin
/// (where the jobmanager tells it to leave).
const LOOK_EVERY: Duration = Duration::from_millis(1);

pub(crate) fn is_worker_process() -> bool {
    std::env::var_os(WORKER_ENV).is_some_and(|v| v == "1")
}

fn die(why: &str) -> ! {
    eprintln!("emq worker {}: {why}", std::process::id());
    std::process::exit(70)
}

/// What waiting for the next job found.
enum Next {
    /// A message is (probably: another worker may take it first) in the queue.
    Job,
    /// Nothing yet, and the wait was not to block.
    Empty,
    /// The jobmanager closed our stdin: stop.
    Stop,
}

/// What a worker waits on: its stdin (its end) and the shared queue, in an
/// epoll set where the queue is `EPOLLEXCLUSIVE`, so that a job wakes one
/// idle worker, not all of them (with poll(), every idle worker woke for
/// every job, and all but one found nothing: on a small machine that
/// crowded the one that had work).
struct Waiter {
    epoll: OwnedFd,
}

const STDIN_TOKEN: u64 = 0;
const QUEUE_TOKEN: u64 = 1;

impl Waiter {
    fn new(stdin: RawFd, queue: RawFd) -> std::io::Result<Waiter> {
        // SAFETY: epoll_create1 returns a new descriptor we own.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` is fresh and ours.
        let epoll = unsafe { OwnedFd::from_raw_fd(fd) };
        let add = |target: RawFd, events: u32, token: u64| {
            let mut ev = libc::epoll_event { events, u64: token };
            // SAFETY: epoll_ctl with a valid event on descriptors we hold.
            if unsafe { libc::epoll_ctl(epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, target, &mut ev) } < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        };
        add(stdin, libc::EPOLLIN as u32, STDIN_TOKEN)?;
        add(queue, (libc::EPOLLIN | libc::EPOLLEXCLUSIVE) as u32, QUEUE_TOKEN)?;
        Ok(Waiter { epoll })
    }

    /// Wait for the queue or our stdin; `block: false` only looks.
    fn next(&self, block: bool) -> Next {
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; 2];
        loop {
            // SAFETY: epoll_wait into a valid array of two events.
            let n = unsafe {
                libc::epoll_wait(
                    self.epoll.as_raw_fd(),
                    events.as_mut_ptr(),
                    2,
                    if block { -1 } else { 0 },
                )
            };
            if n < 0 {
                if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                die("cannot wait for jobs")
            }
            let mut job = false;
            for ev in &events[..n as usize] {
                let (token, flags) = (ev.u64, ev.events);
                // Anything on stdin between jobs is its end: the jobmanager
                // writes there only a ticket's body, and only after we took
                // the ticket.
                if token == STDIN_TOKEN {
                    return Next::Stop;
                }
                if flags & libc::EPOLLIN as u32 == 0 {
                    return Next::Stop;
                }
                job = true;
            }
            return if job { Next::Job } else { Next::Empty };
        }
    }
}

/// Never returns: exits 0 when the jobmanager closes the pipe.
pub(crate) fn run(registry: Registry) -> ! {
    // SAFETY: plain syscalls on our own process before any thread exists.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        libc::setpgid(0, 0);
    }
    let parent: Option<i32> = std::env::var(PARENT_ENV).ok().and_then(|p| p.parse().ok());
    if parent.is_some_and(|p| p != nix::unistd::getppid().as_raw()) {
        die("jobmanager already gone");
    }
    let die_after_take = std::env::var_os(DIE_AFTER_TAKE_ENV).is_some_and(|v| v == "1");
    let max_jobs: u64 = std::env::var(MAX_JOBS_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let (input, mut output, queue) = match take_protocol_fds() {
        Ok(p) => p,
        Err(e) => die(&format!("cannot set up pipes: {e}")),
    };
    let mut input = input;
    let mut msg = vec![0u8; ipc::MAX_INLINE];
    // The last result, held until we know whether a next job is there: its
    // start then goes in the same write.
    let mut out: Vec<u8> = Vec::new();
    let mut done: u64 = 0;
    let waiter = match Waiter::new(input.as_raw_fd(), queue.as_raw_fd()) {
        Ok(w) => w,
        Err(e) => die(&format!("cannot wait on the job queue: {e}")),
    };
    // When we last looked at our stdin (and the queue) through the waiter.
    let mut looked = Instant::now();
    loop {
        // Straight from one job to the next while the last look at stdin is
        // fresh: one syscall fewer a job under load, and a worker asked to
        // leave takes jobs for at most `LOOK_EVERY` more.
        let next = if !out.is_empty() && looked.elapsed() < LOOK_EVERY {
            Next::Job
        } else {
            let next = waiter.next(out.is_empty());
            looked = Instant::now();
            next
        };
        let taken = match next {
            Next::Stop => {
                let _ = output.write_all(&out);
                std::process::exit(0)
            }
            Next::Empty => {
                // Nothing queued: the result goes now, then we block.
                send_held(&mut output, &mut out);
                continue;
            }
            Next::Job => match queue::take(queue.as_raw_fd(), &mut msg) {
                Ok(Some(n)) => match ipc::decode_job(&msg[..n]) {
                    Some(t) => t,
                    None => die("corrupt job message from jobmanager"),
                },
                // Another worker was quicker, or the queue is empty: the
                // result goes now, then we block.
                Ok(None) => {
                    send_held(&mut output, &mut out);
                    continue;
                }
                Err(e) => die(&format!("cannot take a job: {e}")),
            },
        };
        if die_after_take {
            // SAFETY: signalling our own process.
            unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
        }
        // One write per job: the previous result and this start together.
        ipc::encode_started(&taken.msgid, &mut out);
        send_held(&mut output, &mut out);
        let body = match taken.body {
            Some(b) => b,
            None => read_body(&mut input),
        };
        let ct = taken.content_type;
        let (outcome, result) = run_one(&registry, &taken.msgid, ct, &body);
        out = ipc::encode_response(&taken.msgid, outcome, ct, &result.encode_body(ct));
        done += 1;
        if max_jobs > 0 && done >= max_jobs {
            let _ = output.write_all(&out);
            std::process::exit(0);
        }
    }
}

/// Write what `out` holds (a result, a start) to the jobmanager; its pipe
/// gone means it is gone, and so are we.
fn send_held(output: &mut File, out: &mut Vec<u8>) {
    if !out.is_empty() && output.write_all(out).is_err() {
        std::process::exit(0);
    }
    out.clear();
}

/// A ticket's body, which the jobmanager writes on our stdin once it has
/// read that we took the ticket.
fn read_body(input: &mut impl Read) -> Vec<u8> {
    let mut len = [0u8; 4];
    if input.read_exact(&mut len).is_err() {
        std::process::exit(0);
    }
    let n = u32::from_le_bytes(len) as usize;
    if n > ipc::MAX_RECORD {
        die("oversized record from jobmanager");
    }
    let mut body = vec![0u8; n];
    if input.read_exact(&mut body).is_err() {
        std::process::exit(0);
    }
    body
}

fn run_one(registry: &Registry, id: &str, ct: emq_proto::ContentType, body: &[u8]) -> (Outcome, JobResult) {
    let mut call = match JobCall::decode(body, ct) {
        Ok(c) => c,
        Err(e) => {
            return (
                Outcome::BadRequest,
                JobResult::failed(Outcome::BadRequest, e.to_string()),
            )
        }
    };
    call.id = id.to_string();
    let Some(handler) = registry.get(&call.handler) else {
        let msg = format!("no handler named {:?} on this jobmanager", call.handler);
        // The name travels in the value, so that whoever reads the result
        // later (`emq-cli status ID`) can name the handler too.
        let value = serde_json::json!({ "handler": call.handler });
        let result = JobResult {
            outcome: Outcome::UnknownHandler,
            value,
            error: Some(msg),
        };
        return (Outcome::UnknownHandler, result);
    };
    match catch_unwind(AssertUnwindSafe(|| handler(&call))) {
        Ok(Ok(value)) => (Outcome::Ok, JobResult::ok(value)),
        Ok(Err(e)) => (
            Outcome::Failed,
            JobResult {
                outcome: Outcome::Failed,
                value: e.value,
                error: Some(e.message),
            },
        ),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "handler panicked".into());
            (
                Outcome::Failed,
                JobResult::failed(Outcome::Failed, format!("handler panicked: {msg}")),
            )
        }
    }
}

/// Keep the pipes and the queue from the jobmanager on fresh close-on-exec
/// descriptors (programs a handler starts inherit none of them), then point
/// fd 0 at /dev/null and fd 1 at stderr so handlers cannot corrupt the
/// protocol.
fn take_protocol_fds() -> std::io::Result<(File, File, OwnedFd)> {
    let dup = |fd: i32| -> std::io::Result<OwnedFd> {
        // SAFETY: F_DUPFD_CLOEXEC returns a new descriptor we own.
        let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
        if new < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `new` is a fresh, valid descriptor.
        Ok(unsafe { OwnedFd::from_raw_fd(new) })
    };
    let input = dup(0)?;
    let output = dup(1)?;
    let inherited: i32 = std::env::var(QUEUE_FD_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("{QUEUE_FD_ENV} is not set")))?;
    let queue = dup(inherited)?;
    // SAFETY: closing the inherited descriptor, which nothing else uses.
    unsafe { libc::close(inherited) };
    let devnull = File::open("/dev/null")?;
    // SAFETY: dup2 onto the standard descriptors of our own process.
    unsafe {
        if libc::dup2(devnull.as_raw_fd(), 0) < 0 || libc::dup2(2, 1) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok((File::from(input), File::from(output), queue))
}
