//! The phases of `schism test`:
//!
//! 1. create the run directory and write `test.json`;
//! 2. set up the cluster and wait until it serves;
//! 3. prepare the workload; start the clock, the status sampler, the workers and the nemesis
//!    for the time limit;
//! 4. heal everything and wait for the cluster to recover;
//! 5. final reads;
//! 6. collect logs and tear down — also on error and on Ctrl-C;
//! 7. check the history and write `results.json` and `report.html`.
//!
//! Every phase is bounded (time limit, recovery timeout, per-operation timeouts) and
//! cancellable, and the teardown runs whatever happened before it.

use crate::config::{TestConfig, UsageError};
use crate::generator::Pacer;
use crate::keeperd::{STATIC_TARGET, is_static_elf, versions};
use crate::progress::{ActiveFaults, Progress};
use crate::recorder::{Recorder, RunClock};
use crate::status;
use crate::store::{HISTORY_FILE, RunDir, STATUS_FILE, TestRecord, iso_timestamp};
use crate::system::{System, SystemKind};
use crate::verdict::{EXIT_BAD_ARGUMENTS, EXIT_HARNESS_FAILURE, Results};
use crate::worker::{self, WorkerShared};
use crate::workload::{self, Env, Node, Workload};
use anyhow::{Context, anyhow};
use checker::history::EventType;
use checker::liveness::{RECOVERY_FILE, Recovery};
use cluster::{Backend, BackendKind, Cluster, ClusterSpec};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio_util::sync::CancellationToken;

/// Longest the fresh cluster may take to elect a leader and serve.
pub const SETUP_READY_TIMEOUT_MS: u64 = 30_000;
/// Longest collecting logs and tearing down may take before we give up (then `schism clean`).
pub const TEARDOWN_TIMEOUT_MS: u64 = 60_000;

/// What to run.
#[derive(Clone, Debug)]
pub struct RunRequest {
    pub config: TestConfig,
    pub results_root: PathBuf,
    pub command_line: Vec<String>,
    /// For `replay`: the run whose fault schedule is replayed.
    pub replay_of: Option<PathBuf>,
}

/// How a run ended.
pub struct RunOutcome {
    pub run_dir: Option<RunDir>,
    pub results: Option<Results>,
    pub report: Option<PathBuf>,
    /// The harness's own failure, if any (the results may still exist: a run that failed
    /// half-way is checked as far as it got).
    pub error: Option<anyhow::Error>,
    pub seconds: f64,
    /// Cut short by Ctrl-C: what ran was checked, but the test asked for was not done.
    pub interrupted: bool,
}

impl RunOutcome {
    pub fn exit_code(&self) -> i32 {
        match (&self.error, &self.results) {
            (Some(e), _) if e.downcast_ref::<UsageError>().is_some() => EXIT_BAD_ARGUMENTS,
            (Some(_), _) => EXIT_HARNESS_FAILURE,
            // A violation found before the interruption stands; a clean partial run proves
            // less than was asked, so it is not reported as valid.
            (None, Some(r)) if self.interrupted => {
                crate::verdict::combine([r.verdict, crate::verdict::Verdict::Unknown]).exit_code()
            }
            (None, Some(r)) => r.verdict.exit_code(),
            (None, None) => EXIT_HARNESS_FAILURE,
        }
    }
}

/// Where a run's nodes come from.
enum Target<B> {
    /// The backend and system the configuration names (`schism test`).
    FromConfig,
    /// Already made: the runner's tests give an in-process cluster.
    Given(Arc<B>, Arc<dyn System>),
}

/// Runs one test. Never panics on a failing cluster: every failure ends up in the outcome.
pub async fn run_test(
    req: RunRequest,
    cancel: CancellationToken,
    progress: &Progress,
) -> RunOutcome {
    run_test_at::<Cluster>(req, Target::FromConfig, cancel, progress).await
}

/// Runs one test on `cluster` (not yet set up) and `system`, instead of the backend and system
/// the configuration names: every phase as `run_test`, for tests without root.
pub async fn run_test_on<B: Backend + 'static>(
    req: RunRequest,
    cluster: Arc<B>,
    system: Arc<dyn System>,
    cancel: CancellationToken,
    progress: &Progress,
) -> RunOutcome {
    run_test_at(req, Target::Given(cluster, system), cancel, progress).await
}

async fn run_test_at<B: Backend + 'static>(
    req: RunRequest,
    target: Target<B>,
    cancel: CancellationToken,
    progress: &Progress,
) -> RunOutcome {
    let started = Instant::now();
    let mut outcome = RunOutcome {
        run_dir: None,
        results: None,
        report: None,
        error: None,
        seconds: 0.0,
        interrupted: false,
    };
    if let Err(e) = req.config.validate() {
        outcome.error = Some(e.into());
        return outcome;
    }
    // The backend's privileges and tools before anything is created: a run that cannot start
    // leaves no results directory behind (issue 11).
    let kind = req.config.backend;
    let preflight = match target {
        Target::FromConfig => cluster::preflight::check(kind),
        Target::Given(..) => Ok(()),
    };
    if let Err(e) = preflight {
        outcome.error = Some(anyhow!(UsageError(format!(
            "cannot use the {kind} backend: {e}"
        ))));
        return outcome;
    }
    let run = match RunDir::create(
        &req.results_root,
        req.config.workload.name(),
        req.config.seed,
        SystemTime::now(),
    ) {
        Ok(run) => run,
        Err(e) => {
            outcome.error = Some(e);
            return outcome;
        }
    };
    outcome.run_dir = Some(run.clone());
    let record = TestRecord {
        config: req.config.clone(),
        versions: match req.config.system {
            SystemKind::Keeper => versions(&req.config.keeperd).await,
            SystemKind::Zookeeper => crate::store::Versions {
                schism: env!("CARGO_PKG_VERSION").to_string(),
                keeperd: None,
                zookeeper: cluster::zookeeper::Install::discover()
                    .ok()
                    .and_then(|i| i.version()),
            },
        },
        command_line: req.command_line.clone(),
        started_at: iso_timestamp(SystemTime::now()),
        replay_of: req.replay_of.clone(),
    };
    if let Err(e) = run.write_test_record(&record) {
        outcome.error = Some(e);
        return outcome;
    }
    // Mark it latest now, so a crashed run is what `results/latest` shows.
    let _ = run.mark_latest(&req.results_root);
    progress.println(&format!(
        "schism: {} → {}",
        req.config.workload,
        run.path.display()
    ));

    let mut notes = Vec::new();
    let phases = match target {
        Target::FromConfig => run_cluster_phases(&req, &run, &cancel, progress, &mut notes).await,
        Target::Given(cluster, system) => {
            run_phases_on(&req, &run, cluster, system, &cancel, progress, &mut notes).await
        }
    };
    let ran_workload = match phases {
        Ok(ran) => ran,
        Err(e) => {
            let ran = e.has_history();
            let e = e.into_error();
            notes.push(format!("the run failed: {e:#}"));
            outcome.error = Some(e);
            ran
        }
    };
    if cancel.is_cancelled() {
        outcome.interrupted = true;
        notes.push("the run was interrupted (Ctrl-C or SIGTERM) before its end".into());
    }
    if req.config.workload.needs_linearizable_reads()
        && req.config.read_consistency != keeper_wire::Consistency::Linearizable
    {
        notes.push(format!(
            "reads were {}: {} does not promise that such reads are linearizable, so a stale read is reported as a violation of a guarantee that was not asked for",
            format!("{:?}", req.config.read_consistency).to_lowercase(),
            match req.config.system {
                SystemKind::Keeper => "keeper (like ZooKeeper)",
                SystemKind::Zookeeper => "ZooKeeper (its reads are sequentially consistent)",
            }
        ));
    }
    progress.finish();

    if ran_workload {
        progress.phase("checking");
        let to_check = run.clone();
        let checked = tokio::task::spawn_blocking(move || crate::check::check_run(&to_check))
            .await
            .unwrap_or_else(|e| Err(anyhow!("the checker crashed: {e}")));
        match checked {
            Ok(mut results) => {
                results.notes.extend(notes);
                if let Err(e) = run.write_results(&results) {
                    outcome.error.get_or_insert(e);
                }
                match crate::report::write_for_run(&run, &results) {
                    Ok(path) => outcome.report = Some(path),
                    Err(e) => {
                        outcome.error.get_or_insert(e.context("writing the report"));
                    }
                }
                outcome.results = Some(results);
            }
            Err(e) => {
                outcome
                    .error
                    .get_or_insert(e.context("checking the history"));
            }
        }
    }
    outcome.seconds = started.elapsed().as_secs_f64();
    outcome
}

/// How the cluster phases failed: before the history was started (nothing to check) or after
/// (the history so far is checked all the same).
#[derive(Debug)]
pub enum PhaseError {
    BeforeHistory(anyhow::Error),
    WithHistory(anyhow::Error),
}

impl PhaseError {
    /// Whether there is a history to check.
    pub fn has_history(&self) -> bool {
        matches!(self, PhaseError::WithHistory(_))
    }

    pub fn into_error(self) -> anyhow::Error {
        match self {
            PhaseError::BeforeHistory(e) | PhaseError::WithHistory(e) => e,
        }
    }
}

/// Phases 2–6. Ok(true) when the workload ran, so there is a history to check.
async fn run_cluster_phases(
    req: &RunRequest,
    run: &RunDir,
    cancel: &CancellationToken,
    progress: &Progress,
    notes: &mut Vec<String>,
) -> Result<bool, PhaseError> {
    let config = &req.config;
    progress.phase("setup");
    let mut spec = ClusterSpec::new(
        config.nodes,
        config.keeperd.clone(),
        &run.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        run.path.clone(),
    );
    spec.system = config.system;
    spec.bug = config.server_bug.clone();
    spec.extra_args = config.keeperd_args.clone();
    spec.lazyfs = crate::faults::lazyfs_for(config).map_err(PhaseError::BeforeHistory)?;
    spec.faketime = crate::faults::faketime_for(config).map_err(PhaseError::BeforeHistory)?;
    if config.backend == BackendKind::Docker && is_static_elf(&config.keeperd) != Some(true) {
        return Err(PhaseError::BeforeHistory(anyhow!(UsageError(format!(
            "the docker backend needs a statically linked keeperd, and {} is not one: build it with \
                 `make build-static` (target/{STATIC_TARGET}/release/keeperd, found by default)",
            config.keeperd.display()
        )))));
    }
    let kind = config.backend;
    let cluster = Cluster::new(kind, spec).await.map_err(|e| {
        PhaseError::BeforeHistory(anyhow!(UsageError(format!(
            "cannot use the {} backend: {e}",
            kind
        ))))
    })?;
    let system: Arc<dyn System> = Arc::from(
        crate::system::for_kind(config.system, &run.path).map_err(PhaseError::BeforeHistory)?,
    );
    run_phases_on(req, run, Arc::new(cluster), system, cancel, progress, notes).await
}

/// Phases 2–6 on any backend and system under test: the seam the runner's own tests use with
/// an in-process cluster (no root, no processes). The backend is set up here and always torn
/// down, whatever happened in between.
pub async fn run_phases_on<B: Backend + 'static>(
    req: &RunRequest,
    run: &RunDir,
    cluster: Arc<B>,
    system: Arc<dyn System>,
    cancel: &CancellationToken,
    progress: &Progress,
    notes: &mut Vec<String>,
) -> Result<bool, PhaseError> {
    let result = tokio::select! {
        r = cluster.setup() => r.map_err(|e| PhaseError::BeforeHistory(anyhow!(e).context("setting up the cluster"))),
        _ = cancel.cancelled() => Err(PhaseError::BeforeHistory(anyhow!("interrupted during setup"))),
    };
    let result = match result {
        Ok(()) => run_workload_phases(req, run, &cluster, system, cancel, progress, notes).await,
        Err(e) => Err(e),
    };

    // Phase 6 runs whatever happened above.
    progress.phase("teardown");
    let teardown = async {
        if let Err(e) = cluster.collect_logs(&run.path).await {
            notes.push(format!("collecting node logs failed: {e}"));
        }
        cluster.teardown().await
    };
    match tokio::time::timeout(Duration::from_millis(TEARDOWN_TIMEOUT_MS), teardown).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => notes.push(format!("teardown failed: {e}; run `schism clean`")),
        Err(_) => notes.push(format!(
            "teardown did not finish within {TEARDOWN_TIMEOUT_MS} ms; run `schism clean`"
        )),
    }
    result
}

/// Phases 2 (wait) to 5.
/// What every phase of a run with a workload looks at.
struct Phases<'a> {
    config: &'a TestConfig,
    run: &'a RunDir,
    system: &'a dyn System,
    nodes: &'a [Node],
    cancel: &'a CancellationToken,
    progress: &'a Progress,
}

async fn run_workload_phases<B: Backend + 'static>(
    req: &RunRequest,
    run: &RunDir,
    cluster: &Arc<B>,
    system: Arc<dyn System>,
    cancel: &CancellationToken,
    progress: &Progress,
    notes: &mut Vec<String>,
) -> Result<bool, PhaseError> {
    let config = &req.config;
    let nodes = nodes_of(cluster.as_ref(), config.nodes)?;
    let phases = Phases {
        config,
        run,
        system: system.as_ref(),
        nodes: &nodes,
        cancel,
        progress,
    };
    let (env, workload) = phases.setup().await?;

    // From here on there is a history, and everything is checked.
    let clock = RunClock::start_now();
    let recorder =
        Recorder::create(&run.file(HISTORY_FILE), clock).map_err(PhaseError::BeforeHistory)?;
    let background = CancellationToken::new();
    let sync_task = recorder.spawn_sync_task(background.clone());
    let sampler = status::spawn_sampler(
        system.clone(),
        nodes.clone(),
        &run.file(STATUS_FILE),
        clock,
        background.clone(),
    )
    .map_err(PhaseError::WithHistory)?;
    let faults = ActiveFaults::default();
    progress.phase("running");
    let progress_task = progress.spawn_updates(
        recorder.counters(),
        faults.clone(),
        clock.start(),
        background.clone(),
    );

    let deadline = tokio::time::Instant::from_std(clock.start()) + config.time_limit();
    let shared = WorkerShared {
        workload: workload.clone(),
        env: env.clone(),
        recorder: recorder.clone(),
        pacer: Pacer::new(config.rate, config.concurrency),
        concurrency: config.concurrency,
        node_choice: config.node_choice,
        seed: config.seed,
        process_base: 0,
        deadline,
        cancel: cancel.clone(),
    };
    let nemesis = crate::faults::start(
        config,
        run,
        cluster.clone(),
        clock,
        faults.clone(),
        cancel.clone(),
        req.replay_of.as_deref(),
    );
    let main_phase = async {
        let nemesis = nemesis.await?;
        worker::run_workers(shared.clone()).await;
        progress.phase("healing");
        nemesis.stop_and_heal().await
    };
    let mut failure = main_phase.await.err();
    faults.heal_all();
    if failure.is_none() {
        failure = phases.after_heal(&shared, clock, notes).await.err();
    }

    background.cancel();
    let _ = progress_task.await;
    let _ = sync_task.await;
    match sampler.await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => notes.push(format!("status sampling failed: {e:#}")),
        Err(e) => notes.push(format!("status sampling failed: {e}")),
    }
    if let Err(e) = recorder.finish() {
        failure.get_or_insert(e);
    }
    progress.finish();
    match failure {
        Some(e) => Err(PhaseError::WithHistory(e)),
        None => Ok(true),
    }
}

/// The nodes as the workload's clients see them; the backend must report every one.
fn nodes_of<B: Backend>(cluster: &B, expected: usize) -> Result<Vec<Node>, PhaseError> {
    let nodes: Vec<Node> = cluster
        .addrs()
        .into_iter()
        .map(|a| Node {
            name: a.name.clone(),
            url: a.client_url(),
            zk_addr: a.zk_addr().to_string(),
        })
        .collect();
    if nodes.len() != expected {
        return Err(PhaseError::BeforeHistory(anyhow!(
            "the backend reports {} nodes, not {expected}",
            nodes.len(),
        )));
    }
    Ok(nodes)
}

impl Phases<'_> {
    /// The setup phase, before any history: the fresh cluster serves, then the workload
    /// prepares its znodes.
    async fn setup(&self) -> Result<(Arc<Env>, Arc<dyn Workload>), PhaseError> {
        let (ready, view) = status::wait_until_serving(
            self.system,
            self.nodes,
            Duration::from_millis(SETUP_READY_TIMEOUT_MS),
            self.cancel,
        )
        .await;
        if !ready {
            return Err(PhaseError::BeforeHistory(anyhow!(
                "the fresh cluster did not serve within {SETUP_READY_TIMEOUT_MS} ms ({} of {} nodes answered, {} serving, leaders: {:?}); see {}/nodes/*/",
                view.answered,
                self.nodes.len(),
                view.serving,
                view.leaders,
                self.run.path.display()
            )));
        }
        let config = self.config;
        let env = Arc::new(Env {
            nodes: self.nodes.to_vec(),
            protocol: config.protocol,
            op_timeout: config.op_timeout(),
            read_consistency: config.read_consistency,
            seed: config.seed,
            concurrency: config.concurrency,
            sim: None,
        });
        let workload: Arc<dyn Workload> = Arc::from(workload::by_kind(config.workload));
        tokio::select! {
            r = workload.setup(&env) => r.map_err(|e| PhaseError::BeforeHistory(e.context("preparing the workload")))?,
            _ = self.cancel.cancelled() => return Err(PhaseError::BeforeHistory(anyhow!("interrupted during setup"))),
        }
        Ok((env, workload))
    }

    /// The phases after the heal: liveness (a leader, a write and a read within the recovery
    /// timeout), the workload's final reads, and convergence (every replica at one applied
    /// zxid); what they see goes to recovery.json, judged by the `recovery` and `convergence`
    /// checkers. Interrupted: stops between phases, and writes no recovery.json.
    async fn after_heal(
        &self,
        shared: &WorkerShared,
        clock: RunClock,
        notes: &mut Vec<String>,
    ) -> anyhow::Result<()> {
        let config = self.config;
        let healed = Instant::now();
        let mut recovery = Recovery {
            timeout_ms: config.recovery_timeout_ms,
            healed_at: clock.ns_at(healed),
            ..Recovery::default()
        };
        if self.cancel.is_cancelled() {
            return Ok(());
        }
        self.progress.phase("recovering");
        crate::recovery::until_serving(
            self.system,
            self.nodes,
            healed,
            config.recovery_timeout(),
            &mut recovery,
            self.cancel,
        )
        .await?;
        if self.cancel.is_cancelled() {
            return Ok(());
        }
        self.progress.phase("final reads");
        final_reads(
            shared,
            shared.workload.as_ref(),
            config.recovery_timeout(),
            notes,
        )
        .await;
        if self.cancel.is_cancelled() {
            return Ok(());
        }
        // The replicas must end up applying the same transactions; the sampler records their
        // digests meanwhile, for the convergence checker.
        self.progress.phase("converging");
        crate::recovery::until_converged(
            self.system,
            self.nodes,
            healed,
            Duration::from_millis(status::CONVERGE_TIMEOUT_MS),
            &mut recovery,
            self.cancel,
        )
        .await?;
        crate::store::write_json_synced(&self.run.file(RECOVERY_FILE), &recovery)
    }
}

/// Most rounds of final reads over all nodes.
const MAX_FINAL_ROUNDS: usize = 10;

/// The workload's final operations (`Workload::final_ops`), each retried on one node after
/// another until it succeeds or `within` runs out; a note for those that never did.
pub(crate) async fn final_reads(
    shared: &WorkerShared,
    workload: &dyn Workload,
    within: Duration,
    notes: &mut Vec<String>,
) {
    let ops = workload.final_ops();
    if ops.is_empty() {
        return;
    }
    let deadline = tokio::time::Instant::now() + within;
    let final_shared = WorkerShared {
        concurrency: 1,
        deadline,
        ..shared.clone()
    };
    let mut process = shared.recorder.fresh_process();
    let mut pending = ops;
    for round in 0..MAX_FINAL_ROUNDS * shared.env.nodes.len() {
        if pending.is_empty()
            || tokio::time::Instant::now() >= deadline
            || shared.cancel.is_cancelled()
        {
            break;
        }
        let node = shared.env.nodes[round % shared.env.nodes.len()].clone();
        let (next_process, completions) =
            worker::run_ops(&final_shared, process, node, pending.clone()).await;
        process = next_process + 1;
        pending = pending
            .into_iter()
            .zip(completions)
            .filter(|(_, c)| c.kind != EventType::Ok)
            .map(|(op, _)| op)
            .collect();
    }
    if !pending.is_empty() {
        notes.push(format!(
            "{} final operations never succeeded",
            pending.len()
        ));
    }
}

/// Makes a path absolute (relative to the current directory) so later `cd`s do not matter.
pub fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    if path.is_absolute() {
        return Ok(path.to_path_buf());
    }
    Ok(std::env::current_dir()
        .context("cannot read the current directory")?
        .join(path))
}

/// Reads the configuration of a stored run, for `replay`.
pub fn replay_request(
    dir: &Path,
    results_root: &Path,
    command_line: Vec<String>,
) -> anyhow::Result<RunRequest> {
    let run = RunDir::open(dir).map_err(|e| anyhow!(UsageError(format!("{e:#}"))))?;
    let record = run.read_test_record().map_err(|e| {
        anyhow!(UsageError(format!(
            "cannot replay {}: {e:#}",
            dir.display()
        )))
    })?;
    if !record.config.nemesis.is_empty() {
        // Read it now, so a schedule that cannot be replayed fails before anything is set up.
        crate::faults::schedule_for(&record.config, Some(dir))?;
    }
    Ok(RunRequest {
        config: record.config,
        results_root: results_root.to_path_buf(),
        command_line,
        replay_of: Some(absolute(dir)?),
    })
}
