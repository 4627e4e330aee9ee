//! A node's status typed as keeper-wire's [`Status`], asked in the node's own protocol: keeper's
//! `GET /status` through keeper-client's one reader ([`keeper_client::status`]), ZooKeeper's
//! four-letter words through [`zk_status`]; helpers over a cluster's node addresses for nemesis
//! and the tests.

pub use crate::zookeeper::{zk_status, zk_version};
use crate::{ClusterError, NodeAddr, NodeId, Result, SystemKind};
pub use keeper_client::status::STATUS_TIMEOUT_MS;
pub use keeper_wire::{Role, Status};
use std::time::Duration;

/// A client for `/status` that ignores proxy settings (nodes are on our own networks).
pub fn status_client() -> reqwest::Client {
    keeper_client::status::http_client().expect("a plain HTTP client builds")
}

/// Asks one node for its status, within [`STATUS_TIMEOUT_MS`], in the protocol of what it runs
/// (`client` is unused for ZooKeeper).
pub async fn fetch_status(client: &reqwest::Client, node: &NodeAddr) -> Result<Status> {
    let timeout = Duration::from_millis(STATUS_TIMEOUT_MS);
    match node.system {
        SystemKind::Keeper => {
            keeper_client::status::fetch_status(client, &node.client_url(), timeout)
                .await
                .map_err(|e| ClusterError::Status(format!("GET /status: {e}")))
        }
        SystemKind::Zookeeper => zk_status(node, timeout).await,
    }
}

/// Every node's status (`None` where it did not answer), asked concurrently.
pub async fn fetch_all(
    client: &reqwest::Client,
    nodes: &[NodeAddr],
) -> Vec<(NodeId, Option<Status>)> {
    let asks = nodes
        .iter()
        .map(|n| async move { (n.id, fetch_status(client, n).await.ok()) });
    futures::future::join_all(asks).await
}

/// The node that leads in the highest epoch among the answers, if any.
pub fn current_leader(statuses: &[(NodeId, Option<Status>)]) -> Option<NodeId> {
    statuses
        .iter()
        .filter_map(|(id, s)| s.as_ref().map(|s| (*id, s)))
        .filter(|(_, s)| s.is_leading())
        .max_by_key(|(_, s)| s.epoch)
        .map(|(id, _)| id)
}
