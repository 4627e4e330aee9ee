//! Every backend: a 3-node keeper cluster comes up and elects a leader; kill and pause round
//! trips (a killed or paused node stops answering, the rest keep a leader, the node comes back
//! and rejoins); teardown leaves nothing with the run's tag behind.

mod common;

use cluster::{Backend, BackendKind, Cluster, NodeState};
use common::*;

/// Longest a restarted or resumed node may take to answer and rejoin.
const REJOIN_TIMEOUT_MS: u64 = 30_000;

async fn answers(cluster: &Cluster, node: u64) -> bool {
    statuses(cluster)
        .await
        .into_iter()
        .any(|(id, s)| id == node && s.is_some())
}

async fn round_trips(kind: BackendKind) {
    let dir = tempfile::tempdir().unwrap();
    let spec = spec(kind, 3, dir.path()).await;
    let tag = spec.tag().0;
    let cluster = launch(kind, spec).await;
    let result = async {
        let all = cluster.node_ids();
        let (leader, _) = wait_for_leader(&cluster, &all)
            .await
            .ok_or("no leader after setup")?;
        let victim = *all.iter().find(|n| **n != leader).unwrap();
        let rest: Vec<u64> = all.iter().copied().filter(|n| *n != victim).collect();

        // Kill: the node goes down, the others still have a leader, restart brings it back.
        cluster.kill(victim).await.map_err(|e| e.to_string())?;
        if cluster.state(victim).await.unwrap() != NodeState::Down {
            return Err("killed node is not down".into());
        }
        if answers(&cluster, victim).await {
            return Err("killed node still answers".into());
        }
        wait_for_leader(&cluster, &rest)
            .await
            .ok_or("no leader among the survivors")?;
        cluster.start(victim).await.map_err(|e| e.to_string())?;
        if !eventually(REJOIN_TIMEOUT_MS, || answers(&cluster, victim)).await {
            return Err("restarted node never answered".into());
        }
        wait_for_leader(&cluster, &all)
            .await
            .ok_or("no leader after the restart")?;

        // Pause: the node stops answering while the process stays; resume brings it back.
        cluster.pause(victim).await.map_err(|e| e.to_string())?;
        if cluster.state(victim).await.unwrap() != NodeState::Paused {
            return Err("paused node is not paused".into());
        }
        // The stop takes effect asynchronously (and a reply may already be on its way): the
        // node must fall silent soon, and stay silent while paused.
        let silent = eventually(REJOIN_TIMEOUT_MS, || async {
            !answers(&cluster, victim).await
        })
        .await;
        if !silent || answers(&cluster, victim).await {
            return Err("paused node still answers".into());
        }
        cluster.resume(victim).await.map_err(|e| e.to_string())?;
        if !eventually(REJOIN_TIMEOUT_MS, || answers(&cluster, victim)).await {
            return Err("resumed node never answered".into());
        }

        // Restart (graceful stop + start) and wipe of a stopped node.
        cluster.stop(victim).await.map_err(|e| e.to_string())?;
        cluster.wipe(victim).await.map_err(|e| e.to_string())?;
        cluster.start(victim).await.map_err(|e| e.to_string())?;
        wait_for_leader(&cluster, &all)
            .await
            .ok_or("no leader after wipe and restart")?;

        cluster
            .collect_logs(dir.path().join("collected").as_path())
            .await
            .map_err(|e| e.to_string())?;
        let log = cluster::node_log_path(&dir.path().join("collected"), 1, cluster.spec().system);
        if !log.is_file() {
            return Err(format!("{} was not collected", log.display()));
        }
        Ok::<(), String>(())
    }
    .await;
    cluster.teardown().await.expect("teardown");
    // Teardown is idempotent.
    cluster.teardown().await.expect("second teardown");
    if let Err(e) = result {
        panic!("{kind}: {e}");
    }
    let left = leftovers_of(&tag).await;
    assert!(left.is_empty(), "{kind} left behind: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_kill_and_pause_round_trip() {
    round_trips(BackendKind::Local).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn netns_kill_and_pause_round_trip() {
    require_backend!(BackendKind::Netns);
    round_trips(BackendKind::Netns).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_kill_and_pause_round_trip() {
    require_backend!(BackendKind::Docker);
    round_trips(BackendKind::Docker).await;
}

#[tokio::test]
async fn local_backend_refuses_network_commands_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let spec = spec(BackendKind::Local, 3, dir.path()).await;
    let cluster = Cluster::new(BackendKind::Local, spec).await.unwrap();
    let err = cluster
        .run_on_node(1, &["iptables".to_string(), "-L".to_string()])
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(err, cluster::local::NO_NETWORK_FAULTS);
    assert!(!err.contains('\n'));
}

#[tokio::test]
async fn bad_specs_fail_with_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = spec(BackendKind::Local, 3, dir.path()).await;
    spec.keeperd = dir.path().join("no-such-keeperd");
    let err = Cluster::new(BackendKind::Local, spec.clone())
        .await
        .err()
        .expect("a missing binary is refused")
        .to_string();
    assert!(err.contains("does not exist"), "{err}");
    spec.keeperd = keeperd();
    spec.nodes = 0;
    assert!(Cluster::new(BackendKind::Local, spec).await.is_err());
}
