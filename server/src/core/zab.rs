//! ZAB's discovery, synchronisation and broadcast phases, after ZooKeeper's `Leader`,
//! `LearnerHandler` and `Follower`.
//!
//! Discovery: each follower sends FOLLOWERINFO (its accepted epoch). With a quorum, the leader
//! proposes an epoch above every accepted epoch it heard (LEADERINFO); followers accept it
//! (persisting `accepted_epoch`) and answer ACKEPOCH with their current epoch and last zxid.
//! Synchronisation: once a quorum acked the epoch, the leader brings each follower's history
//! into line with its own (DIFF, TRUNC or SNAP) and sends NEWLEADER. A follower persists the
//! history and `current_epoch` before it acks NEWLEADER. With a quorum of acks the leader
//! commits its whole history and tells followers UPTODATE: the epoch is established.
//! Broadcast: the leader proposes each write with the next zxid, commits it in zxid order
//! once a quorum has it on disk, and every node applies commits in order.

use super::node::State;
use super::*;
use crate::api::{counter_of, epoch_of};
use crate::txn::{Origin, TxnBody};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum FollowerStage {
    /// FOLLOWERINFO sent, waiting for LEADERINFO.
    Connecting,
    /// ACKEPOCH sent, waiting for the leader's sync.
    AckedEpoch,
    /// History received, waiting for NEWLEADER.
    Synced,
    /// NEWLEADER acked, waiting for UPTODATE.
    AckedNewLeader,
    /// Serving clients.
    UpToDate,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Following {
    pub leader: NodeId,
    /// The leader's epoch, once LEADERINFO told it.
    pub epoch: u32,
    pub stage: FollowerStage,
    /// Identifies this attempt to follow, so the leader can tell a resent FOLLOWERINFO from a
    /// follower that restarted.
    attempt: u64,
    started_at: Millis,
    last_heard: Millis,
    next_info_at: Millis,
}

impl Following {
    pub fn is_up_to_date(&self) -> bool {
        self.stage == FollowerStage::UpToDate
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum LeaderPhase {
    /// Collecting FOLLOWERINFO from a quorum to choose the new epoch.
    Discovery,
    /// LEADERINFO sent; collecting fresh ACKEPOCHs from a quorum.
    EpochAck,
    /// Followers synced; collecting NEWLEADER acks from a quorum.
    Sync,
    /// Established: proposing and committing.
    Broadcast,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum LearnerStage {
    Info,
    AckedEpoch { last_zxid: Zxid },
    Synced,
    AckedNewLeader,
    UpToDate,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Learner {
    stage: LearnerStage,
    attempt: u64,
    accepted_epoch: u32,
    last_heard: Millis,
    pong_seq: u64,
}

/// A linearizable read waiting for a quorum to answer a ping sent after it arrived.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct ReadWaiter {
    from: NodeId,
    request: u64,
    zxid: Zxid,
    seq: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Leading {
    phase: LeaderPhase,
    /// The epoch this leader establishes (0 until discovery chose it).
    epoch: u32,
    /// (current epoch, last zxid) when this node became leader: a follower more recent than
    /// this means the election went wrong, and the leader must not lead.
    summary: (u32, Zxid),
    learners: BTreeMap<NodeId, Learner>,
    epoch_acks: BTreeSet<NodeId>,
    newleader_acks: BTreeSet<NodeId>,
    /// Proposals of this epoch so far.
    counter: u32,
    /// Outstanding proposals and who has them on disk.
    acks: BTreeMap<Zxid, BTreeSet<NodeId>>,
    ping_seq: u64,
    /// The tick pings sent within the sync limit, oldest first: (seq, sent at). At most one
    /// per tick, so at most `sync_limit_ticks + 1` of them.
    pings: VecDeque<(u64, Millis)>,
    readers: Vec<ReadWaiter>,
    /// Session deadlines: the leader alone decides expiry.
    deadlines: BTreeMap<SessionId, Millis>,
    /// Sessions whose expiry is proposed but not applied yet.
    closing: BTreeSet<SessionId>,
    started_at: Millis,
    next_ping_at: Millis,
    /// With the `split-brain` fault: the leader has lost its quorum but carries on.
    lost_quorum: bool,
    /// The latest request each follower forwarded to this leader, through all its attempts.
    /// A node numbers its requests in increasing order (from its start time, so across its
    /// restarts too) and forwards writes as they arrive, so a FORWARD at or below it is a
    /// duplicate: proposing it again would apply one client write twice (found by `schism sim`
    /// when links duplicated messages: `--seed 4111` had a copy arrive after the follower
    /// re-synced, so the record must outlive an attempt). Dropping a reordered one is safe too:
    /// its client times out with an indeterminate outcome.
    forwarded: BTreeMap<NodeId, RequestId>,
}

impl Leading {
    pub fn is_established(&self) -> bool {
        self.phase == LeaderPhase::Broadcast
    }

    /// When the ping a PONG of `seq` answers was sent, at the latest: the last tick ping at or
    /// before it (a read's ping goes out between two). `None` when that ping is older than
    /// the sync limit.
    fn ping_sent_at(&self, seq: u64) -> Option<Millis> {
        self.pings
            .iter()
            .rev()
            .find(|(sent, _)| *sent <= seq)
            .map(|(_, at)| *at)
    }

    /// Counts `from`'s ack of every outstanding proposal through `through`: a claim about its
    /// disk that a follower makes in a NEWLEADER ack and in each PONG (its log is a gap-free
    /// copy of ours, durable when either leaves it).
    fn ack_through(&mut self, from: NodeId, through: Zxid) {
        for (_, have) in self.acks.range_mut(..=through) {
            have.insert(from);
        }
    }

    pub fn synced_followers(&self) -> Vec<NodeId> {
        self.learners
            .iter()
            .filter(|(_, l)| l.stage == LearnerStage::UpToDate)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Learners that receive proposals and commits: everyone whose sync has been sent.
    fn receivers(&self) -> Vec<NodeId> {
        self.learners
            .iter()
            .filter(|(_, l)| l.stage >= LearnerStage::Synced)
            .map(|(id, _)| *id)
            .collect()
    }
}

impl Core {
    fn leading(&mut self) -> &mut Leading {
        match &mut self.state {
            State::Leading(l) => l,
            _ => unreachable!("leader state outside LEADING"),
        }
    }

    fn following(&mut self) -> &mut Following {
        match &mut self.state {
            State::Following(f) => f,
            _ => unreachable!("follower state outside FOLLOWING"),
        }
    }

    fn ticks_ms(&self, ticks: u64) -> u64 {
        ticks * self.cfg.tick_ms
    }

    // =========================================================================================
    // Leader
    // =========================================================================================

    pub(super) fn become_leader(&mut self) {
        let mut l = Leading {
            phase: LeaderPhase::Discovery,
            epoch: 0,
            summary: (self.current_epoch, self.last_zxid()),
            learners: BTreeMap::new(),
            epoch_acks: BTreeSet::new(),
            newleader_acks: BTreeSet::new(),
            counter: 0,
            acks: BTreeMap::new(),
            ping_seq: 0,
            pings: VecDeque::new(),
            readers: Vec::new(),
            deadlines: BTreeMap::new(),
            closing: BTreeSet::new(),
            started_at: self.now,
            next_ping_at: self.now,
            lost_quorum: false,
            forwarded: BTreeMap::new(),
        };
        l.epoch_acks.clear();
        self.state = State::Leading(l);
        self.check_discovery();
    }

    /// Chooses the new epoch once a quorum (this node included) has sent FOLLOWERINFO: one
    /// above every accepted epoch heard, so it is new to all of them (ZooKeeper's
    /// `getEpochToPropose`).
    fn check_discovery(&mut self) {
        let me = self.cfg.id;
        let own_accepted = self.accepted_epoch;
        let l = self.leading();
        if l.phase != LeaderPhase::Discovery {
            return;
        }
        let connected = 1 + l.learners.len();
        let max_accepted = l
            .learners
            .values()
            .map(|x| x.accepted_epoch)
            .max()
            .unwrap_or(0)
            .max(own_accepted);
        if !self.is_quorum(connected) {
            return;
        }
        let epoch = max_accepted + 1;
        let l = self.leading();
        l.epoch = epoch;
        l.phase = LeaderPhase::EpochAck;
        l.epoch_acks.insert(me);
        let learners: Vec<NodeId> = l.learners.keys().copied().collect();
        self.accepted_epoch = epoch;
        self.persist_epochs();
        for n in learners {
            self.send(n, PeerMsg::LeaderInfo { epoch });
        }
        self.check_epoch_acks();
    }

    /// Once a quorum has acked the new epoch with fresh acks, this node takes the epoch as
    /// its current one and syncs every follower that acked.
    fn check_epoch_acks(&mut self) {
        let me = self.cfg.id;
        let l = self.leading();
        if l.phase != LeaderPhase::EpochAck {
            return;
        }
        let acks = l.epoch_acks.len();
        if !self.is_quorum(acks) {
            return;
        }
        let l = self.leading();
        l.phase = LeaderPhase::Sync;
        l.newleader_acks.insert(me);
        let epoch = l.epoch;
        let ready: Vec<(NodeId, Zxid)> = l
            .learners
            .iter()
            .filter_map(|(id, x)| match x.stage {
                LearnerStage::AckedEpoch { last_zxid } => Some((*id, last_zxid)),
                _ => None,
            })
            .collect();
        self.current_epoch = epoch;
        self.persist_epochs();
        for (n, last) in ready {
            self.sync_learner(n, last);
        }
        self.check_newleader();
    }

    /// Brings a follower whose last zxid is `peer_last` into line with this leader's history
    /// (ZooKeeper's `LearnerHandler.syncFollower`), then sends NEWLEADER.
    fn sync_learner(&mut self, n: NodeId, peer_last: Zxid) {
        let (mode, txns) = self.sync_plan(peer_last);
        let how = match &mode {
            SyncMode::Diff => "DIFF",
            SyncMode::Trunc { .. } => "TRUNC",
            SyncMode::Snap { .. } => "SNAP",
        };
        tracing::info!(
            follower = n,
            txns = txns.len(),
            "syncing follower {n} by {how} from {peer_last:#x}"
        );
        let epoch = self.leading().epoch;
        let last_zxid = self.last_zxid();
        self.send(n, PeerMsg::Sync { epoch, mode, txns });
        self.send(n, PeerMsg::NewLeader { epoch, last_zxid });
        if let Some(x) = self.leading().learners.get_mut(&n) {
            x.stage = LearnerStage::Synced;
        }
    }

    fn sync_plan(&self, peer_last: Zxid) -> (SyncMode, Vec<Txn>) {
        let after = |z: Zxid| -> Vec<Txn> {
            let i = self.log.partition_point(|t| t.zxid <= z);
            self.log[i..].to_vec()
        };
        if peer_last < self.log_start {
            // Older than anything the log still holds: send the tree and what follows it.
            let snapshot = self.tree.to_snapshot();
            let txns = after(snapshot.zxid);
            return (SyncMode::Snap { snapshot }, txns);
        }
        let known = peer_last == self.log_start
            || self
                .log
                .binary_search_by_key(&peer_last, |t| t.zxid)
                .is_ok();
        if known {
            // The follower's history is a prefix of ours (a zxid names one transaction:
            // each epoch has one leader).
            return (SyncMode::Diff, after(peer_last));
        }
        // The follower has proposals we do not (an older epoch's, never committed): it must
        // drop everything after the last zxid we share.
        let i = self.log.partition_point(|t| t.zxid <= peer_last);
        let common = if i == 0 {
            self.log_start
        } else {
            self.log[i - 1].zxid
        };
        (SyncMode::Trunc { after: common }, after(common))
    }

    fn check_newleader(&mut self) {
        let l = self.leading();
        if l.phase != LeaderPhase::Sync {
            return;
        }
        let acks = l.newleader_acks.len();
        if !self.is_quorum(acks) {
            return;
        }
        // A quorum has our whole history on disk and has taken our epoch: all of it is
        // committed, and the epoch is established.
        let now = self.now;
        let last = self.last_zxid();
        self.committed = last;
        let l = self.leading();
        l.phase = LeaderPhase::Broadcast;
        l.next_ping_at = now;
        let epoch = l.epoch;
        let mut up: Vec<NodeId> = Vec::new();
        for (id, x) in l.learners.iter_mut() {
            if x.stage == LearnerStage::AckedNewLeader {
                x.stage = LearnerStage::UpToDate;
                x.last_heard = now;
                up.push(*id);
            }
        }
        // Kept for the fault alone, so that a correct node's state (which the model checker
        // enumerates) is what it was without it.
        if self.cfg.has_bug(Bug::OldLeaderKeepsUncommitted) {
            self.led_epoch = epoch;
        }
        for n in up {
            self.send(
                n,
                PeerMsg::UpToDate {
                    epoch,
                    committed: last,
                },
            );
        }
        self.apply_committed();
        self.rearm_watches_after_rejoin();
        // Every session gets a full timeout from the new leader (ZooKeeper does the same:
        // the old leader's view of when clients last spoke is lost).
        let sessions: Vec<(SessionId, u64)> = self
            .tree
            .sessions()
            .map(|(id, s)| (id, s.timeout_ms))
            .collect();
        let waits: Vec<(SessionId, u64)> = sessions
            .into_iter()
            .map(|(id, timeout)| (id, self.expiry_wait_ms(timeout)))
            .collect();
        let l = self.leading();
        for (id, wait) in waits {
            l.deadlines.insert(id, now + wait);
        }
    }

    pub(super) fn leader_receive(&mut self, from: NodeId, msg: PeerMsg) {
        let now = self.now;
        let State::Leading(l) = &mut self.state else {
            return;
        };
        let epoch = l.epoch;
        match msg {
            PeerMsg::FollowerInfo {
                accepted_epoch,
                last_zxid: _,
                attempt,
            } => {
                if l.phase != LeaderPhase::Discovery && accepted_epoch > epoch {
                    // This follower accepted an epoch above ours (a would-be leader's discovery
                    // that never established it, its LEADERINFO lost to the others), so it
                    // refuses our LEADERINFO, as ZooKeeper's Learner does ("Leaders epoch is
                    // less than accepted epoch"), looks, finds us leading again, and never
                    // follows. Step down: the next discovery hears its accepted epoch and
                    // proposes one above it. (An equal accepted epoch is the normal case of a
                    // follower that acked ours; during discovery the epoch is not chosen yet and
                    // `check_discovery` already goes above every accepted epoch it hears.)
                    tracing::info!(
                        "node {from} accepted epoch {accepted_epoch}, above ours ({epoch}): stepping down so that the next epoch is above it"
                    );
                    return self.start_looking();
                }
                if l.learners.get(&from).is_some_and(|x| x.attempt == attempt) {
                    // A resent FOLLOWERINFO of an attempt already under way.
                    if let Some(x) = l.learners.get_mut(&from) {
                        x.last_heard = now;
                    }
                    if l.phase >= LeaderPhase::EpochAck
                        && l.learners[&from].stage == LearnerStage::Info
                    {
                        self.send(from, PeerMsg::LeaderInfo { epoch });
                    }
                    return;
                }
                // A new attempt: whatever this follower had with us is void.
                l.learners.insert(
                    from,
                    Learner {
                        stage: LearnerStage::Info,
                        attempt,
                        accepted_epoch,
                        last_heard: now,
                        pong_seq: 0,
                    },
                );
                l.newleader_acks.remove(&from);
                if l.phase == LeaderPhase::Discovery {
                    self.check_discovery();
                } else {
                    self.send(from, PeerMsg::LeaderInfo { epoch });
                }
            }
            PeerMsg::AckEpoch {
                epoch: e,
                fresh,
                current_epoch,
                last_zxid,
            } => {
                let Some(x) = l.learners.get_mut(&from) else {
                    return;
                };
                if e != epoch || x.stage != LearnerStage::Info {
                    return;
                }
                x.last_heard = now;
                // Only while the epoch is being established (ZooKeeper's `waitForEpochAck`
                // returns at once afterwards: a late joiner is synced, not compared).
                // BUG(vote-ignores-epoch): the leader also skips the check that would catch
                // the election's mistake.
                if l.phase == LeaderPhase::EpochAck
                    && (current_epoch, last_zxid) > l.summary
                    && !self.cfg.has_bug(Bug::VoteIgnoresEpoch)
                {
                    // ZooKeeper: "Follower is ahead of the leader". This node must not lead.
                    tracing::warn!(
                        follower = from,
                        "follower is ahead of the leader (epoch {current_epoch}, zxid {last_zxid:#x}); leaving leadership"
                    );
                    return self.start_looking();
                }
                x.stage = LearnerStage::AckedEpoch { last_zxid };
                if fresh {
                    l.epoch_acks.insert(from);
                }
                if l.phase >= LeaderPhase::Sync {
                    self.sync_learner(from, last_zxid);
                } else {
                    self.check_epoch_acks();
                }
            }
            PeerMsg::AckNewLeader {
                epoch: e,
                last_zxid: through,
            } => {
                let Some(x) = l.learners.get_mut(&from) else {
                    return;
                };
                if e != epoch || x.stage != LearnerStage::Synced {
                    return;
                }
                x.last_heard = now;
                x.stage = LearnerStage::AckedNewLeader;
                l.newleader_acks.insert(from);
                if l.phase == LeaderPhase::Broadcast {
                    x.stage = LearnerStage::UpToDate;
                    // A learner synced while proposals were outstanding received them in its
                    // sync, not as PROPOSALs, so it never acks them one by one: its NEWLEADER
                    // ack (sent only once that history is durable) is its ack of each of them
                    // through the last zxid it names, its own claim about its disk, so a late
                    // duplicate of an older ack claims nothing false. Without this, proposals
                    // outstanding when a quorum of followers re-synced never gain a quorum and
                    // commits stall for ever (found by `schism sim`, seed 113).
                    l.ack_through(from, through);
                    let committed = self.committed;
                    self.send(from, PeerMsg::UpToDate { epoch, committed });
                    self.try_commit();
                } else {
                    self.check_newleader();
                }
            }
            PeerMsg::Ack { epoch: e, zxid } => {
                let Some(x) = l.learners.get_mut(&from) else {
                    return;
                };
                // Only a follower that has taken this epoch as its own (acked NEWLEADER) may
                // count towards a commit.
                if e != epoch || x.stage < LearnerStage::AckedNewLeader {
                    return;
                }
                if let Some(have) = l.acks.get_mut(&zxid) {
                    have.insert(from);
                }
                self.try_commit();
            }
            PeerMsg::Pong {
                epoch: e,
                seq,
                touched,
                last_zxid,
            } => {
                let sent_at = l.ping_sent_at(seq);
                let Some(x) = l.learners.get_mut(&from) else {
                    return;
                };
                if e != epoch {
                    return;
                }
                // Only a PONG says when a follower was last alive, and as of the ping it
                // answers, not of its own arrival: any message may have waited in a link that a
                // partition cut, and TCP delivers it when the link heals, seconds later. Counted
                // at its arrival, such a backlog kept a leader that had been paused and
                // replaced leading for seconds after it resumed (`schism sim --seed 10520`).
                if let Some(at) = sent_at {
                    x.last_heard = x.last_heard.max(at);
                }
                x.pong_seq = x.pong_seq.max(seq);
                // A PONG is an ACK of everything through the follower's last zxid (its log is
                // a gap-free copy of ours, on its disk when the PONG left): this recovers lost
                // ACKs, as PINGs recover lost COMMITs. Without it, one lost ACK from each
                // follower stalled every commit for good (`schism sim --lossy-links --seed 681`).
                if x.stage >= LearnerStage::AckedNewLeader {
                    l.ack_through(from, last_zxid);
                }
                for s in touched {
                    self.leader_touch(s);
                }
                self.try_commit();
                self.check_readers();
            }
            PeerMsg::Forward {
                epoch: e,
                request,
                session,
                body,
            } => {
                let serving = l
                    .learners
                    .get(&from)
                    .is_some_and(|x| x.stage == LearnerStage::UpToDate);
                if e != epoch || l.phase != LeaderPhase::Broadcast || !serving {
                    // The follower times the request out: its outcome is unknown to it.
                    return;
                }
                // A forwarded request is its session speaking: touch it here, so an acknowledged
                // write always extends its session, even when the follower loses this leader
                // before its next PONG would have relayed the touch.
                self.leader_touch(session);
                let l = self.leading();
                let latest = l.forwarded.entry(from).or_insert(0);
                if request <= *latest {
                    return;
                }
                *latest = request;
                let origin = Origin {
                    node: from,
                    request,
                };
                self.propose(session, body, Some(origin));
            }
            PeerMsg::SyncRequest {
                epoch: e,
                request,
                linearizable,
            } if e == epoch => {
                self.leader_sync_request(from, request, linearizable);
            }
            _ => {}
        }
    }

    /// Proposes a transaction with the next zxid of this epoch.
    pub(super) fn propose(&mut self, session: SessionId, body: TxnBody, origin: Option<Origin>) {
        let me = self.cfg.id;
        let now = self.now;
        let l = self.leading();
        debug_assert_eq!(l.phase, LeaderPhase::Broadcast);
        if l.counter == u32::MAX {
            // The counter half of the zxid is exhausted: a new epoch is needed (ZooKeeper
            // forces an election too).
            tracing::warn!("zxid counter exhausted; starting an election for a new epoch");
            return self.start_looking();
        }
        l.counter += 1;
        let zxid = Core::zxid_in(l.epoch, l.counter);
        let epoch = l.epoch;
        l.acks.insert(zxid, BTreeSet::from([me]));
        let receivers = l.receivers();
        let txn = Txn {
            zxid,
            time_ms: now,
            session,
            origin,
            body,
        };
        // The leader's own ack counts at once: a commit also needs a follower's ACK, which the
        // leader steps only in a later batch, once this one's append is durable. A single
        // voter commits at once, and its answers wait for this batch's fsync
        // (`Core::answers_precede_fsync`).
        self.append(vec![txn.clone()]);
        for n in receivers {
            self.send(
                n,
                PeerMsg::Proposal {
                    epoch,
                    txn: txn.clone(),
                },
            );
        }
        self.try_commit();
    }

    /// Commits outstanding proposals in zxid order while the oldest has a quorum of acks.
    fn try_commit(&mut self) {
        loop {
            let State::Leading(l) = &self.state else {
                return;
            };
            let Some((&zxid, have)) = l.acks.first_key_value() else {
                return;
            };
            // BUG(early-ack): the leader commits (and answers the client) on its own ack.
            let early = self.cfg.has_bug(Bug::EarlyAck);
            // BUG(split-brain): a leader that lost its quorum commits on its own.
            let alone = l.lost_quorum && self.cfg.has_bug(Bug::SplitBrain);
            if !(self.is_quorum(have.len()) || early || alone) {
                return;
            }
            let l = self.leading();
            l.acks.remove(&zxid);
            let epoch = l.epoch;
            let receivers = l.receivers();
            self.committed = zxid;
            for n in receivers {
                self.send(n, PeerMsg::Commit { epoch, zxid });
            }
            self.apply_committed();
        }
    }

    /// A sync asks for the leader's committed zxid; a linearizable read also needs a quorum
    /// to answer a ping sent after the request arrived, proving no newer leader existed then.
    pub(super) fn leader_sync_request(&mut self, from: NodeId, request: u64, linearizable: bool) {
        let committed = self.committed;
        let l = self.leading();
        if l.phase != LeaderPhase::Broadcast {
            return;
        }
        if !linearizable {
            return self.answer_sync(from, request, committed);
        }
        l.ping_seq += 1;
        let seq = l.ping_seq;
        let epoch = l.epoch;
        l.readers.push(ReadWaiter {
            from,
            request,
            zxid: committed,
            seq,
        });
        for n in l.receivers() {
            self.send(
                n,
                PeerMsg::Ping {
                    epoch,
                    seq,
                    committed,
                },
            );
        }
        self.check_readers();
    }

    fn check_readers(&mut self) {
        let voters = self.cfg.voters.len();
        let l = self.leading();
        if l.readers.is_empty() {
            return;
        }
        let readers = std::mem::take(&mut l.readers);
        let mut waiting = Vec::new();
        let mut ready = Vec::new();
        for w in readers {
            let confirmed = 1 + l
                .learners
                .values()
                .filter(|x| x.stage == LearnerStage::UpToDate && x.pong_seq >= w.seq)
                .count();
            if confirmed * 2 > voters {
                ready.push(w);
            } else {
                waiting.push(w);
            }
        }
        self.leading().readers = waiting;
        for w in ready {
            self.answer_sync(w.from, w.request, w.zxid);
        }
    }

    fn answer_sync(&mut self, from: NodeId, request: u64, zxid: Zxid) {
        if from == self.cfg.id {
            self.on_sync_reply(request, zxid);
        } else {
            let epoch = self.leading().epoch;
            self.send(
                from,
                PeerMsg::SyncReply {
                    epoch,
                    request,
                    zxid,
                },
            );
        }
    }

    pub(super) fn leader_touch(&mut self, session: SessionId) {
        let now = self.now;
        let Some(timeout) = self.tree.session(session).map(|s| s.timeout_ms) else {
            return;
        };
        let wait = self.expiry_wait_ms(timeout);
        if let State::Leading(l) = &mut self.state
            && l.phase == LeaderPhase::Broadcast
        {
            l.deadlines.insert(session, now + wait);
        }
    }

    pub(super) fn on_session_created(&mut self, session: SessionId, timeout_ms: u64) {
        let now = self.now;
        let wait = self.expiry_wait_ms(timeout_ms);
        if let State::Leading(l) = &mut self.state {
            l.deadlines.insert(session, now + wait);
        }
    }

    /// How long, by its own clock, the leader lets a session stay silent before expiring it:
    /// `SESSION_CLOCK_MARGIN` timeouts. A lease is only as good as the clock that times it: the
    /// client counts its timeout by its clock, the leader by its own, and a leader's clock that
    /// runs fast would otherwise delete the ephemeral nodes of a client that is still speaking
    /// (a lock it still believes it holds). Waiting longer is the safe side of a lease: the
    /// session outlives what the client assumes, never the other way round, for any leader
    /// clock up to `SESSION_CLOCK_MARGIN` times as fast as true time.
    fn expiry_wait_ms(&self, timeout_ms: u64) -> u64 {
        if self.cfg.has_bug(Bug::LeaseOnFastClock) {
            // BUG(lease-on-fast-clock): the leader trusts its clock to the millisecond.
            return timeout_ms;
        }
        timeout_ms.saturating_mul(SESSION_CLOCK_MARGIN)
    }

    /// The shell saw its clock leap by `by_ms` between two readings that should have been a
    /// tick apart (a clock stepped forward, or a process that did not run): time nobody was
    /// watching does not count against sessions, so a leader moves every expiry deadline on by
    /// the leap instead of expiring at once sessions whose clients kept speaking.
    pub fn clock_leapt(&mut self, by_ms: Millis) {
        if let State::Leading(l) = &mut self.state {
            for deadline in l.deadlines.values_mut() {
                *deadline = deadline.saturating_add(by_ms);
            }
        }
    }

    pub(super) fn on_session_closed(&mut self, session: SessionId) {
        if let State::Leading(l) = &mut self.state {
            l.deadlines.remove(&session);
            l.closing.remove(&session);
        }
    }

    pub(super) fn leader_tick(&mut self) {
        let now = self.now;
        let init_ms = self.ticks_ms(self.cfg.init_limit_ticks);
        let sync_ms = self.ticks_ms(self.cfg.sync_limit_ticks);
        let tick_ms = self.cfg.tick_ms;
        let l = self.leading();
        if l.phase != LeaderPhase::Broadcast {
            if now.saturating_sub(l.started_at) > init_ms {
                tracing::info!("no quorum established the new epoch within the init limit");
                self.start_looking();
            }
            return;
        }
        // Step down when a quorum has not been heard from within the sync limit (ZooKeeper:
        // "Not sufficient followers synced, only synced with sids").
        let heard = 1 + l
            .learners
            .values()
            .filter(|x| {
                x.stage == LearnerStage::UpToDate && now.saturating_sub(x.last_heard) <= sync_ms
            })
            .count();
        if heard * 2 <= self.cfg.voters.len() {
            if self.cfg.has_bug(Bug::SplitBrain) {
                // BUG(split-brain): instead of stepping down, carry on alone.
                self.leading().lost_quorum = true;
                self.try_commit();
            } else {
                tracing::info!("lost contact with a quorum; stepping down");
                return self.start_looking();
            }
        }
        let l = self.leading();
        if now >= l.next_ping_at {
            l.next_ping_at = now + tick_ms;
            l.ping_seq += 1;
            l.pings.push_back((l.ping_seq, now));
            while l
                .pings
                .front()
                .is_some_and(|&(_, at)| now.saturating_sub(at) > sync_ms)
            {
                l.pings.pop_front();
            }
            let (epoch, seq, committed) = (l.epoch, l.ping_seq, self.committed);
            for n in self.leading().receivers() {
                self.send(
                    n,
                    PeerMsg::Ping {
                        epoch,
                        seq,
                        committed,
                    },
                );
            }
        }
        // Expire sessions whose clients went quiet.
        let l = self.leading();
        let expired: Vec<SessionId> = l
            .deadlines
            .iter()
            .filter(|(s, d)| **d <= now && !l.closing.contains(s))
            .map(|(s, _)| *s)
            .collect();
        for s in expired {
            self.leading().closing.insert(s);
            self.propose(s, TxnBody::CloseSession { expired: true }, None);
            if !matches!(self.state, State::Leading(_)) {
                return;
            }
        }
    }

    // =========================================================================================
    // Follower
    // =========================================================================================

    pub(super) fn become_follower(&mut self, leader: NodeId) {
        let now = self.now;
        self.follow_attempts += 1;
        self.state = State::Following(Following {
            leader,
            epoch: 0,
            stage: FollowerStage::Connecting,
            // The time tells a restarted follower from its earlier self; the counter tells two
            // attempts of one life apart.
            attempt: now
                .wrapping_mul(1_000)
                .wrapping_add(self.follow_attempts % 1_000),
            started_at: now,
            last_heard: now,
            next_info_at: now,
        });
        self.send_follower_info();
    }

    fn send_follower_info(&mut self) {
        let (accepted_epoch, last_zxid) = (self.accepted_epoch, self.last_zxid());
        let tick = self.cfg.tick_ms;
        let now = self.now;
        let f = self.following();
        f.next_info_at = now + tick;
        let (leader, attempt) = (f.leader, f.attempt);
        self.send(
            leader,
            PeerMsg::FollowerInfo {
                accepted_epoch,
                last_zxid,
                attempt,
            },
        );
    }

    /// Starts over with the same leader: a message was lost, so our history may have a gap.
    fn resync(&mut self, why: &str) {
        let leader = self.following().leader;
        tracing::info!(leader, "re-syncing with the leader: {why}");
        // Requests waiting on the old attempt keep waiting; their deadlines bound them.
        self.become_follower(leader);
    }

    pub(super) fn follower_tick(&mut self) {
        let now = self.now;
        let init_ms = self.ticks_ms(self.cfg.init_limit_ticks);
        let sync_ms = self.ticks_ms(self.cfg.sync_limit_ticks);
        let f = self.following();
        if f.stage == FollowerStage::Connecting && now >= f.next_info_at {
            self.send_follower_info();
        }
        let f = self.following();
        if f.stage != FollowerStage::UpToDate && now.saturating_sub(f.started_at) > init_ms {
            tracing::info!(leader = f.leader, "could not sync with the leader in time");
            return self.start_looking();
        }
        if now.saturating_sub(f.last_heard)
            > sync_ms.max(if f.stage == FollowerStage::UpToDate {
                0
            } else {
                init_ms
            })
        {
            tracing::info!(leader = f.leader, "the leader went quiet");
            self.start_looking();
        }
    }

    /// The connection from `peer` ended. A follower whose leader's connection closed starts
    /// electing at once instead of waiting out the sync limit, as ZooKeeper's follower does
    /// when its socket to the leader fails. This only stops following: the election that
    /// follows has its usual rules, and a follower may stop following at any moment in ZAB
    /// (the sync-limit path does the same, later), so no safety rests on the notice being
    /// true. Silent failures (partitions) still go through the sync limit in `follower_tick`.
    pub(super) fn on_peer_disconnected(&mut self, peer: NodeId) {
        if let State::Following(f) = &self.state
            && f.leader == peer
        {
            tracing::info!(leader = peer, "the connection from the leader closed");
            self.start_looking();
        }
    }

    pub(super) fn follower_receive(&mut self, from: NodeId, msg: PeerMsg) {
        let now = self.now;
        let State::Following(f) = &mut self.state else {
            return;
        };
        if from != f.leader {
            return;
        }
        match msg {
            PeerMsg::LeaderInfo { epoch } => {
                if f.stage != FollowerStage::Connecting {
                    return;
                }
                f.last_heard = now;
                if epoch < self.accepted_epoch {
                    // ZooKeeper: "Leaders epoch is less than accepted epoch". This leader is
                    // stale; look again.
                    return self.start_looking();
                }
                let fresh = epoch > self.accepted_epoch;
                f.epoch = epoch;
                f.stage = FollowerStage::AckedEpoch;
                if fresh {
                    self.accepted_epoch = epoch;
                    self.persist_epochs();
                }
                let (current_epoch, last_zxid) = (self.current_epoch, self.history_reported());
                self.send(
                    from,
                    PeerMsg::AckEpoch {
                        epoch,
                        fresh,
                        current_epoch,
                        last_zxid,
                    },
                );
            }
            PeerMsg::Sync { epoch, mode, txns } => {
                if epoch != f.epoch || f.stage != FollowerStage::AckedEpoch {
                    return;
                }
                f.last_heard = now;
                f.stage = FollowerStage::Synced;
                self.install_sync(mode, txns);
            }
            PeerMsg::NewLeader { epoch, .. } => {
                if epoch != f.epoch || f.stage != FollowerStage::Synced {
                    return;
                }
                f.last_heard = now;
                f.stage = FollowerStage::AckedNewLeader;
                // The history this epoch starts from was appended above, in an earlier batch
                // or this one: the shell makes it durable before this ack leaves, as ZAB
                // requires ("a follower acks NEWLEADER only after the proposals are on disk").
                self.current_epoch = epoch;
                if self.cfg.has_bug(Bug::NewleaderAckBeforeDurable) {
                    // BUG(newleader-ack-before-durable): the ack below leaves before anything
                    // of the sync is on disk, as ZooKeeper's follower did when it logged the
                    // synced proposals only on UPTODATE (ZOOKEEPER-3911), and later when it
                    // queued them for its asynchronous log and acked NEWLEADER at once
                    // (ZOOKEEPER-4646; ZOOKEEPER-4685: the acks of those proposals then
                    // overtook the NEWLEADER ack). The history stays in memory
                    // (`install_sync`) and the epoch is written with UPTODATE: the leader
                    // counts a copy that a crash loses.
                } else {
                    // With `epoch-before-log`, this epoch reaches disk while the history that
                    // `install_sync` took stays in memory only.
                    self.persist_epochs();
                }
                if self.recovering {
                    // The history of a leader that a quorum elected without this node is now
                    // ours and durable with this batch (the storage syncs the log before it
                    // drops its damage marker): it holds every committed transaction, those
                    // this node lost included, so the node may vote again.
                    tracing::info!("history restored from leader {from}; voting again");
                    self.recovering = false;
                    self.persist(Persist::HistoryRestored);
                }
                let last_zxid = self.last_zxid();
                self.send(from, PeerMsg::AckNewLeader { epoch, last_zxid });
            }
            PeerMsg::UpToDate { epoch, committed } => {
                if epoch != f.epoch || f.stage != FollowerStage::AckedNewLeader {
                    return;
                }
                f.last_heard = now;
                f.stage = FollowerStage::UpToDate;
                if self.cfg.has_bug(Bug::NewleaderAckBeforeDurable) {
                    // BUG(newleader-ack-before-durable): the epoch, late (see NEWLEADER).
                    self.persist_epochs();
                }
                self.commit_to(committed);
                self.rearm_watches_after_rejoin();
            }
            PeerMsg::Proposal { epoch, txn } => {
                if epoch != f.epoch || f.stage < FollowerStage::Synced {
                    return;
                }
                f.last_heard = now;
                if f.stage == FollowerStage::Synced {
                    // NEWLEADER comes before any proposal of the epoch, so it was lost. We must
                    // not ack: an ack counts towards a commit, and a node whose current epoch
                    // is still the old one would then vote as if it lacked this epoch's
                    // history, letting a node that does lack it win the next election.
                    return self.resync("NEWLEADER was lost");
                }
                let last = self.last_zxid();
                if txn.zxid <= last {
                    return; // a duplicate
                }
                let next_in_epoch = epoch_of(txn.zxid) == epoch_of(last)
                    && counter_of(txn.zxid) == counter_of(last) + 1;
                let first_of_epoch = epoch_of(txn.zxid) == epoch
                    && epoch_of(last) < epoch
                    && counter_of(txn.zxid) == 1;
                if epoch_of(txn.zxid) != epoch || !(next_in_epoch || first_of_epoch) {
                    tracing::debug!("proposal {:#x} does not follow {last:#x}", txn.zxid);
                    return self.resync("a proposal is missing");
                }
                let zxid = txn.zxid;
                self.append(vec![txn]);
                // Sent after the append is durable (the shell's batch rule).
                self.send(from, PeerMsg::Ack { epoch, zxid });
            }
            PeerMsg::Commit { epoch, zxid } => {
                if epoch != f.epoch || f.stage < FollowerStage::AckedNewLeader {
                    return;
                }
                f.last_heard = now;
                if zxid > self.last_zxid() {
                    return self.resync("a commit for a proposal we never got");
                }
                self.commit_to(zxid);
            }
            PeerMsg::Ping {
                epoch,
                seq,
                committed,
            } => {
                if epoch != f.epoch || f.stage < FollowerStage::AckedNewLeader {
                    return;
                }
                f.last_heard = now;
                // Our log is a gap-free copy of the leader's, so its commit point covers
                // whatever prefix of it we hold: this recovers lost COMMITs.
                self.commit_to(committed.min(self.last_zxid()));
                let touched: Vec<SessionId> =
                    std::mem::take(&mut self.touched).into_iter().collect();
                // Sent after this batch is durable (the shell's batch rule), so `last_zxid`
                // is on disk when the leader counts it as an ack.
                let last_zxid = self.last_zxid();
                self.send(
                    from,
                    PeerMsg::Pong {
                        epoch,
                        seq,
                        touched,
                        last_zxid,
                    },
                );
            }
            PeerMsg::SyncReply {
                epoch,
                request,
                zxid,
            } => {
                if epoch != f.epoch {
                    return;
                }
                f.last_heard = now;
                self.on_sync_reply(request, zxid);
            }
            _ => {}
        }
    }

    /// The last zxid of this node's history, as ACKEPOCH reports it to a new leader, which
    /// decides from it how to sync us: DIFF when the leader has it, else TRUNC.
    fn history_reported(&self) -> Zxid {
        let uncommitted_own_proposals = self.led_epoch != 0
            && epoch_of(self.last_zxid()) == self.led_epoch
            && self.tree.last_applied() < self.last_zxid();
        if self.cfg.has_bug(Bug::OldLeaderKeepsUncommitted) && uncommitted_own_proposals {
            // BUG(old-leader-keeps-uncommitted): a deposed leader reports the zxid its tree has
            // applied, not the last one in its log: its log also holds the proposals it made
            // before it lost its quorum, which no quorum acked. The new leader has that applied
            // zxid and syncs by an empty DIFF instead of a TRUNC, so those proposals stay in
            // the log under the new epoch's and are applied with its next commit (and replayed
            // at a restart). ZOOKEEPER-2845: a leader that kept its in-memory database through
            // the election reported its last processed zxid, not its last logged one, so a
            // proposal only it had logged survived and reappeared. Unlike `sync-no-trunc`,
            // the follower obeys the leader here; it is the leader that is misled.
            return self.tree.last_applied();
        }
        self.last_zxid()
    }

    /// Makes the leader's history ours: `mode`, then `txns` appended.
    fn install_sync(&mut self, mode: SyncMode, txns: Vec<Txn>) {
        match mode {
            SyncMode::Diff => {}
            SyncMode::Trunc { after } => {
                if self.cfg.has_bug(Bug::SyncNoTrunc) {
                    // BUG(sync-no-trunc): the follower keeps the uncommitted proposals of an
                    // older epoch that the leader told it to drop.
                } else if after < self.tree.last_applied() {
                    // Our applied state is not a prefix of the leader's history. A correctly
                    // elected leader never says so (the simulator asserts it); when one does,
                    // the leader's history wins, as in ZooKeeper (which reloads its database
                    // and replays the truncated log): drop everything and sync from scratch.
                    tracing::error!(
                        "the leader's history lacks transactions this node applied (truncate after {after:#x}, applied {:#x}); discarding local state",
                        self.tree.last_applied()
                    );
                    let mut empty = crate::tree::DataTree::new();
                    empty.set_bug(self.cfg.bug);
                    self.tree = empty;
                    self.log.clear();
                    self.log_start = 0;
                    self.committed = 0;
                    self.persist(Persist::Snapshot(self.tree.to_snapshot()));
                    return self.resync("our history diverged from the leader's");
                } else {
                    self.truncate_after(after);
                }
            }
            SyncMode::Snap { snapshot } => {
                let mut tree =
                    match crate::tree::DataTree::from_snapshot_with_bug(&snapshot, self.cfg.bug) {
                        Ok(t) => t,
                        Err(e) => {
                            tracing::error!("the leader's snapshot does not load: {e}");
                            return self.start_looking();
                        }
                    };
                tree.set_bug(self.cfg.bug);
                let before = std::mem::replace(&mut self.tree, tree);
                self.watches_lost_to_snapshot(&before);
                self.log.clear();
                self.log_start = snapshot.zxid;
                self.committed = snapshot.zxid;
                if self.cfg.has_bug(Bug::SnapshotInMemory) {
                    // BUG(snapshot-in-memory): the leader's tree is taken into memory only and
                    // NEWLEADER is acked with nothing of it on disk, as ZooKeeper's follower did
                    // before ZOOKEEPER-3104 (it wrote the snapshot after the ack). In
                    // ZOOKEEPER-3642 the SNAP's leader died before NEWLEADER, the next leader
                    // synced the follower by DIFF from the snapshot's zxid, and nothing ever
                    // wrote the snapshot. Here the disk keeps the old snapshot and log, and
                    // the proposals that follow are appended to that old log: until this
                    // node's next own snapshot, a restart replays a history with the leader's
                    // snapshot missing from its middle.
                } else {
                    self.persist(Persist::Snapshot(snapshot));
                }
            }
        }
        let last = self.last_zxid();
        let txns: Vec<Txn> = txns.into_iter().filter(|t| t.zxid > last).collect();
        if self.cfg.has_bug(Bug::NewleaderAckBeforeDurable) || self.cfg.has_bug(Bug::EpochBeforeLog)
        {
            // BUG(newleader-ack-before-durable), BUG(epoch-before-log): the synced history is
            // taken into memory and not logged. ZooKeeper logged it late: after the NEWLEADER
            // ack (ZOOKEEPER-3911, ZOOKEEPER-4646) or after the new epoch (ZOOKEEPER-4643), a
            // window a crash had to hit. Here the window stays open until this node's next
            // own snapshot, so that the gate's kills reach it: the proposals that follow are
            // logged after a hole, and a restart replays a history missing exactly what the
            // leader synced. (`newleader-ack-before-durable` also holds back the epoch, see
            // NEWLEADER; `epoch-before-log` writes it at once.)
            self.append_in_memory(&txns);
        } else {
            self.append(txns);
        }
    }

    fn commit_to(&mut self, zxid: Zxid) {
        if zxid > self.committed {
            self.committed = zxid.min(self.last_zxid());
        }
        if self.is_serving() {
            self.apply_committed();
        }
    }
}
