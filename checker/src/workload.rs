//! The workloads by kind, and the one table of what judges each: the harness's CLI parses
//! `--workload` into a [`WorkloadKind`], the runner picks the workload by it, the checker and the
//! gate read its checkers here. Adding a workload is a variant here and a file in the harness's
//! `workload/`.

use serde::{Deserialize, Serialize};

/// A workload, by what it exercises.
#[derive(
    Serialize,
    Deserialize,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Debug,
    PartialOrd,
    Ord,
    clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub enum WorkloadKind {
    /// Reads, writes and compare-and-sets of one znode's data: linearizability.
    Register,
    /// Sequential znodes: unique, increasing suffixes.
    Sequential,
    /// Leader election recipe: at most one leader per epoch.
    Election,
    /// Sessions and ephemerals.
    #[serde(alias = "sessions")]
    Session,
    /// Watches: each change seen once, in order.
    #[serde(alias = "watches")]
    Watch,
}

/// The checkers of a history whose workload is unknown (a Jepsen history, a bare file).
pub const DEFAULT_CHECKERS: &[&str] = &["linearizable", "monotonic-reads"];

/// The checkers every run gets from its other files, whatever its workload: `status.jsonl`
/// (single leader, and convergence where digests were sampled) and `recovery.json`.
pub const RUN_CHECKERS: &[&str] = &["single-leader", "convergence", "recovery"];

impl WorkloadKind {
    /// Every workload, in the order `test-all` runs them.
    pub const ALL: [WorkloadKind; 5] = [
        WorkloadKind::Register,
        WorkloadKind::Sequential,
        WorkloadKind::Election,
        WorkloadKind::Session,
        WorkloadKind::Watch,
    ];

    pub fn name(self) -> &'static str {
        match self {
            WorkloadKind::Register => "register",
            WorkloadKind::Sequential => "sequential",
            WorkloadKind::Election => "election",
            WorkloadKind::Session => "session",
            WorkloadKind::Watch => "watch",
        }
    }

    /// The workload called `name` (the plural of session and watch too, as older runs wrote).
    pub fn from_name(name: &str) -> Option<WorkloadKind> {
        match name {
            "sessions" => Some(WorkloadKind::Session),
            "watches" => Some(WorkloadKind::Watch),
            _ => Self::ALL.into_iter().find(|k| k.name() == name),
        }
    }

    /// `register, sequential, ...`: for usage messages.
    pub fn names() -> String {
        Self::ALL.map(WorkloadKind::name).join(", ")
    }

    /// The checkers its history gets (besides those of `status.jsonl` and `recovery.json`).
    pub fn checkers(self) -> &'static [&'static str] {
        match self {
            WorkloadKind::Register => &["linearizable", "monotonic-reads", "stats"],
            WorkloadKind::Sequential => &["sequential", "monotonic-reads", "stats"],
            WorkloadKind::Election => &["election-safety", "monotonic-reads", "stats"],
            WorkloadKind::Session => &["sessions", "monotonic-reads", "stats"],
            WorkloadKind::Watch => &["watches", "monotonic-reads", "stats"],
        }
    }

    /// Operations it issues only to recover, not to exercise the system: stats does not require
    /// them to have succeeded. A watch client whose event stream broke closes its session to
    /// start afresh, and after a pause or a kill that session has usually expired already (a
    /// definite `session_expired`), so such closes may all fail in a correct run.
    pub fn recovery_ops(self) -> &'static [&'static str] {
        match self {
            WorkloadKind::Watch => &["close_session"],
            _ => &[],
        }
    }

    /// Whether its reads must be linearizable for its history to pass: the register's is checked
    /// for linearizability, so its reads default to linearizable, and any weaker read level is
    /// noted in the results (keeper, like ZooKeeper, promises no more for them).
    pub fn needs_linearizable_reads(self) -> bool {
        self.checkers().contains(&"linearizable")
    }
}

impl std::fmt::Display for WorkloadKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_plurals_are_accepted() {
        for k in WorkloadKind::ALL {
            assert_eq!(WorkloadKind::from_name(k.name()), Some(k));
            let json = serde_json::to_string(&k).unwrap();
            assert_eq!(json, format!("\"{}\"", k.name()));
        }
        assert_eq!(
            WorkloadKind::from_name("watches"),
            Some(WorkloadKind::Watch)
        );
        assert_eq!(WorkloadKind::from_name("bank"), None);
        assert!(WorkloadKind::Register.needs_linearizable_reads());
        assert!(!WorkloadKind::Session.needs_linearizable_reads());
    }
}
