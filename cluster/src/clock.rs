//! Nodes' clocks that can be skewed: on the netns and local backends, when the spec asks for it,
//! each node runs with libfaketime preloaded (`LD_PRELOAD`), reading its fake time from a control
//! file of its own (`FAKETIME_TIMESTAMP_FILE`, re-read on every clock call because of
//! `FAKETIME_NO_CACHE=1`). The clock faults rewrite that file to make a running node's time run
//! fast or slow, or jump; healing puts the rate back to 1 without stepping the clock back
//! ([`ClockSetting::Heal`]). The machine's own clock is never touched, and nothing but the node
//! processes sees the fake time.
//!
//! libfaketime fakes every clock a process reads: `CLOCK_REALTIME` and `CLOCK_MONOTONIC` (Rust's
//! `SystemTime` and `Instant`) move together, and it scales the timeouts of `nanosleep`, `poll`
//! and `epoll_wait` by the rate, so tokio's timers follow the fake clock too.
//!
//! A rate in libfaketime counts from the moment the library started in the process: with
//! `+OFFSET xRATE` the process reads `start + (real - start) * RATE + OFFSET`. Switching a node
//! that has run for `age` seconds to rate `r` therefore needs the offset `age * (1 - r)`, or its
//! clock would jump by `age * (r - 1)` at once. Every change is computed from the line in the
//! file ([`ClockSetting::line`]), so it continues from what the node reads now. The age comes
//! from the process's start time in `/proc` (10 ms resolution).
//!
//! Control files are `<registry>/<tag>-n<i>.faketime` (like lazyfs sockets: short, outside the
//! run directory), recorded in the ledger before they are written, removed at teardown and by
//! `clean` once the run's owner is gone.

use crate::ledger::Ledger;
use crate::{ClusterError, ClusterSpec, NodeFile, NodeId, Result, RunTag};
use std::path::{Path, PathBuf};

/// Debian's `libfaketime` (package `libfaketime`, with the `faketime` tool), in its
/// thread-safe build. The plain `libfaketime.so.1` re-reads and parses the control file in
/// whichever thread asks the time, into shared globals and without a lock: while a line
/// changes, another of keeperd's threads can compute the time from the new offset and the old
/// rate, a reading off by `age * (old rate - new rate)`. One such reading 48 s ahead moved the
/// node's never-backwards `now` on by 48 s, and the node stood still until true time caught up
/// (CI's gate, 2026-12-01). The MT build takes a mutex around every faked clock reading.
pub const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";
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

/// What a control file says: libfaketime reads `start + (real - start) * rate + offset_s`,
/// `start` being the process's start.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ControlLine {
    pub offset_s: f64,
    pub rate: f64,
}

impl ControlLine {
    /// True time.
    pub const TRUE: ControlLine = ControlLine {
        offset_s: 0.0,
        rate: 1.0,
    };

    /// Reads a line as [`ControlLine`]'s `Display` writes it (`+1.500 x2`, `-30.000 x4`, `+0 x1`).
    pub fn parse(text: &str) -> Option<ControlLine> {
        let mut words = text.split_whitespace();
        let offset_s: f64 = words.next()?.parse().ok()?;
        let rate: f64 = words.next()?.strip_prefix('x')?.parse().ok()?;
        (words.next().is_none() && offset_s.is_finite() && rate.is_finite() && rate > 0.0)
            .then_some(ControlLine { offset_s, rate })
    }

    /// How far the process's clock reads ahead of true time (negative: behind) once it has
    /// run `age_s` seconds.
    pub fn ahead_s(self, age_s: f64) -> f64 {
        age_s * (self.rate - 1.0) + self.offset_s
    }
}

impl std::fmt::Display for ControlLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if *self == ControlLine::TRUE {
            return f.write_str(TRUE_TIME);
        }
        // The rate is always written: a line without one keeps the rate of the line before it.
        write!(f, "{} x{}", signed_seconds(self.offset_s), self.rate)
    }
}

/// A change to a node's clock. Every change continues from what the node's clock reads now,
/// and none but a `Jump` back ever steps it back: libfaketime moves `CLOCK_MONOTONIC` with
/// `CLOCK_REALTIME`, and a monotonic clock that steps back stalls every tokio timer of the node
/// for as long, which no real machine does (its monotonic clock never steps back; only its wall
/// clock does). A heal that stepped a fast clock back to true time stalled the node for the
/// time it had gained, and the run's `recovery` failed for it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ClockSetting {
    /// Run `rate` times as fast as the machine's clock, from the reading now.
    Rate { rate: f64 },
    /// Step the reading by `ms` (negative: back), keeping the rate.
    Jump { ms: i64 },
    /// Run at the machine's rate again; a clock behind true time steps forward to it, one
    /// ahead stays ahead (as after a real drift: the wall clock is put right by slewing, the
    /// monotonic clock never). A node's next process starts at true time.
    Heal,
}

impl ClockSetting {
    /// The control line that makes this change to a process that has run `age_s` seconds
    /// under `current`.
    pub fn line(self, current: ControlLine, age_s: f64) -> ControlLine {
        match self {
            // Same reading now: age * rate + offset = age * current.rate + current.offset.
            ClockSetting::Rate { rate } => ControlLine {
                offset_s: current.offset_s + age_s * (current.rate - rate),
                rate,
            },
            ClockSetting::Jump { ms } => ControlLine {
                offset_s: current.offset_s + ms as f64 / 1000.0,
                rate: current.rate,
            },
            ClockSetting::Heal => {
                let ahead_s = current.ahead_s(age_s);
                if ahead_s > 0.0 {
                    ControlLine {
                        offset_s: ahead_s,
                        rate: 1.0,
                    }
                } else {
                    ControlLine::TRUE
                }
            }
        }
    }

    fn validate(self) -> Result<()> {
        match self {
            ClockSetting::Heal => Ok(()),
            ClockSetting::Jump { ms } if ms.abs() <= MAX_OFFSET_MS => Ok(()),
            ClockSetting::Jump { ms } => Err(ClusterError::Invalid(format!(
                "a clock jump of {ms} ms is more than a day"
            ))),
            ClockSetting::Rate { rate } if (MIN_RATE..=MAX_RATE).contains(&rate) => Ok(()),
            ClockSetting::Rate { rate } => Err(ClusterError::Invalid(format!(
                "a clock rate must be {MIN_RATE} to {MAX_RATE}, not {rate}"
            ))),
        }
    }
}

/// To the millisecond, which is what the control file keeps.
fn signed_seconds(s: f64) -> String {
    if s < 0.0 {
        format!("-{:.3}", -s)
    } else {
        format!("+{s:.3}")
    }
}

/// Changes `node`'s clock by rewriting its control file (atomically: a process reading it sees
/// the old line or the new one), continuing from the line there. Returns the line written. The
/// node should be running: a rate counts from the running process's start.
pub fn set(spec: &ClusterSpec, node: NodeId, setting: ClockSetting) -> Result<String> {
    crate::check_node(spec, node)?;
    if !spec.faketime {
        return Err(ClusterError::Invalid(
            "the nodes were started without libfaketime: the clock faults need ClusterSpec::faketime"
                .to_string(),
        ));
    }
    setting.validate()?;
    let path = control_path(&spec.tag(), node);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| ClusterError::io(format!("reading {}", path.display()), e))?;
    let current = ControlLine::parse(&text).ok_or_else(|| {
        ClusterError::Invalid(format!(
            "{} holds {:?}, not a libfaketime line like `+0 x1`",
            path.display(),
            text.trim()
        ))
    })?;
    let line = match process_age_s(&spec.node_pidfile(node)) {
        Ok(age_s) => setting.line(current, age_s),
        // A node that is down is healed by what its next start writes anyway.
        Err(_) if setting == ClockSetting::Heal => ControlLine::TRUE,
        Err(e) => return Err(e),
    }
    .to_string();
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

    const TRUE: ControlLine = ControlLine::TRUE;

    fn at(offset_s: f64, rate: f64) -> ControlLine {
        ControlLine { offset_s, rate }
    }

    #[test]
    fn a_rate_continues_from_the_reading_now() {
        // A node that has run 10 s, switched to 4x: libfaketime reads
        // start + 10 * 4 + offset = start + 10, so the offset is -30 s.
        let fast = ClockSetting::Rate { rate: 4.0 }.line(TRUE, 10.0);
        assert_eq!(fast.to_string(), "-30.000 x4");
        assert_eq!(fast.ahead_s(10.0), 0.0);
        assert_eq!(
            ClockSetting::Rate { rate: 0.5 }
                .line(TRUE, 10.0)
                .to_string(),
            "+5.000 x0.5"
        );
        // From a clock already 2 s ahead at 3x (at 20 s), 0.5x keeps the 2 s.
        let ahead = at(-38.0, 3.0);
        assert_eq!(ahead.ahead_s(20.0), 2.0);
        let slow = ClockSetting::Rate { rate: 0.5 }.line(ahead, 20.0);
        assert_eq!(slow.ahead_s(20.0), 2.0);
    }

    #[test]
    fn a_jump_steps_the_reading_and_keeps_the_rate() {
        assert_eq!(
            ClockSetting::Jump { ms: -2_500 }
                .line(TRUE, 99.0)
                .to_string(),
            "-2.500 x1"
        );
        assert_eq!(
            ClockSetting::Jump { ms: 60_000 }
                .line(TRUE, 0.0)
                .to_string(),
            "+60.000 x1"
        );
        let fast = ClockSetting::Jump { ms: 1_000 }.line(at(-30.0, 4.0), 10.0);
        assert_eq!((fast.ahead_s(10.0), fast.rate), (1.0, 4.0));
    }

    #[test]
    fn a_heal_never_steps_the_clock_back() {
        // 3x for 10 s of a 20 s old process: 20 s ahead. The heal keeps them, at 1x.
        let fast = ClockSetting::Rate { rate: 3.0 }.line(TRUE, 10.0);
        let healed = ClockSetting::Heal.line(fast, 20.0);
        assert_eq!(healed.to_string(), "+20.000 x1");
        assert_eq!(healed.ahead_s(25.0), 20.0);
        // Behind (a slow clock, a jump back): stepped forward to true time.
        let slow = ClockSetting::Rate { rate: 0.5 }.line(TRUE, 10.0);
        assert_eq!(ClockSetting::Heal.line(slow, 20.0), TRUE);
        assert_eq!(
            ClockSetting::Heal.line(at(-10.0, 1.0), 5.0).to_string(),
            "+0 x1"
        );
        // A forward jump stays, and a rate written without one would keep the old rate.
        assert_eq!(
            ClockSetting::Heal.line(at(10.0, 1.0), 5.0).to_string(),
            "+10.000 x1"
        );
    }

    #[test]
    fn control_lines_read_back_as_written() {
        for line in ["+0 x1", "-30.000 x4", "+5.000 x0.5", "+20.000 x1"] {
            assert_eq!(ControlLine::parse(line).unwrap().to_string(), line);
        }
        for bad in ["", "+0", "x1", "+0 x0", "+0 x-2", "soon x1", "+0 x1 extra"] {
            assert_eq!(ControlLine::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn absurd_settings_are_refused() {
        assert!(ClockSetting::Rate { rate: 0.0 }.validate().is_err());
        assert!(ClockSetting::Rate { rate: 1_000.0 }.validate().is_err());
        assert!(
            ClockSetting::Jump {
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
