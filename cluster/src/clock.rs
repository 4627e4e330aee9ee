//! Nodes' clocks that can be skewed: on the netns and local backends, when the spec asks for it,
//! each node runs with libfaketime preloaded (`LD_PRELOAD`), reading its fake time from a control
//! file of its own (`FAKETIME_TIMESTAMP_FILE`, re-read on every clock call because of
//! `FAKETIME_NO_CACHE=1`). The clock faults rewrite that file to make a running node's time run
//! fast or slow, or jump; healing writes `+0` (true time) back. The machine's own clock is never
//! touched, and nothing but the node processes sees the fake time.
//!
//! libfaketime fakes every clock a process reads: `CLOCK_REALTIME` and `CLOCK_MONOTONIC` (Rust's
//! `SystemTime` and `Instant`) move together, and it scales the timeouts of `nanosleep`, `poll`
//! and `epoll_wait` by the rate, so tokio's timers follow the fake clock too.
//!
//! A rate in libfaketime counts from the moment the library started in the process: with
//! `+OFFSET xRATE` the process reads `start + (real - start) * RATE + OFFSET`. Switching a node
//! that has run for `age` seconds to rate `r` therefore needs the offset `age * (1 - r)`, or its
//! clock would jump by `age * (r - 1)` at once ([`ClockSetting::line`]). The age comes from the
//! process's start time in `/proc` (10 ms resolution).
//!
//! Control files are `<registry>/<tag>-n<i>.faketime` (like lazyfs sockets: short, outside the
//! run directory), recorded in the ledger before they are written, removed at teardown and by
//! `clean` once the run's owner is gone.

use crate::ledger::Ledger;
use crate::{ClusterError, ClusterSpec, NodeFile, NodeId, Result, RunTag};
use std::path::{Path, PathBuf};

/// Debian's `libfaketime` (package `libfaketime`, with the `faketime` tool).
pub const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";
/// The one line users see when a clock fault meets the docker backend.
pub const NO_CLOCK_FAULTS_ON_DOCKER: &str = "the docker backend cannot inject clock faults: its keeperd is statically linked, so libfaketime cannot be preloaded into it; use --backend netns or local";
/// What a control file holds when the node's clock is true. The rate is always written: a line
/// without one keeps the rate of the line before it (libfaketime 0.9.10).
pub const TRUE_TIME: &str = "+0 x1";
/// Slowest and fastest rates a setting may ask for (libfaketime takes any positive rate; these
/// keep a typo from freezing a node or making its clock race).
pub const MIN_RATE: f64 = 0.05;
pub const MAX_RATE: f64 = 100.0;
/// Largest jump, in milliseconds (a day).
pub const MAX_OFFSET_MS: i64 = 86_400_000;

/// Why libfaketime cannot be used here, in one line.
pub fn check() -> Result<()> {
    if Path::new(LIBFAKETIME).is_file() {
        Ok(())
    } else {
        Err(ClusterError::Missing(format!(
            "the clock faults need libfaketime ({LIBFAKETIME} is missing): apt-get install faketime libfaketime"
        )))
    }
}

/// `<registry>/<tag>-n<i>.faketime`: the node's control file.
pub fn control_path(tag: &RunTag, node: NodeId) -> PathBuf {
    crate::ledger::registry_dir().join(format!("{tag}-n{node}.faketime"))
}

/// The suffix `clean` recognises control files by.
pub const CONTROL_SUFFIX: &str = ".faketime";

/// The environment that preloads libfaketime into a node and points it at its control file.
pub fn node_env(tag: &RunTag, node: NodeId) -> Vec<(String, String)> {
    vec![
        ("LD_PRELOAD".to_string(), LIBFAKETIME.to_string()),
        (
            "FAKETIME_TIMESTAMP_FILE".to_string(),
            control_path(tag, node).display().to_string(),
        ),
        ("FAKETIME_NO_CACHE".to_string(), "1".to_string()),
    ]
}

/// The control file as written before every start: a fresh process starts at true time.
pub fn node_file(tag: &RunTag, node: NodeId) -> NodeFile {
    NodeFile {
        path: control_path(tag, node),
        contents: format!("{TRUE_TIME}\n"),
    }
}

/// Records every node's control file in the ledger (before any node starts and writes it).
pub fn register(spec: &ClusterSpec, ledger: &Ledger) -> Result<()> {
    if !spec.faketime {
        return Ok(());
    }
    let tag = spec.tag();
    ledger.update(|l| {
        for node in spec.node_ids() {
            let path = control_path(&tag, node);
            if !l.clock_files.contains(&path) {
                l.clock_files.push(path);
            }
        }
    })
}

/// Removes the control files a ledger recorded (teardown). Missing ones are fine.
pub fn remove(files: &[PathBuf]) -> Result<()> {
    for file in files {
        match std::fs::remove_file(file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(ClusterError::io(format!("removing {}", file.display()), e)),
        }
    }
    Ok(())
}

/// What a node's clock does.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ClockSetting {
    /// The machine's time.
    True,
    /// The machine's time plus `ms` (negative: behind), from now on.
    Offset { ms: i64 },
    /// Runs `rate` times as fast as the machine's, continuing from the true time now.
    Rate { rate: f64 },
}

impl ClockSetting {
    /// The control file's line for a process that has run `age_s` seconds.
    pub fn line(self, age_s: f64) -> String {
        match self {
            ClockSetting::True => TRUE_TIME.to_string(),
            ClockSetting::Offset { ms } => format!("{} x1", signed_seconds(ms as f64 / 1000.0)),
            ClockSetting::Rate { rate } => {
                format!("{} x{rate}", signed_seconds(age_s * (1.0 - rate)))
            }
        }
    }

    fn validate(self) -> Result<()> {
        match self {
            ClockSetting::True => Ok(()),
            ClockSetting::Offset { ms } if ms.abs() <= MAX_OFFSET_MS => Ok(()),
            ClockSetting::Offset { ms } => Err(ClusterError::Invalid(format!(
                "a clock jump of {ms} ms is more than a day"
            ))),
            ClockSetting::Rate { rate } if (MIN_RATE..=MAX_RATE).contains(&rate) => Ok(()),
            ClockSetting::Rate { rate } => Err(ClusterError::Invalid(format!(
                "a clock rate must be {MIN_RATE} to {MAX_RATE}, not {rate}"
            ))),
        }
    }
}

fn signed_seconds(s: f64) -> String {
    if s < 0.0 {
        format!("-{:.3}", -s)
    } else {
        format!("+{s:.3}")
    }
}

/// Sets `node`'s clock by rewriting its control file (atomically: a process reading it sees
/// the old line or the new one). Returns the line written. The node should be running: a rate
/// is anchored on the running process's start.
pub fn set(spec: &ClusterSpec, node: NodeId, setting: ClockSetting) -> Result<String> {
    crate::check_node(spec, node)?;
    if !spec.faketime {
        return Err(ClusterError::Invalid(
            "the nodes were started without libfaketime: the clock faults need ClusterSpec::faketime"
                .to_string(),
        ));
    }
    setting.validate()?;
    let age_s = match setting {
        ClockSetting::Rate { .. } => process_age_s(&spec.node_pidfile(node))?,
        _ => 0.0,
    };
    let line = setting.line(age_s);
    let path = control_path(&spec.tag(), node);
    let tmp = path.with_extension("faketime.tmp");
    std::fs::write(&tmp, format!("{line}\n"))
        .and_then(|_| std::fs::rename(&tmp, &path))
        .map_err(|e| ClusterError::io(format!("writing {}", path.display()), e))?;
    Ok(line)
}

/// Seconds since the process in `pidfile` started (from `/proc/<pid>/stat` and `/proc/uptime`,
/// both counted from boot).
fn process_age_s(pidfile: &Path) -> Result<f64> {
    let text = std::fs::read_to_string(pidfile)
        .map_err(|e| ClusterError::io(format!("reading {}", pidfile.display()), e))?;
    let pid: u32 = text
        .trim()
        .parse()
        .map_err(|_| ClusterError::Invalid(format!("{} holds no pid", pidfile.display())))?;
    let start_ticks = crate::ledger::process_start(pid).ok_or_else(|| {
        ClusterError::Invalid(format!(
            "process {pid} (from {}) is gone",
            pidfile.display()
        ))
    })?;
    let uptime = std::fs::read_to_string("/proc/uptime")
        .map_err(|e| ClusterError::io("reading /proc/uptime", e))?;
    let up_s: f64 = uptime
        .split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| ClusterError::Invalid("unreadable /proc/uptime".to_string()))?;
    let ticks_per_s = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    Ok((up_s - start_ticks as f64 / ticks_per_s).max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_continues_from_the_true_time() {
        // A node that has run 10 s, switched to 4x: libfaketime reads
        // start + 10 * 4 + offset = start + 10, so the offset is -30 s.
        assert_eq!(ClockSetting::Rate { rate: 4.0 }.line(10.0), "-30.000 x4");
        assert_eq!(ClockSetting::Rate { rate: 0.5 }.line(10.0), "+5.000 x0.5");
        assert_eq!(ClockSetting::Offset { ms: -2_500 }.line(99.0), "-2.500 x1");
        assert_eq!(ClockSetting::Offset { ms: 60_000 }.line(0.0), "+60.000 x1");
        // A line without a rate would keep the rate before it.
        assert_eq!(ClockSetting::True.line(5.0), "+0 x1");
    }

    #[test]
    fn absurd_settings_are_refused() {
        assert!(ClockSetting::Rate { rate: 0.0 }.validate().is_err());
        assert!(ClockSetting::Rate { rate: 1_000.0 }.validate().is_err());
        assert!(
            ClockSetting::Offset {
                ms: 2 * MAX_OFFSET_MS
            }
            .validate()
            .is_err()
        );
        assert!(ClockSetting::Rate { rate: 2.0 }.validate().is_ok());
    }

    #[test]
    fn control_files_are_named_after_the_run_and_node() {
        let tag = RunTag::from_run_id("some-run");
        let path = control_path(&tag, 3);
        let name = path.file_name().unwrap().to_str().unwrap();
        assert!(name.ends_with(&format!("-n3{CONTROL_SUFFIX}")), "{name}");
        let env = node_env(&tag, 3);
        assert!(env.contains(&("FAKETIME_NO_CACHE".to_string(), "1".to_string())));
        assert!(
            env.iter()
                .any(|(k, v)| k == "FAKETIME_TIMESTAMP_FILE" && *v == path.display().to_string())
        );
    }
}
