//! Faults as values: what a step of a schedule does, and the exact commands that start and heal
//! the network ones.

pub use crate::corrupt::{Damage, DataFile};
use crate::grudge::Grudge;
use cluster::NodeId;
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;

/// The fault families a user names (`--nemesis partition,kill,pause`).
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug, Hash, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// iptables DROP between groups of nodes, in Jepsen's shapes.
    Partition,
    /// SIGKILL, then restart at heal.
    Kill,
    /// SIGSTOP, then SIGCONT at heal.
    Pause,
    /// Rate-limited links (tc tbf).
    Slow,
    /// Random packet loss (iptables `statistic`), which needs no kernel module.
    Flaky,
    /// Delay, jitter and reordering (tc netem), where the kernel has netem.
    Delay,
    /// Always the `isolate-leader` partition: the fault that deposed leaders' bugs need.
    PartitionLeader,
    /// Always SIGKILL of the current leader, restarted at heal.
    KillLeader,
    /// Always SIGKILL of every node at once (what shows unsynced writes), restarted at heal.
    KillAll,
    /// Isolate the leader; once the others elect a new one, kill that one too. At heal every
    /// node looks for a leader at once, the deposed one holding the longest log of an older
    /// epoch: the election must still prefer the newer epoch.
    DeposeLeader,
    /// Lose every write a node did not fsync (its data directory is a lazyfs mount), SIGKILL
    /// it, and restart it at heal, as a power failure would.
    PowerLoss,
    /// Make nodes' clocks run fast or slow (libfaketime's rate), at the true rate again at heal.
    ClockSkew,
    /// Jump nodes' clocks forward or back; at heal one behind steps forward to true time.
    ClockJump,
    /// Flip nodes' clocks by a jump and back every few milliseconds, until heal.
    ClockStrobe,
    /// SIGKILL one node, damage its newest WAL or snapshot (flip bits in a region or cut its
    /// end: Jepsen's bitflip-wal, bitflip-snap and truncate), restart it at heal.
    Corrupt,
}

/// Every fault name, for usage messages.
pub const FAULT_KINDS: &[&str] = &[
    "partition",
    "kill",
    "pause",
    "slow",
    "flaky",
    "delay",
    "partition-leader",
    "kill-leader",
    "depose-leader",
    "kill-all",
    "power-loss",
    "clock-skew",
    "clock-jump",
    "clock-strobe",
    "corrupt",
];
/// The faults that change nodes' clocks (through libfaketime; refused by the docker backend).
pub const CLOCK_FAULTS: &[&str] = &["clock-skew", "clock-jump", "clock-strobe"];
/// The faults that run commands in nodes' network namespaces (refused by the local backend).
pub const NETWORK_FAULTS: &[&str] = &[
    "partition",
    "slow",
    "flaky",
    "delay",
    "partition-leader",
    "depose-leader",
];

impl FaultKind {
    pub const ALL: [FaultKind; 15] = [
        FaultKind::Partition,
        FaultKind::Kill,
        FaultKind::Pause,
        FaultKind::Slow,
        FaultKind::Flaky,
        FaultKind::Delay,
        FaultKind::PartitionLeader,
        FaultKind::KillLeader,
        FaultKind::DeposeLeader,
        FaultKind::KillAll,
        FaultKind::PowerLoss,
        FaultKind::ClockSkew,
        FaultKind::ClockJump,
        FaultKind::ClockStrobe,
        FaultKind::Corrupt,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Partition => "partition",
            FaultKind::Kill => "kill",
            FaultKind::Pause => "pause",
            FaultKind::Slow => "slow",
            FaultKind::Flaky => "flaky",
            FaultKind::Delay => "delay",
            FaultKind::PartitionLeader => "partition-leader",
            FaultKind::KillLeader => "kill-leader",
            FaultKind::DeposeLeader => "depose-leader",
            FaultKind::KillAll => "kill-all",
            FaultKind::PowerLoss => "power-loss",
            FaultKind::ClockSkew => "clock-skew",
            FaultKind::ClockJump => "clock-jump",
            FaultKind::ClockStrobe => "clock-strobe",
            FaultKind::Corrupt => "corrupt",
        }
    }

    pub fn is_network(self) -> bool {
        NETWORK_FAULTS.contains(&self.name())
    }

    pub fn is_clock(self) -> bool {
        CLOCK_FAULTS.contains(&self.name())
    }

    /// Parses `partition,kill,...` (`none` and empty entries are ignored; duplicates merged).
    pub fn parse_set(text: &str) -> Result<Vec<FaultKind>, crate::NemesisError> {
        let mut set = Vec::new();
        for word in text.split(',').map(str::trim) {
            if word.is_empty() || word == "none" {
                continue;
            }
            let kind: FaultKind = word.parse()?;
            if !set.contains(&kind) {
                set.push(kind);
            }
        }
        Ok(set)
    }
}

/// The faults a test may inject (`--nemesis partition,kill`): each kind once, in the order
/// given. Written as the JSON array of the kinds' names (as `test.json` always had them).
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug, Default, Hash)]
#[serde(transparent)]
pub struct FaultSet(Vec<FaultKind>);

impl FaultSet {
    /// No faults.
    pub fn none() -> FaultSet {
        FaultSet(Vec::new())
    }

    pub fn kinds(&self) -> &[FaultKind] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, kind: FaultKind) -> bool {
        self.0.contains(&kind)
    }

    /// Whether any kind changes nodes' clocks (the nodes must then start under libfaketime).
    pub fn has_clock(&self) -> bool {
        self.0.iter().any(|k| k.is_clock())
    }

    /// The kinds that need control of the nodes' network.
    pub fn network(&self) -> impl Iterator<Item = FaultKind> + '_ {
        self.0.iter().copied().filter(|k| k.is_network())
    }

    /// The names joined by `sep`, or `none`.
    pub fn join(&self, sep: &str) -> String {
        if self.0.is_empty() {
            return "none".to_string();
        }
        self.0
            .iter()
            .map(|k| k.name())
            .collect::<Vec<_>>()
            .join(sep)
    }
}

impl FromIterator<FaultKind> for FaultSet {
    fn from_iter<I: IntoIterator<Item = FaultKind>>(kinds: I) -> FaultSet {
        let mut set = Vec::new();
        for kind in kinds {
            if !set.contains(&kind) {
                set.push(kind);
            }
        }
        FaultSet(set)
    }
}

impl std::str::FromStr for FaultSet {
    type Err = crate::NemesisError;
    fn from_str(text: &str) -> Result<FaultSet, Self::Err> {
        Ok(FaultKind::parse_set(text)?.into_iter().collect())
    }
}

impl std::fmt::Display for FaultSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.join(","))
    }
}

impl std::str::FromStr for FaultKind {
    type Err = crate::NemesisError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FaultKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                crate::NemesisError::Invalid(format!(
                    "unknown fault {s:?}: use any of {}",
                    FAULT_KINDS.join(", ")
                ))
            })
    }
}

/// The shape of a partition (Jepsen's names).
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum PartitionShape {
    IsolateOne,
    /// Resolved when the step starts: the node that leads in the highest epoch.
    IsolateLeader,
    RandomHalves,
    MajoritiesRing,
    Bridge,
    MinorityCut,
}

/// Which nodes a process fault hits.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug)]
#[serde(rename_all = "snake_case")]
pub enum Targets {
    /// Chosen when the schedule was generated (one node, a minority).
    Nodes(Vec<NodeId>),
    /// Resolved when the step starts; the resolution is logged.
    Leader,
    All,
}

/// One fault, fully determined by the schedule except for leader-dependent targets.
#[derive(Serialize, Deserialize, Clone, PartialEq, Debug)]
#[serde(tag = "fault", rename_all = "kebab-case")]
pub enum Fault {
    Partition {
        shape: PartitionShape,
        /// Absent for `isolate-leader`, which is computed at run time. Stored as a list of
        /// `[node, [dropped...]]` pairs: JSON object keys are strings, which a flattened enum
        /// cannot read back as node ids.
        #[serde(default, with = "grudge_pairs")]
        grudge: Option<Grudge>,
    },
    Kill {
        targets: Targets,
    },
    /// See `FaultKind::DeposeLeader`; both leaders are resolved at run time.
    Depose,
    Pause {
        targets: Targets,
    },
    /// See `FaultKind::PowerLoss`.
    PowerLoss {
        targets: Targets,
    },
    /// See `FaultKind::Corrupt`. One node (`targets` names one, or the leader); which bytes
    /// are hit is drawn from `seed` once the file's length is known, and logged.
    Corrupt {
        targets: Targets,
        file: DataFile,
        damage: Damage,
        seed: u64,
    },
    Slow {
        nodes: Vec<NodeId>,
        rate_kbit: u32,
    },
    /// The targets' clocks run `rate` times as fast as the machine's.
    ClockSkew {
        targets: Targets,
        rate: f64,
    },
    /// The targets' clocks jump by `offset_ms` (negative: back).
    ClockJump {
        targets: Targets,
        offset_ms: i64,
    },
    /// The targets' clocks flip by `offset_ms` and back every `period_ms`.
    ClockStrobe {
        targets: Targets,
        offset_ms: i64,
        period_ms: u64,
    },
    Flaky {
        nodes: Vec<NodeId>,
        /// Probability that an incoming packet is dropped, in (0, 1).
        loss: f64,
    },
    Delay {
        nodes: Vec<NodeId>,
        delay_ms: u32,
        jitter_ms: u32,
        reorder_percent: u32,
    },
}

impl Fault {
    pub fn kind(&self) -> FaultKind {
        match self {
            Fault::Partition { .. } => FaultKind::Partition,
            Fault::Kill { .. } => FaultKind::Kill,
            Fault::Depose => FaultKind::DeposeLeader,
            Fault::Pause { .. } => FaultKind::Pause,
            Fault::PowerLoss { .. } => FaultKind::PowerLoss,
            Fault::Corrupt { .. } => FaultKind::Corrupt,
            Fault::Slow { .. } => FaultKind::Slow,
            Fault::ClockSkew { .. } => FaultKind::ClockSkew,
            Fault::ClockJump { .. } => FaultKind::ClockJump,
            Fault::ClockStrobe { .. } => FaultKind::ClockStrobe,
            Fault::Flaky { .. } => FaultKind::Flaky,
            Fault::Delay { .. } => FaultKind::Delay,
        }
    }

    /// A short human description for progress bars and logs.
    pub fn describe(&self) -> String {
        match self {
            Fault::Partition { shape, .. } => format!("partition {}", shape_name(*shape)),
            Fault::Kill { targets } => format!("kill {}", targets_name(targets)),
            Fault::Depose => "depose the leader and kill its successor".to_string(),
            Fault::Pause { targets } => format!("pause {}", targets_name(targets)),
            Fault::PowerLoss { targets } => format!("power loss of {}", targets_name(targets)),
            Fault::ClockSkew { targets, rate } => {
                format!("clock of {} at {rate}x", targets_name(targets))
            }
            Fault::ClockJump { targets, offset_ms } => {
                format!(
                    "clock of {} jumps {}",
                    targets_name(targets),
                    signed_ms(*offset_ms)
                )
            }
            Fault::ClockStrobe {
                targets,
                offset_ms,
                period_ms,
            } => format!(
                "clock of {} strobes by {} every {period_ms} ms",
                targets_name(targets),
                signed_ms(*offset_ms)
            ),
            Fault::Corrupt {
                targets,
                file,
                damage,
                ..
            } => format!(
                "{} the {} of {}",
                damage.name(),
                file.name(),
                targets_name(targets)
            ),
            Fault::Slow { nodes, rate_kbit } => {
                format!("slow {} to {rate_kbit} kbit/s", list(nodes))
            }
            Fault::Flaky { nodes, loss } => {
                format!("flaky {} ({:.0}% loss)", list(nodes), loss * 100.0)
            }
            Fault::Delay {
                nodes, delay_ms, ..
            } => format!("delay {} by {delay_ms} ms", list(nodes)),
        }
    }
}

fn list(nodes: &[NodeId]) -> String {
    nodes
        .iter()
        .map(|n| format!("n{n}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn signed_ms(ms: i64) -> String {
    if ms < 0 {
        format!("-{} ms", -ms)
    } else {
        format!("+{ms} ms")
    }
}

fn targets_name(t: &Targets) -> String {
    match t {
        Targets::Nodes(n) => list(n),
        Targets::Leader => "leader".to_string(),
        Targets::All => "all".to_string(),
    }
}

pub fn shape_name(shape: PartitionShape) -> &'static str {
    match shape {
        PartitionShape::IsolateOne => "isolate-one",
        PartitionShape::IsolateLeader => "isolate-leader",
        PartitionShape::RandomHalves => "random-halves",
        PartitionShape::MajoritiesRing => "majorities-ring",
        PartitionShape::Bridge => "bridge",
        PartitionShape::MinorityCut => "minority-cut",
    }
}

/// The interface a node's traffic leaves by, in both the netns and docker backends.
pub const NODE_DEVICE: &str = "eth0";
/// How long iptables waits for the xtables lock (another iptables running on the host).
const XTABLES_WAIT_S: &str = "5";

fn words(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

/// The iptables commands that make one node drop traffic from and to `peers`.
pub fn drop_commands(peers: &[Ipv4Addr]) -> Vec<Vec<String>> {
    let mut cmds = Vec::new();
    for ip in peers {
        let ip = ip.to_string();
        cmds.push(words(&[
            "iptables",
            "-w",
            XTABLES_WAIT_S,
            "-A",
            "INPUT",
            "-s",
            &ip,
            "-j",
            "DROP",
        ]));
        cmds.push(words(&[
            "iptables",
            "-w",
            XTABLES_WAIT_S,
            "-A",
            "OUTPUT",
            "-d",
            &ip,
            "-j",
            "DROP",
        ]));
    }
    cmds
}

/// Drops a random fraction of the packets a node receives.
pub fn loss_commands(loss: f64) -> Vec<Vec<String>> {
    vec![words(&[
        "iptables",
        "-w",
        XTABLES_WAIT_S,
        "-A",
        "INPUT",
        "-m",
        "statistic",
        "--mode",
        "random",
        "--probability",
        &format!("{loss:.4}"),
        "-j",
        "DROP",
    ])]
}

/// Removes every filter rule in a node's namespace: all of them are ours.
pub fn flush_commands() -> Vec<Vec<String>> {
    vec![
        words(&["iptables", "-w", XTABLES_WAIT_S, "-F", "INPUT"]),
        words(&["iptables", "-w", XTABLES_WAIT_S, "-F", "OUTPUT"]),
    ]
}

/// Rate-limits a node's outgoing traffic with a token bucket.
pub fn slow_commands(rate_kbit: u32) -> Vec<Vec<String>> {
    vec![words(&[
        "tc",
        "qdisc",
        "replace",
        "dev",
        NODE_DEVICE,
        "root",
        "tbf",
        "rate",
        &format!("{rate_kbit}kbit"),
        "burst",
        "32kbit",
        "latency",
        "400ms",
    ])]
}

pub fn delay_commands(delay_ms: u32, jitter_ms: u32, reorder_percent: u32) -> Vec<Vec<String>> {
    vec![words(&[
        "tc",
        "qdisc",
        "replace",
        "dev",
        NODE_DEVICE,
        "root",
        "netem",
        "delay",
        &format!("{delay_ms}ms"),
        &format!("{jitter_ms}ms"),
        "reorder",
        &format!("{reorder_percent}%"),
    ])]
}

/// Puts the default qdisc back. Fails harmlessly ("no qdisc") when none of ours is there.
pub fn qdisc_reset_commands() -> Vec<Vec<String>> {
    vec![words(&["tc", "qdisc", "del", "dev", NODE_DEVICE, "root"])]
}

/// `Option<Grudge>` as `[[node, [dropped, ...]], ...]` (see `Fault::Partition`).
mod grudge_pairs {
    use super::{Grudge, NodeId};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    type Pairs = Vec<(NodeId, Vec<NodeId>)>;

    pub fn serialize<S: Serializer>(grudge: &Option<Grudge>, s: S) -> Result<S::Ok, S::Error> {
        grudge
            .as_ref()
            .map(|g| {
                g.iter()
                    .map(|(n, d)| (*n, d.iter().copied().collect()))
                    .collect::<Pairs>()
            })
            .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Grudge>, D::Error> {
        let pairs: Option<Pairs> = Option::deserialize(d)?;
        Ok(pairs.map(|p| {
            p.into_iter()
                .map(|(n, dropped)| (n, dropped.into_iter().collect()))
                .collect()
        }))
    }
}

#[cfg(test)]
mod serde_tests {
    use crate::schedule::{Pacing, Schedule};
    use crate::{Fault, FaultKind, FaultSet, Targets};

    #[test]
    fn corrupt_parses_and_its_steps_hit_one_node_and_read_back() {
        let set: FaultSet = "kill, corrupt".parse().unwrap();
        assert_eq!(set.kinds(), &[FaultKind::Kill, FaultKind::Corrupt]);
        assert_eq!(FaultKind::Corrupt.name(), "corrupt");
        assert!(!FaultKind::Corrupt.is_network());
        let e = "corrupted".parse::<FaultSet>().unwrap_err().to_string();
        assert!(e.contains("unknown fault") && e.contains("corrupt"), "{e}");
        let (mut files, mut damages) = (Vec::new(), Vec::new());
        for seed in 0..20 {
            let s = Schedule::generate(
                seed,
                &[FaultKind::Corrupt],
                &[1, 2, 3],
                60_000,
                Pacing::default(),
            )
            .unwrap();
            assert_eq!(Schedule::from_json(&s.to_json()).unwrap(), s, "seed {seed}");
            for step in &s.steps {
                let Fault::Corrupt {
                    targets,
                    file,
                    damage,
                    ..
                } = &step.fault
                else {
                    panic!("seed {seed}: a corrupt schedule has {:?}", step.fault);
                };
                match targets {
                    Targets::Leader => {}
                    Targets::Nodes(n) => assert_eq!(n.len(), 1, "one node at a time"),
                    Targets::All => panic!("corrupt never hits every node"),
                }
                files.push(*file);
                damages.push(*damage);
                assert_eq!(step.fault.kind(), FaultKind::Corrupt);
            }
        }
        use crate::fault::{Damage, DataFile};
        for f in [DataFile::Wal, DataFile::Snapshot] {
            assert!(files.contains(&f), "{f:?} is never hit");
        }
        for d in [Damage::Bitflip, Damage::Truncate] {
            assert!(damages.contains(&d), "{d:?} is never done");
        }
    }

    #[test]
    fn a_schedule_with_partitions_reads_back() {
        for seed in 0..20 {
            let s = Schedule::generate(
                seed,
                &[FaultKind::Partition],
                &[1, 2, 3, 4, 5],
                60_000,
                Pacing::default(),
            )
            .unwrap();
            assert_eq!(Schedule::from_json(&s.to_json()).unwrap(), s, "seed {seed}");
        }
    }
}
