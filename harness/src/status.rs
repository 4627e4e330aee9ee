//! Samples every node's status ([`System::status`]) while the test runs, into `status.jsonl`:
//! `{"time": ns, "node": "n1", "status": {...}}`, or `"error": "..."` when the node did not
//! answer. The single-leader checker reads these samples.

pub use crate::client::Node;
use crate::recorder::RunClock;
use crate::store::{JsonlWriter, SYNC_INTERVAL_MS};
use crate::system::System;
pub use keeper_client::status::{STATUS_SAMPLE_TIMEOUT_MS, STATUS_TIMEOUT_MS};
use keeper_wire::Role;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Time between two samples of one node.
pub const STATUS_INTERVAL_MS: u64 = 250;
/// Pause between two polls while waiting for the cluster to serve.
const READY_POLL_MS: u64 = 200;

/// One line of `status.jsonl`: the run directory's record type.
pub use checker::run_dir::StatusSample;

/// Samples every node until `cancel` fires. Each node has its own task, so a node that does
/// not answer delays only its own samples. Returns the number of samples written.
pub fn spawn_sampler(
    system: Arc<dyn System>,
    nodes: Vec<Node>,
    path: &Path,
    clock: RunClock,
    cancel: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<anyhow::Result<u64>>> {
    let writer = Arc::new(Mutex::new(JsonlWriter::create(path)?));
    Ok(tokio::spawn(async move {
        let mut tasks = Vec::new();
        for node in nodes {
            let (writer, system, cancel) = (writer.clone(), system.clone(), cancel.clone());
            tasks.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(STATUS_INTERVAL_MS));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut written = 0u64;
                let mut last_sync = Instant::now();
                loop {
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = tick.tick() => {}
                    }
                    let time = clock.now_ns();
                    let timeout = Duration::from_millis(STATUS_SAMPLE_TIMEOUT_MS);
                    let reply = system
                        .status(&node, timeout)
                        .await
                        .and_then(|s| serde_json::to_value(s).map_err(|e| format!("status: {e}")));
                    let sample = match reply {
                        Ok(status) => StatusSample {
                            time,
                            node: node.name.clone(),
                            status: Some(status),
                            error: None,
                            digest: system.applied(&node, timeout).await.ok(),
                        },
                        Err(e) => StatusSample {
                            time,
                            node: node.name.clone(),
                            status: None,
                            error: Some(e),
                            digest: None,
                        },
                    };
                    let mut w = writer.lock().unwrap_or_else(|p| p.into_inner());
                    w.append(&sample)?;
                    written += 1;
                    if last_sync.elapsed() >= Duration::from_millis(SYNC_INTERVAL_MS) {
                        w.flush()?;
                        last_sync = Instant::now();
                    }
                }
                anyhow::Ok(written)
            }));
        }
        let mut total = 0;
        for t in tasks {
            total += t.await??;
        }
        writer.lock().unwrap_or_else(|p| p.into_inner()).sync()?;
        Ok(total)
    }))
}

/// What the nodes said, for deciding whether the cluster serves.
#[derive(Clone, Debug, Default)]
pub struct ClusterView {
    pub answered: usize,
    pub serving: usize,
    /// (node, epoch) of every node that says it leads.
    pub leaders: Vec<(String, u32)>,
}

impl ClusterView {
    /// One leader, and every node answers and serves.
    pub fn fully_recovered(&self, nodes: usize) -> bool {
        self.leaders.len() == 1 && self.answered == nodes && self.serving == nodes
    }
}

pub async fn view(system: &dyn System, nodes: &[Node]) -> ClusterView {
    let asks = nodes.iter().map(|n| async move {
        (
            n.name.clone(),
            system
                .status(n, Duration::from_millis(STATUS_TIMEOUT_MS))
                .await,
        )
    });
    let mut v = ClusterView::default();
    for (name, reply) in futures::future::join_all(asks).await {
        let Ok(status) = reply else { continue };
        v.answered += 1;
        if status.serving {
            v.serving += 1;
        }
        if status.role == Role::Leading {
            v.leaders.push((name, status.epoch));
        }
    }
    v
}

/// Waits until every node serves under one leader, or `timeout` passes. Returns the last
/// view either way, and whether it recovered.
pub async fn wait_until_serving(
    system: &dyn System,
    nodes: &[Node],
    timeout: Duration,
    cancel: &CancellationToken,
) -> (bool, ClusterView) {
    let deadline = Instant::now() + timeout;
    loop {
        let v = view(system, nodes).await;
        if v.fully_recovered(nodes.len()) {
            return (true, v);
        }
        if Instant::now() >= deadline || cancel.is_cancelled() {
            return (false, v);
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(READY_POLL_MS)) => {}
            _ = cancel.cancelled() => {}
        }
    }
}

/// What every node has applied ([`System::applied`]), or why it did not answer.
pub async fn applied(
    system: &dyn System,
    nodes: &[Node],
) -> Vec<(String, Result<serde_json::Value, String>)> {
    let asks = nodes.iter().map(|n| async move {
        (
            n.name.clone(),
            system
                .applied(n, Duration::from_millis(STATUS_TIMEOUT_MS))
                .await,
        )
    });
    futures::future::join_all(asks).await
}

/// Longest the nodes may take, after the final reads, to apply the same transactions.
pub const CONVERGE_TIMEOUT_MS: u64 = 15_000;

/// The zxid every view reports, if they all answered with the same one.
fn one_zxid(views: &[(String, Result<serde_json::Value, String>)]) -> Option<u64> {
    let zxids: std::collections::BTreeSet<Option<u64>> = views
        .iter()
        .map(|(_, r)| {
            r.as_ref()
                .ok()
                .and_then(|d| d.get("zxid").and_then(|z| z.as_u64()))
        })
        .collect();
    match zxids.iter().next() {
        Some(Some(z)) if zxids.len() == 1 => Some(*z),
        _ => None,
    }
}

/// Waits until every node reports the same applied zxid in two polls in a row (then lets the
/// sampler take its digests at that point), or `timeout` passes. True if they agreed.
pub async fn wait_until_converged(
    system: &dyn System,
    nodes: &[Node],
    timeout: Duration,
    cancel: &CancellationToken,
) -> bool {
    let deadline = Instant::now() + timeout;
    let mut agreed_before = None;
    loop {
        let agreed = one_zxid(&applied(system, nodes).await);
        if agreed.is_some() && agreed == agreed_before {
            // Two sampler rounds at the agreed point.
            tokio::time::sleep(Duration::from_millis(STATUS_INTERVAL_MS * 2)).await;
            return true;
        }
        agreed_before = agreed;
        if Instant::now() >= deadline || cancel.is_cancelled() {
            return false;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(READY_POLL_MS)) => {}
            _ = cancel.cancelled() => {}
        }
    }
}

/// Every node's [`System::final_state`] in one round where all of them answered at one zxid
/// (one consistent cut: a transaction that arrives meanwhile, such as a session's expiry, cannot
/// make the replicas look apart), tried again while transactions still arrive, within
/// `timeout`; the last round otherwise.
pub async fn final_states(
    system: &dyn System,
    nodes: &[Node],
    timeout: Duration,
) -> Vec<(String, Result<serde_json::Value, String>)> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let asks = nodes
            .iter()
            .map(|n| async move { (n.name.clone(), system.final_state(n, left).await) });
        let views = futures::future::join_all(asks).await;
        if one_zxid(&views).is_some() || Instant::now() >= deadline {
            return views;
        }
        tokio::time::sleep(Duration::from_millis(READY_POLL_MS)).await;
    }
}
