//! The history as the report draws it: completed operations with their latency. (Fault periods
//! come from the checker's reader of the nemesis log, `checker::faults`.)

use checker::history::{Event, EventType};
use serde_json::Value;
use std::collections::HashMap;

/// One operation: its invocation and how it ended.
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

/// Pairs invocations with completions by process, in history order. Observations (lines
/// without an invocation, such as watch events) are not operations and are left out.
pub fn completed_ops(events: &[Event]) -> Vec<CompletedOp> {
    let mut open: HashMap<u64, usize> = HashMap::new();
    let mut ops: Vec<CompletedOp> = Vec::new();
    for e in events {
        match e.kind {
            EventType::Invoke => {
                open.insert(e.process, ops.len());
                ops.push(CompletedOp {
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
                });
            }
            kind => {
                if let Some(i) = open.remove(&e.process) {
                    let op = &mut ops[i];
                    op.kind = kind;
                    op.value = e.value.clone();
                    op.error = e.error.clone();
                    op.end_ns = Some(e.time);
                }
            }
        }
    }
    ops
}

/// Latency quantiles of one group of operations, in nanoseconds.
#[derive(Clone, Debug, PartialEq)]
pub struct Quantiles {
    pub f: String,
    pub kind: EventType,
    pub count: usize,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub max: u64,
}

/// Quantiles per (function, outcome), sorted by function then outcome.
pub fn quantiles(ops: &[CompletedOp]) -> Vec<Quantiles> {
    let mut groups: HashMap<(String, &'static str), (EventType, Vec<u64>)> = HashMap::new();
    for op in ops {
        if let Some(lat) = op.latency_ns() {
            groups
                .entry((op.f.clone(), op.kind.as_str()))
                .or_insert_with(|| (op.kind, Vec::new()))
                .1
                .push(lat);
        }
    }
    let mut rows: Vec<Quantiles> = groups
        .into_iter()
        .map(|((f, _), (kind, mut lats))| {
            lats.sort_unstable();
            let at = |q: f64| lats[((lats.len() - 1) as f64 * q).round() as usize];
            Quantiles {
                f,
                kind,
                count: lats.len(),
                p50: at(0.5),
                p90: at(0.9),
                p99: at(0.99),
                max: *lats.last().unwrap_or(&0),
            }
        })
        .collect();
    rows.sort_by(|a, b| a.f.cmp(&b.f).then(a.kind.as_str().cmp(b.kind.as_str())));
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(index: u64, time: u64, process: u64, kind: EventType, f: &str) -> Event {
        Event::new(index, time, process, kind, f, json!(1))
    }

    #[test]
    fn pairs_by_process_and_keeps_unfinished_as_info() {
        let events = vec![
            ev(0, 10, 0, EventType::Invoke, "write"),
            ev(1, 11, 1, EventType::Invoke, "read"),
            ev(2, 30, 0, EventType::Ok, "write"),
            ev(3, 31, 2, EventType::Ok, "event"),
            ev(4, 40, 0, EventType::Invoke, "read"),
            ev(5, 45, 0, EventType::Fail, "read"),
        ];
        let ops = completed_ops(&events);
        assert_eq!(ops.len(), 3);
        assert_eq!(
            (ops[0].kind, ops[0].latency_ns()),
            (EventType::Ok, Some(20))
        );
        assert_eq!((ops[1].kind, ops[1].end_ns), (EventType::Info, None));
        assert_eq!(
            (ops[2].kind, ops[2].latency_ns()),
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
        let q = quantiles(&completed_ops(&events));
        assert_eq!(q.len(), 1);
        assert_eq!((q[0].count, q[0].p50, q[0].max), (100, 51, 100));
        assert!(q[0].p90 <= q[0].p99 && q[0].p99 <= q[0].max);
    }
}
