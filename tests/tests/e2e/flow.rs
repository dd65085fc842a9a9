//! Flow control across real processes: coalescing and unique keys, queue
//! concurrency and rate limits observed from the workers, pause through a
//! router crash, expiry, and unique keys freed by deaths and crashes.

use std::path::Path;
use std::time::{Duration, Instant};

use emq_client::{Client, ClientError, Job, JobId, Outcome};
use emq_tests::{emq_cli, wait_until, JobManagerProc, RouterProc, Scratch};
use serde_json::json;

const T: Duration = Duration::from_secs(30);

const ROUTER_ARGS: &[&str] = emq_tests::FAST_TIMING;

fn client(r: &RouterProc) -> Client {
    Client::connect(&[&r.frontend]).unwrap()
}

fn json_out(out: &emq_tests::Output) -> serde_json::Value {
    assert_eq!(out.code, Some(0), "stdout: {} stderr: {}", out.stdout, out.stderr);
    serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

fn queue_status(r: &RouterProc, queue: &str) -> serde_json::Value {
    json_out(&emq_cli(r, &["--json", "status"], None, T))["queues"][queue].clone()
}

/// Wait until the only worker of `r`'s jobmanager runs a job.
fn busy(r: &RouterProc, c: &mut Client, secs: f64) -> JobId {
    let id = c.submit(&Job::new("emq.sleep").arg(secs)).unwrap();
    assert!(
        wait_until(T, || queue_status(r, "default")["running"] == 1),
        "the worker never started the blocker"
    );
    id
}

#[test]
fn a_thousand_coalesced_submissions_leave_one_waiting_job_with_the_last_arguments() {
    let r = RouterProc::start(ROUTER_ARGS);
    let _jm = JobManagerProc::start(&r, &["-J", "1"]);
    let mut c = client(&r);
    let blocker = busy(&r, &mut c, 3.0);
    let mut ids = Vec::new();
    let mut replaced = 0;
    for i in 0..1000 {
        let s = c
            .submit_detailed(&Job::new("emq.echo").arg(i).coalesce("latest-price"))
            .unwrap();
        assert!(!s.deduplicated);
        replaced += usize::from(s.replaced.is_some());
        ids.push(s.id);
    }
    assert_eq!(replaced, 999, "each replaced the one before");
    let q = queue_status(&r, "default");
    assert_eq!(
        (q["running"].as_u64(), q["waiting"].as_u64()),
        (Some(1), Some(1)),
        "{q}"
    );
    // The blocker ends; the one left runs, with the last arguments.
    c.wait(&blocker, T).unwrap();
    let last = c.wait(&ids[999], T).unwrap();
    assert_eq!(last.value, json!(999));
    // The others ended SUPERSEDED and never ran: their clients were told.
    for id in &ids[..999] {
        match c.wait(id, Duration::from_secs(5)) {
            Err(ClientError::JobFailed { outcome, .. }) => assert_eq!(outcome, Outcome::Superseded),
            other => panic!("{id}: {other:?}"),
        }
    }
    assert_eq!(queue_status(&r, "default")["processed"], 2, "two jobs ran in all");
}

#[test]
fn a_thousand_unique_submissions_make_one_job() {
    let r = RouterProc::start(ROUTER_ARGS);
    let _jm = JobManagerProc::start(&r, &["-J", "1"]);
    let mut c = client(&r);
    let blocker = busy(&r, &mut c, 2.0);
    let mut ids = std::collections::BTreeSet::new();
    let mut deduplicated = 0;
    for i in 0..1000 {
        let s = c
            .submit_detailed(&Job::new("emq.echo").arg(i).unique("nightly"))
            .unwrap();
        deduplicated += usize::from(s.deduplicated);
        ids.insert(s.id);
    }
    assert_eq!((ids.len(), deduplicated), (1, 999));
    c.wait(&blocker, T).unwrap();
    let id = ids.into_iter().next().unwrap();
    assert_eq!(c.wait(&id, T).unwrap().value, json!(0), "the first one's arguments");
    // The CLI says so too, in its JSON.
    let _ = busy(&r, &mut c, 2.0);
    let first = json_out(&emq_cli(
        &r,
        &["--json", "send", "--unique", "k", "emq.echo", "1"],
        None,
        T,
    ));
    let again = json_out(&emq_cli(
        &r,
        &["--json", "send", "--unique", "k", "emq.echo", "2"],
        None,
        T,
    ));
    assert_eq!(again["id"], first["id"]);
    assert_eq!(again["deduplicated"], true);
    let replacing = json_out(&emq_cli(
        &r,
        &["--json", "send", "--coalesce", "k2", "emq.echo", "1"],
        None,
        T,
    ));
    let replacer = json_out(&emq_cli(
        &r,
        &["--json", "send", "--coalesce", "k2", "emq.echo", "2"],
        None,
        T,
    ));
    assert_eq!(replacer["replaced"], replacing["id"]);
    let status = json_out(&emq_cli(
        &r,
        &["--json", "status", replacer["id"].as_str().unwrap()],
        None,
        T,
    ));
    assert_eq!(status["detail"]["key"], "coalesce:k2");
}

/// A job that records how many of its kind run at once: it marks itself
/// running, samples the count, and unmarks itself.
fn metered(dir: &Path) -> Job {
    let script = format!(
        "d={dir}; touch $d/run.$EMQ_JOB_ID; for i in 1 2 3 4 5; do ls $d | grep -c '^run\\.' >> $d/seen.$EMQ_JOB_ID; sleep 0.05; done; rm $d/run.$EMQ_JOB_ID",
        dir = dir.display()
    );
    Job::exec(["sh", "-c", &script])
}

fn most_seen(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("seen."))
        .flat_map(|e| {
            std::fs::read_to_string(e.path())
                .unwrap_or_default()
                .lines()
                .filter_map(|l| l.trim().parse::<u64>().ok())
                .collect::<Vec<_>>()
        })
        .max()
        .unwrap_or(0)
}

#[test]
fn a_concurrency_limit_holds_across_three_jobmanagers_of_eight_workers() {
    let r = RouterProc::start(ROUTER_ARGS);
    let set = json_out(&emq_cli(
        &r,
        &["--json", "queue", "set", "default", "--concurrency", "4"],
        None,
        T,
    ));
    assert_eq!(set["concurrency"], 4);
    let _jms: Vec<JobManagerProc> = (0..3).map(|_| JobManagerProc::start(&r, &["-J", "8"])).collect();
    assert!(wait_until(T, || queue_status(&r, "default")["jobmanagers"]
        .as_array()
        .map_or(0, Vec::len)
        == 3));
    let dir = Scratch::new();
    let meter = dir.path("meter");
    std::fs::create_dir(&meter).unwrap();
    let mut c = client(&r);
    let jobs: Vec<Job> = (0..48).map(|_| metered(&meter)).collect();
    let mut failed = 0;
    c.submit_many(jobs, 48, T, |_, res| failed += usize::from(res.is_err()))
        .unwrap();
    assert_eq!(failed, 0);
    let most = most_seen(&meter);
    assert!(most <= 4, "{most} ran at once with a limit of 4");
    assert!(most >= 3, "the limit was not reached ({most}): nothing was measured");
}

#[test]
fn a_rate_of_ten_a_second_spreads_a_hundred_jobs_over_ten_seconds() {
    let r = RouterProc::start(ROUTER_ARGS);
    emq_cli(&r, &["queue", "set", "default", "--rate", "10/s"], None, T);
    let _jm = JobManagerProc::start(&r, &["-J", "4"]);
    let mut c = client(&r);
    let started = Instant::now();
    let jobs: Vec<Job> = (0..100).map(|_| Job::new("emq.noop")).collect();
    let mut ok = 0;
    c.submit_many(jobs, 100, T, |_, res| ok += usize::from(res.is_ok()))
        .unwrap();
    let took = started.elapsed();
    assert_eq!(ok, 100);
    assert!(took >= Duration::from_millis(9900), "100 jobs at 10/s took {took:?}");
    assert!(took < Duration::from_secs(20), "100 jobs at 10/s took {took:?}");
}

#[test]
fn a_pause_outlives_a_router_crash() {
    let scratch = Scratch::new();
    let journal = scratch.path("router.redb");
    let mut r = RouterProc::start_with(&journal, ROUTER_ARGS);
    let endpoints = [r.frontend.clone(), r.backend.clone(), r.admin.clone()];
    let paused = json_out(&emq_cli(&r, &["--json", "pause", "default"], None, T));
    assert_eq!(paused["paused"], true);
    let _jm = JobManagerProc::start(&r, &["-J", "1"]);
    let marker = scratch.path("ran");
    let script = format!("touch {}", marker.display());
    let sent = json_out(&emq_cli(
        &r,
        &["--json", "send", "--guarantee", "--", "sh", "-c", &script],
        None,
        T,
    ));
    r.proc.kill9();
    let r = RouterProc::start_on([&endpoints[0], &endpoints[1], &endpoints[2]], &journal, ROUTER_ARGS);
    assert!(wait_until(T, || queue_status(&r, "default")["jobmanagers"]
        .as_array()
        .map_or(0, Vec::len)
        == 1));
    assert_eq!(queue_status(&r, "default")["paused"], true);
    assert!(
        !wait_until(Duration::from_secs(2), || marker.exists()),
        "a paused queue ran a job after the restart"
    );
    let text = emq_cli(&r, &["status"], None, T);
    assert!(text.stdout.contains("PAUSED"), "{}", text.stdout);
    emq_cli(&r, &["resume", "default"], None, T);
    assert!(wait_until(T, || marker.exists()), "resumed, the job did not run");
    let id = sent["id"].as_str().unwrap();
    assert!(wait_until(T, || json_out(&emq_cli(
        &r,
        &["--json", "status", id],
        None,
        T
    ))["state"]
        == "FINISHED"));
}

#[test]
fn an_expired_job_never_runs() {
    let r = RouterProc::start(ROUTER_ARGS);
    let _jm = JobManagerProc::start(&r, &["-J", "1"]);
    let mut c = client(&r);
    let blocker = busy(&r, &mut c, 2.0);
    let dir = Scratch::new();
    let marker = dir.path("ran");
    let script = format!("touch {}", marker.display());
    let out = emq_cli(
        &r,
        &["--json", "send", "--expires", "1s", "--wait", "--", "sh", "-c", &script],
        None,
        T,
    );
    assert_eq!(out.code, Some(1), "{} {}", out.stdout, out.stderr);
    let result: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(result["outcome"], "expired", "{result}");
    c.wait(&blocker, T).unwrap();
    // The worker is free now: a second chance would run it.
    c.call(&Job::new("emq.noop"), T).unwrap();
    assert!(!marker.exists(), "the expired job ran");
}

/// A guaranteed job of unique key `key` running `script`.
fn unique_job(key: &str, script: &str) -> Job {
    Job::exec(["sh", "-c", script]).unique(key).guarantee(true).retries(0)
}

#[test]
fn a_unique_key_is_free_again_after_its_job_dies_and_after_a_crash_mid_job() {
    let scratch = Scratch::new();
    let journal = scratch.path("router.redb");
    let mut r = RouterProc::start_with(&journal, ROUTER_ARGS);
    let endpoints = [r.frontend.clone(), r.backend.clone(), r.admin.clone()];
    let _jm = JobManagerProc::start(&r, &["-J", "2"]);
    let mut c = client(&r);

    // Dead-lettered: the key is free.
    let dies = c.submit(&unique_job("k", "exit 1")).unwrap();
    assert!(matches!(c.wait(&dies, T), Err(ClientError::JobFailed { .. })));
    let next = c.submit_detailed(&unique_job("k", "true")).unwrap();
    assert!(!next.deduplicated && next.id != dies, "the dead job kept its key");
    c.wait(&next.id, T).unwrap();

    // The router dies while the job runs: the key comes back with the job,
    // and goes when the job finishes...
    for (key, end) in [("finishes", "true"), ("dies", "exit 1")] {
        let started = scratch.path(&format!("started-{key}"));
        let script = format!("touch {}; sleep 1; {end}", started.display());
        let id = c.submit(&unique_job(key, &script)).unwrap();
        assert!(wait_until(T, || started.exists()), "{key}: never started");
        r.proc.kill9();
        r = RouterProc::start_on([&endpoints[0], &endpoints[1], &endpoints[2]], &journal, ROUTER_ARGS);
        let mut c2 = client(&r);
        let again = c2.submit_detailed(&unique_job(key, "true")).unwrap();
        assert!(
            again.deduplicated && again.id == id,
            "{key}: the key was lost with the crash"
        );
        // ...or dies (it runs again after the crash: at least once).
        let state = |c2: &mut Client| {
            c2.status(&id, T)
                .map(|s| s.state.as_str().to_string())
                .unwrap_or_default()
        };
        assert!(
            wait_until(T, || matches!(state(&mut c2).as_str(), "FINISHED" | "DEAD")),
            "{key}: the job did not end"
        );
        let free = c2.submit_detailed(&unique_job(key, "true")).unwrap();
        assert!(!free.deduplicated && free.id != id, "{key}: the key outlived its job");
        c = c2;
    }
}
