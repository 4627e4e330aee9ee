//! Nodes' disks that can lose power: on the netns and local backends, when the spec asks for it,
//! each node's data directory (`nodes/<node>/data`) is a `schism-lazyfs` mount over
//! `nodes/<node>/disk`, served by one daemon per node (see the `lazyfs` crate). The power-loss
//! fault kills the node and then tells its daemon to drop everything unsynced.
//!
//! Mounts are named `schism-<tag>-n<i>` (the source column of `/proc/mounts`) and recorded in
//! the ledger before they are made; teardown and `clean` unmount them with `fusermount3 -u`,
//! falling back to a lazy `umount -l` when something still holds the mount.

use crate::host::{argv, run};
use crate::ledger::Ledger;
use crate::{ClusterError, ClusterSpec, NodeId, NodeState, RUN_ENV, Result, RunTag};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};
use tokio::sync::Mutex;

/// The one line users see when power-loss meets the docker backend.
pub const NO_POWER_LOSS_ON_DOCKER: &str = "the docker backend cannot inject power-loss: its nodes' data is on Docker volumes, not on a lazyfs mount; use --backend netns or local (as root)";
/// Longest a daemon may take to mount and answer on its control socket.
const MOUNT_WAIT_MS: u64 = 10_000;
const MOUNT_POLL_MS: u64 = 25;
/// Longest an unmounted daemon may take to exit before it is killed.
const EXIT_WAIT_MS: u64 = 2_000;

/// `schism-<tag>-n<i>`: the mount's source name, which `clean` parses back to the tag.
pub fn mount_name(tag: &RunTag, node: NodeId) -> String {
    format!("{}-n{node}", tag.prefix())
}

/// What a control socket's name ends with (`clean` finds a killed run's sockets by it).
pub const SOCKET_SUFFIX: &str = ".lazyfs.sock";

/// The daemon's control socket. Kept short and out of the run directory: a unix socket path has
/// at most 107 bytes.
pub fn socket_path(tag: &RunTag, node: NodeId) -> PathBuf {
    crate::ledger::registry_dir().join(format!("{tag}-n{node}{SOCKET_SUFFIX}"))
}

/// Why lazyfs mounts cannot be made here, in one line (see `lazyfs::missing_prerequisite`).
pub fn check() -> Result<()> {
    match lazyfs::missing_prerequisite() {
        Some(line) => Err(ClusterError::Missing(line)),
        None => Ok(()),
    }
}

/// The lazyfs mounts of one run.
pub(crate) struct Disks {
    binary: Option<PathBuf>,
    tag: RunTag,
    daemons: Mutex<Vec<(NodeId, Child)>>,
}

impl Disks {
    pub fn new(spec: &ClusterSpec) -> Disks {
        Disks {
            binary: spec.lazyfs.clone(),
            tag: spec.tag(),
            daemons: Mutex::new(Vec::new()),
        }
    }

    /// Mounts every node's data directory (when the spec asks for lazyfs). Each mount is in the
    /// ledger before it exists.
    pub async fn setup(&self, spec: &ClusterSpec, ledger: &Ledger) -> Result<()> {
        let Some(binary) = &self.binary else {
            return Ok(());
        };
        for node in spec.node_ids() {
            let dir = spec.node_dir(node);
            let backing = dir.join("disk");
            let mount = spec.data_dir(node);
            for d in [&backing, &mount] {
                std::fs::create_dir_all(d)
                    .map_err(|e| ClusterError::io(format!("creating {}", d.display()), e))?;
            }
            ledger.update(|l| l.mounts.push(mount.clone()))?;
            let socket = socket_path(&self.tag, node);
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join("lazyfs.log"))
                .map_err(|e| ClusterError::io("opening lazyfs.log", e))?;
            let err = log
                .try_clone()
                .map_err(|e| ClusterError::io("duplicating the lazyfs log", e))?;
            let mut child = Command::new(binary)
                .arg("--backing")
                .arg(&backing)
                .arg("--mount")
                .arg(&mount)
                .arg("--control")
                .arg(&socket)
                .arg("--name")
                .arg(mount_name(&self.tag, node))
                .env(RUN_ENV, self.tag.as_str())
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(err)
                .process_group(0)
                .spawn()
                .map_err(|e| ClusterError::io(format!("starting {}", binary.display()), e))?;
            wait_ready(&mut child, &socket, &dir.join("lazyfs.log")).await?;
            self.daemons.lock().await.push((node, child));
        }
        Ok(())
    }

    /// Drops everything the node did not sync. The node must be down (killed): `state` is what
    /// the backend's supervisor says of it.
    pub async fn lose_unsynced(&self, node: NodeId, state: NodeState) -> Result<String> {
        if state != NodeState::Down {
            return Err(ClusterError::Invalid(format!(
                "node {node} must be down before its unsynced writes are dropped"
            )));
        }
        if self.binary.is_none() {
            return Err(ClusterError::Unsupported(
                "this cluster's data directories are not lazyfs mounts: power-loss must be in --nemesis when the cluster is set up".to_string(),
            ));
        }
        control(&socket_path(&self.tag, node), "power-loss").await
    }

    /// Unmounts every mount the ledger names and stops the daemons. Idempotent.
    pub async fn teardown(&self, mounts: &[PathBuf]) -> Result<()> {
        let mut first_error = None;
        for mount in mounts {
            if let Err(e) = unmount(mount).await {
                first_error.get_or_insert(e);
            }
        }
        for (node, mut child) in self.daemons.lock().await.drain(..) {
            let wait = Duration::from_millis(EXIT_WAIT_MS);
            if tokio::time::timeout(wait, child.wait()).await.is_err() {
                let _ = child.kill().await;
            }
            let _ = std::fs::remove_file(socket_path(&self.tag, node));
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

async fn control(socket: &Path, request: &str) -> Result<String> {
    let socket = socket.to_path_buf();
    let request = request.to_string();
    tokio::task::spawn_blocking(move || lazyfs::request(&socket, &request))
        .await
        .map_err(|e| ClusterError::Invalid(format!("the lazyfs request failed: {e}")))?
        .map_err(ClusterError::Invalid)
}

async fn wait_ready(child: &mut Child, socket: &Path, log: &Path) -> Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(MOUNT_WAIT_MS);
    loop {
        if control(socket, "status").await.is_ok() {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            let said = std::fs::read_to_string(log).unwrap_or_default();
            let last = said.lines().last().unwrap_or("").trim().to_string();
            return Err(ClusterError::Missing(format!(
                "schism-lazyfs exited ({status}) before mounting: {last}"
            )));
        }
        if tokio::time::Instant::now() >= deadline {
            let _ = child.kill().await;
            return Err(ClusterError::Invalid(format!(
                "schism-lazyfs did not mount within {MOUNT_WAIT_MS} ms (see {})",
                log.display()
            )));
        }
        tokio::time::sleep(Duration::from_millis(MOUNT_POLL_MS)).await;
    }
}

/// The lazyfs mounts on this machine: (source name, mount point).
pub fn mounted() -> Vec<(String, PathBuf)> {
    let text = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (source, point, kind) = (fields.next()?, fields.next()?, fields.next()?);
            // Mounted as root the kernel shows plain `fuse`; through fusermount3 `fuse.<subtype>`.
            (kind == "fuse" || kind == format!("fuse.{}", lazyfs::SUBTYPE)).then(|| {
                // /proc/mounts escapes spaces and the like as octal.
                (source.to_string(), PathBuf::from(unescape(point)))
            })
        })
        .collect()
}

fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && let Some(code) = bytes
                .get(i + 1..i + 4)
                .and_then(|d| std::str::from_utf8(d).ok())
                .and_then(|d| u8::from_str_radix(d, 8).ok())
        {
            out.push(code);
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Unmounts a lazyfs mount; one that is not mounted is not an error. A busy mount is detached
/// lazily (it goes once the last user lets go).
pub async fn unmount(mount: &Path) -> Result<()> {
    let is_mounted = |m: &Path| mounted().iter().any(|(_, p)| p == m);
    if !is_mounted(mount) {
        return Ok(());
    }
    let point = mount.display().to_string();
    let tried = run(&argv(&["fusermount3", "-u", &point])).await;
    if !is_mounted(mount) {
        return Ok(());
    }
    let lazy = run(&argv(&["umount", "-l", &point])).await?;
    if !is_mounted(mount) {
        return Ok(());
    }
    let why = match tried {
        Ok(r) if !r.stderr.trim().is_empty() => r.stderr.trim().to_string(),
        Ok(_) => lazy.stderr.trim().to_string(),
        Err(e) => e.to_string(),
    };
    Err(ClusterError::Invalid(format!(
        "cannot unmount {point}: {why}"
    )))
}
