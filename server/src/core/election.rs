//! Fast leader election, after ZooKeeper's `FastLeaderElection.lookForLeader`.
//!
//! A LOOKING node votes for itself and tells every voter. Votes are totally ordered by
//! (epoch, zxid, id), so every node adopts the best vote it hears in the current round and
//! the round converges without randomness: there are no split votes to break. A node decides
//! once a quorum agrees with its vote and no better vote arrives within `FINALIZE_WAIT_MS`.
//! A node that rejoins while a leader already rules learns of it from the LEADING and
//! FOLLOWING nodes' answers and joins it once a quorum of them names the same leader.

use super::node::State;
use super::*;
use crate::api::Role;
use std::collections::BTreeMap;

/// How long a node waits, once a quorum agrees with its vote, for a better vote to arrive
/// (ZooKeeper's finalizeWait).
/// ZooKeeper waits 200 ms; on a LAN every vote of a round arrives within a few ms, and this
/// wait is on the critical path of every failover. Deciding too early is never unsafe: a
/// leader that finds a follower ahead of it in discovery steps down and the election reruns.
pub const FINALIZE_WAIT_MS: u64 = 100;
/// First and largest interval between re-sent notifications while no decision is reached.
pub const NOTIFICATION_MIN_MS: u64 = 100;
pub const NOTIFICATION_MAX_MS: u64 = 1_600;

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct Election {
    /// Votes of LOOKING nodes in this round (ZooKeeper's recvset), this node's included.
    votes: BTreeMap<NodeId, Vote>,
    /// What LEADING and FOLLOWING nodes said (ZooKeeper's outofelection).
    settled: BTreeMap<NodeId, (Vote, u64, Role)>,
    /// When a quorum agrees with our vote: decide at this time unless a better vote comes.
    finalize_at: Option<Millis>,
    /// FOLLOWERINFO from nodes that decided for this one before it decided itself (their
    /// finalize wait ended first): handed to the leader it becomes, instead of being dropped
    /// and resent a tick later. One per sender, the latest.
    early_followers: BTreeMap<NodeId, PeerMsg>,
    next_notify_at: Millis,
    notify_interval_ms: u64,
}

impl Election {
    /// Keeps a FOLLOWERINFO that arrived while this node was still electing.
    pub(super) fn keep_follower_info(&mut self, from: NodeId, msg: PeerMsg) {
        self.early_followers.insert(from, msg);
    }

    /// When this election decides unless a better vote arrives first.
    pub(super) fn finalize_at(&self) -> Option<Millis> {
        self.finalize_at
    }
}

impl Core {
    /// `a` beats `b` (ZooKeeper's `totalOrderPredicate`).
    pub(super) fn vote_beats(&self, a: &Vote, b: &Vote) -> bool {
        // BUG(vote-ignores-epoch): the election compares histories by their length within an
        // epoch and the server id, forgetting the epoch (both the vote's and the zxid's high
        // half): a long history of an old epoch then outranks a newer epoch's committed one.
        if self.cfg.has_bug(Bug::VoteIgnoresEpoch) {
            return (crate::api::counter_of(a.zxid), a.id) > (crate::api::counter_of(b.zxid), b.id);
        }
        (a.epoch, a.zxid, a.id) > (b.epoch, b.zxid, b.id)
    }

    fn own_vote(&self) -> Vote {
        Vote {
            epoch: self.current_epoch,
            zxid: self.last_zxid(),
            id: self.cfg.id,
        }
    }

    pub(super) fn begin_election(&mut self) {
        self.round += 1;
        self.vote = self.own_vote();
        let mut election = Election {
            notify_interval_ms: NOTIFICATION_MIN_MS,
            next_notify_at: self.now + NOTIFICATION_MIN_MS,
            ..Default::default()
        };
        election.votes.insert(self.cfg.id, self.vote);
        self.state = State::Looking(election);
        self.broadcast_notification();
        self.check_election();
    }

    fn broadcast_notification(&mut self) {
        // A recovering node casts no vote: it only asks the settled nodes who leads.
        let msg = if self.recovering {
            PeerMsg::LeaderQuery
        } else {
            PeerMsg::Notification {
                vote: self.vote,
                round: self.round,
                state: Role::Looking,
            }
        };
        for peer in self.others() {
            self.send(peer, msg.clone());
        }
    }

    fn election_mut(&mut self) -> &mut Election {
        match &mut self.state {
            State::Looking(e) => e,
            _ => unreachable!("election state outside LOOKING"),
        }
    }

    pub(super) fn election_tick(&mut self) {
        let now = self.now;
        let e = self.election_mut();
        if let Some(at) = e.finalize_at
            && now >= at
        {
            return self.decide(self.vote, self.round);
        }
        if now >= e.next_notify_at {
            // Nothing decided yet: tell everyone again, backing off (ZooKeeper doubles its
            // notification timeout up to a bound).
            e.notify_interval_ms = (e.notify_interval_ms * 2).min(NOTIFICATION_MAX_MS);
            e.next_notify_at = now + e.notify_interval_ms;
            self.broadcast_notification();
        }
    }

    /// A node that may not vote asks who leads: a settled node answers as it answers a LOOKING
    /// notification; a LOOKING one has no leader to name and must not count the asker.
    pub(super) fn on_leader_query(&mut self, from: NodeId) {
        self.answer_with_leader(from);
    }

    /// A settled node tells `from` the leader it is with (nothing while LOOKING).
    fn answer_with_leader(&mut self, from: NodeId) {
        let (my_state, leader) = match &self.state {
            State::Leading(_) => (Role::Leading, self.cfg.id),
            State::Following(f) => (Role::Following, f.leader),
            State::Looking(_) => return,
        };
        self.send(
            from,
            PeerMsg::Notification {
                vote: self.reign_vote(leader),
                round: self.round,
                state: my_state,
            },
        );
    }

    pub(super) fn on_notification(&mut self, from: NodeId, vote: Vote, round: u64, state: Role) {
        if self.recovering && state == Role::Looking {
            // Not a voter: other LOOKING nodes' votes are nothing to it (they elect without
            // it), and answering them would count it.
            return;
        }
        if !matches!(self.state, State::Looking(_)) {
            // A settled node answers a LOOKING one with the leader it follows, so that a node
            // that restarts or heals finds the ruling leader instead of starting a new reign.
            if state == Role::Looking {
                self.answer_with_leader(from);
            }
            return;
        }
        match state {
            Role::Looking => {
                if round > self.round {
                    // A newer round: join it, forget the old round's votes, and vote for the
                    // better of the sender's vote and our own.
                    self.round = round;
                    let own = self.own_vote();
                    self.vote = if self.vote_beats(&vote, &own) {
                        vote
                    } else {
                        own
                    };
                    let me = self.cfg.id;
                    let my_vote = self.vote;
                    let e = self.election_mut();
                    e.votes.clear();
                    e.votes.insert(me, my_vote);
                    e.finalize_at = None;
                    self.broadcast_notification();
                } else if round < self.round {
                    // The sender is behind: tell it our round so it catches up.
                    let msg = PeerMsg::Notification {
                        vote: self.vote,
                        round: self.round,
                        state: Role::Looking,
                    };
                    self.send(from, msg);
                    return;
                } else if let State::Looking(e) = &self.state
                    && e.votes
                        .get(&from)
                        .is_some_and(|prev| self.vote_beats(prev, &vote))
                {
                    // Within a round a node's vote only improves: this one is older than the
                    // one we already have from it (reordered), so it says nothing new.
                    return;
                } else if self.vote_beats(&vote, &self.vote) {
                    self.vote = vote;
                    let me = self.cfg.id;
                    let e = self.election_mut();
                    e.votes.insert(me, vote);
                    e.finalize_at = None;
                    self.broadcast_notification();
                } else if self.vote_beats(&self.vote, &vote) {
                    // The sender has not heard our better vote: typically it got our
                    // notification while it still followed the leader both just lost, and
                    // answered it as a follower. Tell it now rather than at our next resend,
                    // which would put a notification interval on every such failover. (One
                    // more notification: the election's rules are unchanged.)
                    let msg = PeerMsg::Notification {
                        vote: self.vote,
                        round: self.round,
                        state: Role::Looking,
                    };
                    self.send(from, msg);
                }
                self.election_mut().votes.insert(from, vote);
                self.check_election();
            }
            Role::Following | Role::Leading => {
                let my_round = self.round;
                let e = self.election_mut();
                if round == my_round {
                    e.votes.insert(from, vote);
                }
                e.settled.insert(from, (vote, round, state));
                self.check_settled(vote, round);
            }
        }
    }

    /// Starts the finalize wait when a quorum of this round agrees with our vote.
    fn check_election(&mut self) {
        if self.recovering {
            // Its vote would carry a history that may lack what it acknowledged.
            return;
        }
        let vote = self.vote;
        let now = self.now;
        let agree = match &self.state {
            State::Looking(e) => e.votes.values().filter(|v| **v == vote).count(),
            _ => return,
        };
        if !self.is_quorum(agree) {
            return;
        }
        if self.cfg.voters.len() == 1 {
            // A standalone server: nobody can send a better vote.
            return self.decide(vote, self.round);
        }
        let e = self.election_mut();
        if e.finalize_at.is_none() {
            e.finalize_at = Some(now + FINALIZE_WAIT_MS);
        }
    }

    /// What a settled node tells a LOOKING one: the leader it is with and the epoch of that
    /// reign as this node knows it (ZooKeeper's `updateElectionVote`). Not the vote it decided
    /// on: the nodes of one reign can have decided on different votes for the same leader (one
    /// joined it in an earlier round, from what the others said then, and the leader was then
    /// elected in a later round with its newer history), and a node that compared whole votes
    /// would never find a quorum naming one leader (found by `schism sim --seed 13`: a healed
    /// node stayed LOOKING for ever beside a working quorum).
    fn reign_vote(&self, leader: NodeId) -> Vote {
        Vote {
            epoch: self.current_epoch,
            zxid: self.vote.zxid,
            id: leader,
        }
    }

    /// Joins a ruling leader once a quorum of settled nodes names it, in one epoch, and it says
    /// it leads that epoch (ZooKeeper's `checkLeader` over outofelection). Settled votes agree
    /// when they name the same leader and epoch; their zxids are not compared, as in
    /// ZooKeeper's `Vote.equals` for nodes out of election (ZOOKEEPER-1805). Joining on stale
    /// answers is safe: the leader's discovery admits the node or it elects again.
    fn check_settled(&mut self, vote: Vote, round: u64) {
        let State::Looking(e) = &self.state else {
            return;
        };
        let same_reign = |v: &Vote| v.id == vote.id && v.epoch == vote.epoch;
        let agree = e.settled.values().filter(|(v, _, _)| same_reign(v)).count();
        let leader_says_so = vote.id != self.cfg.id
            && e.settled
                .get(&vote.id)
                .is_some_and(|(v, _, role)| same_reign(v) && *role == Role::Leading);
        if self.is_quorum(agree) && leader_says_so {
            self.decide(vote, round);
        }
    }

    fn decide(&mut self, vote: Vote, round: u64) {
        // BUG(election-never-settles): once the ensemble has had a leader (epoch 1 or later),
        // a LOOKING node never concludes an election, neither by a quorum of votes nor by
        // joining a ruling leader, as in ZOOKEEPER-1419 ("Leader election never settles"). A
        // fresh ensemble elects; any re-election or restart leaves nodes looking for ever.
        if self.cfg.has_bug(Bug::ElectionNeverSettles) && self.current_epoch >= 1 {
            return;
        }
        self.round = round;
        self.vote = vote;
        let early = match &mut self.state {
            State::Looking(e) => std::mem::take(&mut e.early_followers),
            _ => BTreeMap::new(),
        };
        if vote.id == self.cfg.id {
            self.become_leader();
            // As if they had arrived now: a delayed message, which the leader handles anyway.
            for (from, msg) in early {
                self.leader_receive(from, msg);
            }
        } else {
            self.become_follower(vote.id);
        }
    }
}
