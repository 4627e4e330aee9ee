//! Linearizability: Wing & Gong's search with Lowe's memoisation, as in porcupine.
//!
//! The history of one key becomes a doubly linked list of call and return entries in history
//! order. The search walks it from the front: at a call it tries to apply the operation to the
//! model; if the step is allowed and (set of linearized operations, new state) was never seen, it
//! lifts the operation out of the list and starts again from the front. Reaching a return entry
//! means its operation should have been linearized by now: backtrack. An `info` operation has
//! no return entry (it may take effect at any time after its call, or never), so the history is
//! linearizable as soon as every `ok` operation is linearized.
//!
//! At each node of the search, `ok` operations are tried before `info` ones: an info operation
//! only needs to take effect just before something that depends on it, so the info ones are
//! tried only when the walk reaches a return. Histories with many info operations are what make
//! this search slow (each may or may not have happened), so [`decide`] first runs cheap
//! searches that allow only a few info operations in a row, and falls back to the exhaustive
//! one when they find nothing.
//!
//! P-compositionality: keys are independent objects, so each key is searched alone, keys in
//! parallel on every core; the first violation stops every search.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use stateright::semantics::SequentialSpec;

use crate::history::{EventType, Op};
use crate::model::{Interner, Model, Step};
use crate::verdict::{CheckerResult, Counterexample, LinearizedStep, OpView, Verdict};

/// Search steps between looks at the clock, the memory account and the stop flag.
const BUDGET_CHECK_STEPS: u64 = 4096;
/// Time spent shrinking a counterexample, at most.
const SHRINK_TIME_LIMIT_MS: u64 = 10_000;
/// Steps one search may take while shrinking; a search that needs more counts as "not shown
/// invalid", so the operation stays in the counterexample.
const SHRINK_STEP_LIMIT: u64 = 500_000;
/// Keys listed in the details with the time their search took.
const SLOWEST_KEYS_LISTED: usize = 5;
/// Info operations in a row the fast first searches may linearize, one search per bound.
const FAST_INFO_CHAINS: [usize; 3] = [1, 2, 3];
/// Step allowance of the fast first search: per operation, plus a constant.
const FAST_STEPS_PER_OP: u64 = 256;
const FAST_STEPS_BASE: u64 = 100_000;

/// FxHash (rustc's): the cache hashes a bitset and a small state per step, and SipHash would be
/// most of the search's time.
#[derive(Default, Clone, Copy)]
pub struct FxHasher(u64);

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(b));
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_u32(&mut self, n: u32) {
        self.write_u64(n as u64)
    }
    fn write_u8(&mut self, n: u8) {
        self.write_u64(n as u64)
    }
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64)
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

pub type FxBuild = BuildHasherDefault<FxHasher>;

/// Limits shared by every search of one check.
pub struct Budget {
    deadline: Option<Instant>,
    memory_limit_bytes: Option<u64>,
    memory_used_bytes: AtomicU64,
    stop: AtomicBool,
}

impl Budget {
    pub fn new(time_limit: Option<Duration>, memory_limit_bytes: Option<u64>) -> Budget {
        Budget {
            deadline: time_limit.map(|t| Instant::now() + t),
            memory_limit_bytes,
            memory_used_bytes: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        }
    }

    pub fn unlimited() -> Budget {
        Budget::new(None, None)
    }

    /// Asks every search to give up (a violation was found elsewhere).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn exceeded(&self) -> Option<Unknown> {
        if self.stopped() {
            return Some(Unknown::Stopped);
        }
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return Some(Unknown::TimeLimit);
        }
        if self
            .memory_limit_bytes
            .is_some_and(|m| self.memory_used_bytes.load(Ordering::Relaxed) > m)
        {
            return Some(Unknown::MemoryLimit);
        }
        None
    }
}

/// Why a search gave no answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unknown {
    TimeLimit,
    MemoryLimit,
    StepLimit,
    /// Another key's search found a violation first.
    Stopped,
}

impl Unknown {
    pub fn as_str(self) -> &'static str {
        match self {
            Unknown::TimeLimit => "time limit reached",
            Unknown::MemoryLimit => "memory limit reached",
            Unknown::StepLimit => "step limit reached",
            Unknown::Stopped => "stopped after a violation elsewhere",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Linearizable,
    /// `longest`: the longest partial linearization seen, as positions in the searched subset
    /// (only filled in when asked for: it costs a copy per improvement).
    NotLinearizable {
        longest: Vec<usize>,
    },
    Unknown(Unknown),
}

/// One operation as the search sees it. Positions order the calls and returns: history order,
/// not timestamps, so two events never tie.
pub struct SearchOp<S: SequentialSpec> {
    pub op: S::Op,
    /// `None`: an `info` operation, which may take effect with any result or never.
    pub ret: Option<S::Ret>,
    pub call: usize,
    /// `None` for an `info` operation: it returns at +infinity.
    pub ret_at: Option<usize>,
}

/// Set of linearized operations.
struct Bits(Box<[u64]>);

impl Bits {
    fn new(n: usize) -> Bits {
        Bits(vec![0; n.div_ceil(64)].into_boxed_slice())
    }
    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
    fn clear(&mut self, i: usize) {
        self.0[i / 64] &= !(1 << (i % 64));
    }
}

/// Lowe's memo of visited (linearized set, state) pairs. The sets live in one flat arena, so
/// an entry costs its words and its state, with no allocation of its own, and dropping a cache
/// of millions of entries is a handful of frees.
struct Cache<S> {
    words: usize,
    bits: Vec<u64>,
    states: Vec<S>,
    /// The info chain length the pair was reached with (bounded searches only: a pair reached
    /// again with a shorter chain has more moves left, so it is not a repeat).
    chains: Vec<u8>,
    /// Next entry with the same hash, `NO_ENTRY` at the end of a chain.
    chain: Vec<u32>,
    /// Hash of (set, state) -> most recent entry with that hash.
    table: HashMap<u64, u32, FxBuild>,
}

const NO_ENTRY: u32 = u32::MAX;

impl<S: Eq + Hash> Cache<S> {
    fn new(words: usize) -> Cache<S> {
        Cache {
            words,
            bits: Vec::new(),
            states: Vec::new(),
            chains: Vec::new(),
            chain: Vec::new(),
            table: HashMap::default(),
        }
    }

    /// Records the pair; false if it was already there.
    fn insert(&mut self, bits: &[u64], state: &S, chain: u8) -> bool
    where
        S: Clone,
    {
        let mut h = FxHasher::default();
        bits.hash(&mut h);
        state.hash(&mut h);
        let hash = h.finish();
        let w = self.words;
        let head = self.table.get(&hash).copied().unwrap_or(NO_ENTRY);
        let mut i = head;
        while i != NO_ENTRY {
            let at = i as usize;
            if self.chains[at] <= chain
                && self.bits[at * w..(at + 1) * w] == *bits
                && self.states[at] == *state
            {
                return false;
            }
            i = self.chain[at];
        }
        let id = self.states.len() as u32;
        self.bits.extend_from_slice(bits);
        self.states.push(state.clone());
        self.chains.push(chain);
        self.chain.push(head);
        self.table.insert(hash, id);
        true
    }

    /// Heap bytes held, counting spare capacity.
    fn bytes(&self) -> u64 {
        (self.bits.capacity() * 8
            + self.states.capacity() * std::mem::size_of::<S>()
            + self.chains.capacity()
            + self.chain.capacity() * 4
            + self.table.capacity() * (8 + 4 + 1)) as u64
    }
}

const RETURN_BIT: u32 = 1 << 31;

/// Searches for a linearization of `ops[subset]` from `init`.
///
/// `max_chain` bounds how many info operations may be linearized in a row. Bounded, the search
/// is a fast heuristic: a linearization it finds is real, but "not linearizable" only means
/// "none with such short chains" (its memo tells pairs apart by the chain they were reached with,
/// so within its bound it is exhaustive). Only the unbounded search (`None`) proves a violation.
pub fn search<S>(
    init: &S,
    ops: &[SearchOp<S>],
    subset: &[usize],
    budget: &Budget,
    step_limit: Option<u64>,
    max_chain: Option<usize>,
    explain: bool,
) -> Outcome
where
    S: SequentialSpec + Clone + Eq + Hash,
{
    search_order(init, ops, subset, budget, step_limit, max_chain, explain).0
}

/// [`search`], also returning the linearization found (positions in `subset`), when `explain`.
fn search_order<S>(
    init: &S,
    ops: &[SearchOp<S>],
    subset: &[usize],
    budget: &Budget,
    step_limit: Option<u64>,
    max_chain: Option<usize>,
    explain: bool,
) -> (Outcome, Vec<usize>)
where
    S: SequentialSpec + Clone + Eq + Hash,
{
    let n = subset.len();
    // Entries: 0 is the head sentinel, 1..=m the calls and returns in history order, m+1 the tail.
    let mut order: Vec<(usize, u32)> = Vec::with_capacity(2 * n);
    for (id, &i) in subset.iter().enumerate() {
        order.push((ops[i].call, id as u32));
        if let Some(r) = ops[i].ret_at {
            order.push((r, id as u32 | RETURN_BIT));
        }
    }
    order.sort_unstable_by_key(|&(pos, _)| pos);
    let m = order.len();
    let tail = m + 1;
    let mut next: Vec<usize> = (1..=m + 1).chain(std::iter::once(tail)).collect();
    let mut prev: Vec<usize> = std::iter::once(0).chain(0..=m).collect();
    let mut entry_of: Vec<u32> = Vec::with_capacity(m + 2);
    entry_of.push(0);
    // For each op (by subset position): its return entry (0 = none).
    let mut ret_entry = vec![0usize; n];
    for (e, &(_, tag)) in order.iter().enumerate() {
        let e = e + 1;
        entry_of.push(tag);
        let id = (tag & !RETURN_BIT) as usize;
        if tag & RETURN_BIT != 0 {
            ret_entry[id] = e;
        }
    }
    entry_of.push(0);

    let mut ok_left = subset.iter().filter(|&&i| ops[i].ret.is_some()).count();
    let mut linearized = Bits::new(n);
    let mut cache: Cache<S> = Cache::new(linearized.0.len());
    // (call entry, state before it, info chain length before it)
    let mut calls: Vec<(usize, S, usize)> = Vec::new();
    // Ok operations are tried before info ones at each node (an info operation is only needed
    // when something after it depends on it), and `chain` counts the info operations on top of
    // the stack, bounded by `max_chain`.
    let mut info_phase = false;
    let mut chain = 0usize;
    let mut longest: Vec<usize> = Vec::new();
    let mut state = init.clone();
    let mut entry = next[0];
    let mut steps: u64 = 0;
    let mut accounted: u64 = 0;

    let outcome = loop {
        if ok_left == 0 {
            if explain {
                longest = calls
                    .iter()
                    .map(|&(e, _, _)| entry_of[e] as usize)
                    .collect();
            }
            break Outcome::Linearizable;
        }
        steps += 1;
        if steps.is_multiple_of(BUDGET_CHECK_STEPS) {
            let bytes = cache.bytes();
            budget
                .memory_used_bytes
                .fetch_add(bytes - accounted, Ordering::Relaxed);
            accounted = bytes;
            if let Some(why) = budget.exceeded() {
                break Outcome::Unknown(why);
            }
            if step_limit.is_some_and(|l| steps > l) {
                break Outcome::Unknown(Unknown::StepLimit);
            }
        }
        let tag = entry_of[entry];
        let at_return = entry == tail || tag & RETURN_BIT != 0;
        if at_return && !info_phase {
            // A return: its operation should have been linearized by now. Before giving up on
            // this node, try the info operations called before it.
            info_phase = true;
            entry = next[0];
            continue;
        }
        if at_return {
            let Some((e, s, chain_before)) = calls.pop() else {
                break Outcome::NotLinearizable {
                    longest: std::mem::take(&mut longest),
                };
            };
            let id = entry_of[e] as usize;
            linearized.clear(id);
            state = s;
            chain = chain_before;
            info_phase = ops[subset[id]].ret.is_none();
            if !info_phase {
                ok_left += 1;
            }
            let r = ret_entry[id];
            if r != 0 {
                next[prev[r]] = r;
                prev[next[r]] = r;
            }
            next[prev[e]] = e;
            prev[next[e]] = e;
            entry = next[e];
            continue;
        }
        let id = tag as usize;
        let sop = &ops[subset[id]];
        let is_info = sop.ret.is_none();
        if is_info != info_phase || (is_info && max_chain.is_some_and(|l| chain >= l)) {
            entry = next[entry];
            continue;
        }
        let mut after = state.clone();
        let allowed = match &sop.ret {
            Some(r) => after.is_valid_step(&sop.op, r),
            None => {
                after.invoke(&sop.op);
                true
            }
        };
        if allowed {
            linearized.set(id);
            let tag = match (max_chain, is_info) {
                (None, _) => 0,
                (Some(_), true) => (chain + 1).min(u8::MAX as usize) as u8,
                (Some(_), false) => 0,
            };
            if cache.insert(&linearized.0, &after, tag) {
                calls.push((entry, std::mem::replace(&mut state, after), chain));
                if is_info {
                    chain += 1;
                } else {
                    ok_left -= 1;
                    chain = 0;
                }
                info_phase = false;
                // lift the call and its return out of the list
                next[prev[entry]] = next[entry];
                prev[next[entry]] = prev[entry];
                let r = ret_entry[id];
                if r != 0 {
                    next[prev[r]] = next[r];
                    prev[next[r]] = prev[r];
                }
                if explain && calls.len() > longest.len() {
                    longest = calls
                        .iter()
                        .map(|&(e, _, _)| entry_of[e] as usize)
                        .collect();
                }
                entry = next[0];
                continue;
            }
            linearized.clear(id);
        }
        entry = next[entry];
    };
    budget
        .memory_used_bytes
        .fetch_sub(accounted, Ordering::Relaxed);
    (outcome, longest)
}

/// [`search`] with the info-chain heuristic first: most histories linearize with at most
/// a few info operations in a row, and that search is cheap; only when it finds
/// nothing does the exhaustive search run.
pub fn decide<S>(
    init: &S,
    ops: &[SearchOp<S>],
    subset: &[usize],
    budget: &Budget,
    step_limit: Option<u64>,
    explain: bool,
) -> Outcome
where
    S: SequentialSpec + Clone + Eq + Hash,
{
    if subset.iter().any(|&i| ops[i].ret.is_none()) {
        let fast_steps = FAST_STEPS_PER_OP * subset.len() as u64 + FAST_STEPS_BASE;
        let limit = step_limit.map_or(fast_steps, |l| l.min(fast_steps));
        for chain in FAST_INFO_CHAINS {
            match search(init, ops, subset, budget, Some(limit), Some(chain), false) {
                Outcome::Linearizable => return Outcome::Linearizable,
                Outcome::Unknown(u) if u != Unknown::StepLimit => return Outcome::Unknown(u),
                _ => {}
            }
        }
    }
    search(init, ops, subset, budget, step_limit, None, explain)
}

/// One key's history in the model's terms.
pub struct Prepared<S: SequentialSpec> {
    pub init: S,
    pub ops: Vec<SearchOp<S>>,
    /// For each search op, its index in the checked `Op` slice.
    pub source: Vec<usize>,
    pub vals: Interner,
}

/// A history operation the model could not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranslateError {
    /// Position of the offending event in the event slice.
    pub position: usize,
    pub expected: String,
}

/// Translates one key's operations (`indices` into `ops`); `fail` operations did not happen.
pub fn prepare<M: Model>(
    model: &M,
    ops: &[Op<'_>],
    indices: &[usize],
) -> Result<Prepared<M::Spec>, TranslateError> {
    let mut vals = Interner::default();
    let init = model.init(&mut vals);
    let mut out = Vec::with_capacity(indices.len());
    let mut source = Vec::with_capacity(indices.len());
    for &i in indices {
        let op = &ops[i];
        if op.kind() == EventType::Fail {
            continue;
        }
        let step = model
            .translate(op, &mut vals)
            .map_err(|expected| TranslateError {
                position: op.complete_pos.unwrap_or(op.invoke_pos),
                expected,
            })?;
        let Some(Step { op: sop, ret }) = step else {
            continue;
        };
        let ret_at = if ret.is_some() { op.complete_pos } else { None };
        out.push(SearchOp {
            op: sop,
            ret,
            call: op.invoke_pos,
            ret_at,
        });
        source.push(i);
    }
    Ok(Prepared {
        init,
        ops: out,
        source,
        vals,
    })
}

/// Limits for [`check`].
#[derive(Clone, Debug, Default)]
pub struct Limits {
    pub time_limit: Option<Duration>,
    pub memory_limit_bytes: Option<u64>,
    /// Worker threads; `None`: all cores.
    pub threads: Option<usize>,
}

enum KeyResult {
    Valid,
    Invalid,
    Unknown(Unknown),
}

/// Checks `ops` for linearizability against `model`, key by key.
pub fn check<M: Model>(
    model: &M,
    ops: &[Op<'_>],
    limits: &Limits,
) -> Result<CheckerResult, TranslateError> {
    let started = Instant::now();
    let mut by_key: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, op) in ops.iter().enumerate() {
        if op.invoke.is_observation() {
            continue;
        }
        by_key.entry(op.key().unwrap_or("")).or_default().push(i);
    }
    let mut keys: Vec<(&str, Vec<usize>)> = by_key.into_iter().collect();
    // Largest first, so one big key does not start last and run alone.
    keys.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.0.cmp(b.0)));
    let budget = Budget::new(limits.time_limit, limits.memory_limit_bytes);
    let threads = limits
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .clamp(1, keys.len().max(1));
    let next_key = AtomicUsize::new(0);
    let key_micros: Vec<AtomicU64> = keys.iter().map(|_| AtomicU64::new(0)).collect();
    let results: Vec<std::sync::Mutex<Option<Result<KeyResult, TranslateError>>>> =
        keys.iter().map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    let k = next_key.fetch_add(1, Ordering::Relaxed);
                    if k >= keys.len() || budget.stopped() {
                        break;
                    }
                    if let Some(why) = budget.exceeded() {
                        if let Ok(mut slot) = results[k].lock() {
                            *slot = Some(Ok(KeyResult::Unknown(why)));
                        }
                        continue;
                    }
                    let key_started = Instant::now();
                    let r = prepare(model, ops, &keys[k].1).map(|p| {
                        let all: Vec<usize> = (0..p.ops.len()).collect();
                        match decide(&p.init, &p.ops, &all, &budget, None, false) {
                            Outcome::Linearizable => KeyResult::Valid,
                            Outcome::NotLinearizable { .. } => KeyResult::Invalid,
                            Outcome::Unknown(u) => KeyResult::Unknown(u),
                        }
                    });
                    if matches!(r, Ok(KeyResult::Invalid) | Err(_)) {
                        budget.stop();
                    }
                    key_micros[k]
                        .store(key_started.elapsed().as_micros() as u64, Ordering::Relaxed);
                    if let Ok(mut slot) = results[k].lock() {
                        *slot = Some(r);
                    }
                }
            });
        }
    });
    let mut valid = 0usize;
    let mut unknown: Vec<(&str, Unknown)> = Vec::new();
    let mut invalid: Option<usize> = None;
    for (k, slot) in results.into_iter().enumerate() {
        match slot.into_inner().ok().flatten() {
            Some(Err(e)) => return Err(e),
            Some(Ok(KeyResult::Valid)) => valid += 1,
            Some(Ok(KeyResult::Invalid)) => {
                invalid.get_or_insert(k);
            }
            Some(Ok(KeyResult::Unknown(u))) => unknown.push((keys[k].0, u)),
            None => unknown.push((keys[k].0, Unknown::Stopped)),
        }
    }
    let checked_ops: usize = keys.iter().map(|k| k.1.len()).sum();
    let elapsed_ms = started.elapsed().as_millis() as u64;
    let mut details = json!({
        "model": model.name(),
        "keys": keys.len(),
        "ops": checked_ops,
        "valid_keys": valid,
        "elapsed_ms": elapsed_ms,
    });
    let mut slowest: Vec<(u64, &str)> = key_micros
        .iter()
        .zip(&keys)
        .map(|(m, k)| (m.load(Ordering::Relaxed), k.0))
        .collect();
    slowest.sort_unstable_by(|a, b| b.cmp(a));
    details["slowest_keys"] = json!(
        slowest
            .iter()
            .take(SLOWEST_KEYS_LISTED)
            .map(|(us, k)| json!({"key": k, "ms": us / 1000}))
            .collect::<Vec<_>>()
    );
    if let Some(k) = invalid {
        let (key, indices) = &keys[k];
        let p = prepare(model, ops, indices)?;
        let cx = counterexample(model, ops, &p, key);
        details["invalid_key"] = json!(key);
        let summary = format!(
            "key {:?} is not linearizable ({} ops shrunk to {}); {} keys checked",
            key,
            p.ops.len(),
            cx.ops.len(),
            keys.len()
        );
        let mut r = CheckerResult::new("linearizable", Verdict::Invalid, summary, details);
        r.counterexample = Some(cx);
        return Ok(r);
    }
    if !unknown.is_empty() {
        let why = unknown[0].1.as_str();
        details["unknown_keys"] = json!(unknown.iter().take(100).map(|u| u.0).collect::<Vec<_>>());
        details["reason"] = json!(why);
        let summary = format!(
            "{} of {} keys unknown ({why}); {} ops, model {}",
            unknown.len(),
            keys.len(),
            checked_ops,
            model.name()
        );
        return Ok(CheckerResult::new(
            "linearizable",
            Verdict::Unknown,
            summary,
            details,
        ));
    }
    let summary = format!(
        "{} keys, {} ops, model {}, {} ms",
        keys.len(),
        checked_ops,
        model.name(),
        elapsed_ms
    );
    Ok(CheckerResult::new(
        "linearizable",
        Verdict::Valid,
        summary,
        details,
    ))
}

/// Is `subset`, from state `init`, shown non-linearizable within the shrink step limit?
fn invalid<S: SequentialSpec + Clone + Eq + Hash>(
    init: &S,
    p: &Prepared<S>,
    subset: &[usize],
    budget: &Budget,
) -> bool {
    matches!(
        decide(init, &p.ops, subset, budget, Some(SHRINK_STEP_LIMIT), false),
        Outcome::NotLinearizable { .. }
    )
}

/// A smaller history that is still not linearizable: `subset` (indices into the prepared ops)
/// from state `init`, which is the state after `skipped` earlier operations.
pub struct Shrunk<S> {
    pub init: S,
    pub skipped: usize,
    pub subset: Vec<usize>,
}

/// Applies `ops[subset[pos]]` for each `pos` of `order` to `state`.
fn replay<S: SequentialSpec>(state: &mut S, p: &Prepared<S>, subset: &[usize], order: &[usize]) {
    for &pos in order {
        let o = &p.ops[subset[pos]];
        match &o.ret {
            Some(r) => {
                state.is_valid_step(&o.op, r);
            }
            None => {
                state.invoke(&o.op);
            }
        }
    }
}

/// Drops operations while the history stays non-linearizable: first the shortest invalid prefix
/// (in call order); then the longest run of operations at the start of the longest linearizable
/// prefix that can be replaced by the state they lead to; then chunks of halving size, down to
/// single operations.
///
/// A violation of real-time order (a stale read: the value was written, but too early) must not
/// shrink into a different, cheaper one (a read of a value nobody wrote, once its write is
/// dropped). So when the operation the search gets stuck on would have been fine at some point
/// of a linearization of the others, every smaller candidate must keep it so.
pub fn shrink<S>(p: &Prepared<S>) -> Shrunk<S>
where
    S: SequentialSpec<Op: Clone, Ret: Clone> + Clone + Eq + Hash,
{
    let budget = Budget::new(Some(Duration::from_millis(SHRINK_TIME_LIMIT_MS)), None);
    let mut by_call: Vec<usize> = (0..p.ops.len()).collect();
    by_call.sort_by_key(|&i| p.ops[i].call);
    let (mut lo, mut hi) = (1, by_call.len());
    while lo < hi {
        let mid = (lo + hi) / 2;
        if invalid(&p.init, p, &by_call[..mid], &budget) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    let mut cur: Vec<usize> = by_call[..hi].to_vec();
    let mut init = p.init.clone();
    let mut skipped = 0;
    let longest = match search(
        &init,
        &p.ops,
        &cur,
        &budget,
        Some(SHRINK_STEP_LIMIT),
        None,
        true,
    ) {
        Outcome::NotLinearizable { longest } => longest,
        _ => Vec::new(),
    };
    // The operation the search got stuck on: of those outside the longest linearizable prefix,
    // the one that must return first.
    let done: HashSet<usize> = longest.iter().map(|&pos| cur[pos]).collect();
    let stuck = cur
        .iter()
        .copied()
        .filter(|i| !done.contains(i))
        .filter_map(|i| p.ops[i].ret_at.map(|r| (r, i)))
        .min()
        .map(|(_, i)| i);
    let about_time = stuck.is_some_and(|f| placeable(&init, p, &cur, f, &budget));
    let keeps = |init: &S, candidate: &[usize]| {
        invalid(init, p, candidate, &budget)
            && (!about_time
                || stuck.is_some_and(|f| {
                    candidate.contains(&f) && placeable(init, p, candidate, f, &budget)
                }))
    };
    // Replace the first `j` operations of the longest prefix by the state after them: try the
    // longest such run first, then halve the number of operations kept before the cut.
    let mut back = 1usize;
    while back <= longest.len() {
        let j = longest.len() - back;
        let gone: HashSet<usize> = longest[..j].iter().map(|&pos| cur[pos]).collect();
        let rest: Vec<usize> = cur.iter().copied().filter(|i| !gone.contains(i)).collect();
        let mut state = p.init.clone();
        replay(&mut state, p, &cur, &longest[..j]);
        if keeps(&state, &rest) {
            init = state;
            skipped = j;
            cur = rest;
            break;
        }
        back *= 2;
    }
    let mut chunk = (cur.len() / 2).max(1);
    loop {
        let mut i = 0;
        while i < cur.len() && budget.exceeded().is_none() {
            let end = (i + chunk).min(cur.len());
            let candidate: Vec<usize> = cur[..i].iter().chain(&cur[end..]).copied().collect();
            if !candidate.is_empty() && keeps(&init, &candidate) {
                cur = candidate;
            } else {
                i = end;
            }
        }
        if chunk == 1 || budget.exceeded().is_some() {
            break;
        }
        chunk /= 2;
    }
    Shrunk {
        init,
        skipped,
        subset: cur,
    }
}

/// Could operation `f` take effect at some point of a linearization of `subset` without it,
/// from `init`? (Then only real time keeps it out.)
fn placeable<S>(init: &S, p: &Prepared<S>, subset: &[usize], f: usize, budget: &Budget) -> bool
where
    S: SequentialSpec + Clone + Eq + Hash,
{
    let Some(ret) = &p.ops[f].ret else {
        return true;
    };
    let rest: Vec<usize> = subset.iter().copied().filter(|&i| i != f).collect();
    let (outcome, order) = search_order(
        init,
        &p.ops,
        &rest,
        budget,
        Some(SHRINK_STEP_LIMIT),
        None,
        true,
    );
    if outcome != Outcome::Linearizable {
        return false;
    }
    let mut state = init.clone();
    for pos in order {
        if state.clone().is_valid_step(&p.ops[f].op, ret) {
            return true;
        }
        replay(&mut state, p, &rest, &[pos]);
    }
    state.is_valid_step(&p.ops[f].op, ret)
}

/// The shrunk history of an invalid key, its longest linearizable prefix and the states.
pub fn counterexample<M: Model>(
    model: &M,
    ops: &[Op<'_>],
    p: &Prepared<M::Spec>,
    key: &str,
) -> Counterexample {
    let Shrunk {
        init,
        skipped,
        subset,
    } = shrink(p);
    let outcome = search(
        &init,
        &p.ops,
        &subset,
        &Budget::new(Some(Duration::from_millis(SHRINK_TIME_LIMIT_MS)), None),
        None,
        None,
        true,
    );
    let longest = match outcome {
        Outcome::NotLinearizable { longest } => longest,
        _ => Vec::new(),
    };
    let views: Vec<OpView> = subset
        .iter()
        .map(|&i| OpView::of(&ops[p.source[i]]))
        .collect();
    let mut state = init.clone();
    let mut steps = Vec::with_capacity(longest.len());
    for &id in &longest {
        let sop = &p.ops[subset[id]];
        match &sop.ret {
            Some(r) => {
                state.is_valid_step(&sop.op, r);
            }
            None => {
                state.invoke(&sop.op);
            }
        }
        steps.push(LinearizedStep {
            op: id,
            state: model.describe(&state, &p.vals),
        });
    }
    let stuck: Vec<String> = (0..subset.len())
        .filter(|id| !longest.contains(id) && p.ops[subset[*id]].ret.is_some())
        .map(|id| format!("[{id}] {}", views[id].label()))
        .collect();
    let start = if skipped == 0 {
        String::new()
    } else {
        format!(
            " (starting from the state {skipped} earlier operations lead to, {})",
            model.describe(&init, &p.vals)
        )
    };
    let explanation = format!(
        "no order of these {} operations{start} respects both real time and the {} model; \
         after the prefix above, none of these can take effect next: {}",
        subset.len(),
        model.name(),
        stuck.join(", ")
    );
    Counterexample {
        checker: "linearizable".into(),
        key: Some(key.to_string()),
        model: Some(model.name().into()),
        ops: views,
        initial_state: Some(model.describe(&init, &p.vals)),
        linearization: steps,
        explanation,
        faults: Vec::new(),
    }
}
