//! Helpers shared by the cluster and nemesis integration tests (nemesis includes this file by
//! path): binaries, skip reasons, unique run ids, bounded waits on `/status`.
#![allow(dead_code)]

use cluster::clean::{Leftovers, list_leftovers};
use cluster::status::{fetch_all, status_client};
use cluster::{Backend, BackendKind, Cluster, ClusterSpec, NodeId, Status};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use tokio::sync::OnceCell;

/// Longest a fresh or reconfigured cluster may take to agree on a leader.
pub const LEADER_TIMEOUT_MS: u64 = 30_000;
/// Between two `/status` polls.
pub const POLL_MS: u64 = 200;

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the crate lives in the workspace")
        .to_path_buf()
}

/// The debug keeperd (`SCHISM_KEEPERD` overrides), built once per test binary.
pub fn keeperd() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        if let Some(p) = std::env::var_os("SCHISM_KEEPERD") {
            return PathBuf::from(p);
        }
        let status = std::process::Command::new(env!("CARGO"))
            .args(["build", "--workspace", "--bin", "keeperd"])
            .current_dir(workspace())
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building keeperd failed");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace().join("target"));
        target.join("debug").join("keeperd")
    })
    .clone()
}

/// The static keeperd for the docker image (`SCHISM_STATIC_KEEPERD` overrides), built once per
/// test binary: it takes minutes on two cores.
pub async fn static_keeperd() -> PathBuf {
    static PATH: OnceCell<PathBuf> = OnceCell::const_new();
    PATH.get_or_init(|| async {
        if let Some(p) = std::env::var_os("SCHISM_STATIC_KEEPERD") {
            return PathBuf::from(p);
        }
        cluster::docker::build_static_keeperd(&workspace())
            .await
            .expect("building the static keeperd")
    })
    .await
    .clone()
}

/// Why `kind` cannot run here, when a tool is truly absent (CI installs them all).
pub fn skip_reason(kind: BackendKind) -> Option<String> {
    cluster::preflight::check(kind).err().map(|e| e.to_string())
}

/// Skips the test (returns from it) with a printed reason when `kind` cannot run here.
#[macro_export]
macro_rules! require_backend {
    ($kind:expr) => {
        if let Some(reason) = common::skip_reason($kind) {
            eprintln!("skipped: {reason}");
            return;
        }
    };
}

/// A run id that is unique per test in this machine (and a valid run tag).
pub fn run_id(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let id = (std::process::id() << 4 | n) & 0xff_ffff;
    format!("{prefix}{id:06x}")
}

pub async fn spec(kind: BackendKind, nodes: usize, dir: &Path) -> ClusterSpec {
    let keeperd = match kind {
        BackendKind::Docker => static_keeperd().await,
        _ => keeperd(),
    };
    let mut spec = ClusterSpec::new(nodes, keeperd, &run_id("t"), dir.to_path_buf());
    spec.tick_ms = Some(100);
    spec
}

/// Sets a cluster up; on failure tears it down and panics with the error.
pub async fn launch(kind: BackendKind, spec: ClusterSpec) -> Cluster {
    let cluster = Cluster::new(kind, spec).await.expect("backend available");
    if let Err(e) = cluster.setup().await {
        let _ = cluster.teardown().await;
        panic!("setup failed: {e}");
    }
    cluster
}

pub async fn statuses(cluster: &Cluster) -> Vec<(NodeId, Option<Status>)> {
    fetch_all(&status_client(), &cluster.addrs()).await
}

/// A leader that a majority of the whole cluster, all among `among`, follow in its epoch.
pub fn agreed_leader(
    statuses: &[(NodeId, Option<Status>)],
    among: &[NodeId],
    cluster_size: usize,
) -> Option<(NodeId, u32)> {
    let answers: Vec<&Status> = statuses
        .iter()
        .filter(|(id, _)| among.contains(id))
        .filter_map(|(_, s)| s.as_ref())
        .collect();
    let leader = answers.iter().find(|s| s.is_leading() && s.serving)?;
    let backing = answers
        .iter()
        .filter(|s| s.leader == Some(leader.id) && s.epoch == leader.epoch && s.serving)
        .count();
    (backing > cluster_size / 2).then_some((leader.id, leader.epoch))
}

/// Polls until a majority among `among` agree on a serving leader (bounded).
pub async fn wait_for_leader(cluster: &Cluster, among: &[NodeId]) -> Option<(NodeId, u32)> {
    let n = cluster.node_ids().len();
    let deadline = tokio::time::Instant::now() + Duration::from_millis(LEADER_TIMEOUT_MS);
    while tokio::time::Instant::now() < deadline {
        if let Some(found) = agreed_leader(&statuses(cluster).await, among, n) {
            return Some(found);
        }
        tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
    }
    None
}

/// Polls `check` until it holds (bounded by `timeout_ms`); true when it did.
pub async fn eventually<F, Fut>(timeout_ms: u64, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_millis(timeout_ms);
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
    }
    false
}

/// Everything schism-made that carries `tag`.
pub async fn leftovers_of(tag: &str) -> Leftovers {
    let all = list_leftovers().await;
    let ours =
        |s: &String| s.contains(&format!("schism-{tag}")) || s.contains(&format!("sch{tag}"));
    let mut found = Leftovers {
        namespaces: all.namespaces.into_iter().filter(ours).collect(),
        links: all.links.into_iter().filter(ours).collect(),
        host_rules: all.host_rules.into_iter().filter(ours).collect(),
        containers: all.containers.into_iter().filter(ours).collect(),
        networks: all.networks.into_iter().filter(ours).collect(),
        volumes: all.volumes.into_iter().filter(ours).collect(),
        images: all.images.into_iter().filter(ours).collect(),
        processes: Default::default(),
        mounts: all.mounts.into_iter().filter(ours).collect(),
        clock_files: all
            .clock_files
            .into_iter()
            .filter(|s| s.contains(&format!("/{tag}-n")))
            .collect(),
    };
    found.processes = processes_with_tag(tag);
    found
}

fn processes_with_tag(tag: &str) -> std::collections::BTreeSet<u32> {
    let needle = format!("{}={tag}", cluster::RUN_ENV);
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .map(|env| env.split(|b| *b == 0).any(|v| v == needle.as_bytes()))
                .unwrap_or(false)
        })
        .collect()
}
