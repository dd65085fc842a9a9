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
