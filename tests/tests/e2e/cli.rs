//! emq-cli end to end: real router, real jobmanager, the CLI as a user runs it.

use std::collections::HashSet;
use std::time::Duration;

use emq_tests::{emq_cli, run_with_deadline, wait_until, JobManagerProc, RouterProc};

const T: Duration = Duration::from_secs(30);

fn system() -> (RouterProc, JobManagerProc) {
    let r = RouterProc::start(&["--heartbeat-ms", "100", "--liveness-ms", "1000"]);
    let jm = JobManagerProc::start(&r, &["-J", "2"]);
    (r, jm)
}

#[test]
fn send_wait_runs_a_program_and_prints_its_output() {
    let (r, _jm) = system();
    let out = emq_cli(&r, &["send", "--wait", "--", "echo", "hi"], None, T);
    assert_eq!((out.code, out.stdout.as_str()), (Some(0), "hi\n"), "{out:?}");

    let out = emq_cli(
        &r,
        &["send", "--wait", "emq.echo", r#"{"n": [1, 2]}"#, "--json"],
        None,
        T,
    );
    let v: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(
        (v["outcome"].as_str(), &v["value"]),
        (Some("ok"), &serde_json::json!({"n": [1, 2]}))
    );
}

#[test]
fn failures_give_nonzero_exit_and_a_clear_message() {
    let (r, _jm) = system();
    let out = emq_cli(&r, &["send", "--wait", "no.such.handler"], None, T);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains("no handler \"no.such.handler\""), "{out:?}");

    let out = emq_cli(
        &r,
        &[
            "send",
            "--wait",
            "--",
            "sh",
            "-c",
            "echo partial; echo broken >&2; exit 7",
        ],
        None,
        T,
    );
    assert_eq!(out.code, Some(7), "the program's own exit code: {out:?}");
    assert_eq!(out.stdout, "partial\n");
    assert!(
        out.stderr.contains("broken") && out.stderr.contains("exited with code 7"),
        "{out:?}"
    );

    let out = emq_cli(&r, &["send", "--wait", "emq.fail", r#""disk on fire""#], None, T);
    assert_eq!(out.code, Some(1));
    assert!(out.stderr.contains("disk on fire"), "{out:?}");
}

#[test]
fn unreachable_router_is_a_clear_error_within_the_timeout() {
    let mut cmd = std::process::Command::new(emq_tests::bin("emq-cli"));
    cmd.env("EMQ_ROUTER", "tcp://127.0.0.1:9");
    let out = run_with_deadline(
        cmd,
        &["--connect-timeout", "1", "send", "--wait", "--", "true"],
        None,
        T,
    );
    assert_eq!(out.code, Some(3), "{out:?}");
    assert!(
        out.stderr.contains("router unreachable at tcp://127.0.0.1:9"),
        "{out:?}"
    );
    assert!(out.took < Duration::from_secs(3), "took {:?}", out.took);
}

#[test]
fn bulk_thousand_jobs_all_return_once() {
    let (r, _jm) = system();
    let input: String = (0..1000)
        .map(|i| format!("{{\"handler\": \"emq.echo\", \"args\": [{i}]}}\n"))
        .collect();
    let out = emq_cli(&r, &["bulk", "--json", "--window", "200"], Some(&input), T);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let mut ids = HashSet::new();
    let mut values = HashSet::new();
    let mut lines = 0;
    for line in out.stdout.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["outcome"], "ok", "{v}");
        // Each line's own value comes back on that line's record.
        assert_eq!(v["value"].as_u64(), Some(v["line"].as_u64().unwrap() - 1), "{v}");
        assert!(ids.insert(v["id"].as_str().unwrap().to_string()), "duplicate id {v}");
        assert!(values.insert(v["value"].as_u64().unwrap()), "duplicate result {v}");
        lines += 1;
    }
    assert_eq!(lines, 1000);
    assert_eq!(values, (0..1000).collect::<HashSet<u64>>(), "none missing");
    assert!(out.stderr.contains("1000 jobs: 1000 ok, 0 failed"), "{}", out.stderr);
}

#[test]
fn bulk_shell_lines_and_summary() {
    let (r, _jm) = system();
    let out = emq_cli(&r, &["bulk"], Some("echo one\nexit 3\n\necho three\n"), T);
    assert_eq!(out.code, Some(1), "one line failed: {out:?}");
    assert!(out.stdout.contains("3 jobs: 2 ok, 1 failed"), "{out:?}");
    assert!(out.stderr.contains("line 2"), "{out:?}");
}

#[test]
fn result_status_and_cancel_by_id() {
    let (r, _jm) = system();
    let out = emq_cli(&r, &["send", "emq.echo", r#""later""#], None, T);
    let id = out.stdout.trim().to_string();
    assert_eq!(id.len(), 36, "prints the job id: {out:?}");
    let mut res = None;
    assert!(wait_until(T, || {
        let o = emq_cli(&r, &["result", &id], None, T);
        let done = o.code == Some(0);
        res = Some(o);
        done
    }));
    assert_eq!(res.unwrap().stdout, "later\n");
    let st = emq_cli(&r, &["status", &id], None, T);
    assert!(st.stdout.contains("FINISHED"), "{st:?}");

    // A job for a queue nobody serves waits, and can be cancelled.
    let out = emq_cli(&r, &["send", "--queue", "nobody", "emq.echo"], None, T);
    let waiting = out.stdout.trim().to_string();
    let st = emq_cli(&r, &["status", &waiting, "--json"], None, T);
    assert!(st.stdout.contains("\"QUEUED\""), "{st:?}");
    let c = emq_cli(&r, &["cancel", &waiting], None, T);
    assert_eq!(c.code, Some(0), "{c:?}");
    assert!(c.stdout.contains("CANCELLED"));

    let unknown = emq_cli(&r, &["result", "00000000-0000-0000-0000-000000000000"], None, T);
    assert_eq!(unknown.code, Some(2), "{unknown:?}");
    assert!(unknown.stderr.contains("unknown job"));
}

#[test]
fn status_workers_and_shutdown() {
    let (mut r, _jm) = system();
    assert!(wait_until(T, || emq_cli(&r, &["workers"], None, T)
        .stdout
        .contains("IDLE")));
    let st = emq_cli(&r, &["status"], None, T);
    assert!(st.stdout.contains("QUEUE") && st.stdout.contains("default"), "{st:?}");
    let out = emq_cli(&r, &["shutdown"], None, T);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(r
        .proc
        .wait_exit(Duration::from_secs(5))
        .expect("router stopped")
        .success());
}

#[test]
fn purge_cancels_waiting_jobs_and_tells_their_clients() {
    let (r, _jm) = system();
    // Nobody serves "backlog": three jobs wait there.
    let ids: Vec<String> = (0..3)
        .map(|i| {
            let out = emq_cli(&r, &["send", "-q", "backlog", "emq.echo", &i.to_string()], None, T);
            assert_eq!(out.code, Some(0), "{out:?}");
            out.stdout.trim().to_string()
        })
        .collect();
    let out = emq_cli(&r, &["purge", "backlog", "--json"], None, T);
    assert_eq!(out.code, Some(0), "{out:?}");
    let v: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(v["purged"], 3, "{out:?}");
    for id in &ids {
        let st = emq_cli(&r, &["status", id], None, T);
        assert!(st.stdout.contains("CANCELLED"), "{st:?}");
    }
    // Other queues keep working.
    let out = emq_cli(&r, &["send", "--wait", "emq.echo", "7"], None, T);
    assert_eq!((out.code, out.stdout.as_str()), (Some(0), "7\n"), "{out:?}");
}

fn json_of(out: &emq_tests::Output) -> serde_json::Value {
    serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {out:?}"))
}

/// README's table: 0 ok, 1 job failed, 2 refused, 3 unreachable, 4 no result
/// in time, 5 rejected (security tests), 64 usage; a program's own code.
#[test]
fn exit_codes_follow_the_table() {
    let r = RouterProc::start(&["--max-waiting-per-queue", "1", "--heartbeat-ms", "100"]);
    let _jm = JobManagerProc::start(&r, &["-J", "1"]);
    let code = |args: &[&str]| {
        let out = emq_cli(&r, args, None, T);
        (out.code, out)
    };
    assert_eq!(code(&["send", "--wait", "emq.echo", "1"]).0, Some(0));
    assert_eq!(code(&["send", "--wait", "emq.fail"]).0, Some(1));
    assert_eq!(code(&["send", "--wait", "--", "sh", "-c", "exit 9"]).0, Some(9));
    // Refused: a full queue, an unknown job, a job in the wrong state.
    // (Without --wait or --guarantee, send does not wait for the router.)
    assert_eq!(code(&["send", "-q", "nobody", "emq.noop"]).0, Some(0));
    let (c, out) = code(&["send", "--wait", "-q", "nobody", "emq.noop"]);
    assert_eq!(c, Some(2), "queue full: {out:?}");
    assert!(out.stderr.contains("full"), "{out:?}");
    let (c, out) = code(&["result", "00000000-0000-0000-0000-000000000000"]);
    assert_eq!(c, Some(2), "{out:?}");
    let running = code(&["send", "emq.sleep", "3"]).1.stdout.trim().to_string();
    assert!(wait_until(T, || emq_cli(&r, &["status", &running], None, T)
        .stdout
        .contains("RUNNING")));
    let (c, out) = code(&["cancel", &running]);
    assert_eq!(c, Some(2), "cancel a running job: {out:?}");
    assert!(out.stderr.contains("has started"), "{out:?}");
    let done_id = code(&["send", "emq.echo", "1"]).1.stdout.trim().to_string();
    assert!(wait_until(T, || emq_cli(&r, &["status", &done_id], None, T)
        .stdout
        .contains("FINISHED")));
    let (c, out) = code(&["retry", &done_id]);
    assert_eq!(c, Some(2), "retry a job that is not dead: {out:?}");
    assert!(out.stderr.contains("only a dead-lettered job"), "{out:?}");
    // No result in time.
    let (c, out) = code(&["send", "--wait", "--wait-timeout", "0.3", "emq.sleep", "2"]);
    assert_eq!(c, Some(4), "{out:?}");
    // Usage: clap's errors, bad JSON, nothing to send, a missing file.
    for args in [
        &["send", "--no-such-flag"][..],
        &["send", "--wait", "emq.echo", "{bad"],
        &["send"],
        &["bulk", "/nonexistent/jobs.txt"],
        &["--router", "127.0.0.1:1", "send", "emq.noop"],
    ] {
        let (c, out) = code(args);
        assert_eq!(c, Some(64), "{args:?}: {out:?}");
    }
    let (_, out) = code(&["bulk", "/nonexistent/jobs.txt"]);
    assert!(out.stderr.contains("/nonexistent/jobs.txt"), "names the file: {out:?}");
}

/// One JSON shape per kind of answer (README "JSON output").
#[test]
fn json_shapes_are_pinned() {
    let (r, _jm) = system();
    let submitted = json_of(&emq_cli(&r, &["send", "--json", "emq.echo", "\"x\""], None, T));
    assert_eq!(submitted["state"], "QUEUED", "{submitted}");
    assert_eq!(submitted["id"].as_str().map(str::len), Some(36), "{submitted}");
    let guaranteed = json_of(&emq_cli(
        &r,
        &["send", "--json", "--guarantee", "emq.echo", "1"],
        None,
        T,
    ));
    assert_eq!(guaranteed["state"], "ACCEPTED", "{guaranteed}");

    // A result, failed or not: id, outcome, value, error.
    let ok = json_of(&emq_cli(
        &r,
        &["send", "--wait", "--json", "emq.echo", "[1, 2]"],
        None,
        T,
    ));
    assert_eq!(ok["outcome"], "ok");
    assert_eq!(ok["value"], serde_json::json!([1, 2]));
    assert!(ok["error"].is_null() && ok["id"].is_string(), "{ok}");
    let failed = json_of(&emq_cli(&r, &["send", "--wait", "--json", "--", "false"], None, T));
    assert_eq!(failed["outcome"], "failed", "{failed}");
    assert!(failed["id"].is_string() && failed["error"].is_string(), "{failed}");
    let unknown = json_of(&emq_cli(&r, &["send", "--wait", "--json", "no.such"], None, T));
    assert_eq!(unknown["outcome"], "unknown-handler");
    assert_eq!(unknown["value"]["handler"], "no.such", "{unknown}");

    // A job's status: id, state, detail (RFC 3339 times in its log), result.
    let id = guaranteed["id"].as_str().unwrap();
    assert!(wait_until(T, || emq_cli(&r, &["status", id], None, T)
        .stdout
        .contains("FINISHED")));
    let st = json_of(&emq_cli(&r, &["status", "--json", id], None, T));
    assert_eq!(st["state"], "FINISHED");
    assert_eq!(st["result"]["outcome"], "ok", "{st}");
    let time = st["detail"]["log"][0]["time"].as_str().unwrap();
    assert!(
        time.len() >= 20 && time.ends_with('Z') && time.as_bytes()[10] == b'T',
        "RFC 3339: {time}"
    );
    // The handler of an unknown-handler failure, looked up later (a result
    // nobody waited for is kept).
    let later_id = emq_cli(&r, &["send", "no.such"], None, T).stdout.trim().to_string();
    assert!(wait_until(T, || emq_cli(&r, &["status", &later_id], None, T)
        .stdout
        .contains("no.such")));

    // Errors: {"error": {"kind", "message"}, "id"} on stdout.
    let err = json_of(&emq_cli(
        &r,
        &["result", "--json", "00000000-0000-0000-0000-000000000000"],
        None,
        T,
    ));
    assert_eq!(err["error"]["kind"], "refused", "{err}");
    assert!(
        err["error"]["message"].as_str().unwrap().contains("unknown job"),
        "{err}"
    );

    // The router's status is the router's own typed answer.
    let status = json_of(&emq_cli(&r, &["status", "--json"], None, T));
    for key in ["queues", "jobmanagers", "waiting_total", "waiting_messages_by_queue"] {
        assert!(status.get(key).is_some(), "{key} in {status}");
    }
}
