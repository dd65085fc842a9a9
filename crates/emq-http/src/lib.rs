//! The HTTP server of emq's processes (`--http` on the router and the
//! jobmanager): GET pages rendered from the newest snapshot the process's
//! loop hands over, on a thread of its own; the `/healthz` page they share
//! ([`health`]) and OpenMetrics writing ([`openmetrics`]).
//!
//! The loop never waits for it: once a period it puts a fresh snapshot in a
//! one-slot channel ([`Snapshots::send`], taking out one nobody read), and
//! the server's thread hands the newest to its [`Site`] as it comes. A site
//! answers GET and POST requests ([`Request`]); [`Pages`] is the simple
//! one: GET pages rendered from the newest snapshot. HTTP/1.1 with
//! keep-alive, on std sockets and httparse: a thread accepts, a thread per
//! connection (at most [`MAX_CONNECTIONS`]) reads requests and writes
//! answers, and the site answers one request at a time on its own thread,
//! so a slow client holds up only its own connection. Idle threads block:
//! an idle server costs no CPU.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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

/// Most connections open at once; more are closed at once.
pub const MAX_CONNECTIONS: usize = 64;

/// A connection idle this long is closed (also the longest wait for the
/// rest of a request).
const IDLE: Duration = Duration::from_secs(10);

/// Most bytes of a request's line and headers.
const MAX_HEAD: usize = 16 * 1024;

/// A request handed from its connection's thread to the site's, with where
/// the answer goes.
type Exchange = (Request, Sender<Page>);

/// The running server; dropping it stops its threads.
pub struct Server {
    stop: Arc<AtomicBool>,
    /// Dropped to stop the site's thread.
    stop_site: Option<Sender<()>>,
    accepting: Option<JoinHandle<()>>,
    site: Option<JoinHandle<()>>,
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
    /// then each snapshot the loop sends (expected every `every`).
    ///
    /// Threads: one accepts connections; each connection has a thread that
    /// reads its requests (HTTP/1.1, keep-alive) and writes the answers;
    /// the site's thread answers one request at a time and takes each
    /// snapshot as it comes (it sleeps while neither comes).
    pub fn start_site<T: Site>(
        addr: &str,
        first: T::Snapshot,
        every: Duration,
        site: T,
    ) -> std::io::Result<(Server, Snapshots<T::Snapshot>)> {
        let listener =
            TcpListener::bind(addr).map_err(|e| std::io::Error::new(e.kind(), format!("bind {addr}: {e}")))?;
        let bound = listener.local_addr()?.to_string();
        let (tx, rx) = crossbeam_channel::bounded(1);
        let now = Instant::now();
        let mut snapshots = Snapshots {
            tx,
            stale: rx.clone(),
            every,
            next: now,
        };
        snapshots.send(now, first);
        let stop = Arc::new(AtomicBool::new(false));
        let (requests_tx, requests_rx) = crossbeam_channel::bounded::<Exchange>(MAX_CONNECTIONS);
        let (stop_site, site_stop) = crossbeam_channel::bounded::<()>(0);
        let site_thread = std::thread::Builder::new()
            .name("emq-http".into())
            .spawn(move || serve(site, &rx, &requests_rx, &site_stop))?;
        let stopping = stop.clone();
        let accept_thread = std::thread::Builder::new()
            .name("emq-http-accept".into())
            .spawn(move || accept(&listener, &requests_tx, &stopping))?;
        Ok((
            Server {
                stop,
                stop_site: Some(stop_site),
                accepting: Some(accept_thread),
                site: Some(site_thread),
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
        // The site's thread first (it may own sockets of its process's
        // ZeroMQ context); connections waiting for it are then closed.
        drop(self.stop_site.take());
        if let Some(t) = self.site.take() {
            let _ = t.join();
        }
        // Wake the accepting thread, which sees the flag and ends.
        self.stop.store(true, Ordering::Relaxed);
        if let Ok(addr) = self.bound.parse::<std::net::SocketAddr>() {
            let _ = TcpStream::connect_timeout(&addr, Duration::from_secs(1));
        }
        if let Some(t) = self.accepting.take() {
            let _ = t.join();
        }
    }
}

/// The accepting thread: a thread per connection, at most
/// [`MAX_CONNECTIONS`] at once.
fn accept(listener: &TcpListener, requests: &Sender<Exchange>, stop: &AtomicBool) {
    let open = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let Ok(stream) = stream else { continue };
        if open.load(Ordering::Relaxed) >= MAX_CONNECTIONS {
            log::warn!("HTTP: {MAX_CONNECTIONS} connections open, one more refused");
            continue;
        }
        open.fetch_add(1, Ordering::Relaxed);
        let (requests, open) = (requests.clone(), open.clone());
        let spawned = std::thread::Builder::new().name("emq-http-conn".into()).spawn(move || {
            if let Err(e) = connection(stream, &requests) {
                log::debug!("HTTP connection: {e}");
            }
            open.fetch_sub(1, Ordering::Relaxed);
        });
        if let Err(e) = spawned {
            log::warn!("HTTP: no thread for a connection: {e}");
        }
    }
}

/// The site's thread: each snapshot as it comes, each request in turn,
/// until `stop` is dropped.
fn serve<T: Site>(
    mut site: T,
    snapshots: &Receiver<(Instant, T::Snapshot)>,
    requests: &Receiver<Exchange>,
    stop: &Receiver<()>,
) {
    loop {
        crossbeam_channel::select! {
            recv(stop) -> _ => return,
            recv(snapshots) -> s => match s {
                Ok((at, snapshot)) => site.snapshot(at, snapshot),
                // The loop is gone: serve what is asked until the end.
                Err(_) => return serve_only(site, requests, stop),
            },
            recv(requests) -> r => match r {
                Ok((request, reply)) => {
                    let page = site.serve(&request);
                    let _ = reply.send(page);
                }
                Err(_) => return,
            },
        }
    }
}

fn serve_only<T: Site>(mut site: T, requests: &Receiver<Exchange>, stop: &Receiver<()>) {
    loop {
        crossbeam_channel::select! {
            recv(stop) -> _ => return,
            recv(requests) -> r => match r {
                Ok((request, reply)) => {
                    let _ = reply.send(site.serve(&request));
                }
                Err(_) => return,
            },
        }
    }
}

/// One connection: read a request, have the site answer it, write the
/// answer; again while the client keeps the connection.
fn connection(mut stream: TcpStream, requests: &Sender<Exchange>) -> std::io::Result<()> {
    stream.set_read_timeout(Some(IDLE))?;
    stream.set_write_timeout(Some(IDLE))?;
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    loop {
        let Some((request, head_len, keep_alive, head_only)) = read_request(&mut stream, &mut buf)? else {
            return Ok(());
        };
        let page = match request {
            Ok(request) => {
                let (reply_tx, reply_rx) = crossbeam_channel::bounded(1);
                let line = format!("{:?} {}", request.method, request.path);
                if requests.send((request, reply_tx)).is_err() {
                    return Ok(());
                }
                let Ok(page) = reply_rx.recv() else { return Ok(()) };
                log::debug!("HTTP {line} -> {}", page.status);
                page
            }
            Err(refusal) => refusal,
        };
        buf.drain(..head_len.min(buf.len()));
        let refused = page.status == 400 || page.status == 413 || page.status == 411;
        write_page(&mut stream, &page, keep_alive && !refused, head_only)?;
        if !keep_alive || refused {
            return Ok(());
        }
    }
}

/// What [`read_request`] read: the request (or the page refusing it), the
/// bytes it took from the buffer, keep-alive, HEAD.
type ReadRequest = (Result<Request, Page>, usize, bool, bool);

/// Read one request from `stream` (bytes already read first); `None`: the
/// client closed the connection between requests.
fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<Option<ReadRequest>> {
    let mut chunk = [0u8; 4096];
    let (head_len, mut request, keep_alive, head_only, body_len) = loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut parsed = httparse::Request::new(&mut headers);
        match parsed.parse(buf) {
            Ok(httparse::Status::Complete(n)) => {
                let version = parsed.version.unwrap_or(1);
                let method_text = parsed.method.unwrap_or("");
                let url = parsed.path.unwrap_or("/");
                let (path, query) = url.split_once('?').unwrap_or((url, ""));
                let headers: Vec<(String, String)> = parsed
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_ascii_lowercase(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect();
                let connection = headers
                    .iter()
                    .find(|(k, _)| k == "connection")
                    .map(|(_, v)| v.to_ascii_lowercase())
                    .unwrap_or_default();
                let keep_alive = if version == 0 {
                    connection.contains("keep-alive")
                } else {
                    !connection.contains("close")
                };
                if headers.iter().any(|(k, _)| k == "transfer-encoding") {
                    let page = Page::text(411, "send a Content-Length\n");
                    return Ok(Some((Err(page), n, false, false)));
                }
                let body_len = headers
                    .iter()
                    .find(|(k, _)| k == "content-length")
                    .map(|(_, v)| v.trim().parse::<usize>());
                let body_len = match body_len {
                    None => 0,
                    Some(Ok(n)) if n <= MAX_BODY => n,
                    Some(Ok(_)) => return Ok(Some((Err(Page::text(413, "request body too long\n")), n, false, false))),
                    Some(Err(_)) => return Ok(Some((Err(Page::text(400, "bad Content-Length\n")), n, false, false))),
                };
                let method = match method_text {
                    "GET" | "HEAD" => Method::Get,
                    "POST" => Method::Post,
                    _ => Method::Other,
                };
                let request = Request {
                    method: Some(method),
                    path: path.to_string(),
                    query: query.to_string(),
                    headers,
                    body: Vec::new(),
                };
                break (n, request, keep_alive, method_text == "HEAD", body_len);
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => {}
            Ok(httparse::Status::Partial) | Err(_) => {
                return Ok(Some((Err(Page::text(400, "bad request\n")), buf.len(), false, false)));
            }
        }
        let n = match stream.read(&mut chunk) {
            Ok(0) if buf.is_empty() => return Ok(None),
            Ok(0) => return Err(std::io::Error::new(ErrorKind::UnexpectedEof, "closed mid-request")),
            Ok(n) => n,
            Err(e) if buf.is_empty() && matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Ok(None)
            }
            Err(e) => return Err(e),
        };
        buf.extend_from_slice(&chunk[..n]);
    };
    while buf.len() < head_len + body_len {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::Error::new(ErrorKind::UnexpectedEof, "closed mid-body"));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    request.body = buf[head_len..head_len + body_len].to_vec();
    Ok(Some((Ok(request), head_len + body_len, keep_alive, head_only)))
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        303 => "See Other",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Payload Too Large",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "",
    }
}

fn write_page(stream: &mut TcpStream, page: &Page, keep_alive: bool, head_only: bool) -> std::io::Result<()> {
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: {}\r\n",
        page.status,
        reason(page.status),
        page.content_type,
        page.body.len(),
        if keep_alive { "keep-alive" } else { "close" }
    );
    for (name, value) in &page.headers {
        // A value with a line break would start a header of its own.
        if value.contains(['\r', '\n']) {
            log::warn!("HTTP header {name} not sent: not a valid value");
            continue;
        }
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    if !head_only {
        bytes.extend_from_slice(page.body.as_bytes());
    }
    stream.write_all(&bytes)?;
    stream.flush()
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

    /// A site that echoes the method, path, query and body.
    struct Echo;
    impl Site for Echo {
        type Snapshot = ();
        fn snapshot(&mut self, _: Instant, _: ()) {}
        fn serve(&mut self, r: &Request) -> Page {
            let body = format!(
                "{:?} {} {} {}",
                r.method,
                r.path,
                r.query,
                String::from_utf8_lossy(&r.body)
            );
            Page::text(200, body).header("X-Seen", "1")
        }
    }

    /// Read one response with a Content-Length from `s`.
    fn response(s: &mut std::net::TcpStream) -> String {
        let mut buf = Vec::new();
        let mut byte = [0u8; 1];
        while !buf.ends_with(b"\r\n\r\n") {
            s.read_exact(&mut byte).unwrap();
            buf.push(byte[0]);
        }
        let head = String::from_utf8(buf).unwrap();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap()
            .parse()
            .unwrap();
        let mut body = vec![0u8; len];
        s.read_exact(&mut body).unwrap();
        head + &String::from_utf8(body).unwrap()
    }

    #[test]
    fn keep_alive_posts_heads_and_refusals() {
        let (server, _snapshots) = Server::start_site("127.0.0.1:0", (), Duration::from_secs(1), Echo).unwrap();
        let mut s = std::net::TcpStream::connect(&server.bound).unwrap();
        // Two requests on one connection, the second a POST with a body.
        write!(s, "GET /a?x=1 HTTP/1.1\r\nHost: h\r\n\r\n").unwrap();
        let first = response(&mut s);
        assert!(
            first.starts_with("HTTP/1.1 200 OK") && first.contains("X-Seen: 1"),
            "{first}"
        );
        assert!(first.ends_with("Some(Get) /a x=1 "), "{first}");
        write!(s, "POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 7\r\n\r\ndo=x&y=").unwrap();
        assert!(response(&mut s).ends_with("Some(Post) /b  do=x&y="));
        // HEAD: the headers only.
        write!(s, "HEAD /c HTTP/1.1\r\nHost: h\r\n\r\n").unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            s.read_exact(&mut byte).unwrap();
            head.push(byte[0]);
        }
        // A body over the limit: 413, and the connection closes.
        write!(s, "POST /d HTTP/1.1\r\nContent-Length: {}\r\n\r\n", MAX_BODY + 1).unwrap();
        let refused = response(&mut s);
        assert!(refused.starts_with("HTTP/1.1 413"), "{refused}");
        assert_eq!(s.read(&mut byte).unwrap(), 0, "closed after a refusal");
    }

    #[test]
    fn many_connections_opened_at_once_are_all_answered() {
        let (server, _snapshots) = Server::start_site("127.0.0.1:0", (), Duration::from_secs(1), Echo).unwrap();
        let addr = server.bound.clone();
        let barrier = Arc::new(std::sync::Barrier::new(32));
        let clients: Vec<_> = (0..32)
            .map(|i| {
                let (addr, barrier) = (addr.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    let mut s = std::net::TcpStream::connect(&addr).unwrap();
                    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                    for j in 0..5 {
                        write!(s, "POST /p HTTP/1.1\r\nContent-Length: 3\r\n\r\n{i:02}{j}").unwrap();
                        let r = response(&mut s);
                        assert!(r.ends_with(&format!("{i:02}{j}")), "{r}");
                    }
                    // Kept open until every client is done.
                    barrier.wait();
                })
            })
            .collect();
        for c in clients {
            c.join().unwrap();
        }
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
