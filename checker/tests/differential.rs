//! Our search against stateright's `LinearizabilityTester` on many small random histories, both
//! linearizable and not: the verdicts must agree.

use std::fmt::Debug;
use std::hash::Hash;

use checker::linear::{self, Budget, Outcome, SearchOp};
use checker::model::{CasOp, CasRegister, Mutex, MutexOp, Val, Znode, ZnodeOp};
use proptest::prelude::*;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use stateright::semantics::{ConsistencyTester, LinearizabilityTester, SequentialSpec};

/// One simulated client operation.
struct Sim<O, R> {
    thread: usize,
    op: O,
    /// What the client was told: `None` for an operation that ended `info`.
    ret: Option<R>,
    call: usize,
    ret_at: Option<usize>,
}

/// Simulates `threads` clients on one object: each operation takes effect at a random moment
/// between its call and return (so the history is linearizable), except that with probability
/// `lie` a return is replaced by the one the operation would have given in another state.
/// Some operations end `info` (the thread then stops; the op took effect or not).
fn simulate<S, F>(
    seed: u64,
    threads: usize,
    max_ops: usize,
    lie: f64,
    init: &S,
    mut gen_op: F,
) -> Vec<Sim<S::Op, S::Ret>>
where
    S: SequentialSpec + Clone,
    S::Op: Clone,
    F: FnMut(&mut ChaCha8Rng) -> S::Op,
{
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut state = init.clone();
    let mut states_seen = vec![init.clone()];
    let mut sims: Vec<Sim<S::Op, S::Ret>> = Vec::new();
    // per thread: index of the in-flight sim, whether it took effect, crashed?
    let mut in_flight: Vec<Option<(usize, Option<S::Ret>)>> = (0..threads).map(|_| None).collect();
    let mut crashed = vec![false; threads];
    let mut clock = 0;
    let mut started = 0;
    loop {
        let t = rng.random_range(0..threads);
        if crashed[t] {
            if crashed.iter().all(|&c| c) {
                break;
            }
            continue;
        }
        match in_flight[t].take() {
            None => {
                if started >= max_ops {
                    if in_flight.iter().all(Option::is_none) {
                        break;
                    }
                    continue;
                }
                started += 1;
                sims.push(Sim {
                    thread: t,
                    op: gen_op(&mut rng),
                    ret: None,
                    call: clock,
                    ret_at: None,
                });
                clock += 1;
                in_flight[t] = Some((sims.len() - 1, None));
            }
            Some((i, None)) => {
                // take effect now
                let r = state.invoke(&sims[i].op);
                states_seen.push(state.clone());
                in_flight[t] = Some((i, Some(r)));
            }
            Some((i, Some(r))) => {
                if rng.random_bool(0.12) {
                    crashed[t] = true; // ends info: took effect
                    continue;
                }
                let r = if rng.random_bool(lie) {
                    let mut other = states_seen[rng.random_range(0..states_seen.len())].clone();
                    other.invoke(&sims[i].op)
                } else {
                    r
                };
                sims[i].ret = Some(r);
                sims[i].ret_at = Some(clock);
                clock += 1;
            }
        }
        // Crash before taking effect, sometimes.
        if let Some((_, None)) = in_flight[t]
            && rng.random_bool(0.05)
        {
            in_flight[t] = None;
            crashed[t] = true;
        }
    }
    sims
}

fn ours<S>(init: &S, sims: &[Sim<S::Op, S::Ret>]) -> bool
where
    S: SequentialSpec<Op: Clone + Eq + Hash, Ret: Clone + Eq + Hash> + Clone + Eq + Hash,
{
    let ops: Vec<SearchOp<S>> = sims
        .iter()
        .map(|s| SearchOp {
            op: s.op.clone(),
            ret: s.ret.clone(),
            call: s.call,
            ret_at: s.ret_at,
        })
        .collect();
    let all: Vec<usize> = (0..ops.len()).collect();
    let verdict = |o: Outcome| match o {
        Outcome::Linearizable => true,
        Outcome::NotLinearizable { .. } => false,
        Outcome::Unknown(u) => panic!("unknown on a tiny history: {u:?}"),
    };
    let budget = Budget::unlimited();
    let plain = verdict(linear::search(init, &ops, &all, &budget, None, false));
    // With `explain` the search keeps a trace; the verdict must not depend on it.
    let explained = verdict(linear::search(init, &ops, &all, &budget, None, true));
    assert_eq!(plain, explained);
    plain
}

fn theirs<S>(init: &S, sims: &[Sim<S::Op, S::Ret>]) -> bool
where
    S: SequentialSpec + Clone,
    S::Op: Clone + Debug,
    S::Ret: Clone + Debug + PartialEq,
{
    let mut events: Vec<(usize, bool, usize)> = Vec::new(); // (time, is_return, sim)
    for (i, s) in sims.iter().enumerate() {
        events.push((s.call, false, i));
        if let Some(r) = s.ret_at {
            events.push((r, true, i));
        }
    }
    events.sort();
    let mut t = LinearizabilityTester::new(init.clone());
    for (_, is_return, i) in events {
        let s = &sims[i];
        if is_return {
            t.on_return(s.thread, s.ret.clone().expect("returned"))
                .expect("well-formed");
        } else {
            t.on_invoke(s.thread, s.op.clone()).expect("well-formed");
        }
    }
    t.is_consistent()
}

fn agree<S, F>(
    seed: u64,
    threads: usize,
    ops: usize,
    lie: f64,
    init: S,
    gen_op: F,
) -> Result<bool, TestCaseError>
where
    S: SequentialSpec<Op: Clone + Debug + Eq + Hash, Ret: Clone + Debug + Eq + Hash>
        + Clone
        + Eq
        + Hash,
    F: FnMut(&mut ChaCha8Rng) -> S::Op,
{
    let sims = simulate(seed, threads, ops, lie, &init, gen_op);
    let a = ours(&init, &sims);
    let b = theirs(&init, &sims);
    prop_assert_eq!(a, b, "seed {} threads {} ops {}", seed, threads, ops);
    Ok(a)
}

fn cas_op(rng: &mut ChaCha8Rng) -> CasOp {
    let v = |rng: &mut ChaCha8Rng| Val(rng.random_range(0..3));
    match rng.random_range(0..3) {
        0 => CasOp::Read,
        1 => CasOp::Write(v(rng)),
        _ => CasOp::Cas(v(rng), v(rng)),
    }
}

fn znode_op(rng: &mut ChaCha8Rng) -> ZnodeOp {
    let version = |rng: &mut ChaCha8Rng| {
        if rng.random_bool(0.3) {
            None
        } else {
            Some(rng.random_range(0..3))
        }
    };
    match rng.random_range(0..5) {
        0 | 1 => ZnodeOp::Read,
        2 => ZnodeOp::Set {
            data: Val(rng.random_range(1..3)),
            expected: version(rng),
        },
        3 => ZnodeOp::Create {
            data: Val(rng.random_range(1..3)),
        },
        _ => ZnodeOp::Delete {
            expected: version(rng),
        },
    }
}

fn mutex_op(rng: &mut ChaCha8Rng) -> MutexOp {
    if rng.random_bool(0.5) {
        MutexOp::Acquire
    } else {
        MutexOp::Release
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn cas_register_agrees(seed in any::<u64>(), threads in 1usize..5, ops in 1usize..11, lie in 0.0f64..0.4) {
        agree(seed, threads, ops, lie, CasRegister(Val(0)), cas_op)?;
    }

    #[test]
    fn znode_agrees(seed in any::<u64>(), threads in 1usize..5, ops in 1usize..11, lie in 0.0f64..0.4) {
        agree(seed, threads, ops, lie, Znode(None), znode_op)?;
    }

    #[test]
    fn mutex_agrees(seed in any::<u64>(), threads in 1usize..4, ops in 1usize..8, lie in 0.0f64..0.3) {
        agree(seed, threads, ops, lie, Mutex(false), mutex_op)?;
    }
}

/// Both verdicts occur: the comparison above is not vacuous.
#[test]
fn random_histories_cover_both_verdicts() {
    let (mut valid, mut invalid, mut ops, mut info) = (0, 0, 0, 0);
    for seed in 0..300 {
        let sims = simulate(seed, 3, 7, 0.3, &CasRegister(Val(0)), cas_op);
        ops += sims.len();
        info += sims.iter().filter(|s| s.ret.is_none()).count();
        if ours(&CasRegister(Val(0)), &sims) {
            valid += 1;
        } else {
            invalid += 1;
        }
    }
    assert!(
        valid > 30 && invalid > 30,
        "valid {valid}, invalid {invalid}"
    );
    assert!(ops >= 300 * 4 && info >= 100, "{ops} ops, {info} info");
}
