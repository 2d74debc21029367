//! The outcome of a `loadtest turn` run, as JSON and as a table.

use std::time::Duration;

use serde_json::{Value, json};

use super::Options;
use crate::stats::Tally;
use crate::timeline::Timeline;

/// The outcome of a run.
#[derive(Debug, Clone)]
pub struct Report {
    pub options: Options,
    pub tally: Tally,
    pub sent: u64,
    pub received: u64,
    pub bytes_received: u64,
    pub elapsed: Duration,
    pub jitter_ms: f64,
    pub ready_pairs: usize,
    /// Per second of the sending phase: `sent` (by send time), `received` and
    /// `bytes_received` (by arrival time) and `lost` (packets sent in that second that never
    /// arrived); each sums to its total.
    pub timeline: Timeline,
}

impl Report {
    pub fn loss(&self) -> f64 {
        if self.sent == 0 {
            return 0.0;
        }
        1.0 - self.received as f64 / self.sent as f64
    }

    pub fn packets_per_second(&self) -> f64 {
        self.received as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn mbit_per_second(&self) -> f64 {
        self.bytes_received as f64 * 8.0 / 1e6 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn to_json(&self) -> Value {
        json!({
            "scenario": "turn",
            "server": self.options.server.to_string(),
            "transport": self.options.transport.name(),
            "pairs": self.options.pairs,
            "ready_pairs": self.ready_pairs,
            "size": self.options.size,
            "rate_per_client": self.options.rate,
            "elapsed_s": self.elapsed.as_secs_f64(),
            "sent": self.sent,
            "received": self.received,
            "loss": self.loss(),
            "packets_per_s": self.packets_per_second(),
            "mbit_per_s": self.mbit_per_second(),
            "jitter_ms": self.jitter_ms,
            "steps": self.tally.steps_json(),
            "errors": self.tally.errors,
            "timeline": self.timeline.to_json(),
        })
    }

    pub fn human(&self) -> String {
        let mut out = format!(
            "turn: {} pairs ({} ready) via {} over {}, {} B packets at {}/s per client for {:.1} s\n\
             sent {} received {} loss {:.3}%  {:.0} packets/s  {:.2} Mbit/s  jitter {:.3} ms\n",
            self.options.pairs,
            self.ready_pairs,
            self.options.server,
            self.options.transport.name().to_uppercase(),
            self.options.size,
            self.options.rate,
            self.elapsed.as_secs_f64(),
            self.sent,
            self.received,
            self.loss() * 100.0,
            self.packets_per_second(),
            self.mbit_per_second(),
            self.jitter_ms,
        );
        out.push_str(&self.tally.table());
        for (kind, n) in &self.tally.errors {
            out.push_str(&format!("error {kind}: {n}\n"));
        }
        out
    }
}
