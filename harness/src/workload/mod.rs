//! Workloads: a client, a generator and the checkers that judge the history, as one value.
//!
//! Adding a workload is adding one file here, a variant of `checker::WorkloadKind` (with its
//! checkers) and a line in [`by_kind`]; the runner, the
//! workers and the report do not change.

pub mod conn;
pub mod election;
pub mod register;
pub mod sequential;
pub mod session;
pub mod watch;

pub use crate::client::{Client, Node};
use crate::generator::{Generator, Op};
use crate::recorder::Recorder;
use checker::WorkloadKind;
use futures::future::BoxFuture;
use keeper_wire::Consistency;
use std::time::Duration;

/// What a workload needs to know about the run.
#[derive(Clone, Debug)]
pub struct Env {
    pub nodes: Vec<Node>,
    /// What the clients speak to the nodes.
    pub protocol: crate::config::Protocol,
    pub op_timeout: Duration,
    pub read_consistency: Consistency,
    pub seed: u64,
    pub concurrency: usize,
    /// Set in a simulated run (`schism sim --workload`): every connection goes to the
    /// simulated cluster, whatever `protocol` says.
    pub sim: Option<conn::SimLink>,
}

/// What a client is opened with.
#[derive(Clone, Copy)]
pub struct OpenContext<'a> {
    pub env: &'a Env,
    pub node: &'a Node,
    pub process: u64,
    /// For observations the client makes on its own (watch events, its session's expiry),
    /// recorded as single `ok` lines of its process.
    pub recorder: &'a Recorder,
}

pub trait Workload: Send + Sync {
    fn name(&self) -> &'static str;

    /// Prepares the cluster before the workers start (parent znodes and the like). Retries
    /// itself while the fresh cluster elects a leader, within `env.op_timeout` per attempt.
    fn setup<'a>(&'a self, env: &'a Env) -> BoxFuture<'a, anyhow::Result<()>>;

    /// Worker `worker`'s generator for the main phase.
    fn generator(&self, worker: usize) -> Box<dyn Generator>;

    /// A client for `ctx.process`, talking to `ctx.node`. An error means nothing was invoked;
    /// the worker waits and tries again (perhaps on another node).
    fn open<'a>(&'a self, ctx: OpenContext<'a>) -> BoxFuture<'a, Result<Box<dyn Client>, String>>;

    /// Operations to run once the cluster is healed and has recovered (final reads). Each is
    /// retried on another node until it succeeds or the recovery time runs out.
    fn final_ops(&self) -> Vec<Op>;
}

/// The workload of kind `kind` (its checkers are `kind.checkers()`, the one table).
pub fn by_kind(kind: WorkloadKind) -> Box<dyn Workload> {
    match kind {
        WorkloadKind::Register => Box::new(register::Register::new()),
        WorkloadKind::Sequential => Box::new(sequential::Sequential),
        WorkloadKind::Election => Box::new(election::Election),
        WorkloadKind::Session => Box::new(session::Sessions),
        WorkloadKind::Watch => Box::new(watch::Watches),
    }
}
