//! The local backend: plain processes, each on its own loopback address (127.a.b.<id>, chosen
//! per run so two runs never share one). It needs no privileges; it cannot cut or shape links.

use crate::lazyfs::Disks;
use crate::ledger::Ledger;
use crate::process::{self, Launch, Supervisor};
use crate::{
    Backend, BackendKind, CLIENT_PORT, ClusterError, ClusterSpec, CommandRecord, NodeAddr, NodeId,
    NodeState, PEER_PORT, Result, SystemKind, ZK_CLIENT_PORT, ZK_ELECTION_PORT, check_node, fnv1a,
    node_name,
};
use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;
use std::sync::Mutex;

/// The one line users see when a fault needs network commands on the local backend.
pub const NO_NETWORK_FAULTS: &str = "the local backend cannot partition nodes: use --backend netns (needs root or CAP_NET_ADMIN) or docker";

/// Most loopback /24s tried before giving up on finding one with free ports.
const MAX_LOOPBACK_CANDIDATES: u64 = 64;

pub struct LocalCluster {
    spec: ClusterSpec,
    supervisor: Supervisor,
    ledger: Ledger,
    disks: Disks,
    addrs: Mutex<Vec<NodeAddr>>,
}

impl LocalCluster {
    pub fn new(spec: ClusterSpec) -> LocalCluster {
        let tag = spec.tag();
        LocalCluster {
            supervisor: Supervisor::new(spec.nodes, tag.as_str()),
            ledger: Ledger::new(
                &tag,
                &spec.run_id,
                BackendKind::Local,
                spec.base_dir.clone(),
            ),
            disks: Disks::new(&spec),
            addrs: Mutex::new(Vec::new()),
            spec,
        }
    }

    fn launch(&self, node: NodeId) -> Result<Launch> {
        Launch::new(&self.spec, node, &self.addrs(), Vec::new())
    }
}

/// Loopback addresses (127.a.b.<id>, the /24 drawn from the run's tag) whose ports (client,
/// peer, ZooKeeper's client and, for ZooKeeper, its election port) are free right now: where
/// the local backend puts a run's nodes, and where a test's in-process nodes can go.
pub fn free_loopback_addrs(spec: &ClusterSpec) -> Result<Vec<NodeAddr>> {
    let seed = fnv1a(spec.tag().as_str().as_bytes());
    for k in 0..MAX_LOOPBACK_CANDIDATES {
        let x = seed.wrapping_add(k.wrapping_mul(104_729)) % (250 * 256);
        let (a, b) = (1 + (x / 256) as u8, (x % 256) as u8);
        let addrs: Vec<NodeAddr> = spec
            .node_ids()
            .into_iter()
            .map(|id| NodeAddr {
                id,
                name: node_name(id),
                ip: Ipv4Addr::new(127, a, b, id as u8),
                client_port: CLIENT_PORT,
                peer_port: PEER_PORT,
                zk_port: ZK_CLIENT_PORT,
                system: spec.system,
            })
            .collect();
        let election = spec.system == SystemKind::Zookeeper;
        let free = addrs.iter().all(|n| {
            TcpListener::bind(n.client_addr()).is_ok()
                && TcpListener::bind(n.peer_addr()).is_ok()
                && TcpListener::bind(n.zk_addr()).is_ok()
                && (!election || TcpListener::bind((n.ip, ZK_ELECTION_PORT)).is_ok())
        });
        if free {
            return Ok(addrs);
        }
    }
    Err(ClusterError::Missing(
        "no free loopback addresses for the nodes' ports: stop stale node processes (schism clean)"
            .to_string(),
    ))
}

impl Backend for LocalCluster {
    fn kind(&self) -> BackendKind {
        BackendKind::Local
    }
    fn spec(&self) -> &ClusterSpec {
        &self.spec
    }
    fn addrs(&self) -> Vec<NodeAddr> {
        self.addrs.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    async fn setup(&self) -> Result<()> {
        self.ledger.update(|_| {})?;
        let addrs = free_loopback_addrs(&self.spec)?;
        *self.addrs.lock().unwrap_or_else(|p| p.into_inner()) = addrs;
        self.disks.setup(&self.spec, &self.ledger).await?;
        crate::clock::register(&self.spec, &self.ledger)?;
        for node in self.spec.node_ids() {
            self.start(node).await?;
        }
        Ok(())
    }

    async fn start(&self, node: NodeId) -> Result<()> {
        check_node(&self.spec, node)?;
        let launch = self.launch(node)?;
        self.supervisor.start(node, launch).await
    }
    async fn stop(&self, node: NodeId) -> Result<()> {
        self.supervisor.stop(node).await
    }
    async fn kill(&self, node: NodeId) -> Result<()> {
        self.supervisor.kill(node).await
    }
    async fn pause(&self, node: NodeId) -> Result<()> {
        self.supervisor.pause(node).await
    }
    async fn resume(&self, node: NodeId) -> Result<()> {
        self.supervisor.resume(node).await
    }
    async fn wipe(&self, node: NodeId) -> Result<()> {
        self.supervisor.wipe(&self.spec, node).await
    }
    async fn state(&self, node: NodeId) -> Result<NodeState> {
        self.supervisor.state(node).await
    }
    async fn collect_logs(&self, dir: &Path) -> Result<()> {
        process::collect_logs(&self.spec, dir)
    }
    async fn lose_unsynced(&self, node: NodeId) -> Result<String> {
        check_node(&self.spec, node)?;
        let state = self.supervisor.state(node).await?;
        self.disks.lose_unsynced(node, state).await
    }
    async fn run_on_node(&self, _node: NodeId, _argv: &[String]) -> Result<CommandRecord> {
        Err(ClusterError::Unsupported(NO_NETWORK_FAULTS.to_string()))
    }
    async fn teardown(&self) -> Result<()> {
        self.supervisor.kill_all().await;
        let recorded = self.ledger.snapshot();
        self.disks.teardown(&recorded.mounts).await?;
        crate::clock::remove(&recorded.clock_files)?;
        self.ledger.remove();
        Ok(())
    }
}
