//! Built-in handlers of the stock jobmanager: `emq.exec` runs a program;
//! `emq.echo`, `emq.noop`, `emq.sleep`, `emq.fail` and `emq.crash` exist for
//! tests, demos and benchmarks.

use std::io::Write;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::time::Duration;

use emq_proto::{JobCall, Value};
use serde_json::json;

use crate::{JobError, Registry};

pub(crate) fn register(r: &mut Registry) {
    r.register("emq.exec", exec);
    r.register("emq.echo", echo);
    r.register("emq.noop", |_| Ok(Value::Null));
    r.register("emq.sleep", sleep);
    r.register("emq.fail", |call| {
        let msg = call.args.first().and_then(Value::as_str).unwrap_or("failed on purpose");
        Err(JobError::new(msg))
    });
    r.register("emq.crash", crash);
}

/// Dies the way a segfaulting or OOM-killed handler would: no unwinding, no
/// reply. With kwarg `once_marker: PATH` it crashes only if PATH does not exist
/// yet (creating it first), so a retried job succeeds on its second attempt.
fn crash(call: &JobCall) -> Result<Value, JobError> {
    if let Some(marker) = call.kwargs.get("once_marker").and_then(Value::as_str) {
        if std::fs::metadata(marker).is_ok() {
            return Ok(json!("survived"));
        }
        std::fs::write(marker, b"crashed once\n").map_err(|e| JobError::new(format!("cannot write {marker}: {e}")))?;
    }
    let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    unreachable!("SIGKILL is not catchable")
}

/// Returns what it was given: its argument when it has one, the list of its
/// arguments when it has several (or none), and `{"args": [...], "kwargs":
/// {...}}` when it has keyword arguments.
fn echo(call: &JobCall) -> Result<Value, JobError> {
    if !call.kwargs.is_empty() {
        return Ok(json!({"args": call.args, "kwargs": call.kwargs}));
    }
    match call.args.as_slice() {
        [one] => Ok(one.clone()),
        several => Ok(Value::Array(several.to_vec())),
    }
}

/// Sleeps `args[0]` seconds. With kwarg `once_marker: PATH` it sleeps only if
/// PATH does not exist yet (creating it first), so that a retried job whose
/// first attempt was killed finishes at once.
fn sleep(call: &JobCall) -> Result<Value, JobError> {
    let secs = call.args.first().and_then(Value::as_f64).unwrap_or(1.0);
    if let Some(marker) = call.kwargs.get("once_marker").and_then(Value::as_str) {
        if std::fs::metadata(marker).is_ok() {
            return Ok(json!("woke at once"));
        }
        std::fs::write(marker, b"slept once\n").map_err(|e| JobError::new(format!("cannot write {marker}: {e}")))?;
    }
    let d = Duration::try_from_secs_f64(secs).map_err(|e| JobError::new(format!("bad duration: {e}")))?;
    std::thread::sleep(d);
    Ok(json!(secs))
}

fn strings(v: &Value, what: &str) -> Result<Vec<String>, JobError> {
    let arr = v
        .as_array()
        .ok_or_else(|| JobError::new(format!("{what} must be a list of strings")))?;
    arr.iter()
        .map(|x| {
            x.as_str()
                .map(str::to_string)
                .ok_or_else(|| JobError::new(format!("{what} must be a list of strings")))
        })
        .collect()
}

/// Run a program: `argv` (kwarg, or the positional args), optional `env`
/// (object), `cwd` and `stdin` (string); the program finds the job's id in
/// `EMQ_JOB_ID`, and a graph's job its parents' results in `EMQ_PARENTS`
/// and a batch callback its summary in `EMQ_BATCH` (JSON). Returns exit code, stdout and stderr; a non-zero exit (or
/// death by signal) is a failure carrying the same value.
fn exec(call: &JobCall) -> Result<Value, JobError> {
    let argv = match call.kwargs.get("argv") {
        Some(v) => strings(v, "argv")?,
        None => strings(&Value::Array(call.args.clone()), "args")?,
    };
    let Some((program, rest)) = argv.split_first() else {
        return Err(JobError::new("emq.exec needs a program to run"));
    };
    let mut cmd = Command::new(program);
    cmd.env("EMQ_JOB_ID", &call.id);
    // A graph's job: what its parents left, as JSON (README "Workflows").
    for (kwarg, var) in [("parents", "EMQ_PARENTS"), ("batch", "EMQ_BATCH")] {
        if let Some(v) = call.kwargs.get(kwarg) {
            cmd.env(var, v.to_string());
        }
    }
    cmd.args(rest)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(env) = call.kwargs.get("env") {
        let env = env.as_object().ok_or_else(|| JobError::new("env must be an object"))?;
        for (k, v) in env {
            cmd.env(k, v.as_str().map_or_else(|| v.to_string(), str::to_string));
        }
    }
    if let Some(cwd) = call.kwargs.get("cwd").and_then(Value::as_str) {
        cmd.current_dir(cwd);
    }
    // SAFETY: prctl is async-signal-safe; it makes the program die with this
    // worker, so a killed worker (timeout) leaves no orphan behind.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| JobError::new(format!("cannot run {program}: {e}")))?;
    let input = call
        .kwargs
        .get("stdin")
        .and_then(Value::as_str)
        .unwrap_or("")
        .as_bytes()
        .to_vec();
    let stdin = child.stdin.take();
    // Feed stdin from a thread so a program that writes a lot before reading
    // cannot deadlock against us.
    let feeder = std::thread::spawn(move || {
        if let Some(mut s) = stdin {
            let _ = s.write_all(&input);
        }
    });
    let output = child
        .wait_with_output()
        .map_err(|e| JobError::new(format!("waiting for {program}: {e}")))?;
    let _ = feeder.join();
    let value = json!({
        "exit_code": output.status.code(),
        "signal": output.status.signal(),
        "stdout": String::from_utf8_lossy(&output.stdout),
        "stderr": String::from_utf8_lossy(&output.stderr),
    });
    if output.status.success() {
        Ok(value)
    } else {
        let why = match (output.status.code(), output.status.signal()) {
            (Some(c), _) => format!("{program} exited with code {c}"),
            (None, Some(s)) => format!("{program} was killed by signal {s}"),
            _ => format!("{program} failed"),
        };
        Err(JobError::with_value(why, value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(handler: &str, args: Value, kwargs: Value) -> JobCall {
        JobCall {
            handler: handler.into(),
            args: args.as_array().cloned().unwrap_or_default(),
            kwargs: kwargs.as_object().cloned().unwrap_or_default(),
            ..JobCall::default()
        }
    }

    #[test]
    fn exec_captures_output_and_exit_code() {
        let v = exec(&call(
            "emq.exec",
            json!(["sh", "-c", "cat; echo err >&2"]),
            json!({"stdin": "hi"}),
        ))
        .unwrap();
        assert_eq!(v["stdout"], "hi");
        assert_eq!(v["stderr"], "err\n");
        assert_eq!(v["exit_code"], 0);
        let e = exec(&call("emq.exec", json!([]), json!({"argv": ["sh", "-c", "exit 3"]}))).unwrap_err();
        assert_eq!(e.value["exit_code"], 3);
        assert!(e.message.contains("code 3"));
        let v = exec(&call(
            "emq.exec",
            json!(["sh", "-c", "echo $X; pwd"]),
            json!({"env": {"X": "y"}, "cwd": "/"}),
        ))
        .unwrap();
        assert_eq!(v["stdout"], "y\n/\n");
        let mut with_id = call("emq.exec", json!(["sh", "-c", "echo $EMQ_JOB_ID"]), json!({}));
        with_id.id = "job-7".into();
        assert_eq!(
            exec(&with_id).unwrap()["stdout"],
            "job-7\n",
            "the program knows its job"
        );
        let callback = call(
            "emq.exec",
            json!(["sh", "-c", "echo $EMQ_BATCH"]),
            json!({"batch": {"total": 2, "failed_ids": ["g/x"]}}),
        );
        assert_eq!(
            exec(&callback).unwrap()["stdout"],
            "{\"failed_ids\":[\"g/x\"],\"total\":2}\n",
            "a batch callback reads its summary"
        );
        assert!(exec(&call("emq.exec", json!(["/no/such/program"]), json!({}))).is_err());
        assert!(exec(&call("emq.exec", json!([]), json!({}))).is_err());
    }

    #[test]
    fn echo_returns_its_argument() {
        assert_eq!(echo(&call("emq.echo", json!(["x"]), json!({}))).unwrap(), json!("x"));
        assert_eq!(
            echo(&call("emq.echo", json!([1, 2]), json!({"k": 3}))).unwrap(),
            json!({"args": [1, 2], "kwargs": {"k": 3}})
        );
    }
}
