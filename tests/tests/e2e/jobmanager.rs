//! emq-router + emq-jobmanager as real processes, driven by a raw client.

use std::time::{Duration, Instant};

use emq_proto::{ContentType, Headers, JobCall, JobResult, Message, Outcome, Reply, ResultFrames};
use emq_tests::{alive, http_get, wait_until, Dealer, JobManagerProc, RouterProc, Scratch};
use nix::sys::signal::Signal;
use serde_json::json;

const T: Duration = Duration::from_secs(10);

fn router() -> RouterProc {
    RouterProc::start(&["--heartbeat-ms", "100", "--liveness-ms", "1000"])
}

fn submit(client: &Dealer, id: &str, handler: &str, args: serde_json::Value, headers: &str) {
    let mut call = JobCall::new(handler);
    call.args = args.as_array().cloned().unwrap_or_default();
    let mut h = Headers::parse(headers);
    h.reply_requested = true;
    client.request(id, "default", &call, h);
}

fn result(client: &Dealer, within: Duration) -> Option<(ResultFrames, JobResult)> {
    let env = client.recv_until(within, |e| matches!(e.message, Message::Reply(Reply::Result(_))))?;
    let Message::Reply(Reply::Result(r)) = env.message else {
        unreachable!()
    };
    let decoded = JobResult::decode_body(r.outcome, &r.body, r.content_type).expect("result body decodes");
    Some((r, decoded))
}

/// Wait until at least `n` of these workers are running a job's program
/// (have a child process): the job has reached them.
fn running_programs(workers: &[i32], n: usize) {
    assert!(
        wait_until(T, || workers
            .iter()
            .filter(|w| !emq_tests::children_of(**w).is_empty())
            .count()
            >= n),
        "{n} worker(s) never started their job"
    );
}

/// Whether the jobmanager serving `/healthz` on `addr` says it is connected
/// (`None` while its HTTP server is not up yet).
fn jm_connected(addr: &str) -> Option<bool> {
    let (_, body) = http_get(addr, "/healthz", T).ok()?;
    let v: serde_json::Value = serde_json::from_str(&body).expect("/healthz is JSON");
    Some(v["connected"].as_bool().expect("/healthz says whether it is connected"))
}

/// Wait until the jobmanager has `n` workers and return their pids.
fn workers(jm: &JobManagerProc, n: usize) -> Vec<i32> {
    let mut pids = Vec::new();
    assert!(
        wait_until(T, || {
            pids = jm.worker_pids();
            pids.len() == n
        }),
        "expected {n} workers, have {pids:?}"
    );
    pids
}

#[test]
fn jobs_run_and_results_return_in_json_and_msgpack() {
    let r = router();
    let _jm = JobManagerProc::start(&r, &["-J", "2"]);
    let ctx = zmq::Context::new();
    let client = Dealer::connect(&ctx, &r.frontend, None);
    submit(&client, "j-json", "emq.echo", json!([{"hello": "world"}]), "");
    let (frames, res) = result(&client, T).expect("json result");
    assert_eq!(
        (frames.of.as_str(), frames.outcome, frames.content_type),
        ("j-json", Outcome::Ok, ContentType::Json)
    );
    assert_eq!(res.value, json!({"hello": "world"}));

    submit(&client, "j-mp", "emq.echo", json!([[1, 2, 3]]), "content-type:msgpack");
    let (frames, res) = result(&client, T).expect("msgpack result");
    assert_eq!(frames.content_type, ContentType::MsgPack);
    assert_eq!(res.value, json!([1, 2, 3]));

    submit(
        &client,
        "j-exec",
        "emq.exec",
        json!(["sh", "-c", "echo out; echo err >&2"]),
        "",
    );
    let (_, res) = result(&client, T).expect("exec result");
    assert_eq!(
        res.value,
        json!({"exit_code": 0, "signal": null, "stdout": "out\n", "stderr": "err\n"})
    );

    submit(&client, "j-nope", "no.such.handler", json!([]), "");
    let (frames, res) = result(&client, T).expect("unknown handler answered");
    assert_eq!(frames.outcome, Outcome::UnknownHandler);
    assert!(res.error.unwrap().contains("no.such.handler"));

    submit(&client, "j-fail", "emq.fail", json!(["boom"]), "");
    let (frames, res) = result(&client, T).expect("failure answered");
    assert_eq!((frames.outcome, res.error.as_deref()), (Outcome::Failed, Some("boom")));
}

#[test]
fn killed_worker_gives_error_reply_and_is_replaced_within_a_second() {
    let r = router();
    let jm = JobManagerProc::start(&r, &["-J", "1"]);
    let before = workers(&jm, 1);
    let ctx = zmq::Context::new();
    let client = Dealer::connect(&ctx, &r.frontend, None);
    submit(&client, "long", "emq.exec", json!(["sleep", "30"]), "");
    // Once the job runs on the worker, kill -9 the worker.
    running_programs(&before, 1);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(before[0]), Signal::SIGKILL).unwrap();
    let killed_at = Instant::now();
    let (frames, res) = result(&client, T).expect("error reply for the killed job");
    assert_eq!((frames.of.as_str(), frames.outcome), ("long", Outcome::Crashed));
    assert!(res.error.unwrap().contains("died"));
    let mut after = Vec::new();
    assert!(
        wait_until(Duration::from_secs(1), || {
            after = jm.worker_pids();
            after.len() == 1 && after[0] != before[0]
        }),
        "replacement within 1 s of the kill ({:?} later: {after:?})",
        killed_at.elapsed()
    );
    // The replacement takes work.
    submit(&client, "next", "emq.echo", json!(["ok"]), "");
    assert_eq!(result(&client, T).expect("next job").1.value, json!("ok"));
}

#[test]
fn crashing_job_is_retried_when_it_asks_and_not_otherwise() {
    let r = router();
    let _jm = JobManagerProc::start(&r, &["-J", "1"]);
    let ctx = zmq::Context::new();
    let client = Dealer::connect(&ctx, &r.frontend, None);
    let dir = Scratch::new();
    let submit_crash_once = |id: &str, marker: &std::path::Path, headers: &str| {
        let mut call = JobCall::new("emq.crash");
        call.kwargs
            .insert("once_marker".into(), json!(marker.to_str().unwrap()));
        let mut h = Headers::parse(headers);
        h.reply_requested = true;
        client.request(id, "default", &call, h);
    };
    // Without retries the first crash is the answer.
    submit_crash_once("no-retry", &dir.path("a"), "");
    let (frames, _) = result(&client, T).expect("answered");
    assert_eq!((frames.of.as_str(), frames.outcome), ("no-retry", Outcome::Crashed));
    // With one retry the second attempt (on a fresh worker) succeeds.
    submit_crash_once("retried", &dir.path("b"), "retry-count:1");
    let (frames, res) = result(&client, T).expect("answered after a retry");
    assert_eq!(
        (frames.of.as_str(), frames.outcome, res.value),
        ("retried", Outcome::Ok, json!("survived"))
    );
    // A job that always crashes stops after its retries.
    submit(&client, "always", "emq.crash", json!([]), "retry-count:2");
    let (frames, _) = result(&client, T).expect("answered after its retries");
    assert_eq!(frames.outcome, Outcome::Crashed);
}

#[test]
fn timeout_kills_the_job_and_the_slot_comes_back() {
    let r = router();
    let jm = JobManagerProc::start(&r, &["-J", "1"]);
    let before = workers(&jm, 1);
    let ctx = zmq::Context::new();
    let client = Dealer::connect(&ctx, &r.frontend, None);
    let started = Instant::now();
    submit(&client, "slow", "emq.exec", json!(["sleep", "30"]), "timeout:1");
    let (frames, res) = result(&client, T).expect("timeout reported");
    assert_eq!(frames.outcome, Outcome::TimedOut);
    assert!(res.error.unwrap().contains("timeout"));
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(4),
        "{took:?}"
    );
    assert!(wait_until(T, || !alive(before[0])), "timed-out worker is gone");
    submit(&client, "after", "emq.echo", json!([1]), "");
    assert_eq!(result(&client, T).expect("slot came back").1.value, json!(1));
}

#[test]
fn workers_are_recycled_after_max_jobs() {
    let r = router();
    let jm = JobManagerProc::start(&r, &["-J", "1", "--max-jobs", "2"]);
    let ctx = zmq::Context::new();
    let client = Dealer::connect(&ctx, &r.frontend, None);
    let mut seen = Vec::new();
    for i in 0..6 {
        submit(
            &client,
            &format!("j{i}"),
            "emq.exec",
            json!(["sh", "-c", "echo $PPID"]),
            "",
        );
        let (_, res) = result(&client, T).expect("result");
        seen.push(res.value["stdout"].as_str().unwrap().trim().to_string());
    }
    // Each worker runs exactly two jobs.
    assert_eq!(seen[0], seen[1]);
    assert_ne!(seen[1], seen[2]);
    assert_eq!(seen[2], seen[3]);
    assert_ne!(seen[3], seen[4]);
    assert_eq!(seen[4], seen[5]);
    assert_eq!(workers(&jm, 1).len(), 1);
}

#[test]
fn sigterm_drains_running_jobs_then_exits_zero() {
    let r = router();
    let mut jm = JobManagerProc::start(&r, &["-J", "2", "--grace-s", "10"]);
    let pids = workers(&jm, 2);
    let ctx = zmq::Context::new();
    let client = Dealer::connect(&ctx, &r.frontend, None);
    submit(&client, "draining", "emq.exec", json!(["sleep", "0.7"]), "");
    running_programs(&pids, 1);
    jm.proc.signal(Signal::SIGTERM);
    let (frames, _) = result(&client, T).expect("the running job finishes");
    assert_eq!((frames.of.as_str(), frames.outcome), ("draining", Outcome::Ok));
    let status = jm.proc.wait_exit(T).expect("jobmanager exits");
    assert!(status.success(), "{status:?}");
    assert!(pids.iter().all(|p| !alive(*p)), "no worker left behind");
}

#[test]
fn killing_the_jobmanager_leaves_no_workers_behind() {
    let r = router();
    let mut jm = JobManagerProc::start(&r, &["-J", "2"]);
    let pids = workers(&jm, 2);
    let ctx = zmq::Context::new();
    let client = Dealer::connect(&ctx, &r.frontend, None);
    // One worker busy running a program, which must die too.
    submit(
        &client,
        "busy",
        "emq.exec",
        json!(["sh", "-c", "echo $$; exec sleep 30"]),
        "",
    );
    running_programs(&pids, 1);
    let grandchildren: Vec<i32> = pids.iter().flat_map(|p| emq_tests::children_of(*p)).collect();
    jm.proc.kill9();
    assert!(
        wait_until(Duration::from_secs(3), || pids
            .iter()
            .chain(&grandchildren)
            .all(|p| !alive(*p))),
        "orphans left: {:?}",
        pids.iter()
            .chain(&grandchildren)
            .filter(|p| alive(**p))
            .collect::<Vec<_>>()
    );
}

#[test]
fn jobmanager_state_is_visible_in_router_status() {
    let r = router();
    // Slots are the workers with no prefetch (the default adds some).
    let _jm = JobManagerProc::start(&r, &["-J", "1", "-Q", "7:images", "--prefetch", "0"]);
    let ctx = zmq::Context::new();
    let admin = Dealer::connect(&ctx, &r.admin, None);
    assert!(wait_until(T, || {
        admin.send(&Message::Status, "s");
        let Some(env) = admin.recv(T) else { return false };
        let Message::Reply(Reply::Notice(emq_proto::ReplyNotice(json))) = env.message else {
            return false;
        };
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        v["jobmanagers"].as_object().is_some_and(|jms| {
            jms.values()
                .any(|jm| jm["state"] == "IDLE" && jm["queues"] == json!([[7, "images"]]) && jm["slots"] == 1)
        })
    }));
}

#[test]
fn jobmanager_reconnects_after_router_restart() {
    let r = router();
    let endpoints = [r.frontend.clone(), r.backend.clone(), r.admin.clone()];
    let _jm = JobManagerProc::start(&r, &["-J", "1"]);
    let ctx = zmq::Context::new();
    let client = Dealer::connect(&ctx, &r.frontend, None);
    submit(&client, "before", "emq.echo", json!([1]), "");
    assert!(result(&client, T).is_some());
    let mut r = r;
    r.proc.kill9();
    let r2 = RouterProc::start_on(
        [&endpoints[0], &endpoints[1], &endpoints[2]],
        &r.journal,
        &["--heartbeat-ms", "100", "--liveness-ms", "1000"],
    );
    submit(&client, "after", "emq.echo", json!([2]), "");
    let (frames, res) = result(&client, T).expect("served by the restarted router");
    assert_eq!((frames.of.as_str(), res.value), ("after", json!(2)));
    drop(r2);
}

#[test]
fn sighup_reloads_the_configuration_file() {
    let r = router();
    let dir = Scratch::new();
    let file = dir.path("jm.toml");
    std::fs::write(&file, "queue = [\"10:default\"]\njobs = 1\nprefetch = 0\n").unwrap();
    let jm = JobManagerProc::start(&r, &["--config", file.to_str().unwrap()]);
    let ctx = zmq::Context::new();
    let admin = Dealer::connect(&ctx, &r.admin, None);
    let queues_of_jm = |admin: &Dealer| -> Option<serde_json::Value> {
        admin.send(&Message::Status, "s");
        let env = admin.recv(T)?;
        let Message::Reply(Reply::Notice(emq_proto::ReplyNotice(json))) = env.message else {
            return None;
        };
        let v: serde_json::Value = serde_json::from_str(&json).ok()?;
        v["jobmanagers"]
            .as_object()?
            .values()
            .next()
            .map(|j| json!([j["queues"].clone(), j["slots"].clone()]))
    };
    assert!(wait_until(T, || queues_of_jm(&admin) == Some(json!([[[10, "default"]], 1]))));
    std::fs::write(&file, "queue = [\"5:reloaded\"]\njobs = 2\nprefetch = 0\n").unwrap();
    jm.proc.signal(Signal::SIGHUP);
    assert!(
        wait_until(T, || queues_of_jm(&admin) == Some(json!([[[5, "reloaded"]], 2]))),
        "new queues and concurrency: {:?}",
        queues_of_jm(&admin)
    );
    assert!(wait_until(T, || workers(&jm, 2).len() == 2));
    let client = Dealer::connect(&ctx, &r.frontend, None);
    let mut call = JobCall::new("emq.echo");
    call.args.push(json!("reloaded"));
    let headers = Headers {
        reply_requested: true,
        ..Headers::default()
    };
    client.request("after-hup", "reloaded", &call, headers);
    assert_eq!(
        result(&client, T).expect("served on the new queue").1.value,
        json!("reloaded")
    );
    // A broken file keeps the running configuration.
    std::fs::write(&file, "queue = [\"5:reloaded\"\njobs = \n").unwrap();
    jm.proc.signal(Signal::SIGHUP);
    let changed = wait_until(Duration::from_millis(500), || {
        queues_of_jm(&admin) != Some(json!([[[5, "reloaded"]], 2]))
    });
    assert!(
        !changed,
        "a bad file changed the configuration: {:?}",
        queues_of_jm(&admin)
    );
    // ...and the jobmanager still reloads a good one.
    std::fs::write(&file, "queue = [\"7:third\"]\njobs = 2\nprefetch = 0\n").unwrap();
    jm.proc.signal(Signal::SIGHUP);
    assert!(wait_until(T, || queues_of_jm(&admin) == Some(json!([[[7, "third"]], 2]))));
}

#[test]
fn queued_jobs_outlive_a_killed_worker() {
    let r = router();
    let jm = JobManagerProc::start(&r, &["-J", "2", "--prefetch", "6"]);
    let pids = workers(&jm, 2);
    let ctx = zmq::Context::new();
    let client = Dealer::connect(&ctx, &r.frontend, None);
    // 8 jobs: two running, six in the workers' queue.
    for i in 0..8 {
        submit(
            &client,
            &format!("p{i}"),
            "emq.exec",
            json!(["sh", "-c", format!("sleep 0.5; echo p{i}")]),
            "",
        );
    }
    running_programs(&pids, 2);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pids[0]), Signal::SIGKILL).unwrap();
    let mut outcomes = std::collections::HashMap::new();
    while outcomes.len() < 8 {
        let (frames, res) =
            result(&client, T).unwrap_or_else(|| panic!("only {} results: {outcomes:?}", outcomes.len()));
        if frames.outcome == Outcome::Ok {
            assert_eq!(
                res.value["stdout"].as_str().unwrap().trim(),
                frames.of,
                "each job ran its own command"
            );
        }
        assert!(
            outcomes.insert(frames.of.clone(), frames.outcome).is_none(),
            "{} answered twice",
            frames.of
        );
    }
    // Only the job that was running on the killed worker failed; the queued
    // ones had not started and ran on the other worker and its replacement.
    let crashed: Vec<_> = outcomes.iter().filter(|(_, o)| **o == Outcome::Crashed).collect();
    assert_eq!(crashed.len(), 1, "{outcomes:?}");
    assert_eq!(
        outcomes.values().filter(|o| **o == Outcome::Ok).count(),
        7,
        "{outcomes:?}"
    );
}

/// Celery's prefetch problem: with one long job running, short jobs must not
/// wait behind it while the other worker is free; with the defaults and with
/// a deep prefetch alike.
#[test]
fn a_long_job_holds_up_no_short_job() {
    for flags in [&["-J", "2"][..], &["-J", "2", "--prefetch", "200"][..]] {
        let r = router();
        let jm = JobManagerProc::start(&r, flags);
        workers(&jm, 2);
        let ctx = zmq::Context::new();
        let client = Dealer::connect(&ctx, &r.frontend, None);
        // Warm up, so the jobmanager has measured short jobs.
        for i in 0..50 {
            submit(&client, &format!("w{i}"), "emq.noop", json!([]), "");
        }
        for _ in 0..50 {
            result(&client, T).expect("warm-up result");
        }
        submit(&client, "long", "emq.sleep", json!([4.0]), "");
        let submitted = Instant::now();
        for i in 0..30 {
            submit(&client, &format!("s{i}"), "emq.noop", json!([]), "");
        }
        let mut slowest = Duration::ZERO;
        for _ in 0..30 {
            let (frames, _) = result(&client, T).expect("a short job's result");
            assert!(frames.of.starts_with('s'), "{} ended before the short jobs", frames.of);
            assert_eq!(frames.outcome, Outcome::Ok);
            slowest = slowest.max(submitted.elapsed());
        }
        assert!(
            slowest < Duration::from_secs(1),
            "with {flags:?} a short job took {slowest:?} beside a 4 s job"
        );
        let (frames, _) = result(&client, T).expect("the long job's result");
        assert_eq!((frames.of.as_str(), frames.outcome), ("long", Outcome::Ok));
    }
}

/// A worker asked to leave while it goes from job to job without waiting
/// (it looks at its stdin only every millisecond then) still leaves, and
/// no job is lost on the way.
#[test]
fn a_pool_shrunk_under_load_loses_a_worker_and_no_job() {
    let r = router();
    let dir = Scratch::new();
    let file = dir.path("jm.toml");
    std::fs::write(&file, "jobs = 2\nprefetch = 200\n").unwrap();
    let jm = JobManagerProc::start(&r, &["--config", file.to_str().unwrap()]);
    workers(&jm, 2);
    let ctx = zmq::Context::new();
    let client = Dealer::connect(&ctx, &r.frontend, None);
    // 2 ms jobs, 300 in flight: the workers' queue stays full, so neither
    // worker ever waits for a job (where it would look at its stdin anyway).
    const IN_FLIGHT: usize = 300;
    const MAX_JOBS: usize = 20_000;
    let mut sent = 0;
    let mut done = 0;
    let send = |sent: &mut usize| {
        submit(&client, &format!("j{sent}"), "emq.sleep", json!([0.002]), "");
        *sent += 1;
    };
    while sent < IN_FLIGHT {
        send(&mut sent);
    }
    let mut shrunk = false;
    let deadline = Instant::now() + T;
    while !shrunk && sent < MAX_JOBS && Instant::now() < deadline {
        let (frames, _) = result(&client, T).expect("a result while the pool shrinks");
        assert_eq!(frames.outcome, Outcome::Ok, "{}", frames.of);
        done += 1;
        send(&mut sent);
        if done == 200 {
            std::fs::write(&file, "jobs = 1\nprefetch = 200\n").unwrap();
            jm.proc.signal(Signal::SIGHUP);
        }
        shrunk = done > 200 && done % 10 == 0 && jm.worker_pids().len() == 1;
    }
    assert!(shrunk, "still {:?} workers after {sent} jobs", jm.worker_pids());
    while done < sent {
        let (frames, _) = result(&client, T).unwrap_or_else(|| panic!("{} of {sent} results", done));
        assert_eq!(frames.outcome, Outcome::Ok, "{}", frames.of);
        done += 1;
    }
    assert_eq!(jm.worker_pids().len(), 1);
}

/// Jobs too large for one message in the workers' queue go as tickets, their
/// bodies on the worker's own pipe; small ones beside them are unaffected.
#[test]
fn large_jobs_reach_their_worker_whole() {
    let r = router();
    let jm = JobManagerProc::start(&r, &["-J", "2"]);
    workers(&jm, 2);
    let ctx = zmq::Context::new();
    let client = Dealer::connect(&ctx, &r.frontend, None);
    let sizes = [10, 300_000, 16_000, 2_000_000, 40];
    for (i, n) in sizes.iter().enumerate() {
        let text: String = (0..*n).map(|k| char::from(b'a' + ((k * 7 + i) % 26) as u8)).collect();
        submit(&client, &format!("big{i}"), "emq.echo", json!([text]), "");
    }
    let mut seen = 0;
    while seen < sizes.len() {
        let (frames, res) = result(&client, T).expect("a result");
        let i: usize = frames.of.trim_start_matches("big").parse().unwrap();
        let want: String = (0..sizes[i])
            .map(|k| char::from(b'a' + ((k * 7 + i) % 26) as u8))
            .collect();
        assert_eq!(frames.outcome, Outcome::Ok);
        assert_eq!(res.value.as_str(), Some(want.as_str()), "job {i} came back whole");
        seen += 1;
    }
}

/// A frozen router (SIGSTOP) is a partition from the jobmanager's side: once
/// it presumes the router gone it starts none of the jobs it holds, which
/// the router gives out again; only the jobs running at the cut may run
/// twice (their late results and the second runs both happen).
#[test]
fn a_jobmanager_cut_off_starts_none_of_the_jobs_it_holds() {
    let r = router();
    let port = emq_tests::free_port();
    let addr = format!("127.0.0.1:{port}");
    let jm = JobManagerProc::start(&r, &["-J", "2", "--prefetch", "50", "--http", &port.to_string()]);
    let pids = workers(&jm, 2);
    let ctx = zmq::Context::new();
    let client = Dealer::connect(&ctx, &r.frontend, None);
    let dir = Scratch::new();
    let n = 40;
    for i in 0..n {
        let file = dir.path(&format!("j{i}"));
        let script = format!("echo run >> {}; sleep 0.2", file.display());
        submit(&client, &format!("j{i}"), "emq.exec", json!(["sh", "-c", script]), "");
    }
    let connected = || jm_connected(&addr);
    assert!(
        wait_until(T, || connected() == Some(true)),
        "the jobmanager never said it was connected"
    );
    running_programs(&pids, 2);
    let ran = || {
        (0..n)
            .map(|i| std::fs::read_to_string(dir.path(&format!("j{i}"))).map_or(0, |s| s.lines().count()))
            .collect::<Vec<_>>()
    };
    r.proc.signal(Signal::SIGSTOP);
    let cut = Instant::now();
    assert!(
        wait_until(T, || connected() == Some(false)),
        "the jobmanager never noticed"
    );
    let noticed = cut.elapsed();
    let started_then: usize = ran().iter().sum();
    // Long enough for its workers to have run ten held jobs.
    assert!(wait_until(T, || cut.elapsed() > noticed + Duration::from_secs(1)));
    let started_later: usize = ran().iter().sum();
    r.proc.signal(Signal::SIGCONT);
    assert!(
        started_later <= started_then + 2,
        "jobs started while cut off: {started_then} before, {started_later} after"
    );
    let mut ended = std::collections::HashSet::new();
    while ended.len() < n {
        let (frames, _) = result(&client, Duration::from_secs(20))
            .unwrap_or_else(|| panic!("{} of {n} results; runs {:?}", ended.len(), ran()));
        ended.insert(frames.of);
    }
    let twice = ran().iter().filter(|c| **c > 1).count();
    assert!(
        twice <= 2,
        "{twice} jobs ran twice (2 were running at the cut): {:?}",
        ran()
    );
    assert!(ran().iter().all(|c| *c >= 1));
}

/// A router that dies closes its connections: the jobmanager notices that at
/// once instead of waiting out its liveness window (10 s here).
#[test]
fn a_killed_router_is_noticed_when_its_connection_closes() {
    let mut r = router();
    let port = emq_tests::free_port();
    let addr = format!("127.0.0.1:{port}");
    let port = port.to_string();
    let flags = [
        "-J",
        "1",
        "--heartbeat-ms",
        "1000",
        "--liveness-ms",
        "10000",
        "--http",
        &port,
    ];
    let _jm = JobManagerProc::start(&r, &flags);
    let connected = || jm_connected(&addr);
    assert!(
        wait_until(T, || connected() == Some(true)),
        "the jobmanager never connected"
    );
    let killed = Instant::now();
    r.proc.kill9();
    assert!(
        wait_until(T, || connected() == Some(false)),
        "the jobmanager never noticed"
    );
    // Its /healthz snapshot is at most a second old.
    assert!(
        killed.elapsed() < Duration::from_millis(2500),
        "noticed after {:?}",
        killed.elapsed()
    );
}

/// A worker killed after taking a job from the shared queue but before
/// saying so (the jobmanager cannot know which job it took): the jobmanager
/// takes the queue back, finds the job missing, and a second later, with no
/// live worker reporting it, ends it as crashed with the worker, instead of
/// leaving it running forever. Jobs still in the queue run.
#[test]
fn a_job_taken_by_a_worker_that_died_at_once_ends_crashed() {
    let r = router();
    let jm = JobManagerProc::start_with_env(&r.backend, &["-J", "1"], &[("EMQ_TEST_WORKER_DIES_AFTER_TAKING", "1")]);
    workers(&jm, 1);
    let ctx = zmq::Context::new();
    let client = Dealer::connect(&ctx, &r.frontend, None);
    let submitted = Instant::now();
    submit(&client, "doomed", "emq.echo", json!([1]), "");
    let (frames, res) = result(&client, T).expect("the job ends");
    assert_eq!((frames.of.as_str(), frames.outcome), ("doomed", Outcome::Crashed));
    assert!(
        res.error.as_deref().unwrap_or_default().contains("worker process died"),
        "{res:?}"
    );
    assert!(
        submitted.elapsed() < Duration::from_secs(5),
        "{:?}",
        submitted.elapsed()
    );
}
