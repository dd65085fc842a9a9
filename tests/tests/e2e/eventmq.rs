//! Interop with the real EventMQ 0.3.13 package (installed by
//! scripts/eventmq-env.sh): its Python client, jobmanager and admin shell,
//! unmodified, against emq-router.

use std::process::Command;
use std::time::Duration;

use emq_tests::{emq_cli, eventmq_dir, eventmq_venv, run_with_deadline, wait_until, JobManagerProc, Proc, RouterProc};
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(30);

fn router() -> RouterProc {
    // EventMQ peers heartbeat every second here (EVENTMQ_HEARTBEAT_INTERVAL).
    RouterProc::start(&[
        "--heartbeat-ms",
        "200",
        "--liveness-ms",
        "1000",
        "--eventmq-heartbeat-ms",
        "1000",
    ])
}

fn python(script: &str) -> Command {
    let venv = eventmq_venv();
    let mut cmd = Command::new(venv.join("bin/python"));
    cmd.arg(script)
        .current_dir(eventmq_dir())
        .env("PYTHONPATH", eventmq_dir());
    cmd
}

/// EventMQ's own `emq-jobmanager` script, connected to `r`.
fn eventmq_jobmanager(r: &RouterProc) -> Proc {
    let venv = eventmq_venv();
    let mut cmd = python(venv.join("bin/emq-jobmanager").to_str().unwrap());
    cmd.args(["-B", &r.backend, "-J", "2"])
        .env("EVENTMQ_HEARTBEAT_INTERVAL", "1");
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    Proc::spawn_group(cmd, "eventmq emq-jobmanager")
}

fn jobmanagers(r: &RouterProc) -> Value {
    let out = emq_cli(r, &["workers", "--json"], None, T);
    serde_json::from_str::<Value>(out.stdout.trim())
        .map(|v| v["jobmanagers"].clone())
        .unwrap_or(Value::Null)
}

fn results_of(out: &emq_tests::Output) -> Vec<Value> {
    out.stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

#[test]
fn eventmq_python_client_submits_and_emq_jobmanager_runs() {
    let r = router();
    let _jm = JobManagerProc::start(&r, &["-J", "2"]);
    let out = run_with_deadline(
        python("client_submit.py"),
        &[&r.frontend, "emq.echo", r#"["from python"]"#],
        None,
        T,
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    let results = results_of(&out);
    assert_eq!(results.len(), 2, "{out:?}");
    for res in results {
        assert_eq!(res["body"], json!({"value": "from python"}), "{res}");
        assert_eq!(res["outcome"], json!(["ok"]));
    }
}

#[test]
fn eventmq_jobmanager_serves_emq_router_and_is_noticed_dead() {
    let r = router();
    let py_jm = eventmq_jobmanager(&r);
    assert!(
        wait_until(T, || jobmanagers(&r)
            .as_object()
            .is_some_and(|m| m.values().any(|j| j["kind"] == "eventmq" && j["slots"] == 2))),
        "EventMQ jobmanager visible in status with its 2 slots: {}",
        jobmanagers(&r)
    );

    // A job from emq-cli (JSON body) runs in EventMQ's Python worker.
    let out = emq_cli(&r, &["send", "--wait", "emqtest_tasks.add", "[2, 3]"], None, T);
    assert_eq!((out.code, out.stdout.trim()), (Some(0), "5"), "{out:?}");
    let out = emq_cli(&r, &["send", "--wait", "--json", "emqtest_tasks.whoami"], None, T);
    let v: Value = serde_json::from_str(out.stdout.trim()).expect("json");
    assert_eq!(v["value"]["runner"], "eventmq", "{out:?}");

    // A job from EventMQ's Python client runs there too.
    let out = run_with_deadline(
        python("client_submit.py"),
        &[&r.frontend, "emqtest_tasks.add", "[20, 22]"],
        None,
        T,
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        results_of(&out).iter().all(|res| res["body"] == json!({"value": 42})),
        "{out:?}"
    );

    // A job without reply-requested still completes (the router asks EventMQ for
    // the reply itself) and its result can be fetched.
    let id = emq_cli(&r, &["send", "emqtest_tasks.add", "[1, 1]"], None, T)
        .stdout
        .trim()
        .to_string();
    assert!(wait_until(T, || emq_cli(&r, &["result", &id], None, T).stdout.trim() == "2"));

    // kill -9 the whole EventMQ jobmanager: the router notices within its window.
    py_jm.signal(nix::sys::signal::Signal::SIGKILL);
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(py_jm.pid()),
        nix::sys::signal::Signal::SIGKILL,
    );
    assert!(
        wait_until(Duration::from_secs(5), || jobmanagers(&r)
            .as_object()
            .is_some_and(|m| m.is_empty())),
        "dead EventMQ jobmanager dropped: {}",
        jobmanagers(&r)
    );
}

#[test]
fn eventmq_admin_shell_status_works_against_emq_router() {
    let r = router();
    let _jm = JobManagerProc::start(&r, &["-J", "1", "-Q", "3:reports"]);
    assert!(wait_until(T, || jobmanagers(&r)
        .as_object()
        .is_some_and(|m| !m.is_empty())));
    let venv = eventmq_venv();
    let shell = python(venv.join("bin/emq-cli").to_str().unwrap());
    let out = run_with_deadline(
        shell,
        &["-a", &r.admin],
        Some("status\nshow_workers\nshow_schedulers\nquit\n"),
        T,
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    for key in [
        "waiting_messages_by_queue",
        "processed_messages_by_queue",
        "connected_workers",
        "connected_queues",
        "connected_schedulers",
    ] {
        assert!(
            out.stdout.contains(key),
            "{key} missing from EventMQ's shell output:\n{}",
            out.stdout
        );
    }
    assert!(out.stdout.contains("reports"), "{}", out.stdout);
}

/// EventMQ's jobmanager takes any message as a sign of life and only
/// INFORMs again after its liveness (3 x 5 s) runs out: a restarted router
/// stays silent to it until then, and gets it back.
#[test]
fn eventmq_jobmanager_comes_back_after_a_router_restart() {
    let mut r = router();
    let _py_jm = eventmq_jobmanager(&r);
    let has_eventmq = |r: &RouterProc| {
        jobmanagers(r)
            .as_object()
            .is_some_and(|m| m.values().any(|j| j["kind"] == "eventmq" && j["slots"] == 2))
    };
    assert!(wait_until(T, || has_eventmq(&r)), "{}", jobmanagers(&r));
    let out = emq_cli(&r, &["send", "--wait", "emqtest_tasks.add", "[1, 2]"], None, T);
    assert_eq!((out.code, out.stdout.trim()), (Some(0), "3"), "{out:?}");

    r.proc.kill9();
    let endpoints = [r.frontend.clone(), r.backend.clone(), r.admin.clone()];
    let restarted = RouterProc::start_on(
        [&endpoints[0], &endpoints[1], &endpoints[2]],
        &r.journal,
        &[
            "--heartbeat-ms",
            "200",
            "--liveness-ms",
            "1000",
            "--eventmq-heartbeat-ms",
            "1000",
        ],
    );
    let started = std::time::Instant::now();
    assert!(
        wait_until(Duration::from_secs(25), || has_eventmq(&restarted)),
        "EventMQ's jobmanager did not come back: {}",
        jobmanagers(&restarted)
    );
    eprintln!("EventMQ jobmanager back {:?} after the restart", started.elapsed());
    let out = emq_cli(
        &restarted,
        &["send", "--wait", "emqtest_tasks.add", "[20, 22]"],
        None,
        T,
    );
    assert_eq!((out.code, out.stdout.trim()), (Some(0), "42"), "{out:?}");
}

/// EventMQ's `schedule()` against emq-router; the answer the router sent.
fn eventmq_schedule(
    r: &RouterProc,
    action: &str,
    queue: &str,
    interval: &str,
    cron: &str,
    headers: &str,
    argv: &Value,
) -> Value {
    let argv = argv.to_string();
    let out = run_with_deadline(
        python("client_schedule.py"),
        &[&r.frontend, action, queue, interval, cron, headers, &argv],
        None,
        T,
    );
    serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {out:?}"))
}

fn marker_lines(file: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn eventmq_client_schedules_run_on_emq_until_unscheduled() {
    let r = router();
    // Serving q2 and q3 only: a job that went to `default` (EventMQ's
    // scheduler sends cron jobs there) would never run.
    let _jm = JobManagerProc::start(&r, &["-J", "2", "-Q", "q2", "-Q", "q3"]);
    let dir = emq_tests::Scratch::new();
    let (every, cron, counted) = (dir.path("every"), dir.path("cron"), dir.path("counted"));
    let append = |file: &std::path::Path| json!(["sh", "-c", format!("echo $EMQ_JOB_ID >> {}", file.display())]);

    // The first fire comes at once: time from before the schedule exists
    // (the next two schedules take a Python start each, up to a second on a
    // busy machine, which made fires look early when timed from after them).
    let started = std::time::Instant::now();
    let ack = eventmq_schedule(&r, "schedule", "q2", "1", "", "guarantee", &append(&every));
    assert_eq!(ack["answer"], "ACK", "{ack}");
    let ack = eventmq_schedule(&r, "schedule", "q3", "", "* * * * * *", "guarantee", &append(&cron));
    assert_eq!(ack["answer"], "ACK", "{ack}");
    let ack = eventmq_schedule(
        &r,
        "schedule",
        "q2",
        "1",
        "",
        "guarantee,run_count:3",
        &append(&counted),
    );
    assert_eq!(ack["answer"], "ACK", "{ack}");

    // About once a second, each fire a job of its own.
    assert!(
        wait_until(T, || marker_lines(&every).len() >= 4),
        "interval schedule on q2 did not fire"
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(2500),
        "4 fires (one at once, then every second) took {took:?}"
    );
    let ids = marker_lines(&every);
    let distinct: std::collections::HashSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), ids.len(), "no slot fired twice: {ids:?}");
    assert!(ids.iter().all(|id| id.starts_with("sched:eventmq-exec-")), "{ids:?}");
    assert!(
        wait_until(T, || marker_lines(&cron).len() >= 2),
        "cron schedule on q3 did not fire"
    );

    // Unschedule: it stops, and the router says so.
    let ack = eventmq_schedule(&r, "unschedule", "q2", "1", "", "guarantee", &append(&every));
    assert_eq!(ack["answer"], "ACK", "{ack}");
    let stopped_at = marker_lines(&every).len();
    let again = eventmq_schedule(&r, "unschedule", "q2", "1", "", "guarantee", &append(&every));
    assert_eq!(
        (again["answer"].as_str(), again["code"].as_str()),
        (Some("ERROR"), Some("unknown-schedule"))
    );
    // A malformed one is refused with a reason, never silence.
    let bad = eventmq_schedule(&r, "schedule", "q2", "", "61 * * * *", "", &append(&every));
    assert_eq!(
        (bad["answer"].as_str(), bad["code"].as_str()),
        (Some("ERROR"), Some("invalid")),
        "{bad}"
    );

    // run_count:3 fires exactly three times: wait for the third, then as long
    // again as the three took, and see no fourth.
    assert!(
        wait_until(T, || marker_lines(&counted).len() >= 3),
        "run_count schedule stopped short"
    );
    let list = emq_cli(&r, &["schedule", "list", "--json"], None, T);
    let list: Value = serde_json::from_str(list.stdout.trim()).unwrap();
    let names: Vec<&str> = list["schedules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["queue"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        vec!["q3"],
        "the unscheduled and the finished run_count schedules are gone: {list}"
    );
    assert!(
        !wait_until(Duration::from_secs(3), || marker_lines(&counted).len() > 3),
        "a fourth fire"
    );
    assert!(
        marker_lines(&every).len() <= stopped_at + 1,
        "the unscheduled schedule kept firing (at most one already dispatched may finish)"
    );
}
