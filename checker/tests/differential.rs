//! Our search against stateright's `LinearizabilityTester` on many small random histories, both
//! linearizable and not: the verdicts must agree.

use std::fmt::Debug;
use std::hash::Hash;

use checker::linear::{self, Budget, Outcome, SearchOp};
use checker::model::{CasOp, CasRegister, Footprint, Mutex, MutexOp, Val, Znode, ZnodeOp};
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

/// How a simulated history is shaped.
#[derive(Clone, Copy)]
struct Shape {
    /// Clients running at once.
    threads: usize,
    max_ops: usize,
    /// Probability that a return is replaced by the one the operation would have given in
    /// another state (the history is then usually not linearizable).
    lie: f64,
    /// Probability that an operation that took effect ends `info`; half of it, that an
    /// operation ends `info` before taking effect.
    info: f64,
    /// After an `info`, the client stops (`false`) or goes on as a new process (`true`, as
    /// Jepsen's clients do), so `info` operations pile up while `threads` stay busy.
    respawn: bool,
}

/// Simulates clients on one object: each operation takes effect at a random moment between its
/// call and return (so the history is linearizable) unless `shape.lie` replaces its return;
/// some operations end `info` (they took effect, or not).
fn simulate<S, F>(seed: u64, shape: Shape, init: &S, mut gen_op: F) -> Vec<Sim<S::Op, S::Ret>>
where
    S: SequentialSpec + Clone,
    S::Op: Clone,
    F: FnMut(&mut ChaCha8Rng) -> S::Op,
{
    let Shape {
        threads,
        max_ops,
        lie,
        info,
        respawn,
    } = shape;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut state = init.clone();
    let mut states_seen = vec![init.clone()];
    let mut sims: Vec<Sim<S::Op, S::Ret>> = Vec::new();
    // per client: index of the in-flight sim and its result once it took effect
    let mut in_flight: Vec<Option<(usize, Option<S::Ret>)>> = (0..threads).map(|_| None).collect();
    let mut crashed = vec![false; threads];
    // per client: the process id it currently runs as
    let mut process: Vec<usize> = (0..threads).collect();
    let mut next_process = threads;
    let mut clock = 0;
    let mut started = 0;
    let mut end_info = |t: usize, crashed: &mut Vec<bool>, process: &mut Vec<usize>| {
        if respawn {
            process[t] = next_process;
            next_process += 1;
        } else {
            crashed[t] = true;
        }
    };
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
                    thread: process[t],
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
                if rng.random_bool(info) {
                    end_info(t, &mut crashed, &mut process); // took effect
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
        // End `info` before taking effect, sometimes.
        if let Some((_, None)) = in_flight[t]
            && rng.random_bool(info / 2.0)
        {
            in_flight[t] = None;
            end_info(t, &mut crashed, &mut process);
        }
    }
    sims
}

fn ours<S>(init: &S, sims: &[Sim<S::Op, S::Ret>]) -> bool
where
    S: SequentialSpec<Op: Clone + Eq + Hash, Ret: Clone + Eq + Hash>
        + Footprint
        + Clone
        + Eq
        + Hash,
{
    let mut ops: Vec<SearchOp<S>> = sims
        .iter()
        .map(|s| SearchOp {
            op: s.op.clone(),
            ret: s.ret.clone(),
            call: s.call,
            ret_at: s.ret_at,
        })
        .collect();
    // As `linear::prepare` does; the reference sees the values as they were.
    linear::erase_unseen(&mut ops);
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

fn agree<S, F>(seed: u64, shape: Shape, init: S, gen_op: F) -> Result<bool, TestCaseError>
where
    S: SequentialSpec<Op: Clone + Debug + Eq + Hash, Ret: Clone + Debug + Eq + Hash>
        + Footprint
        + Clone
        + Eq
        + Hash,
    F: FnMut(&mut ChaCha8Rng) -> S::Op,
{
    let sims = simulate(seed, shape, &init, gen_op);
    let a = ours(&init, &sims);
    let b = theirs(&init, &sims);
    prop_assert_eq!(
        a,
        b,
        "seed {} threads {} ops {} lie {} info {}",
        seed,
        shape.threads,
        shape.max_ops,
        shape.lie,
        shape.info
    );
    Ok(a)
}

/// The `k`-th value of a small history: nil, then values past [`Val::UNSEEN`], which no history
/// value interns to.
fn val(k: u32) -> Val {
    if k == 0 {
        Val::NIL
    } else {
        Val(Val::UNSEEN.0 + k)
    }
}

fn cas_op(rng: &mut ChaCha8Rng) -> CasOp {
    let v = |rng: &mut ChaCha8Rng| val(rng.random_range(0..3));
    match rng.random_range(0..3) {
        0 => CasOp::Read,
        1 => CasOp::Write(v(rng)),
        _ => CasOp::Cas(v(rng), v(rng)),
    }
}

/// As [`cas_op`] with more values, so that fewer wrong returns happen to be explained by
/// some pending `info` operation.
fn cas_op_wide(rng: &mut ChaCha8Rng) -> CasOp {
    let v = |rng: &mut ChaCha8Rng| val(rng.random_range(0..8));
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
            data: val(rng.random_range(1..3)),
            expected: version(rng),
        },
        3 => ZnodeOp::Create {
            data: val(rng.random_range(1..3)),
        },
        _ => ZnodeOp::Delete {
            expected: version(rng),
        },
    }
}

/// As [`znode_op`] with more data values, most of them never read back, and conditional sets
/// on the versions most likely to be current: `info` sets of unread data are what
/// `linear::erase_unseen` merges, and the versions are what the no-overshoot rule bounds.
fn znode_op_wide(rng: &mut ChaCha8Rng) -> ZnodeOp {
    let version = |rng: &mut ChaCha8Rng| {
        if rng.random_bool(0.4) {
            None
        } else {
            Some(rng.random_range(0..4))
        }
    };
    match rng.random_range(0..8) {
        0..=2 => ZnodeOp::Read,
        3..=5 => ZnodeOp::Set {
            data: val(rng.random_range(1..9)),
            expected: version(rng),
        },
        6 => ZnodeOp::Create {
            data: val(rng.random_range(1..9)),
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

/// The shape of the small histories: few clients, a few `info` operations.
fn small(threads: usize, max_ops: usize, lie: f64) -> Shape {
    Shape {
        threads,
        max_ops,
        lie,
        info: 0.12,
        respawn: false,
    }
}

/// Many clients at once and many `info` operations, still small enough for stateright's
/// unmemoised search.
fn crowded(threads: usize, max_ops: usize, lie: f64, info: f64) -> Shape {
    Shape {
        threads,
        max_ops,
        lie,
        info,
        respawn: true,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn cas_register_agrees(seed in any::<u64>(), threads in 1usize..5, ops in 1usize..11, lie in 0.0f64..0.4) {
        agree(seed, small(threads, ops, lie), CasRegister(Val(0)), cas_op)?;
    }

    #[test]
    fn znode_agrees(seed in any::<u64>(), threads in 1usize..5, ops in 1usize..11, lie in 0.0f64..0.4) {
        agree(seed, small(threads, ops, lie), Znode(None), znode_op)?;
    }

    #[test]
    fn mutex_agrees(seed in any::<u64>(), threads in 1usize..4, ops in 1usize..8, lie in 0.0f64..0.3) {
        agree(seed, small(threads, ops, lie), Mutex(false), mutex_op)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn cas_register_crowded_agrees(
        seed in any::<u64>(), threads in 5usize..9, ops in 8usize..13,
        lie in 0.0f64..0.9, info in 0.15f64..0.4,
    ) {
        agree(seed, crowded(threads, ops, lie, info), CasRegister(Val(0)), cas_op_wide)?;
    }

    #[test]
    fn znode_crowded_agrees(
        seed in any::<u64>(), threads in 5usize..9, ops in 8usize..13,
        lie in 0.0f64..0.9, info in 0.15f64..0.4,
    ) {
        agree(seed, crowded(threads, ops, lie, info), Znode(None), znode_op)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 100, ..ProptestConfig::default() })]

    #[test]
    fn cas_register_many_processes_agrees(
        seed in any::<u64>(), threads in 8usize..13, ops in 9usize..12,
        lie in 0.0f64..0.9, info in 0.2f64..0.5,
    ) {
        agree(seed, crowded(threads, ops, lie, info), CasRegister(Val(0)), cas_op_wide)?;
    }

    #[test]
    fn znode_many_processes_agrees(
        seed in any::<u64>(), threads in 8usize..13, ops in 9usize..12,
        lie in 0.0f64..0.9, info in 0.2f64..0.5,
    ) {
        agree(seed, crowded(threads, ops, lie, info), Znode(None), znode_op_wide)?;
    }
}

/// Counts the verdicts of our search on 300 histories of one shape.
fn verdicts<S>(
    init: &S,
    shape: Shape,
    gen_op: fn(&mut ChaCha8Rng) -> S::Op,
) -> (usize, usize, usize, usize)
where
    S: SequentialSpec<Op: Clone + Eq + Hash, Ret: Clone + Eq + Hash>
        + Footprint
        + Clone
        + Eq
        + Hash,
{
    let (mut valid, mut invalid, mut ops, mut info) = (0, 0, 0, 0);
    for seed in 0..300 {
        let sims = simulate(seed, shape, init, gen_op);
        ops += sims.len();
        info += sims.iter().filter(|s| s.ret.is_none()).count();
        if ours(init, &sims) {
            valid += 1;
        } else {
            invalid += 1;
        }
    }
    (valid, invalid, ops, info)
}

/// Both verdicts occur, with `info` operations: the comparisons above are not vacuous.
#[test]
fn random_histories_cover_both_verdicts() {
    let cas = CasRegister(Val(0));
    for (name, counts, min_info) in [
        ("small", verdicts(&cas, small(3, 7, 0.3), cas_op), 100),
        (
            "crowded",
            verdicts(&cas, crowded(7, 12, 0.6, 0.2), cas_op_wide),
            1000,
        ),
        (
            "many cas-register",
            verdicts(&cas, crowded(10, 11, 0.9, 0.2), cas_op_wide),
            900,
        ),
        (
            "many znode",
            verdicts(&Znode(None), crowded(10, 11, 0.9, 0.2), znode_op_wide),
            900,
        ),
    ] {
        let (valid, invalid, ops, info) = counts;
        assert!(
            valid > 30 && invalid > 30,
            "{name}: valid {valid}, invalid {invalid}"
        );
        assert!(
            ops >= 300 * 4 && info >= min_info,
            "{name}: {ops} ops, {info} info"
        );
    }
}

/// An operation of a hand-written history: `ret` `None` ends `info`, `ret_at` `None` never
/// returns.
fn sim<O, R>(
    thread: usize,
    op: O,
    ret: Option<R>,
    call: usize,
    ret_at: Option<usize>,
) -> Sim<O, R> {
    Sim {
        thread,
        op,
        ret,
        call,
        ret_at,
    }
}

/// A read sees a value only a chain of `info` operations makes (an `info` write, then an `info`
/// cas from it), long after both: the "must be seen" bound follows the chain; without the cas
/// the read is not linearizable.
#[test]
fn an_info_chain_seen_long_after_is_still_tried() {
    use checker::model::CasRet;
    let (v2, v3, v4) = (val(2), val(3), val(4));
    let mut h = vec![
        sim(0, CasOp::Write(v2), None, 0, None),
        sim(1, CasOp::Cas(v2, v3), None, 1, None),
        sim(2, CasOp::Write(v4), Some(CasRet::Write), 2, Some(3)),
    ];
    for k in 0..6 {
        h.push(sim(
            3,
            CasOp::Read,
            Some(CasRet::Read(v4)),
            4 + 2 * k,
            Some(5 + 2 * k),
        ));
    }
    h.push(sim(3, CasOp::Read, Some(CasRet::Read(v3)), 20, Some(21)));
    let init = CasRegister(Val::NIL);
    assert!(ours(&init, &h) && theirs(&init, &h));
    h.remove(1);
    assert!(!ours(&init, &h) && !theirs(&init, &h));
}

/// Two `info` sets of data nobody reads become one operation twice (`erase_unseen`), and both
/// are still needed to reach the version a later cas expects; with one of them, it is not.
#[test]
fn erased_info_sets_still_count_one_version_each() {
    use checker::model::ZnodeRet;
    let (x, y, z) = (val(2), val(3), val(4));
    let set = |data| ZnodeOp::Set {
        data,
        expected: None,
    };
    let mut h = vec![
        sim(
            0,
            ZnodeOp::Create { data: x },
            Some(ZnodeRet::Created),
            0,
            Some(1),
        ),
        sim(1, set(x), None, 2, None),
        sim(2, set(y), None, 3, None),
        sim(
            3,
            ZnodeOp::Set {
                data: z,
                expected: Some(2),
            },
            Some(ZnodeRet::Set(Some(3))),
            4,
            Some(5),
        ),
        sim(
            3,
            ZnodeOp::Read,
            Some(ZnodeRet::Read(Some((z, 3)))),
            6,
            Some(7),
        ),
    ];
    let init = Znode(None);
    assert!(ours(&init, &h) && theirs(&init, &h));
    h.remove(2);
    assert!(!ours(&init, &h) && !theirs(&init, &h));
}
