//! Handshake monitors: a refused connection (a CURVE key not on the
//! allowlist, CURVE on one side only, the router's connection limit) is
//! reported as such, instead of looking like a router that does not answer.
//! A monitored socket comes as a [`Watched`], which closes the two in the
//! one order that cannot hang libzmq.

use std::fmt;

/// A socket and the monitor that watches its handshakes, closed in the order
/// libzmq needs: the monitor is deregistered before the socket or its reader
/// closes. libzmq sends monitor events with a blocking send from its I/O
/// thread, and a socket closes asynchronously: an event of a socket on its
/// way out (a handshake completing just after it was closed) sent to a
/// reader already gone blocks that thread for good, and with it every other
/// connection of the context (libzmq issue #3575). A jobmanager replacing
/// its router socket at that moment never reached a router again.
pub struct Watched {
    socket: zmq::Socket,
    monitor: HandshakeMonitor,
}

impl Watched {
    /// Watch `socket` (before it connects) for failed handshakes; `curve`:
    /// whether it has CURVE keys set.
    pub fn new(ctx: &zmq::Context, socket: zmq::Socket, curve: bool) -> Result<Watched, zmq::Error> {
        let monitor = HandshakeMonitor::watch_events(ctx, &socket, curve, 0)?;
        Ok(Watched { socket, monitor })
    }

    /// As [`Watched::new`], and also report connection attempts that failed
    /// (nothing listening: [`HandshakeMonitor::take_refused`]). Those come
    /// every reconnect interval while a peer is down: only for a socket
    /// whose monitor is read at every turn of its loop, or they fill the
    /// monitor's queue and the events that matter are dropped.
    pub fn with_refusals(ctx: &zmq::Context, socket: zmq::Socket, curve: bool) -> Result<Watched, zmq::Error> {
        let more = zmq::SocketEvent::CONNECT_RETRIED as i32;
        let monitor = HandshakeMonitor::watch_events(ctx, &socket, curve, more)?;
        Ok(Watched { socket, monitor })
    }

    /// The socket.
    pub fn socket(&self) -> &zmq::Socket {
        &self.socket
    }

    /// Its handshake monitor.
    pub fn monitor(&self) -> &HandshakeMonitor {
        &self.monitor
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        stop_monitor(&mut self.socket);
    }
}

/// Deregister `socket`'s monitor, if it has one: no event is sent after
/// this returns, so the monitor's reader may close (see [`Watched`], which
/// does this itself; a socket whose reader lives elsewhere calls it before
/// that reader closes).
pub fn stop_monitor(socket: &mut zmq::Socket) {
    // SAFETY: the socket is open (borrowed); a null endpoint deregisters its
    // monitor (libzmq's zmq_socket_monitor), under the lock libzmq holds
    // while it sends an event.
    unsafe {
        zmq_sys::zmq_socket_monitor(socket.as_mut_ptr(), std::ptr::null(), 0);
    }
}

/// Watches a connecting socket for failed handshakes, so that a refused key
/// is reported as such instead of looking like an unreachable router.
pub struct HandshakeMonitor {
    socket: zmq::Socket,
    /// Whether our side uses CURVE: it decides what a hang-up means.
    curve: bool,
    /// A handshake has succeeded since the watch began.
    succeeded: std::cell::Cell<bool>,
    /// A connection was lost and no handshake has succeeded since.
    lost: std::cell::Cell<bool>,
    /// A handshake succeeded after a connection was lost, not yet taken.
    reconnected: std::cell::Cell<bool>,
    /// A connection closed since the last `take_disconnected`.
    disconnected: std::cell::Cell<bool>,
    /// The endpoint of the first handshake that succeeded.
    first_answered: std::cell::RefCell<Option<String>>,
    /// A connection attempt failed (nothing listening) since the last
    /// `take_refused`.
    refused: std::cell::Cell<bool>,
}

/// `ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH` (zmq.h): the monitor value
/// of a handshake between a CURVE side and a plain one.
pub const MECHANISM_MISMATCH: u32 = 0x1100_0002;

impl HandshakeMonitor {
    fn watch_events(
        ctx: &zmq::Context,
        socket: &zmq::Socket,
        curve: bool,
        more: i32,
    ) -> Result<HandshakeMonitor, zmq::Error> {
        let addr = format!("inproc://emq-handshake-{}", uuid::Uuid::new_v4());
        let events = zmq::SocketEvent::HANDSHAKE_FAILED_NO_DETAIL as i32
            | zmq::SocketEvent::HANDSHAKE_FAILED_PROTOCOL as i32
            | zmq::SocketEvent::HANDSHAKE_FAILED_AUTH as i32
            | zmq::SocketEvent::HANDSHAKE_SUCCEEDED as i32
            | zmq::SocketEvent::DISCONNECTED as i32
            | more;
        socket.monitor(&addr, events)?;
        let pair = ctx.socket(zmq::PAIR)?;
        pair.connect(&addr)?;
        Ok(HandshakeMonitor {
            socket: pair,
            curve,
            succeeded: std::cell::Cell::new(false),
            lost: std::cell::Cell::new(false),
            reconnected: std::cell::Cell::new(false),
            disconnected: std::cell::Cell::new(false),
            first_answered: std::cell::RefCell::new(None),
            refused: std::cell::Cell::new(false),
        })
    }

    /// The monitor's socket, to poll for readability.
    pub fn socket(&self) -> &zmq::Socket {
        &self.socket
    }

    /// The handshake failures reported since the last call.
    pub fn failures(&self) -> Vec<HandshakeFailure> {
        let mut out = Vec::new();
        while let Ok(frames) = self.socket.recv_multipart(zmq::DONTWAIT) {
            let Some((event, value)) = monitor_event(&frames) else {
                continue;
            };
            if event == zmq::SocketEvent::HANDSHAKE_SUCCEEDED.to_raw() {
                self.succeeded.set(true);
                let mut first = self.first_answered.borrow_mut();
                if first.is_none() {
                    *first = frames.get(1).map(|f| String::from_utf8_lossy(f).into_owned());
                }
                if self.lost.replace(false) {
                    self.reconnected.set(true);
                }
                continue;
            }
            if event == zmq::SocketEvent::CONNECT_RETRIED.to_raw() {
                self.refused.set(true);
                continue;
            }
            if event == zmq::SocketEvent::DISCONNECTED.to_raw() {
                self.lost.set(true);
                self.disconnected.set(true);
                continue;
            }
            out.push(HandshakeFailure {
                endpoint: frames
                    .get(1)
                    .map(|f| String::from_utf8_lossy(f).into_owned())
                    .unwrap_or_default(),
                reason: describe_failure(event, value, self.curve),
            });
        }
        out
    }

    /// The endpoint whose handshake succeeded first (of several connected:
    /// the one that answers, e.g. the active one of several routers).
    pub fn first_answered(&self) -> Option<String> {
        self.first_answered.borrow().clone()
    }

    /// Whether the socket connected again after losing its connection since
    /// the last call (its peer may have restarted and forgotten it).
    pub fn take_reconnected(&self) -> bool {
        // Refusals matter while connecting (`await_handshake`); here only
        // the events' order does.
        let _ = self.failures();
        self.reconnected.replace(false)
    }

    /// Whether the socket has a connection whose handshake succeeded (one
    /// endpoint each: a socket with several may have lost one and kept
    /// another), as of the events `failures` has taken in.
    pub fn is_connected(&self) -> bool {
        self.succeeded.get() && !self.lost.get()
    }

    /// Whether a connection attempt failed since the last call (nothing
    /// listens at the endpoint), read from the events `failures` has taken
    /// in.
    pub fn take_refused(&self) -> bool {
        self.refused.replace(false)
    }

    /// Whether an established connection closed since the last call (the
    /// peer's process died, or it closed the connection), read from the
    /// events `failures` has taken in.
    pub fn take_disconnected(&self) -> bool {
        self.disconnected.replace(false)
    }

    /// Wait until a handshake with one of the `endpoints` succeeds, for up
    /// to `timeout`: for a socket without `ZMQ_IMMEDIATE`, which would queue
    /// messages for a router that never answers. Fails early when every
    /// endpoint has refused a handshake; `Ok(false)` is a plain timeout.
    pub fn await_handshake(&self, endpoints: usize, timeout: std::time::Duration) -> Result<bool, HandshakeFailure> {
        let deadline = std::time::Instant::now() + timeout;
        let mut refused: Vec<HandshakeFailure> = Vec::new();
        loop {
            for failure in self.failures() {
                refused.retain(|f| f.endpoint != failure.endpoint);
                refused.push(failure);
            }
            if self.succeeded.get() {
                return Ok(true);
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if refused.len() >= endpoints.max(1) || (left.is_zero() && !refused.is_empty()) {
                return Err(refused.pop().expect("not empty"));
            }
            if left.is_zero() {
                return Ok(false);
            }
            let mut items = [self.socket.as_poll_item(zmq::POLLIN)];
            let _ = zmq::poll(&mut items, left.as_millis().max(1).min(i64::MAX as u128) as i64);
        }
    }
}

/// The event id and value (an fd, an error or a ZAP status) of a socket
/// monitor message: `[u16 event, u32 value]` in host order, then the endpoint.
pub fn monitor_event(frames: &[Vec<u8>]) -> Option<(u16, u32)> {
    let head = frames.first().filter(|f| f.len() >= 6)?;
    Some((
        u16::from_ne_bytes([head[0], head[1]]),
        u32::from_ne_bytes([head[2], head[3], head[4], head[5]]),
    ))
}

/// A connection refused during its handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeFailure {
    /// The endpoint that refused us.
    pub endpoint: String,
    /// Why, in words that say what to do.
    pub reason: String,
}

impl fmt::Display for HandshakeFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.endpoint, self.reason)
    }
}

fn describe_failure(event: u16, value: u32, curve: bool) -> String {
    use zmq::SocketEvent as E;
    match event {
        e if e == E::HANDSHAKE_FAILED_AUTH.to_raw() => match value {
            400 => "the router refused our key (not on its allowlist for this endpoint)".into(),
            500 => "the router refused the connection: too many connections".into(),
            code => format!("the router refused the connection (ZAP status {code})"),
        },
        e if e == E::HANDSHAKE_FAILED_PROTOCOL.to_raw() && value == MECHANISM_MISMATCH => {
            "security mismatch: one side uses CURVE and the other does not (set or unset --server-key and --key)".into()
        }
        e if e == E::HANDSHAKE_FAILED_PROTOCOL.to_raw() => format!("handshake protocol error {value:#x}"),
        // The connection closes during the handshake. With our keys set:
        // the router's security is off, or we have the wrong router public
        // key; without keys: it requires CURVE. Or a proxy in between
        // accepted the connection while the router itself is down.
        _ if curve => "the connection closed during the handshake: the router's security is off (then \
                       drop --server-key and --key), --server-key is not its public key, or a proxy \
                       in front of it cannot reach it (restarting?)"
            .into(),
        _ => "the connection closed during the handshake: the router requires CURVE (give --server-key \
              and --key), or a proxy in front of it cannot reach it (restarting?)"
            .into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Connect `rounds` watched DEALERs to `endpoint` and close each at once,
    /// while its handshake is in flight. (Closing the socket and then its
    /// monitor's reader instead, as before `Watched`, stalls the context's
    /// I/O thread within 300 rounds every time: the probe below times out.)
    fn churn(ctx: &zmq::Context, endpoint: &str, rounds: usize) {
        for _ in 0..rounds {
            let socket = ctx.socket(zmq::DEALER).unwrap();
            socket.set_linger(0).unwrap();
            let watched = Watched::new(ctx, socket, false).unwrap();
            watched.socket().connect(endpoint).unwrap();
        }
    }

    /// Whether a fresh DEALER of `ctx` reaches `router` within `wait`.
    fn reaches(ctx: &zmq::Context, router: &zmq::Socket, endpoint: &str, wait: Duration) -> bool {
        let probe = ctx.socket(zmq::DEALER).unwrap();
        probe.set_linger(0).unwrap();
        probe.connect(endpoint).unwrap();
        probe.send("ping", 0).unwrap();
        let deadline = std::time::Instant::now() + wait;
        while std::time::Instant::now() < deadline {
            if router.poll(zmq::POLLIN, 100).unwrap() > 0 {
                let frames = router.recv_multipart(0).unwrap();
                if frames.last().is_some_and(|f| f == b"ping") {
                    return true;
                }
            }
        }
        false
    }

    #[test]
    fn closing_watched_sockets_mid_handshake_leaves_the_context_working() {
        let ctx = zmq::Context::new();
        let router = ctx.socket(zmq::ROUTER).unwrap();
        router.set_linger(0).unwrap();
        router.bind("tcp://127.0.0.1:*").unwrap();
        let endpoint = router.get_last_endpoint().unwrap().unwrap();
        churn(&ctx, &endpoint, 300);
        if !reaches(&ctx, &router, &endpoint, Duration::from_secs(5)) {
            // A stuck I/O thread would hang the context's termination too.
            std::mem::forget(router);
            std::mem::forget(ctx);
            panic!("the I/O thread is stuck");
        }
    }
}
