//! Durability through the real binary: acknowledged writes from many concurrent clients,
//! `kill -9` while writes are in flight, a restart on the same data directory, and every
//! acknowledged write present afterwards (also with a torn log tail, and after snapshots).

mod support;

use serde_json::json;
use std::path::Path;
use std::sync::{Arc, Mutex};
use support::{Api, Node, eventually};

/// Concurrent writers: enough for group commits of several writes.
const WRITERS: usize = 8;

type Acked = Arc<Mutex<Vec<(String, String)>>>;

/// Starts `WRITERS` clients creating znodes under `/crash` until the node dies; returns what
/// was acknowledged and the tasks.
fn start_writers(api: &Api, session: u64) -> (Acked, Vec<tokio::task::JoinHandle<()>>) {
    let acked: Acked = Arc::default();
    let tasks = (0..WRITERS)
        .map(|w| {
            let (api, acked) = (api.clone(), acked.clone());
            tokio::spawn(async move {
                for i in 0.. {
                    let path = format!("/crash/w{w}-{i}");
                    let data = format!("writer {w} write {i}");
                    let body = json!({ "session": session, "path": path, "data": data });
                    match api.try_post("/v1/create", body).await {
                        Ok(reply) if reply.status.is_success() => {
                            assert_eq!(reply.body["path"], path.as_str());
                            acked.lock().unwrap().push((path, data));
                        }
                        // A definite refusal while the node runs would be a bug.
                        Ok(reply) if reply.status.as_u16() < 500 => {
                            panic!("write refused: {reply:?}")
                        }
                        // The node died (connection closed or timed out): unknown outcome.
                        _ => return,
                    }
                }
            })
        })
        .collect();
    (acked, tasks)
}

async fn wait_for_acks(acked: &Acked, count: usize) {
    eventually(&format!("{count} acknowledged writes"), || async {
        (acked.lock().unwrap().len() >= count).then_some(())
    })
    .await;
}

async fn stop_writers(tasks: Vec<tokio::task::JoinHandle<()>>) {
    for task in tasks {
        task.await.expect("a writer failed");
    }
}

/// Every acknowledged write is there with its data.
async fn assert_all_present(api: &Api, acked: &[(String, String)]) {
    let s = api.session(20_000).await;
    let children = api.children(s, "/crash", false).await.ok();
    let names: std::collections::HashSet<String> = children["children"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| format!("/crash/{}", c.as_str().unwrap()))
        .collect();
    let missing: Vec<&String> = acked
        .iter()
        .map(|(p, _)| p)
        .filter(|p| !names.contains(*p))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged writes lost, e.g. {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(5)]
    );
    for (path, data) in acked {
        let got = api.get_data(s, path, false).await.ok();
        assert_eq!(got["data"], data.as_str(), "{path}");
    }
}

/// Files in the data directory whose names start with `prefix`.
fn files(dir: &Path, prefix: &str) -> Vec<std::path::PathBuf> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix) && !n.ends_with(".tmp"))
        })
        .collect();
    out.sort();
    out
}

/// Appends half a record to the live log, as a write torn by the crash would leave it.
fn tear_log_tail(dir: &Path) {
    use std::io::Write;
    let logs = files(dir, "log.");
    let live = logs.last().expect("a log file");
    let mut f = std::fs::OpenOptions::new().append(true).open(live).unwrap();
    f.write_all(&[0, 0, 1, 0, 0xde, 0xad, 0xbe, 0xef, b'{', b'"'])
        .unwrap();
}

/// Returns the node (running) and its directory, which must outlive it.
async fn crash_and_recover(extra: &[&str], acks_before_kill: usize) -> (Node, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("n1");
    let flags: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    let mut node = Node::start(1, &data_dir, &flags);
    let api = node.api();
    let s = api.session(20_000).await;
    api.create(s, "/crash", "", "persistent").await.ok();

    let (acked, tasks) = start_writers(&api, s);
    wait_for_acks(&acked, acks_before_kill).await;
    node.kill9();
    stop_writers(tasks).await;
    let acked = acked.lock().unwrap().clone();

    tear_log_tail(&data_dir);
    node.restart();
    let api = node.api();
    assert_all_present(&api, &acked).await;

    // The node goes on: new writes, then a graceful restart keeps everything too.
    let s = api.session(20_000).await;
    api.create(s, "/crash/after", "more", "persistent")
        .await
        .ok();
    let status = node.terminate();
    assert!(status.success(), "exit status {status:?}");
    node.restart();
    let api = node.api();
    let mut all = acked;
    all.push(("/crash/after".to_string(), "more".to_string()));
    assert_all_present(&api, &all).await;
    (node, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9_and_a_torn_tail() {
    let (node, _dir) = crash_and_recover(&[], 400).await;
    drop(node);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9_after_snapshots() {
    let (node, _dir) = crash_and_recover(&["--snapshot-every", "50"], 400).await;
    let snapshots = files(&node.data_dir, "snapshot.");
    assert!(
        !snapshots.is_empty(),
        "--snapshot-every 50 saved no snapshot; log:\n{}",
        node.log()
    );
    drop(node);
}
