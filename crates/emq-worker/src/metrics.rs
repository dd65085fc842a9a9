//! A jobmanager's own `/metrics` and `/healthz` (`--http`): its state, its
//! workers, the jobs it ran by outcome and what happened to its worker
//! processes, from a snapshot its loop hands over each second.

use std::time::Duration;

use emq_http::openmetrics::{counter, counters, gauge, gauges};
use emq_http::{Page, Server, Snapshots};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;

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

/// Bind `addr` and serve the jobmanager's pages.
pub(crate) fn start(addr: &str, first: Snapshot) -> std::io::Result<(Server, Snapshots<Snapshot>)> {
    let (server, snapshots) = Server::start(addr, first, SNAPSHOT_EVERY, page)?;
    if !server.is_loopback() {
        log::warn!(
            "HTTP on {}, beyond loopback: its pages have no authentication",
            server.bound
        );
    }
    log::info!("HTTP on http://{}: /metrics, /healthz", server.bound);
    Ok((server, snapshots))
}

fn page(path: &str, snapshot: &Snapshot, age: Duration) -> Option<Page> {
    Some(match path {
        "/metrics" => Page::ok(emq_http::openmetrics::CONTENT_TYPE, render(snapshot)),
        "/healthz" => {
            let mut details = serde_json::Map::new();
            details.insert("state".into(), snapshot.core.state.as_str().into());
            details.insert("connected".into(), snapshot.core.connected.into());
            emq_http::health(age, details)
        }
        _ => return None,
    })
}

/// The snapshot as OpenMetrics text.
pub(crate) fn render(snapshot: &Snapshot) -> String {
    emq_http::openmetrics::render(snapshot.clone())
}

impl Collector for Snapshot {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> std::fmt::Result {
        let (c, w) = (&self.core, &self.core.workers);
        let state = c.state.as_str();
        gauges(
            &mut e,
            "emq_jobmanager_state",
            "1, labelled with the state it reports.",
            [(vec![("state", state)], 1)],
        )?;
        gauge(
            &mut e,
            "emq_jobmanager_connected",
            "1 while a router has answered its INFORM.",
            i64::from(c.connected),
        )?;
        gauges(
            &mut e,
            "emq_jobmanager_workers",
            "Worker processes, by state.",
            [("busy", w.busy), ("idle", w.workers.saturating_sub(w.busy))]
                .map(|(label, v)| (vec![("state", label)], i64::from(v))),
        )?;
        gauge(
            &mut e,
            "emq_jobmanager_queued_jobs",
            "Jobs held waiting for a worker (prefetch, pipeline).",
            i64::from(w.queued),
        )?;
        counters(
            &mut e,
            "emq_jobmanager_jobs",
            "Jobs ended here, by outcome.",
            c.ended.iter().map(|(o, n)| (vec![("outcome", o.as_str())], *n)),
        )?;
        for (name, help, value) in [
            (
                "emq_jobmanager_attempts_started",
                "Attempts started on a worker (local retries included).",
                c.started,
            ),
            (
                "emq_jobmanager_workers_spawned",
                "Worker processes started.",
                self.pool.spawned,
            ),
            (
                "emq_jobmanager_workers_died",
                "Workers that died (crashed, killed at a timeout).",
                self.pool.died,
            ),
            (
                "emq_jobmanager_workers_recycled",
                "Workers recycled (--max-jobs, --max-rss-mb).",
                self.pool.recycled,
            ),
        ] {
            counter(&mut e, name, help, value)?;
        }
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
        assert_eq!(page("/healthz", &snapshot, emq_http::STALL_AFTER).unwrap().status, 503);
    }
}
