//! The liveness phase: after the last fault heals, the cluster must elect a leader that every node
//! follows, acknowledge a write, serve a linearizable read of it, and bring every replica to one
//! applied zxid, each within the recovery timeout. What is seen is written to `recovery.json`
//! (the checker's [`Recovery`] record), which the checker's `recovery` checker judges, so a server
//! that stays down fails the run (exit 1) instead of passing it with a note.

use std::time::{Duration, Instant};

use checker::liveness::{NodeEnd, Recovery};
use keeper_client::api::{Consistency, CreateMode};
use keeper_client::{ClientConfig, Session};
use tokio_util::sync::CancellationToken;

use crate::status::{self, Node};
use crate::system::{System, SystemKind};

/// Pause between two attempts at a step that failed.
const RETRY_PAUSE_MS: u64 = 200;
/// Budget of one probe operation (connect, write or read) before it is tried again.
const PROBE_TIMEOUT_MS: u64 = 2_000;
/// The probe's znodes live here, apart from every workload's paths.
const PROBE_PREFIX: &str = "/schism-recovery-";

fn ms_since(start: Instant) -> u64 {
    start.elapsed().as_millis() as u64
}

/// Waits for a leader, then writes and reads through it, until `timeout` after `healed`.
/// Fills the `leader_ms`, `write_ms` and `read_ms` of `record`.
pub async fn until_serving(
    system: &dyn System,
    nodes: &[Node],
    healed: Instant,
    timeout: Duration,
    record: &mut Recovery,
    cancel: &CancellationToken,
) -> anyhow::Result<()> {
    let deadline = healed + timeout;
    let left = deadline.saturating_duration_since(Instant::now());
    let (ready, view) = status::wait_until_serving(system, nodes, left, cancel).await;
    if !ready {
        record.errors.push(format!(
            "no leader followed by every node: {} of {} nodes answered, {} serving, leaders {:?}",
            view.answered,
            nodes.len(),
            view.serving,
            view.leaders
        ));
        return Ok(());
    }
    record.leader_ms = Some(ms_since(healed));
    match system.kind() {
        SystemKind::Keeper => keeper_write_then_read(nodes, healed, deadline, record, cancel).await,
        SystemKind::Zookeeper => {
            zookeeper_write_then_read(nodes, healed, deadline, record, cancel).await
        }
    }
    Ok(())
}

/// The probe through keeper's HTTP API: a write, then a linearizable read of it.
async fn keeper_write_then_read(
    nodes: &[Node],
    healed: Instant,
    deadline: Instant,
    record: &mut Recovery,
    cancel: &CancellationToken,
) {
    let mut config = ClientConfig::new(nodes.iter().map(|n| n.url.clone()));
    config.request_timeout = Duration::from_millis(PROBE_TIMEOUT_MS);
    config.connect_timeout = Duration::from_millis(PROBE_TIMEOUT_MS);
    let mut last_error = String::new();
    let mut written: Option<(Session, String)> = None;
    while written.is_none() && Instant::now() < deadline && !cancel.is_cancelled() {
        let attempt = async {
            let session = Session::connect(config.clone()).await?;
            let path = session
                .create(PROBE_PREFIX, "after-heal", CreateMode::PersistentSequential)
                .await?;
            Ok::<_, keeper_client::Error>((session, path))
        };
        match attempt.await {
            Ok(done) => written = Some(done),
            Err(e) => {
                last_error = format!("write: {e}");
                tokio::time::sleep(Duration::from_millis(RETRY_PAUSE_MS)).await;
            }
        }
    }
    let Some((session, path)) = written else {
        record.errors.push(last_error);
        return;
    };
    record.write_ms = Some(ms_since(healed));

    let reader = session.with_consistency(Consistency::Linearizable);
    while Instant::now() < deadline && !cancel.is_cancelled() {
        match reader.get_data(&path, false).await {
            Ok((data, _)) if data == "after-heal" => {
                record.read_ms = Some(ms_since(healed));
                break;
            }
            Ok((data, _)) => {
                // A read that misses the acknowledged write is a safety matter for the other
                // checkers; here it only means the read step did not succeed.
                last_error = format!("read of {path} returned {data:?}, not the write");
            }
            Err(e) => last_error = format!("read: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(RETRY_PAUSE_MS)).await;
    }
    if record.read_ms.is_none() {
        record.errors.push(last_error);
    }
    let _ = session.close().await;
}

/// Session timeout of the ZooKeeper probe: inside every ensemble's bounds (ZooKeeper's are
/// 2 to 20 ticks; schism's ZooKeeper ticks every 500 ms).
const ZK_PROBE_SESSION_MS: u64 = 6_000;

/// The probe through ZooKeeper's protocol (the `zookeeper-client` crate, any node): a write,
/// then `sync` and a read of it by the same session (ZooKeeper has no linearizable read; its
/// sync+read sees every write committed before the sync).
async fn zookeeper_write_then_read(
    nodes: &[Node],
    healed: Instant,
    deadline: Instant,
    record: &mut Recovery,
    cancel: &CancellationToken,
) {
    use zookeeper_client as zk;
    let connect = nodes
        .iter()
        .map(|n| n.zk_addr.as_str())
        .collect::<Vec<_>>()
        .join(",");
    let probe = Duration::from_millis(PROBE_TIMEOUT_MS);
    let mut last_error = String::new();
    let mut written: Option<(zk::Client, String)> = None;
    while written.is_none() && Instant::now() < deadline && !cancel.is_cancelled() {
        let attempt = async {
            let client = zk::Client::connector()
                .with_session_timeout(Duration::from_millis(ZK_PROBE_SESSION_MS))
                .with_connection_timeout(probe)
                .connect(&connect)
                .await?;
            let options = zk::CreateMode::PersistentSequential.with_acls(zk::Acls::anyone_all());
            let (_, sequence) = client.create(PROBE_PREFIX, b"after-heal", &options).await?;
            Ok::<_, zk::Error>((client, format!("{PROBE_PREFIX}{sequence}")))
        };
        match tokio::time::timeout(probe, attempt).await {
            Ok(Ok(done)) => written = Some(done),
            Ok(Err(e)) => last_error = format!("write: {e}"),
            Err(_) => last_error = format!("write: no answer within {PROBE_TIMEOUT_MS} ms"),
        }
        if written.is_none() {
            tokio::time::sleep(Duration::from_millis(RETRY_PAUSE_MS)).await;
        }
    }
    let Some((client, path)) = written else {
        record.errors.push(last_error);
        return;
    };
    record.write_ms = Some(ms_since(healed));
    while Instant::now() < deadline && !cancel.is_cancelled() {
        let read = async {
            client.sync(&path).await?;
            client.get_data(&path).await
        };
        match tokio::time::timeout(probe, read).await {
            Ok(Ok((data, _))) if data == b"after-heal" => {
                record.read_ms = Some(ms_since(healed));
                break;
            }
            Ok(Ok((data, _))) => {
                last_error = format!(
                    "read of {path} returned {:?}, not the write",
                    String::from_utf8_lossy(&data)
                )
            }
            Ok(Err(e)) => last_error = format!("read: {e}"),
            Err(_) => last_error = format!("read: no answer within {PROBE_TIMEOUT_MS} ms"),
        }
        tokio::time::sleep(Duration::from_millis(RETRY_PAUSE_MS)).await;
    }
    if record.read_ms.is_none() {
        record.errors.push(last_error);
    }
    // Dropping the last handle closes the session.
    drop(client);
}

/// Waits until every node applied the same zxid (two polls in a row), then records each node's
/// end from one round of final states at one zxid: its applied zxid and digest. Fills
/// `converged_ms` and `nodes`.
pub async fn until_converged(
    system: &dyn System,
    nodes: &[Node],
    healed: Instant,
    timeout: Duration,
    record: &mut Recovery,
    cancel: &CancellationToken,
) -> anyhow::Result<()> {
    let views = if status::wait_until_converged(system, nodes, timeout, cancel).await {
        record.converged_ms = Some(ms_since(healed));
        // Each node's final state (keeper's applied digest; ZooKeeper's tree walk), all at
        // one zxid.
        status::final_states(system, nodes, timeout).await
    } else {
        record.errors.push(format!(
            "the nodes had not applied the same transactions {} ms after the final reads",
            timeout.as_millis()
        ));
        // Where each node got to, for the reader.
        status::applied(system, nodes).await
    };
    record.nodes = views
        .into_iter()
        .map(|(node, reply)| match reply {
            Ok(d) => NodeEnd {
                node,
                zxid: d.get("zxid").and_then(|z| z.as_u64()),
                digest: d.get("digest").and_then(|z| z.as_u64()),
                error: None,
            },
            Err(e) => NodeEnd {
                node,
                error: Some(e.to_string()),
                ..NodeEnd::default()
            },
        })
        .collect();
    Ok(())
}
