//! Issue 11: every run gives its nodes a fresh ensemble secret, in the environment (never on
//! the command line, where `ps` shows it), so they authenticate each other and still elect a
//! leader.

mod common;

use cluster::{Backend, BackendKind};
use common::*;

async fn nodes_get_the_runs_secret(kind: BackendKind) {
    let dir = tempfile::tempdir().unwrap();
    let spec = spec(kind, 3, dir.path()).await;
    let other = spec.peer_secret.clone();
    assert_ne!(
        spec.peer_secret.as_str(),
        cluster::RunSecret::generate().as_str(),
        "a fresh secret per run"
    );
    let secret = spec.peer_secret.as_str().to_string();
    let node_files: Vec<_> = spec
        .node_ids()
        .iter()
        .map(|&n| (spec.node_dir(n), spec.node_log(n), spec.node_pidfile(n)))
        .collect();
    let cluster = launch(kind, spec).await;
    let leader = wait_for_leader(&cluster, &cluster.node_ids()).await;
    let mut problems = Vec::new();
    for (dir, log, pidfile) in &node_files {
        let log = std::fs::read_to_string(log).unwrap_or_default();
        if log.contains("no peer secret") {
            problems.push(format!("{}: started without a secret", dir.display()));
        }
        let pid = std::fs::read_to_string(pidfile).unwrap_or_default();
        let cmdline = std::fs::read(format!("/proc/{}/cmdline", pid.trim())).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(&secret) {
            problems.push(format!(
                "{}: the secret is on the command line",
                dir.display()
            ));
        }
    }
    let _ = cluster.teardown().await;
    assert!(
        leader.is_some(),
        "the nodes authenticated each other and elected a leader"
    );
    assert!(problems.is_empty(), "{problems:?}");
    assert!(
        !format!("{other:?}").contains(&secret),
        "Debug hides the secret"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_nodes_get_the_runs_secret() {
    nodes_get_the_runs_secret(BackendKind::Local).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn netns_nodes_get_the_runs_secret() {
    if let Some(reason) = skip_reason(BackendKind::Netns) {
        eprintln!("skipped: {reason}");
        return;
    }
    nodes_get_the_runs_secret(BackendKind::Netns).await;
}
