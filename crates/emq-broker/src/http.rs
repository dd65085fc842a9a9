//! The router's pages on its HTTP server (`--http`, [`emq_http`]):
//! `/metrics` (OpenMetrics text), `/healthz` and `/status` (the STATUS view
//! as JSON), from the snapshot the routing loop hands over each second;
//! with `--dashboard`, the dashboard's pages ([`crate::dashboard`]).

use std::time::{Duration, Instant};

use emq_http::{Method, Page, Request, Server, Site, Snapshots};
use log::{info, warn};

use crate::dashboard::Dashboard;
use crate::metrics::{render, Process, Snapshot};

/// How often the routing loop hands over a snapshot.
const SNAPSHOT_EVERY: Duration = Duration::from_secs(1);

/// The router's site: its pages and, with `--dashboard`, the dashboard.
struct RouterSite {
    latest: Option<(Instant, Snapshot)>,
    resident_at_start: u64,
    dashboard: Option<Dashboard>,
}

impl Site for RouterSite {
    type Snapshot = Snapshot;

    fn snapshot(&mut self, at: Instant, snapshot: Snapshot) {
        if let Some(d) = &mut self.dashboard {
            d.record(at, &snapshot);
        }
        self.latest = Some((at, snapshot));
    }

    fn serve(&mut self, request: &Request) -> Page {
        if request.method == Some(Method::Get) {
            if let Some((at, snapshot)) = &self.latest {
                if let Some(p) = page(&request.path, snapshot, at.elapsed(), self.resident_at_start) {
                    return p;
                }
            }
        }
        let latest = self.latest.as_ref().map(|(_, s)| s);
        match self.dashboard.as_mut() {
            Some(d) => d
                .serve(request, latest)
                .unwrap_or_else(|| Page::text(404, "not found\n")),
            None if request.method == Some(Method::Get) => Page::text(404, "not found\n"),
            None => Page::text(405, "GET only\n"),
        }
    }
}

/// Bind `addr` (`host:port`) and serve the router's pages, and the
/// dashboard when one is given; the first snapshot is `first`.
pub(crate) fn start(
    addr: &str,
    first: Snapshot,
    dashboard: Option<Dashboard>,
) -> std::io::Result<(Server, Snapshots<Snapshot>)> {
    let with_dashboard = dashboard.is_some();
    let site = RouterSite {
        latest: None,
        resident_at_start: Process::resident_now(),
        dashboard,
    };
    let (server, snapshots) = Server::start_site(addr, first, SNAPSHOT_EVERY, site)?;
    if with_dashboard {
        info!(
            "dashboard on http://{}/ (and /metrics, /healthz, /status)",
            server.bound
        );
    } else {
        info!("HTTP on http://{}: /metrics, /healthz, /status", server.bound);
    }
    if !server.is_loopback() {
        warn!(
            "HTTP on {}, beyond loopback: pages are readable by anyone who reaches it, and the dashboard's token travels in clear (put TLS in front)",
            server.bound
        );
    }
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
