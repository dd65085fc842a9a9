//! Guaranteed jobs under faults, across real processes: kill -9 a worker, a
//! jobmanager, the router; a poison job; resubmission. Each asserts that
//! nothing acknowledged is lost, and nothing finished runs again.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use emq_proto::{Headers, JobCall, JobResult, Message, Outcome, Reply};
use emq_tests::{emq_cli, wait_until, Crashed, Dealer, JobManagerProc, RouterProc, Scratch};
use nix::sys::signal::Signal;
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(30);

const ROUTER_ARGS: &[&str] = &[
    "--heartbeat-ms",
    "100",
    "--liveness-ms",
    "600",
    "--retry-backoff-ms",
    "50",
];

fn router() -> RouterProc {
    RouterProc::start(ROUTER_ARGS)
}

fn submit(client: &Dealer, id: &str, call: &JobCall, headers: &str) {
    let mut h = Headers::parse(headers);
    h.guarantee = true;
    h.reply_requested = true;
    client.request(id, "default", call, h);
}

fn call(handler: &str, args: Value, kwargs: Value) -> JobCall {
    let mut c = JobCall::new(handler);
    c.args = args.as_array().cloned().unwrap_or_default();
    c.kwargs = kwargs.as_object().cloned().unwrap_or_default();
    c
}

/// A shell job that appends `id` to `file` each time it runs.
fn counted(id: &str, file: &Path) -> JobCall {
    call(
        "emq.exec",
        json!(["sh", "-c", format!("echo {id} >> {}", file.display())]),
        json!({}),
    )
}

fn runs(file: &Path) -> HashMap<String, usize> {
    let mut n = HashMap::new();
    for line in std::fs::read_to_string(file).unwrap_or_default().lines() {
        *n.entry(line.to_string()).or_insert(0) += 1;
    }
    n
}

enum Event {
    Ack(String),
    Result(String, Outcome, JobResult),
}

fn next_event(client: &Dealer, within: Duration) -> Option<Event> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        let env = client.recv(deadline.saturating_duration_since(Instant::now()))?;
        match env.message {
            Message::Ack { of, .. } => return Some(Event::Ack(of)),
            Message::Reply(Reply::Result(r)) => {
                let res = JobResult::decode_body(r.outcome, &r.body, r.content_type).unwrap();
                return Some(Event::Result(r.of, r.outcome, res));
            }
            _ => {}
        }
    }
    None
}

fn job_status(r: &RouterProc, id: &str) -> Value {
    let out = emq_cli(r, &["status", id, "--json"], None, T);
    serde_json::from_str(out.stdout.trim()).unwrap_or(Value::Null)
}

fn log_statuses(status: &Value) -> Vec<String> {
    status["detail"]["log"]
        .as_array()
        .map(|l| {
            l.iter()
                .map(|e| e["status"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn worker_killed_mid_job_is_retried_and_finishes_once() {
    let r = router();
    let jm = JobManagerProc::start(&r, &["-J", "1"]);
    let dir = Scratch::new();
    let ctx = zmq::Context::new();
    let client = Dealer::connect(&ctx, &r.frontend, Some("worker-kill-client"));
    let marker = dir.path("marker");
    submit(
        &client,
        "sleepy",
        &call(
            "emq.sleep",
            json!([30]),
            json!({"once_marker": marker.to_str().unwrap()}),
        ),
        "",
    );
    assert!(matches!(next_event(&client, T), Some(Event::Ack(id)) if id == "sleepy"));
    assert!(wait_until(T, || marker.exists()), "first attempt started");
    let workers = jm.worker_pids();
    assert_eq!(workers.len(), 1);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(workers[0]), Signal::SIGKILL).unwrap();

    let Some(Event::Result(id, outcome, res)) = next_event(&client, T) else {
        panic!("no result")
    };
    assert_eq!(
        (id.as_str(), outcome, res.value),
        ("sleepy", Outcome::Ok, json!("woke at once"))
    );
    assert!(
        next_event(&client, Duration::from_millis(500)).is_none(),
        "exactly one result"
    );
    let st = job_status(&r, "sleepy");
    assert_eq!(st["state"], "FINISHED", "{st}");
    assert_eq!(st["detail"]["attempts"], 2, "{st}");
    assert_eq!(log_statuses(&st).iter().filter(|s| *s == "RUNNING").count(), 2, "{st}");
}

#[test]
fn jobmanager_killed_with_jobs_in_flight_loses_nothing() {
    let r = router();
    let mut jm1 = JobManagerProc::start(&r, &["-J", "2"]);
    let _jm2 = JobManagerProc::start(&r, &["-J", "2"]);
    let dir = Scratch::new();
    let file = dir.path("runs");
    let ctx = zmq::Context::new();
    let client = Dealer::connect(&ctx, &r.frontend, Some("jm-kill-client"));
    let ids: Vec<String> = (0..40).map(|i| format!("job-{i}")).collect();
    for id in &ids {
        let c = call(
            "emq.exec",
            json!(["sh", "-c", format!("sleep 0.2; echo {id} >> {}", file.display())]),
            json!({}),
        );
        submit(&client, id, &c, "");
    }
    let mut acked = HashSet::new();
    let mut results: HashMap<String, usize> = HashMap::new();
    let started = Instant::now();
    let mut killed = false;
    while results.len() < ids.len() && started.elapsed() < T {
        if !killed && started.elapsed() > Duration::from_millis(300) {
            jm1.proc.kill9();
            killed = true;
        }
        match next_event(&client, Duration::from_millis(100)) {
            Some(Event::Ack(id)) => {
                acked.insert(id);
            }
            Some(Event::Result(id, outcome, res)) => {
                assert_eq!(outcome, Outcome::Ok, "{id}: {res:?}");
                *results.entry(id).or_insert(0) += 1;
            }
            None => {}
        }
    }
    assert!(killed);
    assert_eq!(acked.len(), ids.len());
    assert_eq!(
        results.len(),
        ids.len(),
        "every acknowledged job finished: missing {:?}",
        ids.iter().filter(|i| !results.contains_key(*i)).collect::<Vec<_>>()
    );
    assert!(results.values().all(|n| *n == 1), "one result per job: {results:?}");
    // Every job ran to completion at least once (those on the dead one may have run twice).
    let ran = runs(&file);
    assert!(ids.iter().all(|id| ran.contains_key(id)), "{ran:?}");
}

#[test]
fn router_killed_with_thousands_queued_and_in_flight_then_restarted() {
    let r = router();
    let endpoints = [r.frontend.clone(), r.backend.clone(), r.admin.clone()];
    // The jobs whose end was journaled but whose result was not sent at the
    // crash are among those the jobmanager held: without prefetch, its 2
    // workers' (with the default prefetch, 3 of these millisecond jobs were).
    let _jm = JobManagerProc::start(&r, &["-J", "2", "--prefetch", "0"]);
    let dir = Scratch::new();
    let file = dir.path("runs");
    let ctx = zmq::Context::new();
    let client = Dealer::connect(&ctx, &r.frontend, Some("router-kill-client"));
    let n = 2000;
    let ids: Vec<String> = (0..n).map(|i| format!("g{i:05}")).collect();
    for id in &ids {
        submit(&client, id, &counted(id, &file), "");
    }
    let mut acked = HashSet::new();
    let mut before_kill: HashSet<String> = HashSet::new();
    let started = Instant::now();
    // Kill once every job is acknowledged and some (not all) have finished.
    while (acked.len() < n || before_kill.len() < 100) && started.elapsed() < T {
        match next_event(&client, Duration::from_millis(200)) {
            Some(Event::Ack(id)) => {
                acked.insert(id);
            }
            Some(Event::Result(id, outcome, _)) => {
                assert_eq!(outcome, Outcome::Ok);
                before_kill.insert(id);
            }
            None => {}
        }
    }
    assert_eq!(acked.len(), n, "all acknowledged before the crash");
    assert!(before_kill.len() < n, "the crash must come with jobs still queued");
    let mut r = r;
    r.proc.kill9();
    let _r2 = RouterProc::start_on([&endpoints[0], &endpoints[1], &endpoints[2]], &r.journal, ROUTER_ARGS);
    let mut after: HashSet<String> = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut last_result = Instant::now();
    while before_kill.len() + after.len() < n
        && Instant::now() < deadline
        && last_result.elapsed() < Duration::from_secs(10)
    {
        if let Some(Event::Result(id, outcome, _)) = next_event(&client, Duration::from_millis(500)) {
            assert_eq!(outcome, Outcome::Ok);
            last_result = Instant::now();
            if !before_kill.contains(&id) {
                after.insert(id);
            }
        }
    }
    // A job whose end was journaled just before the crash, but whose result
    // was not yet sent, is not run again and its result is not pushed again
    // (the router cannot know it was never received): like emq-client's
    // wait(), ask for it. It must be FINISHED with its result.
    let mut fetched = Vec::new();
    for id in ids
        .iter()
        .filter(|id| !before_kill.contains(*id) && !after.contains(*id))
    {
        client.send(&Message::Query { of: id.clone() }, "q");
        let env = client
            .recv_until(
                T,
                |e| matches!(&e.message, Message::Job { of, .. } | Message::Error { of, .. } if of == id),
            )
            .unwrap_or_else(|| panic!("no answer to QUERY {id}"));
        match env.message {
            Message::Job {
                state, result: Some(r), ..
            } if state == emq_proto::JobState::Finished && r.outcome == Outcome::Ok => fetched.push(id.clone()),
            other => panic!("acknowledged job {id} never finished: {other:?}"),
        }
    }
    if !fetched.is_empty() {
        eprintln!("results fetched by QUERY after the restart: {fetched:?}");
    }
    assert!(
        fetched.len() <= 2,
        "only a job finishing at the moment of the crash may need fetching: {fetched:?}"
    );
    // A job whose result was delivered before the crash was journaled as
    // finished first, so it must not have run again.
    let ran = runs(&file);
    let rerun: Vec<&String> = before_kill
        .iter()
        .filter(|id| ran.get(*id).copied().unwrap_or(0) != 1)
        .collect();
    assert!(
        rerun.is_empty(),
        "finished jobs ran again after the restart: {:?}",
        &rerun[..rerun.len().min(5)]
    );
    assert!(ids.iter().all(|id| ran.contains_key(id)));
    assert!(ran.values().all(|n| *n <= 2), "a job ran more than twice: {ran:?}");
}

#[test]
fn poison_job_is_dead_lettered_after_its_attempts_and_can_be_retried() {
    let r = router();
    let _jm = JobManagerProc::start(&r, &["-J", "1"]);
    let out = emq_cli(
        &r,
        &["send", "--guarantee", "--retries", "2", "--wait", "--json", "emq.crash"],
        None,
        T,
    );
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stdout.contains("\"crashed\""), "{out:?}");
    let dead = emq_cli(&r, &["dead", "--json"], None, T);
    let v: Value = serde_json::from_str(dead.stdout.trim()).unwrap();
    let list = v["dead"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{v}");
    assert_eq!(list[0]["attempts"], 3);
    let id = list[0]["id"].as_str().unwrap().to_string();
    let st = job_status(&r, &id);
    assert_eq!(st["state"], "DEAD");
    assert_eq!(log_statuses(&st).iter().filter(|s| *s == "RUNNING").count(), 3, "{st}");
    let plain = emq_cli(&r, &["status", &id], None, T);
    assert!(
        plain.stdout.contains("log:") && plain.stdout.contains("dead-lettered after 3 attempt(s)"),
        "{}",
        plain.stdout
    );

    // Retried by hand: runs its attempts again, and is dead again.
    let retry = emq_cli(&r, &["retry", &id], None, T);
    assert_eq!(retry.code, Some(0), "{retry:?}");
    assert!(wait_until(T, || {
        let st = job_status(&r, &id);
        st["state"] == "DEAD" && log_statuses(&st).iter().filter(|s| *s == "RUNNING").count() == 6
    }));
    // A job that is not dead cannot be retried.
    let bad = emq_cli(&r, &["retry", "no-such-job"], None, T);
    assert_ne!(bad.code, Some(0));
}

#[test]
fn resubmitting_a_msgid_does_not_run_it_twice() {
    let r = router();
    let _jm = JobManagerProc::start(&r, &["-J", "2"]);
    let dir = Scratch::new();
    let file = dir.path("runs");
    let ctx = zmq::Context::new();
    let client = Dealer::connect(&ctx, &r.frontend, Some("idem-client"));
    let job = counted("once", &file);
    submit(&client, "once", &job, "");
    submit(&client, "once", &job, "");
    let mut results = 0;
    let mut acks = 0;
    while let Some(ev) = next_event(&client, Duration::from_millis(1500)) {
        match ev {
            Event::Ack(_) => acks += 1,
            Event::Result(..) => results += 1,
        }
    }
    assert_eq!((acks, results), (2, 1));
    // After it finished: acknowledged and answered again, still not re-run.
    submit(&client, "once", &job, "");
    assert!(matches!(next_event(&client, T), Some(Event::Ack(_))));
    assert!(matches!(next_event(&client, T), Some(Event::Result(_, Outcome::Ok, _))));
    assert_eq!(runs(&file).get("once"), Some(&1));
}

/// Run `emq-cli bulk ARGS` over `n` shell jobs that each append their id
/// to a file (then run `then`), with a jobmanager of `workers`; kill -9 the
/// router once `ran` jobs have run and restart it on its journal; wait for
/// `bulk` to end (it must, within 60 s).
fn bulk_across_a_router_crash(args: &[&str], n: usize, then: &str, workers: &str, ran: usize) -> Crashed {
    let mut r = router();
    let _jm = JobManagerProc::start(&r, &["-J", workers]);
    let dir = Scratch::new();
    let runs = dir.path("runs");
    let line = format!("echo $EMQ_JOB_ID >> '{}'{then}\n", runs.display());
    let jobs = dir.path("jobs.txt");
    std::fs::write(&jobs, line.repeat(n)).unwrap();
    let mut cmd = std::process::Command::new(emq_tests::bin("emq-cli"));
    cmd.env("EMQ_ROUTER", &r.frontend).arg("bulk").args(args).arg(&jobs);
    emq_tests::bulk_across_a_router_crash(cmd, &runs, ran, Duration::from_secs(60), || {
        r.proc.kill9();
        RouterProc::start_on([&r.frontend, &r.backend, &r.admin], &r.journal, ROUTER_ARGS)
    })
}

/// `emq-cli bulk --guarantee` across a router kill -9 and restart: what the
/// router had not acknowledged is sent again (same ids), what it had
/// journaled is asked for again, so every job ends, ok, without waiting for
/// the idle timeout, and runs once (but for a few running at the crash).
#[test]
fn bulk_guarantee_resends_across_a_router_crash() {
    let n = 1000;
    let args = ["--guarantee", "--window", "200", "--idle-timeout", "120"];
    let c = bulk_across_a_router_crash(&args, n, "", "4", 150);
    let twice = c.assert_all_ok(n);
    // At-least-once at the crash: jobs running then may run again.
    assert!(twice <= 20, "{twice} jobs ran more than once");
    println!("{twice} of {n} jobs ran twice across the crash");
}

/// Ordinary (not guaranteed) jobs in flight when the router dies are not
/// journaled: once the client is connected again and the new router does
/// not know them, `bulk` says they were lost at once instead of waiting for
/// its idle timeout; the rest run.
#[test]
fn ordinary_jobs_lost_with_the_router_fail_promptly() {
    let n = 300;
    let args = ["--window", "100", "--idle-timeout", "120"];
    let c = bulk_across_a_router_crash(&args, n, "; sleep 0.02", "2", 30);
    assert!(c.after_kill < Duration::from_secs(30), "no stall: {:?}", c.after_kill);
    assert_eq!(
        c.status.code(),
        Some(1),
        "some jobs were lost: {}{}",
        c.stdout,
        c.stderr
    );
    // "300 jobs: 200 ok, 100 failed in 2.81s (107 jobs/s)"
    let summary = c.stdout.lines().last().unwrap_or_default();
    let words: Vec<&str> = summary.split_whitespace().collect();
    let count = |what: &str| -> usize {
        words
            .windows(2)
            .find(|w| w[1].trim_end_matches(',') == what)
            .and_then(|w| w[0].parse().ok())
            .unwrap_or(0)
    };
    let (ok, failed) = (count("ok"), count("failed"));
    assert_eq!(ok + failed, n, "{summary}");
    assert!(failed > 0, "the crash lost some: {summary}");
    let lost = c.stderr.lines().filter(|l| l.contains("job lost")).count();
    assert_eq!(lost, failed, "every failure says the job was lost:\n{}", c.stderr);
    println!("{summary}");
}
