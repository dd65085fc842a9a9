//! Workflows: graphs of jobs with `after` edges, and batches (a graph whose
//! callback runs after all the other jobs). Every node is an ordinary
//! guaranteed job (journaled, retried, dead-lettered, tracked) with the id
//! `GRAPH_ID/NAME`; a node whose parents have not ended is `Place::Blocked`,
//! in the jobs map but in no queue.
//!
//! Exactly once, across crashes: a graph and all its nodes' records are
//! journaled in the batch that accepts it; a node's end and what it causes
//! (its children released, or cancelled under fail-fast) are queued in the
//! same batch, so they share one commit. A node's end is settled once
//! (`settled`); releasing a child checks that it is still blocked.
//!
//! Work is linear in the graph: a node's end touches its children only,
//! views are built on request.

use emq_proto::events::EventKind;
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::time::{Duration, Instant};

use emq_proto::graph::{
    children_of, BatchSummary, FailurePolicy, GraphCounts, GraphList, GraphNodeView, GraphSpec, GraphState, GraphView,
    PARENTS_KWARG, SUMMARY_KWARG,
};
use emq_proto::views::timestamp_ms;
use emq_proto::{ContentType, ErrorCode, Headers, JobCall, JobResult, JobState, Message, Outcome};
use log::{info, warn};
use serde::{Deserialize, Serialize};

use super::guaranteed::Entry;
use super::handlers::HandlerId;
use super::jobs::{Job, JobKey, Place, ResultTo};
use super::{Carries, Endpoint, PeerId, Router};
use crate::journal::{CorruptRow, Row, StoreOp, Table};
use crate::HashMap;

/// What the journal keeps of a graph (table `graphs`, by id): written when
/// it is accepted and when it is cancelled. Node states live in their jobs'
/// records.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct GraphDef {
    /// The submitter's identity (GRAPH_INFO goes there when it ends).
    #[serde(with = "crate::tracking::serde_bytes_compat")]
    client: Vec<u8>,
    on_failure: FailurePolicy,
    notify: bool,
    created_ms: i64,
    /// Submission order.
    seq: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cancelled_ms: Option<i64>,
    nodes: Vec<NodeDef>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct NodeDef {
    name: String,
    handler: String,
    queue: String,
    parents: Vec<u32>,
    #[serde(default)]
    parent_results: bool,
    #[serde(default)]
    summary: bool,
}

/// A graph the router holds.
struct Graph {
    def: GraphDef,
    client: Rc<PeerId>,
    /// Each node's job id.
    keys: Vec<JobKey>,
    children: Vec<Vec<u32>>,
    /// Parents not yet ended in a way that lets the node run.
    unmet: Vec<u32>,
    /// Whether each node's end has been settled.
    settled: Vec<bool>,
    /// Nodes cancelled under fail-fast: the node whose failure blocked them.
    blocked_by: BTreeMap<u32, u32>,
    /// Nodes not settled yet.
    open: usize,
    ended_ms: Option<i64>,
}

/// The graphs, and where each node's job id leads.
pub(crate) struct Graphs {
    by_id: HashMap<Rc<str>, Graph>,
    /// Each node's job id: its graph and index.
    nodes: HashMap<JobKey, (Rc<str>, u32)>,
    /// Ends of nodes not yet settled, oldest first.
    ended: VecDeque<(JobKey, JobState)>,
    /// Ended graphs by the end of their retention.
    purge: VecDeque<(Instant, Rc<str>)>,
    /// Nodes waiting for their parents, in all graphs.
    blocked: usize,
    seq: u64,
}

impl Graphs {
    pub(super) fn new(hasher: crate::Hasher) -> Graphs {
        Graphs {
            by_id: HashMap::with_hasher(hasher.clone()),
            nodes: HashMap::with_hasher(hasher),
            ended: VecDeque::new(),
            purge: VecDeque::new(),
            blocked: 0,
            seq: 0,
        }
    }

    /// Whether job `key` is a graph's node.
    #[inline]
    pub(super) fn owns(&self, key: &JobKey) -> bool {
        !self.nodes.is_empty() && self.nodes.contains_key(key)
    }

    /// No node end waits to be settled.
    #[inline]
    pub(super) fn is_settled(&self) -> bool {
        self.ended.is_empty()
    }

    pub(super) fn next_purge(&self) -> Option<Instant> {
        self.purge.front().map(|(at, _)| *at)
    }

    pub(super) fn len(&self) -> usize {
        self.by_id.len()
    }

    pub(super) fn blocked(&self) -> usize {
        self.blocked
    }

    /// A node left `Place::Blocked` (cancelled, or released).
    pub(super) fn left_blocked(&mut self) {
        self.blocked = self.blocked.saturating_sub(1);
    }
}

/// A node's job id.
fn node_key(graph: &str, name: &str) -> JobKey {
    format!("{graph}/{name}").into()
}

/// A node's name, from its job id (`GRAPH/NAME`; neither part has a '/').
fn name_in(key: &str) -> &str {
    key.rsplit_once('/').map_or(key, |(_, name)| name)
}

/// Whether a parent that ended in `state` lets its child run.
fn satisfies(policy: FailurePolicy, state: JobState) -> bool {
    state == JobState::Finished || (policy == FailurePolicy::Continue && state.is_final())
}

impl Router {
    /// GRAPH: check it, then journal the graph and every node in this batch
    /// and queue its roots; answered with GRAPH_INFO after the commit.
    pub(super) fn on_graph(&mut self, now: Instant, peer: PeerId, msgid: String, spec: GraphSpec) {
        if self.stopping() {
            let reason = "router is shutting down";
            return self.error(Endpoint::Frontend, &peer, &msgid, ErrorCode::ShuttingDown, reason);
        }
        let id: Rc<str> = match spec.id.as_deref() {
            Some(id) => id.into(),
            None => msgid.as_str().into(),
        };
        if self.graphs.by_id.contains_key(&id) {
            // Sent again (the first answer was lost): the graph as it is.
            let view = self.graph_view(&id).expect("present");
            let info = Message::GraphInfo { view: Box::new(view) };
            return self.push(Endpoint::Frontend, &peer, info, true, Carries::Other);
        }
        let spec = GraphSpec {
            id: Some(id.to_string()),
            ..spec
        };
        let parents = match spec.check(self.config.max_graph_nodes) {
            Ok(p) => p,
            Err(e) => return self.refuse(Endpoint::Frontend, &peer, &msgid, ErrorCode::Invalid, &e.to_string()),
        };
        let keys: Vec<JobKey> = spec.nodes.iter().map(|n| node_key(&id, &n.name)).collect();
        if let Some(taken) = keys
            .iter()
            .find(|k| self.jobs.contains_key(*k) || self.guaranteed.is_tracked(k))
        {
            let reason = format!("job id {taken} is already in use");
            return self.refuse(Endpoint::Frontend, &peer, &msgid, ErrorCode::Invalid, &reason);
        }
        let blocked = parents.iter().filter(|p| !p.is_empty()).count();
        let roots = parents.len() - blocked;
        if self.graphs.blocked + blocked > self.config.max_blocked {
            let reason = format!(
                "{} graph jobs already wait for their parents; the limit is --max-blocked",
                self.graphs.blocked
            );
            return self.error(Endpoint::Frontend, &peer, &msgid, ErrorCode::QueueFull, &reason);
        }
        if self.queues.waiting_total() + roots > self.config.max_waiting_total {
            let reason = "the router's waiting jobs are at their limit".to_string();
            return self.error(Endpoint::Frontend, &peer, &msgid, ErrorCode::QueueFull, &reason);
        }
        let client = self.intern(peer.clone());
        self.graphs.seq += 1;
        let mut def = GraphDef {
            client: peer.0.clone(),
            on_failure: spec.on_failure,
            notify: spec.notify,
            created_ms: self.wall_ms,
            seq: self.graphs.seq,
            cancelled_ms: None,
            nodes: Vec::with_capacity(spec.nodes.len()),
        };
        let mut touched: Vec<Rc<str>> = Vec::new();
        self.note_graph(EventKind::GraphSubmitted, &id, keys.len(), None);
        for ((node, key), mine) in spec.nodes.into_iter().zip(&keys).zip(parents) {
            let (handler, args) = node.call();
            let queue = if node.queue.is_empty() {
                emq_proto::DEFAULT_QUEUE
            } else {
                node.queue.as_str()
            };
            let queue = self.queues.entry(queue).name.clone();
            let headers = Headers {
                guarantee: true,
                timeout_secs: node.timeout.unwrap_or(0),
                ..Headers::default()
            };
            let body = JobCall {
                handler: handler.clone(),
                args,
                kwargs: node.kwargs,
                ..JobCall::default()
            }
            .encode(ContentType::Json);
            let retries = node.retries.unwrap_or(self.config.default_retries);
            let mut job = Box::new(Job {
                client: client.clone(),
                queue: queue.clone(),
                headers: self.shared_headers(headers.encode()),
                body: body.into_boxed_slice(),
                result_to: ResultTo::Nobody,
                guarantee: true,
                handler: HandlerId::UNREAD,
                attempts: 0,
                max_attempts: retries.saturating_add(1).min(u16::MAX as u32) as u16,
                ready: Default::default(),
                place: if mine.is_empty() {
                    Place::Waiting
                } else {
                    Place::Blocked
                },
                extra: None,
            });
            let origin = format!("node {} of graph {id}, from {peer}", node.name);
            let entry = if mine.is_empty() {
                Entry::Queue
            } else {
                let names: Vec<String> = mine
                    .iter()
                    .map(|&p| name_in(&keys[p as usize].text()).to_owned())
                    .collect();
                Entry::Blocked(format!("waits for {}", names.join(", ")))
            };
            self.accept_guaranteed(key, &job, entry, origin);
            self.note_submitted(now, key, &mut job, Some(&id));
            self.jobs.insert(key.clone(), job);
            if mine.is_empty() {
                self.enqueue(key, false);
                if !touched.contains(&queue) {
                    touched.push(queue.clone());
                }
            }
            self.graphs
                .nodes
                .insert(key.clone(), (id.clone(), def.nodes.len() as u32));
            def.nodes.push(NodeDef {
                name: node.name,
                handler,
                queue: queue.to_string(),
                parents: mine,
                parent_results: node.parent_results,
                summary: node.summary,
            });
        }
        self.store_ops.push(StoreOp::put(Table::Graphs, &*id, &def));
        self.graphs.blocked += blocked;
        info!(
            "graph {id} accepted from {peer}: {} job(s), {roots} ready, {}",
            keys.len(),
            def.on_failure
        );
        let graph = Graph::new(def, client, keys);
        self.graphs.by_id.insert(id.clone(), graph);
        let view = self.graph_view(&id).expect("just inserted");
        self.push(
            Endpoint::Frontend,
            &peer,
            Message::GraphInfo { view: Box::new(view) },
            true,
            Carries::Other,
        );
        for queue in touched {
            self.dispatch_queue(now, &queue);
        }
    }

    /// GRAPH_QUERY.
    pub(super) fn on_graph_query(&mut self, endpoint: Endpoint, peer: &PeerId, msgid: &str, id: &str) {
        match self.graph_view(id) {
            Some(view) => self.send(endpoint, peer, Message::GraphInfo { view: Box::new(view) }),
            None => self.unknown_graph(endpoint, peer, msgid, id),
        }
    }

    fn unknown_graph(&mut self, endpoint: Endpoint, peer: &PeerId, msgid: &str, id: &str) {
        let reason = format!("no graph {id} (never seen, or ended longer ago than the result retention)");
        self.error(endpoint, peer, msgid, ErrorCode::UnknownGraph, &reason);
    }

    /// GRAPH_CANCEL: every node that has not started ends CANCELLED;
    /// running ones finish. Answered after the commit.
    pub(super) fn on_graph_cancel(&mut self, now: Instant, endpoint: Endpoint, peer: &PeerId, msgid: &str, id: &str) {
        let Some(graph) = self.graphs.by_id.get_mut(id) else {
            return self.unknown_graph(endpoint, peer, msgid, id);
        };
        if graph.ended_ms.is_none() && graph.def.cancelled_ms.is_none() {
            graph.def.cancelled_ms = Some(self.wall_ms);
            let keys = graph.keys.clone();
            self.store_ops.push(StoreOp::put(Table::Graphs, id, &graph.def));
            let reason = format!("graph cancelled by {peer}");
            let mut cancelled = 0usize;
            for key in &keys {
                let place = self.jobs.get(key).map(|j| j.place.clone());
                match place {
                    Some(Place::Blocked) => {
                        self.cancel_blocked(now, key, &reason);
                        cancelled += 1;
                    }
                    Some(Place::Waiting | Place::Delayed { .. }) => {
                        cancelled += usize::from(self.cancel_waiting(now, key));
                    }
                    _ => {}
                }
            }
            info!("graph {id} cancelled by {peer}: {cancelled} job(s) that had not started");
            self.settle_graphs(now);
        }
        let view = self.graph_view(id).expect("present");
        self.push(
            endpoint,
            peer,
            Message::GraphInfo { view: Box::new(view) },
            true,
            Carries::Other,
        );
    }

    /// A blocked node ends CANCELLED with `reason` (its end is settled with
    /// the others).
    fn cancel_blocked(&mut self, now: Instant, key: &JobKey, reason: &str) {
        if self.jobs.get(key).is_some_and(|j| j.place == Place::Blocked) {
            self.cancel_not_started(now, key, reason);
        }
    }

    /// A guaranteed job's end was recorded: if it is a graph's node, its
    /// end is settled after this event. Returns whether it is.
    pub(super) fn graph_node_ended(&mut self, key: &JobKey, status: JobState) -> bool {
        if !self.graphs.owns(key) {
            return false;
        }
        self.graphs.ended.push_back((key.clone(), status));
        true
    }

    /// Settle the nodes that ended: release the children they let run,
    /// cancel (fail-fast) those they block, end graphs with no node left.
    /// Iterative: a cancellation's own end is queued, not recursed into.
    pub(super) fn settle_graphs(&mut self, now: Instant) {
        let mut touched: Vec<Rc<str>> = Vec::new();
        while let Some((key, state)) = self.graphs.ended.pop_front() {
            let Some((id, i)) = self.graphs.nodes.get(&key).cloned() else {
                continue;
            };
            let Some(g) = self.graphs.by_id.get_mut(&id) else {
                continue;
            };
            let i = i as usize;
            if g.settled[i] {
                continue;
            }
            g.settled[i] = true;
            g.open -= 1;
            let policy = g.def.on_failure;
            let lets_run = satisfies(policy, state);
            // The node whose failure blocks the children: this one, or the
            // one that blocked it.
            let cause = g.blocked_by.get(&(i as u32)).copied().unwrap_or(i as u32);
            let children = g.children[i].clone();
            for c in children {
                let g = self.graphs.by_id.get_mut(&id).expect("present");
                let ckey = g.keys[c as usize].clone();
                if lets_run {
                    g.unmet[c as usize] -= 1;
                    if g.unmet[c as usize] == 0 {
                        if let Some(queue) = self.release_node(&id, c) {
                            if !touched.contains(&queue) {
                                touched.push(queue);
                            }
                        }
                    }
                } else if self.jobs.get(&ckey).is_some_and(|j| j.place == Place::Blocked) {
                    let g = self.graphs.by_id.get_mut(&id).expect("present");
                    g.blocked_by.insert(c, cause);
                    let reason = {
                        let cause_key = &g.keys[cause as usize];
                        let cause_state = self.guaranteed.record(cause_key).map_or(state, |r| r.status);
                        format!("blocked by {} ({cause_state})", g.def.nodes[cause as usize].name)
                    };
                    self.cancel_blocked(now, &ckey, &reason);
                }
            }
            let g = self.graphs.by_id.get_mut(&id).expect("present");
            if g.open == 0 && g.ended_ms.is_none() {
                self.graph_ended(now, &id);
            }
        }
        for queue in touched {
            self.dispatch_queue(now, &queue);
        }
    }

    /// Node `c` of graph `id` has all it waits for: it leaves `Blocked` for
    /// its queue, with its parents' results added to its arguments if it
    /// asked. Returns its queue.
    fn release_node(&mut self, id: &Rc<str>, c: u32) -> Option<Rc<str>> {
        let g = self.graphs.by_id.get(id)?;
        let key = g.keys[c as usize].clone();
        if !self.jobs.get(&key).is_some_and(|j| j.place == Place::Blocked) {
            return None;
        }
        let node = &g.def.nodes[c as usize];
        let mut kwargs = serde_json::Map::new();
        if node.parent_results {
            let mut parents = serde_json::Map::new();
            for &p in &node.parents {
                let pkey = &g.keys[p as usize];
                let (state, value, error) = match self.guaranteed.record(pkey) {
                    Some(r) => {
                        let decoded = r
                            .result
                            .as_ref()
                            .and_then(|o| JobResult::decode_body(o.outcome, &o.body, o.content_type).ok());
                        let (value, error) = decoded.map_or((serde_json::Value::Null, None), |d| (d.value, d.error));
                        (r.status, value, error)
                    }
                    None => (JobState::Finished, serde_json::Value::Null, None),
                };
                parents.insert(
                    g.def.nodes[p as usize].name.clone(),
                    serde_json::json!({"id": pkey.to_text(), "state": state, "value": value, "error": error}),
                );
            }
            kwargs.insert(PARENTS_KWARG.into(), serde_json::Value::Object(parents));
        }
        if node.summary {
            let mut summary = BatchSummary {
                graph: id.to_string(),
                total: node.parents.len(),
                ..BatchSummary::default()
            };
            for &p in &node.parents {
                let pkey = &g.keys[p as usize];
                match self.guaranteed.record(pkey).map(|r| r.status) {
                    Some(JobState::Finished) => summary.finished += 1,
                    _ => {
                        summary.failed += 1;
                        summary.failed_ids.push(pkey.to_text());
                    }
                }
            }
            kwargs.insert(SUMMARY_KWARG.into(), serde_json::to_value(summary).unwrap_or_default());
        }
        let queue = self.jobs.get(&key)?.queue.clone();
        let mut new_body = None;
        if !kwargs.is_empty() {
            let job = self.jobs.get_mut(&key)?;
            match JobCall::add_kwargs(&job.body, ContentType::Json, kwargs) {
                Ok(body) => {
                    job.body = body.clone().into_boxed_slice();
                    new_body = Some(body);
                }
                Err(e) => warn!("job {key}: cannot add its parents' results to its arguments: {e}"),
            }
        }
        self.graphs.left_blocked();
        self.track_released(&key, &queue, new_body);
        self.enqueue(&key, false);
        Some(queue)
    }

    /// Every node of graph `id` has ended.
    fn graph_ended(&mut self, now: Instant, id: &Rc<str>) {
        let at = self.wall_ms;
        let Some(g) = self.graphs.by_id.get_mut(id) else { return };
        g.ended_ms = Some(at);
        let (notify, client) = (g.def.notify, g.client.clone());
        let view = self.graph_view(id).expect("present");
        info!("graph {id} ended {}", view.state);
        let state: &'static str = view.state.into();
        self.note_graph(EventKind::GraphEnded, id, view.nodes.len(), Some(state));
        if notify {
            let info = Message::GraphInfo { view: Box::new(view) };
            self.push(Endpoint::Frontend, &client, info, true, Carries::Other);
        }
        self.graphs
            .purge
            .push_back((now + self.config.result_retention, id.clone()));
    }

    /// Forget ended graphs whose retention has passed, with their nodes'
    /// records, here and in the journal.
    pub(super) fn purge_graphs(&mut self, now: Instant) {
        while let Some((at, _)) = self.graphs.purge.front() {
            if *at > now {
                break;
            }
            let (_, id) = self.graphs.purge.pop_front().expect("peeked");
            let Some(g) = self.graphs.by_id.remove(&id) else {
                continue;
            };
            for key in &g.keys {
                self.graphs.nodes.remove(key);
                self.forget_tracked(key);
            }
            self.store_ops.push(StoreOp::delete(Table::Graphs, &*id));
        }
    }

    /// GRAPH_INFO's view of graph `id`.
    pub(super) fn graph_view(&self, id: &str) -> Option<GraphView> {
        let g = self.graphs.by_id.get(id)?;
        let mut counts = GraphCounts {
            total: g.keys.len(),
            ..GraphCounts::default()
        };
        let mut nodes = Vec::with_capacity(g.keys.len());
        let (mut any_failed, mut all_ended) = (false, true);
        for (i, (key, def)) in g.keys.iter().zip(&g.def.nodes).enumerate() {
            let record = self.guaranteed.record(key);
            let state = record.map_or(JobState::Cancelled, |r| r.status);
            let error = record
                .and_then(|r| r.result.as_ref())
                .filter(|o| o.outcome != Outcome::Ok)
                .and_then(|o| JobResult::decode_body(o.outcome, &o.body, o.content_type).ok())
                .and_then(|r| r.error);
            match state {
                JobState::Blocked => counts.blocked += 1,
                JobState::Accepted | JobState::Queued | JobState::Scheduled => counts.waiting += 1,
                JobState::Running => counts.running += 1,
                JobState::Finished => counts.finished += 1,
                JobState::Cancelled | JobState::Superseded => counts.cancelled += 1,
                JobState::Failed | JobState::Dead | JobState::Expired => counts.failed += 1,
            }
            any_failed |= state.is_final() && state != JobState::Finished;
            all_ended &= state.is_final();
            nodes.push(GraphNodeView {
                name: def.name.clone(),
                id: key.to_text(),
                state,
                attempts: record.map_or(0, |r| r.attempts),
                handler: def.handler.clone(),
                queue: def.queue.clone(),
                after: def
                    .parents
                    .iter()
                    .map(|&p| g.def.nodes[p as usize].name.clone())
                    .collect(),
                blocked_by: g
                    .blocked_by
                    .get(&(i as u32))
                    .map(|&c| g.def.nodes[c as usize].name.clone()),
                error,
            });
        }
        let state = match (all_ended, g.def.cancelled_ms.is_some(), any_failed) {
            (false, _, _) => GraphState::Running,
            (true, true, _) => GraphState::Cancelled,
            (true, false, true) => GraphState::Failed,
            (true, false, false) => GraphState::Finished,
        };
        Some(GraphView {
            id: id.to_string(),
            state,
            on_failure: g.def.on_failure,
            created: timestamp_ms(g.def.created_ms),
            ended: g.ended_ms.map(timestamp_ms),
            counts,
            nodes,
        })
    }

    /// GRAPHS (admin): every graph, oldest first.
    pub(super) fn graph_list(&self) -> GraphList {
        let mut ids: Vec<(&Rc<str>, u64)> = self.graphs.by_id.iter().map(|(id, g)| (id, g.def.seq)).collect();
        ids.sort_by_key(|(_, seq)| *seq);
        GraphList {
            graphs: ids
                .into_iter()
                .filter_map(|(id, _)| self.graph_view(id))
                .map(|v| v.summary())
                .collect(),
        }
    }

    /// After a restart, before the jobs: the graphs, so that their nodes'
    /// records are known as theirs.
    pub(super) fn restore_graph_defs(&mut self, rows: Vec<Row>) -> Result<(), CorruptRow> {
        for row in rows {
            let def: GraphDef = row.decode()?;
            let id: Rc<str> = row.key.as_str().into();
            let keys: Vec<JobKey> = def.nodes.iter().map(|n| node_key(&id, &n.name)).collect();
            for (i, key) in keys.iter().enumerate() {
                self.graphs.nodes.insert(key.clone(), (id.clone(), i as u32));
            }
            self.graphs.seq = self.graphs.seq.max(def.seq);
            let client = self.intern(PeerId(def.client.clone()));
            self.graphs.by_id.insert(id, Graph::new(def, client, keys));
        }
        Ok(())
    }

    /// After a restart, once the jobs are back: each graph's progress from
    /// its nodes' records. What a node's end caused was committed with it;
    /// anything found undone (a blocked node whose parents all ended) is
    /// done now.
    pub(super) fn restore_graph_progress(&mut self, now: emq_proto::Now) {
        let at = now.unix_ms;
        let ids: Vec<Rc<str>> = self.graphs.by_id.keys().cloned().collect();
        let (mut running, mut ended) = (0usize, 0usize);
        for id in ids {
            let g = self.graphs.by_id.get(&id).expect("listed");
            // Each node's state, and when the last one ended: one lookup each.
            let mut finished_ms = None;
            let states: Vec<Option<JobState>> = g
                .keys
                .iter()
                .map(|k| {
                    let record = self.guaranteed.record(k)?;
                    finished_ms = finished_ms.max(record.finished_unix_ms);
                    Some(record.status)
                })
                .collect();
            let g = self.graphs.by_id.get_mut(&id).expect("listed");
            let policy = g.def.on_failure;
            for (i, state) in states.iter().enumerate() {
                // A node with no record was purged with a finished graph, or
                // never journaled: count it as cancelled.
                let state = state.unwrap_or(JobState::Cancelled);
                if state.is_final() {
                    g.settled[i] = true;
                    g.open -= 1;
                }
                g.unmet[i] = g.def.nodes[i]
                    .parents
                    .iter()
                    .filter(|&&p| !satisfies(policy, states[p as usize].unwrap_or(JobState::Cancelled)))
                    .count() as u32;
                if state == JobState::Blocked {
                    self.graphs.blocked += 1;
                }
            }
            let g = self.graphs.by_id.get_mut(&id).expect("listed");
            if g.open == 0 {
                let end = finished_ms.unwrap_or(at);
                g.ended_ms = Some(end);
                let age = Duration::from_millis(at.saturating_sub(end).max(0) as u64);
                let expires = now.mono + self.config.result_retention.saturating_sub(age);
                self.graphs.purge.push_back((expires, id.clone()));
                ended += 1;
                continue;
            }
            running += 1;
            // Repairs: a blocked node that may run, or must be cancelled.
            let mut resettle: Vec<u32> = Vec::new();
            for i in 0..states.len() {
                if states[i] != Some(JobState::Blocked) {
                    continue;
                }
                let g = self.graphs.by_id.get(&id).expect("listed");
                let failed_parent = g.def.nodes[i].parents.iter().copied().find(|&p| {
                    let s = states[p as usize].unwrap_or(JobState::Cancelled);
                    s.is_final() && !satisfies(policy, s)
                });
                if let Some(p) = failed_parent {
                    warn!(
                        "graph {id}: {} was not cancelled after {} failed: cancelling it now",
                        g.keys[i], g.keys[p as usize]
                    );
                    if !resettle.contains(&p) {
                        resettle.push(p);
                    }
                } else if g.unmet[i] == 0 {
                    warn!(
                        "graph {id}: {} was not released after its parents ended: releasing it now",
                        g.keys[i]
                    );
                    self.release_node(&id, i as u32);
                }
            }
            // Settled again, so that their ends cancel what they block.
            for p in resettle {
                let g = self.graphs.by_id.get_mut(&id).expect("listed");
                g.settled[p as usize] = false;
                g.open += 1;
                let key = g.keys[p as usize].clone();
                let state = states[p as usize].unwrap_or(JobState::Cancelled);
                self.graphs.ended.push_back((key, state));
            }
        }
        self.graphs.purge.make_contiguous().sort_by_key(|(at, _)| *at);
        self.settle_graphs(now.mono);
        if running + ended > 0 {
            info!("restored from the journal: {running} running graph(s), {ended} ended one(s) kept");
        }
    }

    /// RETRY of a dead graph node is refused: its graph has moved on.
    pub(super) fn graph_of(&self, key: &JobKey) -> Option<&str> {
        self.graphs.nodes.get(key).map(|(id, _)| &**id)
    }
}

#[cfg(test)]
impl Router {
    /// The graphs' bookkeeping agrees with the jobs: every blocked job is a
    /// node waiting for an unmet parent, the blocked count is right, and a
    /// graph's open count is its unsettled nodes.
    pub(super) fn check_graphs(&self) -> Result<(), String> {
        let blocked = self.jobs.values().filter(|j| j.place == Place::Blocked).count();
        if blocked != self.graphs.blocked {
            return Err(format!("{blocked} blocked jobs, counted {}", self.graphs.blocked));
        }
        for (key, job) in &self.jobs {
            if job.place != Place::Blocked {
                continue;
            }
            let Some((id, i)) = self.graphs.nodes.get(key) else {
                return Err(format!("blocked job {key} is no graph's"));
            };
            let g = &self.graphs.by_id[id];
            if g.unmet[*i as usize] == 0 {
                return Err(format!("{key} has all it waits for but stays blocked"));
            }
        }
        for (id, g) in &self.graphs.by_id {
            let unsettled = g.settled.iter().filter(|s| !**s).count();
            if unsettled != g.open {
                return Err(format!("graph {id}: {unsettled} unsettled nodes, open {}", g.open));
            }
            if g.open == 0 && g.ended_ms.is_none() {
                return Err(format!("graph {id} has ended without knowing it"));
            }
        }
        Ok(())
    }
}

impl Graph {
    fn new(def: GraphDef, client: Rc<PeerId>, keys: Vec<JobKey>) -> Graph {
        let parents: Vec<Vec<u32>> = def.nodes.iter().map(|n| n.parents.clone()).collect();
        let children = children_of(&parents);
        let n = keys.len();
        Graph {
            unmet: parents.iter().map(|p| p.len() as u32).collect(),
            def,
            client,
            keys,
            children,
            settled: vec![false; n],
            blocked_by: BTreeMap::new(),
            open: n,
            ended_ms: None,
        }
    }
}
