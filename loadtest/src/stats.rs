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
