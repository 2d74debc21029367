//! What `loadtest signal` puts on its report page.

use plotters::style::{BLUE, GREEN, RED};

use super::plots::{self, Line};
use super::{Chart, Figure, Page, latency_charts};
use crate::signal::Report;

impl Page {
    /// The page of a `loadtest signal` run.
    pub fn signal(r: &Report) -> Self {
        let o = &r.options;
        let rate = if o.rate > 0.0 {
            format!("{} puts/s", o.rate)
        } else {
            "as fast as possible".to_owned()
        };
        Self {
            scenario: "signal",
            parameters: vec![
                ("urls", o.urls.join(", ")),
                ("transport", o.transport.name().to_owned()),
                ("rooms", o.rooms.to_string()),
                ("rounds per room", o.rounds.to_string()),
                ("rate", rate),
                ("blob bytes", o.blob_bytes.to_string()),
                (
                    "max duration",
                    humantime::format_duration(o.max_duration).to_string(),
                ),
                (
                    "step timeout",
                    humantime::format_duration(o.step_timeout).to_string(),
                ),
            ],
            summary: vec![
                Figure::new("completed_rooms", "rooms completed", r.completed_rooms),
                Figure::new("rooms", "rooms", o.rooms),
                Figure::new(
                    "elapsed_s",
                    "elapsed (s)",
                    format!("{:.2}", r.elapsed.as_secs_f64()),
                ),
                Figure::new("puts", "puts", r.puts()),
                Figure::new(
                    "puts_per_s",
                    "puts per second",
                    format!("{:.0}", r.puts_per_second()),
                ),
                Figure::new(
                    "write_phase_puts_per_s",
                    "puts per second while writing",
                    format!("{:.0}", r.write_phase_puts_per_second()),
                ),
                Figure::new("errors", "errors", r.tally.error_count()),
            ],
            tally: r.tally.clone(),
            latency: latency_charts(&r.tally, step_title),
            throughput: vec![throughput(r)],
            tables: Vec::new(),
        }
    }
}

fn step_title(step: &str) -> String {
    let what = match step {
        "create" => "POST a room",
        "put" => "PUT a blob",
        "notify" => "from starting a put until the other peer's watcher sees it",
        "delete" => "DELETE the room",
        _ => "",
    };
    format!("{step}: {what}")
}

fn throughput(r: &Report) -> Chart {
    let t = &r.timeline;
    let line = |label, color, name| Line {
        label,
        color,
        values: plots::per_second(t.get(name).unwrap_or_default(), t.bucket_s, 1.0),
    };
    Chart {
        title: format!(
            "Rounds, completed rooms and failed rooms per second ({})",
            plots::bucket_note(t.bucket_s)
        ),
        svg: plots::over_time(
            "per second",
            t.bucket_s,
            &[
                line("offer/answer rounds", BLUE, "rounds"),
                line("rooms completed", GREEN, "completed_rooms"),
                line("rooms failed", RED, "errors"),
            ],
        ),
    }
}
