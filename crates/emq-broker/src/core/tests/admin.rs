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

fn request_calling(s: &mut Sim, id: &str, queue: &str, headers: &str, handler: &str) {
    let req = Request {
        queue: queue.into(),
        headers: Headers::parse(headers),
        body: format!(r#"["run", {{"path": "app", "callable": "{handler}", "args": ["<b>x</b>"]}}]"#).into_bytes(),
    };
    s.send(Endpoint::Frontend, "c", id, Message::Request(req));
}

#[test]
fn waiting_lists_a_page_of_a_queue_oldest_first_with_handlers() {
    let mut s = Sim::default();
    for i in 0..5 {
        request_calling(
            &mut s,
            &format!("j{i}"),
            "q",
            if i == 2 { "guarantee" } else { "" },
            "add",
        );
    }
    s.drain();
    let page = |s: &mut Sim, offset, limit| {
        let msg = Message::Waiting {
            queue: "q".into(),
            offset,
            limit,
        };
        s.send(Endpoint::Admin, "ops", "w", msg);
        notice(&s.drain())
    };
    let v = page(&mut s, 1, 2);
    assert_eq!(v["total"], 5);
    assert_eq!(v["offset"], 1);
    let ids: Vec<&str> = v["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["j1", "j2"]);
    assert_eq!(v["jobs"][1]["handler"], "app.add");
    assert_eq!(v["jobs"][1]["guaranteed"], true);
    assert_eq!(v["jobs"][0]["guaranteed"], false);
    // Past the end: an empty page; an unknown queue: nothing waits.
    assert_eq!(page(&mut s, 9, 2)["jobs"].as_array().unwrap().len(), 0);
    s.send(
        Endpoint::Admin,
        "ops",
        "w",
        Message::Waiting {
            queue: "nobody".into(),
            offset: 0,
            limit: 10,
        },
    );
    assert_eq!(notice(&s.drain())["total"], 0);
    // Not from a client.
    s.send(
        Endpoint::Frontend,
        "c",
        "w",
        Message::Waiting {
            queue: "q".into(),
            offset: 0,
            limit: 10,
        },
    );
    assert!(matches!(
        &s.drain()[0].2.message,
        Message::Error {
            code: ErrorCode::AdminOnly,
            ..
        }
    ));
}

#[test]
fn a_job_query_shows_its_handler_headers_and_body_while_the_router_holds_them() {
    let mut s = Sim::default();
    request_calling(&mut s, "j", "q", "reply-requested", "add");
    s.drain();
    s.send(Endpoint::Admin, "ops", "q", Message::Query { of: "j".into() });
    let out = s.drain();
    let Message::Job { detail, .. } = &out[0].2.message else {
        panic!("{out:?}")
    };
    assert_eq!(detail.handler.as_deref(), Some("app.add"));
    assert_eq!(detail.headers.as_deref(), Some("reply-requested"));
    assert!(detail.body.as_deref().unwrap().contains("<b>x</b>"));
    assert_eq!(detail.body_bytes, Some(detail.body.as_ref().unwrap().len() as u64));
}

#[test]
fn discard_drops_a_dead_job_for_good_and_nothing_else() {
    let mut s = Sim::new(Config {
        default_retries: 0,
        ..Config::default()
    });
    s.inform("jm", &[(10, "default")]);
    s.ready("jm", 10);
    request_calling(&mut s, "poison", "default", "guarantee", "boom");
    request_calling(&mut s, "fine", "default", "guarantee", "add");
    assert_eq!(s.dispatched().len(), 2);
    s.reply_with("jm", "poison", Outcome::Failed);
    s.drain();
    // A dead job's body is still there to inspect.
    s.send(Endpoint::Admin, "ops", "q", Message::Query { of: "poison".into() });
    let out = s.drain();
    let Message::Job { state, detail, .. } = &out[0].2.message else {
        panic!("{out:?}")
    };
    assert_eq!(*state, JobState::Dead);
    assert_eq!(detail.handler.as_deref(), Some("app.boom"));
    // Only a dead job can be discarded.
    s.send(Endpoint::Admin, "ops", "x", Message::Discard { of: "fine".into() });
    assert!(matches!(
        &s.drain()[0].2.message,
        Message::Error {
            code: ErrorCode::WrongState,
            ..
        }
    ));
    let _ = s.r.take_store_ops();
    s.send(Endpoint::Admin, "ops", "x", Message::Discard { of: "poison".into() });
    let v = notice(&s.drain());
    assert_eq!(v["id"], "poison");
    assert_eq!(v["queue"], "default");
    let ops = s.r.take_store_ops();
    assert!(!ops.is_empty(), "the journal forgets it too");
    s.send(Endpoint::Admin, "ops", "d", Message::Dead);
    assert_eq!(notice(&s.drain())["dead"].as_array().unwrap().len(), 0);
    s.send(Endpoint::Admin, "ops", "x", Message::Discard { of: "poison".into() });
    assert!(matches!(
        &s.drain()[0].2.message,
        Message::Error {
            code: ErrorCode::UnknownJob,
            ..
        }
    ));
}
