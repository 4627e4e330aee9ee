//! The runner's phases without root and without processes: keeper nodes run inside this test
//! process (`keeper::shell::start`) behind a `cluster::Backend` of our own, and the runner is
//! given that backend through its seam (`runner::run_test_on`). Each test checks what a phase
//! must leave behind: the records of a whole run, a failed setup that still tears down, a
//! cluster that never serves.

use checker::history::EventType;
use checker::run_dir::{HISTORY_FILE, RECOVERY_FILE, RESULTS_FILE, STATUS_FILE, TEST_FILE};
use cluster::{
    Backend, BackendKind, ClusterError, ClusterSpec, CommandRecord, NodeAddr, NodeId, NodeState,
    Result as ClusterResult,
};
use schism::config::{Consistency, NodeChoice, TestConfig, WorkloadKind};
use schism::progress::Progress;
use schism::runner::{RunRequest, run_test_on};
use schism::system::System;
use schism::verdict::Verdict;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A keeper node running as tasks of this process.
struct InProcessNode {
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

/// What the fake backend is told to get wrong, to see the runner cope.
#[derive(Clone, Copy, Default)]
struct Planted {
    /// `setup` fails after starting nothing.
    setup_fails: bool,
    /// Nodes never find each other (each believes it is alone in a 3-node ensemble of strangers),
    /// so the cluster never elects and never serves.
    never_serves: bool,
}

/// A `cluster::Backend` whose nodes are in-process keeper servers on 127.x.y.z addresses.
/// Kill and stop are a graceful shutdown (a task cannot be SIGKILLed); it cannot pause nodes
/// or run network commands, like the local backend.
struct InProcessCluster {
    spec: ClusterSpec,
    addrs: Vec<NodeAddr>,
    nodes: Mutex<HashMap<NodeId, InProcessNode>>,
    planted: Planted,
    teardowns: AtomicUsize,
    set_up: AtomicBool,
}

/// A 127.a.b.0/24 whose client, peer and ZooKeeper ports are free on every node address.
impl InProcessCluster {
    fn new(spec: ClusterSpec, planted: Planted) -> InProcessCluster {
        let addrs = cluster::local::free_loopback_addrs(&spec).expect("free loopback addresses");
        InProcessCluster {
            spec,
            addrs,
            nodes: Mutex::new(HashMap::new()),
            planted,
            teardowns: AtomicUsize::new(0),
            set_up: AtomicBool::new(false),
        }
    }

    fn server_config(&self, node: NodeId) -> keeper::shell::ServerConfig {
        let me = &self.addrs[(node - 1) as usize];
        let data_dir = self.spec.node_dir(node).join("data");
        let mut config = keeper::shell::ServerConfig::new(node, data_dir, me.client_addr());
        config.peer_addr = Some(me.peer_addr());
        config.zk_addr = Some(me.zk_addr());
        config.peers = if self.planted.never_serves {
            // Peers at addresses where nobody listens: no quorum, ever.
            let mut strangers: BTreeMap<NodeId, SocketAddr> = BTreeMap::new();
            strangers.insert(node, me.peer_addr());
            for other in self.spec.node_ids().into_iter().filter(|o| *o != node) {
                strangers.insert(other, SocketAddr::from(([127, 0, 0, 254], 9)));
            }
            strangers
        } else {
            self.addrs.iter().map(|a| (a.id, a.peer_addr())).collect()
        };
        config
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<NodeId, InProcessNode>> {
        self.nodes.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn shut_down(&self, node: NodeId) {
        let taken = self.lock().remove(&node);
        if let Some(n) = taken {
            n.shutdown.cancel();
            let _ = n.task.await;
        }
    }
}

impl Backend for InProcessCluster {
    fn kind(&self) -> BackendKind {
        BackendKind::Local
    }
    fn spec(&self) -> &ClusterSpec {
        &self.spec
    }
    fn addrs(&self) -> Vec<NodeAddr> {
        if self.set_up.load(Ordering::SeqCst) {
            self.addrs.clone()
        } else {
            Vec::new()
        }
    }
    async fn setup(&self) -> ClusterResult<()> {
        if self.planted.setup_fails {
            return Err(ClusterError::Invalid("planted: setup fails".into()));
        }
        self.set_up.store(true, Ordering::SeqCst);
        for node in self.spec.node_ids() {
            self.start(node).await?;
        }
        Ok(())
    }
    async fn start(&self, node: NodeId) -> ClusterResult<()> {
        cluster::check_node(&self.spec, node)?;
        if self.lock().contains_key(&node) {
            return Ok(());
        }
        let shutdown = CancellationToken::new();
        let running = keeper::shell::start(self.server_config(node), shutdown.clone())
            .await
            .map_err(|e| ClusterError::Invalid(format!("starting n{node}: {e:#}")))?;
        let task = tokio::spawn(running.wait());
        self.lock().insert(node, InProcessNode { shutdown, task });
        Ok(())
    }
    async fn stop(&self, node: NodeId) -> ClusterResult<()> {
        self.shut_down(node).await;
        Ok(())
    }
    async fn kill(&self, node: NodeId) -> ClusterResult<()> {
        self.shut_down(node).await;
        Ok(())
    }
    async fn pause(&self, _node: NodeId) -> ClusterResult<()> {
        Err(ClusterError::Unsupported(
            "in-process nodes cannot be paused".into(),
        ))
    }
    async fn resume(&self, _node: NodeId) -> ClusterResult<()> {
        Err(ClusterError::Unsupported(
            "in-process nodes cannot be paused".into(),
        ))
    }
    async fn wipe(&self, node: NodeId) -> ClusterResult<()> {
        let dir = self.spec.node_dir(node).join("data");
        let _ = std::fs::remove_dir_all(dir);
        Ok(())
    }
    async fn state(&self, node: NodeId) -> ClusterResult<NodeState> {
        Ok(if self.lock().contains_key(&node) {
            NodeState::Running
        } else {
            NodeState::Down
        })
    }
    async fn collect_logs(&self, dir: &Path) -> ClusterResult<()> {
        for node in self.spec.node_ids() {
            let d = dir.join("nodes").join(cluster::node_name(node));
            std::fs::create_dir_all(&d).map_err(|e| ClusterError::Invalid(e.to_string()))?;
            std::fs::write(
                d.join("keeperd.log"),
                "in-process node: logs go to the test\n",
            )
            .map_err(|e| ClusterError::Invalid(e.to_string()))?;
        }
        Ok(())
    }
    async fn run_on_node(&self, _node: NodeId, _argv: &[String]) -> ClusterResult<CommandRecord> {
        Err(ClusterError::Unsupported(
            "in-process nodes share the test's network".into(),
        ))
    }
    async fn teardown(&self) -> ClusterResult<()> {
        self.teardowns.fetch_add(1, Ordering::SeqCst);
        for node in self.spec.node_ids() {
            self.shut_down(node).await;
        }
        Ok(())
    }
}

fn config(workload: WorkloadKind, nemesis: &[&str], time_limit_ms: u64) -> TestConfig {
    TestConfig {
        workload,
        system: Default::default(),
        protocol: Default::default(),
        backend: BackendKind::Local,
        nodes: 3,
        nemesis: nemesis.join(",").parse().expect("known faults"),
        time_limit_ms,
        rate: 50.0,
        concurrency: 3,
        seed: 7,
        read_consistency: if workload.needs_linearizable_reads() {
            Consistency::Linearizable
        } else {
            Consistency::Local
        },
        op_timeout_ms: 2_000,
        node_choice: NodeChoice::Random,
        recovery_timeout_ms: 20_000,
        nemesis_interval_ms: 1_500,
        server_bug: None,
        keeperd: PathBuf::from("in-process"),
        keeperd_args: Vec::new(),
    }
}

/// Runs `config` on an in-process cluster; returns the outcome and the backend.
async fn run(
    config: TestConfig,
    planted: Planted,
    results: &Path,
) -> (schism::runner::RunOutcome, Arc<InProcessCluster>) {
    // The spec's base directory must be the run's; the run directory does not exist yet, so
    // the nodes keep their data beside the results instead.
    // Each cluster its own run id: the local backend draws the nodes' /24 from it, so the
    // tests of this file, which run at once in one process, do not pick the same addresses.
    static CLUSTERS_MADE: AtomicUsize = AtomicUsize::new(0);
    let run_id = format!(
        "phases{}p{}",
        CLUSTERS_MADE.fetch_add(1, Ordering::SeqCst),
        std::process::id()
    );
    let spec = ClusterSpec::new(
        config.nodes,
        PathBuf::from("in-process"),
        &run_id,
        results.join("nodes-of-the-in-process-cluster"),
    );
    let cluster = Arc::new(InProcessCluster::new(spec, planted));
    let system: Arc<dyn System> =
        Arc::from(schism::system::for_kind(config.system, results).expect("an HTTP client"));
    let req = RunRequest {
        config,
        results_root: results.to_path_buf(),
        command_line: vec!["phases-test".into()],
        replay_of: None,
    };
    let progress = Progress::new(Duration::from_millis(req.config.time_limit_ms));
    let outcome = run_test_on(
        req,
        cluster.clone(),
        system,
        CancellationToken::new(),
        &progress,
    )
    .await;
    (outcome, cluster)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_run_goes_through_every_phase_and_leaves_its_records() {
    let results = tempfile::tempdir().unwrap();
    let (outcome, cluster) = run(
        config(WorkloadKind::Register, &["kill"], 6_000),
        Planted::default(),
        results.path(),
    )
    .await;
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    let dir = outcome
        .run_dir
        .as_ref()
        .expect("a run directory")
        .path
        .clone();
    for file in [
        TEST_FILE,
        HISTORY_FILE,
        STATUS_FILE,
        RECOVERY_FILE,
        RESULTS_FILE,
    ] {
        assert!(
            dir.join(file).is_file(),
            "{file} missing in {}",
            dir.display()
        );
    }
    assert!(outcome.report.as_ref().is_some_and(|p| p.is_file()));
    assert_eq!(cluster.teardowns.load(Ordering::SeqCst), 1);
    assert!(
        cluster.lock().is_empty(),
        "every node is stopped at the end"
    );

    // The history holds completed operations, and the faults really happened.
    let history = std::fs::read_to_string(dir.join(HISTORY_FILE)).unwrap();
    let oks = history
        .lines()
        .filter_map(|l| serde_json::from_str::<checker::history::Event>(l).ok())
        .filter(|e| e.kind == EventType::Ok)
        .count();
    assert!(oks > 10, "only {oks} operations completed");
    let nemesis = std::fs::read_to_string(dir.join(checker::run_dir::NEMESIS_FILE)).unwrap();
    assert!(nemesis.contains("kill"), "no kill in the nemesis log");

    // The correct server under kills: every checker has its say and the verdict is valid.
    let results = outcome.results.as_ref().expect("results");
    assert_eq!(results.verdict, Verdict::Valid, "{results:#?}");
    assert!(results.checkers.iter().any(|c| c.name == "recovery"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_setup_has_no_history_yet_is_torn_down() {
    let results = tempfile::tempdir().unwrap();
    let planted = Planted {
        setup_fails: true,
        ..Planted::default()
    };
    let (outcome, cluster) = run(
        config(WorkloadKind::Register, &[], 2_000),
        planted,
        results.path(),
    )
    .await;
    assert_eq!(outcome.exit_code(), schism::verdict::EXIT_HARNESS_FAILURE);
    let error = format!("{:#}", outcome.error.expect("the run failed"));
    assert!(error.contains("planted: setup fails"), "{error}");
    assert!(
        outcome.results.is_none(),
        "nothing to check without a history"
    );
    let dir = outcome.run_dir.expect("the run directory exists").path;
    assert!(dir.join(TEST_FILE).is_file());
    assert!(!dir.join(HISTORY_FILE).exists());
    assert_eq!(cluster.teardowns.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cluster_that_never_serves_fails_the_setup_with_what_it_saw() {
    let results = tempfile::tempdir().unwrap();
    let planted = Planted {
        never_serves: true,
        ..Planted::default()
    };
    let (outcome, cluster) = run(
        config(WorkloadKind::Register, &[], 2_000),
        planted,
        results.path(),
    )
    .await;
    let error = format!("{:#}", outcome.error.expect("the run failed"));
    assert!(error.contains("did not serve"), "{error}");
    assert!(error.contains("3 of 3 nodes answered"), "{error}");
    assert!(outcome.results.is_none());
    assert_eq!(cluster.teardowns.load(Ordering::SeqCst), 1);
    assert!(cluster.lock().is_empty());
}
