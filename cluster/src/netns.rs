//! The netns backend: each node is a host of its own. Per run one bridge `sch<tag>` holding
//! `10.a.b.254/24` for the harness; per node a namespace `schism-<tag>-n<i>` whose `eth0`
//! (one end of a veth pair, the other end `sch<tag>h<i>` on the bridge) has `10.a.b.<i>`.
//!
//! Clients on the host reach nodes through the bridge, so rules inside a node's namespace cut
//! client traffic as well as peer traffic. Faults go inside the namespaces
//! (`ip netns exec NS iptables ...`); the only host rule is one ACCEPT in FORWARD for traffic
//! between the bridge's ports, because with `br_netfilter` loaded (Docker loads it) bridged
//! frames traverse the host's FORWARD chain, whose policy Docker sets to DROP. That rule carries
//! `-m comment --comment schism-<tag>` so `clean` can find it.

use crate::host::{self, argv, run, run_ok};
use crate::ledger::{self, Ledger, LedgerData};
use crate::process::{Placement, ProcessCluster};
use crate::{
    BackendKind, CLIENT_PORT, ClusterSpec, CommandRecord, NodeAddr, NodeId, PEER_PORT, Result,
    RunTag, ZK_CLIENT_PORT, fnv1a, node_name,
};
use std::net::Ipv4Addr;

/// The host's address on a run's bridge.
pub const HOST_OCTET: u8 = 254;

pub fn bridge_name(tag: &RunTag) -> String {
    format!("sch{tag}")
}
pub fn veth_host_name(tag: &RunTag, node: NodeId) -> String {
    format!("sch{tag}h{node}")
}
fn veth_peer_name(tag: &RunTag, node: NodeId) -> String {
    format!("sch{tag}p{node}")
}
pub fn namespace_name(tag: &RunTag, node: NodeId) -> String {
    format!("{}-n{node}", tag.prefix())
}

/// The host FORWARD rule (without the `-I`/`-D`) that lets bridged traffic between nodes pass.
fn forward_rule(tag: &RunTag) -> Vec<String> {
    let br = bridge_name(tag);
    argv(&[
        "FORWARD",
        "-i",
        &br,
        "-o",
        &br,
        "-m",
        "comment",
        "--comment",
        &tag.prefix(),
        "-j",
        "ACCEPT",
    ])
}

/// The netns backend's placement: a namespace per node, veth pairs to a bridge of the run's
/// own, and the host rule that lets the bridge forward.
pub struct Namespaces {
    tag: RunTag,
}

pub type NetnsCluster = ProcessCluster<Namespaces>;

impl Namespaces {
    fn in_ns(&self, node: NodeId, cmd: &[&str]) -> Vec<String> {
        let mut v = argv(&["ip", "netns", "exec", &namespace_name(&self.tag, node)]);
        v.extend(cmd.iter().map(|s| s.to_string()));
        v
    }
}

impl Placement for Namespaces {
    const KIND: BackendKind = BackendKind::Netns;

    fn new(spec: &ClusterSpec) -> Namespaces {
        Namespaces { tag: spec.tag() }
    }

    fn wrapper(&self, node: NodeId) -> Vec<String> {
        // `ip netns exec` execs the program after setns, so the child's pid is the node's own
        // (keeperd or the JVM) and signals to its process group reach it directly.
        self.in_ns(node, &[])
    }

    async fn run_on_node(&self, node: NodeId, cmd: &[String]) -> Result<CommandRecord> {
        let mut full = self.wrapper(node);
        full.extend(cmd.iter().cloned());
        run(&full).await
    }

    async fn place(&self, spec: &ClusterSpec, ledger: &Ledger) -> Result<Vec<NodeAddr>> {
        let taken: Vec<[u8; 3]> = ledger::read_all()
            .into_iter()
            .filter(|l| l.tag != self.tag.0)
            .filter_map(|l| l.subnet)
            .collect();
        let used = host::used_networks().await?;
        let seed = fnv1a(self.tag.as_str().as_bytes());
        let net = host::choose_subnet(seed, &used, &taken)?;
        let br = bridge_name(&self.tag);
        let rule = forward_rule(&self.tag);
        ledger.update(|l| {
            l.subnet = Some(net);
            l.links.push(br.clone());
            l.host_rules.push(rule.clone());
        })?;
        let host_ip = format!("{}.{}.{}.{HOST_OCTET}/24", net[0], net[1], net[2]);
        run_ok(&argv(&["ip", "link", "add", &br, "type", "bridge"])).await?;
        run_ok(&argv(&[
            "ip",
            "link",
            "set",
            &br,
            "alias",
            &self.tag.prefix(),
        ]))
        .await?;
        run_ok(&argv(&["ip", "addr", "add", &host_ip, "dev", &br])).await?;
        run_ok(&argv(&["ip", "link", "set", &br, "up"])).await?;
        let mut insert = argv(&["iptables", "-I"]);
        insert.extend(rule);
        run_ok(&insert).await?;

        let mut addrs = Vec::new();
        for node in spec.node_ids() {
            let ns = namespace_name(&self.tag, node);
            let host_end = veth_host_name(&self.tag, node);
            let peer_end = veth_peer_name(&self.tag, node);
            ledger.update(|l| {
                l.namespaces.push(ns.clone());
                l.links.push(host_end.clone());
                l.links.push(peer_end.clone());
            })?;
            let ip = Ipv4Addr::new(net[0], net[1], net[2], node as u8);
            let cidr = format!("{ip}/24");
            run_ok(&argv(&["ip", "netns", "add", &ns])).await?;
            run_ok(&self.in_ns(node, &["ip", "link", "set", "lo", "up"])).await?;
            run_ok(&argv(&[
                "ip", "link", "add", &host_end, "type", "veth", "peer", "name", &peer_end,
            ]))
            .await?;
            run_ok(&argv(&[
                "ip",
                "link",
                "set",
                &host_end,
                "alias",
                &self.tag.prefix(),
            ]))
            .await?;
            run_ok(&argv(&["ip", "link", "set", &peer_end, "netns", &ns])).await?;
            run_ok(&self.in_ns(node, &["ip", "link", "set", &peer_end, "name", "eth0"])).await?;
            run_ok(&self.in_ns(node, &["ip", "addr", "add", &cidr, "dev", "eth0"])).await?;
            run_ok(&self.in_ns(node, &["ip", "link", "set", "eth0", "up"])).await?;
            run_ok(&argv(&["ip", "link", "set", &host_end, "master", &br])).await?;
            run_ok(&argv(&["ip", "link", "set", &host_end, "up"])).await?;
            addrs.push(NodeAddr {
                id: node,
                name: node_name(node),
                ip,
                client_port: CLIENT_PORT,
                peer_port: PEER_PORT,
                zk_port: ZK_CLIENT_PORT,
                system: spec.system,
            });
        }
        Ok(addrs)
    }

    async fn remove(&self, recorded: &LedgerData) -> Result<()> {
        let mut first_error = None;
        for ns in &recorded.namespaces {
            if let Err(e) = remove_namespace(ns).await {
                first_error.get_or_insert(e);
            }
        }
        // The bridge last: its ports are gone with the namespaces' veth ends.
        for link in recorded.links.iter().rev() {
            if let Err(e) = remove_link(link).await {
                first_error.get_or_insert(e);
            }
        }
        for rule in &recorded.host_rules {
            if let Err(e) = remove_host_rule(rule).await {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// Kills whatever runs in a namespace and deletes it; a missing namespace is not an error.
pub(crate) async fn remove_namespace(ns: &str) -> Result<()> {
    let listed = run(&argv(&["ip", "netns", "list"])).await?;
    let exists = listed
        .stdout
        .lines()
        .any(|l| l.split_whitespace().next() == Some(ns));
    if !exists {
        return Ok(());
    }
    if let Ok(pids) = run(&argv(&["ip", "netns", "pids", ns])).await {
        for pid in pids
            .stdout
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
        {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    run_ok(&argv(&["ip", "netns", "del", ns])).await.map(|_| ())
}

/// Deletes a link; a missing link is not an error (veth ends vanish with their namespace).
pub(crate) async fn remove_link(name: &str) -> Result<()> {
    let shown = run(&argv(&["ip", "link", "show", "dev", name])).await?;
    if !shown.success() {
        return Ok(());
    }
    match run_ok(&argv(&["ip", "link", "del", "dev", name])).await {
        Ok(_) => Ok(()),
        // The kernel may remove a veth end between the look and the delete (its peer's
        // namespace went away): gone is what we wanted.
        Err(_)
            if !run(&argv(&["ip", "link", "show", "dev", name]))
                .await?
                .success() =>
        {
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Deletes every copy of a host iptables rule; a missing rule is not an error.
pub(crate) async fn remove_host_rule(rule: &[String]) -> Result<()> {
    // Bounded: a rule inserted more than this many times is not ours to chase.
    const MAX_COPIES: usize = 16;
    for _ in 0..MAX_COPIES {
        let mut check = argv(&["iptables", "-C"]);
        check.extend(rule.iter().cloned());
        if !run(&check).await?.success() {
            return Ok(());
        }
        let mut delete = argv(&["iptables", "-D"]);
        delete.extend(rule.iter().cloned());
        run_ok(&delete).await?;
    }
    Ok(())
}
