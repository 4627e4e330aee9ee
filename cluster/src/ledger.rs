//! A run's record of what it created, written *before* each object is created so that a run
//! killed at any point leaves a ledger that covers everything it left behind.
//!
//! Ledgers live in `<tmp>/schism-runs/<tag>.json`. Each names the process that owns the run
//! (pid and start time, so a recycled pid is not mistaken for it); `clean` leaves runs whose
//! owner is alive alone.

use crate::{BackendKind, ClusterError, Result, RunTag};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Mutex;

#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub struct LedgerData {
    pub tag: String,
    pub run_id: String,
    pub backend: Option<BackendKind>,
    pub owner_pid: u32,
    /// Field 22 of `/proc/<pid>/stat`: with the pid, identifies the owner process.
    pub owner_start: u64,
    pub base_dir: PathBuf,
    pub subnet: Option<[u8; 3]>,
    pub namespaces: Vec<String>,
    pub links: Vec<String>,
    /// Host iptables rules, as the arguments after `-A`/`-D`.
    pub host_rules: Vec<Vec<String>>,
    pub containers: Vec<String>,
    pub networks: Vec<String>,
    pub volumes: Vec<String>,
    /// Node images this run built (`schism-keeperd:<hash>`); an image it found already built
    /// belongs to whoever built it and is not listed.
    #[serde(default)]
    pub images: Vec<String>,
    /// lazyfs mount points (the nodes' data directories when power-loss is on).
    #[serde(default)]
    pub mounts: Vec<PathBuf>,
    /// libfaketime control files (`<registry>/<tag>-n<i>.faketime`) when clock faults are on.
    #[serde(default)]
    pub clock_files: Vec<PathBuf>,
}

/// The directory holding every run's ledger. A fixed path, not `$TMPDIR`: a `clean` run with
/// another TMPDIR must still see every live run's ledger.
pub fn registry_dir() -> PathBuf {
    PathBuf::from(REGISTRY_DIR)
}

pub const REGISTRY_DIR: &str = "/tmp/schism-runs";

/// The parent pid and command name of a process.
pub fn parent_of(pid: u32) -> Option<(u32, String)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let close = stat.rfind(')')?;
    let ppid = stat[close + 2..].split_whitespace().nth(1)?.parse().ok()?;
    let comm = std::fs::read_to_string(format!("/proc/{ppid}/comm")).unwrap_or_default();
    Some((ppid, comm.trim().to_string()))
}

/// The start time of a process (clock ticks since boot), `None` when it does not exist.
pub fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: fields resume after the
    // last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

impl LedgerData {
    /// True when the process that owns the run still runs.
    pub fn owner_alive(&self) -> bool {
        process_start(self.owner_pid) == Some(self.owner_start)
    }
}

/// Reads every ledger in the registry; unreadable files are skipped.
pub fn read_all() -> Vec<LedgerData> {
    let Ok(dir) = std::fs::read_dir(registry_dir()) else {
        return Vec::new();
    };
    dir.flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .filter_map(|e| std::fs::read(e.path()).ok())
        .filter_map(|b| serde_json::from_slice(&b).ok())
        .collect()
}

/// Removes a run's ledger file (after its objects are gone).
pub fn remove(tag: &RunTag) {
    let _ = std::fs::remove_file(registry_dir().join(format!("{tag}.json")));
}

/// A live run's ledger: every change is written through to disk.
pub struct Ledger {
    path: PathBuf,
    data: Mutex<LedgerData>,
}

impl Ledger {
    pub fn new(tag: &RunTag, run_id: &str, backend: BackendKind, base_dir: PathBuf) -> Ledger {
        let pid = std::process::id();
        Ledger {
            path: registry_dir().join(format!("{tag}.json")),
            data: Mutex::new(LedgerData {
                tag: tag.0.clone(),
                run_id: run_id.to_string(),
                backend: Some(backend),
                owner_pid: pid,
                owner_start: process_start(pid).unwrap_or(0),
                base_dir,
                ..LedgerData::default()
            }),
        }
    }

    pub fn snapshot(&self) -> LedgerData {
        self.data.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Applies `change` and writes the ledger before returning, so the caller may then create
    /// the object it recorded.
    pub fn update(&self, change: impl FnOnce(&mut LedgerData)) -> Result<()> {
        let bytes = {
            let mut data = self.data.lock().unwrap_or_else(|p| p.into_inner());
            change(&mut data);
            serde_json::to_vec_pretty(&*data).expect("ledger serializes")
        };
        let dir = registry_dir();
        if !dir.is_dir() {
            std::fs::create_dir_all(&dir)
                .map_err(|e| ClusterError::io(format!("creating {}", dir.display()), e))?;
            // Shared like /tmp (sticky, writable by all): runs of every user register here, so
            // a `clean` by root sees a user's live run and leaves it alone.
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777));
        }
        let tmp = self.path.with_extension("json.tmp");
        std::fs::write(&tmp, bytes)
            .and_then(|_| std::fs::rename(&tmp, &self.path))
            .map_err(|e| ClusterError::io(format!("writing {}", self.path.display()), e))
    }

    pub fn remove(&self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
