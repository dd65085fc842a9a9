//! Handshake monitors: a refused connection (a CURVE key not on the
//! allowlist, CURVE on one side only, the router's connection limit) is
//! reported as such, instead of looking like a router that does not answer.

use std::fmt;

/// Watches a connecting socket for failed handshakes, so that a refused key
/// is reported as such instead of looking like an unreachable router.
pub struct HandshakeMonitor {
    socket: zmq::Socket,
}

/// `ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH` (zmq.h).
const MECHANISM_MISMATCH: u32 = 0x1100_0002;

impl HandshakeMonitor {
    /// Watch `socket` (before it connects) for failed handshakes.
    pub fn watch(ctx: &zmq::Context, socket: &zmq::Socket) -> Result<HandshakeMonitor, zmq::Error> {
        let addr = format!("inproc://emq-handshake-{}", uuid::Uuid::new_v4());
        let events = zmq::SocketEvent::HANDSHAKE_FAILED_NO_DETAIL as i32
            | zmq::SocketEvent::HANDSHAKE_FAILED_PROTOCOL as i32
            | zmq::SocketEvent::HANDSHAKE_FAILED_AUTH as i32;
        socket.monitor(&addr, events)?;
        let pair = ctx.socket(zmq::PAIR)?;
        pair.connect(&addr)?;
        Ok(HandshakeMonitor { socket: pair })
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
            out.push(HandshakeFailure {
                endpoint: frames
                    .get(1)
                    .map(|f| String::from_utf8_lossy(f).into_owned())
                    .unwrap_or_default(),
                reason: describe_failure(event, value),
            });
        }
        out
    }

    /// Wait until `socket` (the one watched) can send, for up to `timeout`.
    /// Fails early when every one of its `endpoints` has refused a handshake,
    /// and afterwards with the last refusal, if any; `Ok(false)` is a plain
    /// timeout (nothing answered).
    pub fn await_writable(
        &self,
        socket: &zmq::Socket,
        endpoints: usize,
        timeout: std::time::Duration,
    ) -> Result<bool, HandshakeFailure> {
        let deadline = std::time::Instant::now() + timeout;
        let mut refused: Vec<HandshakeFailure> = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let mut items = [socket.as_poll_item(zmq::POLLOUT), self.socket.as_poll_item(zmq::POLLIN)];
            let polled = zmq::poll(&mut items, left.as_millis().min(i64::MAX as u128) as i64);
            if items[0].is_writable() {
                return Ok(true);
            }
            for failure in self.failures() {
                refused.retain(|f| f.endpoint != failure.endpoint);
                refused.push(failure);
            }
            let timed_out = left.is_zero() || matches!(polled, Ok(0)) || polled.is_err();
            if refused.len() >= endpoints.max(1) || (timed_out && !refused.is_empty()) {
                return Err(refused.pop().expect("not empty"));
            }
            if timed_out {
                return Ok(false);
            }
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

fn describe_failure(event: u16, value: u32) -> String {
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
        // What a plain client sees from a CURVE router, and a CURVE client
        // that has the wrong router key: the router hangs up.
        _ => "the router ended the handshake: its CURVE settings differ from ours \
              (no key given, or the wrong router public key)"
            .into(),
    }
}
