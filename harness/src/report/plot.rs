//! The report's charts, drawn by plotters into SVG strings that the page inlines.

use super::digest::LatencyPoint;
use checker::faults::FaultPeriod;
use checker::history::EventType;
use plotters::prelude::*;

/// Most buckets of the throughput plot.
const MAX_THROUGHPUT_BUCKETS: usize = 600;
const WIDTH_PX: u32 = 1100;
const HEIGHT_PX: u32 = 380;

pub const OK_COLOR: RGBColor = RGBColor(46, 160, 67);
pub const FAIL_COLOR: RGBColor = RGBColor(207, 34, 46);
pub const INFO_COLOR: RGBColor = RGBColor(191, 135, 0);
const FAULT_COLOR: RGBColor = RGBColor(120, 80, 200);

pub fn color_of(kind: EventType) -> RGBColor {
    match kind {
        EventType::Ok => OK_COLOR,
        EventType::Fail => FAIL_COLOR,
        _ => INFO_COLOR,
    }
}

fn secs(ns: u64) -> f64 {
    ns as f64 / 1e9
}

/// Each operation a point at (invocation time, latency), coloured by outcome; log scale. The
/// points are the digest's sample (see `digest::Digester`).
pub fn latency_svg(
    points: &[LatencyPoint],
    faults: &[FaultPeriod],
    end_ns: u64,
) -> Result<String, String> {
    let shown: Vec<(f64, f64, EventType)> = points
        .iter()
        .map(|p| (secs(p.start_ns), p.latency_ns as f64 / 1e6, p.kind))
        .collect();
    let max_ms = shown.iter().map(|p| p.1).fold(1.0f64, f64::max) * 2.0;
    let min_ms = shown
        .iter()
        .map(|p| p.1)
        .filter(|v| *v > 0.0)
        .fold(max_ms, f64::min)
        .max(0.001)
        / 2.0;
    let x_end = secs(end_ns).max(1.0);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH_PX, HEIGHT_PX)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(64)
            .build_cartesian_2d(0f64..x_end, (min_ms..max_ms).log_scale())
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("time since start (s)")
            .y_desc("latency (ms)")
            .light_line_style(WHITE)
            .draw()
            .map_err(|e| e.to_string())?;
        shade_faults(&mut chart, faults, x_end, min_ms, max_ms, true)?;
        for kind in [EventType::Ok, EventType::Fail, EventType::Info] {
            let color = color_of(kind);
            chart
                .draw_series(
                    shown
                        .iter()
                        .filter(|p| p.2 == kind)
                        .map(|p| Circle::new((p.0, p.1), 2, color.filled())),
                )
                .map_err(|e| e.to_string())?
                .label(kind.as_str())
                .legend(move |(x, y)| Circle::new((x, y), 4, color.filled()));
        }
        draw_legend(&mut chart)?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

/// Completions per second over time, one line per outcome: the digest's per-second counts,
/// summed into at most [`MAX_THROUGHPUT_BUCKETS`] buckets of whole seconds.
pub fn throughput_svg(
    completions_per_s: &[[u64; 3]],
    faults: &[FaultPeriod],
    end_ns: u64,
) -> Result<String, String> {
    let x_end = secs(end_ns).max(1.0);
    let bucket_secs = (x_end / MAX_THROUGHPUT_BUCKETS as f64).ceil().max(1.0) as usize;
    let bucket_s = bucket_secs as f64;
    let counts: Vec<[u64; 3]> = completions_per_s
        .chunks(bucket_secs)
        .map(|seconds| {
            seconds.iter().fold([0u64; 3], |mut sum, c| {
                for (s, c) in sum.iter_mut().zip(c) {
                    *s += c;
                }
                sum
            })
        })
        .collect();
    let rate = |c: u64| c as f64 / bucket_s;
    let max_rate = counts
        .iter()
        .flat_map(|c| c.iter())
        .map(|c| rate(*c))
        .fold(1.0f64, f64::max)
        * 1.15;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH_PX, HEIGHT_PX)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(64)
            .build_cartesian_2d(0f64..x_end, 0f64..max_rate)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("time since start (s)")
            .y_desc("completions per second")
            .light_line_style(WHITE)
            .draw()
            .map_err(|e| e.to_string())?;
        shade_faults(&mut chart, faults, x_end, 0.0, max_rate, false)?;
        for (slot, kind) in [EventType::Ok, EventType::Fail, EventType::Info]
            .into_iter()
            .enumerate()
        {
            let color = color_of(kind);
            chart
                .draw_series(LineSeries::new(
                    counts
                        .iter()
                        .enumerate()
                        .map(|(i, c)| ((i as f64 + 0.5) * bucket_s, rate(c[slot]))),
                    color.stroke_width(2),
                ))
                .map_err(|e| e.to_string())?
                .label(kind.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
                });
        }
        draw_legend(&mut chart)?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

/// The series' legend, in a box at the upper right.
fn draw_legend<'a, DB, CT>(chart: &mut ChartContext<'a, DB, CT>) -> Result<(), String>
where
    DB: DrawingBackend + 'a,
    CT: CoordTranslate,
{
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .draw()
        .map_err(|e| e.to_string())
}

/// Shades each fault's period and writes its label at the top, staggered in three rows so
/// overlapping faults stay readable.
fn shade_faults<DB, Y>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<plotters::coord::types::RangedCoordf64, Y>>,
    faults: &[FaultPeriod],
    x_end: f64,
    y_low: f64,
    y_high: f64,
    log_y: bool,
) -> Result<(), String>
where
    DB: DrawingBackend,
    Y: Ranged<ValueType = f64>,
{
    let top = |row: usize| -> f64 {
        // Label rows just under the top edge, in the axis's own scale.
        let frac = 0.97 - 0.06 * row as f64;
        if log_y {
            (y_low.ln() + (y_high.ln() - y_low.ln()) * frac).exp()
        } else {
            y_low + (y_high - y_low) * frac
        }
    };
    chart
        .draw_series(faults.iter().map(|f| {
            let end = f.end_ns.map(secs).unwrap_or(x_end).min(x_end);
            Rectangle::new(
                [(secs(f.start_ns), y_low), (end, y_high)],
                FAULT_COLOR.mix(0.12).filled(),
            )
        }))
        .map_err(|e| e.to_string())?;
    chart
        .draw_series(faults.iter().enumerate().map(|(i, f)| {
            Text::new(
                f.label(),
                (secs(f.start_ns), top(i % 3)),
                ("sans-serif", 12).into_font().color(&FAULT_COLOR),
            )
        }))
        .map_err(|e| e.to_string())?;
    Ok(())
}
