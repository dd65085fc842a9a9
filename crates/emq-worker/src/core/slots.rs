//! How many jobs a jobmanager asks for beyond its workers, when
//! `--prefetch` does not fix it: enough to cover the round trip to the
//! router at the rate its workers finish jobs (Little's law), so that a
//! worker finds its next job here instead of waiting for the router, and no
//! more, so that jobs are not held here while another jobmanager is idle.
//!
//! ```text
//! extra = floor(MARGIN * workers * round_trip / job_duration), at most MAX_EXTRA
//! ```
//!
//! Jobs much longer than the round trip get no extra slot: they wait in the
//! router, where coalescing, expiry, pauses and other jobmanagers can still
//! reach them; so do all jobs until one has ended here and been timed.
//!
//! The round trip is the smallest delay between a READY and a REQUEST filling
//! it over the last second (the router answers at once when it has jobs
//! waiting; larger delays only mean it had none), INFORM to ACK before any.
//! When the router has had nothing waiting for a whole second every delay
//! is long, and counting them would ask for more slots, which makes the
//! delays longer still: so the round trip is held under four times INFORM to
//! ACK plus 10 ms (the router's own queueing under load). With an emq
//! router, the answer to the HEARTBEAT sent after its ACK times the link
//! instead of INFORM to ACK, which also counts the handshakes of a new
//! connection (three round trips): that overestimate asked for extra slots
//! that jobs of twelve round trips did not need. The job duration
//! is a moving average of how long jobs ran. Both are measured with the
//! `Now` the core is given.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Slots in flight per slot needed on average: room for bursts.
const MARGIN: f64 = 2.0;
/// Most slots asked for beyond the workers.
pub(crate) const MAX_EXTRA: usize = 512;
/// Bytes of job bodies the extra slots may hold (with the mean body size).
const MAX_EXTRA_BYTES: f64 = (32 << 20) as f64;
/// How long the smallest round trip is gathered over.
const WINDOW: Duration = Duration::from_secs(1);
/// Weight of a new sample in the moving averages.
const ALPHA: f64 = 0.2;

#[derive(Debug)]
pub(crate) struct Slots {
    /// READYs sent and not yet filled, oldest first: when, how many slots.
    pending: VecDeque<(Instant, u32)>,
    round_trip: Duration,
    /// INFORM to ACK on this link: the network's round trip.
    link_round_trip: Duration,
    window_min: Option<Duration>,
    window_end: Option<Instant>,
    /// `round_trip` comes from fill delays (a window has closed since the
    /// link was made), not from the link's own measure.
    from_fills: bool,
    /// Mean job duration, seconds (none measured yet).
    duration: Option<f64>,
    /// Mean body size, bytes.
    body: f64,
}

impl Slots {
    pub(crate) fn new() -> Slots {
        Slots {
            pending: VecDeque::new(),
            round_trip: Duration::from_millis(1),
            link_round_trip: Duration::from_millis(1),
            window_min: None,
            window_end: None,
            from_fills: false,
            duration: None,
            body: 0.0,
        }
    }

    /// A new router link: READYs sent on the old one will not be filled.
    pub(crate) fn reconnected(&mut self, inform_to_ack: Duration) {
        self.pending.clear();
        self.window_min = None;
        self.window_end = None;
        self.from_fills = false;
        self.link_measured(inform_to_ack);
    }

    /// A better measure of the link's round trip than INFORM to ACK: a
    /// HEARTBEAT answered on the established connection.
    pub(crate) fn link_measured(&mut self, round_trip: Duration) {
        self.link_round_trip = round_trip.max(Duration::from_micros(20));
        let most = self.link_round_trip * 4 + Duration::from_millis(10);
        self.round_trip = if self.from_fills {
            self.round_trip.min(most)
        } else {
            self.link_round_trip
        };
    }

    pub(crate) fn announced(&mut self, now: Instant, count: u32) {
        self.pending.push_back((now, count));
    }

    /// A REQUEST filled the oldest slot announced.
    pub(crate) fn filled(&mut self, now: Instant, body_len: usize) {
        self.body += ALPHA * (body_len as f64 - self.body);
        let Some(front) = self.pending.front_mut() else { return };
        let delay = now.saturating_duration_since(front.0);
        front.1 -= 1;
        if front.1 == 0 {
            self.pending.pop_front();
        }
        self.window_min = Some(self.window_min.map_or(delay, |m| m.min(delay)));
        match self.window_end {
            Some(end) if now < end => {}
            Some(_) => {
                let most = self.link_round_trip * 4 + Duration::from_millis(10);
                self.round_trip = self.window_min.take().unwrap_or(self.round_trip).min(most);
                self.from_fills = true;
                self.window_end = Some(now + WINDOW);
            }
            None => self.window_end = Some(now + WINDOW),
        }
    }

    /// The round trip to the router, as measured.
    pub(crate) fn round_trip(&self) -> Duration {
        self.round_trip
    }

    /// A job ran for `took`.
    pub(crate) fn ran(&mut self, took: Duration) {
        let s = took.as_secs_f64();
        self.duration = Some(self.duration.map_or(s, |d| d + ALPHA * (s - d)));
    }

    /// Slots to ask for beyond `workers`.
    pub(crate) fn extra(&self, workers: usize) -> usize {
        let Some(duration) = self.duration else { return 0 };
        let rtt = self.round_trip.as_secs_f64();
        let want = (MARGIN * workers as f64 * rtt / duration.max(1e-6)).floor();
        let by_bytes = (MAX_EXTRA_BYTES / self.body.max(1.0)).floor();
        (want.min(by_bytes) as usize).min(MAX_EXTRA)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` jobs that each took `took`.
    fn ran(s: &mut Slots, n: usize, took: Duration) {
        for _ in 0..n {
            s.ran(took);
        }
    }

    #[test]
    fn extra_slots_cover_the_round_trip_at_the_job_rate() {
        let t0 = Instant::now();
        let mut s = Slots::new();
        s.reconnected(Duration::from_millis(10));
        // Before any job was timed: none.
        assert_eq!(s.extra(2), 0);
        ran(&mut s, 50, Duration::from_millis(1));
        assert_eq!(s.extra(2), 40);
        // Jobs as long as the round trip: two per worker.
        ran(&mut s, 50, Duration::from_millis(10));
        assert_eq!(s.extra(2), 4);
        // Long jobs: none.
        ran(&mut s, 50, Duration::from_secs(4));
        assert_eq!(s.extra(2), 0);
        // Tiny jobs far away: bounded.
        ran(&mut s, 100, Duration::from_micros(1));
        assert_eq!(s.extra(4), MAX_EXTRA);
        // Large bodies: bounded by bytes (32 MiB / 1 MiB).
        for _ in 0..100 {
            s.filled(t0, 1 << 20);
        }
        assert_eq!(s.extra(4), 32);
    }

    #[test]
    fn the_round_trip_is_the_smallest_fill_delay_of_a_window() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut s = Slots::new();
        s.reconnected(ms(10));
        ran(&mut s, 20, ms(1));
        s.announced(t0, 2);
        s.filled(t0 + ms(30), 100); // starts a window
        s.filled(t0 + ms(31), 100);
        s.announced(t0 + ms(100), 3);
        s.filled(t0 + ms(104), 100);
        s.filled(t0 + ms(900), 100);
        // The window is not over: still INFORM to ACK.
        assert_eq!(s.round_trip, ms(10));
        s.filled(t0 + ms(1100), 100);
        assert_eq!(s.round_trip, ms(4));
        // A REQUEST with no READY pending (not ours to time) changes nothing.
        s.filled(t0 + ms(3000), 100);
        assert_eq!(s.round_trip, ms(4));
        // A second of long delays (the router had no jobs): held under
        // 4 x 10 ms + 10 ms.
        s.announced(t0 + ms(3000), 2);
        s.filled(t0 + ms(3900), 100);
        s.filled(t0 + ms(4200), 100);
        assert_eq!(s.round_trip, ms(50));
    }
}
