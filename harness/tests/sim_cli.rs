//! `schism sim` as a user meets it: the gate's simulated column, a failing seed's results
//! directory (report, faults, `schism check`), and replay from the seed. The bug tests need the
//! schism this test builds to have bugs: `cargo test -p schism --features bugs --test sim_cli`.

use schism::gate::{SimColumn, simulated_bug_rows};
use std::path::PathBuf;
#[cfg(feature = "bugs")]
use std::process::Command;

fn schism() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_schism"))
}

/// Runs `schism ARGS --results RESULTS`, the replay of a failing seed (exit code 1), and
/// returns the seed's results directory it wrote.
#[cfg(feature = "bugs")]
fn replay(args: &[&str], results: &std::path::Path) -> PathBuf {
    let status = Command::new(schism())
        .args(args)
        .arg("--results")
        .arg(results)
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(1), "{args:?}");
    std::fs::read_dir(results.join("sim"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
}

/// Every bug the simulator expresses has a row of the catch matrix with a checker the
/// simulation runs among those that must flag it: the column cannot silently shrink.
#[test]
fn every_simulated_bug_has_a_matrix_row_the_simulation_can_flag() {
    let rows = simulated_bug_rows(None);
    assert_eq!(
        rows.len(),
        sim::SIMULATED_BUGS.len() + sim::SIMULATED_WITH_WORKLOAD.len(),
        "{rows:?}"
    );
    // What every seed runs, and what each workload adds (checker::WorkloadKind::checkers).
    let runs = [
        "single-leader",
        "convergence",
        "recovery",
        "monotonic-reads",
        "watches",
    ];
    for row in &rows {
        let workload = row.workload.as_deref().unwrap_or("register");
        let kind = checker::WorkloadKind::from_name(workload).expect("a workload");
        assert!(
            row.must_flag
                .iter()
                .any(|c| runs.contains(&c.as_str()) || kind.checkers().contains(&c.as_str())),
            "{}: the simulation runs none of {:?}",
            row.bug,
            row.must_flag
        );
    }
}

/// The correct server's row passes over a bounded number of seeds.
#[test]
fn the_correct_server_passes_the_simulated_column() {
    let dir = tempfile::tempdir().unwrap();
    let column = SimColumn::new(
        schism(),
        schism(),
        vec![],
        500,
        0,
        40,
        dir.path().to_path_buf(),
    );
    let rows = column.run().expect("the column runs");
    assert_eq!(rows.len(), 2, "own clients, and --workload any");
    for row in &rows {
        assert!(row.pass, "{row:?}");
        assert_eq!(row.seeds, 40);
    }
    assert_eq!(rows[1].workload.as_deref(), Some("any"));
}

/// The gate's simulated column catches every simulable bug, by a checker that must flag it.
#[cfg(feature = "bugs")]
#[test]
fn the_simulated_column_catches_every_simulable_bug() {
    let dir = tempfile::tempdir().unwrap();
    let column = SimColumn::new(
        schism(),
        schism(),
        simulated_bug_rows(None),
        0,
        100,
        0,
        dir.path().to_path_buf(),
    );
    let rows = column.run().expect("the column runs");
    assert_eq!(
        rows.len(),
        sim::SIMULATED_BUGS.len() + sim::SIMULATED_WITH_WORKLOAD.len()
    );
    for r in &rows {
        assert!(r.pass, "{r:?}");
        let at = r.caught_at.expect("caught at a seed");
        assert_eq!(r.seeds, at + 1, "seeds counted to the detection: {r:?}");
        assert!(r.caught_by.iter().any(|c| r.must_flag.contains(c)), "{r:?}");
    }
}

/// A failing seed is an ordinary results directory: `report.html` with the faults from
/// `nemesis.jsonl`, `schism check` gives the same verdict, and `--seed` replays the same history.
#[cfg(feature = "bugs")]
#[test]
fn a_failing_seed_opens_like_a_real_run_and_replays() {
    let dir = tempfile::tempdir().unwrap();
    let run = |results: &std::path::Path| {
        let summary = results.join("summary.json");
        let status = Command::new(schism())
            .args(["sim", "--server-bug", "early-ack", "--seeds", "20"])
            .arg("--results")
            .arg(results)
            .arg("--summary")
            .arg(&summary)
            .status()
            .unwrap();
        assert_eq!(status.code(), Some(1), "early-ack must be found");
        let s: schism::sim::SimSummary =
            serde_json::from_str(&std::fs::read_to_string(summary).unwrap()).unwrap();
        s.failing
            .into_iter()
            .find(|f| f.verdict == schism::verdict::Verdict::Invalid)
            .expect("an invalid seed")
    };
    let first = run(&dir.path().join("a"));
    let run_dir = first.dir.expect("a results directory");
    let html = std::fs::read_to_string(run_dir.join("report.html")).unwrap();
    assert!(html.contains(r#"data-verdict="invalid""#));
    let faults = checker::faults::read_fault_log(&run_dir.join("nemesis.jsonl"));
    assert!(!faults.periods.is_empty(), "{faults:?}");
    assert_eq!(faults.skipped_lines, 0);
    for p in &faults.periods {
        assert!(
            html.contains(&schism::report::escape(&p.label())),
            "{}",
            p.label()
        );
    }
    let check = Command::new(schism())
        .arg("check")
        .arg(&run_dir)
        .output()
        .unwrap();
    assert_eq!(check.status.code(), Some(1), "{check:?}");

    // The same seed again: the same history, byte for byte.
    let seed = first.seed.to_string();
    let replayed = replay(
        &["sim", "--server-bug", "early-ack", "--seed", &seed],
        &dir.path().join("b"),
    );
    assert_eq!(
        std::fs::read(run_dir.join("history.jsonl")).unwrap(),
        std::fs::read(replayed.join("history.jsonl")).unwrap()
    );
    assert_eq!(
        std::fs::read(run_dir.join("nemesis.jsonl")).unwrap(),
        std::fs::read(replayed.join("nemesis.jsonl")).unwrap()
    );
}

/// Each of schism's workloads runs in simulation (`schism sim --workload W`): its operations
/// succeed in the history, each of its checkers judges them valid on the correct server, and a
/// second run of the seed gives the same history.
#[test]
fn every_workload_runs_in_simulation_and_replays_bit_for_bit() {
    use checker::history::EventType;
    use schism::verdict::Verdict;
    for kind in checker::WorkloadKind::ALL {
        let cfg = sim::SimConfig {
            seed: 3,
            ..sim::SimConfig::default()
        };
        let first = schism::sim::run_seed(&cfg, Some(kind));
        assert_eq!(first.workload, kind.name());
        assert_eq!(
            first.verdict.verdict,
            Verdict::Valid,
            "{kind:?}: {:?}",
            first.verdict
        );
        for name in kind.checkers() {
            let c = first.verdict.checkers.iter().find(|c| c.name == *name);
            assert!(
                c.is_some_and(|c| c.verdict == Verdict::Valid),
                "{kind:?}: {name}: {c:?}"
            );
        }
        // Each operation kind the workload invoked succeeded (the quiet phase sees to it), and
        // the seed did more than a handful.
        let mut by_f = std::collections::BTreeMap::new();
        let issued = first
            .history
            .iter()
            .filter(|e| !e.is_observation() && !kind.recovery_ops().contains(&e.f.as_str()));
        for e in issued {
            *by_f.entry(e.f.as_str()).or_insert(0) += usize::from(e.kind == EventType::Ok);
        }
        assert!(
            by_f.values().all(|&ok| ok > 0),
            "{kind:?}: an operation kind never succeeded: {by_f:?}"
        );
        let done: usize = by_f.values().sum();
        assert!(done >= 20, "{kind:?}: only {done} operations succeeded");
        let again = schism::sim::run_seed(&cfg, Some(kind));
        assert_eq!(first.history_hash, again.history_hash, "{kind:?}");
    }
}

/// A bug that only a workload of schism's shows in simulation (ephemeral nodes) is found
/// through it, its seed's directory names the workload, `schism check` agrees, and the replay
/// command it records gives the same history.
#[cfg(feature = "bugs")]
#[test]
fn a_workload_seed_fails_checks_and_replays_with_its_workload() {
    let dir = tempfile::tempdir().unwrap();
    let summary = dir.path().join("summary.json");
    let status = Command::new(schism())
        .args([
            "sim",
            "--server-bug",
            "ephemeral-leak",
            "--workload",
            "session",
        ])
        .args(["--seeds", "20", "--stop-on-failure", "--results"])
        .arg(dir.path())
        .arg("--summary")
        .arg(&summary)
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(1), "ephemeral-leak must be found");
    let s: schism::sim::SimSummary =
        serde_json::from_str(&std::fs::read_to_string(summary).unwrap()).unwrap();
    let failing = s.failing.first().expect("a failing seed");
    assert!(
        failing.invalid.contains(&"sessions".to_string()),
        "{failing:?}"
    );
    let run_dir = failing.dir.clone().expect("a results directory");
    let test: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("test.json")).unwrap()).unwrap();
    assert_eq!(test["workload"], "session");
    let replay_command = test["replay"].as_str().unwrap();
    assert!(
        replay_command.contains("--workload session"),
        "{replay_command}"
    );
    let check = Command::new(schism())
        .arg("check")
        .arg(&run_dir)
        .output()
        .unwrap();
    assert_eq!(check.status.code(), Some(1), "{check:?}");
    let args: Vec<&str> = replay_command.split_whitespace().skip(1).collect();
    let replayed = replay(&args, &dir.path().join("again"));
    assert_eq!(
        std::fs::read(run_dir.join("history.jsonl")).unwrap(),
        std::fs::read(replayed.join("history.jsonl")).unwrap()
    );
}
