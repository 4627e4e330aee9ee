//! When each fault of a run was in effect, read from the run's `nemesis.jsonl`: one JSON line per
//! start and per heal (the nemesis crate's `LogEntry`: `time_ns`, `step`, `fault`,
//! `description`, `phase` `start`|`heal`, `nodes`, `resolution`), timed on the same run clock
//! as the history's `time`. This is the one reader of that file: the checker attaches the periods
//! to counterexamples, the harness's report shades them on its charts.
//!
//! Reading never fails: fault information only explains a verdict, so a missing file means no
//! fault information, and a line that is cut off (a crashed run) or not understood is skipped
//! and counted, for the caller to mention.

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use crate::run_dir::NEMESIS_FILE;
use crate::run_dir::{HEAL_ALL, NemesisEntry};

/// A period during which one fault was in effect, in nanoseconds on the run clock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultPeriod {
    /// The fault's kind: `partition`, `kill`, `pause`, `depose`, ...
    pub fault: String,
    /// What the nemesis called it: `partition isolate-leader`, `kill n2`.
    pub description: String,
    /// How a target that depends on the leader was resolved: `leader is n3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<String>,
    /// The nodes it acted on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<u64>,
    pub start_ns: u64,
    /// `None` when the log has no heal for it (never healed, or the log was cut off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_ns: Option<u64>,
}

impl FaultPeriod {
    /// `partition isolate-leader (leader is n3)`: the description, and whom it hit when that
    /// was decided at run time.
    pub fn label(&self) -> String {
        match &self.resolution {
            Some(r) => format!("{} ({r})", self.description),
            None => self.description.clone(),
        }
    }

    /// True when the fault was in effect at some instant of `[from, to]`; `to == None` is open
    /// ended.
    pub fn overlaps(&self, from: u64, to: Option<u64>) -> bool {
        let started_before_end = to.is_none_or(|to| self.start_ns <= to);
        let ended_after_start = self.end_ns.is_none_or(|end| end >= from);
        started_before_end && ended_after_start
    }
}

/// What a nemesis log held.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultLog {
    /// In order of their start.
    pub periods: Vec<FaultPeriod>,
    /// Non-empty lines that were not a start or heal entry (cut off, not JSON, no time).
    pub skipped_lines: usize,
}

impl FaultLog {
    /// One sentence for a report or a warning when lines were skipped.
    pub fn note(&self) -> Option<String> {
        (self.skipped_lines > 0).then(|| {
            format!(
                "{} lines of {NEMESIS_FILE} were not understood; fault periods may be incomplete",
                self.skipped_lines
            )
        })
    }
}

/// Fault periods from the text of a nemesis log. A heal ends the open period of the same
/// schedule step (of the same description, for a line without a step); `heal-all` ends them all.
pub fn parse(text: &str) -> FaultLog {
    let mut log = FaultLog::default();
    let mut open: HashMap<String, usize> = HashMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let Ok(e) = serde_json::from_str::<NemesisEntry>(line) else {
            log.skipped_lines += 1;
            continue;
        };
        let description = e.description.unwrap_or_else(|| e.fault.clone());
        let id = match &e.step {
            Some(Value::Number(n)) => format!("step {n}"),
            Some(Value::String(s)) => format!("step {s}"),
            _ => description.clone(),
        };
        match (e.fault.as_str(), e.phase.as_str()) {
            (HEAL_ALL, _) => {
                for (_, i) in open.drain() {
                    log.periods[i].end_ns = Some(e.time_ns);
                }
            }
            (_, "start") => {
                // A second start of a still-open step would be a nemesis bug; keep both periods
                // rather than lose one.
                open.insert(id, log.periods.len());
                log.periods.push(FaultPeriod {
                    fault: e.fault,
                    description,
                    resolution: e.resolution,
                    nodes: e.nodes,
                    start_ns: e.time_ns,
                    end_ns: None,
                });
            }
            (_, "heal") => {
                if let Some(i) = open.remove(&id) {
                    log.periods[i].end_ns = Some(e.time_ns);
                }
            }
            _ => log.skipped_lines += 1,
        }
    }
    log
}

/// The fault periods of a nemesis log file; a missing or unreadable file has none. A file that
/// is not UTF-8 throughout (a torn write) is read as far as its lines are.
pub fn read_fault_log(path: &Path) -> FaultLog {
    match std::fs::read(path) {
        Ok(bytes) => parse(&String::from_utf8_lossy(&bytes)),
        Err(_) => FaultLog::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_and_heals_pair_by_step_and_heal_all_ends_the_rest() {
        let log = parse(
            r#"{"time_ns":100,"step":0,"fault":"partition","description":"partition isolate-leader","phase":"start","nodes":[1,2,3],"resolution":"leader is n3"}
{"time_ns":150,"step":1,"fault":"kill","description":"kill n2","phase":"start","nodes":[2]}
{"time_ns":200,"step":0,"fault":"partition","description":"partition isolate-leader","phase":"heal","nodes":[1,2,3]}
not json
{"time_ns":300,"fault":"heal-all","description":"heal all","phase":"heal","nodes":[]}
{"time_ns":400,"step":2,"fault":"pause","description":"pause n1","phase":"start","nod"#,
        );
        assert_eq!(log.periods.len(), 2, "{log:?}");
        let p = &log.periods[0];
        assert_eq!((p.start_ns, p.end_ns), (100, Some(200)));
        assert_eq!(p.label(), "partition isolate-leader (leader is n3)");
        assert_eq!(p.nodes, vec![1, 2, 3]);
        assert_eq!(
            (log.periods[1].label(), log.periods[1].end_ns),
            ("kill n2".into(), Some(300))
        );
        // The line that is not JSON and the one cut off mid-record.
        assert_eq!(log.skipped_lines, 2);
        assert!(log.note().is_some());
    }

    #[test]
    fn an_unhealed_fault_stays_open_and_overlaps_everything_after_it() {
        let log = parse(
            r#"{"time_ns":100,"step":0,"fault":"kill","description":"kill n1","phase":"start"}"#,
        );
        let p = &log.periods[0];
        assert_eq!(p.end_ns, None);
        assert!(p.overlaps(1_000_000, Some(2_000_000)));
        assert!(p.overlaps(0, None));
        assert!(!p.overlaps(0, Some(99)));
        let closed = FaultPeriod {
            end_ns: Some(200),
            ..p.clone()
        };
        assert!(closed.overlaps(200, Some(300)) && closed.overlaps(50, Some(100)));
        assert!(!closed.overlaps(201, None));
    }

    #[test]
    fn a_missing_file_has_no_faults() {
        let log = read_fault_log(Path::new("/nonexistent/nemesis.jsonl"));
        assert_eq!(log, FaultLog::default());
        assert_eq!(log.note(), None);
    }
}
