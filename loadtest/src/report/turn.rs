//! What `loadtest turn` puts on its report page.

use plotters::style::{BLUE, GREEN, RED};

use super::plots::{self, Line};
use super::{Chart, Figure, Page, latency_charts};
use crate::turn::{CredentialSource, Report};

impl Page {
    /// The page of a `loadtest turn` run.
    pub fn turn(r: &Report) -> Self {
        let o = &r.options;
        let credentials = match &o.credentials {
            CredentialSource::Secret(_) => "minted from the shared secret (not shown)".to_owned(),
            CredentialSource::Url(url) => format!("fetched from {}", without_secrets(url)),
        };
        Self {
            scenario: "turn",
            parameters: vec![
                ("server", o.server.to_string()),
                ("transport", o.transport.name().to_owned()),
                ("credentials", credentials),
                ("pairs", o.pairs.to_string()),
                ("packets per second per client", o.rate.to_string()),
                ("payload bytes", o.size.to_string()),
                (
                    "duration",
                    humantime::format_duration(o.duration).to_string(),
                ),
                (
                    "step timeout",
                    humantime::format_duration(o.step_timeout).to_string(),
                ),
                (
                    "refresh every",
                    humantime::format_duration(o.refresh).to_string(),
                ),
            ],
            summary: vec![
                Figure::new("ready_pairs", "pairs ready", r.ready_pairs),
                Figure::new("pairs", "pairs", o.pairs),
                Figure::new(
                    "elapsed_s",
                    "sending (s)",
                    format!("{:.1}", r.elapsed.as_secs_f64()),
                ),
                Figure::new("sent", "packets sent", r.sent),
                Figure::new("received", "packets delivered", r.received),
                Figure::new(
                    "loss_percent",
                    "loss (%)",
                    format!("{:.3}", r.loss() * 100.0),
                ),
                Figure::new(
                    "packets_per_s",
                    "packets per second",
                    format!("{:.0}", r.packets_per_second()),
                ),
                Figure::new(
                    "mbit_per_s",
                    "Mbit/s delivered",
                    format!("{:.2}", r.mbit_per_second()),
                ),
                Figure::new("jitter_ms", "jitter (ms)", format!("{:.3}", r.jitter_ms)),
                Figure::new("errors", "errors", r.tally.error_count()),
            ],
            tally: r.tally.clone(),
            latency: latency_charts(&r.tally, step_title),
            throughput: throughput(r),
            tables: Vec::new(),
        }
    }
}

fn step_title(step: &str) -> String {
    let what = match step {
        "allocate" => "Allocate, the authentication challenge included",
        "bind" => "ChannelBind towards the other relay",
        "refresh" => "Refresh and ChannelBind renewal while sending, both requests",
        "one_way" => "one-way delay, client → relay → relay → client (one clock, same process)",
        _ => "",
    };
    format!("{step}: {what}")
}

fn throughput(r: &Report) -> Vec<Chart> {
    let t = &r.timeline;
    let line = |label, color, name, scale| Line {
        label,
        color,
        values: plots::per_second(t.get(name).unwrap_or_default(), t.bucket_s, scale),
    };
    vec![
        Chart {
            title: format!(
                "Packets per second: delivered, sent, and lost by send time ({})",
                plots::bucket_note(t.bucket_s)
            ),
            svg: plots::over_time(
                "packets per second",
                t.bucket_s,
                &[
                    line("delivered", BLUE, "received", 1.0),
                    line("sent", GREEN, "sent", 1.0),
                    line("lost", RED, "lost", 1.0),
                ],
            ),
        },
        Chart {
            title: format!(
                "Payload delivered, Mbit/s ({})",
                plots::bucket_note(t.bucket_s)
            ),
            svg: plots::over_time(
                "Mbit/s",
                t.bucket_s,
                &[line("delivered", BLUE, "bytes_received", 8.0 / 1e6)],
            ),
        },
    ]
}

/// A credentials URL without user info or query, which may carry keys.
fn without_secrets(url: &str) -> String {
    let url = url.split(['?', '#']).next().unwrap_or_default();
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
            let host = authority.rsplit('@').next().unwrap_or(authority);
            let slash = if rest.contains('/') { "/" } else { "" };
            format!("{scheme}://{host}{slash}{path}")
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::without_secrets;

    #[test]
    fn credentials_urls_lose_user_info_and_query() {
        assert_eq!(
            without_secrets("https://u:p@h:8080/turn-credentials?key=s#x"),
            "https://h:8080/turn-credentials"
        );
        assert_eq!(without_secrets("http://h"), "http://h");
        assert_eq!(without_secrets("h/x?k"), "h/x");
    }
}
