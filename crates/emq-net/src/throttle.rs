//! Log lines about things peers do over and over (refused connections,
//! refused jobs, bad input) at most once per interval, with a count of what
//! was left out. Pure: the caller gives the time.

use std::time::{Duration, Instant};

/// At most one report per interval.
#[derive(Debug, Clone)]
pub struct Throttle {
    every: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttle {
    /// Report at most once per `every`.
    pub fn new(every: Duration) -> Throttle {
        Throttle {
            every,
            last: None,
            suppressed: 0,
        }
    }

    /// Whether to report now; if so, the note to append about what was left
    /// out since the last report (empty when nothing was).
    pub fn report(&mut self, now: Instant) -> Option<String> {
        if self.last.is_some_and(|t| now.saturating_duration_since(t) < self.every) {
            self.suppressed += 1;
            return None;
        }
        let note = match self.suppressed {
            0 => String::new(),
            n => format!(" ({n} more since the last report)"),
        };
        self.last = Some(now);
        self.suppressed = 0;
        Some(note)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_report_per_interval_counting_the_rest() {
        let t0 = Instant::now();
        let mut t = Throttle::new(Duration::from_secs(1));
        assert_eq!(t.report(t0).as_deref(), Some(""));
        assert_eq!(t.report(t0 + Duration::from_millis(10)), None);
        assert_eq!(t.report(t0 + Duration::from_millis(999)), None);
        assert_eq!(
            t.report(t0 + Duration::from_secs(1)).as_deref(),
            Some(" (2 more since the last report)")
        );
    }
}
