//! Messages between keeper servers. The transport (`crate::shell::peer`) frames them; the core
//! never assumes delivery: any message may be lost, delayed, duplicated or reordered, and every
//! handler checks the epoch and the sender's role before acting on one.

use crate::api::{NodeId, Role, SessionId, Zxid};
use crate::txn::Txn;
use serde::{Deserialize, Serialize};

/// A vote in leader election. Votes are totally ordered by (epoch, zxid, id): a node with a
/// newer epoch, then a longer history, then a higher id, is preferred (ZooKeeper's
/// `totalOrderPredicate`).
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub struct Vote {
    /// The candidate's current epoch (the last epoch whose NEWLEADER it acknowledged).
    pub epoch: u32,
    /// The candidate's last logged zxid.
    pub zxid: Zxid,
    pub id: NodeId,
}

/// How the leader brings a follower's history into line with its own.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug, Hash)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum SyncMode {
    /// The follower's history is a prefix of the leader's: send what follows.
    Diff,
    /// The follower has proposals the leader does not: drop everything after `after`, then
    /// append what follows it.
    Trunc { after: Zxid },
    /// The follower is too far behind the leader's log: replace its state with a snapshot.
    Snap { snapshot: crate::tree::Snapshot },
}

#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug, Hash)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PeerMsg {
    // ---- fast leader election -----------------------------------------------------------
    /// "I vote for `vote` in election round `round`, and I am `state`." A LEADING or FOLLOWING
    /// node answers a LOOKING one with the vote it settled on, so latecomers find the leader.
    Notification {
        vote: Vote,
        round: u64,
        state: Role,
    },

    /// "Who leads?", from a node that must not vote (its history was cut by damage, see
    /// `Core::recovering`). A LEADING or FOLLOWING node answers as it answers a LOOKING
    /// notification; a LOOKING node ignores it, so the asker never counts in an election.
    LeaderQuery,

    // ---- discovery (follower -> leader, leader -> follower) ------------------------------
    /// `attempt` identifies one attempt to follow: a resend carries the same one, a
    /// restarted or re-syncing follower a new one.
    FollowerInfo {
        accepted_epoch: u32,
        last_zxid: Zxid,
        attempt: u64,
    },
    LeaderInfo {
        epoch: u32,
    },
    /// `fresh` is false when the follower had already accepted `epoch` before (ZooKeeper
    /// sends a current epoch of -1 then): such an ack does not count towards the quorum that
    /// establishes the epoch, so no two leaders can establish the same epoch.
    AckEpoch {
        epoch: u32,
        fresh: bool,
        current_epoch: u32,
        last_zxid: Zxid,
    },

    // ---- synchronisation ----------------------------------------------------------------
    /// The follower's new history: `mode` then `txns`, then it is told NEWLEADER.
    Sync {
        epoch: u32,
        mode: SyncMode,
        txns: Vec<Txn>,
    },
    NewLeader {
        epoch: u32,
        last_zxid: Zxid,
    },
    /// Sent once the synced history is durable. `last_zxid` is the follower's last zxid then:
    /// everything through it is on its disk, so the leader counts the ack as an ack of each
    /// proposal through it that is still outstanding (a sync carries them in bulk, never as
    /// PROPOSALs). It is the follower's own claim, true even when the ack arrives late.
    AckNewLeader {
        epoch: u32,
        last_zxid: Zxid,
    },
    /// The leader is established; commit everything up to `committed` and serve.
    UpToDate {
        epoch: u32,
        committed: Zxid,
    },

    // ---- broadcast ----------------------------------------------------------------------
    Proposal {
        epoch: u32,
        txn: Txn,
    },
    Ack {
        epoch: u32,
        zxid: Zxid,
    },
    Commit {
        epoch: u32,
        zxid: Zxid,
    },

    // ---- liveness, sessions, requests ---------------------------------------------------
    /// Leader -> follower every tick. `seq` lets the leader count a quorum of pongs sent after
    /// a given moment (linearizable reads).
    Ping {
        epoch: u32,
        seq: u64,
        committed: Zxid,
    },
    /// Follower -> leader, answering a ping; carries the sessions its clients touched, and
    /// acks every proposal through `last_zxid`, the follower's last logged zxid.
    Pong {
        epoch: u32,
        seq: u64,
        touched: Vec<SessionId>,
        last_zxid: Zxid,
    },
    /// Follower -> leader: a client write to propose. The leader fills in the zxid and time.
    Forward {
        epoch: u32,
        request: u64,
        session: SessionId,
        body: crate::txn::TxnBody,
    },
    /// Follower -> leader: sync, or a read index for a linearizable read.
    SyncRequest {
        epoch: u32,
        request: u64,
        linearizable: bool,
    },
    /// Leader -> follower: every transaction up to `zxid` must be applied before answering.
    SyncReply {
        epoch: u32,
        request: u64,
        zxid: Zxid,
    },
}

impl PeerMsg {
    /// Whether the shell may send this message before the batch that produced it is durable:
    /// only those that promise nothing about what the batch wrote.
    ///
    /// - A leader's PROPOSAL (ZooKeeper's leader, too, sends a proposal to its followers while
    ///   logging it). The leader counts its own ack at once, but a commit also needs a
    ///   follower's ACK, which can only arrive in a later batch, after this one's fsync. If the
    ///   leader dies before its fsync, the proposal is one that a quorum may hold and a later
    ///   leader may commit, like any proposal whose commit was not yet known; its client was
    ///   never answered.
    /// - A leader's COMMIT. It says a quorum holds the proposal, and that was true before this
    ///   batch began: a follower acks (ACK, or NEWLEADER's ack through its last zxid) only what
    ///   it received, it receives a proposal only once the batch that logged it on the leader
    ///   has been stepped, and the shell steps no batch before the previous one is durable. So
    ///   the leader's own ack of every proposal a follower's ack helps commit is on its disk
    ///   already. Only a single voter commits on its own ack alone, in the batch that logged
    ///   the proposal, and it has no follower to send a COMMIT to. (ZooKeeper's leader, too,
    ///   sends COMMIT as the acks arrive, not after its log's next fsync.)
    /// - A follower's FORWARD: a client's write relayed to the leader, which says nothing
    ///   about the follower's disk (ZooKeeper's follower forwards a request as it arrives).
    ///
    /// Every other message waits: an ACK, and a PONG (which acks through the follower's last
    /// zxid), promise that the follower's disk holds the proposals, and the rest may follow
    /// from state this batch changed.
    pub fn may_precede_fsync(&self) -> bool {
        matches!(
            self,
            PeerMsg::Proposal { .. } | PeerMsg::Commit { .. } | PeerMsg::Forward { .. }
        )
    }

    /// A short name for logs.
    pub fn name(&self) -> &'static str {
        match self {
            PeerMsg::Notification { .. } => "notification",
            PeerMsg::LeaderQuery => "leaderquery",
            PeerMsg::FollowerInfo { .. } => "followerinfo",
            PeerMsg::LeaderInfo { .. } => "leaderinfo",
            PeerMsg::AckEpoch { .. } => "ackepoch",
            PeerMsg::Sync { .. } => "sync",
            PeerMsg::NewLeader { .. } => "newleader",
            PeerMsg::AckNewLeader { .. } => "acknewleader",
            PeerMsg::UpToDate { .. } => "uptodate",
            PeerMsg::Proposal { .. } => "proposal",
            PeerMsg::Ack { .. } => "ack",
            PeerMsg::Commit { .. } => "commit",
            PeerMsg::Ping { .. } => "ping",
            PeerMsg::Pong { .. } => "pong",
            PeerMsg::Forward { .. } => "forward",
            PeerMsg::SyncRequest { .. } => "syncrequest",
            PeerMsg::SyncReply { .. } => "syncreply",
        }
    }
}
