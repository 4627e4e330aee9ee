//! Nodes on lazyfs mounts (the power-loss fault's disks), on the local and netns backends: the
//! data directories are mounts, a killed node loses its unsynced writes and restarts on what it
//! synced, a running node is refused, teardown unmounts everything, and an unmount also works
//! on a mount whose daemon was killed (what `clean` meets after a SIGKILLed run). Needs root,
//! /dev/fuse and fusermount3.

mod common;

use cluster::{Backend, BackendKind, NodeState};
use common::*;
use std::path::PathBuf;

/// Longest a restarted node may take to answer and rejoin.
const REJOIN_TIMEOUT_MS: u64 = 30_000;

fn lazyfs_binary() -> PathBuf {
    let status = std::process::Command::new(env!("CARGO"))
        .args(["build", "--workspace", "--bin", "schism-lazyfs"])
        .current_dir(workspace())
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building schism-lazyfs failed");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"));
    target.join("debug").join("schism-lazyfs")
}

async fn power_loss_round_trip(kind: BackendKind) {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = spec(kind, 3, dir.path()).await;
    spec.lazyfs = Some(lazyfs_binary());
    let tag = spec.tag().0;
    let cluster = launch(kind, spec).await;
    let result = async {
        let mounts = leftovers_of(&tag).await.mounts;
        if mounts.len() != 3 {
            return Err(format!("expected 3 lazyfs mounts, found {mounts:?}"));
        }
        let all = cluster.node_ids();
        wait_for_leader(&cluster, &all)
            .await
            .ok_or("no leader on lazyfs")?;
        if cluster.lose_unsynced(1).await.is_ok() {
            return Err("a running node's writes were dropped".into());
        }
        cluster.kill(1).await.map_err(|e| e.to_string())?;
        let report = cluster.lose_unsynced(1).await.map_err(|e| e.to_string())?;
        if !report.starts_with("dropped") {
            return Err(format!("unexpected report {report:?}"));
        }
        if cluster.state(1).await.unwrap() != NodeState::Down {
            return Err("the node is not down after the power loss".into());
        }
        cluster.start(1).await.map_err(|e| e.to_string())?;
        let back = eventually(REJOIN_TIMEOUT_MS, || async {
            statuses(&cluster)
                .await
                .into_iter()
                .any(|(id, s)| id == 1 && s.is_some())
        })
        .await;
        if !back {
            return Err("the node did not come back after the power loss".into());
        }
        wait_for_leader(&cluster, &all)
            .await
            .ok_or("no leader after the power loss")?;
        Ok::<(), String>(())
    }
    .await;
    let torn_down = cluster.teardown().await;
    result.unwrap();
    torn_down.unwrap();
    let left = leftovers_of(&tag).await;
    assert!(left.mounts.is_empty(), "mounts left: {:?}", left.mounts);
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[tokio::test]
async fn local_nodes_lose_unsynced_writes_and_come_back() {
    power_loss_round_trip(BackendKind::Local).await;
}

#[tokio::test]
async fn netns_nodes_lose_unsynced_writes_and_come_back() {
    power_loss_round_trip(BackendKind::Netns).await;
}

#[tokio::test]
async fn a_mount_whose_daemon_was_killed_is_unmounted() {
    let dir = tempfile::tempdir().unwrap();
    let (backing, mount) = (dir.path().join("disk"), dir.path().join("data"));
    std::fs::create_dir_all(&backing).unwrap();
    std::fs::create_dir_all(&mount).unwrap();
    let socket = dir.path().join("c.sock");
    let mut child = std::process::Command::new(lazyfs_binary())
        .arg("--backing")
        .arg(&backing)
        .arg("--mount")
        .arg(&mount)
        .arg("--control")
        .arg(&socket)
        .arg("--name")
        .arg("schism-zz-n1")
        .spawn()
        .unwrap();
    let up = eventually(REJOIN_TIMEOUT_MS, || async {
        lazyfs::request(&socket, "status").is_ok()
    })
    .await;
    assert!(up, "lazyfs did not mount");
    child.kill().unwrap();
    child.wait().unwrap();
    let canonical = mount.canonicalize().unwrap_or(mount.clone());
    assert!(
        cluster::lazyfs::mounted()
            .iter()
            .any(|(_, p)| *p == mount || *p == canonical),
        "a killed daemon leaves its mount"
    );
    cluster::lazyfs::unmount(&mount).await.unwrap();
    assert!(
        !cluster::lazyfs::mounted()
            .iter()
            .any(|(_, p)| *p == mount || *p == canonical),
        "still mounted"
    );
}
