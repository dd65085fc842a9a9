//! Events and counters: every job's story in order with exactly one end,
//! sequence numbers without gaps, and counters that agree with the events.

use std::collections::BTreeMap;

use emq_proto::events::{Event, EventKind};

use super::*;

fn events_sim() -> Sim {
    Sim::new(Config {
        events: Some("inproc://events".into()),
        events_bodies: true,
        http: Some("127.0.0.1:0".into()),
        retry_backoff: Duration::from_millis(100),
        default_retries: 1,
        ..Config::default()
    })
}

/// The events encoded since the last call, as the transport publishes them
/// (one envelope per topic) and a subscriber reads them (sorted by seq).
fn take_events(s: &mut Sim, into: &mut Vec<Event<'static>>) {
    let mut burst = EventBurst::default();
    s.r.swap_events(&mut burst);
    burst.close(1);
    let mut events = Vec::new();
    for (part, (topic, frame)) in burst.messages().enumerate() {
        let env = emq_proto::events::read_envelope(frame).expect("envelopes are valid JSON");
        assert_eq!(env.part as usize, part, "parts are numbered");
        for event in env.events {
            let mut expected = Vec::new();
            event.write_topic(&mut expected);
            assert_eq!(topic, expected.as_slice(), "topic is KIND QUEUE");
            events.push(event);
        }
    }
    events.sort_by_key(|e| e.seq);
    into.extend(events);
}

#[test]
fn every_job_tells_its_story_in_order_and_the_counters_agree() {
    let mut s = events_sim();
    let mut events = Vec::new();
    s.inform("jm1", &[(10, "q")]);
    s.inform("jm2", &[(10, "q")]);
    s.ready("jm1", 2);
    s.ready("jm2", 1);
    // ok, fails, runs on jm2 which dies (sent there third), one cancelled
    // while waiting, one guaranteed that fails until dead-lettered.
    for id in ["ok", "bad", "lost"] {
        s.request("c", id, "q", "reply-requested");
    }
    s.request("c", "waits", "q", "");
    s.request("c", "g", "q", "guarantee");
    let sent = s.dispatched();
    assert_eq!(sent.len(), 3);
    let lost_on = sent
        .iter()
        .find(|(_, id)| id == "lost")
        .map(|(jm, _)| jm.clone())
        .unwrap();
    let other = if lost_on == "jm1" { "jm2" } else { "jm1" };
    s.send(Endpoint::Frontend, "c", "x", Message::Cancel { of: "waits".into() });
    for (jm, id) in &sent {
        match id.as_str() {
            "ok" => s.reply(jm, id),
            "bad" => s.reply_with(jm, id, Outcome::Failed),
            _ => {}
        }
    }
    s.alive = vec![other.to_string()];
    s.ready(other, 2);
    // The lost job's jobmanager goes silent and is declared dead; the
    // guaranteed job fails, is retried, fails again and is dead-lettered.
    for _ in 0..2 {
        s.run_for(Duration::from_secs(8));
        for (jm, id) in s.dispatched() {
            match id.as_str() {
                "g" => s.reply_with(&jm, &id, Outcome::Failed),
                "lost" => s.reply(&jm, &id),
                _ => panic!("{id} dispatched again"),
            }
            s.ready(&jm, 1);
        }
    }
    take_events(&mut s, &mut events);

    // Sequence numbers from 1 without gaps, one router instance.
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.seq, i as u64 + 1);
        assert_eq!(e.router, events[0].router);
    }
    let mut story: BTreeMap<String, Vec<EventKind>> = BTreeMap::new();
    for e in &events {
        if let Some(job) = &e.job {
            story.entry(job.to_string()).or_default().push(e.kind);
        }
    }
    use EventKind as K;
    assert_eq!(story["ok"], [K::Submitted, K::Dispatched, K::Finished]);
    assert_eq!(story["bad"], [K::Submitted, K::Dispatched, K::Failed]);
    assert_eq!(story["waits"], [K::Submitted, K::Cancelled]);
    assert_eq!(
        story["lost"],
        [K::Submitted, K::Dispatched, K::Abandoned, K::Dispatched, K::Finished]
    );
    assert_eq!(
        story["g"],
        [K::Submitted, K::Dispatched, K::Retry, K::Dispatched, K::Dead]
    );
    let ended = |id: &str| events.iter().rev().find(|e| e.job.as_deref() == Some(id)).unwrap();
    assert_eq!(ended("bad").outcome, Some(Outcome::Failed));
    assert_eq!(ended("ok").body.as_deref(), Some(r#"{"value":1}"#), "--events-bodies");
    assert!(events
        .iter()
        .any(|e| e.kind == K::JobManagerLeft && e.jobmanager.as_deref() == Some(&lost_on)));
    assert_eq!(events.iter().filter(|e| e.kind == K::JobManagerJoined).count(), 2);

    // The counters STATUS shows agree with the events.
    let status = s.r.status_view(s.now.mono);
    let c = &status.queues["q"].counts;
    assert_eq!(c.submitted, 5);
    let finished: BTreeMap<&str, u64> = c.finished.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    assert_eq!(finished, BTreeMap::from([("ok", 2), ("failed", 2), ("cancelled", 1)]));
    assert_eq!((c.dead, c.retried, c.abandoned), (1, 1, 1));
    let terminal = events.iter().filter(|e| e.kind.is_terminal()).count() as u64;
    assert_eq!(terminal, c.finished.values().sum::<u64>());
    // The time histograms saw every end and every first dispatch.
    let snapshot = s.r.metrics_snapshot(s.now, crate::metrics::LoopStats::default());
    let times = &snapshot.times["q"];
    assert_eq!(times.end_to_end.count(), 5);
    assert_eq!(times.waiting.count(), 4, "the cancelled job was never dispatched");
    assert_eq!(snapshot.stats.events, events.len() as u64);
}

#[test]
fn with_events_off_nothing_is_encoded_but_counters_still_count() {
    let mut s = Sim::default();
    s.inform("jm", &[(10, "q")]);
    s.ready("jm", 1);
    s.request("c", "a", "q", "");
    s.reply("jm", "a");
    let mut burst = EventBurst::default();
    s.r.swap_events(&mut burst);
    assert!(burst.is_empty() && !s.r.events_on());
    let status = s.r.status_view(s.now.mono);
    assert_eq!(status.queues["q"].counts.finished.get("ok"), Some(&1));
}

#[test]
fn a_deduplicated_submission_names_the_job_that_answers_it() {
    let mut s = events_sim();
    let mut events = Vec::new();
    s.request("c", "u1", "q", "unique:k");
    s.request("c", "u2", "q", "unique:k");
    take_events(&mut s, &mut events);
    let kinds: Vec<_> = events
        .iter()
        .map(|e| (e.kind, e.job.as_deref().unwrap_or("")))
        .collect();
    assert_eq!(kinds, [(EventKind::Submitted, "u1"), (EventKind::Deduplicated, "u2")]);
    assert_eq!(events[1].detail.as_deref(), Some("u1"));
    let status = s.r.status_view(s.now.mono);
    assert_eq!(status.queues["q"].counts.deduplicated, 1);
}

#[test]
fn a_job_is_no_bigger_for_knowing_when_it_became_ready() {
    // A million may wait: the stamp lives in the room the small fields leave.
    let size = std::mem::size_of::<crate::core::jobs::Job>();
    assert!(size <= 112, "a Job is {size} bytes");
}

#[test]
fn with_nobody_subscribed_events_are_numbered_but_not_encoded() {
    let mut s = events_sim();
    let mut events = Vec::new();
    s.r.set_events_wanted(false);
    s.request("c", "a", "q", "");
    s.request("c", "b", "q", "");
    assert_eq!(s.r.pending_events(), 0, "nothing encoded for nobody");
    s.r.set_events_wanted(true);
    s.request("c", "c", "q", "");
    take_events(&mut s, &mut events);
    assert_eq!(events.len(), 1);
    assert_eq!(
        (events[0].seq, events[0].job.as_deref()),
        (3, Some("c")),
        "the count went on"
    );
}

#[test]
fn bodies_go_into_events_up_to_their_limit() {
    let mut s = events_sim();
    let mut events = Vec::new();
    let small = Request {
        queue: "q".into(),
        headers: Headers::default(),
        body: br#"["small"]"#.to_vec(),
    };
    let big = Request {
        body: vec![b' '; crate::core::observe::MAX_EVENT_BODY + 1],
        ..small.clone()
    };
    s.send(Endpoint::Frontend, "c", "small", Message::Request(small));
    s.send(Endpoint::Frontend, "c", "big", Message::Request(big));
    take_events(&mut s, &mut events);
    assert_eq!(events[0].body.as_deref(), Some(r#"["small"]"#));
    assert_eq!(
        (events[1].job.as_deref(), events[1].body.as_deref()),
        (Some("big"), None)
    );
    assert!(s.r.pending_event_bytes() == 0, "taken");
}
