//! A node under libfaketime (the clock faults' preload), on the local backend: its control file
//! exists while it runs, a jump written there reaches keeperd's core (the driver logs the leap it
//! saw), and teardown removes the file. Needs Debian's libfaketime; skipped with a line without it.

mod common;

use cluster::clock::{self, ClockSetting};
use cluster::{Backend, BackendKind};
use common::*;

/// Longest the node may take to notice the jump (it runs a batch every half tick).
const LEAP_SEEN_TIMEOUT_MS: u64 = 10_000;

#[tokio::test]
async fn a_clock_jump_reaches_the_node_and_its_control_file_is_removed_at_teardown() {
    require_backend!(BackendKind::Local);
    if let Err(e) = clock::check() {
        eprintln!("skipped: {e}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut spec = spec(BackendKind::Local, 1, dir.path()).await;
    spec.faketime = true;
    let control = clock::control_path(&spec.tag(), 1);
    let tag = spec.tag().0;
    let log = spec.node_log(1);
    let cluster = launch(BackendKind::Local, spec).await;
    let result = async {
        wait_for_leader(&cluster, &[1])
            .await
            .ok_or("the node never led")?;
        let listed = leftovers_of(&tag).await.clock_files;
        if listed.len() != 1 {
            return Err(format!(
                "clean would see {listed:?}, not the one control file"
            ));
        }
        let line = std::fs::read_to_string(&control).map_err(|e| e.to_string())?;
        if line.trim() != clock::TRUE_TIME {
            return Err(format!("a fresh node's clock is {line:?}, not true time"));
        }
        let written = clock::set(cluster.spec(), 1, ClockSetting::Jump { ms: 60_000 })
            .map_err(|e| e.to_string())?;
        if written != "+60.000 x1" {
            return Err(format!("wrote {written:?}"));
        }
        let seen = eventually(LEAP_SEEN_TIMEOUT_MS, || async {
            std::fs::read_to_string(&log).is_ok_and(|l| l.contains("the clock leapt forward"))
        })
        .await;
        if !seen {
            return Err("keeperd never saw its clock leap 60 s".into());
        }
        // The heal leaves the clock ahead: stepping it back would stall the node's timers.
        let healed =
            clock::set(cluster.spec(), 1, ClockSetting::Heal).map_err(|e| e.to_string())?;
        if healed != "+60.000 x1" {
            return Err(format!(
                "the heal wrote {healed:?}, not the clock as it was at 1x"
            ));
        }
        Ok::<(), String>(())
    }
    .await;
    cluster.teardown().await.expect("teardown");
    result.unwrap();
    assert!(!control.exists(), "{} left behind", control.display());
    assert!(leftovers_of(&tag).await.clock_files.is_empty());
}
