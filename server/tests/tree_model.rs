//! The data tree against a small reference model.
//!
//! The model keeps every znode in one map keyed by full path and finds children, ephemerals
//! and everything else by scanning it; a multi runs on a copy that is thrown away if an op
//! fails. It is slow and obviously right, and it shares no code with `keeper::tree` or
//! `keeper::path`. Random transaction sequences (sessions opening, closing and expiring;
//! creates in every mode; deletes and sets with right, wrong and any versions; checks; multis
//! that succeed and that fail; ops on dead sessions; invalid and reserved paths) must give the
//! same result, the same events and the same tree, stat field for stat field, after every step.

use keeper::api::{CreateMode, ErrorCode, EventKind, Op, OpResult, SessionId, Stat, Zxid};
#[cfg(feature = "bugs")]
use keeper::core::Bug;
use keeper::tree::{Applied, DataTree, Outcome, SessionEntry, Snapshot, SnapshotNode};
use keeper::txn::{Txn, TxnBody};
use proptest::prelude::*;
use std::collections::BTreeMap;

// ---- the reference model ----------------------------------------------------------------

#[derive(Clone, Debug)]
struct ModelNode {
    data: String,
    stat: Stat,
    /// Children ever created under this node.
    seq: u64,
    container: bool,
}

#[derive(Clone, Debug)]
struct Model {
    nodes: BTreeMap<String, ModelNode>,
    /// Live sessions: id → timeout.
    sessions: BTreeMap<SessionId, u64>,
    zxid: Zxid,
}

type ModelResult = Result<Outcome, (ErrorCode, Option<Vec<OpResult>>)>;
type Events = Vec<(EventKind, String)>;

fn parent_of(p: &str) -> String {
    let i = p.rfind('/').unwrap();
    if i == 0 {
        "/".to_string()
    } else {
        p[..i].to_string()
    }
}

fn name_of(p: &str) -> String {
    p[p.rfind('/').unwrap() + 1..].to_string()
}

fn child_path(parent: &str, name: &str) -> String {
    if parent == "/" {
        format!("/{name}")
    } else {
        format!("{parent}/{name}")
    }
}

fn model_valid(p: &str) -> bool {
    if p == "/" {
        return true;
    }
    let bad_char = |c: char| {
        (c as u32) < 0x20
            || (0x7f..=0x9f).contains(&(c as u32))
            || (0xe000..=0xf8ff).contains(&(c as u32))
            || (0xfff0..=0xffff).contains(&(c as u32))
    };
    p.starts_with('/')
        && !p.ends_with('/')
        && !p.chars().any(bad_char)
        && p[1..]
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
}

fn model_reserved(p: &str) -> bool {
    p == "/zookeeper" || p.starts_with("/zookeeper/")
}

impl Model {
    fn new() -> Model {
        let mut nodes = BTreeMap::new();
        let blank = ModelNode {
            data: String::new(),
            stat: Stat::default(),
            seq: 0,
            container: false,
        };
        let mut root = blank.clone();
        root.stat.num_children = 1;
        nodes.insert("/".to_string(), root);
        nodes.insert("/zookeeper".to_string(), blank);
        Model {
            nodes,
            sessions: BTreeMap::new(),
            zxid: 0,
        }
    }

    fn children(&self, p: &str) -> Vec<String> {
        let mut names: Vec<String> = self
            .nodes
            .keys()
            .filter(|k| k.as_str() != "/" && parent_of(k) == p)
            .map(|k| name_of(k))
            .collect();
        names.sort();
        names
    }

    fn ephemerals(&self, s: SessionId) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.stat.ephemeral_owner == s)
            .map(|(p, _)| p.clone())
            .collect()
    }

    fn version_ok(&self, p: &str, version: i32) -> bool {
        version == -1 || self.nodes[p].stat.version == version
    }

    fn apply(&mut self, txn: &Txn) -> (ModelResult, Events) {
        self.zxid = txn.zxid;
        let mut events = Vec::new();
        let result = match &txn.body {
            TxnBody::CreateSession { timeout_ms } => {
                self.sessions.insert(txn.zxid, *timeout_ms);
                Ok(Outcome::SessionCreated {
                    session: txn.zxid,
                    timeout_ms: *timeout_ms,
                })
            }
            TxnBody::CloseSession { expired } => {
                if self.sessions.remove(&txn.session).is_none() {
                    Err((ErrorCode::SessionExpired, None))
                } else {
                    for p in self.ephemerals(txn.session) {
                        self.remove(txn.zxid, &p, &mut events);
                    }
                    Ok(Outcome::SessionClosed {
                        session: txn.session,
                        expired: *expired,
                    })
                }
            }
            _ if !self.sessions.contains_key(&txn.session) => {
                Err((ErrorCode::SessionExpired, None))
            }
            TxnBody::Op {
                op: Op::Check { .. },
            } => Err((ErrorCode::BadArguments, None)),
            TxnBody::Op { op } => match self.op(txn, op, &mut events) {
                Ok(OpResult::Create { path, stat }) => Ok(Outcome::Created { path, stat }),
                Ok(OpResult::Delete) => Ok(Outcome::Deleted),
                Ok(OpResult::SetData { stat }) => Ok(Outcome::DataSet { stat }),
                Ok(other) => panic!("model: single op gave {other:?}"),
                Err(code) => Err((code, None)),
            },
            TxnBody::Multi { ops } => {
                let before = self.clone();
                let mut results = Vec::new();
                let mut failure = None;
                for (i, op) in ops.iter().enumerate() {
                    match self.op(txn, op, &mut events) {
                        Ok(r) => results.push(r),
                        Err(code) => {
                            failure = Some((i, code));
                            break;
                        }
                    }
                }
                match failure {
                    None => Ok(Outcome::Multi { results }),
                    Some((failed, code)) => {
                        *self = before;
                        self.zxid = txn.zxid;
                        let per_op = (0..ops.len())
                            .map(|i| OpResult::Error {
                                error: match i.cmp(&failed) {
                                    std::cmp::Ordering::Less => ErrorCode::Ok,
                                    std::cmp::Ordering::Equal => code,
                                    std::cmp::Ordering::Greater => ErrorCode::RuntimeInconsistency,
                                },
                            })
                            .collect();
                        Err((code, Some(per_op)))
                    }
                }
            }
        };
        if result.is_err() {
            events.clear();
        }
        (result, events)
    }

    fn op(&mut self, txn: &Txn, op: &Op, events: &mut Events) -> Result<OpResult, ErrorCode> {
        match op {
            Op::Create { path, data, mode } => {
                let seq = mode.is_sequential();
                let valid = if seq {
                    model_valid(&format!("{path}0"))
                } else {
                    model_valid(path)
                };
                if !valid || model_reserved(path) {
                    return Err(ErrorCode::BadArguments);
                }
                if path == "/" && !seq {
                    return Err(ErrorCode::NodeExists);
                }
                let parent = if path == "/" {
                    "/".to_string()
                } else {
                    parent_of(path)
                };
                let Some(pnode) = self.nodes.get(&parent) else {
                    return Err(ErrorCode::NoNode);
                };
                let actual = if seq {
                    format!("{path}{:010}", pnode.seq)
                } else {
                    path.clone()
                };
                if self.nodes.contains_key(&actual) {
                    return Err(ErrorCode::NodeExists);
                }
                if pnode.stat.ephemeral_owner != 0 {
                    return Err(ErrorCode::NoChildrenForEphemerals);
                }
                let pnode = self.nodes.get_mut(&parent).unwrap();
                pnode.seq += 1;
                pnode.stat.cversion += 1;
                pnode.stat.pzxid = txn.zxid;
                pnode.stat.num_children += 1;
                let stat = Stat {
                    czxid: txn.zxid,
                    mzxid: txn.zxid,
                    pzxid: txn.zxid,
                    ctime: txn.time_ms,
                    mtime: txn.time_ms,
                    version: 0,
                    cversion: 0,
                    ephemeral_owner: if mode.is_ephemeral() { txn.session } else { 0 },
                    data_length: data.len() as u32,
                    num_children: 0,
                };
                self.nodes.insert(
                    actual.clone(),
                    ModelNode {
                        data: data.clone(),
                        stat: stat.clone(),
                        seq: 0,
                        container: *mode == CreateMode::Container,
                    },
                );
                events.push((EventKind::Created, actual.clone()));
                events.push((EventKind::ChildrenChanged, parent));
                Ok(OpResult::Create { path: actual, stat })
            }
            Op::Delete { path, version } => {
                if !model_valid(path) || path == "/" || model_reserved(path) {
                    return Err(ErrorCode::BadArguments);
                }
                if !self.nodes.contains_key(path) {
                    return Err(ErrorCode::NoNode);
                }
                if !self.version_ok(path, *version) {
                    return Err(ErrorCode::BadVersion);
                }
                if !self.children(path).is_empty() {
                    return Err(ErrorCode::NotEmpty);
                }
                self.remove(txn.zxid, path, events);
                Ok(OpResult::Delete)
            }
            Op::SetData {
                path,
                data,
                version,
            } => {
                if !model_valid(path) || model_reserved(path) {
                    return Err(ErrorCode::BadArguments);
                }
                if !self.nodes.contains_key(path) {
                    return Err(ErrorCode::NoNode);
                }
                if !self.version_ok(path, *version) {
                    return Err(ErrorCode::BadVersion);
                }
                let n = self.nodes.get_mut(path).unwrap();
                n.data = data.clone();
                n.stat.version += 1;
                n.stat.mzxid = txn.zxid;
                n.stat.mtime = txn.time_ms;
                n.stat.data_length = data.len() as u32;
                events.push((EventKind::DataChanged, path.clone()));
                Ok(OpResult::SetData {
                    stat: n.stat.clone(),
                })
            }
            Op::Check { path, version } => {
                if !model_valid(path) {
                    return Err(ErrorCode::BadArguments);
                }
                if !self.nodes.contains_key(path) {
                    return Err(ErrorCode::NoNode);
                }
                if !self.version_ok(path, *version) {
                    return Err(ErrorCode::BadVersion);
                }
                Ok(OpResult::Check)
            }
        }
    }

    /// Removes a childless node, then its parent if that is a container left empty.
    fn remove(&mut self, zxid: Zxid, p: &str, events: &mut Events) {
        self.nodes.remove(p).unwrap();
        let parent = parent_of(p);
        let pnode = self.nodes.get_mut(&parent).unwrap();
        pnode.stat.cversion += 1;
        pnode.stat.pzxid = zxid;
        pnode.stat.num_children -= 1;
        events.push((EventKind::Deleted, p.to_string()));
        events.push((EventKind::ChildrenChanged, parent.clone()));
        if self.nodes[&parent].container && self.children(&parent).is_empty() {
            self.remove(zxid, &parent, events);
        }
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot {
            zxid: self.zxid,
            nodes: self
                .nodes
                .iter()
                .map(|(p, n)| SnapshotNode {
                    path: p.clone(),
                    data: n.data.clone(),
                    stat: n.stat.clone(),
                    sequence: n.seq,
                    container: n.container,
                })
                .collect(),
            sessions: self
                .sessions
                .iter()
                .map(|(id, t)| (*id, SessionEntry { timeout_ms: *t }))
                .collect(),
        }
    }
}

// ---- comparing the tree with the model ----------------------------------------------------

fn assert_same_result(applied: &Applied, expected: &ModelResult, expected_events: &Events) {
    match (&applied.result, expected) {
        (Ok(got), Ok(want)) => assert_eq!(got, want),
        (Err(got), Err((code, results))) => {
            assert_eq!(got.error, *code, "error code ({})", got.message);
            assert_eq!(&got.results, results, "multi per-op results");
            assert!(!got.message.is_empty());
        }
        (got, want) => panic!("tree gave {got:?}, model {want:?}"),
    }
    assert_eq!(&applied.events, expected_events, "events");
}

fn assert_same_state(tree: &DataTree, model: &Model, dead: &[SessionId]) {
    assert_eq!(tree.last_applied(), model.zxid);
    assert_eq!(tree.znode_count(), model.nodes.len() as u64);
    for (p, n) in &model.nodes {
        let (data, stat) = tree.get(p).unwrap_or_else(|| panic!("{p} missing"));
        assert_eq!((data, stat), (n.data.as_str(), &n.stat), "{p}");
        let (children, stat) = tree.children(p).unwrap();
        let expected = model.children(p);
        assert_eq!(n.stat.num_children as usize, expected.len(), "model: {p}");
        assert_eq!(children, expected, "children of {p}");
        assert_eq!(stat, &n.stat);
    }
    let sessions: Vec<(SessionId, u64)> = tree.sessions().map(|(i, e)| (i, e.timeout_ms)).collect();
    let expected: Vec<(SessionId, u64)> = model.sessions.iter().map(|(i, t)| (*i, *t)).collect();
    assert_eq!(sessions, expected);
    for (id, entry) in tree.sessions() {
        assert_eq!(tree.session(id), Some(entry));
    }
    for s in model.sessions.keys().chain(dead) {
        assert_eq!(
            tree.ephemerals(*s),
            model.ephemerals(*s),
            "ephemerals of {s}"
        );
    }
    // Sequence counters, container flags and everything above, in one comparison.
    assert_eq!(tree.to_snapshot(), model.snapshot());
}

// ---- random transactions ------------------------------------------------------------------

/// Paths that are fixed, or picked from the nodes that exist when the step runs.
#[derive(Clone, Debug)]
enum PathGen {
    Fixed(&'static str),
    Existing(usize),
    Under(usize, &'static str),
    /// An existing node's path followed by `/`: a sequential prefix naming just the suffix.
    SlashUnder(usize),
}

#[derive(Clone, Debug)]
enum VersionGen {
    Any,
    Current,
    Off(i32),
    Literal(i32),
}

#[derive(Clone, Debug)]
enum OpGen {
    Create(PathGen, &'static str, CreateMode),
    Delete(PathGen, VersionGen),
    SetData(PathGen, &'static str, VersionGen),
    Check(PathGen, VersionGen),
}

#[derive(Clone, Debug)]
enum SessionGen {
    Live(usize),
    Dead(usize),
    Never,
}

#[derive(Clone, Debug)]
enum Step {
    NewSession(u64),
    Close(SessionGen, bool),
    Op(SessionGen, OpGen),
    Multi(SessionGen, Vec<OpGen>),
    /// Replace the tree by one restored from its own snapshot.
    Restore,
}

const VALID_PATHS: &[&str] = &[
    "/a",
    "/b",
    "/a/b",
    "/a/a",
    "/b/a",
    "/a/b/c",
    "/",
    "/zookeeper",
    "/zookeeper/x",
    "/a0000000000",
    "/a/0000000000",
    "/a/0000000001",
    "/a/s0000000000",
    "/a/s0000000001",
];

const INVALID_PATHS: &[&str] = &[
    "",
    "a",
    "/a/",
    "/a//b",
    "/a/.",
    "/..",
    "/a\u{1}",
    "/\u{f000}",
    "/a/\u{7f}",
];

const NAMES: &[&str] = &["a", "b", "c", "s"];
const DATA: &[&str] = &["", "x", "yy", "zzz-zzz"];

fn path_gen() -> impl Strategy<Value = PathGen> {
    prop_oneof![
        2 => prop::sample::select(VALID_PATHS).prop_map(PathGen::Fixed),
        1 => prop::sample::select(INVALID_PATHS).prop_map(PathGen::Fixed),
        4 => any::<usize>().prop_map(PathGen::Existing),
        3 => (any::<usize>(), prop::sample::select(NAMES)).prop_map(|(i, n)| PathGen::Under(i, n)),
        1 => any::<usize>().prop_map(PathGen::SlashUnder),
    ]
}

fn version_gen() -> impl Strategy<Value = VersionGen> {
    prop_oneof![
        3 => Just(VersionGen::Any),
        4 => Just(VersionGen::Current),
        1 => (1..3i32).prop_map(VersionGen::Off),
        1 => (-2..3i32).prop_map(VersionGen::Literal),
    ]
}

fn mode_gen() -> impl Strategy<Value = CreateMode> {
    prop::sample::select(vec![
        CreateMode::Persistent,
        CreateMode::Ephemeral,
        CreateMode::PersistentSequential,
        CreateMode::EphemeralSequential,
        CreateMode::Container,
    ])
}

fn op_gen() -> impl Strategy<Value = OpGen> {
    let data = || prop::sample::select(DATA);
    prop_oneof![
        4 => (path_gen(), data(), mode_gen()).prop_map(|(p, d, m)| OpGen::Create(p, d, m)),
        3 => (path_gen(), version_gen()).prop_map(|(p, v)| OpGen::Delete(p, v)),
        2 => (path_gen(), data(), version_gen()).prop_map(|(p, d, v)| OpGen::SetData(p, d, v)),
        1 => (path_gen(), version_gen()).prop_map(|(p, v)| OpGen::Check(p, v)),
    ]
}

fn session_gen() -> impl Strategy<Value = SessionGen> {
    prop_oneof![
        12 => any::<usize>().prop_map(SessionGen::Live),
        1 => any::<usize>().prop_map(SessionGen::Dead),
        1 => Just(SessionGen::Never),
    ]
}

fn step_gen() -> impl Strategy<Value = Step> {
    prop_oneof![
        2 => (1_000..10_000u64).prop_map(Step::NewSession),
        1 => (session_gen(), any::<bool>()).prop_map(|(s, e)| Step::Close(s, e)),
        12 => (session_gen(), op_gen()).prop_map(|(s, o)| Step::Op(s, o)),
        5 => (session_gen(), prop::collection::vec(op_gen(), 0..5))
            .prop_map(|(s, ops)| Step::Multi(s, ops)),
        1 => Just(Step::Restore),
    ]
}

struct Resolver<'a> {
    model: &'a Model,
    dead: &'a [SessionId],
}

impl Resolver<'_> {
    fn path(&self, g: &PathGen) -> String {
        // Mostly the nodes the test made (and the root as a parent): the root and /zookeeper
        // themselves come up as fixed paths.
        let made: Vec<&str> = self
            .model
            .nodes
            .keys()
            .map(|p| p.as_str())
            .filter(|p| *p != "/" && !p.starts_with("/zookeeper"))
            .collect();
        let parents: Vec<&str> = std::iter::once("/").chain(made.iter().copied()).collect();
        match g {
            PathGen::Fixed(p) => p.to_string(),
            PathGen::Existing(_) if made.is_empty() => "/a".to_string(),
            PathGen::Existing(i) => made[i % made.len()].to_string(),
            PathGen::Under(i, name) => child_path(parents[i % parents.len()], name),
            PathGen::SlashUnder(i) => match parents[i % parents.len()] {
                "/" => "/".to_string(),
                p => format!("{p}/"),
            },
        }
    }

    fn version(&self, path: &str, g: &VersionGen) -> i32 {
        let current = self.model.nodes.get(path).map_or(0, |n| n.stat.version);
        match g {
            VersionGen::Any => -1,
            VersionGen::Current => current,
            VersionGen::Off(d) => current + d,
            VersionGen::Literal(v) => *v,
        }
    }

    fn op(&self, g: &OpGen) -> Op {
        match g {
            OpGen::Create(p, d, mode) => Op::Create {
                path: self.path(p),
                data: d.to_string(),
                mode: *mode,
            },
            OpGen::Delete(p, v) => {
                let path = self.path(p);
                let version = self.version(&path, v);
                Op::Delete { path, version }
            }
            OpGen::SetData(p, d, v) => {
                let path = self.path(p);
                let version = self.version(&path, v);
                Op::SetData {
                    path,
                    data: d.to_string(),
                    version,
                }
            }
            OpGen::Check(p, v) => {
                let path = self.path(p);
                let version = self.version(&path, v);
                Op::Check { path, version }
            }
        }
    }

    fn session(&self, g: &SessionGen) -> SessionId {
        let live: Vec<SessionId> = self.model.sessions.keys().copied().collect();
        match g {
            SessionGen::Live(i) if !live.is_empty() => live[i % live.len()],
            SessionGen::Dead(i) if !self.dead.is_empty() => self.dead[i % self.dead.len()],
            _ => 0xdead,
        }
    }
}

fn txn(zxid: Zxid, session: SessionId, body: TxnBody) -> Txn {
    Txn {
        zxid,
        time_ms: 1_700_000_000_000 + zxid * 3,
        session,
        origin: None,
        body,
    }
}

fn run(steps: &[Step]) {
    let mut tree = DataTree::new();
    let mut model = Model::new();
    let mut dead: Vec<SessionId> = Vec::new();
    // Zxids jump epochs now and then, as they do across leader changes.
    let mut zxid: Zxid = keeper::api::make_zxid(1, 0);
    assert_same_state(&tree, &model, &dead);
    for (i, step) in steps.iter().enumerate() {
        let r = Resolver {
            model: &model,
            dead: &dead,
        };
        zxid = if i % 17 == 16 {
            keeper::api::make_zxid(keeper::api::epoch_of(zxid) + 1, 1)
        } else {
            zxid + 1
        };
        let t = match step {
            Step::Restore => {
                let snapshot = tree.to_snapshot();
                let json = serde_json::to_string(&snapshot).unwrap();
                let decoded: Snapshot = serde_json::from_str(&json).unwrap();
                let restored = DataTree::from_snapshot(&decoded).unwrap();
                assert_eq!(restored.digest(), tree.digest());
                assert_eq!(restored.to_snapshot(), snapshot);
                tree = restored;
                continue;
            }
            Step::NewSession(timeout_ms) => txn(
                zxid,
                0,
                TxnBody::CreateSession {
                    timeout_ms: *timeout_ms,
                },
            ),
            Step::Close(s, expired) => txn(
                zxid,
                r.session(s),
                TxnBody::CloseSession { expired: *expired },
            ),
            Step::Op(s, op) => txn(zxid, r.session(s), TxnBody::Op { op: r.op(op) }),
            Step::Multi(s, ops) => txn(
                zxid,
                r.session(s),
                TxnBody::Multi {
                    ops: ops.iter().map(|o| r.op(o)).collect(),
                },
            ),
        };
        let before = tree.digest();
        let applied = tree.apply(&t);
        let (expected, events) = model.apply(&t);
        assert_same_result(&applied, &expected, &events);
        if applied.result.is_err() {
            assert_eq!(
                tree.digest(),
                before,
                "a failed transaction changed the tree"
            );
        }
        if let Ok(Outcome::SessionClosed { session, .. }) = applied.result {
            dead.push(session);
        }
        assert_same_state(&tree, &model, &dead);
    }
}

/// 1000 random sequences by default (about a second); `PROPTEST_CASES` overrides it for a
/// longer hunt.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn tree_matches_model(steps in prop::collection::vec(step_gen(), 1..80)) {
        run(&steps);
    }

    /// Two trees that reach the same state by different routes (one restored from a
    /// snapshot halfway) keep agreeing, digest included.
    #[test]
    fn restored_tree_behaves_the_same(
        steps in prop::collection::vec(step_gen(), 1..60),
        cut in any::<usize>(),
    ) {
        let steps: Vec<Step> = steps.into_iter().filter(|s| !matches!(s, Step::Restore)).collect();
        let cut = cut % (steps.len() + 1);
        let mut original = DataTree::new();
        let mut model = Model::new();
        let mut dead = Vec::new();
        let mut restored: Option<DataTree> = None;
        for (i, step) in steps.iter().enumerate() {
            if i == cut {
                restored = Some(DataTree::from_snapshot(&original.to_snapshot()).unwrap());
            }
            let r = Resolver { model: &model, dead: &dead };
            let zxid = (i + 1) as Zxid;
            let t = match step {
                Step::NewSession(t) => txn(zxid, 0, TxnBody::CreateSession { timeout_ms: *t }),
                Step::Close(s, e) => txn(zxid, r.session(s), TxnBody::CloseSession { expired: *e }),
                Step::Op(s, op) => txn(zxid, r.session(s), TxnBody::Op { op: r.op(op) }),
                Step::Multi(s, ops) => txn(
                    zxid,
                    r.session(s),
                    TxnBody::Multi { ops: ops.iter().map(|o| r.op(o)).collect() },
                ),
                Step::Restore => unreachable!(),
            };
            let (_, _) = model.apply(&t);
            if let TxnBody::CloseSession { .. } = t.body {
                dead.push(t.session);
            }
            let a = original.apply(&t);
            if let Some(restored) = restored.as_mut() {
                prop_assert_eq!(&restored.apply(&t), &a);
                prop_assert_eq!(restored.digest(), original.digest());
            }
        }
        if let Some(restored) = restored {
            prop_assert_eq!(restored.to_snapshot(), original.to_snapshot());
        }
    }
}

// ---- ZooKeeper's own examples -------------------------------------------------------------

struct Fixture {
    tree: DataTree,
    zxid: Zxid,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture {
            tree: DataTree::new(),
            zxid: 0,
        }
    }

    fn apply(&mut self, session: SessionId, body: TxnBody) -> Applied {
        self.zxid += 1;
        self.tree.apply(&txn(self.zxid, session, body))
    }

    fn session(&mut self) -> SessionId {
        match self
            .apply(0, TxnBody::CreateSession { timeout_ms: 4_000 })
            .result
        {
            Ok(Outcome::SessionCreated { session, .. }) => session,
            other => panic!("{other:?}"),
        }
    }

    fn op(&mut self, session: SessionId, op: Op) -> Applied {
        self.apply(session, TxnBody::Op { op })
    }

    fn create(&mut self, session: SessionId, path: &str, mode: CreateMode) -> Applied {
        self.op(session, create(path, mode))
    }

    fn close(&mut self, session: SessionId, expired: bool) -> Applied {
        self.apply(session, TxnBody::CloseSession { expired })
    }

    fn children(&self, path: &str) -> Vec<String> {
        self.tree.children(path).map(|(c, _)| c).unwrap_or_default()
    }
}

fn create(path: &str, mode: CreateMode) -> Op {
    Op::Create {
        path: path.to_string(),
        data: String::new(),
        mode,
    }
}

fn created_path(applied: &Applied) -> String {
    match &applied.result {
        Ok(Outcome::Created { path, .. }) => path.clone(),
        other => panic!("expected a create, got {other:?}"),
    }
}

fn error_of(applied: &Applied) -> ErrorCode {
    match &applied.result {
        Err(e) => {
            assert!(applied.events.is_empty());
            e.error
        }
        Ok(o) => panic!("expected an error, got {o:?}"),
    }
}

fn ev(kind: EventKind, path: &str) -> (EventKind, String) {
    (kind, path.to_string())
}

#[test]
fn leader_election_walkthrough() {
    let mut f = Fixture::new();
    let admin = f.session();
    let created = f.op(
        admin,
        Op::Create {
            path: "/election".into(),
            data: "election".into(),
            mode: CreateMode::Persistent,
        },
    );
    assert_eq!(created_path(&created), "/election");
    let shells: Vec<SessionId> = (0..3).map(|_| f.session()).collect();
    let mut names = Vec::new();
    for s in &shells {
        let a = f.create(*s, "/election/leader_", CreateMode::EphemeralSequential);
        assert_eq!(
            a.events,
            vec![
                ev(EventKind::Created, &created_path(&a)),
                ev(EventKind::ChildrenChanged, "/election")
            ]
        );
        names.push(created_path(&a));
    }
    assert_eq!(
        names,
        [
            "/election/leader_0000000000",
            "/election/leader_0000000001",
            "/election/leader_0000000002"
        ]
    );
    assert_eq!(f.tree.get(&names[0]).unwrap().1.ephemeral_owner, shells[0]);
    assert_eq!(f.tree.ephemerals(shells[0]), vec![names[0].clone()]);

    let closed = f.close(shells[0], false);
    assert_eq!(
        closed.result,
        Ok(Outcome::SessionClosed {
            session: shells[0],
            expired: false
        })
    );
    assert_eq!(
        closed.events,
        vec![
            ev(EventKind::Deleted, &names[0]),
            ev(EventKind::ChildrenChanged, "/election")
        ]
    );
    assert_eq!(
        f.children("/election"),
        ["leader_0000000001", "leader_0000000002"]
    );
    // The counter never goes back: the next contender is 3, not a reused 0.
    let again = f.create(
        shells[1],
        "/election/leader_",
        CreateMode::EphemeralSequential,
    );
    assert_eq!(created_path(&again), "/election/leader_0000000003");
    let stat = f.tree.get("/election").unwrap().1.clone();
    assert_eq!((stat.num_children, stat.cversion), (3, 5));
}

#[test]
fn fresh_tree_has_root_and_reserved_node() {
    let mut f = Fixture::new();
    assert_eq!(f.tree.znode_count(), 2);
    assert_eq!(f.children("/"), ["zookeeper"]);
    assert_eq!(f.tree.get("/").unwrap().1.num_children, 1);
    assert!(f.tree.get("/zookeeper").is_some());
    assert_eq!(f.tree.last_applied(), 0);
    let s = f.session();
    for op in [
        create("/zookeeper", CreateMode::Persistent),
        create("/zookeeper/x", CreateMode::Persistent),
        create("/zookeeper/", CreateMode::PersistentSequential),
        Op::Delete {
            path: "/zookeeper".into(),
            version: -1,
        },
        Op::SetData {
            path: "/zookeeper".into(),
            data: "x".into(),
            version: -1,
        },
        Op::Delete {
            path: "/".into(),
            version: -1,
        },
    ] {
        assert_eq!(
            error_of(&f.op(s, op.clone())),
            ErrorCode::BadArguments,
            "{op:?}"
        );
    }
    assert_eq!(
        error_of(&f.create(s, "/", CreateMode::Persistent)),
        ErrorCode::NodeExists
    );
    // The first sequential child of the root is 0: /zookeeper was never a counted creation.
    assert_eq!(
        created_path(&f.create(s, "/", CreateMode::PersistentSequential)),
        "/0000000000"
    );
    assert_eq!(
        created_path(&f.create(s, "/job-", CreateMode::PersistentSequential)),
        "/job-0000000001"
    );
    // Setting the root's data is allowed, as in ZooKeeper.
    let set = f.op(
        s,
        Op::SetData {
            path: "/".into(),
            data: "r".into(),
            version: 0,
        },
    );
    assert!(matches!(set.result, Ok(Outcome::DataSet { .. })));
    assert_eq!(set.events, vec![ev(EventKind::DataChanged, "/")]);
}

#[test]
fn sequential_prefix_ending_in_slash() {
    let mut f = Fixture::new();
    let s = f.session();
    f.create(s, "/q", CreateMode::Persistent);
    f.create(s, "/q/x", CreateMode::Persistent);
    f.create(s, "/q/y", CreateMode::Persistent);
    f.op(
        s,
        Op::Delete {
            path: "/q/y".into(),
            version: -1,
        },
    );
    assert_eq!(
        created_path(&f.create(s, "/q/", CreateMode::PersistentSequential)),
        "/q/0000000002"
    );
    assert_eq!(
        error_of(&f.create(s, "/q/", CreateMode::Persistent)),
        ErrorCode::BadArguments
    );
}

#[test]
fn containers_go_with_their_last_child() {
    let mut f = Fixture::new();
    let s = f.session();
    f.create(s, "/locks", CreateMode::Container);
    f.create(s, "/locks/a", CreateMode::Container);
    // An empty container that never had a child stays.
    f.create(s, "/empty", CreateMode::Container);
    let lock = created_path(&f.create(s, "/locks/a/lock-", CreateMode::EphemeralSequential));
    assert_eq!(lock, "/locks/a/lock-0000000000");
    let before_root = f.tree.get("/").unwrap().1.clone();

    let closed = f.close(s, true);
    assert_eq!(
        closed.events,
        vec![
            ev(EventKind::Deleted, "/locks/a/lock-0000000000"),
            ev(EventKind::ChildrenChanged, "/locks/a"),
            ev(EventKind::Deleted, "/locks/a"),
            ev(EventKind::ChildrenChanged, "/locks"),
            ev(EventKind::Deleted, "/locks"),
            ev(EventKind::ChildrenChanged, "/"),
        ]
    );
    assert_eq!(f.children("/"), ["empty", "zookeeper"]);
    let root = f.tree.get("/").unwrap().1;
    assert_eq!(root.pzxid, f.zxid);
    assert_eq!(root.cversion, before_root.cversion + 1);
    assert_eq!(root.num_children, before_root.num_children - 1);

    // A container with a second child survives the first child's deletion.
    let s = f.session();
    f.create(s, "/c", CreateMode::Container);
    f.create(s, "/c/x", CreateMode::Persistent);
    f.create(s, "/c/y", CreateMode::Persistent);
    let del = |p: &str| Op::Delete {
        path: p.into(),
        version: -1,
    };
    f.op(s, del("/c/x"));
    assert!(f.tree.get("/c").is_some());
    let gone = f.op(s, del("/c/y"));
    assert_eq!(gone.result, Ok(Outcome::Deleted));
    assert!(f.tree.get("/c").is_none());
}

#[test]
fn ephemerals_cannot_have_children() {
    let mut f = Fixture::new();
    let s = f.session();
    f.create(s, "/e", CreateMode::Ephemeral);
    for mode in [
        CreateMode::Persistent,
        CreateMode::Ephemeral,
        CreateMode::PersistentSequential,
        CreateMode::Container,
    ] {
        assert_eq!(
            error_of(&f.create(s, "/e/child", mode)),
            ErrorCode::NoChildrenForEphemerals
        );
    }
    assert_eq!(
        error_of(&f.create(s, "/missing/child", CreateMode::Persistent)),
        ErrorCode::NoNode
    );
    assert_eq!(
        error_of(&f.create(s, "/e", CreateMode::Persistent)),
        ErrorCode::NodeExists
    );
}

#[test]
fn multi_is_all_or_nothing() {
    let mut f = Fixture::new();
    let s = f.session();
    f.create(s, "/m", CreateMode::Persistent);
    let before = f.tree.to_snapshot();
    let ops = vec![
        create("/m/a", CreateMode::Persistent),
        create("/m/seq-", CreateMode::EphemeralSequential),
        Op::SetData {
            path: "/m".into(),
            data: "changed".into(),
            version: 0,
        },
        Op::Delete {
            path: "/m/a".into(),
            version: 0,
        },
        Op::Check {
            path: "/m/a".into(),
            version: -1,
        },
        create("/m/b", CreateMode::Persistent),
    ];
    let failed = f.apply(s, TxnBody::Multi { ops: ops.clone() });
    let err = failed.result.clone().unwrap_err();
    assert_eq!(err.error, ErrorCode::NoNode);
    let code = |error| OpResult::Error { error };
    assert_eq!(
        err.results,
        Some(vec![
            code(ErrorCode::Ok),
            code(ErrorCode::Ok),
            code(ErrorCode::Ok),
            code(ErrorCode::Ok),
            code(ErrorCode::NoNode),
            code(ErrorCode::RuntimeInconsistency),
        ])
    );
    assert!(failed.events.is_empty());
    // Everything is as before, the sequence counter and the ephemeral index included.
    let mut after = f.tree.to_snapshot();
    assert_eq!(after.zxid, f.zxid);
    after.zxid = before.zxid;
    assert_eq!(after, before);
    assert!(f.tree.ephemerals(s).is_empty());

    // Without the failing check the same ops apply, each seeing the ones before it.
    let mut good = ops;
    good.remove(4);
    let ok = f.apply(s, TxnBody::Multi { ops: good });
    let Ok(Outcome::Multi { results }) = ok.result else {
        panic!("{ok:?}")
    };
    assert_eq!(results.len(), 5);
    assert!(matches!(&results[1], OpResult::Create { path, .. } if path == "/m/seq-0000000001"));
    assert!(matches!(&results[2], OpResult::SetData { stat } if stat.version == 1));
    assert_eq!(results[3], OpResult::Delete);
    assert_eq!(
        ok.events,
        vec![
            ev(EventKind::Created, "/m/a"),
            ev(EventKind::ChildrenChanged, "/m"),
            ev(EventKind::Created, "/m/seq-0000000001"),
            ev(EventKind::ChildrenChanged, "/m"),
            ev(EventKind::DataChanged, "/m"),
            ev(EventKind::Deleted, "/m/a"),
            ev(EventKind::ChildrenChanged, "/m"),
            ev(EventKind::Created, "/m/b"),
            ev(EventKind::ChildrenChanged, "/m"),
        ]
    );
    assert_eq!(f.tree.ephemerals(s), ["/m/seq-0000000001"]);
    // An empty multi succeeds and changes nothing.
    let empty = f.apply(s, TxnBody::Multi { ops: vec![] });
    assert_eq!(empty.result, Ok(Outcome::Multi { results: vec![] }));
}

#[test]
fn versions_and_errors() {
    let mut f = Fixture::new();
    let s = f.session();
    f.create(s, "/v", CreateMode::Persistent);
    f.create(s, "/v/child", CreateMode::Persistent);
    let set = |version| Op::SetData {
        path: "/v".into(),
        data: "d".into(),
        version,
    };
    assert_eq!(error_of(&f.op(s, set(1))), ErrorCode::BadVersion);
    let Ok(Outcome::DataSet { stat }) = f.op(s, set(0)).result else {
        panic!()
    };
    assert_eq!((stat.version, stat.mzxid, stat.data_length), (1, f.zxid, 1));
    assert_eq!(error_of(&f.op(s, set(0))), ErrorCode::BadVersion);
    let delete = |path: &str, version| Op::Delete {
        path: path.into(),
        version,
    };
    assert_eq!(error_of(&f.op(s, delete("/v", 1))), ErrorCode::NotEmpty);
    assert_eq!(error_of(&f.op(s, delete("/v", 0))), ErrorCode::BadVersion);
    assert_eq!(error_of(&f.op(s, delete("/nope", -1))), ErrorCode::NoNode);
    assert_eq!(
        error_of(&f.op(s, delete("/v/", -1))),
        ErrorCode::BadArguments
    );
    let check = Op::Check {
        path: "/v".into(),
        version: -1,
    };
    assert_eq!(error_of(&f.op(s, check)), ErrorCode::BadArguments);
    // Dead and unknown sessions.
    assert_eq!(
        error_of(&f.create(0xbad, "/x", CreateMode::Persistent)),
        ErrorCode::SessionExpired
    );
    assert_eq!(error_of(&f.close(0xbad, true)), ErrorCode::SessionExpired);
    f.close(s, false);
    assert_eq!(
        error_of(&f.create(s, "/x", CreateMode::Persistent)),
        ErrorCode::SessionExpired
    );
    assert_eq!(
        error_of(&f.apply(s, TxnBody::Multi { ops: vec![] })),
        ErrorCode::SessionExpired
    );
    // A failed transaction still advances last_applied.
    assert_eq!(f.tree.last_applied(), f.zxid);
}

#[test]
#[should_panic(expected = "zxids must strictly increase")]
fn out_of_order_zxid_stops_the_replica() {
    let mut tree = DataTree::new();
    tree.apply(&txn(5, 0, TxnBody::CreateSession { timeout_ms: 1 }));
    tree.apply(&txn(5, 0, TxnBody::CreateSession { timeout_ms: 1 }));
}

#[test]
fn digest_is_deterministic_and_sensitive() {
    let build = || {
        let mut f = Fixture::new();
        let s = f.session();
        f.create(s, "/d", CreateMode::Persistent);
        f.create(s, "/d/e", CreateMode::Ephemeral);
        f
    };
    let (mut a, b) = (build(), build());
    assert_eq!(a.tree.digest(), b.tree.digest());
    // Fixed constants, no per-process hashing seed: this value is the same in every process
    // (it changes only if the encoding does, which would break digest comparisons between
    // old and new servers).
    assert_eq!(a.tree.digest(), 0x19ff_2fa2_774f_653d);
    assert_ne!(DataTree::new().digest(), a.tree.digest());
    let s = a.tree.sessions().next().unwrap().0;
    a.op(
        s,
        Op::SetData {
            path: "/d".into(),
            data: "".into(),
            version: -1,
        },
    );
    assert_ne!(
        a.tree.digest(),
        b.tree.digest(),
        "version and mzxid changed"
    );
}

#[test]
fn malformed_snapshots_are_refused() {
    let mut f = Fixture::new();
    let s = f.session();
    f.create(s, "/p", CreateMode::Persistent);
    f.create(s, "/p/c", CreateMode::Persistent);
    let good = f.tree.to_snapshot();
    assert!(DataTree::from_snapshot(&good).is_ok());
    type Damage = Box<dyn Fn(&mut Snapshot)>;
    let broken: Vec<(&str, Damage)> = vec![
        ("empty", Box::new(|s| s.nodes.clear())),
        ("child first", Box::new(|s| s.nodes.swap(1, 2))),
        ("orphan", Box::new(|s| s.nodes.retain(|n| n.path != "/p"))),
        ("count", Box::new(|s| s.nodes[0].stat.num_children += 1)),
        ("duplicate", Box::new(|s| s.nodes.push(s.nodes[1].clone()))),
        ("bad path", Box::new(|s| s.nodes[2].path = "/p/".into())),
        ("length", Box::new(|s| s.nodes[2].data = "xyz".into())),
        (
            "no reserved",
            Box::new(|s| {
                s.nodes.retain(|n| n.path != "/zookeeper");
                s.nodes[0].stat.num_children -= 1;
            }),
        ),
        ("container root", Box::new(|s| s.nodes[0].container = true)),
        (
            "ephemeral /zookeeper",
            Box::new(|s| {
                let owner = s.sessions[0].0;
                let reserved = s.nodes.iter_mut().find(|n| n.path == "/zookeeper");
                reserved.unwrap().stat.ephemeral_owner = owner;
            }),
        ),
        (
            "session",
            Box::new(|s| s.sessions.push(s.sessions[0].clone())),
        ),
        ("future session", Box::new(|s| s.sessions[0].0 = s.zxid + 1)),
    ];
    for (what, damage) in broken {
        let mut bad = good.clone();
        damage(&mut bad);
        let err = DataTree::from_snapshot(&bad).expect_err(what);
        assert!(!err.is_empty(), "{what}");
    }
}

// ---- fault injection (issue 6) ---------------------------------------------------------------

// Faults exist only in a build with the `bugs` feature.
#[cfg(feature = "bugs")]
#[test]
fn ephemeral_leak_keeps_an_expired_sessions_nodes() {
    let mut f = Fixture::new();
    f.tree.set_bug(Some(Bug::EphemeralLeak));
    let (a, b) = (f.session(), f.session());
    f.create(a, "/a", CreateMode::Ephemeral);
    f.create(b, "/b", CreateMode::Ephemeral);
    // An explicit close still cleans up; only an expiry leaks.
    f.close(a, false);
    assert!(f.tree.get("/a").is_none());
    let expired = f.close(b, true);
    assert!(expired.result.is_ok());
    assert!(expired.events.is_empty());
    assert!(f.tree.session(b).is_none());
    assert_eq!(f.tree.get("/b").unwrap().1.ephemeral_owner, b);
    // The leaked node survives a snapshot round trip.
    let restored = DataTree::from_snapshot(&f.tree.to_snapshot()).unwrap();
    assert!(restored.get("/b").is_some());
}

// Faults exist only in a build with the `bugs` feature.
#[cfg(feature = "bugs")]
#[test]
fn sequence_reuse_hands_out_a_suffix_twice_after_restore() {
    let mut f = Fixture::new();
    let s = f.session();
    f.create(s, "/q", CreateMode::Persistent);
    f.create(s, "/q/n-", CreateMode::PersistentSequential);
    let second = created_path(&f.create(s, "/q/n-", CreateMode::PersistentSequential));
    assert_eq!(second, "/q/n-0000000001");
    f.op(
        s,
        Op::Delete {
            path: second,
            version: -1,
        },
    );
    let snapshot = f.tree.to_snapshot();
    let next_sequential = |tree: &mut DataTree, zxid: Zxid| {
        let op = create("/q/n-", CreateMode::PersistentSequential);
        created_path(&tree.apply(&txn(zxid, s, TxnBody::Op { op })))
    };

    // Correct: a restored tree continues the counter.
    let mut good = DataTree::from_snapshot(&snapshot).unwrap();
    good.set_bug(None);
    assert_eq!(
        next_sequential(&mut good, snapshot.zxid + 1),
        "/q/n-0000000002"
    );

    // Both ways the core may turn the bug on: the counter restarts at num_children (1), so
    // suffix 0000000001, already handed out once, is handed out again.
    let mut via_set = DataTree::from_snapshot(&snapshot).unwrap();
    via_set.set_bug(Some(Bug::SequenceReuse));
    let via_ctor = DataTree::from_snapshot_with_bug(&snapshot, Some(Bug::SequenceReuse)).unwrap();
    assert_eq!(via_ctor.bug(), Some(Bug::SequenceReuse));
    for mut tree in [via_set, via_ctor] {
        assert_eq!(
            next_sequential(&mut tree, snapshot.zxid + 1),
            "/q/n-0000000001"
        );
    }

    // Turning the bug on once transactions have been applied changes nothing.
    let mut late = DataTree::from_snapshot(&snapshot).unwrap();
    let op = create("/q/x", CreateMode::Persistent);
    late.apply(&txn(snapshot.zxid + 1, s, TxnBody::Op { op }));
    late.set_bug(Some(Bug::SequenceReuse));
    assert_eq!(
        next_sequential(&mut late, snapshot.zxid + 2),
        "/q/n-0000000003"
    );
}
