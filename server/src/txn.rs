//! Transactions: the unit of replication, logging and application.
//!
//! A client write becomes a `Txn` at the leader, which stamps it with a zxid and its clock's
//! time. Validation against the tree happens when the transaction is *applied*, in zxid order,
//! on every replica: the outcome (including a definite error such as `bad_version`) is a pure
//! function of the tree before it and the transaction, so every replica computes the same one.

use crate::api::{NodeId, Op, SessionId, Zxid};
use serde::{Deserialize, Serialize};

/// Where the client that asked for a transaction waits for its reply.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub struct Origin {
    pub node: NodeId,
    pub request: u64,
}

#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug, Hash)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TxnBody {
    /// Opens a session whose id is this transaction's zxid. `timeout_ms` is already clamped.
    CreateSession { timeout_ms: u64 },
    /// Ends `Txn::session` and deletes its ephemeral nodes. `expired` tells expiry (decided by
    /// the leader) from an explicit close.
    CloseSession { expired: bool },
    /// One znode write (create, delete or set_data).
    Op { op: Op },
    /// An atomic multi: all ops apply or none.
    Multi { ops: Vec<Op> },
}

#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug, Hash)]
pub struct Txn {
    pub zxid: Zxid,
    /// The leader's clock when it proposed the transaction, ms since the Unix epoch.
    pub time_ms: u64,
    /// The session the transaction acts for.
    pub session: SessionId,
    /// The node and request to answer once the transaction is applied, if any.
    pub origin: Option<Origin>,
    pub body: TxnBody,
}
