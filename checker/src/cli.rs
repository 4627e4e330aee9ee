//! `schism check` and `schism bench-checker`: argument types for the harness's clap parser, and
//! the commands themselves. Each returns the process exit code.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::generate::{self, GenConfig};
use crate::model::ModelKind;
use crate::run::{self, CheckOptions, DEFAULT_MEMORY_LIMIT_MIB, DEFAULT_TIME_LIMIT_S};
use crate::verdict::{RunVerdict, Verdict};

/// Exit code for bad arguments or unreadable input.
pub const EXIT_BAD_INPUT: i32 = 254;

#[derive(clap::Args, Debug, Clone)]
pub struct CheckArgs {
    /// History files (JSON lines, Jepsen history.edn, history.txt or jepsen.log) or results
    /// directories. With several, each gets one line and the exit code is the worst.
    #[arg(required = true, num_args = 1..)]
    pub paths: Vec<PathBuf>,
    /// Check linearizability against this model instead of the workload's checkers.
    #[arg(long, value_enum)]
    pub model: Option<ModelKind>,
    /// The register's initial value (JSON, or else taken as a string); nil when absent.
    #[arg(long)]
    pub initial: Option<String>,
    /// Print the full result as JSON on stdout instead of the one-line verdicts.
    #[arg(long)]
    pub json: bool,
    /// Write the counterexample page (if there is a violation) to this file.
    #[arg(long)]
    pub html: Option<PathBuf>,
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// The search's limits, as `check` and `bench-checker` take them.
#[derive(clap::Args, Debug, Clone)]
pub struct LimitArgs {
    /// Give up (verdict unknown) after this many seconds.
    #[arg(long, default_value_t = DEFAULT_TIME_LIMIT_S)]
    pub time_limit: u64,
    /// Give up (verdict unknown) when the search's memo cache exceeds this many MiB.
    #[arg(long, default_value_t = DEFAULT_MEMORY_LIMIT_MIB)]
    pub memory_limit: u64,
    /// Search threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
}

impl LimitArgs {
    /// Check options with these limits, the model and initial value as given.
    fn options(&self, model: Option<ModelKind>, initial: Value) -> CheckOptions {
        CheckOptions {
            model,
            initial,
            time_limit: Some(Duration::from_secs(self.time_limit)),
            memory_limit_bytes: Some(self.memory_limit << 20),
            threads: self.threads,
        }
    }
}

impl CheckArgs {
    pub fn options(&self) -> CheckOptions {
        let initial = self
            .initial
            .as_deref()
            .map(|s| serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.to_string())))
            .unwrap_or(Value::Null);
        self.limits.options(self.model, initial)
    }
}

/// Prints one line per checker, then the verdict (and the counterexample's timeline).
pub fn print_verdict(v: &RunVerdict) {
    for w in &v.warnings {
        eprintln!("warning: {w}");
    }
    for c in &v.checkers {
        println!("{}", c.line());
    }
    if let Some(cx) = v.counterexample() {
        println!();
        print!("{}", cx.timeline());
        println!();
    }
    println!("verdict: {}", v.verdict.as_str());
}

/// Runs `schism check`; returns the exit code: 0 valid, 1 invalid, 2 unknown, 254 bad
/// arguments or unreadable input. With several paths, the worst of theirs.
pub fn run(args: &CheckArgs) -> i32 {
    match args.paths.as_slice() {
        [path] => run_one(args, path),
        paths => run_many(args, paths),
    }
}

fn run_one(args: &CheckArgs, path: &Path) -> i32 {
    let v = match run::check_path(path, &args.options()) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_BAD_INPUT;
        }
    };
    if args.json {
        match serde_json::to_string_pretty(&v) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("error: cannot serialise the result: {e}");
                return EXIT_BAD_INPUT;
            }
        }
    } else {
        print_verdict(&v);
    }
    if let (Some(path), Some(cx)) = (&args.html, v.counterexample())
        && let Err(e) = std::fs::write(path, crate::html::counterexample_html(cx))
    {
        eprintln!("error: cannot write {}: {e}", path.display());
        return EXIT_BAD_INPUT;
    }
    v.verdict.exit_code()
}

/// How bad an exit code is: unreadable input, then invalid, then unknown, then valid.
fn severity(code: i32) -> u8 {
    match code {
        0 => 0,
        2 => 1,
        1 => 2,
        _ => 3,
    }
}

/// Checks each path in this process (for corpora of many small histories, where starting a
/// process per file would cost more than checking it) and prints one line per path, then the
/// totals.
fn run_many(args: &CheckArgs, paths: &[PathBuf]) -> i32 {
    if args.html.is_some() {
        eprintln!("error: --html writes one counterexample page: give it one path");
        return EXIT_BAD_INPUT;
    }
    let opts = args.options();
    let (mut valid, mut invalid, mut unknown, mut errors) = (0usize, 0usize, 0usize, 0usize);
    let mut worst = 0;
    for path in paths {
        let (code, line, json) = match run::check_path(path, &opts) {
            Ok(v) => {
                match v.verdict {
                    Verdict::Valid => valid += 1,
                    Verdict::Invalid => invalid += 1,
                    Verdict::Unknown => unknown += 1,
                }
                let summary = v
                    .checkers
                    .iter()
                    .map(|c| format!("{} {}", c.name, c.verdict.as_str()))
                    .chain(v.warnings.iter().map(|w| format!("warning: {w}")))
                    .collect::<Vec<_>>()
                    .join("; ");
                let line = format!("{}: {} ({summary})", path.display(), v.verdict.as_str());
                let json = serde_json::json!({"path": path, "verdict": v.verdict, "result": v});
                (v.verdict.exit_code(), line, json)
            }
            Err(e) => {
                errors += 1;
                let line = format!("{}: error: {e}", path.display());
                let json = serde_json::json!({"path": path, "error": e.to_string()});
                (EXIT_BAD_INPUT, line, json)
            }
        };
        if severity(code) > severity(worst) {
            worst = code;
        }
        if args.json {
            println!("{json}");
        } else {
            println!("{line}");
        }
    }
    let total = format!(
        "{} files: {valid} valid, {invalid} invalid, {unknown} unknown, {errors} unreadable",
        paths.len()
    );
    if args.json {
        println!(
            "{}",
            serde_json::json!({"files": paths.len(), "valid": valid, "invalid": invalid,
                               "unknown": unknown, "unreadable": errors, "exit_code": worst})
        );
    } else {
        println!("{total}");
    }
    worst
}

/// The histories of issue 16, by name: each is a `bench-checker` flag set (seed 1 unless
/// `--seed` says otherwise), with the cas-register model unless the name says znode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchCase {
    /// 1,000,000 operations on 1,000 keys, 20 processes, 1% info.
    Wide,
    /// 100,000 operations on 10 keys, 20 processes, 1% info.
    Hot10,
    /// As `hot10` with 5% info.
    Hot10Info5,
    /// As `hot10` with 20% info.
    Hot10Info20,
    /// 5,000 operations on one key, 20 processes, no info.
    Single,
    /// As `hot10-info5` with one planted violation.
    Hot10Violation,
    /// As `hot10-violation` on the znode model: the planted violation is a stale read (the
    /// version before one whose write had completed), which only real time rules out.
    Hot10ZnodeViolation,
    /// 1,000,000 operations on 1,000 keys, 20 processes, 20% info: `info` at scale. Streamed.
    WideInfo20,
    /// An hour of a nightly run at 10,000 ops/s: 36,000,000 operations on 1,000 keys, 20
    /// processes, 1% info. Streamed (about 5 GB of history on disk); not part of `all`.
    Hour,
    /// Every case above but `hour`, one after the other (peak memory is reset between them).
    All,
}

impl BenchCase {
    const EACH: [BenchCase; 8] = [
        BenchCase::Wide,
        BenchCase::Hot10,
        BenchCase::Hot10Info5,
        BenchCase::Hot10Info20,
        BenchCase::Single,
        BenchCase::Hot10Violation,
        BenchCase::Hot10ZnodeViolation,
        BenchCase::WideInfo20,
    ];

    fn name(self) -> &'static str {
        match self {
            BenchCase::Wide => "wide",
            BenchCase::Hot10 => "hot10",
            BenchCase::Hot10Info5 => "hot10-info5",
            BenchCase::Hot10Info20 => "hot10-info20",
            BenchCase::Single => "single",
            BenchCase::Hot10Violation => "hot10-violation",
            BenchCase::Hot10ZnodeViolation => "hot10-znode-violation",
            BenchCase::WideInfo20 => "wide-info20",
            BenchCase::Hour => "hour",
            BenchCase::All => "all",
        }
    }

    /// (ops, keys, processes, info share, violation, model)
    fn shape(self) -> (usize, usize, usize, f64, bool, ModelKind) {
        let cas = ModelKind::CasRegister;
        match self {
            BenchCase::Wide => (1_000_000, 1_000, 20, 0.01, false, cas),
            BenchCase::Hot10 => (100_000, 10, 20, 0.01, false, cas),
            BenchCase::Hot10Info5 => (100_000, 10, 20, 0.05, false, cas),
            BenchCase::Hot10Info20 => (100_000, 10, 20, 0.2, false, cas),
            BenchCase::Single => (5_000, 1, 20, 0.0, false, cas),
            BenchCase::Hot10Violation | BenchCase::All => (100_000, 10, 20, 0.05, true, cas),
            BenchCase::Hot10ZnodeViolation => (100_000, 10, 20, 0.05, true, ModelKind::Znode),
            BenchCase::WideInfo20 => (1_000_000, 1_000, 20, 0.2, false, cas),
            BenchCase::Hour => (36_000_000, 1_000, 20, 0.01, false, cas),
        }
    }

    /// Generated into a file and checked streamed, as `schism check` does large files.
    fn streamed(self) -> bool {
        matches!(self, BenchCase::WideInfo20 | BenchCase::Hour)
    }

    /// `args` with this case's history shape.
    fn apply(self, args: &BenchArgs) -> BenchArgs {
        let (ops, keys, processes, info_share, violation, model) = self.shape();
        BenchArgs {
            case: None,
            ops,
            keys,
            processes,
            info_share,
            violation,
            model,
            streamed: self.streamed() || args.streamed,
            ..args.clone()
        }
    }
}

#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// A named history of issue 16 (sets --ops, --keys, --processes, --info-share,
    /// --violation and --model); `all` runs each in turn.
    #[arg(long, value_enum, conflicts_with_all = ["ops", "keys", "processes", "info_share", "violation", "model"])]
    pub case: Option<BenchCase>,
    /// Client operations in the generated history.
    #[arg(long, default_value_t = 1_000_000)]
    pub ops: usize,
    #[arg(long, default_value_t = 1_000)]
    pub keys: usize,
    #[arg(long, default_value_t = 20)]
    pub processes: usize,
    /// Share of operations with an unknown outcome (info), 0..1.
    #[arg(long, default_value_t = 0.01)]
    pub info_share: f64,
    /// Plant one non-linearizable read.
    #[arg(long)]
    pub violation: bool,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// `znode` or `cas-register`.
    #[arg(long, value_enum, default_value_t = ModelKind::Znode)]
    pub model: ModelKind,
    #[command(flatten)]
    pub limits: LimitArgs,
    /// Also write the generated history here (JSON lines).
    #[arg(long)]
    pub write: Option<PathBuf>,
    /// Generate the history into a file (`--write`, or an unlinked temporary file) one event
    /// at a time and check it streamed, as `schism check` checks large files: memory follows
    /// the largest key, not the history.
    #[arg(long)]
    pub streamed: bool,
}

/// Peak resident memory of this process (VmHWM), in KiB; `None` off Linux.
pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Starts a new peak for [`peak_rss_kib`] (Linux: writing 5 to `clear_refs` resets VmHWM).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// `schism bench-checker`: generates a large history, checks it, reports time and peak memory.
/// Exit code 0 when the verdict is the expected one (valid, or invalid with `--violation`);
/// with `--case all`, when every case's is.
pub fn bench(args: &BenchArgs) -> i32 {
    match args.case {
        None => bench_one(args),
        Some(BenchCase::All) => {
            let mut worst = 0;
            for case in BenchCase::EACH {
                println!("== case {}", case.name());
                reset_peak_rss();
                worst = worst.max(bench_one(&case.apply(args)));
                println!();
            }
            worst
        }
        Some(case) => bench_one(&case.apply(args)),
    }
}

fn bench_one(args: &BenchArgs) -> i32 {
    if !(0.0..=1.0).contains(&args.info_share) || args.keys == 0 || args.processes == 0 {
        eprintln!("error: --info-share must be within 0..1, --keys and --processes at least 1");
        return EXIT_BAD_INPUT;
    }
    if !matches!(args.model, ModelKind::Znode | ModelKind::CasRegister) {
        eprintln!("error: the generator writes znode or cas-register histories");
        return EXIT_BAD_INPUT;
    }
    let cfg = GenConfig {
        ops: args.ops,
        keys: args.keys,
        processes: args.processes,
        info_share: args.info_share,
        violation: args.violation,
        seed: args.seed,
        model: args.model,
    };
    if args.streamed {
        return bench_streamed(args, &cfg);
    }
    let t = Instant::now();
    let events = generate::generate(&cfg);
    let gen_s = t.elapsed().as_secs_f64();
    println!(
        "generated {} events ({} ops, {} keys, {} processes, info share {}, model {}) in {gen_s:.2} s",
        events.len(),
        args.ops,
        args.keys,
        args.processes,
        args.info_share,
        args.model.name()
    );
    if let Some(path) = &args.write {
        let mut text = String::new();
        for e in &events {
            text.push_str(&serde_json::to_string(e).unwrap_or_default());
            text.push('\n');
        }
        if let Err(e) = std::fs::write(path, text) {
            eprintln!("error: cannot write {}: {e}", path.display());
            return EXIT_BAD_INPUT;
        }
    }
    let opts = bench_options(args);
    let t = Instant::now();
    let v = match run::check_history(&events, None, &opts) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_BAD_INPUT;
        }
    };
    let check_s = t.elapsed().as_secs_f64();
    bench_report(args, &v, check_s)
}

fn bench_options(args: &BenchArgs) -> CheckOptions {
    args.limits.options(Some(args.model), Value::Null)
}

/// `bench-checker --streamed`: the history goes to a file as it is generated and is checked
/// from there by `stream::check_file`; nothing holds it whole.
fn bench_streamed(args: &BenchArgs, cfg: &GenConfig) -> i32 {
    // Without `--write`, an unlinked temporary file, named through /proc so the checker can
    // open it: nothing is left behind, even on Ctrl-C.
    let (file, path) = match &args.write {
        Some(p) => (std::fs::File::create(p), p.clone()),
        None => match tempfile::tempfile() {
            Ok(f) => {
                use std::os::fd::AsRawFd;
                let path = PathBuf::from(format!("/proc/self/fd/{}", f.as_raw_fd()));
                (Ok(f), path)
            }
            Err(e) => (Err(e), PathBuf::from("a temporary file")),
        },
    };
    let file = match file {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: cannot write {}: {e}", path.display());
            return EXIT_BAD_INPUT;
        }
    };
    let t = Instant::now();
    let mut out = std::io::BufWriter::with_capacity(1 << 20, &file);
    let mut failed: Option<std::io::Error> = None;
    let planted = generate::generate_each(cfg, |e| {
        if failed.is_none()
            && let Err(err) = serde_json::to_writer(&mut out, &e)
                .map_err(std::io::Error::from)
                .and_then(|()| out.write_all(b"\n"))
        {
            failed = Some(err);
        }
    });
    if let Some(e) = failed.or_else(|| out.flush().err()) {
        eprintln!("error: cannot write {}: {e}", path.display());
        return EXIT_BAD_INPUT;
    }
    drop(out);
    if cfg.violation && !planted {
        eprintln!(
            "error: a streamed history plants the register's violation only (a znode's stale read needs the whole history): drop --streamed or --violation"
        );
        return EXIT_BAD_INPUT;
    }
    let bytes = file.metadata().map_or(0, |m| m.len());
    println!(
        "generated {} events ({} ops, {} keys, {} processes, info share {}, model {}) into {} ({} MiB) in {:.2} s",
        generate::event_count(cfg),
        cfg.ops,
        cfg.keys,
        cfg.processes,
        cfg.info_share,
        cfg.model.name(),
        path.display(),
        bytes >> 20,
        t.elapsed().as_secs_f64()
    );
    reset_peak_rss();
    let opts = bench_options(args);
    let t = Instant::now();
    let (v, stats) = match crate::stream::check_file(
        &path,
        None,
        &opts,
        &crate::stream::StreamConfig::default(),
    ) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_BAD_INPUT;
        }
    };
    let check_s = t.elapsed().as_secs_f64();
    println!(
        "streamed: {} keys; held at most {} ops of one key, {} of one spill file, {} open; spilled {} MiB",
        stats.keys,
        stats.max_key_ops_held,
        stats.max_spill_ops_held,
        stats.max_open_ops,
        stats.spill_bytes >> 20
    );
    drop(file);
    bench_report(args, &v, check_s)
}

/// Prints the checkers' lines and the time, peak memory and verdict; the exit code.
fn bench_report(args: &BenchArgs, v: &RunVerdict, check_s: f64) -> i32 {
    let opts = bench_options(args);
    for c in &v.checkers {
        println!("{}", c.line());
        if let Some(slow) = c.details.get("slowest_keys") {
            println!("  slowest keys: {slow}");
        }
    }
    let threads = opts.limits().threads(usize::MAX);
    println!(
        "checked in {check_s:.2} s on {threads} threads; peak memory (VmHWM) {} MiB; verdict {}",
        peak_rss_kib().map_or("?".into(), |k| (k / 1024).to_string()),
        v.verdict.as_str()
    );
    let expected = if args.violation {
        Verdict::Invalid
    } else {
        Verdict::Valid
    };
    if v.verdict == expected { 0 } else { 1 }
}
