//! Random message sequences (proptest, which shrinks a failure to a short
//! sequence): the router never panics and its bookkeeping stays consistent.

use super::*;
use proptest::prelude::*;

/// A message that is valid more often than not, from a small set of ids so
/// that REQUESTs, REPLYs, CANCELs and QUERYs meet the same jobs.
fn message() -> impl Strategy<Value = Vec<Vec<u8>>> {
    // Mostly plain job ids, some the jobs of two small graphs.
    let id = (0..58u32).prop_map(|n| match n {
        0..50 => format!("j{n}"),
        n => format!("g{}/{}", n % 2, ["x", "y", "z", "x"][(n as usize / 2) % 4]),
    });
    let queue = proptest::sample::select(vec!["default", "a", "b"]).prop_map(str::to_string);
    let headers = proptest::sample::select(vec![
        "",
        "reply-requested",
        "guarantee,reply-requested",
        "guarantee,retry-count:1",
        "reply-requested,coalesce:k",
        "delay:1,coalesce:k",
        "reply-requested,unique:u",
        "guarantee,unique:u",
        "expires:1",
        "guarantee,expires:2,coalesce:k",
    ]);
    let outcome = proptest::sample::select(vec![
        Outcome::Ok,
        Outcome::Crashed,
        Outcome::Failed,
        Outcome::TimedOut,
        Outcome::UnknownHandler,
    ]);
    let garbage = proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..12), 0..8);
    (
        0..13u32,
        id,
        queue,
        headers,
        outcome,
        0..20i64,
        0..2000u64,
        1..4u32,
        0..8usize,
        garbage,
    )
        .prop_map(
            |(kind, id, queue, headers, outcome, weight, hb, count, admin, garbage)| {
                let msg = match kind {
                    0 => Message::Inform(Inform {
                        queues: vec![(weight, queue)],
                        peer_type: PeerType::Worker,
                        timing: Some(Timing {
                            heartbeat_ms: 100 + hb,
                            liveness_ms: 1000,
                        }),
                        // Some declare handlers, some take any: mixed queues.
                        capabilities: emq_proto::Capabilities {
                            handlers: match hb % 3 {
                                0 => None,
                                1 => Some(vec!["emq.echo".into()]),
                                _ => Some(vec!["myapp.add".into(), "emq.echo".into()]),
                            },
                            // Some read BATCHes of REQUESTs.
                            batch: hb % 2 == 0,
                        },
                    }),
                    1 | 2 => Message::Ready { count },
                    3 | 4 => Message::Request(Request {
                        queue,
                        headers: Headers::parse(headers),
                        body: match hb % 3 {
                            0 => b"[]".to_vec(),
                            1 => emq_proto::JobCall::new("emq.echo").encode(ContentType::Json),
                            _ => emq_proto::JobCall::new("myapp.add").encode(ContentType::Json),
                        },
                    }),
                    5 | 6 => Message::Reply(Reply::Result(ResultFrames {
                        of: id.clone(),
                        outcome,
                        content_type: ContentType::Json,
                        body: br#"{"value":1}"#.to_vec(),
                    })),
                    7 => Message::Heartbeat {
                        unix_time: "1".into(),
                        state: Some(JobManagerState::Idle),
                        workers: None,
                    },
                    8 => Message::Cancel { of: id.clone() },
                    11 => {
                        let graph = format!("g{}", hb % 2);
                        match admin % 3 {
                            0 => {
                                let node = |name: &str, after: &[&str]| emq_proto::graph::NodeSpec {
                                    after: after.iter().map(|a| a.to_string()).collect(),
                                    retries: Some((hb % 2) as u32),
                                    parent_results: weight % 2 == 0,
                                    summary: weight % 3 == 0,
                                    ..emq_proto::graph::NodeSpec::new(name, "emq.echo")
                                };
                                Message::Graph {
                                    spec: Box::new(emq_proto::graph::GraphSpec {
                                        id: Some(graph),
                                        on_failure: if weight % 2 == 0 {
                                            emq_proto::graph::FailurePolicy::FailFast
                                        } else {
                                            emq_proto::graph::FailurePolicy::Continue
                                        },
                                        notify: true,
                                        nodes: vec![node("x", &[]), node("y", &["x"]), node("z", &["x", "y"])],
                                    }),
                                }
                            }
                            1 => Message::GraphCancel { id: graph },
                            _ => Message::GraphQuery { id: graph },
                        }
                    }
                    9 => Message::Query { of: id.clone() },
                    10 => [
                        Message::Kbye,
                        Message::Dead,
                        Message::Retry { of: id.clone() },
                        Message::Discard { of: id.clone() },
                        Message::Waiting {
                            queue: queue.clone(),
                            offset: hb % 3,
                            limit: u64::from(count),
                        },
                        Message::Status,
                        Message::Purge {
                            queue: "default".into(),
                        },
                        Message::QueueSet {
                            queue,
                            change: emq_proto::views::QueueChange {
                                paused: Some(hb % 2 == 0),
                                concurrency: Some(hb % 4),
                                rate: Some(emq_proto::views::Rate {
                                    jobs: (hb % 3) as u32,
                                    per_ms: 500,
                                }),
                            },
                        },
                    ][admin]
                        .clone(),
                    _ => return garbage,
                };
                msg.encode_with_id(if matches!(msg, Message::Request(_)) { &id } else { "m" })
            },
        )
}

/// One step: a message from a peer on an endpoint, then maybe some time.
fn step() -> impl Strategy<Value = (Vec<Vec<u8>>, usize, u32, Option<u64>)> {
    (
        message(),
        0..3usize,
        0..6u32,
        proptest::option::weighted(0.1, 0..3000u64),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn random_message_sequences_never_panic_and_state_stays_bounded(
        steps in proptest::collection::vec(step(), 1..2_000)
    ) {
        let mut s = Sim::new(Config {
            max_waiting_per_queue: 20,
            max_waiting_total: 40,
            retry_backoff: Duration::from_millis(10),
            ..Config::default()
        });
        for (frames, ep, from, wait) in steps {
            let ep = [Endpoint::Frontend, Endpoint::Backend, Endpoint::Admin][ep];
            s.r.handle(s.now, ep, PeerId(format!("p{from}").into_bytes()), &frames);
            if let Some(ms) = wait {
                s.advance(Duration::from_millis(ms));
            }
            s.r.take_outgoing().for_each(drop);
            let _ = s.r.take_store_ops();
            // Invariants that must hold after every message.
            let waiting: usize = s.r.queues.iter().map(|(_, q)| q.waiting_len()).sum();
            for (name, q) in s.r.queues.iter() {
                if let Some(mixed) = q.mixed() {
                    let counted: usize = mixed.counts.values().sum();
                    prop_assert_eq!(counted, q.waiting_len(), "{}: handler counts drifted", name);
                }
            }
            prop_assert_eq!(waiting, s.r.queues.waiting_total(), "waiting count drifted");
            prop_assert!(s.r.queues.waiting_total() <= 40, "waiting bound broken");
            for (peer, jm) in &s.r.fleet {
                for id in &jm.running {
                    let place = s.r.jobs.get(id).map(|j| &j.place);
                    prop_assert!(
                        matches!(place, Some(Place::Running { jobmanager, .. }) if **jobmanager == *peer),
                        "{} runs {}, the router says {:?}", peer, id, place
                    );
                }
            }
            let running: usize = s.r.fleet.values().map(|jm| jm.running.len()).sum();
            let in_jobs = s.r.jobs.values().filter(|j| matches!(j.place, Place::Running { .. })).count();
            prop_assert_eq!(running, in_jobs, "a running job no jobmanager holds");
            prop_assert!(s.r.jobs.len() <= 56, "more jobs than ids");
            if let Err(e) = s.r.check_graphs() {
                prop_assert!(false, "{}", e);
            }
            for (name, q) in s.r.queues.iter() {
                if s.r.flow.control(name).is_some() {
                    let running = s.r.jobs.values().filter(|j| *j.queue == **name && matches!(j.place, Place::Running { .. })).count();
                    prop_assert_eq!(q.running, running, "{}: running count drifted", name);
                }
            }
            let delayed = s.r.jobs.values().filter(|j| matches!(j.place, Place::Delayed { .. })).count();
            prop_assert_eq!(s.r.timers.len(), delayed, "delayed count drifted");
            for ((mode, queue, key), holder) in s.r.flow.keys() {
                let job = s.r.jobs.get(holder);
                prop_assert!(job.is_some(), "{:?} key {}:{} outlived its job {}", mode, queue, key, holder);
                if *mode == crate::core::flow::KeyMode::Coalesce {
                    prop_assert!(job.is_some_and(|j| j.is_waiting()), "coalesce key {} names a started job", key);
                }
            }
            prop_assert!(s.r.peers.len() <= 60 && s.r.offenders.len() <= 10_001);
        }
    }
}
