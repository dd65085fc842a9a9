//! Time in the router, across real processes: delayed jobs and schedules,
//! through router crashes.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use emq_tests::{emq_cli, wait_until, JobManagerProc, RouterProc, Scratch};
use serde_json::Value;

const T: Duration = Duration::from_secs(30);

const ROUTER_ARGS: &[&str] = &["--heartbeat-ms", "100", "--liveness-ms", "600"];

fn unix_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

/// Lines of `file`, each written by one run of a job.
fn lines(file: &Path) -> Vec<String> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn json(out: &emq_tests::Output) -> Value {
    assert_eq!(out.code, Some(0), "stdout: {} stderr: {}", out.stdout, out.stderr);
    serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

#[test]
fn a_delayed_job_outlives_a_router_crash_and_runs_once_at_its_time() {
    let r = RouterProc::start(ROUTER_ARGS);
    let _jm = JobManagerProc::start(&r, &["-J", "1"]);
    let dir = Scratch::new();
    let file = dir.path("ran-at");
    let script = format!("date +%s%3N >> {}", file.display());
    let submitted = unix_ms();
    let out = emq_cli(
        &r,
        &["--json", "send", "--delay", "3s", "--", "sh", "-c", &script],
        None,
        T,
    );
    let sent = json(&out);
    assert_eq!(sent["state"], "SCHEDULED");
    let id = sent["id"].as_str().unwrap().to_string();
    let status = json(&emq_cli(&r, &["--json", "status", &id], None, T));
    assert_eq!(status["state"], "SCHEDULED", "{status}");
    assert!(status["detail"]["not_before"].is_string(), "{status}");

    // Crash the router before the job is due; the journal has it.
    let mut r = r;
    r.proc.kill9();
    let endpoints = [r.frontend.clone(), r.backend.clone(), r.admin.clone()];
    let r2 = RouterProc::start_on([&endpoints[0], &endpoints[1], &endpoints[2]], &r.journal, ROUTER_ARGS);
    assert!(wait_until(T, || !lines(&file).is_empty()), "the delayed job never ran");
    let ran: i64 = lines(&file)[0].parse().unwrap();
    assert!(
        ran >= submitted + 3000,
        "ran {} ms after submission, before its delay",
        ran - submitted
    );
    let finished = wait_until(T, || {
        json(&emq_cli(&r2, &["--json", "status", &id], None, T))["state"] == "FINISHED"
    });
    assert!(finished, "the delayed job did not finish");
    assert_eq!(lines(&file).len(), 1, "ran exactly once");
}

#[test]
fn send_at_a_time_waits_for_it() {
    let r = RouterProc::start(ROUTER_ARGS);
    let _jm = JobManagerProc::start(&r, &["-J", "1"]);
    let at = jiff::Timestamp::from_millisecond(unix_ms() + 2000).unwrap();
    let at_text = at.to_string();
    let out = emq_cli(
        &r,
        &["--json", "send", "--at", &at_text, "--wait", "emq.echo", "[1]"],
        None,
        T,
    );
    let result = json(&out);
    assert_eq!(result["value"], 1, "{result}");
    assert!(unix_ms() >= at.as_millisecond(), "the result came before the time");
    // A malformed time is the caller's mistake, said before anything is sent.
    let out = emq_cli(&r, &["send", "--at", "tomorrow", "emq.echo"], None, T);
    assert_eq!(out.code, Some(64), "{}", out.stderr);
    assert!(out.stderr.contains("RFC 3339"), "{}", out.stderr);
}
