//! Workers: each one runs Jepsen processes, one operation at a time.
//!
//! A worker invokes, waits for the completion, records both, and repeats. When an operation's
//! outcome is unknown (`info`: a timeout, a lost connection), that process may still have an
//! operation in flight as far as the checker knows, so it never invokes again: the worker
//! drops its client and continues as a new process, `process + concurrency` (Jepsen's rule).
//! Every wait is bounded: the per-operation timeout is passed to the client, and the worker
//! enforces it again around the call ([`OP_GRACE_MS`] later) so a stuck client cannot hang it.

pub use crate::client::{Client, Completion, Node};
use crate::config::NodeChoice;
use crate::generator::{Context, Op, Pacer, derive_seed, worker_rng};
use crate::recorder::Recorder;
use crate::workload::{Env, OpenContext, Workload};
use checker::history::{Event, EventType};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How much longer than the operation's own timeout the worker waits before it gives up on
/// the client and records `info` itself.
pub const OP_GRACE_MS: u64 = 500;
/// Pause before trying again to open a client (a session) after a failure.
pub const OPEN_RETRY_MS: u64 = 200;
/// Longest a client may take to close; closing is best effort.
pub const CLOSE_TIMEOUT_MS: u64 = 2000;

/// What every worker shares.
#[derive(Clone)]
pub struct WorkerShared {
    pub workload: Arc<dyn Workload>,
    pub env: Arc<Env>,
    pub recorder: Recorder,
    pub pacer: Pacer,
    pub concurrency: usize,
    pub node_choice: NodeChoice,
    pub seed: u64,
    /// Worker w starts as process `process_base + w` (0 in a run's main phase; a later phase
    /// starts above every process so far, since one that ended `info` may never invoke again).
    pub process_base: u64,
    /// No invocation starts at or after this instant.
    pub deadline: Instant,
    /// Ctrl-C or a fatal error elsewhere: stop now.
    pub cancel: CancellationToken,
}

/// A worker's current process and client.
struct Slot {
    process: u64,
    client: Option<(Box<dyn Client>, Node)>,
}

/// Runs worker `worker` until the deadline, cancellation, or its generator ends.
pub async fn run_worker(shared: WorkerShared, worker: usize) {
    let mut rng = worker_rng(shared.seed, worker);
    // Node choice has its own stream, so failures (which cause extra choices) do not shift
    // the operations the generator draws.
    let mut node_rng = ChaCha8Rng::seed_from_u64(derive_seed(shared.seed, "node", worker as u64));
    let mut generator = shared.workload.generator(worker);
    let mut slot = Slot {
        process: shared.process_base + worker as u64,
        client: None,
    };
    let mut next_at = Instant::now();
    loop {
        next_at += shared.pacer.next_gap(&mut rng);
        let now = Instant::now();
        if next_at < now {
            next_at = now;
        }
        if !sleep_until(next_at, &shared).await {
            break;
        }
        if !ensure_client(&shared, worker, &mut slot, &mut node_rng).await {
            break;
        }
        let ctx = Context {
            time_ns: shared.recorder.clock().now_ns(),
            process: slot.process,
            worker,
        };
        let Some(op) = generator.next_op(&ctx, &mut rng) else {
            break;
        };
        perform(&shared, &mut slot, &op).await;
    }
    if let Some((client, _)) = slot.client.take() {
        close_client(client).await;
    }
}

/// Runs `generator` to its end as one worker, retrying nothing (the final reads). Returns the
/// completions, so the caller can retry what did not succeed. Operations still to go when
/// `shared.deadline` passes are not issued (they complete as failures, unrecorded).
pub async fn run_ops(
    shared: &WorkerShared,
    process: u64,
    node: Node,
    ops: Vec<Op>,
) -> (u64, Vec<Completion>) {
    let mut slot = Slot {
        process,
        client: None,
    };
    let mut completions = Vec::with_capacity(ops.len());
    for op in &ops {
        // Past the deadline nothing more is issued: against a cluster that never answers, a
        // round of one operation timeout per key would otherwise overrun the bound by minutes.
        if Instant::now() >= shared.deadline || shared.cancel.is_cancelled() {
            completions.push(Completion::fail("not issued: the deadline had passed"));
            continue;
        }
        if slot.client.is_none() {
            match open_client(shared, &node, slot.process).await {
                Ok(client) => slot.client = Some((client, node.clone())),
                Err(e) => {
                    completions.push(Completion::fail(format!("cannot open a client: {e}")));
                    continue;
                }
            }
        }
        completions.push(perform(shared, &mut slot, op).await);
    }
    if let Some((client, _)) = slot.client.take() {
        close_client(client).await;
    }
    (slot.process, completions)
}

/// Invokes `op` as the slot's process, records invoke and completion, and handles the
/// consequences (a new process after `info`, a new client after a lost session).
async fn perform(shared: &WorkerShared, slot: &mut Slot, op: &Op) -> Completion {
    let Some((client, node)) = slot.client.as_mut() else {
        return Completion::fail("no client");
    };
    let op = &client.prepare(op.clone());
    let session = client.session();
    let node_name = node.name.clone();
    let invoke = shared.recorder.record(Event {
        index: 0,
        time: 0,
        process: slot.process,
        kind: EventType::Invoke,
        f: op.f.clone(),
        value: op.value.clone(),
        key: op.key.clone(),
        error: None,
        node: Some(node_name.clone()),
        zxid: None,
        session,
    });
    let op_timeout = shared.env.op_timeout;
    let bound = op_timeout + Duration::from_millis(OP_GRACE_MS);
    let completion = tokio::select! {
        c = tokio::time::timeout(bound, client.invoke(op, op_timeout)) => {
            c.unwrap_or_else(|_| Completion::info("timeout"))
        }
        // In flight when the run was cancelled: its outcome is unknown.
        _ = shared.cancel.cancelled() => Completion::info("cancelled"),
    };
    debug_assert!(completion.kind != EventType::Invoke);
    shared.recorder.record(Event {
        index: 0,
        time: 0,
        process: slot.process,
        kind: completion.kind,
        f: invoke.f,
        value: completion.value.clone().unwrap_or(invoke.value),
        key: invoke.key,
        error: completion.error.clone(),
        node: Some(node_name),
        zxid: completion.zxid,
        session,
    });
    if let Some((client, _)) = slot.client.as_mut() {
        client.completed(&completion);
    }
    if (completion.kind == EventType::Info || completion.reopen)
        && let Some((client, _)) = slot.client.take()
    {
        // Do not wait for a close that may hang on a partitioned node.
        tokio::spawn(close_client(client));
    }
    if completion.kind == EventType::Info {
        slot.process += shared.concurrency.max(1) as u64;
    }
    completion
}

/// Opens a client for the slot's process if it has none. False when the run ended first.
async fn ensure_client(
    shared: &WorkerShared,
    worker: usize,
    slot: &mut Slot,
    node_rng: &mut ChaCha8Rng,
) -> bool {
    while slot.client.is_none() {
        if shared.cancel.is_cancelled() || Instant::now() >= shared.deadline {
            return false;
        }
        let nodes = &shared.env.nodes;
        let index = match shared.node_choice {
            NodeChoice::Pinned => (slot.process % nodes.len() as u64) as usize,
            NodeChoice::Random => node_rng.random_range(0..nodes.len()),
            NodeChoice::Spread => worker % nodes.len(),
        };
        let node = nodes[index].clone();
        match open_client(shared, &node, slot.process).await {
            Ok(client) => slot.client = Some((client, node)),
            Err(e) => {
                tracing::debug!(process = slot.process, node = %node.name, "cannot open a client: {e}");
                let retry_at = Instant::now() + Duration::from_millis(OPEN_RETRY_MS);
                if !sleep_until(retry_at, shared).await {
                    return false;
                }
            }
        }
    }
    true
}

async fn open_client(
    shared: &WorkerShared,
    node: &Node,
    process: u64,
) -> Result<Box<dyn Client>, String> {
    let bound = shared.env.op_timeout + Duration::from_millis(OP_GRACE_MS);
    tokio::select! {
        r = tokio::time::timeout(bound, shared.workload.open(OpenContext {
            env: &shared.env,
            node,
            process,
            recorder: &shared.recorder,
        })) => {
            r.unwrap_or_else(|_| Err(format!("no session from {} within {bound:?}", node.name)))
        }
        _ = shared.cancel.cancelled() => Err("cancelled".to_string()),
    }
}

async fn close_client(client: Box<dyn Client>) {
    let _ = tokio::time::timeout(Duration::from_millis(CLOSE_TIMEOUT_MS), client.close()).await;
}

/// Sleeps until `at`; false if the deadline or a cancellation comes first.
async fn sleep_until(at: Instant, shared: &WorkerShared) -> bool {
    if at >= shared.deadline {
        let _ = tokio::time::timeout_at(shared.deadline, shared.cancel.cancelled()).await;
        return false;
    }
    tokio::select! {
        _ = tokio::time::sleep_until(at) => !shared.cancel.is_cancelled(),
        _ = shared.cancel.cancelled() => false,
    }
}

/// Runs all workers and waits for them.
pub async fn run_workers(shared: WorkerShared) {
    let handles: Vec<_> = (0..shared.concurrency)
        .map(|w| tokio::spawn(run_worker(shared.clone(), w)))
        .collect();
    for h in handles {
        if let Err(e) = h.await {
            tracing::error!("a worker failed: {e}");
        }
    }
}
