//! The system under test, as the runner sees it once it is deployed (the node side of Jepsen's
//! `db` protocol): a node's own view of the ensemble (`status`: who leads, in which epoch, is it
//! serving) and what it has applied (`applied`: zxid, and a digest where the system has one).
//! Deploying, killing and pausing the nodes is the cluster backend's (`cluster::Backend`); the
//! workloads' clients are `workload::conn`'s.
//!
//! keeper answers over its HTTP API (`GET /status`, `GET /v1/digest`); ZooKeeper answers the
//! four-letter words on its client port (`srvr`), mapped onto keeper-wire's [`Status`] by the
//! cluster crate, so the sampler, the single-leader checker and the nemesis read one type.

use crate::client::Node;
use futures::FutureExt;
use futures::future::BoxFuture;
use keeper_wire::Status;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use cluster::SystemKind;

pub trait System: Send + Sync {
    fn kind(&self) -> SystemKind;

    /// The node's own view of the ensemble, within `timeout`; one line of error otherwise.
    fn status<'a>(
        &'a self,
        node: &'a Node,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Status, String>>;

    /// What the node has applied, as the `digest` of a status sample: `{"zxid", "digest",
    /// "znodes"}`, `digest` only where the system computes one (the convergence checker compares
    /// digests at equal zxids and says `unknown` without any).
    fn applied<'a>(
        &'a self,
        node: &'a Node,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Value, String>>;

    /// What the node has applied at the end of a run, with a digest of its whole tree: the
    /// replicas' last comparison. The default is [`System::applied`] (keeper's has a digest).
    fn final_state<'a>(
        &'a self,
        node: &'a Node,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Value, String>> {
        self.applied(node, timeout)
    }
}

/// The system of `kind` whose nodes keep their files under `base_dir/nodes/<node>/` (the
/// cluster spec's `base_dir`: the run directory).
pub fn for_kind(kind: SystemKind, base_dir: &Path) -> anyhow::Result<Box<dyn System>> {
    Ok(match kind {
        SystemKind::Keeper => Box::new(Keeper {
            http: keeper_client::status::http_client()?,
        }),
        SystemKind::Zookeeper => Box::new(Zookeeper {
            base_dir: base_dir.to_path_buf(),
            walkers: Default::default(),
        }),
    })
}

/// keeperd, through keeper-client's one reader of `/status` and `/v1/digest`.
pub struct Keeper {
    http: reqwest::Client,
}

impl System for Keeper {
    fn kind(&self) -> SystemKind {
        SystemKind::Keeper
    }

    fn status<'a>(
        &'a self,
        node: &'a Node,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Status, String>> {
        async move {
            keeper_client::status::fetch_status(&self.http, &node.url, timeout)
                .await
                .map_err(|e| format!("GET /status: {e}"))
        }
        .boxed()
    }

    fn applied<'a>(
        &'a self,
        node: &'a Node,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Value, String>> {
        async move {
            let digest = keeper_client::status::fetch_digest(&self.http, &node.url, timeout)
                .await
                .map_err(|e| format!("GET /v1/digest: {e}"))?;
            serde_json::to_value(digest).map_err(|e| format!("GET /v1/digest: {e}"))
        }
        .boxed()
    }
}

/// Session timeout of the client that walks a node's tree at the end.
const FINAL_WALK_SESSION_MS: u64 = 6_000;
/// Pause before walking again a tree that changed under the walk.
const WALK_RETRY_MS: u64 = 200;
/// ZooKeeper's own subtree (quotas, the dynamic configuration): not the application's data.
const ZOOKEEPER_SYSTEM_TREE: &str = "/zookeeper";

/// Requests the tree walk keeps in flight on its one session: ZooKeeper answers a session's
/// requests in order, so they pipeline instead of paying a round trip each.
const WALK_IN_FLIGHT: usize = 64;

/// FNV-1a over every znode (path, data, data version, ephemeral owner) in path order, and the
/// number of znodes: what two replicas at one zxid must agree on.
async fn tree_digest(
    client: &zookeeper_client::Client,
) -> Result<(u64, u64), zookeeper_client::Error> {
    use futures::StreamExt;
    use zookeeper_client::Error;
    // (path, data, version, ephemeral owner) of every znode, level by level.
    let mut entries: Vec<(String, Vec<u8>, i32, i64)> = Vec::new();
    let mut level = vec!["/".to_string()];
    while !level.is_empty() {
        let read = futures::stream::iter(level)
            .map(|path| async move {
                let got = match client.get_data(&path).await {
                    Ok(got) => got,
                    // Deleted since its parent was listed: the zxid check around the walk
                    // catches it.
                    Err(Error::NoNode) => return Ok(None),
                    Err(e) => return Err(e),
                };
                let children = match client.list_children(&path).await {
                    Ok(c) => c,
                    Err(Error::NoNode) => return Ok(None),
                    Err(e) => return Err(e),
                };
                Ok(Some((path, got, children)))
            })
            .buffer_unordered(WALK_IN_FLIGHT)
            .collect::<Vec<_>>()
            .await;
        let mut next = Vec::new();
        for item in read {
            let Some((path, (data, stat), children)) = item? else {
                continue;
            };
            for child in children {
                let full = if path == "/" {
                    format!("/{child}")
                } else {
                    format!("{path}/{child}")
                };
                if full != ZOOKEEPER_SYSTEM_TREE {
                    next.push(full);
                }
            }
            entries.push((path, data, stat.version, stat.ephemeral_owner));
        }
        level = next;
    }
    entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            hash ^= u64::from(*b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    };
    for (path, data, version, owner) in &entries {
        feed(path.as_bytes());
        feed(&[0]);
        feed(data);
        feed(&version.to_le_bytes());
        feed(&owner.to_le_bytes());
    }
    Ok((hash, entries.len() as u64))
}

/// Apache ZooKeeper, through its four-letter words, with its epochs read from its data
/// directory (`cluster::zookeeper::read_epochs`: the applied zxid's epoch lags on followers).
pub struct Zookeeper {
    base_dir: PathBuf,
    /// Per node, the client that walks its tree at the end (see [`Zookeeper::walker`]).
    walkers: std::sync::Mutex<std::collections::HashMap<String, zookeeper_client::Client>>,
}

impl System for Zookeeper {
    fn kind(&self) -> SystemKind {
        SystemKind::Zookeeper
    }

    fn status<'a>(
        &'a self,
        node: &'a Node,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Status, String>> {
        async move { self.zookeeper_status(node, timeout).await }.boxed()
    }

    fn applied<'a>(
        &'a self,
        node: &'a Node,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Value, String>> {
        async move {
            let status = self.zookeeper_status(node, timeout).await?;
            Ok(serde_json::json!({"zxid": status.applied_zxid, "znodes": status.znodes}))
        }
        .boxed()
    }

    fn final_state<'a>(
        &'a self,
        node: &'a Node,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Value, String>> {
        async move { self.walk_at_one_zxid(node, timeout).await }.boxed()
    }
}

impl Zookeeper {
    /// The node's walking client, opened once and kept: opening a session is a transaction,
    /// which would move every replica's zxid under the next walk.
    async fn walker(
        &self,
        node: &Node,
        timeout: Duration,
    ) -> Result<zookeeper_client::Client, String> {
        let kept = self
            .walkers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&node.name)
            .cloned();
        if let Some(client) = kept {
            return Ok(client);
        }
        let client = zookeeper_client::Client::connector()
            .with_session_timeout(Duration::from_millis(FINAL_WALK_SESSION_MS))
            .with_connection_timeout(timeout)
            .connect(&node.zk_addr)
            .await
            .map_err(|e| format!("connecting to {}: {e}", node.zk_addr))?;
        self.walkers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(node.name.clone(), client.clone());
        Ok(client)
    }

    /// Walks the node's own tree (a client of that server alone) between two `srvr` answers at
    /// one zxid, so the digest is of the tree at that zxid; tries again while transactions
    /// arrive (sessions still expiring), within `timeout`.
    async fn walk_at_one_zxid(&self, node: &Node, timeout: Duration) -> Result<Value, String> {
        let deadline = tokio::time::Instant::now() + timeout;
        let client = self.walker(node, timeout).await?;
        let mut last_error = String::new();
        while tokio::time::Instant::now() < deadline {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let before = self.zookeeper_status(node, left).await?.applied_zxid;
            let walked = tokio::time::timeout(left, tree_digest(&client)).await;
            let after = self.zookeeper_status(node, left).await?.applied_zxid;
            match walked {
                Ok(Ok((digest, znodes))) if before == after => {
                    return Ok(serde_json::json!({
                        "zxid": before, "digest": digest, "znodes": znodes,
                    }));
                }
                Ok(Ok(_)) => {
                    last_error =
                        format!("the tree changed during the walk ({before:#x} → {after:#x})")
                }
                Ok(Err(e)) => last_error = format!("walking the tree: {e}"),
                Err(_) => last_error = "walking the tree took too long".to_string(),
            }
            tokio::time::sleep(Duration::from_millis(WALK_RETRY_MS)).await;
        }
        Err(last_error)
    }

    async fn zookeeper_status(&self, node: &Node, timeout: Duration) -> Result<Status, String> {
        let id = cluster::node_id(&node.name)
            .ok_or_else(|| format!("{:?} is not a node name", node.name))?;
        let zk: std::net::SocketAddr = node
            .zk_addr
            .parse()
            .map_err(|e| format!("{}: {e}", node.zk_addr))?;
        let data_dir = self.base_dir.join("nodes").join(&node.name).join("data");
        cluster::zookeeper::zk_status_with_epochs(id, zk, &data_dir, timeout)
            .await
            .map_err(|e| e.to_string())
    }
}
