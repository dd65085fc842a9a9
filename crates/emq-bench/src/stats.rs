//! Small statistics: samples, quantiles, medians and ranges across runs.

use std::time::Duration;

#[derive(Default, Clone)]
pub(crate) struct Series(Vec<f64>);

impl Series {
    pub(crate) fn from_durations(d: Vec<Duration>) -> Series {
        Series(d.into_iter().map(|d| d.as_secs_f64()).collect())
    }

    pub(crate) fn from_values(v: Vec<f64>) -> Series {
        Series(v)
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn push(&mut self, v: f64) {
        self.0.push(v);
    }

    pub(crate) fn quantile(&mut self, q: f64) -> f64 {
        if self.0.is_empty() {
            return 0.0;
        }
        self.0.sort_by(f64::total_cmp);
        let i = ((self.0.len() as f64 - 1.0) * q).round() as usize;
        self.0[i]
    }

    pub(crate) fn median(&self) -> f64 {
        self.clone().quantile(0.5)
    }

    pub(crate) fn range(&self) -> (f64, f64) {
        let min = self.0.iter().copied().fold(f64::INFINITY, f64::min);
        let max = self.0.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (min, max)
    }
}

pub(crate) fn fmt_rate(s: &Series) -> String {
    let (lo, hi) = s.range();
    format!("{:.0}/s [{:.0}..{:.0}]", s.median(), lo, hi)
}

pub(crate) fn fmt_us(s: &Series) -> String {
    let (lo, hi) = s.range();
    format!("{:.0} µs [{:.0}..{:.0}]", s.median() * 1e6, lo * 1e6, hi * 1e6)
}
