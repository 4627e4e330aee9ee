//! The process backends (local and netns): one [`ProcessCluster`] over a [`Placement`] that
//! says where the nodes live. Node processes run each in its own process group (so a signal
//! reaches everything the node started, a JVM's threads included), output appended to the
//! node's log ([`crate::ClusterSpec::node_log`]), pid next to it, and the run tag in its
//! environment for `clean`.

use crate::lazyfs::Disks;
use crate::ledger::{Ledger, LedgerData};
use crate::system::NodeFile;
use crate::{
    Backend, BackendKind, ClusterError, ClusterSpec, CommandRecord, NodeAddr, NodeId, NodeState,
    RUN_ENV, Result, STOP_GRACE_MS, check_node,
};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex as SyncMutex;
use std::time::Duration;
use tokio::process::{Child, Command};
use tokio::sync::Mutex;

/// How long to wait for a SIGKILLed process to be reaped.
const KILL_WAIT_MS: u64 = 5_000;

#[derive(Default)]
struct Slot {
    child: Option<Child>,
    paused: bool,
}

impl Slot {
    /// Forgets a child that exited on its own (a crash), so its state reads `Down`.
    fn reap(&mut self) {
        if let Some(child) = &mut self.child
            && !matches!(child.try_wait(), Ok(None))
        {
            self.child = None;
            self.paused = false;
        }
    }

    fn pgid(&self) -> Option<Pid> {
        self.child
            .as_ref()
            .and_then(|c| c.id())
            .map(|id| Pid::from_raw(id as i32))
    }
}

/// The node processes of one run.
pub struct Supervisor {
    slots: Vec<Mutex<Slot>>,
    tag: String,
}

/// How to start one node: the full command line and where its files go.
pub struct Launch {
    pub argv: Vec<String>,
    /// Environment variables besides the inherited ones (the run's peer secret).
    pub env: Vec<(String, String)>,
    /// Written before the process starts.
    pub files: Vec<NodeFile>,
    pub log: PathBuf,
    pub pidfile: PathBuf,
}

impl Launch {
    /// The node's command ([`ClusterSpec::node_command`]) behind `wrapper` (`ip netns exec NS`
    /// on netns, nothing on local), with its data in `nodes/<node>/data`.
    pub fn new(
        spec: &ClusterSpec,
        node: NodeId,
        addrs: &[NodeAddr],
        wrapper: Vec<String>,
    ) -> Result<Launch> {
        if addrs.is_empty() {
            return Err(ClusterError::Invalid(
                "the cluster is not set up yet".to_string(),
            ));
        }
        let data = spec.data_dir(node);
        let command = spec.node_command(node, addrs, &data)?;
        let mut argv = wrapper;
        argv.extend(command.argv());
        Ok(Launch {
            argv,
            env: command.env,
            files: command.files,
            log: spec.node_log(node),
            pidfile: spec.node_pidfile(node),
        })
    }
}

fn write_files(files: &[NodeFile]) -> Result<()> {
    for file in files {
        if let Some(dir) = file.path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| ClusterError::io(format!("creating {}", dir.display()), e))?;
        }
        std::fs::write(&file.path, &file.contents)
            .map_err(|e| ClusterError::io(format!("writing {}", file.path.display()), e))?;
    }
    Ok(())
}

fn signal(pgid: Pid, sig: Signal) {
    // ESRCH (already gone) is fine: the state check that follows sees it.
    let _ = killpg(pgid, sig);
}

impl Supervisor {
    pub fn new(nodes: usize, tag: &str) -> Supervisor {
        Supervisor {
            slots: (0..nodes).map(|_| Mutex::new(Slot::default())).collect(),
            tag: tag.to_string(),
        }
    }

    fn slot(&self, node: NodeId) -> Result<&Mutex<Slot>> {
        self.slots
            .get((node as usize).wrapping_sub(1))
            .ok_or(ClusterError::NoSuchNode(node))
    }

    /// Starts the node unless it already runs.
    pub async fn start(&self, node: NodeId, launch: Launch) -> Result<()> {
        let mut slot = self.slot(node)?.lock().await;
        slot.reap();
        if slot.child.is_some() {
            return Ok(());
        }
        if let Some(dir) = launch.log.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| ClusterError::io(format!("creating {}", dir.display()), e))?;
        }
        write_files(&launch.files)?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&launch.log)
            .map_err(|e| ClusterError::io(format!("opening {}", launch.log.display()), e))?;
        let err = log
            .try_clone()
            .map_err(|e| ClusterError::io("duplicating the log file", e))?;
        let (program, args) = launch
            .argv
            .split_first()
            .ok_or_else(|| ClusterError::Invalid("empty node command".to_string()))?;
        let mut cmd = Command::new(program);
        cmd.args(args)
            .env(RUN_ENV, &self.tag)
            .envs(launch.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .process_group(0)
            // A harness that drops the cluster without teardown still takes the node down.
            .kill_on_drop(true);
        let child = cmd
            .spawn()
            .map_err(|e| ClusterError::io(format!("starting node {node} ({program})"), e))?;
        if let Some(pid) = child.id() {
            let _ = std::fs::write(&launch.pidfile, format!("{pid}\n"));
        }
        slot.child = Some(child);
        slot.paused = false;
        Ok(())
    }

    /// SIGTERM, and SIGKILL when the node has not exited after [`STOP_GRACE_MS`].
    pub async fn stop(&self, node: NodeId) -> Result<()> {
        let mut slot = self.slot(node)?.lock().await;
        slot.reap();
        let Some(pgid) = slot.pgid() else {
            return Ok(());
        };
        signal(pgid, Signal::SIGTERM);
        // A stopped process does not act on SIGTERM until it is continued.
        signal(pgid, Signal::SIGCONT);
        let child = slot.child.as_mut().expect("pgid implies a child");
        let grace = Duration::from_millis(STOP_GRACE_MS);
        if tokio::time::timeout(grace, child.wait()).await.is_err() {
            signal(pgid, Signal::SIGKILL);
            let _ = tokio::time::timeout(Duration::from_millis(KILL_WAIT_MS), child.wait()).await;
        }
        slot.child = None;
        slot.paused = false;
        Ok(())
    }

    pub async fn kill(&self, node: NodeId) -> Result<()> {
        let mut slot = self.slot(node)?.lock().await;
        slot.reap();
        let Some(pgid) = slot.pgid() else {
            return Ok(());
        };
        signal(pgid, Signal::SIGKILL);
        let child = slot.child.as_mut().expect("pgid implies a child");
        let _ = tokio::time::timeout(Duration::from_millis(KILL_WAIT_MS), child.wait()).await;
        slot.child = None;
        slot.paused = false;
        Ok(())
    }

    pub async fn pause(&self, node: NodeId) -> Result<()> {
        let mut slot = self.slot(node)?.lock().await;
        slot.reap();
        let pgid = slot.pgid().ok_or(ClusterError::NotRunning(node))?;
        signal(pgid, Signal::SIGSTOP);
        slot.paused = true;
        Ok(())
    }

    pub async fn resume(&self, node: NodeId) -> Result<()> {
        let mut slot = self.slot(node)?.lock().await;
        slot.reap();
        if let Some(pgid) = slot.pgid() {
            signal(pgid, Signal::SIGCONT);
        }
        slot.paused = false;
        Ok(())
    }

    pub async fn state(&self, node: NodeId) -> Result<NodeState> {
        let mut slot = self.slot(node)?.lock().await;
        slot.reap();
        Ok(match (&slot.child, slot.paused) {
            (None, _) => NodeState::Down,
            (Some(_), true) => NodeState::Paused,
            (Some(_), false) => NodeState::Running,
        })
    }

    /// SIGKILLs every node (teardown: speed matters more than a graceful exit).
    pub async fn kill_all(&self) {
        for node in 1..=self.slots.len() as NodeId {
            let _ = self.kill(node).await;
        }
    }
}

impl Supervisor {
    /// Removes a stopped node's data directory (`<node dir>/data`).
    pub async fn wipe(&self, spec: &ClusterSpec, node: NodeId) -> Result<()> {
        crate::check_node(spec, node)?;
        if self.state(node).await? != NodeState::Down {
            return Err(ClusterError::Invalid(format!(
                "node {node} must be down to wipe its data"
            )));
        }
        wipe_dir(&spec.data_dir(node))
    }
}

/// Copies every node's log to [`crate::node_log_path`] under `dir`.
pub fn collect_logs(spec: &ClusterSpec, dir: &Path) -> Result<()> {
    for node in spec.node_ids() {
        let to = crate::node_log_path(dir, node, spec.system);
        copy_log(&spec.node_log(node), &to)?;
    }
    Ok(())
}

/// Removes a node's data directory.
pub fn wipe_dir(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        // A lazyfs mount point: its contents are gone, and the fsync of the directory makes
        // that durable, so a later power loss does not bring them back.
        Err(e) if e.kind() == std::io::ErrorKind::ResourceBusy => std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| ClusterError::io(format!("syncing {}", dir.display()), e)),
        Err(e) => Err(ClusterError::io(format!("removing {}", dir.display()), e)),
    }
}

/// Copies `from` to `to` unless they are the same file.
pub fn copy_log(from: &Path, to: &Path) -> Result<()> {
    if !from.exists() {
        return Ok(());
    }
    if let (Ok(a), Ok(b)) = (from.canonicalize(), to.canonicalize())
        && a == b
    {
        return Ok(());
    }
    if let Some(dir) = to.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| ClusterError::io(format!("creating {}", dir.display()), e))?;
    }
    std::fs::copy(from, to)
        .map(|_| ())
        .map_err(|e| ClusterError::io(format!("copying {}", from.display()), e))
}

/// Where a process backend's nodes live, and what it creates for them: loopback addresses
/// (local: nothing to create, no network faults) or a network namespace per node on a bridge
/// (netns). Everything else (the processes, their disks and clock files, the ledger) is the
/// same for both and lives in [`ProcessCluster`].
pub trait Placement: Send + Sync + Sized {
    const KIND: BackendKind;
    fn new(spec: &ClusterSpec) -> Self;
    /// Chooses the nodes' addresses, creating their network first where there is one. Each
    /// object is in the ledger before it exists.
    fn place(
        &self,
        spec: &ClusterSpec,
        ledger: &Ledger,
    ) -> impl Future<Output = Result<Vec<NodeAddr>>> + Send;
    /// What a command on the node runs behind (`ip netns exec NS`; nothing on loopback).
    fn wrapper(&self, node: NodeId) -> Vec<String>;
    /// Runs `argv` where the node lives (the nemesis's iptables and tc commands).
    fn run_on_node(
        &self,
        node: NodeId,
        argv: &[String],
    ) -> impl Future<Output = Result<CommandRecord>> + Send;
    /// Removes what `place` created, as the ledger recorded it; tries every removal and
    /// returns the first error.
    fn remove(&self, recorded: &LedgerData) -> impl Future<Output = Result<()>> + Send;
}

/// A cluster of node processes on this host, placed by `P`.
pub struct ProcessCluster<P> {
    spec: ClusterSpec,
    placement: P,
    supervisor: Supervisor,
    ledger: Ledger,
    disks: Disks,
    addrs: SyncMutex<Vec<NodeAddr>>,
}

impl<P: Placement> ProcessCluster<P> {
    pub fn new(spec: ClusterSpec) -> ProcessCluster<P> {
        let tag = spec.tag();
        ProcessCluster {
            placement: P::new(&spec),
            supervisor: Supervisor::new(spec.nodes, tag.as_str()),
            ledger: Ledger::new(&tag, &spec.run_id, P::KIND, spec.base_dir.clone()),
            disks: Disks::new(&spec),
            addrs: SyncMutex::new(Vec::new()),
            spec,
        }
    }
}

impl<P: Placement> Backend for ProcessCluster<P> {
    fn kind(&self) -> BackendKind {
        P::KIND
    }
    fn spec(&self) -> &ClusterSpec {
        &self.spec
    }
    fn addrs(&self) -> Vec<NodeAddr> {
        self.addrs.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    async fn setup(&self) -> Result<()> {
        self.ledger.update(|_| {})?;
        let addrs = self.placement.place(&self.spec, &self.ledger).await?;
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
        let launch = Launch::new(
            &self.spec,
            node,
            &self.addrs(),
            self.placement.wrapper(node),
        )?;
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
        collect_logs(&self.spec, dir)
    }
    async fn lose_unsynced(&self, node: NodeId) -> Result<String> {
        check_node(&self.spec, node)?;
        let state = self.supervisor.state(node).await?;
        self.disks.lose_unsynced(node, state).await
    }
    async fn run_on_node(&self, node: NodeId, argv: &[String]) -> Result<CommandRecord> {
        check_node(&self.spec, node)?;
        self.placement.run_on_node(node, argv).await
    }

    async fn teardown(&self) -> Result<()> {
        self.supervisor.kill_all().await;
        let recorded = self.ledger.snapshot();
        // Every removal is tried even when one fails; the ledger stays (for `clean`) until
        // all of them succeeded.
        let mut first_error = self.disks.teardown(&recorded.mounts).await.err();
        if let Err(e) = crate::clock::remove(&recorded.clock_files) {
            first_error.get_or_insert(e);
        }
        if let Err(e) = self.placement.remove(&recorded).await {
            first_error.get_or_insert(e);
        }
        match first_error {
            None => {
                self.ledger.remove();
                Ok(())
            }
            Some(e) => Err(e),
        }
    }
}
