//! The coordination checkers on histories with few zxids, as the `zookeeper-client` crate records
//! them against ZooKeeper 3.8: reads and deletes carry no zxid, creates their czxid and setData
//! its mzxid; a watch carries at most the Stat its read returned; events and expiries no zxid.
//! A correct system's history stays valid; a planted defect is invalid; what cannot be judged is
//! counted, and a history where nothing could be is unknown.

use checker::{CheckOptions, CheckerResult, Event, EventType, Verdict, check_history};
use serde_json::{Value, json};

/// Builds a history event by event; positions double as index, and time is 1 ms a step.
#[derive(Default, Clone)]
struct H(Vec<Event>);

impl H {
    /// One event of process `p` in `session`.
    fn push(
        &mut self,
        (p, session): (u64, Option<u64>),
        kind: EventType,
        f: &str,
        value: Value,
        key: Option<&str>,
        zxid: Option<u64>,
    ) {
        let i = self.0.len() as u64;
        let mut e = Event::new(i, i * 1_000_000, p, kind, f, value);
        e.key = key.map(str::to_string);
        e.session = session;
        e.zxid = zxid;
        self.0.push(e);
    }

    /// An operation invoked and completed `ok` at once.
    fn op(
        &mut self,
        (p, s): (u64, u64),
        f: &str,
        key: &str,
        value: Value,
        result: Value,
        z: Option<u64>,
    ) {
        self.push((p, Some(s)), EventType::Invoke, f, value, Some(key), None);
        self.push((p, Some(s)), EventType::Ok, f, result, Some(key), z);
    }

    /// Session `s` closed by its client, acknowledged (no zxid, as ZooKeeper's close).
    fn close_session(&mut self, p: u64, s: u64) {
        for kind in [EventType::Invoke, EventType::Ok] {
            self.push((p, Some(s)), kind, "close_session", Value::Null, None, None);
        }
    }

    fn invoke(&mut self, p: u64, s: u64, f: &str, key: &str, value: Value) {
        self.push((p, Some(s)), EventType::Invoke, f, value, Some(key), None);
    }

    fn ok(&mut self, p: u64, s: u64, f: &str, key: &str, result: Value, z: Option<u64>) {
        self.push((p, Some(s)), EventType::Ok, f, result, Some(key), z);
    }

    /// A watch set by `exists` (with the Stat of an existing node, or none) or `getChildren`
    /// (with the parent's Stat).
    fn watch(&mut self, p: u64, s: u64, kind: &str, key: &str, stat: Option<(u64, u64)>) {
        let mut result = json!({"kind": kind, "result": {"exists": stat.is_some()}});
        if let Some((mzxid, pzxid)) = stat {
            result["stat"] = json!({"mzxid": mzxid, "pzxid": pzxid});
        }
        self.op((p, s), "watch", key, json!({"kind": kind}), result, None);
    }

    /// A watch event as ZooKeeper 3.8 sends it: zxid -1, recorded as null.
    fn event(&mut self, p: u64, s: u64, path: &str, ty: &str) {
        self.push(
            (p, Some(s)),
            EventType::Ok,
            "event",
            json!({"path": path, "type": ty, "zxid": null}),
            Some(path),
            None,
        );
    }

    /// The run goes on for a minute (a write to another key that never returns): long enough
    /// for any watch to fire.
    fn much_later(&mut self) {
        let i = self.0.len() as u64;
        let mut e = Event::new(
            i,
            i * 1_000_000 + 60_000_000_000,
            99,
            EventType::Invoke,
            "write",
            json!(0),
        );
        e.key = Some("/elsewhere".into());
        self.0.push(e);
    }
}

fn check(h: &H, workload: &str, checker: &str) -> CheckerResult {
    let opts = CheckOptions {
        threads: Some(1),
        ..CheckOptions::default()
    };
    let v = check_history(&h.0, Some(workload), &opts).expect("checkable");
    v.checkers
        .into_iter()
        .find(|c| c.name == checker)
        .unwrap_or_else(|| panic!("no {checker} checker"))
}

fn assert_verdict(r: &CheckerResult, verdict: Verdict, needle: &str) {
    assert_eq!(r.verdict, verdict, "{}: {}", r.name, r.summary);
    assert!(r.summary.contains(needle), "{}: {}", r.name, r.summary);
}

// ---------------------------------------------------------------------------------------------
// watches

/// Session 3 (process 0) watches `/w` and `/p`'s children; session 4 (process 1) changes them.
/// Every event is ZooKeeper's: no zxid.
fn zk_watches() -> H {
    let mut h = H::default();
    h.op((1, 4), "create", "/p", json!(0), json!(0), Some(4));
    h.op((1, 4), "create", "/w", json!(0), json!(0), Some(5));
    h.watch(0, 3, "exists", "/w", Some((5, 5)));
    h.op((1, 4), "write", "/w", json!(1), json!(1), Some(6));
    h.event(0, 3, "/w", "NodeDataChanged");
    // Set twice before the next change: the crate hands the one notification to both watchers.
    h.watch(0, 3, "exists", "/w", Some((6, 6)));
    h.watch(0, 3, "exists", "/w", Some((6, 6)));
    h.watch(0, 3, "children", "/p", Some((4, 4)));
    h.op((1, 4), "delete", "/w", Value::Null, Value::Null, None);
    h.event(0, 3, "/w", "NodeDeleted");
    h.event(0, 3, "/w", "NodeDeleted");
    h.watch(0, 3, "exists", "/w", None);
    h.op((1, 4), "create", "/p/c", json!(0), json!(0), Some(8));
    h.event(0, 3, "/p", "NodeChildrenChanged");
    h.op((1, 4), "create", "/w", json!(2), json!(2), Some(9));
    h.event(0, 3, "/w", "NodeCreated");
    h
}

#[test]
fn a_zookeeper_watch_history_of_a_correct_server_is_valid_and_says_how_it_was_checked() {
    let mut h = zk_watches();
    h.much_later();
    let r = check(&h, "watch", "watches");
    assert_verdict(&r, Verdict::Valid, "5 events (0 with a zxid, 5 without");
    assert!(
        r.summary
            .contains("4 anchored by the Stat read, 1 by real time only"),
        "{}",
        r.summary
    );
    // The run as a whole: monotonic reads over the writes' zxids, stats, all valid.
    let opts = CheckOptions {
        threads: Some(1),
        ..CheckOptions::default()
    };
    let v = check_history(&h.0, Some("watch"), &opts).unwrap();
    let lines: Vec<String> = v.checkers.iter().map(|c| c.line()).collect();
    assert_eq!(v.verdict, Verdict::Valid, "{lines:?}");
    let mono = check(&h, "watch", "monotonic-reads");
    assert!(
        mono.summary.contains("without one, not checked"),
        "{}",
        mono.summary
    );
}

#[test]
fn a_watch_that_fires_twice_without_zxids_is_invalid() {
    let mut h = zk_watches();
    h.event(0, 3, "/w", "NodeCreated");
    let r = check(&h, "watch", "watches");
    assert_verdict(&r, Verdict::Invalid, "no watch pending: it fired twice");
}

#[test]
fn an_event_for_a_change_nobody_made_is_invalid_without_zxids() {
    let mut h = zk_watches();
    h.watch(0, 3, "exists", "/q", None);
    h.event(0, 3, "/q", "NodeCreated");
    let r = check(&h, "watch", "watches");
    assert_verdict(&r, Verdict::Invalid, "a change that did not happen");
    // A type no operation made on a path that did change.
    let mut h = zk_watches();
    h.watch(0, 3, "children", "/p", Some((8, 8)));
    h.event(0, 3, "/p", "NodeDeleted");
    let r = check(&h, "watch", "watches");
    assert_verdict(&r, Verdict::Invalid, "did not happen");
}

#[test]
fn an_event_before_its_change_or_its_watch_is_invalid_without_zxids() {
    // The event arrives before the write was even invoked (/w was created before the history,
    // as the harness's setup does).
    let mut h = H::default();
    h.watch(0, 3, "exists", "/w", Some((5, 5)));
    h.event(0, 3, "/w", "NodeDataChanged");
    h.op((1, 4), "write", "/w", json!(1), json!(1), Some(6));
    let r = check(&h, "watch", "watches");
    assert_verdict(&r, Verdict::Invalid, "before the change was even requested");
    // The event arrives before the watch was asked for.
    let mut h = H::default();
    h.op((1, 4), "create", "/w", json!(0), json!(0), Some(5));
    h.op((1, 4), "write", "/w", json!(1), json!(1), Some(6));
    h.event(0, 3, "/w", "NodeDataChanged");
    h.watch(0, 3, "exists", "/w", Some((6, 6)));
    let r = check(&h, "watch", "watches");
    assert_verdict(&r, Verdict::Invalid, "before its watch was set");
}

#[test]
fn an_old_change_firing_a_watch_set_after_it_is_invalid_by_the_stat() {
    // The write at zxid 6 fired the first watch; the second was set when /w's Stat said 6, and
    // nothing changed /w after: its event is that change's notification sent again.
    let mut h = H::default();
    h.op((1, 4), "create", "/w", json!(0), json!(0), Some(5));
    h.watch(0, 3, "exists", "/w", Some((5, 5)));
    h.op((1, 4), "write", "/w", json!(1), json!(1), Some(6));
    h.event(0, 3, "/w", "NodeDataChanged");
    h.watch(0, 3, "exists", "/w", Some((6, 6)));
    let valid = h.clone();
    h.event(0, 3, "/w", "NodeDataChanged");
    let r = check(&h, "watch", "watches");
    assert_verdict(&r, Verdict::Invalid, "an old change fired it");
    // A write whose zxid is above the Stat makes it the second watch's own event.
    let mut h = valid.clone();
    h.op((1, 4), "write", "/w", json!(2), json!(2), Some(7));
    h.event(0, 3, "/w", "NodeDataChanged");
    assert_verdict(&check(&h, "watch", "watches"), Verdict::Valid, "2 events");
    // A delete, whose zxid is unknown, still running when the watch was asked for may have
    // come after the Stat: valid.
    let mut h = valid;
    h.op((1, 4), "write", "/w", json!(2), json!(2), Some(7));
    h.event(0, 3, "/w", "NodeDataChanged");
    h.invoke(2, 5, "delete", "/w", Value::Null);
    h.watch(0, 3, "exists", "/w", Some((7, 7)));
    h.ok(2, 5, "delete", "/w", Value::Null, None);
    h.event(0, 3, "/w", "NodeDeleted");
    assert_verdict(
        &check(&h, "watch", "watches"),
        Verdict::Valid,
        "3 watches set",
    );
}

#[test]
fn a_watch_that_never_fires_is_missed_without_zxids_where_the_change_was_surely_after_it() {
    // A write invoked after the watch's read completed.
    let mut h = H::default();
    h.op((1, 4), "create", "/w", json!(0), json!(0), Some(5));
    h.watch(0, 3, "exists", "/w", None);
    h.op((1, 4), "write", "/w", json!(1), json!(1), Some(6));
    h.much_later();
    assert_verdict(
        &check(&h, "watch", "watches"),
        Verdict::Invalid,
        "never fired",
    );
    // A write concurrent with the watch's read: after it only by the Stat the read returned.
    let concurrent = |stat: Option<(u64, u64)>| {
        let mut h = H::default();
        h.op((1, 4), "create", "/w", json!(0), json!(0), Some(5));
        h.invoke(1, 4, "write", "/w", json!(1));
        h.watch(0, 3, "exists", "/w", stat);
        h.ok(1, 4, "write", "/w", json!(1), Some(6));
        h.much_later();
        h
    };
    assert_verdict(
        &check(&concurrent(Some((5, 5))), "watch", "watches"),
        Verdict::Invalid,
        "never fired",
    );
    // Had the read seen the write (Stat 6), or returned no Stat, nothing says it had to fire.
    assert_verdict(
        &check(&concurrent(Some((6, 6))), "watch", "watches"),
        Verdict::Valid,
        "1 watches set",
    );
    assert_verdict(
        &check(&concurrent(None), "watch", "watches"),
        Verdict::Valid,
        "1 by real time only",
    );
    // A session whose connection broke may have lost its watches.
    let mut h = H::default();
    h.op((1, 4), "create", "/w", json!(0), json!(0), Some(5));
    h.watch(0, 3, "exists", "/w", None);
    h.push(
        (0, Some(3)),
        EventType::Invoke,
        "write",
        json!(3),
        Some("/x"),
        None,
    );
    h.push(
        (0, Some(3)),
        EventType::Info,
        "write",
        json!(3),
        Some("/x"),
        None,
    );
    h.op((1, 4), "write", "/w", json!(1), json!(1), Some(6));
    h.much_later();
    assert_verdict(
        &check(&h, "watch", "watches"),
        Verdict::Valid,
        "1 watches set",
    );
}

#[test]
fn a_children_watch_is_anchored_on_the_parents_pzxid() {
    let history = |pzxid: u64| {
        let mut h = H::default();
        h.op((1, 4), "create", "/p", json!(0), json!(0), Some(4));
        h.invoke(1, 4, "create", "/p/c", json!(0));
        h.watch(0, 3, "children", "/p", Some((4, pzxid)));
        h.ok(1, 4, "create", "/p/c", json!(0), Some(8));
        h.much_later();
        h
    };
    // The parent's pzxid 4: the child created at 8 came after the read, and never fired it.
    assert_verdict(
        &check(&history(4), "watch", "watches"),
        Verdict::Invalid,
        "never fired",
    );
    // pzxid 8: the read saw the child; the watch waits for the next change.
    assert_verdict(
        &check(&history(8), "watch", "watches"),
        Verdict::Valid,
        "1 anchored",
    );
}

#[test]
fn zxid_ful_watch_histories_keep_their_rules_next_to_zxid_less_ones() {
    // A session's events with zxids still must come in zxid order, in a history that also has
    // zxid-less events of another session.
    let mut h = zk_watches();
    h.op(
        (5, 7),
        "watch",
        "/w",
        json!({"kind": "exists"}),
        json!({"kind": "exists"}),
        Some(9),
    );
    h.op(
        (5, 7),
        "watch",
        "/p",
        json!({"kind": "exists"}),
        json!({"kind": "exists"}),
        Some(9),
    );
    h.op((1, 4), "write", "/w", json!(3), json!(3), Some(10));
    h.op((1, 4), "write", "/p", json!(3), json!(3), Some(11));
    let with = |h: &mut H, path: &str, z: u64| {
        h.push(
            (5, Some(7)),
            EventType::Ok,
            "event",
            json!({"path": path, "type": "NodeDataChanged", "zxid": z}),
            Some(path),
            None,
        );
    };
    let mut good = h.clone();
    with(&mut good, "/w", 10);
    with(&mut good, "/p", 11);
    let r = check(&good, "watch", "watches");
    assert_verdict(&r, Verdict::Valid, "(2 with a zxid, 5 without");
    let mut bad = h;
    with(&mut bad, "/p", 11);
    with(&mut bad, "/w", 10);
    assert_verdict(
        &check(&bad, "watch", "watches"),
        Verdict::Invalid,
        "after that of zxid 11",
    );
}

// ---------------------------------------------------------------------------------------------
// sessions

/// Session 7 (process 0) owns `/e/a` and closes; session 8 (process 1) reads. No read, close or
/// expiry carries a zxid; creates carry their czxid.
fn zk_sessions() -> H {
    let mut h = H::default();
    h.op(
        (0, 7),
        "create_ephemeral",
        "/e/a",
        json!("p0"),
        json!("p0"),
        Some(10),
    );
    h.op(
        (1, 8),
        "read",
        "/e/a",
        Value::Null,
        json!({"owner": 7}),
        None,
    );
    h.close_session(0, 7);
    // A lagging server's local read may still show the node: not judged.
    h.op(
        (1, 8),
        "read",
        "/e/a",
        Value::Null,
        json!({"owner": 7}),
        None,
    );
    // After the reader's own write, invoked after the close was acknowledged, its server has
    // applied the close.
    h.op(
        (1, 8),
        "create_ephemeral",
        "/e/b",
        json!("p1"),
        json!("p1"),
        Some(20),
    );
    h.op((1, 8), "read", "/e/a", Value::Null, Value::Null, None);
    h
}

#[test]
fn a_zookeeper_session_history_of_a_correct_server_is_valid_and_counts_what_it_judged() {
    let h = zk_sessions();
    let r = check(&h, "session", "sessions");
    assert_verdict(
        &r,
        Verdict::Valid,
        "0 judged by zxids, 1 by the reader's own session, 1 not judged",
    );
    let opts = CheckOptions {
        threads: Some(1),
        ..CheckOptions::default()
    };
    let v = check_history(&h.0, Some("session"), &opts).unwrap();
    let lines: Vec<String> = v.checkers.iter().map(|c| c.line()).collect();
    assert_eq!(v.verdict, Verdict::Valid, "{lines:?}");
}

#[test]
fn an_ephemeral_surviving_its_sessions_close_is_invalid_without_zxids() {
    let mut h = zk_sessions();
    h.op(
        (1, 8),
        "read",
        "/e/a",
        Value::Null,
        json!({"owner": 7}),
        None,
    );
    let r = check(&h, "session", "sessions");
    assert_verdict(
        &r,
        Verdict::Invalid,
        "after its own session 8 had seen the end take effect",
    );
    // Without an owner in the result, by the sessions that created the path.
    let mut h = zk_sessions();
    h.op((1, 8), "exists", "/e/a", Value::Null, json!(true), None);
    assert_verdict(
        &check(&h, "session", "sessions"),
        Verdict::Invalid,
        "still saw its ephemeral node",
    );
}

#[test]
fn an_expiry_without_a_zxid_is_not_an_end_and_one_with_a_zxid_is_judged_by_the_readers_zxids() {
    // Told it expired, without a zxid: a new leader may revive the session. Nothing ended.
    let told = |expiry_zxid: Option<u64>| {
        let mut h = H::default();
        h.op(
            (0, 7),
            "create_ephemeral",
            "/e/a",
            json!("p0"),
            json!("p0"),
            Some(10),
        );
        h.push(
            (0, Some(7)),
            EventType::Ok,
            "expired",
            json!({"state": "expired"}),
            None,
            expiry_zxid,
        );
        h.op(
            (1, 8),
            "create_ephemeral",
            "/e/b",
            json!("p1"),
            json!("p1"),
            Some(20),
        );
        h.op(
            (1, 8),
            "read",
            "/e/a",
            Value::Null,
            json!({"owner": 7}),
            None,
        );
        h
    };
    let r = check(&told(None), "session", "sessions");
    assert_verdict(
        &r,
        Verdict::Unknown,
        "were told they expired, without a zxid",
    );
    // keeper announces an expiry with its zxid (15): the reader's create at 20 is past it.
    let r = check(&told(Some(15)), "session", "sessions");
    assert_verdict(&r, Verdict::Invalid, "still saw its ephemeral node");
    // An expiry at 25, after everything the reader had seen: its read may lag.
    let r = check(&told(Some(25)), "session", "sessions");
    assert_verdict(&r, Verdict::Unknown, "could be judged (1 without");
}

#[test]
fn sessions_with_nothing_judgeable_are_unknown_not_valid() {
    let mut h = H::default();
    h.op(
        (0, 7),
        "create_ephemeral",
        "/e/a",
        json!("p0"),
        json!("p0"),
        Some(10),
    );
    h.close_session(0, 7);
    h.op(
        (1, 8),
        "read",
        "/e/a",
        Value::Null,
        json!({"owner": 7}),
        None,
    );
    h.op((1, 8), "read", "/e/a", Value::Null, Value::Null, None);
    let r = check(&h, "session", "sessions");
    assert_verdict(&r, Verdict::Unknown, "(2 without the zxids");
}

// ---------------------------------------------------------------------------------------------
// sequential and election

#[test]
fn sequential_numbers_follow_the_czxid_where_creates_carry_one() {
    let mut h = H::default();
    // Two concurrent creates: real time says nothing about their order, their zxids do.
    h.invoke(0, 1, "create", "/q", Value::Null);
    h.invoke(1, 2, "create", "/q", Value::Null);
    h.ok(0, 1, "create", "/q", json!(1), Some(10));
    h.ok(1, 2, "create", "/q", json!(2), Some(11));
    h.invoke(2, 3, "create", "/q", Value::Null);
    h.ok(2, 3, "create", "/q", json!(3), None);
    let r = check(&h, "sequential", "sequential");
    assert_verdict(
        &r,
        Verdict::Valid,
        "(2 also ordered by zxid, 1 by real time only)",
    );
    let mut h = H::default();
    h.invoke(0, 1, "create", "/q", Value::Null);
    h.invoke(1, 2, "create", "/q", Value::Null);
    h.ok(0, 1, "create", "/q", json!(2), Some(10));
    h.ok(1, 2, "create", "/q", json!(1), Some(11));
    let r = check(&h, "sequential", "sequential");
    assert_verdict(
        &r,
        Verdict::Invalid,
        "the create at zxid 10 got 2, the later one at zxid 11 got 1",
    );
    // Without zxids the same history is valid, and says so.
    for e in &mut h.0 {
        e.zxid = None;
    }
    let r = check(&h, "sequential", "sequential");
    assert_verdict(&r, Verdict::Valid, "real time only");
}

#[test]
fn fenced_writes_are_ordered_by_zxid_where_known_and_by_real_time_always() {
    let claim = |h: &mut H, p: u64, token: u64| {
        h.op(
            (p, p + 1),
            "claim",
            "/e",
            Value::Null,
            json!({"token": token}),
            None,
        );
    };
    let mut base = H::default();
    claim(&mut base, 0, 1);
    claim(&mut base, 1, 2);
    // Concurrent fenced writes with zxids, the newer token committed first; another write
    // without a zxid. Only the zxids show the older token accepted after the newer one.
    let mut h = base.clone();
    h.invoke(0, 1, "fenced_write", "/e", json!({"token": 1, "write": 1}));
    h.invoke(1, 2, "fenced_write", "/e", json!({"token": 2, "write": 2}));
    h.ok(
        1,
        2,
        "fenced_write",
        "/e",
        json!({"token": 2, "write": 2}),
        Some(20),
    );
    h.ok(
        0,
        1,
        "fenced_write",
        "/e",
        json!({"token": 1, "write": 1}),
        Some(21),
    );
    let mut bad = h.clone();
    bad.op(
        (1, 2),
        "fenced_write",
        "/e",
        json!({"token": 2, "write": 3}),
        json!({"token": 2, "write": 3}),
        None,
    );
    let r = check(&bad, "election", "election-safety");
    assert_verdict(
        &r,
        Verdict::Invalid,
        "token 1 was accepted after one with the newer token 2",
    );
    // The same writes without zxids: concurrent, so nothing to say; valid, and says how.
    for e in &mut bad.0 {
        e.zxid = None;
    }
    let r = check(&bad, "election", "election-safety");
    assert_verdict(&r, Verdict::Valid, "(0 ordered by zxid, all by real time)");
    // Real time still catches an old token after a newer one, the later write without a zxid.
    let mut h = base;
    h.op(
        (1, 2),
        "fenced_write",
        "/e",
        json!({"token": 2, "write": 2}),
        json!({"token": 2, "write": 2}),
        Some(20),
    );
    h.op(
        (0, 1),
        "fenced_write",
        "/e",
        json!({"token": 1, "write": 1}),
        json!({"token": 1, "write": 1}),
        None,
    );
    let r = check(&h, "election", "election-safety");
    assert_verdict(
        &r,
        Verdict::Invalid,
        "accepted after one with the newer token",
    );
}

#[test]
fn a_session_expired_within_half_its_timeout_of_its_own_write_was_expired_early() {
    // Session 7 creates /e/a (invoked at 0 ms), then its expiry is announced with a zxid at
    // `at_ms`; its timeout is 10 ms, so it certainly lives 5 ms after the create was invoked.
    let expired_at = |at_ms: u64| {
        let mut h = H::default();
        h.op(
            (0, 7),
            "create_ephemeral",
            "/e/a",
            json!("p0"),
            json!("p0"),
            Some(10),
        );
        while (h.0.len() as u64) < at_ms {
            h.op((1, 8), "read", "/e/b", Value::Null, Value::Null, Some(10));
        }
        h.push(
            (0, Some(7)),
            EventType::Ok,
            "expired",
            json!({"state": "expired", "timeout_ms": 10}),
            None,
            Some(11),
        );
        h
    };
    let r = check(&expired_at(3), "session", "sessions");
    assert_verdict(&r, Verdict::Invalid, "a live session was expired");
    let r = check(&expired_at(12), "session", "sessions");
    assert_ne!(r.verdict, Verdict::Invalid, "{}", r.summary);
}
