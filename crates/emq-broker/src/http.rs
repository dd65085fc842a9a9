//! The router's HTTP server (`--http`): `/metrics` (OpenMetrics text),
//! `/healthz` and `/status` (the STATUS view as JSON), on a thread of its
//! own beside the routing loop.
//!
//! The routing loop never waits for it: once a second it puts a fresh
//! [`Snapshot`] in a one-slot channel (taking out the one nobody read), and
//! this thread serves whatever snapshot is newest. tiny_http blocks in
//! `accept`, so an idle server costs no CPU.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use log::{info, warn};

use crate::metrics::{render, Process, Snapshot};

/// How often the routing loop hands over a snapshot.
pub(crate) const SNAPSHOT_EVERY: Duration = Duration::from_secs(1);

/// `/healthz` fails once the newest snapshot is this old: the routing loop
/// is stuck (a journal that does not return, a livelock).
pub(crate) const STALL_AFTER: Duration = Duration::from_secs(5);

/// The routing loop's end of the snapshot channel.
pub(crate) struct SnapshotSender {
    tx: Sender<(Instant, Snapshot)>,
    /// To take out a snapshot nobody read, so that the slot holds the newest.
    stale: Receiver<(Instant, Snapshot)>,
    next: Instant,
}

impl SnapshotSender {
    /// Whether a snapshot is due.
    pub(crate) fn due(&self, now: Instant) -> bool {
        now >= self.next
    }

    /// When the next one is due.
    pub(crate) fn next_due(&self) -> Instant {
        self.next
    }

    /// Hand over `snapshot`, replacing one not yet read.
    pub(crate) fn send(&mut self, now: Instant, snapshot: Snapshot) {
        self.next = now + SNAPSHOT_EVERY;
        let mut item = (now, snapshot);
        for _ in 0..2 {
            match self.tx.try_send(item) {
                Ok(()) | Err(TrySendError::Disconnected(_)) => return,
                Err(TrySendError::Full(back)) => {
                    item = back;
                    let _ = self.stale.try_recv();
                }
            }
        }
    }
}

/// The running server.
pub(crate) struct HttpServer {
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
    /// The address bound (a port 0 resolved).
    pub(crate) bound: String,
}

impl HttpServer {
    /// Bind `addr` (`host:port`) and serve on a thread; the first snapshot
    /// is `first`.
    pub(crate) fn start(addr: &str, first: Snapshot) -> std::io::Result<(HttpServer, SnapshotSender)> {
        let server = tiny_http::Server::http(addr).map_err(|e| std::io::Error::other(format!("bind {addr}: {e}")))?;
        let bound = match server.server_addr() {
            tiny_http::ListenAddr::IP(a) => {
                if !a.ip().is_loopback() {
                    warn!("HTTP on {a}, beyond loopback: /metrics and /status have no authentication");
                }
                a.to_string()
            }
            #[allow(unreachable_patterns)]
            other => format!("{other:?}"),
        };
        let server = Arc::new(server);
        let (tx, rx) = crossbeam_channel::bounded(1);
        let now = Instant::now();
        let mut sender = SnapshotSender {
            tx,
            stale: rx.clone(),
            next: now + SNAPSHOT_EVERY,
        };
        sender.send(now, first);
        let serving = server.clone();
        let resident_at_start = Process::resident_now();
        let thread = std::thread::Builder::new()
            .name("emq-http".into())
            .spawn(move || serve(&serving, &rx, resident_at_start))?;
        info!("HTTP on http://{bound}: /metrics, /healthz, /status");
        Ok((
            HttpServer {
                server,
                thread: Some(thread),
                bound,
            },
            sender,
        ))
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(server: &tiny_http::Server, rx: &Receiver<(Instant, Snapshot)>, resident_at_start: u64) {
    let mut latest: Option<(Instant, Snapshot)> = None;
    for request in server.incoming_requests() {
        while let Ok(newer) = rx.try_recv() {
            latest = Some(newer);
        }
        let path = request.url().split('?').next().unwrap_or("").to_string();
        let response = match (request.method(), path.as_str(), &latest) {
            (tiny_http::Method::Get, "/metrics", Some((_, snapshot))) => {
                let process = Process {
                    resident_bytes: Process::resident_now(),
                    resident_at_start,
                };
                reply(
                    200,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    render(snapshot, process),
                )
            }
            (tiny_http::Method::Get, "/healthz", Some((at, snapshot))) => {
                let age = at.elapsed();
                let healthy = age < STALL_AFTER;
                let body = serde_json::json!({
                    "status": if healthy { "ok" } else { "stalled" },
                    "snapshot_age_ms": age.as_millis() as u64,
                    "uptime_s": snapshot.status.uptime_s,
                    "jobmanagers": snapshot.status.jobmanagers.len(),
                });
                reply(if healthy { 200 } else { 503 }, "application/json", body.to_string())
            }
            (tiny_http::Method::Get, "/status", Some((_, snapshot))) => reply(
                200,
                "application/json",
                serde_json::to_string(&snapshot.status).unwrap_or_default(),
            ),
            (tiny_http::Method::Get, "/metrics" | "/healthz" | "/status", None) => {
                reply(503, "text/plain", "starting\n".into())
            }
            (tiny_http::Method::Get, _, _) => reply(404, "text/plain", "try /metrics, /healthz or /status\n".into()),
            _ => reply(405, "text/plain", "GET only\n".into()),
        };
        if let Err(e) = request.respond(response) {
            log::debug!("HTTP response not sent: {e}");
        }
    }
}

fn reply(status: u16, content_type: &str, body: String) -> tiny_http::Response<std::io::Cursor<Vec<u8>>> {
    let mut response = tiny_http::Response::from_string(body).with_status_code(status);
    if let Ok(h) = tiny_http::Header::from_bytes(&b"Content-Type"[..], content_type.as_bytes()) {
        response.add_header(h);
    }
    response
}
