//! Guaranteed jobs: journal, retries with backoff, dead letters, restore, redelivery.

use super::*;

/// The records put in `ops`: `(job, status, with its body in the same batch)`.
fn puts(ops: &[StoreOp]) -> Vec<(String, emq_proto::JobState, bool)> {
    let body_put = |row: &str| {
        ops.iter()
            .any(|op| matches!(op, StoreOp::Put { table: Table::Bodies, key, .. } if key == row))
    };
    ops.iter()
        .filter_map(|op| match op {
            StoreOp::Put {
                table: Table::Records,
                key,
                value,
            } => {
                let record: crate::tracking::JobRecord = rmp_serde::from_slice(value).unwrap();
                assert_eq!(*key, record.row_key(), "job rows are keyed by arrival order");
                Some((record.id.expect("the msgid"), record.status, body_put(key)))
            }
            _ => None,
        })
        .collect()
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
    use emq_proto::JobState as Status;
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
    use emq_proto::JobState as Status;
    let mut s = guaranteed_sim();
    s.inform("jm", &[(10, "default")]);
    s.ready("jm", 10);
    s.request("c", "poison", "default", "guarantee,reply-requested");
    assert_eq!(s.dispatched().len(), 1);
    let _ = s.r.take_store_ops();
    // Attempt 1 crashes: backoff of about 100 ms (±25%) before attempt 2.
    s.reply_with("jm", "poison", Outcome::Crashed);
    assert!(s.drain().is_empty(), "no result yet, no immediate redispatch");
    assert_eq!(
        puts(&s.r.take_store_ops()),
        vec![("poison".to_string(), Status::Queued, false)]
    );
    let due = s.r.next_deadline();
    assert!(
        due >= s.now.mono + Duration::from_millis(75) && due <= s.now.mono + Duration::from_millis(125),
        "{:?}",
        due - s.now.mono
    );
    s.advance(Duration::from_millis(60));
    assert!(s.dispatched().is_empty());
    s.advance(Duration::from_millis(70));
    assert_eq!(s.dispatched().len(), 1, "attempt 2");
    // Attempt 2 times out: backoff doubles.
    s.reply_with("jm", "poison", Outcome::TimedOut);
    let due = s.r.next_deadline();
    assert!(due >= s.now.mono + Duration::from_millis(150), "{:?}", due - s.now.mono);
    s.advance(Duration::from_millis(260));
    assert_eq!(s.dispatched().len(), 1, "attempt 3");
    // Attempt 3 of 3 crashes: dead-lettered, the client hears the final failure.
    s.reply_with("jm", "poison", Outcome::Crashed);
    let out = s.drain();
    assert!(matches!(&out[0].2.message, Message::Reply(Reply::Result(r)) if r.outcome == Outcome::Crashed));
    assert_eq!(puts(&s.r.take_store_ops()).last().unwrap().1, Status::Dead);
    for _ in 0..10 {
        s.heartbeat("jm");
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
    assert_eq!(*state, JobState::Dead);
    let d = serde_json::to_value(detail).unwrap();
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
    s.reply_with("jm", "poison", Outcome::Ok);
    s.send(Endpoint::Frontend, "c", "q", Message::Query { of: "poison".into() });
    assert!(s
        .drain()
        .iter()
        .any(|(_, _, e)| matches!(&e.message, Message::Job { state, .. } if *state == JobState::Finished)));
}

/// An unknown handler may be deployed by the next attempt's jobmanager: a
/// guaranteed job is retried with backoff and dead-lettered past its
/// attempts. A body no jobmanager can decode is final at once.
#[test]
fn unknown_handler_is_retried_then_dead_lettered_bad_request_is_final() {
    let mut s = guaranteed_sim();
    s.inform("jm", &[(10, "default")]);
    s.ready("jm", 10);
    s.request("c", "g", "default", "guarantee,reply-requested");
    for attempt in 1..=3 {
        assert_eq!(s.dispatched().len(), 1, "attempt {attempt}");
        s.reply_with("jm", "g", Outcome::UnknownHandler);
        s.advance(Duration::from_millis(500));
    }
    assert!(s.drain().iter().any(
        |(_, _, e)| matches!(&e.message, Message::Reply(Reply::Result(r)) if r.outcome == Outcome::UnknownHandler)
    ));
    s.send(Endpoint::Frontend, "c", "q", Message::Query { of: "g".into() });
    assert!(s
        .drain()
        .iter()
        .any(|(_, _, e)| matches!(&e.message, Message::Job { state, .. } if *state == JobState::Dead)));

    s.request("c", "bad", "default", "guarantee,reply-requested");
    assert_eq!(s.dispatched().len(), 1);
    s.reply_with("jm", "bad", Outcome::BadRequest);
    assert!(s
        .drain()
        .iter()
        .any(|(_, _, e)| matches!(&e.message, Message::Reply(Reply::Result(r)) if r.outcome == Outcome::BadRequest)));
    s.advance(Duration::from_secs(5));
    assert!(s.dispatched().is_empty(), "not retried");
    s.send(Endpoint::Frontend, "c", "q", Message::Query { of: "bad".into() });
    assert!(s
        .drain()
        .iter()
        .any(|(_, _, e)| matches!(&e.message, Message::Job { state, .. } if *state == JobState::Failed)));
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

/// A journaled record of a job of `default` accepted `seq`-th, as journals
/// before arrival-order keys wrote it (keyed by its msgid, no `id`).
fn stored_record(seq: u64, status: emq_proto::JobState) -> crate::tracking::JobRecord {
    crate::tracking::JobRecord {
        id: None,
        queue: "default".into(),
        client: b"c".to_vec(),
        accepted_seq: seq,
        attempts: 1,
        max_attempts: 4,
        status,
        log: vec![],
        result: None,
        finished_unix_ms: Some(1_700_000_000_000),
        not_before_unix_ms: None,
        flow: None,
    }
}

/// A journaled body for job `id`.
fn stored_body(id: &str) -> crate::journal::Row {
    let body = crate::tracking::JobBody {
        headers: "guarantee,reply-requested".into(),
        body: b"[]".to_vec(),
    };
    crate::journal::Row::new(Table::Bodies, id, &body)
}

#[test]
fn restore_requeues_unfinished_and_keeps_finished() {
    use crate::journal::Row;
    use emq_proto::JobState as Status;
    let (rec, body) = (stored_record, stored_body);
    let mut s = guaranteed_sim();
    s.r.restore(
        s.now,
        vec![
            Row::new(Table::Records, "second", &rec(2, Status::Running)),
            body("second"),
            Row::new(Table::Records, "done", &rec(1, Status::Finished)),
            body("first"),
            Row::new(Table::Records, "first", &rec(1, Status::Queued)),
        ],
    )
    .unwrap();
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

/// Journals written before arrival-order keys keyed job rows by msgid: a
/// router that loads one moves every job to its own key in the first
/// commit (a repeated acceptance number gets a fresh one), and the moved
/// journal loads the same jobs with nothing left to move.
#[test]
fn an_older_journal_keyed_by_msgid_moves_to_arrival_order_keys() {
    use crate::journal::Row;
    use emq_proto::JobState as Status;
    let (rec, body) = (stored_record, stored_body);
    let older = vec![
        Row::new(Table::Records, "second", &rec(2, Status::Running)),
        body("second"),
        Row::new(Table::Records, "done", &rec(1, Status::Finished)),
        body("first"),
        Row::new(Table::Records, "first", &rec(1, Status::Queued)),
    ];
    let mut s = guaranteed_sim();
    s.r.restore(s.now, older).unwrap();
    let mut journal = MemJournal::default();
    journal.apply(
        ["second", "done", "first"]
            .iter()
            .flat_map(|id| {
                [
                    StoreOp::put(Table::Records, *id, &[0u8]),
                    StoreOp::put(Table::Bodies, *id, &[0u8]),
                ]
            })
            .collect(),
    );
    journal.apply(s.r.take_store_ops());
    let rows = journal.rows();
    assert!(
        rows.iter().all(|r| r.key.starts_with('#')),
        "no msgid keys left: {rows:?}"
    );
    let mut moved: Vec<(String, u64, bool)> = rows
        .iter()
        .filter(|r| r.table == Table::Records)
        .map(|r| {
            let record: crate::tracking::JobRecord = r.decode().unwrap();
            assert_eq!(r.key, record.row_key());
            let with_body = journal.0.contains_key(&(Table::Bodies, r.key.clone()));
            (record.id.unwrap(), record.accepted_seq, with_body)
        })
        .collect();
    moved.sort();
    assert_eq!(
        moved,
        [
            ("done".to_string(), 1, false),
            ("first".to_string(), 3, true),
            ("second".to_string(), 2, true)
        ],
        "the second job accepted first gets a fresh number; bodies move with their records"
    );

    let mut again = guaranteed_sim();
    again.r.restore(again.now, journal.rows()).unwrap();
    let ops = again.r.take_store_ops();
    assert!(
        ops.iter().all(|op| matches!(
            op,
            StoreOp::Put {
                table: Table::Records,
                ..
            }
        )),
        "only the requeued jobs' records are written again: {ops:?}"
    );
    again.inform("jm", &[(10, "default")]);
    again.ready("jm", 5);
    let got: Vec<String> = again.dispatched().into_iter().map(|(_, id)| id).collect();
    assert_eq!(got, ["second", "first"], "in their (new) acceptance order");
    again.request("c", "done", "default", "guarantee,reply-requested");
    assert!(again.dispatched().is_empty(), "the finished one is still known");
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
    s.reply_with("jm", "g", Outcome::Ok);
    let _ = s.r.take_store_ops();
    let row = s.row_of("g");
    for _ in 0..29 {
        s.heartbeat("jm");
        s.advance(Duration::from_secs(1));
    }
    assert!(s.r.take_store_ops().is_empty());
    s.heartbeat("jm");
    s.advance(Duration::from_secs(2));
    let ops = s.r.take_store_ops();
    assert!(ops.contains(&StoreOp::delete(Table::Records, row.as_str())));
    assert!(ops.contains(&StoreOp::delete(Table::Bodies, row.as_str())));
    assert!(!known(&mut s, "g"));
}

/// Whether the router still knows job `id` (QUERY answers with its state).
fn known(s: &mut Sim, id: &str) -> bool {
    s.send(Endpoint::Frontend, "c", "q", Message::Query { of: id.into() });
    !s.drain().iter().any(|(_, _, e)| {
        matches!(
            e.message,
            Message::Error {
                code: ErrorCode::UnknownJob,
                ..
            }
        )
    })
}

/// The retention alone would keep every guaranteed job of the last ten
/// minutes (millions under load): past `result_capacity` ended jobs the
/// oldest go first, here and in the journal, at once and at a restart.
/// Dead-lettered ones keep their full retention.
#[test]
fn ended_guaranteed_jobs_past_the_result_capacity_are_purged_oldest_first() {
    let mut s = Sim::new(Config {
        result_capacity: 3,
        default_retries: 0,
        ..Config::default()
    });
    s.inform("jm", &[(10, "default")]);
    s.ready("jm", 10);
    s.request("c", "poison", "default", "guarantee");
    s.dispatched();
    s.reply_with("jm", "poison", Outcome::Failed);
    let mut rows = Vec::new();
    for n in 0..5 {
        let id = format!("g{n}");
        s.request("c", &id, "default", "guarantee");
        s.dispatched();
        rows.push(s.row_of(&id));
        s.reply_with("jm", &id, Outcome::Ok);
        s.ready("jm", 1);
    }
    let ops = s.r.take_store_ops();
    for (n, row) in rows.iter().enumerate() {
        let deleted = ops.contains(&StoreOp::delete(Table::Records, row.as_str()))
            && ops.contains(&StoreOp::delete(Table::Bodies, row.as_str()));
        assert_eq!(deleted, n < 2, "g{n}: only the two oldest beyond 3 are purged");
    }
    for n in 0..5 {
        assert_eq!(known(&mut s, &format!("g{n}")), n >= 2, "g{n}");
    }
    assert!(known(&mut s, "poison"), "a dead-lettered job is not purged early");
    s.send(Endpoint::Admin, "admin", "d", Message::Dead);
    assert_eq!(
        notice(&s.drain())["dead"][0]["id"],
        "poison",
        "still in the dead letters"
    );

    // A journal holding more ended jobs than the capacity (a router
    // restarted with a smaller one) keeps the newest.
    use crate::journal::Row;
    use emq_proto::JobState as Status;
    let mut again = Sim::new(Config {
        result_capacity: 2,
        ..Config::default()
    });
    let journal: Vec<Row> = (1..=4)
        .flat_map(|seq| {
            let mut record = stored_record(seq, Status::Finished);
            record.id = Some(format!("done{seq}"));
            record.finished_unix_ms = Some(1_700_000_000_000 + seq as i64);
            let row = record.row_key();
            [Row::new(Table::Records, &row, &record), stored_body(&row)]
        })
        .collect();
    again.r.restore(again.now, journal).unwrap();
    let ops = again.r.take_store_ops();
    for seq in 1..=4u64 {
        let row = crate::tracking::row_key(seq);
        assert_eq!(
            ops.contains(&StoreOp::delete(Table::Records, row.as_str())),
            seq <= 2,
            "done{seq}: the oldest finished go first"
        );
        assert_eq!(known(&mut again, &format!("done{seq}")), seq > 2, "done{seq}");
    }
}

/// Guaranteed job `id` of `client` run (on "jm") and ended, its result
/// reported undeliverable by the transport: the client is not connected
/// (yet).
fn ended_for_an_unreachable_client(s: &mut Sim, client: &str, id: &str) {
    s.request(client, id, "default", "guarantee,reply-requested");
    s.dispatched();
    s.reply_with("jm", id, Outcome::Ok);
    let reply =
        s.r.take_outgoing()
            .find(|o| o.endpoint == Endpoint::Frontend)
            .expect("the result");
    s.r.undeliverable(s.now, reply);
}

/// A job whose result its client has not received (unreachable when it
/// was sent) is not purged for capacity: it is owed, leaves the count and
/// is kept until its retention.
#[test]
fn an_ended_job_whose_result_is_owed_is_not_purged_for_capacity() {
    let mut s = Sim::new(Config {
        result_capacity: 1,
        ..Config::default()
    });
    s.inform("jm", &[(10, "default")]);
    s.ready("jm", 10);
    ended_for_an_unreachable_client(&mut s, "away", "owed");
    for n in 0..3 {
        let id = format!("g{n}");
        s.request("c", &id, "default", "guarantee");
        s.dispatched();
        s.reply_with("jm", &id, Outcome::Ok);
        s.ready("jm", 1);
    }
    assert!(known(&mut s, "owed"), "owed to its client");
    assert!(!known(&mut s, "g0") && !known(&mut s, "g1") && known(&mut s, "g2"));
    // The client is back: the next heartbeat delivers it; it stays its
    // retention all the same, and the capacity keeps the newest others.
    s.heartbeat("jm");
    s.advance(Duration::from_secs(1));
    assert!(s
        .drain()
        .iter()
        .any(|(_, p, e)| p == "away" && matches!(&e.message, Message::Reply(Reply::Result(r)) if r.of == "owed")));
    s.request("c", "g3", "default", "guarantee");
    s.dispatched();
    s.reply_with("jm", "g3", Outcome::Ok);
    assert!(known(&mut s, "owed") && !known(&mut s, "g2") && known(&mut s, "g3"));
    s.advance(s.r.config.result_retention + Duration::from_secs(1));
    assert!(
        !known(&mut s, "owed") && !known(&mut s, "g3"),
        "both at their retention"
    );
}

#[test]
fn result_from_a_jobmanager_that_has_not_informed_yet_is_kept() {
    // After a restart the router holds a journaled job; the jobmanager that
    // ran it before the crash reports it before informing again.
    let mut s = guaranteed_sim();
    s.request("c", "g", "default", "guarantee,reply-requested");
    s.drain();
    s.reply_with("old-jm", "g", Outcome::Ok);
    let out = s.drain();
    assert!(out
        .iter()
        .any(|(ep, _, e)| *ep == Endpoint::Frontend
            && matches!(&e.message, Message::Reply(Reply::Result(r)) if r.of == "g")));
    // emq's jobmanager (its heartbeat carries its state) is told to INFORM
    // again; EventMQ's must hear nothing, or it never would.
    let heartbeat = |state| Message::Heartbeat {
        unix_time: "0".into(),
        state,
        workers: None,
    };
    s.send(
        Endpoint::Backend,
        "old-jm",
        "hb",
        heartbeat(Some(JobManagerState::Idle)),
    );
    assert!(s.drain().iter().any(|(ep, _, e)| *ep == Endpoint::Backend
        && matches!(
            e.message,
            Message::Error {
                code: ErrorCode::NotInformed,
                ..
            }
        )));
    s.send(Endpoint::Backend, "eventmq-jm", "hb", heartbeat(None));
    s.send(Endpoint::Backend, "eventmq-jm", "r", Message::Ready { count: 1 });
    assert!(
        s.drain().is_empty(),
        "EventMQ's jobmanager hears nothing before it INFORMs"
    );
    s.inform("jm", &[(10, "default")]);
    s.ready("jm", 1);
    assert!(s.dispatched().is_empty(), "not run again");
}

#[test]
fn guaranteed_result_for_an_unreachable_client_is_sent_again() {
    let mut s = guaranteed_sim();
    s.inform("jm", &[(10, "default")]);
    s.ready("jm", 1);
    ended_for_an_unreachable_client(&mut s, "c", "g");
    assert!(s.drain().is_empty());
    s.heartbeat("jm");
    s.advance(Duration::from_secs(1));
    let out = s.drain();
    assert!(
        out.iter().any(|(ep, p, e)| *ep == Endpoint::Frontend
            && p == "c"
            && matches!(&e.message, Message::Reply(Reply::Result(r)) if r.of == "g")),
        "{out:?}"
    );
    // Delivered this time: not sent a third time.
    s.heartbeat("jm");
    s.advance(Duration::from_secs(1));
    assert!(!s.drain().iter().any(|(ep, _, _)| *ep == Endpoint::Frontend));
}

#[test]
fn a_record_that_does_not_decode_stops_the_restore() {
    use crate::journal::Row;
    let mut s = guaranteed_sim();
    let bad = Row {
        table: Table::Records,
        key: "x".into(),
        value: b"\xc1 not msgpack".to_vec(),
    };
    let err = s.r.restore(s.now, vec![bad]).unwrap_err();
    assert_eq!((err.table, err.key.as_str()), ("records", "x"));
}

#[test]
fn a_body_without_its_record_is_removed_at_restore() {
    use crate::journal::Row;
    use crate::tracking::JobBody;
    let mut s = guaranteed_sim();
    let body = JobBody {
        headers: String::new(),
        body: vec![],
    };
    s.r.restore(s.now, vec![Row::new(Table::Bodies, "orphan", &body)])
        .unwrap();
    assert!(s.r.take_store_ops().contains(&StoreOp::delete(Table::Bodies, "orphan")));
}

/// A job running when the router died is queued again at restart; its
/// jobmanager's result for that earlier attempt, arriving before it
/// INFORMs the new router, ends the job, and the log counts the attempt
/// that produced it (not "after 0 attempts").
#[test]
fn a_result_from_before_a_restart_counts_its_attempt() {
    let mut s = Sim::default();
    s.inform("jm", &[(10, "default")]);
    s.ready("jm", 1);
    s.request("c", "g", "default", "guarantee,reply-requested");
    s.commit();
    assert_eq!(s.dispatched(), d(&[("jm", "g")]));
    s.commit();
    s.restart(Duration::from_secs(1));
    // Before any INFORM: the result is still the job's result.
    s.reply("jm", "g");
    s.commit();
    s.send(Endpoint::Admin, "ops", "q", Message::Query { of: "g".into() });
    let out = s.drain();
    let Some(Message::Job { state, detail, .. }) = out
        .iter()
        .map(|(_, _, e)| &e.message)
        .find(|m| matches!(m, Message::Job { .. }))
    else {
        panic!("{out:?}")
    };
    assert_eq!(*state, JobState::Finished);
    assert_eq!(detail.attempts, Some(1));
    let last = detail.log.last().unwrap();
    assert_eq!(last.message, "finished after 1 attempt(s)");
}

/// After a restart, a journaled job that may have been running waits for
/// its jobmanager's result for `restore_grace` before it is queued again:
/// a result that comes in that time finishes it, and it never runs twice.
#[test]
fn a_restored_job_waits_for_its_jobmanagers_result_before_running_again() {
    use emq_proto::JobState as Status;
    let grace = Duration::from_millis(800);
    let mut s = Sim::with_restore_grace(
        Config {
            restore_grace: grace,
            ..Config::default()
        },
        1_700_000_000_000,
    );
    s.r.restore(
        s.now,
        vec![
            Row::new(Table::Records, "ran", &stored_record(1, Status::Running)),
            stored_body("ran"),
            Row::new(Table::Records, "waited", &stored_record(2, Status::Queued)),
            stored_body("waited"),
        ],
    )
    .unwrap();
    s.inform("jm2", &[(10, "default")]);
    s.ready("jm2", 5);
    assert!(s.dispatched().is_empty(), "nothing runs again within the grace");
    // The jobmanager that ran it reconnects and sends its result.
    s.inform("jm1", &[(10, "default")]);
    s.reply("jm1", "ran");
    s.advance(grace);
    let got: Vec<String> = s.dispatched().into_iter().map(|(_, id)| id).collect();
    assert_eq!(got, vec!["waited"], "only the job without a result runs again");
}
