//! Delayed jobs: a not-before time, journaled, waiting in the timers.

use super::*;
use crate::journal::{Row, Table};
use crate::tracking::{JobBody, JobRecord};

fn job_state(s: &mut Sim, id: &str) -> (JobState, Option<String>) {
    s.send(Endpoint::Admin, "admin", "q", Message::Query { of: id.into() });
    match s.drain().pop().unwrap().2.message {
        Message::Job { state, detail, .. } => (state, detail.not_before.map(|t| t.to_string())),
        other => panic!("{other:?}"),
    }
}

fn journaled_not_before(ops: &[StoreOp], id: &str) -> Option<i64> {
    record_put(ops, id)?.not_before_unix_ms
}

#[test]
fn a_delayed_job_is_journaled_acked_and_runs_only_when_due() {
    let mut s = Sim::default();
    s.alive.push("jm".into());
    s.inform("jm", &[(10, "default")]);
    s.ready("jm", 1);
    s.drain();
    s.request("c", "later", "default", "reply-requested,delay:30");
    let ops = s.r.take_store_ops();
    assert_eq!(
        journaled_not_before(&ops, "later"),
        Some(1_700_000_030_000),
        "journaled with its time"
    );
    let sent = s.drain();
    assert!(
        sent.iter().any(|(_, p, e)| p == "c"
            && e.message
                == Message::Ack {
                    of: "later".into(),
                    timing: None,
                    admission: None,
                    capabilities: Default::default(),
                }),
        "a delayed job is acknowledged like a guaranteed one: {sent:?}"
    );
    assert!(
        sent.iter().all(|(ep, _, _)| *ep != Endpoint::Backend),
        "not dispatched yet"
    );
    assert_eq!(
        job_state(&mut s, "later"),
        (JobState::Scheduled, Some("2023-11-14T22:13:50Z".into()))
    );
    // The router sleeps until then: its next deadline is the job's, or a
    // heartbeat, never a polling interval.
    s.run_for(Duration::from_millis(29_990));
    assert!(s.dispatched().is_empty());
    s.run_for(Duration::from_millis(20));
    let got: Vec<(String, Envelope)> = s
        .drain()
        .into_iter()
        .filter(|(ep, _, _)| *ep == Endpoint::Backend)
        .map(|(_, p, e)| (p, e))
        .filter(|(_, e)| matches!(e.message, Message::Request(_)))
        .collect();
    assert_eq!(got.len(), 1);
    match &got[0].1.message {
        Message::Request(r) => {
            assert_eq!(
                r.headers.not_before, None,
                "the time is the router's, not the jobmanager's"
            );
            assert!(r.headers.reply_requested);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(job_state(&mut s, "later").0, JobState::Running);
}

#[test]
fn a_not_before_time_in_the_past_runs_now_but_is_still_journaled() {
    let mut s = Sim::default();
    s.inform("jm", &[(10, "default")]);
    s.ready("jm", 1);
    s.drain();
    s.request("c", "past", "default", "not-before:2020-01-01T00:00:00Z");
    assert_eq!(journaled_not_before(&s.r.take_store_ops(), "past"), None);
    assert_eq!(s.dispatched(), d(&[("jm", "past")]));
}

#[test]
fn unreadable_times_are_refused_with_a_reason() {
    let mut s = Sim::default();
    for (id, headers) in [
        ("a", "delay:soon"),
        ("b", "not-before:tomorrow"),
        ("c", "delay:4000000000"),
    ] {
        s.request("c", id, "default", headers);
        match s.drain().pop().unwrap().2.message {
            Message::Error { of, code, reason } => {
                assert_eq!((of.as_str(), code), (id, ErrorCode::Invalid));
                assert!(reason.contains("delay") || reason.contains("100 years"), "{reason}");
            }
            other => panic!("{headers}: {other:?}"),
        }
    }
    assert!(s.r.take_store_ops().is_empty());
}

#[test]
fn delayed_jobs_are_bounded_and_cancelling_one_makes_room() {
    let mut s = Sim::new(Config {
        max_delayed: 2,
        ..Config::default()
    });
    s.request("c", "a", "default", "delay:60");
    s.request("c", "b", "default", "delay:60");
    s.request("c", "c", "default", "delay:60");
    let refused: Vec<ErrorCode> = s
        .drain()
        .into_iter()
        .filter_map(|(_, _, e)| match e.message {
            Message::Error { code, .. } => Some(code),
            _ => None,
        })
        .collect();
    assert_eq!(refused, vec![ErrorCode::QueueFull]);
    s.send(Endpoint::Frontend, "c", "x", Message::Cancel { of: "a".into() });
    s.request("c", "c", "default", "delay:60");
    assert!(s
        .drain()
        .iter()
        .all(|(_, _, e)| !matches!(e.message, Message::Error { .. })));
    assert_eq!(job_state(&mut s, "a").0, JobState::Cancelled);
    assert_eq!(job_state(&mut s, "c").0, JobState::Scheduled);
    // A job not delayed is not held to that bound.
    s.request("c", "now", "default", "");
    assert!(s.drain().is_empty());
}

#[test]
fn a_due_job_queues_behind_those_already_waiting() {
    let mut s = Sim::default();
    s.request("c", "delayed", "default", "delay:1");
    s.run_for(Duration::from_millis(500));
    s.request("c", "first", "default", "");
    s.run_for(Duration::from_secs(1));
    s.request("c", "second", "default", "");
    s.inform("jm", &[(10, "default")]);
    s.ready("jm", 3);
    assert_eq!(
        s.dispatched(),
        d(&[("jm", "first"), ("jm", "delayed"), ("jm", "second")]),
        "in the order they became due"
    );
}

#[test]
fn after_a_restart_a_delayed_job_waits_for_its_time_again() {
    let record = |not_before| JobRecord {
        id: None,
        queue: "default".into(),
        client: b"c".to_vec(),
        accepted_seq: 1,
        attempts: 0,
        max_attempts: 4,
        status: JobState::Scheduled,
        log: vec![],
        result: None,
        finished_unix_ms: None,
        not_before_unix_ms: Some(not_before),
        flow: None,
    };
    let body = JobBody {
        headers: "guarantee".into(),
        body: b"[]".to_vec(),
    };
    let mut s = Sim::default();
    s.r.restore(
        s.now,
        vec![
            Row::new(Table::Records, "future", &record(s.now.unix_ms + 10_000)),
            Row::new(Table::Bodies, "future", &body),
            Row::new(Table::Records, "overdue", &record(s.now.unix_ms - 10_000)),
            Row::new(Table::Bodies, "overdue", &body),
        ],
    )
    .unwrap();
    s.alive.push("jm".into());
    s.inform("jm", &[(10, "default")]);
    s.ready("jm", 2);
    assert_eq!(s.dispatched(), d(&[("jm", "overdue")]));
    s.run_for(Duration::from_millis(9_999));
    assert!(s.dispatched().is_empty());
    s.run_for(Duration::from_millis(1));
    assert_eq!(s.dispatched(), d(&[("jm", "future")]));
}
