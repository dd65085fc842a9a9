//! emq-router driven by raw DEALER sockets: fake clients and jobmanagers.

use std::time::{Duration, Instant};

use emq_proto::{
    ContentType, ErrorCode, Headers, Inform, Message, Outcome, PeerType, Reply, Request, ResultFrames, Timing,
};
use emq_tests::{Dealer, RouterProc};

const T: Duration = Duration::from_secs(5);

fn fast_router(extra: &[&str]) -> RouterProc {
    RouterProc::start(&[emq_tests::FAST_TIMING, extra].concat())
}

fn jobmanager(ctx: &zmq::Context, r: &RouterProc, id: &str, queue: &str) -> Dealer {
    let jm = Dealer::connect(ctx, &r.backend, Some(id));
    let timing = Some(Timing {
        heartbeat_ms: 100,
        liveness_ms: 1000,
    });
    jm.send(
        &Message::Inform(Inform {
            queues: vec![(10, queue.into())],
            peer_type: PeerType::Worker,
            timing,
            capabilities: Default::default(),
        }),
        "inform",
    );
    let ack = jm.recv(T).expect("ACK");
    assert!(
        matches!(ack.message, Message::Ack { ref of, timing: Some(_), .. } if of == "inform"),
        "{ack:?}"
    );
    jm
}

fn request(client: &Dealer, id: &str, queue: &str, headers: &str, body: &[u8]) {
    let req = Request {
        queue: queue.into(),
        headers: Headers::parse(headers),
        body: body.to_vec(),
    };
    client.send(&Message::Request(req), id);
}

fn reply(jm: &Dealer, of: &str, body: &[u8]) {
    let r = ResultFrames {
        of: of.into(),
        outcome: Outcome::Ok,
        content_type: ContentType::Json,
        body: body.to_vec(),
    };
    jm.send(&Message::Reply(Reply::Result(r)), "rep");
}

fn is_request(e: &emq_proto::Envelope) -> bool {
    matches!(e.message, Message::Request(_))
}

#[test]
fn job_reaches_jobmanager_and_result_returns_to_client() {
    let r = fast_router(&[]);
    let ctx = zmq::Context::new();
    let jm = jobmanager(&ctx, &r, "jm-1", "default");
    jm.send(&Message::Ready { count: 1 }, "ready");
    let client = Dealer::connect(&ctx, &r.frontend, None);
    request(
        &client,
        "job-1",
        "default",
        "reply-requested",
        br#"["run",{"callable":"echo","path":"emq"}]"#,
    );

    let got = jm.recv_until(T, is_request).expect("job reaches the jobmanager");
    assert_eq!(got.msgid, "job-1");
    let Message::Request(req) = got.message else {
        unreachable!()
    };
    assert_eq!(req.body, br#"["run",{"callable":"echo","path":"emq"}]"#);

    reply(&jm, "job-1", br#"{"value":"hello"}"#);
    let res = client.recv(T).expect("result reaches the client");
    let Message::Reply(Reply::Result(res)) = res.message else {
        panic!("{res:?}")
    };
    assert_eq!((res.of.as_str(), res.outcome), ("job-1", Outcome::Ok));
    assert_eq!(res.body, br#"{"value":"hello"}"#);
}

#[test]
fn dead_jobmanagers_job_is_redelivered_to_another() {
    let r = fast_router(&[]);
    let ctx = zmq::Context::new();
    let client = Dealer::connect(&ctx, &r.frontend, None);
    let jm1 = jobmanager(&ctx, &r, "jm-doomed", "default");
    jm1.send(&Message::Ready { count: 1 }, "ready");
    request(&client, "job-1", "default", "reply-requested", b"[]");
    assert_eq!(jm1.recv_until(T, is_request).expect("first delivery").msgid, "job-1");
    drop(jm1); // Goes silent with the job in flight.

    let jm2 = jobmanager(&ctx, &r, "jm-survivor", "default");
    jm2.send(&Message::Ready { count: 1 }, "ready");
    let started = Instant::now();
    let mut redelivered = None;
    while started.elapsed() < T && redelivered.is_none() {
        jm2.send(
            &Message::Heartbeat {
                unix_time: "0".into(),
                state: None,
                workers: None,
            },
            "hb",
        );
        redelivered = jm2.recv_until(Duration::from_millis(100), is_request);
    }
    let env = redelivered.expect("redelivered to the survivor");
    assert_eq!(env.msgid, "job-1");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "within the liveness window, took {:?}",
        started.elapsed()
    );
    reply(&jm2, "job-1", br#"{"value":2}"#);
    let res = client
        .recv_until(T, |e| matches!(e.message, Message::Reply(_)))
        .expect("result");
    assert!(matches!(res.message, Message::Reply(Reply::Result(ref x)) if x.of == "job-1"));
}

#[test]
fn garbage_frames_get_error_and_router_keeps_serving() {
    let r = fast_router(&["--max-frame", "1024"]);
    let ctx = zmq::Context::new();
    let f = |parts: &[&[u8]]| parts.iter().map(|p| p.to_vec()).collect::<Vec<_>>();
    let big = vec![b'x'; 4096];
    let cases: Vec<(Vec<Vec<u8>>, ErrorCode)> = vec![
        (f(&[b"", b"eMQP/1.0", b"REQUEST"]), ErrorCode::Malformed),
        (f(&[b"", b"\xff\xfe", b"REQUEST", b"m1"]), ErrorCode::Malformed),
        (
            f(&[b"", b"eMQP/1.0", b"REQUEST", b"m2", b"\xc3\x28", b"", b""]),
            ErrorCode::Malformed,
        ),
        (
            f(&[b"", b"eMQP/7.0", b"REQUEST", b"m3", b"q", b"", b""]),
            ErrorCode::Version,
        ),
        (f(&[b"", b"eMQP/1.0", b"FROBNICATE", b"m4"]), ErrorCode::UnknownCommand),
        (
            f(&[b"", b"eMQP/1.0", b"INFORM", b"m5", b"{[", b"worker"]),
            ErrorCode::Malformed,
        ),
        (
            f(&[b"", b"eMQP/1.0", b"REQUEST", b"m6", b"q", b"", &big]),
            ErrorCode::TooLarge,
        ),
        (vec![Vec::new(); 40], ErrorCode::TooLarge),
        (f(&[b"", b"eMQP/1.0", b"DISCONNECT", b"m7"]), ErrorCode::AdminOnly),
    ];
    // A binary identity, which crashes EventMQ's router.
    let client = Dealer::connect(&ctx, &r.frontend, None);
    client.socket.set_identity(&[0xff, 0x00, 0xfe]).ok();
    let backend_peer = Dealer::connect(&ctx, &r.backend, None);
    for (frames, code) in &cases {
        client.send_raw(frames.clone());
        let env = client.recv(T).unwrap_or_else(|| panic!("no answer to {frames:?}"));
        assert!(
            matches!(env.message, Message::Error { code: c, .. } if c == *code),
            "{frames:?} -> {env:?}"
        );
        backend_peer.send_raw(frames.clone());
        let env = backend_peer
            .recv(T)
            .unwrap_or_else(|| panic!("no answer on backend to {frames:?}"));
        assert!(matches!(env.message, Message::Error { .. }), "{env:?}");
    }
    // Still serving, and still running.
    let jm = jobmanager(&ctx, &r, "jm", "default");
    jm.send(&Message::Ready { count: 1 }, "ready");
    request(&client, "after-garbage", "default", "reply-requested", b"[]");
    assert_eq!(jm.recv_until(T, is_request).expect("served").msgid, "after-garbage");
    let mut r = r;
    assert!(r.proc.is_running());
}

#[test]
fn full_queue_answers_error_queue_full() {
    let r = fast_router(&["--max-waiting-per-queue", "3"]);
    let ctx = zmq::Context::new();
    let client = Dealer::connect(&ctx, &r.frontend, None);
    for i in 0..5 {
        request(&client, &format!("j{i}"), "nobody-serves-this", "", b"[]");
    }
    let mut refused = Vec::new();
    while let Some(env) = client.recv(Duration::from_millis(500)) {
        if let Message::Error {
            of,
            code: ErrorCode::QueueFull,
            ..
        } = env.message
        {
            refused.push(of);
        }
    }
    assert_eq!(refused, vec!["j3", "j4"]);
    // The three that were taken are kept and run once someone serves the queue.
    let jm = jobmanager(&ctx, &r, "late", "nobody-serves-this");
    for _ in 0..5 {
        jm.send(&Message::Ready { count: 1 }, "ready");
    }
    let mut got = Vec::new();
    while let Some(env) = jm.recv_until(Duration::from_secs(1), is_request) {
        got.push(env.msgid);
    }
    assert_eq!(got, vec!["j0", "j1", "j2"]);
}

#[test]
fn status_and_admin_only_on_admin_endpoint() {
    let r = fast_router(&[]);
    let ctx = zmq::Context::new();
    let _jm = jobmanager(&ctx, &r, "jm-status", "images");
    let admin = Dealer::connect(&ctx, &r.admin, None);
    admin.send(&Message::Status, "s");
    let env = admin.recv(T).expect("status");
    let Message::Reply(Reply::Notice(emq_proto::ReplyNotice(json))) = env.message else {
        panic!()
    };
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(v["jobmanagers"]["jm-status"].is_object(), "{v}");
    admin.send(&Message::RouterShowWorkers, "w");
    let env = admin.recv(T).expect("workers");
    let Message::Reply(Reply::Notice(emq_proto::ReplyNotice(json))) = env.message else {
        panic!()
    };
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["connected_queues"]["images"][0][1], "jm-status");
}

#[test]
fn sigterm_says_kbye_and_exits_zero() {
    let mut r = fast_router(&[]);
    let ctx = zmq::Context::new();
    let jm = jobmanager(&ctx, &r, "jm-bye", "default");
    r.proc.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(
        jm.recv_until(T, |e| matches!(e.message, Message::Kbye)).is_some(),
        "KBYE"
    );
    let status = r.proc.wait_exit(T).expect("exits");
    assert!(status.success(), "{status:?}");
}

#[test]
fn admin_disconnect_stops_the_router() {
    let mut r = fast_router(&[]);
    let ctx = zmq::Context::new();
    let admin = Dealer::connect(&ctx, &r.admin, None);
    admin.send(&Message::Disconnect, "d");
    assert!(matches!(admin.recv(T).expect("ack").message, Message::Ack { .. }));
    assert!(r.proc.wait_exit(T).expect("exits").success());
}
