//! The results store: one directory per run, `results/<workload>/<timestamp>-<seed>/`. The
//! file names, record types, reader and writer are `checker::run_dir`'s (re-exported here); this
//! module creates, names, lists and links the directories.
//!
//! ```text
//! test.json       the configuration, seed, versions and command line (written first)
//! schedule.json   the fault schedule, written before the nemesis starts
//! history.jsonl   one event per line, streamed and fsynced while the test runs
//! nemesis.jsonl   every fault with its commands and times
//! status.jsonl    samples of every node's GET /status
//! nodes/<node>/   each node's logs
//! recovery.json   what the liveness phase saw after the heal (judged by the `recovery` checker)
//! results.json    every checker's verdict
//! report.html     the self-contained report
//! ```
//! `results/latest` is a relative symlink to the newest run. Everything a crashed run wrote up
//! to the crash stays checkable: the history is synced at least every [`SYNC_INTERVAL_MS`].

use crate::config::TestConfig;
use crate::verdict::{Results, Verdict};
use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

pub use checker::run_dir::{
    COUNTEREXAMPLE_FILE, HISTORY_FILE, JsonlWriter, LATEST_LINK, NEMESIS_FILE, NODES_DIR,
    RECOVERY_FILE, REPORT_FILE, RESULTS_FILE, SCHEDULE_FILE, STATUS_FILE, TEST_FILE, read_json,
    read_jsonl, write_json_synced,
};

/// Longest a streamed file may hold unsynced data, so a crash loses at most this much.
pub const SYNC_INTERVAL_MS: u64 = 1000;
/// Most runs with the same workload, second and seed before we give up finding a free name.
const MAX_NAME_ATTEMPTS: u32 = 100;

/// What `test.json` holds.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct TestRecord {
    /// Flattened, so `workload` is a top-level field as the checker expects.
    #[serde(flatten)]
    pub config: TestConfig,
    pub versions: Versions,
    /// The command line that started the run, as given.
    pub command_line: Vec<String>,
    /// Wall-clock start, UTC, `YYYY-MM-DDTHH:MM:SSZ`.
    pub started_at: String,
    /// Set for a replay: the run whose configuration and schedule this one repeats.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_of: Option<PathBuf>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Versions {
    pub schism: String,
    /// `keeperd --version`, if the binary answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keeperd: Option<String>,
    /// The Apache ZooKeeper deployed (`--system zookeeper`), from its installed jar.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zookeeper: Option<String>,
}

/// One run's directory.
#[derive(Clone, Debug)]
pub struct RunDir {
    pub path: PathBuf,
}

impl RunDir {
    /// Creates `root/<workload>/<timestamp>-<seed>/` (with a `-2`, `-3`... suffix if that
    /// exists) and its `nodes/` directory.
    pub fn create(
        root: &Path,
        workload: &str,
        seed: u64,
        now: SystemTime,
    ) -> anyhow::Result<RunDir> {
        if workload.is_empty() || workload.contains(['/', '\\']) || workload.starts_with('.') {
            bail!("`{workload}` cannot be used as a directory name");
        }
        let parent = root.join(workload);
        fs::create_dir_all(&parent)
            .with_context(|| format!("cannot create the results directory {}", parent.display()))?;
        let base = format!("{}-{seed}", compact_timestamp(now));
        for attempt in 1..=MAX_NAME_ATTEMPTS {
            let name = if attempt == 1 {
                base.clone()
            } else {
                format!("{base}-{attempt}")
            };
            let path = parent.join(name);
            match fs::create_dir(&path) {
                Ok(()) => {
                    fs::create_dir(path.join(NODES_DIR))?;
                    return Ok(RunDir { path });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(e).with_context(|| format!("cannot create {}", path.display()));
                }
            }
        }
        bail!(
            "{MAX_NAME_ATTEMPTS} runs named {base} already exist in {}",
            parent.display()
        )
    }

    /// An existing run directory (for `check`, `replay`, `serve`).
    pub fn open(path: &Path) -> anyhow::Result<RunDir> {
        if !path.join(TEST_FILE).is_file() && !path.join(HISTORY_FILE).is_file() {
            bail!(
                "{} is not a run directory (it has neither {TEST_FILE} nor {HISTORY_FILE})",
                path.display()
            );
        }
        Ok(RunDir {
            path: path.to_path_buf(),
        })
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    pub fn node_dir(&self, node: &str) -> anyhow::Result<PathBuf> {
        let dir = self.path.join(NODES_DIR).join(node);
        fs::create_dir_all(&dir)?;
        Ok(dir)
    }

    pub fn write_test_record(&self, record: &TestRecord) -> anyhow::Result<()> {
        write_json_synced(&self.file(TEST_FILE), record)
    }

    pub fn read_test_record(&self) -> anyhow::Result<TestRecord> {
        read_json(&self.file(TEST_FILE))
    }

    pub fn write_results(&self, results: &Results) -> anyhow::Result<()> {
        write_json_synced(&self.file(RESULTS_FILE), results)
    }

    pub fn read_results(&self) -> anyhow::Result<Results> {
        read_json(&self.file(RESULTS_FILE))
    }

    /// Points `root/latest` at this run, replacing the old link atomically.
    pub fn mark_latest(&self, root: &Path) -> anyhow::Result<()> {
        let target = self
            .path
            .strip_prefix(root)
            .with_context(|| format!("{} is not inside {}", self.path.display(), root.display()))?;
        let tmp = root.join(format!(".{LATEST_LINK}.{}", std::process::id()));
        let _ = fs::remove_file(&tmp);
        std::os::unix::fs::symlink(target, &tmp)
            .with_context(|| format!("cannot create the symlink {}", tmp.display()))?;
        fs::rename(&tmp, root.join(LATEST_LINK))
            .with_context(|| format!("cannot update {}/{LATEST_LINK}", root.display()))?;
        Ok(())
    }
}

/// A stored run as the web view and `test-all` list it.
#[derive(Serialize, Clone, Debug)]
pub struct RunSummary {
    pub workload: String,
    pub name: String,
    /// Relative to the results root.
    pub path: PathBuf,
    /// None while running, or when the run crashed before it was checked.
    pub verdict: Option<Verdict>,
    pub config: Option<TestConfig>,
    pub started_at: Option<String>,
}

/// Every run under `root`, newest first. Unreadable entries are listed without details, not
/// skipped, so a crashed run is still visible.
pub fn list_runs(root: &Path) -> anyhow::Result<Vec<RunSummary>> {
    let mut runs = Vec::new();
    let Ok(workloads) = fs::read_dir(root) else {
        return Ok(runs);
    };
    for workload in workloads.flatten() {
        let workload_path = workload.path();
        let name = workload.file_name().to_string_lossy().into_owned();
        if name == LATEST_LINK
            || name.starts_with('.')
            || !workload_path.is_dir()
            || workload_path.is_symlink()
        {
            continue;
        }
        for run in fs::read_dir(&workload_path)?.flatten() {
            let run_path = run.path();
            if !run_path.is_dir() {
                continue;
            }
            let record: Option<TestRecord> = read_json(&run_path.join(TEST_FILE)).ok();
            let results: Option<Results> = read_json(&run_path.join(RESULTS_FILE)).ok();
            runs.push(RunSummary {
                workload: name.clone(),
                name: run.file_name().to_string_lossy().into_owned(),
                path: PathBuf::from(&name).join(run.file_name()),
                verdict: results.map(|r| r.verdict),
                started_at: record.as_ref().map(|r| r.started_at.clone()),
                config: record.map(|r| r.config),
            });
        }
    }
    // Names start with a sortable UTC timestamp.
    runs.sort_by(|a, b| b.name.cmp(&a.name).then(a.workload.cmp(&b.workload)));
    Ok(runs)
}

/// `20261121T074137Z`: sortable, and safe in a file name.
pub fn compact_timestamp(time: SystemTime) -> String {
    let (y, mo, d, h, mi, s) = civil_utc(time);
    format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}Z")
}

/// `2026-11-21T07:41:37Z`.
pub fn iso_timestamp(time: SystemTime) -> String {
    let (y, mo, d, h, mi, s) = civil_utc(time);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// UTC calendar fields of `time` (Howard Hinnant's days-to-civil algorithm).
fn civil_utc(time: SystemTime) -> (i64, u32, u32, u32, u32, u32) {
    let secs = time
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        m,
        d,
        (rem / 3600) as u32,
        (rem % 3600 / 60) as u32,
        (rem % 60) as u32,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_are_utc_calendar_dates() {
        let t = UNIX_EPOCH + Duration::from_secs(1_795_246_897); // 2026-11-21T07:41:37Z
        assert_eq!(iso_timestamp(t), "2026-11-21T07:41:37Z");
        assert_eq!(compact_timestamp(t), "20261121T074137Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29T00:00:00Z
        assert_eq!(iso_timestamp(leap), "2000-02-29T00:00:00Z");
    }
}
