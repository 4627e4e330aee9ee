//! keeperd's HTTP API over real HTTP against real keeperd processes: every call's success path
//! and every error path of issue 2, watches over SSE, ephemerals, and a 3-node smoke test.

mod support;

use serde_json::{Value, json};
use support::{Api, Node, ensemble_flags, eventually};

fn flags(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// A standalone node with a fast tick (sessions expire in a fraction of a second).
fn standalone(dir: &tempfile::TempDir, extra: &[&str]) -> Node {
    let mut all = vec!["--tick-ms", "50"];
    all.extend_from_slice(extra);
    Node::start(1, &dir.path().join("n1"), &flags(&all))
}

fn zxid(v: &Value) -> u64 {
    v["zxid"].as_u64().expect("a reply carries zxid")
}

#[tokio::test]
async fn a_standalone_node_reports_itself_leading() {
    let dir = tempfile::tempdir().unwrap();
    let node = standalone(&dir, &[]);
    let api = node.api();
    let status = eventually("role leading", || async {
        api.status().await.filter(|s| s["role"] == "leading")
    })
    .await;
    assert_eq!(status["id"], 1);
    assert_eq!(status["leader"], 1);
    assert_eq!(status["voters"], json!([1]));
    for key in ["epoch", "last_zxid", "committed_zxid", "applied_zxid"] {
        assert!(status[key].is_u64(), "status has {key}: {status}");
    }
    let digest = api.get("/v1/digest").await.ok();
    assert!(digest["digest"].is_u64() && digest["znodes"].is_u64());
}

#[tokio::test]
async fn crud_calls_and_their_definite_errors() {
    let dir = tempfile::tempdir().unwrap();
    let node = standalone(&dir, &[]);
    let api = node.api();
    let s = api.session(5_000).await;

    let created = api.create(s, "/a", "one", "persistent").await.ok();
    assert_eq!(created["path"], "/a");
    assert_eq!(created["stat"]["version"], 0);
    assert_eq!(created["stat"]["data_length"], 3);
    assert_eq!(created["stat"]["czxid"], created["zxid"]);
    api.create(s, "/a", "again", "persistent")
        .await
        .err("node_exists", 409);
    api.create(s, "/missing/child", "", "persistent")
        .await
        .err("no_node", 404);

    let data = api.get_data(s, "/a", false).await.ok();
    assert_eq!(data["data"], "one");
    let set = api.set_data(s, "/a", "two", 0).await.ok();
    assert_eq!(set["stat"]["version"], 1);
    assert!(zxid(&set) > zxid(&created));
    api.set_data(s, "/a", "stale", 0)
        .await
        .err("bad_version", 409);
    api.set_data(s, "/nope", "x", -1).await.err("no_node", 404);
    assert_eq!(api.get_data(s, "/a", false).await.ok()["data"], "two");

    let exists = api.exists(s, "/a", false).await.ok();
    assert_eq!(exists["stat"]["version"], 1);
    assert_eq!(
        api.exists(s, "/nope", false).await.ok()["stat"],
        Value::Null
    );
    api.get_data(s, "/nope", false).await.err("no_node", 404);
    api.children(s, "/nope", false).await.err("no_node", 404);

    api.create(s, "/a/b", "", "persistent").await.ok();
    let children = api.children(s, "/a", false).await.ok();
    assert_eq!(children["children"], json!(["b"]));
    assert_eq!(children["stat"]["num_children"], 1);
    api.delete_node(s, "/a", -1).await.err("not_empty", 409);
    api.delete_node(s, "/a/b", 7).await.err("bad_version", 409);
    api.delete_node(s, "/a/b", 0).await.ok();
    api.delete_node(s, "/a/b", -1).await.err("no_node", 404);
    let deleted = api.delete_node(s, "/a", -1).await.ok();
    let synced = api
        .post("/v1/sync", json!({ "session": s, "path": "/" }))
        .await
        .ok();
    assert!(zxid(&synced) >= zxid(&deleted));
    assert_eq!(api.exists(s, "/a", false).await.ok()["stat"], Value::Null);

    // The heartbeat body is optional.
    let hb = api
        .post_raw(&format!("/v1/sessions/{s}/heartbeat"), vec![])
        .await;
    hb.ok();
    api.post(
        &format!("/v1/sessions/{s}/heartbeat"),
        json!({ "last_zxid": 0 }),
    )
    .await
    .ok();
}

#[tokio::test]
async fn ephemerals_cannot_have_children() {
    let dir = tempfile::tempdir().unwrap();
    let node = standalone(&dir, &[]);
    let api = node.api();
    let s = api.session(5_000).await;
    let e = api.create(s, "/e", "", "ephemeral").await.ok();
    assert_eq!(e["stat"]["ephemeral_owner"], s);
    api.create(s, "/e/child", "", "persistent")
        .await
        .err("no_children_for_ephemerals", 400);
}

#[tokio::test]
async fn bad_requests_get_a_json_4xx() {
    let dir = tempfile::tempdir().unwrap();
    let node = standalone(&dir, &["--max-data-bytes", "1024"]);
    let api = node.api();
    let s = api.session(5_000).await;

    for path in [
        "a",
        "/a/",
        "/a//b",
        "/a/./b",
        "/a/../b",
        "",
        "/zookeeper",
        "/x\u{1}y",
    ] {
        api.create(s, path, "", "persistent")
            .await
            .err("bad_arguments", 400);
        if path != "/zookeeper" {
            api.get_data(s, path, false).await.err("bad_arguments", 400);
        }
    }
    // Data over --max-data-bytes, in a body under the body limit.
    let big = "x".repeat(2_000);
    api.create(s, "/big", &big, "persistent")
        .await
        .err("bad_arguments", 400);
    api.create(s, "/big", "", "persistent").await.ok();
    api.set_data(s, "/big", &big, -1)
        .await
        .err("bad_arguments", 400);
    // A body over the limit (2 * 1024 + 64 KiB).
    let huge = "x".repeat(200 * 1024);
    api.create(s, "/huge", &huge, "persistent")
        .await
        .err("bad_arguments", 413);

    let malformed = api.post_raw("/v1/create", b"{\"session\": ".to_vec()).await;
    malformed.err("bad_arguments", 400);
    let unknown = api
        .post(
            "/v1/create",
            json!({ "session": s, "path": "/u", "colour": "red" }),
        )
        .await
        .err("bad_arguments", 400);
    assert!(unknown["message"].as_str().unwrap().contains("colour"));
    let wrong_type = api
        .post("/v1/create", json!({ "session": s, "path": 5 }))
        .await
        .err("bad_arguments", 400);
    assert!(wrong_type["message"].as_str().unwrap().contains("line"));
    api.post("/v1/create", json!({ "session": s }))
        .await
        .err("bad_arguments", 400);
    api.post(
        "/v1/create",
        json!({ "session": s, "path": "/m", "mode": "sticky" }),
    )
    .await
    .err("bad_arguments", 400);
    api.post_raw("/v1/create", vec![])
        .await
        .err("bad_arguments", 400);
    api.post(
        "/v1/multi",
        json!({ "session": s, "ops": [{ "op": "create", "path": "/x", "extra": 1 }] }),
    )
    .await
    .err("bad_arguments", 400);

    api.get("/v1/nothing_here").await.err("bad_arguments", 404);
    api.post("/v2/create", json!({}))
        .await
        .err("bad_arguments", 404);
    api.get("/v1/create").await.err("bad_arguments", 405);
    api.post("/v1/sessions/abc/heartbeat", json!({}))
        .await
        .err("bad_arguments", 400);
    // The node is still fine.
    api.get_data(s, "/big", false).await.ok();
}

#[tokio::test]
async fn sequential_names_and_container_removal() {
    let dir = tempfile::tempdir().unwrap();
    let node = standalone(&dir, &[]);
    let api = node.api();
    let s = api.session(5_000).await;
    api.create(s, "/q", "", "persistent").await.ok();
    let mut names = Vec::new();
    for mode in [
        "persistent_sequential",
        "ephemeral_sequential",
        "persistent_sequential",
    ] {
        let created = api.create(s, "/q/item-", "", mode).await.ok();
        names.push(created["path"].as_str().unwrap().to_string());
    }
    assert_eq!(
        names,
        [
            "/q/item-0000000000",
            "/q/item-0000000001",
            "/q/item-0000000002"
        ]
    );
    // The counter counts creations, not live children.
    api.delete_node(s, "/q/item-0000000002", -1).await.ok();
    let next = api
        .create(s, "/q/item-", "", "persistent_sequential")
        .await
        .ok();
    assert_eq!(next["path"], "/q/item-0000000003");

    api.create(s, "/box", "", "container").await.ok();
    api.create(s, "/box/a", "", "persistent").await.ok();
    api.create(s, "/box/b", "", "persistent").await.ok();
    api.delete_node(s, "/box/a", -1).await.ok();
    assert!(api.exists(s, "/box", false).await.ok()["stat"].is_object());
    api.delete_node(s, "/box/b", -1).await.ok();
    assert_eq!(api.exists(s, "/box", false).await.ok()["stat"], Value::Null);
}

#[tokio::test]
async fn multi_is_all_or_nothing_with_per_op_results() {
    let dir = tempfile::tempdir().unwrap();
    let node = standalone(&dir, &[]);
    let api = node.api();
    let s = api.session(5_000).await;
    let ok = api
        .post(
            "/v1/multi",
            json!({ "session": s, "ops": [
                { "op": "create", "path": "/m", "data": "0" },
                { "op": "create", "path": "/m/seq-", "mode": "persistent_sequential" },
                { "op": "set_data", "path": "/m", "data": "1", "version": 0 },
                { "op": "check", "path": "/m", "version": 1 },
            ]}),
        )
        .await
        .ok();
    let results = ok["results"].as_array().unwrap();
    assert_eq!(results.len(), 4);
    assert_eq!(results[0]["op"], "create");
    assert_eq!(results[1]["path"], "/m/seq-0000000000");
    assert_eq!(results[2]["stat"]["version"], 1);
    assert_eq!(results[3]["op"], "check");

    let failed = api
        .post(
            "/v1/multi",
            json!({ "session": s, "ops": [
                { "op": "create", "path": "/m/new" },
                { "op": "set_data", "path": "/m", "data": "2", "version": 0 },
                { "op": "delete", "path": "/m/seq-0000000000" },
            ]}),
        )
        .await
        .err("bad_version", 409);
    let per_op: Vec<&str> = failed["results"]
        .as_array()
        .expect("a failed multi reports every op")
        .iter()
        .map(|r| r["error"].as_str().unwrap())
        .collect();
    assert_eq!(per_op, ["ok", "bad_version", "runtime_inconsistency"]);
    // Nothing of the failed multi took effect.
    assert_eq!(
        api.exists(s, "/m/new", false).await.ok()["stat"],
        Value::Null
    );
    assert_eq!(api.get_data(s, "/m", false).await.ok()["data"], "1");
    assert!(api.exists(s, "/m/seq-0000000000", false).await.ok()["stat"].is_object());
}

#[tokio::test]
async fn watches_arrive_over_sse_in_zxid_order_and_fire_once() {
    let dir = tempfile::tempdir().unwrap();
    let node = standalone(&dir, &[]);
    let api = node.api();
    let watcher = api.session(10_000).await;
    let writer = api.session(10_000).await;

    // Fired before any stream is attached: queued, then flushed when one attaches.
    api.exists(watcher, "/w", true).await.ok();
    let created = api.create(writer, "/w", "0", "persistent").await.ok();
    let mut events = api.events(watcher).await.expect("event stream");
    let (name, event) = events.next().await.expect("an event");
    assert_eq!(name, "watch");
    assert_eq!(event["type"], "created");
    assert_eq!(event["path"], "/w");
    assert_eq!(zxid(&event), zxid(&created));

    // Data, child and exists watches on one path, fired by separate writes.
    api.get_data(watcher, "/w", true).await.ok();
    api.children(watcher, "/w", true).await.ok();
    let set = api.set_data(writer, "/w", "1", -1).await.ok();
    // One-shot: this second change fires nothing (the data watch is spent).
    api.set_data(writer, "/w", "2", -1).await.ok();
    let child = api.create(writer, "/w/c", "", "persistent").await.ok();
    api.exists(watcher, "/w/c", true).await.ok();
    let gone = api.delete_node(writer, "/w/c", -1).await.ok();

    let mut got = Vec::new();
    for _ in 0..3 {
        let (name, event) = events.next().await.expect("an event");
        assert_eq!(name, "watch");
        got.push((
            event["type"].as_str().unwrap().to_string(),
            event["path"].as_str().unwrap().to_string(),
            zxid(&event),
        ));
    }
    assert_eq!(
        got,
        [
            ("data_changed".to_string(), "/w".to_string(), zxid(&set)),
            (
                "children_changed".to_string(),
                "/w".to_string(),
                zxid(&child)
            ),
            ("deleted".to_string(), "/w/c".to_string(), zxid(&gone)),
        ],
        "events in zxid order, and the spent data watch fired only once"
    );

    // Closing the session ends the stream with a `session` event.
    api.delete(&format!("/v1/sessions/{watcher}")).await.ok();
    let (name, event) = events.next().await.expect("the session event");
    assert_eq!(name, "session");
    assert_eq!(event["state"], "closed");
    assert!(events.next().await.is_none(), "the stream ends after it");
}

#[tokio::test]
async fn a_new_event_stream_replaces_the_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let node = standalone(&dir, &[]);
    let api = node.api();
    let s = api.session(10_000).await;
    let mut first = api.events(s).await.expect("first stream");
    let mut second = api.events(s).await.expect("second stream");
    assert!(first.next().await.is_none(), "the replaced stream ends");
    api.exists(s, "/r", true).await.ok();
    api.create(s, "/r", "", "persistent").await.ok();
    let (_, event) = second
        .next()
        .await
        .expect("the event reaches the new stream");
    assert_eq!(event["path"], "/r");
}

#[tokio::test]
async fn closing_a_session_removes_its_ephemerals_and_expires_it() {
    let dir = tempfile::tempdir().unwrap();
    let node = standalone(&dir, &[]);
    let api = node.api();
    let owner = api.session(10_000).await;
    let other = api.session(10_000).await;
    api.create(owner, "/eph", "", "ephemeral").await.ok();
    api.exists(other, "/eph", true).await.ok();
    let mut events = api.events(other).await.expect("event stream");

    api.delete(&format!("/v1/sessions/{owner}")).await.ok();
    let (_, event) = events.next().await.expect("deleted event");
    assert_eq!(
        (event["type"].as_str(), event["path"].as_str()),
        (Some("deleted"), Some("/eph"))
    );
    assert_eq!(
        api.exists(other, "/eph", false).await.ok()["stat"],
        Value::Null
    );

    api.create(owner, "/after", "", "persistent")
        .await
        .err("session_expired", 410);
    api.post(&format!("/v1/sessions/{owner}/heartbeat"), json!({}))
        .await
        .err("session_expired", 410);
    api.get_data(owner, "/", false)
        .await
        .err("session_expired", 410);
    api.post(
        "/v1/create",
        json!({ "session": 987_654_321u64, "path": "/x" }),
    )
    .await
    .err("session_expired", 410);
    let refused = api
        .events(987_654_321)
        .await
        .err()
        .expect("unknown session refused");
    refused.err("session_expired", 410);
}

#[tokio::test]
async fn a_session_that_stops_heartbeating_expires_and_loses_its_ephemerals() {
    let dir = tempfile::tempdir().unwrap();
    let node = standalone(&dir, &[]);
    let api = node.api();
    // Clamped to at least 2 ticks of 50 ms; it is never heartbeated.
    let doomed = api.session(200).await;
    let mut doomed_events = api.events(doomed).await.expect("event stream");
    let watcher = api.session(30_000).await;
    api.create(doomed, "/lease", "", "ephemeral").await.ok();

    // The watcher keeps its own session alive while it waits.
    eventually("the expired session's ephemeral to go", || async {
        api.post(&format!("/v1/sessions/{watcher}/heartbeat"), json!({}))
            .await
            .ok();
        let stat = api.exists(watcher, "/lease", false).await.ok()["stat"].clone();
        stat.is_null().then_some(())
    })
    .await;
    let (name, event) = doomed_events.next().await.expect("the session event");
    assert_eq!(name, "session");
    assert_eq!(event["state"], "expired");
    api.post(&format!("/v1/sessions/{doomed}/heartbeat"), json!({}))
        .await
        .err("session_expired", 410);
    api.create(doomed, "/late", "", "persistent")
        .await
        .err("session_expired", 410);
}

#[tokio::test]
async fn sigterm_stops_the_node_cleanly_and_it_restarts_with_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = standalone(&dir, &[]);
    let api = node.api();
    let s = api.session(5_000).await;
    api.create(s, "/kept", "yes", "persistent").await.ok();
    let mut events = api.events(s).await.expect("event stream");
    let status = node.terminate();
    assert!(
        status.success(),
        "exit status {status:?}; log:\n{}",
        node.log()
    );
    assert!(events.next().await.is_none(), "the event stream ended");

    node.restart();
    let api = node.api();
    let s = api.session(5_000).await;
    assert_eq!(api.get_data(s, "/kept", false).await.ok()["data"], "yes");
}

#[test]
fn bad_flags_and_an_unusable_data_dir_exit_2_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let cases: Vec<Vec<String>> = vec![
        flags(&["--id", "1"]),
        flags(&[
            "--id",
            "x",
            "--data-dir",
            "/tmp",
            "--client-addr",
            "127.0.0.1:0",
        ]),
        flags(&[
            "--id",
            "1",
            "--data-dir",
            "/tmp",
            "--client-addr",
            "localhost",
        ]),
        flags(&["--frobnicate"]),
        vec![
            "--id".into(),
            "1".into(),
            "--data-dir".into(),
            file.display().to_string(),
            "--client-addr".into(),
            "127.0.0.1:0".into(),
        ],
        flags(&[
            "--id",
            "4",
            "--data-dir",
            "/tmp/x",
            "--client-addr",
            "127.0.0.1:0",
            "--peers",
            "1=127.0.0.1:1,2=127.0.0.1:2",
        ]),
    ];
    for args in cases {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_keeperd"))
            .args(&args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        // One error line, last; a node that got as far as starting logs its INFO lines
        // before it (issue 11).
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.contains("INFO")).collect();
        assert_eq!(lines.len(), 1, "{args:?}: one error line, got {stderr}");
        assert!(lines[0].starts_with("keeperd: "), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().last(), Some(lines[0]), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"));
    }

    // A port in use.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_keeperd"))
        .args(["--id", "1", "--data-dir"])
        .arg(dir.path().join("d"))
        .args(["--client-addr", &taken.local_addr().unwrap().to_string()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot listen"));

    if !cfg!(feature = "bugs") {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_keeperd"))
            .args(["--id", "1", "--data-dir"])
            .arg(dir.path().join("d"))
            .args(["--client-addr", "127.0.0.1:0", "--bug", "no-fsync"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        assert_eq!(
            String::from_utf8_lossy(&out.stderr).trim(),
            "keeperd: --bug needs a build with the `bugs` feature"
        );
    }
}

/// The leader of a running ensemble, once every node agrees on it.
async fn agreed_leader(apis: &[Api]) -> u64 {
    eventually("every node to follow one leader", || async {
        let mut leaders = Vec::new();
        let mut leading = 0;
        for api in apis {
            let status = api.status().await?;
            if status["serving"] != json!(true) {
                return None;
            }
            leaders.push(status["leader"].as_u64()?);
            leading += (status["role"] == "leading") as usize;
        }
        (leading == 1 && leaders.iter().all(|l| *l == leaders[0])).then(|| leaders[0])
    })
    .await
}

#[tokio::test]
async fn a_three_node_ensemble_elects_a_leader_and_replicates_a_write_through_a_follower() {
    let dir = tempfile::tempdir().unwrap();
    let flags = ensemble_flags(3, &["--tick-ms", "50"]);
    let nodes: Vec<Node> = flags
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let id = i as u64 + 1;
            Node::start(id, &dir.path().join(format!("n{id}")), f)
        })
        .collect();
    let apis: Vec<Api> = nodes.iter().map(|n| n.api()).collect();
    let leader = agreed_leader(&apis).await;
    let follower = nodes.iter().position(|n| n.id != leader).unwrap();

    let api = &apis[follower];
    let s = api.session(10_000).await;
    let created = api
        .create(s, "/replicated", "hello", "persistent")
        .await
        .ok();
    let written_at = zxid(&created);
    for (i, api) in apis.iter().enumerate() {
        // The session is the ensemble's, so any node serves it; `last_zxid` makes a node that
        // has not caught up yet refuse instead of answering with an older view.
        let data = eventually("the write on every node", || async {
            let reply = api
                .post(
                    "/v1/get_data",
                    json!({ "session": s, "path": "/replicated", "last_zxid": written_at }),
                )
                .await;
            reply.status.is_success().then_some(reply.body)
        })
        .await;
        assert_eq!(data["data"], "hello", "node {}", i + 1);
        assert!(zxid(&data) >= written_at);
    }
    // Nothing else is written, so every replica ends at the same zxid with the same tree.
    let digests = eventually("every replica at the same zxid", || async {
        let mut out = Vec::new();
        for api in &apis {
            out.push(api.get("/v1/digest").await.ok());
        }
        let same = out
            .iter()
            .all(|d| zxid(d) == zxid(&out[0]) && zxid(d) >= written_at);
        same.then_some(out)
    })
    .await;
    assert!(
        digests.iter().all(|d| d == &digests[0]),
        "replicas differ: {digests:?}"
    );
}
