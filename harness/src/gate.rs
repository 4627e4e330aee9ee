//! `schism gate`: the catch matrix, and `schism torture`: the nightly loop.
//!
//! A harness is trusted when it is shown to catch bugs and not to cry wolf. The gate starts keeper
//! with each injected bug (`keeperd --bug NAME`, a build with the `bugs` feature) under the
//! workload and faults meant to expose it, and the correct keeper under every workload with every
//! fault set. It passes only if every bug is caught (an `invalid` verdict within its attempts) and
//! the correct server is `valid` everywhere. The table is printed and stored in
//! `results/gate/<time>/` (`gate.json`, `gate.md`); every run keeps its own results directory.

use crate::config::{BackendKind, TestConfig};
use crate::progress::Progress;
use crate::runner::{self, RunOutcome, RunRequest};
use crate::store::iso_timestamp;
use crate::verdict::{EXIT_HARNESS_FAILURE, EXIT_INVALID, EXIT_VALID};
use checker::WorkloadKind;
use checker::verdict::Verdict;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};
use tokio_util::sync::CancellationToken;

/// One row of the catch matrix: which workload and faults should expose a bug.
pub struct BugEntry {
    pub bug: &'static str,
    pub workload: &'static str,
    pub faults: &'static str,
    /// Extra keeperd flags the bug needs to show (sequence-reuse needs snapshots).
    pub keeperd_args: &'static [&'static str],
    /// The checkers that must report `invalid` for the bug to count as caught: a bug flagged only
    /// by some other checker (or only `unknown`) was not shown by the check that claims it.
    pub must_flag: &'static [&'static str],
    /// Why these faults.
    pub why: &'static str,
}

pub const BUG_MATRIX: &[BugEntry] = &[
    BugEntry {
        bug: "stale-read",
        workload: "register",
        faults: "partition",
        must_flag: &["linearizable"],
        keeperd_args: &[],
        why: "a node cut off from the leader answers linearizable reads from stale state",
    },
    BugEntry {
        bug: "early-ack",
        workload: "register",
        faults: "partition-leader",
        must_flag: &["linearizable"],
        keeperd_args: &[],
        why: "an isolated leader acknowledges writes no quorum has; the new leader never sees them",
    },
    BugEntry {
        bug: "no-fsync",
        workload: "register",
        faults: "power-loss",
        must_flag: &["linearizable"],
        keeperd_args: &[],
        why: "a power loss drops acknowledged writes that reached the kernel but were never synced",
    },
    BugEntry {
        bug: "split-brain",
        workload: "register",
        faults: "partition-leader",
        must_flag: &["linearizable", "single-leader"],
        keeperd_args: &[],
        why: "the isolated leader keeps committing alone while the majority elects another",
    },
    BugEntry {
        bug: "vote-ignores-epoch",
        workload: "register",
        faults: "depose-leader",
        must_flag: &["linearizable", "convergence"],
        keeperd_args: &[],
        why: "after the successor dies, the deposed leader's longer old-epoch log wins the vote",
    },
    BugEntry {
        bug: "sync-no-trunc",
        workload: "register",
        faults: "partition-leader",
        must_flag: &["linearizable", "convergence"],
        keeperd_args: &[],
        why: "the deposed leader keeps its uncommitted proposals when it rejoins: replicas diverge",
    },
    BugEntry {
        bug: "ephemeral-leak",
        workload: "session",
        faults: "none",
        must_flag: &["sessions"],
        keeperd_args: &[],
        why: "sessions that stop heartbeating expire, but their ephemeral nodes stay",
    },
    BugEntry {
        bug: "sequence-reuse",
        workload: "sequential",
        faults: "kill",
        must_flag: &["sequential", "convergence"],
        keeperd_args: &["--snapshot-every=20"],
        why: "a node restored from a snapshot reuses sequence numbers of deleted children",
    },
    BugEntry {
        bug: "watch-drop",
        workload: "watch",
        faults: "none",
        must_flag: &["watches"],
        keeperd_args: &[],
        why: "some watch events are never delivered",
    },
    BugEntry {
        bug: "election-never-settles",
        workload: "register",
        faults: "kill,kill-leader",
        must_flag: &["recovery"],
        keeperd_args: &[],
        why: "after a restart or a lost leader the election never concludes: the cluster stays down after the heal",
    },
    BugEntry {
        bug: "lease-on-fast-clock",
        workload: "session",
        faults: "clock-skew",
        must_flag: &["sessions"],
        keeperd_args: &[],
        why: "a leader whose clock runs fast expires sessions whose clients are still speaking",
    },
    BugEntry {
        bug: "corrupt-log-served",
        workload: "sequential",
        faults: "corrupt",
        must_flag: &["sequential", "convergence"],
        keeperd_args: &[],
        why: "a node skips a log record whose checksum fails and serves the rest: its tree lacks a create, so it hands out a sequence number again and its digest differs",
    },
    BugEntry {
        bug: "newleader-ack-before-durable",
        workload: "register",
        faults: "kill",
        must_flag: &["linearizable", "convergence"],
        keeperd_args: &[],
        why: "a restarted follower acks NEWLEADER with the synced history only in memory; killed again, it comes back without it and its replica diverges",
    },
    BugEntry {
        bug: "epoch-before-log",
        workload: "register",
        faults: "kill",
        must_flag: &["linearizable", "convergence"],
        keeperd_args: &[],
        why: "a restarted follower writes the new epoch but not the synced history; killed again, it claims the epoch with a hole in its log and diverges",
    },
    BugEntry {
        bug: "snapshot-in-memory",
        workload: "register",
        faults: "kill",
        must_flag: &["linearizable", "convergence"],
        keeperd_args: &["--snapshot-every=300", "--log-retain-txns=0"],
        why: "frequent snapshots and no retained log make a restarted follower sync by SNAP, which it keeps in memory; killed again, it replays its old log with the snapshot missing",
    },
    BugEntry {
        bug: "watch-duplicate",
        workload: "watch",
        faults: "none",
        must_flag: &["watches"],
        keeperd_args: &[],
        why: "some watch events are delivered twice: the copy has no watch pending (etcd #17247)",
    },
    BugEntry {
        bug: "watch-stale-after-reconnect",
        workload: "watch",
        faults: "kill-leader",
        must_flag: &["watches"],
        keeperd_args: &[],
        why: "once the survivors of a dead leader elect the next, each fires its sessions' watches for changes they had already read, with the old zxid (etcd #15271). Not a partition: a follower cut off holds its clients' writes until it gives up on the leader, and every session with one in flight ends before the node rejoins",
    },
    BugEntry {
        bug: "old-leader-keeps-uncommitted",
        workload: "register",
        faults: "partition-leader",
        must_flag: &["linearizable", "convergence"],
        keeperd_args: &[],
        why: "the isolated leader's unacked proposals escape the new leader's TRUNC (it reports only what it applied) and are applied with the next commit: replicas diverge (ZOOKEEPER-2845)",
    },
    BugEntry {
        bug: "fuzzy-snapshot-multi",
        workload: "election",
        faults: "kill",
        must_flag: &["convergence"],
        // A snapshot after every batch that logged: the newest one on disk at a kill is most
        // often cut right after a fenced write (a multi).
        keeperd_args: &["--snapshot-every=1"],
        why: "a snapshot cut right after a multi holds the tree from before it but claims its zxid: a node restored from it skips the multi and diverges (ZOOKEEPER-3127)",
    },
];

/// The correct server must be valid under every workload with each of these fault sets.
pub const CORRECT_FAULT_SETS: &[&str] = &[
    "none",
    "partition,partition-leader",
    "kill,kill-leader,kill-all,pause,power-loss",
    "depose-leader",
    "clock-skew,clock-jump,clock-strobe",
    "corrupt",
];

/// The correct server's rows of the short gate (CI): bounded in time, yet every workload and every
/// fault kind that runs here appears at least once, so a checker that cries wolf under any of them
/// fails CI. (`delay` needs the netem qdisc, which this kernel lacks: it is refused with one line.)
pub const SHORT_CORRECT_ROWS: &[(&str, &str)] = &[
    ("register", "partition,partition-leader,slow"),
    ("sequential", "kill,kill-leader,kill-all,power-loss"),
    ("election", "depose-leader,pause"),
    ("session", "partition,kill,flaky"),
    ("watch", "pause,kill-leader,partition"),
    ("session", "clock-skew,clock-jump,clock-strobe"),
    ("register", "corrupt"),
];

#[cfg(test)]
impl GateArgs {
    fn try_parse_from_for_test(flags: &[&str]) -> GateArgs {
        #[derive(clap::Parser)]
        struct Only {
            #[command(flatten)]
            gate: GateArgs,
        }
        use clap::Parser;
        let argv = std::iter::once("gate").chain(flags.iter().copied());
        Only::try_parse_from(argv).expect("valid gate flags").gate
    }
}

#[derive(clap::Args, Debug, Clone)]
pub struct GateArgs {
    /// The bug rows and a short set of correct-server rows (every workload and fault kind once),
    /// for CI; the full gate runs the correct server under every workload with every fault set.
    #[arg(long)]
    pub short: bool,
    /// Also write the table as this Markdown document (docs/GATE.md), stamped with the commit
    /// and seeds it came from.
    #[arg(long)]
    pub doc: Option<PathBuf>,
    /// Runs per bug before it counts as missed (each with a new seed).
    #[arg(long, default_value_t = 3)]
    pub attempts: u32,
    /// Length of each run.
    #[arg(long, default_value = "30s", value_parser = crate::config::parse_duration)]
    pub time_limit: Duration,
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    #[arg(long, value_enum)]
    pub backend: Option<BackendKind>,
    #[arg(long)]
    pub seed: Option<u64>,
    /// The correct keeperd [default: next to schism].
    #[arg(long)]
    pub keeperd: Option<PathBuf>,
    /// keeperd built with the `bugs` feature [default: keeperd-bugs next to schism].
    #[arg(long)]
    pub keeperd_bugs: Option<PathBuf>,
    /// Only these bugs (comma-separated).
    #[arg(long)]
    pub bugs: Option<String>,
    /// schism built with the `bugs` feature, for the simulated column [default: schism-bugs
    /// next to schism, which `make build-bugs` installs].
    #[arg(long)]
    pub schism_bugs: Option<PathBuf>,
    /// Seeds of the simulated column's correct-server row [default: 1000 with --short, else
    /// 10000]; 0 leaves the simulated column out.
    #[arg(long)]
    pub sim_seeds: Option<u64>,
    /// Only the simulated column (no real runs: no root, no keeperd, seconds).
    #[arg(long, conflicts_with = "doc")]
    pub sim_only: bool,
    #[arg(long, default_value = "results")]
    pub results: PathBuf,
}

#[derive(Serialize, Debug, Clone)]
pub struct GateRow {
    /// The injected bug, or null for the correct server.
    pub bug: Option<String>,
    pub workload: String,
    pub faults: String,
    /// `invalid`, `valid`, `unknown` or `error` (of the last run).
    pub verdict: String,
    /// Whether the row is as it must be: a bug caught, the correct server valid.
    pub pass: bool,
    pub runs: u32,
    /// Seconds of testing until the bug was caught (all its runs), if it was.
    pub detected_after_s: Option<f64>,
    /// For a bug: the checkers that must flag it; it counts as caught only when one of them
    /// reports `invalid`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub must_flag: Vec<String>,
    /// The checkers that reported `invalid` (in the deciding run).
    pub caught_by: Vec<String>,
    /// Every checker's verdict in the deciding run, `name: verdict`.
    pub checkers: Vec<String>,
    /// The seed of each run, in order.
    pub seeds: Vec<u64>,
    pub run_dirs: Vec<PathBuf>,
}

/// `gate.json`: where the table came from, and the table.
#[derive(Serialize, Debug, Clone)]
pub struct GateReport {
    /// `git describe --always --dirty` of the tree schism ran from, if it is a git checkout.
    pub commit: String,
    pub started_at: String,
    pub base_seed: u64,
    pub short: bool,
    pub attempts: u32,
    pub time_limit_s: u64,
    pub nodes: usize,
    pub command_line: Vec<String>,
    pub pass: bool,
    pub rows: Vec<GateRow>,
    /// The simulated column: each bug the simulator can express, and the correct server, under
    /// `schism sim`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sim: Vec<SimRow>,
}

/// The commit the gate runs from, as `git describe` gives it (`unknown` outside a checkout).
fn commit_id() -> String {
    std::process::Command::new("git")
        .args(["describe", "--always", "--dirty", "--abbrev=12"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_string())
}

/// A run's verdict as the gate shows it: the verdict (or the error), the checkers that said
/// `invalid`, and every checker's verdict.
struct Seen {
    verdict: String,
    invalid: Vec<String>,
    checkers: Vec<String>,
}

fn verdict_of(outcome: &RunOutcome) -> Seen {
    match (&outcome.error, &outcome.results) {
        (Some(e), _) => Seen {
            verdict: format!("error: {e:#}"),
            invalid: vec![],
            checkers: vec![],
        },
        (None, Some(r)) => Seen {
            verdict: r.verdict.as_str().to_string(),
            invalid: r
                .checkers
                .iter()
                .filter(|c| c.verdict == Verdict::Invalid)
                .map(|c| c.name.clone())
                .collect(),
            checkers: r
                .checkers
                .iter()
                .map(|c| format!("{}: {}", c.name, c.verdict.as_str()))
                .collect(),
        },
        (None, None) => Seen {
            verdict: "error: no results".to_string(),
            invalid: vec![],
            checkers: vec![],
        },
    }
}

/// A bug is caught when one of the checkers that must flag it said `invalid`.
pub fn caught(must_flag: &[&str], invalid: &[String]) -> bool {
    invalid.iter().any(|c| must_flag.contains(&c.as_str()))
}

fn beside_schism(name: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join(name)))
        .unwrap_or_else(|| PathBuf::from(name))
}

/// A row's workload, by the name the matrices give it.
fn kind_of(name: &str) -> anyhow::Result<WorkloadKind> {
    WorkloadKind::from_name(name).ok_or_else(|| {
        anyhow::anyhow!(crate::config::UsageError(format!(
            "unknown workload `{name}`: choose from {}",
            WorkloadKind::names()
        )))
    })
}

fn config(
    args: &GateArgs,
    workload: WorkloadKind,
    faults: &str,
    seed: u64,
    bug: Option<&BugEntry>,
) -> anyhow::Result<TestConfig> {
    let backend = args.backend.unwrap_or_else(BackendKind::default_for_host);
    let keeperd = match (bug, &args.keeperd_bugs, &args.keeperd) {
        (Some(_), Some(p), _) => runner::absolute(p)?,
        (Some(_), None, _) => beside_schism("keeperd-bugs"),
        (None, _, Some(p)) => runner::absolute(p)?,
        (None, _, None) => crate::keeperd::default_keeperd(backend),
    };
    if !keeperd.exists() {
        anyhow::bail!(crate::config::UsageError(format!(
            "{} does not exist: build it first ({})",
            keeperd.display(),
            if bug.is_some() {
                "make build-bugs"
            } else {
                "cargo build -p keeper"
            }
        )));
    }
    // Everything the gate does not choose itself is `schism test`'s default, from the one
    // place defaults live (the CLI's options).
    let mut opts = crate::cli::RunOptions::defaults();
    opts.backend = Some(backend);
    opts.nodes = args.nodes;
    opts.time_limit = args.time_limit;
    opts.nemesis_interval = Duration::from_millis(GATE_NEMESIS_INTERVAL_MS);
    opts.keeperd = Some(keeperd);
    opts.server_bug = bug.map(|b| b.bug.to_string());
    opts.keeperd_args = bug
        .map(|b| b.keeperd_args.iter().map(|s| s.to_string()).collect())
        .unwrap_or_default();
    let nemesis = crate::config::parse_fault_set(faults).map_err(crate::config::UsageError)?;
    crate::cli::config_for(workload, nemesis, &opts, seed)
}

/// Mean time between faults in a gate run: shorter than `schism test`'s default, so a 30 s row
/// sees several faults.
const GATE_NEMESIS_INTERVAL_MS: u64 = 3_000;

async fn run_one(
    config: TestConfig,
    results: &Path,
    command_line: &[String],
    cancel: &CancellationToken,
) -> RunOutcome {
    let progress = Progress::new(config.time_limit());
    let req = RunRequest {
        config,
        results_root: results.to_path_buf(),
        command_line: command_line.to_vec(),
        replay_of: None,
    };
    runner::run_test(req, cancel.clone(), &progress).await
}

pub async fn gate(
    args: GateArgs,
    command_line: Vec<String>,
    cancel: CancellationToken,
) -> anyhow::Result<i32> {
    use rand::RngExt;
    let results = runner::absolute(&args.results)?;
    let base_seed = args
        .seed
        .unwrap_or_else(|| rand::rng().random_range(0..1u64 << 32));
    let only: Option<Vec<String>> = args
        .bugs
        .as_ref()
        .map(|s| s.split(',').map(|b| b.trim().to_string()).collect());
    if let Some(only) = &only {
        for b in only {
            if !BUG_MATRIX.iter().any(|e| e.bug == b) {
                anyhow::bail!(crate::config::UsageError(format!(
                    "unknown bug `{b}`: choose from {}",
                    BUG_MATRIX
                        .iter()
                        .map(|e| e.bug)
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
    }
    let attempts = args.attempts.max(1);
    let started_at = iso_timestamp(SystemTime::now());
    let mut rows = Vec::new();
    for (i, entry) in BUG_MATRIX.iter().enumerate() {
        if args.sim_only
            || only
                .as_ref()
                .is_some_and(|o| !o.iter().any(|b| b == entry.bug))
        {
            continue;
        }
        let mut row = GateRow {
            bug: Some(entry.bug.to_string()),
            workload: entry.workload.to_string(),
            faults: entry.faults.to_string(),
            verdict: "not run".into(),
            pass: false,
            runs: 0,
            detected_after_s: None,
            must_flag: entry.must_flag.iter().map(|c| c.to_string()).collect(),
            caught_by: vec![],
            checkers: vec![],
            seeds: vec![],
            run_dirs: vec![],
        };
        let mut spent = 0.0;
        for a in 0..attempts {
            if cancel.is_cancelled() {
                break;
            }
            let seed = base_seed.wrapping_add((i as u64) * 100 + u64::from(a));
            eprintln!(
                "gate: {} ({} + {}), run {} of at most {attempts}, seed {seed}",
                entry.bug,
                entry.workload,
                entry.faults,
                a + 1
            );
            let cfg = config(
                &args,
                kind_of(entry.workload)?,
                entry.faults,
                seed,
                Some(entry),
            )?;
            let outcome = run_one(cfg, &results, &command_line, &cancel).await;
            spent += outcome.seconds;
            row.runs += 1;
            row.seeds.push(seed);
            if let Some(d) = &outcome.run_dir {
                row.run_dirs.push(d.path.clone());
            }
            let seen = verdict_of(&outcome);
            row.verdict = seen.verdict;
            row.caught_by = seen.invalid;
            row.checkers = seen.checkers;
            if caught(entry.must_flag, &row.caught_by) {
                row.pass = true;
                row.detected_after_s = Some(spent);
                break;
            }
        }
        eprintln!(
            "gate: {} → {}",
            entry.bug,
            if row.pass { "caught" } else { "MISSED" }
        );
        rows.push(row);
    }
    if only.is_none() && !args.sim_only {
        let correct: Vec<(&str, &str)> = if args.short {
            SHORT_CORRECT_ROWS.to_vec()
        } else {
            WorkloadKind::ALL
                .iter()
                .flat_map(|w| CORRECT_FAULT_SETS.iter().map(move |f| (w.name(), *f)))
                .collect()
        };
        for (i, (workload, faults)) in correct.into_iter().enumerate() {
            if cancel.is_cancelled() {
                break;
            }
            let seed = base_seed.wrapping_add(10_000 + i as u64);
            eprintln!("gate: correct server, {workload} + {faults}, seed {seed}");
            let cfg = config(&args, kind_of(workload)?, faults, seed, None)?;
            let outcome = run_one(cfg, &results, &command_line, &cancel).await;
            let seen = verdict_of(&outcome);
            rows.push(GateRow {
                bug: None,
                workload: workload.to_string(),
                faults: faults.to_string(),
                pass: seen.verdict == "valid",
                verdict: seen.verdict,
                runs: 1,
                detected_after_s: None,
                must_flag: vec![],
                caught_by: seen.invalid,
                checkers: seen.checkers,
                seeds: vec![seed],
                run_dirs: outcome.run_dir.iter().map(|d| d.path.clone()).collect(),
            });
        }
    }
    let sim = if cancel.is_cancelled() {
        Vec::new()
    } else {
        let plan = SimColumn::for_gate(&args, base_seed, only.as_deref(), &results)?;
        tokio::task::spawn_blocking(move || plan.run()).await??
    };
    let pass = (!rows.is_empty() || !sim.is_empty())
        && rows.iter().all(|r| r.pass)
        && sim.iter().all(|r| r.pass)
        && !cancel.is_cancelled();
    let report = GateReport {
        commit: commit_id(),
        started_at,
        base_seed,
        short: args.short,
        attempts,
        time_limit_s: args.time_limit.as_secs(),
        nodes: args.nodes,
        command_line: command_line.clone(),
        pass,
        rows,
        sim,
    };
    // `--sim-only` has no real rows: no empty table for them.
    let mut table = if report.rows.is_empty() {
        String::new()
    } else {
        render(&report.rows)
    };
    if !report.sim.is_empty() {
        table.push('\n');
        table.push_str(&render_sim(&report.sim));
    }
    println!("{table}");
    let dir = results
        .join("gate")
        .join(iso_timestamp(SystemTime::now()).replace([':', '-'], ""));
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        dir.join("gate.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    std::fs::write(dir.join("gate.md"), &table)?;
    println!("gate table: {}", dir.join("gate.json").display());
    if let Some(doc) = &args.doc {
        std::fs::write(doc, render_doc(&report))?;
        println!("gate document: {}", doc.display());
    }
    if cancel.is_cancelled() {
        return Ok(EXIT_HARNESS_FAILURE);
    }
    // The rows that failed, last: a CI log cut to its tail still says what went wrong.
    for line in failed_rows(&report) {
        println!("gate: not as it must be: {line}");
    }
    println!("gate: {}", if pass { "PASS" } else { "FAIL" });
    Ok(if pass { EXIT_VALID } else { EXIT_INVALID })
}

/// docs/GATE.md: generated from a gate run's report, never edited by hand.
/// One line per row that is not as it must be: what it was, what it got, where its runs are.
pub fn failed_rows(report: &GateReport) -> Vec<String> {
    let real = report.rows.iter().filter(|r| !r.pass).map(|r| {
        let what = match &r.bug {
            Some(bug) => format!("{bug} ({} + {})", r.workload, r.faults),
            None => format!("correct server ({} + {})", r.workload, r.faults),
        };
        format!(
            "{what}: {} after {} run(s), seeds {:?}; checkers: {}; runs: {}",
            r.verdict,
            r.runs,
            r.seeds,
            r.checkers.join(", "),
            r.run_dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(" ")
        )
    });
    let simulated = report.sim.iter().filter(|r| !r.pass).map(|r| {
        format!(
            "simulated {}{}: {} over {} seeds from {} ({} invalid, {} unknown)",
            r.bug.as_deref().unwrap_or("correct server"),
            r.workload
                .as_deref()
                .map(|w| format!(" --workload {w}"))
                .unwrap_or_default(),
            r.verdict,
            r.seeds,
            r.first_seed,
            r.invalid,
            r.unknown
        )
    });
    real.chain(simulated).collect()
}

pub fn render_doc(report: &GateReport) -> String {
    let mut out = String::from(
        "# The catch matrix

",
    );
    out.push_str(
        "<!-- Generated by `schism gate --doc docs/GATE.md` from a real run; do not edit by hand. -->

",
    );
    out.push_str(&format!(
        "Produced by `{}` at commit `{}`, started {}, base seed {} ({} nodes, {} s per run, at most {} runs per bug{}). Result: **{}**.

",
        report.command_line.join(" "),
        report.commit,
        report.started_at,
        report.base_seed,
        report.nodes,
        report.time_limit_s,
        report.attempts,
        if report.short { ", short set of correct-server rows" } else { "" },
        if report.pass { "PASS" } else { "FAIL" }
    ));
    out.push_str(
        "A bug counts as caught only when one of the checkers in *must flag* reports `invalid`; every checker's verdict of the deciding run is shown beside it. The correct server's rows must be `valid` (every checker, liveness included).

",
    );
    out.push_str(&render(&report.rows));
    if !report.sim.is_empty() {
        out.push_str(SIM_COLUMN_DOC);
        out.push_str(&render_sim(&report.sim));
    }
    out.push_str(
        "
## Runs

| row | seeds | checkers of the deciding run |
|---|---|---|
",
    );
    for r in &report.rows {
        out.push_str(&format!(
            "| {} / {} / {} | {} | {} |\n",
            r.bug.as_deref().unwrap_or("(correct server)"),
            r.workload,
            r.faults,
            r.seeds
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            r.checkers.join(", ")
        ));
    }
    out.push_str(&format!("
Reproduce a row: `schism test --workload W --nemesis F --seed S --time-limit {}s --nodes {}` (with `--keeperd target/debug/keeperd-bugs --server-bug BUG` for a bug row).\n", report.time_limit_s, report.nodes));
    out
}

/// The table as Markdown: bug, workload, faults, verdict, time to detection.
pub fn render(rows: &[GateRow]) -> String {
    let mut out = String::from(
        "| bug | workload | faults | must flag | verdict | detected after | runs | caught by | as it must be |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.bug.as_deref().unwrap_or("(correct server)"),
            r.workload,
            r.faults,
            if r.must_flag.is_empty() {
                "-".to_string()
            } else {
                r.must_flag.join(", ")
            },
            r.verdict,
            r.detected_after_s
                .map(|s| format!("{s:.0} s"))
                .unwrap_or_else(|| "-".into()),
            r.runs,
            if r.caught_by.is_empty() {
                "-".to_string()
            } else {
                r.caught_by.join(", ")
            },
            if r.pass { "yes" } else { "NO" }
        ));
    }
    out
}

// ---- the simulated column -------------------------------------------------------------------

/// Seeds each simulable bug gets in `schism sim` before it counts as missed.
pub const SIM_SEEDS_PER_BUG: u64 = 300;
/// Seeds the correct server runs in the simulated column of the short gate (CI) and the full one.
pub const SIM_CORRECT_SEEDS_SHORT: u64 = 1_000;
pub const SIM_CORRECT_SEEDS_FULL: u64 = 10_000;
/// The share of `--workload any` seeds on the correct server that may end `unknown` (about 1%
/// do, all by `stats`: see `SimColumn::run`).
const SIM_WORKLOAD_UNKNOWN_SHARE: f64 = 0.03;
/// Threads running the correct server's seeds (the bug rows use one, so that the seeds to the
/// first detection are counted in order).
const SIM_CORRECT_JOBS: usize = 2;

const SIM_COLUMN_DOC: &str = "
## Simulated column

Each bug the simulator can express also runs under `schism sim --server-bug BUG` (`target/debug/schism-bugs`, installed by `make build-bugs`), one seed after another, until a seed is flagged `invalid` by one of the bug's *must flag* checkers: those the simulation's own clients show (`sim::SIMULATED_BUGS`) with them, those that need sessions, ephemeral or sequential nodes or multis (`sim::SIMULATED_WITH_WORKLOAD`) with the row's workload through the simulated transport (`--workload W`, named in brackets). The correct server runs `schism sim` over many seeds, with the simulation's own clients (no `invalid` and no `unknown` seed) and with `--workload any` (each seed draws a workload: no `invalid` seed, and at most 3% `unknown`, each a workload's rare operation that never succeeded in a heavily faulted seed, said by `stats`). Replay a seed with `schism sim --seed S` (`schism-bugs sim --seed S --server-bug BUG`, plus `--workload W` where the row names one).

";

/// A bug row of the simulated column.
#[derive(Clone, Debug, PartialEq)]
pub struct SimBugRow {
    pub bug: String,
    /// The workload it runs through the simulated transport (`--workload`, the catch matrix
    /// row's); `None`: the simulation's own clients.
    pub workload: Option<String>,
    /// The checkers that must flag it.
    pub must_flag: Vec<String>,
}

/// The catch matrix's bugs the simulator expresses, only those of `only` if given: those of
/// `sim::SIMULATED_BUGS` with the simulation's own clients, those of
/// `sim::SIMULATED_WITH_WORKLOAD` with their row's workload.
pub fn simulated_bug_rows(only: Option<&[String]>) -> Vec<SimBugRow> {
    BUG_MATRIX
        .iter()
        .filter(|e| only.is_none_or(|o| o.iter().any(|b| b == e.bug)))
        .filter_map(|e| {
            let bug = sim::Bug::parse(e.bug)?;
            let workload = if sim::SIMULATED_BUGS.contains(&bug) {
                None
            } else if sim::SIMULATED_WITH_WORKLOAD.contains(&bug) {
                Some(e.workload.to_string())
            } else {
                return None;
            };
            Some(SimBugRow {
                bug: e.bug.to_string(),
                workload,
                must_flag: e.must_flag.iter().map(|c| c.to_string()).collect(),
            })
        })
        .collect()
}

/// One row of the simulated column.
#[derive(Serialize, Debug, Clone)]
pub struct SimRow {
    /// The injected bug, or null for the correct server.
    pub bug: Option<String>,
    /// `--workload`: the row's workload, `any` (each seed draws one), or null for the
    /// simulation's own clients.
    #[serde(default)]
    pub workload: Option<String>,
    pub must_flag: Vec<String>,
    /// `caught`, `missed`, `valid` (correct server, no seed invalid) or `invalid`, or the error.
    pub verdict: String,
    pub pass: bool,
    pub first_seed: u64,
    /// Seeds run: until the detection for a caught bug.
    pub seeds: u64,
    /// The seed that showed the bug.
    pub caught_at: Option<u64>,
    pub caught_by: Vec<String>,
    /// For the correct server: seeds that were invalid / unknown.
    pub invalid: u64,
    pub unknown: u64,
    pub wall_s: f64,
    pub simulated_s: f64,
}

/// What the simulated column runs: which binaries, which bugs, from which seed.
pub struct SimColumn {
    schism: PathBuf,
    schism_bugs: PathBuf,
    bugs: Vec<SimBugRow>,
    first_seed: u64,
    seeds_per_bug: u64,
    correct_seeds: u64,
    results: PathBuf,
}

impl SimColumn {
    /// The column for a gate run: every bug row whose bug the simulator expresses (only those of
    /// `--bugs` if given; the correct server's row only when all run).
    fn for_gate(
        args: &GateArgs,
        base_seed: u64,
        only: Option<&[String]>,
        results: &Path,
    ) -> anyhow::Result<SimColumn> {
        let correct_seeds = match (args.sim_seeds, args.short) {
            (Some(n), _) => n,
            (None, true) => SIM_CORRECT_SEEDS_SHORT,
            (None, false) => SIM_CORRECT_SEEDS_FULL,
        };
        let schism = std::env::current_exe()?;
        let schism_bugs = match &args.schism_bugs {
            Some(p) => runner::absolute(p)?,
            None => beside_schism("schism-bugs"),
        };
        let bugs = if correct_seeds == 0 {
            Vec::new()
        } else {
            simulated_bug_rows(only)
        };
        if !bugs.is_empty() && !schism_bugs.exists() {
            anyhow::bail!(crate::config::UsageError(format!(
                "{} does not exist: build it first (make build-bugs), or give --sim-seeds 0",
                schism_bugs.display()
            )));
        }
        Ok(SimColumn {
            schism,
            schism_bugs,
            bugs,
            first_seed: base_seed,
            seeds_per_bug: SIM_SEEDS_PER_BUG,
            correct_seeds: if only.is_some() { 0 } else { correct_seeds },
            results: results.to_path_buf(),
        })
    }

    /// The column with explicit binaries and bounds (the tests use the schism they built).
    pub fn new(
        schism: PathBuf,
        schism_bugs: PathBuf,
        bugs: Vec<SimBugRow>,
        first_seed: u64,
        seeds_per_bug: u64,
        correct_seeds: u64,
        results: PathBuf,
    ) -> SimColumn {
        SimColumn {
            schism,
            schism_bugs,
            bugs,
            first_seed,
            seeds_per_bug,
            correct_seeds,
            results,
        }
    }

    /// Runs every row (blocking: each is a `schism sim` process).
    pub fn run(&self) -> anyhow::Result<Vec<SimRow>> {
        let mut rows = Vec::new();
        for b in &self.bugs {
            eprintln!(
                "gate: sim, {}: up to {} seeds from {}",
                b.bug, self.seeds_per_bug, self.first_seed
            );
            let row = self.bug_row(b)?;
            eprintln!(
                "gate: sim, {} → {}",
                b.bug,
                if row.pass { "caught" } else { "MISSED" }
            );
            rows.push(row);
        }
        // The simulation's own clients, then schism's workloads drawn per seed.
        let correct_rows: &[Option<&str>] = if self.correct_seeds > 0 {
            &[None, Some("any")]
        } else {
            &[]
        };
        for &workload in correct_rows {
            eprintln!(
                "gate: sim, correct server{}: {} seeds from {}",
                workload
                    .map(|w| format!(" (--workload {w})"))
                    .unwrap_or_default(),
                self.correct_seeds,
                self.first_seed
            );
            let s = self.sim(
                None,
                workload,
                self.first_seed,
                self.correct_seeds,
                SIM_CORRECT_JOBS,
                false,
            )?;
            // Every seed ends with a fault-free phase (a quiet workload, then the final reads),
            // so every checker has evidence: with the simulation's own clients an `unknown`
            // seed is a cluster that never served again, or a checker that gave up. A
            // workload's rarer operations (an election's `resign`, a register's `delete` that
            // finds its znode) may still never succeed in a heavily faulted seed, and `stats`
            // says `unknown` for it: up to `SIM_WORKLOAD_UNKNOWN_SHARE` of such seeds pass.
            let unknown_allowed = match workload {
                None => 0,
                Some(_) => (s.seeds as f64 * SIM_WORKLOAD_UNKNOWN_SHARE) as u64,
            };
            let pass =
                s.seeds == self.correct_seeds && s.invalid == 0 && s.unknown <= unknown_allowed;
            rows.push(SimRow {
                bug: None,
                workload: workload.map(str::to_string),
                must_flag: vec![],
                verdict: if s.invalid > 0 { "invalid" } else { "valid" }.to_string(),
                pass,
                first_seed: self.first_seed,
                seeds: s.seeds,
                caught_at: None,
                caught_by: s
                    .failing
                    .iter()
                    .filter(|f| f.verdict == Verdict::Invalid)
                    .flat_map(|f| {
                        f.invalid
                            .iter()
                            .map(move |c| format!("{c} (seed {})", f.seed))
                    })
                    .collect(),
                invalid: s.invalid,
                unknown: s.unknown,
                wall_s: s.wall_s,
                simulated_s: s.simulated_s,
            });
        }
        Ok(rows)
    }

    /// Seeds in order from the first until one is flagged by a checker that must flag the bug,
    /// or the seeds run out.
    fn bug_row(&self, b: &SimBugRow) -> anyhow::Result<SimRow> {
        let mut row = SimRow {
            bug: Some(b.bug.clone()),
            workload: b.workload.clone(),
            must_flag: b.must_flag.clone(),
            verdict: "missed".into(),
            pass: false,
            first_seed: self.first_seed,
            seeds: 0,
            caught_at: None,
            caught_by: vec![],
            invalid: 0,
            unknown: 0,
            wall_s: 0.0,
            simulated_s: 0.0,
        };
        let end = self.first_seed.saturating_add(self.seeds_per_bug);
        let mut next = self.first_seed;
        while next < end {
            let s = self.sim(
                Some(&b.bug),
                b.workload.as_deref(),
                next,
                end - next,
                1,
                true,
            )?;
            row.seeds += s.seeds;
            row.wall_s += s.wall_s;
            row.simulated_s += s.simulated_s;
            row.invalid += s.invalid;
            row.unknown += s.unknown;
            let Some(f) = s.failing.first() else {
                break;
            };
            let must: Vec<&str> = b.must_flag.iter().map(String::as_str).collect();
            if caught(&must, &f.invalid) {
                row.verdict = "caught".into();
                row.pass = true;
                row.caught_at = Some(f.seed);
                row.caught_by = f.invalid.clone();
                break;
            }
            // Not valid, but not by the bug's own checkers: go on after it.
            next = f.seed + 1;
        }
        Ok(row)
    }

    /// One `schism sim` process (`schism-bugs` for a bug); its `--summary`.
    fn sim(
        &self,
        bug: Option<&str>,
        workload: Option<&str>,
        first_seed: u64,
        seeds: u64,
        jobs: usize,
        stop_on_failure: bool,
    ) -> anyhow::Result<crate::sim::SimSummary> {
        let dir = self.results.join("sim");
        std::fs::create_dir_all(&dir)?;
        let binary = if bug.is_some() {
            &self.schism_bugs
        } else {
            &self.schism
        };
        let summary = dir.join(format!(
            ".gate-{}-{}-{first_seed}-{}.json",
            bug.unwrap_or("correct"),
            workload.unwrap_or("own"),
            std::process::id()
        ));
        let mut cmd = std::process::Command::new(binary);
        cmd.arg("sim")
            .args(["--first-seed", &first_seed.to_string()])
            .args(["--seeds", &seeds.to_string()])
            .args(["--jobs", &jobs.to_string()])
            .arg("--results")
            .arg(&self.results)
            .arg("--summary")
            .arg(&summary)
            .stdout(std::process::Stdio::null());
        if let Some(bug) = bug {
            cmd.args(["--server-bug", bug]);
        }
        if let Some(workload) = workload {
            cmd.args(["--workload", workload]);
        }
        if stop_on_failure {
            cmd.arg("--stop-on-failure");
        }
        let status = cmd
            .status()
            .map_err(|e| anyhow::anyhow!("cannot run {}: {e}", binary.display()))?;
        let text = std::fs::read_to_string(&summary);
        let _ = std::fs::remove_file(&summary);
        match (status.code(), text) {
            (Some(0..=2), Ok(text)) => Ok(serde_json::from_str(&text)?),
            (code, _) => anyhow::bail!(
                "{} sim{} ended with {} and no summary",
                binary.display(),
                bug.map(|b| format!(" --server-bug {b}"))
                    .unwrap_or_default(),
                code.map_or("a signal".to_string(), |c| format!("exit code {c}"))
            ),
        }
    }
}

/// The simulated column as Markdown.
pub fn render_sim(rows: &[SimRow]) -> String {
    let mut out = String::from(
        "| simulated | must flag | verdict | seeds | caught at seed | caught by | wall | as it must be |\n|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        out.push_str(&format!(
            "| {}{} | {} | {} | {} | {} | {} | {:.1} s | {} |\n",
            r.bug.as_deref().unwrap_or("(correct server)"),
            r.workload
                .as_deref()
                .map(|w| format!(" [{w}]"))
                .unwrap_or_default(),
            if r.must_flag.is_empty() {
                "-".to_string()
            } else {
                r.must_flag.join(", ")
            },
            if r.bug.is_none() {
                format!(
                    "{} ({} invalid, {} unknown)",
                    r.verdict, r.invalid, r.unknown
                )
            } else {
                r.verdict.clone()
            },
            r.seeds,
            r.caught_at.map_or("-".to_string(), |s| s.to_string()),
            if r.caught_by.is_empty() {
                "-".to_string()
            } else {
                r.caught_by.join(", ")
            },
            r.wall_s,
            if r.pass { "yes" } else { "NO" }
        ));
    }
    out
}

// ---- torture --------------------------------------------------------------------------------

#[derive(clap::Args, Debug, Clone)]
pub struct TortureArgs {
    /// How long to keep testing (e.g. 8h, 30m).
    #[arg(long, default_value = "8h", value_parser = crate::config::parse_duration)]
    pub duration: Duration,
    /// Stop at the first run that is not valid.
    #[arg(long)]
    pub stop_on_failure: bool,
    /// Length of each run.
    #[arg(long, default_value = "60s", value_parser = crate::config::parse_duration)]
    pub time_limit: Duration,
    #[arg(long, default_value_t = 5)]
    pub nodes: usize,
    #[arg(long, value_enum)]
    pub backend: Option<BackendKind>,
    #[arg(long)]
    pub seed: Option<u64>,
    #[arg(long)]
    pub keeperd: Option<PathBuf>,
    /// Also keep the results of valid runs (by default only failing runs are kept).
    #[arg(long)]
    pub keep_valid: bool,
    /// Loop `schism sim` seeds instead of real runs (from --seed; --nodes, --time-limit,
    /// --backend and --keeperd do not apply; failing seeds go to RESULTS/sim/).
    #[arg(long)]
    pub sim: bool,
    /// With --sim: threads running seeds.
    #[arg(long, default_value_t = 1)]
    pub jobs: usize,
    #[arg(long, default_value = "results")]
    pub results: PathBuf,
}

/// Fault mixes torture cycles through, with every workload.
pub const TORTURE_MIXES: &[&str] = &[
    "partition,kill,pause",
    "partition-leader,kill-leader",
    "depose-leader,pause",
    "partition,flaky,slow",
    "kill,pause,partition,partition-leader,depose-leader",
];

/// Loops over seeds, workloads and fault mixes until `duration` is spent; keeps every run that is
/// not valid. Exit code: the worst verdict seen.
pub async fn torture(
    args: TortureArgs,
    command_line: Vec<String>,
    cancel: CancellationToken,
) -> anyhow::Result<i32> {
    use rand::RngExt;
    if args.sim {
        return torture_sim(&args, cancel).await;
    }
    let results = runner::absolute(&args.results)?;
    let base_seed = args
        .seed
        .unwrap_or_else(|| rand::rng().random_range(0..1u64 << 32));
    let gate_args = GateArgs {
        short: false,
        doc: None,
        attempts: 1,
        time_limit: args.time_limit,
        nodes: args.nodes,
        backend: args.backend,
        seed: None,
        keeperd: args.keeperd.clone(),
        keeperd_bugs: None,
        bugs: None,
        schism_bugs: None,
        sim_seeds: Some(0),
        sim_only: false,
        results: args.results.clone(),
    };
    let started = Instant::now();
    let mut codes = Vec::new();
    let mut kept = Vec::new();
    let mut i = 0u64;
    while started.elapsed() + args.time_limit <= args.duration && !cancel.is_cancelled() {
        let workloads = WorkloadKind::ALL;
        let workload = workloads[(i as usize) % workloads.len()];
        let mix = TORTURE_MIXES[(i as usize / workloads.len()) % TORTURE_MIXES.len()];
        let seed = base_seed.wrapping_add(i);
        eprintln!(
            "torture: run {} ({workload} + {mix}, seed {seed}), {:.0} of {:.0} min spent",
            i + 1,
            started.elapsed().as_secs_f64() / 60.0,
            args.duration.as_secs_f64() / 60.0
        );
        let cfg = config(&gate_args, workload, mix, seed, None)?;
        let outcome = run_one(cfg, &results, &command_line, &cancel).await;
        crate::output::print_summary(&outcome);
        let code = outcome.exit_code();
        codes.push(code);
        match &outcome.run_dir {
            Some(d) if code != EXIT_VALID => kept.push(d.path.clone()),
            Some(d) if !args.keep_valid => {
                let _ = std::fs::remove_dir_all(&d.path);
            }
            _ => {}
        }
        i += 1;
        if code != EXIT_VALID && args.stop_on_failure {
            break;
        }
    }
    println!(
        "torture: {} runs in {:.0} min, {} not valid",
        codes.len(),
        started.elapsed().as_secs_f64() / 60.0,
        kept.len()
    );
    for k in &kept {
        println!("  kept {}", k.display());
    }
    Ok(crate::verdict::combined_exit_code(codes))
}

/// `schism torture --sim`: `schism sim`'s own loop (`sim::run_seeds`) over seeds from --seed
/// until --duration is spent or Ctrl-C, every failing seed written as a results directory.
/// Exit code as `schism test`: the worst verdict of the seeds run.
async fn torture_sim(args: &TortureArgs, cancel: CancellationToken) -> anyhow::Result<i32> {
    use rand::RngExt;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let first_seed = args
        .seed
        .unwrap_or_else(|| rand::rng().random_range(0..1u64 << 32));
    let sim_args = crate::sim::SimArgs {
        seeds: u64::MAX,
        first_seed,
        seed: None,
        nodes: None,
        // A night covers every workload: each seed draws one (or the simulation's own clients).
        workload: Some(crate::sim::SimWorkload::Any),
        jobs: args.jobs,
        duration: Some(args.duration),
        server_bug: None,
        check_determinism: false,
        lossy_links: false,
        trace: false,
        stop_on_failure: args.stop_on_failure,
        summary: None,
        results: args.results.clone(),
    };
    eprintln!(
        "torture: simulated seeds from {first_seed} for {:.0} min (Ctrl-C stops)",
        args.duration.as_secs_f64() / 60.0
    );
    let stop = Arc::new(AtomicBool::new(false));
    let on_cancel = {
        let stop = stop.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move {
            cancel.cancelled().await;
            stop.store(true, Ordering::Relaxed);
        })
    };
    let run = {
        let stop = stop.clone();
        tokio::task::spawn_blocking(move || crate::sim::run_seeds(&sim_args, &stop))
    };
    let outcome = run.await;
    on_cancel.abort();
    let summary = match outcome? {
        Ok(summary) => summary,
        Err(crate::sim::SimError::Usage(e)) => {
            anyhow::bail!(crate::config::UsageError(format!("torture --sim: {e}")))
        }
        Err(e) => anyhow::bail!("torture --sim: {e}"),
    };
    println!("torture: {}", summary.line());
    for f in &summary.failing {
        if let Some(d) = &f.dir {
            println!("  kept {}", d.display());
        }
    }
    Ok(summary.verdict().exit_code())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn a_gate_row_is_schism_test_with_the_gate_s_own_choices_only() {
        let dir = tempfile::tempdir().unwrap();
        let keeperd = dir.path().join("keeperd");
        std::fs::write(&keeperd, "").unwrap();
        let args = GateArgs::try_parse_from_for_test(&[
            "--keeperd",
            keeperd.to_str().unwrap(),
            "--backend",
            "local",
        ]);
        let row = config(&args, WorkloadKind::Register, "kill", 9, None).unwrap();
        let cli = crate::cli::config_for(
            WorkloadKind::Register,
            "kill".parse().unwrap(),
            &crate::cli::RunOptions::defaults(),
            9,
        )
        .unwrap();
        // What the gate chooses itself...
        assert_eq!((row.nodes, row.time_limit_ms), (3, 30_000));
        assert_eq!(row.nemesis_interval_ms, GATE_NEMESIS_INTERVAL_MS);
        // ...and everything else as `schism test` has it.
        assert_eq!(
            (
                row.rate,
                row.concurrency,
                row.op_timeout_ms,
                row.recovery_timeout_ms
            ),
            (
                cli.rate,
                cli.concurrency,
                cli.op_timeout_ms,
                cli.recovery_timeout_ms
            )
        );
        assert_eq!(row.read_consistency, cli.read_consistency);
        assert_eq!(row.node_choice, cli.node_choice);
        assert_eq!((row.system, row.protocol), (cli.system, cli.protocol));
    }

    #[test]
    fn a_bug_counts_only_when_its_own_checker_flags_it() {
        let invalid = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        assert!(caught(&["sessions"], &invalid(&["sessions", "stats"])));
        // Flagged by another checker only: not shown by the check that claims it.
        assert!(!caught(&["sessions"], &invalid(&["convergence"])));
        assert!(!caught(&["linearizable"], &invalid(&[])));
        for entry in BUG_MATRIX {
            assert!(
                !entry.must_flag.is_empty(),
                "{} names no checker",
                entry.bug
            );
        }
    }

    /// The gate reads the workloads' checker table: a row whose checker its workload never
    /// runs could never be caught.
    #[test]
    fn every_bug_row_names_a_workload_and_checkers_that_workload_runs() {
        for entry in BUG_MATRIX {
            let kind = kind_of(entry.workload).unwrap();
            for checker in entry.must_flag {
                assert!(
                    kind.checkers().contains(checker)
                        || checker::workload::RUN_CHECKERS.contains(checker),
                    "{}: {kind} never runs {checker}",
                    entry.bug
                );
            }
        }
    }

    #[test]
    fn the_short_correct_rows_cover_every_workload_and_every_fault_that_runs_here() {
        let workloads: BTreeSet<&str> = SHORT_CORRECT_ROWS.iter().map(|(w, _)| *w).collect();
        for w in WorkloadKind::ALL.map(WorkloadKind::name) {
            assert!(
                workloads.contains(w),
                "workload {w} has no correct row in CI"
            );
        }
        let faults: BTreeSet<&str> = SHORT_CORRECT_ROWS
            .iter()
            .flat_map(|(_, f)| f.split(','))
            .collect();
        for f in nemesis::fault::FAULT_KINDS {
            // netem is missing from this kernel: `delay` is refused with one line, never run.
            if *f != "delay" {
                assert!(faults.contains(f), "fault {f} has no correct row in CI");
            }
        }
    }

    #[test]
    fn the_document_names_its_commit_and_seeds() {
        let report = GateReport {
            commit: "abc123".into(),
            started_at: "2026-11-30T00:00:00Z".into(),
            base_seed: 7,
            short: true,
            attempts: 3,
            time_limit_s: 30,
            nodes: 3,
            command_line: vec!["schism".into(), "gate".into()],
            pass: true,
            rows: vec![GateRow {
                bug: Some("watch-drop".into()),
                workload: "watch".into(),
                faults: "none".into(),
                verdict: "invalid".into(),
                pass: true,
                runs: 1,
                detected_after_s: Some(30.0),
                must_flag: vec!["watches".into()],
                caught_by: vec!["watches".into()],
                checkers: vec!["watches: invalid".into()],
                seeds: vec![707],
                run_dirs: vec![],
            }],
            sim: vec![SimRow {
                bug: Some("early-ack".into()),
                workload: None,
                must_flag: vec!["linearizable".into()],
                verdict: "caught".into(),
                pass: true,
                first_seed: 7,
                seeds: 3,
                caught_at: Some(9),
                caught_by: vec!["linearizable".into()],
                invalid: 1,
                unknown: 0,
                wall_s: 0.1,
                simulated_s: 90.0,
            }],
        };
        let doc = render_doc(&report);
        assert!(doc.contains("`abc123`"), "{doc}");
        assert!(doc.contains("| 707 |"), "{doc}");
        assert!(doc.contains("do not edit by hand"), "{doc}");
        assert!(doc.contains("## Simulated column"), "{doc}");
        assert!(
            doc.contains("| early-ack | linearizable | caught | 3 | 9 | linearizable |"),
            "{doc}"
        );
        assert!(failed_rows(&report).is_empty());
        let mut missed = report.clone();
        missed.rows[0].pass = false;
        missed.rows[0].verdict = "valid".into();
        missed.sim[0].pass = false;
        let lines = failed_rows(&missed);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(
            lines[0].starts_with("watch-drop (watch + none): valid after 1 run(s), seeds [707]")
        );
        assert!(lines[1].starts_with("simulated early-ack"), "{lines:?}");
    }
}
