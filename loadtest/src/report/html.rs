//! The report page: plain HTML with inline CSS and each chart's SVG inline, so the one file
//! opens anywhere, offline. Everything that came from the user or the wire is escaped.

use std::time::SystemTime;

use super::{Chart, Page, Table};

const STYLE: &str = "\
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1100px;padding:0 1rem;color:#222}\
h1{margin-bottom:.2rem}header p{color:#666;margin-top:0}\
table{border-collapse:collapse;margin:.5rem 0 1rem}\
th,td{padding:.25rem .7rem;border-bottom:1px solid #ddd;text-align:left}\
td.n{text-align:right;font-variant-numeric:tabular-nums}\
figure{margin:1rem 0;display:inline-block;vertical-align:top}\
figcaption{font-weight:600;margin-bottom:.3rem}\
svg{max-width:100%;height:auto;border:1px solid #eee}\
.error{color:#b00}nav a{margin-right:1rem}";

/// The whole page for `page`, written at `written`.
pub fn render(page: &Page, written: SystemTime) -> String {
    let scenario = escape(page.scenario);
    let mut out = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>loadtest {scenario} report</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <header><h1>loadtest {scenario}</h1><p>Report written {} by loadtest {}.</p></header>\n\
         <nav><a href=\"#parameters\">Parameters</a><a href=\"#summary\">Summary</a>{}\
         <a href=\"#latency\">Latency</a>{}</nav>\n",
        humantime::format_rfc3339_seconds(written),
        env!("CARGO_PKG_VERSION"),
        page.tables
            .iter()
            .map(|t| format!("<a href=\"#{}\">{}</a>", escape(t.id), escape(&t.title)))
            .collect::<String>(),
        if page.throughput.is_empty() {
            ""
        } else {
            "<a href=\"#throughput\">Throughput</a>"
        },
    );
    out.push_str("<section id=\"parameters\">\n<h2>Parameters</h2>\n<table>\n");
    for (label, value) in &page.parameters {
        out.push_str(&format!(
            "<tr><th>{}</th><td>{}</td></tr>\n",
            escape(label),
            escape(value)
        ));
    }
    out.push_str("</table>\n</section>\n");
    summary(&mut out, page);
    for table in &page.tables {
        render_table(&mut out, table);
    }
    charts(&mut out, "latency", "Latency histograms", &page.latency);
    if !page.throughput.is_empty() {
        charts(
            &mut out,
            "throughput",
            "Throughput over time",
            &page.throughput,
        );
    }
    out.push_str("</body>\n</html>\n");
    out
}

/// Escapes text for HTML content and quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The same figures as the human table: headline, steps, errors.
fn summary(out: &mut String, page: &Page) {
    out.push_str("<section id=\"summary\">\n<h2>Summary</h2>\n<table>\n");
    for f in &page.summary {
        out.push_str(&format!(
            "<tr><th>{}</th><td class=\"n\" id=\"{}\">{}</td></tr>\n",
            escape(f.label),
            escape(f.id),
            escape(&f.value)
        ));
    }
    out.push_str(
        "</table>\n<h3>Latency by step</h3>\n<table>\n<tr><th>step</th><th>count</th>\
         <th>p50 ms</th><th>p90 ms</th><th>p99 ms</th><th>max ms</th></tr>\n",
    );
    for (step, l) in &page.tally.steps {
        let step = escape(step);
        out.push_str(&format!(
            "<tr><td>{step}</td><td class=\"n\" id=\"count-{step}\">{}</td>\
             <td class=\"n\">{:.3}</td><td class=\"n\">{:.3}</td><td class=\"n\">{:.3}</td>\
             <td class=\"n\">{:.3}</td></tr>\n",
            l.count(),
            l.ms_at(0.5),
            l.ms_at(0.9),
            l.ms_at(0.99),
            l.max_ms()
        ));
    }
    out.push_str("</table>\n<h3>Errors</h3>\n");
    if page.tally.errors.is_empty() {
        out.push_str("<p>none</p>\n");
    } else {
        out.push_str("<table>\n<tr><th>kind</th><th>count</th></tr>\n");
        for (kind, n) in &page.tally.errors {
            out.push_str(&format!(
                "<tr><td>{}</td><td class=\"n\">{n}</td></tr>\n",
                escape(kind)
            ));
        }
        out.push_str("</table>\n");
    }
    out.push_str("</section>\n");
}

fn render_table(out: &mut String, table: &Table) {
    out.push_str(&format!(
        "<section id=\"{}\">\n<h2>{}</h2>\n<table>\n<tr>",
        escape(table.id),
        escape(&table.title)
    ));
    for h in &table.header {
        out.push_str(&format!("<th>{}</th>", escape(h)));
    }
    out.push_str("</tr>\n");
    for row in &table.rows {
        out.push_str("<tr>");
        for cell in row {
            out.push_str(&format!("<td>{}</td>", escape(cell)));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n</section>\n");
}

fn charts(out: &mut String, id: &str, heading: &str, charts: &[Chart]) {
    out.push_str(&format!("<section id=\"{id}\">\n<h2>{heading}</h2>\n"));
    for chart in charts {
        out.push_str(&format!(
            "<figure>\n<figcaption>{}</figcaption>\n",
            escape(&chart.title)
        ));
        match &chart.svg {
            // Drawn by plotters, which escapes the text it writes.
            Ok(svg) => out.push_str(svg),
            Err(e) => out.push_str(&format!(
                "<p class=\"error\">chart not drawn: {}</p>",
                escape(e)
            )),
        }
        out.push_str("\n</figure>\n");
    }
    out.push_str("</section>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Figure;
    use crate::stats::Tally;

    #[test]
    fn user_text_is_escaped_everywhere() {
        let mut tally = Tally::default();
        tally.error("<script>alert(1)</script>");
        let page = Page {
            scenario: "signal",
            parameters: vec![("urls", "http://x/?a=<b>&c=\"d\"".into())],
            summary: vec![Figure::new("rooms", "rooms", "<i>4</i>")],
            tally,
            latency: vec![Chart {
                title: "<u>t</u>".into(),
                svg: Err("<bad>".into()),
            }],
            throughput: Vec::new(),
            tables: vec![Table {
                id: "t",
                title: "<strong>t".into(),
                header: vec!["a"],
                rows: vec![vec!["<em>cell".into()]],
            }],
        };
        let html = render(&page, SystemTime::UNIX_EPOCH);
        for raw in [
            "<script>", "<b>", "\"d\"", "<i>", "<u>", "<bad>", "<strong>", "<em>",
        ] {
            assert!(!html.contains(raw), "{raw} in {html}");
        }
        assert!(html.contains("http://x/?a=&lt;b&gt;&amp;c=&quot;d&quot;"));
        assert!(html.contains("1970-01-01T00:00:00Z"));
        assert!(!html.contains("<script") && !html.contains("<link"));
    }
}
