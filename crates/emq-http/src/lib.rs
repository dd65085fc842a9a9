//! The HTTP server of emq's processes (`--http` on the router and the
//! jobmanager): GET pages rendered from the newest snapshot the process's
//! loop hands over, on a thread of its own; the `/healthz` page they share
//! ([`health`]) and OpenMetrics writing ([`openmetrics`]).
//!
//! The loop never waits for it: once a period it puts a fresh snapshot in a
//! one-slot channel ([`Snapshots::send`], taking out one nobody read), and
//! the server thread hands the newest to its [`Site`] (waking once per
//! period to take it, else blocked waiting for a request). A site answers
//! GET and POST requests ([`Request`]); [`Pages`] is the simple one: GET
//! pages rendered from the newest snapshot.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};

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
    Page::with_status(
        if healthy { 200 } else { 503 },
        "application/json",
        serde_json::Value::Object(body).to_string(),
    )
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
    /// Further headers (`Location`, `Set-Cookie`, ...).
    pub headers: Vec<(&'static str, String)>,
}

impl Page {
    /// A 200 page.
    pub fn ok(content_type: &'static str, body: String) -> Page {
        Page::with_status(200, content_type, body)
    }

    /// A page with `status`.
    pub fn with_status(status: u16, content_type: &'static str, body: String) -> Page {
        Page {
            status,
            content_type,
            body,
            headers: Vec::new(),
        }
    }

    /// A plain-text page with `status`.
    pub fn text(status: u16, body: impl Into<String>) -> Page {
        Page::with_status(status, "text/plain; charset=utf-8", body.into())
    }

    /// This page with header `name: value` added.
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Page {
        self.headers.push((name, value.into()));
        self
    }
}

/// An HTTP method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// GET (and HEAD).
    Get,
    /// POST.
    Post,
    /// Any other.
    Other,
}

/// Most bytes of a request body read; a longer body is refused (413).
pub const MAX_BODY: usize = 64 * 1024;

/// A request as a site sees it.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// Its method.
    pub method: Option<Method>,
    /// The path, without the query.
    pub path: String,
    /// The query string, without `?` (still percent-encoded).
    pub query: String,
    /// Headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body (at most [`MAX_BODY`] bytes).
    pub body: Vec<u8>,
}

impl Request {
    /// A GET of `url` (path and query), for tests.
    pub fn get(url: &str) -> Request {
        let (path, query) = url.split_once('?').unwrap_or((url, ""));
        Request {
            method: Some(Method::Get),
            path: path.to_string(),
            query: query.to_string(),
            ..Request::default()
        }
    }

    /// Header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// The first query parameter `name`, decoded.
    pub fn param(&self, name: &str) -> Option<String> {
        form_pairs(self.query.as_bytes())
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
    }

    /// The body as `application/x-www-form-urlencoded` pairs, decoded.
    pub fn form(&self) -> Vec<(String, String)> {
        form_pairs(&self.body).collect()
    }
}

/// `a=1&b=x%20y` as decoded pairs (`+` is a space).
pub fn form_pairs(text: &[u8]) -> impl Iterator<Item = (String, String)> + '_ {
    text.split(|b| *b == b'&').filter(|p| !p.is_empty()).map(|pair| {
        let mut it = pair.splitn(2, |b| *b == b'=');
        let name = percent_decode(it.next().unwrap_or_default());
        let value = percent_decode(it.next().unwrap_or_default());
        (name, value)
    })
}

/// Percent-decoding (and `+` as a space); invalid UTF-8 is replaced.
pub fn percent_decode(s: &[u8]) -> String {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < s.len() => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(s[i + 1]), hex(s[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Percent-encoding of everything but unreserved characters, for URLs
/// built from peers' text.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// What a server serves: it is handed every snapshot its loop sends, and
/// answers requests, on the server's thread.
pub trait Site: Send + 'static {
    /// What the loop hands over.
    type Snapshot: Send + 'static;
    /// A snapshot taken at `at` arrived (the newest; older unread ones were
    /// dropped).
    fn snapshot(&mut self, at: Instant, snapshot: Self::Snapshot);
    /// The answer to `request`.
    fn serve(&mut self, request: &Request) -> Page;
}

/// A site of GET pages rendered from the newest snapshot: `pages` is given
/// the path, the snapshot and its age; `None` is a 404.
pub struct Pages<S, P> {
    latest: Option<(Instant, S)>,
    pages: P,
}

impl<S, P> Site for Pages<S, P>
where
    S: Send + 'static,
    P: Fn(&str, &S, Duration) -> Option<Page> + Send + 'static,
{
    type Snapshot = S;

    fn snapshot(&mut self, at: Instant, snapshot: S) {
        self.latest = Some((at, snapshot));
    }

    fn serve(&mut self, request: &Request) -> Page {
        match (request.method, &self.latest) {
            (Some(Method::Get), Some((at, snapshot))) => {
                (self.pages)(&request.path, snapshot, at.elapsed()).unwrap_or_else(|| Page::text(404, "not found\n"))
            }
            (Some(Method::Get), None) => Page::text(503, "starting\n"),
            _ => Page::text(405, "GET only\n"),
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
    stop: Arc<AtomicBool>,
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
        Server::start_site(addr, first, every, Pages { latest: None, pages })
    }

    /// Bind `addr` (`host:port`) and serve `site`, handing it `first` and
    /// then each snapshot the loop sends (expected every `every`; the
    /// server's thread wakes that often to take them).
    pub fn start_site<T: Site>(
        addr: &str,
        first: T::Snapshot,
        every: Duration,
        site: T,
    ) -> std::io::Result<(Server, Snapshots<T::Snapshot>)> {
        let server = tiny_http::Server::http(addr).map_err(|e| std::io::Error::other(format!("bind {addr}: {e}")))?;
        let bound = match server.server_addr() {
            tiny_http::ListenAddr::IP(a) => a.to_string(),
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
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name("emq-http".into())
            .spawn(move || serve(&serving, &rx, site, every, &stopping))?;
        Ok((
            Server {
                server,
                stop,
                thread: Some(thread),
                bound,
            },
            snapshots,
        ))
    }

    /// Whether `bound` is a loopback address.
    pub fn is_loopback(&self) -> bool {
        self.bound
            .parse::<std::net::SocketAddr>()
            .is_ok_and(|a| a.ip().is_loopback())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve<T: Site>(
    server: &tiny_http::Server,
    rx: &Receiver<(Instant, T::Snapshot)>,
    mut site: T,
    every: Duration,
    stop: &AtomicBool,
) {
    while !stop.load(Ordering::Relaxed) {
        let next = server.recv_timeout(every);
        while let Ok((at, snapshot)) = rx.try_recv() {
            site.snapshot(at, snapshot);
        }
        match next {
            Ok(Some(request)) => answer(&mut site, request),
            Ok(None) => {}
            Err(e) => log::debug!("HTTP accept: {e}"),
        }
    }
}

fn answer<T: Site>(site: &mut T, mut request: tiny_http::Request) {
    let url = request.url().to_string();
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    let method = match request.method() {
        tiny_http::Method::Get | tiny_http::Method::Head => Method::Get,
        tiny_http::Method::Post => Method::Post,
        _ => Method::Other,
    };
    let headers = request
        .headers()
        .iter()
        .map(|h| {
            (
                h.field.as_str().as_str().to_ascii_lowercase(),
                h.value.as_str().to_string(),
            )
        })
        .collect();
    let mut body = Vec::new();
    let too_long = request.body_length().is_some_and(|n| n > MAX_BODY) || {
        use std::io::Read;
        let _ = request.as_reader().take(MAX_BODY as u64 + 1).read_to_end(&mut body);
        body.len() > MAX_BODY
    };
    let page = if too_long {
        Page::text(413, "request body too long\n")
    } else {
        site.serve(&Request {
            method: Some(method),
            path: path.to_string(),
            query: query.to_string(),
            headers,
            body,
        })
    };
    log::debug!("HTTP {:?} {url} -> {}", request.method(), page.status);
    let mut response = tiny_http::Response::from_string(page.body).with_status_code(page.status);
    let headers = std::iter::once(("Content-Type", page.content_type.to_string())).chain(page.headers);
    for (name, value) in headers {
        match tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()) {
            Ok(h) => response.add_header(h),
            Err(()) => log::warn!("HTTP header {name} not sent: not a valid value"),
        }
    }
    if let Err(e) = request.respond(response) {
        log::debug!("HTTP response not sent: {e}");
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

    #[test]
    fn forms_and_queries_are_decoded() {
        let pairs: Vec<_> = form_pairs(b"a=1&b=x+y%21&&c&d=%zz%4").collect();
        assert_eq!(
            pairs,
            [("a", "1"), ("b", "x y!"), ("c", ""), ("d", "%zz%4")].map(|(a, b)| (a.to_string(), b.to_string()))
        );
        assert_eq!(percent_decode(percent_encode("q/<é> &x").as_bytes()), "q/<é> &x");
        assert_eq!(Request::get("/job?id=a%2Fb&x=1").param("id").as_deref(), Some("a/b"));
    }
}
