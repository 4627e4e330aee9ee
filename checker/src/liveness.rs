//! Liveness: after the last fault healed, did the cluster come back? Safety checkers say whether
//! anything wrong was observed; this one says whether the cluster recovered at all, under its own
//! name (`recovery`), so a server that stays down fails a run instead of passing it quietly.
//!
//! The harness observes recovery (it is the only one who can, with a clock and the real nodes)
//! and writes what it saw to `recovery.json`; this module defines that record and judges it, so
//! `schism check` of a stored run gives the same verdict as the run did.

use std::collections::BTreeSet;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::reader::ReadError;
use crate::verdict::{CheckerResult, Counterexample, Verdict};

/// The file in a results directory that holds the [`Recovery`] record.
pub use crate::run_dir::RECOVERY_FILE;

/// The checker's name.
pub const RECOVERY: &str = "recovery";

/// What the harness saw after it healed the last fault. Each `*_ms` is the time after healing
/// at which the step first succeeded, `None` if it did not within `timeout_ms`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Recovery {
    /// How long the cluster was given, from the heal.
    pub timeout_ms: u64,
    /// When the last fault healed, in nanoseconds since the run started.
    pub healed_at: u64,
    /// Every node answered, serving, under exactly one leader.
    pub leader_ms: Option<u64>,
    /// A write was acknowledged.
    pub write_ms: Option<u64>,
    /// A linearizable read of that write was served.
    pub read_ms: Option<u64>,
    /// Every node reported the same applied zxid (in two polls in a row).
    pub converged_ms: Option<u64>,
    /// Each node as last seen: its applied zxid and digest, or why it did not answer.
    #[serde(default)]
    pub nodes: Vec<NodeEnd>,
    /// The last error of each step that did not succeed, for the reader.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

/// A node as the liveness phase last saw it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeEnd {
    pub node: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zxid: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Judges a recovery record: `invalid` when a step never happened or the replicas did not end
/// at one zxid with one digest; `valid` only when all of it was seen.
pub fn recovery(r: &Recovery) -> CheckerResult {
    let mut missing = Vec::new();
    for (step, at) in [
        ("elect a leader that every node follows", r.leader_ms),
        ("acknowledge a write", r.write_ms),
        ("serve a linearizable read", r.read_ms),
        ("bring every node to one applied zxid", r.converged_ms),
    ] {
        if at.is_none() {
            missing.push(step);
        }
    }
    let zxids: BTreeSet<Option<u64>> = r.nodes.iter().map(|n| n.zxid).collect();
    let digests: BTreeSet<Option<u64>> = r.nodes.iter().map(|n| n.digest).collect();
    let ended_as_one =
        !r.nodes.is_empty() && zxids.len() == 1 && digests.len() == 1 && !zxids.contains(&None);
    if missing.is_empty() && !ended_as_one {
        missing.push("end with every replica at one zxid and one digest");
    }
    let ends = r
        .nodes
        .iter()
        .map(|n| match (n.zxid, n.digest, &n.error) {
            (Some(z), Some(d), _) => format!("{} at zxid {z:#x} digest {d:#018x}", n.node),
            (Some(z), None, _) => format!("{} at zxid {z:#x}", n.node),
            (_, _, Some(e)) => format!("{} did not answer ({e})", n.node),
            _ => format!("{} did not answer", n.node),
        })
        .collect::<Vec<_>>();
    let details = json!({
        "timeout_ms": r.timeout_ms,
        "leader_ms": r.leader_ms,
        "write_ms": r.write_ms,
        "read_ms": r.read_ms,
        "converged_ms": r.converged_ms,
        "nodes": r.nodes,
        "errors": r.errors,
    });
    if missing.is_empty() {
        let ms = |v: Option<u64>| v.unwrap_or_default();
        return CheckerResult::new(
            RECOVERY,
            Verdict::Valid,
            format!(
                "after healing: leader in {} ms, write in {} ms, read in {} ms, {} nodes converged in {} ms",
                ms(r.leader_ms),
                ms(r.write_ms),
                ms(r.read_ms),
                r.nodes.len(),
                ms(r.converged_ms)
            ),
            details,
        );
    }
    let mut text = format!(
        "within {} ms of healing the cluster did not {}; nodes: {}",
        r.timeout_ms,
        missing.join(", nor "),
        ends.join(", ")
    );
    if !r.errors.is_empty() {
        text.push_str(&format!("; last errors: {}", r.errors.join("; ")));
    }
    let mut result = CheckerResult::new(RECOVERY, Verdict::Invalid, text.clone(), details);
    result.counterexample = Some(Counterexample::new(RECOVERY, text, Vec::new()));
    result
}

/// Reads `recovery.json` and judges it.
pub fn check_recovery_file(path: &Path) -> Result<CheckerResult, ReadError> {
    Ok(recovery(&read_recovery_file(path)?))
}

/// Reads `recovery.json`.
pub fn read_recovery_file(path: &Path) -> Result<Recovery, ReadError> {
    let text = std::fs::read_to_string(path).map_err(|e| ReadError::Io {
        file: path.to_path_buf(),
        message: e.to_string(),
    })?;
    serde_json::from_str(&text).map_err(|e| ReadError::Malformed {
        file: path.to_path_buf(),
        line: e.line(),
        expected: format!("a recovery record ({e})"),
    })
}

impl Recovery {
    /// Each node's end as a status sample with its digest (where it has both a zxid and a
    /// digest), timed at the convergence: the last comparison of the replicas, which a system
    /// without a digest in its status (ZooKeeper) gets only here, from a walk of each
    /// node's tree.
    pub fn end_samples(&self) -> Vec<crate::run_dir::StatusSample> {
        let Some(converged_ms) = self.converged_ms else {
            return Vec::new();
        };
        let time = self.healed_at + converged_ms * 1_000_000;
        self.nodes
            .iter()
            .filter_map(|n| {
                let (zxid, digest) = (n.zxid?, n.digest?);
                Some(crate::run_dir::StatusSample {
                    time,
                    node: n.node.clone(),
                    status: None,
                    error: None,
                    digest: Some(json!({"zxid": zxid, "digest": digest})),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, zxid: u64, digest: u64) -> NodeEnd {
        NodeEnd {
            node: name.into(),
            zxid: Some(zxid),
            digest: Some(digest),
            error: None,
        }
    }

    fn recovered() -> Recovery {
        Recovery {
            timeout_ms: 30_000,
            healed_at: 1,
            leader_ms: Some(400),
            write_ms: Some(420),
            read_ms: Some(430),
            converged_ms: Some(900),
            nodes: vec![node("n1", 9, 7), node("n2", 9, 7), node("n3", 9, 7)],
            errors: Vec::new(),
        }
    }

    #[test]
    fn a_cluster_that_came_back_and_agrees_is_valid() {
        assert_eq!(recovery(&recovered()).verdict, Verdict::Valid);
    }

    #[test]
    fn a_cluster_that_never_elects_is_invalid() {
        let r = Recovery {
            leader_ms: None,
            write_ms: None,
            read_ms: None,
            converged_ms: None,
            nodes: vec![
                node("n1", 9, 7),
                NodeEnd {
                    node: "n2".into(),
                    error: Some("connection refused".into()),
                    ..NodeEnd::default()
                },
            ],
            ..recovered()
        };
        let c = recovery(&r);
        assert_eq!(c.verdict, Verdict::Invalid);
        assert!(c.summary.contains("elect a leader"), "{}", c.summary);
        assert!(c.summary.contains("n2 did not answer"), "{}", c.summary);
    }

    #[test]
    fn replicas_that_never_converge_are_invalid() {
        let mut r = recovered();
        r.converged_ms = None;
        r.nodes[2] = node("n3", 8, 5);
        assert_eq!(recovery(&r).verdict, Verdict::Invalid);
        // Even with every step seen, different ends are not a recovery.
        let mut r = recovered();
        r.nodes[1] = node("n2", 9, 6);
        let c = recovery(&r);
        assert_eq!(c.verdict, Verdict::Invalid);
        assert!(c.summary.contains("one digest"), "{}", c.summary);
    }

    #[test]
    fn a_record_with_no_nodes_is_not_a_recovery() {
        let mut r = recovered();
        r.nodes.clear();
        assert_eq!(recovery(&r).verdict, Verdict::Invalid);
    }
}
