//! The deterministic core of a keeper node: election, discovery, synchronisation and broadcast
//! (ZAB), sessions and watches, around the data tree.
//!
//! The core reads no clock, opens no socket, spawns no thread and draws no randomness. The shell
//! (`crate::shell`) feeds it [`Input`]s with the current time and carries out the [`Output`]s
//! it returns. The same core is driven by the stateright model and the simulator in tests.
//!
//! **The durability rule the shell must keep** is in the type `step` returns, [`Ready`] (as in
//! raft-rs): every [`Persist`] of a batch of `step` calls (`Ready::persist`) is durable
//! (written and fsynced) before any [`Output`] of that batch (`Ready::after_persist`: sends,
//! replies, events) leaves the process. The core relies on it: a follower's ACK of a proposal,
//! and its ACK of NEWLEADER, are only ever sent after the proposals they acknowledge are on
//! disk. The exceptions are messages that promise nothing about the batch's writes (a leader's
//! PROPOSAL and COMMIT, a follower's FORWARD; [`PeerMsg::may_precede_fsync`] says why), and, in
//! an ensemble of several voters, what clients are told, which rests only on transactions a
//! quorum held before the batch began ([`Core::answers_precede_fsync`] says why). Both leave
//! before the fsync through [`Ready::take_early`].

mod election;
mod msg;
mod node;
mod watch;
mod zab;

pub use crate::bugs::Bug;

/// How many session timeouts of its own clock a leader waits before it expires a silent
/// session: sessions stay correct for any leader clock up to this many times as fast as true
/// time (see `Core::expiry_wait_ms`, and docs/FAULTS.md for what the clock faults do).
pub const SESSION_CLOCK_MARGIN: u64 = 2;
pub use msg::{PeerMsg, SyncMode, Vote};
pub use node::{Core, LOG_RETAIN_TXNS};

use crate::api::{
    Consistency, KeeperError, NodeId, Op, OpResult, SessionId, Stat, WatchEvent, Zxid,
};
use crate::txn::Txn;

/// Time as the shell tells it: ms since the Unix epoch, never decreasing.
pub type Millis = u64;

/// Identifies a client request on the node that received it, so its reply can find it.
pub type RequestId = u64;

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
    /// Why the storage cut this node's history short (a corrupt log record or snapshot), when
    /// it did and the node has not yet synced again from a leader. Such a node may have lost
    /// transactions it acknowledged, so it must not vote until it has them back.
    pub damage: Option<String>,
}

/// Longest step of a node's clock between two batches that its shell takes as time passing
/// normally (a driver steps the core at least every half tick, 100 ms by default). A longer
/// step is a clock that leapt forward or a process that did not run, and the shell tells the
/// core (`Core::clock_leapt`) before it acts on the new time.
pub const MAX_CLOCK_STEP_MS: u64 = 1_000;

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

/// What to write to disk. Applied in order, and fsynced, before the batch's [`Output`]s leave.
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
    /// The history the storage reported damaged (`Recovered::damage`) is whole again: synced
    /// from a leader, durable with this batch. The node may vote again after a restart.
    HistoryRestored,
}

impl Persist {
    /// Moves a snapshot policy's count of transactions logged since the last snapshot on by what
    /// `persisted` writes: appends add theirs, a SNAP sync's own snapshot restarts it (so the
    /// node does not write the same tree again at once). ZooKeeper's snapCount counts the same
    /// way. Used by keeperd's driver and the simulation alike.
    pub fn count_logged(count: &mut u64, persisted: &[Persist]) {
        for p in persisted {
            match p {
                Persist::Append(txns) => *count += txns.len() as u64,
                Persist::Snapshot(_) => *count = 0,
                _ => {}
            }
        }
    }
}

/// What one `step` (or a batch of them, see [`Ready::append`]) asks of the shell, split by
/// when it may happen: raft-rs's `Ready`. The split *is* the durability rule: `persist` is
/// written and fsynced first; only then may `after_persist` leave the process, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
#[must_use = "a step's outputs must be persisted and carried out"]
pub struct Ready {
    /// Written in order and fsynced before anything in `after_persist` leaves.
    pub persist: Vec<Persist>,
    /// Messages, replies and events, in the core's order (a watch event before the reply that
    /// follows it). None may leave before `persist` is durable, except what
    /// [`Ready::take_early`] hands out first.
    pub after_persist: Vec<Output>,
}

impl Ready {
    /// Nothing to persist and nothing to do.
    pub fn is_empty(&self) -> bool {
        self.persist.is_empty() && self.after_persist.is_empty()
    }

    /// Adds a later step's `Ready` to this batch: one fsync covers all of its `persist`
    /// (group commit), and its effects follow this batch's.
    pub fn append(&mut self, later: Ready) {
        self.persist.extend(later.persist);
        self.after_persist.extend(later.after_persist);
    }

    /// Removes and returns, in order, what `core`'s batch may let out before its fsync:
    ///
    /// - the sends of [`PeerMsg::may_precede_fsync`]: a leader's proposals, so that the
    ///   followers' fsyncs overlap the leader's own, and the commits and forwarded writes, which
    ///   need no fsync of this batch, so that they do not wait for one. A link stays FIFO: once
    ///   one message to a peer must wait for the fsync, so do all after it (the node's messages
    ///   to itself wait too);
    /// - when [`Core::answers_precede_fsync`], every reply, watch event and session notice, in
    ///   the core's order (so a session's event still comes before the reply that follows it),
    ///   so that a client whose write committed is not kept waiting for this node's fsync of
    ///   other clients' proposals.
    pub fn take_early(&mut self, core: &Core) -> Vec<Output> {
        let me = core.cfg.id;
        let answers = core.answers_precede_fsync();
        let mut held: Vec<NodeId> = Vec::new();
        let mut early = Vec::new();
        let mut rest = Vec::with_capacity(self.after_persist.len());
        for output in std::mem::take(&mut self.after_persist) {
            match output {
                Output::Send { to, msg }
                    if to != me && msg.may_precede_fsync() && !held.contains(&to) =>
                {
                    early.push(Output::Send { to, msg });
                }
                Output::Send { to, msg } => {
                    held.push(to);
                    rest.push(Output::Send { to, msg });
                }
                answer if answers => early.push(answer),
                other => rest.push(other),
            }
        }
        self.after_persist = rest;
        early
    }
}

/// An effect of a step that may leave the process only after the step's [`Persist`]s are
/// durable (see [`Ready`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Output {
    Send {
        to: NodeId,
        msg: PeerMsg,
    },
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
    /// The session's watches on this node are gone without firing (a SNAP sync replaced the
    /// tree under them): its event stream must tell the client to set them again, as an
    /// overflow does (a ZooKeeper client is disconnected and sets them again on reconnect).
    WatchesLost {
        session: SessionId,
    },
}
