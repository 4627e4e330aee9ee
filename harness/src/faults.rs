//! The nemesis during a test: generates (or, for a replay, loads) the seeded fault schedule,
//! writes it to `schedule.json` before anything runs, and runs it against the cluster with the
//! nemesis crate, which logs to `nemesis.jsonl` on the run's clock and heals everything when
//! the schedule ends, is stopped, or fails.

use crate::config::{TestConfig, UsageError};
use crate::generator::derive_seed;
use crate::progress::ActiveFaults;
use crate::recorder::RunClock;
use crate::store::{NEMESIS_FILE, RunDir, SCHEDULE_FILE};
use anyhow::{Context, anyhow};
use cluster::Backend;
use nemesis::{FaultKind, FaultLog, LogEntry, Pacing, Phase, Schedule};
use std::path::Path;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// The `schism-lazyfs` binary the cluster mounts each node's data directory with, when the
/// test's faults include `power-loss` (it is looked for next to schism); `None` otherwise, so
/// tests without that fault keep plain directories.
pub fn lazyfs_for(config: &TestConfig) -> anyhow::Result<Option<std::path::PathBuf>> {
    if !config.nemesis.contains(FaultKind::PowerLoss) {
        return Ok(None);
    }
    if config.backend == crate::config::BackendKind::Docker {
        return Err(anyhow!(UsageError(
            cluster::lazyfs::NO_POWER_LOSS_ON_DOCKER.to_string()
        )));
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("schism-lazyfs")));
    match beside {
        Some(path) if path.is_file() => Ok(Some(path)),
        _ => Err(anyhow!(UsageError(
            "power-loss needs schism-lazyfs next to schism: build it with `cargo build -p lazyfs`"
                .to_string()
        ))),
    }
}

/// Whether the nodes must start under libfaketime: the test's faults change clocks. Refused
/// with one line on docker (its keeperd is static) and when libfaketime is not installed.
pub fn faketime_for(config: &TestConfig) -> anyhow::Result<bool> {
    if !config.nemesis.has_clock() {
        return Ok(false);
    }
    if config.backend == crate::config::BackendKind::Docker {
        return Err(anyhow!(UsageError(
            cluster::clock::NO_CLOCK_FAULTS_ON_DOCKER.to_string()
        )));
    }
    cluster::clock::check().map_err(|e| anyhow!(UsageError(e.to_string())))?;
    Ok(true)
}

/// A nemesis that is running (or none, for a test without faults).
pub struct RunningNemesis {
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    stop: CancellationToken,
}

impl RunningNemesis {
    /// Stops injecting, heals every fault, and waits for that to finish.
    pub async fn stop_and_heal(self) -> anyhow::Result<()> {
        self.stop.cancel();
        match self.task {
            Some(task) => task
                .await
                .map_err(|e| anyhow!("the nemesis crashed: {e}"))?,
            None => Ok(()),
        }
    }
}

/// The schedule for this run: the stored one for a replay, else generated from the seed.
pub fn schedule_for(config: &TestConfig, replay_of: Option<&Path>) -> anyhow::Result<Schedule> {
    if let Some(dir) = replay_of {
        let path = dir.join(SCHEDULE_FILE);
        return Schedule::read(&path)
            .map_err(|e| anyhow!(UsageError(format!("cannot replay: {e}"))));
    }
    let kinds = config.nemesis.kinds();
    let nodes: Vec<cluster::NodeId> = (1..=config.nodes as cluster::NodeId).collect();
    Schedule::generate(
        derive_seed(config.seed, "nemesis", 0),
        kinds,
        &nodes,
        config.time_limit_ms,
        Pacing::around_interval(config.nemesis_interval_ms),
    )
    .map_err(|e| anyhow!(UsageError(e.to_string())))
}

/// Starts the nemesis. The schedule's times count from this call, which the runner makes
/// when its clock starts.
pub async fn start<B: Backend + 'static>(
    config: &TestConfig,
    run: &RunDir,
    cluster: Arc<B>,
    clock: RunClock,
    faults: ActiveFaults,
    cancel: CancellationToken,
    replay_of: Option<&Path>,
) -> anyhow::Result<RunningNemesis> {
    let log_file = std::fs::File::create(run.file(NEMESIS_FILE))
        .with_context(|| format!("cannot create {}", run.file(NEMESIS_FILE).display()))?;
    let stop = cancel.child_token();
    if config.nemesis.is_empty() {
        return Ok(RunningNemesis { task: None, stop });
    }
    let schedule = schedule_for(config, replay_of)?;
    // Written before the first fault, so even a crashed run can be replayed.
    schedule
        .write(&run.file(SCHEDULE_FILE))
        .map_err(|e| anyhow!(e))?;
    nemesis::check_support(cluster.kind(), &schedule.kinds())
        .await
        .map_err(|e| anyhow!(UsageError(e.to_string())))?;
    let observer = move |entry: &LogEntry| {
        let id = entry.step.map(|s| s.to_string()).unwrap_or_default();
        match (entry.phase, entry.step) {
            (Phase::Start, _) => faults.start(&id, &entry.description),
            (Phase::Heal, Some(_)) => faults.heal(&id),
            (Phase::Heal, None) => faults.heal_all(),
        }
    };
    let mut log = FaultLog::new(Box::new(std::io::BufWriter::new(log_file)), clock.start())
        .with_observer(Arc::new(observer));
    let token = stop.clone();
    let task = tokio::spawn(async move {
        nemesis::run_schedule(cluster.as_ref(), &schedule, &mut log, &token)
            .await
            .map(|_| ())
            .map_err(|e| anyhow!(e).context("the nemesis failed"))
    });
    Ok(RunningNemesis {
        task: Some(task),
        stop,
    })
}

#[cfg(test)]
mod tests {
    use checker::run_dir::NemesisEntry;
    use nemesis::{LogEntry, Phase};

    /// The checker and the report read `nemesis.jsonl` through `run_dir::NemesisEntry`; the
    /// nemesis writes its own `LogEntry`. A line the one writes must mean the same to the other.
    #[test]
    fn the_run_dirs_nemesis_entry_reads_what_the_nemesis_writes() {
        let entry = LogEntry {
            time_ns: 1_500,
            step: Some(3),
            fault: "partition".into(),
            description: "partition isolate-leader".into(),
            phase: Phase::Heal,
            nodes: vec![1, 3],
            resolution: Some("leader is n3".into()),
            grudge: None,
            commands: Vec::new(),
            actions: Vec::new(),
            error: None,
        };
        let line = serde_json::to_string(&entry).unwrap();
        let read: NemesisEntry = serde_json::from_str(&line).unwrap();
        assert_eq!(read.time_ns, 1_500);
        assert_eq!(read.step, Some(serde_json::json!(3)));
        assert_eq!(read.fault, "partition");
        assert_eq!(
            read.description.as_deref(),
            Some("partition isolate-leader")
        );
        assert_eq!(read.phase, "heal");
        assert_eq!(read.nodes, vec![1, 3]);
        assert_eq!(read.resolution.as_deref(), Some("leader is n3"));
    }
}
