//! The worker side: this binary re-executed with `EMQ_WORKER_MODE=1`. It reads
//! job records from the jobmanager on the original stdin, runs handlers, and
//! writes results on the original stdout, one job at a time, until the pipe
//! closes.
//!
//! Before running any handler it moves the protocol pipes out of the way
//! (handler prints go to stderr, stdin reads /dev/null), joins a process group
//! of its own (so a timeout kill takes the programs it started with it) and
//! asks the kernel to kill it if the jobmanager dies.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::panic::{catch_unwind, AssertUnwindSafe};

use emq_proto::{JobCall, JobResult, Outcome};

use crate::ipc;
use crate::Registry;

pub(crate) const WORKER_ENV: &str = "EMQ_WORKER_MODE";
pub(crate) const PARENT_ENV: &str = "EMQ_WORKER_PARENT";

pub(crate) fn is_worker_process() -> bool {
    std::env::var_os(WORKER_ENV).is_some_and(|v| v == "1")
}

fn die(why: &str) -> ! {
    eprintln!("emq worker {}: {why}", std::process::id());
    std::process::exit(70)
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
    let (input, mut output) = match take_protocol_pipes() {
        Ok(p) => p,
        Err(e) => die(&format!("cannot set up pipes: {e}")),
    };
    // One read usually brings a whole record (length and body together).
    let mut input = std::io::BufReader::with_capacity(64 * 1024, input);
    let mut len = [0u8; 4];
    loop {
        match input.read_exact(&mut len) {
            Ok(()) => {}
            Err(_) => std::process::exit(0),
        }
        let n = u32::from_le_bytes(len) as usize;
        if n > ipc::MAX_RECORD {
            die("oversized record from jobmanager");
        }
        let mut rec = vec![0u8; n];
        if input.read_exact(&mut rec).is_err() {
            std::process::exit(0);
        }
        let Some((msgid, ct, body)) = ipc::decode_request(&rec) else {
            die("corrupt record from jobmanager")
        };
        let (outcome, result) = run_one(&registry, &msgid, ct, &body);
        let response = ipc::encode_response(&msgid, outcome, ct, &result.encode_body(ct));
        // One write per job: holding a result back while the next job runs
        // could delay it by that job's whole duration.
        if output.write_all(&response).is_err() {
            std::process::exit(0);
        }
    }
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

/// Keep the pipes from the jobmanager on fresh descriptors, then point fd 0
/// at /dev/null and fd 1 at stderr so handlers cannot corrupt the protocol.
fn take_protocol_pipes() -> std::io::Result<(File, File)> {
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
    let devnull = File::open("/dev/null")?;
    // SAFETY: dup2 onto the standard descriptors of our own process.
    unsafe {
        if libc::dup2(devnull.as_raw_fd(), 0) < 0 || libc::dup2(2, 1) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok((File::from(input), File::from(output)))
}
