//! keeperd: runs one keeper node.
//!
//! Exit status: 0 after a graceful shutdown (SIGTERM or SIGINT), 1 when the node had to stop
//! (a storage error: it never serves after a failed fsync), 2 when it could not start (bad
//! flags, an unusable data directory, a port in use).

use clap::Parser;
use keeper::api::NodeId;
use keeper::bugs::Bug;
use keeper::shell::{self, PEER_SECRET_ENV, PeerSecret, ServerConfig};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;

/// Largest `--config` file read.
const MAX_CONFIG_FILE_BYTES: u64 = 1024 * 1024;

#[derive(Parser, Debug)]
#[command(
    name = "keeperd",
    version,
    about = "Runs one keeper node (a ZooKeeper-style coordination server).",
    after_help = "Standalone:  keeperd --id 1 --data-dir /tmp/k1 --client-addr 127.0.0.1:2181\n\
                  Ensemble:    keeperd --id 1 --data-dir /tmp/k1 --client-addr 127.0.0.1:2181 \\\n\
                  \x20              --peers 1=127.0.0.1:2888,2=127.0.0.1:2889,3=127.0.0.1:2890\n\
                  Flags override the same keys of --config FILE (JSON)."
)]
struct Args {
    /// This server's id (a member of --peers when given).
    #[arg(long)]
    id: Option<NodeId>,
    /// Directory of the write-ahead log, snapshots and epochs (created if missing).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Address for the HTTP client API (port 0: any free port).
    #[arg(long)]
    client_addr: Option<SocketAddr>,
    /// Address peers connect to (default: this node's entry in --peers).
    #[arg(long)]
    peer_addr: Option<SocketAddr>,
    /// Every member of the ensemble, this node included: `1=HOST:PORT,2=HOST:PORT,...`.
    #[arg(long)]
    peers: Option<String>,
    /// The core's tick, in ms.
    #[arg(long)]
    tick_ms: Option<u64>,
    /// Largest znode data, in bytes.
    #[arg(long)]
    max_data_bytes: Option<usize>,
    /// Transactions written to the log between two snapshots.
    #[arg(long)]
    snapshot_every: Option<u64>,
    /// Transactions a snapshot leaves in memory for followers that are behind: one further
    /// behind is synced with the whole tree (SNAP) [default: 1000].
    #[arg(long)]
    log_retain_txns: Option<usize>,
    /// A request not answered within this long gets an indeterminate `timeout`.
    #[arg(long)]
    request_timeout_ms: Option<u64>,
    /// Fault injection (builds with feature `bugs` only): stale-read, early-ack, no-fsync, ...
    #[arg(long)]
    bug: Option<String>,
    /// Also serve ZooKeeper's client protocol here (zkCli.sh, kazoo, Curator; docs/API.md).
    #[arg(long)]
    zk_addr: Option<SocketAddr>,
    /// A file holding the ensemble's shared secret (at least 16 bytes), which peers must prove
    /// they know. Default: the environment variable KEEPER_PEER_SECRET; neither: peers are
    /// not authenticated (a warning says so). Never given on the command line, where `ps`
    /// would show it.
    #[arg(long)]
    peer_secret_file: Option<PathBuf>,
    /// A JSON file with any of the keys above (`data_dir`, `client_addr`, ... with
    /// underscores); `peers` may be a string as above or an object `{"1": "HOST:PORT"}`.
    #[arg(long)]
    config: Option<PathBuf>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    id: Option<NodeId>,
    data_dir: Option<PathBuf>,
    client_addr: Option<SocketAddr>,
    peer_addr: Option<SocketAddr>,
    peers: Option<FilePeers>,
    tick_ms: Option<u64>,
    max_data_bytes: Option<usize>,
    snapshot_every: Option<u64>,
    log_retain_txns: Option<usize>,
    request_timeout_ms: Option<u64>,
    bug: Option<String>,
    zk_addr: Option<SocketAddr>,
    peer_secret_file: Option<PathBuf>,
}

#[derive(Deserialize, Debug)]
#[serde(untagged)]
enum FilePeers {
    List(String),
    /// Keys are ids as strings (JSON object keys); parsed by `peers_from_map`.
    Map(BTreeMap<String, SocketAddr>),
}

fn parse_peers(list: &str) -> Result<BTreeMap<NodeId, SocketAddr>, String> {
    let mut peers = BTreeMap::new();
    for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (id, addr) = entry
            .split_once('=')
            .ok_or_else(|| format!("--peers entry {entry:?} is not ID=HOST:PORT"))?;
        let id: NodeId = id
            .trim()
            .parse()
            .map_err(|_| format!("--peers entry {entry:?}: {id:?} is not a server id"))?;
        let addr: SocketAddr = addr.trim().parse().map_err(|_| {
            format!("--peers entry {entry:?}: {addr:?} is not an IP address with a port")
        })?;
        if peers.insert(id, addr).is_some() {
            return Err(format!("--peers names server {id} twice"));
        }
    }
    Ok(peers)
}

fn peers_from_map(
    map: BTreeMap<String, SocketAddr>,
) -> Result<BTreeMap<NodeId, SocketAddr>, String> {
    map.into_iter()
        .map(|(id, addr)| match id.trim().parse() {
            Ok(id) => Ok((id, addr)),
            Err(_) => Err(format!("--config peers: {id:?} is not a server id")),
        })
        .collect()
}

fn read_config_file(path: &PathBuf) -> Result<FileConfig, String> {
    let file = std::fs::File::open(path)
        .map_err(|e| format!("cannot read --config {}: {e}", path.display()))?;
    let mut text = String::new();
    use std::io::Read;
    file.take(MAX_CONFIG_FILE_BYTES)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read --config {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("--config {}: {e}", path.display()))
}

/// Merges flags over the config file and checks what can be checked without I/O.
fn server_config(args: Args) -> Result<ServerConfig, String> {
    let file = match &args.config {
        Some(path) => read_config_file(path)?,
        None => FileConfig::default(),
    };
    let id = args
        .id
        .or(file.id)
        .ok_or("--id is required (see keeperd --help)")?;
    let data_dir = args
        .data_dir
        .or(file.data_dir)
        .ok_or("--data-dir is required (see keeperd --help)")?;
    let client_addr = args
        .client_addr
        .or(file.client_addr)
        .ok_or("--client-addr is required (see keeperd --help)")?;
    let peers = match (args.peers, file.peers) {
        (Some(list), _) | (None, Some(FilePeers::List(list))) => parse_peers(&list)?,
        (None, Some(FilePeers::Map(map))) => peers_from_map(map)?,
        (None, None) => BTreeMap::new(),
    };
    if !peers.is_empty() && !peers.contains_key(&id) {
        return Err(format!("--peers must include this server's id {id}"));
    }
    let peer_addr = args
        .peer_addr
        .or(file.peer_addr)
        .or_else(|| peers.get(&id).copied());
    let mut config = ServerConfig::new(id, data_dir, client_addr);
    config.peers = peers;
    config.peer_addr = peer_addr;
    if let Some(v) = args.tick_ms.or(file.tick_ms) {
        config.tick_ms = v;
    }
    if let Some(v) = args.max_data_bytes.or(file.max_data_bytes) {
        config.max_data_bytes = v;
    }
    if let Some(v) = args.snapshot_every.or(file.snapshot_every) {
        config.snapshot_every = v;
    }
    if let Some(v) = args.log_retain_txns.or(file.log_retain_txns) {
        config.log_retain_txns = v;
    }
    if let Some(v) = args.request_timeout_ms.or(file.request_timeout_ms) {
        config.request_timeout_ms = v;
    }
    config.zk_addr = args.zk_addr.or(file.zk_addr);
    if let Some(name) = args.bug.or(file.bug) {
        if !cfg!(feature = "bugs") {
            return Err("--bug needs a build with the `bugs` feature".to_string());
        }
        let bug = Bug::parse(&name).ok_or_else(|| {
            let known: Vec<&str> = Bug::ALL.iter().map(|b| b.name()).collect();
            format!("unknown --bug {name:?}; known: {}", known.join(", "))
        })?;
        config.bug = Some(bug);
    }
    config.peer_secret = match args.peer_secret_file.or(file.peer_secret_file) {
        Some(path) => Some(PeerSecret::from_file(&path)?),
        None => match std::env::var_os(PEER_SECRET_ENV) {
            Some(text) => Some(
                PeerSecret::new(text.as_encoded_bytes())
                    .map_err(|e| format!("{PEER_SECRET_ENV}: {e}"))?,
            ),
            None => None,
        },
    };
    config.validate().map_err(|e| e.to_string())?;
    Ok(config)
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            // clap's first line says what is wrong; its usage block would bury it.
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("bad arguments");
            let first = first.strip_prefix("error: ").unwrap_or(first);
            eprintln!("keeperd: {first} (see keeperd --help)");
            return ExitCode::from(2);
        }
    };
    let config = match server_config(args) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("keeperd: {e}");
            return ExitCode::from(2);
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("keeperd: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    runtime.block_on(serve(config))
}

async fn serve(config: ServerConfig) -> ExitCode {
    let id = config.id;
    let shutdown = CancellationToken::new();
    let running = match shell::start(config, shutdown.clone()).await {
        Ok(running) => running,
        Err(e) => {
            eprintln!("keeperd: {e:#}");
            return ExitCode::from(2);
        }
    };
    tokio::spawn(on_signals(shutdown));
    println!("keeperd {id} serving clients on {}", running.client_addr);
    match running.wait().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keeperd: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// SIGTERM or SIGINT starts a graceful shutdown; a second one exits at once.
async fn on_signals(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; SIGTERM will not be graceful");
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!("shutting down");
    shutdown.cancel();
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    eprintln!("keeperd: second signal; exiting without a graceful shutdown");
    std::process::exit(1);
}
