//! What `loadtest nat` puts on its report page: one row per NAT pairing, and a histogram of
//! the time to connect for each.

use super::{Chart, Figure, Page, Table, plots};
use crate::nat::Report;
use crate::stats::Tally;

impl Page {
    /// The page of a `loadtest nat` run.
    pub fn nat(r: &Report) -> Self {
        let o = &r.options;
        let kinds: Vec<_> = o.kinds.iter().map(|k| k.name()).collect();
        let (direct, relayed) = r
            .pairings
            .iter()
            .fold((0, 0), |(d, rl), p| (d + p.direct, rl + p.relayed));
        // Time to connect over all pairings, by path, and every error.
        let tally = r.pairings.iter().fold(Tally::default(), |mut t, p| {
            t.merge(&p.tally);
            t
        });
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
            tally,
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
    let rows = r
        .pairings
        .iter()
        .map(|p| {
            let c = p.connect();
            let ms = |v: f64| {
                if c.count() == 0 {
                    "-".to_owned()
                } else {
                    format!("{v:.1}")
                }
            };
            vec![
                p.name(),
                p.trials.to_string(),
                format!("{:.0}%", p.success_rate() * 100.0),
                p.direct.to_string(),
                p.relayed.to_string(),
                p.failed.to_string(),
                ms(c.ms_at(0.5)),
                ms(c.ms_at(0.9)),
                ms(c.max_ms()),
                if p.punch_expected() { "yes" } else { "no" }.to_owned(),
            ]
        })
        .collect();
    Table {
        id: "pairings",
        title: "NAT pairings".to_owned(),
        header: vec![
            "pairing",
            "trials",
            "success",
            "direct",
            "relayed",
            "failed",
            "p50 ms",
            "p90 ms",
            "max ms",
            "punching expected to work",
        ],
        rows,
    }
}
