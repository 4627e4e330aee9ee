//! The simulator as a product: a seed replays bit for bit, the correct server is valid over many
//! seeds, and (with the `bugs` feature) injected protocol bugs are found within a few seeds.

use checker::Verdict;
use sim::{SimConfig, run_seed};

fn config(seed: u64) -> SimConfig {
    SimConfig {
        seed,
        ..SimConfig::default()
    }
}

#[test]
fn a_seed_replays_bit_for_bit() {
    for seed in 0..4 {
        let a = run_seed(&config(seed));
        let b = run_seed(&config(seed));
        assert!(a.history.len() > 10, "seed {seed}: too little happened");
        assert_eq!(
            a.history_hash, b.history_hash,
            "seed {seed} is not deterministic"
        );
        assert_eq!(a.status.len(), b.status.len());
    }
}

/// No checker finds anything on the correct server: safety, and recovery after the heal (the
/// stalls this simulator found are fixed; see docs/SIM.md).
#[test]
fn the_correct_server_is_safe() {
    let seeds: u64 = std::env::var("SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(50);
    let mut checked = 0;
    for seed in 100..100 + seeds {
        let o = run_seed(&config(seed));
        for c in &o.verdict.checkers {
            assert_ne!(
                c.verdict,
                Verdict::Invalid,
                "seed {seed}: {} {}",
                c.name,
                c.summary
            );
            checked += usize::from(c.verdict == Verdict::Valid);
        }
    }
    assert!(checked as u64 >= seeds * 4, "too few checkers said valid");
}

/// Every seed's clients set watches and see them fire, and the watches checker judges them
/// with evidence: a seed whose watches were never set or never fired would test nothing.
#[test]
fn every_seed_sets_watches_and_the_watches_checker_judges_them() {
    for seed in 0..10 {
        let o = run_seed(&config(seed));
        let watches = o
            .verdict
            .checkers
            .iter()
            .find(|c| c.name == "watches")
            .unwrap_or_else(|| panic!("seed {seed}: no watches checker"));
        assert_eq!(
            watches.verdict,
            Verdict::Valid,
            "seed {seed}: {}",
            watches.summary
        );
        let count = |k: &str| watches.details.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
        assert!(count("watches") > 0, "seed {seed}: {}", watches.summary);
        assert!(count("events") > 0, "seed {seed}: {}", watches.summary);
    }
}

/// Skewed and jumping clocks reach the cores (a seed's history changes with them), and a seed
/// with them still replays bit for bit.
#[test]
fn a_seed_with_skewed_and_jumping_clocks_replays_bit_for_bit() {
    let mut jumps = 0;
    for seed in 0..4 {
        let skewed = SimConfig {
            clocks: Some(true),
            disks: None,
            ..config(seed)
        };
        let a = run_seed(&skewed);
        let b = run_seed(&skewed);
        assert_eq!(
            a.history_hash, b.history_hash,
            "seed {seed} with clock faults is not deterministic"
        );
        assert_eq!(a.faults, b.faults, "seed {seed}: the faults differ");
        assert!(a.swarm.skew_ppm.iter().any(|s| *s != 0));
        let exact = run_seed(&SimConfig {
            clocks: Some(false),
            disks: None,
            ..config(seed)
        });
        assert_ne!(
            a.history_hash, exact.history_hash,
            "seed {seed}: skewed clocks changed nothing the clients saw"
        );
        jumps += a.faults.iter().filter(|f| f.fault == "clock").count();
    }
    assert!(jumps > 0, "no clock jumped in 4 seeds");
}

/// The correct server stays safe when every node's clock is skewed and jumps.
#[test]
fn the_correct_server_is_safe_under_clock_faults() {
    for seed in 200..230 {
        let o = run_seed(&SimConfig {
            clocks: Some(true),
            disks: None,
            ..config(seed)
        });
        for c in &o.verdict.checkers {
            assert_ne!(
                c.verdict,
                Verdict::Invalid,
                "seed {seed} (clock faults): {} {}",
                c.name,
                c.summary
            );
        }
    }
}

/// Disk faults happen (power losses that lose unsynced bytes and tear records, bit flips that
/// a restart finds as damage, batches waiting for their fsync while a leader's proposals
/// leave), the correct server stays safe and live through them, and a seed with them replays
/// bit for bit.
#[test]
fn the_correct_server_is_safe_under_disk_faults() {
    let mut total = sim::DiskEvents::default();
    for seed in 300..330 {
        let cfg = SimConfig {
            disks: Some(true),
            ..config(seed)
        };
        let o = run_seed(&cfg);
        for c in &o.verdict.checkers {
            assert_ne!(
                c.verdict,
                Verdict::Invalid,
                "seed {seed} (disk faults): {} {}",
                c.name,
                c.summary
            );
        }
        if seed < 303 {
            assert_eq!(
                o.history_hash,
                run_seed(&cfg).history_hash,
                "seed {seed} with disk faults is not deterministic"
            );
        }
        let e = &o.disk_events;
        total.power_losses += e.power_losses;
        total.lost_unsynced += e.lost_unsynced;
        total.torn += e.torn;
        total.corruptions += e.corruptions;
        total.damaged_opens += e.damaged_opens;
        total.undetected_corruptions += e.undetected_corruptions;
        total.delayed_fsyncs += e.delayed_fsyncs;
    }
    eprintln!("disk events over 30 seeds: {total:?}");
    assert!(
        total.lost_unsynced > 0,
        "no power loss lost a write: {total:?}"
    );
    assert!(total.torn > 0, "no power loss tore a record: {total:?}");
    assert!(
        total.damaged_opens > 0,
        "no corruption was found on restart: {total:?}"
    );
    assert_eq!(
        total.undetected_corruptions, 0,
        "a bit flip went unseen: {total:?}"
    );
    assert!(
        total.delayed_fsyncs > 0,
        "no batch waited for its fsync: {total:?}"
    );
}

/// Snapshots on the shell's schedule happen (nodes save them and restart from them), the
/// correct server stays safe and live through them, and a seed with them replays bit for bit.
#[test]
fn the_correct_server_is_safe_with_snapshots_on_a_schedule() {
    let mut total = sim::DiskEvents::default();
    for seed in 400..430 {
        let cfg = SimConfig {
            snapshots: Some(true),
            ..config(seed)
        };
        let o = run_seed(&cfg);
        assert!(o.swarm.snapshot_every_txns.is_some(), "seed {seed}");
        for c in &o.verdict.checkers {
            assert_ne!(
                c.verdict,
                Verdict::Invalid,
                "seed {seed} (snapshots): {} {}",
                c.name,
                c.summary
            );
        }
        if seed < 403 {
            assert_eq!(
                o.history_hash,
                run_seed(&cfg).history_hash,
                "seed {seed} with snapshots is not deterministic"
            );
        }
        total.snapshots += o.disk_events.snapshots;
        total.snapshot_restarts += o.disk_events.snapshot_restarts;
    }
    eprintln!("snapshot events over 30 seeds: {total:?}");
    assert!(total.snapshots > 0, "no node saved a snapshot: {total:?}");
    assert!(
        total.snapshot_restarts > 0,
        "no node restarted from a snapshot: {total:?}"
    );
}

/// A SNAP sync held only in memory (`snapshot-in-memory`) is caught, by a checker the catch
/// matrix names for it, once the nodes snapshot on a schedule.
#[cfg(feature = "bugs")]
#[test]
fn a_snapshot_held_in_memory_is_caught_with_snapshots_on() {
    let caught = (0..200u64).find(|&seed| {
        let o = run_seed(&SimConfig {
            bug: Some(sim::Bug::SnapshotInMemory),
            snapshots: Some(true),
            ..config(seed)
        });
        o.verdict.checkers.iter().any(|c| {
            c.verdict == Verdict::Invalid && ["linearizable", "convergence"].contains(&&*c.name)
        })
    });
    eprintln!("snapshot-in-memory with snapshots on: found at seed {caught:?}");
    assert!(caught.is_some(), "the simulator missed snapshot-in-memory");
}

/// The fault log pairs every start with a heal at or after it, and ends with a heal of
/// everything: the report shades exactly the periods the faults were in effect.
#[test]
fn every_fault_is_logged_with_its_heal() {
    for seed in 0..4 {
        let o = run_seed(&config(seed));
        assert!(!o.faults.is_empty(), "seed {seed}: no fault");
        let last = o.faults.last().expect("some");
        assert_eq!(last.fault, "heal-all");
        for (i, f) in o.faults.iter().enumerate().filter(|(_, f)| f.start) {
            let heal = o.faults[i + 1..]
                .iter()
                .find(|h| !h.start && (h.step == f.step || h.step.is_none()))
                .unwrap_or_else(|| panic!("seed {seed}: {} never healed", f.description));
            assert!(heal.time_ns >= f.time_ns);
        }
        assert!(o.faults.windows(2).all(|w| w[0].time_ns <= w[1].time_ns));
    }
}

/// With keeper's injected bugs, each protocol bug the simulator can reach is found.
#[cfg(feature = "bugs")]
#[test]
fn injected_bugs_are_found() {
    for &bug in sim::SIMULATED_BUGS {
        let flagged = |o: &sim::SimOutcome| {
            o.verdict
                .checkers
                .iter()
                .filter(|c| c.verdict == Verdict::Invalid)
                .map(|c| c.name.clone())
                .collect::<Vec<_>>()
        };
        let found = (0..200u64).find(|&seed| {
            let o = run_seed(&SimConfig {
                bug: Some(bug),
                ..config(seed)
            });
            !flagged(&o).is_empty()
        });
        eprintln!("{}: found at seed {found:?}", bug.name());
        let seed = found.unwrap_or_else(|| panic!("the simulator missed {}", bug.name()));
        // The bug made the difference: the same seed on the correct server is not invalid.
        let correct = run_seed(&config(seed));
        assert!(
            flagged(&correct).is_empty(),
            "seed {seed} is invalid without {} too",
            bug.name()
        );
    }
}

/// Seed 113 once left a cluster that followed one leader but never committed again: both
/// followers had re-synced while proposals were outstanding, and their NEWLEADER acks were not
/// counted as acks of the proposals their sync carried. The cluster must now recover.
#[test]
fn a_quorum_resynced_during_outstanding_proposals_still_commits() {
    let o = run_seed(&config(113));
    let recovery = o
        .verdict
        .checkers
        .iter()
        .find(|c| c.name == "recovery")
        .expect("a recovery verdict");
    assert_eq!(recovery.verdict, Verdict::Valid, "{}", recovery.summary);
}
