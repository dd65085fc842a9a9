//! Admin commands: only on the admin endpoint; purge; shutdown.

use super::*;

#[test]
fn admin_commands_only_on_admin_endpoint() {
    let mut s = Sim::default();
    s.send(Endpoint::Frontend, "c", "m", Message::Disconnect);
    assert!(!s.r.stop_requested());
    assert!(matches!(
        s.drain()[0].2.message,
        Message::Error {
            code: ErrorCode::AdminOnly,
            ..
        }
    ));
    s.send(Endpoint::Admin, "a", "m", Message::Status);
    let out = s.drain();
    let Message::Reply(Reply::Notice(emq_proto::ReplyNotice(json))) = &out[0].2.message else {
        panic!()
    };
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    assert!(v.get("waiting_messages_by_queue").is_some() && v.get("jobmanagers").is_some());
    s.send(Endpoint::Admin, "a", "m", Message::Disconnect);
    assert!(s.r.stop_requested());
}

#[test]
fn purge_cancels_a_queues_waiting_jobs_only() {
    let mut s = Sim::default();
    s.inform("jm", &[(10, "default")]);
    s.ready("jm", 1);
    s.request("c", "running", "default", "reply-requested");
    assert_eq!(s.dispatched(), d(&[("jm", "running")]));
    s.request("c", "w1", "default", "reply-requested");
    s.request("c", "w2", "default", "");
    s.request("c", "other", "images", "");
    s.drain();
    // Not from a client.
    s.send(
        Endpoint::Frontend,
        "c",
        "p",
        Message::Purge {
            queue: "default".into(),
        },
    );
    assert!(matches!(
        &s.drain()[0].2.message,
        Message::Error {
            code: ErrorCode::AdminOnly,
            ..
        }
    ));

    s.send(
        Endpoint::Admin,
        "ops",
        "p",
        Message::Purge {
            queue: "default".into(),
        },
    );
    let out = s.drain();
    let notice = out.iter().find_map(|(ep, _, e)| match &e.message {
        Message::Reply(Reply::Notice(n)) if *ep == Endpoint::Admin => Some(n.0.clone()),
        _ => None,
    });
    let v: serde_json::Value = serde_json::from_str(&notice.expect("answered")).unwrap();
    assert_eq!(v["purged"], 2);
    // The client that asked for a reply is told its job was cancelled.
    assert!(out.iter().any(|(ep, _, e)| *ep == Endpoint::Frontend
        && matches!(&e.message, Message::Reply(Reply::Result(r)) if r.of == "w1" && r.outcome == Outcome::Cancelled)));
    // The running job and the other queue are untouched.
    s.ready("jm", 1);
    assert!(s.dispatched().is_empty());
    s.inform("img", &[(10, "images")]);
    s.ready("img", 1);
    assert_eq!(s.dispatched(), d(&[("img", "other")]));
}

#[test]
fn shutdown_refuses_new_work_and_says_kbye() {
    let mut s = Sim::default();
    s.inform("jm", &[(10, "default")]);
    s.drain();
    s.r.shutdown();
    assert!(matches!(s.drain()[0].2.message, Message::Kbye));
    s.request("c", "j", "default", "");
    assert!(matches!(
        s.drain()[0].2.message,
        Message::Error {
            code: ErrorCode::ShuttingDown,
            ..
        }
    ));
}
