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

/// Every bug the simulator expresses has a row of the catch matrix with a checker the
/// simulation runs among those that must flag it: the column cannot silently shrink.
#[test]
fn every_simulated_bug_has_a_matrix_row_the_simulation_can_flag() {
    let rows = simulated_bug_rows(None);
    assert_eq!(rows.len(), sim::SIMULATED_BUGS.len(), "{rows:?}");
    let runs = [
        "linearizable",
        "single-leader",
        "convergence",
        "recovery",
        "monotonic-reads",
        "watches",
    ];
    for (bug, must_flag) in &rows {
        assert!(
            must_flag.iter().any(|c| runs.contains(&c.as_str())),
            "{bug}: the simulation runs none of {must_flag:?}"
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
    assert_eq!(rows.len(), 1);
    assert!(rows[0].pass, "{:?}", rows[0]);
    assert_eq!(rows[0].seeds, 40);
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
    assert_eq!(rows.len(), sim::SIMULATED_BUGS.len());
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
    let again = dir.path().join("b");
    let status = Command::new(schism())
        .args(["sim", "--server-bug", "early-ack", "--seed"])
        .arg(first.seed.to_string())
        .arg("--results")
        .arg(&again)
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(1));
    let replayed = std::fs::read_dir(again.join("sim"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert_eq!(
        std::fs::read(run_dir.join("history.jsonl")).unwrap(),
        std::fs::read(replayed.join("history.jsonl")).unwrap()
    );
    assert_eq!(
        std::fs::read(run_dir.join("nemesis.jsonl")).unwrap(),
        std::fs::read(replayed.join("nemesis.jsonl")).unwrap()
    );
}
