//! `schism sim`: runs seeds of the deterministic simulation (the `sim` crate) on threads, writes
//! each failing seed as an ordinary results directory (`schism check DIR` works on it), and
//! prints a summary with seeds per second and the simulated-time ratio. The wall clock is read
//! here, never inside a seed.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Args;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::config::parse_duration;
use crate::progress::SimProgress;
use crate::store::{
    COUNTEREXAMPLE_FILE, HISTORY_FILE, NEMESIS_FILE, RECOVERY_FILE, RESULTS_FILE, RunDir,
    STATUS_FILE, TEST_FILE,
};
use crate::verdict::{EXIT_BAD_ARGUMENTS, EXIT_HARNESS_FAILURE, Results, Verdict};
use checker::WorkloadKind;

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
    /// Run schism's own workload W (register, sequential, election, session, watch) through a
    /// simulated transport, judged by its checkers; `any`: each seed draws one. Without it,
    /// the simulation's own clients run (register operations and watches: the fastest).
    #[arg(long, value_parser = parse_sim_workload)]
    pub workload: Option<SimWorkload>,
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
    /// Start no new seed after one that is not valid.
    #[arg(long)]
    pub stop_on_failure: bool,
    /// Also write the summary as JSON to this file (seeds, verdict counts, failing seeds).
    #[arg(long)]
    pub summary: Option<PathBuf>,
    /// Where failing seeds are written (under `sim/`).
    #[arg(long, default_value = "results")]
    pub results: PathBuf,
}

/// What `--workload` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SimWorkload {
    One(WorkloadKind),
    /// Each seed draws one of the workloads, or the simulation's own clients.
    Any,
}

fn parse_sim_workload(text: &str) -> Result<SimWorkload, String> {
    if text == "any" {
        return Ok(SimWorkload::Any);
    }
    WorkloadKind::from_name(text)
        .map(SimWorkload::One)
        .ok_or_else(|| {
            format!(
                "unknown workload `{text}`: one of {}, any",
                WorkloadKind::names()
            )
        })
}

impl SimWorkload {
    /// The workload seed `seed` runs (`None`: the simulation's own clients). `any` picks by
    /// the seed's hash, apart from everything the seed draws in the simulation.
    pub fn for_seed(self, seed: u64) -> Option<WorkloadKind> {
        match self {
            SimWorkload::One(kind) => Some(kind),
            SimWorkload::Any => {
                let pick = sim::fnv1a(&seed.to_le_bytes()) % (WorkloadKind::ALL.len() as u64 + 1);
                WorkloadKind::ALL.get(pick as usize).copied()
            }
        }
    }
}

/// Runs one seed: with a workload of schism's through the simulated transport, or with the
/// simulation's own clients.
pub fn run_seed(cfg: &sim::SimConfig, workload: Option<WorkloadKind>) -> sim::SimOutcome {
    match workload {
        Some(kind) => crate::sim_run::run_seed(cfg, kind),
        None => sim::run_seed(cfg),
    }
}

/// One seed's outcome as the run loop keeps it.
struct SeedResult {
    seed: u64,
    verdict: Verdict,
    simulated_ms: u64,
    /// The checkers that said `invalid`.
    invalid: Vec<String>,
    dir: Option<PathBuf>,
    line: Option<String>,
}

/// A seed that was not valid, in `--summary`.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct FailingSeed {
    pub seed: u64,
    pub verdict: Verdict,
    /// The checkers that said `invalid` (the gate counts a bug as caught only by its own).
    pub invalid: Vec<String>,
    /// Its results directory.
    pub dir: Option<PathBuf>,
}

/// What a run of seeds saw: the summary line, and `--summary FILE` (which the gate reads).
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct SimSummary {
    pub first_seed: u64,
    /// Seeds run to the end.
    pub seeds: u64,
    pub valid: u64,
    pub invalid: u64,
    pub unknown: u64,
    pub wall_s: f64,
    pub simulated_s: f64,
    pub jobs: usize,
    pub server_bug: Option<String>,
    /// Every seed that was not valid, by seed.
    pub failing: Vec<FailingSeed>,
    /// Set when the run stopped early (the stop flag, or `--stop-on-failure`).
    pub stopped: bool,
}

impl SimSummary {
    /// The verdict of the run: the worst seed's, or `unknown` when nothing ran.
    pub fn verdict(&self) -> Verdict {
        if self.seeds == 0 {
            // Nothing ran (a zero budget): nothing was shown valid.
            return Verdict::Unknown;
        }
        if self.invalid > 0 {
            Verdict::Invalid
        } else if self.unknown > 0 {
            Verdict::Unknown
        } else {
            Verdict::Valid
        }
    }

    /// `sim: 1000 seeds (998 valid, 0 invalid, 2 unknown) in 3.1 s: ...`.
    pub fn line(&self) -> String {
        let wall = self.wall_s.max(1e-9);
        let failing: Vec<u64> = self.failing.iter().map(|f| f.seed).collect();
        format!(
            "sim: {} seeds ({} valid, {} invalid, {} unknown) in {:.1} s: {:.1} seeds/s, {:.0} simulated s, {:.0}x real time ({} jobs){}{}",
            self.seeds,
            self.valid,
            self.invalid,
            self.unknown,
            self.wall_s,
            self.seeds as f64 / wall,
            self.simulated_s,
            self.simulated_s / wall,
            self.jobs,
            if self.stopped { ", stopped early" } else { "" },
            if failing.is_empty() {
                String::new()
            } else {
                format!("; failing seeds: {failing:?}")
            }
        )
    }
}

/// The bug `--server-bug` names, or the one line saying why it cannot be run.
fn parse_bug(name: Option<&str>) -> Result<Option<sim::Bug>, String> {
    let Some(name) = name else {
        return Ok(None);
    };
    match sim::Bug::parse(name) {
        Some(b) if sim::BUGS_ENABLED => Ok(Some(b)),
        Some(_) => Err(format!(
            "--server-bug needs a build with bugs: `make build-bugs` then target/debug/schism-bugs sim --server-bug {name}, or cargo run -p schism --features bugs -- sim --server-bug {name}"
        )),
        None => {
            let names: Vec<&str> = sim::Bug::ALL.iter().map(|b| b.name()).collect();
            Err(format!(
                "unknown --server-bug {name}; one of: {}",
                names.join(", ")
            ))
        }
    }
}

/// Checks the arguments; the one line saying what is wrong otherwise.
fn validate(args: &SimArgs) -> Result<Option<sim::Bug>, String> {
    let bug = parse_bug(args.server_bug.as_deref())?;
    if args.nodes.is_some_and(|n| n != 3 && n != 5) {
        return Err("--nodes must be 3 or 5".into());
    }
    if args.jobs == 0 {
        return Err("--jobs must be at least 1".into());
    }
    Ok(bug)
}

/// Runs the command; returns the exit code (0 valid, 1 invalid, 2 unknown, as `schism test`).
pub fn run(args: &SimArgs) -> i32 {
    let stop = AtomicBool::new(false);
    match run_seeds(args, &stop) {
        Ok(summary) => {
            println!("{}", summary.line());
            if let Some(path) = &args.summary {
                let text = serde_json::to_string_pretty(&summary).expect("a summary serializes");
                if let Err(e) = std::fs::write(path, text) {
                    eprintln!("schism sim: cannot write {}: {e}", path.display());
                    return EXIT_HARNESS_FAILURE;
                }
            }
            summary.verdict().exit_code()
        }
        Err(SimError::Usage(e)) => {
            eprintln!("schism sim: {e}");
            EXIT_BAD_ARGUMENTS
        }
        Err(SimError::Io(e)) => {
            eprintln!("schism sim: {e}");
            EXIT_HARNESS_FAILURE
        }
    }
}

/// Why a run of seeds could not be done.
#[derive(Debug)]
pub enum SimError {
    /// Bad arguments: one line for the user.
    Usage(String),
    /// A results directory could not be written.
    Io(String),
}

impl std::fmt::Display for SimError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SimError::Usage(e) | SimError::Io(e) => f.write_str(e),
        }
    }
}

/// The one loop over seeds (`schism sim` and `schism torture --sim`): `--jobs` threads take the
/// next seed until the seeds, the wall budget or `stop` end it, with the progress bar, and each
/// failing seed written as a results directory. Stops early, without error, when `stop` is set
/// (Ctrl-C in torture) or, with `--stop-on-failure`, after a seed that is not valid.
pub fn run_seeds(args: &SimArgs, stop: &AtomicBool) -> Result<SimSummary, SimError> {
    let bug = validate(args).map_err(SimError::Usage)?;
    let (first, count) = match args.seed {
        Some(s) => (s, 1),
        None => (args.first_seed, args.seeds),
    };
    let progress = SimProgress::new((args.duration.is_none() || count < u64::MAX).then_some(count));
    let started = Instant::now();
    let next = AtomicU64::new(0);
    let results: Mutex<Vec<SeedResult>> = Mutex::new(Vec::new());
    let failed_io: Mutex<Option<String>> = Mutex::new(None);
    let jobs = args
        .jobs
        .min(usize::try_from(count.max(1)).unwrap_or(usize::MAX));
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| {
                loop {
                    if stop.load(Ordering::Relaxed)
                        || args.duration.is_some_and(|d| started.elapsed() >= d)
                    {
                        break;
                    }
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        break;
                    }
                    let cfg = sim::SimConfig {
                        seed: first.wrapping_add(i),
                        nodes: args.nodes,
                        bug,
                        lossy_links: args.lossy_links,
                        trace: args.trace,
                        ..sim::SimConfig::default()
                    };
                    let r = match run_one(&cfg, args) {
                        Ok(r) => r,
                        Err(e) => {
                            *failed_io.lock().expect("not poisoned") = Some(e);
                            stop.store(true, Ordering::Relaxed);
                            break;
                        }
                    };
                    if let Some(line) = &r.line {
                        progress.println(line);
                    }
                    progress.seed_done(r.verdict, r.simulated_ms);
                    if args.stop_on_failure && r.verdict != Verdict::Valid {
                        stop.store(true, Ordering::Relaxed);
                    }
                    results.lock().expect("not poisoned").push(r);
                }
            });
        }
    });
    progress.finish();
    if let Some(e) = failed_io.into_inner().expect("not poisoned") {
        return Err(SimError::Io(e));
    }
    let mut results = results.into_inner().expect("not poisoned");
    results.sort_by_key(|r| r.seed);
    let count_of = |v: Verdict| results.iter().filter(|r| r.verdict == v).count() as u64;
    Ok(SimSummary {
        first_seed: first,
        seeds: results.len() as u64,
        valid: count_of(Verdict::Valid),
        invalid: count_of(Verdict::Invalid),
        unknown: count_of(Verdict::Unknown),
        wall_s: started.elapsed().as_secs_f64(),
        simulated_s: results.iter().map(|r| r.simulated_ms as f64 / 1e3).sum(),
        jobs: args.jobs,
        server_bug: bug.map(|b| b.name().to_string()),
        failing: results
            .iter()
            .filter(|r| r.verdict != Verdict::Valid)
            .map(|r| FailingSeed {
                seed: r.seed,
                verdict: r.verdict,
                invalid: r.invalid.clone(),
                dir: r.dir.clone(),
            })
            .collect(),
        stopped: stop.load(Ordering::Relaxed) && (results.len() as u64) < count,
    })
}

fn run_one(cfg: &sim::SimConfig, args: &SimArgs) -> Result<SeedResult, String> {
    let workload = args.workload.and_then(|w| w.for_seed(cfg.seed));
    let outcome = run_seed(cfg, workload);
    let mut verdict = outcome.verdict.verdict;
    let mut notes = Vec::new();
    if args.check_determinism {
        let again = run_seed(cfg, workload);
        if again.history_hash != outcome.history_hash {
            verdict = Verdict::Invalid;
            notes.push(format!(
                "not deterministic: history hash {:#018x} then {:#018x}",
                outcome.history_hash, again.history_hash
            ));
        }
    }
    let dir = if verdict == Verdict::Valid {
        None
    } else {
        Some(write_run(&outcome, cfg, args)?)
    };
    let line = if verdict == Verdict::Valid && args.seed.is_none() {
        None
    } else {
        let failing: Vec<String> = outcome
            .verdict
            .checkers
            .iter()
            .filter(|c| c.verdict != Verdict::Valid)
            .map(|c| format!("{} {}: {}", c.name, c.verdict.as_str(), c.summary))
            .collect();
        Some(format!(
            "seed {}: {} ({}, {} nodes, {} events, history {:#018x}){}{}",
            cfg.seed,
            verdict.as_str(),
            outcome.workload,
            outcome.swarm.nodes,
            outcome.history.len(),
            outcome.history_hash,
            dir.as_ref()
                .map(|d| format!(" -> {}", d.display()))
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
        invalid: outcome
            .verdict
            .checkers
            .iter()
            .filter(|c| c.verdict == Verdict::Invalid)
            .map(|c| c.name.clone())
            .collect(),
        dir,
        line,
    })
}

/// A simulated fault as the nemesis logs a real one (`nemesis.jsonl`), so the report and every
/// reader of the file take it unchanged.
fn nemesis_entry(f: &sim::FaultEvent) -> nemesis::LogEntry {
    nemesis::LogEntry {
        time_ns: f.time_ns,
        step: f.step,
        fault: f.fault.to_string(),
        description: f.description.clone(),
        phase: if f.start {
            nemesis::Phase::Start
        } else {
            nemesis::Phase::Heal
        },
        nodes: f.nodes.clone(),
        resolution: None,
        grudge: None,
        commands: Vec::new(),
        actions: Vec::new(),
        error: None,
    }
}

/// Writes a failing seed as a results directory that `schism check DIR` reads unchanged, with
/// the report a real run has.
fn write_run(o: &sim::SimOutcome, cfg: &sim::SimConfig, args: &SimArgs) -> Result<PathBuf, String> {
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // The bug in the name too: the gate's rows for two bugs may fail the same seed at once.
    let name = match cfg.bug {
        Some(bug) => format!("{stamp}-{}-{}", o.seed, bug.name()),
        None => format!("{stamp}-{}", o.seed),
    };
    let dir = args.results.join("sim").join(name);
    let io = |p: &Path, e: std::io::Error| format!("cannot write {}: {e}", p.display());
    std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
    let write = |name: &str, text: String| -> Result<(), String> {
        let p = dir.join(name);
        std::fs::write(&p, text).map_err(|e| io(&p, e))
    };
    // The workload the seed ran (`any` drew it): the replay names it.
    let workload = args
        .workload
        .map(|_| format!(" --workload {}", o.workload))
        .unwrap_or_default();
    let replay = format!(
        "{} sim --seed {}{workload}{}{}{}",
        if cfg.bug.is_some() {
            "schism-bugs"
        } else {
            "schism"
        },
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
        "workload": o.workload,
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
    write(TEST_FILE, pretty(&test))?;
    write(HISTORY_FILE, sim::history_jsonl(&o.history))?;
    let jsonl = |lines: Vec<String>| lines.into_iter().map(|l| l + "\n").collect::<String>();
    write(
        STATUS_FILE,
        jsonl(
            o.status
                .iter()
                .map(|s| serde_json::to_string(s).expect("json"))
                .collect(),
        ),
    )?;
    write(
        NEMESIS_FILE,
        jsonl(
            o.faults
                .iter()
                .map(|f| serde_json::to_string(&nemesis_entry(f)).expect("json"))
                .collect(),
        ),
    )?;
    write(
        RECOVERY_FILE,
        serde_json::to_string_pretty(&o.recovery).map_err(|e| e.to_string())?,
    )?;
    // As `schism check DIR` leaves a real run: results.json, the counterexample page of a
    // violation, and report.html over all of it.
    let mut results = Results::from(o.verdict.clone());
    results.notes.push(format!("simulated: {replay}"));
    if let Some(page) = o.verdict.counterexample().map(checker::counterexample_html) {
        write(COUNTEREXAMPLE_FILE, page)?;
        results.counterexample = Some(COUNTEREXAMPLE_FILE.to_string());
    }
    write(
        RESULTS_FILE,
        serde_json::to_string_pretty(&results).map_err(|e| e.to_string())?,
    )?;
    let run = RunDir::open(&dir).map_err(|e| format!("{e:#}"))?;
    crate::report::write_for_run(&run, &results)
        .map_err(|e| format!("cannot write the report of {}: {e:#}", dir.display()))?;
    Ok(dir)
}
