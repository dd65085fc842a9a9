//! The router's pages on its HTTP server (`--http`, [`emq_http`]):
//! `/metrics` (OpenMetrics text), `/healthz` and `/status` (the STATUS view
//! as JSON), from the snapshot the routing loop hands over each second.

use std::time::Duration;

use emq_http::{Page, Server, Snapshots};
use log::info;

use crate::metrics::{render, Process, Snapshot};

/// How often the routing loop hands over a snapshot.
const SNAPSHOT_EVERY: Duration = Duration::from_secs(1);

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
            Page::ok(emq_http::openmetrics::CONTENT_TYPE, render(snapshot, process))
        }
        "/healthz" => {
            let mut details = serde_json::Map::new();
            details.insert("uptime_s".into(), snapshot.status.uptime_s.into());
            details.insert("jobmanagers".into(), snapshot.status.jobmanagers.len().into());
            emq_http::health(age, details)
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
        let stale = page("/healthz", &snapshot(), emq_http::STALL_AFTER, 0).unwrap();
        assert_eq!(stale.status, 503);
        assert!(stale.body.contains(r#""status":"stalled""#), "{}", stale.body);
        assert!(page("/nothing", &snapshot(), Duration::ZERO, 0).is_none());
        let metrics = page("/metrics", &snapshot(), Duration::ZERO, 0).unwrap();
        assert!(metrics.body.ends_with("# EOF\n"), "{}", metrics.body);
    }
}
