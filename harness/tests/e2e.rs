//! Real runs of the `schism` binary against real keeper clusters: every workload on the netns
//! backend and one on docker, each valid against the correct server, with a complete results
//! directory on which `schism check` agrees.
//!
//! These need root (netns) or a Docker engine and take about half a minute each, so they are
//! ignored by a plain `cargo test`; `make test` runs them with
//! `cargo test -p schism -- --include-ignored`.

use std::path::{Path, PathBuf};
use std::process::Command;

const SCHISM: &str = env!("CARGO_BIN_EXE_schism");

/// One cluster at a time: the tests run in parallel threads, and several 3-node clusters
/// under faults on a 2-core machine would measure the machine, not keeper.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Builds keeperd next to schism (cheap when it is up to date), where schism looks for it.
fn build_keeperd() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--workspace", "--bin", "keeperd"])
        .current_dir(workspace())
        .status()
        .unwrap();
    assert!(status.success(), "building keeperd failed");
}

/// Runs `schism test` and returns the run directory, asserting a valid verdict.
fn run_valid(args: &[&str], results: &Path) -> PathBuf {
    let out = Command::new(SCHISM)
        .arg("test")
        .args(args)
        .args([
            "--nodes",
            "3",
            "--time-limit",
            "12s",
            "--nemesis-interval",
            "3s",
            "--seed",
            "7",
        ])
        .arg("--results")
        .arg(results)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "schism test {args:?} was not valid:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("verdict: valid") && stdout.contains("report: "),
        "{stdout}"
    );
    let latest = results.join("latest");
    std::fs::canonicalize(&latest).unwrap()
}

fn assert_complete(dir: &Path, nodes: usize, faults: bool) {
    assert_complete_with_log(dir, nodes, faults, "keeperd.log");
}

fn assert_complete_with_log(dir: &Path, nodes: usize, faults: bool, node_log: &str) {
    for file in [
        "test.json",
        "history.jsonl",
        "nemesis.jsonl",
        "status.jsonl",
        "results.json",
        "report.html",
    ] {
        assert!(dir.join(file).is_file(), "{} lacks {file}", dir.display());
    }
    assert!(std::fs::metadata(dir.join("history.jsonl")).unwrap().len() > 0);
    assert!(std::fs::metadata(dir.join("status.jsonl")).unwrap().len() > 0);
    if faults {
        assert!(dir.join("schedule.json").is_file());
    }
    for n in 1..=nodes {
        let logs = dir.join("nodes").join(format!("n{n}"));
        assert!(logs.join(node_log).is_file(), "no log for n{n}");
    }
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("results.json")).unwrap()).unwrap();
    assert_eq!(results["verdict"], "valid");
    // `schism check` on the stored run agrees with the run's own verdict.
    let check = Command::new(SCHISM).arg("check").arg(dir).output().unwrap();
    assert_eq!(
        check.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
}

fn netns(workload: &str) {
    let _one = serial();
    build_keeperd();
    let results = tempfile::tempdir().unwrap();
    let dir = run_valid(
        &[
            "--workload",
            workload,
            "--backend",
            "netns",
            "--nemesis",
            "partition,kill,pause",
        ],
        results.path(),
    );
    assert_complete(&dir, 3, true);
}

/// Real Apache ZooKeeper 3.8 (Debian's package) under schism's faults: the reference
/// implementation must give no false alarm, with every checker having evidence.
#[test]
#[ignore = "needs root for network namespaces; run with --include-ignored"]
fn sequential_on_real_zookeeper() {
    let _one = serial();
    let results = tempfile::tempdir().unwrap();
    let dir = run_valid(
        &[
            "--system",
            "zookeeper",
            "--workload",
            "sequential",
            "--backend",
            "netns",
            "--nemesis",
            "partition,kill,pause",
        ],
        results.path(),
    );
    assert_complete_with_log(&dir, 3, true, "zookeeper.log");
}

/// keeper through its ZooKeeper port, by the `zookeeper-client` crate.
#[test]
#[ignore = "needs root for network namespaces; run with --include-ignored"]
fn session_over_zookeeper_s_protocol() {
    let _one = serial();
    build_keeperd();
    let results = tempfile::tempdir().unwrap();
    let dir = run_valid(
        &[
            "--protocol",
            "zk",
            "--workload",
            "session",
            "--backend",
            "netns",
            "--nemesis",
            "partition,kill,pause",
        ],
        results.path(),
    );
    assert_complete(&dir, 3, true);
}

#[test]
#[ignore = "needs root for network namespaces; run with --include-ignored"]
fn register_on_netns() {
    netns("register");
}

#[test]
#[ignore = "needs root for network namespaces; run with --include-ignored"]
fn sequential_on_netns() {
    netns("sequential");
}

#[test]
#[ignore = "needs root for network namespaces; run with --include-ignored"]
fn election_on_netns() {
    netns("election");
}

#[test]
#[ignore = "needs root for network namespaces; run with --include-ignored"]
fn session_on_netns() {
    netns("session");
}

#[test]
#[ignore = "needs root for network namespaces; run with --include-ignored"]
fn watch_on_netns() {
    netns("watch");
}

#[test]
#[ignore = "needs a Docker engine and a static keeperd; run with --include-ignored"]
fn register_on_docker() {
    let _one = serial();
    let target = "x86_64-unknown-linux-gnu";
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--target",
            target,
            "-p",
            "keeper",
            "--bin",
            "keeperd",
        ])
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .current_dir(workspace())
        .status()
        .unwrap();
    assert!(status.success(), "building a static keeperd failed");
    let keeperd = workspace()
        .join("target")
        .join(target)
        .join("release")
        .join("keeperd");
    let results = tempfile::tempdir().unwrap();
    let dir = run_valid(
        &[
            "--backend",
            "docker",
            "--keeperd",
            keeperd.to_str().unwrap(),
            "--nemesis",
            "partition,kill,pause",
        ],
        results.path(),
    );
    assert_complete(&dir, 3, true);
}

#[test]
#[ignore = "needs root for network namespaces; run with --include-ignored"]
fn replay_repeats_the_configuration_and_the_fault_schedule() {
    let _one = serial();
    build_keeperd();
    let results = tempfile::tempdir().unwrap();
    let first = run_valid(
        &["--backend", "netns", "--nemesis", "partition,kill"],
        results.path(),
    );
    let out = Command::new(SCHISM)
        .arg("replay")
        .arg(&first)
        .arg("--results")
        .arg(results.path())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let second = std::fs::canonicalize(results.path().join("latest")).unwrap();
    assert_ne!(first, second);
    let read = |d: &Path, f: &str| std::fs::read_to_string(d.join(f)).unwrap();
    assert_eq!(
        read(&first, "schedule.json"),
        read(&second, "schedule.json")
    );
    let config = |d: &Path| {
        let mut v: serde_json::Value = serde_json::from_str(&read(d, "test.json")).unwrap();
        for volatile in ["command_line", "started_at", "replay_of"] {
            v.as_object_mut().unwrap().remove(volatile);
        }
        v
    };
    assert_eq!(config(&first), config(&second));
}

/// Processes whose command line names `dir` (the nodes: their data directories are in it).
fn processes_under(dir: &Path) -> Vec<String> {
    let needle = dir.display().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(&needle))
        .collect()
}

fn namespaces() -> std::collections::BTreeSet<String> {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// SIGTERM (a CI job's timeout, `timeout(1)`, `kill`) stops a run as Ctrl-C does: the nodes,
/// namespaces and rules are gone when schism exits, and what ran is checked, never `valid`.
#[test]
#[ignore = "needs root for network namespaces; run with --include-ignored"]
fn sigterm_tears_the_run_down_and_checks_what_it_has() {
    let _one = serial();
    build_keeperd();
    let results = tempfile::tempdir().unwrap();
    let before = namespaces();
    let child = Command::new(SCHISM)
        .args(["test", "--backend", "netns", "--nodes", "3"])
        .args([
            "--nemesis",
            "partition",
            "--time-limit",
            "120s",
            "--seed",
            "7",
        ])
        .arg("--results")
        .arg(results.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Until the nodes run and the workload has begun.
    let started = std::time::Instant::now();
    while processes_under(results.path()).len() < 3 {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "the nodes never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    std::thread::sleep(std::time::Duration::from_secs(8));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("interrupted; tearing down"), "{stderr}");
    // Unknown (3) at best: a partial run proves less than was asked.
    assert_ne!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("verdict: "), "{stdout}\n{stderr}");
    assert_eq!(processes_under(results.path()), Vec::<String>::new());
    let left: Vec<String> = namespaces().difference(&before).cloned().collect();
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
}
