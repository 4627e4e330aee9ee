//! Apache ZooKeeper 3.8 as the system under test (`SystemKind::Zookeeper`), run from Debian's
//! `zookeeper` package on the netns and local backends: where the install is, what each node's
//! JVM is started with, the files it reads (`nodes/<n>/conf/zoo.cfg`,
//! `nodes/<n>/conf/log4j.properties`, `myid` in its data directory), and, in [`four_letter`],
//! its status through the four-letter words.
//!
//! Debian's own launcher (`/usr/share/zookeeper/bin/zkServer.sh`, which sources
//! `/etc/zookeeper/conf/environment` as `zkEnv.sh`) runs
//! `java -cp /etc/zookeeper/conf:/usr/share/java/zookeeper.jar QuorumPeerMain zoo.cfg`: the jar's
//! manifest `Class-Path` names its dependencies, slf4j-api among them but no slf4j binding, so
//! that command logs nothing. We add the log4j 1.2 binding Debian ships with the package
//! (`slf4j-log4j12.jar`, `log4j-1.2.jar`, both dependencies of `libzookeeper-java`) and point
//! log4j at a per-node config whose one appender is the console, which the supervisor sends to
//! the node's log ([`crate::SystemKind::log_file_name`]). Nothing of `/etc/zookeeper` is read.
//!
//! This module does not speak ZooKeeper's client protocol: the harness's clients do.

pub mod four_letter;

pub use four_letter::{zk_status, zk_status_with_epochs, zk_version};

use crate::host::find_tool;
use crate::system::{NodeCommand, NodeFile};
use crate::{ClusterError, NodeAddr, NodeId, Result, ZK_ELECTION_PORT};
use std::path::{Path, PathBuf};

/// What to do when the install is missing or incomplete.
pub const INSTALL_HINT: &str = "install Debian's zookeeper package (apt-get install zookeeper)";

/// The JDK Debian's `environment` file names (`JAVA=/usr/bin/java`); else `java` on PATH.
const DEBIAN_JAVA: &str = "/usr/bin/java";
/// The server jar; its manifest's `Class-Path` brings netty, jute, metrics, slf4j-api...
const ZOOKEEPER_JAR: &str = "/usr/share/java/zookeeper.jar";
/// slf4j's log4j 1.2 binding and log4j itself: without them the server logs nothing.
const LOGGING_JARS: [&str; 2] = [
    "/usr/share/java/slf4j-log4j12.jar",
    "/usr/share/java/log4j-1.2.jar",
];
const MAIN_CLASS: &str = "org.apache.zookeeper.server.quorum.QuorumPeerMain";

/// ZooKeeper's tick. Near keeper's own timings (200 ms ticks, syncLimit 1 s, initLimit 2 s) so
/// that failover after a kill or a partition is comparable between the two systems, but not
/// lower: a JVM sharing 2 cores with up to 8 others must not lose its quorum to a GC pause or
/// a slow scheduler. Sessions may be 2 to 20 ticks long (1 s to 10 s), ZooKeeper's defaults
/// in ticks.
pub const TICK_MS: u64 = 500;
/// Ticks a follower has to connect to and sync with a new leader (10 s).
pub const INIT_LIMIT_TICKS: u64 = 20;
/// Ticks a follower may lag behind the leader before it is dropped (2.5 s).
pub const SYNC_LIMIT_TICKS: u64 = 5;
/// The JVM's heap: the server keeps the whole tree in memory, and a test's tree is small; up
/// to 9 JVMs share the machine.
const JVM_MAX_HEAP_MB: u64 = 256;
const JVM_INITIAL_HEAP_MB: u64 = 32;

/// Where ZooKeeper and its JDK are on this host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Install {
    pub java: PathBuf,
    pub classpath: Vec<PathBuf>,
}

impl Install {
    /// Finds java and the jars; a missing piece is one line naming it and [`INSTALL_HINT`].
    pub fn discover() -> Result<Install> {
        let java = Some(PathBuf::from(DEBIAN_JAVA))
            .filter(|p| p.is_file())
            .or_else(|| find_tool("java"))
            .ok_or_else(|| missing("java (a JDK)"))?;
        let mut classpath = Vec::new();
        for jar in std::iter::once(ZOOKEEPER_JAR).chain(LOGGING_JARS) {
            let jar = PathBuf::from(jar);
            if !jar.is_file() {
                return Err(missing(&jar.display().to_string()));
            }
            classpath.push(jar);
        }
        Ok(Install { java, classpath })
    }

    /// The installed ZooKeeper's version, from the versioned name Debian gives the same jar
    /// (`zookeeper-3.8.0.jar`, a link to or from `zookeeper.jar`): known before any node runs,
    /// for `test.json`.
    pub fn version(&self) -> Option<String> {
        let jar = std::fs::canonicalize(self.classpath.first()?).ok()?;
        std::fs::read_dir(jar.parent()?)
            .ok()?
            .filter_map(|entry| entry.ok())
            .find_map(|entry| {
                let name = entry.file_name().into_string().ok()?;
                let version = name.strip_prefix("zookeeper-")?.strip_suffix(".jar")?;
                let numeric = version.starts_with(|c: char| c.is_ascii_digit());
                let same = std::fs::canonicalize(entry.path()).ok()? == jar;
                (numeric && same).then(|| version.to_string())
            })
    }

    /// The JVM's command line for `node`, and its config files. `node_dir` is
    /// `nodes/<node>` (the config goes to its `conf/`), `data_dir` ZooKeeper's `dataDir`.
    pub fn command(
        &self,
        node: NodeId,
        addrs: &[NodeAddr],
        node_dir: &Path,
        data_dir: &Path,
    ) -> NodeCommand {
        let conf = node_dir.join("conf");
        let zoo_cfg = conf.join("zoo.cfg");
        let log4j = conf.join("log4j.properties");
        let classpath = self
            .classpath
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(":");
        let args = vec![
            format!("-Xms{JVM_INITIAL_HEAP_MB}m"),
            format!("-Xmx{JVM_MAX_HEAP_MB}m"),
            // One GC thread, no concurrent collector threads: 2 cores for up to 9 JVMs.
            "-XX:+UseSerialGC".to_string(),
            // A node out of memory dies (the harness sees a crash) rather than limping on.
            "-XX:+ExitOnOutOfMemoryError".to_string(),
            // No /tmp/hsperfdata_<user>/<pid>: a SIGKILLed JVM would leave it behind.
            "-XX:-UsePerfData".to_string(),
            // A JVM crash report goes next to the node's log, not to the harness's cwd.
            format!(
                "-XX:ErrorFile={}",
                node_dir.join("hs_err_pid%p.log").display()
            ),
            "-Djava.net.preferIPv4Stack=true".to_string(),
            format!("-Dlog4j.configuration=file:{}", log4j.display()),
            "-cp".to_string(),
            classpath,
            MAIN_CLASS.to_string(),
            zoo_cfg.display().to_string(),
        ];
        NodeCommand {
            program: self.java.clone(),
            args,
            env: Vec::new(),
            files: vec![
                NodeFile {
                    path: zoo_cfg,
                    contents: render_zoo_cfg(node, addrs, data_dir),
                },
                NodeFile {
                    path: log4j,
                    contents: LOG4J_PROPERTIES.to_string(),
                },
                NodeFile {
                    path: data_dir.join("myid"),
                    contents: format!("{node}\n"),
                },
            ],
        }
    }
}

fn missing(what: &str) -> ClusterError {
    ClusterError::Missing(format!(
        "the zookeeper system needs {what}, which is missing: {INSTALL_HINT}"
    ))
}

/// Log4j 1.2's config: everything at INFO to the console (the node's log).
const LOG4J_PROPERTIES: &str = "\
# Written by schism before every start of this node.
log4j.rootLogger=INFO, CONSOLE
log4j.appender.CONSOLE=org.apache.log4j.ConsoleAppender
log4j.appender.CONSOLE.layout=org.apache.log4j.PatternLayout
log4j.appender.CONSOLE.layout.ConversionPattern=%d{ISO8601} - %-5p [%t:%C{1}@%L] - %m%n
# One INFO line per four-letter word (\"Processing srvr command\"): the harness asks for a
# status several times a second.
log4j.logger.org.apache.zookeeper.server.NIOServerCnxn=WARN
";

/// `zoo.cfg` of `node`. One node runs standalone (no `server.N` lines); more form an ensemble
/// on the peer port (quorum) and [`ZK_ELECTION_PORT`] (leader election).
pub fn render_zoo_cfg(node: NodeId, addrs: &[NodeAddr], data_dir: &Path) -> String {
    let me = addrs.iter().find(|a| a.id == node);
    let mut cfg = format!(
        "# Written by schism before every start of node {node}.\n\
         tickTime={TICK_MS}\n\
         initLimit={INIT_LIMIT_TICKS}\n\
         syncLimit={SYNC_LIMIT_TICKS}\n\
         dataDir={}\n",
        data_dir.display()
    );
    if let Some(me) = me {
        cfg.push_str(&format!(
            "clientPortAddress={}\nclientPort={}\n",
            me.ip, me.zk_port
        ));
    }
    cfg.push_str(
        "# The harness asks for status with srvr, conf and envi.\n\
         4lw.commands.whitelist=*\n\
         # No Jetty on port 8080: every node would want the same port on the local backend.\n\
         admin.enableServer=false\n\
         # Every client of the harness connects from the same host address; ZooKeeper's\n\
         # default of 60 connections per address would refuse some of them.\n\
         maxClientCnxns=0\n",
    );
    if addrs.len() > 1 {
        for a in addrs {
            cfg.push_str(&format!(
                "server.{}={}:{}:{ZK_ELECTION_PORT}\n",
                a.id, a.ip, a.peer_port
            ));
        }
    }
    cfg
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CLIENT_PORT, PEER_PORT, SystemKind, ZK_CLIENT_PORT};
    use std::collections::BTreeMap;
    use std::net::Ipv4Addr;

    fn addrs(n: u64) -> Vec<NodeAddr> {
        (1..=n)
            .map(|id| NodeAddr {
                id,
                name: crate::node_name(id),
                ip: Ipv4Addr::new(10, 7, 3, id as u8),
                client_port: CLIENT_PORT,
                peer_port: PEER_PORT,
                zk_port: ZK_CLIENT_PORT,
                system: SystemKind::Zookeeper,
            })
            .collect()
    }

    /// The `key=value` lines, as ZooKeeper's `Properties` reading sees them.
    fn properties(cfg: &str) -> BTreeMap<String, String> {
        cfg.lines()
            .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
            .map(|l| {
                let (k, v) = l.split_once('=').expect("key=value");
                (k.to_string(), v.to_string())
            })
            .collect()
    }

    #[test]
    fn an_ensemble_config_names_every_server_and_binds_this_nodes_address() {
        let cfg = properties(&render_zoo_cfg(
            2,
            &addrs(3),
            Path::new("/run/nodes/n2/data"),
        ));
        assert_eq!(cfg["tickTime"], "500");
        assert_eq!(cfg["initLimit"], "20");
        assert_eq!(cfg["syncLimit"], "5");
        assert_eq!(cfg["dataDir"], "/run/nodes/n2/data");
        assert_eq!(cfg["clientPortAddress"], "10.7.3.2");
        assert_eq!(cfg["clientPort"], "2181");
        assert_eq!(cfg["4lw.commands.whitelist"], "*");
        assert_eq!(cfg["admin.enableServer"], "false");
        for id in 1..=3 {
            assert_eq!(
                cfg[&format!("server.{id}")],
                format!("10.7.3.{id}:2888:3888")
            );
        }
        assert!(!cfg.contains_key("server.4"));
    }

    #[test]
    fn one_node_runs_standalone() {
        let cfg = properties(&render_zoo_cfg(1, &addrs(1), Path::new("/d")));
        assert!(!cfg.keys().any(|k| k.starts_with("server.")), "{cfg:?}");
        assert_eq!(cfg["clientPortAddress"], "10.7.3.1");
    }

    #[test]
    fn the_command_writes_its_config_and_myid_and_logs_through_log4j() {
        let install = Install {
            java: "/usr/bin/java".into(),
            classpath: vec!["/a.jar".into(), "/b.jar".into()],
        };
        let cmd = install.command(3, &addrs(3), Path::new("/r/n3"), Path::new("/r/n3/data"));
        let argv = cmd.argv();
        assert_eq!(argv[0], "/usr/bin/java");
        assert!(argv.contains(&"-Xmx256m".to_string()), "{argv:?}");
        let cp = argv.iter().position(|a| a == "-cp").unwrap();
        assert_eq!(argv[cp + 1], "/a.jar:/b.jar");
        assert_eq!(argv[cp + 2], MAIN_CLASS);
        assert_eq!(argv.last().unwrap(), "/r/n3/conf/zoo.cfg");
        assert!(argv.contains(&"-Dlog4j.configuration=file:/r/n3/conf/log4j.properties".into()));
        let files: BTreeMap<_, _> = cmd
            .files
            .iter()
            .map(|f| (f.path.display().to_string(), f.contents.clone()))
            .collect();
        assert_eq!(files["/r/n3/data/myid"], "3\n");
        assert!(files["/r/n3/conf/zoo.cfg"].contains("server.3=10.7.3.3:2888:3888"));
        assert!(files["/r/n3/conf/log4j.properties"].contains("rootLogger=INFO, CONSOLE"));
    }
}
