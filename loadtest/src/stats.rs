//! Latency histograms and error tallies, printed as a table or JSON.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{Value, json};

/// Latencies of one step, in microseconds (1 µs to 60 s, 3 significant digits).
#[derive(Debug, Clone)]
pub struct Latency {
    histogram: Histogram<u64>,
}

impl Default for Latency {
    fn default() -> Self {
        Self {
            histogram: Histogram::new_with_bounds(1, 60_000_000, 3)
                .expect("valid histogram bounds"),
        }
    }
}

impl Latency {
    pub fn record(&mut self, elapsed: Duration) {
        let micros = (elapsed.as_micros() as u64).clamp(1, 60_000_000);
        self.histogram.saturating_record(micros);
    }

    pub fn merge(&mut self, other: &Latency) {
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.histogram.add(&other.histogram);
    }

    pub fn count(&self) -> u64 {
        self.histogram.len()
    }

    /// The latency at `quantile` (0..=1) in milliseconds.
    pub fn ms_at(&self, quantile: f64) -> f64 {
        self.histogram.value_at_quantile(quantile) as f64 / 1000.0
    }

    pub fn max_ms(&self) -> f64 {
        self.histogram.max() as f64 / 1000.0
    }

    /// The recorded values in `n` log-spaced bins from the smallest to the largest, for a
    /// histogram; empty when nothing was recorded. The counts add up to [`Self::count`].
    pub fn bins(&self, n: usize) -> Vec<Bin> {
        if self.count() == 0 || n == 0 {
            return Vec::new();
        }
        let low = self.histogram.min().max(1) as f64;
        // One value recorded (or all equal): give the single bin some width to draw.
        let high = (self.histogram.max() as f64).max(low * 1.1);
        let ratio = (high / low).ln();
        let mut bins: Vec<Bin> = (0..n)
            .map(|i| Bin {
                low_ms: low * (ratio * i as f64 / n as f64).exp() / 1000.0,
                high_ms: low * (ratio * (i + 1) as f64 / n as f64).exp() / 1000.0,
                count: 0,
            })
            .collect();
        for v in self.histogram.iter_recorded() {
            let at = (v.value_iterated_to() as f64).max(low);
            let i = ((at / low).ln() / ratio * n as f64) as usize;
            bins[i.min(n - 1)].count += v.count_at_value();
        }
        bins
    }

    pub fn to_json(&self) -> Value {
        json!({
            "count": self.count(),
            "p50_ms": self.ms_at(0.50),
            "p90_ms": self.ms_at(0.90),
            "p99_ms": self.ms_at(0.99),
            "max_ms": self.max_ms(),
        })
    }
}

/// One bar of a latency histogram: how many samples fell in `low_ms..high_ms`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bin {
    pub low_ms: f64,
    pub high_ms: f64,
    pub count: u64,
}

/// Latencies per named step and errors per kind.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    pub steps: BTreeMap<&'static str, Latency>,
    pub errors: BTreeMap<String, u64>,
}

impl Tally {
    pub fn record(&mut self, step: &'static str, elapsed: Duration) {
        self.steps.entry(step).or_default().record(elapsed);
    }

    pub fn error(&mut self, kind: impl Into<String>) {
        *self.errors.entry(kind.into()).or_default() += 1;
    }

    pub fn merge(&mut self, other: &Tally) {
        for (step, latency) in &other.steps {
            self.steps.entry(step).or_default().merge(latency);
        }
        for (kind, n) in &other.errors {
            *self.errors.entry(kind.clone()).or_default() += n;
        }
    }

    pub fn count(&self, step: &str) -> u64 {
        self.steps.get(step).map_or(0, Latency::count)
    }

    /// Errors of every kind together.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Each step's latency figures, keyed by step, as in the JSON report.
    pub fn steps_json(&self) -> serde_json::Map<String, serde_json::Value> {
        self.steps
            .iter()
            .map(|(step, l)| ((*step).to_owned(), l.to_json()))
            .collect()
    }

    /// A fixed-width table: one row per step.
    pub fn table(&self) -> String {
        let mut out = format!(
            "{:<10} {:>9} {:>9} {:>9} {:>9} {:>9}\n",
            "step", "count", "p50 ms", "p90 ms", "p99 ms", "max ms"
        );
        for (step, l) in &self.steps {
            out.push_str(&format!(
                "{:<10} {:>9} {:>9.3} {:>9.3} {:>9.3} {:>9.3}\n",
                step,
                l.count(),
                l.ms_at(0.5),
                l.ms_at(0.9),
                l.ms_at(0.99),
                l.max_ms()
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_hold_every_sample_in_rising_log_ranges() {
        let mut l = Latency::default();
        for ms in [1u64, 2, 2, 5, 40, 900] {
            l.record(Duration::from_millis(ms));
        }
        let bins = l.bins(12);
        assert_eq!(bins.len(), 12);
        assert_eq!(bins.iter().map(|b| b.count).sum::<u64>(), 6);
        assert!(
            bins.windows(2)
                .all(|w| w[0].high_ms <= w[1].low_ms * 1.000_001)
        );
        assert!((bins[0].low_ms - 1.0).abs() < 0.01);
        assert!(Latency::default().bins(12).is_empty());
        let mut one = Latency::default();
        one.record(Duration::from_millis(3));
        assert_eq!(one.bins(4).iter().map(|b| b.count).sum::<u64>(), 1);
    }
}
