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
}

/// The values seen in one key's history.
#[derive(Debug, Clone)]
pub struct Interner {
    ids: HashMap<String, u32>,
    values: Vec<Value>,
}

impl Default for Interner {
    fn default() -> Self {
        let mut ids = HashMap::new();
        ids.insert("null".to_string(), 0);
        Interner {
            ids,
            values: vec![Value::Null],
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

/// How a sequential specification reads a history.
pub trait Model: Sync {
    type Spec: SequentialSpec<
            Op: Clone + Debug + Eq + Hash + Send + Sync,
            Ret: Clone + Debug + Eq + Hash + Send + Sync,
        > + Clone
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
}

impl ModelKind {
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Register => "register",
            ModelKind::CasRegister => "cas-register",
            ModelKind::Znode => "znode",
            ModelKind::Mutex => "mutex",
        }
    }

    /// Infers the model from the operations' `f` (and the shape of `cas` values); `None` when
    /// the functions fit no model or several equally.
    pub fn infer<'a>(ops: impl IntoIterator<Item = &'a Op<'a>>) -> Option<ModelKind> {
        let (mut rw, mut cas_pair, mut cas_obj, mut znode, mut mutex, mut other) =
            (false, false, false, false, false, false);
        for op in ops {
            match op.f() {
                "read" | "write" => rw = true,
                "cas" => match op.value() {
                    Value::Array(a) if a.len() == 2 => cas_pair = true,
                    Value::Object(_) => cas_obj = true,
                    _ => other = true,
                },
                "create" | "delete" => znode = true,
                "acquire" | "release" => mutex = true,
                _ if op.invoke.is_observation() => {}
                _ => other = true,
            }
        }
        let register_like = rw || cas_pair || cas_obj || znode;
        match () {
            _ if other || (mutex && register_like) || (cas_pair && (cas_obj || znode)) => None,
            _ if mutex => Some(ModelKind::Mutex),
            _ if cas_obj || znode => Some(ModelKind::Znode),
            _ if cas_pair => Some(ModelKind::CasRegister),
            _ if rw => Some(ModelKind::Register),
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
        if info_read(op) {
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
}
