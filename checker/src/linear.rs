//! Linearizability: Lowe's just-in-time linearization, searched depth first with a memo of the
//! nodes entered, as porcupine memoises Wing & Gong's search.
//!
//! The search walks the history of one key event by event and linearizes an operation only
//! when its return forces it to (see [`search_order`] for the moves, their order and the rules
//! that cut redundant ones). An `info` operation never returns: it may take effect at any time
//! after its call, or never, so it is linearized only where some later move depends on it.
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
use crate::model::{Footprint, Interner, Model, Needs, Step, Val};
use crate::verdict::{CheckerResult, Counterexample, LinearizedStep, OpView, Verdict};

/// Search steps between looks at the clock, the memory account and the stop flag.
const BUDGET_CHECK_STEPS: u64 = 4096;
/// Time spent shrinking a counterexample, at most.
const SHRINK_TIME_LIMIT_MS: u64 = 10_000;
/// Steps one search may take while shrinking, at least; a search that needs more counts as "not
/// shown invalid", so the operation stays in the counterexample.
const SHRINK_STEP_LIMIT: u64 = 500_000;
/// ... and at most this many times the steps the search of the whole key took: showing a
/// smaller history invalid may take as long as showing the whole one, but not much longer.
const SHRINK_STEPS_PER_KEY_STEP: u64 = 2;
/// A shrunk history at most this long gets every cut of its longest prefix tried (see
/// [`shrink`]); each try is one search of a history this small.
const FINE_CUT_MAX_OPS: usize = 32;
/// Keys listed in the details with the time their search took.
const SLOWEST_KEYS_LISTED: usize = 5;

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

    /// Runs `work` on the items `0..count` on `threads` threads, each taking the next item until
    /// none is left or the budget is stopped (a violation found elsewhere).
    pub fn share_out(&self, count: usize, threads: usize, work: impl Fn(usize) + Sync) {
        let next = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= count || self.stopped() {
                            break;
                        }
                        work(i);
                    }
                });
            }
        });
    }

    pub fn exceeded(&self) -> Option<Unknown> {
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

/// Sorted sets of linearized `info` operations, interned: a search node holds the id of its set,
/// and a set grows one operation at a time, so most nodes share a few sets.
struct InfoSets {
    sets: Vec<Box<[u32]>>,
    ids: HashMap<Box<[u32]>, u32, FxBuild>,
    /// (set, op) -> set with op added.
    grown: HashMap<(u32, u32), u32, FxBuild>,
    /// Each set again as a bitset over the info operations' call order (`slot`), so that the
    /// search's most frequent question, "is this info operation linearized?", is one load.
    bits: Vec<u64>,
    words_per_set: usize,
    /// Per operation id: its place among the info operations (unused for `ok` ones).
    slot: Vec<u32>,
    words: u64,
}

/// The empty info set.
const NO_INFO: u32 = 0;

impl InfoSets {
    fn new(slot: Vec<u32>, info_ops: usize) -> InfoSets {
        let mut s = InfoSets {
            sets: Vec::new(),
            ids: HashMap::default(),
            grown: HashMap::default(),
            bits: Vec::new(),
            words_per_set: info_ops.div_ceil(64).max(1),
            slot,
            words: 0,
        };
        s.intern(Box::new([]));
        s
    }

    fn intern(&mut self, set: Box<[u32]>) -> u32 {
        if let Some(&id) = self.ids.get(&set) {
            return id;
        }
        let id = self.sets.len() as u32;
        self.words += 2 * set.len() as u64;
        let base = self.bits.len();
        self.bits.resize(base + self.words_per_set, 0);
        for &op in set.iter() {
            let k = self.slot[op as usize] as usize;
            self.bits[base + k / 64] |= 1 << (k % 64);
        }
        self.sets.push(set.clone());
        self.ids.insert(set, id);
        id
    }

    fn contains(&self, set: u32, op: u32) -> bool {
        let k = self.slot[op as usize] as usize;
        self.bits[set as usize * self.words_per_set + k / 64] & (1 << (k % 64)) != 0
    }

    /// The latest info operation (by call) before slot `limit` that is not in `set`: the
    /// search skips linearized ones a word at a time.
    fn free_below(&self, set: u32, limit: u32) -> Option<u32> {
        let base = set as usize * self.words_per_set;
        let mut k = limit as usize;
        while k > 0 {
            let w = (k - 1) / 64;
            // the free bits of word w below k
            let below = k - w * 64;
            let mask = if below == 64 {
                u64::MAX
            } else {
                (1u64 << below) - 1
            };
            let free = !self.bits[base + w] & mask;
            if free != 0 {
                return Some((w * 64 + 63 - free.leading_zeros() as usize) as u32);
            }
            k = w * 64;
        }
        None
    }

    fn with(&mut self, set: u32, op: u32) -> u32 {
        if let Some(&id) = self.grown.get(&(set, op)) {
            return id;
        }
        let mut v = self.sets[set as usize].to_vec();
        if let Err(at) = v.binary_search(&op) {
            v.insert(at, op);
        }
        let id = self.intern(v.into_boxed_slice());
        self.grown.insert((set, op), id);
        id
    }

    /// Is set `a` included in set `b`?
    fn subset(&self, a: u32, b: u32) -> bool {
        if a == b || a == NO_INFO {
            return true;
        }
        let (a, b) = (&self.sets[a as usize], &self.sets[b as usize]);
        if a.len() > b.len() {
            return false;
        }
        let mut j = 0;
        for &x in a.iter() {
            while j < b.len() && b[j] < x {
                j += 1;
            }
            if j == b.len() || b[j] != x {
                return false;
            }
            j += 1;
        }
        true
    }

    fn bytes(&self) -> u64 {
        self.words * 4
            + (self.sets.len() as u64) * 48
            + (self.grown.len() as u64) * 24
            + (self.bits.capacity() as u64) * 8
    }
}

/// Lowe's memo of the search nodes entered, with subsumption on info operations.
///
/// A node is (return event, open `ok` operations linearized, `info` operations linearized,
/// state); the event and the open operations say which `ok` operations are linearized (every one
/// that returned before the event, none called after it), so this small key stands for the whole
/// linearized set. A node is skipped when an entered node has the same event, open set and state
/// and a subset of its info operations: `info` operations are optional, so the entered node can
/// take every path the new one can (the extra info operations are simply never linearized), and
/// that path is no longer. Entered nodes are searched to the end unless the search succeeds, so
/// skipping loses no linearization.
struct Memo<S> {
    /// Hash of (event, open set, state) -> most recent entry with that hash.
    table: HashMap<u64, u32, FxBuild>,
    entries: Vec<MemoEntry<S>>,
    /// The open sets of all entries, end to end.
    open_words: Vec<u32>,
}

struct MemoEntry<S> {
    event: u32,
    open_at: u32,
    open_len: u32,
    info: u32,
    state: S,
    /// Next entry with the same hash, `NO_ENTRY` at the end of a chain.
    next: u32,
}

const NO_ENTRY: u32 = u32::MAX;

impl<S: Eq + Hash + Clone> Memo<S> {
    fn new() -> Memo<S> {
        Memo {
            table: HashMap::default(),
            entries: Vec::new(),
            open_words: Vec::new(),
        }
    }

    /// Records the node; false if an entered node subsumes it.
    fn enter(&mut self, event: u32, open: &[u32], info: u32, state: &S, sets: &InfoSets) -> bool {
        let mut h = FxHasher::default();
        event.hash(&mut h);
        open.hash(&mut h);
        state.hash(&mut h);
        let hash = h.finish();
        let head = self.table.get(&hash).copied().unwrap_or(NO_ENTRY);
        let mut i = head;
        while i != NO_ENTRY {
            let e = &self.entries[i as usize];
            if e.event == event
                && e.state == *state
                && self.open_words[e.open_at as usize..(e.open_at + e.open_len) as usize] == *open
                && sets.subset(e.info, info)
            {
                return false;
            }
            i = e.next;
        }
        let id = self.entries.len() as u32;
        self.entries.push(MemoEntry {
            event,
            open_at: self.open_words.len() as u32,
            open_len: open.len() as u32,
            info,
            state: state.clone(),
            next: head,
        });
        self.open_words.extend_from_slice(open);
        self.table.insert(hash, id);
        true
    }

    /// Heap bytes held, counting spare capacity.
    fn bytes(&self) -> u64 {
        (self.entries.capacity() * std::mem::size_of::<MemoEntry<S>>()
            + self.open_words.capacity() * 4
            + self.table.capacity() * (8 + 4 + 1)) as u64
    }
}

/// How the search reached a node: the rules that cut redundant orders look at the last move.
enum Via<S> {
    /// The first node, or a node reached by linearizing the returning operation.
    Start,
    /// An `info` operation was linearized from `parent`.
    Info { parent: S },
    /// An operation was linearized that left the state as it was.
    Unchanged { op: u32 },
    /// Any other operation.
    Changed,
}

/// A node of the search and where its loop over candidate moves stands.
struct Frame<S> {
    /// Index of the return event (in `events`) this node must get past.
    event: usize,
    /// Open `ok` operations already linearized, sorted.
    open: Vec<u32>,
    info: u32,
    state: S,
    via: Via<S>,
    /// Trace of the linearization so far (`explain` only).
    trace: u32,
    /// Next candidate: the open `ok` operations that keep the state (`0..k`, `k` open ones),
    /// the returning operation (`k`), the other open ones (`k+1..=2k`), then the info
    /// operations called before the event, most recent first.
    cursor: usize,
    /// In the info phase, first: the next candidate in the event's list of short-lived info
    /// operations that can still matter (`Alive::short`).
    short_next: u32,
    /// Then: the next candidate is the latest free long-lived info operation before this slot.
    info_next: u32,
}

/// An info operation that can matter for at most this many returns is listed at each of them
/// (`Alive::short`); one that can matter longer is found through the info sets' bitsets.
const SHORT_LIVED_RETURNS: usize = 128;

/// Which info operations can still matter at each return of one key's search (the rule "an info
/// operation must be seen" of [`search_order`]).
struct Alive {
    /// Per operation id: its place in the info sets' bitsets: the long-lived info operations
    /// first, by call, then the short-lived ones.
    slot: Vec<u32>,
    /// The long-lived info operations by call (their slots are their places here).
    long: Vec<u32>,
    /// Per return: how many long-lived info operations were called before it.
    long_before: Vec<u32>,
    /// Per return `r`: `short_words[short_start[r]..short_start[r + 1]]` are the short-lived
    /// info operations called before it that can still matter there, most recent call first.
    short_start: Vec<u32>,
    short_words: Vec<u32>,
    /// Does every long-lived info operation raise the state ([`Footprint::raises`])?
    long_all_raise: bool,
}

impl Alive {
    /// `info_order`: the info operations by call; `return_pos`: the positions of the returns,
    /// in order.
    fn new<S: Footprint>(
        ops: &[SearchOp<S>],
        subset: &[usize],
        info_order: &[u32],
        return_pos: &[usize],
    ) -> Alive {
        let until = seen_until(ops, subset);
        let mut slot = vec![0u32; subset.len()];
        let mut long = Vec::new();
        // (op, first return after its call, first return past the last one it can matter at)
        let mut short: Vec<(u32, usize, usize)> = Vec::new();
        for &id in info_order {
            let call = ops[subset[id as usize]].call;
            let first = return_pos.partition_point(|&p| p < call);
            let u = until[id as usize];
            let end = return_pos.partition_point(|&p| p <= u);
            if u != usize::MAX && end.saturating_sub(first) <= SHORT_LIVED_RETURNS {
                short.push((id, first, end.max(first)));
            } else {
                long.push(id);
            }
        }
        for (k, &id) in long.iter().enumerate() {
            slot[id as usize] = k as u32;
        }
        for (k, &(id, ..)) in short.iter().enumerate() {
            slot[id as usize] = (long.len() + k) as u32;
        }
        let long_before = return_pos
            .iter()
            .map(|&p| long.partition_point(|&id| ops[subset[id as usize]].call < p) as u32)
            .collect();
        let mut short_start = vec![0u32; return_pos.len() + 1];
        for &(_, first, end) in &short {
            for r in first..end {
                short_start[r + 1] += 1;
            }
        }
        for r in 0..return_pos.len() {
            short_start[r + 1] += short_start[r];
        }
        let mut fill: Vec<u32> = short_start[..return_pos.len()].to_vec();
        let mut short_words = vec![0u32; short_start[return_pos.len()] as usize];
        for &(id, first, end) in short.iter().rev() {
            for r in first..end {
                short_words[fill[r] as usize] = id;
                fill[r] += 1;
            }
        }
        Alive {
            long_all_raise: long
                .iter()
                .all(|&id| S::raises(&ops[subset[id as usize]].op)),
            slot,
            long,
            long_before,
            short_start,
            short_words,
        }
    }

    fn short_at(&self, r: usize) -> &[u32] {
        &self.short_words[self.short_start[r] as usize..self.short_start[r + 1] as usize]
    }

    fn bytes(&self) -> u64 {
        4 * (self.slot.len()
            + self.long.len()
            + self.long_before.len()
            + self.short_start.len()
            + self.short_words.len()) as u64
    }
}

/// Per operation id (meaningful for info operations): the last position of the history at which
/// what the operation leaves can still be seen, `usize::MAX` when the model cannot say. That is
/// the latest return of an `ok` operation that needs the tag it leaves (see [`Footprint`]), or,
/// through an `info` operation that needs that tag, the same bound of that operation: the
/// largest `base` among the info operations reachable by "needs the tag I leave".
fn seen_until<S: Footprint>(ops: &[SearchOp<S>], subset: &[usize]) -> Vec<usize> {
    let n = subset.len();
    // Latest return of an `ok` operation that needs each tag; of one that needs any state.
    let mut ok_needs: HashMap<S::Tag, usize, FxBuild> = HashMap::default();
    let mut ok_needs_any = 0usize;
    let mut producers: HashMap<S::Tag, Vec<u32>, FxBuild> = HashMap::default();
    let mut all_producers: Vec<u32> = Vec::new();
    for (id, &i) in subset.iter().enumerate() {
        let o = &ops[i];
        if o.ret.is_some() {
            let at = o.ret_at.unwrap_or(usize::MAX);
            match S::needs(&o.op, o.ret.as_ref()) {
                Needs::Any => {}
                Needs::One(t) => {
                    let e = ok_needs.entry(t).or_insert(0);
                    *e = (*e).max(at);
                }
                Needs::Unknown => ok_needs_any = ok_needs_any.max(at),
            }
        } else if let Some(t) = S::leaves(&o.op) {
            producers.entry(t).or_default().push(id as u32);
            all_producers.push(id as u32);
        }
    }
    let mut by_base: Vec<(usize, u32)> = (0..n)
        .filter(|&id| ops[subset[id]].ret.is_none())
        .map(|id| {
            let base = match S::leaves(&ops[subset[id]].op) {
                None => usize::MAX,
                Some(t) => ok_needs.get(&t).copied().unwrap_or(0).max(ok_needs_any),
            };
            (base, id as u32)
        })
        .collect();
    by_base.sort_unstable_by(|a, b| b.cmp(a));
    // From the largest base down, every info operation that leads by "needs the tag I leave"
    // to one not yet reached gets that base; each tag's producers are visited once.
    let mut until = vec![0usize; n];
    let mut reached = vec![false; n];
    let mut expanded: HashSet<S::Tag, FxBuild> = HashSet::default();
    let mut expanded_all = false;
    let mut queue: Vec<u32> = Vec::new();
    for (base, id) in by_base {
        if reached[id as usize] {
            continue;
        }
        reached[id as usize] = true;
        until[id as usize] = base;
        queue.push(id);
        while let Some(z) = queue.pop() {
            let feeders: &[u32] = match S::needs(&ops[subset[z as usize]].op, None) {
                Needs::Any => &[],
                Needs::One(t) if expanded.insert(t) => producers.get(&t).map_or(&[], |v| v),
                Needs::One(_) => &[],
                Needs::Unknown if !expanded_all => {
                    expanded_all = true;
                    &all_producers
                }
                Needs::Unknown => &[],
            };
            for &y in feeders {
                if !reached[y as usize] {
                    reached[y as usize] = true;
                    until[y as usize] = base;
                    queue.push(y);
                }
            }
        }
    }
    until
}

/// Per return (in order, at `return_pos`): the height (see [`Footprint::height`]) of the states
/// the returning operation can be allowed in, when no operation that may lower the height can
/// be linearized before it; `None`: no bound.
///
/// Sound: before the returning operation `x` (which needs one tag, of height `h`), only
/// operations called before its return can be linearized; if none of those may lower the
/// height, a state higher than `h` stays higher than `h`, and `x` is not allowed there.
fn ceilings<S: Footprint>(
    ops: &[SearchOp<S>],
    subset: &[usize],
    return_pos: &[usize],
    returning: impl Fn(usize) -> u32,
) -> Vec<Option<u64>> {
    // Per return: how many operations that may lower the height could still be linearized
    // there (difference array over returns).
    let mut lowering = vec![0i64; return_pos.len() + 1];
    for &i in subset {
        let o = &ops[i];
        if !S::lowers(&o.op) {
            continue;
        }
        let from = return_pos.partition_point(|&p| p <= o.call);
        let to = match (&o.ret, o.ret_at) {
            (Some(_), Some(at)) => return_pos.partition_point(|&p| p <= at),
            _ => return_pos.len(),
        };
        if from < to {
            lowering[from] += 1;
            lowering[to] -= 1;
        }
    }
    let mut open_lowering = 0i64;
    (0..return_pos.len())
        .map(|r| {
            open_lowering += lowering[r];
            let x = &ops[subset[returning(r) as usize]];
            match S::needs(&x.op, x.ret.as_ref()) {
                Needs::One(t) if open_lowering == 0 => S::height(t),
                _ => None,
            }
        })
        .collect()
}

/// The returning operation, first by return, that no linearization of `ops[subset]` can place
/// (as a position in `subset`), found without searching: a floor under the state's height.
///
/// Sound: an `ok` operation `y` that returned before `x` was called comes before `x` in every
/// linearization. If `y` needs one tag `t0` ([`Footprint::needs`]), the state before it has
/// tag `t0`, and the state after it is at least as high as `t0` (strictly higher when `y`
/// [raises](Footprint::raises) it). When no operation that may lower the height was called
/// before `x` returned, nothing linearized between `y` and `x` lowers it, so `x` meets a state
/// at least that high. If `x` needs one tag whose height is below that, `x` is allowed in none
/// of those states: no linearization exists. This is the shape of a stale read (a read of a
/// version older than one a write acknowledged before the read began), which the search would
/// otherwise refute by trying every order of everything before it.
fn below_floor<S: Footprint>(ops: &[SearchOp<S>], subset: &[usize]) -> Option<usize> {
    let lowering_from = subset
        .iter()
        .map(|&i| &ops[i])
        .filter(|o| S::lowers(&o.op))
        .map(|o| o.call)
        .min()
        .unwrap_or(usize::MAX);
    let height_needed = |o: &SearchOp<S>| match S::needs(&o.op, o.ret.as_ref()) {
        Needs::One(t) => S::height(t),
        _ => None,
    };
    // (return position, height of every state after it), by return.
    let mut floors: Vec<(usize, u64)> = subset
        .iter()
        .map(|&i| &ops[i])
        .filter(|o| o.ret.is_some())
        .filter_map(|o| {
            let h = height_needed(o)?;
            Some((o.ret_at?, h + u64::from(S::raises(&o.op))))
        })
        .collect();
    if floors.is_empty() {
        return None;
    }
    floors.sort_unstable();
    let mut highest = 0;
    for f in floors.iter_mut() {
        highest = highest.max(f.1);
        f.1 = highest;
    }
    subset
        .iter()
        .enumerate()
        .filter_map(|(pos, &i)| {
            let x = &ops[i];
            let at = x
                .ret_at
                .filter(|&at| x.ret.is_some() && at < lowering_from)?;
            let needed = height_needed(x)?;
            let before = floors.partition_point(|&(r, _)| r < x.call);
            (before > 0 && floors[before - 1].1 > needed).then_some((at, pos))
        })
        .min()
        .map(|(_, pos)| pos)
}

/// Per operation, what the search needs besides the spec.
struct OpInfo {
    is_info: bool,
    /// Operations with equal (op, ret) share a class.
    class: u32,
    /// Earlier-called info operation of the same class (`NO_ENTRY`: none).
    prev_same_info: u32,
    /// [`Footprint::raises`].
    raises: bool,
}

/// Searches for a linearization of `ops[subset]` from `init`. See [`search_order`].
pub fn search<S>(
    init: &S,
    ops: &[SearchOp<S>],
    subset: &[usize],
    budget: &Budget,
    step_limit: Option<u64>,
    explain: bool,
) -> Outcome
where
    S: SequentialSpec<Op: Eq + Hash, Ret: Eq + Hash> + Footprint + Clone + Eq + Hash,
{
    search_order(init, ops, subset, budget, step_limit, explain).0
}

/// Just-in-time linearization (Lowe, "Testing for linearizability", 2017) as a depth-first
/// search with a memo; also returns the linearization found (positions in `subset`) when
/// `explain`.
///
/// The events of the history are walked in order. A call only makes its operation available.
/// At the return of an operation that is not linearized yet, the search must linearize it now,
/// possibly after some other available operations (open `ok` ones, and `info` ones, which never
/// return and may also never be linearized): each choice is a move, tried in this order: open
/// `ok` operations that keep the state, the returning operation itself, the other open `ok`
/// operations by return time, then `info` operations, most recently called first. Deferring every linearization to the latest return that needs it
/// loses nothing (Lowe's argument: moving an operation's linearization point later, up to the
/// next return, keeps the order and so the states), and it keeps the search from guessing
/// early, which is what porcupine's search pays for on long histories of one key.
///
/// Before any of that, a history in which some returning operation meets a floor it cannot
/// get under ([`below_floor`]) is answered not linearizable at once.
///
/// Five rules skip moves that only repeat another node's search or lead nowhere; each keeps,
/// for any linearization it skips, one that the search does try:
/// - *Identical operations* (same op, same return): of those available and not linearized, only
///   the one returning first (for `info` ones: called first) is tried. Swapping two identical
///   operations in a linearization changes no state, and the one returning first may take the
///   earlier place (it was called by then) while the other takes the later place (before the
///   earlier return, so before its own).
/// - *An info operation must matter*: an `info` operation that leaves the state as it is is not
///   tried (drop it from the linearization: nothing changes). After an `info` operation `i`
///   from state `s`, a move `m` is not tried when `m` from `s` is allowed and reaches the
///   same state as after `i, m`: the sibling node reached by `m` alone has the same state and one
///   more info operation still available, so it subsumes this one.
/// - *An info operation must be seen* (with a [`Footprint`] that says what operations need of
///   the state): an `info` operation `y` is not tried at a return past the last position at
///   which what it leaves can be seen ([`seen_until`]: the latest return of an `ok` operation
///   that needs the tag `y` leaves, or, through an `info` operation that needs it, that
///   operation's own bound). Call an info operation *stale* at a node when its bound is
///   before the node's return. Take a linearization of the rest from the node, drop the info
///   operations that leave the state as it is, and look at the last stale `y` in it. The next
///   operation `z` is not linearized at the node. If `z` needed `y`'s tag (or any state), then
///   `y`'s bound would be at least `z`'s return, which is at or after the node's return (an
///   `ok` `z`), or at least `z`'s own bound, which is too (an `info` `z`, not stale): `y` would
///   not be stale. If `z` needs another tag, it is not allowed after `y` (or, `info`, changes
///   nothing, and was dropped). So `z` needs nothing (`Needs::Any`): it is allowed, and leaves
///   the same state, whether `y` came before it or not, and `y` can be dropped. Dropping them
///   from the last one on leaves a linearization without stale operations.
/// - *No overshoot* (with a [`Footprint::height`]): a move that leads to a state higher than
///   the returning operation needs is not tried when no operation that could lower it can be
///   linearized before that return ([`ceilings`]).
/// - *Unchanged states in order*: after a move that left the state as it was, another such move
///   is tried only for an operation later in the order the first rule uses (by return, then
///   `info` ones by call): two moves that both keep the state commute, so the node is reached
///   the other way round as well. The two rules must use one order, or each would cut the order
///   the other keeps.
///
/// The budget's stop flag, clock and memory account are looked at every
/// [`BUDGET_CHECK_STEPS`] steps.
fn search_order<S>(
    init: &S,
    ops: &[SearchOp<S>],
    subset: &[usize],
    budget: &Budget,
    step_limit: Option<u64>,
    explain: bool,
) -> (Outcome, Vec<usize>, u64)
where
    S: SequentialSpec<Op: Eq + Hash, Ret: Eq + Hash> + Footprint + Clone + Eq + Hash,
{
    if let Some(x) = below_floor(ops, subset) {
        let longest = if explain {
            longest_before(init, ops, subset, x, budget, step_limit)
        } else {
            Vec::new()
        };
        return (Outcome::NotLinearizable { longest }, Vec::new(), 0);
    }
    let n = subset.len();
    let op = |id: u32| &ops[subset[id as usize]];
    // Events in history order: (position, op id, is return). An `ok` operation without a
    // return position returns after everything.
    let mut events: Vec<(usize, u32, bool)> = Vec::with_capacity(2 * n);
    type Class<'a, S> = (
        &'a <S as SequentialSpec>::Op,
        &'a Option<<S as SequentialSpec>::Ret>,
    );
    let mut classes: HashMap<Class<S>, u32, FxBuild> = HashMap::default();
    let mut info: Vec<OpInfo> = Vec::with_capacity(n);
    for (id, &i) in subset.iter().enumerate() {
        let o = &ops[i];
        events.push((o.call, id as u32, false));
        if o.ret.is_some() {
            events.push((o.ret_at.unwrap_or(usize::MAX), id as u32, true));
        }
        let next_class = classes.len() as u32;
        let class = *classes.entry((&o.op, &o.ret)).or_insert(next_class);
        info.push(OpInfo {
            is_info: o.ret.is_none(),
            class,
            prev_same_info: NO_ENTRY,
            raises: S::raises(&o.op),
        });
    }
    events.sort_unstable_by_key(|&(pos, id, ret)| (pos, ret, id));
    // Per return event: the open `ok` operations (called before it, returning at it or later)
    // by return time, and how many info operations were called before it.
    let mut info_order: Vec<u32> = Vec::new();
    let mut open_now: Vec<u32> = Vec::new();
    let mut ret_pos = vec![usize::MAX; n];
    for &(pos, id, ret) in &events {
        if ret {
            ret_pos[id as usize] = pos;
        }
    }
    let mut last_info_of_class: HashMap<u32, u32, FxBuild> = HashMap::default();
    // (event index, start in open_words, len)
    let mut returns: Vec<(usize, u32, u32)> = Vec::new();
    let mut open_words: Vec<u32> = Vec::new();
    for (e, &(_, id, ret)) in events.iter().enumerate() {
        if ret {
            let at = open_words.len() as u32;
            open_words.extend_from_slice(&open_now);
            returns.push((e, at, open_now.len() as u32));
            open_now.retain(|&o| o != id);
        } else if info[id as usize].is_info {
            let class = info[id as usize].class;
            if let Some(prev) = last_info_of_class.insert(class, id) {
                info[id as usize].prev_same_info = prev;
            }
            info_order.push(id);
        } else {
            let at = open_now
                .iter()
                .position(|&o| ret_pos[o as usize] > ret_pos[id as usize])
                .unwrap_or(open_now.len());
            open_now.insert(at, id);
        }
    }
    // One total order of the operations for the rules that pick one of two orders: `ok` ones
    // by return, then `info` ones by call. The identical-operations rule and the unchanged-state
    // rule must agree on it, or each would cut the order the other keeps.
    let mut rank = vec![0u32; n];
    {
        let mut by_rank: Vec<u32> = (0..n as u32)
            .filter(|&id| !info[id as usize].is_info)
            .collect();
        by_rank.sort_unstable_by_key(|&id| ret_pos[id as usize]);
        by_rank.extend_from_slice(&info_order);
        for (k, &id) in by_rank.iter().enumerate() {
            rank[id as usize] = k as u32;
        }
    }
    let open_at = |r: usize| {
        let (_, at, len) = returns[r];
        &open_words[at as usize..(at + len) as usize]
    };
    let returning = |r: usize| events[returns[r].0].1;

    let return_pos: Vec<usize> = returns.iter().map(|&(e, ..)| events[e].0).collect();
    let alive = Alive::new(ops, subset, &info_order, &return_pos);
    let ceiling = ceilings(ops, subset, &return_pos, returning);
    let mut sets = InfoSets::new(alive.slot.clone(), info_order.len());
    let mut memo: Memo<S> = Memo::new();
    // Trace of linearized operations: (op id, parent entry, length).
    let mut trace: Vec<(u32, u32, u32)> = vec![(NO_ENTRY, NO_ENTRY, 0)];
    let mut deepest: u32 = 0;
    let mut steps: u64 = 0;
    let mut accounted: u64 = 0;

    // The first return whose operation is not linearized, from return `r` on, dropping the
    // operations returned on the way from `open`; `None`: past the end.
    let skip_linearized = |mut r: usize, open: &mut Vec<u32>| -> Option<usize> {
        while r < returns.len() {
            let x = returning(r);
            match open.binary_search(&x) {
                Ok(at) => {
                    open.remove(at);
                    r += 1;
                }
                Err(_) => return Some(r),
            }
        }
        None
    };

    let mut stack: Vec<Frame<S>> = Vec::new();
    let mut first_open = Vec::new();
    match skip_linearized(0, &mut first_open) {
        None => return (Outcome::Linearizable, Vec::new(), 0),
        Some(r) => {
            memo.enter(r as u32, &[], NO_INFO, init, &sets);
            stack.push(Frame {
                event: r,
                open: first_open,
                info: NO_INFO,
                state: init.clone(),
                via: Via::Start,
                trace: 0,
                cursor: 0,
                short_next: 0,
                info_next: alive.long_before[r],
            });
        }
    }

    let path = |trace: &[(u32, u32, u32)], mut t: u32| {
        let mut v = Vec::new();
        while t != 0 {
            v.push(trace[t as usize].0 as usize);
            t = trace[t as usize].1;
        }
        v.reverse();
        v
    };

    let outcome = 'search: loop {
        if stack.is_empty() {
            break Outcome::NotLinearizable {
                longest: if explain {
                    path(&trace, deepest)
                } else {
                    Vec::new()
                },
            };
        }
        steps += 1;
        if steps.is_multiple_of(BUDGET_CHECK_STEPS) {
            let bytes = memo.bytes()
                + sets.bytes()
                + alive.bytes()
                + (trace.capacity() * 12) as u64
                + (stack.capacity() * std::mem::size_of::<Frame<S>>()) as u64;
            budget
                .memory_used_bytes
                .fetch_add(bytes.saturating_sub(accounted), Ordering::Relaxed);
            budget
                .memory_used_bytes
                .fetch_sub(accounted.saturating_sub(bytes), Ordering::Relaxed);
            accounted = bytes;
            if let Some(why) = budget.exceeded() {
                break Outcome::Unknown(why);
            }
            if step_limit.is_some_and(|l| steps > l) {
                break Outcome::Unknown(Unknown::StepLimit);
            }
        }
        let Some(top) = stack.last_mut() else {
            continue;
        };
        let r = top.event;
        let x = returning(r);
        let open = open_at(r);
        // The candidate under the cursor, skipping those linearized already or not the first
        // of their class.
        let cursor = top.cursor;
        top.cursor += 1;
        // Move order: first the open `ok` operations that leave the state as it is (a read of
        // the current value: taking it now costs nothing, and a read left behind a write is
        // what sends the search back the furthest), then the returning operation, then the other
        // open `ok` operations, then the `info` ones. The order only steers the search: every
        // move is tried before the node is given up.
        let k = open.len();
        // Some(true): only if it keeps the state; Some(false): only if it does not.
        let mut keeps: Option<bool> = None;
        let y =
            if cursor < k || (cursor > k && cursor <= 2 * k) {
                let y = if cursor < k {
                    keeps = Some(true);
                    open[cursor]
                } else {
                    keeps = Some(false);
                    open[cursor - k - 1]
                };
                if y == x || top.open.binary_search(&y).is_ok() {
                    continue;
                }
                let class = info[y as usize].class;
                // An identical open operation returning earlier, not linearized, goes first.
                let pos = open.iter().position(|&o| o == y).unwrap_or(0);
                if open[..pos].iter().any(|&o| {
                    info[o as usize].class == class && top.open.binary_search(&o).is_err()
                }) {
                    continue;
                }
                y
            } else if cursor == k {
                x
            } else {
                // Only the info operations that can still matter at this return (see the rule
                // "an info operation must be seen"): the short-lived ones listed for the event,
                // then the long-lived ones, each most recently called first.
                // At the ceiling, an operation that raises the state overshoots (see `ceilings`);
                // when every long-lived one does, none of them is looked at.
                let at_ceiling = ceiling[r]
                    .is_some_and(|h| top.state.tag().and_then(S::height).is_some_and(|a| a >= h));
                let short = alive.short_at(r);
                let y = if (top.short_next as usize) < short.len() {
                    let y = short[top.short_next as usize];
                    top.short_next += 1;
                    if sets.contains(top.info, y) || (at_ceiling && info[y as usize].raises) {
                        continue;
                    }
                    y
                } else if at_ceiling && alive.long_all_raise {
                    stack.pop();
                    continue;
                } else if let Some(slot) = sets.free_below(top.info, top.info_next) {
                    top.info_next = slot;
                    let y = alive.long[slot as usize];
                    if at_ceiling && info[y as usize].raises {
                        continue;
                    }
                    y
                } else {
                    // Every move tried: backtrack.
                    stack.pop();
                    continue;
                };
                let class = info[y as usize].class;
                if open.iter().any(|&o| {
                    info[o as usize].class == class && top.open.binary_search(&o).is_err()
                }) {
                    continue;
                }
                let mut p = info[y as usize].prev_same_info;
                let mut earlier_free = false;
                while p != NO_ENTRY {
                    if !sets.contains(top.info, p) {
                        earlier_free = true;
                        break;
                    }
                    p = info[p as usize].prev_same_info;
                }
                if earlier_free {
                    continue;
                }
                y
            };
        let o = op(y);
        let mut after = top.state.clone();
        let allowed = match &o.ret {
            Some(ret) => after.is_valid_step(&o.op, ret),
            None => {
                after.invoke(&o.op);
                true
            }
        };
        if !allowed {
            continue;
        }
        // No overshoot: a state higher than the returning operation needs cannot come down
        // before it (see `ceilings`).
        if y != x
            && let Some(h) = ceiling[r]
            && after.tag().and_then(S::height).is_some_and(|a| a > h)
        {
            continue;
        }
        let unchanged = after == top.state;
        if keeps.is_some_and(|k| k != unchanged) {
            continue;
        }
        if o.ret.is_none() && unchanged {
            continue;
        }
        match &top.via {
            Via::Info { parent } => {
                let mut alone = parent.clone();
                let ok = match &o.ret {
                    Some(ret) => alone.is_valid_step(&o.op, ret),
                    None => {
                        alone.invoke(&o.op);
                        true
                    }
                };
                if ok && alone == after {
                    continue;
                }
            }
            Via::Unchanged { op: last } if unchanged && rank[y as usize] < rank[*last as usize] => {
                continue;
            }
            _ => {}
        }
        let t = if explain {
            let depth = trace[top.trace as usize].2 + 1;
            trace.push((y, top.trace, depth));
            let t = (trace.len() - 1) as u32;
            if depth > trace[deepest as usize].2 {
                deepest = t;
            }
            t
        } else {
            0
        };
        let mut open_lin = top.open.clone();
        let mut info_lin = top.info;
        let event;
        let via;
        if y == x {
            match skip_linearized(r + 1, &mut open_lin) {
                None => {
                    break 'search Outcome::Linearizable;
                }
                Some(next) => event = next,
            }
            via = Via::Start;
        } else {
            event = r;
            if info[y as usize].is_info {
                info_lin = sets.with(info_lin, y);
                via = Via::Info {
                    parent: top.state.clone(),
                };
            } else {
                let at = open_lin.binary_search(&y).unwrap_err();
                open_lin.insert(at, y);
                via = if unchanged {
                    Via::Unchanged { op: y }
                } else {
                    Via::Changed
                };
            }
        }
        if !memo.enter(event as u32, &open_lin, info_lin, &after, &sets) {
            continue;
        }
        stack.push(Frame {
            event,
            open: open_lin,
            info: info_lin,
            state: after,
            via,
            trace: t,
            cursor: 0,
            short_next: 0,
            info_next: alive.long_before[event],
        });
    };
    budget
        .memory_used_bytes
        .fetch_sub(accounted, Ordering::Relaxed);
    let order = match (&outcome, explain) {
        (Outcome::Linearizable, true) => {
            // The last move taken is the final trace entry.
            path(&trace, (trace.len() - 1) as u32)
        }
        _ => Vec::new(),
    };
    (outcome, order, steps)
}

/// For a counterexample when `subset[x]` can never be placed ([`below_floor`]): the longest
/// partial linearization of the operations called before `x` returned, without `x`, as
/// positions in `subset`.
fn longest_before<S>(
    init: &S,
    ops: &[SearchOp<S>],
    subset: &[usize],
    x: usize,
    budget: &Budget,
    step_limit: Option<u64>,
) -> Vec<usize>
where
    S: SequentialSpec<Op: Eq + Hash, Ret: Eq + Hash> + Footprint + Clone + Eq + Hash,
{
    let until = ops[subset[x]].ret_at.unwrap_or(usize::MAX);
    let kept: Vec<usize> = (0..subset.len())
        .filter(|&pos| pos != x && ops[subset[pos]].call < until)
        .collect();
    let before: Vec<usize> = kept.iter().map(|&pos| subset[pos]).collect();
    let order = match search_order(init, ops, &before, budget, step_limit, true) {
        (Outcome::Linearizable, order, _) => order,
        (Outcome::NotLinearizable { longest }, ..) => longest,
        (Outcome::Unknown(_), ..) => Vec::new(),
    };
    order.into_iter().map(|pos| kept[pos]).collect()
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
    erase_unseen(&mut out);
    Ok(Prepared {
        init,
        ops: out,
        source,
        vals,
    })
}

/// Replaces, in the `info` operations, each written value that no operation of the key compares
/// the state with by [`Val::UNSEEN`] (see [`Footprint::erase`]): such values can never be told
/// apart, so `info` writes nobody reads become identical operations, and the search tries the
/// first free one of them where it would have tried each (the identical-operations rule of
/// [`search_order`]). `ok` operations keep their values: they are what a counterexample shows.
pub fn erase_unseen<S: Footprint>(ops: &mut [SearchOp<S>]) {
    let mut compared: Vec<Val> = Vec::new();
    for o in ops.iter() {
        S::compared(&o.op, o.ret.as_ref(), &mut compared);
    }
    let compared: HashSet<Val, FxBuild> = compared.into_iter().collect();
    let unseen = |v: Val| !compared.contains(&v);
    for o in ops.iter_mut().filter(|o| o.ret.is_none()) {
        if let Some(erased) = S::erase(&o.op, &unseen) {
            o.op = erased;
        }
    }
}

/// Limits for [`check`].
#[derive(Clone, Debug, Default)]
pub struct Limits {
    pub time_limit: Option<Duration>,
    pub memory_limit_bytes: Option<u64>,
    /// Worker threads; `None`: all cores.
    pub threads: Option<usize>,
}

impl Limits {
    /// Threads for `units` independent searches: as asked (all cores by default), at most one
    /// per unit, at least one.
    pub fn threads(&self, units: usize) -> usize {
        self.threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
            .clamp(1, units.max(1))
    }
}

enum KeyResult {
    Valid,
    Invalid,
    Unknown(Unknown),
}

/// What the search of one key found: the unit [`check`] and the streamed check
/// (`crate::stream`) both produce, and [`summarize`] folds.
pub struct KeyReport {
    pub key: String,
    /// The key's operations (observations excluded; `fail`s counted).
    pub ops: usize,
    pub micros: u64,
    /// `None`: never searched (a violation elsewhere stopped the check first).
    result: Option<Result<KeyResult, TranslateError>>,
    /// For an invalid key: its prepared operations and the shrunk counterexample.
    counterexample: Option<(usize, Counterexample)>,
}

impl KeyReport {
    /// Renames the position of a translation error (the streamed check: from the key's own
    /// events to the file's lines).
    pub fn map_error_position(&mut self, f: impl FnOnce(usize) -> usize) {
        if let Some(Err(e)) = &mut self.result {
            e.position = f(e.position);
        }
    }

    /// A key left unsearched because `budget` was exceeded or stopped.
    pub fn skipped(key: &str, ops: usize, budget: &Budget) -> KeyReport {
        KeyReport {
            key: key.to_string(),
            ops,
            micros: 0,
            result: budget.exceeded().map(|why| Ok(KeyResult::Unknown(why))),
            counterexample: None,
        }
    }
}

/// Searches one key: `indices` into `ops` are its operations. An invalid key gets its
/// counterexample at once (while its operations are at hand), and stops the other keys.
pub fn check_key<M: Model>(
    model: &M,
    ops: &[Op<'_>],
    indices: &[usize],
    key: &str,
    budget: &Budget,
) -> KeyReport {
    let key_started = Instant::now();
    let mut counterexample_of = None;
    let r = prepare(model, ops, indices).map(|p| {
        let all: Vec<usize> = (0..p.ops.len()).collect();
        match search(&p.init, &p.ops, &all, budget, None, false) {
            Outcome::Linearizable => KeyResult::Valid,
            Outcome::NotLinearizable { .. } => {
                counterexample_of = Some(p);
                KeyResult::Invalid
            }
            Outcome::Unknown(u) => KeyResult::Unknown(u),
        }
    });
    if matches!(r, Ok(KeyResult::Invalid) | Err(_)) {
        budget.stop();
    }
    let micros = key_started.elapsed().as_micros() as u64;
    let counterexample =
        counterexample_of.map(|p| (p.ops.len(), counterexample(model, ops, &p, key)));
    KeyReport {
        key: key.to_string(),
        ops: indices.len(),
        micros,
        result: Some(r),
        counterexample,
    }
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
    let threads = limits.threads(keys.len());
    let reports: Vec<std::sync::Mutex<Option<KeyReport>>> =
        keys.iter().map(|_| std::sync::Mutex::new(None)).collect();
    budget.share_out(keys.len(), threads, |k| {
        let (key, indices) = &keys[k];
        let report = if budget.exceeded().is_some() {
            KeyReport::skipped(key, indices.len(), &budget)
        } else {
            check_key(model, ops, indices, key, &budget)
        };
        if let Ok(mut slot) = reports[k].lock() {
            *slot = Some(report);
        }
    });
    let reports = reports
        .into_iter()
        .zip(&keys)
        .map(|(slot, (key, indices))| {
            slot.into_inner()
                .ok()
                .flatten()
                .unwrap_or_else(|| KeyReport {
                    key: key.to_string(),
                    ops: indices.len(),
                    micros: 0,
                    result: None,
                    counterexample: None,
                })
        })
        .collect();
    summarize(model.name(), reports, started)
}

/// The checker's result from every key's report, `reports` in the order keys were handed out
/// (largest first, then by name): the first invalid key in that order is the one shown.
pub fn summarize(
    model: &str,
    reports: Vec<KeyReport>,
    started: Instant,
) -> Result<CheckerResult, TranslateError> {
    let mut valid = 0usize;
    let mut unknown: Vec<(&str, Unknown)> = Vec::new();
    let mut invalid: Option<usize> = None;
    for (k, r) in reports.iter().enumerate() {
        match &r.result {
            Some(Err(e)) => return Err(e.clone()),
            Some(Ok(KeyResult::Valid)) => valid += 1,
            Some(Ok(KeyResult::Invalid)) => {
                invalid.get_or_insert(k);
            }
            Some(Ok(KeyResult::Unknown(u))) => unknown.push((&r.key, *u)),
            None => unknown.push((&r.key, Unknown::Stopped)),
        }
    }
    let checked_ops: usize = reports.iter().map(|r| r.ops).sum();
    let elapsed_ms = started.elapsed().as_millis() as u64;
    let mut details = json!({
        "model": model,
        "keys": reports.len(),
        "ops": checked_ops,
        "valid_keys": valid,
        "elapsed_ms": elapsed_ms,
    });
    let mut slowest: Vec<(u64, &str)> =
        reports.iter().map(|r| (r.micros, r.key.as_str())).collect();
    slowest.sort_unstable_by(|a, b| b.cmp(a));
    details["slowest_keys"] = json!(
        slowest
            .iter()
            .take(SLOWEST_KEYS_LISTED)
            .map(|(us, k)| json!({"key": k, "ms": us / 1000}))
            .collect::<Vec<_>>()
    );
    if let Some(k) = invalid {
        let key = &reports[k].key;
        details["invalid_key"] = json!(key);
        let Some((prepared, cx)) = reports[k].counterexample.clone() else {
            unreachable!("an invalid key's report holds its counterexample");
        };
        let summary = format!(
            "key {:?} is not linearizable ({} ops shrunk to {}); {} keys checked",
            key,
            prepared,
            cx.ops.len(),
            reports.len()
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
            reports.len(),
            checked_ops,
            model
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
        reports.len(),
        checked_ops,
        model,
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
fn invalid<S: SequentialSpec<Op: Eq + Hash, Ret: Eq + Hash> + Footprint + Clone + Eq + Hash>(
    init: &S,
    p: &Prepared<S>,
    subset: &[usize],
    budget: &Budget,
    step_limit: u64,
) -> bool {
    matches!(
        search(init, &p.ops, subset, budget, Some(step_limit), false),
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
    S: SequentialSpec<Op: Clone + Eq + Hash, Ret: Clone + Eq + Hash>
        + Footprint
        + Clone
        + Eq
        + Hash,
{
    let budget = Budget::new(Some(Duration::from_millis(SHRINK_TIME_LIMIT_MS)), None);
    let all: Vec<usize> = (0..p.ops.len()).collect();
    let (_, _, key_steps) = search_order(&p.init, &p.ops, &all, &budget, None, false);
    let step_limit = SHRINK_STEP_LIMIT.max(SHRINK_STEPS_PER_KEY_STEP.saturating_mul(key_steps));
    let mut by_call: Vec<usize> = (0..p.ops.len()).collect();
    by_call.sort_by_key(|&i| p.ops[i].call);
    // The operation the search of the whole key got stuck on: of those outside the longest
    // linearizable prefix, the one that must return first.
    let stuck_in = |init: &S, subset: &[usize]| match search(
        init,
        &p.ops,
        subset,
        &budget,
        Some(step_limit),
        true,
    ) {
        Outcome::NotLinearizable { longest } => {
            let done: HashSet<usize> = longest.iter().map(|&pos| subset[pos]).collect();
            let stuck = subset
                .iter()
                .copied()
                .filter(|i| !done.contains(i))
                .filter_map(|i| p.ops[i].ret_at.map(|r| (r, i)))
                .min()
                .map(|(_, i)| i);
            (longest, stuck)
        }
        _ => (Vec::new(), None),
    };
    let (_, stuck_all) = stuck_in(&p.init, &by_call);
    // Shortest invalid call-order prefix that still holds that operation. A shorter prefix can
    // be invalid for a cheaper reason of its own (a read in it returned the value of a write
    // called after the cut, which is missing), and would then show that instead of the real
    // violation (seen on a stale read planted in a `schism sim` history: `tests/data/sim/`).
    // The predicate need not be monotone in the length, but `hi` only ever takes lengths for
    // which it held (the whole history: invalid, and it holds its own stuck operation).
    let (mut lo, mut hi) = (1, by_call.len());
    while lo < hi {
        let mid = (lo + hi) / 2;
        let prefix = &by_call[..mid];
        if stuck_all.is_none_or(|f| prefix.contains(&f))
            && invalid(&p.init, p, prefix, &budget, step_limit)
        {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    let mut cur: Vec<usize> = by_call[..hi].to_vec();
    let mut init = p.init.clone();
    let mut skipped = 0;
    // The same operation in the prefix, which the smaller candidates below must keep.
    let (longest, stuck) = stuck_in(&init, &cur);
    let about_time = stuck.is_some_and(|f| placeable(&init, p, &cur, f, &budget, step_limit));
    let keeps = |init: &S, candidate: &[usize]| {
        invalid(init, p, candidate, &budget, step_limit)
            && (!about_time
                || stuck.is_some_and(|f| {
                    candidate.contains(&f) && placeable(init, p, candidate, f, &budget, step_limit)
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
    // Drop chunks of halving size, down to single operations, whose passes repeat until none
    // drops (dropping one operation can free an earlier one that a later one needed).
    let chunk_away = |init: &S, cur: &mut Vec<usize>| {
        let mut chunk = (cur.len() / 2).max(1);
        loop {
            let mut i = 0;
            let mut dropped = false;
            while i < cur.len() && budget.exceeded().is_none() {
                let end = (i + chunk).min(cur.len());
                let candidate: Vec<usize> = cur[..i].iter().chain(&cur[end..]).copied().collect();
                if !candidate.is_empty() && keeps(init, &candidate) {
                    *cur = candidate;
                    dropped = true;
                } else {
                    i = end;
                }
            }
            if budget.exceeded().is_some() || (chunk == 1 && !dropped) {
                break;
            }
            chunk = (chunk / 2).max(1);
        }
    };
    chunk_away(&init, &mut cur);
    // A chain at the start that no single drop can remove (each operation makes the version the
    // next one needs) can still be replaced by the state it leads to: once the history is
    // small, every cut of its longest prefix is tried, the latest first.
    if cur.len() <= FINE_CUT_MAX_OPS && budget.exceeded().is_none() {
        let (longest, _) = stuck_in(&init, &cur);
        for j in (1..longest.len()).rev() {
            let gone: HashSet<usize> = longest[..j].iter().map(|&pos| cur[pos]).collect();
            let rest: Vec<usize> = cur.iter().copied().filter(|i| !gone.contains(i)).collect();
            let mut state = init.clone();
            replay(&mut state, p, &cur, &longest[..j]);
            if keeps(&state, &rest) {
                init = state;
                skipped += j;
                cur = rest;
                chunk_away(&init, &mut cur);
                break;
            }
        }
    }
    Shrunk {
        init,
        skipped,
        subset: cur,
    }
}

/// Could operation `f` take effect at some point of a linearization of `subset` without it,
/// from `init`? (Then only real time keeps it out.)
fn placeable<S>(
    init: &S,
    p: &Prepared<S>,
    subset: &[usize],
    f: usize,
    budget: &Budget,
    step_limit: u64,
) -> bool
where
    S: SequentialSpec<Op: Eq + Hash, Ret: Eq + Hash> + Footprint + Clone + Eq + Hash,
{
    let Some(ret) = &p.ops[f].ret else {
        return true;
    };
    let rest: Vec<usize> = subset.iter().copied().filter(|&i| i != f).collect();
    let (outcome, order, _) = search_order(init, &p.ops, &rest, budget, Some(step_limit), true);
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
        replay(&mut state, p, &subset, &[id]);
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
