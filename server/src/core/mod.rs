//! The deterministic core of a keeper node: election, discovery, synchronisation and broadcast
//! (ZAB), sessions and watches, around the data tree.
//!
//! The core reads no clock, opens no socket, spawns no thread and draws no randomness. The shell
//! (`crate::shell`) feeds it [`Input`]s with the current time and carries out the [`Output`]s
//! it returns. The same core is driven by the stateright model and the simulator in tests.
//!
//! **The durability rule the shell must keep:** every `Output::Persist` returned by a batch of
//! `step` calls is durable (written and fsynced) before any `Send`, `Reply` or `Event` of that
//! batch leaves the process. The core relies on it: a follower's ACK of a proposal, and its ACK
//! of NEWLEADER, are only ever sent after the proposals they acknowledge are on disk. The one
//! exception is a leader's PROPOSAL, which may leave before the fsync
//! ([`PeerMsg::may_precede_fsync`] says why that is safe).

mod election;
mod msg;
mod node;
mod watch;
mod zab;

pub use msg::{PeerMsg, SyncMode, Vote};
pub use node::Core;

use crate::api::{
    Consistency, KeeperError, NodeId, Op, OpResult, SessionId, Stat, WatchEvent, Zxid,
};
use crate::txn::Txn;
use serde::{Deserialize, Serialize};

/// Time as the shell tells it: ms since the Unix epoch, never decreasing.
pub type Millis = u64;

/// Identifies a client request on the node that received it, so its reply can find it.
pub type RequestId = u64;

/// Fault injection for the harness's catch matrix (issue 6). `None` in every normal run.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum Bug {
    StaleRead,
    EarlyAck,
    NoFsync,
    SplitBrain,
    VoteIgnoresEpoch,
    SyncNoTrunc,
    EphemeralLeak,
    SequenceReuse,
    WatchDrop,
    ElectionNeverSettles,
}

impl Bug {
    pub const ALL: [Bug; 10] = [
        Bug::StaleRead,
        Bug::EarlyAck,
        Bug::NoFsync,
        Bug::SplitBrain,
        Bug::VoteIgnoresEpoch,
        Bug::SyncNoTrunc,
        Bug::EphemeralLeak,
        Bug::SequenceReuse,
        Bug::WatchDrop,
        Bug::ElectionNeverSettles,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Bug::StaleRead => "stale-read",
            Bug::EarlyAck => "early-ack",
            Bug::NoFsync => "no-fsync",
            Bug::SplitBrain => "split-brain",
            Bug::VoteIgnoresEpoch => "vote-ignores-epoch",
            Bug::SyncNoTrunc => "sync-no-trunc",
            Bug::EphemeralLeak => "ephemeral-leak",
            Bug::SequenceReuse => "sequence-reuse",
            Bug::WatchDrop => "watch-drop",
            Bug::ElectionNeverSettles => "election-never-settles",
        }
    }

    pub fn parse(name: &str) -> Option<Bug> {
        Bug::ALL.into_iter().find(|b| b.name() == name)
    }
}

/// A node's configuration. Every duration is in ticks or ms, as its name says.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Config {
    pub id: NodeId,
    /// Every voting member, this node included. One member: a standalone server.
    pub voters: Vec<NodeId>,
    /// The shell delivers `Input::Tick` at least this often.
    pub tick_ms: u64,
    /// Ticks a follower may take to connect and sync with a new leader (ZooKeeper's initLimit).
    pub init_limit_ticks: u64,
    /// Ticks without hearing from the leader (follower) or from a quorum (leader) before the
    /// node gives up its role (ZooKeeper's syncLimit).
    pub sync_limit_ticks: u64,
    /// Session timeouts are clamped to [min, max] ticks (ZooKeeper: 2 and 20 ticks).
    pub min_session_ticks: u64,
    pub max_session_ticks: u64,
    /// A request not answered within this long gets an indeterminate `timeout`.
    pub request_timeout_ms: u64,
    pub max_data_bytes: usize,
    /// Fault injection; `None` for a correct server.
    pub bug: Option<Bug>,
}

impl Config {
    pub fn new(id: NodeId, voters: Vec<NodeId>) -> Config {
        Config {
            id,
            voters,
            tick_ms: 200,
            init_limit_ticks: 10,
            sync_limit_ticks: 5,
            min_session_ticks: 2,
            max_session_ticks: 20,
            request_timeout_ms: 5_000,
            max_data_bytes: crate::api::DEFAULT_MAX_DATA_BYTES,
            bug: None,
        }
    }

    /// Whether a fault is injected. Always false in a build without the `bugs` feature, so
    /// the compiler removes every fault branch from the keeperd users deploy.
    pub fn has_bug(&self, bug: Bug) -> bool {
        cfg!(feature = "bugs") && self.bug == Some(bug)
    }
}

/// The durable state a node recovers at startup (see `crate::storage`).
#[derive(Clone, Debug, Default)]
pub struct Recovered {
    /// The newest snapshot: the tree at a committed zxid, as `DataTree::to_snapshot` made it.
    pub snapshot: Option<crate::tree::Snapshot>,
    /// Logged transactions after the snapshot, in zxid order (committed or not).
    pub log: Vec<Txn>,
    pub accepted_epoch: u32,
    pub current_epoch: u32,
}

/// What a client asks of the node it is connected to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ClientRequest {
    CreateSession {
        timeout_ms: u64,
        last_zxid: Zxid,
    },
    Heartbeat {
        session: SessionId,
        last_zxid: Zxid,
    },
    CloseSession {
        session: SessionId,
        last_zxid: Zxid,
    },
    /// A single write (`Op::Check` is refused outside a multi).
    Write {
        session: SessionId,
        last_zxid: Zxid,
        op: Op,
    },
    Multi {
        session: SessionId,
        last_zxid: Zxid,
        ops: Vec<Op>,
    },
    Read {
        session: SessionId,
        last_zxid: Zxid,
        read: Read,
        watch: bool,
        consistency: Consistency,
    },
    Sync {
        session: SessionId,
        last_zxid: Zxid,
        path: String,
    },
    /// Sets watches again after a reconnect (ZooKeeper's setWatches): a watch whose node
    /// changed after `relative_zxid` (the last zxid the client saw) fires at once instead.
    SetWatches {
        session: SessionId,
        last_zxid: Zxid,
        relative_zxid: Zxid,
        data: Vec<String>,
        exist: Vec<String>,
        child: Vec<String>,
    },
    /// Removes (or with `check_only`, checks for) the session's watches of `kind` on `path`;
    /// `no_watcher` when there is none (ZooKeeper's removeWatches / checkWatches).
    RemoveWatches {
        session: SessionId,
        path: String,
        kind: WatchKind,
        check_only: bool,
    },
}

/// Which watches `RemoveWatches` means (ZooKeeper's WatcherType).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WatchKind {
    Child,
    Data,
    Any,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Read {
    Exists {
        path: String,
    },
    GetData {
        path: String,
    },
    GetChildren {
        path: String,
    },
    /// How many nodes lie below `path`, at any depth (ZooKeeper's getAllChildrenNumber).
    AllChildrenNumber {
        path: String,
    },
}

/// A successful reply. Each carries, beside it in `Output::Reply`, the node's applied zxid.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Response {
    Session {
        session: SessionId,
        timeout_ms: u64,
    },
    /// Heartbeat, close, delete, sync.
    Done,
    Created {
        path: String,
        stat: Stat,
    },
    Stat {
        stat: Stat,
    },
    Exists {
        stat: Option<Stat>,
    },
    Data {
        data: String,
        stat: Stat,
    },
    Children {
        children: Vec<String>,
        stat: Stat,
    },
    Multi {
        results: Vec<OpResult>,
    },
    Count {
        count: u64,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Input {
    /// Time passes. The shell sends one at least every `tick_ms`.
    Tick,
    Client {
        request: RequestId,
        body: ClientRequest,
    },
    Peer {
        from: NodeId,
        msg: PeerMsg,
    },
    /// The shell saw a connection from `peer` end (closed or reset): the peer's process died
    /// or dropped the link. A partition sends no such notice, so nothing may depend on getting
    /// one; a stale notice (the peer already reconnected) may arrive too, and costs at most an
    /// election.
    PeerDisconnected {
        peer: NodeId,
    },
}

/// What to write to disk. Applied in order; see the durability rule above.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Persist {
    /// Append these transactions to the log.
    Append(Vec<Txn>),
    /// Drop every logged transaction with a zxid greater than this (ZAB's TRUNC).
    TruncateAfter(Zxid),
    /// Replace the whole state with this snapshot and no log (ZAB's SNAP).
    Snapshot(crate::tree::Snapshot),
    /// Record the epochs (ZAB's acceptedEpoch and currentEpoch files).
    Epochs {
        accepted_epoch: u32,
        current_epoch: u32,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Output {
    Send {
        to: NodeId,
        msg: PeerMsg,
    },
    Persist(Persist),
    Reply {
        request: RequestId,
        /// The node's applied zxid when it answered.
        zxid: Zxid,
        result: Result<Response, KeeperError>,
    },
    /// A watch fired for a session connected to this node: push it on its event stream.
    Event {
        session: SessionId,
        event: WatchEvent,
    },
    /// The session is gone (`expired` or `closed`): end its event stream.
    SessionEnded {
        session: SessionId,
        expired: bool,
        zxid: Zxid,
    },
}
