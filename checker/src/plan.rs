//! What a check is asked (its options and limits) and what it runs: the checkers a history
//! gets and the model its linearizability is checked against. One plan for both ways of
//! checking a file: in memory (`run`) and streamed (`stream`).

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use crate::linear::Limits;
use crate::model::ModelKind;
use crate::reader::ReadError;
use crate::workload::{DEFAULT_CHECKERS, WorkloadKind};

/// Default time budget of a check, in seconds.
pub const DEFAULT_TIME_LIMIT_S: u64 = 300;
/// Default memory budget of the linearizability search, in MiB.
pub const DEFAULT_MEMORY_LIMIT_MIB: u64 = 2048;

/// How to check.
#[derive(Clone, Debug)]
pub struct CheckOptions {
    /// Check linearizability against this model (overrides the workload's checkers and inference).
    pub model: Option<ModelKind>,
    /// The register's value before the first operation (`null`: nil / no node).
    pub initial: Value,
    pub time_limit: Option<Duration>,
    pub memory_limit_bytes: Option<u64>,
    /// Worker threads for the linearizability search; `None`: all cores.
    pub threads: Option<usize>,
}

impl CheckOptions {
    /// The linearizability search's limits.
    pub fn limits(&self) -> Limits {
        Limits {
            time_limit: self.time_limit,
            memory_limit_bytes: self.memory_limit_bytes,
            threads: self.threads,
        }
    }
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            model: None,
            initial: Value::Null,
            time_limit: Some(Duration::from_secs(DEFAULT_TIME_LIMIT_S)),
            memory_limit_bytes: Some(DEFAULT_MEMORY_LIMIT_MIB << 20),
            threads: None,
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Read(#[from] ReadError),
    /// The history is readable but not well formed (an event, a value the model cannot read).
    #[error("{}: {problem}", file.as_deref().map_or("history".into(), |f| f.display().to_string()))]
    Malformed {
        file: Option<PathBuf>,
        problem: String,
    },
    #[error(
        "cannot tell which model to check the history against (from its `f` values); pass --model register|cas-register|znode|mutex|kv|multi-register"
    )]
    NoModel,
    #[error("{}: {message}", dir.display())]
    NotARun { dir: PathBuf, message: String },
}

/// The checkers a workload's history gets (see [`WorkloadKind::checkers`]; a history whose
/// workload is unknown gets [`DEFAULT_CHECKERS`]).
pub fn workload_checkers(workload: &str) -> &'static [&'static str] {
    WorkloadKind::from_name(workload).map_or(DEFAULT_CHECKERS, WorkloadKind::checkers)
}

/// See [`WorkloadKind::recovery_ops`].
pub fn workload_recovery_ops(workload: &str) -> &'static [&'static str] {
    WorkloadKind::from_name(workload).map_or(&[], WorkloadKind::recovery_ops)
}

/// The checkers a history gets: the workload's, or with `--model` linearizability (and, for a
/// run, Jepsen's stats) whatever the workload.
pub(crate) fn checker_names(opts: &CheckOptions, workload: Option<&str>) -> Vec<&'static str> {
    match (opts.model, workload) {
        (Some(_), None) => vec!["linearizable", "monotonic-reads"],
        // The model overrides the workload's checkers, not Jepsen's stats of its operations.
        (Some(_), Some(_)) => vec!["linearizable", "monotonic-reads", "stats"],
        (None, Some(w)) => workload_checkers(w).to_vec(),
        (None, None) => workload_checkers("").to_vec(),
    }
}

/// The model linearizability is checked against: `--model`, the register workload's znode, or
/// the one the operations imply (`infer`). `None` when there are no operations to infer from
/// (the checker is then left out, and the history reported as empty).
pub(crate) fn model_to_check(
    opts: &CheckOptions,
    workload: Option<&str>,
    no_ops: bool,
    infer: impl FnOnce() -> Option<ModelKind>,
) -> Result<Option<ModelKind>, CheckError> {
    Ok(Some(match (opts.model, workload) {
        (Some(m), _) => m,
        (None, Some("register")) => ModelKind::Znode,
        (None, _) if no_ops => return Ok(None),
        (None, _) => infer().ok_or(CheckError::NoModel)?,
    }))
}
