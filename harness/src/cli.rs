//! The `schism` command line. Exit codes: 0 valid, 1 invalid, 2 unknown, 254 bad arguments,
//! 255 the harness itself failed (see [`crate::verdict`]).

use crate::config::{
    BackendKind, Consistency, FaultSet, NodeChoice, Protocol, SystemKind, TestConfig, UsageError,
    parse_duration, parse_fault_set,
};
use crate::output::{outcome_to_junit, print_matrix, print_summary, write_junit};
use crate::progress::Progress;
use crate::runner::{self, RunOutcome, RunRequest};
use crate::store::RunDir;
use crate::verdict::{EXIT_BAD_ARGUMENTS, EXIT_HARNESS_FAILURE, EXIT_VALID, combined_exit_code};
use anyhow::Context;
use checker::WorkloadKind;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Parser, Debug)]
#[command(
    name = "schism",
    version,
    about = "Jepsen-style tests for keeper: run workloads under faults, check the histories",
    after_help = "Exit codes: 0 valid, 1 invalid, 2 unknown, 254 bad arguments, 255 harness failure."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run one test (or --test-count of them): cluster, workload, faults, check, report.
    Test(TestArgs),
    /// Run every workload under every fault set.
    TestAll(TestAllArgs),
    /// Check a stored run (or a history file) again.
    Check(checker::cli::CheckArgs),
    /// Run a stored test again: same configuration, seed and fault schedule.
    Replay(ReplayArgs),
    /// Write a stored run's report.html again (from its results.json and history).
    Report(ReportArgs),
    /// Serve a web view of the results store.
    Serve(ServeArgs),
    /// Remove what killed runs left behind (namespaces, rules, containers, processes).
    Clean(CleanArgs),
    /// Benchmark the checker on generated histories.
    BenchChecker(checker::cli::BenchArgs),
    /// The catch matrix: each injected keeper bug must be caught, the correct keeper valid.
    Gate(crate::gate::GateArgs),
    /// Nightly torture: loop over seeds, workloads and fault mixes; keep every failing run.
    Torture(crate::gate::TortureArgs),
    /// The whole test in simulated time: keeper's core, faults, clients and checkers, per seed.
    Sim(crate::sim::SimArgs),
}

/// Options every test run takes.
#[derive(Args, Debug, Clone)]
pub struct RunOptions {
    /// What the nodes run.
    #[arg(long, value_enum, default_value_t = SystemKind::Keeper)]
    pub system: SystemKind,
    /// What the workloads' clients speak [default: http for keeper, zk for zookeeper].
    #[arg(long, value_enum)]
    pub protocol: Option<Protocol>,
    /// Where the nodes run [default: netns as root, else local].
    #[arg(long, value_enum)]
    pub backend: Option<BackendKind>,
    /// Number of keeper nodes.
    #[arg(long, default_value_t = 5)]
    pub nodes: usize,
    /// How long clients and nemesis run (e.g. 60s, 2m).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub time_limit: Duration,
    /// Operations per second over all workers (0: unlimited).
    #[arg(long, default_value_t = 200.0)]
    pub rate: f64,
    /// Number of concurrent workers.
    #[arg(long, default_value_t = 10)]
    pub concurrency: usize,
    /// Seed for operations and faults [default: random].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Read guarantee [default: linearizable for register, local otherwise].
    #[arg(long, value_enum)]
    pub read_consistency: Option<ReadConsistency>,
    /// Per-operation timeout; past it the operation is recorded as indeterminate.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub op_timeout: Duration,
    /// How a process picks its node.
    #[arg(long, value_enum, default_value_t = NodeChoice::Spread)]
    pub node_choice: NodeChoice,
    /// How long the cluster may take to recover after healing.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub recovery_timeout: Duration,
    /// Mean time between faults.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub nemesis_interval: Duration,
    /// Start keeper with an injected bug (keeperd --bug NAME).
    #[arg(long)]
    pub server_bug: Option<String>,
    /// The keeperd binary [default: next to schism, else on PATH].
    #[arg(long)]
    pub keeperd: Option<PathBuf>,
    /// An extra flag for every keeperd, e.g. `--keeperd-arg=--snapshot-every=50` (repeatable).
    #[arg(long = "keeperd-arg", value_name = "FLAG", allow_hyphen_values = true)]
    pub keeperd_args: Vec<String>,
    /// The results store.
    #[arg(long, default_value = "results")]
    pub results: PathBuf,
    /// Also write JUnit XML (one test case per checker) to FILE.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Repeat each test K times with new seeds.
    #[arg(long, default_value_t = 1, value_name = "K")]
    pub test_count: u32,
}

impl RunOptions {
    /// Every option at its default, as `schism test` with no flags would have it: what the gate
    /// and torture start from, so defaults live in one place.
    pub fn defaults() -> RunOptions {
        #[derive(Parser)]
        struct Only {
            #[command(flatten)]
            run: RunOptions,
        }
        Only::try_parse_from(["schism"])
            .expect("every option has a default")
            .run
    }
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum ReadConsistency {
    Local,
    Sync,
    Linearizable,
}

impl From<ReadConsistency> for Consistency {
    fn from(c: ReadConsistency) -> Consistency {
        match c {
            ReadConsistency::Local => Consistency::Local,
            ReadConsistency::Sync => Consistency::Sync,
            ReadConsistency::Linearizable => Consistency::Linearizable,
        }
    }
}

/// Log filter without `RUST_LOG`: warnings, except the ZooKeeper client's reconnect loop, which
/// warns on every attempt while the nemesis keeps a node down (that is the test, not news).
const QUIET_LOG_FILTER: &str = "warn,zookeeper_client=error";

#[derive(Args, Debug)]
pub struct TestArgs {
    /// The workload.
    #[arg(long, value_enum, default_value_t = WorkloadKind::Register)]
    pub workload: WorkloadKind,
    /// Faults, comma-separated (partition, kill, pause, slow, flaky, delay, partition-leader,
    /// kill-leader, depose-leader, kill-all, power-loss, corrupt), or none.
    #[arg(long, default_value = "partition,kill,pause", value_parser = parse_fault_set)]
    pub nemesis: FaultSet,
    #[command(flatten)]
    pub run: RunOptions,
}

#[derive(Args, Debug)]
pub struct TestAllArgs {
    /// Workloads, comma-separated.
    #[arg(long, default_value = "register,sequential,election,session,watch")]
    pub workloads: String,
    /// Fault sets, separated by `;` (each a comma list, or none).
    #[arg(long, default_value = "none;partition;kill;pause;partition,kill,pause")]
    pub fault_sets: String,
    #[command(flatten)]
    pub run: RunOptions,
}

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// Run directories (each with its results.json: `schism check DIR` writes one).
    #[arg(required = true)]
    pub runs: Vec<PathBuf>,
}

/// `schism report`: the page of each run again, in one pass over its history (an hour-long
/// run's is read line by line, not held).
fn report(args: &ReportArgs) -> i32 {
    let mut code = EXIT_VALID;
    for path in &args.runs {
        let written = RunDir::open(path).and_then(|run| {
            let results = run.read_results().with_context(|| {
                format!(
                    "{} has no readable results.json (was the run cut off before its check?)",
                    path.display()
                )
            })?;
            crate::report::write_for_run(&run, &results)
        });
        match written {
            Ok(page) => println!("{}", page.display()),
            Err(e) => {
                eprintln!("schism: {e:#}");
                code = EXIT_HARNESS_FAILURE;
            }
        }
    }
    code
}

#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// A run directory (results/<workload>/<run>).
    pub dir: PathBuf,
    #[arg(long, default_value = "results")]
    pub results: PathBuf,
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    #[arg(long, default_value = "results")]
    pub results: PathBuf,
    /// Address to listen on; 127.0.0.1 keeps it on this machine.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub bind: std::net::SocketAddr,
}

#[derive(Args, Debug)]
pub struct CleanArgs {
    /// Also remove runs whose schism process is still alive.
    #[arg(long)]
    pub include_live: bool,
    /// Do not look at Docker.
    #[arg(long)]
    pub skip_docker: bool,
}

/// Parses `args` (with the program name first) and runs the command. Never panics on bad
/// input: clap's errors exit 254, not clap's usual 2 (which means `unknown` here).
pub fn main_with_args(args: impl IntoIterator<Item = OsString>) -> i32 {
    let args: Vec<OsString> = args.into_iter().collect();
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            let _ = e.print();
            return match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => EXIT_VALID,
                _ => EXIT_BAD_ARGUMENTS,
            };
        }
    };
    // The checker's commands own their output and exit codes, and need no runtime.
    match &cli.command {
        Command::Check(args) => return checker::cli::run(args),
        Command::Report(args) => return report(args),
        Command::BenchChecker(args) => return checker::cli::bench(args),
        Command::Sim(args) => return crate::sim::run(args),
        _ => {}
    }
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(QUIET_LOG_FILTER)),
        )
        .try_init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("schism: cannot start the runtime: {e}");
            return EXIT_HARNESS_FAILURE;
        }
    };
    let command_line: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let code = runtime.block_on(async move {
        let cancel = CancellationToken::new();
        install_interrupt_handler(cancel.clone());
        match run_command(cli.command, command_line, cancel).await {
            Ok(code) => code,
            Err(e) => {
                eprintln!("schism: {e:#}");
                if e.downcast_ref::<UsageError>().is_some() {
                    EXIT_BAD_ARGUMENTS
                } else {
                    EXIT_HARNESS_FAILURE
                }
            }
        }
    });
    // Do not wait for stray blocking tasks (a hung close): everything that matters is on disk.
    runtime.shutdown_timeout(Duration::from_secs(1));
    code
}

/// First Ctrl-C: cancel the run (it tears down and checks what it has). Second: say it is
/// still tearing down. Third: leave now, `schism clean` removes the rest. SIGTERM counts as a
/// Ctrl-C: it is what a CI job's timeout, `timeout(1)`, `kill` and systemd send, and a run
/// they stop must not leave namespaces, rules and nodes behind either.
fn install_interrupt_handler(cancel: CancellationToken) {
    tokio::spawn(async move {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        let mut presses = 0;
        loop {
            let signalled = tokio::select! {
                r = tokio::signal::ctrl_c() => r.is_ok(),
                r = async {
                    match terminate.as_mut() {
                        Some(s) => s.recv().await,
                        None => std::future::pending().await,
                    }
                } => r.is_some(),
            };
            if !signalled {
                break;
            }
            presses += 1;
            match presses {
                1 => {
                    eprintln!("\nschism: interrupted; tearing down (Ctrl-C twice more to abandon)");
                    cancel.cancel();
                }
                2 => {
                    eprintln!("schism: still tearing down; Ctrl-C once more to leave things behind")
                }
                _ => {
                    eprintln!("schism: abandoned; run `schism clean` to remove what is left");
                    std::process::exit(EXIT_HARNESS_FAILURE);
                }
            }
        }
    });
}

async fn run_command(
    command: Command,
    command_line: Vec<String>,
    cancel: CancellationToken,
) -> anyhow::Result<i32> {
    match command {
        Command::Test(args) => {
            let plans = vec![(args.workload, args.nemesis)];
            run_plans(plans, &args.run, command_line, cancel).await
        }
        Command::TestAll(args) => {
            let mut workloads = Vec::new();
            for w in args
                .workloads
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
            {
                let Some(kind) = WorkloadKind::from_name(w) else {
                    anyhow::bail!(UsageError(format!(
                        "unknown workload `{w}`: choose from {}",
                        WorkloadKind::names()
                    )));
                };
                workloads.push(kind);
            }
            let backend = args
                .run
                .backend
                .unwrap_or_else(BackendKind::default_for_host);
            let mut plans = Vec::new();
            for w in &workloads {
                for set in args.fault_sets.split(';') {
                    let faults = parse_fault_set(set).map_err(UsageError)?;
                    if backend == BackendKind::Local && faults.network().next().is_some() {
                        eprintln!(
                            "schism: skipping {w} with {set}: the local backend cannot cut the network"
                        );
                        continue;
                    }
                    plans.push((*w, faults));
                }
            }
            run_plans(plans, &args.run, command_line, cancel).await
        }
        Command::Replay(args) => {
            let results = runner::absolute(&args.results)?;
            let req = runner::replay_request(&args.dir, &results, command_line)?;
            let progress = Progress::new(req.config.time_limit());
            let outcome = runner::run_test(req, cancel, &progress).await;
            print_summary(&outcome);
            write_junit(args.junit.as_deref(), &[outcome_to_junit(&outcome)])?;
            Ok(outcome.exit_code())
        }
        // CPU-bound and synchronous: handled before the runtime starts (see main_with_args).
        Command::Check(_) | Command::Report(_) | Command::BenchChecker(_) | Command::Sim(_) => {
            anyhow::bail!("internal: the checker commands run without a runtime")
        }
        Command::Serve(args) => {
            let root = runner::absolute(&args.results)?;
            let listener = tokio::net::TcpListener::bind(args.bind)
                .await
                .map_err(|e| UsageError(format!("cannot listen on {}: {e}", args.bind)))?;
            eprintln!(
                "schism: serving {} on http://{} (Ctrl-C to stop)",
                root.display(),
                listener.local_addr()?
            );
            crate::serve::serve(root, listener, cancel).await?;
            Ok(EXIT_VALID)
        }
        Command::Gate(args) => crate::gate::gate(args, command_line, cancel).await,
        Command::Torture(args) => crate::gate::torture(args, command_line, cancel).await,
        Command::Clean(args) => {
            let report = cluster::clean::clean_leftovers(&cluster::clean::CleanOptions {
                include_live: args.include_live,
                skip_docker: args.skip_docker,
            })
            .await;
            for line in &report.removed {
                println!("removed {line}");
            }
            for line in &report.skipped_live {
                println!("left alone (its run is still alive): {line}");
            }
            for line in &report.errors {
                eprintln!("schism: {line}");
            }
            if report.removed.is_empty() && report.errors.is_empty() {
                println!("nothing to clean");
            }
            Ok(if report.is_clean() {
                EXIT_VALID
            } else {
                EXIT_HARNESS_FAILURE
            })
        }
    }
}

/// The configuration for one workload and fault set from the common options.
pub fn config_for(
    workload: WorkloadKind,
    nemesis: FaultSet,
    opts: &RunOptions,
    seed: u64,
) -> anyhow::Result<TestConfig> {
    let read_consistency = match opts.read_consistency {
        Some(c) => c.into(),
        // ZooKeeper's protocol has no linearizable read: its plain reads are what an
        // application gets, and what the checker then judges.
        None if opts.system == SystemKind::Zookeeper || opts.protocol == Some(Protocol::Zk) => {
            Consistency::Local
        }
        // Histories checked for linearizability can pass with linearizable reads only.
        None if workload.needs_linearizable_reads() => Consistency::Linearizable,
        None => Consistency::Local,
    };
    let backend = opts.backend.unwrap_or_else(BackendKind::default_for_host);
    let keeperd = match &opts.keeperd {
        Some(p) => runner::absolute(p)?,
        None => crate::keeperd::default_keeperd(backend),
    };
    let protocol = opts.protocol.unwrap_or(match opts.system {
        SystemKind::Keeper => Protocol::Http,
        SystemKind::Zookeeper => Protocol::Zk,
    });
    Ok(TestConfig {
        workload,
        system: opts.system,
        protocol,
        backend,
        nodes: opts.nodes,
        nemesis,
        time_limit_ms: opts.time_limit.as_millis() as u64,
        rate: opts.rate,
        concurrency: opts.concurrency,
        seed,
        read_consistency,
        op_timeout_ms: opts.op_timeout.as_millis() as u64,
        node_choice: opts.node_choice,
        recovery_timeout_ms: opts.recovery_timeout.as_millis() as u64,
        nemesis_interval_ms: opts.nemesis_interval.as_millis() as u64,
        server_bug: opts.server_bug.clone(),
        keeperd,
        keeperd_args: opts.keeperd_args.clone(),
    })
}

/// Most seeds a random default seed is drawn from: short enough to type.
const RANDOM_SEED_BOUND: u64 = 1 << 32;

async fn run_plans(
    plans: Vec<(WorkloadKind, FaultSet)>,
    opts: &RunOptions,
    command_line: Vec<String>,
    cancel: CancellationToken,
) -> anyhow::Result<i32> {
    use rand::RngExt;
    if opts.test_count == 0 {
        anyhow::bail!(UsageError("--test-count must be at least 1".into()));
    }
    let base_seed = opts
        .seed
        .unwrap_or_else(|| rand::rng().random_range(0..RANDOM_SEED_BOUND));
    let results_root = runner::absolute(&opts.results)?;
    // Validate every plan before running any, so a typo does not surface an hour in.
    for (workload, nemesis) in &plans {
        config_for(*workload, nemesis.clone(), opts, base_seed)?.validate()?;
    }
    let mut outcomes: Vec<RunOutcome> = Vec::new();
    'plans: for (workload, nemesis) in &plans {
        for i in 0..opts.test_count {
            if cancel.is_cancelled() {
                break 'plans;
            }
            let seed = base_seed.wrapping_add(u64::from(i));
            let config = config_for(*workload, nemesis.clone(), opts, seed)?;
            let progress = Progress::new(config.time_limit());
            let req = RunRequest {
                config,
                results_root: results_root.clone(),
                command_line: command_line.clone(),
                replay_of: None,
            };
            let outcome = runner::run_test(req, cancel.clone(), &progress).await;
            print_summary(&outcome);
            outcomes.push(outcome);
        }
    }
    let junit: Vec<_> = outcomes.iter().map(outcome_to_junit).collect();
    write_junit(opts.junit.as_deref(), &junit)?;
    if outcomes.len() > 1 {
        print_matrix(&outcomes);
    }
    Ok(combined_exit_code(
        outcomes.iter().map(RunOutcome::exit_code),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(args: &[&str]) -> i32 {
        main_with_args(args.iter().map(OsString::from))
    }

    #[test]
    fn bad_arguments_exit_254_not_claps_2() {
        assert_eq!(code(&["schism", "frobnicate"]), EXIT_BAD_ARGUMENTS);
        assert_eq!(
            code(&["schism", "test", "--nodes", "many"]),
            EXIT_BAD_ARGUMENTS
        );
        assert_eq!(
            code(&["schism", "test", "--time-limit", "soon"]),
            EXIT_BAD_ARGUMENTS
        );
        assert_eq!(code(&["schism"]), EXIT_BAD_ARGUMENTS);
        assert_eq!(code(&["schism", "--help"]), EXIT_VALID);
    }

    #[test]
    fn invalid_values_are_usage_errors_before_anything_runs() {
        let dir = tempfile::tempdir().unwrap();
        let results = dir.path().join("results");
        let r = results.to_str().unwrap();
        assert_eq!(
            code(&["schism", "test", "--workload", "nope", "--results", r]),
            EXIT_BAD_ARGUMENTS
        );
        assert_eq!(
            code(&["schism", "test", "--nodes", "0", "--results", r]),
            EXIT_BAD_ARGUMENTS
        );
        assert_eq!(
            code(&[
                "schism",
                "test",
                "--backend",
                "local",
                "--nemesis",
                "partition",
                "--results",
                r
            ]),
            EXIT_BAD_ARGUMENTS
        );
        assert_eq!(
            code(&["schism", "test", "--nemesis", "meteor", "--results", r]),
            EXIT_BAD_ARGUMENTS
        );
        assert!(
            !results.exists(),
            "nothing is created for a bad command line"
        );
    }

    #[test]
    fn defaults_make_a_meaningful_test() {
        let cli = Cli::try_parse_from(["schism", "test"]).unwrap();
        let Command::Test(args) = cli.command else {
            panic!("not a test")
        };
        let config = config_for(args.workload, args.nemesis, &args.run, 1).unwrap();
        assert_eq!(config.workload, WorkloadKind::Register);
        assert_eq!(config.nodes, 5);
        assert_eq!(config.nemesis.to_string(), "partition,kill,pause");
        assert_eq!(config.time_limit_ms, 60_000);
        assert_eq!(config.rate, 200.0);
        assert_eq!(config.concurrency, 10);
        assert_eq!(config.read_consistency, Consistency::Linearizable);
    }
}
