//! The page itself: plain HTML and inline SVG, no scripts, nothing fetched.

use super::ReportInput;
use super::{plot, timeline};
use crate::verdict::Verdict;
pub use checker::html::escape;
use std::fmt::Write;

const STYLE: &str = r#"
body { font-family: system-ui, sans-serif; margin: 24px; color: #1f2328; max-width: 1200px; }
h1 { font-size: 22px; margin-bottom: 4px; }
h2 { font-size: 17px; margin-top: 28px; border-bottom: 1px solid #d0d7de; padding-bottom: 4px; }
table { border-collapse: collapse; font-size: 13px; }
td, th { border: 1px solid #d0d7de; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f6f8fa; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.badge { display: inline-block; padding: 2px 8px; border-radius: 10px; color: white; font-weight: 600; }
.valid { background: #1a7f37; } .invalid { background: #cf222e; } .unknown { background: #9a6700; }
.overall { font-size: 20px; }
.notes { color: #9a6700; }
.meta td:first-child { font-weight: 600; }
code, pre { font-family: ui-monospace, monospace; font-size: 12px; }
pre { white-space: pre-wrap; background: #f6f8fa; padding: 8px; }
.legend span { margin-right: 14px; }
iframe { width: 100%; height: 640px; border: 1px solid #d0d7de; }
"#;

fn badge(v: Verdict) -> String {
    format!(r#"<span class="badge {0}">{0}</span>"#, v.as_str())
}

fn ms(ns: u64) -> String {
    format!("{:.2}", ns as f64 / 1e6)
}

/// The whole page.
pub fn render(input: &ReportInput<'_>) -> String {
    let results = input.results;
    let workload = input
        .record
        .map(|r| r.config.workload.name())
        .unwrap_or("run");
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>schism {}: {}</title><style>{STYLE}</style></head><body>",
        escape(workload),
        results.verdict.as_str()
    );

    // The verdict first: it is what everyone opens the page for.
    let _ = write!(
        h,
        r#"<h1>schism · {}</h1><section id="verdict" data-verdict="{1}"><p class="overall">Verdict: {2}</p><table><tr><th>checker</th><th>verdict</th><th>summary</th></tr>"#,
        escape(workload),
        results.verdict.as_str(),
        badge(results.verdict)
    );
    for c in &results.checkers {
        let _ = write!(
            h,
            r#"<tr class="checker" data-checker="{0}" data-verdict="{1}"><td>{0}</td><td>{2}</td><td>{3}</td></tr>"#,
            escape(&c.name),
            c.verdict.as_str(),
            badge(c.verdict),
            escape(&c.summary)
        );
    }
    if results.checkers.is_empty() {
        h.push_str(
            r#"<tr><td colspan="3">No checker ran, so the run is not known to be valid.</td></tr>"#,
        );
    }
    h.push_str("</table>");
    let notes: Vec<&String> = results.notes.iter().chain(input.notes.iter()).collect();
    if !notes.is_empty() {
        h.push_str(r#"<ul class="notes">"#);
        for n in notes {
            let _ = write!(h, "<li>{}</li>", escape(n));
        }
        h.push_str("</ul>");
    }
    h.push_str("</section>");

    if let Some(record) = input.record {
        let c = &record.config;
        let rows = [
            ("started", record.started_at.clone()),
            ("seed", c.seed.to_string()),
            ("backend", c.backend.name().to_string()),
            ("nodes", c.nodes.to_string()),
            (
                "nemesis",
                if c.nemesis.is_empty() {
                    "none".into()
                } else {
                    c.nemesis.join(", ")
                },
            ),
            (
                "time limit",
                format!("{} s", c.time_limit_ms as f64 / 1000.0),
            ),
            ("rate", format!("{} ops/s", c.rate)),
            ("concurrency", c.concurrency.to_string()),
            (
                "read consistency",
                format!("{:?}", c.read_consistency).to_lowercase(),
            ),
            ("operation timeout", format!("{} ms", c.op_timeout_ms)),
            (
                "server bug",
                c.server_bug.clone().unwrap_or_else(|| "none".into()),
            ),
            ("schism", record.versions.schism.clone()),
            (
                "keeperd",
                record
                    .versions
                    .keeperd
                    .clone()
                    .unwrap_or_else(|| "unknown".into()),
            ),
            ("command", record.command_line.join(" ")),
        ];
        h.push_str(r#"<h2>Run</h2><table class="meta">"#);
        for (k, v) in rows {
            let _ = write!(
                h,
                "<tr><td>{k}</td><td><code>{}</code></td></tr>",
                escape(&v)
            );
        }
        h.push_str("</table>");
    }

    let history = input.history;
    let end_ns = history.last_event_ns.max(
        input
            .faults
            .iter()
            .filter_map(|f| f.end_ns)
            .max()
            .unwrap_or(0),
    );
    let _ = write!(
        h,
        "<h2>Operations</h2><p>{} operations: {} ok, {} fail, {} info (indeterminate). {} faults.</p>",
        history.ops,
        history.ok,
        history.fail,
        history.info,
        input.faults.len()
    );

    h.push_str("<h2>Latency</h2><p>Each operation is a point at its invocation time; shaded bands are fault periods.</p>");
    push_svg(
        &mut h,
        plot::latency_svg(&history.latency_points, input.faults, end_ns),
    );
    h.push_str("<h2>Throughput</h2>");
    push_svg(
        &mut h,
        plot::throughput_svg(&history.completions_per_s, input.faults, end_ns),
    );

    h.push_str("<h2>Latency quantiles (ms)</h2><table><tr><th>f</th><th>outcome</th><th>count</th><th>p50</th><th>p90</th><th>p99</th><th>max</th></tr>");
    for q in &history.quantiles {
        let _ = write!(
            h,
            r#"<tr><td>{}</td><td>{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td></tr>"#,
            escape(&q.f),
            q.kind.as_str(),
            q.count,
            ms(q.p50),
            ms(q.p90),
            ms(q.p99),
            ms(q.max)
        );
    }
    h.push_str("</table>");

    if !input.faults.is_empty() {
        h.push_str("<h2>Faults</h2><table><tr><th>fault</th><th>from (s)</th><th>to (s)</th></tr>");
        for f in input.faults {
            let _ = write!(
                h,
                r#"<tr><td>{}</td><td class="num">{:.3}</td><td class="num">{}</td></tr>"#,
                escape(&f.label()),
                f.start_ns as f64 / 1e9,
                f.end_ns
                    .map(|e| format!("{:.3}", e as f64 / 1e9))
                    .unwrap_or_else(|| "not healed".into())
            );
        }
        h.push_str("</table>");
    }

    h.push_str("<h2>Timeline per process</h2><p class=\"legend\"><span style=\"color:rgb(46,160,67)\">■ ok</span><span style=\"color:rgb(207,34,46)\">■ fail</span><span style=\"color:rgb(191,135,0)\">■ info</span> Hover a bar for the operation.</p>");
    let (svg, omitted) = timeline::timeline_svg(history, input.faults);
    if let Some(sentence) = omitted {
        let _ = write!(h, "<p>{}</p>", escape(&sentence));
    }
    if svg.is_empty() {
        h.push_str("<p>No operations were recorded.</p>");
    } else {
        let _ = write!(h, r#"<div class="timeline">{svg}</div>"#);
    }

    if let Some(page) = input.counterexample_html {
        // The text first: which node and epoch served each operation, under which faults, is
        // readable without scrolling the page below.
        let text = results
            .checkers
            .iter()
            .find_map(|c| c.counterexample.as_ref())
            .map(|cx| {
                format!(
                    r#"<pre class="counterexample">{}</pre>"#,
                    escape(&cx.timeline())
                )
            })
            .unwrap_or_default();
        // srcdoc keeps the checker's page self-contained and its styles apart from ours.
        let _ = write!(
            h,
            r#"<h2 id="counterexample">Counterexample</h2>{text}<iframe sandbox="allow-scripts" title="counterexample" srcdoc="{}"></iframe>"#,
            escape(page)
        );
    }
    for c in results
        .checkers
        .iter()
        .filter(|c| c.verdict != Verdict::Valid)
    {
        if !c.details.is_null() {
            let _ = write!(
                h,
                "<h2>{} details</h2><pre>{}</pre>",
                escape(&c.name),
                escape(&serde_json::to_string_pretty(&c.details).unwrap_or_default())
            );
        }
    }
    h.push_str("</body></html>\n");
    h
}

fn push_svg(h: &mut String, svg: Result<String, String>) {
    match svg {
        Ok(svg) => {
            // plotters writes an XML declaration; inside HTML it is noise.
            let body = match svg.find("<svg") {
                Some(i) => &svg[i..],
                None => &svg,
            };
            h.push_str(r#"<div class="plot">"#);
            h.push_str(body);
            h.push_str("</div>");
        }
        Err(e) => {
            let _ = write!(h, "<p class=\"notes\">Plot unavailable: {}</p>", escape(&e));
        }
    }
}
