//! The node state machine: the `Core` struct, its dispatch, client requests, and the commit →
//! apply → reply pipeline. Election lives in `election.rs`, the leader's and the follower's
//! halves of ZAB in `zab.rs`.

use super::watch::Watches;
use super::*;
use crate::api::{DigestReply, ErrorCode, EventKind, Role, Status, make_zxid};
use crate::tree::{DataTree, Outcome};
use crate::txn::{Origin, TxnBody};
use std::collections::{BTreeMap, BTreeSet};

/// Most client requests a node holds waiting for a commit or a leader's answer.
pub const MAX_PENDING_REQUESTS: usize = 10_000;
/// How many committed transactions the in-memory log keeps before the newest snapshot, so a
/// follower that is only a little behind is brought up to date by DIFF rather than SNAP.
pub const LOG_RETAIN_TXNS: usize = 1_000;

/// What a node is doing in the protocol.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) enum State {
    Looking(super::election::Election),
    Following(super::zab::Following),
    Leading(super::zab::Leading),
}

/// A client request this node still owes an answer.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct Pending {
    pub kind: PendingKind,
    pub deadline: Millis,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) enum PendingKind {
    /// A transaction proposed for this request: answered when this node applies it.
    Txn,
    /// A sync or read waiting for the leader's read index (`zxid: None`) and then for this
    /// node to have applied up to it.
    Wait {
        zxid: Option<Zxid>,
        session: SessionId,
        then: AfterSync,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) enum AfterSync {
    Done,
    Read { read: Read, watch: bool },
}

/// One keeper node's whole state. `Clone + Hash + Eq` so that the model checker can treat it
/// as an actor's state.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Core {
    pub(super) cfg: Config,
    pub(super) tree: DataTree,
    /// Logged transactions after `log_start`, in zxid order: committed or not.
    pub(super) log: Vec<Txn>,
    /// The zxid the in-memory log follows (the tree's state at some snapshot).
    pub(super) log_start: Zxid,
    pub(super) accepted_epoch: u32,
    pub(super) current_epoch: u32,
    /// Highest zxid known to be committed. `tree.last_applied() <= committed <= last_zxid()`.
    pub(super) committed: Zxid,
    pub(super) state: State,
    /// Election round (ZooKeeper's logicalclock); kept across states.
    pub(super) round: u64,
    /// The vote this node settled on in its last election.
    pub(super) vote: Vote,
    pub(super) watches: Watches,
    pub(super) pending: BTreeMap<RequestId, Pending>,
    /// Sessions touched by this node's clients since the last PONG (a follower relays them).
    pub(super) touched: BTreeSet<SessionId>,
    pub(super) now: Millis,
    /// What the current step asks of the shell; handed out (and emptied) at the end of `step`.
    pub(super) out: Ready,
    /// Counts watch events, for the `watch-drop` and `watch-duplicate` faults.
    pub(super) events_fired: u64,
    /// The last epoch this node established as leader (0: none since it started), kept only
    /// with the `old-leader-keeps-uncommitted` fault: its log's tail of that epoch is its own
    /// proposals.
    pub(super) led_epoch: u32,
    /// Kept only with the `fuzzy-snapshot-multi` fault: the zxid of the last multi applied and
    /// the tree as it was before it.
    pub(super) before_last_multi: Option<(Zxid, crate::tree::Snapshot)>,
    /// Counts attempts to follow, so that two attempts never share an id.
    pub(super) follow_attempts: u64,
    /// The storage cut this node's history at damage (`Recovered::damage`), so it may lack
    /// transactions it acknowledged: it must not count towards any quorum that picks a
    /// history ("Protocol-Aware Recovery for Consensus-Based Storage", FAST 2018). Until it has
    /// synced from a leader that a quorum elected without it, it casts no vote and only asks
    /// who leads (`PeerMsg::LeaderQuery`); cleared once it acks NEWLEADER, when the leader's
    /// history is on its disk.
    pub(super) recovering: bool,
}

impl Core {
    pub fn new(cfg: Config, recovered: Recovered, now: Millis) -> Core {
        assert!(
            cfg.voters.contains(&cfg.id),
            "a node must be one of the voters"
        );
        let mut tree = match &recovered.snapshot {
            Some(s) => DataTree::from_snapshot_with_bug(s, cfg.bug).unwrap_or_else(|e| {
                // Storage has already verified the snapshot's checksum: a snapshot that does
                // not load is a bug, not bad input.
                panic!("snapshot at zxid {:#x} does not load: {e}", s.zxid)
            }),
            None => DataTree::new(),
        };
        tree.set_bug(cfg.bug);
        let log_start = tree.last_applied();
        // A standalone server has no one to recover from; the shell refuses to start one with
        // damaged data.
        let recovering = recovered.damage.is_some() && cfg.voters.len() > 1;
        if let Some(why) = &recovered.damage {
            tracing::warn!(
                "history cut by damage ({why}); not voting until synced from a leader at or after zxid {log_start:#x}"
            );
        }
        let log: Vec<Txn> = recovered
            .log
            .into_iter()
            .filter(|t| t.zxid > log_start)
            .collect();
        debug_assert!(log.windows(2).all(|w| w[0].zxid < w[1].zxid));
        let mut core = Core {
            vote: Vote {
                epoch: recovered.current_epoch,
                zxid: 0,
                id: cfg.id,
            },
            cfg,
            committed: log_start,
            tree,
            log,
            log_start,
            accepted_epoch: recovered.accepted_epoch,
            current_epoch: recovered.current_epoch,
            state: State::Looking(Default::default()),
            round: 0,
            watches: Watches::default(),
            pending: BTreeMap::new(),
            touched: BTreeSet::new(),
            now,
            out: Ready::default(),
            events_fired: 0,
            led_epoch: 0,
            before_last_multi: None,
            follow_attempts: 0,
            recovering,
        };
        // A standalone node elects itself right here; what that produced (its new epoch, to
        // persist) comes out of the first `step`, before anything else.
        core.start_looking();
        core
    }

    /// Feeds one input; returns what to do. See the module docs for the durability rule.
    pub fn step(&mut self, now: Millis, input: Input) -> Ready {
        self.now = self.now.max(now);
        match input {
            Input::Tick => self.tick(),
            Input::Client { request, body } => self.client(request, body),
            Input::Peer { from, msg } => {
                if from != self.cfg.id && self.cfg.voters.contains(&from) {
                    self.peer(from, msg);
                }
            }
            Input::PeerDisconnected { peer } => self.on_peer_disconnected(peer),
        }
        // The commit invariant. An injected fault may break it on purpose: the harness must
        // see that through its checkers, not through a panic here.
        debug_assert!(
            self.cfg.bug.is_some()
                || (self.tree.last_applied() <= self.committed
                    && self.committed <= self.last_zxid()),
            "commit invariant broken on node {}: applied {:#x}, committed {:#x}, last {:#x}",
            self.cfg.id,
            self.tree.last_applied(),
            self.committed,
            self.last_zxid()
        );
        std::mem::take(&mut self.out)
    }

    fn tick(&mut self) {
        // Requests past their deadline: the outcome is unknown, say so.
        let expired: Vec<RequestId> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= self.now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            self.reply_err(
                id,
                ErrorCode::Timeout,
                "no outcome within the request timeout",
            );
        }
        match &self.state {
            State::Looking(_) => self.election_tick(),
            State::Following(_) => self.follower_tick(),
            State::Leading(_) => self.leader_tick(),
        }
    }

    fn peer(&mut self, from: NodeId, msg: PeerMsg) {
        match msg {
            PeerMsg::Notification { vote, round, state } => {
                self.on_notification(from, vote, round, state)
            }
            PeerMsg::LeaderQuery => self.on_leader_query(from),
            PeerMsg::FollowerInfo { .. } if matches!(self.state, State::Looking(_)) => {
                if let State::Looking(e) = &mut self.state {
                    e.keep_follower_info(from, msg);
                }
            }
            PeerMsg::FollowerInfo { .. }
            | PeerMsg::AckEpoch { .. }
            | PeerMsg::AckNewLeader { .. }
            | PeerMsg::Ack { .. }
            | PeerMsg::Pong { .. }
            | PeerMsg::Forward { .. }
            | PeerMsg::SyncRequest { .. } => self.leader_receive(from, msg),
            PeerMsg::LeaderInfo { .. }
            | PeerMsg::Sync { .. }
            | PeerMsg::NewLeader { .. }
            | PeerMsg::UpToDate { .. }
            | PeerMsg::Proposal { .. }
            | PeerMsg::Commit { .. }
            | PeerMsg::Ping { .. }
            | PeerMsg::SyncReply { .. } => self.follower_receive(from, msg),
        }
    }

    // ---- queries for the shell ----------------------------------------------------------

    /// A time before the next regular tick at which the core wants a `Tick`: the end of an
    /// election's finalize wait, so that a failover does not also wait for the tick schedule.
    pub fn next_deadline(&self) -> Option<Millis> {
        match &self.state {
            State::Looking(e) => e.finalize_at(),
            _ => None,
        }
    }

    pub fn status(&self) -> Status {
        let (role, leader, synced) = match &self.state {
            State::Looking(_) => (Role::Looking, None, vec![]),
            State::Following(f) => (Role::Following, Some(f.leader), vec![]),
            // A leader counts as leading once it has established its epoch with a quorum;
            // before that it is still finding out whether it can lead.
            State::Leading(l) if l.is_established() => {
                (Role::Leading, Some(self.cfg.id), l.synced_followers())
            }
            State::Leading(_) => (Role::Looking, None, vec![]),
        };
        Status {
            id: self.cfg.id,
            role,
            epoch: self.current_epoch,
            accepted_epoch: self.accepted_epoch,
            leader,
            serving: self.is_serving(),
            last_zxid: self.last_zxid(),
            committed_zxid: self.committed,
            applied_zxid: self.tree.last_applied(),
            synced_followers: synced,
            voters: self.cfg.voters.clone(),
            election_round: self.round,
            sessions: self.tree.sessions().count() as u64,
            znodes: self.tree.znode_count(),
            watches: self.watches.len() as u64,
            bug: self.cfg.bug.map(|b| b.name().to_string()),
        }
    }

    pub fn digest(&self) -> DigestReply {
        DigestReply {
            zxid: self.tree.last_applied(),
            digest: self.tree.digest(),
            znodes: self.tree.znode_count(),
        }
    }

    /// The applied tree, for the shell to save as a snapshot.
    pub fn snapshot(&self) -> crate::tree::Snapshot {
        if let Some((multi, before)) = &self.before_last_multi
            && *multi == self.tree.last_applied()
        {
            // BUG(fuzzy-snapshot-multi): the snapshot claims the multi it was cut through.
            return crate::tree::Snapshot {
                zxid: *multi,
                ..before.clone()
            };
        }
        self.tree.to_snapshot()
    }

    /// The shell saved a snapshot at `zxid`; the in-memory log may forget what precedes it,
    /// all but the last `retain_txns` transactions (kept so that followers a little behind
    /// still sync by DIFF; `LOG_RETAIN_TXNS` by default).
    pub fn compact(&mut self, zxid: Zxid, retain_txns: usize) {
        let upto = zxid.min(self.tree.last_applied());
        let droppable = self.log.partition_point(|t| t.zxid <= upto);
        let drop = droppable.saturating_sub(retain_txns);
        if drop > 0 {
            self.log_start = self.log[drop - 1].zxid;
            self.log.drain(..drop);
        }
    }

    pub fn applied_zxid(&self) -> Zxid {
        self.tree.last_applied()
    }

    /// The in-memory log: every transaction after `log_start()`, committed or not. For the
    /// simulator and the model checker.
    pub fn log(&self) -> &[Txn] {
        &self.log
    }

    pub fn log_start(&self) -> Zxid {
        self.log_start
    }

    /// Whether what this node tells its clients (replies, watch events, session notices) may
    /// leave before the fsync of the batch that produced it ([`Ready::take_early`]).
    ///
    /// It may in an ensemble of several voters. Clients are only ever shown committed state
    /// (the tree holds committed transactions alone; a write is answered once its transaction
    /// is applied), and there a commit needs a follower's ACK, which the follower sends only
    /// once its disk holds the proposal and which the leader steps only in a batch after the
    /// one that logged the proposal, once that one is durable (see [`PeerMsg::may_precede_fsync`]
    /// on COMMIT). So whatever a batch tells clients was on a quorum's disks before the batch
    /// began; this node's own copy adds nothing to that. A follower that crashes before its
    /// fsync comes back with a shorter log and serves nothing before a leader has synced it.
    /// ZooKeeper's follower, too, answers a write when the COMMIT arrives, not after its own
    /// log's next flush.
    ///
    /// A single voter commits on its own ack, in the batch that logs the proposal: its answers
    /// wait for that batch's fsync.
    pub fn answers_precede_fsync(&self) -> bool {
        self.cfg.voters.len() > 1
    }

    // ---- shared helpers -----------------------------------------------------------------

    pub(super) fn last_zxid(&self) -> Zxid {
        self.log.last().map(|t| t.zxid).unwrap_or(self.log_start)
    }

    pub(super) fn is_quorum(&self, count: usize) -> bool {
        count * 2 > self.cfg.voters.len()
    }

    pub(super) fn others(&self) -> Vec<NodeId> {
        self.cfg
            .voters
            .iter()
            .copied()
            .filter(|&v| v != self.cfg.id)
            .collect()
    }

    pub(super) fn send(&mut self, to: NodeId, msg: PeerMsg) {
        debug_assert_ne!(to, self.cfg.id);
        self.out.after_persist.push(Output::Send { to, msg });
    }

    pub(super) fn persist(&mut self, p: Persist) {
        self.out.persist.push(p);
    }

    pub(super) fn persist_epochs(&mut self) {
        self.persist(Persist::Epochs {
            accepted_epoch: self.accepted_epoch,
            current_epoch: self.current_epoch,
        });
    }

    pub(super) fn is_serving(&self) -> bool {
        match &self.state {
            State::Looking(_) => false,
            State::Following(f) => f.is_up_to_date(),
            State::Leading(l) => l.is_established(),
        }
    }

    /// Appends transactions to the log (in memory and, via the shell, on disk).
    pub(super) fn append(&mut self, txns: Vec<Txn>) {
        if txns.is_empty() {
            return;
        }
        self.append_in_memory(&txns);
        self.persist(Persist::Append(txns));
    }

    /// Puts transactions in the in-memory log only. Every correct path goes through `append`,
    /// which also logs them; the injected durability bugs call this alone.
    pub(super) fn append_in_memory(&mut self, txns: &[Txn]) {
        for t in txns {
            assert!(
                t.zxid > self.last_zxid(),
                "log append out of order: {:#x} after {:#x}",
                t.zxid,
                self.last_zxid()
            );
            self.log.push(t.clone());
        }
    }

    /// Drops logged transactions after `zxid` (they were never committed).
    pub(super) fn truncate_after(&mut self, zxid: Zxid) {
        assert!(
            zxid >= self.tree.last_applied(),
            "truncating applied transactions"
        );
        let keep = self.log.partition_point(|t| t.zxid <= zxid);
        if keep < self.log.len() {
            self.log.truncate(keep);
            self.persist(Persist::TruncateAfter(zxid));
        }
        self.committed = self.committed.min(self.last_zxid());
    }

    /// Leaves whatever role the node had and starts an election. Requests waiting on the old
    /// role learn that their outcome is unknown (writes) or that they were not served (reads).
    pub(super) fn start_looking(&mut self) {
        let waiting: Vec<(RequestId, bool)> = self
            .pending
            .iter()
            .map(|(id, p)| (*id, matches!(p.kind, PendingKind::Txn)))
            .collect();
        for (id, is_txn) in waiting {
            if is_txn {
                // Like ZooKeeper's connection loss: the write may still commit under the next
                // leader, so its outcome is unknown. Answering now lets the client move on
                // instead of waiting out the request timeout.
                self.reply_err(
                    id,
                    ErrorCode::ConnectionLoss,
                    "the node lost its leader with the write in flight; the outcome is unknown",
                );
            } else {
                self.reply_err(id, ErrorCode::NotReady, "the node lost its leader");
            }
        }
        self.touched.clear();
        self.begin_election();
    }

    // ---- commit, apply, reply -----------------------------------------------------------

    /// Applies every committed transaction not applied yet, in zxid order, and answers the
    /// requests that waited for them.
    pub(super) fn apply_committed(&mut self) {
        let limit = self.committed.min(self.last_zxid());
        while self.tree.last_applied() < limit {
            let applied = self.tree.last_applied();
            let idx = self.log.partition_point(|t| t.zxid <= applied);
            let Some(txn) = self.log.get(idx).cloned() else {
                break;
            };
            self.apply_one(&txn);
        }
        self.answer_waiting_reads();
    }

    fn apply_one(&mut self, txn: &Txn) {
        if self.cfg.has_bug(Bug::FuzzySnapshotMulti) {
            self.before_last_multi = matches!(txn.body, TxnBody::Multi { .. })
                .then(|| (txn.zxid, self.tree.to_snapshot()));
        }
        let applied = self.tree.apply(txn);
        let zxid = txn.zxid;
        for (kind, path) in &applied.events {
            self.fire_watches(*kind, path, zxid);
        }
        if let Ok(outcome) = &applied.result {
            match outcome {
                Outcome::SessionCreated {
                    session,
                    timeout_ms,
                } => self.on_session_created(*session, *timeout_ms),
                Outcome::SessionClosed { session, expired } => {
                    self.session_ended(*session, *expired, zxid)
                }
                _ => {}
            }
        }
        if let Some(origin) = txn.origin
            && origin.node == self.cfg.id
            && self.pending.contains_key(&origin.request)
        {
            self.pending.remove(&origin.request);
            let result = applied.result.map(|o| match o {
                Outcome::SessionCreated {
                    session,
                    timeout_ms,
                } => Response::Session {
                    session,
                    timeout_ms,
                },
                Outcome::SessionClosed { .. } | Outcome::Deleted => Response::Done,
                Outcome::Created { path, stat } => Response::Created { path, stat },
                Outcome::DataSet { stat } => Response::Stat { stat },
                Outcome::Multi { results } => Response::Multi { results },
            });
            self.out.after_persist.push(Output::Reply {
                request: origin.request,
                zxid,
                result,
            });
        }
    }

    fn fire_watches(&mut self, kind: EventKind, path: &str, zxid: Zxid) {
        for session in self.watches.fire(kind, path) {
            self.events_fired += 1;
            // BUG(watch-drop): every third watch event is silently lost.
            if self.cfg.has_bug(Bug::WatchDrop) && self.events_fired.is_multiple_of(3) {
                continue;
            }
            let event = WatchEvent {
                kind,
                path: path.to_string(),
                zxid,
            };
            // BUG(watch-duplicate): every third watch event is queued twice, as etcd's
            // robustness tests caught etcd delivering one event twice on a watch (etcd #17247).
            // A watch here is one-shot: the copy is an event with no watch behind it.
            if self.cfg.has_bug(Bug::WatchDuplicate) && self.events_fired.is_multiple_of(3) {
                self.out.after_persist.push(Output::Event {
                    session,
                    event: event.clone(),
                });
            }
            self.out
                .after_persist
                .push(Output::Event { session, event });
        }
    }

    pub(super) fn reply_ok(&mut self, request: RequestId, response: Response) {
        self.pending.remove(&request);
        self.out.after_persist.push(Output::Reply {
            request,
            zxid: self.tree.last_applied(),
            result: Ok(response),
        });
    }

    pub(super) fn reply_err(&mut self, request: RequestId, code: ErrorCode, message: &str) {
        self.reply_error(request, KeeperError::new(code, message));
    }

    fn reply_error(&mut self, request: RequestId, error: KeeperError) {
        self.pending.remove(&request);
        self.out.after_persist.push(Output::Reply {
            request,
            zxid: self.tree.last_applied(),
            result: Err(error),
        });
    }

    // ---- client requests ----------------------------------------------------------------

    fn client(&mut self, request: RequestId, body: ClientRequest) {
        if let Err(e) = self.validate(&body) {
            return self.reply_error(request, e);
        }
        // BUG(stale-read): a node that lost its leader goes on answering linearizable reads
        // from what it has applied (below, without asking the leader), for as long as it is cut
        // off, instead of refusing them.
        let stale_read =
            self.cfg.has_bug(Bug::StaleRead) && matches!(body, ClientRequest::Read { .. });
        if !self.is_serving() && !stale_read {
            return self.reply_err(
                request,
                ErrorCode::NotReady,
                "this server is not serving: it has no established leader",
            );
        }
        if self.pending.len() >= MAX_PENDING_REQUESTS {
            return self.reply_err(request, ErrorCode::NotReady, "too many requests in flight");
        }
        let deadline = self.now + self.cfg.request_timeout_ms;
        match body {
            ClientRequest::CreateSession { timeout_ms, .. } => {
                let tick = self.cfg.tick_ms;
                let timeout_ms = timeout_ms.clamp(
                    self.cfg.min_session_ticks * tick,
                    self.cfg.max_session_ticks * tick,
                );
                self.submit(request, 0, TxnBody::CreateSession { timeout_ms }, deadline);
            }
            ClientRequest::Heartbeat { session, last_zxid } => {
                if let Some(e) = self.check_session(session, last_zxid) {
                    return self.reply_error(request, e);
                }
                self.touch(session);
                self.reply_ok(request, Response::Done);
            }
            ClientRequest::CloseSession { session, .. } => {
                self.touch(session);
                self.submit(
                    request,
                    session,
                    TxnBody::CloseSession { expired: false },
                    deadline,
                );
            }
            ClientRequest::Write { session, op, .. } => {
                self.touch(session);
                self.submit(request, session, TxnBody::Op { op }, deadline);
            }
            ClientRequest::Multi { session, ops, .. } => {
                self.touch(session);
                self.submit(request, session, TxnBody::Multi { ops }, deadline);
            }
            ClientRequest::Read {
                session,
                last_zxid,
                read,
                watch,
                consistency,
            } => {
                if let Some(e) = self.check_session(session, last_zxid) {
                    return self.reply_error(request, e);
                }
                self.touch(session);
                let then = AfterSync::Read { read, watch };
                match consistency {
                    Consistency::Local => self.finish_wait(request, session, then),
                    // BUG(stale-read): a linearizable read is answered from local state
                    // without the leader confirming its leadership with a quorum.
                    Consistency::Linearizable if self.cfg.has_bug(Bug::StaleRead) => {
                        self.finish_wait(request, session, then)
                    }
                    Consistency::Sync => self.request_sync(request, session, then, false, deadline),
                    Consistency::Linearizable => {
                        self.request_sync(request, session, then, true, deadline)
                    }
                }
            }
            ClientRequest::Sync {
                session, last_zxid, ..
            } => {
                if let Some(e) = self.check_session(session, last_zxid) {
                    return self.reply_error(request, e);
                }
                self.touch(session);
                self.request_sync(request, session, AfterSync::Done, false, deadline);
            }
            ClientRequest::SetWatches {
                session,
                last_zxid,
                relative_zxid,
                data,
                exist,
                child,
            } => {
                if let Some(e) = self.check_session(session, last_zxid) {
                    return self.reply_error(request, e);
                }
                self.touch(session);
                self.set_watches(session, relative_zxid, data, exist, child);
                self.reply_ok(request, Response::Done);
            }
            ClientRequest::RemoveWatches {
                session,
                path,
                kind,
                check_only,
            } => {
                self.touch(session);
                if self.watches.remove(&path, session, kind, check_only) {
                    self.reply_ok(request, Response::Done);
                } else {
                    let message = format!("no watch of this session on {path}");
                    self.reply_err(request, ErrorCode::NoWatcher, &message);
                }
            }
        }
    }

    /// ZooKeeper's `DataTree.setWatches`: each watch the client held before it reconnected is
    /// set again, unless what it watches changed after `relative_zxid`, the last zxid the
    /// client saw; then the event it missed fires at once (in this reply's batch, so before
    /// the reply). A watch fires once: a registration the session still holds here for it (a
    /// session keeps its watches on a node across connections, where ZooKeeper drops them
    /// with the connection) goes with that event, or it would fire a second time later.
    fn set_watches(
        &mut self,
        session: SessionId,
        relative_zxid: Zxid,
        data: Vec<String>,
        exist: Vec<String>,
        child: Vec<String>,
    ) {
        let mut missed = Vec::new();
        for path in data {
            match self.tree.get(&path) {
                None => missed.push((EventKind::Deleted, path, WatchKind::Data)),
                Some((_, stat)) if stat.mzxid > relative_zxid => {
                    missed.push((EventKind::DataChanged, path, WatchKind::Data))
                }
                Some(_) => _ = self.watches.add_data(&path, session),
            }
        }
        for path in exist {
            match self.tree.get(&path) {
                Some(_) => missed.push((EventKind::Created, path, WatchKind::Data)),
                None => _ = self.watches.add_data(&path, session),
            }
        }
        for path in child {
            match self.tree.get(&path) {
                None => missed.push((EventKind::Deleted, path, WatchKind::Child)),
                Some((_, stat)) if stat.pzxid > relative_zxid => {
                    missed.push((EventKind::ChildrenChanged, path, WatchKind::Child))
                }
                Some(_) => _ = self.watches.add_child(&path, session),
            }
        }
        let zxid = self.tree.last_applied();
        for (kind, path, watch) in missed {
            self.watches.remove(&path, session, watch, false);
            self.out.after_persist.push(Output::Event {
                session,
                event: WatchEvent { kind, path, zxid },
            });
        }
    }

    /// A node has just rejoined the ensemble after it lost its leader (a partition, the
    /// leader's death): it is up to date with the new leader, or has become it. The watches
    /// its sessions hold need nothing: each already fired for every change the node applied
    /// while it synced.
    pub(super) fn rearm_watches_after_rejoin(&mut self) {
        // BUG(watch-stale-after-reconnect): the node re-checks its sessions' watches as
        // `set_watches` does for a reconnecting client, in case they changed while it was cut
        // off. It has no record of the zxid each watch was set at, so it checks against the zxid
        // the session was created at (its id) and fires every watch whose node changed after
        // that, with the zxid of the node's last change: one the session had already read
        // when it set the watch. A session is told of a change older than what it has seen, as
        // when a watch resumed on an etcd member that had fallen behind delivered an old
        // revision (etcd #15271; etcd #20221).
        if !self.cfg.has_bug(Bug::WatchStaleAfterReconnect) {
            return;
        }
        for (kind, path, session) in self.watches.armed() {
            // A session's id is the zxid of the transaction that created it.
            let relative_zxid = session;
            let Some((_, stat)) = self.tree.get(&path) else {
                continue;
            };
            let (event, changed_at) = match kind {
                WatchKind::Child => (EventKind::ChildrenChanged, stat.pzxid),
                _ => (EventKind::DataChanged, stat.mzxid),
            };
            if changed_at <= relative_zxid {
                continue;
            }
            self.watches.remove(&path, session, kind, false);
            self.out.after_persist.push(Output::Event {
                session,
                event: WatchEvent {
                    kind: event,
                    path,
                    zxid: changed_at,
                },
            });
        }
    }

    /// `session` is gone at `zxid` (`expired`, else closed): its watches and what this node
    /// kept for it go, and its event stream is told.
    fn session_ended(&mut self, session: SessionId, expired: bool, zxid: Zxid) {
        self.watches.remove_session(session);
        self.touched.remove(&session);
        self.on_session_closed(session);
        self.out.after_persist.push(Output::SessionEnded {
            session,
            expired,
            zxid,
        });
    }

    /// A SNAP sync replaced the tree (`before` was it): the changes in between were never
    /// applied one by one, so no watch fired for them and no session that ended meanwhile was
    /// told. Every session with watches here loses them and is told so; every session the new
    /// tree no longer has is told it ended (at the snapshot's zxid, the first this node knows
    /// it by), as applying its close would have. ZooKeeper gets the same from closing every
    /// client connection when a follower re-syncs.
    pub(super) fn watches_lost_to_snapshot(&mut self, before: &crate::tree::DataTree) {
        let zxid = self.tree.last_applied();
        let watched: BTreeSet<SessionId> = self.watches.armed().into_iter().map(|w| w.2).collect();
        for (session, _) in before.sessions() {
            if self.tree.session(session).is_none() {
                self.session_ended(session, true, zxid);
            }
        }
        for session in watched {
            if self.tree.session(session).is_some() {
                self.watches.remove_session(session);
                self.out.after_persist.push(Output::WatchesLost { session });
            }
        }
    }

    /// Rejects malformed requests before they cost a transaction.
    fn validate(&self, body: &ClientRequest) -> Result<(), KeeperError> {
        let ops: &[Op] = match body {
            ClientRequest::Write { op, .. } => {
                if matches!(op, Op::Check { .. }) {
                    return Err(KeeperError::new(
                        ErrorCode::BadArguments,
                        "check is only valid inside a multi",
                    ));
                }
                std::slice::from_ref(op)
            }
            ClientRequest::Multi { ops, .. } => ops,
            ClientRequest::Read { read, .. } => {
                let (Read::Exists { path }
                | Read::GetData { path }
                | Read::GetChildren { path }
                | Read::AllChildrenNumber { path }) = read;
                return crate::path::validate(path);
            }
            ClientRequest::Sync { path, .. } | ClientRequest::RemoveWatches { path, .. } => {
                return crate::path::validate(path);
            }
            _ => return Ok(()),
        };
        for op in ops {
            match op {
                Op::Create { path, data, mode } => {
                    crate::path::validate_create(path, mode.is_sequential())?;
                    self.check_data(data)?;
                }
                Op::SetData { path, data, .. } => {
                    crate::path::validate(path)?;
                    self.check_data(data)?;
                }
                Op::Delete { path, .. } | Op::Check { path, .. } => crate::path::validate(path)?,
            }
        }
        Ok(())
    }

    fn check_data(&self, data: &str) -> Result<(), KeeperError> {
        if data.len() > self.cfg.max_data_bytes {
            return Err(KeeperError::new(
                ErrorCode::BadArguments,
                format!(
                    "data is {} bytes; the limit is {} bytes",
                    data.len(),
                    self.cfg.max_data_bytes
                ),
            ));
        }
        Ok(())
    }

    /// A session-bound request is refused when the session is gone, or when this node has
    /// applied less than the client has already seen (ZooKeeper refuses such a connection, so
    /// a client never goes back in time by failing over).
    fn check_session(&self, session: SessionId, last_zxid: Zxid) -> Option<KeeperError> {
        let applied = self.tree.last_applied();
        let behind = |seen: Zxid| {
            KeeperError::new(
                ErrorCode::NotReady,
                format!(
                    "this server has applied up to {applied:#x}, behind the client's {seen:#x}"
                ),
            )
        };
        if last_zxid > applied {
            return Some(behind(last_zxid));
        }
        if self.tree.session(session).is_some() {
            return None;
        }
        // A session id is the zxid of the transaction that created it, so an unknown id above
        // what this node applied may be a session whose creation has not reached it yet: a
        // client that omits `last_zxid` gets `not_ready` for it, not a false expiry. But only
        // where that is possible. The leader applies every commit first, and no session comes
        // from an epoch this node has not accepted yet; there the id names no session, and
        // waiting would be for ever (issue 11: session u64::MAX was `not_ready` for good).
        let maybe_not_applied_yet = session > applied
            && !matches!(self.state, State::Leading(_))
            && session >> 32 <= u64::from(self.accepted_epoch);
        if maybe_not_applied_yet {
            return Some(behind(session));
        }
        Some(KeeperError::new(
            ErrorCode::SessionExpired,
            format!("session {session:#x} has expired, was closed or never existed"),
        ))
    }

    /// A client of this node showed its session is alive.
    fn touch(&mut self, session: SessionId) {
        if session == 0 {
            return;
        }
        if matches!(self.state, State::Leading(_)) {
            self.leader_touch(session);
        } else {
            self.touched.insert(session);
        }
    }

    /// Sends a write to the leader (or proposes it, on the leader) and waits for it to apply.
    fn submit(&mut self, request: RequestId, session: SessionId, body: TxnBody, deadline: Millis) {
        self.pending.insert(
            request,
            Pending {
                kind: PendingKind::Txn,
                deadline,
            },
        );
        match &self.state {
            State::Leading(_) => {
                let origin = Origin {
                    node: self.cfg.id,
                    request,
                };
                self.propose(session, body, Some(origin));
            }
            State::Following(f) => {
                let (leader, epoch) = (f.leader, f.epoch);
                self.send(
                    leader,
                    PeerMsg::Forward {
                        epoch,
                        request,
                        session,
                        body,
                    },
                );
            }
            State::Looking(_) => unreachable!("a looking node does not serve"),
        }
    }

    /// Asks the leader how far this node must apply before answering (ZooKeeper's sync), or,
    /// with `linearizable`, for a read index the leader has confirmed with a quorum.
    fn request_sync(
        &mut self,
        request: RequestId,
        session: SessionId,
        then: AfterSync,
        linearizable: bool,
        deadline: Millis,
    ) {
        self.pending.insert(
            request,
            Pending {
                kind: PendingKind::Wait {
                    zxid: None,
                    session,
                    then,
                },
                deadline,
            },
        );
        match &self.state {
            State::Leading(_) => self.leader_sync_request(self.cfg.id, request, linearizable),
            State::Following(f) => {
                let (leader, epoch) = (f.leader, f.epoch);
                self.send(
                    leader,
                    PeerMsg::SyncRequest {
                        epoch,
                        request,
                        linearizable,
                    },
                );
            }
            State::Looking(_) => unreachable!("a looking node does not serve"),
        }
    }

    /// The leader answered a sync: wait until this node has applied `zxid`.
    pub(super) fn on_sync_reply(&mut self, request: RequestId, zxid: Zxid) {
        if let Some(Pending {
            kind: PendingKind::Wait { zxid: z @ None, .. },
            ..
        }) = self.pending.get_mut(&request)
        {
            *z = Some(zxid);
        }
        self.answer_waiting_reads();
    }

    fn answer_waiting_reads(&mut self) {
        let applied = self.tree.last_applied();
        let ready: Vec<RequestId> = self
            .pending
            .iter()
            .filter(
                |(_, p)| matches!(p.kind, PendingKind::Wait { zxid: Some(z), .. } if z <= applied),
            )
            .map(|(id, _)| *id)
            .collect();
        for id in ready {
            if let Some(Pending {
                kind: PendingKind::Wait { session, then, .. },
                ..
            }) = self.pending.remove(&id)
            {
                self.finish_wait(id, session, then);
            }
        }
    }

    /// Answers a read (or sync) from this node's applied tree, registering a watch if asked.
    fn finish_wait(&mut self, request: RequestId, session: SessionId, then: AfterSync) {
        let (read, watch) = match then {
            AfterSync::Done => return self.reply_ok(request, Response::Done),
            AfterSync::Read { read, watch } => (read, watch),
        };
        if self.tree.session(session).is_none() {
            return self.reply_err(
                request,
                ErrorCode::SessionExpired,
                "the session expired while the read waited",
            );
        }
        let result = match &read {
            Read::Exists { path } => {
                let stat = self.tree.get(path).map(|(_, s)| s.clone());
                if watch {
                    // exists sets a watch whether or not the node exists (it fires on
                    // creation then).
                    self.watches.add_data(path, session);
                }
                Ok(Response::Exists { stat })
            }
            Read::GetData { path } => match self.tree.get(path) {
                Some((data, stat)) => {
                    let r = Response::Data {
                        data: data.to_string(),
                        stat: stat.clone(),
                    };
                    if watch {
                        self.watches.add_data(path, session);
                    }
                    Ok(r)
                }
                None => Err(no_node(path)),
            },
            Read::GetChildren { path } => match self.tree.children(path) {
                Some((children, stat)) => {
                    let r = Response::Children {
                        children,
                        stat: stat.clone(),
                    };
                    if watch {
                        self.watches.add_child(path, session);
                    }
                    Ok(r)
                }
                None => Err(no_node(path)),
            },
            Read::AllChildrenNumber { path } => match self.tree.descendant_count(path) {
                Some(count) => Ok(Response::Count { count }),
                None => Err(no_node(path)),
            },
        };
        match result {
            Ok(r) => self.reply_ok(request, r),
            Err(e) => self.reply_error(request, e),
        }
    }

    /// The zxid of the next proposal in `epoch` after `counter` proposals.
    pub(super) fn zxid_in(epoch: u32, counter: u32) -> Zxid {
        make_zxid(epoch, counter)
    }
}

fn no_node(path: &str) -> KeeperError {
    KeeperError::new(ErrorCode::NoNode, format!("no node at {path}"))
}
