//! What a check concludes: a verdict per checker, details, and a counterexample people can read.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::faults::FaultPeriod;
use crate::history::{EventType, Op};

/// `unknown` is honest when a checker ran out of budget or had nothing to check; it is never
/// reported as `valid`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Valid,
    Invalid,
    Unknown,
}

/// Exit code: every checker found the history valid.
pub const EXIT_VALID: i32 = 0;
/// Exit code: at least one checker found a violation (of safety or of liveness).
pub const EXIT_INVALID: i32 = 1;
/// Exit code: no violation found, but a checker could not decide or had nothing to check.
pub const EXIT_UNKNOWN: i32 = 2;
/// Exit code: the command line (or a file it names) was not usable.
pub const EXIT_BAD_ARGUMENTS: i32 = 254;
/// Exit code: the harness itself failed (cluster setup, I/O, a bug in schism).
pub const EXIT_HARNESS_FAILURE: i32 = 255;

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Valid => "valid",
            Verdict::Invalid => "invalid",
            Verdict::Unknown => "unknown",
        }
    }

    /// `schism`'s exit code for this verdict: the one table of them.
    pub fn exit_code(self) -> i32 {
        match self {
            Verdict::Valid => EXIT_VALID,
            Verdict::Invalid => EXIT_INVALID,
            Verdict::Unknown => EXIT_UNKNOWN,
        }
    }

    /// Invalid beats unknown beats valid.
    pub fn combine(self, other: Verdict) -> Verdict {
        use Verdict::*;
        match (self, other) {
            (Invalid, _) | (_, Invalid) => Invalid,
            (Unknown, _) | (_, Unknown) => Unknown,
            _ => Valid,
        }
    }

    /// The verdict of several checkers (or runs) together, the only fold of verdicts there is:
    /// invalid beats unknown beats valid, and an empty set is `unknown`, because nothing was
    /// checked, so nothing was shown to be valid.
    pub fn fold(verdicts: impl IntoIterator<Item = Verdict>) -> Verdict {
        let mut verdicts = verdicts.into_iter();
        match verdicts.next() {
            None => Verdict::Unknown,
            Some(first) => verdicts.fold(first, Verdict::combine),
        }
    }
}

/// One operation as shown in a counterexample.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OpView {
    pub process: u64,
    pub f: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// `ok`, `fail` or `info`.
    #[serde(rename = "type")]
    pub kind: EventType,
    pub value: Value,
    pub result: Value,
    /// `index` of the invocation and the completion events in the history.
    pub invoke_index: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub complete_index: Option<u64>,
    pub invoke_time: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub complete_time: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zxid: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

impl OpView {
    pub fn of(op: &Op<'_>) -> OpView {
        OpView {
            process: op.process(),
            f: op.f().to_string(),
            key: op.key().map(str::to_string),
            kind: op.kind(),
            value: op.value().clone(),
            result: op.result().clone(),
            invoke_index: op.invoke.index,
            complete_index: op.complete.map(|c| c.index),
            invoke_time: op.invoke_time(),
            complete_time: op.complete_time(),
            session: op.session(),
            zxid: op.zxid(),
            node: op.node().map(str::to_string),
        }
    }

    /// The epoch of the zxid the server replied with: the leader's term it was served in
    /// (keeper-wire's `epoch_of`: `zxid >> 32`).
    pub fn epoch(&self) -> Option<u64> {
        self.zxid.map(|z| u64::from(keeper_wire::epoch_of(z)))
    }

    /// `n3 · epoch 1 · zxid 0x100000007`: where the operation was served and which state it
    /// saw. In hex the zxid reads as the epoch followed by eight digits of its counter
    /// (`zxid & 0xffffffff`). Empty when the history recorded neither.
    pub fn served(&self) -> String {
        let mut parts = Vec::new();
        if let Some(n) = &self.node {
            parts.push(n.clone());
        }
        if let (Some(z), Some(e)) = (self.zxid, self.epoch()) {
            parts.push(format!("epoch {e}"));
            parts.push(format!("zxid {z:#x}"));
        } else if self.node.is_some() {
            parts.push("no zxid".to_string());
        }
        parts.join(" · ")
    }

    /// `p3 write 5 -> ok`.
    pub fn label(&self) -> String {
        let mut s = format!("p{} {}", self.process, self.f);
        if !self.value.is_null() {
            s.push(' ');
            s.push_str(&self.value.to_string());
        }
        s.push_str(" -> ");
        s.push_str(self.kind.as_str());
        if !self.result.is_null() && self.result != self.value {
            s.push(' ');
            s.push_str(&self.result.to_string());
        }
        s
    }
}

/// One step of a partial linearization: the operation (index into `ops`) and the state after it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LinearizedStep {
    pub op: usize,
    pub state: String,
}

/// A small history that shows a violation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Counterexample {
    pub checker: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The operations involved, in invocation order.
    pub ops: Vec<OpView>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_state: Option<String>,
    /// The longest linearizable prefix found (linearizability only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub linearization: Vec<LinearizedStep>,
    /// What is wrong, in a sentence or two.
    pub explanation: String,
    /// The fault periods of the run (from its nemesis log), on the clock of the operations'
    /// times; empty when the history came without one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub faults: Vec<FaultPeriod>,
}

impl Counterexample {
    pub fn new(checker: &str, explanation: String, ops: Vec<OpView>) -> Counterexample {
        Counterexample {
            checker: checker.to_string(),
            key: None,
            model: None,
            ops,
            initial_state: None,
            linearization: Vec::new(),
            explanation,
            faults: Vec::new(),
        }
    }

    /// The instant the last operation ended (or began, for one that never did): an
    /// indeterminate operation counts as running until then.
    pub fn end_time(&self) -> u64 {
        self.ops
            .iter()
            .map(|o| o.complete_time.unwrap_or(o.invoke_time).max(o.invoke_time))
            .max()
            .unwrap_or(0)
    }

    /// When the operation may have taken effect: from its invocation to its completion; an
    /// `info` one until the end of the counterexample.
    pub fn running(&self, op: &OpView) -> (u64, u64) {
        match (op.kind, op.complete_time) {
            (EventType::Info, _) | (_, None) => (op.invoke_time, self.end_time()),
            (_, Some(end)) => (op.invoke_time, end),
        }
    }

    /// The faults in effect at some instant while `op` ran.
    pub fn faults_during(&self, op: &OpView) -> Vec<&FaultPeriod> {
        let (from, to) = self.running(op);
        self.faults
            .iter()
            .filter(|f| f.overlaps(from, Some(to)))
            .collect()
    }

    /// The faults in effect at some instant while any operation ran.
    pub fn relevant_faults(&self) -> Vec<&FaultPeriod> {
        let Some(from) = self.ops.iter().map(|o| o.invoke_time).min() else {
            return Vec::new();
        };
        let to = self.end_time();
        self.faults
            .iter()
            .filter(|f| f.overlaps(from, Some(to)))
            .collect()
    }

    /// Which node served which operations in which epoch: `epoch 1: n3 [0] [2]; epoch 2: n1
    /// [1]`. Ordered by epoch, so a newer leader's operations come after an older one's.
    /// `None` when no operation has a zxid.
    pub fn epochs_summary(&self) -> Option<String> {
        let mut groups: std::collections::BTreeMap<(u64, &str), Vec<usize>> = Default::default();
        for (i, o) in self.ops.iter().enumerate() {
            if let Some(e) = o.epoch() {
                groups
                    .entry((e, o.node.as_deref().unwrap_or("?")))
                    .or_default()
                    .push(i);
            }
        }
        if groups.is_empty() {
            return None;
        }
        let parts: Vec<String> = groups
            .iter()
            .map(|((e, n), ops)| {
                let ids: Vec<String> = ops.iter().map(|i| format!("[{i}]")).collect();
                format!("epoch {e} on {n}: {}", ids.join(" "))
            })
            .collect();
        Some(parts.join("; "))
    }

    /// A short text timeline: one line per operation, then the partial linearization.
    pub fn timeline(&self) -> String {
        let mut out = String::new();
        if let Some(k) = &self.key {
            out.push_str(&format!("key {k}"));
            if let Some(m) = &self.model {
                out.push_str(&format!(", model {m}"));
            }
            out.push('\n');
        }
        let t0 = self.ops.iter().map(|o| o.invoke_time).min().unwrap_or(0);
        let ms = |t: u64| (t.saturating_sub(t0)) as f64 / 1e6;
        // A second line per operation says where it was served and under which faults, when
        // the history or the run recorded either (a Jepsen history usually has neither).
        let explained = !self.faults.is_empty()
            || self
                .ops
                .iter()
                .any(|o| o.node.is_some() || o.zxid.is_some());
        for (i, o) in self.ops.iter().enumerate() {
            let end = match o.complete_time {
                Some(t) if o.kind != EventType::Info => format!("{:>10.3}", ms(t)),
                _ => format!("{:>10}", "never"),
            };
            out.push_str(&format!(
                "  [{i:>2}] {:>10.3} .. {end} ms  {}\n",
                ms(o.invoke_time),
                o.label()
            ));
            if explained {
                let served = match o.served() {
                    s if s.is_empty() => "node not recorded".to_string(),
                    s => s,
                };
                let faults: Vec<String> = self.faults_during(o).iter().map(|f| f.label()).collect();
                let during = if faults.is_empty() {
                    "no fault active".to_string()
                } else {
                    format!("during {}", faults.join(", "))
                };
                out.push_str(&format!("{:>7}{served} · {during}\n", ""));
            }
        }
        if let Some(summary) = self.epochs_summary() {
            out.push_str(&format!("served in: {summary}\n"));
        }
        let faults = self.relevant_faults();
        if !faults.is_empty() {
            out.push_str("faults while they ran (ms on the same clock):\n");
            let signed_ms = |t: u64| (t as f64 - t0 as f64) / 1e6;
            for f in faults {
                let end = f.end_ns.map_or(format!("{:>10}", "not healed"), |e| {
                    format!("{:>10.3}", signed_ms(e))
                });
                out.push_str(&format!(
                    "  {:>10.3} .. {end} ms  {}\n",
                    signed_ms(f.start_ns),
                    f.label()
                ));
            }
        }
        if self.initial_state.is_some() || !self.linearization.is_empty() {
            out.push_str(&format!(
                "longest linearizable prefix ({} of {} ops), from {}:\n",
                self.linearization.len(),
                self.ops.len(),
                self.initial_state.as_deref().unwrap_or("the initial state")
            ));
            for s in &self.linearization {
                out.push_str(&format!("  [{:>2}] => {}\n", s.op, s.state));
            }
        }
        out.push_str(&self.explanation);
        out.push('\n');
        out
    }
}

/// The result of one checker.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckerResult {
    /// `linearizable`, `single-leader`, `election-safety`, `sequential`, `sessions`, `watches`,
    /// `monotonic-reads`.
    pub name: String,
    pub verdict: Verdict,
    /// One line for the terminal.
    pub summary: String,
    pub details: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counterexample: Option<Counterexample>,
}

impl CheckerResult {
    pub fn new(name: &str, verdict: Verdict, summary: String, details: Value) -> CheckerResult {
        CheckerResult {
            name: name.to_string(),
            verdict,
            summary,
            details,
            counterexample: None,
        }
    }

    /// `linearizable     valid    1000 keys, 1000000 ops`.
    pub fn line(&self) -> String {
        format!(
            "{:<18} {:<8} {}",
            self.name,
            self.verdict.as_str(),
            self.summary
        )
    }
}

/// Every checker's result for one history: what `results.json` holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunVerdict {
    pub verdict: Verdict,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<String>,
    /// Operations in the history (invocations).
    pub ops: usize,
    pub checkers: Vec<CheckerResult>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl RunVerdict {
    pub fn from_checkers(
        workload: Option<String>,
        ops: usize,
        checkers: Vec<CheckerResult>,
    ) -> RunVerdict {
        let verdict = Verdict::fold(checkers.iter().map(|c| c.verdict));
        RunVerdict {
            verdict,
            workload,
            ops,
            checkers,
            warnings: Vec::new(),
        }
    }

    /// Adds a checker's result and folds the verdict again.
    pub fn push(&mut self, result: CheckerResult) {
        self.checkers.push(result);
        self.verdict = Verdict::fold(self.checkers.iter().map(|c| c.verdict));
    }

    /// The first counterexample, for the report.
    pub fn counterexample(&self) -> Option<&Counterexample> {
        self.checkers.iter().find_map(|c| c.counterexample.as_ref())
    }
}
