//! Choosing and running the checkers for a history or a results directory.

use std::path::Path;

use serde_json::Value;

use crate::faults::FaultLog;
use crate::history::{self, Event, EventType, Op, WATCH_F};
use crate::invariants;
use crate::linear::{self, Limits, TranslateError};
use crate::model::{
    CasRegisterModel, KvModel, Model, ModelKind, MultiRegisterModel, MutexModel, RegisterModel,
    ZnodeModel,
};
pub use crate::plan::{
    CheckError, CheckOptions, DEFAULT_MEMORY_LIMIT_MIB, DEFAULT_TIME_LIMIT_S, workload_checkers,
    workload_recovery_ops,
};
use crate::plan::{checker_names, model_to_check};
use crate::reader::{self, ReadError, StatusSample};
use crate::run_dir::{HISTORY_FILE, NEMESIS_FILE, RECOVERY_FILE, STATUS_FILE, TEST_FILE};
use crate::verdict::{CheckerResult, RunVerdict, Verdict};

fn malformed_at(
    events: &[Event],
    lines: Option<&[usize]>,
    file: Option<&Path>,
    e: TranslateError,
) -> CheckError {
    let at = match lines.and_then(|l| l.get(e.position)) {
        Some(line) => format!("line {line}"),
        None => format!(
            "event index {}",
            events
                .get(e.position)
                .map_or(e.position as u64, |ev| ev.index)
        ),
    };
    CheckError::Malformed {
        file: file.map(Path::to_path_buf),
        problem: format!("{at}: expected {}", e.expected),
    }
}

fn linearizability(
    ops: &[Op<'_>],
    kind: ModelKind,
    opts: &CheckOptions,
) -> Result<CheckerResult, TranslateError> {
    let limits = opts.limits();
    fn go<M: Model>(m: &M, ops: &[Op<'_>], l: &Limits) -> Result<CheckerResult, TranslateError> {
        linear::check(m, ops, l)
    }
    let initial = opts.initial.clone();
    match kind {
        ModelKind::Register => go(&RegisterModel { initial }, ops, &limits),
        ModelKind::CasRegister => go(&CasRegisterModel { initial }, ops, &limits),
        ModelKind::Znode => go(&ZnodeModel { initial }, ops, &limits),
        ModelKind::Mutex => go(&MutexModel, ops, &limits),
        ModelKind::Kv => go(&KvModel { initial }, ops, &limits),
        ModelKind::MultiRegister => go(&MultiRegisterModel { initial }, ops, &limits),
    }
}

/// Checks a history. `workload` (from `test.json`) picks the checkers; without one, the
/// history is checked for linearizability against `opts.model` or the model its `f` values imply.
pub fn check_history(
    events: &[Event],
    workload: Option<&str>,
    opts: &CheckOptions,
) -> Result<RunVerdict, CheckError> {
    check_events(events, None, None, workload, opts)
}

fn check_events(
    events: &[Event],
    lines: Option<&[usize]>,
    file: Option<&Path>,
    workload: Option<&str>,
    opts: &CheckOptions,
) -> Result<RunVerdict, CheckError> {
    let ops = history::pair(events).map_err(|e| CheckError::Malformed {
        file: file.map(Path::to_path_buf),
        problem: match lines.and_then(|l| l.get(e.position)) {
            Some(line) => format!("line {line}: {}", e.problem),
            None => e.to_string(),
        },
    })?;
    let mut results = Vec::new();
    let mut names = checker_names(opts, workload);
    // A history whose clients also set watches (`schism sim`'s register clients do) is evidence
    // for the watches checker, whatever its workload's own checkers are.
    if !names.contains(&"watches") && ops.iter().any(|o| o.f() == WATCH_F) {
        names.push("watches");
    }
    for name in names {
        let r = match name {
            "linearizable" => {
                let Some(kind) =
                    model_to_check(opts, workload, ops.is_empty(), || ModelKind::infer(&ops))?
                else {
                    continue;
                };
                let r = linearizability(&ops, kind, opts)
                    .map_err(|e| malformed_at(events, lines, file, e))?;
                // An `ok` operation is the only evidence of what the object did: `fail`s took no
                // effect and `info`s may never have. Without one, a history "is linearizable"
                // only vacuously.
                let completed = ops.iter().filter(|o| o.kind() == EventType::Ok).count();
                invariants::require_evidence(r, completed, "no operation completed ok")
            }
            "monotonic-reads" => {
                let r = invariants::monotonic_reads(&ops);
                // A history without sessions (Jepsen's) is not one this checker applies to, so it
                // is left out rather than reported; our workloads record a session on every op.
                if r.verdict == Verdict::Unknown && ops.iter().all(|o| o.session().is_none()) {
                    continue;
                }
                r
            }
            "stats" => invariants::stats(&ops, workload.map_or(&[], workload_recovery_ops)),
            "sequential" => invariants::sequential(&ops),
            "election-safety" => invariants::election(&ops),
            "sessions" => invariants::sessions(&ops),
            "watches" => invariants::watches(&ops),
            _ => continue,
        };
        results.push(r);
    }
    let invocations = ops.len();
    let mut v = RunVerdict::from_checkers(workload.map(str::to_string), invocations, results);
    if invocations == 0 {
        // Every checker already said `unknown` (no evidence) or was left out, and the fold of
        // none is `unknown`; the warning says why in one line.
        v.warnings
            .push("the history has no operations: nothing was checked".to_string());
    }
    Ok(v)
}

/// Checks a history file (any supported format).
pub fn check_file(
    path: &Path,
    workload: Option<&str>,
    opts: &CheckOptions,
) -> Result<RunVerdict, CheckError> {
    if crate::stream::should_stream(path, workload, opts) {
        return crate::stream::check_file(
            path,
            workload,
            opts,
            &crate::stream::StreamConfig::default(),
        )
        .map(|(v, _)| v);
    }
    let h = reader::read_history(path)?;
    let mut v = check_events(&h.events, Some(&h.lines), Some(path), workload, opts)?;
    v.warnings.extend(h.warnings);
    Ok(v)
}

/// The single-leader checker over `status.jsonl` samples.
pub fn check_status(samples: &[StatusSample]) -> CheckerResult {
    invariants::single_leader(samples)
}

/// The workload named in a run's `test.json`: `"workload": "register"` or
/// `"workload": {"name": "register", ...}`.
pub fn workload_of(test: &Value) -> Option<String> {
    match test.get("workload")? {
        Value::String(s) => Some(s.clone()),
        w => w.get("name").and_then(Value::as_str).map(str::to_string),
    }
}

/// Checks a results directory (issue 5's layout): `test.json` names the workload, which picks the
/// checkers for `history.jsonl`; `status.jsonl`, when present, gets the single-leader checker.
pub fn check_run_dir(dir: &Path, opts: &CheckOptions) -> Result<RunVerdict, CheckError> {
    let test_path = dir.join(TEST_FILE);
    let workload = if test_path.exists() {
        let text = std::fs::read_to_string(&test_path).map_err(|e| ReadError::Io {
            file: test_path.clone(),
            message: e.to_string(),
        })?;
        let test: Value = serde_json::from_str(&text).map_err(|e| ReadError::Malformed {
            file: test_path.clone(),
            line: e.line(),
            expected: format!("a JSON object ({e})"),
        })?;
        workload_of(&test)
    } else {
        None
    };
    let history = dir.join(HISTORY_FILE);
    if !history.exists() {
        return Err(CheckError::NotARun {
            dir: dir.to_path_buf(),
            message: format!("no {HISTORY_FILE}: expected a results directory or a history file"),
        });
    }
    let mut v = check_file(&history, workload.as_deref(), opts)?;
    let recovery = dir.join(RECOVERY_FILE);
    let recovery = if recovery.exists() {
        Some(crate::liveness::read_recovery_file(&recovery)?)
    } else {
        None
    };
    let status = dir.join(STATUS_FILE);
    if status.exists() {
        let mut samples = reader::read_status(&status)?;
        v.push(check_status(&samples));
        // The replicas' ends, compared once more (the only comparison for a system whose
        // status has no digest).
        samples.extend(recovery.iter().flat_map(|r| r.end_samples()));
        if samples.iter().any(|s| s.digest.is_some()) {
            v.push(invariants::convergence(&samples));
        }
    }
    if let Some(record) = &recovery {
        v.push(crate::liveness::recovery(record));
    }
    attach_faults(
        &mut v,
        &crate::faults::read_fault_log(&dir.join(NEMESIS_FILE)),
    );
    Ok(v)
}

/// Gives every counterexample the run's fault periods, so it can say which faults were in
/// effect while its operations ran. The checkers never see faults: they judge the history alone.
fn attach_faults(v: &mut RunVerdict, log: &FaultLog) {
    let mut attached = false;
    for cx in v
        .checkers
        .iter_mut()
        .filter_map(|c| c.counterexample.as_mut())
    {
        cx.faults = log.periods.clone();
        attached = true;
    }
    if let (true, Some(note)) = (attached, log.note()) {
        v.warnings.push(note);
    }
}

/// `check_run_dir` for a directory, `check_file` for anything else.
pub fn check_path(path: &Path, opts: &CheckOptions) -> Result<RunVerdict, CheckError> {
    if path.is_dir() {
        check_run_dir(path, opts)
    } else {
        check_file(path, None, opts)
    }
}
