//! The data tree. (Being written: see the signatures; bodies are filled in by the tree work.)

use crate::api::{EventKind, KeeperError, OpResult, SessionId, Stat, Zxid};
use crate::txn::Txn;
use serde::{Deserialize, Serialize};

/// A session as the replicated state knows it.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug, Hash)]
pub struct SessionEntry {
    pub timeout_ms: u64,
}

/// The tree at a zxid, serialisable: every node (parents before children) and every session.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug, Hash, Default)]
pub struct Snapshot {
    /// The last transaction applied to the tree.
    pub zxid: Zxid,
    pub nodes: Vec<SnapshotNode>,
    pub sessions: Vec<(SessionId, SessionEntry)>,
}

#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug, Hash)]
pub struct SnapshotNode {
    pub path: String,
    pub data: String,
    pub stat: Stat,
    /// How many children were ever created under it: the next sequential suffix.
    pub sequence: u64,
    pub container: bool,
}

/// What applying a transaction did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    SessionCreated { session: SessionId, timeout_ms: u64 },
    SessionClosed { session: SessionId, expired: bool },
    Created { path: String, stat: Stat },
    Deleted,
    DataSet { stat: Stat },
    Multi { results: Vec<OpResult> },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    pub result: Result<Outcome, KeeperError>,
    /// Watch triggers in the order they happened: (what happened, to which path).
    pub events: Vec<(EventKind, String)>,
}

#[derive(Clone, Debug, Default)]
pub struct DataTree {}

impl DataTree {
    pub fn new() -> DataTree {
        todo!()
    }
    pub fn apply(&mut self, _txn: &Txn) -> Applied {
        todo!()
    }
    pub fn last_applied(&self) -> Zxid {
        todo!()
    }
    pub fn get(&self, _path: &str) -> Option<(&str, &Stat)> {
        todo!()
    }
    pub fn children(&self, _path: &str) -> Option<(Vec<String>, &Stat)> {
        todo!()
    }
    pub fn session(&self, _id: SessionId) -> Option<&SessionEntry> {
        todo!()
    }
    pub fn sessions(&self) -> impl Iterator<Item = (SessionId, &SessionEntry)> + '_ {
        std::iter::empty()
    }
    pub fn znode_count(&self) -> u64 {
        todo!()
    }
    pub fn digest(&self) -> u64 {
        todo!()
    }
    pub fn to_snapshot(&self) -> Snapshot {
        todo!()
    }
    pub fn from_snapshot(_snapshot: &Snapshot) -> Result<DataTree, String> {
        todo!()
    }
}
