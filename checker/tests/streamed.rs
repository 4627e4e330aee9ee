//! The streamed check (`checker::stream`) against the in-memory one: the same verdicts and
//! counterexamples on small histories, valid and invalid, and memory that follows the largest
//! key rather than the number of keys.

use std::path::Path;
use std::time::Duration;

use checker::generate::{self, GenConfig};
use checker::run::{self, CheckOptions};
use checker::stream::{self, StreamConfig};
use checker::{Event, ModelKind, RunVerdict, Verdict};

fn opts(model: Option<ModelKind>) -> CheckOptions {
    CheckOptions {
        model,
        time_limit: Some(Duration::from_secs(300)),
        threads: Some(1),
        ..CheckOptions::default()
    }
}

fn write(events: &[Event], path: &Path) {
    let text: String = events
        .iter()
        .map(|e| serde_json::to_string(e).unwrap() + "\n")
        .collect();
    std::fs::write(path, text).unwrap();
}

/// Everything a user reads of a verdict except the times it took.
fn comparable(v: &RunVerdict) -> Vec<String> {
    let mut out = vec![format!("verdict {:?}", v.verdict)];
    out.extend(v.warnings.iter().cloned());
    for c in &v.checkers {
        let mut details = c.details.clone();
        if let Some(d) = details.as_object_mut() {
            d.remove("elapsed_ms");
            d.remove("slowest_keys");
        }
        let summary = if c.name == "linearizable" && c.verdict == Verdict::Valid {
            // "... model x, N ms"
            c.summary
                .rsplit_once(", ")
                .map_or(c.summary.clone(), |s| s.0.to_string())
        } else {
            c.summary.clone()
        };
        out.push(format!("{} {:?} {summary} {details}", c.name, c.verdict));
        out.push(serde_json::to_string(&c.counterexample).unwrap());
    }
    out
}

/// Checks `path` both ways; returns the streamed verdict after asserting they agree.
fn both_ways(path: &Path, workload: Option<&str>, o: &CheckOptions) -> RunVerdict {
    let whole = run::check_file(path, workload, o).unwrap();
    let (streamed, _) = stream::check_file(path, workload, o, &StreamConfig::default()).unwrap();
    assert_eq!(comparable(&streamed), comparable(&whole));
    // Keys sharing spill files: the same again, except how many keys were found valid before
    // a violation stopped the search (keys go in another order).
    let (shared, _) =
        stream::check_file(path, workload, o, &StreamConfig { spill_files: 2 }).unwrap();
    let unordered = |v: &RunVerdict| -> Vec<String> {
        comparable(v)
            .into_iter()
            .map(|l| match l.find("\"valid_keys\"") {
                Some(at) if v.verdict == Verdict::Invalid => l[..at].to_string(),
                _ => l,
            })
            .collect()
    };
    assert_eq!(unordered(&shared), unordered(&whole));
    streamed
}

#[test]
fn streamed_and_in_memory_agree_on_generated_histories() {
    let dir = tempfile::tempdir().unwrap();
    let mut invalid = 0;
    for (model, violation, info_share, seed) in [
        (ModelKind::CasRegister, false, 0.05, 1),
        (ModelKind::CasRegister, true, 0.05, 2),
        (ModelKind::Znode, false, 0.05, 3),
        (ModelKind::Znode, true, 0.1, 4),
    ] {
        let cfg = GenConfig {
            ops: 600,
            keys: 5,
            processes: 6,
            info_share,
            violation,
            seed,
            model,
        };
        let path = dir.path().join(format!("h{seed}.jsonl"));
        write(&generate::generate(&cfg), &path);
        for o in [opts(Some(model)), opts(None)] {
            let v = both_ways(&path, None, &o);
            let expected = if violation {
                Verdict::Invalid
            } else {
                Verdict::Valid
            };
            assert_eq!(v.verdict, expected, "{:?}", comparable(&v));
            if violation {
                assert!(v.counterexample().is_some());
                invalid += 1;
            }
        }
        // As a register run's history: linearizable, monotonic reads and stats.
        both_ways(&path, Some("register"), &opts(Some(model)));
    }
    assert_eq!(invalid, 4);
}

#[test]
fn streamed_and_in_memory_agree_on_a_simulated_run_and_its_planted_stale_read() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/sim/seed-802.jsonl");
    let v = both_ways(&path, Some("register"), &opts(None));
    assert_eq!(v.verdict, Verdict::Valid);
    // Sessions and zxids: monotonic reads was judged, not left out.
    assert!(v.checkers.iter().any(|c| c.name == "monotonic-reads"));

    let text = std::fs::read_to_string(&path).unwrap();
    let stale: String = text
        .lines()
        .map(|l| {
            if l.starts_with(r#"{"index":87,"#) {
                l.replace(r#""value":[27,6]"#, r#""value":[15,4]"#)
            } else {
                l.to_string()
            }
        })
        .map(|l| l + "\n")
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let stale_path = dir.path().join("history.jsonl");
    std::fs::write(&stale_path, stale).unwrap();
    let v = both_ways(&stale_path, Some("register"), &opts(None));
    assert_eq!(v.verdict, Verdict::Invalid);
}

#[test]
fn a_session_going_back_in_time_is_found_streamed_with_the_same_pair() {
    // Session 7: an op completes with zxid 9, a later one (invoked after) gets zxid 5; a
    // concurrent op of session 8 is fine.
    let ev = |i: u64, p: u64, kind: &str, f: &str, extra: &str| {
        format!(
            r#"{{"index":{i},"time":{i},"process":{p},"type":"{kind}","f":"{f}","value":null,"key":"/r"{extra}}}"#
        )
    };
    let lines = [
        ev(0, 1, "invoke", "read", r#","session":7"#),
        ev(1, 2, "invoke", "read", r#","session":8"#),
        ev(2, 1, "ok", "read", r#","session":7,"zxid":9"#),
        ev(3, 1, "invoke", "read", r#","session":7"#),
        ev(4, 2, "ok", "read", r#","session":8,"zxid":3"#),
        ev(5, 1, "ok", "read", r#","session":7,"zxid":5"#),
    ];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.jsonl");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let o = opts(Some(ModelKind::Register));
    let v = both_ways(&path, None, &o);
    let mono = v
        .checkers
        .iter()
        .find(|c| c.name == "monotonic-reads")
        .unwrap();
    assert_eq!(mono.verdict, Verdict::Invalid);
    let cx = mono.counterexample.as_ref().unwrap();
    let indexes: Vec<u64> = cx.ops.iter().map(|o| o.invoke_index).collect();
    assert_eq!(indexes, [0, 3]);
}

#[test]
fn malformed_files_give_the_same_error_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let ok = r#"{"index":0,"time":1,"process":0,"type":"invoke","f":"read","value":null}"#;
    for (name, text) in [
        (
            "gap",
            format!("{ok}\n{}\n", ok.replace("\"index\":0", "\"index\":2")),
        ),
        (
            "twice",
            format!("{ok}\n{}\n", ok.replace("\"index\":0", "\"index\":1")),
        ),
        ("not-json", format!("{ok}\nhello\n")),
        ("cut", format!("{ok}\n{{\"index\":1,\"ti")),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, &text).unwrap();
        let o = opts(Some(ModelKind::Register));
        let whole = run::check_file(&path, None, &o).map(|v| comparable(&v));
        let streamed = stream::check_file(&path, None, &o, &StreamConfig::default())
            .map(|(v, _)| comparable(&v));
        match (whole, streamed) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "{name}"),
            (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "{name}"),
            (a, b) => panic!("{name}: {a:?} vs {b:?}"),
        }
    }
}

/// The number of operations held at once is the largest key's, however many keys there are:
/// 100 keys hold no more than 4 keys of the same size do.
#[test]
fn memory_follows_the_largest_key_not_the_number_of_keys() {
    let dir = tempfile::tempdir().unwrap();
    let mut held = Vec::new();
    for keys in [4usize, 100] {
        let cfg = GenConfig {
            ops: 60 * keys,
            keys,
            processes: 8,
            info_share: 0.02,
            violation: false,
            seed: 7,
            model: ModelKind::CasRegister,
        };
        let events = generate::generate(&cfg);
        let path = dir.path().join(format!("k{keys}.jsonl"));
        write(&events, &path);
        let o = opts(Some(ModelKind::CasRegister));
        let (v, stats) = stream::check_file(&path, None, &o, &StreamConfig::default()).unwrap();
        assert_eq!(v.verdict, Verdict::Valid);
        let mut per_key = std::collections::HashMap::new();
        for e in events
            .iter()
            .filter(|e| e.kind == checker::EventType::Invoke)
        {
            *per_key.entry(e.key.clone()).or_insert(0usize) += 1;
        }
        let largest = per_key.values().copied().max().unwrap();
        assert_eq!(stats.keys, keys);
        assert_eq!(stats.ops, 60 * keys);
        assert_eq!(stats.max_key_ops_held, largest, "{stats:?}");
        // One key per spill file while there are no more keys than files.
        assert_eq!(stats.max_spill_ops_held, largest, "{stats:?}");
        assert!(stats.max_open_ops <= cfg.processes, "{stats:?}");
        held.push(stats.max_key_ops_held);
    }
    // 25 times the keys and the operations: about the same held (each key ~60 ops).
    assert!(held[1] < 2 * held[0], "{held:?}");
}
