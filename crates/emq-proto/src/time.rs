//! Time as the cores see it. They read no clock: every event comes with a
//! [`Now`], the monotonic instant (for timeouts and deadlines) and the wall
//! clock at that instant (for logs, RFC 3339 times and schedules), both read
//! by the transport.

use std::time::{Duration, Instant};

use crate::views::{timestamp_ms, Timestamp};

/// A moment: the monotonic instant and the wall clock at it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// For timeouts, deadlines and intervals.
    pub mono: Instant,
    /// Milliseconds since the Unix epoch, UTC.
    pub unix_ms: i64,
}

impl Now {
    /// A moment from its two clocks.
    pub fn new(mono: Instant, unix_ms: i64) -> Now {
        Now { mono, unix_ms }
    }

    /// The same moment `d` later on both clocks (simulated time in tests).
    pub fn after(self, d: Duration) -> Now {
        Now {
            mono: self.mono + d,
            unix_ms: self
                .unix_ms
                .saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        }
    }

    /// The wall clock as an RFC 3339 time.
    pub fn wall(self) -> Timestamp {
        timestamp_ms(self.unix_ms)
    }

    /// The wall clock as HEARTBEAT writes it: decimal seconds.
    pub fn unix_secs_text(self) -> String {
        format!("{:.3}", self.unix_ms as f64 / 1000.0)
    }
}
