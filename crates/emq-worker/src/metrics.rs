//! A jobmanager's own `/metrics` and `/healthz` (`--http`): its state, its
//! workers, the jobs it ran by outcome and what happened to its worker
//! processes, from a snapshot its loop hands over each second.

use std::time::Duration;

use emq_http::{Page, Server, Snapshots};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::core::Metrics;
use crate::pool::PoolCounts;

/// What one snapshot holds.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Snapshot {
    pub core: Metrics,
    pub pool: PoolCounts,
}

/// How often the loop hands over a snapshot.
pub(crate) const SNAPSHOT_EVERY: Duration = Duration::from_secs(1);

/// `/healthz` fails once the newest snapshot is this old.
const STALL_AFTER: Duration = Duration::from_secs(5);

/// Bind `addr` and serve the jobmanager's pages.
pub(crate) fn start(addr: &str, first: Snapshot) -> std::io::Result<(Server, Snapshots<Snapshot>)> {
    let (server, snapshots) = Server::start(addr, first, SNAPSHOT_EVERY, page)?;
    log::info!("HTTP on http://{}: /metrics, /healthz", server.bound);
    Ok((server, snapshots))
}

fn page(path: &str, snapshot: &Snapshot, age: Duration) -> Option<Page> {
    Some(match path {
        "/metrics" => Page::ok(
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            render(snapshot),
        ),
        "/healthz" => {
            let healthy = age < STALL_AFTER;
            let status = if healthy { "ok" } else { "stalled" };
            Page {
                status: if healthy { 200 } else { 503 },
                content_type: "application/json",
                body: format!(
                    r#"{{"status":"{status}","state":"{}","connected":{},"snapshot_age_ms":{}}}"#,
                    snapshot.core.state.as_str(),
                    snapshot.core.connected,
                    age.as_millis()
                ),
            }
        }
        _ => return None,
    })
}

/// The snapshot as OpenMetrics text.
pub(crate) fn render(snapshot: &Snapshot) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(snapshot.clone()));
    let mut out = String::new();
    // Writing into a String does not fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    out
}

fn gauge(e: &mut DescriptorEncoder<'_>, name: &str, help: &str, labels: &[(&str, &str)], v: i64) -> std::fmt::Result {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
    ConstGauge::new(v).encode(m.encode_family(&labels.to_vec())?)
}

fn counter(e: &mut DescriptorEncoder<'_>, name: &str, help: &str, v: u64) -> std::fmt::Result {
    let m = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    ConstCounter::new(v).encode(m)
}

impl Collector for Snapshot {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> std::fmt::Result {
        let (c, w) = (&self.core, &self.core.workers);
        let state = c.state.as_str();
        gauge(
            &mut e,
            "emq_jobmanager_state",
            "1, labelled with the state it reports.",
            &[("state", state)],
            1,
        )?;
        gauge(
            &mut e,
            "emq_jobmanager_connected",
            "1 while a router has answered its INFORM.",
            &[],
            i64::from(c.connected),
        )?;
        let mut m = e.encode_descriptor(
            "emq_jobmanager_workers",
            "Worker processes, by state.",
            None,
            MetricType::Gauge,
        )?;
        for (label, v) in [("busy", w.busy), ("idle", w.workers.saturating_sub(w.busy))] {
            ConstGauge::new(i64::from(v)).encode(m.encode_family(&[("state", label)])?)?;
        }
        gauge(
            &mut e,
            "emq_jobmanager_queued_jobs",
            "Jobs held waiting for a worker (prefetch, pipeline).",
            &[],
            i64::from(w.queued),
        )?;
        let mut m = e.encode_descriptor(
            "emq_jobmanager_jobs",
            "Jobs ended here, by outcome.",
            None,
            MetricType::Counter,
        )?;
        for (outcome, n) in &c.ended {
            ConstCounter::new(*n).encode(m.encode_family(&[("outcome", outcome.as_str())])?)?;
        }
        counter(
            &mut e,
            "emq_jobmanager_attempts_started",
            "Attempts started on a worker (local retries included).",
            c.started,
        )?;
        counter(
            &mut e,
            "emq_jobmanager_workers_spawned",
            "Worker processes started.",
            self.pool.spawned,
        )?;
        counter(
            &mut e,
            "emq_jobmanager_workers_died",
            "Workers that died (crashed, killed at a timeout).",
            self.pool.died,
        )?;
        counter(
            &mut e,
            "emq_jobmanager_workers_recycled",
            "Workers recycled (--max-jobs, --max-rss-mb).",
            self.pool.recycled,
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use emq_proto::views::WorkerCounts;
    use emq_proto::{JobManagerState, Outcome};

    #[test]
    fn pages_say_the_state_and_healthz_fails_when_the_loop_stalls() {
        let snapshot = Snapshot {
            core: Metrics {
                state: JobManagerState::Active,
                connected: true,
                workers: WorkerCounts {
                    workers: 3,
                    busy: 1,
                    queued: 0,
                },
                ended: vec![(Outcome::Ok, 4)],
                started: 4,
            },
            pool: PoolCounts::default(),
        };
        let text = render(&snapshot);
        assert!(text.contains(r#"emq_jobmanager_workers{state="idle"} 2"#), "{text}");
        assert!(text.contains(r#"emq_jobmanager_jobs_total{outcome="ok"} 4"#), "{text}");
        assert_eq!(page("/healthz", &snapshot, Duration::ZERO).unwrap().status, 200);
        assert_eq!(page("/healthz", &snapshot, STALL_AFTER).unwrap().status, 503);
    }
}
