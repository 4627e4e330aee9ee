//! The tokio shell around the deterministic core: `keeperd` minus its command line.
//!
//! The shell turns sockets, timers and the disk into [`crate::core::Input`]s and carries out
//! the [`crate::core::Output`]s, and holds no protocol state of its own:
//! - [`driver`]: one dedicated thread owns the `Core` and the `Storage`. It batches inputs,
//!   steps the core, makes the batch's `Persist` outputs durable with one fsync (group commit)
//!   and only then lets replies, peer messages and watch events out (the core's durability
//!   rule).
//! - [`http`]: the client API (axum), `docs/API.md`.
//! - [`sse`]: per-session watch event queues and their server-sent-event streams.
//! - [`peer`]: the TCP transport between servers.
//! - `crate::zk` (the ZooKeeper port, `--zk-addr`) reaches the driver and the event hub as
//!   [`http`] and [`sse`] do.
//! - [`peer`]: the TCP transport between servers; [`peer_admission`]: the ensemble secret
//!   and the bounded slots that decide which incoming peer connections are heard.
//!
//! Deliberately absent: retries, timeouts of requests (the core answers `timeout`), any
//! interpretation of peer messages. The shell only bounds what the core cannot see: queues,
//! frame and body sizes, and how long a handler waits for the driver.

pub(crate) mod driver;
mod http;
mod http_listener;
mod peer;
mod peer_admission;
pub(crate) mod sse;

pub use http_listener::{
    HTTP_BODY_READ_TIMEOUT_MS, HTTP_HEADER_READ_TIMEOUT_MS, HTTP_IDLE_TIMEOUT_MS, HttpLimits,
    MAX_HTTP_CONNECTIONS,
};
pub use peer::{MAX_FRAME_BYTES, PEER_FRAME_VERSION};
pub use peer_admission::{PEER_SECRET_ENV, PeerSecret};

use crate::api::NodeId;
use crate::bugs::Bug;
use anyhow::Context;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Default `--tick-ms`.
pub const DEFAULT_TICK_MS: u64 = 200;
/// Default `--snapshot-every`: transactions written to the log between two snapshots.
pub const DEFAULT_SNAPSHOT_EVERY: u64 = 10_000;
/// Default `--request-timeout-ms`.
pub const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 5_000;
/// How long a graceful shutdown waits for in-flight HTTP requests before it stops the driver
/// anyway.
pub const SHUTDOWN_GRACE_MS: u64 = 5_000;

/// Everything `keeperd` needs to run one node.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub id: NodeId,
    pub data_dir: PathBuf,
    /// Port 0 picks a free port; [`Running::client_addr`] tells which.
    pub client_addr: SocketAddr,
    /// Where peers connect. Needed when `peers` names other members.
    pub peer_addr: Option<SocketAddr>,
    /// Every member and its peer address, this node included. Empty: a standalone server.
    pub peers: BTreeMap<NodeId, SocketAddr>,
    pub tick_ms: u64,
    pub max_data_bytes: usize,
    /// Transactions written to the log between two snapshots.
    pub snapshot_every: u64,
    /// Transactions a snapshot leaves in the in-memory log, so that a follower that far
    /// behind still syncs by DIFF; one further behind gets the whole tree (SNAP).
    pub log_retain_txns: usize,
    pub request_timeout_ms: u64,
    pub bug: Option<Bug>,
    /// Where ZooKeeper clients connect (`crate::zk`); `None`: no ZooKeeper port.
    pub zk_addr: Option<SocketAddr>,
    /// The ensemble secret peers prove they know. `None`: any member's hello is believed.
    pub peer_secret: Option<PeerSecret>,
    /// Time and connection limits of the client API.
    pub http_limits: HttpLimits,
}

impl ServerConfig {
    /// A standalone node with every other setting at its default.
    pub fn new(id: NodeId, data_dir: PathBuf, client_addr: SocketAddr) -> ServerConfig {
        ServerConfig {
            id,
            data_dir,
            client_addr,
            peer_addr: None,
            peers: BTreeMap::new(),
            tick_ms: DEFAULT_TICK_MS,
            max_data_bytes: crate::api::DEFAULT_MAX_DATA_BYTES,
            snapshot_every: DEFAULT_SNAPSHOT_EVERY,
            log_retain_txns: crate::core::LOG_RETAIN_TXNS,
            request_timeout_ms: DEFAULT_REQUEST_TIMEOUT_MS,
            bug: None,
            zk_addr: None,
            peer_secret: None,
            http_limits: HttpLimits::default(),
        }
    }

    /// The voting members: the ids in `peers`, or just this node.
    pub fn voters(&self) -> Vec<NodeId> {
        if self.peers.is_empty() {
            vec![self.id]
        } else {
            self.peers.keys().copied().collect()
        }
    }

    /// Checks the settings that do not need the network or the disk.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.tick_ms >= 2, "--tick-ms must be at least 2");
        anyhow::ensure!(self.max_data_bytes > 0, "--max-data-bytes must be positive");
        anyhow::ensure!(self.snapshot_every > 0, "--snapshot-every must be positive");
        anyhow::ensure!(
            self.request_timeout_ms > 0,
            "--request-timeout-ms must be positive"
        );
        self.http_limits.validate().map_err(anyhow::Error::msg)?;
        if !self.peers.is_empty() {
            anyhow::ensure!(
                self.peers.contains_key(&self.id),
                "--peers must include this node's own id {}",
                self.id
            );
            anyhow::ensure!(
                self.peer_addr.is_some() || self.peers.len() == 1,
                "--peer-addr is needed when --peers names other members"
            );
        }
        Ok(())
    }

    fn core_config(&self) -> crate::core::Config {
        let mut config = crate::core::Config::new(self.id, self.voters());
        config.tick_ms = self.tick_ms;
        config.request_timeout_ms = self.request_timeout_ms;
        config.max_data_bytes = self.max_data_bytes;
        config.bug = self.bug;
        config
    }
}

/// A node that has opened its storage and bound its sockets.
pub struct Running {
    pub client_addr: SocketAddr,
    /// The ZooKeeper port, if `zk_addr` was given.
    pub zk_addr: Option<SocketAddr>,
    pub peer_addr: Option<SocketAddr>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    /// Waits until the node stops: `Ok` after a graceful shutdown, `Err` when it had to stop
    /// (a storage error is fatal: a node must never serve after a failed fsync).
    pub async fn wait(self) -> anyhow::Result<()> {
        match self.task.await {
            Ok(result) => result,
            Err(e) => Err(anyhow::anyhow!("the node's supervisor task failed: {e}")),
        }
    }
}

/// Runs one node until `shutdown` is cancelled (graceful: `Ok`) or a fatal error (`Err`).
pub async fn run(config: ServerConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let id = config.id;
    let running = start(config, shutdown).await?;
    println!("keeperd {id} serving clients on {}", running.client_addr);
    running.wait().await
}

/// Opens the storage, recovers the core and binds the client and peer sockets. An error here
/// means the node never served (bad settings, unusable data directory, port in use).
pub async fn start(config: ServerConfig, shutdown: CancellationToken) -> anyhow::Result<Running> {
    config.validate()?;
    // Logged before anything can fail, so that a node that cannot start shows what it was
    // doing above its error line (issue 11).
    tracing::info!(
        id = config.id,
        version = env!("CARGO_PKG_VERSION"),
        data_dir = %config.data_dir.display(),
        client_addr = %config.client_addr,
        peer_addr = ?config.peer_addr,
        voters = ?config.voters(),
        peer_secret = config.peer_secret.is_some(),
        "starting"
    );
    let client_listener = TcpListener::bind(config.client_addr)
        .await
        .with_context(|| format!("cannot listen for clients on {}", config.client_addr))?;
    let client_addr = client_listener.local_addr()?;
    let others: BTreeMap<NodeId, SocketAddr> = config
        .peers
        .iter()
        .filter(|(id, _)| **id != config.id)
        .map(|(id, addr)| (*id, *addr))
        .collect();
    let peer_listener = match config.peer_addr {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen for peers on {addr}"))?,
        ),
        None => None,
    };
    let zk_listener = match config.zk_addr {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen for ZooKeeper clients on {addr}"))?,
        ),
        None => None,
    };
    let zk_addr = match &zk_listener {
        Some(l) => Some(l.local_addr()?),
        None => None,
    };
    let peer_addr = match &peer_listener {
        Some(l) => Some(l.local_addr()?),
        None => None,
    };

    // Shutdown runs in stages. `clients` (which follows `shutdown`) stops the HTTP server and
    // ends the event streams; `peers` stops the transport only once in-flight requests are
    // answered, since their replies may need the ensemble; `driver_stop` comes last. A fatal
    // error fires all three at once: a node whose storage failed stops serving immediately.
    let clients = shutdown.child_token();
    let peers = CancellationToken::new();
    let driver_stop = CancellationToken::new();
    let hub = Arc::new(sse::EventHub::default());
    if peer_listener.is_some() && config.peer_secret.is_none() {
        tracing::warn!(
            "no peer secret (--peer-secret-file or {PEER_SECRET_ENV}): any process that can \
             reach the peer port can act as a member of this ensemble"
        );
    }
    let transport = peer::Transport::start(
        config.id,
        others.clone(),
        config.peer_secret.clone(),
        peers.clone(),
    );
    tracing::info!(data_dir = %config.data_dir.display(), "recovering from the data directory");
    let spawned = driver::spawn(
        driver::DriverConfig {
            core: config.core_config(),
            data_dir: config.data_dir.clone(),
            snapshot_every: config.snapshot_every,
            log_retain_txns: config.log_retain_txns,
            fsync: config.bug != Some(Bug::NoFsync),
        },
        transport,
        hub.clone(),
        driver_stop.clone(),
    )
    .await;
    let (driver, driver_done) = match spawned {
        Ok(pair) => pair,
        Err(e) => {
            peers.cancel();
            return Err(e);
        }
    };

    let members: Vec<NodeId> = others.keys().copied().collect();
    if let Some(listener) = peer_listener {
        tokio::spawn(peer::accept(
            listener,
            config.id,
            members,
            config.peer_secret.clone(),
            driver.clone(),
            peers.clone(),
        ));
    }

    if let Some(listener) = zk_listener {
        let core = config.core_config();
        let settings = crate::zk::Settings {
            min_session_ms: core.min_session_ticks * core.tick_ms,
            max_session_ms: core.max_session_ticks * core.tick_ms,
            max_frame_bytes: config.max_data_bytes + crate::zk::FRAME_SLACK_BYTES,
        };
        tokio::spawn(crate::zk::serve(
            listener,
            driver.clone(),
            hub.clone(),
            settings,
            clients.clone(),
        ));
    }

    let app = http::router(http::AppState {
        driver: driver.clone(),
        hub,
        stop: clients.clone(),
        body_limit: config.max_data_bytes.saturating_mul(2) + http::BODY_SLACK_BYTES,
        body_read_ms: config.http_limits.body_read_ms,
    });
    let mut http_task = tokio::spawn(http_listener::serve(
        client_listener,
        app,
        config.http_limits,
        clients.clone(),
    ));

    let id = config.id;
    tracing::info!(id, %client_addr, ?peer_addr, ?zk_addr, voters = ?config.voters(), "node started");
    let task = tokio::spawn(async move {
        let mut driver_done = driver_done;
        let mut http_finished = false;
        let fatal = tokio::select! {
            biased;
            _ = clients.cancelled() => None,
            outcome = &mut driver_done => Some(driver::outcome(outcome)),
            served = &mut http_task => {
                http_finished = true;
                // The server ends by itself only when it panicked.
                (!clients.is_cancelled())
                    .then(|| Err(anyhow::anyhow!("the HTTP server stopped: {served:?}")))
            }
        };
        if let Some(result) = fatal {
            clients.cancel();
            peers.cancel();
            driver_stop.cancel();
            // The driver only returns by itself on an error; `Ok` here would be a bug.
            return result.and(Err(anyhow::anyhow!("the driver stopped unexpectedly")));
        }
        // Graceful: let in-flight requests finish (their replies need the driver and maybe
        // the peers), then stop the peers and the driver, which makes its last batch durable
        // before it returns.
        let grace = Duration::from_millis(SHUTDOWN_GRACE_MS);
        if !http_finished && tokio::time::timeout(grace, &mut http_task).await.is_err() {
            tracing::warn!(
                id,
                "in-flight requests did not finish in {SHUTDOWN_GRACE_MS} ms"
            );
            http_task.abort();
        }
        peers.cancel();
        driver_stop.cancel();
        let result = match tokio::time::timeout(grace, driver_done).await {
            Ok(outcome) => driver::outcome(outcome),
            Err(_) => Err(anyhow::anyhow!(
                "the driver did not stop within {SHUTDOWN_GRACE_MS} ms"
            )),
        };
        tracing::info!(id, "node stopped");
        result
    });
    Ok(Running {
        client_addr,
        zk_addr,
        peer_addr,
        task,
    })
}
