//! Generators: what operations the workers perform, and how fast.
//!
//! As in Jepsen, a generator is a small value asked for the next operation; combinators build
//! bigger ones ([`Mix`], [`Limit`], [`Sequence`]). Each worker owns its generator and a ChaCha
//! random stream derived from the run's seed and the worker's number ([`worker_rng`]), so the
//! sequence of operations every worker asks for — and the pauses between them — is the same
//! whenever the seed is. (Which of them succeed depends on the cluster, not on the seed.)

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::VecDeque;
use std::time::Duration;

/// One operation a worker is asked to invoke: Jepsen's `:f`, `:value`, and the key it acts on.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Op {
    pub f: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default)]
    pub value: Value,
}

impl Op {
    pub fn new(f: &str, key: Option<&str>, value: Value) -> Op {
        Op {
            f: f.to_string(),
            key: key.map(str::to_string),
            value,
        }
    }
}

/// What a generator knows when it is asked.
#[derive(Clone, Copy, Debug)]
pub struct Context {
    /// Nanoseconds since the run started.
    pub time_ns: u64,
    /// The Jepsen process that will invoke the operation.
    pub process: u64,
    /// The worker (0..concurrency) that runs that process.
    pub worker: usize,
}

pub trait Generator: Send {
    /// The next operation, or `None` when this generator has nothing more to do.
    fn next_op(&mut self, ctx: &Context, rng: &mut ChaCha8Rng) -> Option<Op>;
}

impl<F> Generator for F
where
    F: FnMut(&Context, &mut ChaCha8Rng) -> Option<Op> + Send,
{
    fn next_op(&mut self, ctx: &Context, rng: &mut ChaCha8Rng) -> Option<Op> {
        self(ctx, rng)
    }
}

/// Each operation comes from one of several generators, chosen at random by weight (Jepsen's
/// `mix`). Exhausted generators drop out; the mix ends when all have.
pub struct Mix {
    parts: Vec<(u32, Box<dyn Generator>)>,
}

impl Mix {
    pub fn new(parts: Vec<(u32, Box<dyn Generator>)>) -> Mix {
        Mix {
            parts: parts.into_iter().filter(|(w, _)| *w > 0).collect(),
        }
    }
}

impl Generator for Mix {
    fn next_op(&mut self, ctx: &Context, rng: &mut ChaCha8Rng) -> Option<Op> {
        while !self.parts.is_empty() {
            let total: u32 = self.parts.iter().map(|(w, _)| w).sum();
            let mut pick = rng.random_range(0..total);
            let mut chosen = 0;
            for (i, (w, _)) in self.parts.iter().enumerate() {
                if pick < *w {
                    chosen = i;
                    break;
                }
                pick -= w;
            }
            match self.parts[chosen].1.next_op(ctx, rng) {
                Some(op) => return Some(op),
                None => {
                    self.parts.remove(chosen);
                }
            }
        }
        None
    }
}

/// At most `n` operations from the inner generator (Jepsen's `limit`).
pub struct Limit<G> {
    inner: G,
    remaining: u64,
}

impl<G: Generator> Limit<G> {
    pub fn new(n: u64, inner: G) -> Limit<G> {
        Limit {
            inner,
            remaining: n,
        }
    }
}

impl<G: Generator> Generator for Limit<G> {
    fn next_op(&mut self, ctx: &Context, rng: &mut ChaCha8Rng) -> Option<Op> {
        if self.remaining == 0 {
            return None;
        }
        let op = self.inner.next_op(ctx, rng)?;
        self.remaining -= 1;
        Some(op)
    }
}

/// A fixed list of operations, in order (final reads, setup steps).
pub struct Sequence {
    ops: VecDeque<Op>,
}

impl Sequence {
    pub fn new(ops: impl IntoIterator<Item = Op>) -> Sequence {
        Sequence {
            ops: ops.into_iter().collect(),
        }
    }
}

impl Generator for Sequence {
    fn next_op(&mut self, _ctx: &Context, _rng: &mut ChaCha8Rng) -> Option<Op> {
        self.ops.pop_front()
    }
}

/// Rate limiting, as Jepsen's `stagger`: between one worker's invocations, a random pause
/// uniform in [0, 2 * concurrency / rate], so all workers together average `rate` ops/s
/// without marching in step. A worker that fell behind does not catch up with a burst.
#[derive(Clone, Debug)]
pub struct Pacer {
    /// Mean pause per worker; zero means no limit.
    mean_gap: Duration,
}

impl Pacer {
    /// `rate` in operations per second over all `concurrency` workers; 0 means unlimited.
    pub fn new(rate: f64, concurrency: usize) -> Pacer {
        let mean_gap = if rate > 0.0 && rate.is_finite() {
            Duration::from_secs_f64(concurrency.max(1) as f64 / rate)
        } else {
            Duration::ZERO
        };
        Pacer { mean_gap }
    }

    /// The pause before this worker's next invocation.
    pub fn next_gap(&self, rng: &mut ChaCha8Rng) -> Duration {
        if self.mean_gap.is_zero() {
            return Duration::ZERO;
        }
        self.mean_gap.mul_f64(rng.random_range(0.0..2.0))
    }
}

/// A sub-seed for one named purpose: independent streams from one run seed (splitmix64).
pub fn derive_seed(seed: u64, purpose: &str, index: u64) -> u64 {
    let mut x = seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    for byte in purpose.bytes() {
        x = (x ^ u64::from(byte)).wrapping_mul(0x100_0000_01B3);
    }
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The random stream of worker `worker` in a run with `seed`.
pub fn worker_rng(seed: u64, worker: usize) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(derive_seed(seed, "worker", worker as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx() -> Context {
        Context {
            time_ns: 0,
            process: 0,
            worker: 0,
        }
    }

    fn reads_and_writes() -> Mix {
        Mix::new(vec![
            (
                1,
                Box::new(|_: &Context, _: &mut ChaCha8Rng| {
                    Some(Op::new("read", Some("a"), Value::Null))
                }),
            ),
            (
                3,
                Box::new(|_: &Context, rng: &mut ChaCha8Rng| {
                    Some(Op::new("write", Some("a"), json!(rng.random_range(0..5))))
                }),
            ),
        ])
    }

    fn take(mut g: impl Generator, seed: u64, n: usize) -> Vec<Op> {
        let mut rng = worker_rng(seed, 3);
        (0..n).map_while(|_| g.next_op(&ctx(), &mut rng)).collect()
    }

    #[test]
    fn same_seed_same_operations_different_seed_different_ones() {
        assert_eq!(
            take(reads_and_writes(), 7, 200),
            take(reads_and_writes(), 7, 200)
        );
        assert_ne!(
            take(reads_and_writes(), 7, 200),
            take(reads_and_writes(), 8, 200)
        );
    }

    #[test]
    fn mix_follows_the_weights() {
        let ops = take(reads_and_writes(), 1, 4000);
        let writes = ops.iter().filter(|o| o.f == "write").count();
        // 3:1 weights; the bound is loose so only a broken mix fails it.
        assert!((2700..3300).contains(&writes), "{writes} writes of 4000");
    }

    #[test]
    fn limit_and_sequence_end() {
        assert_eq!(take(Limit::new(5, reads_and_writes()), 1, 100).len(), 5);
        let seq = Sequence::new(vec![Op::new("read", Some("a"), Value::Null); 3]);
        assert_eq!(take(seq, 1, 100).len(), 3);
        let mix = Mix::new(vec![
            (
                1,
                Box::new(Sequence::new(vec![Op::new("x", None, Value::Null)])),
            ),
            (
                1,
                Box::new(Sequence::new(vec![Op::new("y", None, Value::Null)])),
            ),
        ]);
        let mut fs: Vec<String> = take(mix, 1, 10).into_iter().map(|o| o.f).collect();
        fs.sort();
        assert_eq!(fs, vec!["x", "y"]);
    }

    #[test]
    fn pacer_averages_the_requested_rate() {
        let pacer = Pacer::new(200.0, 10);
        let mut rng = worker_rng(1, 0);
        let n = 10_000;
        let total: Duration = (0..n).map(|_| pacer.next_gap(&mut rng)).sum();
        let mean_ms = total.as_secs_f64() * 1000.0 / n as f64;
        // 10 workers at 200 ops/s together: 50 ms per worker on average.
        assert!((45.0..55.0).contains(&mean_ms), "mean gap {mean_ms} ms");
        assert_eq!(Pacer::new(0.0, 10).next_gap(&mut rng), Duration::ZERO);
    }

    #[test]
    fn derived_seeds_differ_by_purpose_and_index() {
        assert_ne!(derive_seed(1, "worker", 0), derive_seed(1, "worker", 1));
        assert_ne!(derive_seed(1, "worker", 0), derive_seed(1, "nemesis", 0));
        assert_eq!(derive_seed(1, "worker", 0), derive_seed(1, "worker", 0));
    }
}
