//! `clean` after a run that was SIGKILLed: a child process (this test binary, re-executed)
//! sets a cluster up and is killed without any teardown; `clean_leftovers` must then remove
//! everything carrying that run's tag, and nothing of runs whose owner is alive.

mod common;

use cluster::clean::{CleanOptions, clean_leftovers};
use cluster::{Backend, BackendKind, ClusterSpec, RunTag};
use common::*;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

const CHILD_ENV: &str = "SCHISM_CLEAN_CHILD";
const READY: &str = "SCHISM-CHILD-READY";
/// Longest the child may take to set its cluster up (docker may build an image).
const CHILD_READY_TIMEOUT_MS: u64 = 600_000;
/// The child gives up on its own after this long, should the parent never kill it.
const CHILD_LIFETIME_MS: u64 = 300_000;

/// Not a test on its own: the body of the child process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_child() {
    let Ok(arg) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut parts = arg.splitn(3, ':');
    let kind: BackendKind = parts.next().unwrap().parse().unwrap();
    let run_id = parts.next().unwrap().to_string();
    let dir = std::path::PathBuf::from(parts.next().unwrap());
    let keeperd = match kind {
        BackendKind::Docker => static_keeperd().await,
        _ => keeperd(),
    };
    let spec = ClusterSpec::new(3, keeperd, &run_id, dir);
    let cluster = launch(kind, spec).await;
    println!("{READY}");
    tokio::time::sleep(Duration::from_millis(CHILD_LIFETIME_MS)).await;
    drop(cluster);
}

async fn killed_run_is_cleaned(kind: BackendKind) {
    let dir = tempfile::tempdir().unwrap();
    let run_id = run_id("c");
    let tag = RunTag::from_run_id(&run_id);
    // Build binaries here, so the child does not.
    let mut child_env = vec![("SCHISM_KEEPERD", keeperd())];
    if kind == BackendKind::Docker {
        child_env.push(("SCHISM_STATIC_KEEPERD", static_keeperd().await));
    }
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "clean_child", "--nocapture", "--test-threads=1"])
        .env(
            CHILD_ENV,
            format!("{kind}:{run_id}:{}", dir.path().display()),
        )
        .envs(child_env)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let ready = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .any(|l| l.contains(READY))
    });
    let ready = tokio::time::timeout(Duration::from_millis(CHILD_READY_TIMEOUT_MS), ready).await;
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
    let _ = child.wait();
    assert!(
        matches!(ready, Ok(Ok(true))),
        "the child never reported its cluster ready"
    );

    let before = leftovers_of(tag.as_str()).await;
    assert!(
        !before.processes.is_empty(),
        "the killed run should have left its nodes running: {before:?}"
    );
    if kind != BackendKind::Local {
        assert!(
            !(before.namespaces.is_empty() && before.containers.is_empty()),
            "the killed run should have left its network behind: {before:?}"
        );
    }

    let report = clean_leftovers(&CleanOptions::default()).await;
    assert!(report.is_clean(), "clean failed: {:?}", report.errors);
    // Processes killed by clean may take a moment to vanish from /proc.
    let gone = eventually(10_000, || async {
        leftovers_of(tag.as_str()).await.is_empty()
    })
    .await;
    assert!(
        gone,
        "left behind after clean: {:?}",
        leftovers_of(tag.as_str()).await
    );
    assert!(
        !cluster::ledger::registry_dir()
            .join(format!("{tag}.json"))
            .exists(),
        "the dead run's ledger remains"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_after_killed_local_run() {
    killed_run_is_cleaned(BackendKind::Local).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_after_killed_netns_run() {
    require_backend!(BackendKind::Netns);
    killed_run_is_cleaned(BackendKind::Netns).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_after_killed_docker_run() {
    require_backend!(BackendKind::Docker);
    killed_run_is_cleaned(BackendKind::Docker).await;
}

/// A run whose owner is alive (this test process) is left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_leaves_live_runs_alone() {
    let dir = tempfile::tempdir().unwrap();
    let spec = spec(BackendKind::Local, 3, dir.path()).await;
    let tag = spec.tag();
    let cluster = launch(BackendKind::Local, spec).await;
    let report = clean_leftovers(&CleanOptions::default()).await;
    let still = leftovers_of(tag.as_str()).await;
    cluster.teardown().await.unwrap();
    assert!(
        report.skipped_live.contains(&tag.0),
        "{:?}",
        report.skipped_live
    );
    assert_eq!(still.processes.len(), 3, "clean killed a live run's nodes");
}

/// A live run whose ledger is missing is still left alone: its nodes' parent is alive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_leaves_live_runs_without_a_ledger_alone() {
    let dir = tempfile::tempdir().unwrap();
    let spec = spec(BackendKind::Local, 3, dir.path()).await;
    let tag = spec.tag();
    let cluster = launch(BackendKind::Local, spec).await;
    cluster::ledger::remove(&tag);
    let report = clean_leftovers(&CleanOptions::default()).await;
    let still = leftovers_of(tag.as_str()).await;
    cluster.teardown().await.unwrap();
    assert!(report.skipped_live.contains(&tag.0), "{report:?}");
    assert_eq!(still.processes.len(), 3, "clean killed a live run's nodes");
}
