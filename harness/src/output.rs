//! What a run tells its user: the summary printed after each run, the matrix after several,
//! and `--junit FILE` (JUnit XML for CI systems, one test case per checker per run).
//! A violation is a `<failure>`; a checker that could not decide is an `<error>` (the build
//! should not go green on it, and it is not a proven bug either).

use crate::report::escape;
use crate::runner::RunOutcome;
use crate::verdict::{Results, Verdict};
use std::fmt::Write;

/// One run as JUnit sees it.
pub struct JunitRun<'a> {
    /// `schism.<workload>`, the suite name.
    pub suite: String,
    /// Where the report is, put in each case's output so CI links to it.
    pub report: Option<String>,
    /// Seconds the run took.
    pub seconds: f64,
    /// None when the harness failed before any checker ran.
    pub results: Option<&'a Results>,
    /// The harness error, when there are no results.
    pub error: Option<String>,
}

pub fn render(runs: &[JunitRun<'_>]) -> String {
    let mut x =
        String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"schism\">\n");
    for run in runs {
        let checkers = run.results.map(|r| r.checkers.as_slice()).unwrap_or(&[]);
        let failures = checkers
            .iter()
            .filter(|c| c.verdict == Verdict::Invalid)
            .count();
        let errors = checkers
            .iter()
            .filter(|c| c.verdict == Verdict::Unknown)
            .count()
            + usize::from(run.results.is_none() || checkers.is_empty());
        let tests = checkers.len().max(1);
        let _ = writeln!(
            x,
            r#"  <testsuite name="{}" tests="{tests}" failures="{failures}" errors="{errors}" time="{:.3}">"#,
            escape(&run.suite),
            run.seconds
        );
        let output = run
            .report
            .as_deref()
            .map(|r| format!("\n      <system-out>report: {}</system-out>", escape(r)))
            .unwrap_or_default();
        if checkers.is_empty() {
            let why = run.error.clone().unwrap_or_else(|| "no checker ran".into());
            let _ = writeln!(
                x,
                r#"    <testcase classname="{0}" name="harness" time="{1:.3}">
      <error message="{2}">{2}</error>{output}
    </testcase>"#,
                escape(&run.suite),
                run.seconds,
                escape(&why)
            );
        }
        for c in checkers {
            let body = match c.verdict {
                Verdict::Valid => String::new(),
                Verdict::Invalid => format!(
                    "\n      <failure message=\"{0}\" type=\"invalid\">{0}</failure>",
                    escape(&c.summary)
                ),
                Verdict::Unknown => format!(
                    "\n      <error message=\"{0}\" type=\"unknown\">{0}</error>",
                    escape(&c.summary)
                ),
            };
            let _ = writeln!(
                x,
                r#"    <testcase classname="{}" name="{}" time="0">{body}{output}
    </testcase>"#,
                escape(&run.suite),
                escape(&c.name)
            );
        }
        x.push_str("  </testsuite>\n");
    }
    x.push_str("</testsuites>\n");
    x
}
/// One line per checker, the verdict, and where the report is.
pub fn print_summary(outcome: &RunOutcome) {
    if let Some(results) = &outcome.results {
        for c in &results.checkers {
            println!("  {:<24} {:<8} {}", c.name, c.verdict.as_str(), c.summary);
        }
        for n in &results.notes {
            println!("  note: {n}");
        }
        if let Some(cx) = results
            .checkers
            .iter()
            .find_map(|c| c.counterexample.as_ref())
        {
            print!("\n{}\n", cx.timeline());
        }
        println!("verdict: {}", results.verdict.as_str());
    }
    if let Some(e) = &outcome.error {
        eprintln!("schism: {e:#}");
    }
    match (&outcome.report, &outcome.run_dir) {
        (Some(report), _) => println!("report: {}", report.display()),
        (None, Some(dir)) => println!("results: {}", dir.path.display()),
        _ => {}
    }
}

pub fn print_matrix(outcomes: &[RunOutcome]) {
    println!(
        "\n{:<12} {:<24} {:>12} {:<10} run",
        "workload", "faults", "seed", "verdict"
    );
    for o in outcomes {
        let record = o.run_dir.as_ref().and_then(|d| d.read_test_record().ok());
        let (workload, faults, seed) = record
            .map(|r| {
                let f = if r.config.nemesis.is_empty() {
                    "none".into()
                } else {
                    r.config.nemesis.join(",")
                };
                (r.config.workload.to_string(), f, r.config.seed.to_string())
            })
            .unwrap_or_default();
        let verdict = match (&o.results, &o.error) {
            (_, Some(_)) => "failed".to_string(),
            (Some(r), None) => r.verdict.as_str().to_string(),
            (None, None) => "failed".to_string(),
        };
        let path = o
            .run_dir
            .as_ref()
            .map(|d| d.path.display().to_string())
            .unwrap_or_default();
        println!("{workload:<12} {faults:<24} {seed:>12} {verdict:<10} {path}");
    }
}

pub fn outcome_to_junit(o: &RunOutcome) -> JunitRun<'_> {
    let record = o.run_dir.as_ref().and_then(|d| d.read_test_record().ok());
    let suite = record
        .map(|r| {
            let faults = if r.config.nemesis.is_empty() {
                "none".into()
            } else {
                r.config.nemesis.join("+")
            };
            format!(
                "schism.{}.{}.seed{}",
                r.config.workload, faults, r.config.seed
            )
        })
        .unwrap_or_else(|| "schism".into());
    JunitRun {
        suite,
        report: o.report.as_ref().map(|p| p.display().to_string()),
        seconds: o.seconds,
        results: o.results.as_ref(),
        error: o.error.as_ref().map(|e| format!("{e:#}")),
    }
}

pub fn write_junit(path: Option<&std::path::Path>, runs: &[JunitRun<'_>]) -> anyhow::Result<()> {
    if let Some(path) = path {
        std::fs::write(path, render(runs))
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}
