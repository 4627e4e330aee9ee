//! session: clients create ephemeral nodes; some close their session, some stop
//! heartbeating so it expires; others read. Checked by the sessions checker: once a session's
//! close or expiry is acknowledged, no read invoked afterwards sees its ephemeral nodes.
//!
//! An expiry counts as acknowledged when the session's event stream announces it, with the
//! zxid of the expiry (so a lagging node's local read is recognised as stale, not wrong).

use super::conn::{Conn, ConnEvent, Observer, completion_of, setup_paths};
use super::{Env, OpenContext, Workload};
use crate::client::{Client, Completion};
use crate::generator::{Context, Generator, Op};
use futures::FutureExt;
use futures::future::BoxFuture;
use keeper_wire::{Consistency, CreateMode, ErrorCode};
use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub const PARENT: &str = "/schism/session";
/// Ephemeral paths the clients compete for.
pub const PATHS: usize = 8;

pub struct Sessions;

fn path(i: usize) -> String {
    format!("{PARENT}/e{i}")
}

impl Workload for Sessions {
    fn name(&self) -> &'static str {
        "session"
    }

    fn setup<'a>(&'a self, env: &'a Env) -> BoxFuture<'a, anyhow::Result<()>> {
        setup_paths(env, vec!["/schism".to_string(), PARENT.to_string()])
    }

    fn generator(&self, _worker: usize) -> Box<dyn Generator> {
        Box::new(|ctx: &Context, rng: &mut ChaCha8Rng| {
            let p = path(rng.random_range(0..PATHS));
            Some(match rng.random_range(0..100) {
                0..30 => Op::new(
                    "create_ephemeral",
                    Some(&p),
                    json!(format!("p{}", ctx.process)),
                ),
                30..90 => Op::new("read", Some(&p), Value::Null),
                90..96 => Op::new("close_session", None, Value::Null),
                _ => Op::new("stop_heartbeats", None, Value::Null),
            })
        })
    }

    fn open<'a>(&'a self, ctx: OpenContext<'a>) -> BoxFuture<'a, Result<Box<dyn Client>, String>> {
        async move {
            let conn = Conn::open(ctx.env, ctx.node).await?;
            let observer = Observer::new(ctx.recorder, ctx.process, conn.session(), &ctx.node.name);
            let sink = observer.clone();
            // The server's timeout, not the one asked for: a server with a short tick grants
            // less, and the checker judges an expiry against what the session was granted.
            let timeout_ms = conn.session_timeout().as_millis() as u64;
            let ended = Arc::new(AtomicBool::new(false));
            let flag = ended.clone();
            conn.spawn_events(move |event| {
                if let ConnEvent::Ended(end) = event {
                    if end.expired {
                        sink.observe(
                            "expired",
                            None,
                            json!({"state": "expired", "timeout_ms": timeout_ms}),
                            end.zxid,
                        );
                    }
                    flag.store(true, Ordering::Relaxed);
                }
            });
            Ok(Box::new(SessionClient {
                conn,
                observer,
                consistency: ctx.env.read_consistency,
                abandoned: false,
                ended,
            }) as Box<dyn Client>)
        }
        .boxed()
    }

    fn final_ops(&self) -> Vec<Op> {
        (0..PATHS)
            .map(|i| Op::new("read", Some(&path(i)), Value::Null))
            .collect()
    }
}

struct SessionClient {
    conn: Conn,
    observer: Observer,
    consistency: Consistency,
    /// The client stopped heartbeating: on close, wait for the expiry instead of closing.
    abandoned: bool,
    /// The session's event stream announced its end.
    ended: Arc<AtomicBool>,
}

/// How long an abandoned session's event stream is kept open for its expiry: the session
/// timeout, the leader's expiry check and the delivery, with room to spare.
/// keeper's leader waits two timeouts of its own clock (see docs/FAULTS.md).
const ABANDONED_WAIT_MS: u64 = conn_timeout_ms() * 4;

const fn conn_timeout_ms() -> u64 {
    super::conn::SESSION_TIMEOUT_MS
}

impl SessionClient {
    async fn run(&mut self, op: &Op) -> Completion {
        let path = op.key.clone().unwrap_or_default();
        match op.f.as_str() {
            "create_ephemeral" => {
                let data = op.value.as_str().unwrap_or_default();
                match self.conn.create(&path, data, CreateMode::Ephemeral).await {
                    Ok(r) => Completion::ok(op.value.clone()).with_zxid(r.stat.czxid),
                    Err(e) => completion_of(&e),
                }
            }
            "read" => match self.conn.exists(&path, false, self.consistency).await {
                Ok(r) => {
                    let value = match r.stat {
                        Some(stat) => json!({"owner": stat.ephemeral_owner}),
                        None => Value::Null,
                    };
                    Completion::ok(value).with_zxid(r.zxid)
                }
                Err(e) => completion_of(&e),
            },
            "close_session" => match self.conn.close().await {
                Ok(zxid) => Completion::ok(Value::Null).with_zxid(zxid).reopening(),
                Err(e) if e.code() == ErrorCode::SessionExpired => completion_of(&e),
                Err(e) => {
                    let mut c = completion_of(&e);
                    c.reopen = true;
                    c
                }
            },
            "stop_heartbeats" => {
                // The client goes quiet: no heartbeats and no requests (every request is a
                // heartbeat too), so the session expires on its own. The worker carries on with
                // a new session; this one's events are still watched to observe the expiry.
                self.conn.go_quiet();
                self.abandoned = true;
                Completion::ok(Value::Null).reopening()
            }
            other => Completion::fail(format!("session has no operation `{other}`")),
        }
    }
}

impl Client for SessionClient {
    fn prepare(&mut self, op: Op) -> Op {
        self.observer.begin_op();
        op
    }

    fn invoke<'a>(&'a mut self, op: &'a Op, _timeout: Duration) -> BoxFuture<'a, Completion> {
        // Every request of the connection is bounded by the run's operation timeout.
        self.run(op).boxed()
    }

    fn completed(&mut self, completion: &Completion) {
        self.observer.end_op(completion);
    }

    fn session(&self) -> Option<u64> {
        Some(self.conn.session())
    }

    fn close(self: Box<Self>) -> BoxFuture<'static, ()> {
        async move {
            if self.abandoned {
                // Detached: the worker bounds close() tightly, and the expiry takes a while.
                tokio::spawn(async move {
                    let deadline =
                        tokio::time::Instant::now() + Duration::from_millis(ABANDONED_WAIT_MS);
                    while !self.ended.load(Ordering::Relaxed)
                        && tokio::time::Instant::now() < deadline
                    {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    self.observer.finish();
                    let _ = self.conn.close().await;
                });
                return;
            }
            self.observer.finish();
            let _ = self.conn.close().await;
        }
        .boxed()
    }
}
