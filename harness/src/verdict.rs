//! Verdicts, the exit codes they map to, and `results.json`.
//!
//! The harness never decides a verdict itself: every [`CheckerResult`] comes from the `checker`
//! crate. Combining them is the only logic here, and it is conservative: no checker, or any
//! checker that could not decide, never adds up to `valid`.

use serde::{Deserialize, Serialize};

pub use checker::{CheckerResult, RunVerdict, Verdict};

/// Exit code: every checker found the run valid.
pub const EXIT_VALID: i32 = 0;
/// Exit code: at least one checker found a violation.
pub const EXIT_INVALID: i32 = 1;
/// Exit code: no violation found, but at least one checker could not decide.
pub const EXIT_UNKNOWN: i32 = 2;
/// Exit code: the command line (or a file it names) was not usable.
pub const EXIT_BAD_ARGUMENTS: i32 = 254;
/// Exit code: the harness itself failed (cluster setup, I/O, a bug in schism).
pub const EXIT_HARNESS_FAILURE: i32 = 255;

/// The verdict of several checkers (or runs) together: invalid beats unknown beats valid. An
/// empty set is `unknown`: nothing was checked, so nothing was shown to be valid.
pub fn combine(verdicts: impl IntoIterator<Item = Verdict>) -> Verdict {
    let mut verdicts = verdicts.into_iter();
    match verdicts.next() {
        None => Verdict::Unknown,
        Some(first) => verdicts.fold(first, Verdict::combine),
    }
}

/// `results.json`: every checker's verdict and details, as the checker reported them, plus
/// what the harness noticed about the run.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Results {
    /// The combined verdict ([`combine`] of the checkers).
    pub verdict: Verdict,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<String>,
    /// Operations in the history.
    #[serde(default)]
    pub ops: usize,
    pub checkers: Vec<CheckerResult>,
    /// File name (inside the run directory) of the counterexample page, if there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counterexample: Option<String>,
    /// The checker's warnings and the harness's notes (a run cut short, a slow recovery).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl Results {
    pub fn new(checkers: Vec<CheckerResult>) -> Results {
        Results {
            verdict: combine(checkers.iter().map(|c| c.verdict)),
            workload: None,
            ops: 0,
            checkers,
            counterexample: None,
            notes: Vec::new(),
        }
    }
}

impl From<RunVerdict> for Results {
    fn from(v: RunVerdict) -> Results {
        Results {
            verdict: combine(v.checkers.iter().map(|c| c.verdict)),
            workload: v.workload,
            ops: v.ops,
            checkers: v.checkers,
            counterexample: None,
            notes: v.warnings,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worst_verdict_wins_and_nothing_checked_is_not_valid() {
        use Verdict::*;
        assert_eq!(combine([Valid, Valid]), Valid);
        assert_eq!(combine([Valid, Unknown]), Unknown);
        assert_eq!(combine([Unknown, Invalid, Valid]), Invalid);
        assert_eq!(combine([]), Unknown);
    }

    #[test]
    fn exit_codes_are_the_documented_ones() {
        assert_eq!(Verdict::Valid.exit_code(), EXIT_VALID);
        assert_eq!(Verdict::Invalid.exit_code(), EXIT_INVALID);
        assert_eq!(Verdict::Unknown.exit_code(), EXIT_UNKNOWN);
    }

    #[test]
    fn an_empty_check_is_unknown() {
        let v = RunVerdict::from_checkers(Some("register".into()), 0, Vec::new());
        assert_eq!(Results::from(v).verdict, Verdict::Unknown);
    }
}
