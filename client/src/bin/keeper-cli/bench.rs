//! `keeper-cli bench`: a closed-loop write load, reporting throughput and latency quantiles.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use keeper_client::{ClientConfig, Session};
use keeper_wire::{ANY_VERSION, CreateMode, ErrorCode};

/// Latency samples kept per worker; beyond it writes are counted but not sampled.
pub const MAX_SAMPLES_PER_WORKER: usize = 2_000_000;
/// Largest payload a bench write may carry (the server's default data limit).
const MAX_DATA_BYTES: usize = keeper_wire::DEFAULT_MAX_DATA_BYTES;
const BENCH_ROOT: &str = "/keeper-bench";

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchOp {
    /// set_data on one node per worker.
    Set,
    /// Creates of ephemeral sequential nodes (removed when the bench's sessions close).
    Create,
}

pub struct BenchConfig {
    pub client: ClientConfig,
    pub concurrency: usize,
    pub duration: Duration,
    pub data_bytes: usize,
    pub op: BenchOp,
}

#[derive(Default)]
struct WorkerResult {
    ok: u64,
    definite: u64,
    indeterminate: u64,
    samples_us: Vec<u64>,
    first_error: Option<String>,
}

/// What one bench run measured.
#[derive(Clone, Debug)]
pub struct BenchSummary {
    pub per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl BenchSummary {
    /// The figures of `writes` acknowledged in `elapsed_s` seconds, from their latencies (µs).
    pub fn of(writes: u64, elapsed_s: f64, mut samples_us: Vec<u64>) -> BenchSummary {
        samples_us.sort_unstable();
        let quantile = |q: f64| -> f64 {
            if samples_us.is_empty() {
                return 0.0;
            }
            let rank = ((samples_us.len() as f64 * q).ceil() as usize).max(1) - 1;
            samples_us[rank.min(samples_us.len() - 1)] as f64 / 1000.0
        };
        BenchSummary {
            per_sec: writes as f64 / elapsed_s,
            p50_ms: quantile(0.50),
            p99_ms: quantile(0.99),
            max_ms: quantile(1.0),
        }
    }
}

pub async fn run(config: BenchConfig) -> anyhow::Result<()> {
    measure(config).await.map(drop)
}

/// Runs the load, prints its report and returns the figures.
pub async fn measure(config: BenchConfig) -> anyhow::Result<BenchSummary> {
    if config.concurrency == 0 {
        bail!("--concurrency must be at least 1");
    }
    if config.data_bytes > MAX_DATA_BYTES {
        bail!("--data-bytes must be at most {MAX_DATA_BYTES}");
    }
    let setup = Session::connect(config.client.clone())
        .await
        .context("cannot connect to keeper")?;
    match setup.create(BENCH_ROOT, "", CreateMode::Persistent).await {
        Ok(_) => {}
        Err(e) if e.code() == ErrorCode::NodeExists => {}
        Err(e) => return Err(e).context(format!("cannot create {BENCH_ROOT}")),
    }
    let _ = setup.close().await;

    let data = "x".repeat(config.data_bytes);
    let started = Instant::now();
    let stop_at = started + config.duration;
    let servers = config.client.servers.len();
    let mut workers = Vec::with_capacity(config.concurrency);
    for worker in 0..config.concurrency {
        // Spread the sessions over the servers, as clients of an ensemble would be.
        let mut client = config.client.clone();
        client.servers.rotate_left(worker % servers);
        let data = data.clone();
        let op = config.op;
        workers.push(tokio::spawn(async move {
            run_worker(worker, client, op, data, stop_at).await
        }));
    }
    let mut total = WorkerResult::default();
    for worker in workers {
        let result = worker.await.context("bench worker crashed")??;
        total.ok += result.ok;
        total.definite += result.definite;
        total.indeterminate += result.indeterminate;
        total.samples_us.extend(result.samples_us);
        total.first_error = total.first_error.or(result.first_error);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let summary = BenchSummary::of(total.ok, elapsed, std::mem::take(&mut total.samples_us));
    let op = match config.op {
        BenchOp::Set => "set",
        BenchOp::Create => "create",
    };
    println!(
        "bench: op={op} concurrency={} duration={:.1}s data={}B servers={}",
        config.concurrency, elapsed, config.data_bytes, servers
    );
    println!(
        "writes: {} ok ({:.1}/s), {} failed, {} indeterminate",
        total.ok, summary.per_sec, total.definite, total.indeterminate
    );
    println!(
        "latency ms: p50 {:.2}  p99 {:.2}  max {:.2}",
        summary.p50_ms, summary.p99_ms, summary.max_ms
    );
    if let Some(error) = total.first_error {
        println!("first error: {error}");
    }
    if total.ok == 0 {
        bail!("no write succeeded");
    }
    Ok(summary)
}

async fn run_worker(
    worker: usize,
    client: ClientConfig,
    op: BenchOp,
    data: String,
    stop_at: Instant,
) -> anyhow::Result<WorkerResult> {
    let session = Session::connect(client)
        .await
        .with_context(|| format!("worker {worker} cannot connect"))?;
    let own = format!("{BENCH_ROOT}/w-{:x}", session.id());
    if op == BenchOp::Set {
        session
            .create(&own, "", CreateMode::Ephemeral)
            .await
            .with_context(|| format!("worker {worker} cannot create {own}"))?;
    }
    let mut result = WorkerResult::default();
    let sequential = format!("{BENCH_ROOT}/c-");
    while Instant::now() < stop_at {
        let begun = Instant::now();
        let outcome = match op {
            BenchOp::Set => session.set_data(&own, &data, ANY_VERSION).await.map(drop),
            BenchOp::Create => session
                .create(&sequential, &data, CreateMode::EphemeralSequential)
                .await
                .map(drop),
        };
        let latency = begun.elapsed();
        match outcome {
            Ok(()) => {
                result.ok += 1;
                if result.samples_us.len() < MAX_SAMPLES_PER_WORKER {
                    result.samples_us.push(latency.as_micros() as u64);
                }
            }
            Err(e) => {
                if e.is_indeterminate() {
                    result.indeterminate += 1;
                } else {
                    result.definite += 1;
                }
                result.first_error.get_or_insert_with(|| e.to_string());
                if e.code() == ErrorCode::SessionExpired {
                    break;
                }
            }
        }
    }
    let _ = session.close().await;
    Ok(result)
}
