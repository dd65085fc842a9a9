//! Jobmanagers: INFORM, heartbeats, liveness, departures and what happens to their jobs.

use super::*;

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
        s.heartbeat("jm2");
    }
    s.drain();
    assert!(s.r.fleet.contains_key(&peer("jm1")), "still within its window");
    s.advance(Duration::from_millis(1100));
    assert!(!s.r.fleet.contains_key(&peer("jm1")), "expired");
    s.drain();
    s.heartbeat("jm2");
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
            capabilities: Default::default(),
        }),
    );
    s.advance(Duration::from_millis(5900));
    assert!(
        s.r.fleet.contains_key(&peer("slow")),
        "twice its 3 s heartbeat, not our 2 s"
    );
    s.advance(Duration::from_millis(200));
    assert!(!s.r.fleet.contains_key(&peer("slow")));
}

#[test]
fn heartbeats_are_sent_on_schedule_and_deadline_is_next_event() {
    let mut s = Sim::default();
    s.inform("jm", &[(10, "default")]);
    s.drain();
    assert_eq!(s.r.next_deadline(), s.now.mono + Duration::from_secs(1));
    s.advance(Duration::from_secs(1));
    let out = s.drain();
    assert!(
        matches!(out.as_slice(), [(Endpoint::Backend, p, Envelope { message: Message::Heartbeat { .. }, .. })] if p == "jm")
    );
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
            carries: Carries::Job("j1".into()),
        },
    );
    s.inform("c2", &[(10, "default")]);
    s.ready("c2", 1);
    assert_eq!(s.dispatched(), d(&[("c2", "j1")]));
}

/// An emq jobmanager's HEARTBEAT (it reports a state) is answered at once,
/// so that it can probe a silent link; an EventMQ one's is not.
#[test]
fn an_emq_jobmanagers_heartbeat_is_answered_at_once() {
    let mut s = Sim::default();
    s.inform("jm", &[(10, "default")]);
    s.drain();
    let beat = |state| Message::Heartbeat {
        unix_time: "0".into(),
        state,
        workers: None,
    };
    s.send(Endpoint::Backend, "jm", "hb", beat(Some(JobManagerState::Idle)));
    let out = s.drain();
    assert!(
        matches!(out.as_slice(), [(Endpoint::Backend, p, Envelope { message: Message::Heartbeat { .. }, .. })] if p == "jm"),
        "{out:?}"
    );
    s.inform_eventmq("old");
    s.drain();
    s.send(Endpoint::Backend, "old", "hb", beat(None));
    assert!(s.drain().is_empty(), "EventMQ jobmanagers keep the router's schedule");
}

/// A late result, from a jobmanager that was declared dead and came back,
/// for a job given since to another emq jobmanager: the first result wins
/// and that jobmanager is told to withdraw its copy (it drops it if no
/// worker started it).
#[test]
fn a_late_result_withdraws_the_second_copy() {
    let mut s = Sim::default();
    s.inform("jm1", &[(10, "default")]);
    s.ready("jm1", 1);
    s.request("c", "j1", "default", "");
    assert_eq!(s.dispatched(), d(&[("jm1", "j1")]));
    s.inform("jm2", &[(10, "default")]);
    s.ready("jm2", 1);
    s.r.connection_closed(s.now, &peer("jm1"));
    assert_eq!(s.dispatched(), d(&[("jm2", "j1")]));
    // jm1 comes back with a fresh identity and its result.
    s.inform("jm1b", &[(10, "default")]);
    s.drain();
    s.reply("jm1b", "j1");
    let out = s.drain();
    assert!(
        out.iter().any(|(ep, p, e)| *ep == Endpoint::Backend
            && p == "jm2"
            && matches!(&e.message, Message::Cancel { of } if of == "j1")),
        "{out:?}"
    );
    assert!(!s.r.jobs.contains_key(&JobKey::from("j1")), "the first result ended it");
    // jm2's result, if its copy had started, is ignored.
    s.reply("jm2", "j1");
    assert!(s.drain().iter().all(|(ep, _, _)| *ep == Endpoint::Backend));
}
