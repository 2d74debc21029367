//! The `loadtest nat` report: per NAT pairing, how many trials connected, directly or through
//! the relay, and how long connecting took.

use std::time::Duration;

use serde_json::{Value, json};

use super::peer::Path;
use super::{NatKind, Options, Trial};
use crate::stats::{Latency, Tally};

/// The results of one pairing of NAT kinds.
#[derive(Debug, Clone)]
pub struct Pairing {
    pub a: NatKind,
    pub b: NatKind,
    pub trials: u64,
    pub direct: u64,
    pub relayed: u64,
    pub failed: u64,
    /// Time to connect per path: steps `direct` and `relayed`; failed steps as error kinds.
    pub tally: Tally,
}

impl Pairing {
    pub(super) fn new(a: NatKind, b: NatKind) -> Self {
        Self {
            a,
            b,
            trials: 0,
            direct: 0,
            relayed: 0,
            failed: 0,
            tally: Tally::default(),
        }
    }

    pub(super) fn add(&mut self, t: &Trial) {
        self.trials += 1;
        match (t.path, t.connect) {
            (Path::Direct, Some(d)) => {
                self.direct += 1;
                self.tally.record("direct", d);
            }
            (Path::Relayed, Some(d)) => {
                self.relayed += 1;
                self.tally.record("relayed", d);
            }
            _ => self.failed += 1,
        }
        for e in &t.errors {
            self.tally.error(e.clone());
        }
    }

    /// Whether hole punching is expected to work between these kinds.
    pub fn punch_expected(&self) -> bool {
        self.a.punches_through_with(self.b)
    }

    pub fn name(&self) -> String {
        format!("{} <-> {}", self.a, self.b)
    }

    /// This pairing's line of the table, in [`COLUMNS`] order (times `-` if none connected).
    pub fn row(&self) -> [String; 10] {
        let c = self.connect();
        let ms = |v: f64| {
            if c.count() == 0 {
                "-".to_owned()
            } else {
                format!("{v:.1}")
            }
        };
        [
            self.name(),
            self.trials.to_string(),
            format!("{:.0}%", self.success_rate() * 100.0),
            self.direct.to_string(),
            self.relayed.to_string(),
            self.failed.to_string(),
            ms(c.ms_at(0.5)),
            ms(c.ms_at(0.9)),
            ms(c.max_ms()),
            if self.punch_expected() { "yes" } else { "no" }.to_owned(),
        ]
    }

    pub fn success_rate(&self) -> f64 {
        (self.direct + self.relayed) as f64 / self.trials.max(1) as f64
    }

    /// Time to connect over both paths.
    pub fn connect(&self) -> Latency {
        let mut all = Latency::default();
        for l in self.tally.steps.values() {
            all.merge(l);
        }
        all
    }
}

/// The per-pairing table's columns, on the terminal and on the HTML page.
pub const COLUMNS: [&str; 10] = [
    "pairing",
    "trials",
    "success",
    "direct",
    "relayed",
    "failed",
    "p50 ms",
    "p90 ms",
    "max ms",
    "punch expected",
];

/// Column widths on the terminal; the pairing is left-aligned, the last column unpadded.
const WIDTHS: [usize; 9] = [42, 6, 8, 7, 8, 6, 9, 9, 9];

/// One line of the terminal table.
fn table_line(cells: &[String; 10]) -> String {
    let mut line = format!("{:<w$}", cells[0], w = WIDTHS[0]);
    for (cell, w) in cells[1..9].iter().zip(&WIDTHS[1..]) {
        line.push_str(&format!(" {cell:>w$}"));
    }
    line.push_str(&format!("  {}\n", cells[9]));
    line
}

/// A whole run.
#[derive(Debug, Clone)]
pub struct Report {
    pub options: Options,
    pub pairings: Vec<Pairing>,
    pub elapsed: Duration,
}

impl Report {
    pub fn trials(&self) -> u64 {
        self.pairings.iter().map(|p| p.trials).sum()
    }

    pub fn failed(&self) -> u64 {
        self.pairings.iter().map(|p| p.failed).sum()
    }

    pub fn to_json(&self) -> Value {
        let o = &self.options;
        json!({
            "scenario": "nat",
            "options": {
                "kinds": o.kinds.iter().map(|k| k.name()).collect::<Vec<_>>(),
                "trials": o.trials,
                "concurrency": o.concurrency,
                "server": o.server.name(),
                "punch_timeout_ms": o.punch_timeout.as_millis() as u64,
                "step_timeout_ms": o.step_timeout.as_millis() as u64,
            },
            "elapsed_s": self.elapsed.as_secs_f64(),
            "trials": self.trials(),
            "failed": self.failed(),
            "pairings": self.pairings.iter().map(|p| {
                let connect = p.connect();
                json!({
                    "a": p.a.name(),
                    "b": p.b.name(),
                    "trials": p.trials,
                    "direct": p.direct,
                    "relayed": p.relayed,
                    "failed": p.failed,
                    "success_rate": p.success_rate(),
                    "punch_expected": p.punch_expected(),
                    "connect_ms": connect.to_json(),
                    "steps": p.tally.steps_json(),
                    "errors": p.tally.errors,
                })
            }).collect::<Vec<_>>(),
        })
    }

    pub fn human(&self) -> String {
        let mut out = format!(
            "loadtest nat: {} trials in {:.1} s against {} (punching for up to {:?})\n\n",
            self.trials(),
            self.elapsed.as_secs_f64(),
            self.options.server.name(),
            self.options.punch_timeout,
        );
        out.push_str(&table_line(&COLUMNS.map(str::to_owned)));
        for p in &self.pairings {
            out.push_str(&table_line(&p.row()));
        }
        let errors = self.tally();
        if errors.error_count() > 0 {
            out.push_str("\nerrors:\n");
            for (kind, n) in &errors.errors {
                out.push_str(&format!("  {kind:<40} {n}\n"));
            }
        }
        out
    }

    /// Time to connect by path and errors by kind, over all pairings.
    pub fn tally(&self) -> Tally {
        self.pairings.iter().fold(Tally::default(), |mut t, p| {
            t.merge(&p.tally);
            t
        })
    }
}
