//! `keeper-cli bench-ensemble`: starts a 3-node loopback ensemble of `keeperd` processes and
//! measures failover after SIGKILL of the leader and after isolating the leader (iptables, no
//! RST), then write throughput at 1 and 32 clients. A benchmark: it reports figures and asserts
//! none. Needs root for the isolation (it runs the nodes under their own group ids so that an
//! iptables owner match can tell the leader's outgoing connections apart on loopback).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use keeper_client::{ClientConfig, Error, NodeClient};
use keeper_wire::{
    ANY_VERSION, CreateMode, CreateRequest, CreateSessionRequest, NodeId, Role, SessionId,
    SetDataRequest, Zxid,
};
use tokio::process::{Child, Command};

use crate::bench::{self, BenchConfig, BenchOp, BenchSummary};

const NODES: NodeId = 3;
/// Each node runs with group id `NODE_GID_BASE + id`: the iptables owner match keys on it.
const NODE_GID_BASE: u32 = 64_000;
/// How long an ensemble may take to elect and have every node serving.
const READY_TIMEOUT_MS: u64 = 30_000;
/// A failover trial that sees no acknowledged write within this long fails.
const FAILOVER_LIMIT_MS: u64 = 20_000;
/// The probe's pause after a refused write, so that it measures the server, not a backoff.
const PROBE_PAUSE_MS: u64 = 1;
/// Steady writes before each fault, so that one is in flight when it strikes.
const WARMUP_MS: u64 = 300;
/// Budget of one probe write over HTTP (the server answers sooner when it can).
const PROBE_TIMEOUT_MS: u64 = 10_000;
/// The probe session's requested timeout (the server clamps it to 20 ticks).
const PROBE_SESSION_MS: u64 = 10_000;
const STATUS_POLL_MS: u64 = 20;
/// The payload of every ensemble bench's writes.
pub const DATA_BYTES: usize = 100;
/// Set: keep the data directory and the nodes' logs (at level info) for a look afterwards.
const KEEP_ENV: &str = "KEEPER_BENCH_KEEP";

pub struct EnsembleConfig {
    pub keeperd: PathBuf,
    pub trials: usize,
    pub duration: Duration,
    /// Client ports are `base_port + id`, peer ports `base_port + 10 + id`.
    pub base_port: u16,
    pub skip_isolation: bool,
}

/// One keeperd process of the ensemble.
struct Node {
    id: NodeId,
    client_port: u16,
    peer_port: u16,
    /// Its ZooKeeper-protocol port, when the ensemble serves one (`bench-zk`).
    zk_port: Option<u16>,
    child: Option<Child>,
}

impl Node {
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }
}

/// What an ensemble is started with besides keeperd's defaults.
pub struct Launch {
    /// Client ports are `base_port + id`, peer ports `+ 10`, ZooKeeper ports `+ 20`.
    pub base_port: u16,
    /// Each node also serves ZooKeeper's protocol.
    pub zk_ports: bool,
    /// Each node runs under its own group id, so that iptables can tell its connections apart
    /// (needs root; the isolation trials need it).
    pub own_gids: bool,
}

/// The running ensemble. Dropping it kills the processes and removes their data.
pub struct Ensemble {
    keeperd: PathBuf,
    dir: PathBuf,
    nodes: Vec<Node>,
    own_gids: bool,
}

impl Drop for Ensemble {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(child) = &mut node.child {
                let _ = child.start_kill();
            }
        }
        if std::env::var_os(KEEP_ENV).is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl Ensemble {
    pub fn start(keeperd: &Path, launch: &Launch) -> anyhow::Result<Ensemble> {
        if !keeperd.is_file() {
            bail!(
                "no keeperd at {} (build it with `cargo build --release -p keeper`, or pass --keeperd)",
                keeperd.display()
            );
        }
        let dir = std::env::temp_dir().join(format!("keeper-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let nodes = (1..=NODES)
            .map(|id| Node {
                id,
                client_port: launch.base_port + id as u16,
                peer_port: launch.base_port + 10 + id as u16,
                zk_port: launch.zk_ports.then_some(launch.base_port + 20 + id as u16),
                child: None,
            })
            .collect();
        let mut ensemble = Ensemble {
            keeperd: keeperd.to_path_buf(),
            dir,
            nodes,
            own_gids: launch.own_gids,
        };
        for id in 1..=NODES {
            ensemble.launch(id)?;
        }
        Ok(ensemble)
    }

    fn node(&self, id: NodeId) -> &Node {
        &self.nodes[(id - 1) as usize]
    }

    /// Each node's ZooKeeper-protocol address (`IP:PORT`), in node order, if it serves one.
    pub fn zk_addrs(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter_map(|n| n.zk_port.map(|p| format!("127.0.0.1:{p}")))
            .collect()
    }

    /// Starts node `id` (again) on its own data directory.
    fn launch(&mut self, id: NodeId) -> anyhow::Result<()> {
        let peers = self
            .nodes
            .iter()
            .map(|n| format!("{}=127.0.0.1:{}", n.id, n.peer_port))
            .collect::<Vec<_>>()
            .join(",");
        let node = &self.nodes[(id - 1) as usize];
        let data = self.dir.join(format!("n{id}"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("n{id}.log")))?;
        let mut command = Command::new(&self.keeperd);
        command
            .arg("--id")
            .arg(id.to_string())
            .arg("--data-dir")
            .arg(&data)
            .arg("--client-addr")
            .arg(format!("127.0.0.1:{}", node.client_port))
            .arg("--peer-addr")
            .arg(format!("127.0.0.1:{}", node.peer_port))
            .arg("--peers")
            .arg(&peers);
        if let Some(port) = node.zk_port {
            command.arg("--zk-addr").arg(format!("127.0.0.1:{port}"));
        }
        if self.own_gids {
            command.gid(NODE_GID_BASE + id as u32);
        }
        let child = command
            .env(
                "RUST_LOG",
                if std::env::var_os(KEEP_ENV).is_some() {
                    "info"
                } else {
                    "warn"
                },
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", self.keeperd.display()))?;
        self.nodes[(id - 1) as usize].child = Some(child);
        Ok(())
    }

    /// SIGKILL, and reap the process so that its ports are free for the restart.
    async fn kill(&mut self, id: NodeId) -> anyhow::Result<()> {
        if let Some(mut child) = self.nodes[(id - 1) as usize].child.take() {
            child.start_kill()?;
            child.wait().await?;
        }
        Ok(())
    }

    /// Waits until one node leads and every node serves; returns the leader.
    pub async fn ready(&self) -> anyhow::Result<NodeId> {
        let deadline = Instant::now() + Duration::from_millis(READY_TIMEOUT_MS);
        let clients: Vec<NodeClient> = self
            .nodes
            .iter()
            .map(|n| NodeClient::new(&n.url(), Duration::from_millis(1_000)))
            .collect::<Result<_, _>>()?;
        loop {
            let mut leaders = Vec::new();
            let mut serving = 0;
            for c in &clients {
                if let Ok(status) = c.status().await {
                    if status.role == Role::Leading {
                        leaders.push(status.id);
                    }
                    serving += usize::from(status.serving);
                }
            }
            if leaders.len() == 1 && serving == self.nodes.len() {
                return Ok(leaders[0]);
            }
            if Instant::now() >= deadline {
                bail!(
                    "the ensemble was not ready within {READY_TIMEOUT_MS} ms (logs in {})",
                    self.dir.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(STATUS_POLL_MS)).await;
        }
    }
}

/// iptables rules that cut one node off from its peers; removed when dropped.
struct Isolation {
    chain: String,
}

fn iptables(args: &[&str]) -> anyhow::Result<()> {
    let out = std::process::Command::new("iptables")
        .args(args)
        .output()
        .context("cannot run iptables")?;
    if !out.status.success() {
        bail!(
            "iptables {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

impl Isolation {
    /// Drops every packet between `node` and its peers, in both directions, on loopback: what
    /// arrives at or leaves its peer port, and what its own process sends to the others' peer
    /// ports (matched by its group id). No RST is sent: the others see silence.
    fn install(node: &Node, others: &[&Node]) -> anyhow::Result<Isolation> {
        let chain = format!("KEEPER-BENCH-{}", std::process::id());
        iptables(&["-N", &chain])?;
        let isolation = Isolation { chain };
        let chain = isolation.chain.as_str();
        let port = node.peer_port.to_string();
        iptables(&["-A", chain, "-p", "tcp", "--dport", &port, "-j", "DROP"])?;
        iptables(&["-A", chain, "-p", "tcp", "--sport", &port, "-j", "DROP"])?;
        let gid = (NODE_GID_BASE + node.id as u32).to_string();
        for other in others {
            let port = other.peer_port.to_string();
            iptables(&[
                "-A",
                chain,
                "-p",
                "tcp",
                "-m",
                "owner",
                "--gid-owner",
                &gid,
                "--dport",
                &port,
                "-j",
                "DROP",
            ])?;
        }
        iptables(&["-I", "OUTPUT", "-j", chain])?;
        Ok(isolation)
    }
}

impl Drop for Isolation {
    fn drop(&mut self) {
        let chain = self.chain.as_str();
        // The jump may not exist if installing failed half-way.
        let _ = iptables(&["-D", "OUTPUT", "-j", chain]);
        for args in [["-F", chain], ["-X", chain]] {
            if let Err(e) = iptables(&args) {
                eprintln!("keeper-cli bench-ensemble: cleaning up: {e:#}");
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    Kill,
    Isolate,
}

/// One probe write: when it was issued and answered, and how.
#[derive(Clone, Debug)]
struct Probe {
    issued: Instant,
    answered: Instant,
    outcome: Outcome,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Ok,
    Definite,
    Indeterminate,
}

struct Trial {
    /// Fault to the answer of the first acknowledged write issued after it.
    failover_ms: f64,
    /// The write in flight when the fault struck: its answer after the fault, and how.
    in_flight: Option<(f64, Outcome)>,
}

/// Writes back-to-back through one node until `stop`, keeping every attempt.
async fn probe_loop(
    node: NodeClient,
    session: SessionId,
    path: String,
    probes: Arc<Mutex<Vec<Probe>>>,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut last_zxid: Zxid = 0;
    let data = "x".repeat(DATA_BYTES);
    while !stop.is_cancelled() {
        let issued = Instant::now();
        let result = node
            .set_data(&SetDataRequest {
                session,
                last_zxid,
                path: path.clone(),
                data: data.clone(),
                version: ANY_VERSION,
            })
            .await;
        let answered = Instant::now();
        let outcome = match &result {
            Ok(reply) => {
                last_zxid = last_zxid.max(reply.zxid);
                Outcome::Ok
            }
            Err(e) if e.is_indeterminate() => Outcome::Indeterminate,
            Err(_) => Outcome::Definite,
        };
        probes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Probe {
                issued,
                answered,
                outcome,
            });
        if outcome != Outcome::Ok {
            tokio::time::sleep(Duration::from_millis(PROBE_PAUSE_MS)).await;
        }
    }
}

async fn failover_trial(ensemble: &mut Ensemble, fault: Fault) -> anyhow::Result<Trial> {
    let leader = ensemble.ready().await?;
    let via = (1..=NODES).find(|id| *id != leader).expect("three nodes");
    let node = NodeClient::new(
        &ensemble.node(via).url(),
        Duration::from_millis(PROBE_TIMEOUT_MS),
    )?;
    let session = node
        .create_session(&CreateSessionRequest {
            timeout_ms: PROBE_SESSION_MS,
            last_zxid: 0,
        })
        .await
        .map_err(describe)?;
    let path = format!("/keeper-bench-failover-{:x}", session.session);
    node.create(&CreateRequest {
        session: session.session,
        last_zxid: session.zxid,
        path: path.clone(),
        data: String::new(),
        mode: CreateMode::Ephemeral,
    })
    .await
    .map_err(describe)?;

    let probes = Arc::new(Mutex::new(Vec::new()));
    let stop = tokio_util::sync::CancellationToken::new();
    let writer = tokio::spawn(probe_loop(
        node.clone(),
        session.session,
        path,
        probes.clone(),
        stop.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(WARMUP_MS)).await;

    let (struck, isolation) = match fault {
        Fault::Kill => {
            let struck = Instant::now();
            if let Some(child) = &mut ensemble.nodes[(leader - 1) as usize].child {
                child.start_kill()?;
            }
            (struck, None)
        }
        Fault::Isolate => {
            let others: Vec<&Node> = ensemble.nodes.iter().filter(|n| n.id != leader).collect();
            let isolation = Isolation::install(ensemble.node(leader), &others)?;
            (Instant::now(), Some(isolation))
        }
    };
    let limit = struck + Duration::from_millis(FAILOVER_LIMIT_MS);
    let first_ok = loop {
        let found = probes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|p| p.issued >= struck && p.outcome == Outcome::Ok)
            .map(|p| p.answered);
        if let Some(at) = found {
            break Some(at);
        }
        if Instant::now() >= limit {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(PROBE_PAUSE_MS)).await;
    };
    // The write in flight may still be waiting (that is what is measured): give it its time.
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_millis(PROBE_TIMEOUT_MS), writer).await;
    drop(isolation);
    if fault == Fault::Kill {
        ensemble.kill(leader).await?;
        ensemble.launch(leader)?;
    }
    let Some(first_ok) = first_ok else {
        bail!("no write was acknowledged within {FAILOVER_LIMIT_MS} ms of the fault");
    };
    let probes = probes.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let in_flight = probes
        .iter()
        .find(|p| p.issued < struck && p.answered >= struck)
        .map(|p| (ms(p.answered - struck), p.outcome));
    Ok(Trial {
        failover_ms: ms(first_ok - struck),
        in_flight,
    })
}

fn describe(e: Error) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// (min, median, max); the median of an even count is the lower middle value.
fn spread(mut values: Vec<f64>) -> Option<(f64, f64, f64)> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    Some((
        values[0],
        values[(values.len() - 1) / 2],
        values[values.len() - 1],
    ))
}

fn report_failover(name: &str, trials: &[Trial]) -> String {
    let Some((min, median, max)) = spread(trials.iter().map(|t| t.failover_ms).collect()) else {
        return format!("{name}: no trial completed");
    };
    let mut line = format!(
        "{name}: first acknowledged write {min:.0} / {median:.0} / {max:.0} ms (min/median/max of {})",
        trials.len()
    );
    let in_flight: Vec<(f64, Outcome)> = trials.iter().filter_map(|t| t.in_flight).collect();
    if let Some((min, median, max)) = spread(in_flight.iter().map(|(t, _)| *t).collect()) {
        let count = |o: Outcome| in_flight.iter().filter(|(_, x)| *x == o).count();
        line.push_str(&format!(
            "\n  write in flight answered after {min:.0} / {median:.0} / {max:.0} ms: {} indeterminate, {} ok, {} definite error",
            count(Outcome::Indeterminate),
            count(Outcome::Ok),
            count(Outcome::Definite),
        ));
    }
    line
}

async fn throughput(
    ensemble: &Ensemble,
    first: NodeId,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<BenchSummary> {
    // The bench gives worker k the server list rotated by k: worker 0 talks to `first`.
    let mut servers: Vec<String> = ensemble.nodes.iter().map(Node::url).collect();
    servers.rotate_left((first - 1) as usize);
    bench::measure(BenchConfig {
        client: ClientConfig::new(servers),
        concurrency,
        duration,
        data_bytes: DATA_BYTES,
        op: BenchOp::Set,
    })
    .await
}

pub async fn run(config: EnsembleConfig) -> anyhow::Result<()> {
    if config.trials == 0 {
        bail!("--trials must be at least 1");
    }
    let mut ensemble = Ensemble::start(
        &config.keeperd,
        &Launch {
            base_port: config.base_port,
            zk_ports: false,
            own_gids: true,
        },
    )?;
    let leader = ensemble.ready().await?;
    println!(
        "ensemble: 3 keeperd on loopback ({}), fsync on, data in {}",
        config.keeperd.display(),
        ensemble.dir.display()
    );

    let mut lines = Vec::new();
    let faults: &[(Fault, &str)] = if config.skip_isolation {
        &[(Fault::Kill, "SIGKILL of the leader")]
    } else {
        &[
            (Fault::Kill, "SIGKILL of the leader"),
            (Fault::Isolate, "leader isolated (iptables, no RST)"),
        ]
    };
    for &(fault, name) in faults {
        let mut trials = Vec::new();
        for trial in 1..=config.trials {
            let t = failover_trial(&mut ensemble, fault)
                .await
                .with_context(|| format!("{name}, trial {trial}"))?;
            println!(
                "{name}, trial {trial}: {:.0} ms{}",
                t.failover_ms,
                t.in_flight.map_or(String::new(), |(ms, o)| format!(
                    " (write in flight answered {o:?} after {ms:.0} ms)"
                ))
            );
            trials.push(t);
        }
        lines.push(report_failover(name, &trials));
    }

    let leader = ensemble.ready().await.unwrap_or(leader);
    let follower = (1..=NODES).find(|id| *id != leader).expect("three nodes");
    for (first, clients, name) in [
        (leader, 1, "1 client on the leader"),
        (follower, 1, "1 client on a follower"),
        (leader, 32, "32 clients over all nodes"),
    ] {
        ensemble.ready().await?;
        let s = throughput(&ensemble, first, clients, config.duration).await?;
        lines.push(format!(
            "writes/s, {name}: {:.0} (p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms)",
            s.per_sec, s.p50_ms, s.p99_ms, s.max_ms
        ));
    }
    println!("\n== summary ==");
    for line in lines {
        println!("{line}");
    }
    Ok(())
}
