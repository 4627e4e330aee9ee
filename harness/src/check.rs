//! The bridge to the `checker` crate: judge a run directory, keep the counterexample page.

use crate::store::{COUNTEREXAMPLE_FILE, RunDir};
use crate::verdict::Results;
use anyhow::Context;

/// Checks the run's history (and its `/status` samples) with the checkers its workload names
/// (the checker reads the workload from `test.json`), and writes the counterexample page for
/// a violation. CPU-bound: call it from a blocking thread.
pub fn check_run(run: &RunDir) -> anyhow::Result<Results> {
    let options = checker::CheckOptions::default();
    let verdict = checker::check_run_dir(&run.path, &options)
        .with_context(|| format!("checking {}", run.path.display()))?;
    let counterexample = verdict.counterexample().map(checker::counterexample_html);
    let mut results = Results::from(verdict);
    if let Some(page) = counterexample {
        std::fs::write(run.file(COUNTEREXAMPLE_FILE), page)?;
        results.counterexample = Some(COUNTEREXAMPLE_FILE.to_string());
    }
    Ok(results)
}
