//! emq across a network: jobmanagers behind a link with a real round trip
//! (`emq_tests::netem::DelayProxy`, 10 ms each way), or on loopback to
//! compare.

use std::time::{Duration, Instant};

use emq_client::{Client, Job};
use emq_tests::netem::DelayProxy;
use emq_tests::{wait_until, JobManagerProc, RouterProc};

const T: Duration = Duration::from_secs(30);

/// With the shipped defaults, 2 jobmanagers of 2 workers each, 20 ms away
/// from the router, run no-op jobs far faster than one job per slot per
/// round trip (4 slots / 21 ms = 190 jobs/s, what they did when slots were
/// the workers): the jobmanagers ask for enough jobs to cover the round trip.
#[test]
fn remote_jobmanagers_are_not_bound_by_the_round_trip() {
    let r = RouterProc::start(&[]);
    let links: Vec<DelayProxy> = (0..2)
        .map(|_| DelayProxy::start(&r.backend, Duration::from_millis(10)))
        .collect();
    let jms: Vec<JobManagerProc> = links
        .iter()
        .map(|l| JobManagerProc::start_at(&l.endpoint, &["-J", "2"]))
        .collect();
    assert!(
        wait_until(T, || emq_tests::jobmanager_count(&r) == 2),
        "the jobmanagers never joined through their links"
    );
    let mut c = Client::connect(&[&r.frontend]).unwrap();
    // Warm-up: the jobmanagers time jobs and round trips.
    let mut run = |n: usize| {
        let started = Instant::now();
        let mut done = 0;
        c.submit_many((0..n).map(|_| Job::new("emq.noop")), 4000, T, |_, res| {
            res.expect("a no-op job succeeds");
            done += 1;
        })
        .unwrap();
        assert_eq!(done, n);
        n as f64 / started.elapsed().as_secs_f64()
    };
    run(2_000);
    let rate = run(20_000);
    println!("{rate:.0} jobs/s through a 20 ms round trip");
    assert!(rate >= 5_000.0, "{rate:.0} jobs/s through a 20 ms round trip");
    drop(jms);
}

/// A jobmanager cut off from its router for 2 s (both sides' liveness window
/// is 1 s, the router's heartbeat 100 ms) while running 100 jobs of 250 ms:
/// after 300 ms of silence it starts none of the jobs it holds, the router
/// gives them to another jobmanager after its window, and after the link
/// heals every job has ended. Returns how many ran twice.
fn jobs_run_twice_across_a_partition(flags: &[&str]) -> usize {
    let r = RouterProc::start(&["--heartbeat-ms", "100", "--liveness-ms", "1000"]);
    let link = DelayProxy::start(&r.backend, Duration::from_millis(10));
    let _cut_off = JobManagerProc::start_at(&link.endpoint, flags);
    let mut c = Client::connect(&[&r.frontend]).unwrap();
    let dir = emq_tests::Scratch::new();
    let runs = dir.path("runs");
    let n = 100;
    let job = |i: usize| {
        let script = format!("echo j{i} >> {}; sleep 0.25", runs.display());
        Job::new("emq.exec").arg("sh").arg("-c").arg(script)
    };
    let lines = || std::fs::read_to_string(&runs).map_or(0, |t| t.lines().count());
    let ids: Vec<_> = (0..n).map(|i| c.submit(&job(i)).unwrap()).collect();
    assert!(wait_until(T, || lines() >= 4), "the jobs never started");
    link.cut();
    // The other jobmanager, on a direct link, takes over what comes back.
    let _other = JobManagerProc::start(&r, &["-J", "2"]);
    assert!(wait_until(T, || lines() >= 20), "the other jobmanager ran nothing");
    let started = Instant::now();
    assert!(wait_until(T, || started.elapsed() >= Duration::from_secs(2)));
    link.heal();
    for id in &ids {
        c.wait(id, T).expect("every job ends");
    }
    let text = std::fs::read_to_string(&runs).unwrap();
    let mut counts = std::collections::HashMap::new();
    for line in text.lines() {
        *counts.entry(line).or_insert(0) += 1;
    }
    assert_eq!(counts.len(), n, "every job ran");
    let twice = counts.values().filter(|c| **c > 1).count();
    println!("{flags:?}: {twice} of {n} jobs ran twice across the partition");
    twice
}

/// With a deep prefetch: jobs run twice are the 2 running at the cut, those
/// its 2 workers started in the 300 ms before it held back (at most 2 each),
/// and those whose result was on the wire at the cut (at most one per
/// worker). Before it held its jobs back, 40 of 300 jobs of 50 ms ran twice.
#[test]
fn a_partitioned_jobmanager_runs_nothing_twice_but_what_was_running() {
    let twice = jobs_run_twice_across_a_partition(&["-J", "2", "--prefetch", "200"]);
    assert!(
        twice <= 8,
        "{twice} jobs ran twice, more than the 8 the cut can explain"
    );
}

/// With the defaults, jobs four times the round trip get no slot beyond the
/// workers, so the jobmanager holds only what runs: jobs run twice are those
/// running at the cut and those whose result was on the wire (one per
/// worker each).
#[test]
fn with_the_defaults_a_partition_reruns_at_most_what_its_workers_had() {
    let twice = jobs_run_twice_across_a_partition(&["-J", "2"]);
    assert!(
        twice <= 4,
        "{twice} jobs ran twice, more than its 2 workers had in hand"
    );
}

/// kill -9 of a jobmanager (`one_way` away, or on loopback) closes its
/// connection: the router gives its running job to another jobmanager within
/// a second, not after its liveness window (5 s here).
fn killed_jobmanagers_job_runs_elsewhere_within_a_second(one_way: Option<Duration>) {
    let r = RouterProc::start(&[]);
    let link = one_way.map(|d| DelayProxy::start(&r.backend, d));
    let backend = link.as_ref().map_or(&r.backend, |l| &l.endpoint);
    let slow = ["-J", "1", "--heartbeat-ms", "1000", "--liveness-ms", "5000"];
    let mut doomed = JobManagerProc::start_at(backend, &slow);
    let mut c = Client::connect(&[&r.frontend]).unwrap();
    let dir = emq_tests::Scratch::new();
    let marker = dir.path("slept");
    // Sleeps the first time it runs, returns at once the second.
    let id = c
        .submit(
            &Job::new("emq.sleep")
                .arg(30.0)
                .kwarg("once_marker", marker.to_str().unwrap()),
        )
        .unwrap();
    assert!(wait_until(T, || marker.exists()), "the job never started");
    let _survivor = JobManagerProc::start(&r, &slow);
    assert!(
        wait_until(T, || emq_tests::jobmanager_count(&r) == 2),
        "the second jobmanager never joined"
    );
    let killed = Instant::now();
    doomed.proc.kill9();
    let result = c.wait(&id, T).expect("the job's result");
    assert_eq!(
        result.value,
        serde_json::json!("woke at once"),
        "it ran again on the survivor"
    );
    assert!(
        killed.elapsed() < Duration::from_secs(1),
        "ran again after {:?}",
        killed.elapsed()
    );
}

#[test]
fn a_killed_jobmanagers_job_goes_elsewhere_at_once() {
    killed_jobmanagers_job_runs_elsewhere_within_a_second(None);
}

#[test]
fn a_remote_jobmanager_killed_has_its_job_run_elsewhere_within_a_second() {
    killed_jobmanagers_job_runs_elsewhere_within_a_second(Some(Duration::from_millis(10)));
}
