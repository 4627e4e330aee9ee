//! `GET /status` and `GET /v1/digest`: a node's own view of the ensemble, which the harness
//! samples (single leader per epoch, convergence) and the clients poll (is it serving?).

use serde::{Deserialize, Serialize};

use crate::zxid::{NodeId, Zxid};

#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Looking,
    Following,
    Leading,
}

/// `GET /status`: the node's own view. The harness samples it to check that there is at most
/// one leader per epoch.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug)]
pub struct Status {
    pub id: NodeId,
    pub role: Role,
    /// The epoch this node is in (`current_epoch`: the last epoch whose NEWLEADER it acked).
    pub epoch: u32,
    pub accepted_epoch: u32,
    pub leader: Option<NodeId>,
    /// True once the node has synced with an established leader and serves clients.
    pub serving: bool,
    pub last_zxid: Zxid,
    pub committed_zxid: Zxid,
    pub applied_zxid: Zxid,
    /// Followers currently synced with this node (a leader's view; empty otherwise).
    pub synced_followers: Vec<NodeId>,
    pub voters: Vec<NodeId>,
    pub election_round: u64,
    pub sessions: u64,
    pub znodes: u64,
    /// Watches set by clients of this node.
    #[serde(default)]
    pub watches: u64,
    /// Server-side fault injection in effect (`keeperd --bug`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bug: Option<String>,
}

impl Status {
    pub fn is_leading(&self) -> bool {
        self.role == Role::Leading
    }
}

/// `GET /v1/digest`: a digest of the applied tree, to compare replicas.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug)]
pub struct DigestReply {
    pub zxid: Zxid,
    pub digest: u64,
    pub znodes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_reads_without_the_optional_fields() {
        let body = r#"{"id":2,"role":"leading","epoch":3,"accepted_epoch":3,"leader":2,
            "serving":true,"last_zxid":12884901890,"committed_zxid":12884901890,
            "applied_zxid":12884901889,"synced_followers":[1,3],"voters":[1,2,3],
            "election_round":4,"sessions":1,"znodes":5}"#;
        let status: Status = serde_json::from_str(body).unwrap();
        assert!(status.is_leading());
        assert_eq!((status.watches, status.bug.as_deref()), (0, None));
        let again: Status = serde_json::from_value(serde_json::to_value(&status).unwrap()).unwrap();
        assert_eq!(again, status);
        assert!(!serde_json::to_string(&status).unwrap().contains("bug"));
    }
}
