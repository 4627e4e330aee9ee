//! register: versioned compare-and-set registers. Each key is a znode read with its version,
//! written, compare-and-set against the version this process last saw, created and
//! deleted; checked for linearizability per key against the znode model.
//!
//! Keys rotate: a worker moves to a fresh set of keys every [`OPS_PER_WINDOW`] operations, so
//! each key's history stays small enough to check exactly (as Jepsen's independent keys).
//! The znodes do not exist at the start, which is the model's initial state.

use super::conn::{Conn, completion_of, data_value, setup_paths};
use super::{Env, OpenContext, Workload};
use crate::client::{Client, Completion};
use crate::generator::{Context, Generator, Op};
use futures::FutureExt;
use futures::future::BoxFuture;
use keeper_wire::{ANY_VERSION, Consistency, CreateMode, ErrorCode};
use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub const PARENT: &str = "/schism/register";
/// Operations one worker performs on one window's keys before it moves on.
pub const OPS_PER_WINDOW: u64 = 50;
/// Keys in use at a time.
pub const KEYS_PER_WINDOW: u64 = 3;
/// Values written are 0..VALUES: few values make anomalies likelier to show.
const VALUES: i64 = 10;
/// Most keys the final reads cover.
const MAX_FINAL_KEYS: u64 = 600;

pub struct Register {
    /// The highest key window any worker reached (for the final reads).
    max_window: Arc<AtomicU64>,
}

impl Register {
    pub fn new() -> Register {
        Register {
            max_window: Arc::new(AtomicU64::new(0)),
        }
    }
}

impl Default for Register {
    fn default() -> Self {
        Self::new()
    }
}

fn key_name(window: u64, k: u64) -> String {
    format!("r{window}-{k}")
}

fn path_of(key: &str) -> String {
    format!("{PARENT}/{key}")
}

impl Workload for Register {
    fn name(&self) -> &'static str {
        "register"
    }

    fn setup<'a>(&'a self, env: &'a Env) -> BoxFuture<'a, anyhow::Result<()>> {
        setup_paths(env, vec!["/schism".to_string(), PARENT.to_string()])
    }

    fn generator(&self, _worker: usize) -> Box<dyn Generator> {
        let max_window = self.max_window.clone();
        let mut count = 0u64;
        let mut key = move |rng: &mut ChaCha8Rng| {
            let window = count / OPS_PER_WINDOW;
            count += 1;
            max_window.fetch_max(window, Ordering::Relaxed);
            key_name(window, rng.random_range(0..KEYS_PER_WINDOW))
        };
        Box::new(move |_: &Context, rng: &mut ChaCha8Rng| {
            let k = key(rng);
            let k = Some(k.as_str());
            let v = rng.random_range(0..VALUES);
            Some(match rng.random_range(0..100) {
                0..40 => Op::new("read", k, Value::Null),
                40..60 => Op::new("write", k, json!(v)),
                60..88 => Op::new("cas", k, json!({"from_version": 0, "to": v})),
                88..97 => Op::new("create", k, json!(v)),
                _ => Op::new("delete", k, Value::Null),
            })
        })
    }

    fn open<'a>(&'a self, ctx: OpenContext<'a>) -> BoxFuture<'a, Result<Box<dyn Client>, String>> {
        async move {
            let conn = Conn::open(ctx.env, ctx.node).await?;
            Ok(Box::new(RegisterClient {
                conn,
                versions: HashMap::new(),
                consistency: ctx.env.read_consistency,
            }) as Box<dyn Client>)
        }
        .boxed()
    }

    fn final_ops(&self) -> Vec<Op> {
        let windows = self.max_window.load(Ordering::Relaxed) + 1;
        (0..windows)
            .flat_map(|w| (0..KEYS_PER_WINDOW).map(move |k| key_name(w, k)))
            .take(MAX_FINAL_KEYS as usize)
            .map(|k| Op::new("read", Some(&k), Value::Null))
            .collect()
    }
}

struct RegisterClient {
    conn: Conn,
    /// The version this process last saw per key: what its compare-and-sets expect.
    versions: HashMap<String, i32>,
    consistency: Consistency,
}

impl RegisterClient {
    async fn run(&mut self, op: &Op) -> Completion {
        let key = op.key.clone().unwrap_or_default();
        let path = path_of(&key);
        match op.f.as_str() {
            "read" => match self.conn.get_data(&path, false, self.consistency).await {
                Ok(r) => {
                    self.versions.insert(key, r.stat.version);
                    Completion::ok(json!([data_value(&r.data), r.stat.version])).with_zxid(r.zxid)
                }
                // Reading that the node does not exist is a successful read.
                Err(e) if e.code() == ErrorCode::NoNode && !e.is_indeterminate() => {
                    self.versions.remove(&key);
                    Completion::ok(Value::Null)
                }
                Err(e) => completion_of(&e),
            },
            "write" | "cas" => {
                let (data, version) = if op.f == "write" {
                    (op.value.clone(), ANY_VERSION)
                } else {
                    let from = op
                        .value
                        .get("from_version")
                        .and_then(Value::as_i64)
                        .unwrap_or(0);
                    (
                        op.value.get("to").cloned().unwrap_or(Value::Null),
                        from as i32,
                    )
                };
                match self.conn.set_data(&path, &data.to_string(), version).await {
                    Ok(r) => {
                        self.versions.insert(key, r.stat.version);
                        Completion::ok(json!({"version": r.stat.version})).with_zxid(r.stat.mzxid)
                    }
                    Err(e) => completion_of(&e),
                }
            }
            "create" => {
                match self
                    .conn
                    .create(&path, &op.value.to_string(), CreateMode::Persistent)
                    .await
                {
                    Ok(r) => {
                        self.versions.insert(key, r.stat.version);
                        Completion::ok(Value::Null).with_zxid(r.stat.czxid)
                    }
                    Err(e) => completion_of(&e),
                }
            }
            // The reply's zxid over HTTP; ZooKeeper's protocol tells none.
            "delete" => match self.conn.delete(&path, ANY_VERSION).await {
                Ok(zxid) => {
                    self.versions.remove(&key);
                    Completion::ok(Value::Null).with_zxid(zxid)
                }
                Err(e) => completion_of(&e),
            },
            other => Completion::fail(format!("register has no operation `{other}`")),
        }
    }
}

impl Client for RegisterClient {
    fn prepare(&mut self, mut op: Op) -> Op {
        if op.f == "cas"
            && let Some(key) = &op.key
        {
            let expected = self.versions.get(key).copied().unwrap_or(0);
            op.value["from_version"] = json!(expected);
        }
        op
    }

    fn invoke<'a>(&'a mut self, op: &'a Op, _timeout: Duration) -> BoxFuture<'a, Completion> {
        // Every request of the connection is bounded by the run's operation timeout.
        self.run(op).boxed()
    }

    fn session(&self) -> Option<u64> {
        Some(self.conn.session())
    }

    fn close(self: Box<Self>) -> BoxFuture<'static, ()> {
        self.conn.close_and_forget()
    }
}
