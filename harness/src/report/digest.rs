//! What the page draws of the history, gathered in one pass over it without holding it: an
//! hour-long run (36 million operations, gigabytes of JSON) is read line by line, and memory is
//! bounded by the operations in flight, the plots' samples, the timeline's window and a latency
//! histogram per (function, outcome), not by the run.

use crate::verdict::Results;
use checker::faults::FaultPeriod;
use checker::history::{Event, EventType};
use hdrhistogram::Histogram;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, VecDeque};

/// Most points the latency plot draws; beyond it points are thinned evenly.
pub const MAX_PLOT_POINTS: usize = 20_000;
/// Points of the latency plot for operations that did not end `ok`, at most: failures and
/// indeterminate operations are the rarer, telling points, so they are thinned apart from the
/// `ok` ones and keep up to a quarter of the plot however many `ok` ones there are.
pub const MAX_OTHER_POINTS: usize = MAX_PLOT_POINTS / 4;
/// Most operations the timeline draws; the rest are summarised in a sentence. Thousands of
/// bars already make a page slow to scroll.
pub const MAX_TIMELINE_OPS: usize = 3000;

/// Where the timeline of a long run is centred: the violation's first operation, or else the
/// first fault, or else the start. Known before the history is read (from the checkers' results
/// and the nemesis log), so the window is chosen in the one pass over it.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub enum Focus {
    /// Invocation time (ns) of the counterexample's first operation.
    Violation(u64),
    /// Start (ns) of the first fault.
    Fault(u64),
    #[default]
    Start,
}

impl Focus {
    pub fn of(results: &Results, faults: &[FaultPeriod]) -> Focus {
        let violation = results
            .checkers
            .iter()
            .filter_map(|c| c.counterexample.as_ref())
            .flat_map(|cx| cx.ops.iter().map(|o| o.invoke_time))
            .min();
        match (violation, faults.iter().map(|f| f.start_ns).min()) {
            (Some(t), _) => Focus::Violation(t),
            (None, Some(t)) => Focus::Fault(t),
            (None, None) => Focus::Start,
        }
    }
}

/// Significant decimal digits the latency histograms keep: quantiles are exact to 0.1%, far
/// below what a millisecond table with two decimals shows.
const LATENCY_SIGNIFICANT_DIGITS: u8 = 3;

/// One operation of the timeline: its invocation and how it ended.
#[derive(Clone, Debug, PartialEq)]
pub struct CompletedOp {
    pub process: u64,
    pub f: String,
    pub key: Option<String>,
    pub invoke_value: Value,
    pub value: Value,
    /// `Ok`, `Fail`, `Info`; `Info` also for an invocation that never completed.
    pub kind: EventType,
    pub error: Option<String>,
    pub node: Option<String>,
    pub start_ns: u64,
    /// None when the history ended before the operation did.
    pub end_ns: Option<u64>,
}

impl CompletedOp {
    pub fn latency_ns(&self) -> Option<u64> {
        self.end_ns.map(|e| e.saturating_sub(self.start_ns))
    }
}

/// A point of the latency plot: invocation time, latency (both ns), outcome.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LatencyPoint {
    pub start_ns: u64,
    pub latency_ns: u64,
    pub kind: EventType,
}

/// Latency quantiles of one group of operations, in nanoseconds.
#[derive(Clone, Debug, PartialEq)]
pub struct Quantiles {
    pub f: String,
    pub kind: EventType,
    pub count: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub max: u64,
}

/// The history as the page needs it.
#[derive(Clone, Debug, Default)]
pub struct Digest {
    /// Operations (invocations), and how many ended `ok`, `fail`, `info` (never completed
    /// counts as `info`).
    pub ops: u64,
    pub ok: u64,
    pub fail: u64,
    pub info: u64,
    /// Time of the last event (ns).
    pub last_event_ns: u64,
    /// At most [`MAX_PLOT_POINTS`], evenly thinned: `ok` ones and the others apart, so the
    /// rarer failures and indeterminate points stay visible.
    pub latency_points: Vec<LatencyPoint>,
    /// Completions per second of run time: `[ok, fail, info]`, indexed by second.
    pub completions_per_s: Vec<[u64; 3]>,
    /// Per (function, outcome), sorted by function then outcome.
    pub quantiles: Vec<Quantiles>,
    /// The timeline's operations, in invocation order.
    pub window: Vec<CompletedOp>,
    /// Position (from 0, in invocation order) of the window's first operation.
    pub window_start: u64,
    /// What the window was centred on.
    pub focus: Focus,
}

impl Digest {
    /// The digest of a history held in memory (tests, and callers that have one anyway).
    pub fn of_events(events: &[Event], focus: Focus) -> Digest {
        let mut d = Digester::new(focus);
        for e in events {
            d.push(e);
        }
        d.finish()
    }
}

/// Keeps every `stride`-th item pushed and doubles the stride whenever more than `capacity`
/// are kept, dropping every other one: at the end it holds between half and all of
/// `capacity`, evenly spread over everything pushed, whatever the count.
#[derive(Debug)]
struct Thinned<T> {
    capacity: usize,
    stride: u64,
    seen: u64,
    kept: Vec<T>,
}

impl<T> Thinned<T> {
    fn new(capacity: usize) -> Thinned<T> {
        Thinned {
            capacity: capacity.max(1),
            stride: 1,
            seen: 0,
            kept: Vec::new(),
        }
    }

    fn push(&mut self, item: T) {
        self.seen += 1;
        if !self.seen.is_multiple_of(self.stride) {
            return;
        }
        self.kept.push(item);
        if self.kept.len() > self.capacity {
            let mut i = 0;
            self.kept.retain(|_| {
                i += 1;
                i % 2 == 0
            });
            self.stride *= 2;
        }
    }

    /// At most `n` of the kept items, evenly spread.
    fn take_at_most(self, n: usize) -> Vec<T> {
        let step = self.kept.len().div_ceil(n.max(1)).max(1);
        self.kept.into_iter().step_by(step).collect()
    }
}

/// The timeline's window, chosen as the history goes by: the last [`MAX_TIMELINE_OPS`]
/// operations invoked before the focus and the first [`MAX_TIMELINE_OPS`] from it on; at the
/// end a third before the focus and the rest after it (more before if too few came after).
#[derive(Debug)]
struct Window {
    focus_ns: u64,
    /// (position in invocation order, operation).
    before: VecDeque<(u64, CompletedOp)>,
    after: Vec<(u64, CompletedOp)>,
}

impl Window {
    fn offer(&mut self, position: u64, op: CompletedOp) {
        if op.start_ns < self.focus_ns {
            if self.before.len() == MAX_TIMELINE_OPS {
                self.before.pop_front();
            }
            self.before.push_back((position, op));
        } else if self.after.len() < MAX_TIMELINE_OPS {
            self.after.push((position, op));
        }
    }

    /// The operation at `position`, if the window holds it (to record its completion).
    fn get_mut(&mut self, position: u64) -> Option<&mut CompletedOp> {
        let find = |ops: &[(u64, CompletedOp)]| ops.binary_search_by_key(&position, |(p, _)| *p);
        if let Ok(i) = find(self.after.as_slice()) {
            return Some(&mut self.after[i].1);
        }
        let (a, b) = self.before.as_mut_slices();
        if let Ok(i) = find(a) {
            return Some(&mut a[i].1);
        }
        match find(b) {
            Ok(i) => Some(&mut b[i].1),
            Err(_) => None,
        }
    }

    fn finish(self) -> (u64, Vec<CompletedOp>) {
        let take_before = self
            .before
            .len()
            .min((MAX_TIMELINE_OPS / 3).max(MAX_TIMELINE_OPS - self.after.len()));
        let take_after = self.after.len().min(MAX_TIMELINE_OPS - take_before);
        let skip = self.before.len() - take_before;
        let ops: Vec<(u64, CompletedOp)> = self
            .before
            .into_iter()
            .skip(skip)
            .chain(self.after.into_iter().take(take_after))
            .collect();
        let start = ops.first().map(|(p, _)| *p).unwrap_or(0);
        (start, ops.into_iter().map(|(_, op)| op).collect())
    }
}

/// An operation invoked and not yet completed.
struct Open {
    position: u64,
    f: String,
    start_ns: u64,
}

/// Builds a [`Digest`] one event at a time.
pub struct Digester {
    digest: Digest,
    /// By process: its invocation in flight.
    open: HashMap<u64, Open>,
    ok_points: Thinned<LatencyPoint>,
    other_points: Thinned<LatencyPoint>,
    latencies: BTreeMap<(String, &'static str), (EventType, Histogram<u64>, u64)>,
    window: Window,
}

impl Digester {
    pub fn new(focus: Focus) -> Digester {
        let focus_ns = match focus {
            Focus::Violation(t) | Focus::Fault(t) => t,
            Focus::Start => 0,
        };
        Digester {
            digest: Digest {
                focus,
                ..Digest::default()
            },
            open: HashMap::new(),
            ok_points: Thinned::new(MAX_PLOT_POINTS),
            other_points: Thinned::new(MAX_OTHER_POINTS),
            latencies: BTreeMap::new(),
            window: Window {
                focus_ns,
                before: VecDeque::new(),
                after: Vec::new(),
            },
        }
    }

    /// One event of the history, in its order. Observations (lines without an invocation,
    /// such as watch events) are not operations and are left out.
    pub fn push(&mut self, e: &Event) {
        let d = &mut self.digest;
        d.last_event_ns = d.last_event_ns.max(e.time);
        if e.kind == EventType::Invoke {
            let position = d.ops;
            d.ops += 1;
            // A process invokes again only after its previous operation ended; one that did
            // not (a history cut short) leaves that one open for ever.
            self.open.insert(
                e.process,
                Open {
                    position,
                    f: e.f.clone(),
                    start_ns: e.time,
                },
            );
            self.window.offer(
                position,
                CompletedOp {
                    process: e.process,
                    f: e.f.clone(),
                    key: e.key.clone(),
                    invoke_value: e.value.clone(),
                    value: Value::Null,
                    kind: EventType::Info,
                    error: None,
                    node: e.node.clone(),
                    start_ns: e.time,
                    end_ns: None,
                },
            );
            return;
        }
        let Some(open) = self.open.remove(&e.process) else {
            return;
        };
        match e.kind {
            EventType::Ok => d.ok += 1,
            EventType::Fail => d.fail += 1,
            _ => d.info += 1,
        }
        let latency_ns = e.time.saturating_sub(open.start_ns);
        let point = LatencyPoint {
            start_ns: open.start_ns,
            latency_ns,
            kind: e.kind,
        };
        if e.kind == EventType::Ok {
            self.ok_points.push(point);
        } else {
            self.other_points.push(point);
        }
        let second = (e.time / 1_000_000_000) as usize;
        if d.completions_per_s.len() <= second {
            d.completions_per_s.resize(second + 1, [0; 3]);
        }
        d.completions_per_s[second][slot(e.kind)] += 1;
        let (_, histogram, max) = self
            .latencies
            .entry((open.f, e.kind.as_str()))
            .or_insert_with(|| {
                let h = Histogram::new(LATENCY_SIGNIFICANT_DIGITS)
                    .expect("3 significant digits are within hdrhistogram's range");
                (e.kind, h, 0)
            });
        // `record` grows the histogram to the value (`saturating_record` would clamp it at the
        // initial 2,048 ns); it fails only past what a u64 histogram can ever hold.
        if histogram.record(latency_ns).is_err() {
            histogram.saturating_record(latency_ns);
        }
        *max = (*max).max(latency_ns);
        if let Some(op) = self.window.get_mut(open.position) {
            op.kind = e.kind;
            op.value = e.value.clone();
            op.error = e.error.clone();
            op.end_ns = Some(e.time);
        }
    }

    pub fn finish(mut self) -> Digest {
        // Invocations that never completed are indeterminate.
        self.digest.info += self.open.len() as u64;
        let others = self.other_points.take_at_most(MAX_OTHER_POINTS);
        let ok = self
            .ok_points
            .take_at_most(MAX_PLOT_POINTS.saturating_sub(others.len()));
        self.digest.latency_points = ok.into_iter().chain(others).collect();
        self.digest.quantiles = self
            .latencies
            .into_iter()
            .map(|((f, _), (kind, h, max))| Quantiles {
                f,
                kind,
                count: h.len(),
                p50: h.value_at_quantile(0.5),
                p90: h.value_at_quantile(0.9),
                p99: h.value_at_quantile(0.99),
                max,
            })
            .collect();
        let (start, window) = self.window.finish();
        self.digest.window_start = start;
        self.digest.window = window;
        self.digest
    }
}

/// An outcome's slot in `completions_per_s` (the throughput plot draws them in this order).
fn slot(kind: EventType) -> usize {
    match kind {
        EventType::Ok => 0,
        EventType::Fail => 1,
        _ => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(index: u64, time: u64, process: u64, kind: EventType, f: &str) -> Event {
        Event::new(index, time, process, kind, f, json!(1))
    }

    #[test]
    fn pairs_by_process_and_counts_unfinished_as_info() {
        let events = vec![
            ev(0, 10, 0, EventType::Invoke, "write"),
            ev(1, 11, 1, EventType::Invoke, "read"),
            ev(2, 30, 0, EventType::Ok, "write"),
            ev(3, 31, 2, EventType::Ok, "event"),
            ev(4, 40, 0, EventType::Invoke, "read"),
            ev(5, 45, 0, EventType::Fail, "read"),
        ];
        let d = Digest::of_events(&events, Focus::Start);
        assert_eq!((d.ops, d.ok, d.fail, d.info), (3, 1, 1, 1));
        assert_eq!(d.window.len(), 3);
        assert_eq!(
            (d.window[0].kind, d.window[0].latency_ns()),
            (EventType::Ok, Some(20))
        );
        assert_eq!(
            (d.window[1].kind, d.window[1].end_ns),
            (EventType::Info, None)
        );
        assert_eq!(
            (d.window[2].kind, d.window[2].latency_ns()),
            (EventType::Fail, Some(5))
        );
    }

    #[test]
    fn quantiles_per_function_and_outcome() {
        let events: Vec<Event> = (0..100)
            .flat_map(|i| {
                [
                    ev(2 * i, 1000 * i, 0, EventType::Invoke, "read"),
                    ev(2 * i + 1, 1000 * i + i + 1, 0, EventType::Ok, "read"),
                ]
            })
            .collect();
        let q = Digest::of_events(&events, Focus::Start).quantiles;
        assert_eq!(q.len(), 1);
        assert_eq!(
            (q[0].count, q[0].p50, q[0].p99, q[0].max),
            (100, 50, 99, 100)
        );
        assert!(q[0].p50 <= q[0].p90 && q[0].p90 <= q[0].p99 && q[0].p99 <= q[0].max);
    }

    /// Latencies of milliseconds (far above the histogram's first range) keep their quantiles.
    #[test]
    fn quantiles_of_millisecond_latencies_are_exact_to_a_thousandth() {
        let events: Vec<Event> = (0..1000)
            .flat_map(|i| {
                let start = 10_000_000 * i;
                [
                    ev(2 * i, start, 0, EventType::Invoke, "write"),
                    ev(
                        2 * i + 1,
                        start + 1_000_000 * (i + 1),
                        0,
                        EventType::Ok,
                        "write",
                    ),
                ]
            })
            .collect();
        let q = &Digest::of_events(&events, Focus::Start).quantiles[0];
        let near = |got: u64, want: u64| got.abs_diff(want) * 1000 <= want;
        assert!(near(q.p50, 500_000_000), "p50 {}", q.p50);
        assert!(near(q.p99, 990_000_000), "p99 {}", q.p99);
        assert_eq!(q.max, 1_000_000_000);
    }

    #[test]
    fn thinning_keeps_an_even_spread_within_capacity() {
        let mut t = Thinned::new(100);
        for i in 0..100_000u64 {
            t.push(i);
        }
        let kept = t.take_at_most(100);
        assert!((50..=100).contains(&kept.len()), "{}", kept.len());
        let gaps: Vec<u64> = kept.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(gaps.iter().all(|g| *g == gaps[0]), "uneven: {gaps:?}");
        assert!(*kept.last().unwrap() > 90_000, "the tail is missing");
    }

    /// The window is the same as cutting it from the whole list of operations: a third before
    /// the focus, the rest after it, or more before when the run ends soon after the focus.
    #[test]
    fn the_window_is_a_third_before_the_focus() {
        let n = 10_000u64;
        let events: Vec<Event> = (0..n)
            .flat_map(|i| {
                [
                    ev(2 * i, 10 * i, 0, EventType::Invoke, "read"),
                    ev(2 * i + 1, 10 * i + 5, 0, EventType::Ok, "read"),
                ]
            })
            .collect();
        let third = (MAX_TIMELINE_OPS / 3) as u64;
        let mid = Digest::of_events(&events, Focus::Violation(10 * 5_000));
        assert_eq!(mid.window_start, 5_000 - third);
        assert_eq!(mid.window.len(), MAX_TIMELINE_OPS);
        assert_eq!(mid.window[third as usize].start_ns, 10 * 5_000);
        assert!(mid.window.iter().all(|o| o.end_ns.is_some()));
        let late = Digest::of_events(&events, Focus::Fault(10 * (n - 10)));
        assert_eq!(late.window_start, n - MAX_TIMELINE_OPS as u64);
        assert_eq!(late.window.len(), MAX_TIMELINE_OPS);
        let start = Digest::of_events(&events, Focus::Start);
        assert_eq!(
            (start.window_start, start.window.len()),
            (0, MAX_TIMELINE_OPS)
        );
    }
}
