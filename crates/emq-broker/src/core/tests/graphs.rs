//! Workflows with simulated time: graphs and batches, each failure policy,
//! parents' results, cancellation, refusals, restarts at every step, and
//! the size of the work a large graph costs.

use super::*;
use emq_proto::graph::{
    BatchJob, BatchSpec, BatchSummary, CallbackWhen, FailurePolicy, GraphSpec, GraphState, GraphView, NodeSpec,
};
use emq_proto::JobCall;

fn spec(id: &str, policy: FailurePolicy, nodes: &[(&str, &[&str])]) -> GraphSpec {
    GraphSpec {
        id: Some(id.into()),
        on_failure: policy,
        notify: true,
        nodes: nodes
            .iter()
            .map(|(name, after)| NodeSpec {
                after: after.iter().map(|a| a.to_string()).collect(),
                retries: Some(0),
                ..NodeSpec::new(*name, "emq.echo")
            })
            .collect(),
    }
}

/// Submit `spec` from client "c"; what the router answered, and the jobs
/// it sent at once.
fn submit_and_run(s: &mut Sim, spec: GraphSpec) -> (Message, Vec<(String, JobCall)>) {
    s.send(
        Endpoint::Frontend,
        "c",
        "submit",
        Message::Graph { spec: Box::new(spec) },
    );
    s.commit();
    let (mut answers, mut started) = (Vec::new(), Vec::new());
    for (ep, _, e) in s.drain() {
        match (ep, e.message) {
            (Endpoint::Frontend, m) => answers.push(m),
            (Endpoint::Backend, Message::Request(r)) => started.push((
                e.msgid,
                JobCall::decode(&r.body, r.headers.content_type).expect("a call"),
            )),
            _ => {}
        }
    }
    (answers.into_iter().next().expect("an answer"), started)
}

fn submit(s: &mut Sim, spec: GraphSpec) -> Message {
    let (answer, started) = submit_and_run(s, spec);
    s.stash = started;
    answer
}

fn view(s: &mut Sim, id: &str) -> GraphView {
    s.send(Endpoint::Admin, "admin", "gq", Message::GraphQuery { id: id.into() });
    let mut views: Vec<GraphView> = s
        .drain()
        .into_iter()
        .filter_map(|(ep, _, e)| match (ep, e.message) {
            (Endpoint::Admin, Message::GraphInfo { view }) => Some(*view),
            _ => None,
        })
        .collect();
    views.pop().expect("a GRAPH_INFO")
}

fn states(v: &GraphView) -> Vec<(String, JobState)> {
    v.nodes.iter().map(|n| (n.name.clone(), n.state)).collect()
}

fn st(items: &[(&str, JobState)]) -> Vec<(String, JobState)> {
    items.iter().map(|(n, s)| (n.to_string(), *s)).collect()
}

/// REQUESTs sent, with their bodies decoded: (job id, call).
fn sent(s: &mut Sim) -> Vec<(String, JobCall)> {
    let mut out = std::mem::take(&mut s.stash);
    out.extend(s.drain().into_iter().filter_map(|(ep, _, e)| match (ep, e.message) {
        (Endpoint::Backend, Message::Request(r)) => Some((
            e.msgid,
            JobCall::decode(&r.body, r.headers.content_type).expect("a call"),
        )),
        _ => None,
    }));
    out
}

fn ids(calls: &[(String, JobCall)]) -> Vec<&str> {
    calls.iter().map(|(id, _)| id.as_str()).collect()
}

fn result(s: &mut Sim, of: &str, outcome: Outcome, body: &str) {
    let r = ResultFrames {
        of: of.into(),
        outcome,
        content_type: ContentType::Json,
        body: body.as_bytes().to_vec(),
    };
    s.send(Endpoint::Backend, "jm", "rep", Message::Reply(Reply::Result(r)));
    s.commit();
}

fn ok(s: &mut Sim, of: &str, value: &str) {
    result(s, of, Outcome::Ok, &format!(r#"{{"value":{value}}}"#));
}

fn fail(s: &mut Sim, of: &str) {
    result(s, of, Outcome::Failed, r#"{"value":null,"error":"boom"}"#);
}

fn with_jobmanager(slots: usize) -> Sim {
    let mut s = Sim::default();
    s.inform("jm", &[(10, "default")]);
    s.ready("jm", slots);
    s.drain();
    s
}

const DIAMOND: &[(&str, &[&str])] = &[("a", &[]), ("b", &["a"]), ("c", &["a"]), ("d", &["b", "c"])];

#[test]
fn a_diamond_runs_in_order_and_d_gets_its_parents_results() {
    let mut s = with_jobmanager(10);
    let mut g = spec("g", FailurePolicy::FailFast, DIAMOND);
    g.nodes[3].parent_results = true;
    let Message::GraphInfo { view: accepted } = submit(&mut s, g) else {
        panic!("not accepted")
    };
    let job_ids: Vec<&str> = accepted.nodes.iter().map(|n| n.id.as_str()).collect();
    assert_eq!(job_ids, ["g/a", "g/b", "g/c", "g/d"], "every job id in the answer");
    assert_eq!(
        states(&accepted),
        st(&[
            ("a", JobState::Queued),
            ("b", JobState::Blocked),
            ("c", JobState::Blocked),
            ("d", JobState::Blocked)
        ])
    );
    let first = sent(&mut s);
    assert_eq!(ids(&first), ["g/a"], "only the root runs");
    s.ready("jm", 1);
    ok(&mut s, "g/a", "1");
    assert_eq!(ids(&sent(&mut s)), ["g/b", "g/c"]);
    ok(&mut s, "g/b", "\"from b\"");
    assert!(sent(&mut s).is_empty(), "d waits for c");
    ok(&mut s, "g/c", "3");
    let d = sent(&mut s);
    assert_eq!(ids(&d), ["g/d"]);
    let parents = &d[0].1.kwargs["parents"];
    assert_eq!(parents["b"]["value"], "from b");
    assert_eq!(parents["c"]["value"], 3);
    assert_eq!(parents["c"]["state"], "FINISHED");
    assert_eq!(parents["c"]["id"], "g/c");
    ok(&mut s, "g/d", "4");
    // The submitter asked to be told when it ends.
    let told: Vec<GraphState> = s
        .drain()
        .into_iter()
        .filter_map(|(_, p, e)| match e.message {
            Message::GraphInfo { view } if p == "c" => Some(view.state),
            _ => None,
        })
        .collect();
    assert_eq!(told, [GraphState::Finished]);
    let v = view(&mut s, "g");
    assert_eq!(v.state, GraphState::Finished);
    assert_eq!(v.counts.finished, 4);
}

#[test]
fn fail_fast_cancels_the_dependents_named_as_blocked_by_the_failed_parent() {
    let mut s = with_jobmanager(10);
    let mut g = spec(
        "g",
        FailurePolicy::FailFast,
        &[
            ("a", &[]),
            ("b", &["a"]),
            ("c", &["a"]),
            ("d", &["b", "c"]),
            ("e", &["d"]),
        ],
    );
    g.notify = false;
    submit(&mut s, g);
    sent(&mut s);
    ok(&mut s, "g/a", "1");
    assert_eq!(ids(&sent(&mut s)), ["g/b", "g/c"]);
    fail(&mut s, "g/b");
    let v = view(&mut s, "g");
    assert_eq!(
        states(&v),
        st(&[
            ("a", JobState::Finished),
            ("b", JobState::Dead),
            ("c", JobState::Running),
            ("d", JobState::Cancelled),
            ("e", JobState::Cancelled)
        ]),
        "c is not a dependent of b: it goes on"
    );
    assert_eq!(v.nodes[3].blocked_by.as_deref(), Some("b"));
    assert_eq!(v.nodes[4].blocked_by.as_deref(), Some("b"), "named by the root cause");
    assert_eq!(v.nodes[4].error.as_deref(), Some("blocked by b (DEAD)"));
    assert_eq!(v.state, GraphState::Running);
    ok(&mut s, "g/c", "1");
    assert!(sent(&mut s).is_empty());
    let v = view(&mut s, "g");
    assert_eq!(v.state, GraphState::Failed);
    assert_eq!((v.counts.finished, v.counts.failed, v.counts.cancelled), (2, 1, 2));
    // The dead parent cannot be retried on its own: its graph moved on.
    s.send(Endpoint::Admin, "admin", "r", Message::Retry { of: "g/b".into() });
    let answer = s.drain().pop().unwrap().2.message;
    assert!(
        matches!(
            answer,
            Message::Error {
                code: ErrorCode::WrongState,
                ..
            }
        ),
        "{answer:?}"
    );
}

#[test]
fn continue_runs_the_dependents_and_shows_them_the_failure() {
    let mut s = with_jobmanager(10);
    let mut g = spec("g", FailurePolicy::Continue, DIAMOND);
    g.nodes[3].parent_results = true;
    submit(&mut s, g);
    sent(&mut s);
    ok(&mut s, "g/a", "1");
    sent(&mut s);
    fail(&mut s, "g/b");
    assert!(sent(&mut s).is_empty(), "d still waits for c");
    ok(&mut s, "g/c", "2");
    let d = sent(&mut s);
    assert_eq!(ids(&d), ["g/d"]);
    let parents = &d[0].1.kwargs["parents"];
    assert_eq!(parents["b"]["state"], "DEAD");
    assert_eq!(parents["b"]["error"], "boom");
    assert_eq!(parents["c"]["value"], 2);
    ok(&mut s, "g/d", "1");
    assert_eq!(view(&mut s, "g").state, GraphState::Failed, "one node did not finish");
}

#[test]
fn cancelling_a_graph_ends_what_has_not_started_and_lets_the_running_finish() {
    let mut s = with_jobmanager(1);
    submit(
        &mut s,
        spec("g", FailurePolicy::Continue, &[("a", &[]), ("x", &[]), ("b", &["a"])]),
    );
    assert_eq!(ids(&sent(&mut s)), ["g/a"], "one slot: x waits in the queue");
    s.send(
        Endpoint::Frontend,
        "c",
        "cancel",
        Message::GraphCancel { id: "g".into() },
    );
    s.commit();
    let v = view(&mut s, "g");
    assert_eq!(
        states(&v),
        st(&[
            ("a", JobState::Running),
            ("x", JobState::Cancelled),
            ("b", JobState::Cancelled)
        ])
    );
    ok(&mut s, "g/a", "1");
    s.ready("jm", 1);
    assert!(
        sent(&mut s).is_empty(),
        "nothing runs after a cancel, even under continue"
    );
    assert_eq!(view(&mut s, "g").state, GraphState::Cancelled);
    // One node can be cancelled too, like any job.
    submit(
        &mut s,
        spec(
            "h",
            FailurePolicy::FailFast,
            &[("a", &[]), ("b", &["a"]), ("c", &["b"])],
        ),
    );
    s.send(Endpoint::Frontend, "c", "x", Message::Cancel { of: "h/b".into() });
    s.commit();
    assert_eq!(
        states(&view(&mut s, "h")),
        st(&[
            ("a", JobState::Running),
            ("b", JobState::Cancelled),
            ("c", JobState::Cancelled)
        ])
    );
}

#[test]
fn refused_graphs_say_why_and_leave_nothing_behind() {
    let mut s = with_jobmanager(10);
    let cases: Vec<(GraphSpec, &str)> = vec![
        (
            spec(
                "g",
                FailurePolicy::FailFast,
                &[("a", &["c"]), ("b", &["a"]), ("c", &["b"])],
            ),
            "cycle: a -> b -> c -> a",
        ),
        (
            spec("g", FailurePolicy::FailFast, &[("a", &["nope"])]),
            "not in the graph",
        ),
        (spec("g/x", FailurePolicy::FailFast, &[("a", &[])]), "graph id"),
    ];
    for (g, why) in cases {
        match submit(&mut s, g) {
            Message::Error { code, reason, .. } => {
                assert_eq!(code, ErrorCode::Invalid);
                assert!(reason.contains(why), "{reason}");
            }
            other => panic!("accepted: {other:?}"),
        }
    }
    let mut small = with_jobmanager(10);
    small.r.config.max_graph_nodes = 2;
    match submit(&mut small, spec("g", FailurePolicy::FailFast, DIAMOND)) {
        Message::Error { reason, .. } => assert!(reason.contains("limit is 2"), "{reason}"),
        other => panic!("accepted: {other:?}"),
    }
    assert!(sent(&mut s).is_empty());
    assert!(s.journal.0.is_empty(), "nothing journaled");
    assert!(s.r.jobs.is_empty());
    s.send(Endpoint::Admin, "admin", "gq", Message::GraphQuery { id: "g".into() });
    assert!(matches!(
        s.drain().pop().unwrap().2.message,
        Message::Error {
            code: ErrorCode::UnknownGraph,
            ..
        }
    ));
}

#[test]
fn submitting_again_is_answered_with_the_same_graph() {
    let mut s = with_jobmanager(10);
    let Message::GraphInfo { view: first } = submit(&mut s, spec("g", FailurePolicy::FailFast, DIAMOND)) else {
        panic!()
    };
    assert_eq!(ids(&sent(&mut s)), ["g/a"]);
    let Message::GraphInfo { view: again } = submit(&mut s, spec("g", FailurePolicy::FailFast, DIAMOND)) else {
        panic!()
    };
    assert_eq!(first.nodes.len(), again.nodes.len());
    assert_eq!(again.nodes[0].state, JobState::Running);
    assert!(sent(&mut s).is_empty(), "nothing runs twice");
}

/// Run the diamond with a router crash after step `crash_after`
/// (uncommitted work lost, as in a kill -9), and count what ran.
fn diamond_with_a_crash(crash_after: usize) -> (Vec<String>, GraphView) {
    let mut s = with_jobmanager(10);
    s.alive.push("jm".into());
    submit(&mut s, spec("g", FailurePolicy::FailFast, DIAMOND));
    let mut ran: Vec<String> = Vec::new();
    let mut step = 0;
    loop {
        let started = sent(&mut s);
        ran.extend(started.iter().map(|(id, _)| id.clone()));
        if step == crash_after {
            s.restart(Duration::from_secs(1));
            s.inform("jm", &[(10, "default")]);
            s.ready("jm", 10);
            s.commit();
            // What was running at the crash is sent again: the jobmanager
            // still runs it (it ignores the duplicate) and reports once.
            for (id, _) in sent(&mut s) {
                assert!(ran.contains(&id), "{id} had not run before the crash");
            }
        }
        step += 1;
        let v = view(&mut s, "g");
        let Some(next) = v.nodes.iter().find(|n| n.state == JobState::Running) else {
            return (ran, v);
        };
        let id = next.id.clone();
        ok(&mut s, &id, "1");
        s.ready("jm", 1);
    }
}

#[test]
fn a_crash_at_any_step_runs_nothing_twice_that_reported_and_d_once() {
    for crash_after in 0..5 {
        let (ran, v) = diamond_with_a_crash(crash_after);
        assert_eq!(v.state, GraphState::Finished, "crash after step {crash_after}");
        let mut sorted = ran.clone();
        sorted.sort();
        assert_eq!(
            sorted,
            ["g/a", "g/b", "g/c", "g/d"],
            "crash after step {crash_after}: {ran:?}"
        );
    }
}

fn batch(n: usize, run: CallbackWhen) -> GraphSpec {
    let spec = BatchSpec {
        jobs: (0..n)
            .map(|_| BatchJob {
                handler: "emq.noop".into(),
                retries: Some(0),
                ..BatchJob::default()
            })
            .collect(),
        callback: BatchJob {
            handler: "app.done".into(),
            ..BatchJob::default()
        },
        run,
    };
    GraphSpec {
        id: Some("b".into()),
        ..GraphSpec::from_batch(spec)
    }
}

#[test]
fn a_batch_callback_gets_the_counts_and_failed_ids_once_at_any_crash_point() {
    for crash_at in 0..8 {
        let mut s = with_jobmanager(3);
        submit(&mut s, batch(5, CallbackWhen::Always));
        let mut callbacks = Vec::new();
        let mut running: Vec<String> = Vec::new();
        let (mut step, mut crashed) = (0, false);
        loop {
            for (id, call) in sent(&mut s) {
                if running.contains(&id) {
                    // Sent again after the crash while it still runs: the
                    // jobmanager ignores the duplicate.
                    continue;
                }
                if id == "b/callback" {
                    callbacks.push(call);
                }
                running.push(id);
            }
            if step == crash_at && !crashed {
                crashed = true;
                s.restart(Duration::from_millis(10));
                s.inform("jm", &[(10, "default")]);
                s.ready("jm", 3);
                s.commit();
                continue;
            }
            step += 1;
            let v = view(&mut s, "b");
            let Some(next) = v.nodes.iter().find(|n| n.state == JobState::Running) else {
                break;
            };
            let id = next.id.clone();
            if id == "b/job-2" {
                fail(&mut s, &id);
            } else {
                ok(&mut s, &id, "null");
            }
            running.retain(|r| *r != id);
            s.ready("jm", 1);
        }
        assert_eq!(callbacks.len(), 1, "crash at {crash_at}: the callback ran once");
        let summary: BatchSummary = serde_json::from_value(callbacks[0].kwargs["batch"].clone()).unwrap();
        assert_eq!(
            summary,
            BatchSummary {
                graph: "b".into(),
                total: 5,
                finished: 4,
                failed: 1,
                failed_ids: vec!["b/job-2".into()],
            }
        );
    }
    // On success only: a failure cancels it.
    let mut s = with_jobmanager(10);
    submit(&mut s, batch(2, CallbackWhen::OnSuccess));
    sent(&mut s);
    fail(&mut s, "b/job-1");
    ok(&mut s, "b/job-2", "null");
    assert!(sent(&mut s).is_empty());
    let v = view(&mut s, "b");
    assert_eq!(v.nodes[2].state, JobState::Cancelled);
    assert_eq!(v.state, GraphState::Failed);
}

#[test]
fn an_ended_graph_is_kept_for_the_retention_then_purged_with_its_jobs() {
    let mut s = with_jobmanager(10);
    s.alive.push("jm".into());
    submit(&mut s, spec("g", FailurePolicy::FailFast, &[("a", &[]), ("b", &["a"])]));
    sent(&mut s);
    ok(&mut s, "g/a", "1");
    s.run_for(Duration::from_secs(3600));
    s.commit();
    assert_eq!(
        view(&mut s, "g").nodes[0].state,
        JobState::Finished,
        "a graph keeps its nodes"
    );
    ok(&mut s, "g/b", "1");
    s.restart(Duration::from_secs(1));
    assert_eq!(view(&mut s, "g").state, GraphState::Finished, "kept across a restart");
    s.run_for(s.r.config.result_retention);
    s.commit();
    s.send(Endpoint::Admin, "admin", "gq", Message::GraphQuery { id: "g".into() });
    assert!(matches!(s.drain().pop().unwrap().2.message, Message::Error { .. }));
    assert!(
        s.journal.0.is_empty(),
        "graph and records gone: {:?}",
        s.journal.0.keys()
    );
}

/// The journal writes and router work a graph costs grow with its size,
/// not its square: a chain and a fan-out of 10,000 complete, with a bounded
/// number of store operations and bytes per node.
#[test]
fn ten_thousand_nodes_as_a_chain_and_a_fan_out_cost_linear_work() {
    // GRAPH_N=1000 (or 100000) compares sizes by hand; the test's bounds
    // are per node, so they hold at any size.
    let n: usize = std::env::var("GRAPH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let chain: Vec<NodeSpec> = (0..n)
        .map(|i| NodeSpec {
            after: if i == 0 { vec![] } else { vec![format!("n{}", i - 1)] },
            ..NodeSpec::new(format!("n{i}"), "emq.noop")
        })
        .collect();
    let mut fan: Vec<NodeSpec> = (0..n - 1).map(|i| NodeSpec::new(format!("n{i}"), "emq.noop")).collect();
    fan.push(NodeSpec {
        after: (0..n - 1).map(|i| format!("n{i}")).collect(),
        summary: true,
        ..NodeSpec::new("sink", "emq.noop")
    });
    for (shape, nodes) in [("chain", chain), ("fan", fan)] {
        let mut s = with_jobmanager(64);
        let g = GraphSpec {
            id: Some(shape.into()),
            nodes,
            ..GraphSpec::default()
        };
        s.send(Endpoint::Frontend, "c", "submit", Message::Graph { spec: Box::new(g) });
        let (mut ops, mut bytes, mut done) = (0usize, 0usize, 0usize);
        let mut count = |s: &mut Sim| {
            for op in s.r.take_store_ops() {
                ops += 1;
                if let StoreOp::Put { value, .. } = op {
                    bytes += value.len();
                }
            }
        };
        count(&mut s);
        let mut running: Vec<String> = Vec::new();
        loop {
            for (ep, _, e) in s.drain() {
                if let (Endpoint::Backend, Message::Request(_)) = (ep, e.message) {
                    running.push(e.msgid);
                }
            }
            let Some(id) = running.pop() else { break };
            let r = ResultFrames {
                of: id,
                outcome: Outcome::Ok,
                content_type: ContentType::Json,
                body: br#"{"value":null}"#.to_vec(),
            };
            s.send(Endpoint::Backend, "jm", "rep", Message::Reply(Reply::Result(r)));
            s.ready("jm", 1);
            count(&mut s);
            done += 1;
        }
        assert_eq!(done, n, "{shape}: every node ran once");
        assert_eq!(view(&mut s, shape).state, GraphState::Finished);
        println!("{shape}: {ops} store ops, {bytes} bytes for {n} nodes");
        assert!(ops <= 8 * n, "{shape}: {ops} store operations for {n} nodes");
        // The sink's summary lists no failed ids: its body stays small.
        assert!(bytes <= 2_000 * n, "{shape}: {bytes} bytes journaled for {n} nodes");
    }
}
