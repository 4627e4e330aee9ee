//! `report.html`: one self-contained page per run (no scripts or styles fetched from anywhere,
//! readable offline): the verdict of every checker at the top, latency and throughput over
//! time with the fault periods shaded, latency quantiles, a per-process timeline, and the
//! checker's counterexample for a violation.

mod html;
mod ops;
mod plot;
mod timeline;

pub use checker::faults::FaultPeriod;
pub use html::{escape, render};
pub use ops::{CompletedOp, Quantiles, completed_ops, quantiles};

use crate::store::{
    COUNTEREXAMPLE_FILE, HISTORY_FILE, NEMESIS_FILE, REPORT_FILE, RunDir, TestRecord, read_jsonl,
};
use crate::verdict::Results;
use checker::history::Event;

/// Everything the page shows.
pub struct ReportInput<'a> {
    pub record: Option<&'a TestRecord>,
    pub results: &'a Results,
    pub events: &'a [Event],
    pub faults: &'a [FaultPeriod],
    /// The checker's counterexample page, shown inline.
    pub counterexample_html: Option<&'a str>,
    /// Problems met while reading the run (a truncated history, an unreadable nemesis log).
    pub notes: &'a [String],
}

/// Reads a run directory and writes its `report.html`. Returns the page's path.
pub fn write_for_run(run: &RunDir, results: &Results) -> anyhow::Result<std::path::PathBuf> {
    let mut notes = Vec::new();
    let record = run.read_test_record().ok();
    let events: Vec<Event> = match read_jsonl(&run.file(HISTORY_FILE), "one history event") {
        Ok(read) => {
            if read.cut_off.is_some() {
                notes.push(format!(
                    "{HISTORY_FILE} ends with a partial line (the run was cut off)"
                ));
            }
            read.values
        }
        Err(e) => {
            notes.push(format!("{e:#}"));
            Vec::new()
        }
    };
    let fault_log = checker::faults::read_fault_log(&run.file(NEMESIS_FILE));
    notes.extend(fault_log.note());
    let faults = fault_log.periods;
    let counterexample = results
        .counterexample
        .as_deref()
        .or(Some(COUNTEREXAMPLE_FILE))
        .and_then(|name| std::fs::read_to_string(run.file(name)).ok());
    let page = render(&ReportInput {
        record: record.as_ref(),
        results,
        events: &events,
        faults: &faults,
        counterexample_html: counterexample.as_deref(),
        notes: &notes,
    });
    let path = run.file(REPORT_FILE);
    std::fs::write(&path, page)?;
    Ok(path)
}
