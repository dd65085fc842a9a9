//! Workflows (emq extension): a graph of jobs with `after` edges, submitted
//! in one GRAPH message, and batches (independent jobs plus a callback),
//! which are graphs with one sink. What a graph is on the wire
//! ([`GraphSpec`]), how it is checked ([`GraphSpec::check`]: names, edges,
//! cycles, size), what the router answers ([`GraphView`]), and the Graphviz
//! DOT drawing of it ([`GraphView::to_dot`]). protocol.md section 15.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::views::{JobState, Timestamp};

/// Most nodes one graph may have unless the router says otherwise
/// (`--max-graph-nodes`).
pub const DEFAULT_MAX_GRAPH_NODES: usize = 50_000;

/// The kwarg a node that asks for its parents' results receives
/// (`{"NAME": {"id", "state", "value", "error"}}`).
pub const PARENTS_KWARG: &str = "parents";
/// The kwarg a node that asks for a summary of its parents receives
/// (a batch's callback): [`BatchSummary`].
pub const SUMMARY_KWARG: &str = "batch";

/// What a node's dependents do when it ends in failure (after its
/// retries): FAILED, DEAD, CANCELLED or EXPIRED.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    strum::Display,
    strum::EnumString,
    strum::IntoStaticStr,
)]
#[serde(rename_all = "kebab-case")]
#[strum(serialize_all = "kebab-case")]
pub enum FailurePolicy {
    /// Its dependents (all of its descendants) end CANCELLED, blocked by it;
    /// the rest of the graph goes on.
    #[default]
    FailFast,
    /// Its dependents run once all their parents have ended, whatever the
    /// outcome, and can read it.
    Continue,
}

/// One job of a graph.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    /// Its name, unique in the graph: 1 to 64 letters, digits, `.`, `_`, `-`.
    /// Its job id is `GRAPH_ID/NAME`.
    pub name: String,
    /// The handler it calls (`emq.exec`, `myapp.tasks.add`, ...).
    #[serde(default)]
    pub handler: String,
    /// Shorthand for `emq.exec` with these arguments (a program and its
    /// arguments); excludes `handler` and `args`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub program: Option<Vec<String>>,
    /// Positional arguments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<Value>,
    /// Keyword arguments.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub kwargs: Map<String, Value>,
    /// Its queue (`default` when empty).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub queue: String,
    /// The names of the nodes it runs after.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<String>,
    /// Seconds an attempt may run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
    /// Retries after a failed attempt (the router's default when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    /// Pass the parents' results as the kwarg `parents`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub parent_results: bool,
    /// Pass a summary of the parents (counts, failed ids) as the kwarg
    /// `batch`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub summary: bool,
}

impl NodeSpec {
    /// A node calling `handler`.
    pub fn new(name: impl Into<String>, handler: impl Into<String>) -> NodeSpec {
        NodeSpec {
            name: name.into(),
            handler: handler.into(),
            ..NodeSpec::default()
        }
    }

    /// Runs after these nodes.
    pub fn after<S: Into<String>>(mut self, names: impl IntoIterator<Item = S>) -> NodeSpec {
        self.after.extend(names.into_iter().map(Into::into));
        self
    }

    /// One more positional argument.
    pub fn arg(mut self, value: impl Into<Value>) -> NodeSpec {
        self.args.push(value.into());
        self
    }

    /// One more keyword argument.
    pub fn kwarg(mut self, name: impl Into<String>, value: impl Into<Value>) -> NodeSpec {
        self.kwargs.insert(name.into(), value.into());
        self
    }

    /// Its queue.
    pub fn queue(mut self, queue: impl Into<String>) -> NodeSpec {
        self.queue = queue.into();
        self
    }

    /// Seconds an attempt may run.
    pub fn timeout_secs(mut self, secs: u64) -> NodeSpec {
        self.timeout = Some(secs);
        self
    }

    /// Retries after a failed attempt.
    pub fn retries(mut self, retries: u32) -> NodeSpec {
        self.retries = Some(retries);
        self
    }

    /// Receive the parents' results as the kwarg `parents`.
    pub fn with_parent_results(mut self) -> NodeSpec {
        self.parent_results = true;
        self
    }

    /// Receive a summary of the parents as the kwarg `batch`.
    pub fn with_summary(mut self) -> NodeSpec {
        self.summary = true;
        self
    }

    /// The handler and positional arguments it calls, `program` resolved.
    pub fn call(&self) -> (String, Vec<Value>) {
        match &self.program {
            Some(argv) => (
                "emq.exec".into(),
                argv.iter().map(|a| Value::String(a.clone())).collect(),
            ),
            None => (self.handler.clone(), self.args.clone()),
        }
    }
}

/// A graph as submitted (the GRAPH message's JSON frame).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphSpec {
    /// Its id (1 to 128 letters, digits, `.`, `_`, `-`, `:`); the GRAPH
    /// message's msgid when absent. Submitting the same id again is
    /// answered with the graph as it is (idempotent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// What a failure does to the dependents.
    #[serde(default)]
    pub on_failure: FailurePolicy,
    /// Send the submitter a GRAPH_INFO when the graph ends.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub notify: bool,
    /// Its jobs.
    pub nodes: Vec<NodeSpec>,
}

/// When a batch's callback runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, strum::Display, strum::EnumString)]
#[serde(rename_all = "kebab-case")]
#[strum(serialize_all = "kebab-case")]
pub enum CallbackWhen {
    /// Only if every job finished; otherwise it ends CANCELLED.
    OnSuccess,
    /// Once every job has ended, whatever the outcomes.
    #[default]
    Always,
}

/// A batch: independent jobs and a callback that runs once when they have
/// all ended (a file form that [`GraphSpec::from_batch`] turns into a graph).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchSpec {
    /// The jobs; unnamed ones are called `job-1`, `job-2`, ...
    pub jobs: Vec<BatchJob>,
    /// The callback; named `callback` unless named. It receives the kwarg
    /// `batch` ([`BatchSummary`]).
    pub callback: BatchJob,
    /// When it runs.
    #[serde(default)]
    pub run: CallbackWhen,
}

/// A job of a batch: a node without a name or edges of its own.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchJob {
    /// Its name (optional).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// As [`NodeSpec::handler`].
    #[serde(default)]
    pub handler: String,
    /// As [`NodeSpec::program`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub program: Option<Vec<String>>,
    /// As [`NodeSpec::args`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<Value>,
    /// As [`NodeSpec::kwargs`].
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub kwargs: Map<String, Value>,
    /// As [`NodeSpec::queue`].
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub queue: String,
    /// As [`NodeSpec::timeout`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
    /// As [`NodeSpec::retries`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
}

impl BatchJob {
    fn into_node(self, name: String, after: Vec<String>) -> NodeSpec {
        NodeSpec {
            name,
            handler: self.handler,
            program: self.program,
            args: self.args,
            kwargs: self.kwargs,
            queue: self.queue,
            after,
            timeout: self.timeout,
            retries: self.retries,
            parent_results: false,
            summary: false,
        }
    }
}

/// What a node with `summary` receives as its `batch` kwarg: how its
/// parents ended.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchSummary {
    /// The graph.
    pub graph: String,
    /// Parents.
    pub total: usize,
    /// Parents that finished.
    pub finished: usize,
    /// Parents that ended otherwise.
    pub failed: usize,
    /// Their job ids.
    pub failed_ids: Vec<String>,
}

/// A submission file: a graph, or a batch (`{"batch": {...}}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum GraphFile {
    /// `{"batch": {...}, "id": ...}`.
    Batch {
        /// The batch.
        batch: BatchSpec,
        /// As [`GraphSpec::id`].
        #[serde(default)]
        id: Option<String>,
    },
    /// A graph.
    Graph(GraphSpec),
}

impl GraphFile {
    /// The graph it describes.
    pub fn into_spec(self) -> GraphSpec {
        match self {
            GraphFile::Graph(spec) => spec,
            GraphFile::Batch { batch, id } => GraphSpec {
                id,
                ..GraphSpec::from_batch(batch)
            },
        }
    }
}

impl GraphSpec {
    /// A batch as a graph: each job a root, the callback after all of them
    /// with `summary`; `on-success` is fail-fast, `always` is continue.
    pub fn from_batch(batch: BatchSpec) -> GraphSpec {
        let mut names = Vec::with_capacity(batch.jobs.len());
        let mut nodes = Vec::with_capacity(batch.jobs.len() + 1);
        for (i, job) in batch.jobs.into_iter().enumerate() {
            let name = if job.name.is_empty() {
                format!("job-{}", i + 1)
            } else {
                job.name.clone()
            };
            names.push(name.clone());
            nodes.push(job.into_node(name, Vec::new()));
        }
        let name = if batch.callback.name.is_empty() {
            "callback".to_string()
        } else {
            batch.callback.name.clone()
        };
        let mut callback = batch.callback.into_node(name, names);
        callback.summary = true;
        nodes.push(callback);
        GraphSpec {
            id: None,
            on_failure: match batch.run {
                CallbackWhen::OnSuccess => FailurePolicy::FailFast,
                CallbackWhen::Always => FailurePolicy::Continue,
            },
            notify: false,
            nodes,
        }
    }

    /// Check the graph: its id, node names, handlers, edges (to known
    /// nodes, no cycles) and size. Returns each node's parents as indices.
    pub fn check(&self, max_nodes: usize) -> Result<Vec<Vec<u32>>, GraphError> {
        if let Some(id) = &self.id {
            if !valid_id(id) {
                return Err(GraphError::BadId(crate::printable(id).into_owned()));
            }
        }
        if self.nodes.is_empty() {
            return Err(GraphError::Empty);
        }
        if self.nodes.len() > max_nodes {
            return Err(GraphError::TooLarge {
                nodes: self.nodes.len(),
                limit: max_nodes,
            });
        }
        let mut index: std::collections::HashMap<&str, u32> =
            std::collections::HashMap::with_capacity(self.nodes.len());
        for (i, node) in self.nodes.iter().enumerate() {
            if !valid_name(&node.name) {
                return Err(GraphError::BadName(crate::printable(&node.name).into_owned()));
            }
            if index.insert(&node.name, i as u32).is_some() {
                return Err(GraphError::DuplicateName(node.name.clone()));
            }
            match (&node.program, node.handler.is_empty()) {
                (None, true) => return Err(GraphError::NoHandler(node.name.clone())),
                (Some(_), false) => return Err(GraphError::ProgramAndHandler(node.name.clone())),
                (Some(argv), true) if argv.is_empty() => return Err(GraphError::NoHandler(node.name.clone())),
                _ => {}
            }
        }
        let mut parents = Vec::with_capacity(self.nodes.len());
        for node in &self.nodes {
            let mut mine: Vec<u32> = Vec::with_capacity(node.after.len());
            for p in &node.after {
                let Some(&i) = index.get(p.as_str()) else {
                    return Err(GraphError::UnknownParent {
                        node: node.name.clone(),
                        parent: crate::printable(p).into_owned(),
                    });
                };
                mine.push(i);
            }
            // Each parent once, in the order given (a hash set: a sink may
            // have a hundred thousand parents).
            if mine.len() > 1 {
                let mut seen = std::collections::HashSet::with_capacity(mine.len());
                mine.retain(|i| seen.insert(*i));
            }
            parents.push(mine);
        }
        if let Some(cycle) = find_cycle(&parents) {
            let names = cycle.iter().map(|&i| self.nodes[i as usize].name.clone()).collect();
            return Err(GraphError::Cycle(names));
        }
        Ok(parents)
    }
}

/// The children of each node, from each node's parents.
pub fn children_of(parents: &[Vec<u32>]) -> Vec<Vec<u32>> {
    let mut children = vec![Vec::new(); parents.len()];
    for (i, ps) in parents.iter().enumerate() {
        for &p in ps {
            children[p as usize].push(i as u32);
        }
    }
    children
}

/// A cycle, as the nodes on it in edge order (the first repeated at the
/// end), if the graph has one. Kahn's algorithm, then a walk among what it
/// could not order: O(nodes + edges).
fn find_cycle(parents: &[Vec<u32>]) -> Option<Vec<u32>> {
    let children = children_of(parents);
    let mut unmet: Vec<usize> = parents.iter().map(Vec::len).collect();
    let mut ready: Vec<u32> = (0..parents.len() as u32).filter(|&i| unmet[i as usize] == 0).collect();
    let mut ordered = 0;
    while let Some(i) = ready.pop() {
        ordered += 1;
        for &c in &children[i as usize] {
            unmet[c as usize] -= 1;
            if unmet[c as usize] == 0 {
                ready.push(c);
            }
        }
    }
    if ordered == parents.len() {
        return None;
    }
    // Every unordered node has an unordered parent: walking parents from
    // one must come back to a node already seen.
    let start = (0..parents.len()).find(|&i| unmet[i] > 0)? as u32;
    let mut seen_at = std::collections::HashMap::new();
    let mut walk = Vec::new();
    let mut at = start;
    loop {
        if let Some(&pos) = seen_at.get(&at) {
            let mut cycle: Vec<u32> = walk[pos..].to_vec();
            cycle.reverse();
            // From its first node in submission order, so the answer is stable.
            let first = (0..cycle.len()).min_by_key(|&i| cycle[i]).unwrap_or(0);
            cycle.rotate_left(first);
            cycle.push(cycle[0]);
            return Some(cycle);
        }
        seen_at.insert(at, walk.len());
        walk.push(at);
        at = *parents[at as usize].iter().find(|&&p| unmet[p as usize] > 0)?;
    }
}

fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

fn valid_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':'))
}

/// Why a graph is refused (the ERROR's reason names the problem).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GraphError {
    /// No nodes.
    #[error("a graph needs at least one node")]
    Empty,
    /// Over the size limit.
    #[error("graph of {nodes} nodes: the limit is {limit} (--max-graph-nodes)")]
    TooLarge {
        /// Its nodes.
        nodes: usize,
        /// The limit.
        limit: usize,
    },
    /// An id that is not 1 to 128 of `[A-Za-z0-9._:-]`.
    #[error("graph id {0:?}: use 1 to 128 letters, digits, '.', '_', ':' or '-'")]
    BadId(String),
    /// A name that is not 1 to 64 of `[A-Za-z0-9._-]`.
    #[error("node name {0:?}: use 1 to 64 letters, digits, '.', '_' or '-'")]
    BadName(String),
    /// Two nodes with one name.
    #[error("two nodes are named {0:?}")]
    DuplicateName(String),
    /// Neither a handler nor a program.
    #[error("node {0:?} has no handler (give \"handler\" or \"program\")")]
    NoHandler(String),
    /// Both.
    #[error("node {0:?} gives both \"handler\" and \"program\"")]
    ProgramAndHandler(String),
    /// An edge to a name that is not in the graph.
    #[error("node {node:?} runs after {parent:?}, which is not in the graph")]
    UnknownParent {
        /// The node.
        node: String,
        /// The name it gave.
        parent: String,
    },
    /// A cycle, in edge order.
    #[error("cycle: {}", .0.join(" -> "))]
    Cycle(Vec<String>),
}

/// Where a graph is.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, strum::Display, strum::EnumString, strum::IntoStaticStr,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
pub enum GraphState {
    /// Some node has not ended.
    Running,
    /// Every node finished.
    Finished,
    /// Every node ended, some not FINISHED.
    Failed,
    /// Cancelled by GRAPH_CANCEL (every node has ended).
    Cancelled,
}

impl GraphState {
    /// As it travels.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// Every node has ended.
    pub fn is_final(self) -> bool {
        self != GraphState::Running
    }
}

/// How many nodes are where.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GraphCounts {
    /// All.
    pub total: usize,
    /// Waiting for their parents.
    pub blocked: usize,
    /// In a queue (or backing off before a retry).
    pub waiting: usize,
    /// On a jobmanager.
    pub running: usize,
    /// FINISHED.
    pub finished: usize,
    /// FAILED, DEAD or EXPIRED.
    pub failed: usize,
    /// CANCELLED.
    pub cancelled: usize,
}

/// One node as GRAPH_INFO shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GraphNodeView {
    /// Its name.
    pub name: String,
    /// Its job id (`GRAPH_ID/NAME`), for QUERY and CANCEL.
    pub id: String,
    /// Where it is.
    pub state: JobState,
    /// Attempts started.
    pub attempts: u32,
    /// Its handler.
    pub handler: String,
    /// Its queue.
    pub queue: String,
    /// The names of its parents.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<String>,
    /// For a node cancelled by fail-fast: the node whose failure blocked it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked_by: Option<String>,
    /// For a node that ended otherwise than FINISHED: why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A graph as the router reports it (GRAPH_INFO).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GraphView {
    /// Its id.
    pub id: String,
    /// Where it is.
    pub state: GraphState,
    /// Its failure policy.
    pub on_failure: FailurePolicy,
    /// When it was accepted.
    pub created: Timestamp,
    /// When its last node ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<Timestamp>,
    /// How many nodes are where.
    pub counts: GraphCounts,
    /// Its nodes, in the order submitted.
    pub nodes: Vec<GraphNodeView>,
}

/// A graph in the list of graphs (admin GRAPHS).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GraphSummary {
    /// Its id.
    pub id: String,
    /// Where it is.
    pub state: GraphState,
    /// When it was accepted.
    pub created: Timestamp,
    /// When its last node ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<Timestamp>,
    /// How many nodes are where.
    pub counts: GraphCounts,
}

/// The graphs the router holds (running, and ended ones until their
/// retention passes), oldest first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GraphList {
    /// The graphs.
    pub graphs: Vec<GraphSummary>,
}

/// The fill colour of a node in the drawing, by state.
fn colour(state: JobState) -> &'static str {
    match state {
        JobState::Blocked => "white",
        JobState::Accepted | JobState::Queued | JobState::Scheduled => "lightyellow",
        JobState::Running => "lightblue",
        JobState::Finished => "palegreen",
        JobState::Failed | JobState::Dead | JobState::Expired => "lightcoral",
        JobState::Cancelled | JobState::Superseded => "lightgrey",
    }
}

/// A string as a DOT quoted string.
fn dot_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl GraphView {
    /// The graph in Graphviz DOT: one node per job (its id as the DOT node
    /// id, labelled with its name and state, filled by state), one edge per
    /// dependency, by id. `dot -Tsvg` draws it.
    pub fn to_dot(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!("digraph {} {{\n", dot_quote(&self.id)));
        out.push_str("  rankdir=LR;\n  node [shape=box, style=\"rounded,filled\", fontname=\"Helvetica\"];\n");
        for n in &self.nodes {
            let label = format!("{}\n{}", n.name, n.state);
            out.push_str(&format!(
                "  {} [label={}, fillcolor={}];\n",
                dot_quote(&n.id),
                dot_quote(&label),
                dot_quote(colour(n.state))
            ));
        }
        let ids: std::collections::HashMap<&str, &str> =
            self.nodes.iter().map(|n| (n.name.as_str(), n.id.as_str())).collect();
        for n in &self.nodes {
            for p in &n.after {
                if let Some(pid) = ids.get(p.as_str()) {
                    out.push_str(&format!("  {} -> {};\n", dot_quote(pid), dot_quote(&n.id)));
                }
            }
        }
        out.push_str("}\n");
        out
    }

    /// Its entry in a list of graphs.
    pub fn summary(&self) -> GraphSummary {
        GraphSummary {
            id: self.id.clone(),
            state: self.state,
            created: self.created,
            ended: self.ended,
            counts: self.counts.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, after: &[&str]) -> NodeSpec {
        NodeSpec {
            after: after.iter().map(|s| s.to_string()).collect(),
            ..NodeSpec::new(name, "emq.noop")
        }
    }

    fn spec(nodes: Vec<NodeSpec>) -> GraphSpec {
        GraphSpec {
            nodes,
            ..GraphSpec::default()
        }
    }

    #[test]
    fn a_diamond_checks_and_gives_its_parents() {
        let g = spec(vec![
            node("a", &[]),
            node("b", &["a"]),
            node("c", &["a"]),
            node("d", &["b", "c", "b"]),
        ]);
        assert_eq!(g.check(10).unwrap(), vec![vec![], vec![0], vec![0], vec![1, 2]]);
        assert_eq!(children_of(&g.check(10).unwrap())[0], vec![1, 2]);
    }

    #[test]
    fn refusals_name_the_problem() {
        let cyc = spec(vec![
            node("a", &["c"]),
            node("b", &["a"]),
            node("c", &["b"]),
            node("x", &[]),
        ]);
        let err = cyc.check(10).unwrap_err();
        assert_eq!(err.to_string(), "cycle: a -> b -> c -> a");
        assert_eq!(
            spec(vec![node("a", &["a"])]).check(10).unwrap_err(),
            GraphError::Cycle(vec!["a".into(), "a".into()])
        );
        assert_eq!(
            spec(vec![node("a", &["zz"])]).check(10).unwrap_err().to_string(),
            "node \"a\" runs after \"zz\", which is not in the graph"
        );
        assert!(matches!(
            spec(vec![node("a", &[]), node("a", &[])]).check(10),
            Err(GraphError::DuplicateName(_))
        ));
        assert!(matches!(
            spec(vec![node("a b", &[])]).check(10),
            Err(GraphError::BadName(_))
        ));
        assert!(matches!(spec(vec![]).check(10), Err(GraphError::Empty)));
        assert!(matches!(
            spec(vec![node("a", &[]), node("b", &[])]).check(1),
            Err(GraphError::TooLarge { nodes: 2, limit: 1 })
        ));
        let mut no_handler = node("a", &[]);
        no_handler.handler.clear();
        assert!(matches!(
            spec(vec![no_handler]).check(10),
            Err(GraphError::NoHandler(_))
        ));
        let bad_id = GraphSpec {
            id: Some("x/y".into()),
            ..spec(vec![node("a", &[])])
        };
        assert!(matches!(bad_id.check(10), Err(GraphError::BadId(_))));
    }

    #[test]
    fn a_long_chain_and_a_wide_fan_check_in_linear_time() {
        let n = 100_000;
        let chain: Vec<NodeSpec> = (0..n)
            .map(|i| {
                let after = if i == 0 { vec![] } else { vec![format!("n{}", i - 1)] };
                NodeSpec {
                    after,
                    ..NodeSpec::new(format!("n{i}"), "emq.noop")
                }
            })
            .collect();
        assert_eq!(spec(chain).check(n).unwrap().len(), n);
        let mut fan: Vec<NodeSpec> = (0..n - 1).map(|i| NodeSpec::new(format!("n{i}"), "emq.noop")).collect();
        fan.push(NodeSpec {
            after: (0..n - 1).map(|i| format!("n{i}")).collect(),
            ..NodeSpec::new("sink", "emq.noop")
        });
        assert_eq!(spec(fan).check(n).unwrap()[n - 1].len(), n - 1);
    }

    #[test]
    fn a_batch_is_a_graph_with_one_sink() {
        let file: GraphFile = serde_json::from_str(
            r#"{"id": "b1", "batch": {"jobs": [{"handler": "emq.noop"}, {"name": "x", "program": ["true"]}],
                "callback": {"handler": "emq.echo"}, "run": "on-success"}}"#,
        )
        .unwrap();
        let g = file.into_spec();
        assert_eq!(g.id.as_deref(), Some("b1"));
        assert_eq!(g.on_failure, FailurePolicy::FailFast);
        let names: Vec<&str> = g.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["job-1", "x", "callback"]);
        assert_eq!(g.nodes[2].after, ["job-1", "x"]);
        assert!(g.nodes[2].summary);
        assert_eq!(g.nodes[1].call(), ("emq.exec".to_string(), vec![Value::from("true")]));
        g.check(10).unwrap();
        let plain: GraphFile = serde_json::from_str(r#"{"nodes": [{"name": "a", "handler": "h"}]}"#).unwrap();
        assert!(matches!(plain, GraphFile::Graph(_)));
        assert!(serde_json::from_str::<GraphFile>(r#"{"nodes": [{"name": "a", "handlr": "h"}]}"#).is_err());
    }

    #[test]
    fn dot_quotes_what_it_is_given_and_draws_edges_by_id() {
        let view = GraphView {
            id: "g\"1".into(),
            state: GraphState::Running,
            on_failure: FailurePolicy::FailFast,
            created: Timestamp::UNIX_EPOCH,
            ended: None,
            counts: GraphCounts::default(),
            nodes: vec![
                GraphNodeView {
                    name: "a".into(),
                    id: "g/a".into(),
                    state: JobState::Finished,
                    attempts: 1,
                    handler: "h".into(),
                    queue: "default".into(),
                    after: vec![],
                    blocked_by: None,
                    error: None,
                },
                GraphNodeView {
                    name: "b".into(),
                    id: "g/b".into(),
                    state: JobState::Blocked,
                    attempts: 0,
                    handler: "h".into(),
                    queue: "default".into(),
                    after: vec!["a".into()],
                    blocked_by: None,
                    error: None,
                },
            ],
        };
        let dot = view.to_dot();
        assert!(dot.starts_with("digraph \"g\\\"1\" {"), "{dot}");
        assert!(dot.contains("\"g/a\" -> \"g/b\";"), "{dot}");
        assert!(dot.contains("fillcolor=\"palegreen\""), "{dot}");
    }
}
