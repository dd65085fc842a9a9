//! What every emq process does with ZeroMQ, in one place: reading a message's
//! frames without copies, CURVE (socket options, key generation, key and
//! allowlist files), and handshake monitors that tell a refused connection
//! from a router that does not answer.
//!
//! The wire format itself is `emq-proto`'s; the routing and supervision
//! decisions are the cores'. This crate is the shared toolbox of the three
//! transports (router, jobmanager, client), and the process figures they
//! report (resident memory).

pub mod curve;
mod frames;
pub mod handshake;
mod throttle;

pub use frames::{recv_frames, with_slices};
pub use throttle::Throttle;

/// Resident memory of process `pid` in bytes (Linux: /proc/PID/statm), if
/// it can be read: the jobmanager's recycling limit and the router's
/// `/metrics` both read it.
pub fn resident_bytes(pid: u32) -> Option<u64> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as u64;
    Some(pages * page)
}

/// A fresh 128-bit seed from the OS, for the id sources (`emq_proto::MsgIds`)
/// and the random choices of the cores, which take it at construction.
pub fn random_seed() -> u128 {
    uuid::Uuid::new_v4().as_u128()
}

fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The clocks of an event loop: the monotonic clock read at every event,
/// the wall clock derived from it and read again once a second (so a loop
/// turn reads one clock, not two, and the wall clock still follows
/// adjustments within a second).
#[derive(Debug)]
pub struct Clock {
    base_mono: std::time::Instant,
    base_wall_ms: i64,
}

impl Clock {
    /// Read both clocks.
    pub fn new() -> Clock {
        Clock {
            base_mono: std::time::Instant::now(),
            base_wall_ms: wall_ms(),
        }
    }

    /// Now, on both clocks.
    pub fn now(&mut self) -> emq_proto::Now {
        let mono = std::time::Instant::now();
        let since = mono.saturating_duration_since(self.base_mono);
        if since >= std::time::Duration::from_secs(1) {
            *self = Clock::new();
            return emq_proto::Now::new(self.base_mono, self.base_wall_ms);
        }
        let wall = self
            .base_wall_ms
            .saturating_add(i64::try_from(since.as_millis()).unwrap_or(i64::MAX));
        emq_proto::Now::new(mono, wall)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}
