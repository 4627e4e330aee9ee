//! A node's `GET /status`, read leniently (only the fields the harness and nemesis use), so
//! this crate does not depend on the server crate.

use crate::{ClusterError, NodeAddr, NodeId, Result};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Longest a `/status` request may take: a paused or cut-off node never answers.
pub const STATUS_TIMEOUT_MS: u64 = 1_000;

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct NodeStatus {
    pub id: NodeId,
    /// `looking`, `following` or `leading`.
    pub role: String,
    pub epoch: u64,
    pub leader: Option<NodeId>,
    #[serde(default)]
    pub last_zxid: u64,
    #[serde(default)]
    pub committed_zxid: u64,
    #[serde(default)]
    pub serving: bool,
}

impl NodeStatus {
    pub fn is_leading(&self) -> bool {
        self.role == "leading"
    }
}

/// A client for `/status` that ignores proxy settings (nodes are on our own networks).
pub fn status_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(STATUS_TIMEOUT_MS))
        .build()
        .expect("a plain HTTP client builds")
}

/// Asks one node for its status.
pub async fn fetch_status(client: &reqwest::Client, node: &NodeAddr) -> Result<NodeStatus> {
    let url = format!("{}/status", node.client_url());
    let reply = client
        .get(&url)
        .send()
        .await
        .map_err(|e| ClusterError::Invalid(format!("GET {url}: {e}")))?;
    reply
        .error_for_status()
        .map_err(|e| ClusterError::Invalid(format!("GET {url}: {e}")))?
        .json()
        .await
        .map_err(|e| ClusterError::Invalid(format!("GET {url}: bad status body: {e}")))
}

/// Every node's status (`None` where it did not answer), asked concurrently.
pub async fn fetch_all(
    client: &reqwest::Client,
    nodes: &[NodeAddr],
) -> Vec<(NodeId, Option<NodeStatus>)> {
    let asks = nodes
        .iter()
        .map(|n| async move { (n.id, fetch_status(client, n).await.ok()) });
    futures::future::join_all(asks).await
}

/// The node that leads in the highest epoch among the answers, if any.
pub fn current_leader(statuses: &[(NodeId, Option<NodeStatus>)]) -> Option<NodeId> {
    statuses
        .iter()
        .filter_map(|(id, s)| s.as_ref().map(|s| (*id, s)))
        .filter(|(_, s)| s.is_leading())
        .max_by_key(|(_, s)| s.epoch)
        .map(|(id, _)| id)
}
