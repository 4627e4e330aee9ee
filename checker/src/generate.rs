//! Synthetic histories for the benchmark and the tests: simulated clients on keyed registers,
//! linearizable by construction (each operation takes effect at one instant between its
//! invocation and completion), optionally with one planted violation.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

use crate::history::{Event, EventType};
use crate::model::ModelKind;

/// Longest time from invocation to taking effect, and from taking effect to completion.
const MAX_PHASE_NS: u64 = 2_000_000;
/// Longest pause between a process's completion and its next invocation.
const MAX_THINK_NS: u64 = 500_000;
/// Where in the history the planted violation goes (fraction of the events).
const VIOLATION_AT: f64 = 0.7;
/// A value no operation writes.
pub const PLANTED_VALUE: i64 = -424_242;

#[derive(Clone, Debug)]
pub struct GenConfig {
    /// Client operations (excluding the setup creates).
    pub ops: usize,
    pub keys: usize,
    pub processes: usize,
    /// Share of operations whose outcome is unknown (`info`); half of those took effect.
    pub info_share: f64,
    /// Plant one read of a value never written.
    pub violation: bool,
    pub seed: u64,
    /// `znode` (versioned, keeper's register workload) or `cas-register`.
    pub model: ModelKind,
}

#[derive(Clone, Copy)]
enum Phase {
    Invoke,
    TakeEffect,
    Complete,
}

struct Pending {
    process: u64,
    key: usize,
    f: &'static str,
    value: Value,
    result: Value,
    kind: EventType,
    /// For an `info` operation: does it take effect?
    applies: bool,
}

/// A key's state: `(data, version)` for a znode; the data alone (version unused) for a register.
type KeyState = (i64, u32);

pub fn key_name(model: ModelKind, k: usize) -> String {
    match model {
        ModelKind::Znode => format!("/registers/r{k}"),
        _ => format!("r{k}"),
    }
}

/// A register's value as written to the history: 0 stands for nil (writes start at 2).
fn register_value(v: i64) -> Value {
    if v == 0 { Value::Null } else { json!(v) }
}

/// Generates a history of `cfg.ops` operations.
pub fn generate(cfg: &GenConfig) -> Vec<Event> {
    let keys = cfg.keys.max(1);
    let mut events: Vec<Event> = Vec::with_capacity(2 * (cfg.ops + keys));
    let planted = generate_each(cfg, |e| events.push(e));
    if cfg.violation && !planted {
        plant_violation(&mut events, cfg.model);
    }
    events
}

/// Events a history of `cfg` holds: every operation is invoked and completed.
pub fn event_count(cfg: &GenConfig) -> usize {
    let setup = if cfg.model == ModelKind::Znode {
        cfg.keys.max(1)
    } else {
        0
    };
    2 * (cfg.ops + setup)
}

/// Generates the history of `cfg` one event at a time, in order, into `sink` (for histories
/// too large to hold). Returns whether the violation was planted on the way: a register's (a
/// read of a value never written, the first `ok` read from 70% of the history on) is; a znode's
/// stale read needs the history before it, and is left to [`generate`].
pub fn generate_each(cfg: &GenConfig, mut sink: impl FnMut(Event)) -> bool {
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let keys = cfg.keys.max(1);
    let plant_from = (event_count(cfg) as f64 * VIOLATION_AT) as usize;
    let mut plant = cfg.violation && cfg.model != ModelKind::Znode;
    let mut emitted = 0usize;
    let mut emit = |time: u64,
                    process: u64,
                    kind: EventType,
                    f: &str,
                    key: &str,
                    value: Value,
                    error: Option<&str>| {
        let mut e = Event::new(emitted as u64, time, process, kind, f, value);
        e.key = Some(key.to_string());
        e.error = error.map(str::to_string);
        if plant && emitted >= plant_from && kind == EventType::Ok && f == "read" {
            e.value = json!(PLANTED_VALUE);
            plant = false;
        }
        emitted += 1;
        sink(e);
    };
    let names: Vec<String> = (0..keys).map(|k| key_name(cfg.model, k)).collect();
    let mut state: Vec<KeyState> = vec![(0, 0); keys];
    let workers = cfg.processes.max(1);
    // The znode model starts with no node: one setup process creates every key first.
    let setup = workers as u64;
    if cfg.model == ModelKind::Znode {
        for (k, name) in names.iter().enumerate() {
            let t = k as u64;
            emit(t, setup, EventType::Invoke, "create", name, json!(0), None);
            emit(t, setup, EventType::Ok, "create", name, json!(0), None);
        }
    }
    let t0 = keys as u64 + 1;
    let mut next_process = setup + 1;
    let mut next_value: i64 = 1;
    let mut heap: BinaryHeap<Reverse<(u64, usize, u8)>> = BinaryHeap::new();
    let mut slots: Vec<Option<Pending>> = (0..workers).map(|_| None).collect();
    let mut process_of: Vec<u64> = (0..workers as u64).collect();
    for w in 0..workers {
        heap.push(Reverse((
            t0 + rng.random_range(0..MAX_THINK_NS),
            w,
            Phase::Invoke as u8,
        )));
    }
    let mut invoked = 0usize;
    while let Some(Reverse((t, w, phase))) = heap.pop() {
        let phase = match phase {
            0 => Phase::Invoke,
            1 => Phase::TakeEffect,
            _ => Phase::Complete,
        };
        match phase {
            Phase::Invoke => {
                if invoked >= cfg.ops {
                    continue;
                }
                invoked += 1;
                let key = rng.random_range(0..keys);
                let roll = rng.random_range(0..100u32);
                let (f, value) = match (cfg.model, roll) {
                    (_, 0..50) => ("read", Value::Null),
                    (_, 50..75) => {
                        next_value += 1;
                        ("write", json!(next_value))
                    }
                    (ModelKind::Znode, _) => {
                        next_value += 1;
                        // Usually the current version (succeeds if nothing intervenes), sometimes stale.
                        let v = state[key].1.saturating_sub(rng.random_range(0..2u32));
                        ("cas", json!({"from_version": v, "to": next_value}))
                    }
                    (_, _) => {
                        next_value += 1;
                        let old = if rng.random_bool(0.7) {
                            state[key].0
                        } else {
                            next_value - 2
                        };
                        ("cas", json!([register_value(old), next_value]))
                    }
                };
                let kind = if rng.random_bool(cfg.info_share.clamp(0.0, 1.0)) {
                    EventType::Info
                } else {
                    EventType::Ok
                };
                let applies = kind == EventType::Ok || rng.random_bool(0.5);
                emit(
                    t,
                    process_of[w],
                    EventType::Invoke,
                    f,
                    &names[key],
                    value.clone(),
                    None,
                );
                slots[w] = Some(Pending {
                    process: process_of[w],
                    key,
                    f,
                    value,
                    result: Value::Null,
                    kind,
                    applies,
                });
                heap.push(Reverse((
                    t + 1 + rng.random_range(0..MAX_PHASE_NS),
                    w,
                    Phase::TakeEffect as u8,
                )));
            }
            Phase::TakeEffect => {
                let Some(p) = slots[w].as_mut() else { continue };
                let s = &mut state[p.key];
                match (p.f, cfg.model) {
                    ("read", ModelKind::Znode) => p.result = json!([s.0, s.1]),
                    ("read", _) => p.result = register_value(s.0),
                    ("write", m) if p.applies => {
                        s.0 = p.value.as_i64().unwrap_or(0);
                        s.1 += 1;
                        p.result = if m == ModelKind::Znode {
                            json!({"version": s.1})
                        } else {
                            p.value.clone()
                        };
                    }
                    ("cas", ModelKind::Znode) => {
                        let from = p.value["from_version"].as_u64().unwrap_or(0) as u32;
                        if from == s.1 {
                            if p.applies {
                                s.0 = p.value["to"].as_i64().unwrap_or(0);
                                s.1 += 1;
                                p.result = json!({"version": s.1});
                            }
                        } else if p.kind == EventType::Ok {
                            p.kind = EventType::Fail;
                        }
                    }
                    ("cas", _) => {
                        if p.value[0] == register_value(s.0) {
                            if p.applies {
                                s.0 = p.value[1].as_i64().unwrap_or(0);
                                s.1 += 1;
                            }
                        } else if p.kind == EventType::Ok {
                            p.kind = EventType::Fail;
                        }
                        p.result = p.value.clone();
                    }
                    _ => {}
                }
                heap.push(Reverse((
                    t + 1 + rng.random_range(0..MAX_PHASE_NS),
                    w,
                    Phase::Complete as u8,
                )));
            }
            Phase::Complete => {
                let Some(p) = slots[w].take() else { continue };
                let (value, error) = match p.kind {
                    EventType::Ok => (p.result, None),
                    EventType::Fail => (p.value, Some("bad_version")),
                    _ => (p.value, Some("timeout")),
                };
                emit(t, p.process, p.kind, p.f, &names[p.key], value, error);
                if p.kind == EventType::Info {
                    // A process that got `info` never invokes again: the worker continues as a new one.
                    process_of[w] = next_process;
                    next_process += 1;
                }
                heap.push(Reverse((
                    t + 1 + rng.random_range(0..MAX_THINK_NS),
                    w,
                    Phase::Invoke as u8,
                )));
            }
        }
    }
    cfg.violation && !plant && cfg.model != ModelKind::Znode
}

/// Plants one violation late in the history. Znode: a stale read (an `ok` read returns the
/// version before one whose write had completed before the read was invoked), which only real
/// time rules out. Register: a read of a value never written.
fn plant_violation(events: &mut [Event], model: ModelKind) {
    let start = (events.len() as f64 * VIOLATION_AT) as usize;
    let reads: Vec<usize> = (start..events.len())
        .chain(0..start)
        .filter(|&i| events[i].kind == EventType::Ok && events[i].f == "read")
        .collect();
    for i in reads {
        if model == ModelKind::Znode
            && let Some(stale) = stale_value(events, i)
        {
            events[i].value = stale;
            return;
        }
        if model != ModelKind::Znode {
            events[i].value = json!(PLANTED_VALUE);
            return;
        }
    }
}

/// For the `ok` read completing at `read`: `[data, version - 1]`, where `version` was made by a
/// write that completed before the read was invoked; `None` if there is no such write.
fn stale_value(events: &[Event], read: usize) -> Option<Value> {
    let key = events[read].key.as_deref()?;
    let process = events[read].process;
    let invoked = (0..read)
        .rev()
        .find(|&i| events[i].process == process && events[i].kind == EventType::Invoke)?;
    // data of each version of this key, from the writes' invocations
    let mut data_of: std::collections::HashMap<u64, Value> = std::collections::HashMap::new();
    data_of.insert(0, json!(0));
    let mut invoke_value: std::collections::HashMap<u64, &Value> = std::collections::HashMap::new();
    let mut newest_done: Option<u64> = None;
    for (i, e) in events.iter().enumerate().take(read) {
        if e.key.as_deref() != Some(key) {
            continue;
        }
        match e.kind {
            EventType::Invoke => {
                invoke_value.insert(e.process, &e.value);
            }
            EventType::Ok if e.f == "write" || e.f == "cas" => {
                let (Some(v), Some(arg)) = (
                    e.value.get("version").and_then(Value::as_u64),
                    invoke_value.get(&e.process),
                ) else {
                    continue;
                };
                let data = if e.f == "cas" {
                    arg["to"].clone()
                } else {
                    (*arg).clone()
                };
                data_of.insert(v, data);
                if i < invoked {
                    newest_done = Some(newest_done.map_or(v, |n| n.max(v)));
                }
            }
            _ => {}
        }
    }
    let v = newest_done?.checked_sub(1)?;
    Some(json!([data_of.get(&v)?, v]))
}
