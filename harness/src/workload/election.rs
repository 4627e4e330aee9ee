//! election: every process runs keeper-client's leader-election recipe; a process that leads
//! performs writes fenced with its token (a multi that first checks that its own election
//! node still exists). Checked by the election-safety checker (no write by an older token
//! accepted after one by a newer token; tokens unique) and, from `/status`, single-leader.

use super::conn::{completion_of, setup_paths};
use super::{Env, OpenContext, Workload};
use crate::client::{Client, Completion};
use crate::generator::{Context, Generator, Op};
use futures::FutureExt;
use futures::future::BoxFuture;
use keeper_client::{ClientConfig, LeaderElection, Session};
use keeper_wire::{ANY_VERSION, Op as TxnOp, OpResult};
use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};
use std::time::Duration;

pub const PARENT: &str = "/schism/election";
/// The znode leaders write, fenced.
pub const DATA: &str = "/schism/election-data";
/// Session timeout of contenders: a deposed leader's node goes away this long after it lost
/// contact.
const SESSION_TIMEOUT_MS: u64 = 6_000;

pub struct Election;

impl Workload for Election {
    fn name(&self) -> &'static str {
        "election"
    }

    fn setup<'a>(&'a self, env: &'a Env) -> BoxFuture<'a, anyhow::Result<()>> {
        setup_paths(
            env,
            vec!["/schism".to_string(), PARENT.to_string(), DATA.to_string()],
        )
    }

    fn generator(&self, _worker: usize) -> Box<dyn Generator> {
        // The client turns a claim into a fenced write once it leads, and the reverse: the
        // generator only sets the proportions.
        Box::new(|_: &Context, rng: &mut ChaCha8Rng| {
            Some(match rng.random_range(0..100) {
                0..20 => Op::new("claim", None, Value::Null),
                20..95 => Op::new("fenced_write", Some(DATA), Value::Null),
                _ => Op::new("resign", None, Value::Null),
            })
        })
    }

    fn open<'a>(&'a self, ctx: OpenContext<'a>) -> BoxFuture<'a, Result<Box<dyn Client>, String>> {
        async move {
            let mut config = ClientConfig::new([ctx.node.url.clone()]);
            config.session_timeout = Duration::from_millis(SESSION_TIMEOUT_MS);
            config.request_timeout = ctx.env.op_timeout;
            config.connect_timeout = ctx.env.op_timeout;
            let session = Session::connect(config).await.map_err(|e| e.to_string())?;
            Ok(Box::new(ElectionClient {
                session,
                election: None,
                token: None,
                process: ctx.process,
            }) as Box<dyn Client>)
        }
        .boxed()
    }

    fn final_ops(&self) -> Vec<Op> {
        Vec::new()
    }
}

struct ElectionClient {
    session: Session,
    election: Option<LeaderElection>,
    /// The token of this process's successful claim in its current election, if any. Never
    /// cleared while `election` stays: a second claim with the same token would look like two
    /// leaders sharing one.
    token: Option<u64>,
    process: u64,
}

impl ElectionClient {
    async fn claim(&mut self, timeout: Duration) -> Completion {
        if self.election.is_none() {
            match LeaderElection::join(&self.session, PARENT, &format!("p{}", self.process)).await {
                Ok(e) => self.election = Some(e),
                Err(e) => return completion_of(&e),
            }
        }
        let Some(election) = self.election.as_mut() else {
            return Completion::fail("not in the election");
        };
        match election.wait_until_leader(timeout.mul_f64(0.8)).await {
            Ok(true) => {
                let token = election.fencing_token();
                self.token = Some(token);
                Completion::ok(json!({"token": token}))
            }
            Ok(false) => Completion::fail("not_leader"),
            Err(e) => {
                // Out of the election (node or session gone), or the queue could not be read;
                // rejoining is safe either way (a stale node of ours only delays us).
                self.election = None;
                self.token = None;
                completion_of(&e)
            }
        }
    }

    async fn fenced_write(&mut self, token: u64) -> Completion {
        let Some(election) = &self.election else {
            return Completion::fail("not in the election");
        };
        let ops = vec![
            TxnOp::Check {
                path: election.node_path().to_string(),
                version: ANY_VERSION,
            },
            TxnOp::SetData {
                path: DATA.to_string(),
                data: token.to_string(),
                version: ANY_VERSION,
            },
        ];
        match self.session.multi(ops).await {
            Ok(results) => {
                let mzxid = results.iter().find_map(|r| match r {
                    OpResult::SetData { stat } => Some(stat.mzxid),
                    _ => None,
                });
                let c = Completion::ok(json!({"token": token}));
                match mzxid {
                    Some(z) => c.with_zxid(z),
                    None => c,
                }
            }
            Err(e) => {
                use keeper_wire::ErrorCode;
                // The check failed (our election node is gone) or the session is: this process
                // no longer leads. Other refusals (not_ready) leave it leading, and it must not
                // claim the same token twice.
                if !e.is_indeterminate()
                    && matches!(
                        e.code(),
                        ErrorCode::NoNode
                            | ErrorCode::RuntimeInconsistency
                            | ErrorCode::SessionExpired
                    )
                {
                    self.token = None;
                    self.election = None;
                }
                completion_of(&e)
            }
        }
    }

    async fn resign(&mut self) -> Completion {
        self.token = None;
        match self.election.take() {
            Some(e) => match e.resign().await {
                Ok(()) => Completion::ok(Value::Null),
                // Our node may still be there, and rejoining on this session would find it and
                // its already-claimed token again: start over with a new session.
                Err(e) => completion_of(&e).reopening(),
            },
            None => Completion::fail("not in the election"),
        }
    }
}

impl Client for ElectionClient {
    fn prepare(&mut self, op: Op) -> Op {
        match (op.f.as_str(), self.token) {
            ("fenced_write", Some(t)) => Op::new("fenced_write", Some(DATA), json!({"token": t})),
            ("fenced_write", None) | ("claim", None) => Op::new("claim", None, Value::Null),
            ("claim", Some(t)) => Op::new("fenced_write", Some(DATA), json!({"token": t})),
            ("resign", _) if self.election.is_none() => Op::new("claim", None, Value::Null),
            _ => op,
        }
    }

    fn invoke<'a>(&'a mut self, op: &'a Op, timeout: Duration) -> BoxFuture<'a, Completion> {
        async move {
            match op.f.as_str() {
                "claim" => self.claim(timeout).await,
                "fenced_write" => {
                    let token = op.value.get("token").and_then(Value::as_u64);
                    match token {
                        Some(t) => self.fenced_write(t).await,
                        None => Completion::fail("no token"),
                    }
                }
                "resign" => self.resign().await,
                other => Completion::fail(format!("election has no operation `{other}`")),
            }
        }
        .boxed()
    }

    fn session(&self) -> Option<u64> {
        Some(self.session.id())
    }

    fn close(self: Box<Self>) -> BoxFuture<'static, ()> {
        async move {
            let _ = self.session.close().await;
        }
        .boxed()
    }
}
