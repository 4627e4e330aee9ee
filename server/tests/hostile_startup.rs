//! A standalone node whose log's last complete record is damaged (issue 11): it must refuse to
//! start, with its start-up INFO lines and then one error line naming the file and offset on
//! stderr, and must leave the log as it was (not cut the record, which may have been
//! acknowledged). It has no other copy to recover from; a member of an ensemble cuts and
//! recovers instead (issue 13, `server/tests/storage.rs` and `sim.rs`).

mod support;

use std::process::Command;
use support::Node;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_last_record_stops_the_node_with_its_log_lines_and_one_error() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("n1");
    let mut node = Node::start(1, &data, &[]);
    let api = node.api();
    let session = api.session(10_000).await;
    api.create(session, "/acked", "x", "persistent").await.ok();
    assert_eq!(node.terminate().code(), Some(0));

    let log = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_str().unwrap().starts_with("log."))
        .expect("a log file");
    let mut bytes = std::fs::read(&log).unwrap();
    // The last record is a JSON txn ending in '}': damage a byte inside it.
    let last = bytes.len() - 3;
    bytes[last] ^= 0x20;
    std::fs::write(&log, &bytes).unwrap();

    let out = Command::new(env!("CARGO_BIN_EXE_keeperd"))
        .args(["--id", "1", "--client-addr", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr:\n{stderr}");
    assert!(out.stdout.is_empty(), "it never said it serves");
    let lines: Vec<&str> = stderr.lines().collect();
    let error = lines.last().copied().unwrap_or_default();
    assert!(
        error.starts_with("keeperd: ")
            && error.contains(log.to_str().unwrap())
            && error.contains("corrupt at byte offset"),
        "the last line names the file and offset: {error:?}"
    );
    assert_eq!(
        lines.iter().filter(|l| l.contains("corrupt")).count(),
        1,
        "one error line:\n{stderr}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("INFO") && l.contains("starting")),
        "the INFO lines before the error are on stderr too:\n{stderr}"
    );
    assert_eq!(std::fs::read(&log).unwrap(), bytes, "nothing was cut");
}
