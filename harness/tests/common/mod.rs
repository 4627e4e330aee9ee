//! Synthetic runs for the tests: a results directory written through the library, with a
//! history that the real checker judges.

#![allow(dead_code)]

use checker::history::{Event, EventType};
use schism::config::{BackendKind, Consistency, NodeChoice, TestConfig};
use schism::store::{HISTORY_FILE, NEMESIS_FILE, RunDir, TestRecord, Versions};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

pub fn config(workload: &str, seed: u64) -> TestConfig {
    TestConfig {
        workload: checker::WorkloadKind::from_name(workload).expect("a known workload"),
        system: Default::default(),
        protocol: Default::default(),
        backend: BackendKind::Local,
        nodes: 3,
        nemesis: "kill".parse().unwrap(),
        time_limit_ms: 1_000,
        rate: 100.0,
        concurrency: 2,
        seed,
        read_consistency: Consistency::Linearizable,
        op_timeout_ms: 1_000,
        node_choice: NodeChoice::Random,
        recovery_timeout_ms: 1_000,
        nemesis_interval_ms: 1_000,
        server_bug: None,
        keeperd: PathBuf::from("keeperd"),
        keeperd_args: Vec::new(),
    }
}

fn event(
    index: u64,
    time_ms: u64,
    process: u64,
    kind: EventType,
    f: &str,
    key: &str,
    value: Value,
) -> Event {
    let mut e = Event::new(index, time_ms * 1_000_000, process, kind, f, value);
    e.key = Some(key.to_string());
    e.node = Some("n1".into());
    e
}

/// A register history (znode model). `violation`: a read returns a value never written.
pub fn register_history(violation: bool) -> Vec<Event> {
    use EventType::*;
    let mut h = vec![
        event(0, 1, 0, Invoke, "create", "r0-0", json!(1)),
        event(1, 3, 0, Ok, "create", "r0-0", Value::Null),
        event(2, 4, 1, Invoke, "write", "r0-0", json!(2)),
        event(3, 6, 1, Ok, "write", "r0-0", json!({"version": 1})),
        event(4, 7, 0, Invoke, "read", "r0-0", Value::Null),
        event(5, 9, 0, Ok, "read", "r0-0", json!([2, 1])),
        event(
            6,
            10,
            1,
            Invoke,
            "cas",
            "r0-0",
            json!({"from_version": 0, "to": 3}),
        ),
        event(
            7,
            12,
            1,
            Fail,
            "cas",
            "r0-0",
            json!({"from_version": 0, "to": 3}),
        ),
        event(8, 13, 0, Invoke, "write", "r0-0", json!(4)),
        event(9, 2_000, 0, Info, "write", "r0-0", json!(4)),
        event(10, 2_001, 3, Invoke, "read", "r0-0", Value::Null),
    ];
    let last = if violation {
        json!([7, 2])
    } else {
        json!([4, 2])
    };
    h.push(event(11, 2_003, 3, Ok, "read", "r0-0", last));
    // A cas that succeeds: every kind of operation succeeded once (the stats checker).
    let cas = json!({"from_version": 2, "to": 5});
    h.push(event(12, 2_004, 4, Invoke, "cas", "r0-0", cas));
    h.push(event(
        13,
        2_006,
        4,
        Ok,
        "cas",
        "r0-0",
        json!({"version": 3}),
    ));
    h[7].error = Some("bad_version".into());
    h[9].error = Some("timeout".into());
    h
}

/// A run directory as `schism test` leaves it before checking.
pub fn write_run(root: &Path, violation: bool) -> RunDir {
    let run = RunDir::create(root, "register", 42, SystemTime::now()).unwrap();
    run.write_test_record(&TestRecord {
        config: config("register", 42),
        versions: Versions {
            schism: "test".into(),
            keeperd: None,
            zookeeper: None,
        },
        command_line: vec![
            "schism".into(),
            "test".into(),
            "<script>alert(1)</script>".into(),
        ],
        started_at: "2026-01-01T00:00:00Z".into(),
        replay_of: None,
    })
    .unwrap();
    let lines: Vec<String> = register_history(violation)
        .iter()
        .map(|e| serde_json::to_string(e).unwrap())
        .collect();
    std::fs::write(run.file(HISTORY_FILE), lines.join("\n") + "\n").unwrap();
    let nemesis = [
        json!({"time_ns": 5_000_000u64, "step": 0, "fault": "kill", "description": "kill n2", "phase": "start", "nodes": [2], "commands": [], "actions": []}),
        json!({"time_ns": 1_500_000_000u64, "step": 0, "fault": "kill", "description": "kill n2", "phase": "heal", "nodes": [2], "commands": [], "actions": []}),
    ];
    let text: Vec<String> = nemesis.iter().map(|v| v.to_string()).collect();
    std::fs::write(run.file(NEMESIS_FILE), text.join("\n") + "\n").unwrap();
    run
}
