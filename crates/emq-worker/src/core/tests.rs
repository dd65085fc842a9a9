//! Jobmanager core tests with simulated time.

use super::*;

fn config() -> Config {
    Config {
        routers: vec!["r0".into(), "r1".into()],
        concurrency: 2,
        heartbeat: Duration::from_secs(1),
        liveness: Duration::from_secs(3),
        grace: Duration::from_secs(10),
        ..Config::default()
    }
}

struct Sim {
    jm: JobManager,
    now: Now,
}

/// The seed of every simulated jobmanager: runs repeat exactly.
const SEED: u128 = 0x5EED;

impl Sim {
    fn new(config: Config, prefetch: usize) -> Sim {
        let now = Now::new(Instant::now(), 1_700_000_000_000);
        Sim {
            jm: JobManager::new(
                Config {
                    prefetch: Some(prefetch),
                    ..config
                },
                now,
                SEED,
            ),
            now,
        }
    }

    /// The core's actions; like a pool with idle workers, every Start begins
    /// running at once.
    fn actions(&mut self) -> Vec<Action> {
        let actions: Vec<Action> = self.jm.take_actions().collect();
        for a in &actions {
            if let Action::Start { msgid, .. } = a {
                self.jm.on_job_started(self.now, msgid);
            }
        }
        actions
    }

    fn inform_id(actions: &[Action]) -> String {
        actions
            .iter()
            .find_map(|a| match a {
                Action::Send {
                    msgid,
                    message: Message::Inform(_),
                } => Some(msgid.clone()),
                _ => None,
            })
            .expect("an INFORM")
    }

    /// Boot and get ACKed; returns the actions after the ACK.
    fn connected(config: Config, prefetch: usize) -> (Sim, Vec<Action>) {
        let mut s = Sim::new(config, prefetch);
        let id = Self::inform_id(&s.actions());
        s.emq_router_acks(id);
        let a = s.actions();
        (s, a)
    }

    /// An emq router (1 s heartbeats, 3 s window) answers INFORM `id`.
    fn emq_router_acks(&mut self, id: String) {
        self.router(Message::Ack {
            of: id,
            timing: Some(Timing {
                heartbeat_ms: 1000,
                liveness_ms: 3000,
            }),
            admission: None,
            capabilities: Default::default(),
        });
    }

    fn router(&mut self, m: Message) {
        self.jm.on_router(self.now, "m", m);
    }

    /// A HEARTBEAT from the router: it is alive.
    fn router_beat(&mut self) {
        self.router(Message::Heartbeat {
            unix_time: "0".into(),
            state: None,
            workers: None,
        });
    }

    fn request(&mut self, id: &str, headers: &str) {
        let req = Request {
            queue: "default".into(),
            headers: Headers::parse(headers),
            body: b"[]".to_vec(),
        };
        self.jm.on_router(self.now, id, Message::Request(req));
    }

    fn done(&mut self, id: &str, outcome: Outcome) {
        self.jm
            .on_job_done(self.now, id, outcome, ContentType::Json, b"{}".to_vec());
    }

    fn advance(&mut self, d: Duration) {
        self.now = self.now.after(d);
        self.jm.tick(self.now);
    }
}

/// Slots announced: READY counts summed.
fn readies(a: &[Action]) -> usize {
    a.iter()
        .map(|a| match a {
            Action::Send {
                message: Message::Ready { count },
                ..
            } => *count as usize,
            _ => 0,
        })
        .sum()
}

fn replies(a: &[Action]) -> Vec<(String, Outcome)> {
    a.iter()
        .filter_map(|a| match a {
            Action::Send {
                message: Message::Reply(Reply::Result(r)),
                ..
            } => Some((r.of.clone(), r.outcome)),
            _ => None,
        })
        .collect()
}

fn starts(a: &[Action]) -> Vec<String> {
    a.iter()
        .filter_map(|a| match a {
            Action::Start { msgid, .. } => Some(msgid.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn boots_informs_and_announces_one_ready_per_slot_to_eventmq() {
    let mut s = Sim::new(config(), 0);
    let a = s.actions();
    assert_eq!(a[0], Action::Resize { workers: 2 });
    assert_eq!(a[1], Action::Connect { router: 0 });
    assert_eq!(s.jm.state(), State::Boot);
    let id = Sim::inform_id(&a);
    s.router(Message::Ack {
        of: "someone-else".into(),
        timing: None,
        admission: None,
        capabilities: Default::default(),
    });
    assert_eq!(readies(&s.actions()), 0, "an unrelated ACK is not ours");
    s.router(Message::Ack {
        of: id,
        timing: None,
        admission: None,
        capabilities: Default::default(),
    });
    assert_eq!(readies(&s.actions()), 2);
    assert_eq!(s.jm.state(), State::Idle);
}

#[test]
fn states_follow_the_load_and_slots_come_back() {
    let (mut s, _) = Sim::connected(config(), 0);
    s.request("j1", "");
    assert_eq!(starts(&s.actions()), vec!["j1"]);
    assert_eq!(s.jm.state(), State::Active);
    s.request("j2", "");
    s.actions();
    assert_eq!(s.jm.state(), State::Steady);
    s.done("j1", Outcome::Ok);
    let a = s.actions();
    assert_eq!(replies(&a), vec![("j1".to_string(), Outcome::Ok)]);
    assert_eq!(readies(&a), 1, "one slot freed, one READY");
    assert_eq!(s.jm.state(), State::Active);
}

#[test]
fn never_over_announces_after_reconnect() {
    let (mut s, _) = Sim::connected(config(), 0);
    s.request("j1", "");
    s.actions();
    // Router goes silent: after its window we reconnect to the next one.
    s.advance(Duration::from_millis(3100));
    let a = s.actions();
    assert!(a.contains(&Action::Connect { router: 1 }), "{a:?}");
    assert_eq!(s.jm.state(), State::Offline);
    // The job finishes while offline: the result waits for the next router.
    s.done("j1", Outcome::Ok);
    assert!(replies(&s.actions()).is_empty());
    let id = Sim::inform_id(&a);
    s.router(Message::Ack {
        of: id,
        timing: None,
        admission: None,
        capabilities: Default::default(),
    });
    let a = s.actions();
    assert_eq!(replies(&a), vec![("j1".to_string(), Outcome::Ok)]);
    assert_eq!(readies(&a), 2, "both slots free, each announced once");
}

#[test]
fn router_that_forgot_us_gets_a_fresh_inform() {
    let (mut s, _) = Sim::connected(config(), 0);
    s.router(Message::Error {
        of: "x".into(),
        code: ErrorCode::NotInformed,
        reason: "?".into(),
    });
    let a = s.actions();
    assert!(
        !a.iter().any(|a| matches!(a, Action::Connect { .. })),
        "same connection"
    );
    let id = Sim::inform_id(&a);
    s.router(Message::Ack {
        of: id,
        timing: None,
        admission: None,
        capabilities: Default::default(),
    });
    assert_eq!(readies(&s.actions()), 2);
}

#[test]
fn heartbeats_carry_state_and_keep_time() {
    let (mut s, _) = Sim::connected(config(), 0);
    s.advance(Duration::from_secs(1));
    let a = s.actions();
    assert!(a.iter().any(
        |a| matches!(a, Action::Send { message: Message::Heartbeat { state: Some(st), .. }, .. } if *st == State::Idle)
    ));
    // Router keeps talking: no reconnect however long.
    for _ in 0..10 {
        s.router_beat();
        s.advance(Duration::from_secs(1));
    }
    assert!(!s.actions().iter().any(|a| matches!(a, Action::Connect { .. })));
}

#[test]
fn timeout_kills_and_reports_timed_out() {
    let (mut s, _) = Sim::connected(config(), 0);
    s.request("slow", "timeout:2");
    s.actions();
    assert_eq!(
        s.jm.next_deadline(),
        s.now.mono + Duration::from_secs(1),
        "heartbeat first"
    );
    s.router_beat();
    s.advance(Duration::from_secs(1));
    s.router_beat();
    s.advance(Duration::from_millis(1000));
    let a = s.actions();
    assert!(a.contains(&Action::Kill { msgid: "slow".into() }), "{a:?}");
    // The pool reports the killed worker as a crash; the core knows better.
    s.done("slow", Outcome::Crashed);
    assert_eq!(replies(&s.actions()), vec![("slow".to_string(), Outcome::TimedOut)]);
}

#[test]
fn default_timeout_applies_when_header_has_none() {
    let (mut s, _) = Sim::connected(
        Config {
            default_timeout: Duration::from_millis(500),
            ..config()
        },
        0,
    );
    s.request("j", "");
    s.actions();
    s.advance(Duration::from_millis(500));
    assert!(s.actions().contains(&Action::Kill { msgid: "j".into() }));
}

#[test]
fn crash_is_retried_when_the_job_asks() {
    let (mut s, _) = Sim::connected(config(), 0);
    s.request("j", "retry-count:1");
    s.actions();
    s.done("j", Outcome::Crashed);
    let a = s.actions();
    assert_eq!(starts(&a), vec!["j"], "second attempt");
    assert!(replies(&a).is_empty());
    s.done("j", Outcome::Crashed);
    assert_eq!(replies(&s.actions()), vec![("j".to_string(), Outcome::Crashed)]);
}

#[test]
fn unknown_handler_is_not_retried() {
    let (mut s, _) = Sim::connected(config(), 0);
    s.request("j", "retry-count:5");
    s.actions();
    s.done("j", Outcome::UnknownHandler);
    assert_eq!(replies(&s.actions()), vec![("j".to_string(), Outcome::UnknownHandler)]);
}

#[test]
fn prefetch_announces_extra_slots_and_queues_jobs_in_order() {
    let (mut s, a) = Sim::connected(config(), 2);
    assert_eq!(readies(&a), 4);
    for id in ["a", "b", "c", "d"] {
        s.request(id, "");
    }
    // All four go to the workers' shared queue, in order.
    assert_eq!(starts(&s.actions()), vec!["a", "b", "c", "d"]);
    s.request("e", "");
    assert!(starts(&s.actions()).is_empty(), "a fifth waits here");
    s.done("a", Outcome::Ok);
    let a = s.actions();
    assert_eq!(starts(&a), vec!["e"]);
    assert_eq!(readies(&a), 0, "the slot went to the job that waited");
    s.done("b", Outcome::Ok);
    assert_eq!(readies(&s.actions()), 1);
}

#[test]
fn shutdown_drains_then_says_kbye() {
    let (mut s, _) = Sim::connected(config(), 0);
    s.request("j1", "");
    s.actions();
    s.jm.shutdown(s.now);
    assert_eq!(s.jm.state(), State::ShuttingDown);
    s.request("late", "");
    assert!(starts(&s.actions()).is_empty(), "no new jobs while draining");
    s.done("j1", Outcome::Ok);
    let a = s.actions();
    assert_eq!(replies(&a), vec![("j1".to_string(), Outcome::Ok)]);
    assert_eq!(readies(&a), 0);
    assert!(a.iter().any(|a| matches!(
        a,
        Action::Send {
            message: Message::Kbye,
            ..
        }
    )));
    assert_eq!(a.last(), Some(&Action::Exit));
    assert_eq!(s.jm.state(), State::Shutdown);
}

#[test]
fn shutdown_grace_expires_and_second_signal_is_immediate() {
    let (mut s, _) = Sim::connected(config(), 0);
    s.request("stuck", "");
    s.jm.shutdown(s.now);
    s.actions();
    s.advance(Duration::from_secs(10));
    let a = s.actions();
    assert!(a.contains(&Action::KillAll) && a.last() == Some(&Action::Exit), "{a:?}");

    let (mut s, _) = Sim::connected(config(), 0);
    s.request("stuck", "");
    s.jm.shutdown(s.now);
    s.jm.shutdown(s.now);
    let a = s.actions();
    assert!(a.contains(&Action::KillAll) && a.last() == Some(&Action::Exit));
}

#[test]
fn kbye_from_router_fails_over() {
    let (mut s, _) = Sim::connected(config(), 0);
    s.router(Message::Kbye);
    assert!(s.actions().contains(&Action::Connect { router: 1 }));
    assert_eq!(s.jm.state(), State::Offline);
}

#[test]
fn emq_router_gets_one_counted_ready_per_batch() {
    let (mut s, a) = Sim::connected(config(), 2);
    let msgs: Vec<&Action> = a
        .iter()
        .filter(|a| {
            matches!(
                a,
                Action::Send {
                    message: Message::Ready { .. },
                    ..
                }
            )
        })
        .collect();
    assert_eq!(msgs.len(), 1, "one message for four slots: {a:?}");
    assert_eq!(readies(&a), 4);
    for id in ["a", "b"] {
        s.request(id, "");
    }
    s.actions();
    s.done("a", Outcome::Ok);
    s.done("b", Outcome::Ok);
    let a = s.actions();
    assert_eq!(readies(&a), 2);
    assert_eq!(
        a.iter()
            .filter(|a| matches!(
                a,
                Action::Send {
                    message: Message::Ready { .. },
                    ..
                }
            ))
            .count(),
        1
    );
}

#[test]
fn queued_jobs_time_out_from_when_they_start_and_taken_back_ones_run_again() {
    let (mut s, _) = Sim::connected(config(), 2);
    assert_eq!(
        readies(&s.jm.take_actions().collect::<Vec<_>>()),
        0,
        "4 slots announced at connect"
    );
    for id in ["a", "b", "c"] {
        s.request(id, "timeout:5");
    }
    // All three go to the pool's queue; `a` is taken first.
    let started: Vec<String> =
        s.jm.take_actions()
            .filter_map(|a| match a {
                Action::Start { msgid, .. } => Some(msgid),
                _ => None,
            })
            .collect();
    assert_eq!(started, vec!["a", "b", "c"]);
    s.jm.on_job_started(s.now, "a");
    s.now = s.now.after(Duration::from_secs(4));
    s.jm.on_job_done(s.now, "a", Outcome::Ok, ContentType::Json, b"{}".to_vec());
    s.jm.on_job_started(s.now, "b");
    // The router keeps talking (1.5 s of silence, half its window, and no
    // job would start until it spoke again).
    for _ in 0..4 {
        s.router_beat();
        s.advance(Duration::from_secs(1));
    }
    assert!(
        !s.jm.take_actions().any(|a| matches!(a, Action::Kill { .. })),
        "b has run 4 s of its 5"
    );
    // `c` was taken back from the queue: back to the backlog, queued again.
    s.jm.on_job_returned("c");
    let again: Vec<Action> = s.jm.take_actions().collect();
    assert!(
        again
            .iter()
            .any(|a| matches!(a, Action::Start { msgid, .. } if msgid == "c")),
        "{again:?}"
    );
    assert!(replies(&again).is_empty(), "a job that never ran is not reported");
    s.router_beat();
    s.advance(Duration::from_millis(1000));
    assert!(s.jm.take_actions().any(|a| a == Action::Kill { msgid: "b".into() }));
}

#[test]
fn a_guaranteed_job_sent_again_after_it_ran_gets_its_result_not_a_second_run() {
    let (mut s, _) = Sim::connected(config(), 0);
    s.request("g1", "guarantee");
    s.request("plain", "");
    let a = s.actions();
    let starts = |a: &[Action]| a.iter().filter(|a| matches!(a, Action::Start { .. })).count();
    assert_eq!(starts(&a), 2);
    s.done("g1", Outcome::Ok);
    s.done("plain", Outcome::Ok);
    assert_eq!(replies(&s.actions()).len(), 2);
    // The router crashed before journaling g1's end and sends it again.
    s.request("g1", "guarantee");
    let a = s.actions();
    assert_eq!(starts(&a), 0, "not run twice");
    assert_eq!(replies(&a), [("g1".to_string(), Outcome::Ok)]);
    // A failure is not kept: the router sends it again to retry it.
    s.request("g2", "guarantee");
    s.actions();
    s.done("g2", Outcome::Failed);
    s.actions();
    s.request("g2", "guarantee");
    assert_eq!(starts(&s.actions()), 1, "a failed attempt is retried");
}

/// A router connection that closes may take results with it (on the wire,
/// or not yet journaled): the guaranteed ones that ended ok since a second
/// before the router last spoke go to the next router after its ACK, so it
/// does not give those jobs to another jobmanager to run again.
#[test]
fn guaranteed_results_the_lost_router_may_not_have_kept_are_sent_again() {
    let (mut s, _) = Sim::connected(config(), 0);
    s.request("old", "guarantee");
    s.actions();
    s.done("old", Outcome::Ok);
    for _ in 0..3 {
        s.advance(Duration::from_secs(1));
        s.router_beat();
    }
    s.request("g1", "guarantee");
    s.request("plain", "");
    s.actions();
    s.done("g1", Outcome::Ok);
    s.done("plain", Outcome::Ok);
    assert_eq!(replies(&s.actions()).len(), 2);
    s.jm.on_router_disconnected(s.now);
    let id = Sim::inform_id(&s.actions());
    s.emq_router_acks(id);
    assert_eq!(
        replies(&s.actions()),
        [("g1".to_string(), Outcome::Ok)],
        "g1 again; not the plain job (the router does not keep those), nor one 3 s older"
    );
}

/// CANCEL from the router (it has another jobmanager's late result for the
/// job): a copy no worker has taken is dropped, one that runs goes on.
#[test]
fn a_copy_the_router_withdraws_is_dropped_unless_it_started() {
    let (mut s, _) = Sim::connected(config(), 4);
    for id in ["a", "b", "c", "d"] {
        s.request(id, "");
    }
    assert_eq!(starts(&s.jm.take_actions().collect::<Vec<_>>()).len(), 4);
    s.jm.on_job_started(s.now, "a");
    s.jm.on_job_started(s.now, "b");
    s.router(Message::Cancel { of: "c".into() });
    assert!(s.jm.take_actions().any(|a| a == Action::Withdraw));
    s.jm.on_job_returned("d");
    s.jm.on_job_returned("c");
    let a: Vec<Action> = s.jm.take_actions().collect();
    assert_eq!(starts(&a), ["d"], "c is dropped, d queued again");
    assert_eq!(readies(&a), 1, "c's slot is free again");
    s.router(Message::Cancel { of: "a".into() });
    assert!(s.jm.take_actions().next().is_none(), "a runs: nothing to do");
    assert_eq!(s.jm.held(), 3);
}

#[test]
fn without_a_fixed_prefetch_slots_follow_the_round_trip_and_job_durations() {
    let mut s = Sim::new(config(), 0);
    s.jm.config.prefetch = None;
    let a = s.actions();
    let inform = Sim::inform_id(&a);
    // INFORM answered 10 ms later; no job timed yet: no extra slot.
    s.now = s.now.after(Duration::from_millis(10));
    s.emq_router_acks(inform);
    assert_eq!(s.jm.capacity(), 2);
    let mut n = 0;
    let mut run = |s: &mut Sim, took: Duration| {
        n += 1;
        let id = format!("j{n}");
        s.request(&id, "");
        s.actions();
        s.now = s.now.after(took);
        s.done(&id, Outcome::Ok);
    };
    // 1 ms jobs behind a 10 ms round trip: 2 * 2 * 10 = 40 extra.
    for _ in 0..40 {
        run(&mut s, Duration::from_millis(1));
    }
    assert_eq!(s.jm.capacity(), 2 + 40);
    // Long jobs: none, so that jobs wait in the router (where other
    // jobmanagers, coalescing and expiry reach them).
    for _ in 0..10 {
        run(&mut s, Duration::from_secs(4));
    }
    assert_eq!(s.jm.capacity(), 2);
    // Slots already announced are not taken back, and no more are sent.
    let a = s.actions();
    assert_eq!(readies(&a), 0, "{a:?}");
}

#[test]
fn stopping_takes_back_queued_jobs_and_leaves_once_they_are_back() {
    let (mut s, _) = Sim::connected(config(), 4);
    for id in ["a", "b", "c", "d"] {
        s.request(id, "");
    }
    assert_eq!(starts(&s.jm.take_actions().collect::<Vec<_>>()), ["a", "b", "c", "d"]);
    s.jm.on_job_started(s.now, "a");
    s.jm.shutdown(s.now);
    let a: Vec<Action> = s.jm.take_actions().collect();
    assert!(a.contains(&Action::Withdraw), "{a:?}");
    // The pool hands back what no worker took, newest first.
    for id in ["d", "c", "b"] {
        s.jm.on_job_returned(id);
    }
    assert!(
        starts(&s.jm.take_actions().collect::<Vec<_>>()).is_empty(),
        "none queued again"
    );
    assert!(s.jm.backlog.is_empty(), "the router gets them back with KBYE");
    s.done("a", Outcome::Ok);
    let a: Vec<Action> = s.jm.take_actions().collect();
    assert!(a.contains(&Action::Exit), "{a:?}");
    assert!(a.iter().any(|a| matches!(
        a,
        Action::Send {
            message: Message::Kbye,
            ..
        }
    )));
}

#[test]
fn a_router_presumed_gone_gets_back_every_job_no_worker_started() {
    let (mut s, _) = Sim::connected(config(), 4);
    for id in ["a", "b", "c", "d", "e", "f", "g"] {
        s.request(id, "");
    }
    // Six go to the workers' queue (2 workers + 4), the seventh waits here.
    assert_eq!(starts(&s.jm.take_actions().collect::<Vec<_>>()).len(), 6);
    s.jm.on_job_started(s.now, "a");
    s.jm.on_job_started(s.now, "b");
    // Silence past the liveness window (3 s): reconnect, and take back what
    // no worker started, dropping the backlog.
    s.advance(Duration::from_secs(4));
    let a: Vec<Action> = s.jm.take_actions().collect();
    assert!(a.iter().any(|a| matches!(a, Action::Connect { .. })), "{a:?}");
    assert!(a.contains(&Action::Withdraw), "{a:?}");
    assert!(s.jm.backlog.is_empty());
    for id in ["f", "e", "d", "c"] {
        s.jm.on_job_returned(id);
    }
    // A running job finishes during the partition: kept for the next router.
    s.done("a", Outcome::Ok);
    let a: Vec<Action> = s.jm.take_actions().collect();
    assert!(starts(&a).is_empty(), "nothing starts while no router has us: {a:?}");
    assert!(replies(&a).is_empty());
    let Link::Informing { inform_id, .. } = &s.jm.link else {
        panic!("not informing: {:?}", s.jm.link)
    };
    let inform = inform_id.clone();
    s.emq_router_acks(inform);
    let a = s.actions();
    assert_eq!(
        replies(&a),
        [("a".to_string(), Outcome::Ok)],
        "the late result is delivered"
    );
    assert!(starts(&a).is_empty(), "no job the old router gave starts: {a:?}");
    assert_eq!(s.jm.running(), 1, "only b, still running");
}

#[test]
fn a_closed_router_connection_is_a_lost_router_at_once() {
    let (mut s, _) = Sim::connected(config(), 2);
    s.request("a", "");
    s.request("b", "");
    s.request("c", "");
    s.actions();
    s.jm.on_router_disconnected(s.now);
    let a: Vec<Action> = s.jm.take_actions().collect();
    assert!(a.contains(&Action::Connect { router: 1 }), "{a:?}");
    // The jobs were all started by the Sim's pool; none is queued.
    assert!(!a.contains(&Action::Withdraw));
    // While informing, a second close changes nothing.
    s.jm.on_router_disconnected(s.now);
    assert!(s.jm.take_actions().next().is_none());
}

/// An EventMQ router (it answers no probe, announces no timing) silent for
/// half the window: the queued jobs are taken back and kept until it speaks.
#[test]
fn a_quiet_router_holds_job_starts_until_it_speaks() {
    let mut s = Sim::new(config(), 4);
    let id = Sim::inform_id(&s.actions());
    s.router(Message::Ack {
        of: id,
        timing: None,
        admission: None,
        capabilities: Default::default(),
    });
    s.actions();
    for id in ["a", "b", "c", "d"] {
        s.request(id, "");
    }
    assert_eq!(starts(&s.jm.take_actions().collect::<Vec<_>>()).len(), 4);
    s.jm.on_job_started(s.now, "a");
    s.jm.on_job_started(s.now, "b");
    // Its assumed 3 s heartbeats make the window 9 s; three of them
    // would be 9 s too: half the window, 4.5 s, comes first.
    s.advance(Duration::from_millis(4400));
    assert!(!s.jm.take_actions().any(|a| a == Action::Withdraw), "not yet");
    s.advance(Duration::from_millis(200));
    let a: Vec<Action> = s.jm.take_actions().collect();
    assert!(a.contains(&Action::Withdraw), "{a:?}");
    s.jm.on_job_returned("d");
    s.jm.on_job_returned("c");
    s.done("a", Outcome::Ok);
    assert!(
        starts(&s.actions()).is_empty(),
        "nothing starts while the router is quiet"
    );
    assert_eq!(s.jm.backlog.len(), 2);
    // It speaks: the held jobs start, in order.
    s.router_beat();
    assert_eq!(starts(&s.actions()), ["c", "d"]);
}

fn probes(a: &[Action]) -> usize {
    a.iter()
        .filter(|a| {
            matches!(
                a,
                Action::Send {
                    message: Message::Heartbeat { .. },
                    ..
                }
            )
        })
        .count()
}

/// Holding jobs no worker started, a jobmanager probes an emq router silent
/// for four round trips (80 ms here) and holds those jobs back once the
/// probe has gone unanswered as long: a cut link stops job starts within
/// 160 ms here, not after half the liveness window. Holding none, it
/// neither probes nor holds back before then.
#[test]
fn a_silent_emq_router_is_probed_and_held_jobs_wait_for_its_answer() {
    let (mut s, _) = Sim::connected(config(), 4);
    // The answer to the HEARTBEAT after the ACK times the link: 20 ms.
    s.advance(Duration::from_millis(20));
    s.router_beat();
    assert_eq!(s.jm.slots.round_trip(), Duration::from_millis(20));
    s.advance(Duration::from_millis(500));
    assert_eq!(probes(&s.actions()), 0, "nothing held: no probe");
    s.router_beat();
    for id in ["a", "b", "c", "d"] {
        s.request(id, "");
    }
    assert_eq!(starts(&s.jm.take_actions().collect::<Vec<_>>()).len(), 4);
    s.jm.on_job_started(s.now, "a");
    s.jm.on_job_started(s.now, "b");
    assert_eq!(s.jm.next_deadline(), s.now.mono + Duration::from_millis(80));
    s.advance(Duration::from_millis(80));
    assert_eq!(probes(&s.actions()), 1, "probed");
    // Answered: nothing is held back, and the next probe is due 80 ms later.
    s.advance(Duration::from_millis(20));
    s.router_beat();
    s.advance(Duration::from_millis(79));
    let a = s.actions();
    assert_eq!(probes(&a), 0);
    assert!(!a.contains(&Action::Withdraw), "{a:?}");
    s.advance(Duration::from_millis(1));
    assert_eq!(probes(&s.actions()), 1);
    // Unanswered: held back at 160 ms of silence.
    s.advance(Duration::from_millis(79));
    assert!(!s.actions().contains(&Action::Withdraw));
    s.advance(Duration::from_millis(1));
    assert!(s.actions().contains(&Action::Withdraw));
    s.jm.on_job_returned("d");
    s.jm.on_job_returned("c");
    s.done("a", Outcome::Ok);
    assert!(starts(&s.actions()).is_empty(), "nothing starts while it is silent");
    s.router_beat();
    assert_eq!(starts(&s.actions()), ["c", "d"]);
}
