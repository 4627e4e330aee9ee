//! A counterexample explains itself: for each operation, the node that served it, the epoch and
//! zxid it saw, and the faults in effect while it ran, in the text and on the HTML page, with
//! the fault periods shaded on the page's timeline.

use checker::{CheckOptions, Event, EventType, Verdict, check_run_dir};
use serde_json::{Value, json};

const MS: u64 = 1_000_000;
/// zxid of epoch `e`, counter `c`.
fn zxid(e: u64, c: u64) -> u64 {
    (e << 32) | c
}

/// A split brain on one key: the node is created through the old leader n3 (epoch 1); while
/// `partition isolate-leader` cuts n3 off, the new leader n1 (epoch 2) deletes it, and then a
/// write that needs the node still succeeds through n3 in epoch 1.
fn split_brain_history() -> Vec<Event> {
    let mut events = Vec::new();
    let mut ev =
        |t: u64, p: u64, kind: EventType, f: &str, v: Value, node: &str, z: Option<u64>| {
            let mut e = Event::new(events.len() as u64, t * MS, p, kind, f, v);
            e.key = Some("r0".into());
            e.node = Some(node.into());
            e.zxid = z;
            e.session = Some(p + 100);
            events.push(e);
        };
    ev(1, 0, EventType::Invoke, "create", json!(0), "n3", None);
    ev(
        2,
        0,
        EventType::Ok,
        "create",
        json!(0),
        "n3",
        Some(zxid(1, 1)),
    );
    ev(4, 1, EventType::Invoke, "delete", Value::Null, "n1", None);
    ev(
        6,
        1,
        EventType::Ok,
        "delete",
        Value::Null,
        "n1",
        Some(zxid(2, 1)),
    );
    ev(7, 2, EventType::Invoke, "write", json!(5), "n3", None);
    ev(
        8,
        2,
        EventType::Ok,
        "write",
        json!(5),
        "n3",
        Some(zxid(1, 2)),
    );
    events
}

/// The nemesis log: the partition covers the delete and the write; a kill comes after every
/// operation and must not be blamed for them. The last line is cut off, as in a crashed run.
const NEMESIS_LOG: &str = r#"{"time_ns":3000000,"step":0,"fault":"partition","description":"partition isolate-leader","phase":"start","nodes":[1,2,3],"resolution":"leader is n3","commands":[],"actions":[]}
{"time_ns":20000000,"step":0,"fault":"partition","description":"partition isolate-leader","phase":"heal","nodes":[1,2,3],"commands":[],"actions":[]}
{"time_ns":30000000,"step":1,"fault":"kill","description":"kill n2","phase":"start","nodes":[2],"commands":[],"actions":[]}
{"time_ns":40000000,"step":1,"fault":"kill","description":"kill n2","phase":"he"#;

fn write_run(dir: &std::path::Path, nemesis: Option<&str>) {
    std::fs::write(
        dir.join("test.json"),
        json!({"workload": "register"}).to_string(),
    )
    .unwrap();
    let lines: Vec<String> = split_brain_history()
        .iter()
        .map(|e| serde_json::to_string(e).unwrap())
        .collect();
    std::fs::write(dir.join("history.jsonl"), lines.join("\n") + "\n").unwrap();
    if let Some(log) = nemesis {
        std::fs::write(dir.join("nemesis.jsonl"), log).unwrap();
    }
}

fn opts() -> CheckOptions {
    CheckOptions {
        threads: Some(1),
        ..CheckOptions::default()
    }
}

/// The text line of the operation `[i]` and the line under it.
fn op_lines(text: &str, i: usize) -> (String, String) {
    let lines: Vec<&str> = text.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.trim_start().starts_with(&format!("[{i:>2}]")))
        .unwrap_or_else(|| panic!("no line for op [{i}] in\n{text}"));
    (lines[at].to_string(), lines[at + 1].to_string())
}

#[test]
fn each_operation_says_where_it_was_served_and_under_which_fault() {
    let dir = tempfile::tempdir().unwrap();
    write_run(dir.path(), Some(NEMESIS_LOG));
    let v = check_run_dir(dir.path(), &opts()).unwrap();
    assert_eq!(v.verdict, Verdict::Invalid, "{v:?}");
    let cx = v.counterexample().expect("a counterexample");
    // The cut-off kill still counts (never healed in the log); its cut heal line is noted.
    assert_eq!(cx.faults.len(), 2, "{:?}", cx.faults);
    assert!(
        v.warnings.iter().any(|w| w.contains("nemesis.jsonl")),
        "{v:?}"
    );

    let text = cx.timeline();
    let find = |f: &str| cx.ops.iter().position(|o| o.f == f).expect(f);
    let (delete, write) = (find("delete"), find("write"));
    let (head, under) = op_lines(&text, delete);
    assert!(head.contains("delete"), "{text}");
    assert!(
        under.contains("n1 · epoch 2 · zxid 0x200000001")
            && under.contains("during partition isolate-leader (leader is n3)"),
        "{text}"
    );
    let (head, under) = op_lines(&text, write);
    assert!(head.contains("write 5"), "{text}");
    assert!(
        under.contains("n3 · epoch 1 · zxid 0x100000002")
            && under.contains("during partition isolate-leader (leader is n3)"),
        "{text}"
    );
    // The kill began after every operation ended: it explains none of them.
    assert!(!text.contains("kill n2"), "{text}");
    assert!(
        text.contains(&format!("epoch 2 on n1: [{delete}]")),
        "{text}"
    );
    if let Some(create) = cx.ops.iter().position(|o| o.f == "create") {
        let (_, under) = op_lines(&text, create);
        assert!(under.contains("no fault active"), "{text}");
    }

    // The page: a shaded band labelled with the fault, and each operation's node and epoch.
    let html = checker::counterexample_html(cx);
    let band = html
        .find(r#"<g class="fault" data-fault="partition isolate-leader">"#)
        .expect("a fault band");
    let band = &html[band..html[band..].find("</g>").unwrap() + band];
    assert!(
        band.contains("<rect") && band.contains("fill-opacity"),
        "{band}"
    );
    assert!(
        band.contains(">partition isolate-leader (leader is n3)</text>"),
        "{band}"
    );
    assert!(!html.contains(r#"data-fault="kill n2""#));
    assert!(html.contains("n1 · epoch 2 · zxid 0x200000001"));
    assert!(html.contains("n3 · epoch 1 · zxid 0x100000002"));
    assert!(html.contains("<td>0x100000002</td>"));
}

#[test]
fn without_a_nemesis_log_the_counterexample_still_shows_nodes_and_no_faults() {
    let dir = tempfile::tempdir().unwrap();
    write_run(dir.path(), None);
    let v = check_run_dir(dir.path(), &opts()).unwrap();
    let cx = v.counterexample().expect("a counterexample");
    assert!(cx.faults.is_empty());
    assert!(v.warnings.is_empty(), "{:?}", v.warnings);
    let text = cx.timeline();
    assert!(
        text.contains("n3 · epoch 1 · zxid 0x100000002 · no fault active"),
        "{text}"
    );
    assert!(!checker::counterexample_html(cx).contains(r#"class="fault""#));
}

#[test]
fn results_written_before_faults_existed_still_parse() {
    let dir = tempfile::tempdir().unwrap();
    write_run(dir.path(), Some(NEMESIS_LOG));
    let v = check_run_dir(dir.path(), &opts()).unwrap();
    let mut json = serde_json::to_value(&v).unwrap();
    let cx = json["checkers"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|c| c.get("counterexample").is_some())
        .unwrap();
    assert!(cx["counterexample"]["faults"].is_array());
    cx["counterexample"]
        .as_object_mut()
        .unwrap()
        .remove("faults");
    let old: checker::RunVerdict = serde_json::from_value(json).unwrap();
    assert!(old.counterexample().unwrap().faults.is_empty());
}
