//! A counterexample as a self-contained HTML page: inline CSS and SVG, no scripts, no fetches.

use std::fmt::Write;

use crate::history::EventType;
use crate::verdict::Counterexample;

/// Two lines per bar: the operation, then where it was served.
const ROW_HEIGHT_PX: usize = 44;
const SLOT_WIDTH_PX: usize = 120;
const LABEL_WIDTH_PX: usize = 60;
const MARGIN_PX: usize = 20;
/// Width of one character of the 11 px monospace font, for shortening labels to their bar.
const CHAR_WIDTH_PX: usize = 7;
/// Fault labels are staggered over this many rows above the processes, so overlapping faults
/// stay readable.
const MAX_FAULT_LABEL_ROWS: usize = 3;
const FAULT_LABEL_ROW_PX: usize = 14;
/// The fault colour of the harness's report (its charts shade fault periods the same way).
const FAULT_FILL: &str = "rgb(120,80,200)";
const FAULT_STROKE: &str = "rgb(90,50,170)";

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

/// The x of an instant on an axis whose slots are events: interpolated between the two events
/// around it, so a fault that began between two events is drawn between them.
struct TimeAxis {
    /// (x, time) of each event, in x order; times made non-decreasing.
    marks: Vec<(usize, u64)>,
    left: usize,
    right: usize,
}

impl TimeAxis {
    fn x(&self, t: u64) -> usize {
        let half = SLOT_WIDTH_PX / 2;
        let (Some(&(x0, t0)), Some(&(xn, tn))) = (self.marks.first(), self.marks.last()) else {
            return self.left;
        };
        if t < t0 {
            return x0.saturating_sub(half).max(self.left);
        }
        if t > tn {
            return (xn + half).min(self.right);
        }
        let k = self.marks.partition_point(|&(_, tk)| tk < t);
        if k == 0 {
            return x0;
        }
        let ((xa, ta), (xb, tb)) = (self.marks[k - 1], self.marks[k]);
        if tb <= ta {
            return xb;
        }
        xa + ((t - ta) as f64 / (tb - ta) as f64 * (xb - xa) as f64) as usize
    }
}

/// The SVG timeline alone (one row per process, one bar per operation, the faults in effect
/// shaded behind them), for embedding in a larger report.
pub fn timeline_svg(cx: &Counterexample) -> String {
    // x positions are the ranks of the invocation and completion events: the order is what
    // matters for linearizability, and ranks keep short operations readable.
    let mut points: Vec<(u64, u64)> = Vec::new();
    for o in &cx.ops {
        points.push((o.invoke_index, o.invoke_time));
        if let (Some(c), false) = (o.complete_index, o.kind == EventType::Info) {
            points.push((c, o.complete_time.unwrap_or(o.invoke_time)));
        }
    }
    points.sort_unstable();
    points.dedup_by_key(|p| p.0);
    let faults = cx.relevant_faults();
    let band_rows = faults.len().min(MAX_FAULT_LABEL_ROWS);
    let top = MARGIN_PX + band_rows * FAULT_LABEL_ROW_PX;
    let x_of = |index: u64| {
        LABEL_WIDTH_PX + MARGIN_PX + points.partition_point(|&(p, _)| p < index) * SLOT_WIDTH_PX
    };
    let right = LABEL_WIDTH_PX + MARGIN_PX + points.len() * SLOT_WIDTH_PX + MARGIN_PX;
    let mut processes: Vec<u64> = cx.ops.iter().map(|o| o.process).collect();
    processes.sort_unstable();
    processes.dedup();
    let height = top + processes.len().max(1) * ROW_HEIGHT_PX + MARGIN_PX;
    let width = right + SLOT_WIDTH_PX * 2;
    let mut latest = 0;
    let axis = TimeAxis {
        marks: points
            .iter()
            .map(|&(index, t)| {
                latest = latest.max(t);
                (x_of(index), latest)
            })
            .collect(),
        left: LABEL_WIDTH_PX,
        right: width - 4,
    };
    let step_of = |i: usize| cx.linearization.iter().position(|s| s.op == i);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="monospace" font-size="11">"#
    );
    // Faults first, so the operations are drawn over their bands.
    for (n, f) in faults.iter().enumerate() {
        let x1 = axis.x(f.start_ns);
        let x2 = f.end_ns.map_or(width, |e| axis.x(e)).max(x1 + 2);
        let label_y = MARGIN_PX + (n % MAX_FAULT_LABEL_ROWS) * FAULT_LABEL_ROW_PX + 10;
        let until = f.end_ns.map_or("not healed".to_string(), |e| {
            format!("until {:.3} s", e as f64 / 1e9)
        });
        let _ = write!(
            svg,
            r##"<g class="fault" data-fault="{d}"><title>{title}</title><rect x="{x1}" y="{y}" width="{w}" height="{h}" fill="{FAULT_FILL}" fill-opacity="0.14" stroke="{FAULT_STROKE}" stroke-opacity="0.5" stroke-dasharray="2 2"/><text x="{tx}" y="{label_y}" fill="{FAULT_STROKE}">{label}</text></g>"##,
            d = escape(&f.description),
            title = escape(&format!(
                "{} from {:.3} s {until}",
                f.label(),
                f.start_ns as f64 / 1e9
            )),
            y = label_y - 10,
            w = x2 - x1,
            h = height - (label_y - 10),
            tx = x1 + 3,
            label = escape(&f.label()),
        );
    }
    for (row, p) in processes.iter().enumerate() {
        let y = top + row * ROW_HEIGHT_PX;
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
        let y = top + row * ROW_HEIGHT_PX + 4;
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
        let served = o.served();
        let during: Vec<String> = cx.faults_during(o).iter().map(|f| f.label()).collect();
        let mut title = format!("[{i}] {}", o.label());
        if !served.is_empty() {
            title.push_str(&format!("\nserved: {served}"));
        }
        if !during.is_empty() {
            title.push_str(&format!("\nduring: {}", during.join(", ")));
        }
        let max_chars = (x2 - x1).saturating_sub(8) / CHAR_WIDTH_PX;
        let _ = write!(
            svg,
            r##"<g class="op"><title>{title}</title><rect x="{x1}" y="{y}" width="{w}" height="{h}" rx="3" fill="{fill}" stroke="{stroke}"{dashed}/><text x="{tx}" y="{ty}" fill="#111">{label}</text><text x="{tx}" y="{ty2}" fill="#555">{served}</text></g>"##,
            title = escape(&title),
            w = x2 - x1,
            h = ROW_HEIGHT_PX - 10,
            tx = x1 + 4,
            ty = y + 14,
            ty2 = y + 28,
            label = escape(&short(&format!("{step}[{i}] {}", o.label()), max_chars)),
            served = escape(&short(&served, max_chars)),
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
        r#"<h2>Timeline</h2><p class="legend"><span style="background:#d7f0d2;border-color:#3a8a2e">in the linearizable prefix (#n: its place)</span><span style="background:#f8d7da;border-color:#b02a37">could not be linearized</span><span style="background:#fff3cd;border-color:#b08800">info (may or may not have happened)</span><span style="background:rgba(120,80,200,0.14);border-color:rgb(90,50,170)">a fault in effect</span></p><div class="timeline">{}</div>"#,
        timeline_svg(cx)
    );
    if let Some(summary) = cx.epochs_summary() {
        let _ = write!(
            h,
            r#"<p class="served">Served in {} (epoch = zxid &gt;&gt; 32: a higher epoch is a newer leader's).</p>"#,
            escape(&summary)
        );
    }
    h.push_str("<h2>Operations</h2><table><tr><th>#</th><th>process</th><th>f</th><th>value</th><th>type</th><th>result</th><th>invoke (ms)</th><th>complete (ms)</th><th>node</th><th>epoch</th><th>zxid</th><th>faults in effect</th><th>history index</th></tr>");
    let t0 = cx.ops.iter().map(|o| o.invoke_time).min().unwrap_or(0);
    let ms = |t: u64| format!("{:.3}", t.saturating_sub(t0) as f64 / 1e6);
    for (i, o) in cx.ops.iter().enumerate() {
        let faults: Vec<String> = cx.faults_during(o).iter().map(|f| f.label()).collect();
        let _ = write!(
            h,
            "<tr><td>{i}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}..{}</td></tr>",
            o.process,
            escape(&o.f),
            escape(&o.value.to_string()),
            o.kind.as_str(),
            escape(&o.result.to_string()),
            ms(o.invoke_time),
            o.complete_time.map_or("never".into(), ms),
            escape(o.node.as_deref().unwrap_or("-")),
            o.epoch().map_or("-".into(), |e| e.to_string()),
            o.zxid.map_or("-".into(), |z| format!("{z:#x}")),
            if faults.is_empty() {
                "none".to_string()
            } else {
                escape(&faults.join(", "))
            },
            o.invoke_index,
            o.complete_index.map_or("-".into(), |c| c.to_string())
        );
    }
    h.push_str("</table>");
    let faults = cx.relevant_faults();
    if !faults.is_empty() {
        h.push_str("<h2>Faults while they ran</h2><table><tr><th>fault</th><th>nodes</th><th>from (ms)</th><th>to (ms)</th></tr>");
        let signed_ms = |t: u64| format!("{:.3}", (t as f64 - t0 as f64) / 1e6);
        for f in faults {
            let nodes: Vec<String> = f.nodes.iter().map(|n| format!("n{n}")).collect();
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&f.label()),
                escape(&nodes.join(" ")),
                signed_ms(f.start_ns),
                f.end_ns.map_or("not healed".into(), signed_ms)
            );
        }
        h.push_str("</table>");
    }
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
