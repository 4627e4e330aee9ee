//! `schism sim`: runs seeds of the deterministic simulation (the `sim` crate) on threads, writes
//! each failing seed as an ordinary results directory (`schism check DIR` works on it), and
//! prints a summary with seeds per second and the simulated-time ratio. The wall clock is read
//! here, never inside a seed.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Args;
use serde_json::json;

use crate::config::parse_duration;
use crate::verdict::{EXIT_BAD_ARGUMENTS, EXIT_HARNESS_FAILURE, Verdict};

/// The first seed of a `--seeds N` run unless `--first-seed` says otherwise.
const DEFAULT_FIRST_SEED: u64 = 0;

#[derive(Args, Debug, Clone)]
pub struct SimArgs {
    /// How many seeds to run (from --first-seed).
    #[arg(long, default_value_t = 100)]
    pub seeds: u64,
    /// The first seed of the run.
    #[arg(long, default_value_t = DEFAULT_FIRST_SEED)]
    pub first_seed: u64,
    /// Run only this seed (replays it bit for bit).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Cluster size, 3 or 5 [default: each seed draws one].
    #[arg(long)]
    pub nodes: Option<usize>,
    /// Threads running seeds.
    #[arg(long, default_value_t = 1)]
    pub jobs: usize,
    /// Wall-time budget: no new seed starts after it (e.g. 60s, 10m).
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Run the cores with an injected bug (needs `--features bugs`).
    #[arg(long)]
    pub server_bug: Option<String>,
    /// Run each seed twice and fail on any difference in its history.
    #[arg(long)]
    pub check_determinism: bool,
    /// Also lose and reorder single messages within a link (which TCP never does).
    #[arg(long)]
    pub lossy_links: bool,
    /// Print each node's inputs and outputs to stderr (use with `--seed`: a replay).
    #[arg(long)]
    pub trace: bool,
    /// Where failing seeds are written (under `sim/`).
    #[arg(long, default_value = "results")]
    pub results: PathBuf,
}

/// One seed's line in the summary.
struct SeedResult {
    seed: u64,
    verdict: Verdict,
    simulated_ms: u64,
    line: Option<String>,
}

/// Runs the command; returns the exit code (0 valid, 1 invalid, 2 unknown, as `schism test`).
pub fn run(args: &SimArgs) -> i32 {
    let bug = match args.server_bug.as_deref() {
        None => None,
        Some(name) => match sim::Bug::parse(name) {
            Some(b) if sim::BUGS_ENABLED => Some(b),
            Some(_) => {
                eprintln!(
                    "schism sim: --server-bug needs a build with bugs: cargo run -p schism --features bugs -- sim --server-bug {name}"
                );
                return EXIT_BAD_ARGUMENTS;
            }
            None => {
                let names: Vec<&str> = sim::Bug::ALL.iter().map(|b| b.name()).collect();
                eprintln!(
                    "schism sim: unknown --server-bug {name}; one of: {}",
                    names.join(", ")
                );
                return EXIT_BAD_ARGUMENTS;
            }
        },
    };
    if args.nodes.is_some_and(|n| n != 3 && n != 5) {
        eprintln!("schism sim: --nodes must be 3 or 5");
        return EXIT_BAD_ARGUMENTS;
    }
    if args.jobs == 0 {
        eprintln!("schism sim: --jobs must be at least 1");
        return EXIT_BAD_ARGUMENTS;
    }
    let (first, count) = match args.seed {
        Some(s) => (s, 1),
        None => (args.first_seed, args.seeds),
    };
    let started = Instant::now();
    let next = AtomicU64::new(0);
    let results: Mutex<Vec<SeedResult>> = Mutex::new(Vec::new());
    let failed_io: Mutex<Option<String>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..args.jobs.min(count.max(1) as usize) {
            scope.spawn(|| {
                loop {
                    if args.duration.is_some_and(|d| started.elapsed() >= d) {
                        break;
                    }
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        break;
                    }
                    let cfg = sim::SimConfig {
                        seed: first + i,
                        nodes: args.nodes,
                        bug,
                        lossy_links: args.lossy_links,
                        trace: args.trace,
                    };
                    let r = match run_one(&cfg, args) {
                        Ok(r) => r,
                        Err(e) => {
                            *failed_io.lock().expect("not poisoned") = Some(e);
                            break;
                        }
                    };
                    if let Some(line) = &r.line {
                        println!("{line}");
                    }
                    results.lock().expect("not poisoned").push(r);
                }
            });
        }
    });
    if let Some(e) = failed_io.into_inner().expect("not poisoned") {
        eprintln!("schism sim: {e}");
        return EXIT_HARNESS_FAILURE;
    }
    let results = results.into_inner().expect("not poisoned");
    let wall = started.elapsed().as_secs_f64().max(1e-9);
    let simulated_s: f64 = results.iter().map(|r| r.simulated_ms as f64 / 1e3).sum();
    let count_of = |v: Verdict| results.iter().filter(|r| r.verdict == v).count();
    let verdict = Verdict::fold(results.iter().map(|r| r.verdict));
    let mut failing: Vec<u64> = results
        .iter()
        .filter(|r| r.verdict != Verdict::Valid)
        .map(|r| r.seed)
        .collect();
    failing.sort_unstable();
    println!(
        "sim: {} seeds ({} valid, {} invalid, {} unknown) in {wall:.1} s: {:.1} seeds/s, {simulated_s:.0} simulated s, {:.0}x real time ({} jobs){}",
        results.len(),
        count_of(Verdict::Valid),
        count_of(Verdict::Invalid),
        count_of(Verdict::Unknown),
        results.len() as f64 / wall,
        simulated_s / wall,
        args.jobs,
        if failing.is_empty() {
            String::new()
        } else {
            format!("; failing seeds: {failing:?}")
        }
    );
    if results.is_empty() {
        // Nothing ran (a zero budget): nothing was shown valid.
        return Verdict::Unknown.exit_code();
    }
    verdict.exit_code()
}

fn run_one(cfg: &sim::SimConfig, args: &SimArgs) -> Result<SeedResult, String> {
    let outcome = sim::run_seed(cfg);
    let mut verdict = outcome.verdict.verdict;
    let mut notes = Vec::new();
    if args.check_determinism {
        let again = sim::run_seed(cfg);
        if again.history_hash != outcome.history_hash {
            verdict = Verdict::Invalid;
            notes.push(format!(
                "not deterministic: history hash {:#018x} then {:#018x}",
                outcome.history_hash, again.history_hash
            ));
        }
    }
    let line = if verdict == Verdict::Valid && args.seed.is_none() {
        None
    } else {
        let dir = if verdict == Verdict::Valid {
            None
        } else {
            Some(write_run(&outcome, cfg, args)?)
        };
        let failing: Vec<String> = outcome
            .verdict
            .checkers
            .iter()
            .filter(|c| c.verdict != Verdict::Valid)
            .map(|c| format!("{} {}: {}", c.name, c.verdict.as_str(), c.summary))
            .collect();
        Some(format!(
            "seed {}: {} ({} nodes, history {:#018x}){}{}",
            cfg.seed,
            verdict.as_str(),
            outcome.swarm.nodes,
            outcome.history_hash,
            dir.map(|d| format!(" -> {}", d.display()))
                .unwrap_or_default(),
            if failing.is_empty() && notes.is_empty() {
                String::new()
            } else {
                format!("\n  {}", [failing, notes].concat().join("\n  "))
            },
        ))
    };
    Ok(SeedResult {
        seed: cfg.seed,
        verdict,
        simulated_ms: outcome.simulated_ms,
        line,
    })
}

/// Writes a failing seed as a results directory that `schism check DIR` reads unchanged.
fn write_run(o: &sim::SimOutcome, cfg: &sim::SimConfig, args: &SimArgs) -> Result<PathBuf, String> {
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let dir = args.results.join("sim").join(format!("{stamp}-{}", o.seed));
    let io = |p: &Path, e: std::io::Error| format!("cannot write {}: {e}", p.display());
    std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
    let write = |name: &str, text: String| -> Result<(), String> {
        let p = dir.join(name);
        std::fs::write(&p, text).map_err(|e| io(&p, e))
    };
    let replay = format!(
        "schism sim --seed {}{}{}{}",
        o.seed,
        cfg.nodes
            .map(|n| format!(" --nodes {n}"))
            .unwrap_or_default(),
        cfg.bug
            .map(|b| format!(" --server-bug {}", b.name()))
            .unwrap_or_default(),
        if cfg.lossy_links {
            " --lossy-links"
        } else {
            ""
        }
    );
    let test = json!({
        "workload": "register",
        "simulated": true,
        "seed": o.seed,
        "server_bug": cfg.bug.map(|b| b.name()),
        "nodes": o.swarm.nodes,
        "swarm": o.swarm,
        "history_hash": format!("{:#018x}", o.history_hash),
        "simulated_ms": o.simulated_ms,
        "replay": replay,
    });
    let pretty = |v: &serde_json::Value| serde_json::to_string_pretty(v).expect("json");
    write("test.json", pretty(&test))?;
    write("history.jsonl", sim::history_jsonl(&o.history))?;
    let mut status = String::new();
    for s in &o.status {
        status.push_str(&serde_json::to_string(s).map_err(|e| e.to_string())?);
        status.push('\n');
    }
    write("status.jsonl", status)?;
    write(
        checker::liveness::RECOVERY_FILE,
        serde_json::to_string_pretty(&o.recovery).map_err(|e| e.to_string())?,
    )?;
    write(
        "results.json",
        serde_json::to_string_pretty(&o.verdict).map_err(|e| e.to_string())?,
    )?;
    Ok(dir)
}
