//! The JSON answers to STATUS and ROUTER_SHOW_WORKERS. EventMQ's keys come
//! first and keep their meaning (its `emq-cli` prints them); emq adds
//! `queues`, `jobmanagers` and totals beside them.

use std::collections::BTreeMap;
use std::time::Instant;

use serde_json::{json, Map, Value};

use crate::core::Router;

pub(crate) fn status_json(r: &Router, now: Instant) -> String {
    let running = r.running_by_queue(now);
    let mut inflight = Map::new();
    let mut latency = Map::new();
    let mut max_latency = Map::new();
    for (q, (n, sum, max)) in &running {
        inflight.insert(q.to_string(), json!(n));
        latency.insert(q.to_string(), json!((sum / (*n).max(1) as u128) as u64));
        max_latency.insert(q.to_string(), json!(*max as u64));
    }
    let mut waiting = Map::new();
    let mut processed = Map::new();
    let mut queues = BTreeMap::new();
    for (name, q) in &r.queues {
        if q.waiting_len() > 0 {
            waiting.insert(name.clone(), json!(q.waiting_len()));
        }
        processed.insert(name.clone(), json!(q.processed));
        let members: Vec<Value> = q.member_ids().map(|(w, p)| json!([w, p.to_string()])).collect();
        queues.insert(
            name.clone(),
            json!({
                "waiting": q.waiting_len(),
                "running": running.get(name.as_str()).map_or(0, |e| e.0),
                "processed": q.processed,
                "jobmanagers": members,
            }),
        );
    }
    let by_worker: Map<String, Value> = r
        .workers
        .iter()
        .map(|(p, w)| (p.to_string(), json!(w.processed)))
        .collect();
    json!({
        "inflight_messages_by_queue": inflight,
        "latency_messages_by_queue": latency,
        "max_latency_messages_by_queue": max_latency,
        "waiting_messages_by_queue": waiting,
        "processed_messages_by_queue": processed,
        "processed_messages_by_worker": by_worker,
        "queues": queues,
        "jobmanagers": jobmanagers(r, now),
        "waiting_total": r.waiting_total(),
        "results_kept": r.results.len(),
        "uptime_s": r.uptime(now).as_secs(),
    })
    .to_string()
}

fn jobmanagers(r: &Router, now: Instant) -> BTreeMap<String, Value> {
    r.workers
        .iter()
        .map(|(p, w)| {
            (
                p.to_string(),
                json!({
                    "queues": w.queues,
                    "slots": w.slots,
                    "running": w.running.len(),
                    "processed": w.processed,
                    "state": w.state,
                    "last_seen_ms": now.saturating_duration_since(w.last_seen).as_millis() as u64,
                    "liveness_ms": w.window.as_millis() as u64,
                    "kind": if w.is_eventmq { "eventmq" } else { "emq" },
                }),
            )
        })
        .collect()
}

pub(crate) fn workers_json(r: &Router, now: Instant) -> String {
    // EventMQ's shape: {"connected_workers": {id: {queues, hb, available_slots}},
    // "connected_queues": {name: [[weight, id]]}}.
    let workers: Map<String, Value> = r
        .workers
        .iter()
        .map(|(p, w)| {
            let age = now.saturating_duration_since(w.last_seen).as_secs_f64();
            (
                p.to_string(),
                json!({"queues": w.queues, "hb": -age, "available_slots": w.slots, "state": w.state}),
            )
        })
        .collect();
    let queues: Map<String, Value> = r
        .queues
        .iter()
        .map(|(name, q)| {
            (
                name.clone(),
                Value::Array(q.member_ids().map(|(w, p)| json!([w, p.to_string()])).collect()),
            )
        })
        .collect();
    json!({"connected_workers": workers, "connected_queues": queues, "jobmanagers": jobmanagers(r, now)}).to_string()
}
