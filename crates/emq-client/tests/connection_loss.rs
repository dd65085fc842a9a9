//! The client against a stand-in router (a ROUTER socket in this process):
//! what it has received stays readable when the connection goes.

use std::time::Duration;

use emq_client::{Client, Job};
use emq_proto::{ContentType, JobResult, Message, Outcome, Reply, ResultFrames, Value};

/// The router answers thousands of jobs and goes away before the client has
/// read the answers: every result is still read. (With `ZMQ_IMMEDIATE` on
/// the client's socket libzmq threw away every message not yet read when the
/// connection closed, or aborted when it closed between two frames of one.)
#[test]
fn results_received_before_the_router_went_away_are_all_read() {
    const JOBS: usize = 3_000;
    let router_ctx = zmq::Context::new();
    let router = router_ctx.socket(zmq::ROUTER).unwrap();
    router.set_sndhwm(0).unwrap();
    router.set_rcvhwm(0).unwrap();
    router.set_linger(5_000).unwrap();
    router.bind("tcp://127.0.0.1:*").unwrap();
    let endpoint = router.get_last_endpoint().unwrap().unwrap();

    let mut client = Client::connect(&[&endpoint]).unwrap();
    let ids: Vec<_> = (0..JOBS)
        .map(|_| client.submit(&Job::new("emq.noop")).unwrap())
        .collect();

    let body = JobResult::ok(Value::from("done")).encode_body(ContentType::Json);
    for n in 0..JOBS {
        let mut frames = router.recv_multipart(0).unwrap();
        let peer = frames.remove(0);
        let submitted = emq_proto::decode(&frames).unwrap();
        let result = Message::Reply(Reply::Result(ResultFrames {
            of: submitted.msgid,
            outcome: Outcome::Ok,
            content_type: ContentType::Json,
            body: body.clone(),
        }));
        let mut reply = vec![peer];
        reply.extend(result.encode_with_id(&format!("answer-{n}")));
        router.send_multipart(reply, 0).unwrap();
    }

    // Lingering, the router's context ends once all is sent.
    drop(router);
    drop(router_ctx);

    for id in &ids {
        let out = client
            .wait(id, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("job {id}: {e}"));
        assert_eq!(out.value, "done");
    }
}

/// The router journaled a job's end and died before sending its result; a
/// new router (here: the stand-in bound again on the same port) knows the
/// result. The client waiting for it asks when it reconnects and has the
/// result then, not at its wait timeout.
#[test]
fn a_result_the_router_kept_but_never_sent_is_fetched_at_reconnection() {
    let ctx = zmq::Context::new();
    let router = ctx.socket(zmq::ROUTER).unwrap();
    router.set_linger(0).unwrap();
    router.bind("tcp://127.0.0.1:*").unwrap();
    let endpoint = router.get_last_endpoint().unwrap().unwrap();
    let mut client = Client::connect(&[&endpoint]).unwrap();
    let id = client.submit(&Job::new("emq.noop")).unwrap();
    let submitted = router.recv_multipart(0).unwrap();
    assert_eq!(emq_proto::decode(&submitted[1..]).unwrap().msgid, id.0);
    drop(router);

    let again = ctx.socket(zmq::ROUTER).unwrap();
    again.set_linger(0).unwrap();
    // The old socket's listener closes on libzmq's I/O thread, soon.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while let Err(e) = again.bind(&endpoint) {
        assert!(std::time::Instant::now() < deadline, "bind {endpoint} again: {e}");
        std::thread::sleep(Duration::from_millis(10));
    }
    let answering = std::thread::spawn(move || {
        // The client's QUERY after it reconnected.
        let mut frames = again.recv_multipart(0).unwrap();
        let peer = frames.remove(0);
        let query = emq_proto::decode(&frames).unwrap();
        let Message::Query { of } = query.message else {
            panic!("expected a QUERY, got {:?}", query.message)
        };
        let answer = Message::Job {
            of: of.clone(),
            state: emq_proto::JobState::Finished,
            detail: Box::default(),
            result: Some(ResultFrames {
                of,
                outcome: Outcome::Ok,
                content_type: ContentType::Json,
                body: JobResult::ok(Value::from("kept")).encode_body(ContentType::Json),
            }),
        };
        let mut reply = vec![peer];
        reply.extend(answer.encode_with_id("answer"));
        again.send_multipart(reply, 0).unwrap();
        again
    });
    let started = std::time::Instant::now();
    let out = client.wait(&id, Duration::from_secs(30)).unwrap();
    assert_eq!(out.value, "kept");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "fetched at reconnection, not at the wait timeout: {:?}",
        started.elapsed()
    );
    drop(answering.join().unwrap());
}
