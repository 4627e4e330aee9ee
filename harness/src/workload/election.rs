//! election: every process runs keeper-client's leader-election recipe (on [`Conn`], so over
//! either protocol); a process that leads
//! performs writes fenced with its token (a multi that first checks that its own election
//! node still exists). Checked by the election-safety checker (no write by an older token
//! accepted after one by a newer token; tokens unique) and, from `/status`, single-leader.

use super::conn::{Conn, ConnError, ConnEvent, completion_of, setup_paths};
use super::{Env, OpenContext, Workload};
use crate::client::{Client, Completion};
use crate::generator::{Context, Generator, Op};
use futures::FutureExt;
use futures::future::BoxFuture;
use keeper_client::recipes::sequence_of;
use keeper_wire::{ANY_VERSION, Consistency, CreateMode, ErrorCode};
use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

pub const PARENT: &str = "/schism/election";
/// The znode leaders write, fenced.
pub const DATA: &str = "/schism/election-data";
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
            let conn = Conn::open(ctx.env, ctx.node).await?;
            // Wake-ups for a waiting contender: a watch fired, or the session is in trouble.
            // Lossy: a contender re-reads the queue every RECHECK_INTERVAL_MS anyway.
            let (tx, events) = mpsc::channel(WAKEUPS);
            conn.spawn_events(move |event| {
                let _ = tx.try_send(event);
            });
            Ok(Box::new(ElectionClient {
                conn,
                events,
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

/// Wake-ups a waiting contender keeps at most.
const WAKEUPS: usize = 16;
/// Name prefix of election nodes, as keeper-client's recipe names them.
const PREFIX: &str = keeper_client::recipes::ELECTION_PREFIX;
/// A waiting contender re-reads the queue at least this often, so a lost wake-up delays it by
/// at most this much (keeper-client's recipe does the same).
const RECHECK_INTERVAL_MS: u64 = keeper_client::recipes::RECHECK_INTERVAL_MS;
/// Pause before re-reading the queue after a read failed.
const READ_RETRY_PAUSE_MS: u64 = 100;

/// This process's place in the election: its ephemeral sequential node under [`PARENT`].
/// keeper-client's leader-election recipe, written on [`Conn`] so that it runs over either
/// protocol: the smallest sequence number leads; every other contender watches only its
/// predecessor, and reads the queue again when that watch fires.
struct Contender {
    /// Full path of our node.
    node: String,
    /// Its sequence number: the fencing token.
    sequence: u64,
}

enum Position {
    First,
    /// Full path of the contender just before us.
    Behind(String),
}

fn gone(node: &str) -> ConnError {
    ConnError::definite(
        ErrorCode::NoNode,
        format!("contender node {node} is gone (session expired or node deleted)"),
    )
}

struct ElectionClient {
    conn: Conn,
    events: mpsc::Receiver<ConnEvent>,
    election: Option<Contender>,
    /// The token of this process's successful claim in its current election, if any. Never
    /// cleared while `election` stays: a second claim with the same token would look like two
    /// leaders sharing one.
    token: Option<u64>,
    process: u64,
}

impl ElectionClient {
    /// Enters the election: creates `PARENT/leader_NNNNNNNNNN` (ephemeral, sequential). A node
    /// of ours left by an earlier join whose create ended indeterminate is taken over rather
    /// than duplicated: a second node would queue this session behind itself.
    async fn join(&self) -> Result<Contender, ConnError> {
        let node = match self.find_own().await {
            Some(node) => node,
            None => match self
                .conn
                .create(
                    &format!("{PARENT}/{PREFIX}"),
                    &format!("p{}", self.process),
                    CreateMode::EphemeralSequential,
                )
                .await
            {
                Ok(created) => created.path,
                Err(e) if e.is_indeterminate() => match self.find_own().await {
                    Some(node) => node,
                    None => return Err(e),
                },
                Err(e) => return Err(e),
            },
        };
        let name = node.rsplit('/').next().unwrap_or_default();
        let sequence = sequence_of(name, PREFIX).ok_or_else(|| {
            ConnError::indeterminate(
                ErrorCode::Internal,
                format!("created {node}, which has no sequence suffix"),
            )
        })?;
        Ok(Contender { node, sequence })
    }

    /// After an indeterminate create: our node, if the create took effect (found by owner).
    async fn find_own(&self) -> Option<String> {
        let children = self
            .conn
            .get_children(PARENT, false, Consistency::Local)
            .await
            .ok()?
            .children;
        for name in children.iter().filter(|n| sequence_of(n, PREFIX).is_some()) {
            let path = format!("{PARENT}/{name}");
            if let Ok(r) = self.conn.exists(&path, false, Consistency::Local).await
                && r.stat
                    .is_some_and(|s| s.ephemeral_owner == self.conn.session())
            {
                return Some(path);
            }
        }
        None
    }

    async fn position(&self, me: &Contender) -> Result<Position, ConnError> {
        let children = self
            .conn
            .get_children(PARENT, false, Consistency::Local)
            .await?
            .children;
        let mut queue: Vec<(u64, &String)> = children
            .iter()
            .filter_map(|name| Some((sequence_of(name, PREFIX)?, name)))
            .collect();
        queue.sort();
        let mine = queue
            .iter()
            .position(|(sequence, _)| *sequence == me.sequence)
            .ok_or_else(|| gone(&me.node))?;
        Ok(match mine {
            0 => Position::First,
            _ => Position::Behind(format!("{PARENT}/{}", queue[mine - 1].1)),
        })
    }

    /// `None` when first; otherwise the predecessor, now watched.
    async fn check_once(&self, me: &Contender) -> Result<Option<String>, ConnError> {
        loop {
            match self.position(me).await? {
                Position::First => return Ok(None),
                Position::Behind(predecessor) => {
                    let watched = self
                        .conn
                        .exists(&predecessor, true, Consistency::Local)
                        .await?;
                    if watched.stat.is_some() {
                        return Ok(Some(predecessor));
                    }
                    // It left between the two reads: look again at once. Each pass finds the
                    // queue shorter, so this ends.
                }
            }
        }
    }

    /// Waits until first in the queue: `Ok(false)` if `timeout` passed first. An error means
    /// the contender is out (its node or session is gone) or the queue could not be read.
    async fn wait_until_first(
        &mut self,
        me: &Contender,
        timeout: Duration,
    ) -> Result<bool, ConnError> {
        let deadline = Instant::now() + timeout;
        loop {
            // Wake-ups queued before this check are answered by it.
            while self.events.try_recv().is_ok() {}
            match self.check_once(me).await {
                Ok(None) => return Ok(true),
                Ok(Some(_)) => {}
                Err(e) if e.is_indeterminate() || e.code() == ErrorCode::NotReady => {
                    let pause = Duration::from_millis(READ_RETRY_PAUSE_MS);
                    tokio::time::sleep_until(deadline.min(Instant::now() + pause)).await;
                    if Instant::now() >= deadline {
                        return Ok(false);
                    }
                    continue;
                }
                Err(e) => return Err(e),
            }
            let recheck = Instant::now() + Duration::from_millis(RECHECK_INTERVAL_MS);
            tokio::select! {
                // Events first when both are ready: a simulated run must not depend on
                // select!'s random order.
                biased;
                event = self.events.recv() => match event {
                    Some(ConnEvent::Watch(_)) | Some(ConnEvent::Disconnected) => {}
                    Some(ConnEvent::Ended(_)) | None => {
                        return Err(ConnError::definite(
                            ErrorCode::SessionExpired,
                            "the session ended while waiting",
                        ));
                    }
                },
                _ = tokio::time::sleep_until(deadline.min(recheck)) => {}
            }
            if Instant::now() >= deadline {
                // One last look: the predecessor may have left just now.
                return Ok(matches!(self.position(me).await, Ok(Position::First)));
            }
        }
    }

    async fn claim(&mut self, timeout: Duration) -> Completion {
        let me = match self.election.take() {
            Some(me) => me,
            None => match self.join().await {
                Ok(me) => me,
                Err(e) => return completion_of(&e),
            },
        };
        match self.wait_until_first(&me, timeout.mul_f64(0.8)).await {
            Ok(true) => {
                let token = me.sequence;
                self.election = Some(me);
                self.token = Some(token);
                Completion::ok(json!({"token": token}))
            }
            Ok(false) => {
                self.election = Some(me);
                Completion::fail("not_leader")
            }
            Err(e) => {
                // Out of the election (node or session gone), or the queue could not be read;
                // rejoining is safe either way (a stale node of ours only delays us).
                self.token = None;
                completion_of(&e)
            }
        }
    }

    async fn fenced_write(&mut self, token: u64) -> Completion {
        let Some(me) = &self.election else {
            return Completion::fail("not in the election");
        };
        match self
            .conn
            .check_and_set_data(&me.node, DATA, &token.to_string(), ANY_VERSION)
            .await
        {
            Ok(written) => Completion::ok(json!({"token": token})).with_zxid(written.stat.mzxid),
            Err(e) => {
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
            Some(me) => match self.conn.delete(&me.node, ANY_VERSION).await {
                Ok(_) => Completion::ok(Value::Null),
                Err(e) if e.code() == ErrorCode::NoNode && !e.is_indeterminate() => {
                    Completion::ok(Value::Null)
                }
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
        Some(self.conn.session())
    }

    fn close(self: Box<Self>) -> BoxFuture<'static, ()> {
        self.conn.close_and_forget()
    }
}
