//! Runs a schedule against a cluster: start each fault at its time, heal it after its duration,
//! log every start and heal with the exact commands, and heal everything at the end, on
//! cancellation and on error.

use crate::fault::{
    Fault, FaultKind, PartitionShape, Targets, delay_commands, drop_commands, flush_commands,
    loss_commands, qdisc_reset_commands, slow_commands,
};
use crate::grudge::{self, Grudge};
use crate::schedule::Schedule;
use crate::{NemesisError, netem_available};
use cluster::clock::ClockSetting;
use cluster::status::{current_leader, fetch_all, status_client};
use cluster::{Backend, BackendKind, NodeId, NodeState};
use serde::Serialize;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// One command run in a node's namespace, as logged.
#[derive(Serialize, Clone, Debug)]
pub struct CommandLog {
    pub node: NodeId,
    pub argv: Vec<String>,
    pub status: Option<i32>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub stderr: String,
}

/// One process action (kill, start, pause, resume), as logged.
#[derive(Serialize, Clone, Debug)]
pub struct ActionLog {
    pub node: NodeId,
    pub action: &'static str,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What the action reported (a power loss: what it dropped).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Start,
    Heal,
}

/// One line of `nemesis.jsonl`.
#[derive(Serialize, Clone, Debug)]
pub struct LogEntry {
    /// Nanoseconds since the log's origin (the harness's run clock).
    pub time_ns: u64,
    /// Index in the schedule's steps; absent for heal-all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<usize>,
    /// `partition`, `kill`, ..., or `heal-all`.
    pub fault: String,
    pub description: String,
    pub phase: Phase,
    /// The nodes the fault acted on.
    pub nodes: Vec<NodeId>,
    /// How a leader-dependent target was resolved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolution: Option<String>,
    /// For partitions: node -> nodes it drops.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grudge: Option<Grudge>,
    pub commands: Vec<CommandLog>,
    pub actions: Vec<ActionLog>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

type Observer = Arc<dyn Fn(&LogEntry) + Send + Sync>;

/// Where the nemesis writes its JSON lines, timed against the harness's clock.
pub struct FaultLog {
    out: Box<dyn Write + Send>,
    origin: Instant,
    observer: Option<Observer>,
    entries: Vec<LogEntry>,
}

impl FaultLog {
    pub fn new(out: Box<dyn Write + Send>, origin: Instant) -> FaultLog {
        FaultLog {
            out,
            origin,
            observer: None,
            entries: Vec::new(),
        }
    }

    /// Calls `observer` with every entry as it is written (for a progress display).
    pub fn with_observer(mut self, observer: Observer) -> FaultLog {
        self.observer = Some(observer);
        self
    }

    /// Every entry written so far.
    pub fn entries(&self) -> &[LogEntry] {
        &self.entries
    }

    fn now_ns(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }

    fn write(&mut self, entry: LogEntry) -> Result<(), NemesisError> {
        let line = serde_json::to_string(&entry).expect("a log entry serializes");
        if let Some(observer) = &self.observer {
            observer(&entry);
        }
        self.entries.push(entry);
        writeln!(self.out, "{line}")
            .and_then(|_| self.out.flush())
            .map_err(|e| NemesisError::Log(e.to_string()))
    }
}

/// Fails with one clear line when `kinds` cannot run on this backend or kernel.
pub async fn check_support(backend: BackendKind, kinds: &[FaultKind]) -> Result<(), NemesisError> {
    if backend == BackendKind::Local && kinds.iter().any(|k| k.is_network()) {
        return Err(NemesisError::Unsupported(
            cluster::local::NO_NETWORK_FAULTS.to_string(),
        ));
    }
    if kinds.contains(&FaultKind::PowerLoss) && backend == BackendKind::Docker {
        return Err(NemesisError::Unsupported(
            cluster::lazyfs::NO_POWER_LOSS_ON_DOCKER.to_string(),
        ));
    }
    if kinds.iter().any(|k| k.is_clock()) {
        if backend == BackendKind::Docker {
            return Err(NemesisError::Unsupported(
                cluster::clock::NO_CLOCK_FAULTS_ON_DOCKER.to_string(),
            ));
        }
        cluster::clock::check()?;
    }
    if kinds.contains(&FaultKind::Corrupt) && backend == BackendKind::Docker {
        return Err(NemesisError::Unsupported(NO_CORRUPT_ON_DOCKER.to_string()));
    }
    if kinds.contains(&FaultKind::Delay) && !netem_available().await {
        return Err(NemesisError::Unsupported(crate::NO_NETEM.to_string()));
    }
    Ok(())
}

/// The one line users see when `corrupt` meets the docker backend.
pub const NO_CORRUPT_ON_DOCKER: &str = "the docker backend cannot inject corrupt: its nodes' data is on Docker volumes, out of the harness's reach; use --backend netns or local (as root)";

/// What a started fault needs to be healed.
struct Active {
    step: usize,
    kind: FaultKind,
    description: String,
    nodes: Vec<NodeId>,
    strobe: Option<Strobe>,
}

/// A `clock-strobe` in progress: the task flipping the targets' clocks until it is stopped.
struct Strobe {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<cluster::Result<u64>>,
}

impl Strobe {
    /// Flips `nodes`' clocks `offset_ms` away and back every `period_ms`, from where each
    /// clock read at the start; when stopped, leaves them back there.
    fn start(
        spec: cluster::ClusterSpec,
        nodes: Vec<NodeId>,
        offset_ms: i64,
        period_ms: u64,
    ) -> Strobe {
        let stop = CancellationToken::new();
        let token = stop.clone();
        let task = tokio::spawn(async move {
            let jump = |ms| {
                nodes.iter().try_for_each(|&node| {
                    cluster::clock::set(&spec, node, ClockSetting::Jump { ms }).map(drop)
                })
            };
            let mut flips = 0u64;
            loop {
                let away = flips.is_multiple_of(2);
                jump(if away { offset_ms } else { -offset_ms })?;
                flips += 1;
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(period_ms)) => {}
                    _ = token.cancelled() => {
                        if away {
                            jump(-offset_ms)?;
                            flips += 1;
                        }
                        return Ok(flips);
                    }
                }
            }
        });
        Strobe { stop, task }
    }

    /// Stops flipping; returns how many flips there were.
    async fn stop(self) -> cluster::Result<u64> {
        self.stop.cancel();
        self.task.await.unwrap_or_else(|e| {
            Err(cluster::ClusterError::Invalid(format!(
                "the clock strobe task failed: {e}"
            )))
        })
    }
}

struct Outcome {
    nodes: Vec<NodeId>,
    resolution: Option<String>,
    grudge: Option<Grudge>,
    commands: Vec<CommandLog>,
    actions: Vec<ActionLog>,
    error: Option<NemesisError>,
    strobe: Option<Strobe>,
}

impl Outcome {
    fn new(nodes: Vec<NodeId>) -> Outcome {
        Outcome {
            nodes,
            resolution: None,
            grudge: None,
            commands: Vec::new(),
            actions: Vec::new(),
            error: None,
            strobe: None,
        }
    }

    /// Sets `node`'s clock, logging the control file's new line as the action's detail.
    fn set_clock(&mut self, spec: &cluster::ClusterSpec, node: NodeId, setting: ClockSetting) {
        let r = cluster::clock::set(spec, node, setting).map(|line| format!("faketime {line}"));
        self.action_with_detail(node, "set-clock", r);
    }

    async fn command<C: Backend>(&mut self, cluster: &C, node: NodeId, argv: Vec<String>) {
        match cluster.run_on_node(node, &argv).await {
            Ok(record) => {
                if !record.success() && self.error.is_none() {
                    self.error = Some(NemesisError::Cluster(record.clone().check().unwrap_err()));
                }
                self.commands.push(CommandLog {
                    node,
                    argv: record.argv,
                    status: record.status,
                    stderr: record.stderr.trim().to_string(),
                });
            }
            Err(e) => {
                self.commands.push(CommandLog {
                    node,
                    argv,
                    status: None,
                    stderr: e.to_string(),
                });
                self.error.get_or_insert(NemesisError::Cluster(e));
            }
        }
    }

    /// Attaches what the last action on `node` reported.
    /// An action whose success says what it did (the bytes a power loss dropped, the region a
    /// corruption damaged): logged with that as its detail.
    fn action_with_detail(
        &mut self,
        node: NodeId,
        action: &'static str,
        result: cluster::Result<String>,
    ) {
        let detail = result.as_ref().ok().cloned();
        self.action(node, action, result.map(|_| ()));
        if let Some(last) = self.actions.last_mut() {
            last.detail = detail;
        }
    }

    fn action(&mut self, node: NodeId, action: &'static str, result: cluster::Result<()>) {
        let error = result.err();
        self.actions.push(ActionLog {
            node,
            action,
            ok: error.is_none(),
            error: error.as_ref().map(|e| e.to_string()),
            detail: None,
        });
        if let Some(e) = error {
            self.error.get_or_insert(NemesisError::Cluster(e));
        }
    }
}

/// The node leading in the highest epoch; when none answers as leader, the lowest node id, so
/// the step still does something reproducible. The resolution is returned for the log.
async fn resolve_leader<C: Backend>(cluster: &C) -> (NodeId, String) {
    let statuses = fetch_all(&status_client(), &cluster.addrs()).await;
    match current_leader(&statuses) {
        Some(leader) => (leader, format!("leader is n{leader}")),
        None => {
            let fallback = cluster.node_ids().into_iter().min().unwrap_or(1);
            (
                fallback,
                format!("no node answered as leader; chose n{fallback}"),
            )
        }
    }
}

async fn resolve_targets<C: Backend>(
    cluster: &C,
    targets: &Targets,
) -> (Vec<NodeId>, Option<String>) {
    match targets {
        Targets::Nodes(nodes) => (nodes.clone(), None),
        Targets::All => (cluster.node_ids(), None),
        Targets::Leader => {
            let (leader, resolution) = resolve_leader(cluster).await;
            (vec![leader], Some(resolution))
        }
    }
}

/// The nodes a fault's targets name, and its outcome with how the targets were resolved.
async fn targeted<C: Backend>(cluster: &C, targets: &Targets) -> (Vec<NodeId>, Outcome) {
    let (nodes, resolution) = resolve_targets(cluster, targets).await;
    let mut out = Outcome::new(nodes.clone());
    out.resolution = resolution;
    (nodes, out)
}

async fn start_fault<C: Backend>(cluster: &C, fault: &Fault) -> Outcome {
    match fault {
        Fault::Partition { shape, grudge } => {
            let mut resolution = None;
            let grudge = match (shape, grudge) {
                (_, Some(g)) => g.clone(),
                (PartitionShape::IsolateLeader, None) => {
                    let (leader, r) = resolve_leader(cluster).await;
                    resolution = Some(r);
                    grudge::isolate(leader, &cluster.node_ids())
                }
                (_, None) => Grudge::new(),
            };
            let nodes: Vec<NodeId> = grudge
                .iter()
                .filter(|(_, d)| !d.is_empty())
                .map(|(n, _)| *n)
                .collect();
            let mut out = Outcome::new(nodes);
            out.resolution = resolution;
            apply_grudge(cluster, &grudge, &mut out).await;
            out.grudge = Some(grudge);
            out
        }
        Fault::Depose => {
            let ids = cluster.node_ids();
            let (old, _) = resolve_leader(cluster).await;
            let grudge = grudge::isolate(old, &ids);
            let mut out = Outcome::new(ids);
            apply_grudge(cluster, &grudge, &mut out).await;
            out.grudge = Some(grudge);
            // Wait (bounded) for the majority's new leader, then kill it.
            let deadline = tokio::time::Instant::now() + Duration::from_millis(DEPOSE_WAIT_MS);
            let new = loop {
                let statuses = fetch_all(&status_client(), &cluster.addrs()).await;
                match current_leader(&statuses) {
                    Some(l) if l != old => break Some(l),
                    _ if tokio::time::Instant::now() >= deadline => break None,
                    _ => tokio::time::sleep(Duration::from_millis(DEPOSE_POLL_MS)).await,
                }
            };
            out.resolution = Some(match new {
                Some(new) => {
                    let r = cluster.kill(new).await;
                    out.action(new, "kill", r);
                    format!("isolated leader n{old}; killed its successor n{new}")
                }
                None => format!(
                    "isolated leader n{old}; no successor within {DEPOSE_WAIT_MS} ms, none killed"
                ),
            });
            out
        }
        Fault::Kill { targets } => {
            let (nodes, mut out) = targeted(cluster, targets).await;
            for node in nodes {
                let r = cluster.kill(node).await;
                out.action(node, "kill", r);
            }
            out
        }
        Fault::PowerLoss { targets } => {
            let (nodes, mut out) = targeted(cluster, targets).await;
            // Killed first, so nothing the node does after the loss can reach its disk; the
            // process and its unsynced writes then die together, as at a power cut.
            for &node in &nodes {
                let r = cluster.kill(node).await;
                out.action(node, "kill", r);
            }
            for &node in &nodes {
                let r = cluster.lose_unsynced(node).await;
                out.action_with_detail(node, "lose-unsynced", r);
            }
            out
        }
        Fault::Corrupt {
            targets,
            file,
            damage,
            seed,
        } => {
            let (nodes, mut out) = targeted(cluster, targets).await;
            // Down first, so the node neither reads nor rewrites the file while it is damaged,
            // and finds the damage when it starts again at heal.
            for &node in &nodes {
                let r = cluster.kill(node).await;
                out.action(node, "kill", r);
                if out.error.is_some() {
                    continue;
                }
                let dir = cluster.spec().data_dir(node);
                let r = crate::corrupt::corrupt(&dir, *file, *damage, *seed);
                out.action_with_detail(node, "corrupt", r);
            }
            out
        }
        Fault::Pause { targets } => {
            let (nodes, mut out) = targeted(cluster, targets).await;
            for node in nodes {
                let r = cluster.pause(node).await;
                out.action(node, "pause", r);
            }
            out
        }
        Fault::ClockSkew { targets, rate } => {
            let (nodes, mut out) = targeted(cluster, targets).await;
            for node in nodes {
                out.set_clock(cluster.spec(), node, ClockSetting::Rate { rate: *rate });
            }
            out
        }
        Fault::ClockJump { targets, offset_ms } => {
            let (nodes, mut out) = targeted(cluster, targets).await;
            for node in nodes {
                out.set_clock(cluster.spec(), node, ClockSetting::Jump { ms: *offset_ms });
            }
            out
        }
        Fault::ClockStrobe {
            targets,
            offset_ms,
            period_ms,
        } => {
            let (nodes, mut out) = targeted(cluster, targets).await;
            out.strobe = Some(Strobe::start(
                cluster.spec().clone(),
                nodes,
                *offset_ms,
                *period_ms,
            ));
            out
        }
        Fault::Slow { nodes, rate_kbit } => {
            let mut out = Outcome::new(nodes.clone());
            for node in nodes {
                for cmd in slow_commands(*rate_kbit) {
                    out.command(cluster, *node, cmd).await;
                }
            }
            out
        }
        Fault::Flaky { nodes, loss } => {
            let mut out = Outcome::new(nodes.clone());
            for node in nodes {
                for cmd in loss_commands(*loss) {
                    out.command(cluster, *node, cmd).await;
                }
            }
            out
        }
        Fault::Delay {
            nodes,
            delay_ms,
            jitter_ms,
            reorder_percent,
        } => {
            let mut out = Outcome::new(nodes.clone());
            for node in nodes {
                for cmd in delay_commands(*delay_ms, *jitter_ms, *reorder_percent) {
                    out.command(cluster, *node, cmd).await;
                }
            }
            out
        }
    }
}

/// Longest a `depose-leader` waits for the majority's new leader, and how often it asks.
const DEPOSE_WAIT_MS: u64 = 15_000;
const DEPOSE_POLL_MS: u64 = 200;

/// Applies a grudge: each node drops traffic from the nodes it holds a grudge against.
async fn apply_grudge<C: Backend>(cluster: &C, grudge: &Grudge, out: &mut Outcome) {
    let addrs = cluster.addrs();
    for (node, dropped) in grudge {
        let ips: Vec<_> = addrs
            .iter()
            .filter(|a| dropped.contains(&a.id))
            .map(|a| a.ip)
            .collect();
        for cmd in drop_commands(&ips) {
            out.command(cluster, *node, cmd).await;
        }
    }
}

async fn heal_fault<C: Backend>(cluster: &C, active: &mut Active) -> Outcome {
    let mut out = Outcome::new(active.nodes.clone());
    if let Some(strobe) = active.strobe.take() {
        let flips = strobe.stop().await;
        for &node in &active.nodes {
            let r = flips
                .as_ref()
                .map(|n| format!("{n} flips"))
                .map_err(|e| cluster::ClusterError::Invalid(format!("strobing the clock: {e}")));
            out.action_with_detail(node, "stop-strobe", r);
        }
    }
    for &node in &active.nodes {
        match active.kind {
            FaultKind::ClockSkew | FaultKind::ClockJump | FaultKind::ClockStrobe => {
                out.set_clock(cluster.spec(), node, ClockSetting::Heal);
            }
            FaultKind::Partition | FaultKind::PartitionLeader | FaultKind::Flaky => {
                for cmd in flush_commands() {
                    out.command(cluster, node, cmd).await;
                }
            }
            FaultKind::Slow | FaultKind::Delay => {
                for cmd in qdisc_reset_commands() {
                    out.command(cluster, node, cmd).await;
                }
            }
            FaultKind::Kill
            | FaultKind::KillLeader
            | FaultKind::KillAll
            | FaultKind::PowerLoss
            | FaultKind::Corrupt => {
                let r = cluster.start(node).await;
                out.action(node, "start", r);
            }
            FaultKind::Pause => {
                let r = cluster.resume(node).await;
                out.action(node, "resume", r);
            }
            FaultKind::DeposeLeader => {
                for cmd in flush_commands() {
                    out.command(cluster, node, cmd).await;
                }
                if matches!(cluster.state(node).await, Ok(cluster::NodeState::Down)) {
                    let r = cluster.start(node).await;
                    out.action(node, "start", r);
                }
            }
        }
    }
    out
}

fn entry(
    log: &FaultLog,
    step: Option<usize>,
    fault: &str,
    description: &str,
    phase: Phase,
    out: &Outcome,
) -> LogEntry {
    LogEntry {
        time_ns: log.now_ns(),
        step,
        fault: fault.to_string(),
        description: description.to_string(),
        phase,
        nodes: out.nodes.clone(),
        resolution: out.resolution.clone(),
        grudge: out.grudge.clone(),
        commands: out.commands.clone(),
        actions: out.actions.clone(),
        error: out.error.as_ref().map(|e| e.to_string()),
    }
}

/// Removes every fault from every node: flushes our rules, removes our qdiscs, resumes paused
/// nodes and starts stopped ones. Runs every part even when one fails; returns the first error.
pub async fn heal_all<C: Backend>(cluster: &C, log: &mut FaultLog) -> Result<(), NemesisError> {
    let nodes = cluster.node_ids();
    let mut out = Outcome::new(nodes.clone());
    for &node in &nodes {
        match cluster.state(node).await {
            Ok(NodeState::Paused) => {
                let r = cluster.resume(node).await;
                out.action(node, "resume", r);
            }
            Ok(NodeState::Down) => {
                let r = cluster.start(node).await;
                out.action(node, "start", r);
            }
            Ok(NodeState::Running) => {}
            Err(e) => out.action(node, "state", Err(e)),
        }
    }
    if cluster.spec().faketime {
        for &node in &nodes {
            out.set_clock(cluster.spec(), node, ClockSetting::Heal);
        }
    }
    if cluster.kind() != BackendKind::Local {
        for &node in &nodes {
            for cmd in flush_commands() {
                out.command(cluster, node, cmd).await;
            }
            // Deleting the root qdisc fails when only the default is there; that is healed too.
            let before = out.error.is_some();
            for cmd in qdisc_reset_commands() {
                out.command(cluster, node, cmd).await;
            }
            if !before {
                out.error = None;
            }
        }
    }
    let line = entry(log, None, "heal-all", "heal all", Phase::Heal, &out);
    log.write(line)?;
    match out.error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// How a schedule run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunSummary {
    pub steps_started: usize,
    pub steps_healed: usize,
    pub cancelled: bool,
}

/// Runs `schedule` against `cluster` until it ends or `cancel` fires, then heals everything.
/// Step times are measured from the call. A fault that cannot be started or healed ends the
/// run with an error (after heal-all): a schedule that silently skipped faults would make the
/// test's verdict mean less than it claims.
pub async fn run_schedule<C: Backend>(
    cluster: &C,
    schedule: &Schedule,
    log: &mut FaultLog,
    cancel: &CancellationToken,
) -> Result<RunSummary, NemesisError> {
    check_support(cluster.kind(), &schedule.kinds()).await?;
    let start = tokio::time::Instant::now();
    let mut summary = RunSummary {
        steps_started: 0,
        steps_healed: 0,
        cancelled: false,
    };
    let result = run_steps(cluster, schedule, log, cancel, start, &mut summary).await;
    let healed = heal_all(cluster, log).await;
    result?;
    healed?;
    Ok(summary)
}

async fn run_steps<C: Backend>(
    cluster: &C,
    schedule: &Schedule,
    log: &mut FaultLog,
    cancel: &CancellationToken,
    start: tokio::time::Instant,
    summary: &mut RunSummary,
) -> Result<(), NemesisError> {
    for (i, step) in schedule.steps.iter().enumerate() {
        let at = start + Duration::from_millis(step.at_ms);
        tokio::select! {
            _ = tokio::time::sleep_until(at) => {}
            _ = cancel.cancelled() => {
                summary.cancelled = true;
                return Ok(());
            }
        }
        let description = step.fault.describe();
        let kind = step.fault.kind();
        let started = start_fault(cluster, &step.fault).await;
        let line = entry(
            log,
            Some(i),
            kind.name(),
            &description,
            Phase::Start,
            &started,
        );
        log.write(line)?;
        summary.steps_started += 1;
        let mut started = started;
        let mut active = Active {
            step: i,
            kind,
            description,
            nodes: started.nodes.clone(),
            strobe: started.strobe.take(),
        };
        let failed = started.error;
        if failed.is_none() {
            let until = at + Duration::from_millis(step.duration_ms);
            tokio::select! {
                _ = tokio::time::sleep_until(until) => {}
                _ = cancel.cancelled() => summary.cancelled = true,
            }
        }
        let healed = heal_fault(cluster, &mut active).await;
        let line = entry(
            log,
            Some(active.step),
            kind.name(),
            &active.description,
            Phase::Heal,
            &healed,
        );
        log.write(line)?;
        summary.steps_healed += 1;
        if let Some(e) = failed.or(healed.error) {
            return Err(e);
        }
        if summary.cancelled {
            return Ok(());
        }
    }
    Ok(())
}

/// A schedule running in the background (see [`spawn`]).
pub struct RunningSchedule {
    handle: tokio::task::JoinHandle<Result<RunSummary, NemesisError>>,
    cancel: CancellationToken,
}

impl RunningSchedule {
    /// Stops injecting, heals every fault, and waits for that to finish.
    pub async fn stop_and_heal(self) -> Result<RunSummary, NemesisError> {
        self.cancel.cancel();
        self.wait().await
    }

    /// Waits for the schedule to end on its own (it heals everything before it returns).
    pub async fn wait(self) -> Result<RunSummary, NemesisError> {
        self.handle
            .await
            .map_err(|e| NemesisError::Invalid(format!("the nemesis task failed: {e}")))?
    }
}

/// Runs [`run_schedule`] on a tokio task; `cancel` (or [`RunningSchedule::stop_and_heal`])
/// stops it, and it heals everything either way.
pub fn spawn<C: Backend + 'static>(
    cluster: Arc<C>,
    schedule: Schedule,
    mut log: FaultLog,
    cancel: CancellationToken,
) -> RunningSchedule {
    let token = cancel.child_token();
    let task_token = token.clone();
    let handle =
        tokio::spawn(
            async move { run_schedule(&*cluster, &schedule, &mut log, &task_token).await },
        );
    RunningSchedule {
        handle,
        cancel: token,
    }
}
