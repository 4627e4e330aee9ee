//! Fault injection for the harness's catch matrix (issue 6): the bugs a `keeperd-bugs` build
//! can be started with (`keeperd --bug NAME`). Their own home, because the core (`core/`) and
//! the tree (`tree.rs`) both consult them and neither owns the other. Every check goes
//! through `Config::has_bug`, which is always false without the `bugs` feature.

use serde::{Deserialize, Serialize};

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
    /// The leader expires sessions by its own clock without a margin (clock-skew).
    LeaseOnFastClock,
    CorruptLogServed,
    /// A follower acks NEWLEADER before the history the leader synced it is on disk
    /// (ZOOKEEPER-4646, ZOOKEEPER-4685).
    NewleaderAckBeforeDurable,
    /// A follower makes its new current epoch durable before the history the leader synced it
    /// (ZOOKEEPER-4643).
    EpochBeforeLog,
    /// A follower takes a SNAP sync into memory and acks it before the snapshot is on disk
    /// (ZOOKEEPER-3642, ZOOKEEPER-3104).
    SnapshotInMemory,
    /// A watch event is delivered twice (etcd #17247).
    WatchDuplicate,
    /// A node that rejoins the ensemble re-arms its sessions' watches against a zxid older than
    /// the one each was set at, and fires them for changes already seen (etcd #15271).
    WatchStaleAfterReconnect,
    /// A deposed leader reports its applied zxid, not its logged one, when it follows the next
    /// leader: its uncommitted proposals escape truncation and are applied (ZOOKEEPER-2845).
    OldLeaderKeepsUncommitted,
    /// A snapshot taken right after a multi holds the tree as it was before the multi's writes
    /// while claiming the multi's zxid, as a fuzzy snapshot cut through a multi does
    /// (ZOOKEEPER-3127): a node restored from it skips the multi on replay.
    FuzzySnapshotMulti,
}

impl Bug {
    pub const ALL: [Bug; 19] = [
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
        Bug::LeaseOnFastClock,
        Bug::CorruptLogServed,
        Bug::NewleaderAckBeforeDurable,
        Bug::EpochBeforeLog,
        Bug::SnapshotInMemory,
        Bug::WatchDuplicate,
        Bug::WatchStaleAfterReconnect,
        Bug::OldLeaderKeepsUncommitted,
        Bug::FuzzySnapshotMulti,
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
            Bug::LeaseOnFastClock => "lease-on-fast-clock",
            Bug::CorruptLogServed => "corrupt-log-served",
            Bug::NewleaderAckBeforeDurable => "newleader-ack-before-durable",
            Bug::EpochBeforeLog => "epoch-before-log",
            Bug::SnapshotInMemory => "snapshot-in-memory",
            Bug::WatchDuplicate => "watch-duplicate",
            Bug::WatchStaleAfterReconnect => "watch-stale-after-reconnect",
            Bug::OldLeaderKeepsUncommitted => "old-leader-keeps-uncommitted",
            Bug::FuzzySnapshotMulti => "fuzzy-snapshot-multi",
        }
    }

    pub fn parse(name: &str) -> Option<Bug> {
        Bug::ALL.into_iter().find(|b| b.name() == name)
    }
}
