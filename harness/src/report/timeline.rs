//! The per-process timeline: one row per Jepsen process, one bar per operation from its
//! invocation to its completion, coloured by outcome, with a tooltip naming it.

use super::digest::{CompletedOp, Digest, Focus};
use super::plot::color_of;
use checker::faults::FaultPeriod;
use checker::html::escape;
use plotters::style::RGBColor;
use std::collections::BTreeMap;
use std::fmt::Write;

const ROW_PX: u32 = 16;
const BAR_PX: u32 = 12;
const LABEL_PX: u32 = 60;
const WIDTH_PX: u32 = 1100;

fn css(c: RGBColor) -> String {
    format!("rgb({},{},{})", c.0, c.1, c.2)
}

/// An SVG timeline of the digest's window (at most [`super::digest::MAX_TIMELINE_OPS`] operations): all of
/// a short run; of a long one, those around `focus`, with a sentence saying what was left out.
pub fn timeline_svg(history: &Digest, faults: &[FaultPeriod]) -> (String, Option<String>) {
    let what = match history.focus {
        Focus::Violation(_) => "the violation's first operation",
        Focus::Fault(_) => "the first fault",
        Focus::Start => "",
    };
    let shown: &[CompletedOp] = &history.window;
    let (start, total) = (history.window_start, history.ops);
    let omitted = (total > shown.len() as u64).then(|| {
        if start == 0 {
            format!("Showing the first {} of {total} operations.", shown.len())
        } else {
            format!(
                "Showing operations {} to {} of {total}, around {what}.",
                start + 1,
                start + shown.len() as u64,
            )
        }
    });
    if shown.is_empty() {
        return (String::new(), omitted);
    }
    let t0 = shown.iter().map(|o| o.start_ns).min().unwrap_or(0);
    let t1 = shown
        .iter()
        .map(|o| o.end_ns.unwrap_or(o.start_ns))
        .max()
        .unwrap_or(t0)
        .max(t0 + 1);
    let span = (t1 - t0) as f64;
    let plot_w = f64::from(WIDTH_PX - LABEL_PX - 10);
    let x = |t: u64| f64::from(LABEL_PX) + (t.saturating_sub(t0) as f64 / span) * plot_w;
    let rows: BTreeMap<u64, usize> = {
        let mut procs: Vec<u64> = shown.iter().map(|o| o.process).collect();
        procs.sort_unstable();
        procs.dedup();
        procs.into_iter().enumerate().map(|(i, p)| (p, i)).collect()
    };
    let height = rows.len() as u32 * ROW_PX + 24;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH_PX}" height="{height}" font-family="sans-serif" font-size="11">"#
    );
    for f in faults {
        let end = f.end_ns.unwrap_or(t1).min(t1);
        if end < t0 || f.start_ns > t1 {
            continue;
        }
        let (a, b) = (x(f.start_ns.max(t0)), x(end));
        let _ = write!(
            svg,
            r#"<rect x="{a:.1}" y="0" width="{:.1}" height="{height}" fill="rgb(120,80,200)" fill-opacity="0.10"><title>{}</title></rect>"#,
            (b - a).max(1.0),
            escape(&f.label())
        );
    }
    for (process, row) in &rows {
        let y = *row as u32 * ROW_PX;
        let _ = write!(svg, r#"<text x="4" y="{}">p{process}</text>"#, y + BAR_PX);
    }
    for op in shown {
        let row = rows[&op.process] as u32;
        let (a, b) = (x(op.start_ns), x(op.end_ns.unwrap_or(t1)));
        let color = color_of(op.kind);
        let latency = op
            .latency_ns()
            .map(|l| format!("{:.2} ms", l as f64 / 1e6))
            .unwrap_or_else(|| "never completed".into());
        let title = format!(
            "p{} {} {} {} -> {} {}{} ({latency}){}",
            op.process,
            op.f,
            op.key.as_deref().unwrap_or(""),
            op.invoke_value,
            op.kind.as_str(),
            op.value,
            op.error
                .as_deref()
                .map(|e| format!(" [{e}]"))
                .unwrap_or_default(),
            op.node
                .as_deref()
                .map(|n| format!(" on {n}"))
                .unwrap_or_default(),
        );
        let _ = write!(
            svg,
            r#"<rect x="{a:.1}" y="{}" width="{:.1}" height="{BAR_PX}" fill="{}"><title>{}</title></rect>"#,
            row * ROW_PX + 2,
            (b - a).max(1.5),
            css(color),
            escape(&title)
        );
    }
    let _ = write!(
        svg,
        r#"<text x="{LABEL_PX}" y="{}">{:.3} s</text><text x="{}" y="{}" text-anchor="end">{:.3} s</text></svg>"#,
        height - 6,
        t0 as f64 / 1e9,
        WIDTH_PX - 10,
        height - 6,
        t1 as f64 / 1e9
    );
    (svg, omitted)
}
