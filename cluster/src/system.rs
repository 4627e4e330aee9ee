//! What a node runs, for every system under test: the one place that turns a spec and a node
//! into a program, its arguments, its environment and the files it needs before it starts, and
//! that names a node's log and pid files. Backends only add where it runs (`ip netns exec NS`,
//! a container) and how it is signalled.

use crate::{ClusterSpec, NodeAddr, NodeId, PEER_SECRET_ENV, Result, SystemKind, zookeeper};
use std::path::{Path, PathBuf};

/// A file a node needs before each start (a config, ZooKeeper's `myid`), written whole, its
/// parent directories created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeFile {
    pub path: PathBuf,
    pub contents: String,
}

/// How to start one node, wherever it runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeCommand {
    pub program: PathBuf,
    pub args: Vec<String>,
    /// Environment variables besides the inherited ones (and [`crate::RUN_ENV`], which the
    /// backend adds).
    pub env: Vec<(String, String)>,
    /// Written before every start: `wipe` removes the data directory, and a start must find
    /// what the system needs in it again.
    pub files: Vec<NodeFile>,
}

impl NodeCommand {
    /// The program and its arguments, as one argv.
    pub fn argv(&self) -> Vec<String> {
        std::iter::once(self.program.display().to_string())
            .chain(self.args.iter().cloned())
            .collect()
    }
}

impl SystemKind {
    /// The name of a node's log file in its directory (`nodes/<node>/<name>`), in a run
    /// directory and in the logs `collect_logs` gathers.
    pub fn log_file_name(self) -> &'static str {
        match self {
            SystemKind::Keeper => "keeperd.log",
            SystemKind::Zookeeper => "zookeeper.log",
        }
    }

    /// The name of the file holding a node process's pid, next to its log.
    pub fn pid_file_name(self) -> &'static str {
        match self {
            SystemKind::Keeper => "keeperd.pid",
            SystemKind::Zookeeper => "zookeeper.pid",
        }
    }
}

/// `<dir>/nodes/<node>/<log name>`: where a node's log is under a run directory (`dir` is the
/// spec's `base_dir`, or the directory `collect_logs` writes to).
pub fn node_log_path(dir: &Path, node: NodeId, system: SystemKind) -> PathBuf {
    dir.join("nodes")
        .join(crate::node_name(node))
        .join(system.log_file_name())
}

impl ClusterSpec {
    /// The node's log on this host (netns and local backends write it; docker collects it).
    pub fn node_log(&self, node: NodeId) -> PathBuf {
        node_log_path(&self.base_dir, node, self.system)
    }

    pub fn node_pidfile(&self, node: NodeId) -> PathBuf {
        self.node_dir(node).join(self.system.pid_file_name())
    }

    /// What `node` runs, given every node's address and its data directory as the program
    /// sees it (a host path, or a path inside a container).
    pub fn node_command(
        &self,
        node: NodeId,
        addrs: &[NodeAddr],
        data_dir: &Path,
    ) -> Result<NodeCommand> {
        let mut command = self.system_command(node, addrs, data_dir)?;
        if self.faketime {
            let tag = self.tag();
            command.env.extend(crate::clock::node_env(&tag, node));
            command.files.push(crate::clock::node_file(&tag, node));
        }
        Ok(command)
    }

    fn system_command(
        &self,
        node: NodeId,
        addrs: &[NodeAddr],
        data_dir: &Path,
    ) -> Result<NodeCommand> {
        match self.system {
            SystemKind::Keeper => Ok(NodeCommand {
                program: self.keeperd.clone(),
                args: self.keeperd_args(node, addrs, &data_dir.display().to_string()),
                env: vec![(
                    PEER_SECRET_ENV.to_string(),
                    self.peer_secret.as_str().to_string(),
                )],
                files: Vec::new(),
            }),
            SystemKind::Zookeeper => {
                let install = zookeeper::Install::discover()?;
                Ok(install.command(node, addrs, &self.node_dir(node), data_dir))
            }
        }
    }

    /// `keeperd`'s arguments for `node`, given every node's address.
    fn keeperd_args(&self, node: NodeId, addrs: &[NodeAddr], data_dir: &str) -> Vec<String> {
        let me = &addrs[(node - 1) as usize];
        let peers = addrs
            .iter()
            .map(|a| format!("{}={}", a.id, a.peer_addr()))
            .collect::<Vec<_>>()
            .join(",");
        let mut args = vec![
            "--id".to_string(),
            node.to_string(),
            "--data-dir".to_string(),
            data_dir.to_string(),
            "--client-addr".to_string(),
            me.client_addr().to_string(),
            "--peer-addr".to_string(),
            me.peer_addr().to_string(),
            "--peers".to_string(),
            peers,
            "--zk-addr".to_string(),
            me.zk_addr().to_string(),
        ];
        if let Some(tick) = self.tick_ms {
            args.push("--tick-ms".to_string());
            args.push(tick.to_string());
        }
        if let Some(bug) = &self.bug {
            args.push("--bug".to_string());
            args.push(bug.clone());
        }
        args.extend(self.extra_args.iter().cloned());
        args
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CLIENT_PORT, PEER_PORT, ZK_CLIENT_PORT};
    use std::net::Ipv4Addr;

    fn addrs(system: SystemKind) -> Vec<NodeAddr> {
        (1..=3)
            .map(|id| NodeAddr {
                id,
                name: crate::node_name(id),
                ip: Ipv4Addr::new(10, 9, 8, id as u8),
                client_port: CLIENT_PORT,
                peer_port: PEER_PORT,
                zk_port: ZK_CLIENT_PORT,
                system,
            })
            .collect()
    }

    #[test]
    fn keeperd_gets_its_addresses_and_the_secret_but_no_files() {
        let spec = ClusterSpec::new(3, "/bin/keeperd".into(), "zkdt", "/run/x".into());
        let cmd = spec
            .node_command(2, &addrs(SystemKind::Keeper), Path::new("/d"))
            .unwrap();
        let line = cmd.argv().join(" ");
        assert!(
            line.starts_with("/bin/keeperd --id 2 --data-dir /d"),
            "{line}"
        );
        assert!(line.contains("--zk-addr 10.9.8.2:2181"), "{line}");
        assert!(line.contains("--peers 1=10.9.8.1:2888,2=10.9.8.2:2888,3=10.9.8.3:2888"));
        assert!(
            !line.contains(spec.peer_secret.as_str()),
            "secret not in argv"
        );
        assert_eq!(cmd.env[0].0, PEER_SECRET_ENV);
        assert!(cmd.files.is_empty());
    }

    #[test]
    fn each_system_has_its_own_log_under_the_node_directory() {
        let mut spec = ClusterSpec::new(3, "/bin/keeperd".into(), "zkdt", "/run/x".into());
        assert_eq!(spec.node_log(2), Path::new("/run/x/nodes/n2/keeperd.log"));
        spec.system = SystemKind::Zookeeper;
        assert_eq!(spec.node_log(2), Path::new("/run/x/nodes/n2/zookeeper.log"));
        assert_eq!(
            spec.node_pidfile(2),
            Path::new("/run/x/nodes/n2/zookeeper.pid")
        );
        assert_eq!(
            node_log_path(Path::new("/out"), 3, SystemKind::Zookeeper),
            Path::new("/out/nodes/n3/zookeeper.log")
        );
    }
}
