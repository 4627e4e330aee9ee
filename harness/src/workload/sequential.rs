//! sequential: creates of persistent sequential znodes under a few parents. Checked for
//! unique sequence numbers per parent, and real-time order (a create that finished before
//! another began got the smaller number).

use super::conn::{Conn, completion_of, setup_paths};
use super::{Env, OpenContext, Workload};
use crate::client::{Client, Completion};
use crate::generator::{Context, Generator, Op};
use futures::FutureExt;
use futures::future::BoxFuture;
use keeper_wire::{ANY_VERSION, Consistency, CreateMode};
use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use serde_json::json;
use std::time::Duration;

pub const ROOT: &str = "/schism/sequential";
/// Parents the creates spread over.
pub const PARENTS: usize = 3;
/// Prefix of every created name; the sequence number follows it.
const PREFIX: &str = "n-";

pub struct Sequential;

fn parent(i: usize) -> String {
    format!("{ROOT}/p{i}")
}

/// The sequence number ZooKeeper appends: the digits at the end of the created name.
pub fn sequence_of(path: &str) -> Option<u64> {
    let name = path.rsplit('/').next()?;
    let digits = name.strip_prefix(PREFIX)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

impl Workload for Sequential {
    fn name(&self) -> &'static str {
        "sequential"
    }

    fn setup<'a>(&'a self, env: &'a Env) -> BoxFuture<'a, anyhow::Result<()>> {
        let mut paths = vec!["/schism".to_string(), ROOT.to_string()];
        paths.extend((0..PARENTS).map(parent));
        setup_paths(env, paths)
    }

    fn generator(&self, _worker: usize) -> Box<dyn Generator> {
        Box::new(|ctx: &Context, rng: &mut ChaCha8Rng| {
            let p = parent(rng.random_range(0..PARENTS));
            // Now and then the oldest child goes (a queue's consumer): sequence numbers must
            // still never repeat, since they count creations, not children.
            if rng.random_range(0..100) < TRIM_PERCENT {
                return Some(Op::new("trim", Some(&p), serde_json::Value::Null));
            }
            Some(Op::new(
                "create",
                Some(&p),
                json!(format!("p{}", ctx.process)),
            ))
        })
    }

    fn open<'a>(&'a self, ctx: OpenContext<'a>) -> BoxFuture<'a, Result<Box<dyn Client>, String>> {
        async move {
            let conn = Conn::open(ctx.env, ctx.node).await?;
            Ok(Box::new(SequentialClient { conn }) as Box<dyn Client>)
        }
        .boxed()
    }

    fn final_ops(&self) -> Vec<Op> {
        Vec::new()
    }
}

struct SequentialClient {
    conn: Conn,
}

/// Share of operations that delete the oldest child of a parent.
const TRIM_PERCENT: u32 = 20;

impl SequentialClient {
    /// Deletes the lowest-numbered child of `parent`, if any; `ok` with its name or null.
    async fn trim(&mut self, parent: &str) -> Completion {
        let children = match self
            .conn
            .get_children(parent, false, Consistency::Local)
            .await
        {
            Ok(r) => r.children,
            // Nothing was changed yet: a read that failed is a definite failure of the trim.
            Err(e) => return Completion::fail(e.to_string()),
        };
        let Some(oldest) = children.iter().min_by_key(|c| sequence_of(c)) else {
            return Completion::ok(serde_json::Value::Null);
        };
        match self
            .conn
            .delete(&format!("{parent}/{oldest}"), ANY_VERSION)
            .await
        {
            Ok(zxid) => Completion::ok(json!(oldest)).with_zxid(zxid),
            Err(e) => completion_of(&e),
        }
    }

    async fn run(&mut self, op: &Op) -> Completion {
        let Some(parent) = &op.key else {
            return Completion::fail("create needs a parent");
        };
        if op.f == "trim" {
            return self.trim(parent).await;
        }
        let data = op.value.as_str().unwrap_or_default();
        match self
            .conn
            .create(
                &format!("{parent}/{PREFIX}"),
                data,
                CreateMode::PersistentSequential,
            )
            .await
        {
            Ok(r) => match sequence_of(&r.path) {
                Some(n) => Completion::ok(json!(n)).with_zxid(r.stat.czxid),
                // Created, but the reply is not what a sequential create returns: the
                // outcome cannot be read, so it is indeterminate.
                None => Completion::info(format!("no sequence number in {}", r.path)),
            },
            Err(e) => completion_of(&e),
        }
    }
}

impl Client for SequentialClient {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_are_the_trailing_digits() {
        assert_eq!(sequence_of("/schism/sequential/p0/n-0000000042"), Some(42));
        assert_eq!(sequence_of("/schism/sequential/p0/n-"), None);
        assert_eq!(sequence_of("/schism/sequential/p0/x-0001"), None);
    }
}
