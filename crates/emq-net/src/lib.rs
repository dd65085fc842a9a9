//! What every emq process does with ZeroMQ, in one place: reading a message's
//! frames without copies, CURVE (socket options, key generation, key and
//! allowlist files), and handshake monitors that tell a refused connection
//! from a router that does not answer.
//!
//! The wire format itself is `emq-proto`'s; the routing and supervision
//! decisions are the cores'. This crate is the shared toolbox of the three
//! transports (router, jobmanager, client).

pub mod curve;
mod frames;
pub mod handshake;
mod throttle;

pub use frames::{recv_frames, with_slices};
pub use throttle::Throttle;

/// A fresh 128-bit seed from the OS, for the id sources (`emq_proto::MsgIds`)
/// and the random choices of the cores, which take it at construction.
pub fn random_seed() -> u128 {
    uuid::Uuid::new_v4().as_u128()
}

/// Both clocks, read now: what the cores are given with every event.
pub fn now() -> emq_proto::Now {
    let unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    emq_proto::Now::new(std::time::Instant::now(), unix_ms)
}
