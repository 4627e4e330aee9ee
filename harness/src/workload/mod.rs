//! Workloads: a client, a generator and the checkers that judge the history, as one value.
//!
//! Adding a workload is adding one file here and one line in [`WORKLOADS`]; the runner, the
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
use futures::future::BoxFuture;
use keeper::api::Consistency;
use std::time::Duration;

/// What a workload needs to know about the run.
#[derive(Clone, Debug)]
pub struct Env {
    pub nodes: Vec<Node>,
    pub op_timeout: Duration,
    pub read_consistency: Consistency,
    pub seed: u64,
    pub concurrency: usize,
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

    /// Names of the checkers that judge this workload's history (see `checker`).
    fn checkers(&self) -> Vec<&'static str>;
}

pub use crate::config::WORKLOADS;

/// The workload called `name`.
pub fn by_name(name: &str) -> Result<Box<dyn Workload>, String> {
    match name {
        "register" => Ok(Box::new(register::Register::new())),
        "sequential" => Ok(Box::new(sequential::Sequential)),
        "election" => Ok(Box::new(election::Election)),
        "session" => Ok(Box::new(session::Sessions)),
        "watch" => Ok(Box::new(watch::Watches)),
        _ => Err(format!(
            "unknown workload `{name}`: choose one of {}",
            WORKLOADS.join(", ")
        )),
    }
}
