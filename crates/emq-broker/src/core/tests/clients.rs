//! Clients: results kept or delivered, duplicates, cancellation, bad input.

use super::*;

#[test]
fn results_are_kept_for_retention_then_forgotten() {
    let mut s = Sim::new(Config {
        result_retention: Duration::from_secs(10),
        ..Config::default()
    });
    s.inform("jm", &[(10, "default")]);
    s.ready("jm", 1);
    s.request("c", "j1", "default", "");
    s.reply("jm", "j1");
    s.drain();
    s.advance(Duration::from_secs(9));
    s.send(Endpoint::Admin, "admin", "q", Message::Query { of: "j1".into() });
    assert!(s
        .drain()
        .iter()
        .any(|(_, _, e)| matches!(&e.message, Message::Job { result: Some(_), .. })));
    s.advance(Duration::from_secs(2));
    s.send(Endpoint::Admin, "admin", "q", Message::Query { of: "j1".into() });
    assert!(s.drain().iter().any(|(_, _, e)| matches!(
        &e.message,
        Message::Error {
            code: ErrorCode::UnknownJob,
            ..
        }
    )));
}

#[test]
fn duplicate_request_does_not_run_twice() {
    let mut s = Sim::default();
    s.inform("jm", &[(10, "default")]);
    s.ready("jm", 2);
    s.request("c", "j1", "default", "");
    s.request("c", "j1", "default", "reply-requested");
    assert_eq!(s.dispatched().len(), 1, "queued or running: the duplicate is ignored");
    s.reply("jm", "j1");
    s.drain();
    // Finished and kept (nobody was waiting for it): the kept result answers.
    s.request("c", "j1", "default", "reply-requested");
    let out = s.drain();
    assert_eq!(out.len(), 1, "the result is re-sent, the job is not re-run");
    assert!(matches!(out[0].2.message, Message::Reply(Reply::Result(_))));
}

#[test]
fn delivered_results_are_not_kept_undeliverable_ones_are() {
    let mut s = Sim::default();
    s.inform("jm", &[(10, "default")]);
    s.ready("jm", 2);
    s.request("c", "delivered", "default", "reply-requested");
    s.request("gone", "orphan", "default", "reply-requested");
    s.dispatched();
    s.reply("jm", "delivered");
    s.reply("jm", "orphan");
    let outs: Vec<Outgoing> = s.r.take_outgoing().collect();
    assert_eq!(outs.len(), 2);
    // The transport cannot reach client `gone`.
    let orphan = outs.into_iter().find(|o| o.peer == peer("gone")).unwrap();
    s.r.undeliverable(s.now, orphan);
    assert_eq!(s.r.results.len(), 1);
    s.send(Endpoint::Frontend, "gone", "q", Message::Query { of: "orphan".into() });
    assert!(matches!(&s.drain()[0].2.message, Message::Job { result: Some(_), .. }));
}

#[test]
fn cancel_a_waiting_job() {
    let mut s = Sim::default();
    s.request("c", "j1", "default", "");
    s.request("c", "j2", "default", "");
    s.send(Endpoint::Frontend, "c", "m", Message::Cancel { of: "j1".into() });
    assert!(matches!(&s.drain()[0].2.message, Message::Job { state, .. } if *state == JobState::Cancelled));
    s.inform("jm", &[(10, "default")]);
    s.ready("jm", 2);
    assert_eq!(s.dispatched(), d(&[("jm", "j2")]));
}

#[test]
fn garbage_is_answered_and_harmless() {
    let mut s = Sim::default();
    s.inform("jm", &[(10, "default")]);
    s.ready("jm", 1);
    s.drain();
    let garbage: Vec<Vec<Vec<u8>>> = vec![
        vec![],
        vec![b"only one".to_vec()],
        vec![vec![], b"eMQP/9.9".to_vec(), b"REQUEST".to_vec(), b"x".to_vec()],
        vec![vec![], b"eMQP/1.0".to_vec(), vec![0xff, 0xfe], b"x".to_vec()],
        vec![vec![], b"eMQP/1.0".to_vec(), b"REQUEST".to_vec(), b"x".to_vec()],
        vec![
            vec![],
            b"eMQP/1.0".to_vec(),
            b"REQUEST".to_vec(),
            b"x".to_vec(),
            vec![0xc3, 0x28],
            vec![],
            vec![],
        ],
        vec![
            vec![],
            b"eMQP/1.0".to_vec(),
            b"INFORM".to_vec(),
            b"x".to_vec(),
            b"{{".to_vec(),
            b"worker".to_vec(),
        ],
    ];
    for (i, g) in garbage.iter().enumerate() {
        for ep in [Endpoint::Frontend, Endpoint::Backend, Endpoint::Admin] {
            s.r.handle(s.now, ep, PeerId(vec![0, 1, 0xff, i as u8]), g);
            let out = s.drain();
            assert!(
                out.iter().all(|(_, _, e)| matches!(e.message, Message::Error { .. })),
                "{g:?}: {out:?}"
            );
        }
    }
    // Still serving.
    s.request("c", "j1", "default", "");
    assert_eq!(s.dispatched(), d(&[("jm", "j1")]));
}

#[test]
fn oversized_messages_are_refused_and_the_router_keeps_serving() {
    let mut s = Sim::new(Config {
        max_frame: 1000,
        max_message: 1500,
        ..Config::default()
    });
    s.inform("jm", &[(10, "default")]);
    s.ready("jm", 1);
    s.drain();
    // Each frame is under the frame limit; together they are over the message limit.
    let big = Request {
        queue: "default".into(),
        headers: Headers::default(),
        body: vec![b'x'; 900],
    };
    let mut frames = Message::Request(big).encode_with_id("big");
    frames.push(vec![b'y'; 900]);
    s.r.handle(s.now, Endpoint::Frontend, peer("c"), &frames);
    let out = s.drain();
    assert!(
        matches!(&out[0].2.message, Message::Error { of, code: ErrorCode::TooLarge, .. } if of == "big"),
        "{out:?}"
    );
    s.request("c", "small", "default", "");
    assert_eq!(s.dispatched(), d(&[("jm", "small")]));
}
