//! `keeper-cli bench-zk`: the same closed-loop write load over ZooKeeper's own client protocol
//! against a 3-node loopback ensemble of real Apache ZooKeeper (Debian's `zookeeper` package)
//! and of keeperd (its ZooKeeper port), one system after the other, so that the two are
//! compared with one driver on one machine. A benchmark: it reports figures and asserts none.
//!
//! The driver is the `zookeeper-client` crate, one session per worker, each worker
//! `setData`-ing its own znode of 100 bytes back to back. ZooKeeper runs with its documented
//! defaults (tickTime 2000, initLimit 10, syncLimit 5, forceSync on: every transaction is
//! fsynced before it is acknowledged), keeperd with its own (fsync on).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

use crate::bench::{BenchSummary, MAX_SAMPLES_PER_WORKER};
use crate::ensemble::{self, DATA_BYTES, Launch};

const NODES: u16 = 3;
/// Debian's JDK and ZooKeeper's jars (the jar's manifest brings its other dependencies).
const JAVA: &str = "/usr/bin/java";
const ZOOKEEPER_JARS: [&str; 3] = [
    "/usr/share/java/zookeeper.jar",
    "/usr/share/java/slf4j-log4j12.jar",
    "/usr/share/java/log4j-1.2.jar",
];
const ZOOKEEPER_MAIN: &str = "org.apache.zookeeper.server.quorum.QuorumPeerMain";
const JVM_MAX_HEAP_MB: u32 = 512;
/// How long an ensemble may take to start, elect and serve.
const READY_TIMEOUT_MS: u64 = 60_000;
const READY_POLL_MS: u64 = 100;
/// Budget of one four-letter-word exchange.
const FOUR_LETTER_TIMEOUT_MS: u64 = 1_000;
const SESSION_TIMEOUT_MS: u64 = 10_000;
/// A write that takes longer than this ends the run with an error: the ensemble is not well.
const WRITE_TIMEOUT_MS: u64 = 10_000;
/// Unmeasured load before each measured one: the JVM compiles ZooKeeper's hot paths in its
/// first seconds, and a figure of the interpreter would flatter keeper.
const WARMUP_MS: u64 = 5_000;
const BENCH_ROOT: &str = "/keeper-bench-zk";

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchSystem {
    Zookeeper,
    Keeper,
}

pub struct ZkBenchConfig {
    pub systems: Vec<BenchSystem>,
    pub keeperd: PathBuf,
    pub duration: Duration,
    /// ZooKeeper client ports are `base_port + id`, quorum `+ 10`, election `+ 20`; keeperd's
    /// ports are `bench-ensemble`'s from `base_port + 30` (its ZooKeeper ports `+ 50`).
    pub base_port: u16,
}

/// One node's process; killed when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.start_kill();
    }
}

/// A running 3-node ZooKeeper ensemble: its processes, each node's address, and the scratch
/// directory removed when dropped.
struct ZkEnsemble {
    dir: PathBuf,
    zk_addrs: Vec<String>,
    processes: Vec<Process>,
}

impl Drop for ZkEnsemble {
    fn drop(&mut self) {
        self.processes.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn scratch_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("keeper-bench-zookeeper-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

fn log_file(dir: &Path, id: u16) -> anyhow::Result<std::fs::File> {
    Ok(std::fs::File::create(dir.join(format!("n{id}.log")))?)
}

impl ZkEnsemble {
    fn start(base_port: u16) -> anyhow::Result<ZkEnsemble> {
        for path in std::iter::once(JAVA).chain(ZOOKEEPER_JARS) {
            if !Path::new(path).is_file() {
                bail!(
                    "{path} is missing: install Debian's zookeeper package (apt-get install zookeeper)"
                );
            }
        }
        let dir = scratch_dir()?;
        let servers: String = (1..=NODES)
            .map(|id| {
                format!(
                    "server.{id}=127.0.0.1:{}:{}\n",
                    base_port + 10 + id,
                    base_port + 20 + id
                )
            })
            .collect();
        let mut ensemble = ZkEnsemble {
            dir: dir.clone(),
            zk_addrs: Vec::new(),
            processes: Vec::new(),
        };
        for id in 1..=NODES {
            let data = dir.join(format!("n{id}"));
            std::fs::create_dir_all(&data)?;
            std::fs::write(data.join("myid"), format!("{id}\n"))?;
            let cfg = data.join("zoo.cfg");
            std::fs::write(
                &cfg,
                format!(
                    "tickTime=2000\ninitLimit=10\nsyncLimit=5\ndataDir={}\nclientPort={}\n\
                     clientPortAddress=127.0.0.1\nadmin.enableServer=false\n\
                     4lw.commands.whitelist=srvr\n{servers}",
                    data.display(),
                    base_port + id
                ),
            )?;
            let child = Command::new(JAVA)
                .arg(format!("-Xmx{JVM_MAX_HEAP_MB}m"))
                .arg("-cp")
                .arg(ZOOKEEPER_JARS.join(":"))
                .arg(ZOOKEEPER_MAIN)
                .arg(&cfg)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log_file(&dir, id)?)
                .kill_on_drop(true)
                .spawn()
                .context("cannot start java")?;
            ensemble.processes.push(Process(child));
            ensemble
                .zk_addrs
                .push(format!("127.0.0.1:{}", base_port + id));
        }
        Ok(ensemble)
    }

    /// Waits until one node leads and the others follow (ZooKeeper's `srvr` word); returns the
    /// leader's index.
    async fn ready(&self) -> anyhow::Result<usize> {
        let deadline = Instant::now() + Duration::from_millis(READY_TIMEOUT_MS);
        loop {
            let mut modes = Vec::new();
            for addr in &self.zk_addrs {
                modes.push(mode(addr).await.unwrap_or_default());
            }
            let leaders: Vec<usize> = (0..modes.len()).filter(|i| modes[*i] == "leader").collect();
            let followers = modes.iter().filter(|m| *m == "follower").count();
            if leaders.len() == 1 && followers == modes.len() - 1 {
                return Ok(leaders[0]);
            }
            if Instant::now() >= deadline {
                bail!(
                    "the ensemble was not ready within {READY_TIMEOUT_MS} ms (modes {modes:?}; logs in {})",
                    self.dir.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(READY_POLL_MS)).await;
        }
    }
}

/// The `Mode:` line of a node's answer to `srvr`.
async fn mode(addr: &str) -> anyhow::Result<String> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream.write_all(b"srvr").await?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await?;
        anyhow::Ok(answer)
    };
    let answer =
        tokio::time::timeout(Duration::from_millis(FOUR_LETTER_TIMEOUT_MS), exchange).await??;
    Ok(answer
        .lines()
        .find_map(|l| l.strip_prefix("Mode: "))
        .unwrap_or_default()
        .trim()
        .to_string())
}

async fn connect(addr: &str) -> anyhow::Result<zookeeper_client::Client> {
    zookeeper_client::Client::connector()
        .with_session_timeout(Duration::from_millis(SESSION_TIMEOUT_MS))
        .connect(addr)
        .await
        .with_context(|| format!("cannot open a session on {addr}"))
}

/// `workers` sessions, worker k on `addrs[k % len]`, each writing its own znode back to back
/// for [`WARMUP_MS`], then for `duration` measured (the writes that start in it).
async fn load(
    addrs: &[String],
    workers: usize,
    duration: Duration,
) -> anyhow::Result<BenchSummary> {
    let setup = connect(&addrs[0]).await?;
    let anyone =
        zookeeper_client::CreateMode::Persistent.with_acls(zookeeper_client::Acls::anyone_all());
    match setup.create(BENCH_ROOT, b"", &anyone).await {
        Ok(_) | Err(zookeeper_client::Error::NodeExists) => {}
        Err(e) => bail!("cannot create {BENCH_ROOT}: {e}"),
    }
    let data = vec![b'x'; DATA_BYTES];
    let mut clients = Vec::new();
    for k in 0..workers {
        let client = connect(&addrs[k % addrs.len()]).await?;
        let path = format!("{BENCH_ROOT}/w{k}");
        match client.create(&path, &data, &anyone).await {
            Ok(_) | Err(zookeeper_client::Error::NodeExists) => {}
            Err(e) => bail!("cannot create {path}: {e}"),
        }
        clients.push((client, path));
    }
    let warm_until = Instant::now() + Duration::from_millis(WARMUP_MS);
    let deadline = warm_until + duration;
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|(client, path)| {
            let data = data.clone();
            tokio::spawn(async move {
                let mut samples_us = Vec::new();
                let mut writes = 0u64;
                while Instant::now() < deadline {
                    let t0 = Instant::now();
                    let measured = t0 >= warm_until;
                    let write = client.set_data(&path, &data, None);
                    tokio::time::timeout(Duration::from_millis(WRITE_TIMEOUT_MS), write)
                        .await
                        .context("a write took longer than the write timeout")?
                        .with_context(|| format!("setData {path}"))?;
                    if !measured {
                        continue;
                    }
                    writes += 1;
                    if samples_us.len() < MAX_SAMPLES_PER_WORKER {
                        samples_us.push(t0.elapsed().as_micros() as u64);
                    }
                }
                anyhow::Ok((writes, samples_us))
            })
        })
        .collect();
    let mut writes = 0;
    let mut samples = Vec::new();
    for task in tasks {
        let (w, s) = task.await??;
        writes += w;
        samples.extend(s);
    }
    Ok(BenchSummary::of(writes, duration.as_secs_f64(), samples))
}

pub async fn run(config: ZkBenchConfig) -> anyhow::Result<()> {
    let mut lines = Vec::new();
    for &system in &config.systems {
        // Either kind of ensemble stops its nodes and removes their files when dropped.
        let (_running, zk_addrs, leader): (Box<dyn std::any::Any>, Vec<String>, usize) =
            match system {
                BenchSystem::Zookeeper => {
                    let ensemble = ZkEnsemble::start(config.base_port)?;
                    let leader = ensemble.ready().await?;
                    let addrs = ensemble.zk_addrs.clone();
                    (Box::new(ensemble), addrs, leader)
                }
                BenchSystem::Keeper => {
                    let ensemble = ensemble::Ensemble::start(
                        &config.keeperd,
                        &Launch {
                            base_port: config.base_port + 30,
                            zk_ports: true,
                            own_gids: false,
                        },
                    )?;
                    let leader = (ensemble.ready().await? - 1) as usize;
                    let addrs = ensemble.zk_addrs();
                    (Box::new(ensemble), addrs, leader)
                }
            };
        let follower = (leader + 1) % zk_addrs.len();
        println!(
            "{system:?}: 3 nodes on loopback, leader at {}",
            zk_addrs[leader]
        );
        let mut spread = zk_addrs.clone();
        spread.rotate_left(leader);
        for (addrs, workers, name) in [
            (vec![zk_addrs[leader].clone()], 1, "1 client on the leader"),
            (
                vec![zk_addrs[follower].clone()],
                1,
                "1 client on a follower",
            ),
            (spread, 32, "32 clients over all nodes"),
        ] {
            let f = load(&addrs, workers, config.duration).await?;
            let line = format!(
                "{system:?}: writes/s, {name}: {:.0} (p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms)",
                f.per_sec, f.p50_ms, f.p99_ms, f.max_ms
            );
            println!("{line}");
            lines.push(line);
        }
    }
    println!("\n== summary ==");
    for line in lines {
        println!("{line}");
    }
    Ok(())
}
