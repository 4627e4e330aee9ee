//! The HTTP/JSON API (`/v1`): request and reply bodies, error codes, watch events.
//! `docs/API.md` documents every call with an example.
//!
//! Every successful reply carries `zxid`: the last transaction the answering node had applied
//! when it answered. Clients remember the largest they have seen and send it back as
//! `last_zxid`; a node that has applied less refuses the request with `not_ready`, so a client
//! that fails over never sees an older view than it has already seen.

use serde::{Deserialize, Serialize};
use std::fmt;

use crate::zxid::{SessionId, Zxid};

/// Largest data a znode may hold unless `keeperd --max-data-bytes` says otherwise.
pub const DEFAULT_MAX_DATA_BYTES: usize = 1024 * 1024;

#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug, Hash, Default)]
#[serde(rename_all = "snake_case")]
pub enum CreateMode {
    #[default]
    Persistent,
    Ephemeral,
    PersistentSequential,
    EphemeralSequential,
    /// Removed (in the same transaction) when its last child is deleted.
    Container,
}

impl CreateMode {
    pub fn is_ephemeral(self) -> bool {
        matches!(
            self,
            CreateMode::Ephemeral | CreateMode::EphemeralSequential
        )
    }
    pub fn is_sequential(self) -> bool {
        matches!(
            self,
            CreateMode::PersistentSequential | CreateMode::EphemeralSequential
        )
    }
}

/// ZooKeeper's Stat, field for field (minus the ACL version, which keeper does not have).
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug, Default, Hash)]
pub struct Stat {
    /// zxid of the transaction that created the node.
    pub czxid: Zxid,
    /// zxid of the transaction that last set its data.
    pub mzxid: Zxid,
    /// zxid of the transaction that last added or removed a child.
    pub pzxid: Zxid,
    /// Creation time, ms since the Unix epoch, as the leader's clock said.
    pub ctime: u64,
    /// Time of the last data change, ms since the Unix epoch.
    pub mtime: u64,
    /// Number of data changes.
    pub version: i32,
    /// Number of child changes (creations and deletions).
    pub cversion: i32,
    /// Session that owns the node if it is ephemeral, else 0.
    pub ephemeral_owner: SessionId,
    pub data_length: u32,
    pub num_children: u32,
}

/// One operation inside a `multi`, and the body of a single write.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug, Hash)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Op {
    Create {
        path: String,
        #[serde(default)]
        data: String,
        #[serde(default)]
        mode: CreateMode,
    },
    Delete {
        path: String,
        #[serde(default = "any_version")]
        version: i32,
    },
    SetData {
        path: String,
        #[serde(default)]
        data: String,
        #[serde(default = "any_version")]
        version: i32,
    },
    /// Only in a multi: fails the multi unless the node exists with this version (-1: any).
    Check {
        path: String,
        #[serde(default = "any_version")]
        version: i32,
    },
}

impl Op {
    pub fn path(&self) -> &str {
        match self {
            Op::Create { path, .. }
            | Op::Delete { path, .. }
            | Op::SetData { path, .. }
            | Op::Check { path, .. } => path,
        }
    }
}

/// `-1`: the version check accepts any version.
pub const ANY_VERSION: i32 = -1;

fn any_version() -> i32 {
    ANY_VERSION
}

/// The result of one op of a successful multi.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug, Hash)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum OpResult {
    Create {
        path: String,
        stat: Stat,
    },
    Delete,
    SetData {
        stat: Stat,
    },
    Check,
    /// In a failed multi: the op's own outcome (`ok` for ops before the failing one,
    /// `runtime_inconsistency` after it), as ZooKeeper reports it.
    Error {
        error: ErrorCode,
    },
}

/// Which guarantee a read asks for. See docs/API.md.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug, Default, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Consistency {
    /// Served by the node the client talks to: sequentially consistent, as in ZooKeeper.
    #[default]
    Local,
    /// A `sync` first, then a local read: sees every write committed before the sync began
    /// (ZooKeeper's sync+read; not linearizable under a deposed leader).
    Sync,
    /// The leader confirms with a quorum that it still leads before the read is answered:
    /// linearizable.
    Linearizable,
}

/// Error codes, as ZooKeeper names them. `timeout` and `connection_loss` are indeterminate:
/// the operation may or may not have taken effect. Every other code is definite.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug, Hash)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    Ok,
    NoNode,
    NodeExists,
    BadVersion,
    NotEmpty,
    NoChildrenForEphemerals,
    SessionExpired,
    BadArguments,
    RuntimeInconsistency,
    /// removeWatches / checkWatches found no such watch.
    NoWatcher,
    /// The node is not serving (no leader, still syncing, or behind the client's `last_zxid`).
    /// Definite: the request was not accepted.
    NotReady,
    /// Indeterminate: the request was accepted but its outcome was not learned in time.
    Timeout,
    /// Indeterminate: the connection to the node was lost (reported by clients, not servers).
    ConnectionLoss,
    Internal,
}

impl ErrorCode {
    /// True when the operation may have taken effect despite the error.
    pub fn is_indeterminate(self) -> bool {
        matches!(self, ErrorCode::Timeout | ErrorCode::ConnectionLoss)
    }

    /// The HTTP status the server answers with.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::Ok => 200,
            ErrorCode::NoNode | ErrorCode::NoWatcher => 404,
            ErrorCode::NodeExists
            | ErrorCode::BadVersion
            | ErrorCode::NotEmpty
            | ErrorCode::RuntimeInconsistency => 409,
            ErrorCode::NoChildrenForEphemerals | ErrorCode::BadArguments => 400,
            ErrorCode::SessionExpired => 410,
            ErrorCode::NotReady => 503,
            ErrorCode::Timeout => 504,
            ErrorCode::ConnectionLoss => 502,
            ErrorCode::Internal => 500,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Ok => "ok",
            ErrorCode::NoNode => "no_node",
            ErrorCode::NodeExists => "node_exists",
            ErrorCode::BadVersion => "bad_version",
            ErrorCode::NotEmpty => "not_empty",
            ErrorCode::NoChildrenForEphemerals => "no_children_for_ephemerals",
            ErrorCode::SessionExpired => "session_expired",
            ErrorCode::BadArguments => "bad_arguments",
            ErrorCode::RuntimeInconsistency => "runtime_inconsistency",
            ErrorCode::NoWatcher => "no_watcher",
            ErrorCode::NotReady => "not_ready",
            ErrorCode::Timeout => "timeout",
            ErrorCode::ConnectionLoss => "connection_loss",
            ErrorCode::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error as the server reports it and the core produces it.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug, Hash, thiserror::Error)]
#[error("{error}: {message}")]
pub struct KeeperError {
    pub error: ErrorCode,
    pub message: String,
    /// For a failed multi: every op's outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub results: Option<Vec<OpResult>>,
}

impl KeeperError {
    pub fn new(error: ErrorCode, message: impl Into<String>) -> Self {
        KeeperError {
            error,
            message: message.into(),
            results: None,
        }
    }
}

// ---- request bodies -------------------------------------------------------------------------

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CreateSessionRequest {
    /// Requested timeout; the server clamps it to [2, 20] ticks.
    pub timeout_ms: u64,
    #[serde(default)]
    pub last_zxid: Zxid,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatRequest {
    #[serde(default)]
    pub last_zxid: Zxid,
}

/// `POST /v1/create`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    pub session: SessionId,
    #[serde(default)]
    pub last_zxid: Zxid,
    pub path: String,
    #[serde(default)]
    pub data: String,
    #[serde(default)]
    pub mode: CreateMode,
}

/// `POST /v1/delete`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DeleteRequest {
    pub session: SessionId,
    #[serde(default)]
    pub last_zxid: Zxid,
    pub path: String,
    #[serde(default = "any_version")]
    pub version: i32,
}

/// `POST /v1/set_data`: a compare-and-set when `version` is not -1.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SetDataRequest {
    pub session: SessionId,
    #[serde(default)]
    pub last_zxid: Zxid,
    pub path: String,
    #[serde(default)]
    pub data: String,
    #[serde(default = "any_version")]
    pub version: i32,
}

/// `POST /v1/multi`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MultiRequest {
    pub session: SessionId,
    #[serde(default)]
    pub last_zxid: Zxid,
    pub ops: Vec<Op>,
}

/// `POST /v1/exists`, `/v1/get_data`, `/v1/get_children`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ReadRequest {
    pub session: SessionId,
    #[serde(default)]
    pub last_zxid: Zxid,
    pub path: String,
    #[serde(default)]
    pub watch: bool,
    #[serde(default)]
    pub consistency: Consistency,
}

/// `POST /v1/sync`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SyncRequest {
    pub session: SessionId,
    #[serde(default)]
    pub last_zxid: Zxid,
    #[serde(default = "root_path")]
    pub path: String,
}

fn root_path() -> String {
    "/".to_string()
}

// ---- reply bodies ---------------------------------------------------------------------------

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct SessionReply {
    pub session: SessionId,
    pub timeout_ms: u64,
    pub zxid: Zxid,
}

/// Reply to heartbeat, close, delete and sync.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ZxidReply {
    pub zxid: Zxid,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct CreateReply {
    /// The created path (with the sequence suffix for sequential modes).
    pub path: String,
    pub stat: Stat,
    pub zxid: Zxid,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct StatReply {
    pub stat: Stat,
    pub zxid: Zxid,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ExistsReply {
    pub stat: Option<Stat>,
    pub zxid: Zxid,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct DataReply {
    pub data: String,
    pub stat: Stat,
    pub zxid: Zxid,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ChildrenReply {
    /// Child names (not full paths), sorted.
    pub children: Vec<String>,
    pub stat: Stat,
    pub zxid: Zxid,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct MultiReply {
    pub results: Vec<OpResult>,
    pub zxid: Zxid,
}

// ---- watches --------------------------------------------------------------------------------

#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug, Hash, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Created,
    Deleted,
    DataChanged,
    ChildrenChanged,
}

/// A fired watch, sent on the session's event stream (`GET /v1/sessions/{id}/events`, SSE
/// event name `watch`). Events reach a session in zxid order.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug, Hash)]
pub struct WatchEvent {
    #[serde(rename = "type")]
    pub kind: EventKind,
    pub path: String,
    /// The transaction that fired the watch.
    pub zxid: Zxid,
}

/// SSE event name `session`: the session ended. The stream closes after it.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug)]
pub struct SessionEvent {
    /// `expired` or `closed`.
    pub state: String,
    pub zxid: Zxid,
}
