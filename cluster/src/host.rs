//! Running host commands (`ip`, `iptables`, `tc`, `nsenter`) and reading the host's addresses.

use crate::{ClusterError, Result};
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

/// Longest any single host command (`ip`, `iptables`, `tc`, `nsenter`) may run.
pub const HOST_COMMAND_TIMEOUT_MS: u64 = 30_000;
/// Most bytes of a command's stdout/stderr kept in its record.
const MAX_OUTPUT_BYTES: usize = 4096;

/// One command that was run, with its outcome, as the nemesis logs it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct CommandRecord {
    /// The exact command line, including the `ip netns exec NS` or `nsenter` prefix.
    pub argv: Vec<String>,
    /// The exit code; `None` when it was killed by a signal or timed out.
    pub status: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl CommandRecord {
    pub fn success(&self) -> bool {
        self.status == Some(0)
    }

    /// The record as an error when the command failed.
    pub fn check(self) -> Result<CommandRecord> {
        if self.success() {
            Ok(self)
        } else {
            Err(ClusterError::Command {
                argv: self.argv.join(" "),
                status: match self.status {
                    Some(c) => format!("exit {c}"),
                    None => "killed or timed out".to_string(),
                },
                stderr: self.stderr.trim().to_string(),
            })
        }
    }
}

/// The absolute path of a tool, looked up in PATH and the sbin directories root's PATH has but
/// a user's often lacks.
pub fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    for extra in ["/usr/sbin", "/sbin", "/usr/bin", "/bin", "/usr/local/sbin"] {
        dirs.push(PathBuf::from(extra));
    }
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file())
}

fn truncate(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_OUTPUT_BYTES)]);
    s.into_owned()
}

/// Runs a command to completion (bounded by [`HOST_COMMAND_TIMEOUT_MS`]) and records it.
/// `Err` only when it could not be started.
pub async fn run(argv: &[String]) -> Result<CommandRecord> {
    let Some((program, args)) = argv.split_first() else {
        return Err(ClusterError::Invalid("empty command".to_string()));
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = cmd
        .spawn()
        .map_err(|e| ClusterError::io(format!("cannot run {program}"), e))?;
    let timeout = Duration::from_millis(HOST_COMMAND_TIMEOUT_MS);
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(Ok(out)) => Ok(CommandRecord {
            argv: argv.to_vec(),
            status: out.status.code(),
            stdout: truncate(&out.stdout),
            stderr: truncate(&out.stderr),
        }),
        Ok(Err(e)) => Err(ClusterError::io(format!("waiting for {program}"), e)),
        Err(_) => Ok(CommandRecord {
            argv: argv.to_vec(),
            status: None,
            stdout: String::new(),
            stderr: format!("timed out after {HOST_COMMAND_TIMEOUT_MS} ms"),
        }),
    }
}

/// Runs a command and fails unless it exits 0.
pub async fn run_ok(argv: &[String]) -> Result<CommandRecord> {
    run(argv).await?.check()
}

/// Builds an argv from string slices.
pub fn argv(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

/// IPv4 networks the host already uses (routes in every table and interface addresses), as
/// (network, prefix length).
pub async fn used_networks() -> Result<Vec<(Ipv4Addr, u8)>> {
    let mut nets = Vec::new();
    let routes = run_ok(&argv(&["ip", "-4", "-j", "route", "show", "table", "all"])).await?;
    if let Ok(serde_json::Value::Array(items)) = serde_json::from_str(&routes.stdout) {
        for item in items {
            if let Some(dst) = item.get("dst").and_then(|d| d.as_str())
                && let Some(net) = parse_cidr(dst)
            {
                nets.push(net);
            }
        }
    }
    let addrs = run_ok(&argv(&["ip", "-4", "-j", "addr", "show"])).await?;
    if let Ok(serde_json::Value::Array(links)) = serde_json::from_str(&addrs.stdout) {
        for link in links {
            for info in link
                .get("addr_info")
                .and_then(|a| a.as_array())
                .into_iter()
                .flatten()
            {
                let local = info.get("local").and_then(|l| l.as_str());
                let len = info.get("prefixlen").and_then(|l| l.as_u64());
                if let (Some(local), Some(len)) = (local, len)
                    && let Ok(ip) = local.parse::<Ipv4Addr>()
                {
                    nets.push((ip, len.min(32) as u8));
                }
            }
        }
    }
    Ok(nets)
}

fn parse_cidr(s: &str) -> Option<(Ipv4Addr, u8)> {
    if s == "default" {
        return None;
    }
    match s.split_once('/') {
        Some((ip, len)) => Some((ip.parse().ok()?, len.parse().ok()?)),
        None => Some((s.parse().ok()?, 32)),
    }
}

fn overlaps(a: (Ipv4Addr, u8), b: (Ipv4Addr, u8)) -> bool {
    let len = a.1.min(b.1).min(32);
    let mask = if len == 0 {
        0
    } else {
        u32::MAX << (32 - len as u32)
    };
    (u32::from(a.0) & mask) == (u32::from(b.0) & mask)
}

/// Most /24 candidates tried before giving up on finding a free one.
const MAX_SUBNET_CANDIDATES: u64 = 4096;

/// A /24 inside 10.0.0.0/8 that overlaps nothing in `used` nor `taken`, derived from `seed` so
/// a run keeps its subnet; returns its first three octets.
pub fn choose_subnet(seed: u64, used: &[(Ipv4Addr, u8)], taken: &[[u8; 3]]) -> Result<[u8; 3]> {
    // 10.0.x and 10.255.x are left alone: they are the favourite picks of other tools.
    const SPAN: u64 = 254 * 256;
    for k in 0..MAX_SUBNET_CANDIDATES {
        let x = (seed.wrapping_add(k.wrapping_mul(7919))) % SPAN;
        let octets = [10, 1 + (x / 256) as u8, (x % 256) as u8];
        let net = (Ipv4Addr::new(octets[0], octets[1], octets[2], 0), 24);
        if used.iter().any(|u| overlaps(*u, net) && u.1 > 0) || taken.contains(&octets) {
            continue;
        }
        return Ok(octets);
    }
    Err(ClusterError::Missing(
        "no free /24 inside 10.0.0.0/8 for the run's network: remove stale networks (schism clean)"
            .to_string(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnet_avoids_used_networks() {
        let first = choose_subnet(42, &[], &[]).unwrap();
        let used = vec![(Ipv4Addr::new(first[0], first[1], first[2], 0), 24)];
        let second = choose_subnet(42, &used, &[]).unwrap();
        assert_ne!(first, second);
        // A covering /8 route blocks everything in 10/8.
        assert!(choose_subnet(42, &[(Ipv4Addr::new(10, 0, 0, 0), 8)], &[]).is_err());
        // The default route (prefix 0) is not a collision.
        assert!(choose_subnet(42, &[(Ipv4Addr::new(0, 0, 0, 0), 0)], &[]).is_ok());
    }
}
