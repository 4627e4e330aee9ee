//! Verdicts, the exit codes they map to, and `results.json`.
//!
//! The harness never decides a verdict itself: every [`CheckerResult`], the fold of them and the
//! table of exit codes come from the `checker` crate; this module only re-exports them and
//! defines `results.json`.

use serde::{Deserialize, Serialize};

pub use checker::verdict::{
    EXIT_BAD_ARGUMENTS, EXIT_HARNESS_FAILURE, EXIT_INVALID, EXIT_UNKNOWN, EXIT_VALID,
};
pub use checker::{CheckerResult, RunVerdict, Verdict};

/// The verdict of several checkers or runs: the checker's one fold ([`Verdict::fold`]).
pub fn combine(verdicts: impl IntoIterator<Item = Verdict>) -> Verdict {
    Verdict::fold(verdicts)
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
            verdict: v.verdict,
            workload: v.workload,
            ops: v.ops,
            checkers: v.checkers,
            counterexample: None,
            notes: v.warnings,
        }
    }
}

/// Several runs' exit codes as one: a harness failure or bad argument first, then the worst
/// verdict.
pub fn combined_exit_code(codes: impl IntoIterator<Item = i32>) -> i32 {
    let codes: Vec<i32> = codes.into_iter().collect();
    if codes.is_empty() {
        return EXIT_HARNESS_FAILURE;
    }
    for special in [EXIT_HARNESS_FAILURE, EXIT_BAD_ARGUMENTS] {
        if codes.contains(&special) {
            return special;
        }
    }
    let verdicts = codes.iter().map(|c| match c {
        0 => Verdict::Valid,
        1 => Verdict::Invalid,
        _ => Verdict::Unknown,
    });
    combine(verdicts).exit_code()
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

    #[test]
    fn combined_exit_codes() {
        assert_eq!(combined_exit_code([0, 0]), 0);
        assert_eq!(combined_exit_code([0, 2, 1]), 1);
        assert_eq!(combined_exit_code([0, 2]), 2);
        assert_eq!(combined_exit_code([1, 255]), 255);
        assert_eq!(combined_exit_code([]), 255);
    }
}
