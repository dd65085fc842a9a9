//! The HTTP server of emq's processes (`--http` on the router and the
//! jobmanager): GET pages rendered from the newest snapshot the process's
//! loop hands over, on a thread of its own; the `/healthz` page they share
//! ([`health`]) and OpenMetrics writing ([`openmetrics`]).
//!
//! The loop never waits for it: once a period it puts a fresh snapshot in a
//! one-slot channel ([`Snapshots::send`], taking out one nobody read), and
//! the server thread renders whatever snapshot is newest. tiny_http blocks
//! in `accept`, so an idle server costs no CPU.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use log::warn;

pub mod openmetrics;

/// `/healthz` fails once the newest snapshot is this old: the loop that
/// hands them over is stuck.
pub const STALL_AFTER: Duration = Duration::from_secs(5);

/// The `/healthz` page for a snapshot `age` old: 200 with
/// `{"status": "ok", "snapshot_age_ms": ...}` and `details`, or 503 with
/// `"status": "stalled"` past [`STALL_AFTER`].
pub fn health(age: Duration, details: serde_json::Map<String, serde_json::Value>) -> Page {
    let healthy = age < STALL_AFTER;
    let mut body = serde_json::Map::new();
    body.insert("status".into(), (if healthy { "ok" } else { "stalled" }).into());
    body.insert("snapshot_age_ms".into(), (age.as_millis() as u64).into());
    body.extend(details);
    Page {
        status: if healthy { 200 } else { 503 },
        content_type: "application/json",
        body: serde_json::Value::Object(body).to_string(),
    }
}

/// What a page answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The HTTP status.
    pub status: u16,
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// The body.
    pub body: String,
}

impl Page {
    /// A 200 page.
    pub fn ok(content_type: &'static str, body: String) -> Page {
        Page {
            status: 200,
            content_type,
            body,
        }
    }
}

/// The loop's end of the snapshot channel.
pub struct Snapshots<S> {
    tx: Sender<(Instant, S)>,
    /// To take out a snapshot nobody read, so that the slot holds the newest.
    stale: Receiver<(Instant, S)>,
    every: Duration,
    next: Instant,
}

impl<S> Snapshots<S> {
    /// Whether a snapshot is due.
    pub fn due(&self, now: Instant) -> bool {
        now >= self.next
    }

    /// When the next one is due (for the loop's poll timeout).
    pub fn next_due(&self) -> Instant {
        self.next
    }

    /// Hand over `snapshot`, replacing one not yet read.
    pub fn send(&mut self, now: Instant, snapshot: S) {
        self.next = now + self.every;
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

/// The running server; dropping it stops its thread.
pub struct Server {
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
    /// The address bound (a port 0 resolved).
    pub bound: String,
}

impl Server {
    /// Bind `addr` (`host:port`) and serve GET requests with `pages`,
    /// given the path (without its query), the newest snapshot and its age;
    /// `None` is a 404. `first` is served until the loop sends another,
    /// expected every `every`.
    pub fn start<S, P>(addr: &str, first: S, every: Duration, pages: P) -> std::io::Result<(Server, Snapshots<S>)>
    where
        S: Send + 'static,
        P: Fn(&str, &S, Duration) -> Option<Page> + Send + 'static,
    {
        let server = tiny_http::Server::http(addr).map_err(|e| std::io::Error::other(format!("bind {addr}: {e}")))?;
        let bound = match server.server_addr() {
            tiny_http::ListenAddr::IP(a) => {
                if !a.ip().is_loopback() {
                    warn!("HTTP on {a}, beyond loopback: its pages have no authentication");
                }
                a.to_string()
            }
            #[allow(unreachable_patterns)]
            other => format!("{other:?}"),
        };
        let server = Arc::new(server);
        let (tx, rx) = crossbeam_channel::bounded(1);
        let now = Instant::now();
        let mut snapshots = Snapshots {
            tx,
            stale: rx.clone(),
            every,
            next: now,
        };
        snapshots.send(now, first);
        let serving = server.clone();
        let thread = std::thread::Builder::new()
            .name("emq-http".into())
            .spawn(move || serve(&serving, &rx, &pages))?;
        Ok((
            Server {
                server,
                thread: Some(thread),
                bound,
            },
            snapshots,
        ))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve<S>(
    server: &tiny_http::Server,
    rx: &Receiver<(Instant, S)>,
    pages: &impl Fn(&str, &S, Duration) -> Option<Page>,
) {
    let mut latest: Option<(Instant, S)> = None;
    for request in server.incoming_requests() {
        while let Ok(newer) = rx.try_recv() {
            latest = Some(newer);
        }
        let path = request.url().split('?').next().unwrap_or("").to_string();
        let page = match (request.method(), &latest) {
            (tiny_http::Method::Get, Some((at, snapshot))) => pages(&path, snapshot, at.elapsed()).unwrap_or(Page {
                status: 404,
                content_type: "text/plain",
                body: "not found\n".into(),
            }),
            (tiny_http::Method::Get, None) => Page {
                status: 503,
                content_type: "text/plain",
                body: "starting\n".into(),
            },
            _ => Page {
                status: 405,
                content_type: "text/plain",
                body: "GET only\n".into(),
            },
        };
        let mut response = tiny_http::Response::from_string(page.body).with_status_code(page.status);
        if let Ok(h) = tiny_http::Header::from_bytes(&b"Content-Type"[..], page.content_type.as_bytes()) {
            response.add_header(h);
        }
        if let Err(e) = request.respond(response) {
            log::debug!("HTTP response not sent: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn get(addr: &str, path: &str) -> String {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn pages_render_the_newest_snapshot_and_unknown_paths_are_404() {
        let (server, mut snapshots) = Server::start("127.0.0.1:0", 1u32, Duration::from_secs(1), |path, n: &u32, _| {
            (path == "/n").then(|| Page::ok("text/plain", format!("{n}")))
        })
        .unwrap();
        assert!(get(&server.bound, "/n").ends_with("\r\n1"));
        // Two snapshots before a request: the newer one is served.
        snapshots.send(Instant::now(), 2);
        snapshots.send(Instant::now(), 3);
        assert!(get(&server.bound, "/n?x=1").ends_with("\r\n3"));
        assert!(get(&server.bound, "/other").starts_with("HTTP/1.1 404"));
    }
}
