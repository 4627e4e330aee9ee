//! `--junit FILE`: JUnit XML for CI systems, one test case per checker per run.
//! A violation is a `<failure>`; a checker that could not decide is an `<error>` (the build
//! should not go green on it, and it is not a proven bug either).

use crate::report::escape;
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
