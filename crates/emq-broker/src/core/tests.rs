//! Core tests with simulated time: no sockets, no sleeps.

use super::*;
use emq_proto::{decode, Envelope, Headers};

struct Sim {
    r: Router,
    now: Instant,
}

fn peer(s: &str) -> PeerId {
    PeerId(s.as_bytes().to_vec())
}

impl Sim {
    fn new(config: Config) -> Sim {
        let now = Instant::now();
        Sim {
            r: Router::new(config, now, 1_700_000_000.0),
            now,
        }
    }

    fn default() -> Sim {
        Sim::new(Config {
            liveness: Duration::from_secs(5),
            heartbeat: Duration::from_secs(1),
            ..Config::default()
        })
    }

    fn send(&mut self, ep: Endpoint, from: &str, msgid: &str, msg: Message) {
        let frames = msg.encode_with_id(msgid);
        self.r.handle(self.now, ep, peer(from), &frames);
    }

    fn inform(&mut self, jm: &str, queues: &[(i64, &str)]) {
        let queues = queues.iter().map(|(w, q)| (*w, q.to_string())).collect();
        let timing = Some(Timing {
            heartbeat_ms: 1000,
            liveness_ms: 3000,
        });
        self.send(
            Endpoint::Backend,
            jm,
            "inform",
            Message::Inform(Inform {
                queues,
                peer_type: PeerType::Worker,
                timing,
            }),
        );
    }

    fn ready(&mut self, jm: &str, n: usize) {
        for _ in 0..n {
            self.send(Endpoint::Backend, jm, "r", Message::Ready { count: 1 });
        }
    }

    fn request(&mut self, client: &str, id: &str, queue: &str, headers: &str) {
        let req = Request {
            queue: queue.into(),
            headers: Headers::parse(headers),
            body: b"[]".to_vec(),
        };
        self.send(Endpoint::Frontend, client, id, Message::Request(req));
    }

    fn reply(&mut self, jm: &str, of: &str) {
        let r = ResultFrames {
            of: of.into(),
            outcome: Outcome::Ok,
            content_type: ContentType::Json,
            body: br#"{"value":1}"#.to_vec(),
        };
        self.send(Endpoint::Backend, jm, "rep", Message::Reply(Reply::Result(r)));
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
        self.r.tick(self.now);
    }

    fn drain(&mut self) -> Vec<(Endpoint, String, Envelope)> {
        self.r
            .take_outgoing()
            .map(|o| {
                (
                    o.endpoint,
                    o.peer.to_string(),
                    decode(&o.frames).expect("router sends valid frames"),
                )
            })
            .collect()
    }

    /// REQUESTs sent to jobmanagers, as (jobmanager, msgid).
    fn dispatched(&mut self) -> Vec<(String, String)> {
        self.drain()
            .into_iter()
            .filter_map(|(ep, p, e)| match (ep, e.message) {
                (Endpoint::Backend, Message::Request(_)) => Some((p, e.msgid)),
                _ => None,
            })
            .collect()
    }
}

fn d(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
}

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
            })
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
fn dead_jobmanager_jobs_go_back_to_the_front_and_to_another() {
    let mut s = Sim::default();
    s.inform("jm1", &[(10, "default")]);
    s.ready("jm1", 2);
    s.request("c", "j1", "default", "");
    s.request("c", "j2", "default", "");
    s.request("c", "j3", "default", "");
    assert_eq!(s.dispatched().len(), 2);
    s.inform("jm2", &[(10, "default")]);
    // jm2 keeps talking, jm1 goes silent.
    for _ in 0..4 {
        s.advance(Duration::from_secs(1));
        s.send(
            Endpoint::Backend,
            "jm2",
            "hb",
            Message::Heartbeat {
                unix_time: "0".into(),
                state: None,
            },
        );
    }
    s.drain();
    assert!(s.r.workers.contains_key(&peer("jm1")), "still within its window");
    s.advance(Duration::from_millis(1100));
    assert!(!s.r.workers.contains_key(&peer("jm1")), "expired");
    s.drain();
    s.send(
        Endpoint::Backend,
        "jm2",
        "hb",
        Message::Heartbeat {
            unix_time: "0".into(),
            state: None,
        },
    );
    s.ready("jm2", 3);
    // In-flight jobs first, in their original order, then the one that waited.
    assert_eq!(s.dispatched(), d(&[("jm2", "j1"), ("jm2", "j2"), ("jm2", "j3")]));
    // A late reply from the dead one is ignored once jm2 has answered.
    s.reply("jm2", "j1");
    s.drain();
    s.reply("jm1", "j1");
    assert!(s.drain().iter().all(|(ep, _, e)| *ep == Endpoint::Backend
        && matches!(
            e.message,
            Message::Error {
                code: ErrorCode::NotInformed,
                ..
            }
        )));
}

#[test]
fn liveness_window_follows_the_announced_heartbeat() {
    let mut s = Sim::new(Config {
        liveness: Duration::from_secs(2),
        ..Config::default()
    });
    let timing = Some(Timing {
        heartbeat_ms: 3000,
        liveness_ms: 9000,
    });
    s.send(
        Endpoint::Backend,
        "slow",
        "i",
        Message::Inform(Inform {
            queues: vec![],
            peer_type: PeerType::Worker,
            timing,
        }),
    );
    s.advance(Duration::from_millis(5900));
    assert!(
        s.r.workers.contains_key(&peer("slow")),
        "twice its 3 s heartbeat, not our 2 s"
    );
    s.advance(Duration::from_millis(200));
    assert!(!s.r.workers.contains_key(&peer("slow")));
}

#[test]
fn heartbeats_are_sent_on_schedule_and_deadline_is_next_event() {
    let mut s = Sim::default();
    s.inform("jm", &[(10, "default")]);
    s.drain();
    assert_eq!(s.r.next_deadline(), s.now + Duration::from_secs(1));
    s.advance(Duration::from_secs(1));
    let out = s.drain();
    assert!(
        matches!(out.as_slice(), [(Endpoint::Backend, p, Envelope { message: Message::Heartbeat { .. }, .. })] if p == "jm")
    );
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
    s.send(
        Endpoint::Backend,
        "py",
        "i",
        Message::Inform(Inform {
            queues: vec![],
            peer_type: PeerType::Worker,
            timing: None,
        }),
    );
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
    assert!(matches!(&out[0].2.message, Message::Job { state, result: Some(_), .. } if state == "FINISHED"));
}

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
fn cancel_a_waiting_job() {
    let mut s = Sim::default();
    s.request("c", "j1", "default", "");
    s.request("c", "j2", "default", "");
    s.send(Endpoint::Frontend, "c", "m", Message::Cancel { of: "j1".into() });
    assert!(matches!(&s.drain()[0].2.message, Message::Job { state, .. } if state == "CANCELLED"));
    s.inform("jm", &[(10, "default")]);
    s.ready("jm", 2);
    assert_eq!(s.dispatched(), d(&[("jm", "j2")]));
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
fn kbye_and_unreachable_hand_jobs_back() {
    let mut s = Sim::default();
    s.inform("a", &[(10, "default")]);
    s.inform("b", &[(10, "default")]);
    s.ready("a", 1);
    s.request("c", "j1", "default", "");
    assert_eq!(s.dispatched(), d(&[("a", "j1")]));
    s.send(Endpoint::Backend, "a", "k", Message::Kbye);
    s.ready("b", 1);
    assert_eq!(s.dispatched(), d(&[("b", "j1")]));

    // The transport reports the REQUEST to `b` undeliverable.
    let frames = vec![
        Vec::new(),
        b"eMQP/1.0".to_vec(),
        b"REQUEST".to_vec(),
        b"j1".to_vec(),
        b"default".to_vec(),
        vec![],
        vec![],
    ];
    s.r.undeliverable(
        s.now,
        Outgoing {
            endpoint: Endpoint::Backend,
            peer: peer("b"),
            frames,
            after_commit: false,
        },
    );
    s.inform("c2", &[(10, "default")]);
    s.ready("c2", 1);
    assert_eq!(s.dispatched(), d(&[("c2", "j1")]));
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

// ------------------------------------------------------------ guaranteed jobs

fn puts(ops: &[StoreOp]) -> Vec<(String, crate::tracking::Status, bool)> {
    ops.iter()
        .filter_map(|op| match op {
            StoreOp::Put { id, record, body } => {
                let record: crate::tracking::JobRecord = rmp_serde::from_slice(record).unwrap();
                Some((id.clone(), record.status, body.is_some()))
            }
            StoreOp::Delete { .. } => None,
        })
        .collect()
}

fn reply_with(s: &mut Sim, jm: &str, of: &str, outcome: Outcome) {
    let r = ResultFrames {
        of: of.into(),
        outcome,
        content_type: ContentType::Json,
        body: br#"{"value":null,"error":"x"}"#.to_vec(),
    };
    s.send(Endpoint::Backend, jm, "rep", Message::Reply(Reply::Result(r)));
}

fn guaranteed_sim() -> Sim {
    Sim::new(Config {
        retry_backoff: Duration::from_millis(100),
        default_retries: 2,
        ..Config::default()
    })
}

#[test]
fn guaranteed_job_is_journaled_with_its_body_and_acked() {
    use crate::tracking::Status;
    let mut s = guaranteed_sim();
    s.request("c", "g1", "default", "guarantee,reply-requested,retry-count:5");
    assert_eq!(
        puts(&s.r.take_store_ops()),
        vec![("g1".to_string(), Status::Queued, true)]
    );
    let out = s.drain();
    assert!(matches!(&out[0].2.message, Message::Ack { of, .. } if of == "g1"));
    // Resubmitting the same msgid does not make a second job.
    s.request("c", "g1", "default", "guarantee,reply-requested");
    assert!(matches!(s.drain()[0].2.message, Message::Ack { .. }));
    s.inform("jm", &[(10, "default")]);
    s.ready("jm", 2);
    let out = s.drain();
    let reqs: Vec<_> = out
        .iter()
        .filter(|(_, _, e)| matches!(e.message, Message::Request(_)))
        .collect();
    assert_eq!(reqs.len(), 1);
    // The router owns a guaranteed job's retries: the jobmanager gets none.
    let Message::Request(r) = &reqs[0].2.message else {
        unreachable!()
    };
    assert_eq!(r.headers.retry_count, 0);
    assert!(r.headers.guarantee && r.headers.reply_requested);
}

#[test]
fn failed_attempts_back_off_then_dead_letter_then_retry_by_hand() {
    use crate::tracking::Status;
    let mut s = guaranteed_sim();
    s.inform("jm", &[(10, "default")]);
    s.ready("jm", 10);
    s.request("c", "poison", "default", "guarantee,reply-requested");
    assert_eq!(s.dispatched().len(), 1);
    s.r.take_store_ops();
    // Attempt 1 crashes: backoff of about 100 ms (±25%) before attempt 2.
    reply_with(&mut s, "jm", "poison", Outcome::Crashed);
    assert!(s.drain().is_empty(), "no result yet, no immediate redispatch");
    assert_eq!(
        puts(&s.r.take_store_ops()),
        vec![("poison".to_string(), Status::Queued, false)]
    );
    let due = s.r.next_deadline();
    assert!(
        due >= s.now + Duration::from_millis(75) && due <= s.now + Duration::from_millis(125),
        "{:?}",
        due - s.now
    );
    s.advance(Duration::from_millis(60));
    assert!(s.dispatched().is_empty());
    s.advance(Duration::from_millis(70));
    assert_eq!(s.dispatched().len(), 1, "attempt 2");
    // Attempt 2 times out: backoff doubles.
    reply_with(&mut s, "jm", "poison", Outcome::TimedOut);
    let due = s.r.next_deadline();
    assert!(due >= s.now + Duration::from_millis(150), "{:?}", due - s.now);
    s.advance(Duration::from_millis(260));
    assert_eq!(s.dispatched().len(), 1, "attempt 3");
    // Attempt 3 of 3 crashes: dead-lettered, the client hears the final failure.
    reply_with(&mut s, "jm", "poison", Outcome::Crashed);
    let out = s.drain();
    assert!(matches!(&out[0].2.message, Message::Reply(Reply::Result(r)) if r.outcome == Outcome::Crashed));
    assert_eq!(puts(&s.r.take_store_ops()).last().unwrap().1, Status::Dead);
    for _ in 0..10 {
        s.send(
            Endpoint::Backend,
            "jm",
            "hb",
            Message::Heartbeat {
                unix_time: "0".into(),
                state: None,
            },
        );
        s.advance(Duration::from_secs(1));
    }
    assert!(s.dispatched().is_empty(), "a dead job does not cycle");
    s.send(Endpoint::Admin, "admin", "d", Message::Dead);
    let out = s.drain();
    let Message::Reply(Reply::Notice(emq_proto::ReplyNotice(json))) = &out[0].2.message else {
        panic!()
    };
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(v["dead"][0]["id"], "poison");
    assert_eq!(v["dead"][0]["attempts"], 3);
    // The log tells the story.
    s.send(Endpoint::Frontend, "c", "q", Message::Query { of: "poison".into() });
    let out = s.drain();
    let Message::Job { state, detail, .. } = &out[0].2.message else {
        panic!()
    };
    assert_eq!(state, "DEAD");
    let d: serde_json::Value = serde_json::from_str(detail).unwrap();
    let statuses: Vec<&str> = d["log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        ["ACCEPTED", "QUEUED", "RUNNING", "QUEUED", "RUNNING", "QUEUED", "RUNNING", "DEAD"]
    );
    // RETRY only from the admin endpoint, and it runs again.
    s.send(Endpoint::Frontend, "c", "r", Message::Retry { of: "poison".into() });
    assert!(matches!(
        s.drain()[0].2.message,
        Message::Error {
            code: ErrorCode::AdminOnly,
            ..
        }
    ));
    s.send(Endpoint::Admin, "admin", "r", Message::Retry { of: "poison".into() });
    assert_eq!(s.dispatched().len(), 1);
    reply_with(&mut s, "jm", "poison", Outcome::Ok);
    s.send(Endpoint::Frontend, "c", "q", Message::Query { of: "poison".into() });
    assert!(s
        .drain()
        .iter()
        .any(|(_, _, e)| matches!(&e.message, Message::Job { state, .. } if state == "FINISHED")));
}

#[test]
fn unknown_handler_is_final_not_retried() {
    let mut s = guaranteed_sim();
    s.inform("jm", &[(10, "default")]);
    s.ready("jm", 3);
    s.request("c", "g", "default", "guarantee,reply-requested");
    s.dispatched();
    reply_with(&mut s, "jm", "g", Outcome::UnknownHandler);
    assert!(s.drain().iter().any(
        |(_, _, e)| matches!(&e.message, Message::Reply(Reply::Result(r)) if r.outcome == Outcome::UnknownHandler)
    ));
    s.send(Endpoint::Frontend, "c", "q", Message::Query { of: "g".into() });
    assert!(s
        .drain()
        .iter()
        .any(|(_, _, e)| matches!(&e.message, Message::Job { state, .. } if state == "FAILED")));
}

#[test]
fn jobmanager_death_counts_as_an_attempt() {
    let mut s = guaranteed_sim();
    s.request("c", "g", "default", "guarantee,reply-requested");
    s.request("c", "plain", "default", "reply-requested");
    for round in 0..3 {
        let jm = format!("jm{round}");
        s.inform(&jm, &[(10, "default")]);
        s.ready(&jm, 2);
        // The guaranteed job comes back after its backoff, the plain one at once.
        s.advance(Duration::from_millis(300));
        assert_eq!(s.dispatched().len(), 2, "round {round}");
        // This jobmanager dies with both jobs.
        s.advance(Duration::from_secs(6));
    }
    // Both reached 3 attempts (2 retries): final failures, not another cycle.
    let out = s.drain();
    let results: Vec<_> = out
        .iter()
        .filter_map(|(_, _, e)| match &e.message {
            Message::Reply(Reply::Result(r)) => Some((r.of.clone(), r.outcome)),
            _ => None,
        })
        .collect();
    assert_eq!(results.len(), 2, "{out:?}");
    assert!(results.iter().all(|(_, o)| *o == Outcome::Crashed));
    s.inform("jm-last", &[(10, "default")]);
    s.ready("jm-last", 2);
    assert!(s.dispatched().is_empty());
}

#[test]
fn restore_requeues_unfinished_and_keeps_finished() {
    use crate::store::Loaded;
    use crate::tracking::{JobBody, JobRecord, Status};
    let rec = |seq: u64, status: Status| JobRecord {
        queue: "default".into(),
        client: b"c".to_vec(),
        accepted_seq: seq,
        attempts: 1,
        max_attempts: 4,
        status,
        log: vec![],
        result: None,
        finished_unix_ms: Some(1_700_000_000_000),
    };
    let body = || {
        Some(JobBody {
            headers: "guarantee,reply-requested".into(),
            body: b"[]".to_vec(),
        })
    };
    let mut s = guaranteed_sim();
    s.r.restore(
        s.now,
        vec![
            Loaded {
                id: "second".into(),
                record: rec(2, Status::Running),
                body: body(),
            },
            Loaded {
                id: "done".into(),
                record: rec(1, Status::Finished),
                body: None,
            },
            Loaded {
                id: "first".into(),
                record: rec(1, Status::Queued),
                body: body(),
            },
        ],
    );
    s.inform("jm", &[(10, "default")]);
    s.ready("jm", 5);
    let got: Vec<String> = s.dispatched().into_iter().map(|(_, id)| id).collect();
    assert_eq!(
        got,
        vec!["first", "second"],
        "in acceptance order; the finished one is not re-run"
    );
    // Resubmitting the finished one does not run it.
    s.request("c", "done", "default", "guarantee,reply-requested");
    assert!(s.dispatched().is_empty());
}

#[test]
fn finished_guaranteed_jobs_are_purged_after_retention() {
    let mut s = Sim::new(Config {
        result_retention: Duration::from_secs(30),
        ..Config::default()
    });
    s.inform("jm", &[(10, "default")]);
    s.ready("jm", 1);
    s.request("c", "g", "default", "guarantee");
    s.dispatched();
    reply_with(&mut s, "jm", "g", Outcome::Ok);
    s.r.take_store_ops();
    for _ in 0..29 {
        s.send(
            Endpoint::Backend,
            "jm",
            "hb",
            Message::Heartbeat {
                unix_time: "0".into(),
                state: None,
            },
        );
        s.advance(Duration::from_secs(1));
    }
    assert!(s.r.take_store_ops().is_empty());
    s.send(
        Endpoint::Backend,
        "jm",
        "hb",
        Message::Heartbeat {
            unix_time: "0".into(),
            state: None,
        },
    );
    s.advance(Duration::from_secs(2));
    assert!(s.r.take_store_ops().contains(&StoreOp::Delete { id: "g".into() }));
    s.send(Endpoint::Frontend, "c", "q", Message::Query { of: "g".into() });
    assert!(matches!(
        s.drain().last().unwrap().2.message,
        Message::Error {
            code: ErrorCode::UnknownJob,
            ..
        }
    ));
}

#[test]
fn result_from_a_jobmanager_that_has_not_informed_yet_is_kept() {
    // After a restart the router holds a journaled job; the jobmanager that
    // ran it before the crash reports it before informing again.
    let mut s = guaranteed_sim();
    s.request("c", "g", "default", "guarantee,reply-requested");
    s.drain();
    reply_with(&mut s, "old-jm", "g", Outcome::Ok);
    let out = s.drain();
    assert!(out
        .iter()
        .any(|(ep, _, e)| *ep == Endpoint::Frontend
            && matches!(&e.message, Message::Reply(Reply::Result(r)) if r.of == "g")));
    assert!(out.iter().any(|(ep, _, e)| *ep == Endpoint::Backend
        && matches!(
            e.message,
            Message::Error {
                code: ErrorCode::NotInformed,
                ..
            }
        )));
    s.inform("jm", &[(10, "default")]);
    s.ready("jm", 1);
    assert!(s.dispatched().is_empty(), "not run again");
}

// ------------------------------------------------------- random input (fuzz)

/// xorshift64*: deterministic, so a failure names its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// A message that is valid more often than not, from a small set of ids so
/// that REQUESTs, REPLYs, CANCELs and QUERYs meet the same jobs.
fn random_message(rng: &mut Rng) -> Vec<Vec<u8>> {
    let id = format!("j{}", rng.below(50));
    let queue = ["default", "a", "b"][rng.below(3) as usize].to_string();
    let headers = [
        "",
        "reply-requested",
        "guarantee,reply-requested",
        "guarantee,retry-count:1",
    ][rng.below(4) as usize];
    let outcomes = [
        Outcome::Ok,
        Outcome::Crashed,
        Outcome::Failed,
        Outcome::TimedOut,
        Outcome::UnknownHandler,
    ];
    let msg = match rng.below(12) {
        0 => Message::Inform(Inform {
            queues: vec![(rng.below(20) as i64, queue)],
            peer_type: PeerType::Worker,
            timing: Some(Timing {
                heartbeat_ms: 100 + rng.below(2000),
                liveness_ms: 1000,
            }),
        }),
        1 | 2 => Message::Ready {
            count: 1 + rng.below(3) as u32,
        },
        3 | 4 => Message::Request(Request {
            queue,
            headers: Headers::parse(headers),
            body: b"[]".to_vec(),
        }),
        5 | 6 => Message::Reply(Reply::Result(ResultFrames {
            of: id.clone(),
            outcome: outcomes[rng.below(5) as usize],
            content_type: ContentType::Json,
            body: br#"{"value":1}"#.to_vec(),
        })),
        7 => Message::Heartbeat {
            unix_time: "1".into(),
            state: Some("IDLE".into()),
        },
        8 => Message::Cancel { of: id.clone() },
        9 => Message::Query { of: id.clone() },
        10 => [
            Message::Kbye,
            Message::Dead,
            Message::Retry { of: id.clone() },
            Message::Status,
            Message::Purge {
                queue: "default".into(),
            },
        ][rng.below(5) as usize]
            .clone(),
        _ => {
            // Raw garbage.
            return (0..rng.below(8))
                .map(|_| (0..rng.below(12)).map(|_| rng.next() as u8).collect())
                .collect();
        }
    };
    msg.encode_with_id(if matches!(msg, Message::Request(_)) { &id } else { "m" })
}

#[test]
fn random_message_sequences_never_panic_and_state_stays_bounded() {
    for seed in 1..=40u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let mut s = Sim::new(Config {
            max_waiting_per_queue: 20,
            max_waiting_total: 40,
            retry_backoff: Duration::from_millis(10),
            ..Config::default()
        });
        for _ in 0..2_000 {
            let frames = random_message(&mut rng);
            let ep = [Endpoint::Frontend, Endpoint::Backend, Endpoint::Admin][rng.below(3) as usize];
            let peer = PeerId(format!("p{}", rng.below(6)).into_bytes());
            s.r.handle(s.now, ep, peer, &frames);
            if rng.below(10) == 0 {
                s.advance(Duration::from_millis(rng.below(3000)));
            }
            s.r.take_outgoing().for_each(drop);
            s.r.take_store_ops();
            // Invariants that must hold after every message.
            let waiting: usize = s.r.queues.values().map(|q| q.waiting.len()).sum();
            assert_eq!(waiting, s.r.waiting_total, "seed {seed}: waiting count drifted");
            assert!(s.r.waiting_total <= 40, "seed {seed}: waiting bound broken");
            for (peer, w) in &s.r.workers {
                for id in &w.running {
                    let state = s.r.jobs.get(id).map(|j| &j.state);
                    assert!(
                        matches!(state, Some(JobState::Running { worker, .. }) if **worker == *peer),
                        "seed {seed}: {peer} runs {id}, the router says {state:?}"
                    );
                }
            }
            let running: usize = s.r.workers.values().map(|w| w.running.len()).sum();
            let in_jobs =
                s.r.jobs
                    .values()
                    .filter(|j| matches!(j.state, JobState::Running { .. }))
                    .count();
            assert_eq!(running, in_jobs, "seed {seed}: a running job no jobmanager holds");
            assert!(s.r.jobs.len() <= 50, "seed {seed}: more jobs than ids");
            assert!(s.r.peers.len() <= 60 && s.r.offenders.len() <= 10_001);
        }
    }
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

#[test]
fn guaranteed_result_for_an_unreachable_client_is_sent_again() {
    let mut s = guaranteed_sim();
    s.inform("jm", &[(10, "default")]);
    s.ready("jm", 1);
    s.request("c", "g", "default", "guarantee,reply-requested");
    s.dispatched();
    reply_with(&mut s, "jm", "g", Outcome::Ok);
    let reply =
        s.r.take_outgoing()
            .find(|o| o.endpoint == Endpoint::Frontend)
            .expect("the result");
    // The client is not connected (yet): the transport reports it.
    s.r.undeliverable(s.now, reply);
    assert!(s.drain().is_empty());
    s.send(
        Endpoint::Backend,
        "jm",
        "hb",
        Message::Heartbeat {
            unix_time: "0".into(),
            state: None,
        },
    );
    s.advance(Duration::from_secs(1));
    let out = s.drain();
    assert!(
        out.iter().any(|(ep, p, e)| *ep == Endpoint::Frontend
            && p == "c"
            && matches!(&e.message, Message::Reply(Reply::Result(r)) if r.of == "g")),
        "{out:?}"
    );
    // Delivered this time: not sent a third time.
    s.send(
        Endpoint::Backend,
        "jm",
        "hb",
        Message::Heartbeat {
            unix_time: "0".into(),
            state: None,
        },
    );
    s.advance(Duration::from_secs(1));
    assert!(!s.drain().iter().any(|(ep, _, _)| *ep == Endpoint::Frontend));
}
