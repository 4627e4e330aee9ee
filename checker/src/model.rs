//! Sequential specifications the linearizability search checks against, as stateright
//! [`SequentialSpec`]s, and how each reads operations of a history.
//!
//! A new model is one more [`Model`] implementation: the search in `linear.rs` only needs a spec
//! state that is `Clone + Eq + Hash`, and `translate` to turn history operations into the spec's
//! operations and returns.

use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::Hash;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use stateright::semantics::SequentialSpec;

use crate::history::{EventType, Op};

/// A value of one key's history, interned: the search compares and hashes small integers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Val(pub u32);

impl Val {
    pub const NIL: Val = Val(0);
    /// Stands for every value written by an `info` operation that no operation of the key
    /// compares the state with (see [`Footprint::erase`]); no history value interns to it.
    pub const UNSEEN: Val = Val(1);
}

/// How [`Val::UNSEEN`] is shown.
const UNSEEN_SHOWN: &str = "(a value no operation reads)";

/// The interner's key for [`Val::UNSEEN`]: not the text of any JSON value.
const UNSEEN_KEY: &str = "\0unseen";

/// The values seen in one key's history.
#[derive(Debug, Clone)]
pub struct Interner {
    ids: HashMap<String, u32>,
    values: Vec<Value>,
}

impl Default for Interner {
    fn default() -> Self {
        let mut ids = HashMap::new();
        ids.insert("null".to_string(), Val::NIL.0);
        ids.insert(UNSEEN_KEY.to_string(), Val::UNSEEN.0);
        Interner {
            ids,
            values: vec![Value::Null, Value::String(UNSEEN_SHOWN.into())],
        }
    }
}

impl Interner {
    pub fn intern(&mut self, v: &Value) -> Val {
        let text = match v {
            Value::Null => return Val::NIL,
            other => other.to_string(),
        };
        if let Some(&id) = self.ids.get(&text) {
            return Val(id);
        }
        let id = self.values.len() as u32;
        self.values.push(v.clone());
        self.ids.insert(text, id);
        Val(id)
    }

    pub fn value(&self, v: Val) -> &Value {
        self.values.get(v.0 as usize).unwrap_or(&Value::Null)
    }

    pub fn show(&self, v: Val) -> String {
        if v == Val::UNSEEN {
            return UNSEEN_SHOWN.into();
        }
        match self.value(v) {
            Value::Null => "nil".into(),
            other => other.to_string(),
        }
    }
}

/// An operation of the history in the spec's terms. `ret` is `None` for an `info` operation:
/// it may have taken effect with any result, or not at all.
pub struct Step<S: SequentialSpec> {
    pub op: S::Op,
    pub ret: Option<S::Ret>,
}

/// What an operation needs of the state, in a coarse view of it (a *tag*): the search skips an
/// `info` operation when nothing left to linearize can see the state it leaves (see
/// `linear::search_order`). A spec that says nothing (`Needs::Unknown`, `leaves` `None`) is
/// searched as before. The contract, on which the search's soundness rests:
/// - `needs(op, ret)` is `Needs::Any` only if, from every state, `op` is allowed with `ret` (an
///   `info` operation: always) and the state after it is the same whatever the state before;
/// - `Needs::One(t)` only if, from every state whose tag is not `t`, `op` is not allowed with
///   `ret`, or, for an `info` operation (`ret` `None`), leaves the state as it is;
/// - `leaves(op) == Some(t)` only if every state `op` changes becomes one of tag `t`.
pub trait Footprint: SequentialSpec {
    type Tag: Copy + Eq + Hash + Debug;
    fn needs(_op: &Self::Op, _ret: Option<&Self::Ret>) -> Needs<Self::Tag> {
        Needs::Unknown
    }
    fn leaves(_op: &Self::Op) -> Option<Self::Tag> {
        None
    }
    /// A height of the states of tag `tag` that only operations for which `lowers` holds can
    /// decrease: from every state, an operation that does not lower it and is allowed (or, an
    /// `info` one, applied) leads to a state at least as high. `None`: no such measure.
    fn height(_tag: Self::Tag) -> Option<u64> {
        None
    }
    /// The tag of `state` (only asked when `height` gives some).
    fn tag(&self) -> Option<Self::Tag> {
        None
    }
    fn lowers(_op: &Self::Op) -> bool {
        true
    }
    /// Only if every state `op` is allowed in (an `info` one: changes) becomes a higher one.
    fn raises(_op: &Self::Op) -> bool {
        false
    }
    /// Adds to `out` every value `op` (ending `ret`) compares the state's data with.
    fn compared(_op: &Self::Op, _ret: Option<&Self::Ret>, _out: &mut Vec<Val>) {}
    /// `op` with each value it writes for which `unseen` holds replaced by [`Val::UNSEEN`]
    /// (`None`: unchanged). Only called with `unseen` false for every value `compared` reports
    /// for some operation of the key, and sound when a state's data is only ever looked at
    /// through such comparisons: then states that differ only in unseen values let the same
    /// operations through with the same returns, and lead to states that again differ only so.
    fn erase(_op: &Self::Op, _unseen: &dyn Fn(Val) -> bool) -> Option<Self::Op> {
        None
    }
}

/// See [`Footprint::needs`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Needs<T> {
    /// Allowed everywhere, and what it leaves does not depend on the state before.
    Any,
    /// Allowed (or, `info`, has an effect) only in states of this tag.
    One(T),
    /// No claim: it may see any state.
    Unknown,
}

/// How a sequential specification reads a history.
pub trait Model: Sync {
    type Spec: SequentialSpec<
            Op: Clone + Debug + Eq + Hash + Send + Sync,
            Ret: Clone + Debug + Eq + Hash + Send + Sync,
        > + Footprint
        + Clone
        + Eq
        + Hash
        + Debug
        + Send;

    fn name(&self) -> &'static str;

    fn init(&self, vals: &mut Interner) -> Self::Spec;

    /// Turns an `ok` or `info` operation into the spec's terms. `Ok(None)`: the operation cannot
    /// change the state and says nothing (an `info` read), so the search can leave it out.
    fn translate(
        &self,
        op: &Op<'_>,
        vals: &mut Interner,
    ) -> Result<Option<Step<Self::Spec>>, String>;

    fn describe(&self, state: &Self::Spec, vals: &Interner) -> String;
}

/// The models `schism check --model` knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    Register,
    CasRegister,
    Znode,
    Mutex,
    /// A key-value map with `get`, `put` and `append` on string values (porcupine's kv tests).
    Kv,
    /// Knossos's multi-register: `txn` of `[:read k v]` / `[:write k v]` over several keys.
    MultiRegister,
}

impl ModelKind {
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Register => "register",
            ModelKind::CasRegister => "cas-register",
            ModelKind::Znode => "znode",
            ModelKind::Mutex => "mutex",
            ModelKind::Kv => "kv",
            ModelKind::MultiRegister => "multi-register",
        }
    }

    /// Infers the model from the operations' `f` (and the shape of `cas` values); `None` when
    /// the functions fit no model or several equally.
    pub fn infer<'a>(ops: impl IntoIterator<Item = &'a Op<'a>>) -> Option<ModelKind> {
        let mut guess = ModelGuess::default();
        for op in ops {
            guess.add(op.f(), op.value(), op.invoke.is_observation());
        }
        guess.kind()
    }
}

/// What [`ModelKind::infer`] has seen of the operations so far, one at a time.
#[derive(Default, Debug, Clone)]
pub struct ModelGuess {
    rw: bool,
    cas_pair: bool,
    cas_obj: bool,
    znode: bool,
    mutex: bool,
    kv: bool,
    txn: bool,
    other: bool,
}

impl ModelGuess {
    /// An operation's function and invocation value.
    pub fn add(&mut self, f: &str, value: &Value, observation: bool) {
        match f {
            "read" | "write" => self.rw = true,
            "cas" => match value {
                Value::Array(a) if a.len() == 2 => self.cas_pair = true,
                Value::Object(_) => self.cas_obj = true,
                _ => self.other = true,
            },
            "create" | "delete" => self.znode = true,
            "acquire" | "release" => self.mutex = true,
            "get" | "put" | "append" => self.kv = true,
            "txn" => self.txn = true,
            _ if observation => {}
            _ => self.other = true,
        }
    }

    /// The model the operations fit; `None` when they fit none or several equally.
    pub fn kind(&self) -> Option<ModelKind> {
        let register_like = self.rw || self.cas_pair || self.cas_obj || self.znode;
        let families = [register_like, self.mutex, self.kv, self.txn]
            .iter()
            .filter(|&&f| f)
            .count();
        match () {
            _ if self.other || families > 1 || (self.cas_pair && (self.cas_obj || self.znode)) => {
                None
            }
            _ if self.mutex => Some(ModelKind::Mutex),
            _ if self.kv => Some(ModelKind::Kv),
            _ if self.txn => Some(ModelKind::MultiRegister),
            _ if self.cas_obj || self.znode => Some(ModelKind::Znode),
            _ if self.cas_pair => Some(ModelKind::CasRegister),
            _ if self.rw => Some(ModelKind::Register),
            _ => None,
        }
    }
}

fn info_read(op: &Op<'_>) -> bool {
    op.kind() == EventType::Info && op.f() == "read"
}

// ---------------------------------------------------------------------------------------------
// register

/// A read/write register (Jepsen's `register`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Register(pub Val);

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RegisterOp {
    Read,
    Write(Val),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RegisterRet {
    Read(Val),
    Write,
}

impl SequentialSpec for Register {
    type Op = RegisterOp;
    type Ret = RegisterRet;
    fn invoke(&mut self, op: &RegisterOp) -> RegisterRet {
        match op {
            RegisterOp::Read => RegisterRet::Read(self.0),
            RegisterOp::Write(v) => {
                self.0 = *v;
                RegisterRet::Write
            }
        }
    }
}

/// The tag is the value: a read needs its value, a write may follow any state and leaves its own.
impl Footprint for Register {
    type Tag = Val;
    fn needs(op: &RegisterOp, ret: Option<&RegisterRet>) -> Needs<Val> {
        match (op, ret) {
            (RegisterOp::Write(_), None | Some(RegisterRet::Write)) => Needs::Any,
            (RegisterOp::Read, Some(RegisterRet::Read(v))) => Needs::One(*v),
            _ => Needs::Unknown,
        }
    }
    fn leaves(op: &RegisterOp) -> Option<Val> {
        match op {
            RegisterOp::Write(v) => Some(*v),
            RegisterOp::Read => None,
        }
    }
    fn compared(_op: &RegisterOp, ret: Option<&RegisterRet>, out: &mut Vec<Val>) {
        if let Some(RegisterRet::Read(v)) = ret {
            out.push(*v);
        }
    }
    fn erase(op: &RegisterOp, unseen: &dyn Fn(Val) -> bool) -> Option<RegisterOp> {
        match op {
            RegisterOp::Write(v) if *v != Val::UNSEEN && unseen(*v) => {
                Some(RegisterOp::Write(Val::UNSEEN))
            }
            _ => None,
        }
    }
}

pub struct RegisterModel {
    pub initial: Value,
}

impl Model for RegisterModel {
    type Spec = Register;
    fn name(&self) -> &'static str {
        "register"
    }
    fn init(&self, vals: &mut Interner) -> Register {
        Register(vals.intern(&self.initial))
    }
    fn translate(
        &self,
        op: &Op<'_>,
        vals: &mut Interner,
    ) -> Result<Option<Step<Register>>, String> {
        if info_read(op) {
            return Ok(None);
        }
        let ok = op.kind() == EventType::Ok;
        Ok(Some(match op.f() {
            "read" => Step {
                op: RegisterOp::Read,
                ret: Some(RegisterRet::Read(vals.intern(op.result()))),
            },
            "write" => Step {
                op: RegisterOp::Write(vals.intern(op.value())),
                ret: ok.then_some(RegisterRet::Write),
            },
            f => {
                return Err(format!(
                    "`read` or `write` for the register model, not `{f}`"
                ));
            }
        }))
    }
    fn describe(&self, s: &Register, vals: &Interner) -> String {
        vals.show(s.0)
    }
}

// ---------------------------------------------------------------------------------------------
// cas-register

/// Jepsen's cas-register: read, write, and compare-and-set `[old new]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CasRegister(pub Val);

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum CasOp {
    Read,
    Write(Val),
    Cas(Val, Val),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum CasRet {
    Read(Val),
    Write,
    CasOk,
    CasFail,
}

impl SequentialSpec for CasRegister {
    type Op = CasOp;
    type Ret = CasRet;
    fn invoke(&mut self, op: &CasOp) -> CasRet {
        match op {
            CasOp::Read => CasRet::Read(self.0),
            CasOp::Write(v) => {
                self.0 = *v;
                CasRet::Write
            }
            CasOp::Cas(old, new) => {
                if self.0 == *old {
                    self.0 = *new;
                    CasRet::CasOk
                } else {
                    CasRet::CasFail
                }
            }
        }
    }
}

/// The tag is the value: a read needs its value, a cas `[old new]` needs `old` (an `ok` one is
/// not allowed elsewhere, an `info` one changes nothing elsewhere), a write may follow any state.
impl Footprint for CasRegister {
    type Tag = Val;
    fn needs(op: &CasOp, ret: Option<&CasRet>) -> Needs<Val> {
        match (op, ret) {
            (CasOp::Write(_), None | Some(CasRet::Write)) => Needs::Any,
            (CasOp::Read, Some(CasRet::Read(v))) => Needs::One(*v),
            (CasOp::Cas(old, _), None | Some(CasRet::CasOk)) => Needs::One(*old),
            _ => Needs::Unknown,
        }
    }
    fn leaves(op: &CasOp) -> Option<Val> {
        match op {
            CasOp::Write(v) | CasOp::Cas(_, v) => Some(*v),
            CasOp::Read => None,
        }
    }
    fn compared(op: &CasOp, ret: Option<&CasRet>, out: &mut Vec<Val>) {
        match (op, ret) {
            (_, Some(CasRet::Read(v))) | (CasOp::Cas(v, _), _) => out.push(*v),
            _ => {}
        }
    }
    fn erase(op: &CasOp, unseen: &dyn Fn(Val) -> bool) -> Option<CasOp> {
        let erased = |v: &Val| *v != Val::UNSEEN && unseen(*v);
        match op {
            CasOp::Write(v) if erased(v) => Some(CasOp::Write(Val::UNSEEN)),
            CasOp::Cas(old, new) if erased(new) => Some(CasOp::Cas(*old, Val::UNSEEN)),
            _ => None,
        }
    }
}

pub struct CasRegisterModel {
    pub initial: Value,
}

impl Model for CasRegisterModel {
    type Spec = CasRegister;
    fn name(&self) -> &'static str {
        "cas-register"
    }
    fn init(&self, vals: &mut Interner) -> CasRegister {
        CasRegister(vals.intern(&self.initial))
    }
    fn translate(
        &self,
        op: &Op<'_>,
        vals: &mut Interner,
    ) -> Result<Option<Step<CasRegister>>, String> {
        if info_read(op) {
            return Ok(None);
        }
        let ok = op.kind() == EventType::Ok;
        Ok(Some(match op.f() {
            "read" => Step {
                op: CasOp::Read,
                ret: Some(CasRet::Read(vals.intern(op.result()))),
            },
            "write" => Step {
                op: CasOp::Write(vals.intern(op.value())),
                ret: ok.then_some(CasRet::Write),
            },
            "cas" => {
                let Some([old, new]) = op
                    .value()
                    .as_array()
                    .and_then(|a| <&[Value; 2]>::try_from(a.as_slice()).ok())
                else {
                    return Err(format!("a cas value `[old new]`, not {}", op.value()));
                };
                Step {
                    op: CasOp::Cas(vals.intern(old), vals.intern(new)),
                    ret: ok.then_some(CasRet::CasOk),
                }
            }
            f => {
                return Err(format!(
                    "`read`, `write` or `cas` for the cas-register model, not `{f}`"
                ));
            }
        }))
    }
    fn describe(&self, s: &CasRegister, vals: &Interner) -> String {
        vals.show(s.0)
    }
}

// ---------------------------------------------------------------------------------------------
// znode

/// A versioned znode, as ZooKeeper's: absent, or data with a version that starts at 0 on create
/// and grows by one with each set.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Znode(pub Option<(Val, u32)>);

/// `expected: None` is ZooKeeper's version -1: any version.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ZnodeOp {
    Read,
    Set { data: Val, expected: Option<u32> },
    Create { data: Val },
    Delete { expected: Option<u32> },
}

/// `Set(None)`: the set succeeded and the history does not say which version it made.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ZnodeRet {
    Read(Option<(Val, u32)>),
    Set(Option<u32>),
    Created,
    Deleted,
    /// The operation was refused (no node, node exists, bad version): it changed nothing.
    Refused,
}

impl SequentialSpec for Znode {
    type Op = ZnodeOp;
    type Ret = ZnodeRet;
    fn invoke(&mut self, op: &ZnodeOp) -> ZnodeRet {
        let matches = |expected: &Option<u32>, version: u32| expected.is_none_or(|e| e == version);
        match (op, self.0) {
            (ZnodeOp::Read, s) => ZnodeRet::Read(s),
            (ZnodeOp::Set { data, expected }, Some((_, v))) if matches(expected, v) => {
                self.0 = Some((*data, v + 1));
                ZnodeRet::Set(Some(v + 1))
            }
            (ZnodeOp::Create { data }, None) => {
                self.0 = Some((*data, 0));
                ZnodeRet::Created
            }
            (ZnodeOp::Delete { expected }, Some((_, v))) if matches(expected, v) => {
                self.0 = None;
                ZnodeRet::Deleted
            }
            _ => ZnodeRet::Refused,
        }
    }
    fn is_valid_step(&mut self, op: &ZnodeOp, ret: &ZnodeRet) -> bool {
        match (self.invoke(op), ret) {
            (ZnodeRet::Set(Some(made)), ZnodeRet::Set(claimed)) => {
                claimed.is_none_or(|c| c == made)
            }
            (actual, expected) => actual == *expected,
        }
    }
}

/// The tag is the version (`None`: no node); data is left out, which only makes the view
/// coarser. A set or delete with an expected version, a set that reports the version it made, a
/// read, a create, need one version; an unconditional set that says nothing of its version
/// depends on the one before, so it makes no claim.
impl Footprint for Znode {
    type Tag = Option<u32>;
    fn needs(op: &ZnodeOp, ret: Option<&ZnodeRet>) -> Needs<Option<u32>> {
        match (op, ret) {
            (ZnodeOp::Read, Some(ZnodeRet::Read(s))) => Needs::One(s.map(|(_, v)| v)),
            (
                ZnodeOp::Set {
                    expected: Some(e), ..
                }
                | ZnodeOp::Delete { expected: Some(e) },
                None | Some(ZnodeRet::Set(_) | ZnodeRet::Deleted),
            ) => Needs::One(Some(*e)),
            (ZnodeOp::Set { expected: None, .. }, Some(ZnodeRet::Set(Some(made)))) => {
                match made.checked_sub(1) {
                    Some(v) => Needs::One(Some(v)),
                    None => Needs::Unknown,
                }
            }
            (ZnodeOp::Create { .. }, None | Some(ZnodeRet::Created)) => Needs::One(None),
            _ => Needs::Unknown,
        }
    }
    fn leaves(op: &ZnodeOp) -> Option<Option<u32>> {
        match op {
            ZnodeOp::Set {
                expected: Some(e), ..
            } => e.checked_add(1).map(Some),
            ZnodeOp::Create { .. } => Some(Some(0)),
            ZnodeOp::Delete { .. } => Some(None),
            _ => None,
        }
    }
    /// No node is lowest, then the versions in order: only a delete goes down.
    fn height(tag: Option<u32>) -> Option<u64> {
        Some(tag.map_or(0, |v| v as u64 + 1))
    }
    fn tag(&self) -> Option<Option<u32>> {
        Some(self.0.map(|(_, v)| v))
    }
    fn lowers(op: &ZnodeOp) -> bool {
        matches!(op, ZnodeOp::Delete { .. })
    }
    /// A set makes the next version, a create the first.
    fn raises(op: &ZnodeOp) -> bool {
        matches!(op, ZnodeOp::Set { .. } | ZnodeOp::Create { .. })
    }
    /// Only a read looks at the data; sets and deletes look at the version.
    fn compared(_op: &ZnodeOp, ret: Option<&ZnodeRet>, out: &mut Vec<Val>) {
        if let Some(ZnodeRet::Read(Some((data, _)))) = ret {
            out.push(*data);
        }
    }
    fn erase(op: &ZnodeOp, unseen: &dyn Fn(Val) -> bool) -> Option<ZnodeOp> {
        match op {
            ZnodeOp::Set { data, expected } if *data != Val::UNSEEN && unseen(*data) => {
                Some(ZnodeOp::Set {
                    data: Val::UNSEEN,
                    expected: *expected,
                })
            }
            ZnodeOp::Create { data } if *data != Val::UNSEEN && unseen(*data) => {
                Some(ZnodeOp::Create { data: Val::UNSEEN })
            }
            _ => None,
        }
    }
}

pub struct ZnodeModel {
    /// `null`: the node does not exist at the start; otherwise its data, at version 0.
    pub initial: Value,
}

fn version_of(v: &Value) -> Option<Option<u32>> {
    match v {
        Value::Null => Some(None),
        Value::Number(n) => match n.as_i64()? {
            -1 => Some(None),
            v => Some(Some(u32::try_from(v).ok()?)),
        },
        _ => None,
    }
}

/// The version a `write` or `cas` completion reports: `{"version": n}`; anything else says nothing.
fn made_version(result: &Value) -> Option<u32> {
    result
        .get("version")
        .and_then(Value::as_u64)
        .and_then(|v| u32::try_from(v).ok())
}

impl Model for ZnodeModel {
    type Spec = Znode;
    fn name(&self) -> &'static str {
        "znode"
    }
    fn init(&self, vals: &mut Interner) -> Znode {
        match &self.initial {
            Value::Null => Znode(None),
            v => Znode(Some((vals.intern(v), 0))),
        }
    }
    fn translate(&self, op: &Op<'_>, vals: &mut Interner) -> Result<Option<Step<Znode>>, String> {
        // A watch's read is judged by the watches checker (its result is the watch's, not a
        // register read's `[data, version]`).
        if info_read(op) || op.f() == crate::history::WATCH_F {
            return Ok(None);
        }
        let ok = op.kind() == EventType::Ok;
        Ok(Some(match op.f() {
            "read" => {
                let seen = match op.result() {
                    Value::Null => None,
                    Value::Array(a) if a.len() == 2 => {
                        let version = a[1]
                            .as_u64()
                            .and_then(|v| u32::try_from(v).ok())
                            .ok_or_else(|| {
                                format!("a read result `[data, version]`, not {}", op.result())
                            })?;
                        Some((vals.intern(&a[0]), version))
                    }
                    other => {
                        return Err(format!(
                            "a read result `[data, version]` or null (no node), not {other}"
                        ));
                    }
                };
                Step {
                    op: ZnodeOp::Read,
                    ret: Some(ZnodeRet::Read(seen)),
                }
            }
            "write" => Step {
                op: ZnodeOp::Set {
                    data: vals.intern(op.value()),
                    expected: None,
                },
                ret: ok.then(|| ZnodeRet::Set(made_version(op.result()))),
            },
            "cas" => {
                let v = op.value();
                let (Some(from), Some(to)) =
                    (v.get("from_version").and_then(version_of), v.get("to"))
                else {
                    return Err(format!(
                        "a cas value {{\"from_version\": n, \"to\": data}}, not {v}"
                    ));
                };
                Step {
                    op: ZnodeOp::Set {
                        data: vals.intern(to),
                        expected: from,
                    },
                    ret: ok.then(|| ZnodeRet::Set(made_version(op.result()))),
                }
            }
            "create" => Step {
                op: ZnodeOp::Create {
                    data: vals.intern(op.value()),
                },
                ret: ok.then_some(ZnodeRet::Created),
            },
            "delete" => {
                let v = op.value();
                let expected = match v {
                    Value::Null => None,
                    v => v.get("version").and_then(version_of).ok_or_else(|| {
                        format!("a delete value {{\"version\": n}} or null, not {v}")
                    })?,
                };
                Step {
                    op: ZnodeOp::Delete { expected },
                    ret: ok.then_some(ZnodeRet::Deleted),
                }
            }
            f => {
                return Err(format!(
                    "`read`, `write`, `cas`, `create` or `delete` for the znode model, not `{f}`"
                ));
            }
        }))
    }
    fn describe(&self, s: &Znode, vals: &Interner) -> String {
        match s.0 {
            None => "no node".into(),
            Some((d, v)) => format!("{} (version {v})", vals.show(d)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// mutex

/// A lock: `acquire` succeeds only when it is free, `release` only when it is held.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct Mutex(pub bool);

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum MutexOp {
    Acquire,
    Release,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum MutexRet {
    Ok,
    Refused,
}

impl SequentialSpec for Mutex {
    type Op = MutexOp;
    type Ret = MutexRet;
    fn invoke(&mut self, op: &MutexOp) -> MutexRet {
        let want_locked = *op == MutexOp::Release;
        if self.0 == want_locked {
            self.0 = !want_locked;
            MutexRet::Ok
        } else {
            MutexRet::Refused
        }
    }
}

/// No claims: the search tries every `info` operation.
impl Footprint for Mutex {
    type Tag = ();
}

pub struct MutexModel;

impl Model for MutexModel {
    type Spec = Mutex;
    fn name(&self) -> &'static str {
        "mutex"
    }
    fn init(&self, _: &mut Interner) -> Mutex {
        Mutex(false)
    }
    fn translate(&self, op: &Op<'_>, _: &mut Interner) -> Result<Option<Step<Mutex>>, String> {
        let ok = op.kind() == EventType::Ok;
        let op = match op.f() {
            "acquire" => MutexOp::Acquire,
            "release" => MutexOp::Release,
            f => {
                return Err(format!(
                    "`acquire` or `release` for the mutex model, not `{f}`"
                ));
            }
        };
        Ok(Some(Step {
            op,
            ret: ok.then_some(MutexRet::Ok),
        }))
    }
    fn describe(&self, s: &Mutex, _: &Interner) -> String {
        if s.0 { "held" } else { "free" }.into()
    }
}

// ---------------------------------------------------------------------------------------------
// kv

/// One key of a key-value map whose values are strings (porcupine's kv model). A key never
/// written reads as the empty string, as the Go key-value servers porcupine tests answer.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Kv(pub String);

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KvOp {
    Get,
    Put(String),
    Append(String),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KvRet {
    Get(String),
    Done,
}

impl SequentialSpec for Kv {
    type Op = KvOp;
    type Ret = KvRet;
    fn invoke(&mut self, op: &KvOp) -> KvRet {
        match op {
            KvOp::Get => KvRet::Get(self.0.clone()),
            KvOp::Put(v) => {
                self.0.clone_from(v);
                KvRet::Done
            }
            KvOp::Append(v) => {
                self.0.push_str(v);
                KvRet::Done
            }
        }
    }
    fn is_valid_step(&mut self, op: &KvOp, ret: &KvRet) -> bool {
        // A get is checked without copying the value it read.
        match (op, ret) {
            (KvOp::Get, KvRet::Get(seen)) => self.0 == *seen,
            _ => self.invoke(op) == *ret,
        }
    }
}

/// The text of a kv value: strings as they are, `nil` as the empty string, numbers and other
/// values as JSON text.
fn kv_text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// No claims: the search tries every `info` operation.
impl Footprint for Kv {
    type Tag = ();
}

pub struct KvModel {
    /// Every key's value before the first operation (`null`: the empty string).
    pub initial: Value,
}

impl Model for KvModel {
    type Spec = Kv;
    fn name(&self) -> &'static str {
        "kv"
    }
    fn init(&self, _: &mut Interner) -> Kv {
        Kv(kv_text(&self.initial))
    }
    fn translate(&self, op: &Op<'_>, _: &mut Interner) -> Result<Option<Step<Kv>>, String> {
        let ok = op.kind() == EventType::Ok;
        Ok(Some(match op.f() {
            "get" if !ok => return Ok(None),
            "get" => Step {
                op: KvOp::Get,
                ret: Some(KvRet::Get(kv_text(op.result()))),
            },
            "put" => Step {
                op: KvOp::Put(kv_text(op.value())),
                ret: ok.then_some(KvRet::Done),
            },
            "append" => Step {
                op: KvOp::Append(kv_text(op.value())),
                ret: ok.then_some(KvRet::Done),
            },
            f => {
                return Err(format!(
                    "`get`, `put` or `append` for the kv model, not `{f}`"
                ));
            }
        }))
    }
    fn describe(&self, s: &Kv, _: &Interner) -> String {
        format!("{:?}", s.0)
    }
}

// ---------------------------------------------------------------------------------------------
// multi-register

/// Knossos's multi-register: registers named by keys, read and written together by
/// transactions. Kept as (key, value) pairs sorted by key, without the keys still at nil, so
/// equal states compare and hash equal.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct MultiRegister(pub Vec<(Val, Val)>);

/// One micro-operation of a transaction: a read saw `Some(value)` (`None`: it does not say,
/// as in an invocation or a crashed transaction), a write set the value.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum MicroOp {
    Read(Val, Option<Val>),
    Write(Val, Val),
}

/// A transaction's outcome: every read saw the current value (`Consistent`), or not.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TxnRet {
    Consistent,
    Inconsistent,
}

impl MultiRegister {
    fn get(&self, k: Val) -> Val {
        match self.0.binary_search_by_key(&k, |e| e.0) {
            Ok(i) => self.0[i].1,
            Err(_) => Val::NIL,
        }
    }

    fn set(&mut self, k: Val, v: Val) {
        match (self.0.binary_search_by_key(&k, |e| e.0), v == Val::NIL) {
            (Ok(i), true) => {
                self.0.remove(i);
            }
            (Ok(i), false) => self.0[i].1 = v,
            (Err(i), false) => self.0.insert(i, (k, v)),
            (Err(_), true) => {}
        }
    }
}

impl SequentialSpec for MultiRegister {
    type Op = Vec<MicroOp>;
    type Ret = TxnRet;
    /// Applies the micro-operations in order, as Knossos does: a read that names a value must
    /// see it; a read of nil says nothing.
    fn invoke(&mut self, txn: &Vec<MicroOp>) -> TxnRet {
        let mut ret = TxnRet::Consistent;
        for m in txn {
            match *m {
                MicroOp::Read(k, Some(v)) if self.get(k) != v => ret = TxnRet::Inconsistent,
                MicroOp::Read(..) => {}
                MicroOp::Write(k, v) => self.set(k, v),
            }
        }
        ret
    }
}

/// No claims: the search tries every `info` operation.
impl Footprint for MultiRegister {
    type Tag = ();
}

pub struct MultiRegisterModel {
    /// The registers before the first transaction: `{"x": 0, "y": 0}`; `null` or a missing
    /// key: nil.
    pub initial: Value,
}

/// Reads `[[:read k v] [:write k v] ...]` (also `:r`/`:w`, Jepsen's short forms).
fn micro_ops(txn: &Value, vals: &mut Interner) -> Result<Vec<MicroOp>, String> {
    let expected = || format!("a txn value `[[:read k v] [:write k v] ...]`, not {txn}");
    let items = txn.as_array().ok_or_else(expected)?;
    items
        .iter()
        .map(|m| match m.as_array().map(Vec::as_slice) {
            Some([f, k, v]) => {
                let (k, v) = (vals.intern(&Value::String(as_key(k))), vals.intern(v));
                match f.as_str() {
                    Some("read" | "r") => Ok(MicroOp::Read(k, (v != Val::NIL).then_some(v))),
                    Some("write" | "w") => Ok(MicroOp::Write(k, v)),
                    _ => Err(expected()),
                }
            }
            _ => Err(expected()),
        })
        .collect()
}

/// Keys are compared as text: `:x` in the history and `"x"` in `--initial` are one key.
fn as_key(k: &Value) -> String {
    match k {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl Model for MultiRegisterModel {
    type Spec = MultiRegister;
    fn name(&self) -> &'static str {
        "multi-register"
    }
    fn init(&self, vals: &mut Interner) -> MultiRegister {
        let mut s = MultiRegister::default();
        if let Value::Object(m) = &self.initial {
            for (k, v) in m {
                let k = vals.intern(&Value::String(k.clone()));
                let v = vals.intern(v);
                s.set(k, v);
            }
        }
        s
    }
    fn translate(
        &self,
        op: &Op<'_>,
        vals: &mut Interner,
    ) -> Result<Option<Step<MultiRegister>>, String> {
        if op.f() != "txn" {
            return Err(format!(
                "`txn` for the multi-register model, not `{}`",
                op.f()
            ));
        }
        let ok = op.kind() == EventType::Ok;
        // An ok transaction's completion holds what its reads saw; a crashed one only what it
        // meant to write.
        let txn = if ok && !op.result().is_null() {
            op.result()
        } else {
            op.value()
        };
        let txn = micro_ops(txn, vals)?;
        if !ok && txn.iter().all(|m| matches!(m, MicroOp::Read(..))) {
            return Ok(None);
        }
        Ok(Some(Step {
            op: txn,
            ret: ok.then_some(TxnRet::Consistent),
        }))
    }
    fn describe(&self, s: &MultiRegister, vals: &Interner) -> String {
        if s.0.is_empty() {
            return "all nil".into();
        }
        s.0.iter()
            .map(|(k, v)| format!("{}={}", vals.show(*k).trim_matches('"'), vals.show(*v)))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn znode_versions_follow_zookeeper() {
        let mut z = Znode(None);
        assert_eq!(
            z.invoke(&ZnodeOp::Set {
                data: Val(1),
                expected: None
            }),
            ZnodeRet::Refused
        );
        assert_eq!(
            z.invoke(&ZnodeOp::Create { data: Val(1) }),
            ZnodeRet::Created
        );
        assert_eq!(z.invoke(&ZnodeOp::Read), ZnodeRet::Read(Some((Val(1), 0))));
        assert!(z.is_valid_step(
            &ZnodeOp::Set {
                data: Val(2),
                expected: Some(0)
            },
            &ZnodeRet::Set(None)
        ));
        assert!(!z.clone().is_valid_step(
            &ZnodeOp::Set {
                data: Val(3),
                expected: Some(0)
            },
            &ZnodeRet::Set(None)
        ));
        assert!(!z.clone().is_valid_step(
            &ZnodeOp::Set {
                data: Val(3),
                expected: None
            },
            &ZnodeRet::Set(Some(7))
        ));
        assert_eq!(
            z.invoke(&ZnodeOp::Delete { expected: Some(0) }),
            ZnodeRet::Refused
        );
        assert_eq!(
            z.invoke(&ZnodeOp::Delete { expected: Some(1) }),
            ZnodeRet::Deleted
        );
        assert_eq!(z.invoke(&ZnodeOp::Read), ZnodeRet::Read(None));
    }

    #[test]
    fn mutex_needs_alternation() {
        let mut m = Mutex(false);
        assert_eq!(m.invoke(&MutexOp::Release), MutexRet::Refused);
        assert_eq!(m.invoke(&MutexOp::Acquire), MutexRet::Ok);
        assert_eq!(m.invoke(&MutexOp::Acquire), MutexRet::Refused);
        assert_eq!(m.invoke(&MutexOp::Release), MutexRet::Ok);
    }

    #[test]
    fn kv_appends_in_order_and_gets_compare_strings() {
        let mut k = Kv(String::new());
        assert!(k.is_valid_step(&KvOp::Get, &KvRet::Get(String::new())));
        k.invoke(&KvOp::Append("a".into()));
        k.invoke(&KvOp::Append("b".into()));
        assert!(
            k.clone()
                .is_valid_step(&KvOp::Get, &KvRet::Get("ab".into()))
        );
        assert!(
            !k.clone()
                .is_valid_step(&KvOp::Get, &KvRet::Get("ba".into()))
        );
        k.invoke(&KvOp::Put("z".into()));
        assert_eq!(k.invoke(&KvOp::Get), KvRet::Get("z".into()));
    }

    #[test]
    fn multi_register_reads_must_match_and_nil_reads_say_nothing() {
        let (x, y, one, two) = (Val(1), Val(2), Val(3), Val(4));
        let mut m = MultiRegister::default();
        let txn = vec![MicroOp::Write(x, one), MicroOp::Read(y, None)];
        assert_eq!(m.invoke(&txn), TxnRet::Consistent);
        let read = |k, v| vec![MicroOp::Read(k, Some(v))];
        assert_eq!(m.clone().invoke(&read(x, one)), TxnRet::Consistent);
        assert_eq!(m.clone().invoke(&read(x, two)), TxnRet::Inconsistent);
        assert_eq!(m.clone().invoke(&read(y, one)), TxnRet::Inconsistent);
        // A read inside a transaction sees the transaction's own earlier write.
        let own = vec![MicroOp::Write(y, two), MicroOp::Read(y, Some(two))];
        assert_eq!(m.invoke(&own), TxnRet::Consistent);
        // Writing nil back leaves a state equal to one that never had the key.
        let mut a = MultiRegister::default();
        a.invoke(&vec![MicroOp::Write(x, one), MicroOp::Write(x, Val::NIL)]);
        assert_eq!(a, MultiRegister::default());
    }
}
