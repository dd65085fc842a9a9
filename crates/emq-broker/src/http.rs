//! The router's pages on its HTTP server (`--http`, [`emq_http`]):
//! `/metrics` (OpenMetrics text), `/healthz` and `/status` (the STATUS view
//! as JSON), from the snapshot the routing loop hands over each second.

use std::time::Duration;

use emq_http::{Page, Server, Snapshots};
use log::info;

use crate::metrics::{render, Process, Snapshot};

/// How often the routing loop hands over a snapshot.
const SNAPSHOT_EVERY: Duration = Duration::from_secs(1);

/// `/healthz` fails once the newest snapshot is this old: the routing loop
/// is stuck (a journal that does not return, a livelock).
const STALL_AFTER: Duration = Duration::from_secs(5);

/// Bind `addr` (`host:port`) and serve the router's pages; the first
/// snapshot is `first`.
pub(crate) fn start(addr: &str, first: Snapshot) -> std::io::Result<(Server, Snapshots<Snapshot>)> {
    let resident_at_start = Process::resident_now();
    let (server, snapshots) = Server::start(addr, first, SNAPSHOT_EVERY, move |path, snapshot, age| {
        page(path, snapshot, age, resident_at_start)
    })?;
    info!("HTTP on http://{}: /metrics, /healthz, /status", server.bound);
    Ok((server, snapshots))
}

fn page(path: &str, snapshot: &Snapshot, age: Duration, resident_at_start: u64) -> Option<Page> {
    Some(match path {
        "/metrics" => {
            let process = Process {
                resident_bytes: Process::resident_now(),
                resident_at_start,
            };
            Page::ok(
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                render(snapshot, process),
            )
        }
        "/healthz" => {
            let healthy = age < STALL_AFTER;
            let body = serde_json::json!({
                "status": if healthy { "ok" } else { "stalled" },
                "snapshot_age_ms": age.as_millis() as u64,
                "uptime_s": snapshot.status.uptime_s,
                "jobmanagers": snapshot.status.jobmanagers.len(),
            });
            Page {
                status: if healthy { 200 } else { 503 },
                content_type: "application/json",
                body: body.to_string(),
            }
        }
        "/status" => Page::ok(
            "application/json",
            serde_json::to_string(&snapshot.status).unwrap_or_default(),
        ),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> Snapshot {
        Snapshot {
            status: Default::default(),
            times: Default::default(),
            stats: Default::default(),
        }
    }

    #[test]
    fn healthz_fails_once_the_routing_loop_stops_handing_over_snapshots() {
        let fresh = page("/healthz", &snapshot(), Duration::from_millis(900), 0).unwrap();
        assert_eq!(fresh.status, 200, "{}", fresh.body);
        let stale = page("/healthz", &snapshot(), STALL_AFTER, 0).unwrap();
        assert_eq!(stale.status, 503);
        assert!(stale.body.contains(r#""status":"stalled""#), "{}", stale.body);
        assert!(page("/nothing", &snapshot(), Duration::ZERO, 0).is_none());
        let metrics = page("/metrics", &snapshot(), Duration::ZERO, 0).unwrap();
        assert!(metrics.body.ends_with("# EOF\n"), "{}", metrics.body);
    }
}
