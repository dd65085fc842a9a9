//! Schedules with simulated time: interval phase over restarts, missed-slot
//! policies, run_count, nohaste, a year of cron across DST, EventMQ's
//! SCHEDULE and UNSCHEDULE, exactly one fire per slot.

use super::*;
use emq_proto::views::{MissedPolicy, ScheduleAction, ScheduleInfo, ScheduleList, ScheduleSpec};
use emq_proto::{JobCall, ScheduleRequest};

const SEC: i64 = 1000;

/// A router whose heartbeats are rare, so that simulating a year is cheap.
fn slow_sim(unix_ms: i64) -> Sim {
    Sim::at(
        Config {
            heartbeat: Duration::from_secs(3600),
            liveness: Duration::from_secs(7200),
            ..Config::default()
        },
        unix_ms,
    )
}

fn body() -> Vec<u8> {
    JobCall::new("tasks.tick").encode(ContentType::Json)
}

fn every(name: &str, secs: u64) -> ScheduleSpec {
    ScheduleSpec {
        name: name.into(),
        queue: "default".into(),
        every_ms: Some(secs * 1000),
        ..ScheduleSpec::default()
    }
}

fn cron(name: &str, expr: &str, tz: &str) -> ScheduleSpec {
    ScheduleSpec {
        name: name.into(),
        queue: "default".into(),
        cron: Some(expr.into()),
        tz: Some(tz.into()),
        ..ScheduleSpec::default()
    }
}

/// The admin's answer to the last command: a schedule, or an error.
fn answer(s: &mut Sim) -> Result<ScheduleInfo, (ErrorCode, String)> {
    let out: Vec<Outgoing> = s.r.take_outgoing().collect();
    let last = out.last().expect("an answer");
    match decode(&last.frames).unwrap().message {
        Message::Reply(Reply::Notice(n)) => {
            assert!(last.after_commit, "a schedule is answered once journaled");
            Ok(n.view().unwrap())
        }
        Message::Error { code, reason, .. } => Err((code, reason)),
        other => panic!("{other:?}"),
    }
}

fn set(s: &mut Sim, spec: ScheduleSpec) -> Result<ScheduleInfo, (ErrorCode, String)> {
    s.send(
        Endpoint::Admin,
        "admin",
        "set",
        Message::ScheduleSet { spec, body: body() },
    );
    answer(s)
}

fn ctl(s: &mut Sim, name: &str, action: ScheduleAction) -> Result<ScheduleInfo, (ErrorCode, String)> {
    let msg = Message::ScheduleCtl {
        name: name.into(),
        action,
    };
    s.send(Endpoint::Admin, "admin", "ctl", msg);
    answer(s)
}

fn list(s: &mut Sim) -> Vec<ScheduleInfo> {
    s.send(Endpoint::Admin, "admin", "ls", Message::Schedules);
    match s.drain().pop().unwrap().2.message {
        Message::Reply(Reply::Notice(n)) => n.view::<ScheduleList>().unwrap().schedules,
        other => panic!("{other:?}"),
    }
}

/// The jobs fired since the last call, as `(schedule, slot)`, committing
/// the batch to the journal (a fire's body is written once, with the job).
fn fired(s: &mut Sim) -> Vec<(String, i64)> {
    let ops = s.r.take_store_ops();
    let mut out = Vec::new();
    for op in &ops {
        if let StoreOp::Put {
            table: Table::Bodies,
            key,
            ..
        } = op
        {
            let id = msgid_of_row(&ops, key).expect("a fire's record with its body");
            if let Some((name, slot)) = id.strip_prefix("sched:").and_then(|k| k.rsplit_once(':')) {
                out.push((name.to_string(), slot.parse().unwrap()));
            }
        }
    }
    s.journal.apply(ops);
    out
}

/// Run for `d`, returning the slots fired (then committed).
fn run(s: &mut Sim, d: Duration) -> Vec<i64> {
    s.run_for(d);
    fired(s).into_iter().map(|(_, slot)| slot).collect()
}

const T0: i64 = 1_800_000_000_000; // 2027-01-15T08:00:00Z

#[test]
fn an_interval_fires_at_creation_then_on_its_phase() {
    let mut s = slow_sim(T0);
    let info = set(&mut s, every("tick", 10)).unwrap();
    assert_eq!(info.fires, 1, "haste: the first fire is at creation");
    assert_eq!(fired(&mut s), vec![("tick".to_string(), T0)]);
    assert_eq!(
        run(&mut s, Duration::from_millis(35_000)),
        vec![T0 + 10 * SEC, T0 + 20 * SEC, T0 + 30 * SEC]
    );
    // Between slots the router sleeps until the next one.
    assert_eq!(s.r.next_deadline(), s.now.mono + Duration::from_secs(5));
}

#[test]
fn nohaste_waits_for_the_first_slot() {
    let mut s = slow_sim(T0);
    let info = set(
        &mut s,
        ScheduleSpec {
            nohaste: true,
            ..every("tick", 10)
        },
    )
    .unwrap();
    assert_eq!(
        (info.fires, info.next),
        (0, Some(emq_proto::views::timestamp_ms(T0 + 10 * SEC)))
    );
    assert!(fired(&mut s).is_empty());
    assert_eq!(run(&mut s, Duration::from_secs(20)), vec![T0 + 10 * SEC, T0 + 20 * SEC]);
}

#[test]
fn the_interval_phase_survives_a_restart() {
    let mut s = slow_sim(T0);
    set(&mut s, every("tick", 10)).unwrap();
    fired(&mut s);
    run(&mut s, Duration::from_millis(12_000));
    // Down for 3 s, between slots: nothing missed, the phase holds.
    s.restart(Duration::from_secs(3));
    assert!(fired(&mut s).is_empty());
    assert_eq!(run(&mut s, Duration::from_secs(10)), vec![T0 + 20 * SEC]);
    let info = &list(&mut s)[0];
    assert_eq!((info.fires, info.missed_slots), (3, 0));
}

#[test]
fn missed_slots_coalesce_into_one_fire_at_restart() {
    let mut s = slow_sim(T0);
    set(&mut s, every("tick", 10)).unwrap();
    fired(&mut s);
    run(&mut s, Duration::from_millis(12_000)); // fired T0+10
                                                // Down from T0+12 to T0+47: slots +20, +30, +40 pass.
    s.restart(Duration::from_secs(35));
    assert_eq!(
        fired(&mut s),
        vec![("tick".to_string(), T0 + 40 * SEC)],
        "once, for the latest"
    );
    assert_eq!(
        run(&mut s, Duration::from_secs(10)),
        vec![T0 + 50 * SEC],
        "then on its phase"
    );
    let info = &list(&mut s)[0];
    assert_eq!((info.fires, info.missed_slots), (4, 2));
}

#[test]
fn missed_slots_are_skipped_under_skip() {
    let mut s = slow_sim(T0);
    set(
        &mut s,
        ScheduleSpec {
            missed: MissedPolicy::Skip,
            ..every("tick", 10)
        },
    )
    .unwrap();
    fired(&mut s);
    run(&mut s, Duration::from_millis(12_000));
    s.restart(Duration::from_secs(35));
    assert!(fired(&mut s).is_empty());
    assert_eq!(run(&mut s, Duration::from_secs(10)), vec![T0 + 50 * SEC]);
    let info = &list(&mut s)[0];
    assert_eq!((info.fires, info.missed_slots), (3, 3));
}

#[test]
fn a_slot_fires_exactly_once_whatever_the_crash() {
    // The fire and the schedule's next slot are in one batch: a crash
    // before the commit loses both (the slot fires after the restart), a
    // crash after it keeps both (the slot does not fire again).
    let mut s = slow_sim(T0);
    set(
        &mut s,
        ScheduleSpec {
            nohaste: true,
            ..every("tick", 10)
        },
    )
    .unwrap();
    s.commit();
    s.run_for(Duration::from_secs(10));
    let ops = s.r.take_store_ops();
    let job_put = record_put(&ops, "sched:tick:1800000010000").is_some();
    let row_put = ops.iter().any(|op| {
        matches!(op, StoreOp::Put { table: Table::ScheduleState, key, value } if key == "tick"
            && rmp_serde::from_slice::<super::super::schedules::ScheduleState>(value).unwrap().next_ms == T0 + 20 * SEC)
    });
    assert!(job_put && row_put, "the job and the next slot in one batch: {ops:?}");
    // Crash before the commit: the slot fires again, once.
    s.restart(Duration::from_millis(1));
    assert_eq!(fired(&mut s), vec![("tick".to_string(), T0 + 10 * SEC)]);
    // Crash after it: the job is restored, the slot is not fired again.
    s.restart(Duration::from_millis(1));
    assert!(fired(&mut s).is_empty());
    s.inform("jm", &[(10, "default")]);
    s.ready("jm", 5);
    let out: Vec<Outgoing> = s.r.take_outgoing().collect();
    let request = out
        .iter()
        .find(|o| o.endpoint == Endpoint::Backend && matches!(o.carries, Carries::Job(_)))
        .expect("the restored job is dispatched");
    assert_eq!(request.carries, Carries::Job("sched:tick:1800000010000".into()));
    assert!(
        request.after_commit,
        "a fired job runs only once its fire is durable: run and then lost with a crash, its slot would be counted missed"
    );
}

#[test]
fn run_count_fires_that_many_times_then_the_schedule_ends() {
    let mut s = slow_sim(T0);
    let info = set(
        &mut s,
        ScheduleSpec {
            run_count: Some(3),
            ..every("three", 1)
        },
    )
    .unwrap();
    assert_eq!(info.remaining, Some(2));
    fired(&mut s);
    assert_eq!(run(&mut s, Duration::from_secs(10)), vec![T0 + SEC, T0 + 2 * SEC]);
    assert!(list(&mut s).is_empty(), "ended and removed");
    assert!(
        !s.journal.0.keys().any(|(t, _)| *t == Table::Schedules),
        "and gone from the journal"
    );
}

#[test]
fn paused_schedules_do_not_fire_and_resume_on_the_next_slot() {
    let mut s = slow_sim(T0);
    set(&mut s, every("tick", 10)).unwrap();
    fired(&mut s);
    assert!(ctl(&mut s, "tick", ScheduleAction::Pause).unwrap().paused);
    assert!(run(&mut s, Duration::from_secs(35)).is_empty());
    let info = ctl(&mut s, "tick", ScheduleAction::Resume).unwrap();
    assert_eq!(info.next, Some(emq_proto::views::timestamp_ms(T0 + 40 * SEC)));
    assert_eq!(run(&mut s, Duration::from_secs(10)), vec![T0 + 40 * SEC]);
    assert_eq!(list(&mut s)[0].missed_slots, 0, "paused slots are not missed ones");
    let removed = ctl(&mut s, "tick", ScheduleAction::Remove).unwrap();
    assert_eq!(removed.fires, 2);
    assert!(run(&mut s, Duration::from_secs(30)).is_empty());
    assert_eq!(
        ctl(&mut s, "tick", ScheduleAction::Pause).unwrap_err().0,
        ErrorCode::UnknownSchedule
    );
}

#[test]
fn a_fired_job_reports_to_its_schedule_and_is_then_forgotten() {
    let mut s = slow_sim(T0);
    s.alive.push("jm".into());
    s.inform("jm", &[(10, "default")]);
    s.drain();
    set(&mut s, every("tick", 60)).unwrap();
    fired(&mut s);
    s.ready("jm", 1);
    let sent = s.dispatched();
    assert_eq!(sent, d(&[("jm", "sched:tick:1800000000000")]));
    let r = ResultFrames {
        of: "sched:tick:1800000000000".into(),
        outcome: Outcome::Failed,
        content_type: ContentType::Json,
        body: br#"{"value":null,"error":"boom"}"#.to_vec(),
    };
    // Its last attempt (the default retries are 3): make it the last.
    for _ in 0..4 {
        s.send(Endpoint::Backend, "jm", "rep", Message::Reply(Reply::Result(r.clone())));
        s.run_for(Duration::from_secs(70));
        s.ready("jm", 1);
        s.dispatched();
        fired(&mut s);
    }
    let info = list(&mut s).into_iter().next().unwrap();
    assert!(info.fires >= 2);
    assert_eq!(info.last_outcome, Some(JobState::Dead), "{info:?}");
    assert_eq!(info.last_error.as_deref(), Some("boom"));
    // A job that ends well is forgotten once its schedule knows.
    let last = info.last_job.unwrap();
    let ok = ResultFrames {
        of: last.clone(),
        outcome: Outcome::Ok,
        content_type: ContentType::Json,
        body: br#"{"value":1}"#.to_vec(),
    };
    let row = s.row_of(&last);
    s.send(Endpoint::Backend, "jm", "rep", Message::Reply(Reply::Result(ok)));
    let ops = s.r.take_store_ops();
    assert!(ops.contains(&StoreOp::delete(Table::Records, row.as_str())), "{ops:?}");
    s.journal.apply(ops);
    assert_eq!(list(&mut s)[0].last_outcome, Some(JobState::Finished));
    s.send(Endpoint::Admin, "admin", "q", Message::Query { of: last });
    assert!(matches!(
        s.drain().pop().unwrap().2.message,
        Message::Error {
            code: ErrorCode::UnknownJob,
            ..
        }
    ));
}

#[test]
fn a_full_queue_makes_a_missed_slot_not_a_lost_promise() {
    let mut s = Sim::at(
        Config {
            max_waiting_per_queue: 2,
            ..Config::default()
        },
        T0,
    );
    set(&mut s, every("tick", 1)).unwrap();
    fired(&mut s);
    run(&mut s, Duration::from_secs(3));
    let info = &list(&mut s)[0];
    assert_eq!((info.fires, info.missed_slots), (2, 2), "{info:?}");
    assert!(info.last_error.as_deref().unwrap().contains("full"), "{info:?}");
}

#[test]
fn bad_schedules_are_refused_with_a_reason() {
    let mut s = slow_sim(T0);
    let cases = [
        (cron("x", "61 * * * *", "UTC"), "cron expression"),
        (cron("x", "* * * *", "UTC"), "4 fields"),
        (cron("x", "0 0 * * * * *", "UTC"), "7 fields"),
        (cron("x", "0 3 * * *", "Mars/Olympus"), "time zone"),
        (cron("x", "0 0 30 2 *", "UTC"), "matches no time"),
        (every("bad name!", 10), "schedule name"),
        (every("x", 0), "longer than zero"),
        (
            ScheduleSpec {
                cron: Some("* * * * *".into()),
                ..every("x", 10)
            },
            "exactly one",
        ),
        (
            ScheduleSpec {
                run_count: Some(0),
                ..every("x", 10)
            },
            "at least 1",
        ),
        (
            ScheduleSpec {
                headers: "delay:5".into(),
                ..every("x", 10)
            },
            "delay",
        ),
    ];
    for (spec, why) in cases {
        let (code, reason) = set(&mut s, spec.clone()).unwrap_err();
        assert_eq!(code, ErrorCode::Invalid, "{spec:?}");
        assert!(reason.contains(why), "{spec:?}: {reason}");
    }
    assert!(list(&mut s).is_empty());
    assert!(s.r.take_store_ops().is_empty());
}

/// Local wall-clock times of the fired slots.
fn local(slots: &[i64], tz: &str) -> Vec<jiff::civil::DateTime> {
    let tz = jiff::tz::TimeZone::get(tz).unwrap();
    slots
        .iter()
        .map(|ms| {
            jiff::Timestamp::from_millisecond(*ms)
                .unwrap()
                .to_zoned(tz.clone())
                .datetime()
        })
        .collect()
}

/// Midnight of a day in Berlin, in ms since the Unix epoch.
fn berlin_midnight(year: i16, month: i8, day: i8) -> i64 {
    jiff::civil::date(year, month, day)
        .at(0, 0, 0, 0)
        .in_tz("Europe/Berlin")
        .unwrap()
        .timestamp()
        .as_millisecond()
}

#[test]
fn a_year_of_a_daily_cron_in_berlin_across_both_dst_changes() {
    let mut s = slow_sim(berlin_midnight(2027, 1, 1));
    let spec = ScheduleSpec {
        nohaste: true,
        ..cron("daily", "30 2 * * *", "Europe/Berlin")
    };
    set(&mut s, spec).unwrap();
    let slots = run(&mut s, Duration::from_secs(365 * 86_400));
    let times = local(&slots, "Europe/Berlin");
    assert_eq!(times.len(), 365, "once a day");
    let mut dates: Vec<_> = times.iter().map(|t| t.date()).collect();
    dates.dedup();
    assert_eq!(dates.len(), 365, "never twice on one day");
    for t in &times {
        if t.date() == jiff::civil::date(2027, 3, 28) {
            // 02:30 does not exist that day (02:00 -> 03:00): the first
            // instant after the gap.
            assert_eq!(t.time(), jiff::civil::time(3, 0, 0, 0), "{t}");
        } else {
            assert_eq!(t.time(), jiff::civil::time(2, 30, 0, 0), "{t}");
        }
    }
    // 2027-10-31 02:30 happens twice (03:00 -> 02:00): it fired once, in
    // the first half (CEST, +02:00).
    let autumn = slots
        .iter()
        .find(|ms| local(&[**ms], "Europe/Berlin")[0].date() == jiff::civil::date(2027, 10, 31))
        .unwrap();
    let expected = jiff::Timestamp::from_second(1_824_942_600).unwrap(); // 2027-10-31T00:30:00Z
    assert_eq!(*autumn, expected.as_millisecond());
}

#[test]
fn a_repeating_cron_fires_in_both_halves_of_the_autumn_overlap() {
    // 2027-10-31 00:00 to 04:00 Berlin is five real hours.
    let mut s = slow_sim(berlin_midnight(2027, 10, 31));
    let spec = ScheduleSpec {
        nohaste: true,
        ..cron("half-hourly", "*/30 * * * *", "Europe/Berlin")
    };
    set(&mut s, spec).unwrap();
    let slots = run(&mut s, Duration::from_secs(5 * 3600));
    assert_eq!(slots.len(), 10, "every half hour of real time");
    assert!(slots.windows(2).all(|w| w[1] - w[0] == 1_800_000), "{slots:?}");
}

#[test]
fn six_fields_give_seconds() {
    let mut s = slow_sim(T0);
    let spec = ScheduleSpec {
        nohaste: true,
        ..cron("fast", "*/15 * * * * *", "UTC")
    };
    set(&mut s, spec).unwrap();
    assert_eq!(
        run(&mut s, Duration::from_secs(60)),
        vec![T0 + 15 * SEC, T0 + 30 * SEC, T0 + 45 * SEC, T0 + 60 * SEC]
    );
}

fn eventmq_schedule(queue: &str, headers: &str, interval: Option<u64>, cron: &str, args: &str) -> ScheduleRequest {
    let body = format!(
        r#"["run", {{"callable": "job", "path": "tasks", "args": {args}, "kwargs": {{}}, "class_args": [], "class_kwargs": {{}}}}]"#
    );
    ScheduleRequest {
        queue: queue.into(),
        headers: Headers::parse(headers),
        interval: interval.map(Duration::from_secs),
        body: body.into_bytes(),
        cron: cron.into(),
    }
}

/// What the client got back: ACK or an ERROR code.
fn client_answer(s: &mut Sim) -> Result<(), ErrorCode> {
    let out: Vec<Outgoing> = s.r.take_outgoing().collect();
    match decode(&out.last().unwrap().frames).unwrap().message {
        Message::Ack { .. } => {
            assert!(out.last().unwrap().after_commit);
            Ok(())
        }
        Message::Error { code, .. } => Err(code),
        other => panic!("{other:?}"),
    }
}

#[test]
fn eventmq_schedule_identity_is_the_call_and_the_queue() {
    let mut s = slow_sim(T0);
    let send = |s: &mut Sim, msg| {
        s.send(Endpoint::Frontend, "client", "m", msg);
        client_answer(s)
    };
    let a = eventmq_schedule("q2", "guarantee", Some(5), "", "[1]");
    assert_eq!(send(&mut s, Message::Schedule(a.clone())), Ok(()));
    assert_eq!(
        send(&mut s, Message::Schedule(a.clone())),
        Ok(()),
        "the same one again replaces it"
    );
    let other_queue = eventmq_schedule("q3", "guarantee", Some(5), "", "[1]");
    assert_eq!(send(&mut s, Message::Schedule(other_queue)), Ok(()));
    let other_args = eventmq_schedule("q2", "guarantee", None, "*/5 * * * *", "[2]");
    assert_eq!(send(&mut s, Message::Schedule(other_args)), Ok(()));
    let schedules = list(&mut s);
    assert_eq!(schedules.len(), 3);
    assert!(schedules
        .iter()
        .all(|i| i.origin == "eventmq" && i.handler == "tasks.job"));
    let cron = schedules.iter().find(|i| i.cron.is_some()).unwrap();
    assert_eq!(cron.queue, "q2", "cron honours the queue");
    assert_eq!(send(&mut s, Message::Unschedule(a.clone())), Ok(()));
    assert_eq!(list(&mut s).len(), 2);
    assert_eq!(send(&mut s, Message::Unschedule(a)), Err(ErrorCode::UnknownSchedule));
    let zero = eventmq_schedule("q2", "", Some(0), "", "[1]");
    assert_eq!(send(&mut s, Message::Schedule(zero)), Err(ErrorCode::Invalid));
    let neither = eventmq_schedule("q2", "", None, "", "[1]");
    assert_eq!(send(&mut s, Message::Schedule(neither)), Err(ErrorCode::Invalid));
}

#[test]
fn eventmq_run_count_and_nohaste_apply_to_interval_and_cron_alike() {
    let mut s = slow_sim(T0);
    let req = eventmq_schedule("q2", "guarantee,run_count:3", None, "* * * * *", "[1]");
    s.send(Endpoint::Frontend, "client", "m", Message::Schedule(req));
    assert_eq!(client_answer(&mut s), Ok(()));
    let mut slots: Vec<i64> = fired(&mut s).into_iter().map(|(_, slot)| slot).collect();
    slots.extend(run(&mut s, Duration::from_secs(600)));
    assert_eq!(slots.len(), 3, "haste plus two cron slots: {slots:?}");
    assert!(list(&mut s).is_empty());

    let req = eventmq_schedule("q2", "guarantee,nohaste", Some(30), "", "[9]");
    s.send(Endpoint::Frontend, "client", "m", Message::Schedule(req));
    assert_eq!(client_answer(&mut s), Ok(()));
    assert!(fired(&mut s).is_empty());
    // The fired job's headers: guaranteed, without EventMQ's schedule headers.
    s.run_for(Duration::from_secs(30));
    s.commit();
    let rows = s.journal.rows();
    let row = rows
        .iter()
        .find(|r| {
            r.table == Table::Records
                && r.decode::<crate::tracking::JobRecord>()
                    .unwrap()
                    .id
                    .unwrap()
                    .starts_with("sched:eventmq-job-")
        })
        .map(|r| r.key.clone())
        .unwrap();
    let job_headers = rmp_serde::from_slice::<crate::tracking::JobBody>(&s.journal.0[&(Table::Bodies, row)])
        .unwrap()
        .headers;
    assert_eq!(job_headers, "guarantee");
}

#[test]
fn schedule_commands_are_for_admins() {
    let mut s = slow_sim(T0);
    s.send(Endpoint::Frontend, "c", "m", Message::Schedules);
    assert!(matches!(
        s.drain().pop().unwrap().2.message,
        Message::Error {
            code: ErrorCode::AdminOnly,
            ..
        }
    ));
    set(&mut s, every("tick", 10)).unwrap();
    s.send(Endpoint::Admin, "admin", "s", Message::Status);
    match s.drain().pop().unwrap().2.message {
        Message::Reply(Reply::Notice(n)) => {
            assert_eq!(n.view::<emq_proto::views::RouterStatus>().unwrap().schedules, 1)
        }
        other => panic!("{other:?}"),
    }
    s.send(Endpoint::Admin, "admin", "s", Message::RouterShowSchedulers);
    match s.drain().pop().unwrap().2.message {
        Message::Reply(Reply::Notice(n)) => {
            let view: emq_proto::views::SchedulersView = n.view().unwrap();
            assert!(view.connected_schedulers.is_empty());
            assert_eq!(view.schedules, 1);
            assert_eq!(view.next_fire, Some(emq_proto::views::timestamp_ms(T0 + 10 * SEC)));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_schedule_without_its_state_row_stops_the_restore_and_an_orphan_state_is_dropped() {
    let mut s = slow_sim(T0);
    set(&mut s, every("tick", 10)).unwrap();
    s.commit();
    let mut journal = s.journal.clone();
    journal.0.remove(&(Table::ScheduleState, "tick".to_string()));
    let mut r = Router::new(Config::default(), s.now, 1);
    let err = r.restore(s.now, journal.rows()).unwrap_err();
    assert_eq!((err.table, err.key.as_str()), ("schedules", "tick"));
    assert!(err.reason.contains("state"), "{err}");

    let mut journal = s.journal.clone();
    journal.0.remove(&(Table::Schedules, "tick".to_string()));
    let mut r = Router::new(Config::default(), s.now, 1);
    r.restore(s.now, journal.rows()).unwrap();
    assert!(r
        .take_store_ops()
        .contains(&StoreOp::delete(Table::ScheduleState, "tick")));
}

#[test]
fn a_schedule_that_ends_at_creation_says_so() {
    let mut s = slow_sim(T0);
    let info = set(
        &mut s,
        ScheduleSpec {
            run_count: Some(1),
            ..every("once", 10)
        },
    )
    .unwrap();
    assert_eq!((info.name.as_str(), info.fires, info.remaining), ("once", 1, Some(0)));
    assert_eq!(info.handler, "tasks.tick");
    assert!(list(&mut s).is_empty());
}
