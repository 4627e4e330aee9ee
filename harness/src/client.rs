//! The client seam: what a worker holds to invoke operations ([`Client`]), how an operation
//! ended ([`Completion`]), and the node a client talks to ([`Node`]). Workloads implement
//! [`Client`]; the worker only drives it. Kept apart from both so neither imports the other.

use crate::generator::Op;
use checker::history::EventType;
use futures::future::BoxFuture;
use serde_json::Value;
use std::time::Duration;

/// One node as the workers see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// `n1`, `n2`, ...
    pub name: String,
    /// Base URL of its client API, `http://IP:PORT` (keeper only).
    pub url: String,
    /// `IP:PORT` of its ZooKeeper client protocol (keeperd's `--zk-addr`, ZooKeeper's
    /// `clientPort`).
    pub zk_addr: String,
}

/// How an operation ended, with what the checker needs from the reply.
#[derive(Clone, Debug, PartialEq)]
pub struct Completion {
    /// `Ok`, `Fail` or `Info` (never `Invoke`).
    pub kind: EventType,
    /// The completion's value; `None` keeps the invocation's value (the usual case for
    /// `fail` and `info`).
    pub value: Option<Value>,
    pub error: Option<String>,
    pub zxid: Option<u64>,
    /// The client cannot be used again (its session expired or was closed): the worker opens
    /// a new one. The process number stays unless the outcome was `info`.
    pub reopen: bool,
}

impl Completion {
    pub fn ok(value: Value) -> Completion {
        Completion {
            kind: EventType::Ok,
            value: Some(value),
            error: None,
            zxid: None,
            reopen: false,
        }
    }
    pub fn fail(error: impl Into<String>) -> Completion {
        Completion {
            kind: EventType::Fail,
            value: None,
            error: Some(error.into()),
            zxid: None,
            reopen: false,
        }
    }
    pub fn info(error: impl Into<String>) -> Completion {
        Completion {
            kind: EventType::Info,
            value: None,
            error: Some(error.into()),
            zxid: None,
            reopen: false,
        }
    }
    /// Records the zxid the reply told (`None`: the protocol did not tell one).
    pub fn with_zxid(mut self, zxid: impl Into<Option<u64>>) -> Completion {
        self.zxid = zxid.into();
        self
    }
    pub fn with_value(mut self, value: Value) -> Completion {
        self.value = Some(value);
        self
    }
    pub fn reopening(mut self) -> Completion {
        self.reopen = true;
        self
    }
}

/// One process's connection to the cluster: usually a keeper session on one node.
pub trait Client: Send {
    /// Fills in what only the client knows before the operation is recorded and invoked
    /// (the version a compare-and-set expects), or replaces it (a client whose session is in
    /// doubt closes it first). The default keeps the generator's operation.
    fn prepare(&mut self, op: Op) -> Op {
        op
    }
    /// Called once the completion is recorded (a client that holds back observations until
    /// its operation is in the history releases them here).
    fn completed(&mut self, _completion: &Completion) {}
    /// Performs `op`; should return within `timeout` (the worker enforces it anyway).
    fn invoke<'a>(&'a mut self, op: &'a Op, timeout: Duration) -> BoxFuture<'a, Completion>;
    /// The keeper session this client uses, recorded with each of its events.
    fn session(&self) -> Option<u64>;
    /// Releases the client (closes its session). Best effort and bounded by the caller.
    fn close(self: Box<Self>) -> BoxFuture<'static, ()>;
}
