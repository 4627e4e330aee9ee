//! Real Apache ZooKeeper (Debian's package) deployed by the cluster backends: 3 JVMs elect one
//! leader that the other two follow in its epoch; a SIGKILLed leader is replaced in a higher
//! epoch and follows when restarted; a paused node falls silent and comes back; a wiped node
//! rejoins; teardown leaves no namespace and no process of the run.
//!
//! The netns test needs root: `sudo cargo test -p cluster --test zookeeper -- --ignored`.
//! Both skip with a message when ZooKeeper is not installed.

mod common;

use cluster::SystemKind;
use cluster::clean::list_leftovers;
use cluster::status::Role;
use cluster::status::{fetch_all, status_client, zk_status, zk_version};
use cluster::{Backend, BackendKind, Cluster, ClusterSpec, NodeAddr, NodeId, NodeState, Status};
use common::*;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Longest a JVM may take to start and an ensemble to elect and serve (2 cores, shared).
const ELECT_TIMEOUT_MS: u64 = 60_000;
/// Longest a paused node may take to fall silent, or a resumed one to answer again.
const SILENCE_TIMEOUT_MS: u64 = 10_000;
/// A four-letter word's deadline in these tests.
const ASK_TIMEOUT_MS: u64 = 1_000;

/// Skips the test with a printed reason when ZooKeeper is not installed.
macro_rules! require_zookeeper {
    () => {
        if let Err(e) = cluster::preflight::check_system(SystemKind::Zookeeper) {
            eprintln!("skipped: {e}");
            return;
        }
    };
}

/// `zkd` and 5 hex digits: a valid run tag of its own, so every name it makes says `zkd`.
fn zk_run_id() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("zkd{:05x}", (std::process::id() << 3 | n) & 0xf_ffff)
}

fn zk_spec(nodes: usize, dir: &Path) -> ClusterSpec {
    // keeperd is not run: any path will do.
    let mut spec = ClusterSpec::new(
        nodes,
        "/nonexistent/keeperd".into(),
        &zk_run_id(),
        dir.into(),
    );
    spec.system = SystemKind::Zookeeper;
    spec
}

async fn zk_statuses(cluster: &Cluster) -> Vec<(NodeId, Option<Status>)> {
    fetch_all(&status_client(), &cluster.addrs()).await
}

/// The leader and its epoch when, among `among`, exactly one node leads and every other one
/// follows, all serving, all in the leader's epoch.
fn settled(statuses: &[(NodeId, Option<Status>)], among: &[NodeId]) -> Option<(NodeId, u32)> {
    let answers: Vec<&Status> = statuses
        .iter()
        .filter(|(id, _)| among.contains(id))
        .filter_map(|(_, s)| s.as_ref())
        .collect();
    if answers.len() != among.len() || !answers.iter().all(|s| s.serving) {
        return None;
    }
    let leaders: Vec<&&Status> = answers.iter().filter(|s| s.is_leading()).collect();
    let [leader] = leaders.as_slice() else {
        return None;
    };
    let followers_agree = answers
        .iter()
        .filter(|s| s.id != leader.id)
        .all(|s| s.role == Role::Following && s.epoch == leader.epoch);
    followers_agree.then_some((leader.id, leader.epoch))
}

/// Opens a ZooKeeper session at `addr` (a raw jute ConnectRequest) and waits for its
/// ConnectResponse. A session is a transaction of the current leader: once it is acknowledged,
/// a quorum's zxids, hence epochs, are the leader's.
async fn open_session(addr: &NodeAddr) -> Result<i64, String> {
    const SESSION_TIMEOUT_MS: i32 = 2_000;
    let mut body = Vec::new();
    body.extend(0i32.to_be_bytes()); // protocolVersion
    body.extend(0i64.to_be_bytes()); // lastZxidSeen
    body.extend(SESSION_TIMEOUT_MS.to_be_bytes());
    body.extend(0i64.to_be_bytes()); // sessionId: a new one
    body.extend(16i32.to_be_bytes()); // passwd: 16 bytes
    body.extend([0u8; 16]);
    body.push(0); // readOnly
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(addr.zk_addr()).await?;
        s.write_all(&(body.len() as i32).to_be_bytes()).await?;
        s.write_all(&body).await?;
        let len = s.read_i32().await?;
        let _protocol = s.read_i32().await?;
        let _timeout = s.read_i32().await?;
        let session = s.read_i64().await?;
        let mut rest = vec![0u8; (len - 16).max(0) as usize];
        s.read_exact(&mut rest).await?;
        Ok::<i64, std::io::Error>(session)
    };
    match tokio::time::timeout(Duration::from_millis(ASK_TIMEOUT_MS * 5), exchange).await {
        Ok(Ok(0)) => Err(format!("{}: session refused", addr.name)),
        Ok(Ok(session)) => Ok(session),
        Ok(Err(e)) => Err(format!("{}: {e}", addr.name)),
        Err(_) => Err(format!("{}: no ConnectResponse", addr.name)),
    }
}

/// Waits until `among` settle on one leader and one epoch, writing a session through the
/// leader whenever followers still report an older epoch (see `four_letter`'s caveat).
async fn wait_settled(cluster: &Cluster, among: &[NodeId]) -> Option<(NodeId, u32)> {
    let deadline = Instant::now() + Duration::from_millis(ELECT_TIMEOUT_MS);
    while Instant::now() < deadline {
        let statuses = zk_statuses(cluster).await;
        if let Some(found) = settled(&statuses, among) {
            return Some(found);
        }
        let serving_leader = statuses
            .iter()
            .filter_map(|(_, s)| s.as_ref())
            .find(|s| s.is_leading() && s.serving);
        if let Some(leader) = serving_leader {
            let _ = open_session(&cluster.addr(leader.id).unwrap()).await;
        }
        tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
    }
    None
}

async fn answers(cluster: &Cluster, node: NodeId) -> bool {
    let addr = cluster.addr(node).unwrap();
    zk_status(&addr, Duration::from_millis(ASK_TIMEOUT_MS))
        .await
        .is_ok()
}

fn pid_of(cluster: &Cluster, node: NodeId) -> Option<u32> {
    std::fs::read_to_string(cluster.spec().node_pidfile(node))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Sets a ZooKeeper cluster up; prints how long until every JVM answered and until the
/// ensemble settled.
async fn deploy(kind: BackendKind, spec: ClusterSpec) -> Result<(Cluster, (NodeId, u32)), String> {
    let started = Instant::now();
    let cluster = Cluster::new(kind, spec).await.map_err(|e| e.to_string())?;
    if let Err(e) = cluster.setup().await {
        let _ = cluster.teardown().await;
        return Err(format!("setup: {e}"));
    }
    let all = cluster.node_ids();
    let up = eventually(ELECT_TIMEOUT_MS, || async {
        for n in &all {
            if !answers(&cluster, *n).await {
                return false;
            }
        }
        true
    })
    .await;
    let answered = started.elapsed();
    let settled = if up {
        wait_settled(&cluster, &all).await
    } else {
        None
    };
    eprintln!(
        "{kind}: {} ZooKeeper JVMs answered srvr {} ms after setup began, settled after {} ms",
        all.len(),
        answered.as_millis(),
        started.elapsed().as_millis()
    );
    match settled {
        Some(found) => Ok((cluster, found)),
        None => {
            let statuses = zk_statuses(&cluster).await;
            let _ = cluster.teardown().await;
            Err(format!("no settled ensemble: {statuses:?}"))
        }
    }
}

/// Kill the leader, restart it, pause a follower; the checks every backend can run.
async fn failover_round_trip(cluster: &Cluster, leader: NodeId, epoch: u32) -> Result<(), String> {
    let all = cluster.node_ids();
    let addr = cluster.addr(leader).unwrap();
    let version = zk_version(&addr, Duration::from_millis(ASK_TIMEOUT_MS))
        .await
        .map_err(|e| e.to_string())?;
    if !version.starts_with("3.8") {
        return Err(format!("ZooKeeper version {version:?}, expected 3.8"));
    }

    // The JVMs carry the run's tag, so `clean` would find them had the harness died.
    let listed = list_leftovers().await.processes;
    for n in &all {
        let pid = pid_of(cluster, *n).ok_or(format!("no pid file for n{n}"))?;
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
        if !exe.display().to_string().contains("java") {
            return Err(format!(
                "n{n}'s process {pid} runs {}, not java",
                exe.display()
            ));
        }
        if !listed.contains(&pid) {
            return Err(format!("clean does not list n{n}'s JVM {pid}"));
        }
    }

    // SIGKILL the leader: the other two elect a new one in a higher epoch.
    let t = Instant::now();
    cluster.kill(leader).await.map_err(|e| e.to_string())?;
    if cluster.state(leader).await.unwrap() != NodeState::Down {
        return Err("the killed leader is not down".into());
    }
    if answers(cluster, leader).await {
        return Err("the killed leader still answers".into());
    }
    let rest: Vec<NodeId> = all.iter().copied().filter(|n| *n != leader).collect();
    let (new_leader, new_epoch) = wait_settled(cluster, &rest)
        .await
        .ok_or("no new leader among the survivors")?;
    eprintln!(
        "new leader n{new_leader} in epoch {new_epoch} {} ms after the kill",
        t.elapsed().as_millis()
    );
    if new_epoch <= epoch {
        return Err(format!("new epoch {new_epoch} is not above {epoch}"));
    }

    // The old leader comes back as a follower of the new one.
    cluster.start(leader).await.map_err(|e| e.to_string())?;
    let (again, _) = wait_settled(cluster, &all)
        .await
        .ok_or("the ensemble did not settle after the old leader restarted")?;
    if again == leader {
        return Err("the restarted old leader took the lead back".into());
    }

    // Pause a follower: it falls silent while its process stays; the others keep serving.
    let victim = *all.iter().find(|n| **n != again).unwrap();
    cluster.pause(victim).await.map_err(|e| e.to_string())?;
    if cluster.state(victim).await.unwrap() != NodeState::Paused {
        return Err("the paused node is not paused".into());
    }
    if !eventually(SILENCE_TIMEOUT_MS, || async {
        !answers(cluster, victim).await
    })
    .await
    {
        return Err("the paused node still answers".into());
    }
    let others: Vec<NodeId> = all.iter().copied().filter(|n| *n != victim).collect();
    wait_settled(cluster, &others)
        .await
        .ok_or("the others lost their quorum while a follower was paused")?;
    cluster.resume(victim).await.map_err(|e| e.to_string())?;
    wait_settled(cluster, &all)
        .await
        .ok_or("the resumed node did not rejoin")?;
    Ok(())
}

/// Tears down, twice, and asserts nothing with the run's tag is left.
async fn teardown_leaves_nothing(cluster: Cluster) {
    let tag = cluster.spec().tag().0;
    cluster.teardown().await.expect("teardown");
    cluster.teardown().await.expect("second teardown");
    let left = leftovers_of(&tag).await;
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: sudo cargo test -p cluster --test zookeeper -- --ignored"]
async fn netns_zookeeper_elects_fails_over_and_leaves_nothing() {
    require_backend!(BackendKind::Netns);
    require_zookeeper!();
    let dir = tempfile::tempdir().unwrap();
    let (cluster, (leader, epoch)) = deploy(BackendKind::Netns, zk_spec(3, dir.path()))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let result = failover_round_trip(&cluster, leader, epoch).await;
    let collected = dir.path().join("collected");
    let logs = cluster.collect_logs(&collected).await;
    teardown_leaves_nothing(cluster).await;
    result.unwrap_or_else(|e| panic!("netns: {e}"));
    logs.expect("collect_logs");
    let log = cluster::node_log_path(&collected, leader, SystemKind::Zookeeper);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        text.contains("LEADING"),
        "{} does not say the node led (log4j is not writing it?)",
        log.display()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_zookeeper_fails_over_and_a_wiped_node_rejoins() {
    require_zookeeper!();
    let dir = tempfile::tempdir().unwrap();
    let (cluster, (leader, epoch)) = deploy(BackendKind::Local, zk_spec(3, dir.path()))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let result = async {
        failover_round_trip(&cluster, leader, epoch).await?;
        // A graceful stop and a wipe remove myid with the data: the next start writes it
        // again and the node rejoins.
        let statuses = zk_statuses(&cluster).await;
        let follower = statuses
            .iter()
            .find(|(_, s)| s.as_ref().is_some_and(|s| s.role == Role::Following))
            .map(|(id, _)| *id)
            .ok_or("no follower")?;
        cluster.stop(follower).await.map_err(|e| e.to_string())?;
        cluster.wipe(follower).await.map_err(|e| e.to_string())?;
        let myid = cluster.spec().node_dir(follower).join("data/myid");
        if myid.exists() {
            return Err("wipe left myid behind".to_string());
        }
        cluster.start(follower).await.map_err(|e| e.to_string())?;
        wait_settled(&cluster, &cluster.node_ids())
            .await
            .ok_or("the wiped node did not rejoin")?;
        Ok::<(), String>(())
    }
    .await;
    teardown_leaves_nothing(cluster).await;
    result.unwrap_or_else(|e| panic!("local: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_single_zookeeper_runs_standalone_and_leads_itself() {
    require_zookeeper!();
    let dir = tempfile::tempdir().unwrap();
    let (cluster, (leader, _)) = deploy(BackendKind::Local, zk_spec(1, dir.path()))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let status = zk_status(
        &cluster.addr(1).unwrap(),
        Duration::from_millis(ASK_TIMEOUT_MS),
    )
    .await;
    teardown_leaves_nothing(cluster).await;
    let status = status.expect("status");
    assert_eq!(leader, 1);
    assert_eq!((status.leader, status.voters), (Some(1), vec![1]));
}

#[tokio::test]
async fn docker_refuses_zookeeper_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let Err(e) = Cluster::new(BackendKind::Docker, zk_spec(3, dir.path())).await else {
        panic!("the docker backend accepted ZooKeeper");
    };
    let line = e.to_string();
    assert!(matches!(e, cluster::ClusterError::Unsupported(_)), "{line}");
    assert!(
        line.contains("netns or local") && !line.contains('\n'),
        "{line}"
    );
}

/// The power-loss fault's disks under ZooKeeper: its data directories are lazyfs mounts, a
/// killed leader loses what it did not fsync, and restarts and rejoins on what it did.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root, /dev/fuse and fusermount3: sudo cargo test -p cluster --test zookeeper -- --ignored"]
async fn local_zookeeper_on_lazyfs_rejoins_after_a_power_loss() {
    require_zookeeper!();
    if let Err(e) = cluster::lazyfs::check() {
        eprintln!("skipped: {e}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut spec = zk_spec(3, dir.path());
    spec.lazyfs = Some(lazyfs_binary());
    let (cluster, (leader, _)) = deploy(BackendKind::Local, spec)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let result = async {
        cluster.kill(leader).await.map_err(|e| e.to_string())?;
        let report = cluster
            .lose_unsynced(leader)
            .await
            .map_err(|e| e.to_string())?;
        eprintln!("power loss of n{leader}: {report}");
        cluster.start(leader).await.map_err(|e| e.to_string())?;
        wait_settled(&cluster, &cluster.node_ids())
            .await
            .ok_or("the node did not rejoin after its power loss")?;
        Ok::<(), String>(())
    }
    .await;
    teardown_leaves_nothing(cluster).await;
    result.unwrap_or_else(|e| panic!("lazyfs: {e}"));
}

fn lazyfs_binary() -> std::path::PathBuf {
    let status = std::process::Command::new(env!("CARGO"))
        .args(["build", "--workspace", "--bin", "schism-lazyfs"])
        .current_dir(workspace())
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building schism-lazyfs failed");
    std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"))
        .join("debug")
        .join("schism-lazyfs")
}
