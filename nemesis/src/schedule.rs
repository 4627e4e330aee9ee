//! Fault schedules: generated from a seed, written to the results before the run, replayed
//! exactly from that file. Steps do not overlap: each fault starts, lasts, heals, and the next
//! one starts after a gap, so a heal never undoes another fault's rules.

use crate::NemesisError;
use crate::fault::{Damage, DataFile, Fault, FaultKind, PartitionShape, Targets};
use crate::grudge;
use cluster::NodeId;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// One fault: starts `at_ms` after the nemesis starts and heals `duration_ms` later.
#[derive(Serialize, Deserialize, Clone, PartialEq, Debug)]
pub struct Step {
    pub at_ms: u64,
    pub duration_ms: u64,
    #[serde(flatten)]
    pub fault: Fault,
}

/// Bounds on fault and gap lengths.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
pub struct Pacing {
    /// Quiet time before the first fault.
    pub lead_in_ms: u64,
    pub min_fault_ms: u64,
    pub max_fault_ms: u64,
    /// Healthy time between a heal and the next fault.
    pub min_gap_ms: u64,
    pub max_gap_ms: u64,
}

impl Default for Pacing {
    fn default() -> Pacing {
        Pacing {
            lead_in_ms: 2_000,
            min_fault_ms: 3_000,
            max_fault_ms: 10_000,
            min_gap_ms: 2_000,
            max_gap_ms: 5_000,
        }
    }
}

impl Pacing {
    /// Pacing around a mean interval between fault starts (`--nemesis-interval`).
    pub fn around_interval(interval_ms: u64) -> Pacing {
        let i = interval_ms.max(1_000);
        Pacing {
            lead_in_ms: (i / 2).min(5_000),
            min_fault_ms: i / 3,
            max_fault_ms: i * 2 / 3,
            min_gap_ms: i / 3,
            max_gap_ms: i * 2 / 3,
        }
    }
}

/// Rate of the `slow` fault's token bucket.
pub const SLOW_RATE_KBIT: u32 = 256;
/// Loss probabilities the `flaky` fault picks from.
pub const FLAKY_LOSS: [f64; 3] = [0.1, 0.25, 0.5];
/// Rates the `clock-skew` fault picks from: slow, and fast up to what keeper's session expiry
/// tolerates by design (it waits two timeouts of its own clock; see docs/FAULTS.md).
pub const CLOCK_SKEW_RATES: [f64; 3] = [0.5, 2.0, 3.0];
/// Jumps the `clock-jump` fault picks from, in milliseconds (back and forward). A node's tokio
/// timers stall for as long as its monotonic clock went back (a back jump, or the heal of a
/// forward one), so jumps stay well inside a run's recovery window (see docs/FAULTS.md).
pub const CLOCK_JUMPS_MS: [i64; 4] = [-10_000, -2_000, 2_000, 10_000];
/// Offsets and periods of the `clock-strobe` fault.
pub const CLOCK_STROBE_OFFSETS_MS: [i64; 4] = [-5_000, -1_000, 1_000, 5_000];
pub const CLOCK_STROBE_PERIODS_MS: [u64; 3] = [10, 50, 200];
/// Most steps in one schedule.
pub const MAX_STEPS: usize = 10_000;

#[derive(Serialize, Deserialize, Clone, PartialEq, Debug)]
pub struct Schedule {
    pub seed: u64,
    pub nodes: Vec<NodeId>,
    pub time_limit_ms: u64,
    pub faults: Vec<FaultKind>,
    pub pacing: Pacing,
    pub steps: Vec<Step>,
}

impl Schedule {
    /// Generates the steps for `faults` on `nodes` within `time_limit_ms`. The same arguments
    /// always give the same schedule.
    pub fn generate(
        seed: u64,
        faults: &[FaultKind],
        nodes: &[NodeId],
        time_limit_ms: u64,
        pacing: Pacing,
    ) -> Result<Schedule, NemesisError> {
        if nodes.is_empty() {
            return Err(NemesisError::Invalid("a schedule needs nodes".to_string()));
        }
        if pacing.min_fault_ms > pacing.max_fault_ms || pacing.min_gap_ms > pacing.max_gap_ms {
            return Err(NemesisError::Invalid(
                "fault and gap bounds are inverted".to_string(),
            ));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut steps = Vec::new();
        let mut t = pacing.lead_in_ms;
        while !faults.is_empty() && steps.len() < MAX_STEPS {
            let duration = rng.random_range(pacing.min_fault_ms..=pacing.max_fault_ms);
            if t + duration > time_limit_ms {
                break;
            }
            let kind = *faults.choose(&mut rng).expect("faults is not empty");
            let fault = generate_fault(kind, nodes, &mut rng);
            steps.push(Step {
                at_ms: t,
                duration_ms: duration,
                fault,
            });
            t += duration + rng.random_range(pacing.min_gap_ms..=pacing.max_gap_ms);
        }
        Ok(Schedule {
            seed,
            nodes: nodes.to_vec(),
            time_limit_ms,
            faults: faults.to_vec(),
            pacing,
            steps,
        })
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a schedule serializes")
    }

    pub fn from_json(text: &str) -> Result<Schedule, NemesisError> {
        serde_json::from_str(text)
            .map_err(|e| NemesisError::Invalid(format!("not a fault schedule: {e}")))
    }

    /// Writes the schedule (the harness does this before the nemesis starts).
    pub fn write(&self, path: &Path) -> Result<(), NemesisError> {
        std::fs::write(path, self.to_json())
            .map_err(|e| NemesisError::Invalid(format!("writing {}: {e}", path.display())))
    }

    /// Reads a schedule written by [`Schedule::write`], for a replay.
    pub fn read(path: &Path) -> Result<Schedule, NemesisError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| NemesisError::Invalid(format!("reading {}: {e}", path.display())))?;
        Schedule::from_json(&text)
    }

    /// The distinct kinds the steps use.
    pub fn kinds(&self) -> Vec<FaultKind> {
        let mut kinds: Vec<FaultKind> = self.steps.iter().map(|s| s.fault.kind()).collect();
        kinds.sort();
        kinds.dedup();
        kinds
    }
}

fn minority(nodes: &[NodeId], rng: &mut ChaCha8Rng) -> Vec<NodeId> {
    let mut shuffled = nodes.to_vec();
    shuffled.shuffle(rng);
    let max = ((nodes.len().saturating_sub(1)) / 2).max(1);
    let size = rng.random_range(1..=max).min(nodes.len());
    let mut chosen = shuffled[..size].to_vec();
    chosen.sort();
    chosen
}

fn process_targets(nodes: &[NodeId], rng: &mut ChaCha8Rng) -> Targets {
    match rng.random_range(0..4u32) {
        0 => Targets::Nodes(vec![*nodes.choose(rng).expect("nodes is not empty")]),
        1 => Targets::Nodes(minority(nodes, rng)),
        2 => Targets::Leader,
        _ => Targets::All,
    }
}

fn generate_fault(kind: FaultKind, nodes: &[NodeId], rng: &mut ChaCha8Rng) -> Fault {
    match kind {
        FaultKind::Partition => {
            let shapes = [
                PartitionShape::IsolateOne,
                PartitionShape::IsolateLeader,
                PartitionShape::RandomHalves,
                PartitionShape::MajoritiesRing,
                PartitionShape::Bridge,
                PartitionShape::MinorityCut,
            ];
            let shape = *shapes.choose(rng).expect("shapes is not empty");
            let grudge = match shape {
                PartitionShape::IsolateOne => {
                    let node = *nodes.choose(rng).expect("nodes is not empty");
                    Some(grudge::isolate(node, nodes))
                }
                PartitionShape::IsolateLeader => None,
                PartitionShape::RandomHalves => Some(grudge::random_halves(nodes, rng)),
                PartitionShape::MajoritiesRing => Some(grudge::majorities_ring(nodes, rng)),
                PartitionShape::Bridge => Some(grudge::bridge(nodes, rng)),
                PartitionShape::MinorityCut => Some(grudge::minority_cut(nodes, rng)),
            };
            Fault::Partition { shape, grudge }
        }
        FaultKind::PartitionLeader => Fault::Partition {
            shape: PartitionShape::IsolateLeader,
            grudge: None,
        },
        FaultKind::Kill => Fault::Kill {
            targets: process_targets(nodes, rng),
        },
        FaultKind::KillLeader => Fault::Kill {
            targets: Targets::Leader,
        },
        FaultKind::DeposeLeader => Fault::Depose,
        FaultKind::KillAll => Fault::Kill {
            targets: Targets::All,
        },
        FaultKind::Pause => Fault::Pause {
            targets: process_targets(nodes, rng),
        },
        // Half the time every node at once (a rack losing power): losing unsynced writes on a
        // minority only is repaired from the others, so it rarely shows a missing fsync.
        FaultKind::PowerLoss => Fault::PowerLoss {
            targets: if rng.random_bool(0.5) {
                Targets::All
            } else {
                process_targets(nodes, rng)
            },
        },
        FaultKind::ClockSkew => Fault::ClockSkew {
            targets: process_targets(nodes, rng),
            rate: *CLOCK_SKEW_RATES.choose(rng).expect("not empty"),
        },
        FaultKind::ClockJump => Fault::ClockJump {
            targets: process_targets(nodes, rng),
            offset_ms: *CLOCK_JUMPS_MS.choose(rng).expect("not empty"),
        },
        FaultKind::ClockStrobe => Fault::ClockStrobe {
            targets: process_targets(nodes, rng),
            offset_ms: *CLOCK_STROBE_OFFSETS_MS.choose(rng).expect("not empty"),
            period_ms: *CLOCK_STROBE_PERIODS_MS.choose(rng).expect("not empty"),
        },
        // One node at a time, as Jepsen's bitflip and truncate: the others keep a copy of
        // everything it acknowledged. Half the time the leader, whose log is the longest.
        FaultKind::Corrupt => Fault::Corrupt {
            targets: if rng.random_bool(0.5) {
                Targets::Leader
            } else {
                Targets::Nodes(vec![*nodes.choose(rng).expect("nodes is not empty")])
            },
            file: *[DataFile::Wal, DataFile::Snapshot]
                .choose(rng)
                .expect("not empty"),
            damage: *[Damage::Bitflip, Damage::Truncate]
                .choose(rng)
                .expect("not empty"),
            seed: rng.random(),
        },
        FaultKind::Slow => Fault::Slow {
            nodes: minority(nodes, rng),
            rate_kbit: SLOW_RATE_KBIT,
        },
        FaultKind::Flaky => Fault::Flaky {
            nodes: minority(nodes, rng),
            loss: *FLAKY_LOSS.choose(rng).expect("not empty"),
        },
        FaultKind::Delay => Fault::Delay {
            nodes: minority(nodes, rng),
            delay_ms: rng.random_range(20..=200),
            jitter_ms: rng.random_range(0..=50),
            reorder_percent: rng.random_range(0..=25),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_schedule_and_json_round_trips() {
        let kinds = FaultKind::ALL.to_vec();
        let nodes = vec![1, 2, 3, 4, 5];
        let a = Schedule::generate(9, &kinds, &nodes, 120_000, Pacing::default()).unwrap();
        let b = Schedule::generate(9, &kinds, &nodes, 120_000, Pacing::default()).unwrap();
        assert_eq!(a, b);
        assert!(!a.steps.is_empty());
        assert_eq!(Schedule::from_json(&a.to_json()).unwrap(), a);
        let c = Schedule::generate(10, &kinds, &nodes, 120_000, Pacing::default()).unwrap();
        assert_ne!(a.steps, c.steps);
    }

    #[test]
    fn steps_fit_the_time_limit_and_do_not_overlap() {
        let nodes = vec![1, 2, 3];
        for seed in 0..50 {
            let s = Schedule::generate(
                seed,
                &[FaultKind::Partition, FaultKind::Kill],
                &nodes,
                60_000,
                Pacing::default(),
            )
            .unwrap();
            let mut end = 0;
            for step in &s.steps {
                assert!(step.at_ms >= end);
                end = step.at_ms + step.duration_ms;
                assert!(end <= 60_000);
            }
        }
    }

    #[test]
    fn clock_faults_parse_and_pick_settings_from_their_lists() {
        let set = FaultKind::parse_set("clock-skew, clock-jump,clock-strobe,clock-skew").unwrap();
        assert_eq!(
            set,
            vec![
                FaultKind::ClockSkew,
                FaultKind::ClockJump,
                FaultKind::ClockStrobe
            ]
        );
        assert!(set.iter().all(|k| k.is_clock() && !k.is_network()));
        assert!("clock-drift".parse::<FaultKind>().is_err());
        let mut seen = [false; 3];
        for seed in 0..30 {
            let s = Schedule::generate(seed, &set, &[1, 2, 3], 120_000, Pacing::default()).unwrap();
            assert_eq!(Schedule::from_json(&s.to_json()).unwrap(), s, "seed {seed}");
            for step in &s.steps {
                match &step.fault {
                    Fault::ClockSkew { rate, .. } => {
                        seen[0] = true;
                        assert!(CLOCK_SKEW_RATES.contains(rate));
                    }
                    Fault::ClockJump { offset_ms, .. } => {
                        seen[1] = true;
                        assert!(CLOCK_JUMPS_MS.contains(offset_ms));
                    }
                    Fault::ClockStrobe {
                        offset_ms,
                        period_ms,
                        ..
                    } => {
                        seen[2] = true;
                        assert!(CLOCK_STROBE_OFFSETS_MS.contains(offset_ms));
                        assert!(CLOCK_STROBE_PERIODS_MS.contains(period_ms));
                    }
                    other => panic!("not a clock fault: {other:?}"),
                }
            }
        }
        assert_eq!(seen, [true; 3]);
    }

    #[test]
    fn no_faults_means_no_steps() {
        let s = Schedule::generate(1, &[], &[1, 2, 3], 60_000, Pacing::default()).unwrap();
        assert!(s.steps.is_empty());
    }
}
