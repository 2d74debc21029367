//! What `loadtest nat` puts on its report page: one row per NAT pairing, and a histogram of
//! the time to connect for each.

use super::{Chart, Figure, Page, Table, plots};
use crate::nat::{COLUMNS, Report};

impl Page {
    /// The page of a `loadtest nat` run.
    pub fn nat(r: &Report) -> Self {
        let o = &r.options;
        let kinds: Vec<_> = o.kinds.iter().map(|k| k.name()).collect();
        let (direct, relayed) = r
            .pairings
            .iter()
            .fold((0, 0), |(d, rl), p| (d + p.direct, rl + p.relayed));
        Self {
            scenario: "nat",
            parameters: vec![
                ("NAT kinds", kinds.join(", ")),
                ("trials per pairing", o.trials.to_string()),
                ("trials at once", o.concurrency.to_string()),
                ("TURN server", o.server.name()),
                (
                    "punch timeout",
                    humantime::format_duration(o.punch_timeout).to_string(),
                ),
                (
                    "step timeout",
                    humantime::format_duration(o.step_timeout).to_string(),
                ),
            ],
            summary: vec![
                Figure::new("trials", "trials", r.trials()),
                Figure::new("direct", "connected directly", direct),
                Figure::new("relayed", "connected through the relay", relayed),
                Figure::new("failed", "did not connect", r.failed()),
                Figure::new(
                    "elapsed_s",
                    "run time (s)",
                    format!("{:.1}", r.elapsed.as_secs_f64()),
                ),
            ],
            tally: r.tally(),
            latency: r
                .pairings
                .iter()
                .map(|p| Chart {
                    title: format!("{}: time to connect, STUN included", p.name()),
                    svg: plots::histogram(&p.connect()),
                })
                .collect(),
            throughput: Vec::new(),
            tables: vec![pairings(r)],
        }
    }
}

fn pairings(r: &Report) -> Table {
    Table {
        id: "pairings",
        title: "NAT pairings".to_owned(),
        header: COLUMNS.to_vec(),
        rows: r.pairings.iter().map(|p| p.row().to_vec()).collect(),
    }
}
