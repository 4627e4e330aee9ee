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

    let mut last_error = String::new();
    let mut written: Option<Probe> = None;
    while written.is_none() && Instant::now() < deadline && !cancel.is_cancelled() {
        match Probe::write(system.kind(), nodes).await {
            Ok(probe) => written = Some(probe),
            Err(e) => {
                last_error = format!("write: {e}");
                tokio::time::sleep(Duration::from_millis(RETRY_PAUSE_MS)).await;
            }
        }
    }
    let Some(probe) = written else {
        record.errors.push(last_error);
        return Ok(());
    };
    record.write_ms = Some(ms_since(healed));
    while Instant::now() < deadline && !cancel.is_cancelled() {
        match probe.read().await {
            Ok(data) if data == PROBE_DATA => {
                record.read_ms = Some(ms_since(healed));
                break;
            }
            // A read that misses the acknowledged write is a safety matter for the other
            // checkers; here it only means the read step did not succeed.
            Ok(data) => {
                last_error = format!("read of {} returned {data:?}, not the write", probe.path())
            }
            Err(e) => last_error = format!("read: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(RETRY_PAUSE_MS)).await;
    }
    if record.read_ms.is_none() {
        record.errors.push(last_error);
    }
    probe.close().await;
    Ok(())
}

/// What the probe writes.
const PROBE_DATA: &str = "after-heal";
/// Session timeout of the ZooKeeper probe: inside every ensemble's bounds (ZooKeeper's are
/// 2 to 20 ticks; schism's ZooKeeper ticks every 500 ms).
const ZK_PROBE_SESSION_MS: u64 = 6_000;

/// The probe's session and the znode it wrote, through the system's own client: keeper's HTTP
/// API (read back linearizably), or ZooKeeper's protocol (read back by `sync` and a read of the
/// same session: ZooKeeper has no linearizable read; sync+read sees every write committed before
/// the sync).
enum Probe {
    Keeper(Session, String),
    Zookeeper(zookeeper_client::Client, String),
}

impl Probe {
    /// Connects to any node and writes a fresh sequential znode, each step within
    /// [`PROBE_TIMEOUT_MS`].
    async fn write(kind: SystemKind, nodes: &[Node]) -> Result<Probe, String> {
        let timeout = Duration::from_millis(PROBE_TIMEOUT_MS);
        let attempt = async {
            match kind {
                SystemKind::Keeper => {
                    let mut config = ClientConfig::new(nodes.iter().map(|n| n.url.clone()));
                    config.request_timeout = timeout;
                    config.connect_timeout = timeout;
                    let session = Session::connect(config).await.map_err(|e| e.to_string())?;
                    let path = session
                        .create(PROBE_PREFIX, PROBE_DATA, CreateMode::PersistentSequential)
                        .await
                        .map_err(|e| e.to_string())?;
                    Ok(Probe::Keeper(session, path))
                }
                SystemKind::Zookeeper => {
                    use zookeeper_client as zk;
                    let connect = nodes
                        .iter()
                        .map(|n| n.zk_addr.as_str())
                        .collect::<Vec<_>>()
                        .join(",");
                    let client = zk::Client::connector()
                        .with_session_timeout(Duration::from_millis(ZK_PROBE_SESSION_MS))
                        .with_connection_timeout(timeout)
                        .connect(&connect)
                        .await
                        .map_err(|e| e.to_string())?;
                    let options =
                        zk::CreateMode::PersistentSequential.with_acls(zk::Acls::anyone_all());
                    let (_, sequence) = client
                        .create(PROBE_PREFIX, PROBE_DATA.as_bytes(), &options)
                        .await
                        .map_err(|e| e.to_string())?;
                    Ok(Probe::Zookeeper(
                        client,
                        format!("{PROBE_PREFIX}{sequence}"),
                    ))
                }
            }
        };
        // Two steps: connecting, then writing.
        tokio::time::timeout(timeout * 2, attempt)
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {} ms", PROBE_TIMEOUT_MS * 2)))
    }

    fn path(&self) -> &str {
        match self {
            Probe::Keeper(_, path) | Probe::Zookeeper(_, path) => path,
        }
    }

    /// Reads the written znode back, within [`PROBE_TIMEOUT_MS`].
    async fn read(&self) -> Result<String, String> {
        let read = async {
            match self {
                Probe::Keeper(session, path) => session
                    .with_consistency(Consistency::Linearizable)
                    .get_data(path, false)
                    .await
                    .map(|(data, _)| data)
                    .map_err(|e| e.to_string()),
                Probe::Zookeeper(client, path) => {
                    client.sync(path).await.map_err(|e| e.to_string())?;
                    let (data, _) = client.get_data(path).await.map_err(|e| e.to_string())?;
                    Ok(String::from_utf8_lossy(&data).into_owned())
                }
            }
        };
        tokio::time::timeout(Duration::from_millis(PROBE_TIMEOUT_MS), read)
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {PROBE_TIMEOUT_MS} ms")))
    }

    /// Ends the probe's session (dropping a ZooKeeper client's last handle closes it).
    async fn close(self) {
        if let Probe::Keeper(session, _) = self {
            let _ = session.close().await;
        }
    }
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
