//! Flow control with simulated time: coalescing and unique keys, expiry,
//! pause, concurrency and rate limits, and how they meet.

use super::*;
use emq_proto::views::{Admission, QueueChange, QueueView, Rate};

/// What each client was told, as `(client, of, outcome or "ACK"/code)`.
fn told(s: &mut Sim) -> Vec<(String, String, String)> {
    s.drain()
        .into_iter()
        .filter(|(ep, _, _)| *ep == Endpoint::Frontend)
        .map(|(_, peer, env)| match env.message {
            Message::Ack { of, admission, .. } => {
                let what = match admission {
                    Some(Admission {
                        deduplicated: true,
                        job,
                        ..
                    }) => format!("ACK dedup {job}"),
                    Some(Admission {
                        replaced: Some(old), ..
                    }) => format!("ACK replaced {old}"),
                    _ => "ACK".to_string(),
                };
                (peer, of, what)
            }
            Message::Reply(Reply::Result(r)) => (peer, r.of, r.outcome.as_str().to_string()),
            Message::Error { of, code, .. } => (peer, of, code.as_str().to_string()),
            other => (peer, String::new(), format!("{other:?}")),
        })
        .collect()
}

fn t(items: &[(&str, &str, &str)]) -> Vec<(String, String, String)> {
    items
        .iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect()
}

fn state(s: &mut Sim, id: &str) -> Option<JobState> {
    s.send(Endpoint::Admin, "admin", "q", Message::Query { of: id.into() });
    match s.drain().pop()?.2.message {
        Message::Job { state, .. } => Some(state),
        _ => None,
    }
}

/// QUEUE_SET: the answer, and the jobs it let go.
fn queue_set(s: &mut Sim, queue: &str, change: QueueChange) -> (QueueView, Vec<(String, String)>) {
    s.send(
        Endpoint::Admin,
        "admin",
        "set",
        Message::QueueSet {
            queue: queue.into(),
            change,
        },
    );
    let mut view = None;
    let mut sent = Vec::new();
    for (ep, peer, env) in s.drain() {
        match (ep, env.message) {
            (Endpoint::Admin, Message::Reply(Reply::Notice(n))) => view = Some(n.view().unwrap()),
            (Endpoint::Backend, Message::Request(_)) => sent.push((peer, env.msgid)),
            _ => {}
        }
    }
    (view.expect("an answer"), sent)
}

#[test]
fn coalescing_keeps_the_latest_waiting_job_in_the_first_ones_place() {
    let mut s = Sim::default();
    s.request("a", "a1", "default", "reply-requested,coalesce:k");
    s.request("b", "other", "default", "");
    s.request("b", "b1", "default", "reply-requested,coalesce:k");
    s.request("c", "c1", "default", "coalesce:k");
    assert_eq!(
        told(&mut s),
        t(&[
            ("a", "a1", "ACK"),
            ("b", "b1", "ACK replaced a1"),
            ("a", "a1", "superseded"),
            ("c", "c1", "ACK replaced b1"),
            ("b", "b1", "superseded"),
        ])
    );
    s.inform("jm", &[(10, "default")]);
    s.ready("jm", 5);
    assert_eq!(
        s.dispatched(),
        d(&[("jm", "c1"), ("jm", "other")]),
        "the latest, where the first waited"
    );
    assert_eq!(state(&mut s, "a1"), None, "a plain superseded job is not kept");
}

#[test]
fn a_running_job_is_not_coalesced_the_next_waits_behind_it() {
    let mut s = Sim::default();
    s.inform("jm", &[(10, "default")]);
    s.ready("jm", 1);
    s.request("c", "first", "default", "coalesce:k");
    assert_eq!(s.dispatched(), d(&[("jm", "first")]));
    s.request("c", "second", "default", "coalesce:k");
    s.request("c", "third", "default", "coalesce:k");
    assert_eq!(state(&mut s, "first"), Some(JobState::Running));
    assert_eq!(state(&mut s, "third"), Some(JobState::Queued));
    s.reply("jm", "first");
    s.ready("jm", 1);
    assert_eq!(s.dispatched(), d(&[("jm", "third")]));
}

#[test]
fn coalescing_meets_delayed_jobs() {
    let mut s = Sim::default();
    // A job waiting for its time is replaced by one due now...
    s.request("c", "later", "default", "reply-requested,delay:60,coalesce:k");
    s.request("c", "now", "default", "reply-requested,coalesce:k");
    assert!(told(&mut s).contains(&("c".into(), "later".into(), "superseded".into())));
    assert_eq!(s.r.timers.len(), 0, "its timer went with it");
    // ...and a waiting one by one with a time of its own, which waits for it.
    s.request("c", "again-later", "default", "reply-requested,delay:5,coalesce:k");
    assert!(told(&mut s).contains(&("c".into(), "now".into(), "superseded".into())));
    s.alive.push("jm".into());
    s.inform("jm", &[(10, "default")]);
    s.ready("jm", 2);
    assert!(s.dispatched().is_empty());
    s.run_for(Duration::from_secs(5));
    assert_eq!(s.dispatched(), d(&[("jm", "again-later")]));
}

#[test]
fn a_unique_key_makes_one_job_and_every_asker_gets_its_result() {
    let mut s = Sim::default();
    s.request("a", "a1", "default", "reply-requested,unique:report");
    s.request("b", "b1", "default", "reply-requested,unique:report");
    s.request("c", "c1", "other-queue", "unique:report");
    assert_eq!(
        told(&mut s),
        t(&[("a", "a1", "ACK"), ("b", "b1", "ACK dedup a1"), ("c", "c1", "ACK")]),
        "keys are per queue"
    );
    s.inform("jm", &[(10, "default")]);
    s.ready("jm", 5);
    assert_eq!(s.dispatched(), d(&[("jm", "a1")]));
    s.request("d", "d1", "default", "unique:report");
    assert_eq!(
        told(&mut s),
        t(&[("d", "d1", "ACK dedup a1")]),
        "running holds the key too"
    );
    s.reply("jm", "a1");
    let results: Vec<_> = told(&mut s);
    assert!(results.contains(&("a".into(), "a1".into(), "ok".into())));
    assert!(results.contains(&("b".into(), "a1".into(), "ok".into())), "{results:?}");
    s.request("e", "e1", "default", "unique:report");
    assert_eq!(told(&mut s), t(&[("e", "e1", "ACK")]), "free again once it ended");
}

#[test]
fn a_unique_key_is_released_when_its_job_dies_is_cancelled_or_expires() {
    let mut s = Sim::new(Config {
        default_retries: 0,
        ..Config::default()
    });
    s.inform("jm", &[(10, "default")]);
    s.ready("jm", 1);
    s.request("c", "g", "default", "guarantee,unique:k");
    s.dispatched();
    let r = ResultFrames {
        of: "g".into(),
        outcome: Outcome::Failed,
        content_type: ContentType::Json,
        body: br#"{"value":null,"error":"x"}"#.to_vec(),
    };
    s.send(Endpoint::Backend, "jm", "rep", Message::Reply(Reply::Result(r)));
    assert_eq!(state(&mut s, "g"), Some(JobState::Dead));
    s.drain();
    s.request("c", "after-dead", "default", "unique:k");
    assert_eq!(told(&mut s), t(&[("c", "after-dead", "ACK")]));
    s.send(
        Endpoint::Frontend,
        "c",
        "x",
        Message::Cancel {
            of: "after-dead".into(),
        },
    );
    s.drain();
    s.request("c", "after-cancel", "default", "unique:k,expires:5");
    assert_eq!(told(&mut s), t(&[("c", "after-cancel", "ACK")]));
    s.advance(Duration::from_secs(6));
    s.request("c", "after-expiry", "default", "unique:k");
    assert_eq!(told(&mut s), t(&[("c", "after-expiry", "ACK")]));
}

#[test]
fn a_unique_key_survives_a_restart_with_its_job_and_no_longer() {
    let mut s = Sim::default();
    s.inform("jm", &[(10, "default")]);
    s.ready("jm", 1);
    s.request("c", "g", "default", "guarantee,unique:k");
    s.dispatched();
    s.commit();
    s.restart(Duration::from_secs(1));
    s.request("c", "again", "default", "unique:k");
    assert_eq!(
        told(&mut s),
        t(&[("c", "again", "ACK dedup g")]),
        "the lock came back with its job"
    );
    s.inform("jm", &[(10, "default")]);
    s.ready("jm", 1);
    assert_eq!(s.dispatched(), d(&[("jm", "g")]));
    s.reply("jm", "g");
    s.drain();
    s.request("c", "free", "default", "unique:k");
    assert_eq!(told(&mut s), t(&[("c", "free", "ACK")]));
}

#[test]
fn an_expired_job_never_runs_and_its_client_is_told() {
    let mut s = Sim::default();
    s.request("c", "e", "default", "reply-requested,expires:5");
    s.request(
        "c",
        "g",
        "default",
        "reply-requested,guarantee,expires-at:2023-11-14T22:13:25Z",
    );
    s.drain();
    // The router sleeps until then.
    assert_eq!(
        s.r.next_deadline(),
        s.now.mono + Duration::from_secs(1),
        "heartbeat first"
    );
    s.advance(Duration::from_secs(6));
    let told = told(&mut s);
    assert!(told.contains(&("c".into(), "e".into(), "expired".into())), "{told:?}");
    assert!(told.contains(&("c".into(), "g".into(), "expired".into())), "{told:?}");
    assert_eq!(state(&mut s, "g"), Some(JobState::Expired));
    s.inform("jm", &[(10, "default")]);
    s.ready("jm", 2);
    assert!(s.dispatched().is_empty());
}

#[test]
fn a_job_past_its_expiry_is_not_dispatched_even_before_its_timer_is_seen() {
    let mut s = Sim::default();
    s.request("c", "e", "default", "reply-requested,expires:1");
    s.drain();
    // Time passes without a tick; a slot arrives first.
    s.now = s.now.after(Duration::from_secs(2));
    s.inform("jm", &[(10, "default")]);
    s.ready("jm", 1);
    assert!(s.dispatched().is_empty());
    s.request("c", "fresh", "default", "");
    assert_eq!(s.dispatched(), d(&[("jm", "fresh")]), "the slot was not spent");
}

#[test]
fn a_paused_queue_keeps_its_jobs_and_the_pause_is_journaled() {
    let mut s = Sim::default();
    s.inform("jm", &[(10, "default")]);
    s.ready("jm", 3);
    let (view, _) = queue_set(
        &mut s,
        "default",
        QueueChange {
            paused: Some(true),
            ..QueueChange::default()
        },
    );
    assert!(view.status.paused);
    s.request("c", "j1", "default", "guarantee");
    assert!(s.dispatched().is_empty());
    s.commit();
    s.restart(Duration::from_secs(1));
    s.alive.push("jm".into());
    s.inform("jm", &[(10, "default")]);
    s.ready("jm", 3);
    assert!(s.dispatched().is_empty(), "still paused after a restart");
    let (_, sent) = queue_set(
        &mut s,
        "default",
        QueueChange {
            paused: Some(false),
            ..QueueChange::default()
        },
    );
    assert_eq!(sent, d(&[("jm", "j1")]));
    s.commit();
    assert!(
        !s.journal.0.keys().any(|(t, _)| *t == Table::Queues),
        "a queue without controls has no row"
    );
}

#[test]
fn concurrency_is_counted_across_jobmanagers() {
    let mut s = Sim::default();
    queue_set(
        &mut s,
        "default",
        QueueChange {
            concurrency: Some(2),
            ..QueueChange::default()
        },
    );
    s.inform("jm1", &[(10, "default")]);
    s.inform("jm2", &[(10, "default")]);
    s.ready("jm1", 3);
    s.ready("jm2", 3);
    for i in 0..5 {
        s.request("c", &format!("j{i}"), "default", "");
    }
    let sent = s.dispatched();
    assert_eq!(sent.len(), 2, "{sent:?}");
    // One ends on jm1: the next may go to jm2, which has free slots.
    let (jm, id) = sent[0].clone();
    s.reply(&jm, &id);
    assert_eq!(s.dispatched().len(), 1);
    // Raising the limit dispatches at once.
    let (_, sent) = queue_set(
        &mut s,
        "default",
        QueueChange {
            concurrency: Some(10),
            ..QueueChange::default()
        },
    );
    assert_eq!(sent.len(), 2);
}

#[test]
fn a_paused_queue_with_a_limit_resumes_within_the_limit() {
    let mut s = Sim::default();
    queue_set(
        &mut s,
        "default",
        QueueChange {
            paused: Some(true),
            concurrency: Some(1),
            ..QueueChange::default()
        },
    );
    s.inform("jm", &[(10, "default")]);
    s.ready("jm", 4);
    s.request("c", "a", "default", "");
    s.request("c", "b", "default", "");
    assert!(s.dispatched().is_empty());
    let (view, sent) = queue_set(
        &mut s,
        "default",
        QueueChange {
            paused: Some(false),
            ..QueueChange::default()
        },
    );
    assert_eq!((view.status.paused, view.status.concurrency), (false, Some(1)));
    assert_eq!(sent, d(&[("jm", "a")]));
}

#[test]
fn a_rate_spaces_dispatches_evenly() {
    let mut s = Sim::default();
    s.alive.push("jm".into());
    queue_set(
        &mut s,
        "default",
        QueueChange {
            rate: Some(Rate { jobs: 2, per_ms: 1000 }),
            ..QueueChange::default()
        },
    );
    s.inform("jm", &[(10, "default")]);
    s.ready("jm", 10);
    for i in 0..6 {
        s.request("c", &format!("j{i}"), "default", "");
    }
    assert_eq!(s.dispatched().len(), 1, "one at once, no burst");
    let start = s.now.mono;
    let mut times = Vec::new();
    while times.len() < 5 {
        s.run_for(Duration::from_millis(100));
        for _ in s.dispatched() {
            times.push(s.now.mono - start);
        }
        assert!(s.now.mono - start < Duration::from_secs(5));
    }
    // Then one every 500 ms.
    let ms: Vec<u128> = times.iter().map(|t| t.as_millis() / 100 * 100).collect();
    assert_eq!(ms, vec![500, 1000, 1500, 2000, 2500], "{times:?}");
}

#[test]
fn a_paused_queue_counts_against_its_bound() {
    let mut s = Sim::new(Config {
        max_waiting_per_queue: 1,
        ..Config::default()
    });
    s.inform("jm", &[(10, "default")]);
    s.ready("jm", 5);
    queue_set(
        &mut s,
        "default",
        QueueChange {
            paused: Some(true),
            ..QueueChange::default()
        },
    );
    s.request("c", "a", "default", "reply-requested");
    s.request("c", "b", "default", "reply-requested");
    assert_eq!(told(&mut s), t(&[("c", "b", "queue-full")]));
}

#[test]
fn unreadable_keys_and_expiries_are_refused() {
    let mut s = Sim::default();
    for (id, headers) in [("a", "coalesce:x,unique:y"), ("b", "unique:"), ("c", "expires:soon")] {
        s.request("c", id, "default", headers);
        assert_eq!(told(&mut s), t(&[("c", id, "invalid")]), "{headers}");
    }
}
