//! Deploy backends for schism: a set of nodes running the system under test ([`SystemKind`]:
//! keeper's `keeperd`, or Apache ZooKeeper in [`zookeeper`]) that the harness can start, stop,
//! kill, pause, wipe and inspect, and "on" which the nemesis can run network commands. What a
//! node runs, its files and its log name are in [`system`]; the backends only decide where.
//!
//! Three implementations of one trait ([`Backend`]), gathered in the [`Cluster`] enum:
//! - [`netns::NetnsCluster`]: each node is a network namespace on a bridge this crate creates;
//!   the harness reaches nodes through the bridge, so faults cut client traffic too.
//! - [`docker::DockerCluster`]: one container per node, built `FROM scratch` around a static
//!   `keeperd`, on a Docker network with fixed addresses.
//! - [`local::LocalCluster`]: plain processes on distinct 127.x.y.z addresses, for users without
//!   root; it refuses network commands (and thus partitions and shaping).
//!
//! The netns and local backends are one [`process::ProcessCluster`] with different
//! [`process::Placement`]s: they differ only in where a node's process lives.
//!
//! Everything a run creates is named from its [`RunTag`] (`schism-<tag>...`, `sch<tag>...`,
//! label `schism.run=<tag>`) and recorded in a ledger before it is created, so that
//! [`Backend::teardown`] and [`clean::clean_leftovers`] remove exactly what schism made and
//! nothing else. This crate does not decide *which* faults to inject: that is `nemesis`.

pub mod clean;
pub mod clock;
pub mod docker;
pub mod host;
pub mod lazyfs;
pub mod ledger;
pub mod local;
pub mod netns;
pub mod preflight;
pub mod process;
pub mod status;
pub mod system;
pub mod zookeeper;

use serde::{Deserialize, Serialize};
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

pub use host::CommandRecord;
pub use status::{Status, fetch_status};
pub use system::{NodeCommand, NodeFile, node_log_path};

/// A node's id, as passed to `keeperd --id`. Nodes are numbered 1..=n.
pub type NodeId = u64;

/// Port every node's client API listens on (each node has its own address, so one port fits).
pub const CLIENT_PORT: u16 = 8181;
/// Port every node's peer (replication) listener uses.
pub const PEER_PORT: u16 = 2888;
/// Port of ZooKeeper's client protocol on every node: keeperd's `--zk-addr`, or a ZooKeeper
/// server's `clientPort`.
pub const ZK_CLIENT_PORT: u16 = 2181;
/// Port a ZooKeeper server's leader election listens on (keeper elects over its peer port).
pub const ZK_ELECTION_PORT: u16 = 3888;
/// Most nodes a cluster may have: addresses are `.1` to `.MAX_NODES` of a /24 whose `.254`
/// is the host side.
pub const MAX_NODES: usize = 9;
/// How long `stop` waits after SIGTERM before it sends SIGKILL.
pub const STOP_GRACE_MS: u64 = 10_000;

/// Which backend runs the nodes (also `schism --backend`, hence `ValueEnum`; the doc comments
/// below are its help text).
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug, Hash, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum BackendKind {
    /// One network namespace per node on a bridge (needs root or CAP_NET_ADMIN).
    Netns,
    /// One container per node on a Docker network.
    Docker,
    /// Plain processes on 127.0.0.x: kills and pauses only.
    Local,
}

impl BackendKind {
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Local => "local",
            BackendKind::Netns => "netns",
            BackendKind::Docker => "docker",
        }
    }

    /// netns when this process may create namespaces and the tools exist, else local.
    pub fn default_for_host() -> BackendKind {
        if preflight::check(BackendKind::Netns).is_ok() {
            BackendKind::Netns
        } else {
            BackendKind::Local
        }
    }
}

impl std::str::FromStr for BackendKind {
    type Err = ClusterError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "local" => Ok(BackendKind::Local),
            "netns" => Ok(BackendKind::Netns),
            "docker" => Ok(BackendKind::Docker),
            other => Err(ClusterError::Invalid(format!(
                "unknown backend {other:?}: use local, netns or docker"
            ))),
        }
    }
}

impl std::fmt::Display for BackendKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What runs on each node: the system under test (also `schism --system`; the doc comments
/// are its help text).
#[derive(
    Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug, Hash, Default, clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub enum SystemKind {
    /// keeper's own `keeperd` (HTTP API and ZooKeeper's protocol).
    #[default]
    Keeper,
    /// Apache ZooKeeper 3.8 from Debian's `zookeeper` package, on the JDK.
    Zookeeper,
}

impl SystemKind {
    pub fn name(self) -> &'static str {
        match self {
            SystemKind::Keeper => "keeper",
            SystemKind::Zookeeper => "zookeeper",
        }
    }
}

impl std::fmt::Display for SystemKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What to run: how many nodes, which binary, and where the run keeps its files.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct ClusterSpec {
    pub nodes: usize,
    /// What each node runs.
    #[serde(default)]
    pub system: SystemKind,
    /// The `keeperd` binary (unused when the system is ZooKeeper). For docker it must be
    /// statically linked (see [`docker::build_static_keeperd`]).
    pub keeperd: PathBuf,
    /// The harness's run id; names derive from its [`RunTag`].
    pub run_id: String,
    pub tick_ms: Option<u64>,
    pub bug: Option<String>,
    /// Appended to every `keeperd` command line (keeper only).
    pub extra_args: Vec<String>,
    /// The run's directory: node data (`nodes/<node>/data`), logs ([`node_log_path`]),
    /// pidfiles, ZooKeeper's configs (`nodes/<node>/conf`). Docker keeps data on volumes.
    pub base_dir: PathBuf,
    /// The `schism-lazyfs` binary: when set, each node's data directory is a lazyfs mount, so
    /// the power-loss fault can drop its unsynced writes (netns and local backends only).
    #[serde(default)]
    pub lazyfs: Option<PathBuf>,
    /// Each node runs with libfaketime preloaded and a clock control file of its own, so the
    /// clock faults can skew it (netns and local backends only; see [`clock`]).
    #[serde(default)]
    pub faketime: bool,
    /// The ensemble secret of this run, fresh for every spec; every node gets it in
    /// [`PEER_SECRET_ENV`]. Never written to the run's records.
    #[serde(skip, default = "RunSecret::generate")]
    pub peer_secret: RunSecret,
}

/// The environment variable `keeperd` reads its ensemble secret from (keeper's
/// `shell::PEER_SECRET_ENV`; an environment variable, unlike an argument, is not shown by `ps`).
pub const PEER_SECRET_ENV: &str = "KEEPER_PEER_SECRET";
/// Random bytes in a run's secret (hex-encoded, twice as many characters).
const RUN_SECRET_BYTES: usize = 32;

/// A run's ensemble secret. Its `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct RunSecret(String);

impl std::fmt::Debug for RunSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RunSecret(..)")
    }
}

impl RunSecret {
    /// A fresh secret from the kernel's random source.
    pub fn generate() -> RunSecret {
        use std::io::Read;
        let mut bytes = [0u8; RUN_SECRET_BYTES];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut bytes))
            .expect("/dev/urandom is readable on Linux");
        RunSecret(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl ClusterSpec {
    pub fn new(nodes: usize, keeperd: PathBuf, run_id: &str, base_dir: PathBuf) -> ClusterSpec {
        ClusterSpec {
            nodes,
            system: SystemKind::Keeper,
            keeperd,
            run_id: run_id.to_string(),
            tick_ms: None,
            bug: None,
            extra_args: Vec::new(),
            base_dir,
            lazyfs: None,
            faketime: false,
            peer_secret: RunSecret::generate(),
        }
    }

    pub fn tag(&self) -> RunTag {
        RunTag::from_run_id(&self.run_id)
    }

    pub fn node_ids(&self) -> Vec<NodeId> {
        (1..=self.nodes as NodeId).collect()
    }

    pub fn node_dir(&self, node: NodeId) -> PathBuf {
        self.base_dir.join("nodes").join(node_name(node))
    }

    /// The node's data directory on the host (netns and local backends; docker keeps data on
    /// volumes).
    pub fn data_dir(&self, node: NodeId) -> PathBuf {
        self.node_dir(node).join("data")
    }

    fn validate(&self) -> Result<(), ClusterError> {
        if self.nodes == 0 || self.nodes > MAX_NODES {
            return Err(ClusterError::Invalid(format!(
                "a cluster has 1 to {MAX_NODES} nodes, not {}",
                self.nodes
            )));
        }
        match self.system {
            SystemKind::Keeper => {
                if !self.keeperd.is_file() {
                    return Err(ClusterError::Invalid(format!(
                        "keeperd binary {} does not exist: build it with `cargo build -p keeper`",
                        self.keeperd.display()
                    )));
                }
            }
            SystemKind::Zookeeper => {
                if let Some(bug) = &self.bug {
                    return Err(ClusterError::Invalid(format!(
                        "bug {bug:?} is injected into keeperd: ZooKeeper has no injected bugs, use --system keeper"
                    )));
                }
                if !self.extra_args.is_empty() {
                    return Err(ClusterError::Invalid(format!(
                        "extra keeperd arguments {:?} do not apply to ZooKeeper: drop them or use --system keeper",
                        self.extra_args
                    )));
                }
            }
        }
        Ok(())
    }
}

/// `n<id>`: the name of a node in logs and directories.
pub fn node_name(node: NodeId) -> String {
    format!("n{node}")
}

/// The id in a node's name (`n3` → 3), the inverse of [`node_name`].
pub fn node_id(name: &str) -> Option<NodeId> {
    name.strip_prefix('n')?.parse().ok().filter(|id| *id > 0)
}

/// The short, name-safe form of a run id (at most [`RunTag::MAX_LEN`] of `[a-z0-9]`) that
/// every created object carries. Linux interface names have at most 15 bytes, and
/// `sch<tag>h<n>` must fit.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug, Hash, PartialOrd, Ord)]
pub struct RunTag(pub String);

impl RunTag {
    pub const MAX_LEN: usize = 8;

    /// The run id itself when it is short and name-safe, else 8 hex digits of its hash.
    pub fn from_run_id(run_id: &str) -> RunTag {
        let safe = !run_id.is_empty()
            && run_id.len() <= Self::MAX_LEN
            && run_id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if safe {
            RunTag(run_id.to_string())
        } else {
            RunTag(format!("{:08x}", fnv1a(run_id.as_bytes()) as u32))
        }
    }

    /// Parses a tag found in a name; `None` when it cannot be one of ours.
    pub fn parse(s: &str) -> Option<RunTag> {
        let ok = !s.is_empty()
            && s.len() <= Self::MAX_LEN
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        ok.then(|| RunTag(s.to_string()))
    }

    /// `schism-<tag>`: the prefix of namespaces, containers, networks and volumes, the alias of
    /// links, and the comment of host iptables rules.
    pub fn prefix(&self) -> String {
        format!("schism-{}", self.0)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for RunTag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Environment variable every node process carries, so `clean` finds it in `/proc`.
pub const RUN_ENV: &str = "SCHISM_RUN";
/// Docker label on every container, network and volume schism creates.
pub const RUN_LABEL: &str = "schism.run";

pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// Where a node listens.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug)]
pub struct NodeAddr {
    pub id: NodeId,
    pub name: String,
    pub ip: Ipv4Addr,
    pub client_port: u16,
    pub peer_port: u16,
    /// ZooKeeper's client protocol ([`ZK_CLIENT_PORT`]).
    pub zk_port: u16,
    /// What the node runs, so a reader of its status knows which protocol to speak.
    #[serde(default)]
    pub system: SystemKind,
}

impl NodeAddr {
    pub fn client_addr(&self) -> SocketAddr {
        SocketAddr::from((self.ip, self.client_port))
    }
    pub fn peer_addr(&self) -> SocketAddr {
        SocketAddr::from((self.ip, self.peer_port))
    }
    /// Where the node serves ZooKeeper's client protocol.
    pub fn zk_addr(&self) -> SocketAddr {
        SocketAddr::from((self.ip, self.zk_port))
    }
    /// `http://IP:PORT`, the base URL of the node's client API.
    pub fn client_url(&self) -> String {
        format!("http://{}", self.client_addr())
    }
}

/// What the backend believes about a node's process.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    Running,
    Paused,
    /// Stopped, killed, crashed or never started.
    Down,
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A tool or privilege is missing; the message says what to do.
    #[error("{0}")]
    Missing(String),
    /// The backend cannot do this at all (local backend and network commands).
    #[error("{0}")]
    Unsupported(String),
    /// A node's status could not be read: no answer in time, or an unreadable one.
    #[error("{0}")]
    Status(String),
    #[error("{0}")]
    Invalid(String),
    #[error("node {0} is not running")]
    NotRunning(NodeId),
    #[error("no node {0} in this cluster")]
    NoSuchNode(NodeId),
    #[error("`{argv}` failed ({status}): {stderr}")]
    Command {
        argv: String,
        status: String,
        stderr: String,
    },
    #[error("docker: {0}")]
    Docker(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl ClusterError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> ClusterError {
        ClusterError::Io {
            context: context.into(),
            source,
        }
    }
}

pub type Result<T, E = ClusterError> = std::result::Result<T, E>;

/// A set of nodes on one backend. Every method takes `&self` so the harness, the nemesis and a
/// Ctrl-C handler can share one cluster behind an `Arc`; `teardown` is idempotent and may be
/// called at any point, also while `setup` is half done.
pub trait Backend: Send + Sync {
    fn kind(&self) -> BackendKind;
    fn spec(&self) -> &ClusterSpec;
    /// Every node's address. Valid after `setup` (empty before).
    fn addrs(&self) -> Vec<NodeAddr>;
    /// Creates the network and starts every node.
    fn setup(&self) -> impl Future<Output = Result<()>> + Send;
    fn start(&self, node: NodeId) -> impl Future<Output = Result<()>> + Send;
    /// SIGTERM, then SIGKILL after [`STOP_GRACE_MS`].
    fn stop(&self, node: NodeId) -> impl Future<Output = Result<()>> + Send;
    /// SIGKILL.
    fn kill(&self, node: NodeId) -> impl Future<Output = Result<()>> + Send;
    /// SIGSTOP (or the engine's freezer).
    fn pause(&self, node: NodeId) -> impl Future<Output = Result<()>> + Send;
    /// SIGCONT (or the engine's unfreeze).
    fn resume(&self, node: NodeId) -> impl Future<Output = Result<()>> + Send;
    /// Removes the node's data. The node must be down.
    fn wipe(&self, node: NodeId) -> impl Future<Output = Result<()>> + Send;
    fn state(&self, node: NodeId) -> impl Future<Output = Result<NodeState>> + Send;
    /// Writes each node's log to [`node_log_path`]`(dir, node, system)`.
    fn collect_logs(&self, dir: &Path) -> impl Future<Output = Result<()>> + Send;
    /// Runs `argv` (for example `iptables -A INPUT ...`) inside the node's network namespace.
    /// A non-zero exit is not an error here: it is in the returned record.
    fn run_on_node(
        &self,
        node: NodeId,
        argv: &[String],
    ) -> impl Future<Output = Result<CommandRecord>> + Send;
    /// Kills every node and removes everything the run created. Idempotent.
    fn teardown(&self) -> impl Future<Output = Result<()>> + Send;

    /// Drops every write the node did not fsync (a power loss of its disk); the node must be
    /// down. Returns what was dropped. Only lazyfs-backed nodes (see [`lazyfs`]) can do this.
    fn lose_unsynced(&self, _node: NodeId) -> impl Future<Output = Result<String>> + Send {
        async move {
            Err(ClusterError::Unsupported(
                lazyfs::NO_POWER_LOSS_ON_DOCKER.to_string(),
            ))
        }
    }

    /// Stop then start.
    fn restart(&self, node: NodeId) -> impl Future<Output = Result<()>> + Send {
        async move {
            self.stop(node).await?;
            self.start(node).await
        }
    }

    fn node_ids(&self) -> Vec<NodeId> {
        self.spec().node_ids()
    }

    fn addr(&self, node: NodeId) -> Result<NodeAddr> {
        self.addrs()
            .into_iter()
            .find(|a| a.id == node)
            .ok_or(ClusterError::NoSuchNode(node))
    }

    fn client_url(&self, node: NodeId) -> Result<String> {
        Ok(self.addr(node)?.client_url())
    }
}

/// The backend the harness picked, dispatching to it.
pub enum Cluster {
    Local(local::LocalCluster),
    Netns(netns::NetnsCluster),
    Docker(docker::DockerCluster),
}

impl Cluster {
    /// Checks the tools and privileges `kind` needs (one clear error when something is missing)
    /// and builds the cluster. Nothing is created before `setup`.
    pub async fn new(kind: BackendKind, spec: ClusterSpec) -> Result<Cluster> {
        spec.validate()?;
        if kind == BackendKind::Docker && spec.system != SystemKind::Keeper {
            return Err(ClusterError::Unsupported(format!(
                "the docker backend runs keeperd only, not {}: use --backend netns or local",
                spec.system
            )));
        }
        preflight::check(kind)?;
        preflight::check_system(spec.system)?;
        if spec.lazyfs.is_some() {
            if kind == BackendKind::Docker {
                return Err(ClusterError::Unsupported(
                    lazyfs::NO_POWER_LOSS_ON_DOCKER.to_string(),
                ));
            }
            lazyfs::check()?;
        }
        if spec.faketime {
            if kind == BackendKind::Docker {
                return Err(ClusterError::Unsupported(
                    clock::NO_CLOCK_FAULTS_ON_DOCKER.to_string(),
                ));
            }
            clock::check()?;
        }
        Ok(match kind {
            BackendKind::Local => Cluster::Local(local::LocalCluster::new(spec)),
            BackendKind::Netns => Cluster::Netns(netns::NetnsCluster::new(spec)),
            BackendKind::Docker => Cluster::Docker(docker::DockerCluster::connect(spec).await?),
        })
    }
}

macro_rules! dispatch {
    ($self:ident, $c:ident => $e:expr) => {
        match $self {
            Cluster::Local($c) => $e,
            Cluster::Netns($c) => $e,
            Cluster::Docker($c) => $e,
        }
    };
}

impl Backend for Cluster {
    fn kind(&self) -> BackendKind {
        dispatch!(self, c => c.kind())
    }
    fn spec(&self) -> &ClusterSpec {
        dispatch!(self, c => c.spec())
    }
    fn addrs(&self) -> Vec<NodeAddr> {
        dispatch!(self, c => c.addrs())
    }
    async fn setup(&self) -> Result<()> {
        dispatch!(self, c => c.setup().await)
    }
    async fn start(&self, node: NodeId) -> Result<()> {
        dispatch!(self, c => c.start(node).await)
    }
    async fn stop(&self, node: NodeId) -> Result<()> {
        dispatch!(self, c => c.stop(node).await)
    }
    async fn kill(&self, node: NodeId) -> Result<()> {
        dispatch!(self, c => c.kill(node).await)
    }
    async fn pause(&self, node: NodeId) -> Result<()> {
        dispatch!(self, c => c.pause(node).await)
    }
    async fn resume(&self, node: NodeId) -> Result<()> {
        dispatch!(self, c => c.resume(node).await)
    }
    async fn wipe(&self, node: NodeId) -> Result<()> {
        dispatch!(self, c => c.wipe(node).await)
    }
    async fn state(&self, node: NodeId) -> Result<NodeState> {
        dispatch!(self, c => c.state(node).await)
    }
    async fn collect_logs(&self, dir: &Path) -> Result<()> {
        dispatch!(self, c => c.collect_logs(dir).await)
    }
    async fn run_on_node(&self, node: NodeId, argv: &[String]) -> Result<CommandRecord> {
        dispatch!(self, c => c.run_on_node(node, argv).await)
    }
    async fn teardown(&self) -> Result<()> {
        dispatch!(self, c => c.teardown().await)
    }
    async fn restart(&self, node: NodeId) -> Result<()> {
        dispatch!(self, c => c.restart(node).await)
    }
    async fn lose_unsynced(&self, node: NodeId) -> Result<String> {
        dispatch!(self, c => c.lose_unsynced(node).await)
    }
}

/// `NoSuchNode` unless `node` is one of the spec's (backends check every node argument).
pub fn check_node(spec: &ClusterSpec, node: NodeId) -> Result<()> {
    if node == 0 || node as usize > spec.nodes {
        return Err(ClusterError::NoSuchNode(node));
    }
    Ok(())
}
