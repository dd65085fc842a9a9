//! Writing `/metrics` with prometheus-client from a snapshot: a process's
//! collector calls these per metric family, and [`render`] turns it into
//! OpenMetrics text.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
pub use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

/// The `Content-Type` of [`render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Label sets as prometheus-client takes them.
pub type Labels<'a> = Vec<(&'static str, &'a str)>;

/// `collector`'s metrics as OpenMetrics text.
pub fn render(collector: impl Collector) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(collector));
    let mut out = String::new();
    // Writing into a String does not fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    out
}

/// One metric family written sample by sample.
pub fn family<'a, T>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    kind: MetricType,
    samples: impl IntoIterator<Item = (Labels<'a>, T)>,
    mut write: impl FnMut(MetricEncoder<'_>, T) -> std::fmt::Result,
) -> std::fmt::Result {
    let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
    for (labels, value) in samples {
        write(metric.encode_family(&labels)?, value)?;
    }
    Ok(())
}

/// A counter family, one sample per label set.
pub fn counters<'a>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (Labels<'a>, u64)>,
) -> std::fmt::Result {
    family(encoder, name, help, MetricType::Counter, samples, |m, v| {
        ConstCounter::new(v).encode(m)
    })
}

/// A gauge family, one sample per label set.
pub fn gauges<'a>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (Labels<'a>, i64)>,
) -> std::fmt::Result {
    family(encoder, name, help, MetricType::Gauge, samples, |m, v| {
        ConstGauge::new(v).encode(m)
    })
}

/// A counter without labels.
pub fn counter(encoder: &mut DescriptorEncoder<'_>, name: &str, help: &str, value: u64) -> std::fmt::Result {
    let metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    ConstCounter::new(value).encode(metric)
}

/// A gauge without labels.
pub fn gauge(encoder: &mut DescriptorEncoder<'_>, name: &str, help: &str, value: i64) -> std::fmt::Result {
    let metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    ConstGauge::new(value).encode(metric)
}
