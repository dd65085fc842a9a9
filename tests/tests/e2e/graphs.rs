//! Workflows across real processes: a graph from a file through `emq-cli`
//! (status, DOT checked by Graphviz, SVG without it), refusals, and the
//! crash tests: the router killed between two parents finishing, and a
//! hundred batches each hit by a router kill -9, whose callbacks must each
//! run exactly once.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use emq_client::graph::{BatchJob, CallbackWhen, GraphState};
use emq_client::{Client, ClientError, ErrorCode, Graph, JobState, Node};
use emq_tests::{emq_cli, next_random, run_with_deadline, wait_until, JobManagerProc, RouterProc, Scratch};
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(30);

const ROUTER_ARGS: &[&str] = emq_tests::FAST_TIMING;

fn json_out(out: &emq_tests::Output) -> Value {
    assert_eq!(out.code, Some(0), "stdout: {} stderr: {}", out.stdout, out.stderr);
    serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

/// A shell job that appends its job id to `log` (one line per run).
fn marking(log: &Path, then: &str) -> Vec<String> {
    let script = format!("echo \"$EMQ_JOB_ID\" >> {}; {then}", log.display());
    vec!["sh".into(), "-c".into(), script]
}

fn lines(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn a_graph_file_runs_through_the_cli_and_is_drawn() {
    let scratch = Scratch::new();
    let r = RouterProc::start(ROUTER_ARGS);
    let _jm = JobManagerProc::start(&r, &["-J", "3"]);
    let file = scratch.path("graph.json");
    let graph = json!({
        "id": "report-1",
        "on_failure": "fail-fast",
        "nodes": [
            {"name": "fetch", "handler": "emq.echo", "args": ["raw"]},
            {"name": "left", "handler": "emq.echo", "args": [1], "after": ["fetch"]},
            {"name": "right", "program": ["sh", "-c", "echo 2"], "after": ["fetch"]},
            {"name": "join", "program": ["sh", "-c", "printf '%s' \"$EMQ_PARENTS\""], "after": ["left", "right"],
             "parent_results": true}
        ]
    });
    std::fs::write(&file, graph.to_string()).unwrap();
    let done = json_out(&emq_cli(
        &r,
        &["--json", "graph", "submit", file.to_str().unwrap(), "--wait"],
        None,
        T,
    ));
    assert_eq!(done["state"], "FINISHED", "{done}");
    assert_eq!(done["counts"]["finished"], 4);
    // The joining job saw its parents' results.
    let joined = json_out(&emq_cli(&r, &["--json", "result", "report-1/join"], None, T));
    let parents: Value = serde_json::from_str(joined["value"]["stdout"].as_str().unwrap().trim()).unwrap();
    assert_eq!(parents["left"]["value"], 1);
    assert_eq!(parents["right"]["value"]["stdout"], "2\n");
    assert_eq!(parents["right"]["state"], "FINISHED");

    let status = json_out(&emq_cli(&r, &["--json", "graph", "status", "report-1"], None, T));
    let attempts: Vec<u64> = status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["attempts"].as_u64().unwrap())
        .collect();
    assert_eq!(attempts, [1, 1, 1, 1]);
    let table = emq_cli(&r, &["graph", "status", "report-1"], None, T);
    assert!(
        table.stdout.contains("FINISHED") && table.stdout.contains("left,right"),
        "{}",
        table.stdout
    );

    // DOT, checked by Graphviz itself when it is installed (CI installs it).
    let dot = emq_cli(&r, &["graph", "dot", "report-1"], None, T);
    assert_eq!(dot.code, Some(0), "{}", dot.stderr);
    assert!(
        dot.stdout.contains("\"report-1/fetch\" -> \"report-1/left\""),
        "{}",
        dot.stdout
    );
    if Path::new("/usr/bin/dot").exists() {
        let svg = run_with_deadline(
            std::process::Command::new("/usr/bin/dot"),
            &["-Tsvg"],
            Some(&dot.stdout),
            T,
        );
        assert_eq!(svg.code, Some(0), "Graphviz refused our DOT: {}", svg.stderr);
        assert!(svg.stdout.contains("<svg"), "{}", svg.stdout);
    } else {
        eprintln!(
            "skipping the Graphviz check of `graph dot`: /usr/bin/dot is not installed (apt-get install graphviz)"
        );
    }
    // SVG without Graphviz.
    let out = scratch.path("graph.svg");
    let svg = emq_cli(&r, &["graph", "svg", "report-1", "-o", out.to_str().unwrap()], None, T);
    assert_eq!(svg.code, Some(0), "{}", svg.stderr);
    let drawn = std::fs::read_to_string(&out).unwrap();
    assert!(drawn.contains("<svg") && drawn.contains("join"), "{drawn}");

    // Listed for admins.
    let list = json_out(&emq_cli(&r, &["--json", "graph", "list"], None, T));
    assert_eq!(list["graphs"][0]["id"], "report-1");
    assert_eq!(list["graphs"][0]["state"], "FINISHED");
}

#[test]
fn refused_graphs_name_the_problem_and_run_nothing() {
    let scratch = Scratch::new();
    let r = RouterProc::start(ROUTER_ARGS);
    let _jm = JobManagerProc::start(&r, &["-J", "1"]);
    let log = scratch.path("ran");
    // The router's own check (the library sends what it is given).
    let mut c = Client::connect(&[&r.frontend]).unwrap();
    let cycle = Graph::new()
        .id("cyclic")
        .node(Node {
            program: Some(marking(&log, "true")),
            ..Node::new("a", "").after(["c"])
        })
        .node(Node::new("b", "emq.noop").after(["a"]))
        .node(Node::new("c", "emq.noop").after(["b"]));
    match c.submit_graph(&cycle) {
        Err(ClientError::Refused { code, reason }) => {
            assert_eq!(code, ErrorCode::Invalid);
            assert_eq!(reason, "cycle: a -> b -> c -> a");
        }
        other => panic!("{other:?}"),
    }
    let unknown = Graph::new().node(Node::new("a", "emq.noop").after(["nobody"]));
    assert!(matches!(c.submit_graph(&unknown), Err(ClientError::Refused { .. })));
    // The CLI checks before sending: a usage error, with the file named.
    let file = scratch.path("bad.json");
    std::fs::write(&file, r#"{"nodes": [{"name": "a", "handler": "h", "after": ["a"]}]}"#).unwrap();
    let out = emq_cli(&r, &["graph", "submit", file.to_str().unwrap()], None, T);
    assert_eq!(out.code, Some(64), "{}", out.stderr);
    assert!(
        out.stderr.contains("bad.json") && out.stderr.contains("cycle: a -> a"),
        "{}",
        out.stderr
    );
    assert!(matches!(
        c.graph_status("cyclic", T),
        Err(ClientError::Refused {
            code: ErrorCode::UnknownGraph,
            ..
        })
    ));
    assert!(lines(&log).is_empty(), "a node of a refused graph ran");
}

#[test]
fn router_killed_between_two_parents_finishing_runs_the_join_once_and_nothing_again() {
    let scratch = Scratch::new();
    let journal = scratch.path("router.redb");
    let mut r = RouterProc::start_with(&journal, ROUTER_ARGS);
    let endpoints = [r.frontend.clone(), r.backend.clone(), r.admin.clone()];
    let _jm = JobManagerProc::start(&r, &["-J", "4"]);
    let log = scratch.path("ran");
    let gate = |name: &str| scratch.path(&format!("go-{name}"));
    let wait_for = |name: &str| format!("while [ ! -e {} ]; do sleep 0.02; done", gate(name).display());
    let node = |name: &str, then: &str| Node {
        program: Some(marking(&log, then)),
        ..Node::new(name, "")
    };
    let graph = Graph::new()
        .id("diamond")
        .node(node("a", "true"))
        .node(node("b", &wait_for("b")).after(["a"]))
        .node(node("c", &wait_for("c")).after(["a"]))
        .node(node("d", "true").after(["b", "c"]));
    let mut c = Client::connect(&[&r.frontend]).unwrap();
    c.submit_graph(&graph).unwrap();
    let ran = |id: &str| lines(&log).iter().filter(|l| *l == id).count();
    assert!(
        wait_until(T, || ran("diamond/b") == 1 && ran("diamond/c") == 1),
        "b and c never both started: {:?}",
        lines(&log)
    );
    // b finishes, and its end is journaled (the router answers only after
    // its commit)...
    std::fs::write(gate("b"), "").unwrap();
    let state_of = |c: &mut Client, name: &str| {
        c.graph_status("diamond", T)
            .map(|v| v.nodes.iter().find(|n| n.name == name).map(|n| n.state))
            .ok()
            .flatten()
    };
    assert!(wait_until(T, || state_of(&mut c, "b") == Some(JobState::Finished)));
    // ...then the router dies, c still running.
    r.proc.kill9();
    r = RouterProc::start_on([&endpoints[0], &endpoints[1], &endpoints[2]], &journal, ROUTER_ARGS);
    let mut c = Client::connect(&[&r.frontend]).unwrap();
    std::fs::write(gate("c"), "").unwrap();
    let done = c.wait_graph("diamond", T).unwrap();
    assert_eq!(done.state, GraphState::Finished, "{done:?}");
    let mut all = lines(&log);
    all.sort();
    assert_eq!(
        all,
        ["diamond/a", "diamond/b", "diamond/c", "diamond/d"],
        "each ran exactly once"
    );
}

#[test]
fn a_hundred_batches_each_hit_by_a_router_crash_run_each_callback_exactly_once() {
    const TRIALS: usize = 100;
    const JOBS: usize = 20;
    let scratch = Scratch::new();
    let journal = scratch.path("router.redb");
    let mut r = RouterProc::start_with(&journal, ROUTER_ARGS);
    let endpoints = [r.frontend.clone(), r.backend.clone(), r.admin.clone()];
    let _jm = JobManagerProc::start(&r, &["-J", "4"]);
    let callbacks = scratch.path("callbacks");
    let callback_script = format!(
        "printf '%s %s\\n' \"$EMQ_JOB_ID\" \"$EMQ_BATCH\" >> {}",
        callbacks.display()
    );
    let mut seed = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
    eprintln!("crash moments seeded with {seed}");
    let mut c = Client::connect(&[&endpoints[0]]).unwrap();
    let mut interrupted = 0;
    for trial in 0..TRIALS {
        let jobs = (0..JOBS)
            .map(|i| BatchJob {
                handler: "emq.sleep".into(),
                args: vec![json!(0.005 * (i % 4) as f64)],
                ..BatchJob::default()
            })
            .collect();
        let callback = BatchJob {
            program: Some(vec!["sh".into(), "-c".into(), callback_script.clone()]),
            ..BatchJob::default()
        };
        let batch = Graph::batch(jobs, callback, CallbackWhen::Always).id(format!("batch-{trial}"));
        // Submitted (journaled) before the crash: the library sends it again
        // until the restarted router answers.
        c.submit_graph(&batch).unwrap();
        // The kill lands anywhere from at once to well after the batch's end.
        std::thread::sleep(Duration::from_millis(next_random(&mut seed) % 150));
        r.proc.kill9();
        r = RouterProc::start_on([&endpoints[0], &endpoints[1], &endpoints[2]], &journal, ROUTER_ARGS);
        let at_restart = c.graph_status(&format!("batch-{trial}"), T).unwrap();
        if at_restart.nodes.last().is_some_and(|cb| !cb.state.is_final()) {
            interrupted += 1;
        }
    }
    // The test means something only if crashes hit batches before their
    // callback ended.
    eprintln!("{interrupted} of {TRIALS} batches were cut by the crash before their callback ended");
    assert!(
        interrupted >= TRIALS / 5,
        "only {interrupted} crashes hit a batch in progress"
    );
    for trial in 0..TRIALS {
        let done = c
            .wait_graph(&format!("batch-{trial}"), Duration::from_secs(60))
            .unwrap();
        assert_eq!(done.state, GraphState::Finished, "batch-{trial}: {done:?}");
    }
    let seen = lines(&callbacks);
    for trial in 0..TRIALS {
        let id = format!("batch-{trial}/callback");
        let runs: Vec<&String> = seen.iter().filter(|l| l.split(' ').next() == Some(&id)).collect();
        assert_eq!(runs.len(), 1, "{id} ran {} times", runs.len());
        let summary: Value = serde_json::from_str(runs[0].split_once(' ').unwrap().1).unwrap();
        assert_eq!(
            (summary["total"].as_u64(), summary["finished"].as_u64()),
            (Some(20), Some(20))
        );
    }
    assert_eq!(seen.len(), TRIALS, "no other callback ran");
}

#[test]
fn the_readme_workflow_examples_run_as_they_are() {
    let r = RouterProc::start(ROUTER_ARGS);
    let _jm = JobManagerProc::start(&r, &["-J", "3"]);
    let example = |name: &str| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../examples/workflows")
            .join(name)
            .to_str()
            .unwrap()
            .to_string()
    };
    let report = json_out(&emq_cli(
        &r,
        &["--json", "graph", "submit", &example("report.json"), "--wait"],
        None,
        T,
    ));
    assert_eq!(report["state"], "FINISHED", "{report}");
    let sum_id = format!("{}/sum", report["id"].as_str().unwrap());
    let sum = json_out(&emq_cli(&r, &["--json", "result", &sum_id], None, T));
    let parents: Value = serde_json::from_str(sum["value"]["stdout"].as_str().unwrap()).unwrap();
    assert_eq!(
        (
            parents["square-a"]["value"].clone(),
            parents["square-b"]["value"].clone()
        ),
        (json!(9), json!(16))
    );
    // One job of the batch fails: the graph says so (exit 1), the callback
    // still ran (`always`) and saw it.
    let batch = emq_cli(
        &r,
        &["--json", "graph", "submit", &example("batch.json"), "--wait"],
        None,
        T,
    );
    assert_eq!(batch.code, Some(1), "{}", batch.stderr);
    let batch: Value = serde_json::from_str(batch.stdout.trim()).unwrap();
    assert_eq!(batch["state"], "FAILED");
    let callback_id = format!("{}/callback", batch["id"].as_str().unwrap());
    let callback = json_out(&emq_cli(&r, &["--json", "result", &callback_id], None, T));
    let stdout = callback["value"]["stdout"].as_str().unwrap();
    assert!(
        stdout.starts_with("batch done: ") && stdout.contains("\"failed\":1"),
        "{stdout}"
    );
}
