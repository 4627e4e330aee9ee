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
use cluster::NodeAddr;
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

/// Apache ZooKeeper, through its four-letter words, with its epochs read from its data
/// directory (`cluster::zookeeper::read_epochs`: the applied zxid's epoch lags on followers).
pub struct Zookeeper {
    base_dir: PathBuf,
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
}

impl Zookeeper {
    async fn zookeeper_status(&self, node: &Node, timeout: Duration) -> Result<Status, String> {
        let id = cluster::node_id(&node.name)
            .ok_or_else(|| format!("{:?} is not a node name", node.name))?;
        let zk: std::net::SocketAddrV4 = node
            .zk_addr
            .parse()
            .map_err(|e| format!("{}: {e}", node.zk_addr))?;
        let addr = NodeAddr {
            id,
            name: node.name.clone(),
            ip: *zk.ip(),
            client_port: cluster::CLIENT_PORT,
            peer_port: cluster::PEER_PORT,
            zk_port: zk.port(),
            system: SystemKind::Zookeeper,
        };
        let data_dir = self.base_dir.join("nodes").join(&node.name).join("data");
        cluster::zookeeper::zk_status_with_epochs(&addr, &data_dir, timeout)
            .await
            .map_err(|e| e.to_string())
    }
}
