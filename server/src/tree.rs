//! The data tree: znodes and sessions, changed only by applying transactions in zxid order.
//!
//! [`DataTree::apply`] is a pure function of the tree and the transaction: no clock (times come
//! stamped in the transaction), no I/O, no randomness, no hash-order iteration. Every check
//! that can fail a write (a missing parent, a stale version, an expired session) happens here,
//! so every replica that applies the same log computes the same outcome, errors included.
//!
//! Nodes live in one map keyed by full path; each node also keeps the set of its children's
//! names so that listing children never scans the tree. A `multi` applies its ops one by one
//! and, when one fails, undoes the earlier ones from an undo log, so an atomic multi costs
//! what its ops cost, not a copy of the tree.

use crate::api::{
    ANY_VERSION, CreateMode, ErrorCode, EventKind, KeeperError, Op, OpResult, SessionId, Stat, Zxid,
};
use crate::bugs::Bug;
use crate::path;
use crate::txn::{Txn, TxnBody};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

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

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Znode {
    data: String,
    stat: Stat,
    /// Children ever created under this node; the next sequential suffix.
    sequence: u64,
    /// Created with `CreateMode::Container`: removed with its last child.
    container: bool,
    /// Names (not paths) of the children, sorted.
    children: BTreeSet<String>,
}

impl Znode {
    fn is_ephemeral(&self) -> bool {
        self.stat.ephemeral_owner != 0
    }
}

/// One step back, recorded before each change so that a failed multi can be undone.
#[derive(Debug)]
enum Undo {
    /// A node was inserted (it still has no children when this is undone).
    Inserted { path: String },
    /// A childless node was removed.
    Removed { path: String, node: Znode },
    /// A node's stat and counter changed, and its data if `data` is set.
    Changed {
        path: String,
        data: Option<String>,
        stat: Stat,
        sequence: u64,
    },
}

/// What one transaction did so far: its watch triggers and how to take it back.
#[derive(Default)]
struct Journal {
    events: Vec<(EventKind, String)>,
    undo: Vec<Undo>,
}

/// The stamp of the transaction being applied.
#[derive(Clone, Copy)]
struct Stamp {
    zxid: Zxid,
    time_ms: u64,
    session: SessionId,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DataTree {
    nodes: BTreeMap<String, Znode>,
    sessions: BTreeMap<SessionId, SessionEntry>,
    /// Each session's ephemeral nodes (full paths), so closing a session does not scan.
    ephemerals: BTreeMap<SessionId, BTreeSet<String>>,
    last_applied: Zxid,
    bug: Option<Bug>,
    /// Built by `from_snapshot` and nothing applied since (see `set_bug`).
    fresh_restore: bool,
}

impl Default for DataTree {
    fn default() -> DataTree {
        DataTree::new()
    }
}

impl DataTree {
    /// An empty tree: the root and the reserved `/zookeeper`, no sessions, zxid 0.
    pub fn new() -> DataTree {
        let mut nodes = BTreeMap::new();
        let empty = |children: BTreeSet<String>| Znode {
            data: String::new(),
            stat: Stat {
                num_children: children.len() as u32,
                ..Stat::default()
            },
            sequence: 0,
            container: false,
            children,
        };
        // Like ZooKeeper, `/zookeeper` is there from the start without being a counted
        // creation: the root's cversion and sequence stay 0, so the first sequential child
        // of the root gets suffix 0000000000.
        let reserved_name = path::name(path::RESERVED).to_string();
        nodes.insert(
            path::ROOT.to_string(),
            empty(BTreeSet::from([reserved_name])),
        );
        nodes.insert(path::RESERVED.to_string(), empty(BTreeSet::new()));
        DataTree {
            nodes,
            sessions: BTreeMap::new(),
            ephemerals: BTreeMap::new(),
            last_applied: 0,
            bug: None,
            fresh_restore: false,
        }
    }

    /// Fault injection (issue 6). `EphemeralLeak` acts on the next expiries;
    /// `SequenceReuse` acts when a tree is restored from a snapshot: use
    /// [`DataTree::from_snapshot_with_bug`], or call this right after `from_snapshot`, before
    /// applying anything.
    pub fn set_bug(&mut self, bug: Option<Bug>) {
        // Without the `bugs` feature no fault can be switched on.
        let bug = bug.filter(|_| cfg!(feature = "bugs"));
        self.bug = bug;
        if bug == Some(Bug::SequenceReuse) && self.fresh_restore {
            self.forget_sequence_counters();
        }
    }

    pub fn bug(&self) -> Option<Bug> {
        self.bug
    }

    /// Applies the next transaction. Zxids must strictly increase: a replica that applies out
    /// of order has already diverged, so this stops it rather than let it serve a wrong tree.
    pub fn apply(&mut self, txn: &Txn) -> Applied {
        assert!(
            txn.zxid > self.last_applied,
            "transaction {:#x} applied after {:#x}: zxids must strictly increase",
            txn.zxid,
            self.last_applied
        );
        self.last_applied = txn.zxid;
        self.fresh_restore = false;
        let stamp = Stamp {
            zxid: txn.zxid,
            time_ms: txn.time_ms,
            session: txn.session,
        };
        let mut journal = Journal::default();
        let result = match &txn.body {
            TxnBody::CreateSession { timeout_ms } => {
                // The id is this zxid, larger than any earlier one: it cannot be taken.
                let previous = self.sessions.insert(
                    txn.zxid,
                    SessionEntry {
                        timeout_ms: *timeout_ms,
                    },
                );
                debug_assert!(previous.is_none());
                Ok(Outcome::SessionCreated {
                    session: txn.zxid,
                    timeout_ms: *timeout_ms,
                })
            }
            TxnBody::CloseSession { expired } => self.close_session(stamp, *expired, &mut journal),
            TxnBody::Op { op } => self
                .require_session(stamp.session)
                .and_then(|()| self.apply_single(stamp, op, &mut journal)),
            TxnBody::Multi { ops } => self
                .require_session(stamp.session)
                .and_then(|()| self.apply_multi(stamp, ops, &mut journal)),
        };
        if result.is_err() {
            self.roll_back(journal.undo);
            journal.events.clear();
        }
        Applied {
            result,
            events: journal.events,
        }
    }

    pub fn last_applied(&self) -> Zxid {
        self.last_applied
    }

    /// The data and stat of `path`, if it exists.
    pub fn get(&self, path: &str) -> Option<(&str, &Stat)> {
        self.nodes.get(path).map(|n| (n.data.as_str(), &n.stat))
    }

    /// The sorted child names and the stat of `path`, if it exists.
    pub fn children(&self, path: &str) -> Option<(Vec<String>, &Stat)> {
        self.nodes
            .get(path)
            .map(|n| (n.children.iter().cloned().collect(), &n.stat))
    }

    /// How many nodes lie below `path` at any depth, if it exists.
    pub fn descendant_count(&self, path: &str) -> Option<u64> {
        self.nodes.get(path)?;
        let prefix = if path == "/" {
            "/".to_string()
        } else {
            format!("{path}/")
        };
        let below = self
            .nodes
            .range(prefix.clone()..)
            .take_while(|(p, _)| p.starts_with(&prefix))
            .filter(|(p, _)| p.as_str() != path)
            .count();
        Some(below as u64)
    }

    pub fn session(&self, id: SessionId) -> Option<&SessionEntry> {
        self.sessions.get(&id)
    }

    /// Every live session, by id.
    pub fn sessions(&self) -> impl Iterator<Item = (SessionId, &SessionEntry)> + '_ {
        self.sessions.iter().map(|(id, entry)| (*id, entry))
    }

    /// The ephemeral nodes `session` owns, sorted by path.
    pub fn ephemerals(&self, session: SessionId) -> Vec<String> {
        self.ephemerals
            .get(&session)
            .map(|paths| paths.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Number of znodes, `/` and `/zookeeper` included.
    pub fn znode_count(&self) -> u64 {
        self.nodes.len() as u64
    }

    /// A digest of every node (path, data, stat, counter, container flag) and every session:
    /// FNV-1a over a length-prefixed encoding in path and id order. Equal trees give equal
    /// digests in every process and on every platform, so replicas can be compared.
    pub fn digest(&self) -> u64 {
        let mut h = Fnv::new();
        h.u64(self.nodes.len() as u64);
        for (p, n) in &self.nodes {
            h.str(p);
            h.str(&n.data);
            let s = &n.stat;
            for v in [s.czxid, s.mzxid, s.pzxid, s.ctime, s.mtime] {
                h.u64(v);
            }
            h.u64(s.version as u32 as u64);
            h.u64(s.cversion as u32 as u64);
            h.u64(s.ephemeral_owner);
            h.u64(s.data_length as u64);
            h.u64(s.num_children as u64);
            h.u64(n.sequence);
            h.u64(n.container as u64);
        }
        h.u64(self.sessions.len() as u64);
        for (id, entry) in &self.sessions {
            h.u64(*id);
            h.u64(entry.timeout_ms);
        }
        h.0
    }

    pub fn to_snapshot(&self) -> Snapshot {
        Snapshot {
            zxid: self.last_applied,
            // Path order puts every parent before its children: a path sorts before every
            // path it is a prefix of.
            nodes: self
                .nodes
                .iter()
                .map(|(p, n)| SnapshotNode {
                    path: p.clone(),
                    data: n.data.clone(),
                    stat: n.stat.clone(),
                    sequence: n.sequence,
                    container: n.container,
                })
                .collect(),
            sessions: self
                .sessions
                .iter()
                .map(|(id, entry)| (*id, entry.clone()))
                .collect(),
        }
    }

    /// Rebuilds a tree from a snapshot, refusing one that is not a consistent tree.
    pub fn from_snapshot(snapshot: &Snapshot) -> Result<DataTree, String> {
        DataTree::from_snapshot_with_bug(snapshot, None)
    }

    /// [`DataTree::from_snapshot`] with fault injection in effect for the restored tree.
    pub fn from_snapshot_with_bug(
        snapshot: &Snapshot,
        bug: Option<Bug>,
    ) -> Result<DataTree, String> {
        let mut nodes: BTreeMap<String, Znode> = BTreeMap::new();
        let mut ephemerals: BTreeMap<SessionId, BTreeSet<String>> = BTreeMap::new();
        if snapshot.nodes.is_empty() {
            return Err("snapshot has no nodes, not even the root".to_string());
        }
        for (i, n) in snapshot.nodes.iter().enumerate() {
            let at = || format!("snapshot node {i} ({:?})", n.path);
            path::validate(&n.path).map_err(|e| format!("{}: {}", at(), e.message))?;
            if i == 0 && n.path != path::ROOT {
                return Err(format!("{}: the first node must be the root", at()));
            }
            if i > 0 {
                let Some(parent_path) = path::parent(&n.path) else {
                    return Err(format!("{}: the root appears twice", at()));
                };
                let Some(parent) = nodes.get_mut(parent_path) else {
                    return Err(format!("{}: comes before its parent or has none", at()));
                };
                if parent.is_ephemeral() {
                    return Err(format!("{}: its parent is ephemeral", at()));
                }
                if !parent.children.insert(path::name(&n.path).to_string()) {
                    return Err(format!("{}: appears twice", at()));
                }
            }
            if n.stat.data_length as usize != n.data.len() {
                return Err(format!(
                    "{}: data_length {} but {} bytes of data",
                    at(),
                    n.stat.data_length,
                    n.data.len()
                ));
            }
            if n.container && n.stat.ephemeral_owner != 0 {
                return Err(format!("{}: both a container and ephemeral", at()));
            }
            // Deleting either would break the tree: neither may go with a session or a child.
            let fixed = n.path == path::ROOT || n.path == path::RESERVED;
            if fixed && (n.container || n.stat.ephemeral_owner != 0) {
                return Err(format!("{}: must be persistent", at()));
            }
            if n.stat.ephemeral_owner != 0 {
                ephemerals
                    .entry(n.stat.ephemeral_owner)
                    .or_default()
                    .insert(n.path.clone());
            }
            nodes.insert(
                n.path.clone(),
                Znode {
                    data: n.data.clone(),
                    stat: n.stat.clone(),
                    sequence: n.sequence,
                    container: n.container,
                    children: BTreeSet::new(),
                },
            );
        }
        if !nodes.contains_key(path::RESERVED) {
            return Err(format!("snapshot has no {} node", path::RESERVED));
        }
        if let Some((p, n)) = nodes
            .iter()
            .find(|(_, n)| n.children.len() as u64 != n.stat.num_children as u64)
        {
            return Err(format!(
                "snapshot node {p:?}: num_children {} but {} children",
                n.stat.num_children,
                n.children.len()
            ));
        }
        let mut sessions = BTreeMap::new();
        for (id, entry) in &snapshot.sessions {
            // A session's id is the zxid that created it: never 0, never after the snapshot.
            if *id == 0 || *id > snapshot.zxid {
                return Err(format!(
                    "snapshot session {id:#x}: not a zxid at or before {:#x}",
                    snapshot.zxid
                ));
            }
            if sessions.insert(*id, entry.clone()).is_some() {
                return Err(format!("snapshot session {id:#x} appears twice"));
            }
        }
        // Ephemeral owners are not required to be live sessions: under `EphemeralLeak` they
        // are not, and the snapshot must still restore what the replica had.
        let mut tree = DataTree {
            nodes,
            sessions,
            ephemerals,
            last_applied: snapshot.zxid,
            bug: None,
            fresh_restore: true,
        };
        tree.set_bug(bug);
        Ok(tree)
    }

    // BUG(sequence-reuse): the only place. Restores each node's counter of child creations
    // as its current number of children, a stale value: once any child has been deleted, the
    // next sequential create hands out a suffix that an earlier node already had.
    fn forget_sequence_counters(&mut self) {
        for node in self.nodes.values_mut() {
            node.sequence = node.stat.num_children as u64;
        }
    }

    fn require_session(&self, session: SessionId) -> Result<(), KeeperError> {
        if self.sessions.contains_key(&session) {
            Ok(())
        } else {
            Err(KeeperError::new(
                ErrorCode::SessionExpired,
                format!("session {session:#x} is not live (expired, closed or never created)"),
            ))
        }
    }

    fn close_session(
        &mut self,
        stamp: Stamp,
        expired: bool,
        journal: &mut Journal,
    ) -> Result<Outcome, KeeperError> {
        self.require_session(stamp.session)?;
        self.sessions.remove(&stamp.session);
        // BUG(ephemeral-leak): an expiry forgets the session but leaves its ephemeral nodes,
        // which then outlive their owner forever.
        let leak = expired && self.bug == Some(Bug::EphemeralLeak);
        if !leak {
            for p in self.ephemerals(stamp.session) {
                self.remove_node(stamp, &p, journal);
            }
        }
        debug_assert!(leak || !self.ephemerals.contains_key(&stamp.session));
        Ok(Outcome::SessionClosed {
            session: stamp.session,
            expired,
        })
    }

    fn apply_single(
        &mut self,
        stamp: Stamp,
        op: &Op,
        journal: &mut Journal,
    ) -> Result<Outcome, KeeperError> {
        if let Op::Check { .. } = op {
            return Err(KeeperError::new(
                ErrorCode::BadArguments,
                "check is only allowed inside a multi",
            ));
        }
        Ok(match self.apply_op(stamp, op, journal)? {
            OpResult::Create { path, stat } => Outcome::Created { path, stat },
            OpResult::Delete => Outcome::Deleted,
            OpResult::SetData { stat } => Outcome::DataSet { stat },
            OpResult::Check | OpResult::Error { .. } => {
                unreachable!("apply_op answers a create, delete or set_data in kind")
            }
        })
    }

    /// All or nothing: on the first failing op, the caller rolls back the journal.
    fn apply_multi(
        &mut self,
        stamp: Stamp,
        ops: &[Op],
        journal: &mut Journal,
    ) -> Result<Outcome, KeeperError> {
        let mut results = Vec::with_capacity(ops.len());
        for (i, op) in ops.iter().enumerate() {
            match self.apply_op(stamp, op, journal) {
                Ok(result) => results.push(result),
                Err(e) => {
                    // ZooKeeper's per-op report: `ok` before the failure, the failure's own
                    // code, `runtime_inconsistency` for the ops never tried.
                    let mut per_op = vec![
                        OpResult::Error {
                            error: ErrorCode::Ok
                        };
                        i
                    ];
                    per_op.push(OpResult::Error { error: e.error });
                    per_op.resize(
                        ops.len(),
                        OpResult::Error {
                            error: ErrorCode::RuntimeInconsistency,
                        },
                    );
                    return Err(KeeperError {
                        error: e.error,
                        message: format!("op {i} of the multi failed: {}", e.message),
                        results: Some(per_op),
                    });
                }
            }
        }
        Ok(Outcome::Multi { results })
    }

    fn apply_op(
        &mut self,
        stamp: Stamp,
        op: &Op,
        journal: &mut Journal,
    ) -> Result<OpResult, KeeperError> {
        match op {
            Op::Create { path, data, mode } => self.create(stamp, path, data, *mode, journal),
            Op::Delete { path, version } => self.delete(stamp, path, *version, journal),
            Op::SetData {
                path,
                data,
                version,
            } => self.set_data(stamp, path, data, *version, journal),
            Op::Check { path, version } => {
                path::validate(path)?;
                let node = self.existing(path)?;
                check_version(path, &node.stat, *version)?;
                Ok(OpResult::Check)
            }
        }
    }

    fn create(
        &mut self,
        stamp: Stamp,
        path: &str,
        data: &str,
        mode: CreateMode,
        journal: &mut Journal,
    ) -> Result<OpResult, KeeperError> {
        let sequential = mode.is_sequential();
        path::validate_create(path, sequential)?;
        if path::is_reserved(path) {
            return Err(reserved(path));
        }
        if path == path::ROOT && !sequential {
            return Err(KeeperError::new(
                ErrorCode::NodeExists,
                "the root always exists",
            ));
        }
        // A sequential prefix of "/" names a child of the root.
        let parent_path = path::parent(path).unwrap_or(path::ROOT);
        let Some(parent) = self.nodes.get(parent_path) else {
            return Err(KeeperError::new(
                ErrorCode::NoNode,
                format!("cannot create {path}: parent {parent_path} does not exist"),
            ));
        };
        let actual = if sequential {
            format!("{path}{:010}", parent.sequence)
        } else {
            path.to_string()
        };
        if self.nodes.contains_key(&actual) {
            return Err(KeeperError::new(
                ErrorCode::NodeExists,
                format!("{actual} already exists"),
            ));
        }
        if parent.is_ephemeral() {
            return Err(KeeperError::new(
                ErrorCode::NoChildrenForEphemerals,
                format!("cannot create {actual}: parent {parent_path} is ephemeral"),
            ));
        }

        let parent_path = parent_path.to_string();
        let name = path::name(&actual).to_string();
        let parent = self.nodes.get_mut(&parent_path).expect("checked above");
        journal.undo.push(Undo::Changed {
            path: parent_path.clone(),
            data: None,
            stat: parent.stat.clone(),
            sequence: parent.sequence,
        });
        parent.children.insert(name);
        parent.stat.cversion = parent.stat.cversion.wrapping_add(1);
        parent.stat.pzxid = stamp.zxid;
        parent.stat.num_children += 1;
        parent.sequence += 1;

        let owner = if mode.is_ephemeral() {
            stamp.session
        } else {
            0
        };
        let stat = Stat {
            czxid: stamp.zxid,
            mzxid: stamp.zxid,
            pzxid: stamp.zxid,
            ctime: stamp.time_ms,
            mtime: stamp.time_ms,
            version: 0,
            cversion: 0,
            ephemeral_owner: owner,
            data_length: data_length(data),
            num_children: 0,
        };
        if owner != 0 {
            self.ephemerals
                .entry(owner)
                .or_default()
                .insert(actual.clone());
        }
        self.nodes.insert(
            actual.clone(),
            Znode {
                data: data.to_string(),
                stat: stat.clone(),
                sequence: 0,
                container: mode == CreateMode::Container,
                children: BTreeSet::new(),
            },
        );
        journal.undo.push(Undo::Inserted {
            path: actual.clone(),
        });
        journal.events.push((EventKind::Created, actual.clone()));
        journal
            .events
            .push((EventKind::ChildrenChanged, parent_path));
        Ok(OpResult::Create { path: actual, stat })
    }

    fn delete(
        &mut self,
        stamp: Stamp,
        path: &str,
        version: i32,
        journal: &mut Journal,
    ) -> Result<OpResult, KeeperError> {
        path::validate(path)?;
        if path == path::ROOT {
            return Err(KeeperError::new(
                ErrorCode::BadArguments,
                "the root cannot be deleted",
            ));
        }
        if path::is_reserved(path) {
            return Err(reserved(path));
        }
        let node = self.existing(path)?;
        check_version(path, &node.stat, version)?;
        if !node.children.is_empty() {
            return Err(KeeperError::new(
                ErrorCode::NotEmpty,
                format!("{path} has {} children", node.children.len()),
            ));
        }
        self.remove_node(stamp, path, journal);
        Ok(OpResult::Delete)
    }

    fn set_data(
        &mut self,
        stamp: Stamp,
        path: &str,
        data: &str,
        version: i32,
        journal: &mut Journal,
    ) -> Result<OpResult, KeeperError> {
        path::validate(path)?;
        if path::is_reserved(path) {
            return Err(reserved(path));
        }
        check_version(path, &self.existing(path)?.stat, version)?;
        let node = self.nodes.get_mut(path).expect("checked above");
        let old = std::mem::replace(&mut node.data, data.to_string());
        journal.undo.push(Undo::Changed {
            path: path.to_string(),
            data: Some(old),
            stat: node.stat.clone(),
            sequence: node.sequence,
        });
        node.stat.version = node.stat.version.wrapping_add(1);
        node.stat.mzxid = stamp.zxid;
        node.stat.mtime = stamp.time_ms;
        node.stat.data_length = data_length(data);
        journal
            .events
            .push((EventKind::DataChanged, path.to_string()));
        Ok(OpResult::SetData {
            stat: node.stat.clone(),
        })
    }

    /// Removes the childless node `path`, then every container ancestor it leaves empty.
    fn remove_node(&mut self, stamp: Stamp, path: &str, journal: &mut Journal) {
        let mut path = path.to_string();
        loop {
            let node = self.nodes.remove(&path).expect("caller checked it exists");
            assert!(node.children.is_empty(), "removing {path} with children");
            if node.is_ephemeral() {
                self.unindex_ephemeral(node.stat.ephemeral_owner, &path);
            }
            let parent_path = path::parent(&path)
                .expect("the root is never removed")
                .to_string();
            let parent = self.nodes.get_mut(&parent_path).expect("parents exist");
            journal.undo.push(Undo::Changed {
                path: parent_path.clone(),
                data: None,
                stat: parent.stat.clone(),
                sequence: parent.sequence,
            });
            parent.children.remove(path::name(&path));
            parent.stat.cversion = parent.stat.cversion.wrapping_add(1);
            parent.stat.pzxid = stamp.zxid;
            parent.stat.num_children -= 1;
            let cascade = parent.container && parent.children.is_empty();
            journal.events.push((EventKind::Deleted, path.clone()));
            journal
                .events
                .push((EventKind::ChildrenChanged, parent_path.clone()));
            journal.undo.push(Undo::Removed { path, node });
            if !cascade {
                return;
            }
            // A container goes in the same transaction as its last child, as if deleted.
            path = parent_path;
        }
    }

    fn unindex_ephemeral(&mut self, owner: SessionId, path: &str) {
        if let Some(paths) = self.ephemerals.get_mut(&owner) {
            paths.remove(path);
            if paths.is_empty() {
                self.ephemerals.remove(&owner);
            }
        }
    }

    fn roll_back(&mut self, undo: Vec<Undo>) {
        for step in undo.into_iter().rev() {
            match step {
                Undo::Inserted { path } => {
                    let node = self.nodes.remove(&path).expect("undo: inserted node");
                    debug_assert!(node.children.is_empty());
                    if node.is_ephemeral() {
                        self.unindex_ephemeral(node.stat.ephemeral_owner, &path);
                    }
                    let parent = path::parent(&path).expect("undo: not the root");
                    self.nodes
                        .get_mut(parent)
                        .expect("undo: parent")
                        .children
                        .remove(path::name(&path));
                }
                Undo::Removed { path, node } => {
                    if node.is_ephemeral() {
                        self.ephemerals
                            .entry(node.stat.ephemeral_owner)
                            .or_default()
                            .insert(path.clone());
                    }
                    let parent = path::parent(&path).expect("undo: not the root");
                    self.nodes
                        .get_mut(parent)
                        .expect("undo: parent")
                        .children
                        .insert(path::name(&path).to_string());
                    self.nodes.insert(path, node);
                }
                Undo::Changed {
                    path,
                    data,
                    stat,
                    sequence,
                } => {
                    let node = self.nodes.get_mut(&path).expect("undo: changed node");
                    node.stat = stat;
                    node.sequence = sequence;
                    if let Some(data) = data {
                        node.data = data;
                    }
                }
            }
        }
    }

    fn existing(&self, path: &str) -> Result<&Znode, KeeperError> {
        self.nodes
            .get(path)
            .ok_or_else(|| KeeperError::new(ErrorCode::NoNode, format!("{path} does not exist")))
    }
}

fn check_version(path: &str, stat: &Stat, expected: i32) -> Result<(), KeeperError> {
    if expected == ANY_VERSION || expected == stat.version {
        Ok(())
    } else {
        Err(KeeperError::new(
            ErrorCode::BadVersion,
            format!(
                "{path} is at version {}, not the expected {expected}",
                stat.version
            ),
        ))
    }
}

fn reserved(path: &str) -> KeeperError {
    KeeperError::new(
        ErrorCode::BadArguments,
        format!("{path} is under the reserved {}: read-only", path::RESERVED),
    )
}

/// The core bounds data far below 4 GiB before proposing; saturate rather than wrap anyway.
fn data_length(data: &str) -> u32 {
    u32::try_from(data.len()).unwrap_or(u32::MAX)
}

/// 64-bit FNV-1a: fixed constants, so a digest means the same in every process.
struct Fnv(u64);

impl Fnv {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;

    fn new() -> Fnv {
        Fnv(Fnv::OFFSET)
    }
    fn bytes(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= b as u64;
            self.0 = self.0.wrapping_mul(Fnv::PRIME);
        }
    }
    fn u64(&mut self, v: u64) {
        self.bytes(&v.to_le_bytes());
    }
    fn str(&mut self, s: &str) {
        self.u64(s.len() as u64);
        self.bytes(s.as_bytes());
    }
}
