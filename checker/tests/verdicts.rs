//! Planted holes: histories that show nothing, and clusters that never came back. Each must get
//! the verdict it deserves (`unknown` for no evidence, `invalid` for a liveness failure), never a
//! `valid` that nobody earned.

use checker::liveness::{NodeEnd, RECOVERY_FILE, Recovery};
use checker::reader::StatusSample;
use checker::{
    CheckOptions, CheckerResult, Event, EventType, ModelKind, RunVerdict, Verdict, check_history,
    check_run_dir, check_status, invariants,
};
use serde_json::{Value, json};

fn opts(model: Option<ModelKind>) -> CheckOptions {
    CheckOptions {
        model,
        threads: Some(1),
        ..CheckOptions::default()
    }
}

/// `n` operations of `f` on one key, each completed with `kind`, with sessions and zxids as our
/// workloads record them.
fn all_completed_as(f: &str, kind: EventType, n: u64) -> Vec<Event> {
    let mut events = Vec::new();
    for p in 0..n {
        let i = events.len() as u64;
        let mut inv = Event::new(i, i * 1000, p, EventType::Invoke, f, json!(p));
        inv.key = Some("/r".into());
        inv.session = Some(1 + p);
        events.push(inv);
        let mut done = Event::new(i + 1, (i + 1) * 1000, p, kind, f, json!(p));
        done.key = Some("/r".into());
        done.session = Some(1 + p);
        done.zxid = Some(10 + p);
        events.push(done);
    }
    events
}

/// Appends `more` after `h`, renumbered, by processes of their own.
fn append(h: &mut Vec<Event>, more: Vec<Event>) {
    let base = h.len() as u64;
    for (i, e) in more.into_iter().enumerate() {
        h.push(Event {
            index: base + i as u64,
            time: (base + i as u64) * 1000,
            process: e.process + 10,
            ..e
        });
    }
}

fn named<'a>(v: &'a RunVerdict, name: &str) -> &'a CheckerResult {
    v.checkers
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no {name} checker in {:?}", v.checkers))
}

#[test]
fn an_empty_history_is_unknown_with_or_without_a_workload() {
    for workload in [None, Some("register"), Some("sequential"), Some("watch")] {
        let v = check_history(&[], workload, &opts(Some(ModelKind::Register))).unwrap();
        assert_eq!(v.verdict, Verdict::Unknown, "{workload:?}: {v:?}");
    }
}

#[test]
fn a_history_where_every_operation_failed_is_not_valid() {
    let h = all_completed_as("write", EventType::Fail, 5);
    let v = check_history(&h, None, &opts(Some(ModelKind::Register))).unwrap();
    assert_eq!(v.verdict, Verdict::Unknown, "{v:?}");
    let v = check_history(&h, Some("register"), &opts(None)).unwrap();
    assert_eq!(v.verdict, Verdict::Unknown, "{v:?}");
    assert_eq!(named(&v, "linearizable").verdict, Verdict::Unknown);
    let stats = named(&v, "stats");
    assert_eq!(stats.verdict, Verdict::Unknown);
    assert!(
        stats.summary.contains("no write ever succeeded"),
        "{stats:?}"
    );
}

#[test]
fn a_history_where_every_operation_timed_out_is_not_valid() {
    let h = all_completed_as("write", EventType::Info, 5);
    let v = check_history(&h, None, &opts(Some(ModelKind::Register))).unwrap();
    assert_eq!(v.verdict, Verdict::Unknown, "{v:?}");
    let v = check_history(&h, Some("register"), &opts(None)).unwrap();
    assert_eq!(v.verdict, Verdict::Unknown, "{v:?}");
}

#[test]
fn one_kind_that_never_succeeded_makes_the_run_unknown() {
    let mut h = all_completed_as("write", EventType::Ok, 3);
    append(&mut h, all_completed_as("cas", EventType::Fail, 2));
    let v = check_history(&h, Some("register"), &opts(Some(ModelKind::Register))).unwrap();
    let stats = named(&v, "stats");
    assert_eq!(stats.verdict, Verdict::Unknown, "{stats:?}");
    assert!(stats.summary.contains("no cas ever succeeded"), "{stats:?}");
    assert_eq!(v.verdict, Verdict::Unknown);
}

#[test]
fn a_checker_with_nothing_to_check_is_unknown() {
    // Writes only: nothing for the sequential, election, sessions or watch checkers.
    let h = all_completed_as("write", EventType::Ok, 3);
    for (workload, checker) in [
        ("sequential", "sequential"),
        ("election", "election-safety"),
        ("session", "sessions"),
        ("watch", "watches"),
    ] {
        let v = check_history(&h, Some(workload), &opts(None)).unwrap();
        let c = named(&v, checker);
        assert_eq!(c.verdict, Verdict::Unknown, "{workload}: {c:?}");
        assert!(c.summary.starts_with("nothing to check"), "{c:?}");
        assert_eq!(v.verdict, Verdict::Unknown, "{workload}");
    }
}

fn sample(time_ms: u64, node: &str, role: &str, epoch: u64) -> StatusSample {
    StatusSample {
        time: time_ms * 1_000_000,
        node: node.into(),
        status: Some(json!({"role": role, "epoch": epoch, "serving": true})),
        error: None,
        digest: None,
    }
}

#[test]
fn single_leader_needs_a_leader_to_have_been_seen() {
    assert_eq!(check_status(&[]).verdict, Verdict::Unknown);
    let followers: Vec<StatusSample> = (0..10)
        .map(|i| sample(i * 250, "n1", "looking", 1))
        .collect();
    assert_eq!(check_status(&followers).verdict, Verdict::Unknown);
}

#[test]
fn an_old_leader_that_keeps_leading_after_a_new_epoch_is_invalid() {
    // The split-brain run: n3 leads epoch 1 throughout; n2 is elected in epoch 2 at 5 s and
    // both are still seen leading 30 s later.
    let mut samples = Vec::new();
    for i in 0..160u64 {
        let t = i * 250;
        samples.push(sample(t, "n3", "leading", 1));
        if t >= 5_000 {
            samples.push(sample(t, "n2", "leading", 2));
        }
    }
    let c = check_status(&samples);
    assert_eq!(c.verdict, Verdict::Invalid, "{c:?}");
    assert!(
        c.summary.contains("n3 kept leading epoch 1"),
        "{}",
        c.summary
    );
    assert!(
        c.summary.contains("n2 was leading epoch 2"),
        "{}",
        c.summary
    );
    assert_eq!(c.details["old_leader"], "n3");
}

#[test]
fn an_old_leader_that_steps_down_in_time_is_valid() {
    // n1 leads epoch 1, is paused (silent) while n2 is elected in epoch 2, then answers once more
    // as leader after it resumes and steps down at its next tick.
    let mut samples = Vec::new();
    for i in 0..20u64 {
        samples.push(sample(i * 250, "n1", "leading", 1));
    }
    for i in 24..120u64 {
        samples.push(sample(i * 250, "n2", "leading", 2));
    }
    samples.push(sample(20_000, "n1", "leading", 1));
    samples.push(sample(20_250, "n1", "leading", 1));
    for i in 82..120u64 {
        samples.push(sample(i * 250, "n1", "following", 2));
    }
    let c = check_status(&samples);
    assert_eq!(c.verdict, Verdict::Valid, "{c:?}");
}

fn silent(time_ms: u64, node: &str) -> StatusSample {
    StatusSample {
        time: time_ms * 1_000_000,
        node: node.into(),
        status: None,
        error: Some("timeout".into()),
        digest: None,
    }
}

/// n1 leads epoch 1 and is seen leading once after n2 was established in epoch 2 (at 5 s), then
/// is silent (paused) for 4 s, then seen leading for `after_resume_ms` more.
fn paused_across_the_new_reign(after_resume_ms: u64) -> Vec<StatusSample> {
    let mut samples = Vec::new();
    for t in (0..=5_250).step_by(250) {
        samples.push(sample(t, "n1", "leading", 1));
    }
    for t in (5_000..40_000).step_by(250) {
        samples.push(sample(t, "n2", "leading", 2));
    }
    for t in (5_500..9_500).step_by(250) {
        samples.push(silent(t, "n1"));
    }
    for t in (9_500..=9_500 + after_resume_ms).step_by(250) {
        samples.push(sample(t, "n1", "leading", 1));
    }
    for t in (9_750 + after_resume_ms..40_000).step_by(250) {
        samples.push(sample(t, "n1", "following", 2));
    }
    samples
}

#[test]
fn an_old_leader_paused_across_the_new_reign_counts_only_its_running_time() {
    // `schism sim --seed 576`: still leading in the moment after it resumes is not "kept
    // leading" for the 4 s it could not run.
    let c = check_status(&paused_across_the_new_reign(0));
    assert_eq!(c.verdict, Verdict::Valid, "{c:?}");
    // But once resumed it must step down within the bound like any other old leader.
    let c = check_status(&paused_across_the_new_reign(5_000));
    assert_eq!(c.verdict, Verdict::Invalid, "{c:?}");
    assert!(
        c.summary.contains("n1 kept leading epoch 1"),
        "{}",
        c.summary
    );
}

#[test]
fn convergence_without_two_replicas_at_one_zxid_is_unknown() {
    let samples: Vec<StatusSample> = ["n1", "n2", "n3"]
        .iter()
        .enumerate()
        .map(|(i, n)| StatusSample {
            time: i as u64,
            node: n.to_string(),
            status: None,
            error: None,
            digest: Some(json!({"zxid": 10 + i as u64, "digest": 5, "znodes": 1})),
        })
        .collect();
    assert_eq!(
        invariants::convergence(&samples).verdict,
        Verdict::Unknown,
        "nodes that never met at one zxid were never compared"
    );
}

fn write_run(dir: &std::path::Path, history: &[Event], recovery: Option<&Recovery>) {
    std::fs::write(dir.join("test.json"), r#"{"workload": "register"}"#).unwrap();
    let lines: String = history
        .iter()
        .map(|e| serde_json::to_string(e).unwrap() + "\n")
        .collect();
    std::fs::write(dir.join("history.jsonl"), lines).unwrap();
    let status: String = (0..8u64)
        .flat_map(|i| {
            ["n1", "n2", "n3"].map(|n| {
                let mut s = sample(
                    i * 250,
                    n,
                    if n == "n1" { "leading" } else { "following" },
                    1,
                );
                s.digest = Some(json!({"zxid": 20, "digest": 9, "znodes": 2}));
                serde_json::to_string(&s).unwrap() + "\n"
            })
        })
        .collect();
    std::fs::write(dir.join("status.jsonl"), status).unwrap();
    if let Some(r) = recovery {
        std::fs::write(dir.join(RECOVERY_FILE), serde_json::to_string(r).unwrap()).unwrap();
    }
}

#[test]
fn a_cluster_that_never_recovers_fails_the_run() {
    let history = all_completed_as("write", EventType::Ok, 3);
    let recovered = Recovery {
        timeout_ms: 30_000,
        healed_at: 5,
        leader_ms: Some(300),
        write_ms: Some(310),
        read_ms: Some(320),
        converged_ms: Some(800),
        nodes: ["n1", "n2", "n3"]
            .map(|n| NodeEnd {
                node: n.into(),
                zxid: Some(20),
                digest: Some(9),
                error: None,
            })
            .to_vec(),
        errors: Vec::new(),
    };
    let good = tempfile::tempdir().unwrap();
    write_run(good.path(), &history, Some(&recovered));
    let v = check_run_dir(good.path(), &opts(Some(ModelKind::Register))).unwrap();
    assert_eq!(named(&v, "recovery").verdict, Verdict::Valid);
    assert_eq!(v.verdict, Verdict::Valid, "{v:?}");

    // Two of three nodes never came back after the heal: no quorum, no leader.
    let down = Recovery {
        leader_ms: None,
        write_ms: None,
        read_ms: None,
        converged_ms: None,
        nodes: vec![
            recovered.nodes[0].clone(),
            NodeEnd {
                node: "n2".into(),
                error: Some("connection refused".into()),
                ..NodeEnd::default()
            },
            NodeEnd {
                node: "n3".into(),
                error: Some("connection refused".into()),
                ..NodeEnd::default()
            },
        ],
        errors: vec!["no leader: n1 is looking".into()],
        ..recovered.clone()
    };
    let bad = tempfile::tempdir().unwrap();
    write_run(bad.path(), &history, Some(&down));
    let v = check_run_dir(bad.path(), &opts(Some(ModelKind::Register))).unwrap();
    assert_eq!(named(&v, "recovery").verdict, Verdict::Invalid);
    assert_eq!(
        v.verdict,
        Verdict::Invalid,
        "a server that stays down fails"
    );
    assert_eq!(v.verdict.exit_code(), 1);
}

#[test]
fn no_checkers_fold_to_unknown() {
    assert_eq!(Verdict::fold([]), Verdict::Unknown);
    let v = RunVerdict::from_checkers(None, 10, Vec::new());
    assert_eq!(v.verdict, Verdict::Unknown);
    let unknown_only = CheckerResult::new("x", Verdict::Unknown, String::new(), Value::Null);
    let v = RunVerdict::from_checkers(None, 10, vec![unknown_only]);
    assert_eq!(v.verdict, Verdict::Unknown);
}

#[test]
fn a_watch_clients_recovery_closes_need_not_succeed() {
    // A troubled watch client closes its session to start afresh; after a pause that session
    // has expired, so every such close may fail in a correct run.
    let mut h = all_completed_as("set_data", EventType::Ok, 3);
    append(
        &mut h,
        all_completed_as("close_session", EventType::Fail, 2),
    );
    let v = check_history(&h, Some("watch"), &opts(None)).unwrap();
    assert_eq!(named(&v, "stats").verdict, Verdict::Valid, "{v:?}");
    // In the session workload, closing is what is being tested: it must succeed once.
    let v = check_history(&h, Some("session"), &opts(None)).unwrap();
    assert_eq!(named(&v, "stats").verdict, Verdict::Unknown, "{v:?}");
}

/// A register history whose clients also set watches (`schism sim`'s) gets the watches checker
/// beside the register's, and the `watch` operations do not trouble the znode model; without
/// watches the register's checkers are all it gets.
#[test]
fn a_register_history_with_watches_is_also_judged_by_the_watches_checker() {
    let mut h = all_completed_as("write", EventType::Ok, 2);
    let plain = check_history(&h, Some("register"), &opts(None)).unwrap();
    assert!(plain.checkers.iter().all(|c| c.name != "watches"));
    let i = h.len() as u64;
    let mut watch = Event::new(
        i,
        i * 1000,
        7,
        EventType::Invoke,
        "watch",
        json!({"kind": "exists"}),
    );
    watch.key = Some("/r".into());
    watch.session = Some(9);
    h.push(watch.clone());
    let mut set = Event::new(
        i + 1,
        (i + 1) * 1000,
        7,
        EventType::Ok,
        "watch",
        json!({"kind": "exists", "result": {"exists": true}}),
    );
    set.key = Some("/r".into());
    set.session = Some(9);
    set.zxid = Some(10);
    h.push(set);
    // One event for the watch (the write at zxid 11), and a second copy that answers no watch.
    for k in 0..2 {
        let j = h.len() as u64;
        let mut e = Event::new(
            j,
            j * 1000,
            7,
            EventType::Ok,
            "event",
            json!({"path": "/r", "type": "data_changed", "zxid": 11}),
        );
        e.key = Some("/r".into());
        e.session = Some(9);
        e.zxid = Some(11);
        h.push(e);
        let v = check_history(&h, Some("register"), &opts(None)).unwrap();
        let expected = if k == 0 {
            Verdict::Valid
        } else {
            Verdict::Invalid
        };
        assert_eq!(named(&v, "watches").verdict, expected, "{:?}", v.checkers);
        // The znode model skips the `watch` operations (it would refuse an unknown `f`).
        assert_eq!(
            named(&v, "linearizable").verdict,
            named(&plain, "linearizable").verdict
        );
    }
}
