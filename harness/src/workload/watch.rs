//! watch: clients set watches (`exists` on a few znodes, `get_children` on their parent)
//! while others create, change and delete those znodes. Every event a session receives is
//! recorded; the watches checker verifies each watch fires at most once, only after a change
//! that happened, and that a session's events come in zxid order.
//!
//! A session whose event stream broke may have lost watches (they live on the node that took
//! them, as in ZooKeeper). Such a client closes its session before doing anything else, which
//! tells the checker not to expect those watches to fire.

use super::conn::{Conn, ConnEvent, Observer, completion_of, setup_paths};
use super::{Env, OpenContext, Workload};
use crate::client::{Client, Completion};
use crate::generator::{Context, Generator, Op};
use futures::FutureExt;
use futures::future::BoxFuture;
use keeper_wire::{ANY_VERSION, Consistency, CreateMode, ErrorCode};
use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub const PARENT: &str = "/schism/watch";
/// Watched znodes.
pub const PATHS: usize = 4;
const VALUES: i64 = 100;

pub struct Watches;

fn path(i: usize) -> String {
    format!("{PARENT}/w{i}")
}

impl Workload for Watches {
    fn name(&self) -> &'static str {
        "watch"
    }

    fn setup<'a>(&'a self, env: &'a Env) -> BoxFuture<'a, anyhow::Result<()>> {
        setup_paths(env, vec!["/schism".to_string(), PARENT.to_string()])
    }

    fn generator(&self, _worker: usize) -> Box<dyn Generator> {
        Box::new(|_: &Context, rng: &mut ChaCha8Rng| {
            let p = path(rng.random_range(0..PATHS));
            Some(match rng.random_range(0..100) {
                0..35 => Op::new("watch", Some(&p), json!({"kind": "exists"})),
                35..45 => Op::new("watch", Some(PARENT), json!({"kind": "children"})),
                45..75 => Op::new("write", Some(&p), json!(rng.random_range(0..VALUES))),
                75..90 => Op::new("create", Some(&p), json!(rng.random_range(0..VALUES))),
                _ => Op::new("delete", Some(&p), Value::Null),
            })
        })
    }

    fn open<'a>(&'a self, ctx: OpenContext<'a>) -> BoxFuture<'a, Result<Box<dyn Client>, String>> {
        async move {
            let conn = Conn::open(ctx.env, ctx.node).await?;
            let observer = Observer::new(ctx.recorder, ctx.process, conn.session(), &ctx.node.name);
            let troubled = Arc::new(AtomicBool::new(false));
            let (sink, flag) = (observer.clone(), troubled.clone());
            conn.spawn_events(move |event| match event {
                ConnEvent::Watch(w) => sink.observe(
                    "event",
                    Some(&w.path),
                    json!({"path": w.path, "zxid": w.zxid, "type": w.kind}),
                    w.zxid,
                ),
                ConnEvent::Ended(end) => {
                    if end.expired {
                        sink.observe("expired", None, json!({"state": "expired"}), end.zxid);
                    }
                    flag.store(true, Ordering::Relaxed);
                }
                ConnEvent::Disconnected => flag.store(true, Ordering::Relaxed),
            });
            Ok(Box::new(WatchClient {
                conn,
                observer,
                troubled,
                consistency: ctx.env.read_consistency,
            }) as Box<dyn Client>)
        }
        .boxed()
    }

    fn final_ops(&self) -> Vec<Op> {
        Vec::new()
    }
}

struct WatchClient {
    conn: Conn,
    observer: Observer,
    /// The event stream broke or the session ended: watches may be lost.
    troubled: Arc<AtomicBool>,
    consistency: Consistency,
}

impl WatchClient {
    async fn run(&mut self, op: &Op) -> Completion {
        let path = op.key.clone().unwrap_or_default();
        match op.f.as_str() {
            "watch" => {
                let children = op.value.get("kind").and_then(Value::as_str) == Some("children");
                let reply = if children {
                    self.conn
                        .get_children(&path, true, self.consistency)
                        .await
                        .map(|r| (json!({"children": r.children}), Some(r.stat), r.zxid))
                } else {
                    self.conn
                        .exists(&path, true, self.consistency)
                        .await
                        .map(|r| (json!({"exists": r.stat.is_some()}), r.stat, r.zxid))
                };
                match reply {
                    Ok((result, stat, zxid)) => {
                        // The invocation's value says what kind of watch it is; keep it.
                        let mut value = op.value.clone();
                        value["result"] = result;
                        // Without the reply's zxid, the Stat bounds where the watch was set:
                        // after the node's last data change (`mzxid`) and, for children,
                        // after the parent's last child change (`pzxid`).
                        if zxid.is_none()
                            && let Some(stat) = stat
                        {
                            value["stat"] = json!({"mzxid": stat.mzxid, "pzxid": stat.pzxid});
                        }
                        Completion::ok(value).with_zxid(zxid)
                    }
                    Err(e) => completion_of(&e),
                }
            }
            "write" => match self
                .conn
                .set_data(&path, &op.value.to_string(), ANY_VERSION)
                .await
            {
                Ok(r) => Completion::ok(op.value.clone()).with_zxid(r.stat.mzxid),
                Err(e) => completion_of(&e),
            },
            "create" => match self
                .conn
                .create(&path, &op.value.to_string(), CreateMode::Persistent)
                .await
            {
                Ok(r) => Completion::ok(op.value.clone()).with_zxid(r.stat.czxid),
                Err(e) => completion_of(&e),
            },
            // The reply's zxid is the node's view, not necessarily the delete's own: recording
            // it could make a genuine event look like one for a change that never happened, so
            // the delete is recorded without a zxid.
            "delete" => match self.conn.delete(&path, ANY_VERSION).await {
                Ok(_) => Completion::ok(Value::Null),
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
            other => Completion::fail(format!("watch has no operation `{other}`")),
        }
    }
}

impl Client for WatchClient {
    fn prepare(&mut self, op: Op) -> Op {
        self.observer.begin_op();
        if self.troubled.load(Ordering::Relaxed) {
            return Op::new("close_session", None, Value::Null);
        }
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
            self.observer.finish();
            let _ = self.conn.close().await;
        }
        .boxed()
    }
}
