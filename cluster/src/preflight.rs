//! What each backend needs from the host, checked once, with one line saying what is missing and
//! what to do about it.

use crate::host::find_tool;
use crate::{BackendKind, ClusterError, Result, SystemKind};
use std::path::Path;

/// CAP_NET_ADMIN's bit in `/proc/self/status` CapEff.
const CAP_NET_ADMIN_BIT: u32 = 12;
/// CAP_SYS_ADMIN's bit: `setns` into a mount namespace (`ip netns exec`, `nsenter`) needs it.
const CAP_SYS_ADMIN_BIT: u32 = 21;

fn effective_caps() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(0)
}

/// True when this process may create namespaces and change their network.
pub fn privileged() -> bool {
    let caps = effective_caps();
    nix::unistd::geteuid().is_root()
        || (caps & (1 << CAP_NET_ADMIN_BIT) != 0 && caps & (1 << CAP_SYS_ADMIN_BIT) != 0)
}

fn need_tools(backend: &str, tools: &[(&str, &str)]) -> Result<()> {
    for (tool, package) in tools {
        if find_tool(tool).is_none() {
            return Err(ClusterError::Missing(format!(
                "the {backend} backend needs `{tool}`, which is not installed: install {package}"
            )));
        }
    }
    Ok(())
}

/// The Docker engine's socket path (`DOCKER_HOST=unix://...` or the default).
pub fn docker_socket() -> String {
    match std::env::var("DOCKER_HOST") {
        Ok(h) if h.starts_with("unix://") => h.trim_start_matches("unix://").to_string(),
        _ => "/var/run/docker.sock".to_string(),
    }
}

/// Checks that `system` is installed here (keeperd itself is checked with the spec).
pub fn check_system(system: SystemKind) -> Result<()> {
    match system {
        SystemKind::Keeper => Ok(()),
        SystemKind::Zookeeper => crate::zookeeper::Install::discover().map(|_| ()),
    }
}

/// Checks that `kind` can run here. The docker engine itself is contacted in
/// [`crate::docker::DockerCluster::connect`].
pub fn check(kind: BackendKind) -> Result<()> {
    match kind {
        BackendKind::Local => Ok(()),
        BackendKind::Netns => {
            if !privileged() {
                return Err(ClusterError::Missing(
                    "the netns backend needs root or CAP_NET_ADMIN+CAP_SYS_ADMIN: run as root, or use --backend local"
                        .to_string(),
                ));
            }
            need_tools(
                "netns",
                &[
                    ("ip", "iproute2"),
                    ("iptables", "iptables"),
                    ("tc", "iproute2"),
                ],
            )
        }
        BackendKind::Docker => {
            let socket = docker_socket();
            if !Path::new(&socket).exists() {
                return Err(ClusterError::Missing(format!(
                    "the docker backend needs a Docker engine, and {socket} does not exist: start dockerd, or use --backend netns"
                )));
            }
            if !privileged() {
                return Err(ClusterError::Missing(
                    "the docker backend injects faults with nsenter and needs root: run as root, or use --backend local"
                        .to_string(),
                ));
            }
            need_tools(
                "docker",
                &[
                    ("nsenter", "util-linux"),
                    ("iptables", "iptables"),
                    ("tc", "iproute2"),
                ],
            )
        }
    }
}
