//! Events and metrics across real processes: 10,000 jobs of mixed
//! outcomes watched by a subscriber (every job's story in order, no gaps,
//! counts equal to STATUS), `/metrics` read by Python's strict OpenMetrics
//! parser (totals equal to `emq-cli status --json`), a stalled subscriber
//! that loses events while routing goes on, and `emq-cli watch`.

use std::collections::{BTreeMap, HashMap};
use std::process::Command;
use std::time::{Duration, Instant};

use emq_client::events::{Event, EventKind, Filter, Subscriber};
use emq_client::{Client, ClientOptions, Job, JobId};
use emq_tests::{emq_cli, eventmq_venv, http_get, run_with_deadline, wait_until, JobManagerProc, RouterProc};
use serde_json::Value as Json;

const T: Duration = Duration::from_secs(60);

fn observed_router(extra: &[&str]) -> RouterProc {
    let own = [
        "--retry-backoff-ms",
        "10",
        "--events",
        "tcp://127.0.0.1:*",
        "--http",
        "127.0.0.1:0",
    ];
    RouterProc::start(&[emq_tests::FAST_TIMING, &own, extra].concat())
}

/// Subscribe to every event, and make sure the subscription is live (a
/// SUB socket's first subscription travels after its handshake) by
/// waiting for the jobmanager that `start_jm` starts to join.
fn subscribe_then_start_jobmanager(
    r: &RouterProc,
    hwm: i32,
    start_jm: impl FnOnce() -> JobManagerProc,
) -> (Subscriber, JobManagerProc, Vec<Event<'static>>) {
    let endpoint = r.events.as_deref().expect("router has --events");
    let mut sub = Subscriber::connect_with_hwm(endpoint, &Filter::all(), ClientOptions::default(), hwm).unwrap();
    let deadline = Instant::now() + T;
    let mut seen = Vec::new();
    // Events published before the subscription took hold are simply not
    // seen; keep starting nothing until one arrives.
    let jm = start_jm();
    loop {
        assert!(Instant::now() < deadline, "no jobmanager.joined event");
        if let Some(got) = sub.next(Duration::from_millis(200)).unwrap() {
            let joined = got.event.kind == EventKind::JobManagerJoined;
            seen.push(got.event);
            if joined {
                return (sub, jm, seen);
            }
        }
    }
}

/// Every sample of `/metrics`, as Python's OpenMetrics parser reads it:
/// `(name, labels, value)`. The parser is strict: a malformed exposition
/// fails the test.
fn scrape(r: &RouterProc) -> Vec<(String, BTreeMap<String, String>, f64)> {
    scrape_at(r.http.as_deref().unwrap())
}

/// [`scrape`] of any process's `/metrics` at `addr`.
fn scrape_at(addr: &str) -> Vec<(String, BTreeMap<String, String>, f64)> {
    let (code, body) = http_get(addr, "/metrics", Duration::from_secs(5)).unwrap();
    assert_eq!(code, 200, "{body}");
    let parser = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
out = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        out.append([s.name, s.labels, s.value])
print(json.dumps(out))
"#;
    let python = eventmq_venv().join("bin/python");
    let out = run_with_deadline(
        Command::new(python),
        &["-c", parser],
        Some(&body),
        Duration::from_secs(30),
    );
    assert_eq!(
        out.code,
        Some(0),
        "OpenMetrics parser refused /metrics: {}\n{body}",
        out.stderr
    );
    serde_json::from_str(out.stdout.trim()).unwrap()
}

/// The value of sample `name` with `labels` (all of them) in a scrape.
fn sample(samples: &[(String, BTreeMap<String, String>, f64)], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|(n, l, _)| n == name && labels.iter().all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v)))
        .map(|(_, _, v)| *v)
}

#[test]
fn ten_thousand_jobs_tell_their_stories_in_order_and_every_count_agrees() {
    let r = observed_router(&[]);
    let (mut sub, _jm, _) = subscribe_then_start_jobmanager(&r, 0, || JobManagerProc::start(&r, &["-J", "4"]));
    // Collect on a thread while the jobs run.
    let collector = std::thread::spawn(move || {
        let mut events = Vec::new();
        let mut missed = 0;
        let mut ended = 0;
        let deadline = Instant::now() + Duration::from_secs(120);
        while ended < 10_000 && Instant::now() < deadline {
            if let Some(got) = sub.next(Duration::from_millis(500)).unwrap() {
                missed += got.missed;
                ended += usize::from(got.event.kind.is_terminal());
                events.push(got.event);
            }
        }
        // Then whatever else comes (the jobmanager going idle, say), until
        // a quiet second.
        while let Some(got) = sub.next(Duration::from_secs(1)).unwrap() {
            missed += got.missed;
            events.push(got.event);
        }
        (events, missed)
    });
    let mut c = Client::connect(&[&r.frontend]).unwrap();
    // 500 that wait an hour and are cancelled; the rest: 7,000 ok, 2,000
    // failing, 500 guaranteed failing twice (retried once, then dead).
    let mut cancelled = Vec::new();
    for i in 0..500 {
        cancelled.push(
            c.submit(&Job::new("emq.echo").arg(i).delay(Duration::from_secs(3600)))
                .unwrap(),
        );
    }
    for id in &cancelled {
        c.cancel(id, T).unwrap();
    }
    let jobs = (0..9_500).map(|i| match i % 19 {
        0 => Job::new("emq.fail").arg("no").guarantee(true).retries(1),
        1..=4 => Job::new("emq.fail").arg("no"),
        _ => Job::new("emq.echo").arg(i),
    });
    let mut expected: HashMap<JobId, &str> = cancelled.iter().map(|id| (id.clone(), "cancelled")).collect();
    let mut results = 0;
    c.submit_many(jobs, 500, T, |id, r| {
        results += 1;
        let kind = match r {
            Ok(_) => "ok",
            Err(emq_client::ClientError::JobFailed { .. }) => "failed",
            Err(e) => panic!("job {id}: {e}"),
        };
        expected.insert(id, kind);
    })
    .unwrap();
    assert_eq!(results, 9_500);
    let (events, missed) = collector.join().unwrap();
    assert_eq!(missed, 0, "a subscriber that keeps up loses nothing");

    // Sequence numbers: consecutive from the first seen, one router.
    for pair in events.windows(2) {
        assert_eq!(
            pair[1].seq,
            pair[0].seq + 1,
            "gap between {:?} and {:?}",
            pair[0],
            pair[1]
        );
        assert_eq!(pair[1].router, pair[0].router);
    }
    // Each job's story in order, with exactly one end, and the end the
    // client saw.
    let mut stories: HashMap<String, Vec<&Event<'static>>> = HashMap::new();
    for e in events.iter().filter(|e| e.kind.as_str().starts_with("job.")) {
        stories
            .entry(e.job.as_deref().unwrap().to_string())
            .or_default()
            .push(e);
    }
    assert_eq!(stories.len(), 10_000);
    use EventKind as K;
    let mut tally: BTreeMap<&str, u64> = BTreeMap::new();
    for (id, story) in &stories {
        let kinds: Vec<K> = story.iter().map(|e| e.kind).collect();
        let end = *story.last().unwrap();
        assert_eq!(kinds.iter().filter(|k| k.is_terminal()).count(), 1, "{id}: {kinds:?}");
        let want: &[K] = match (expected[&JobId(id.clone())], end.kind) {
            ("ok", _) => &[K::Submitted, K::Dispatched, K::Finished],
            ("cancelled", _) => &[K::Submitted, K::Cancelled],
            ("failed", K::Dead) => &[K::Submitted, K::Dispatched, K::Retry, K::Dispatched, K::Dead],
            ("failed", _) => &[K::Submitted, K::Dispatched, K::Failed],
            (other, _) => panic!("{other}"),
        };
        assert_eq!(kinds, want, "job {id}");
        // Attempts count up in the dispatches.
        let attempts: Vec<u32> = story
            .iter()
            .filter(|e| e.kind == K::Dispatched)
            .map(|e| e.attempt.unwrap())
            .collect();
        assert_eq!(attempts, (1..=attempts.len() as u32).collect::<Vec<_>>(), "job {id}");
        *tally.entry(end.outcome.unwrap().as_str()).or_default() += 1;
        *tally.entry("dead").or_default() += u64::from(end.kind == K::Dead);
        *tally.entry("retried").or_default() += kinds.iter().filter(|k| **k == K::Retry).count() as u64;
    }
    assert_eq!(
        tally,
        BTreeMap::from([
            ("cancelled", 500),
            ("dead", 500),
            ("failed", 2_500),
            ("ok", 7_000),
            ("retried", 500)
        ])
    );

    // STATUS counts the same.
    let status = emq_tests::router_status(&r);
    let counts = &status["queues"]["default"]["counts"];
    assert_eq!(counts["submitted"], 10_000, "{counts}");
    for outcome in ["ok", "failed", "cancelled"] {
        assert_eq!(
            counts["finished"][outcome].as_u64(),
            Some(tally[outcome]),
            "{outcome}: {counts}"
        );
    }
    assert_eq!(counts["dead"].as_u64(), Some(500));
    assert_eq!(counts["retried"].as_u64(), Some(500));

    // /metrics (a snapshot at most a second old) says the same as STATUS.
    let mut samples = Vec::new();
    assert!(
        wait_until(Duration::from_secs(10), || {
            samples = scrape(&r);
            sample(&samples, "emq_jobs_submitted_total", &[("queue", "default")]) == Some(10_000.0)
                && sample(
                    &samples,
                    "emq_jobs_finished_total",
                    &[("queue", "default"), ("outcome", "ok")],
                ) == Some(7_000.0)
        }),
        "/metrics never showed the totals: {samples:?}"
    );
    let status = emq_tests::router_status(&r);
    let counts = &status["queues"]["default"]["counts"];
    let num = |v: &Json| v.as_u64().map(|n| n as f64);
    assert_eq!(
        sample(&samples, "emq_jobs_submitted_total", &[("queue", "default")]),
        num(&counts["submitted"])
    );
    for (outcome, n) in counts["finished"].as_object().unwrap() {
        let got = sample(
            &samples,
            "emq_jobs_finished_total",
            &[("queue", "default"), ("outcome", outcome)],
        );
        assert_eq!(got, num(n), "{outcome}");
    }
    assert_eq!(
        sample(&samples, "emq_jobs_dead_lettered_total", &[("queue", "default")]),
        num(&counts["dead"])
    );
    assert_eq!(
        sample(&samples, "emq_jobs_retried_total", &[("queue", "default")]),
        num(&counts["retried"])
    );
    assert_eq!(
        sample(&samples, "emq_queue_waiting", &[("queue", "default")]),
        Some(0.0)
    );
    // Every end went into the end-to-end histogram; the jobmanager's
    // workers are reported by its heartbeat.
    assert_eq!(
        sample(&samples, "emq_job_end_to_end_seconds_count", &[("queue", "default")]),
        Some(10_000.0)
    );
    let idle = sample(&samples, "emq_workers", &[("state", "idle")]).unwrap_or(0.0);
    let busy = sample(&samples, "emq_workers", &[("state", "busy")]).unwrap_or(0.0);
    assert_eq!(idle + busy, 4.0, "four workers");
    // Every event published reached the subscriber (the snapshot may be a
    // second behind).
    let last_seq = events.last().unwrap().seq as f64;
    assert!(
        wait_until(Duration::from_secs(5), || {
            sample(&scrape(&r), "emq_router_events_total", &[]) == Some(last_seq)
        }),
        "emq_router_events_total never reached {last_seq}"
    );
    let (code, health) = http_get(r.http.as_deref().unwrap(), "/healthz", Duration::from_secs(5)).unwrap();
    assert_eq!(code, 200, "{health}");
}

#[test]
fn a_stalled_subscriber_loses_events_and_sees_the_gap_while_routing_goes_on() {
    // Small queues on both sides, and bodies in events so that the kernel's
    // socket buffers fill quickly too. High-water marks count messages, and
    // a message carries a burst (up to 1 MiB): at a few tens of thousands of
    // jobs/s, 100 of them held all 36 MB of events.
    let r = observed_router(&["--events-hwm", "4", "--events-bodies"]);
    let (mut sub, _jm, seen) = subscribe_then_start_jobmanager(&r, 4, || JobManagerProc::start(&r, &["-J", "4"]));
    // The subscriber reads nothing while 3,000 jobs with 4 KB bodies run:
    // the router must not wait for it.
    let mut c = Client::connect(&[&r.frontend]).unwrap();
    let big = "x".repeat(4096);
    let started = Instant::now();
    let mut done = 0;
    c.submit_many(
        (0..3_000).map(|_| Job::new("emq.echo").arg(big.as_str())),
        200,
        T,
        |_, r| {
            r.unwrap();
            done += 1;
        },
    )
    .unwrap();
    assert_eq!(done, 3_000, "every job finished in {:?}", started.elapsed());
    // Now read what is left, then send one more job: a loss shows when the
    // next event after it comes. What was received plus what was reported
    // missing is every event published.
    let mut received = seen.len() as u64;
    let mut missed = 0;
    let mut one_more: Option<JobId> = None;
    let last = loop {
        match sub.next(Duration::from_secs(1)).unwrap() {
            Some(got) => {
                received += 1;
                missed += got.missed;
                let its_end = got.event.kind.is_terminal()
                    && one_more
                        .as_ref()
                        .is_some_and(|id| got.event.job.as_deref() == Some(id.0.as_str()));
                if its_end {
                    break got.event.seq;
                }
            }
            None if one_more.is_none() => {
                let id = c.submit(&Job::new("emq.echo").arg("after")).unwrap();
                c.wait(&id, T).unwrap();
                one_more = Some(id);
            }
            None => panic!("the last job's end never came"),
        }
    };
    assert!(
        missed > 0,
        "a subscriber that did not read lost nothing ({received} received)"
    );
    assert_eq!(received + missed, last - seen[0].seq + 1, "received and missed add up");
    // The router published all of them: three per job and the join.
    let samples = scrape(&r);
    let published = sample(&samples, "emq_router_events_total", &[]).unwrap();
    assert!(published >= 9_001.0, "{published}");
}

#[test]
fn emq_cli_watch_prints_each_event_and_filters_by_kind_and_queue() {
    let r = observed_router(&[]);
    let _jm = JobManagerProc::start(&r, &["-Q", "alpha", "-Q", "beta", "-J", "2"]);
    assert!(wait_until(T, || emq_tests::jobmanager_count(&r) > 0));
    let r_watch = &r;
    std::thread::scope(|s| {
        let watcher = s.spawn(|| {
            emq_cli(
                r_watch,
                &[
                    "--json",
                    "watch",
                    "--kind",
                    "job.finished",
                    "--queue",
                    "beta",
                    "--count",
                    "3",
                    "--for",
                    "30",
                ],
                None,
                T,
            )
        });
        // Until the watcher's subscription is live, jobs keep going; it
        // exits once it has printed three.
        let mut c = Client::connect(&[&r.frontend]).unwrap();
        let deadline = Instant::now() + T;
        while !watcher.is_finished() && Instant::now() < deadline {
            for q in ["alpha", "beta"] {
                c.call(&Job::new("emq.echo").arg(q).queue(q), T).unwrap();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let out = watcher.join().unwrap();
        assert_eq!(out.code, Some(0), "{}", out.stderr);
        let lines: Vec<Json> = out.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 3, "{}", out.stdout);
        for l in &lines {
            assert_eq!(
                (l["kind"].as_str(), l["queue"].as_str()),
                (Some("job.finished"), Some("beta")),
                "{l}"
            );
            assert_eq!(l["outcome"], "ok");
        }
    });
    // A kind that does not exist is a usage error.
    let out = emq_cli(&r, &["watch", "--kind", "job.nope", "--count", "1"], None, T);
    assert_eq!(out.code, Some(64), "{}", out.stderr);
}

#[test]
fn a_jobmanager_serves_its_own_metrics() {
    let r = observed_router(&[]);
    let port = emq_tests::free_port();
    let addr = format!("127.0.0.1:{port}");
    let _jm = JobManagerProc::start(&r, &["-J", "2", "--max-jobs", "5", "--http", &port.to_string()]);
    let mut c = Client::connect(&[&r.frontend]).unwrap();
    for i in 0..20 {
        c.call(&Job::new("emq.echo").arg(i), T).unwrap();
    }
    for _ in 0..3 {
        assert!(c.call(&Job::new("emq.fail").arg("no"), T).is_err());
    }
    assert!(c.call(&Job::new("emq.crash"), T).is_err());
    // The snapshot is at most a second old: wait for the last job's end.
    let mut samples = Vec::new();
    let ended = |s: &[(String, BTreeMap<String, String>, f64)], o: &str| {
        sample(s, "emq_jobmanager_jobs_total", &[("outcome", o)])
    };
    assert!(
        wait_until(Duration::from_secs(10), || {
            samples = scrape_at(&addr);
            ended(&samples, "crashed") == Some(1.0)
        }),
        "{samples:?}"
    );
    assert_eq!(ended(&samples, "ok"), Some(20.0));
    assert_eq!(ended(&samples, "failed"), Some(3.0));
    assert_eq!(sample(&samples, "emq_jobmanager_workers_died_total", &[]), Some(1.0));
    // 24 jobs on workers recycled after 5 each: some were recycled, and
    // every worker that left was replaced.
    let recycled = sample(&samples, "emq_jobmanager_workers_recycled_total", &[]).unwrap();
    assert!(recycled >= 3.0, "{recycled}");
    let spawned = sample(&samples, "emq_jobmanager_workers_spawned_total", &[]).unwrap();
    // The first two, one per recycled worker, one for the crashed.
    assert!(
        spawned >= 2.0 + recycled + 1.0,
        "{spawned} spawned, {recycled} recycled"
    );
    assert_eq!(sample(&samples, "emq_jobmanager_connected", &[]), Some(1.0));
    let workers: f64 = ["busy", "idle"]
        .iter()
        .filter_map(|s| sample(&samples, "emq_jobmanager_workers", &[("state", s)]))
        .sum();
    assert_eq!(workers, 2.0);
    let (code, health) = http_get(&addr, "/healthz", Duration::from_secs(5)).unwrap();
    assert_eq!(code, 200, "{health}");
    assert!(health.contains(r#""connected":true"#), "{health}");
}

/// Pipelined jobs between emq's client, router and jobmanager cross in
/// BATCHes (protocol.md section 4): far fewer messages than jobs on both
/// of the router's sockets, counted by the router itself. Unbatched, each
/// job is 1 message in and 1 out on the client side and 3 on the
/// jobmanager side (REQUEST, REPLY, READY).
#[test]
fn pipelined_jobs_cross_the_router_in_batches() {
    let r = observed_router(&[]);
    let _jm = JobManagerProc::start(&r, &["-J", "2"]);
    let mut c = Client::connect(&[&r.frontend]).unwrap();
    c.call(&Job::new("emq.noop"), T).unwrap();
    const JOBS: usize = 5_000;
    // The snapshot /metrics serves is a second old at most: wait for the
    // one that has counted the jobs so far.
    let settled = |finished: usize| {
        let mut samples = Vec::new();
        let counted = wait_until(Duration::from_secs(10), || {
            samples = scrape(&r);
            let ok = [("queue", "default"), ("outcome", "ok")];
            sample(&samples, "emq_jobs_finished_total", &ok) == Some(finished as f64)
        });
        assert!(counted, "/metrics never counted {finished} jobs");
        samples
    };
    let before = settled(1);
    let mut ok = 0;
    c.submit_many((0..JOBS).map(|_| Job::new("emq.noop")), 1000, T, |_, res| {
        ok += usize::from(res.is_ok());
    })
    .unwrap();
    assert_eq!(ok, JOBS);
    let after = settled(1 + JOBS);
    let count = |samples: &[_], name: &str, endpoint: &str| {
        sample(samples, name, &[("endpoint", endpoint)]).unwrap_or_else(|| panic!("no {name} {endpoint}"))
    };
    let per_job = |endpoint: &str| {
        let messages: f64 = ["emq_router_messages_received_total", "emq_router_messages_sent_total"]
            .iter()
            .map(|name| count(&after, name, endpoint) - count(&before, name, endpoint))
            .sum();
        messages / JOBS as f64
    };
    let (frontend, backend) = (per_job("frontend"), per_job("backend"));
    eprintln!("messages per job: frontend {frontend:.3}, backend {backend:.3}");
    assert!(frontend < 0.5, "frontend: {frontend:.3} messages per job (2 unbatched)");
    assert!(backend < 1.0, "backend: {backend:.3} messages per job (3 unbatched)");
}
