//! Routing: slots, weights, fair rotation, bounds, unknown queues.

use super::*;

#[test]
fn inform_is_acked_with_timing() {
    let mut s = Sim::default();
    s.inform("jm1", &[(10, "default")]);
    let out = s.drain();
    assert_eq!(out.len(), 1);
    let (ep, p, env) = &out[0];
    assert_eq!((*ep, p.as_str()), (Endpoint::Backend, "jm1"));
    assert_eq!(
        env.message,
        Message::Ack {
            of: "inform".into(),
            timing: Some(Timing {
                heartbeat_ms: 1000,
                liveness_ms: 5000
            }),
            admission: None,
            capabilities: Default::default(),
        }
    );
}

#[test]
fn job_waits_until_a_slot_then_result_returns_to_client() {
    let mut s = Sim::default();
    s.inform("jm1", &[(10, "default")]);
    s.drain();
    s.request("c1", "job1", "default", "reply-requested");
    assert!(s.dispatched().is_empty(), "no slot yet");
    s.ready("jm1", 1);
    assert_eq!(s.dispatched(), d(&[("jm1", "job1")]));
    s.reply("jm1", "job1");
    let out = s.drain();
    assert_eq!(out.len(), 1);
    let (ep, p, env) = &out[0];
    assert_eq!((*ep, p.as_str()), (Endpoint::Frontend, "c1"));
    let Message::Reply(Reply::Result(r)) = &env.message else {
        panic!("{env:?}")
    };
    assert_eq!(r.of, "job1");
    assert_eq!(r.body, br#"{"value":1}"#);
}

#[test]
fn slots_are_counted_per_ready() {
    let mut s = Sim::default();
    s.inform("jm1", &[(10, "default")]);
    s.ready("jm1", 2);
    for i in 0..3 {
        s.request("c", &format!("j{i}"), "default", "");
    }
    assert_eq!(s.dispatched(), d(&[("jm1", "j0"), ("jm1", "j1")]));
    s.reply("jm1", "j0");
    assert!(s.dispatched().is_empty(), "a REPLY is not a READY");
    s.ready("jm1", 1);
    assert_eq!(s.dispatched(), d(&[("jm1", "j2")]));
}

#[test]
fn higher_weight_first_and_equal_weights_rotate_lru() {
    let mut s = Sim::default();
    s.inform("low", &[(1, "q")]);
    s.inform("a", &[(10, "q")]);
    s.inform("b", &[(10, "q")]);
    s.ready("low", 5);
    s.ready("a", 5);
    s.ready("b", 5);
    s.drain();
    for i in 0..4 {
        s.request("c", &format!("j{i}"), "q", "");
    }
    let got: Vec<String> = s.dispatched().into_iter().map(|(p, _)| p).collect();
    assert_eq!(got, vec!["a", "b", "a", "b"]);
    // Once the heavy ones are full, the light one gets work.
    for i in 4..8 {
        s.request("c", &format!("j{i}"), "q", "");
    }
    let got: Vec<String> = s.dispatched().into_iter().map(|(p, _)| p).collect();
    assert_eq!(got, vec!["a", "b", "a", "b"]);
    // 10 slots of weight 10 used up: the next two go to `low`.
    for i in 8..12 {
        s.request("c", &format!("j{i}"), "q", "");
    }
    let got: Vec<String> = s.dispatched().into_iter().map(|(p, _)| p).collect();
    assert_eq!(got, vec!["a", "b", "low", "low"]);
}

#[test]
fn ready_takes_from_its_heaviest_queue_first() {
    let mut s = Sim::default();
    s.inform("jm", &[(1, "light"), (9, "heavy")]);
    s.request("c", "l1", "light", "");
    s.request("c", "h1", "heavy", "");
    s.ready("jm", 1);
    assert_eq!(s.dispatched(), d(&[("jm", "h1")]));
    s.ready("jm", 1);
    assert_eq!(s.dispatched(), d(&[("jm", "l1")]));
}

#[test]
fn full_queue_answers_error_and_keeps_what_it_has() {
    let mut s = Sim::new(Config {
        max_waiting_per_queue: 2,
        ..Config::default()
    });
    s.request("c", "j1", "q", "");
    s.request("c", "j2", "q", "");
    s.request("c", "j3", "q", "");
    let out = s.drain();
    assert_eq!(out.len(), 1);
    assert!(matches!(&out[0].2.message, Message::Error { of, code: ErrorCode::QueueFull, .. } if of == "j3"));
    s.inform("jm", &[(10, "q")]);
    s.ready("jm", 3);
    assert_eq!(s.dispatched(), d(&[("jm", "j1"), ("jm", "j2")]));
}

#[test]
fn total_bound_applies_across_queues() {
    let mut s = Sim::new(Config {
        max_waiting_total: 2,
        ..Config::default()
    });
    s.request("c", "j1", "a", "");
    s.request("c", "j2", "b", "");
    s.request("c", "j3", "c", "");
    assert!(matches!(
        s.drain().as_slice(),
        [(
            _,
            _,
            Envelope {
                message: Message::Error {
                    code: ErrorCode::QueueFull,
                    ..
                },
                ..
            }
        )]
    ));
}

#[test]
fn unknown_queue_waits_or_reroutes() {
    let mut s = Sim::default();
    s.inform("jm", &[(10, "default")]);
    s.ready("jm", 1);
    s.request("c", "j1", "nobody", "");
    assert!(s.dispatched().is_empty(), "waits for its queue");
    s.inform("jm2", &[(10, "nobody")]);
    s.ready("jm2", 1);
    assert_eq!(s.dispatched(), d(&[("jm2", "j1")]));

    let mut s = Sim::new(Config {
        unknown_queue: UnknownQueuePolicy::Reroute,
        ..Config::default()
    });
    s.inform("jm", &[(10, "default")]);
    s.ready("jm", 1);
    s.request("c", "j1", "nobody", "");
    assert_eq!(s.dispatched(), d(&[("jm", "j1")]));
}

#[test]
fn eventmq_jobmanagers_are_asked_for_every_reply() {
    let mut s = Sim::default();
    s.inform_eventmq("py");
    s.ready("py", 1);
    s.request("c", "j1", "default", "timeout:5");
    let out = s.drain();
    let Message::Request(r) = &out.last().unwrap().2.message else {
        panic!()
    };
    assert!(r.headers.reply_requested);
    assert_eq!(r.headers.timeout_secs, 5);
    // The client did not ask for the result, so it gets none, but can query it.
    s.reply("py", "j1");
    assert!(s.drain().is_empty());
    s.send(Endpoint::Frontend, "c", "q", Message::Query { of: "j1".into() });
    let out = s.drain();
    assert!(matches!(&out[0].2.message, Message::Job { state, result: Some(_), .. } if *state == JobState::Finished));
}
