//! The local backend: plain processes, each on its own loopback address (127.a.b.<id>, chosen
//! per run so two runs never share one). It needs no privileges; it cannot cut or shape links.

use crate::ledger::{Ledger, LedgerData};
use crate::process::{Placement, ProcessCluster};
use crate::{
    BackendKind, CLIENT_PORT, ClusterError, ClusterSpec, CommandRecord, NodeAddr, NodeId,
    PEER_PORT, Result, SystemKind, ZK_CLIENT_PORT, ZK_ELECTION_PORT, fnv1a, node_name,
};
use std::net::{Ipv4Addr, TcpListener};

/// The one line users see when a fault needs network commands on the local backend.
pub const NO_NETWORK_FAULTS: &str = "the local backend cannot partition nodes: use --backend netns (needs root or CAP_NET_ADMIN) or docker";

/// Most loopback /24s tried before giving up on finding one with free ports.
const MAX_LOOPBACK_CANDIDATES: u64 = 64;

/// The local backend's placement: loopback addresses, nothing to create or remove.
pub struct Loopback;

pub type LocalCluster = ProcessCluster<Loopback>;

impl Placement for Loopback {
    const KIND: BackendKind = BackendKind::Local;
    fn new(_spec: &ClusterSpec) -> Loopback {
        Loopback
    }
    async fn place(&self, spec: &ClusterSpec, _ledger: &Ledger) -> Result<Vec<NodeAddr>> {
        free_loopback_addrs(spec)
    }
    fn wrapper(&self, _node: NodeId) -> Vec<String> {
        Vec::new()
    }
    async fn run_on_node(&self, _node: NodeId, _argv: &[String]) -> Result<CommandRecord> {
        Err(ClusterError::Unsupported(NO_NETWORK_FAULTS.to_string()))
    }
    async fn remove(&self, _recorded: &LedgerData) -> Result<()> {
        Ok(())
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
