//! A test's configuration: everything needed to run it again, written to `test.json`.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

pub use checker::WorkloadKind;
pub use keeper_wire::Consistency;

/// Where the nodes run: the cluster crate's one enum of backends.
pub use cluster::BackendKind;
/// What the nodes run: keeper or Apache ZooKeeper (the cluster crate's enum).
pub use cluster::SystemKind;

/// Which protocol the workloads' clients speak to the nodes.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug, Default, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// keeper's HTTP/JSON API (keeper only): linearizable reads, per-reply zxids.
    #[default]
    Http,
    /// ZooKeeper's client protocol (jute over TCP), through the `zookeeper-client` crate:
    /// plain (local) reads or sync+read, as a ZooKeeper application sees them.
    Zk,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Zk => "zk",
        }
    }
}

/// How a process picks the node it talks to.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug, Default, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum NodeChoice {
    /// A seeded random node for each new process.
    #[default]
    Random,
    /// Process p always talks to node p mod n.
    Pinned,
    /// Worker w always talks to node w mod n, whatever its process: the clients stay spread
    /// evenly over the nodes for the whole run. With `random`, the clients of a node cut off by a
    /// partition time out, reopen elsewhere, and those on the majority never move back: after a
    /// few partitions the nodes that were cut off have no clients left, and a fault on them
    /// shows nothing (a stale read on a minority node needs a client there to read it).
    Spread,
}

/// The whole configuration of one run.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct TestConfig {
    pub workload: WorkloadKind,
    /// What the nodes run (absent in runs recorded before it existed: keeper).
    #[serde(default)]
    pub system: SystemKind,
    /// What the workloads' clients speak.
    #[serde(default)]
    pub protocol: Protocol,
    pub backend: BackendKind,
    pub nodes: usize,
    /// Fault kinds the nemesis may use (`partition`, `kill`, `pause`, ...); empty: no faults.
    pub nemesis: FaultSet,
    pub time_limit_ms: u64,
    /// Target operations per second, over all workers together.
    pub rate: f64,
    /// Number of workers (concurrent Jepsen processes).
    pub concurrency: usize,
    pub seed: u64,
    pub read_consistency: Consistency,
    /// Every operation's deadline; past it the operation is recorded as `info`.
    pub op_timeout_ms: u64,
    pub node_choice: NodeChoice,
    /// How long the cluster may take to serve again after the faults are healed.
    pub recovery_timeout_ms: u64,
    /// Mean time between the nemesis's faults.
    pub nemesis_interval_ms: u64,
    /// `keeperd --bug NAME`: a deliberately broken server, to show the harness catches it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_bug: Option<String>,
    /// The keeperd binary the backend deploys (netns and local; docker builds its image from it).
    pub keeperd: PathBuf,
    /// Extra flags for every keeperd (e.g. `--snapshot-every 50`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keeperd_args: Vec<String>,
}

impl TestConfig {
    pub fn time_limit(&self) -> Duration {
        Duration::from_millis(self.time_limit_ms)
    }
    pub fn op_timeout(&self) -> Duration {
        Duration::from_millis(self.op_timeout_ms)
    }
    pub fn recovery_timeout(&self) -> Duration {
        Duration::from_millis(self.recovery_timeout_ms)
    }

    /// Node names, `n1`..`nN`, as every file of the results store uses them.
    pub fn node_names(&self) -> Vec<String> {
        (1..=self.nodes).map(|i| format!("n{i}")).collect()
    }
}

/// Parses `60s`, `2m`, `500ms`, `1h`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (examples: 60s, 2m, 500ms)"))?;
    let seconds_per_unit = match unit.trim() {
        "" | "s" => 1.0,
        "ms" => 0.001,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        other => {
            return Err(format!(
                "unknown unit `{other}` in `{text}` (use ms, s, m or h)"
            ));
        }
    };
    let seconds = value * seconds_per_unit;
    if !seconds.is_finite() || seconds > MAX_DURATION_S {
        return Err(format!(
            "`{text}` is longer than the {MAX_DURATION_S} s allowed"
        ));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// Longest duration any option accepts: a week.
pub const MAX_DURATION_S: f64 = 7.0 * 24.0 * 3600.0;

/// Parses a comma-separated list of fault kinds (`none` or nothing: no faults), for clap.
pub fn parse_fault_set(text: &str) -> Result<FaultSet, String> {
    text.parse()
        .map_err(|e: nemesis::NemesisError| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_every_unit() {
        assert_eq!(parse_duration("60s").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("100000000h").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn fault_sets() {
        use nemesis::FaultKind;
        assert_eq!(
            parse_fault_set("partition, kill,pause,kill")
                .unwrap()
                .kinds(),
            [FaultKind::Partition, FaultKind::Kill, FaultKind::Pause]
        );
        assert!(parse_fault_set("none").unwrap().is_empty());
        assert!(parse_fault_set("").unwrap().is_empty());
        let unknown = parse_fault_set("partition,meteor").unwrap_err();
        assert!(unknown.contains("meteor"), "{unknown}");
    }
}

/// A problem with what the user asked for: exit 254, one line, no backtrace.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Most nodes a test may have: the cluster backends' limit.
pub use cluster::MAX_NODES;
/// Most workers a test may have.
pub const MAX_CONCURRENCY: usize = 1000;
/// Highest rate a test may ask for, in operations per second.
pub const MAX_RATE: f64 = 100_000.0;

impl TestConfig {
    /// Checks everything that can be checked before anything is created.
    pub fn validate(&self) -> Result<(), UsageError> {
        let bad = |m: String| Err(UsageError(m));
        if self.nodes == 0 || self.nodes > MAX_NODES {
            return bad(format!(
                "--nodes must be 1 to {MAX_NODES}, not {}",
                self.nodes
            ));
        }
        if self.concurrency == 0 || self.concurrency > MAX_CONCURRENCY {
            return bad(format!(
                "--concurrency must be 1 to {MAX_CONCURRENCY}, not {}",
                self.concurrency
            ));
        }
        if !(0.0..=MAX_RATE).contains(&self.rate) {
            return bad(format!(
                "--rate must be 0 (unlimited) to {MAX_RATE}, not {}",
                self.rate
            ));
        }
        if self.time_limit_ms == 0 {
            return bad("--time-limit must be more than zero".into());
        }
        if self.op_timeout_ms == 0 {
            return bad("--op-timeout must be more than zero".into());
        }
        if self.system == SystemKind::Zookeeper {
            if self.protocol != Protocol::Zk {
                return bad("ZooKeeper speaks only its own protocol: use --protocol zk".into());
            }
            if self.backend == BackendKind::Docker {
                return bad(
                    "the docker backend runs only keeperd (no image can hold a JDK here): use --backend netns or local for --system zookeeper".into(),
                );
            }
            if self.server_bug.is_some() {
                return bad(
                    "--server-bug injects keeper's own bugs; ZooKeeper has none to inject".into(),
                );
            }
        }
        if self.protocol == Protocol::Zk && self.read_consistency == Consistency::Linearizable {
            return bad(
                "ZooKeeper's protocol has no linearizable read: use --read-consistency local or sync with --protocol zk".into(),
            );
        }
        if self.backend == BackendKind::Local && self.nemesis.network().next().is_some() {
            return bad(format!(
                "the local backend cannot cut or shape the network ({}): use --backend netns (as root) or docker, or drop those faults",
                self.nemesis
            ));
        }
        Ok(())
    }
}

/// Fault kinds `--nemesis` accepts, as the nemesis crate defines them.
pub use nemesis::{FAULT_KINDS, FaultKind, FaultSet};
