//! Every workload's client over ZooKeeper's own protocol (`--protocol zk`), against a real
//! 3-node keeper ensemble of local processes (no root needed): what each operation records,
//! that watches fire once, that a closed session's ephemeral node goes, that a session left
//! to expire is observed expired, and that errors end as `fail` or `info` as they should.
//!
//! One ensemble serves all the scenarios, one after another, and is torn down even when one
//! fails. keeperd runs with a 100 ms tick, so sessions are granted 2 s and expire quickly.

use checker::history::{Event, EventType};
use cluster::{Backend, BackendKind, Cluster, ClusterSpec};
use schism::client::{Client, Completion, Node};
use schism::config::Protocol;
use schism::generator::Op;
use schism::recorder::{Recorder, RunClock};
use schism::workload::conn::{Conn, ConnEvent};
use schism::workload::{Env, OpenContext, by_kind};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use tokio::sync::mpsc;

const OP_TIMEOUT_MS: u64 = 2_000;
/// How long a test waits for something that should happen within a few session timeouts (a
/// quiet session expires two timeouts of the leader's clock after its last word, and the client
/// learns it on its next try).
const PATIENCE_MS: u64 = 45_000;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn keeperd() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--workspace", "--bin", "keeperd"])
        .current_dir(workspace())
        .status()
        .unwrap();
    assert!(status.success(), "building keeperd failed");
    workspace().join("target/debug/keeperd")
}

/// The scenarios' shared state: the ensemble's nodes and a history to record into.
struct Bench {
    env: Env,
    recorder: Recorder,
    history: PathBuf,
}

impl Bench {
    fn node(&self, i: usize) -> &Node {
        &self.env.nodes[i]
    }

    fn env_with(&self, consistency: keeper_wire::Consistency) -> Env {
        Env {
            read_consistency: consistency,
            ..self.env.clone()
        }
    }

    async fn open(&self, workload: &str, env: &Env, node: usize, process: u64) -> Box<dyn Client> {
        let kind = checker::WorkloadKind::from_name(workload).expect("a workload");
        by_kind(kind)
            .open(OpenContext {
                env,
                node: &env.nodes[node],
                process,
                recorder: &self.recorder,
            })
            .await
            .unwrap_or_else(|e| panic!("opening a {workload} client on n{}: {e}", node + 1))
    }

    /// Performs `op` as the worker does: prepare, record the invocation, invoke, record the
    /// completion, tell the client.
    async fn perform(&self, client: &mut Box<dyn Client>, process: u64, op: Op) -> Completion {
        let op = client.prepare(op);
        let session = client.session();
        let invoke = self
            .recorder
            .record(event(process, EventType::Invoke, &op, session));
        let completion = client
            .invoke(&op, Duration::from_millis(OP_TIMEOUT_MS))
            .await;
        let mut done = event(process, completion.kind, &op, session);
        done.f = invoke.f;
        done.value = completion.value.clone().unwrap_or(invoke.value);
        done.error = completion.error.clone();
        done.zxid = completion.zxid;
        self.recorder.record(done);
        client.completed(&completion);
        completion
    }

    /// What was recorded so far.
    fn events(&self) -> Vec<Event> {
        self.recorder.sync().expect("history synced");
        checker::run_dir::read_jsonl::<Event>(&self.history, "an event")
            .expect("history readable")
            .values
    }

    /// Waits until the history has an event that `wanted` accepts.
    async fn wait_for(&self, what: &str, wanted: impl Fn(&Event) -> bool) -> Event {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(PATIENCE_MS);
        loop {
            if let Some(e) = self.events().into_iter().find(|e| wanted(e)) {
                return e;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no {what} within {PATIENCE_MS} ms"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn event(process: u64, kind: EventType, op: &Op, session: Option<u64>) -> Event {
    let mut e = Event::new(0, 0, process, kind, &op.f, op.value.clone());
    e.key = op.key.clone();
    e.session = session;
    e
}

fn op(f: &str, key: Option<&str>, value: Value) -> Op {
    Op::new(f, key, value)
}

fn assert_ok(c: &Completion, what: &str) -> Value {
    assert_eq!(c.kind, EventType::Ok, "{what}: {c:?}");
    c.value.clone().unwrap_or(Value::Null)
}

/// register: what a create, read, compare-and-set and delete record over ZooKeeper's
/// protocol (the writes' own zxids, no reply zxid for reads and deletes), and which refusals
/// are `fail`.
async fn register(bench: &Bench) {
    let env = &bench.env;
    let kind = checker::WorkloadKind::Register;
    by_kind(kind).setup(env).await.expect("register setup");
    let mut a = bench.open("register", env, 0, 0).await;
    let key = Some("rzk-0");
    let created = bench.perform(&mut a, 0, op("create", key, json!(5))).await;
    assert_ok(&created, "create");
    let czxid = created.zxid.expect("a create records its czxid");
    let read = bench.perform(&mut a, 0, op("read", key, Value::Null)).await;
    assert_eq!(assert_ok(&read, "read"), json!([5, 0]));
    assert_eq!(read.zxid, None, "a read over zk has no reply zxid");
    let cas = bench
        .perform(
            &mut a,
            0,
            op("cas", key, json!({"from_version": 0, "to": 7})),
        )
        .await;
    assert_eq!(assert_ok(&cas, "cas"), json!({"version": 1}));
    assert!(
        cas.zxid.expect("a setData records its mzxid") > czxid,
        "the set's zxid follows the create's"
    );
    // The client expects the version it saw last (1 now): forcing 0 is a definite refusal.
    let stale_cas = op("cas", key, json!({"from_version": 0, "to": 8}));
    let stale = a
        .invoke(&stale_cas, Duration::from_millis(OP_TIMEOUT_MS))
        .await;
    assert_eq!(
        (stale.kind, stale.error.as_deref()),
        (EventType::Fail, Some("bad_version"))
    );
    // Another node, reading after a sync, sees the write.
    let synced = bench.env_with(keeper_wire::Consistency::Sync);
    let mut b = bench.open("register", &synced, 1, 1).await;
    let read = bench.perform(&mut b, 1, op("read", key, Value::Null)).await;
    assert_eq!(assert_ok(&read, "sync+read on n2"), json!([7, 1]));
    let deleted = bench
        .perform(&mut b, 1, op("delete", key, Value::Null))
        .await;
    assert_ok(&deleted, "delete");
    assert_eq!(deleted.zxid, None, "a delete over zk has no zxid");
    let gone = bench.perform(&mut b, 1, op("read", key, Value::Null)).await;
    assert_eq!(assert_ok(&gone, "read after delete"), Value::Null);
    let missing = bench.perform(&mut b, 1, op("write", key, json!(1))).await;
    assert_eq!(
        (missing.kind, missing.error.as_deref()),
        (EventType::Fail, Some("no_node"))
    );
    a.close().await;
    b.close().await;
}

/// sequential: sequence numbers from the created names, growing; a trim deletes the oldest.
async fn sequential(bench: &Bench) {
    let env = &bench.env;
    by_kind(checker::WorkloadKind::Sequential)
        .setup(env)
        .await
        .expect("sequential setup");
    let mut a = bench.open("sequential", env, 1, 10).await;
    let parent = Some("/schism/sequential/p0");
    let first = bench
        .perform(&mut a, 10, op("create", parent, json!("p10")))
        .await;
    let second = bench
        .perform(&mut a, 10, op("create", parent, json!("p10")))
        .await;
    let (n1, n2) = (
        assert_ok(&first, "first create")
            .as_u64()
            .expect("a number"),
        assert_ok(&second, "second create")
            .as_u64()
            .expect("a number"),
    );
    assert!(n2 > n1, "sequence numbers grow: {n1} then {n2}");
    assert!(first.zxid.is_some() && second.zxid > first.zxid);
    let trimmed = bench
        .perform(&mut a, 10, op("trim", parent, Value::Null))
        .await;
    assert_eq!(
        assert_ok(&trimmed, "trim"),
        json!(format!("n-{n1:010}")),
        "the oldest child goes first"
    );
    a.close().await;
}

/// watch: each watch fires once (also when the same path was watched twice: one
/// notification), with the right type, its event recording no zxid it does not know; a
/// watch's completion records the Stat it was set at.
async fn watch(bench: &Bench) {
    let env = &bench.env;
    by_kind(checker::WorkloadKind::Watch)
        .setup(env)
        .await
        .expect("watch setup");
    let mut watcher = bench.open("watch", env, 0, 20).await;
    let mut writer = bench.open("watch", env, 1, 21).await;
    let path = "/schism/watch/w0";
    let session = watcher.session();
    for _ in 0..2 {
        let w = bench
            .perform(
                &mut watcher,
                20,
                op("watch", Some(path), json!({"kind": "exists"})),
            )
            .await;
        assert_eq!(
            assert_ok(&w, "exists watch")["result"],
            json!({"exists": false})
        );
        assert!(
            w.value.as_ref().unwrap().get("stat").is_none(),
            "no Stat for a node that does not exist"
        );
    }
    let children = bench
        .perform(
            &mut watcher,
            20,
            op("watch", Some("/schism/watch"), json!({"kind": "children"})),
        )
        .await;
    let value = assert_ok(&children, "children watch");
    assert!(
        value["stat"]["pzxid"].as_u64().is_some(),
        "a children watch records the parent's pzxid: {value}"
    );
    let created = bench
        .perform(&mut writer, 21, op("create", Some(path), json!(1)))
        .await;
    assert_ok(&created, "create");
    let events_of = |kind: &'static str, p: &'static str| {
        move |e: &Event| {
            e.f == "event"
                && e.session == session
                && e.value["type"] == kind
                && e.value["path"] == p
        }
    };
    let fired = bench
        .wait_for("created event", events_of("created", path))
        .await;
    assert_eq!(fired.kind, EventType::Ok);
    bench
        .wait_for(
            "children event",
            events_of("children_changed", "/schism/watch"),
        )
        .await;
    // A data watch on the node now, then a change.
    let w = bench
        .perform(
            &mut watcher,
            20,
            op("watch", Some(path), json!({"kind": "exists"})),
        )
        .await;
    let value = assert_ok(&w, "exists watch on the node");
    assert_eq!(
        value["stat"]["mzxid"].as_u64(),
        created.zxid,
        "the watch records the node's mzxid: {value}"
    );
    let written = bench
        .perform(&mut writer, 21, op("write", Some(path), json!(2)))
        .await;
    assert_ok(&written, "write");
    bench
        .wait_for("data event", events_of("data_changed", path))
        .await;
    // Give a duplicate time to show, then count.
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let history = bench.events();
    let count = |kind: &str| {
        history
            .iter()
            .filter(|e| e.f == "event" && e.session == session && e.value["type"] == kind)
            .count()
    };
    assert_eq!(count("created"), 1, "two watches on one path, one event");
    assert_eq!(count("children_changed"), 1);
    assert_eq!(count("data_changed"), 1);
    for e in history.iter().filter(|e| e.f == "event") {
        assert!(
            e.value.get("zxid").is_some(),
            "an event always says what it knows of its zxid: {e:?}"
        );
        assert_eq!(
            e.zxid,
            e.value["zxid"].as_u64(),
            "one zxid per event: {e:?}"
        );
    }
    watcher.close().await;
    writer.close().await;
}

/// session: an ephemeral node goes with its closed session; a session left to expire is
/// observed `expired` (the server said so), and its node goes too.
async fn session(bench: &Bench) {
    // Sync reads: the reader is on another node than the session it watches.
    let env = bench.env_with(keeper_wire::Consistency::Sync);
    by_kind(checker::WorkloadKind::Session)
        .setup(&env)
        .await
        .expect("session setup");
    let mut owner = bench.open("session", &env, 0, 30).await;
    let mut reader = bench.open("session", &env, 1, 31).await;
    let path = Some("/schism/session/e0");
    let created = bench
        .perform(&mut owner, 30, op("create_ephemeral", path, json!("p30")))
        .await;
    assert_ok(&created, "create_ephemeral");
    assert!(created.zxid.is_some(), "a create records its czxid");
    let seen = bench
        .perform(&mut reader, 31, op("read", path, Value::Null))
        .await;
    assert_eq!(
        assert_ok(&seen, "read of the ephemeral"),
        json!({"owner": owner.session().unwrap()})
    );
    let closed = bench
        .perform(&mut owner, 30, op("close_session", None, Value::Null))
        .await;
    assert_ok(&closed, "close_session");
    assert!(closed.reopen, "a closed session is not used again");
    let after = bench
        .perform(&mut reader, 31, op("read", path, Value::Null))
        .await;
    assert_eq!(
        assert_ok(&after, "read after the close"),
        Value::Null,
        "the ephemeral node went with its session"
    );
    // A session that goes quiet expires; the client learns it from the server.
    let mut quiet = bench.open("session", &env, 2, 32).await;
    let quiet_session = quiet.session();
    let path = Some("/schism/session/e1");
    let created = bench
        .perform(&mut quiet, 32, op("create_ephemeral", path, json!("p32")))
        .await;
    assert_ok(&created, "create_ephemeral before going quiet");
    let stopped = bench
        .perform(&mut quiet, 32, op("stop_heartbeats", None, Value::Null))
        .await;
    assert_ok(&stopped, "stop_heartbeats");
    quiet.close().await;
    let expired = bench
        .wait_for("expired observation", |e| {
            e.f == "expired" && e.session == quiet_session
        })
        .await;
    assert_eq!((expired.kind, expired.process), (EventType::Ok, 32));
    assert_eq!(
        expired.zxid, None,
        "ZooKeeper's protocol tells no expiry zxid"
    );
    let after = bench
        .perform(&mut reader, 31, op("read", path, Value::Null))
        .await;
    assert_eq!(assert_ok(&after, "read after the expiry"), Value::Null);
    reader.close().await;
}

/// election: the first contender leads, the second waits; after a fenced write and a
/// resignation the second leads with a larger token.
async fn election(bench: &Bench) {
    let env = &bench.env;
    by_kind(checker::WorkloadKind::Election)
        .setup(env)
        .await
        .expect("election setup");
    let mut first = bench.open("election", env, 0, 40).await;
    let mut second = bench.open("election", env, 1, 41).await;
    let claim = bench
        .perform(&mut first, 40, op("claim", None, Value::Null))
        .await;
    let t1 = assert_ok(&claim, "first claim")["token"]
        .as_u64()
        .expect("a token");
    let waiting = bench
        .perform(&mut second, 41, op("claim", None, Value::Null))
        .await;
    assert_eq!(
        (waiting.kind, waiting.error.as_deref()),
        (EventType::Fail, Some("not_leader"))
    );
    // The generator's fenced_write becomes one with the leader's token.
    let write = bench
        .perform(
            &mut first,
            40,
            op("fenced_write", Some("/schism/election-data"), Value::Null),
        )
        .await;
    assert_eq!(assert_ok(&write, "fenced write"), json!({"token": t1}));
    assert!(
        write.zxid.is_some(),
        "a fenced write records its setData's mzxid"
    );
    let resigned = bench
        .perform(&mut first, 40, op("resign", None, Value::Null))
        .await;
    assert_ok(&resigned, "resign");
    let claim = bench
        .perform(&mut second, 41, op("claim", None, Value::Null))
        .await;
    let t2 = assert_ok(&claim, "second claim")["token"]
        .as_u64()
        .expect("a token");
    assert!(t2 > t1, "tokens grow: {t1} then {t2}");
    first.close().await;
    second.close().await;
}

/// Errors: a request to a node that was killed is `info` (it may have been applied, or may
/// yet be); a closed connection's request is a definite `fail`.
async fn errors(bench: &Bench, cluster: &Cluster) {
    let env = &bench.env;
    let conn = Conn::open(env, bench.node(2))
        .await
        .expect("a session on n3");
    let (tx, mut events) = mpsc::unbounded_channel();
    conn.spawn_events(move |e| {
        let _ = tx.send(e);
    });
    match conn
        .create("/schism/zk-errors", "", keeper_wire::CreateMode::Persistent)
        .await
    {
        Ok(_) => {}
        Err(e) if e.code() == keeper_wire::ErrorCode::NodeExists => {}
        Err(e) => panic!("create: {e}"),
    }
    cluster.kill(3).await.expect("kill n3");
    let lost = conn
        .set_data("/schism/zk-errors", "1", keeper_wire::ANY_VERSION)
        .await
        .expect_err("n3 is dead");
    assert!(
        lost.is_indeterminate(),
        "a write to a dead node is in doubt: {lost:?}"
    );
    let completion = schism::workload::conn::completion_of(&lost);
    assert_eq!(completion.kind, EventType::Info);
    let broke = tokio::time::timeout(Duration::from_millis(PATIENCE_MS), events.recv())
        .await
        .expect("an event about the lost connection");
    assert_eq!(broke, Some(ConnEvent::Disconnected));
    cluster.start(3).await.expect("restart n3");
    let other = Conn::open(env, bench.node(0))
        .await
        .expect("a session on n1");
    assert!(other.close().await.is_ok(), "an acknowledged close is Ok");
    let refused = other
        .exists("/schism", false, keeper_wire::Consistency::Local)
        .await
        .expect_err("the session is closed");
    assert!(!refused.is_indeterminate());
    let completion = schism::workload::conn::completion_of(&refused);
    assert_eq!(
        (
            completion.kind,
            completion.error.as_deref(),
            completion.reopen
        ),
        (EventType::Fail, Some("session_expired"), true)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_workload_speaks_zookeepers_protocol_to_a_keeper_ensemble() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = ClusterSpec::new(3, keeperd(), "zkclient", dir.path().to_path_buf());
    spec.tick_ms = Some(100);
    let cluster = Cluster::new(BackendKind::Local, spec)
        .await
        .expect("the local backend");
    if let Err(e) = cluster.setup().await {
        let _ = cluster.teardown().await;
        panic!("setup failed: {e}");
    }
    let nodes = cluster
        .addrs()
        .iter()
        .map(|a| Node {
            name: a.name.clone(),
            url: a.client_url(),
            zk_addr: a.zk_addr().to_string(),
        })
        .collect();
    let history = dir.path().join("history.jsonl");
    let bench = Bench {
        env: Env {
            nodes,
            protocol: Protocol::Zk,
            op_timeout: Duration::from_millis(OP_TIMEOUT_MS),
            read_consistency: keeper_wire::Consistency::Local,
            seed: 1,
            concurrency: 2,
            sim: None,
        },
        recorder: Recorder::create(&history, RunClock::start_now()).unwrap(),
        history,
    };
    let cluster = std::sync::Arc::new(cluster);
    let run = {
        let cluster = cluster.clone();
        tokio::spawn(async move {
            register(&bench).await;
            sequential(&bench).await;
            watch(&bench).await;
            session(&bench).await;
            election(&bench).await;
            errors(&bench, &cluster).await;
        })
    };
    let result = run.await;
    let _ = cluster.teardown().await;
    if let Err(e) = result {
        std::panic::resume_unwind(e.into_panic());
    }
}
