//! The graphs row: a chain and a fan-out of 1,000 and 10,000 jobs through
//! one router, the bench as its jobmanager (every job answered at once), so
//! that what is measured is the router's graph bookkeeping and journal.
//! Linear work shows as a constant router CPU time per node from 1,000 to
//! 10,000.

use std::time::{Duration, Instant};

use emq_client::graph::{GraphState, Node};
use emq_client::{Client, Graph};

use crate::procs::Spawned;
use crate::schedules::{cpu_time, BenchJobManager};

/// The shape of a graph.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Shape {
    /// n0 -> n1 -> ... : one job at a time.
    Chain,
    /// n independent jobs, then one sink after all of them (a batch).
    FanOut,
}

pub(crate) struct Row {
    pub nodes: usize,
    pub wall: Duration,
    pub router_cpu: Duration,
}

fn graph(shape: Shape, n: usize) -> Graph {
    let mut g = Graph::new().id(format!("bench-{n}"));
    match shape {
        Shape::Chain => {
            for i in 0..n {
                let node = Node::new(format!("n{i}"), "emq.noop");
                g = g.node(if i == 0 {
                    node
                } else {
                    node.after([format!("n{}", i - 1)])
                });
            }
        }
        Shape::FanOut => {
            for i in 0..n - 1 {
                g = g.node(Node::new(format!("n{i}"), "emq.noop"));
            }
            g = g.node(
                Node::new("sink", "emq.noop")
                    .after((0..n - 1).map(|i| format!("n{i}")))
                    .with_summary(),
            );
        }
    }
    g
}

/// Run one graph of `n` nodes to its end on a fresh router.
pub(crate) fn measure(shape: Shape, n: usize) -> anyhow::Result<Row> {
    let router = Spawned::router(&[])?;
    let ctx = zmq::Context::new();
    let mut jm = BenchJobManager::connect(&ctx, &router.backend)?;
    jm.serve(Duration::from_millis(300), |_, _| {})?;
    let mut client = Client::connect(&[&router.frontend])?;
    let g = graph(shape, n);
    let cpu0 = cpu_time(router.pid());
    let started = Instant::now();
    let accepted = client.submit_graph(&g)?;
    let mut ran = 0;
    let deadline = started + Duration::from_secs(300);
    while ran < n {
        anyhow::ensure!(Instant::now() < deadline, "graph of {n} stuck after {ran} jobs");
        jm.serve(Duration::from_millis(50), |_, _| ran += 1)?;
    }
    let done = client.wait_graph(&accepted.id, Duration::from_secs(60))?;
    let wall = started.elapsed();
    anyhow::ensure!(done.state == GraphState::Finished, "graph ended {}", done.state);
    Ok(Row {
        nodes: n,
        wall,
        router_cpu: cpu_time(router.pid()).saturating_sub(cpu0),
    })
}
