//! kazoo (PyPI), a ZooKeeper client no one here wrote, against a 3-node keeper ensemble through
//! its ZooKeeper ports: the Election and Lock recipes with the node under the leader's client
//! killed (the ensemble's leader). That client's session moves to another node and keeps its ephemeral nodes, so it
//! keeps leading and holding the lock. The checks live in `tests/zk/kazoo_recipes.py`.
//!
//! Skipped (with a line saying so) where python3 cannot import kazoo; `.ci/run` installs it.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::Node;

/// How long the script may run (it bounds each of its own waits at 60 s).
const SCRIPT_TIMEOUT_MS: u64 = 300_000;

fn kazoo_installed() -> bool {
    Command::new("python3")
        .args(["-c", "import kazoo"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// How long the ensemble may take to elect a leader.
const LEADER_TIMEOUT_MS: u64 = 30_000;

/// A four-letter word's answer, or "" if the port does not answer.
fn four_letter(addr: &str, word: &str) -> String {
    use std::io::{Read, Write};
    let mut out = String::new();
    if let Ok(mut s) = std::net::TcpStream::connect(addr)
        && s.write_all(word.as_bytes()).is_ok()
    {
        let _ = s.read_to_string(&mut out);
    }
    out
}

/// Which of the targets (`HOST:PORT=PID`) leads, by its `srvr` four-letter word.
fn leader_index(targets: &[String]) -> usize {
    let deadline = Instant::now() + Duration::from_millis(LEADER_TIMEOUT_MS);
    loop {
        for (i, t) in targets.iter().enumerate() {
            let addr = t.split('=').next().unwrap();
            if four_letter(addr, "srvr").contains("Mode: leader") {
                return i;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no leader within {LEADER_TIMEOUT_MS} ms"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn kazoo_election_and_lock_survive_a_killed_node() {
    if !kazoo_installed() {
        eprintln!("skipping: python3 cannot import kazoo (pip install kazoo)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = Vec::new();
    let mut targets = Vec::new();
    for (i, mut flags) in support::ensemble_flags(3, &[]).into_iter().enumerate() {
        let zk: SocketAddr = format!("127.0.0.1:{}", support::free_port())
            .parse()
            .unwrap();
        flags.extend(["--zk-addr".to_string(), zk.to_string()]);
        let node = Node::start(
            i as u64 + 1,
            &dir.path().join(format!("n{}", i + 1)),
            &flags,
        );
        targets.push(format!("{zk}={}", node.pid()));
        nodes.push(node);
    }
    // The node under client 1 is the ensemble's leader: killing it also costs an election.
    let leader = leader_index(&targets);
    // The leader's `mntr` counts its synced followers.
    let leader_zk = targets[leader].split('=').next().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_millis(LEADER_TIMEOUT_MS);
    while !four_letter(&leader_zk, "mntr").contains("zk_synced_followers\t2\n") {
        assert!(
            Instant::now() < deadline,
            "the leader's mntr never showed 2 synced followers:\n{}",
            four_letter(&leader_zk, "mntr")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    targets.swap(0, leader);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/zk/kazoo_recipes.py");
    let mut child = Command::new("python3")
        .arg(&script)
        .arg(targets.join(","))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3");
    let deadline = Instant::now() + Duration::from_millis(SCRIPT_TIMEOUT_MS);
    while child.try_wait().expect("wait for python3").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("python3's output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.lines().last() == Some("ok"),
        "kazoo_recipes.py failed ({}):\n{stdout}\n{stderr}\nnode logs:\n{}",
        out.status,
        nodes
            .iter()
            .map(|n| n.log())
            .collect::<Vec<_>>()
            .join("\n---\n")
    );
    println!("{stdout}");
}
