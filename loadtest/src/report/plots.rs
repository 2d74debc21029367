//! SVG charts drawn with plotters into a `String`.
//!
//! plotters is built without font features: the SVG backend writes `<text>` elements with a
//! generic `sans-serif` family and the browser picks the font, so no font files or system
//! font libraries are needed to build or run (layout uses plotters' size estimate).

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::stats::Latency;

/// Width and height of every chart, in pixels.
const SIZE: (u32, u32) = (720, 320);
/// Bars per latency histogram.
const BINS: usize = 40;
const FONT: &str = "sans-serif";

/// One line of a chart over time: a value per bucket.
#[derive(Debug, Clone)]
pub struct Line<'a> {
    pub label: &'a str,
    pub color: RGBColor,
    pub values: Vec<f64>,
}

/// A latency histogram on a log scale with p50 and p99 marked; a note if there are no samples.
pub fn histogram(latency: &Latency) -> Result<String, String> {
    let bins = latency.bins(BINS);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(text)?;
        let (Some(first), Some(last)) = (bins.first(), bins.last()) else {
            return no_samples(root).map(|()| svg);
        };
        let (low, high) = (first.low_ms, last.high_ms);
        let top = bins.iter().map(|b| b.count).max().unwrap_or(1);
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(
                (low..high)
                    .log_scale()
                    .with_key_points(log_ticks(low, high)),
                0..top + top / 8 + 1,
            )
            .map_err(text)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_desc("latency (ms, log scale)")
            .y_desc("samples")
            .x_label_formatter(&|v| ms_label(*v))
            .label_style((FONT, 13))
            .draw()
            .map_err(text)?;
        let bar = BLUE.mix(0.6).filled();
        chart
            .draw_series(
                bins.iter()
                    .map(|b| Rectangle::new([(b.low_ms, 0), (b.high_ms, b.count)], bar)),
            )
            .map_err(text)?;
        for (label, quantile, color) in [("p50", 0.5, GREEN), ("p99", 0.99, RED)] {
            let at = latency.ms_at(quantile).clamp(low, high);
            chart
                .draw_series(LineSeries::new([(at, 0), (at, top)], color.stroke_width(2)))
                .map_err(text)?
                .label(format!("{label} {at:.3} ms"))
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], color));
        }
        legend(&mut chart)?;
        root.present().map_err(text)?;
    }
    Ok(svg)
}

/// Lines of per-second values, drawn as steps (a bucket's value holds for its whole width).
pub fn over_time(y_desc: &str, bucket_s: u64, lines: &[Line<'_>]) -> Result<String, String> {
    let width = bucket_s.max(1) as f64;
    let buckets = lines.iter().map(|l| l.values.len()).max().unwrap_or(0);
    let x_max = (buckets as f64 * width).max(1.0);
    let peak = lines
        .iter()
        .flat_map(|l| l.values.iter().copied())
        .fold(0.0, f64::max);
    let y_max = if peak > 0.0 { peak * 1.12 } else { 1.0 };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(text)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..x_max, 0.0..y_max)
            .map_err(text)?;
        chart
            .configure_mesh()
            .x_desc("seconds since start")
            .y_desc(y_desc)
            .label_style((FONT, 13))
            .draw()
            .map_err(text)?;
        // The first line is drawn widest, so one drawn over it with equal values stays visible.
        for (i, line) in lines.iter().enumerate() {
            let steps = line.values.iter().enumerate().flat_map(|(i, &v)| {
                let x = i as f64 * width;
                [(x, v), (x + width, v)]
            });
            let color = line.color;
            chart
                .draw_series(LineSeries::new(
                    steps,
                    color.stroke_width(if i == 0 { 4 } else { 2 }),
                ))
                .map_err(text)?
                .label(line.label)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], color));
        }
        legend(&mut chart)?;
        root.present().map_err(text)?;
    }
    Ok(svg)
}

fn legend<'a, X, Y>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>,
) -> Result<(), String>
where
    X: Ranged,
    Y: Ranged,
{
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font((FONT, 13))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .draw()
        .map_err(text)
}

fn no_samples(root: DrawingArea<SVGBackend<'_>, plotters::coord::Shift>) -> Result<(), String> {
    let (w, h) = SIZE;
    let style = TextStyle::from((FONT, 16)).pos(Pos::new(HPos::Center, VPos::Center));
    root.draw(&Text::new(
        "no samples",
        (w as i32 / 2, h as i32 / 2),
        style,
    ))
    .map_err(text)?;
    root.present().map_err(text)
}

/// About six ticks spread evenly on a log axis from `low` to `high`, at two significant
/// digits (plotters' own log ticks leave a narrow range unlabelled).
fn log_ticks(low: f64, high: f64) -> Vec<f64> {
    let mut ticks: Vec<f64> = (0..=5)
        .map(|k| two_digits(low * (high / low).powf(f64::from(k) / 5.0)))
        .filter(|v| (low..=high).contains(v))
        .collect();
    ticks.dedup();
    ticks
}

fn two_digits(v: f64) -> f64 {
    let unit = 10f64.powf(v.log10().floor() - 1.0);
    (v / unit).round() * unit
}

/// A tick label with as many decimals as two significant digits need.
fn ms_label(v: f64) -> String {
    let decimals = (1.0 - v.log10().floor()).clamp(0.0, 6.0) as usize;
    format!("{v:.decimals$}")
}

/// Says how wide the buckets are and that the last one may cover only part of its width.
pub fn bucket_note(bucket_s: u64) -> String {
    format!("{bucket_s} s buckets; the last may be partial")
}

/// Counts per bucket as a rate per second, times `scale` (e.g. bytes to Mbit).
pub fn per_second(counts: &[u64], bucket_s: u64, scale: f64) -> Vec<f64> {
    let width = bucket_s.max(1) as f64;
    counts.iter().map(|&c| c as f64 * scale / width).collect()
}

fn text(e: impl std::fmt::Display) -> String {
    e.to_string()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn log_ticks_label_narrow_and_wide_ranges() {
        assert_eq!(log_ticks(0.36, 0.53).len(), 6);
        assert!(
            log_ticks(0.36, 0.53)
                .iter()
                .all(|v| (0.36..=0.53).contains(v))
        );
        assert_eq!(ms_label(0.4), "0.40");
        assert_eq!(ms_label(7.5), "7.5");
        assert_eq!(ms_label(75.0), "75");
        assert!(log_ticks(0.1, 14.0).len() >= 5);
    }

    #[test]
    fn charts_are_svg_even_when_empty() {
        let mut l = Latency::default();
        for ms in [1, 3, 3, 8, 20] {
            l.record(Duration::from_millis(ms));
        }
        for svg in [
            histogram(&l).unwrap(),
            histogram(&Latency::default()).unwrap(),
            over_time("per second", 1, &[]).unwrap(),
            over_time(
                "per second",
                1,
                &[Line {
                    label: "a <b>",
                    color: BLUE,
                    values: vec![1.0, 4.0, 0.0],
                }],
            )
            .unwrap(),
        ] {
            assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(80)]);
            assert!(svg.trim_end().ends_with("</svg>"));
            assert!(!svg.contains("<b>"), "labels are escaped");
        }
    }
}
