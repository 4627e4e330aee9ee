//! A counterexample as a self-contained HTML page: inline CSS and SVG, no scripts, no fetches.

use std::fmt::Write;

use crate::history::EventType;
use crate::verdict::Counterexample;

const ROW_HEIGHT_PX: usize = 34;
const SLOT_WIDTH_PX: usize = 120;
const LABEL_WIDTH_PX: usize = 60;
const MARGIN_PX: usize = 20;

/// Escapes text for HTML element content and attribute values.
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

/// The SVG timeline alone (one row per process, one bar per operation), for embedding in a
/// larger report.
pub fn timeline_svg(cx: &Counterexample) -> String {
    // x positions are the ranks of the invocation and completion events: the order is what
    // matters for linearizability, and ranks keep short operations readable.
    let mut points: Vec<u64> = Vec::new();
    for o in &cx.ops {
        points.push(o.invoke_index);
        if let (Some(c), false) = (o.complete_index, o.kind == EventType::Info) {
            points.push(c);
        }
    }
    points.sort_unstable();
    points.dedup();
    let x_of = |index: u64| {
        LABEL_WIDTH_PX + MARGIN_PX + points.partition_point(|&p| p < index) * SLOT_WIDTH_PX
    };
    let right = LABEL_WIDTH_PX + MARGIN_PX + points.len() * SLOT_WIDTH_PX + MARGIN_PX;
    let mut processes: Vec<u64> = cx.ops.iter().map(|o| o.process).collect();
    processes.sort_unstable();
    processes.dedup();
    let height = processes.len().max(1) * ROW_HEIGHT_PX + 2 * MARGIN_PX;
    let width = right + SLOT_WIDTH_PX * 2;
    let step_of = |i: usize| cx.linearization.iter().position(|s| s.op == i);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="monospace" font-size="11">"#
    );
    for (row, p) in processes.iter().enumerate() {
        let y = MARGIN_PX + row * ROW_HEIGHT_PX;
        let _ = write!(
            svg,
            r##"<text x="4" y="{}" fill="#333">p{p}</text><line x1="{LABEL_WIDTH_PX}" y1="{}" x2="{width}" y2="{}" stroke="#eee"/>"##,
            y + 18,
            y + ROW_HEIGHT_PX - 2,
            y + ROW_HEIGHT_PX - 2
        );
    }
    for (i, o) in cx.ops.iter().enumerate() {
        let row = processes.iter().position(|&p| p == o.process).unwrap_or(0);
        let y = MARGIN_PX + row * ROW_HEIGHT_PX + 4;
        let x1 = x_of(o.invoke_index);
        let (x2, dashed) = match (o.complete_index, o.kind) {
            (Some(c), k) if k != EventType::Info => (x_of(c).max(x1 + 10), ""),
            _ => (width - 4, r#" stroke-dasharray="4 3""#),
        };
        let (fill, stroke) = match (o.kind, step_of(i)) {
            (_, Some(_)) => ("#d7f0d2", "#3a8a2e"),
            (EventType::Info, None) => ("#fff3cd", "#b08800"),
            _ => ("#f8d7da", "#b02a37"),
        };
        let step = step_of(i).map_or(String::new(), |s| format!("#{} ", s + 1));
        let _ = write!(
            svg,
            r##"<g><title>{title}</title><rect x="{x1}" y="{y}" width="{w}" height="{h}" rx="3" fill="{fill}" stroke="{stroke}"{dashed}/><text x="{tx}" y="{ty}" fill="#111">{label}</text></g>"##,
            title = escape(&format!("[{i}] {}", o.label())),
            w = x2 - x1,
            h = ROW_HEIGHT_PX - 10,
            tx = x1 + 4,
            ty = y + 16,
            label = escape(&short(
                &format!("{step}[{i}] {}", o.label()),
                (x2 - x1).saturating_sub(8) / 7
            )),
        );
    }
    svg.push_str("</svg>");
    svg
}

fn short(s: &str, max_chars: usize) -> String {
    let max_chars = max_chars.max(6);
    if s.chars().count() <= max_chars {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max_chars - 1).collect();
        t.push('…');
        t
    }
}

/// The whole page for one counterexample.
pub fn counterexample_html(cx: &Counterexample) -> String {
    let mut h = String::new();
    let title = match &cx.key {
        Some(k) => format!("{}: key {k}", cx.checker),
        None => cx.checker.clone(),
    };
    let _ = write!(
        h,
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Counterexample: {t}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
h1 {{ font-size: 1.3em; }} .verdict {{ color: #b02a37; font-weight: bold; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
td, th {{ border: 1px solid #ccc; padding: 3px 8px; font-family: monospace; font-size: 12px; text-align: left; }}
.timeline {{ overflow-x: auto; border: 1px solid #ddd; padding: 4px; }}
.legend span {{ display: inline-block; padding: 0 6px; margin-right: 8px; border: 1px solid; }}
pre {{ background: #f6f6f6; padding: 8px; }}
</style></head><body>
<h1>Counterexample: {t}</h1>
<p class="verdict">invalid</p>
<p>{e}</p>
"#,
        t = escape(&title),
        e = escape(&cx.explanation)
    );
    if let Some(m) = &cx.model {
        let _ = write!(
            h,
            "<p>Model <b>{}</b>; initial state <b>{}</b>.</p>",
            escape(m),
            escape(cx.initial_state.as_deref().unwrap_or("?"))
        );
    }
    let _ = write!(
        h,
        r#"<h2>Timeline</h2><p class="legend"><span style="background:#d7f0d2;border-color:#3a8a2e">in the linearizable prefix (#n: its place)</span><span style="background:#f8d7da;border-color:#b02a37">could not be linearized</span><span style="background:#fff3cd;border-color:#b08800">info (may or may not have happened)</span></p><div class="timeline">{}</div>"#,
        timeline_svg(cx)
    );
    h.push_str("<h2>Operations</h2><table><tr><th>#</th><th>process</th><th>f</th><th>value</th><th>type</th><th>result</th><th>invoke (ms)</th><th>complete (ms)</th><th>history index</th></tr>");
    let t0 = cx.ops.iter().map(|o| o.invoke_time).min().unwrap_or(0);
    let ms = |t: u64| format!("{:.3}", t.saturating_sub(t0) as f64 / 1e6);
    for (i, o) in cx.ops.iter().enumerate() {
        let _ = write!(
            h,
            "<tr><td>{i}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}..{}</td></tr>",
            o.process,
            escape(&o.f),
            escape(&o.value.to_string()),
            o.kind.as_str(),
            escape(&o.result.to_string()),
            ms(o.invoke_time),
            o.complete_time.map_or("never".into(), ms),
            o.invoke_index,
            o.complete_index.map_or("-".into(), |c| c.to_string())
        );
    }
    h.push_str("</table>");
    if !cx.linearization.is_empty() {
        h.push_str("<h2>Longest linearizable prefix</h2><table><tr><th>step</th><th>operation</th><th>state after</th></tr>");
        let _ = write!(
            h,
            "<tr><td>0</td><td>(initial)</td><td>{}</td></tr>",
            escape(cx.initial_state.as_deref().unwrap_or(""))
        );
        for (n, s) in cx.linearization.iter().enumerate() {
            let label = cx.ops.get(s.op).map_or(String::new(), |o| o.label());
            let _ = write!(
                h,
                "<tr><td>{}</td><td>[{}] {}</td><td>{}</td></tr>",
                n + 1,
                s.op,
                escape(&label),
                escape(&s.state)
            );
        }
        h.push_str("</table>");
    }
    let _ = writeln!(
        h,
        "<h2>As text</h2><pre>{}</pre></body></html>",
        escape(&cx.timeline())
    );
    h
}
