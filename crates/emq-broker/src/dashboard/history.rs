//! The last minutes of each queue's throughput, for the overview's chart:
//! the queues' counters sampled from every snapshot the routing loop hands
//! over (once a second), turned into jobs per second.

use std::collections::{BTreeMap, VecDeque};

use emq_proto::views::RouterStatus;
use serde::Serialize;

/// Samples kept: ten minutes at one a second.
pub(crate) const SAMPLES: usize = 600;

/// Queues drawn; the busiest are kept, the others summed as `(others)`.
pub(crate) const MAX_QUEUES: usize = 16;

struct Sample {
    /// Seconds since the Unix epoch.
    unix_s: f64,
    /// Per queue: jobs ended ok and failed ([`emq_proto::Outcome::is_failure`])
    /// since the router started.
    totals: BTreeMap<String, (u64, u64)>,
}

/// The samples.
#[derive(Default)]
pub(crate) struct History {
    samples: VecDeque<Sample>,
}

/// One queue's rates, oldest first, one per sample after the first.
#[derive(Debug, Default, Serialize, PartialEq)]
pub(crate) struct Series {
    pub ok: Vec<f64>,
    pub failed: Vec<f64>,
}

/// What the chart draws.
#[derive(Debug, Default, Serialize, PartialEq)]
pub(crate) struct Chart {
    /// When each point was taken, seconds since the Unix epoch.
    pub t: Vec<f64>,
    /// Jobs per second by queue.
    pub queues: BTreeMap<String, Series>,
}

impl History {
    /// Sample `status`, taken at `unix_s`.
    pub(crate) fn record(&mut self, unix_s: f64, status: &RouterStatus) {
        let totals = status
            .queues
            .iter()
            .map(|(name, q)| (name.clone(), (q.counts.ok(), q.counts.failed())))
            .collect();
        if self.samples.len() == SAMPLES {
            self.samples.pop_front();
        }
        self.samples.push_back(Sample { unix_s, totals });
    }

    /// Jobs per second over the last `seconds` (the busiest
    /// [`MAX_QUEUES`] queues, the rest summed).
    pub(crate) fn chart(&self, seconds: usize) -> Chart {
        let skip = self.samples.len().saturating_sub(seconds + 1);
        let window: Vec<&Sample> = self.samples.iter().skip(skip).collect();
        let mut chart = Chart::default();
        let (Some(first), Some(last)) = (window.first(), window.last()) else {
            return chart;
        };
        // The busiest queues over the window.
        let mut activity: Vec<(&String, u64)> = last
            .totals
            .iter()
            .map(|(q, (ok, failed))| {
                let (ok0, failed0) = first.totals.get(q).copied().unwrap_or((0, 0));
                (q, ok.saturating_sub(ok0) + failed.saturating_sub(failed0))
            })
            .collect();
        activity.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let shown: Vec<&String> = activity.iter().take(MAX_QUEUES).map(|(q, _)| *q).collect();
        let others = activity.len() > MAX_QUEUES;
        for pair in window.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            let dt = (b.unix_s - a.unix_s).max(1e-3);
            chart.t.push(b.unix_s);
            let n = chart.t.len();
            let mut rest = (0.0, 0.0);
            for (q, (ok, failed)) in &b.totals {
                let (ok0, failed0) = a.totals.get(q).copied().unwrap_or((0, 0));
                let rate = (
                    ok.saturating_sub(ok0) as f64 / dt,
                    failed.saturating_sub(failed0) as f64 / dt,
                );
                if shown.contains(&q) {
                    // A queue first seen now was idle before.
                    let s = chart.queues.entry(q.clone()).or_insert_with(|| Series {
                        ok: vec![0.0; n - 1],
                        failed: vec![0.0; n - 1],
                    });
                    s.ok.push(rate.0);
                    s.failed.push(rate.1);
                } else {
                    rest.0 += rate.0;
                    rest.1 += rate.1;
                }
            }
            if others {
                let s = chart.queues.entry("(others)".into()).or_insert_with(|| Series {
                    ok: vec![0.0; n - 1],
                    failed: vec![0.0; n - 1],
                });
                s.ok.push(rest.0);
                s.failed.push(rest.1);
            }
            // A queue gone from this sample is idle.
            for s in chart.queues.values_mut() {
                s.ok.resize(n, 0.0);
                s.failed.resize(n, 0.0);
            }
        }
        chart
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use emq_proto::views::QueueStatus;

    fn status(queues: &[(&str, u64, u64)]) -> RouterStatus {
        let mut s = RouterStatus::default();
        for (name, ok, failed) in queues {
            let mut q = QueueStatus::default();
            q.counts.finished.insert("ok".into(), *ok);
            q.counts.finished.insert("failed".into(), *failed);
            q.counts.finished.insert("cancelled".into(), 1000);
            s.queues.insert(name.to_string(), q);
        }
        s
    }

    #[test]
    fn rates_are_differences_per_second_and_late_queues_start_at_zero() {
        let mut h = History::default();
        h.record(100.0, &status(&[("a", 0, 0)]));
        h.record(101.0, &status(&[("a", 10, 1)]));
        h.record(103.0, &status(&[("a", 30, 1), ("b", 4, 0)]));
        let c = h.chart(60);
        assert_eq!(c.t, [101.0, 103.0]);
        assert_eq!(c.queues["a"].ok, [10.0, 10.0]);
        assert_eq!(c.queues["a"].failed, [1.0, 0.0]);
        assert_eq!(c.queues["b"].ok, [0.0, 2.0]);
        // Only the last `seconds` samples.
        assert_eq!(h.chart(1).t, [103.0]);
    }

    #[test]
    fn only_the_busiest_queues_are_drawn_and_samples_are_bounded() {
        let mut h = History::default();
        let names: Vec<String> = (0..MAX_QUEUES + 4).map(|i| format!("q{i:02}")).collect();
        for t in 0..SAMPLES + 10 {
            let queues: Vec<(&str, u64, u64)> = names
                .iter()
                .enumerate()
                .map(|(i, n)| (n.as_str(), (t * (i + 1)) as u64, 0))
                .collect();
            h.record(t as f64, &status(&queues));
        }
        assert_eq!(h.samples.len(), SAMPLES);
        let c = h.chart(SAMPLES);
        assert_eq!(c.queues.len(), MAX_QUEUES + 1);
        assert!(!c.queues.contains_key("q00"), "the quietest are summed");
        assert_eq!(c.queues["(others)"].ok[0], 1.0 + 2.0 + 3.0 + 4.0);
    }
}
