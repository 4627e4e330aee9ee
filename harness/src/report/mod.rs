//! `report.html`: one self-contained page per run (no scripts or styles fetched from anywhere,
//! readable offline): the verdict of every checker at the top, latency and throughput over
//! time with the fault periods shaded, latency quantiles, a per-process timeline, and the
//! checker's counterexample for a violation.

mod digest;
mod html;
mod plot;
mod timeline;

pub use checker::faults::FaultPeriod;
pub use digest::Focus;
pub use digest::{CompletedOp, Digest, Digester, LatencyPoint, Quantiles};
pub use html::{escape, render};

use crate::store::{
    COUNTEREXAMPLE_FILE, HISTORY_FILE, NEMESIS_FILE, REPORT_FILE, RunDir, TestRecord,
};
use crate::verdict::Results;
use checker::history::Event;
use checker::run_dir::for_each_jsonl;

/// Everything the page shows.
pub struct ReportInput<'a> {
    pub record: Option<&'a TestRecord>,
    pub results: &'a Results,
    /// The history, digested (see [`Digest`]).
    pub history: &'a Digest,
    pub faults: &'a [FaultPeriod],
    /// The checker's counterexample page, shown inline.
    pub counterexample_html: Option<&'a str>,
    /// Problems met while reading the run (a truncated history, an unreadable nemesis log).
    pub notes: &'a [String],
}

/// Reads a run directory and writes its `report.html`. Returns the page's path. The history
/// is read in one pass, line by line: memory does not grow with the run (see [`Digest`]).
pub fn write_for_run(run: &RunDir, results: &Results) -> anyhow::Result<std::path::PathBuf> {
    let mut notes = Vec::new();
    let record = run.read_test_record().ok();
    let fault_log = checker::faults::read_fault_log(&run.file(NEMESIS_FILE));
    notes.extend(fault_log.note());
    let faults = fault_log.periods;
    let mut digester = Digester::new(Focus::of(results, &faults));
    match for_each_jsonl(
        &run.file(HISTORY_FILE),
        "one history event",
        |_, e: Event| digester.push(&e),
    ) {
        Ok(None) => {}
        Ok(Some(_)) => notes.push(format!(
            "{HISTORY_FILE} ends with a partial line (the run was cut off)"
        )),
        // What was read before the bad line is drawn; the note says where it stopped.
        Err(e) => notes.push(format!("{e:#}")),
    }
    let history = digester.finish();
    let counterexample = results
        .counterexample
        .as_deref()
        .or(Some(COUNTEREXAMPLE_FILE))
        .and_then(|name| std::fs::read_to_string(run.file(name)).ok());
    let page = render(&ReportInput {
        record: record.as_ref(),
        results,
        history: &history,
        faults: &faults,
        counterexample_html: counterexample.as_deref(),
        notes: &notes,
    });
    let path = run.file(REPORT_FILE);
    std::fs::write(&path, page)?;
    Ok(path)
}
