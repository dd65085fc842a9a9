//! What `/metrics` shows: a [`Snapshot`] the routing loop hands over once a
//! second (the status view, the core's histograms, the loop's own figures),
//! rendered as OpenMetrics text by prometheus-client. Pure data and
//! formatting: the HTTP thread ([`crate::http`]) serves it.

use std::collections::BTreeMap;
use std::time::Duration;

use emq_http::openmetrics::{counter, counters, family, gauge, gauges, render as render_collector, Labels, MetricType};
use emq_proto::views::RouterStatus;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;

/// Upper bounds of the time histograms' buckets, in seconds (a final
/// `+Inf` bucket follows).
pub const TIME_BUCKETS: [f64; 18] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0,
];

/// Upper bounds of the journal batch-size histogram's buckets (store
/// operations per commit).
pub const BATCH_BUCKETS: [f64; 12] = [
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0,
];

/// A histogram with fixed bucket bounds: counts per bucket (not
/// cumulative; the last is `+Inf`) and the sum of what was observed.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    bounds: &'static [f64],
    counts: Box<[u64]>,
    sum: f64,
}

impl Histogram {
    /// An empty histogram over `bounds` (ascending).
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: vec![0; bounds.len() + 1].into_boxed_slice(),
            sum: 0.0,
        }
    }

    /// An empty histogram of times.
    pub fn times() -> Histogram {
        Histogram::new(&TIME_BUCKETS)
    }

    /// Count one value.
    #[inline]
    pub fn observe(&mut self, value: f64) {
        // Most values are small: a scan from the bottom stops early.
        let i = self
            .bounds
            .iter()
            .position(|b| value <= *b)
            .unwrap_or(self.bounds.len());
        self.counts[i] += 1;
        self.sum += value;
    }

    /// Count one duration, in seconds.
    #[inline]
    pub fn observe_duration(&mut self, d: Duration) {
        self.observe(d.as_secs_f64());
    }

    /// Values counted.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Their sum.
    pub fn sum(&self) -> f64 {
        self.sum
    }

    /// `(upper bound, count)` per bucket, the last bound `f64::MAX` (+Inf),
    /// as prometheus-client takes them.
    fn buckets(&self) -> Vec<(f64, u64)> {
        self.bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::MAX))
            .zip(self.counts.iter().copied())
            .collect()
    }
}

/// One queue's time histograms.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueTimes {
    /// From acceptance (or the not-before time) to the first dispatch.
    pub waiting: Histogram,
    /// From the last dispatch to the result.
    pub run: Histogram,
    /// From acceptance (or the not-before time) to the end.
    pub end_to_end: Histogram,
}

impl Default for QueueTimes {
    fn default() -> Self {
        QueueTimes {
            waiting: Histogram::times(),
            run: Histogram::times(),
            end_to_end: Histogram::times(),
        }
    }
}

/// What the routing loop measures about itself.
#[derive(Debug, Clone, PartialEq)]
pub struct LoopStats {
    /// Messages received, per endpoint (`frontend`, `backend`, `admin`).
    pub received: [u64; 3],
    /// Messages sent, per endpoint.
    pub sent: [u64; 3],
    /// Messages that could not be sent (peer gone or its queue full).
    pub unsent: u64,
    /// Time of each journal commit.
    pub commit_seconds: Histogram,
    /// Store operations per journal commit.
    pub commit_ops: Histogram,
    /// Events published on the event socket (the last sequence number).
    pub events: u64,
}

impl Default for LoopStats {
    fn default() -> Self {
        LoopStats {
            received: [0; 3],
            sent: [0; 3],
            unsent: 0,
            commit_seconds: Histogram::times(),
            commit_ops: Histogram::new(&BATCH_BUCKETS),
            events: 0,
        }
    }
}

/// Everything `/metrics` reports, as of one moment of the routing loop.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// The STATUS view: gauges and per-queue counters.
    pub status: RouterStatus,
    /// Time histograms per queue.
    pub times: BTreeMap<String, QueueTimes>,
    /// The routing loop's own figures.
    pub stats: LoopStats,
}

/// Process figures read when `/metrics` is served.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Process {
    /// Resident memory in bytes.
    pub resident_bytes: u64,
    /// Resident memory when the router started serving, to estimate the
    /// memory each waiting job takes.
    pub resident_at_start: u64,
}

impl Process {
    /// This process's resident memory, 0 when it cannot be read.
    pub fn resident_now() -> u64 {
        emq_net::resident_bytes(std::process::id()).unwrap_or(0)
    }
}

/// Render `snapshot` as OpenMetrics text.
pub fn render(snapshot: &Snapshot, process: Process) -> String {
    render_collector(SnapshotCollector {
        snapshot: snapshot.clone(),
        process,
    })
}

#[derive(Debug)]
struct SnapshotCollector {
    snapshot: Snapshot,
    process: Process,
}

const ENDPOINTS: [&str; 3] = ["frontend", "backend", "admin"];

fn histograms<'a>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (Labels<'a>, &'a Histogram)>,
) -> std::fmt::Result {
    family(encoder, name, help, MetricType::Histogram, samples, |mut m, h| {
        m.encode_histogram::<prometheus_client::encoding::NoLabelSet>(h.sum(), h.count(), &h.buckets(), None)
    })
}

fn histogram(encoder: &mut DescriptorEncoder<'_>, name: &str, help: &str, h: &Histogram) -> std::fmt::Result {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
    metric.encode_histogram::<prometheus_client::encoding::NoLabelSet>(h.sum(), h.count(), &h.buckets(), None)
}

fn queue(name: &str) -> Labels<'_> {
    vec![("queue", name)]
}

impl Collector for SnapshotCollector {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> std::fmt::Result {
        let s = &self.snapshot;
        let st = &s.status;
        let per_queue =
            |f: fn(&emq_proto::views::QueueStatus) -> u64| st.queues.iter().map(move |(n, qs)| (queue(n), f(qs)));
        counters(
            &mut e,
            "emq_jobs_submitted",
            "Jobs accepted (from clients, schedules and graphs).",
            per_queue(|qs| qs.counts.submitted),
        )?;
        counters(
            &mut e,
            "emq_jobs_finished",
            "Jobs that ended, by outcome.",
            st.queues.iter().flat_map(|(n, qs)| {
                qs.counts
                    .finished
                    .iter()
                    .map(move |(o, v)| (vec![("queue", n.as_str()), ("outcome", o.as_str())], *v))
            }),
        )?;
        counters(
            &mut e,
            "emq_jobs_retried",
            "Failed attempts of guaranteed jobs that were retried.",
            per_queue(|qs| qs.counts.retried),
        )?;
        counters(
            &mut e,
            "emq_jobs_dead_lettered",
            "Guaranteed jobs dead-lettered (out of attempts).",
            per_queue(|qs| qs.counts.dead),
        )?;
        counters(
            &mut e,
            "emq_jobs_abandoned",
            "Attempts whose jobmanager was lost while they ran.",
            per_queue(|qs| qs.counts.abandoned),
        )?;
        counters(
            &mut e,
            "emq_jobs_deduplicated",
            "Unique submissions answered with a live job of their key.",
            per_queue(|qs| qs.counts.deduplicated),
        )?;
        gauges(
            &mut e,
            "emq_queue_waiting",
            "Jobs waiting for a slot.",
            st.queues.iter().map(|(n, qs)| (queue(n), qs.waiting as i64)),
        )?;
        gauges(
            &mut e,
            "emq_queue_running",
            "Jobs running on a jobmanager.",
            st.queues.iter().map(|(n, qs)| (queue(n), qs.running as i64)),
        )?;
        gauges(
            &mut e,
            "emq_queue_paused",
            "1 while the queue is paused.",
            st.queues.iter().map(|(n, qs)| (queue(n), i64::from(qs.paused))),
        )?;
        gauges(
            &mut e,
            "emq_queue_jobmanagers",
            "Jobmanagers serving the queue.",
            st.queues.iter().map(|(n, qs)| (queue(n), qs.jobmanagers.len() as i64)),
        )?;
        for (name, help, pick) in [
            (
                "emq_job_waiting_seconds",
                "Time from acceptance (or the not-before time) to the first dispatch.",
                (|t: &QueueTimes| &t.waiting) as fn(&QueueTimes) -> &Histogram,
            ),
            (
                "emq_job_run_seconds",
                "Time from the last dispatch to the result.",
                |t| &t.run,
            ),
            (
                "emq_job_end_to_end_seconds",
                "Time from acceptance (or the not-before time) to the end.",
                |t| &t.end_to_end,
            ),
        ] {
            histograms(&mut e, name, help, s.times.iter().map(|(n, t)| (queue(n), pick(t))))?;
        }
        // The fleet.
        let mut by_state: BTreeMap<String, i64> = BTreeMap::new();
        for jm in st.jobmanagers.values() {
            let state = jm.state.map_or("unknown".to_string(), |s| s.to_string().to_lowercase());
            *by_state.entry(state).or_default() += 1;
        }
        gauges(
            &mut e,
            "emq_jobmanagers",
            "Connected jobmanagers, by the state they report.",
            by_state.iter().map(|(k, v)| (vec![("state", k.as_str())], *v)),
        )?;
        let w = st.workers();
        let (busy, idle, queued) = (
            i64::from(w.busy),
            i64::from(w.workers.saturating_sub(w.busy)),
            i64::from(w.queued),
        );
        gauges(
            &mut e,
            "emq_workers",
            "Worker processes of the connected emq jobmanagers, by state.",
            [(vec![("state", "busy")], busy), (vec![("state", "idle")], idle)],
        )?;
        gauge(
            &mut e,
            "emq_jobmanager_queued_jobs",
            "Jobs held by jobmanagers waiting for a worker (prefetch).",
            queued,
        )?;
        gauges(
            &mut e,
            "emq_jobmanager_slots",
            "Free slots each jobmanager announced and the router has not filled.",
            st.jobmanagers
                .iter()
                .map(|(id, jm)| (vec![("jobmanager", id.as_str())], jm.slots as i64)),
        )?;
        gauge(
            &mut e,
            "emq_waiting_jobs",
            "Jobs waiting across all queues.",
            st.waiting_total as i64,
        )?;
        gauge(
            &mut e,
            "emq_delayed_jobs",
            "Jobs waiting for a time (delayed, retries backing off).",
            st.delayed as i64,
        )?;
        gauge(
            &mut e,
            "emq_blocked_jobs",
            "Graph jobs waiting for their parents.",
            st.blocked as i64,
        )?;
        gauge(
            &mut e,
            "emq_schedules",
            "Schedules the router keeps.",
            st.schedules as i64,
        )?;
        gauge(&mut e, "emq_graphs", "Graphs the router holds.", st.graphs as i64)?;
        gauge(
            &mut e,
            "emq_results_kept",
            "Results kept for lookup.",
            st.results_kept as i64,
        )?;
        // The router itself.
        gauge(
            &mut e,
            "emq_router_uptime_seconds",
            "Seconds since the router started.",
            st.uptime_s as i64,
        )?;
        gauge(
            &mut e,
            "emq_router_resident_bytes",
            "Resident memory of the router process.",
            self.process.resident_bytes as i64,
        )?;
        if st.waiting_total >= 1000 {
            let grown = self
                .process
                .resident_bytes
                .saturating_sub(self.process.resident_at_start);
            gauge(
                &mut e,
                "emq_router_bytes_per_waiting_job",
                "Resident memory grown since the start, per waiting job (shown from 1000 waiting).",
                (grown / st.waiting_total) as i64,
            )?;
        }
        let ls = &s.stats;
        counters(
            &mut e,
            "emq_router_messages_received",
            "Messages received, per endpoint.",
            ENDPOINTS
                .iter()
                .zip(ls.received)
                .map(|(ep, v)| (vec![("endpoint", *ep)], v)),
        )?;
        counters(
            &mut e,
            "emq_router_messages_sent",
            "Messages sent, per endpoint.",
            ENDPOINTS
                .iter()
                .zip(ls.sent)
                .map(|(ep, v)| (vec![("endpoint", *ep)], v)),
        )?;
        counter(
            &mut e,
            "emq_router_messages_undeliverable",
            "Messages that could not be sent (peer gone, or its queue full).",
            ls.unsent,
        )?;
        counter(
            &mut e,
            "emq_router_events",
            "Events published on the event socket.",
            ls.events,
        )?;
        histogram(
            &mut e,
            "emq_journal_commit_seconds",
            "Time of each journal commit.",
            &ls.commit_seconds,
        )?;
        histogram(
            &mut e,
            "emq_journal_commit_operations",
            "Store operations per journal commit.",
            &ls.commit_ops,
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_put_values_in_the_first_bucket_that_holds_them() {
        let mut h = Histogram::times();
        h.observe(0.0005);
        h.observe(0.001);
        h.observe(0.002);
        h.observe(1e9);
        assert_eq!(h.count(), 4);
        let b = h.buckets();
        assert_eq!(b[0], (0.001, 2));
        assert_eq!(b[1], (0.0025, 1));
        assert_eq!(b.last(), Some(&(f64::MAX, 1)));
    }
}
