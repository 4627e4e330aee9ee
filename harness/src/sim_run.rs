//! One seed of `schism sim --workload W`: schism's own workload against the simulated cluster.
//!
//! Everything a real run's clients do runs unchanged: the workload's setup, its generator, the
//! workers (Jepsen processes, `info` on doubt, a new process after it), the workload's client
//! over a [`Conn`](crate::workload::conn) whose transport is the simulation's port, the final
//! reads, and the workload's checkers. Only the cluster is simulated (`sim::Sim` with a port:
//! the real keeper cores under the seed's faults). They share one clock: a current-thread tokio
//! runtime whose clock is paused, so it moves only when every task waits, straight to the next
//! timer; a driver task steps the simulation to the runtime's time every `Sim::STEP_MS` and hands
//! the nodes' replies and events to the clients. No wall clock is read and no task runs on
//! another thread, so a seed's history is the same on every run.

use crate::client::Node;
use crate::config::{NodeChoice, Protocol};
use crate::generator::Pacer;
use crate::recorder::{Recorder, RunClock};
use crate::worker::{self, WorkerShared};
use crate::workload::conn::SimLink;
use crate::workload::{self, Env, Workload};
use ::sim::{Sim, SimConfig, SimOutcome};
use checker::WorkloadKind;
use checker::liveness::Recovery;
use keeper_wire::Consistency;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// A client gives up on an operation after this long and records it as indeterminate, as the
/// simulation's own clients do.
const OP_TIMEOUT_MS: u64 = 2_000;
/// A workload's clients issue this many times the operations per second the seed drew for the
/// simulation's own clients (10 to 50): a workload's rarer operations (a `resign`, a `delete`
/// that finds its znode) then succeed in most seeds, as in a real run at its default 200/s.
const WORKLOAD_RATE_FACTOR: u64 = 4;
/// How long the final reads may take after the liveness phase.
const FINAL_READS_MS: u64 = ::sim::RECOVERY_BOUND_MS;
/// After the liveness phase the workload runs on the healed cluster in rounds this long, until
/// every operation kind it invoked has succeeded once (so that every checker has evidence: a
/// seed whose faults kept, say, every `resign` from succeeding would leave `stats` nothing to
/// judge), ...
const QUIET_ROUND_MS: u64 = Sim::QUIET_MS;
/// ... for this long at most; a cluster that cannot serve then leaves the checkers `unknown`
/// (and `recovery` says why).
const QUIET_MAX_MS: u64 = 15_000;

/// Runs seed `cfg.seed` with workload `kind` and checks it with the workload's checkers.
pub fn run_seed(cfg: &SimConfig, kind: WorkloadKind) -> SimOutcome {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a current-thread runtime builds");
    let link = SimLink::new(Sim::with_port(cfg));
    let (history, recovery, notes) = runtime.block_on(run(link.clone(), cfg.seed, kind));
    // Every task still holding the link (heartbeats of sessions left open, a workload's
    // background task) goes with the runtime.
    drop(runtime);
    let sim = link
        .into_sim()
        .expect("no client holds the simulation once its runtime is gone");
    let mut outcome = sim.finish(history, kind.name(), recovery);
    outcome.verdict.warnings.extend(notes);
    outcome
}

/// The phases of a real run, in simulated time: warm-up, setup, workload under faults, heal,
/// liveness, a quiet workload phase, final reads. Returns the history, the recovery record and notes for the verdict.
async fn run(
    link: SimLink,
    seed: u64,
    kind: WorkloadKind,
) -> (Vec<checker::history::Event>, Recovery, Vec<String>) {
    let clock = RunClock::start_now();
    let stop = CancellationToken::new();
    let driver = tokio::spawn(drive(link.clone(), clock, stop.clone()));
    let (ids, swarm) = link.with_sim(|s| (s.node_ids().to_vec(), s.swarm().clone()));
    let env = Arc::new(Env {
        nodes: ids
            .iter()
            .map(|&id| Node {
                name: cluster::node_name(id),
                url: format!("sim://{}", cluster::node_name(id)),
                zk_addr: String::new(),
            })
            .collect(),
        protocol: Protocol::Http,
        op_timeout: Duration::from_millis(OP_TIMEOUT_MS),
        read_consistency: Consistency::Linearizable,
        seed,
        concurrency: swarm.clients,
        sim: Some(link.clone()),
    });
    let workload: Arc<dyn Workload> = Arc::from(workload::by_kind(kind));
    let recorder = Recorder::in_memory(clock);
    let mut notes = Vec::new();

    tokio::time::sleep(Duration::from_millis(Sim::WARMUP_MS)).await;
    if let Err(e) = workload.setup(&env).await {
        // A fault-free cluster that cannot create a few znodes: nothing was tested.
        notes.push(format!("the workload's setup failed: {e:#}"));
    }

    link.with_sim(Sim::start_faults);
    let shared = WorkerShared {
        workload: workload.clone(),
        env: env.clone(),
        recorder: recorder.clone(),
        pacer: Pacer::new((swarm.op_rate * WORKLOAD_RATE_FACTOR) as f64, swarm.clients),
        concurrency: swarm.clients,
        node_choice: NodeChoice::Random,
        seed,
        process_base: 0,
        deadline: Instant::now() + Duration::from_millis(swarm.fault_ms),
        cancel: CancellationToken::new(),
    };
    worker::run_workers(shared.clone()).await;

    // Heal, then the liveness phase, which steps the simulation itself: the runtime's clock
    // then catches up with it.
    let recovery = link.with_sim(|s| {
        s.heal();
        s.liveness()
    });
    let behind_ms = link
        .with_sim(|s| s.elapsed_ms())
        .saturating_sub(elapsed_ms(clock));
    tokio::time::advance(Duration::from_millis(behind_ms)).await;
    link.deliver_pending();

    let quiet_start = Instant::now();
    loop {
        let round = WorkerShared {
            process_base: recorder.fresh_process(),
            deadline: Instant::now() + Duration::from_millis(QUIET_ROUND_MS),
            ..shared.clone()
        };
        worker::run_workers(round).await;
        let all_succeeded =
            recorder.stats(kind.recovery_ops()).result().verdict == checker::Verdict::Valid;
        if all_succeeded || quiet_start.elapsed() >= Duration::from_millis(QUIET_MAX_MS) {
            break;
        }
    }

    crate::runner::final_reads(
        &shared,
        workload.as_ref(),
        Duration::from_millis(FINAL_READS_MS),
        &mut notes,
    )
    .await;
    stop.cancel();
    let _ = driver.await;
    (recorder.take_events(), recovery, notes)
}

fn elapsed_ms(clock: RunClock) -> u64 {
    clock.now_ns() / 1_000_000
}

/// Steps the simulation to the runtime's time, one step at a time, and delivers what the
/// nodes said, until `stop`.
async fn drive(link: SimLink, clock: RunClock, stop: CancellationToken) {
    let start = Instant::from_std(clock.start());
    loop {
        let next = start + Duration::from_millis(link.with_sim(|s| s.elapsed_ms()) + Sim::STEP_MS);
        tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep_until(next) => {}
        }
        link.advance_to(elapsed_ms(clock));
    }
}
