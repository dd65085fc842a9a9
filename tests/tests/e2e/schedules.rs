//! Time in the router, across real processes: delayed jobs and schedules,
//! through router crashes.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use emq_tests::{emq_cli, next_random, wait_until, JobManagerProc, RouterProc, Scratch};
use serde_json::Value;

const T: Duration = Duration::from_secs(30);

const ROUTER_ARGS: &[&str] = emq_tests::FAST_TIMING;

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

/// One fired job per line of `markers`: the job ids, distinct (a job that
/// ran again after a crash, as at-least-once allows, is one fire).
fn fired_ids(markers: &Path) -> std::collections::BTreeSet<String> {
    std::fs::read_dir(markers)
        .map(|d| d.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect())
        .unwrap_or_default()
}

/// A job that marks its fire with a directory named by its id (a job run
/// again after a crash, as at-least-once allows, marks the same fire).
fn mark(markers: &Path) -> String {
    format!("mkdir -p {}/$EMQ_JOB_ID", markers.display())
}

/// `emq-cli schedule add NAME --every 1s` of a job that marks its fire.
fn add_marking(r: &RouterProc, name: &str, markers: &Path, json_out: bool) -> emq_tests::Output {
    let mark = mark(markers);
    let mut args = vec!["schedule", "add", name, "--every", "1s", "--", "sh", "-c", &mark];
    if json_out {
        args.insert(0, "--json");
    }
    emq_cli(r, &args, None, T)
}

fn schedule_list(r: &RouterProc) -> Vec<Value> {
    json(&emq_cli(r, &["--json", "schedule", "list"], None, T))["schedules"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn emq_cli_adds_lists_pauses_resumes_and_removes_schedules() {
    let r = RouterProc::start(ROUTER_ARGS);
    let _jm = JobManagerProc::start(&r, &["-J", "2"]);
    let dir = Scratch::new();
    let markers = dir.path("markers");
    std::fs::create_dir(&markers).unwrap();
    let added = json(&add_marking(&r, "tick", &markers, true));
    assert_eq!(
        (added["name"].as_str(), added["every_ms"].as_u64()),
        (Some("tick"), Some(1000))
    );
    assert!(
        wait_until(T, || fired_ids(&markers).len() >= 3),
        "the schedule did not fire"
    );
    let ok = wait_until(T, || schedule_list(&r)[0]["last_outcome"] == "FINISHED");
    assert!(ok, "{:?}", schedule_list(&r));
    let status = json(&emq_cli(&r, &["--json", "status"], None, T));
    assert_eq!(status["schedules"], 1);

    let paused = json(&emq_cli(&r, &["--json", "schedule", "pause", "tick"], None, T));
    assert_eq!(paused["paused"], true);
    let at_pause = paused["fires"].as_u64().unwrap();
    // Nothing fires while paused (one fired just before may still finish).
    assert!(!wait_until(Duration::from_millis(2500), || fired_ids(&markers).len()
        as u64
        > at_pause));
    let resumed = json(&emq_cli(&r, &["--json", "schedule", "resume", "tick"], None, T));
    assert!(resumed["next"].is_string());
    assert!(
        wait_until(T, || fired_ids(&markers).len() as u64 >= at_pause + 2),
        "did not resume"
    );

    // A cron schedule in a zone, shown as such.
    let cron = json(&emq_cli(
        &r,
        &[
            "--json",
            "schedule",
            "add",
            "nightly",
            "--cron",
            "30 2 * * *",
            "--tz",
            "Europe/Berlin",
            "--nohaste",
            "emq.echo",
            "1",
        ],
        None,
        T,
    ));
    assert_eq!(
        (cron["fires"].as_u64(), cron["tz"].as_str()),
        (Some(0), Some("Europe/Berlin"))
    );
    let text = emq_cli(&r, &["schedule", "list"], None, T);
    assert!(
        text.stdout.contains("cron '30 2 * * *' Europe/Berlin"),
        "{}",
        text.stdout
    );
    assert!(text.stdout.contains("every 1s"), "{}", text.stdout);

    // Mistakes: said, with the exit code of the table.
    let bad = emq_cli(
        &r,
        &["schedule", "add", "x", "--cron", "61 * * * *", "emq.echo"],
        None,
        T,
    );
    assert_eq!(bad.code, Some(2), "{}", bad.stderr);
    assert!(bad.stderr.contains("cron expression"), "{}", bad.stderr);
    let usage = emq_cli(&r, &["schedule", "add", "x", "--every", "soon", "emq.echo"], None, T);
    assert_eq!(usage.code, Some(64), "{}", usage.stderr);
    let unknown = emq_cli(&r, &["schedule", "remove", "nope"], None, T);
    assert_eq!(unknown.code, Some(2), "{}", unknown.stderr);

    for name in ["tick", "nightly"] {
        assert_eq!(emq_cli(&r, &["schedule", "remove", name], None, T).code, Some(0));
    }
    assert!(schedule_list(&r).is_empty());
}

/// xorshift64: random crash moments without a dependency.
#[test]
fn router_killed_repeatedly_while_schedules_fire_neither_repeats_nor_loses_a_slot() {
    let scratch = Scratch::new();
    let journal = scratch.path("router.redb");
    let mut r = RouterProc::start_with(&journal, ROUTER_ARGS);
    let endpoints = [r.frontend.clone(), r.backend.clone(), r.admin.clone()];
    let _jm = JobManagerProc::start(&r, &["-J", "2"]);
    let markers = scratch.path("markers");
    std::fs::create_dir(&markers).unwrap();
    let names = ["a", "b", "c"];
    for name in names {
        let out = add_marking(&r, name, &markers, false);
        assert_eq!(out.code, Some(0), "{}", out.stderr);
    }
    let mut seed = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
    eprintln!("crash moments seeded with {seed}");
    // (killed at, serving again at), wall clock ms.
    let mut down: Vec<(i64, i64)> = Vec::new();
    for _ in 0..10 {
        // Let a few slots fire, then crash at a random moment within a second.
        let before = fired_ids(&markers).len();
        let more = 1 + (next_random(&mut seed) % 4) as usize;
        assert!(
            wait_until(T, || fired_ids(&markers).len() >= before + more),
            "schedules stopped firing"
        );
        std::thread::sleep(Duration::from_millis(next_random(&mut seed) % 1000));
        let killed = unix_ms();
        r.proc.kill9();
        // Down for up to 2.5 s: often long enough for slots to pass.
        std::thread::sleep(Duration::from_millis(next_random(&mut seed) % 2500));
        r = RouterProc::start_on([&endpoints[0], &endpoints[1], &endpoints[2]], &journal, ROUTER_ARGS);
        down.push((killed, unix_ms()));
    }
    let before = fired_ids(&markers).len();
    assert!(
        wait_until(T, || fired_ids(&markers).len() >= before + 3),
        "no fires after the last restart"
    );
    // Stop them, and let every fired job finish.
    let mut schedules = Vec::new();
    for name in names {
        schedules.push(json(&emq_cli(&r, &["--json", "schedule", "remove", name], None, T)));
    }
    let total: u64 = schedules.iter().map(|s| s["fires"].as_u64().unwrap()).sum();
    let settled = wait_until(Duration::from_secs(60), || fired_ids(&markers).len() as u64 >= total);
    let ids = fired_ids(&markers);
    assert!(settled, "{} jobs fired, {} ran", total, ids.len());

    let ts = |v: &Value| jiff::Timestamp::from_str_ms(v.as_str().unwrap());
    for s in &schedules {
        let name = s["name"].as_str().unwrap();
        let slots: Vec<i64> = ids
            .iter()
            .filter_map(|id| id.strip_prefix(&format!("sched:{name}:")))
            .map(|slot| slot.parse().unwrap())
            .collect();
        // Every fire the router counted ran, and nothing else: a slot fired
        // twice would count twice but leave one marker.
        assert_eq!(slots.len() as u64, s["fires"].as_u64().unwrap(), "{name}: {s}");
        // Every slot from the first to the last either fired once or is
        // counted missed; missed ones all fell while the router was down.
        let (first, last) = (ts(&s["created"]), ts(&s["last_slot"]));
        let all: Vec<i64> = (first..=last).step_by(1000).collect();
        assert_eq!(slots.first(), Some(&first), "{name}: fired at creation");
        let missed: Vec<i64> = all.iter().copied().filter(|t| !slots.contains(t)).collect();
        assert_eq!(missed.len() as u64, s["missed_slots"].as_u64().unwrap(), "{name}: {s}");
        for slot in &missed {
            let covered = down
                .iter()
                .any(|(killed, back)| *slot >= killed - 200 && *slot <= *back);
            assert!(covered, "{name}: slot {slot} missed while the router was up ({down:?})");
        }
        assert!(
            slots.iter().all(|t| (t - first) % 1000 == 0),
            "{name}: off its phase: {slots:?}"
        );
        eprintln!(
            "schedule {name}: {} slots, {} fired, {} missed over {} crashes",
            all.len(),
            slots.len(),
            missed.len(),
            down.len()
        );
    }
}

trait FromStrMs {
    fn from_str_ms(s: &str) -> i64;
}

impl FromStrMs for jiff::Timestamp {
    fn from_str_ms(s: &str) -> i64 {
        s.parse::<jiff::Timestamp>().unwrap().as_millisecond()
    }
}
