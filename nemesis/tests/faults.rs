//! Faults against real keeper clusters.
//! - netns and docker: isolating the leader makes the majority elect a new leader in a higher
//!   epoch while the old one stops committing; healing reunites all three on one leader and one
//!   committed zxid; nothing is left behind.
//! - every network fault starts and heals with commands that succeed, and heal-all leaves no
//!   rule or qdisc behind.
//! - the local backend runs process faults and refuses network ones with one clear line.

#[path = "../../cluster/tests/common/mod.rs"]
mod common;

use cluster::{Backend, BackendKind, Cluster, NodeId, NodeState};
use common::*;
use nemesis::{
    Fault, FaultKind, FaultLog, LogEntry, Pacing, PartitionShape, Phase, Schedule, Step, Targets,
};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// How long a write may take before we count it as not committed.
const WRITE_TIMEOUT_MS: u64 = 3_000;
/// Longest healed nodes may take to converge on one leader and one committed zxid.
const CONVERGE_TIMEOUT_MS: u64 = 60_000;

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(WRITE_TIMEOUT_MS))
        .build()
        .unwrap()
}

/// Opens a session through `url`: a transaction, so it commits only with a quorum.
async fn write_through(url: &str) -> bool {
    let reply = http()
        .post(format!("{url}/v1/sessions"))
        .json(&serde_json::json!({ "timeout_ms": 5000 }))
        .send()
        .await;
    matches!(reply, Ok(r) if r.status().is_success())
}

/// A log that keeps its entries where the test can read them.
fn shared_log() -> (FaultLog, Arc<Mutex<Vec<LogEntry>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let log = FaultLog::new(Box::new(std::io::sink()), Instant::now()).with_observer(Arc::new(
        move |e: &LogEntry| sink.lock().unwrap().push(e.clone()),
    ));
    (log, seen)
}

fn one_step(nodes: Vec<NodeId>, fault: Fault, duration_ms: u64) -> Schedule {
    Schedule {
        seed: 0,
        nodes,
        time_limit_ms: duration_ms,
        faults: vec![fault.kind()],
        pacing: Pacing::default(),
        steps: vec![Step {
            at_ms: 0,
            duration_ms,
            fault,
        }],
    }
}

async fn status_of(cluster: &Cluster, node: NodeId) -> Option<cluster::Status> {
    statuses(cluster)
        .await
        .into_iter()
        .find(|(id, _)| *id == node)
        .and_then(|(_, s)| s)
}

async fn leader_isolation(kind: BackendKind) {
    let dir = tempfile::tempdir().unwrap();
    let spec = spec(kind, 3, dir.path()).await;
    let tag = spec.tag().0;
    let cluster = Arc::new(launch(kind, spec).await);
    let result = isolate_and_heal(&cluster).await;
    cluster.teardown().await.expect("teardown");
    if let Err(e) = result {
        panic!("{kind}: {e}");
    }
    let left = leftovers_of(&tag).await;
    assert!(left.is_empty(), "{kind} left behind: {left:?}");
}

async fn isolate_and_heal(cluster: &Arc<Cluster>) -> Result<(), String> {
    let all = cluster.node_ids();
    let (old, old_epoch) = wait_for_leader(cluster, &all)
        .await
        .ok_or("no leader after setup")?;
    let old_url = cluster.client_url(old).unwrap();
    if !write_through(&old_url).await {
        return Err("a write through the healthy leader failed".into());
    }

    let schedule = one_step(
        all.clone(),
        Fault::Partition {
            shape: PartitionShape::IsolateLeader,
            grudge: None,
        },
        600_000,
    );
    let (log, seen) = shared_log();
    let running = nemesis::spawn(cluster.clone(), schedule, log, CancellationToken::new());

    let checks = async {
        let majority: Vec<NodeId> = all.iter().copied().filter(|n| *n != old).collect();
        let new = eventually(LEADER_TIMEOUT_MS, || async {
            agreed_leader(&statuses(cluster).await, &majority, all.len())
                .is_some_and(|(l, e)| l != old && e > old_epoch)
        })
        .await;
        if !new {
            return Err("the majority did not elect a new leader in a higher epoch".to_string());
        }
        let (new_leader, _) = agreed_leader(&statuses(cluster).await, &majority, all.len())
            .ok_or("the new leader vanished")?;
        let before = status_of(cluster, old).await.map(|s| s.committed_zxid);
        if write_through(&old_url).await {
            return Err("a write through the isolated old leader succeeded".into());
        }
        let new_url = cluster.client_url(new_leader).unwrap();
        if !write_through(&new_url).await {
            return Err("a write through the new leader failed".into());
        }
        let after = status_of(cluster, old).await.map(|s| s.committed_zxid);
        if before.is_some() && before != after {
            return Err(format!(
                "the isolated leader kept committing: {before:?} -> {after:?}"
            ));
        }
        Ok(())
    }
    .await;
    let summary = running
        .stop_and_heal()
        .await
        .map_err(|e| format!("the nemesis failed: {e}"))?;
    checks?;
    if summary.steps_started != 1 || summary.steps_healed != 1 {
        return Err(format!("unexpected summary {summary:?}"));
    }
    let entries = seen.lock().unwrap().clone();
    let start = entries
        .iter()
        .find(|e| e.phase == Phase::Start)
        .ok_or("no start logged")?;
    if start.resolution.as_deref() != Some(&format!("leader is n{old}")) {
        return Err(format!(
            "leader resolution logged as {:?}",
            start.resolution
        ));
    }
    if start.commands.is_empty() || start.commands.iter().any(|c| c.status != Some(0)) {
        return Err(format!("partition commands failed: {:?}", start.commands));
    }
    if !entries.iter().any(|e| e.fault == "heal-all") {
        return Err("no heal-all logged".into());
    }

    // Healed: one leader, everyone following it, one committed zxid.
    let converged = eventually(CONVERGE_TIMEOUT_MS, || async {
        let s = statuses(cluster).await;
        let answers: Vec<_> = s.iter().filter_map(|(_, s)| s.clone()).collect();
        answers.len() == all.len()
            && agreed_leader(&s, &all, all.len()).is_some()
            && answers
                .iter()
                .all(|a| a.leader == answers[0].leader && a.serving)
            && answers
                .iter()
                .all(|a| a.committed_zxid == answers[0].committed_zxid)
    })
    .await;
    if !converged {
        return Err(format!(
            "the healed cluster did not converge: {:?}",
            statuses(cluster).await
        ));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn netns_isolating_the_leader_moves_leadership_and_heals() {
    require_backend!(BackendKind::Netns);
    leader_isolation(BackendKind::Netns).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_isolating_the_leader_moves_leadership_and_heals() {
    require_backend!(BackendKind::Docker);
    leader_isolation(BackendKind::Docker).await;
}

/// Every network fault's commands succeed, and afterwards no rule or qdisc remains.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn netns_network_faults_start_and_heal_cleanly() {
    require_backend!(BackendKind::Netns);
    let dir = tempfile::tempdir().unwrap();
    let spec = spec(BackendKind::Netns, 3, dir.path()).await;
    let tag = spec.tag().0;
    let cluster = launch(BackendKind::Netns, spec).await;
    let all = cluster.node_ids();
    let mut steps = Vec::new();
    let mut faults = vec![
        Fault::Slow {
            nodes: vec![1],
            rate_kbit: 256,
        },
        Fault::Flaky {
            nodes: vec![2],
            loss: 0.25,
        },
        Fault::Partition {
            shape: PartitionShape::MajoritiesRing,
            grudge: Some(nemesis::grudge::majorities_ring(
                &all,
                &mut <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(3),
            )),
        },
        Fault::Partition {
            shape: PartitionShape::Bridge,
            grudge: Some(nemesis::grudge::isolate(3, &all)),
        },
    ];
    if nemesis::netem_available().await {
        faults.push(Fault::Delay {
            nodes: vec![3],
            delay_ms: 50,
            jitter_ms: 10,
            reorder_percent: 10,
        });
    }
    for (i, fault) in faults.into_iter().enumerate() {
        steps.push(Step {
            at_ms: i as u64 * 1_500,
            duration_ms: 1_000,
            fault,
        });
    }
    let schedule = Schedule {
        seed: 0,
        nodes: all.clone(),
        time_limit_ms: 10_000,
        faults: vec![FaultKind::Slow, FaultKind::Flaky, FaultKind::Partition],
        pacing: Pacing::default(),
        steps,
    };
    let path = dir.path().join("nemesis.jsonl");
    let mut log = FaultLog::new(
        Box::new(std::fs::File::create(&path).unwrap()),
        Instant::now(),
    );
    let outcome =
        nemesis::run_schedule(&cluster, &schedule, &mut log, &CancellationToken::new()).await;
    let entries = log.entries().to_vec();
    let mut residue = Vec::new();
    for node in &all {
        let rules = cluster
            .run_on_node(*node, &["iptables".into(), "-S".into()])
            .await
            .unwrap();
        let qdisc = cluster
            .run_on_node(
                *node,
                &[
                    "tc".into(),
                    "qdisc".into(),
                    "show".into(),
                    "dev".into(),
                    "eth0".into(),
                ],
            )
            .await
            .unwrap();
        if rules.stdout.contains("DROP")
            || qdisc.stdout.contains("tbf")
            || qdisc.stdout.contains("netem")
        {
            residue.push(format!("n{node}: {} {}", rules.stdout, qdisc.stdout));
        }
    }
    cluster.teardown().await.unwrap();
    outcome.expect("the schedule ran");
    assert!(residue.is_empty(), "faults left behind: {residue:?}");
    for e in entries.iter().filter(|e| e.fault != "heal-all") {
        assert!(e.error.is_none(), "{e:?}");
        assert!(!e.commands.is_empty(), "{e:?}");
    }
    let written = std::fs::read_to_string(&path).unwrap();
    assert_eq!(written.lines().count(), entries.len());
    assert!(leftovers_of(&tag).await.is_empty());
}

/// Process faults from a seeded schedule run on the local backend; afterwards every node runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_process_faults_run_and_heal() {
    let dir = tempfile::tempdir().unwrap();
    let spec = spec(BackendKind::Local, 3, dir.path()).await;
    let cluster = launch(BackendKind::Local, spec).await;
    let all = cluster.node_ids();
    let pacing = Pacing {
        lead_in_ms: 500,
        min_fault_ms: 500,
        max_fault_ms: 1_000,
        min_gap_ms: 300,
        max_gap_ms: 600,
    };
    let schedule = Schedule::generate(
        11,
        &[FaultKind::Kill, FaultKind::Pause],
        &all,
        6_000,
        pacing,
    )
    .unwrap();
    let replayed = Schedule::from_json(&schedule.to_json()).unwrap();
    assert_eq!(replayed, schedule);
    let (mut log, seen) = shared_log();
    let outcome =
        nemesis::run_schedule(&cluster, &replayed, &mut log, &CancellationToken::new()).await;
    let mut states = Vec::new();
    for node in &all {
        states.push(cluster.state(*node).await.unwrap());
    }
    cluster.teardown().await.unwrap();
    let summary = outcome.expect("the schedule ran");
    assert_eq!(summary.steps_started, schedule.steps.len());
    assert!(
        states.iter().all(|s| *s == NodeState::Running),
        "{states:?}"
    );
    let entries = seen.lock().unwrap().clone();
    assert!(
        entries
            .iter()
            .filter(|e| e.phase == Phase::Start)
            .all(|e| !e.actions.is_empty() && e.actions.iter().all(|a| a.ok)),
        "{entries:?}"
    );
}

#[tokio::test]
async fn unsupported_faults_are_refused_with_one_line() {
    let err = nemesis::check_support(BackendKind::Local, &[FaultKind::Kill, FaultKind::Partition])
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(err, cluster::local::NO_NETWORK_FAULTS);
    assert!(
        nemesis::check_support(BackendKind::Local, &[FaultKind::Kill, FaultKind::Pause])
            .await
            .is_ok()
    );
    if skip_reason(BackendKind::Netns).is_none() && !nemesis::netem_available().await {
        let err = nemesis::check_support(BackendKind::Netns, &[FaultKind::Delay])
            .await
            .unwrap_err()
            .to_string();
        assert_eq!(err, nemesis::NO_NETEM);
    }
}

#[test]
fn process_targets_parse() {
    assert_eq!(
        FaultKind::parse_set("partition, kill,none,kill").unwrap(),
        vec![FaultKind::Partition, FaultKind::Kill]
    );
    assert!(FaultKind::parse_set("meteor").is_err());
    let _ = Targets::All;
}
