//! BATCH: a jobmanager that asks for them gets a turn's REQUESTs in one
//! message, and its own BATCHes are read entry by entry.

use super::*;
use emq_proto::{BatchWriter, Capabilities, Command};

fn inform_batching(s: &mut Sim, jm: &str) {
    let inform = Message::Inform(Inform {
        queues: vec![(10, "default".into())],
        peer_type: PeerType::Worker,
        timing: Some(Timing {
            heartbeat_ms: 1000,
            liveness_ms: 3000,
        }),
        capabilities: Capabilities {
            handlers: None,
            batch: true,
        },
    });
    s.send(Endpoint::Backend, jm, "inform", inform);
}

/// A BATCH from `jm` of `messages`, as its transport packs them.
fn send_batch(s: &mut Sim, jm: &str, messages: Vec<(&str, Message)>) {
    let mut batch = BatchWriter::new();
    for (msgid, m) in messages {
        batch.push(m.into_frames(msgid)).expect("small messages");
    }
    let frames = batch.take_frames("batch");
    s.r.handle(s.now, Endpoint::Backend, peer(jm), &frames);
}

fn result(of: &str) -> Message {
    Message::Reply(Reply::Result(ResultFrames {
        of: of.into(),
        outcome: Outcome::Ok,
        content_type: ContentType::Json,
        body: br#"{"value":1}"#.to_vec(),
    }))
}

#[test]
fn the_ack_says_batch_only_to_a_jobmanager_that_asked() {
    let mut s = Sim::default();
    inform_batching(&mut s, "new");
    s.inform("plain", &[(10, "default")]);
    let acks: Vec<(String, bool)> = s
        .drain()
        .into_iter()
        .filter_map(|(_, p, e)| match e.message {
            Message::Ack { capabilities, .. } => Some((p, capabilities.batch)),
            _ => None,
        })
        .collect();
    assert_eq!(acks, vec![("new".to_string(), true), ("plain".to_string(), false)]);
}

#[test]
fn a_turns_requests_go_in_one_batch_in_order() {
    let mut s = Sim::default();
    inform_batching(&mut s, "jm");
    for i in 1..=5 {
        s.request("c", &format!("j{i}"), "default", "");
    }
    s.drain();
    s.send(Endpoint::Backend, "jm", "r", Message::Ready { count: 5 });
    let out: Vec<Outgoing> = s.r.take_outgoing().collect();
    assert_eq!(out.len(), 1, "one message: {out:?}");
    assert_eq!(out[0].frames[2], b"BATCH");
    let keys = |ids: &[&str]| ids.iter().map(|i| JobKey::from(*i)).collect::<Vec<_>>();
    assert_eq!(out[0].carries, Carries::Jobs(keys(&["j1", "j2", "j3", "j4", "j5"])));
    let ids: Vec<String> = unbatch(&out[0].frames).into_iter().map(|e| e.msgid).collect();
    assert_eq!(ids, ["j1", "j2", "j3", "j4", "j5"]);
}

#[test]
fn another_message_to_the_jobmanager_closes_its_batch() {
    let mut s = Sim::default();
    inform_batching(&mut s, "jm");
    for i in 1..=3 {
        s.request("c", &format!("j{i}"), "default", "");
    }
    s.drain();
    s.send(Endpoint::Backend, "jm", "r", Message::Ready { count: 2 });
    // Answered at once (an emq jobmanager's probe), between the batches.
    let beat = Message::Heartbeat {
        unix_time: "0".into(),
        state: Some(JobManagerState::Steady),
        workers: None,
    };
    s.send(Endpoint::Backend, "jm", "hb", beat);
    s.send(Endpoint::Backend, "jm", "r2", Message::Ready { count: 1 });
    let out: Vec<(String, usize)> =
        s.r.take_outgoing()
            .map(|o| {
                (
                    String::from_utf8_lossy(&o.frames[2]).into_owned(),
                    unbatch(&o.frames).len(),
                )
            })
            .collect();
    let want = [("BATCH", 2), ("HEARTBEAT", 1), ("BATCH", 1)].map(|(c, n)| (c.to_string(), n));
    assert_eq!(out, want);
}

#[test]
fn a_jobmanagers_batch_is_read_entry_by_entry() {
    let mut s = Sim::default();
    inform_batching(&mut s, "jm");
    for i in 1..=4 {
        s.request("c", &format!("j{i}"), "default", "reply-requested");
    }
    s.send(Endpoint::Backend, "jm", "r", Message::Ready { count: 2 });
    assert_eq!(s.dispatched(), d(&[("jm", "j1"), ("jm", "j2")]));
    send_batch(
        &mut s,
        "jm",
        vec![
            ("m1", result("j1")),
            ("m2", result("j2")),
            ("m3", Message::Ready { count: 2 }),
        ],
    );
    let out = s.drain();
    let replies: Vec<String> = out
        .iter()
        .filter_map(|(ep, _, e)| match (ep, &e.message) {
            (Endpoint::Frontend, Message::Reply(Reply::Result(r))) => Some(r.of.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(replies, ["j1", "j2"]);
    let requests: Vec<&str> = out
        .iter()
        .filter(|(ep, _, e)| *ep == Endpoint::Backend && matches!(e.message, Message::Request(_)))
        .map(|(_, _, e)| e.msgid.as_str())
        .collect();
    assert_eq!(requests, ["j3", "j4"]);
}

#[test]
fn a_bad_entry_is_refused_like_a_lone_message_and_a_cut_batch_ends() {
    let mut s = Sim::default();
    inform_batching(&mut s, "jm");
    s.request("c", "j1", "default", "reply-requested");
    s.send(Endpoint::Backend, "jm", "r", Message::Ready { count: 1 });
    s.drain();
    let mut packed = Vec::new();
    let reply = result("j1").into_frames("m1");
    let frames: Vec<&[u8]> = reply[2..].iter().map(Vec::as_slice).collect();
    emq_proto::push_entry(&mut packed, &frames);
    emq_proto::push_entry(&mut packed, &[b"NOPE", b"m2"]);
    emq_proto::push_entry(&mut packed, &[b"READY", b"m3"]);
    // The last entry cut short: what follows the cut cannot be found.
    let whole = packed.len();
    emq_proto::push_entry(&mut packed, &[b"READY", b"m4"]);
    packed.truncate(whole + 5);
    s.r.handle(
        s.now,
        Endpoint::Backend,
        peer("jm"),
        &emq_proto::batch_frames("b", packed),
    );
    let out: Vec<(Endpoint, Command)> = s
        .drain()
        .into_iter()
        .map(|(ep, _, e)| (ep, e.message.command()))
        .collect();
    assert_eq!(
        out,
        [
            (Endpoint::Frontend, Command::Reply),
            (Endpoint::Backend, Command::Error),
            (Endpoint::Backend, Command::Error)
        ]
    );
    // The READY after the bad entry counts, the cut one does not.
    s.request("c", "j2", "default", "");
    s.request("c", "j3", "default", "");
    assert_eq!(s.dispatched(), d(&[("jm", "j2")]));
}

#[test]
fn an_undeliverable_batch_hands_its_jobs_back() {
    let mut s = Sim::default();
    inform_batching(&mut s, "jm");
    s.request("c", "j1", "default", "");
    s.request("c", "j2", "default", "");
    s.drain();
    s.send(Endpoint::Backend, "jm", "r", Message::Ready { count: 2 });
    let out: Vec<Outgoing> = s.r.take_outgoing().collect();
    assert_eq!(out.len(), 1);
    s.r.undeliverable(s.now, out.into_iter().next().expect("one"));
    s.inform("other", &[(10, "default")]);
    s.ready("other", 2);
    assert_eq!(s.dispatched(), d(&[("other", "j1"), ("other", "j2")]));
}

/// A client's BATCH of submissions is read like its REQUESTs; the
/// results of `batch-reply` jobs go back in one BATCH, the others alone.
#[test]
fn a_clients_batch_is_read_and_its_results_come_back_in_one() {
    let mut s = Sim::default();
    s.inform("jm", &[(10, "default")]);
    let mut batch = BatchWriter::new();
    for (id, headers) in [
        ("j1", "reply-requested,batch-reply"),
        ("j2", "reply-requested,batch-reply"),
        ("j3", "reply-requested"),
    ] {
        let req = Message::Request(Request {
            queue: "default".into(),
            headers: Headers::parse(headers),
            body: b"[]".to_vec(),
        });
        batch.push(req.into_frames(id)).expect("small");
    }
    s.r.handle(s.now, Endpoint::Frontend, peer("c"), &batch.take_frames("b1"));
    s.ready("jm", 3);
    assert_eq!(s.dispatched(), d(&[("jm", "j1"), ("jm", "j2"), ("jm", "j3")]));
    send_batch(
        &mut s,
        "jm",
        vec![("m1", result("j1")), ("m2", result("j3")), ("m3", result("j2"))],
    );
    let out: Vec<Outgoing> =
        s.r.take_outgoing()
            .filter(|o| o.endpoint == Endpoint::Frontend)
            .collect();
    let shapes: Vec<(String, Vec<String>)> = out
        .iter()
        .map(|o| {
            let ofs = unbatch(&o.frames)
                .into_iter()
                .map(|e| match e.message {
                    Message::Reply(Reply::Result(r)) => r.of,
                    other => panic!("{other:?}"),
                })
                .collect();
            (String::from_utf8_lossy(&o.frames[2]).into_owned(), ofs)
        })
        .collect();
    // j3's result goes alone, which closes the batch j1's opened.
    let want = [("BATCH", vec!["j1"]), ("REPLY", vec!["j3"]), ("BATCH", vec!["j2"])]
        .map(|(c, ofs)| (c.to_string(), ofs.into_iter().map(String::from).collect::<Vec<_>>()));
    assert_eq!(shapes, want);
}

/// A BATCH of results the client is gone for: each is kept for lookup.
#[test]
fn an_undeliverable_batch_of_results_is_kept_for_lookup() {
    let mut s = Sim::default();
    s.inform("jm", &[(10, "default")]);
    s.request("c", "j1", "default", "reply-requested,batch-reply");
    s.request("c", "j2", "default", "reply-requested,batch-reply");
    s.ready("jm", 2);
    s.drain();
    send_batch(&mut s, "jm", vec![("m1", result("j1")), ("m2", result("j2"))]);
    let out: Vec<Outgoing> =
        s.r.take_outgoing()
            .filter(|o| o.endpoint == Endpoint::Frontend)
            .collect();
    assert_eq!(out.len(), 1);
    s.r.undeliverable(s.now, out.into_iter().next().expect("one"));
    for id in ["j1", "j2"] {
        s.send(Endpoint::Frontend, "c2", "q", Message::Query { of: id.into() });
        let got = s.drain();
        assert!(
            matches!(
                &got[..],
                [(
                    _,
                    _,
                    Envelope {
                        message: Message::Job {
                            state: JobState::Finished,
                            result: Some(_),
                            ..
                        },
                        ..
                    }
                )]
            ),
            "{id}: {got:?}"
        );
    }
}

#[test]
fn an_admin_batch_is_refused() {
    let mut s = Sim::default();
    let mut batch = BatchWriter::new();
    batch.push(Message::Status.into_frames("s1")).expect("small");
    let frames = batch.take_frames("b1");
    s.r.handle(s.now, Endpoint::Admin, peer("a"), &frames);
    let out = s.drain();
    assert!(
        matches!(&out[..], [(Endpoint::Admin, _, Envelope { msgid: _, message: Message::Error { of, code: ErrorCode::UnknownCommand, .. } })] if of == "b1"),
        "{out:?}"
    );
}

/// Guaranteed jobs of a client that reads BATCH: their ACKs go in one
/// BATCH after the commit, their results in another; results it was
/// unreachable for are sent again, alone, at the next heartbeat.
#[test]
fn guaranteed_acks_and_results_go_in_batches_after_the_commit() {
    let mut s = Sim::default();
    s.inform("jm", &[(10, "default")]);
    s.alive.push("jm".into());
    let mut batch = BatchWriter::new();
    for id in ["g1", "g2", "g3"] {
        let req = Message::Request(Request {
            queue: "default".into(),
            headers: Headers::parse("reply-requested,guarantee,batch-reply"),
            body: b"[]".to_vec(),
        });
        batch.push(req.into_frames(id)).expect("small");
    }
    s.r.handle(s.now, Endpoint::Frontend, peer("c"), &batch.take_frames("b1"));
    let acks: Vec<Outgoing> =
        s.r.take_outgoing()
            .filter(|o| o.endpoint == Endpoint::Frontend)
            .collect();
    assert_eq!(acks.len(), 1, "{acks:?}");
    assert!(acks[0].after_commit, "ACKs wait for the commit");
    let acked: Vec<String> = unbatch(&acks[0].frames)
        .into_iter()
        .map(|e| match e.message {
            Message::Ack { of, .. } => of,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(acked, ["g1", "g2", "g3"]);
    s.commit();
    s.send(Endpoint::Backend, "jm", "r", Message::Ready { count: 3 });
    s.drain();
    send_batch(
        &mut s,
        "jm",
        vec![("m1", result("g1")), ("m2", result("g2")), ("m3", result("g3"))],
    );
    let results: Vec<Outgoing> =
        s.r.take_outgoing()
            .filter(|o| o.endpoint == Endpoint::Frontend)
            .collect();
    assert_eq!(results.len(), 1, "{results:?}");
    assert!(results[0].after_commit, "results wait for the commit");
    let keys = ["g1", "g2", "g3"].map(|k| (JobKey::from(k), Rc::<str>::from("default")));
    assert_eq!(results[0].carries, Carries::Results(keys.to_vec()));
    s.commit();
    s.r.undeliverable(s.now, results.into_iter().next().expect("one"));
    s.run_for(Duration::from_millis(1100));
    let again: Vec<String> = s
        .drain()
        .into_iter()
        .filter_map(|(ep, _, e)| match (ep, e.message) {
            (Endpoint::Frontend, Message::Reply(Reply::Result(r))) => Some(r.of),
            _ => None,
        })
        .collect();
    assert_eq!(again, ["g1", "g2", "g3"]);
}

/// A job too large for a BATCH goes alone, after the BATCH before it and
/// before the one after it: the jobmanager gets its jobs in order.
#[test]
fn a_large_job_goes_alone_between_batches() {
    let mut s = Sim::default();
    inform_batching(&mut s, "jm");
    for (id, size) in [("j1", 2), ("j2", emq_proto::BATCH_ENTRY_FRAME_MAX + 1), ("j3", 2)] {
        let req = Message::Request(Request {
            queue: "default".into(),
            headers: Headers::parse(""),
            body: vec![b' '; size],
        });
        s.send(Endpoint::Frontend, "c", id, req);
    }
    s.drain();
    s.send(Endpoint::Backend, "jm", "r", Message::Ready { count: 3 });
    let out: Vec<(String, Vec<String>)> =
        s.r.take_outgoing()
            .map(|o| {
                let ids = unbatch(&o.frames).into_iter().map(|e| e.msgid).collect();
                (String::from_utf8_lossy(&o.frames[2]).into_owned(), ids)
            })
            .collect();
    let want =
        [("BATCH", "j1"), ("REQUEST", "j2"), ("BATCH", "j3")].map(|(c, id)| (c.to_string(), vec![id.to_string()]));
    assert_eq!(out, want);
}
