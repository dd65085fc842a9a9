//! Workflows from the client: build a graph ([`Graph`]) or a batch, submit
//! it in one message, wait for it to end.
//!
//! ```no_run
//! use std::time::Duration;
//! use emq_client::{Client, Graph, Node};
//!
//! let mut client = Client::connect(&["tcp://127.0.0.1:47291"])?;
//! let graph = Graph::new()
//!     .node(Node::new("fetch", "emq.echo").arg("data"))
//!     .node(Node::new("report", "emq.echo").after(["fetch"]).with_parent_results());
//! let accepted = client.submit_graph(&graph)?;
//! let done = client.wait_graph(&accepted.id, Duration::from_secs(60))?;
//! assert_eq!(done.state, emq_client::graph::GraphState::Finished);
//! # Ok::<(), emq_client::ClientError>(())
//! ```

pub use emq_proto::graph::{
    BatchJob, BatchSpec, BatchSummary, CallbackWhen, FailurePolicy, GraphCounts, GraphFile, GraphList, GraphNodeView,
    GraphSpec, GraphState, GraphView, NodeSpec,
};

/// A node of a graph: a job with a name and the names it runs after.
pub type Node = NodeSpec;

/// A graph to submit: nodes with `after` edges, a failure policy, an id.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    /// What is sent.
    pub spec: GraphSpec,
}

impl Graph {
    /// An empty graph, fail-fast, with a fresh id at submission.
    pub fn new() -> Graph {
        Graph::default()
    }

    /// A batch: `jobs` run independently, then `callback` once, with the
    /// kwarg `batch` (counts and failed ids); `run` says whether only after
    /// success or always.
    pub fn batch(jobs: Vec<BatchJob>, callback: BatchJob, run: CallbackWhen) -> Graph {
        Graph {
            spec: GraphSpec::from_batch(BatchSpec { jobs, callback, run }),
        }
    }

    /// Use this id (submitting the same id again does not run anything twice).
    pub fn id(mut self, id: impl Into<String>) -> Graph {
        self.spec.id = Some(id.into());
        self
    }

    /// What a failed node does to its dependents.
    pub fn on_failure(mut self, policy: FailurePolicy) -> Graph {
        self.spec.on_failure = policy;
        self
    }

    /// One more node.
    pub fn node(mut self, node: Node) -> Graph {
        self.spec.nodes.push(node);
        self
    }
}
