//! keeper-cli: a shell for keeper in the spirit of zkCli.sh, and a write benchmark.

mod bench;
mod ensemble;
mod shell;
mod zk_bench;

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use keeper_client::{ClientConfig, Session};
use tokio::io::{AsyncBufReadExt, BufReader};

const DEFAULT_SERVER: &str = "http://127.0.0.1:2181";

/// Exit codes, as documented in `--help`.
const EXIT_OK: u8 = 0;
const EXIT_COMMAND_FAILED: u8 = 1;
const EXIT_NO_SESSION: u8 = 2;

#[derive(Parser)]
#[command(
    name = "keeper-cli",
    version,
    about = "A shell for keeper, in the spirit of zkCli.sh",
    long_about = "A shell for keeper, in the spirit of zkCli.sh. Reads commands from the \
terminal or from standard input, one per line, and holds one session for its lifetime \
(`quit` or end of input closes it, which removes its ephemeral nodes). Arguments may be quoted \
with \"...\" or '...'. Watch events print asynchronously as `WATCHER:: ...` lines.",
    after_help = "Commands:\n  create [-e] [-s] [-c] PATH [DATA] | get [-s] [-w] PATH | \
set [-s] [-v V] PATH DATA [V] | delete [-v V] PATH [V] | ls [-s] [-w] PATH | stat [-w] PATH | \
sync PATH | watch PATH | help | quit\n\n\
Exit status: 0 on success; 1 if any command failed while standard input was not a terminal \
(an interactive shell exits 0 after errors); 2 if no session could be established.\n\
Errors print one line on standard error, e.g. `Node already exists: /a`."
)]
struct Cli {
    /// keeper server URL (http://HOST:PORT or HOST:PORT); repeat for an ensemble.
    #[arg(long = "server", global = true, default_value = DEFAULT_SERVER)]
    servers: Vec<String>,
    /// Requested session timeout.
    #[arg(long, global = true, default_value_t = 6_000)]
    session_timeout_ms: u64,
    /// Budget of one command, failovers included.
    #[arg(long, global = true, default_value_t = 5_000)]
    request_timeout_ms: u64,
    #[command(subcommand)]
    command: Option<Mode>,
}

#[derive(Subcommand)]
enum Mode {
    /// Closed-loop write load: writes/s and p50/p99/max latency.
    Bench {
        /// Concurrent writers, each with its own session.
        #[arg(long, default_value_t = 10)]
        concurrency: usize,
        #[arg(long, default_value_t = 10)]
        duration_secs: u64,
        /// Bytes written per operation.
        #[arg(long, default_value_t = 100)]
        data_bytes: usize,
        #[arg(long, value_enum, default_value = "set")]
        op: bench::BenchOp,
    },
    /// Starts a 3-node loopback ensemble and measures failover (SIGKILL and isolation of the
    /// leader) and writes/s at 1 and 32 clients. Needs root (iptables, node group ids).
    BenchEnsemble {
        /// The keeperd binary (default: next to keeper-cli).
        #[arg(long)]
        keeperd: Option<std::path::PathBuf>,
        /// Failover trials per fault.
        #[arg(long, default_value_t = 5)]
        trials: usize,
        /// Length of each throughput run.
        #[arg(long, default_value_t = 10)]
        duration_secs: u64,
        /// Client ports are BASE+1..3, peer ports BASE+11..13.
        #[arg(long, default_value_t = 23_000)]
        base_port: u16,
        /// Skip the isolation trials (they need iptables).
        #[arg(long)]
        skip_isolation: bool,
    },
    /// The same write load over ZooKeeper's client protocol against a 3-node ensemble of real
    /// ZooKeeper and one of keeperd (its ZooKeeper port), one after the other: writes/s at 1 and
    /// 32 clients, side by side.
    BenchZk {
        /// Which systems, in this order.
        #[arg(
            long,
            value_enum,
            value_delimiter = ',',
            default_value = "zookeeper,keeper"
        )]
        systems: Vec<zk_bench::BenchSystem>,
        /// The keeperd binary (default: next to keeper-cli).
        #[arg(long)]
        keeperd: Option<std::path::PathBuf>,
        /// Length of each load.
        #[arg(long, default_value_t = 10)]
        duration_secs: u64,
        /// Ports are BASE+1.. (see the command's documentation).
        #[arg(long, default_value_t = 24_000)]
        base_port: u16,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("keeper-cli: cannot start the runtime: {e}");
            return ExitCode::from(EXIT_NO_SESSION);
        }
    };
    let mut config = ClientConfig::new(cli.servers.clone());
    config.session_timeout = Duration::from_millis(cli.session_timeout_ms);
    config.request_timeout = Duration::from_millis(cli.request_timeout_ms);
    let code = runtime.block_on(async move {
        match cli.command {
            Some(Mode::Bench {
                concurrency,
                duration_secs,
                data_bytes,
                op,
            }) => {
                let bench = bench::BenchConfig {
                    client: config,
                    concurrency,
                    duration: Duration::from_secs(duration_secs),
                    data_bytes,
                    op,
                };
                match bench::run(bench).await {
                    Ok(()) => EXIT_OK,
                    Err(e) => {
                        eprintln!("keeper-cli bench: {e:#}");
                        EXIT_COMMAND_FAILED
                    }
                }
            }
            Some(Mode::BenchEnsemble {
                keeperd,
                trials,
                duration_secs,
                base_port,
                skip_isolation,
            }) => {
                let config = ensemble::EnsembleConfig {
                    keeperd: keeperd.unwrap_or_else(keeperd_beside_us),
                    trials,
                    duration: Duration::from_secs(duration_secs),
                    base_port,
                    skip_isolation,
                };
                run_ensemble_bench("bench-ensemble", ensemble::run(config)).await
            }
            Some(Mode::BenchZk {
                systems,
                keeperd,
                duration_secs,
                base_port,
            }) => {
                let config = zk_bench::ZkBenchConfig {
                    systems,
                    keeperd: keeperd.unwrap_or_else(keeperd_beside_us),
                    duration: Duration::from_secs(duration_secs),
                    base_port,
                };
                run_ensemble_bench("bench-zk", zk_bench::run(config)).await
            }
            None => run_shell(config).await,
        }
    });
    // Background tasks may still wait on sockets; do not let them hold the exit.
    runtime.shutdown_timeout(Duration::from_millis(100));
    ExitCode::from(code)
}

/// Runs a bench that starts its own ensemble until it ends or Ctrl-C: either way the run is
/// dropped, which kills the nodes and removes their files (and any iptables rules).
async fn run_ensemble_bench(
    name: &str,
    bench: impl std::future::Future<Output = anyhow::Result<()>>,
) -> u8 {
    let outcome = tokio::select! {
        outcome = bench => outcome,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    match outcome {
        Ok(()) => EXIT_OK,
        Err(e) => {
            eprintln!("keeper-cli {name}: {e:#}");
            EXIT_COMMAND_FAILED
        }
    }
}

/// The keeperd next to this keeper-cli (both are built into the same target directory).
fn keeperd_beside_us() -> std::path::PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("keeperd")))
        .unwrap_or_else(|| "keeperd".into())
}

async fn run_shell(config: ClientConfig) -> u8 {
    let interactive = std::io::stdin().is_terminal();
    let session = match Session::connect(config).await {
        Ok(session) => session,
        Err(e) => {
            eprintln!("keeper-cli: cannot establish a session: {e}");
            return EXIT_NO_SESSION;
        }
    };
    if interactive {
        eprintln!(
            "Connected to {} (session {:#x}, timeout {} ms). Type help for commands.",
            session.current_server(),
            session.id(),
            session.timeout().as_millis()
        );
    }
    let mut events = session.events();
    let printer = tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            if let Some(line) = shell::format_event(&event) {
                println!("{line}");
            }
        }
    });

    let mut failed = false;
    let mut lines = BufReader::new(tokio::io::stdin());
    let mut line = Vec::new();
    let mut count = 0u64;
    loop {
        if interactive {
            print!("[keeper: {}(CONNECTED) {count}] ", session.current_server());
            let _ = std::io::stdout().flush();
        }
        line.clear();
        let read = read_line(&mut lines, &mut line).await;
        let text = match read {
            Ok(0) => break,
            Ok(_) => String::from_utf8_lossy(&line).into_owned(),
            Err(message) => {
                eprintln!("{message}");
                failed = true;
                continue;
            }
        };
        count += 1;
        let command = match shell::parse(&text) {
            Ok(Some(command)) => command,
            Ok(None) => continue,
            Err(message) => {
                eprintln!("{message}");
                failed = true;
                continue;
            }
        };
        if command == shell::Command::Quit {
            break;
        }
        if let Err(message) = shell::run(&session, &command).await {
            eprintln!("{message}");
            failed = true;
        }
        let _ = std::io::stdout().flush();
    }
    if let Err(e) = session.close().await {
        eprintln!("closing the session: {e}");
        failed = true;
    }
    // The close ends the event channel, so the printer finishes after the last event.
    let _ = tokio::time::timeout(Duration::from_secs(1), printer).await;
    if failed && !interactive {
        EXIT_COMMAND_FAILED
    } else {
        EXIT_OK
    }
}

/// Reads one line into `line` (without the newline); `Ok(0)` at end of input. Lines longer than
/// `MAX_LINE_BYTES` are skipped whole and reported.
async fn read_line<R: tokio::io::AsyncBufRead + Unpin>(
    reader: &mut R,
    line: &mut Vec<u8>,
) -> Result<usize, String> {
    let mut too_long = false;
    let mut total = 0usize;
    loop {
        let buf = reader
            .fill_buf()
            .await
            .map_err(|e| format!("cannot read input: {e}"))?;
        if buf.is_empty() {
            break;
        }
        let (chunk, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(end) => (&buf[..=end], true),
            None => (buf, false),
        };
        let used = chunk.len();
        total += used;
        if line.len() + used > shell::MAX_LINE_BYTES {
            too_long = true;
            line.clear();
        } else if !too_long {
            line.extend_from_slice(chunk);
        }
        reader.consume(used);
        if done {
            break;
        }
    }
    while matches!(line.last(), Some(b'\n' | b'\r')) {
        line.pop();
    }
    if too_long {
        return Err(format!(
            "line longer than {} bytes ignored",
            shell::MAX_LINE_BYTES
        ));
    }
    Ok(total)
}
