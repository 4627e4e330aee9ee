//! `schism clean`: removes what killed runs left behind, and only that.
//!
//! A run is *ours* when its objects carry our names: namespaces `schism-<tag>-n<i>`, links
//! whose alias is `schism-<tag>` (bridges and veths), host iptables rules commented
//! `schism-<tag>`, Docker objects labelled `schism.run=<tag>`, processes whose environment has
//! `SCHISM_RUN=<tag>`, node images (`schism-keeperd:<hash>`) labelled `schism.run=<tag>` or
//! listed in the run's ledger. It is *dead* when no ledger names a live owner process for its tag. Only
//! dead runs are touched, so a concurrent run survives a `clean`. Traffic-shaping qdiscs and
//! fault rules live inside our namespaces and containers and go with them.

use crate::host::{argv, run};
use crate::ledger::{self, LedgerData};
use crate::netns::{remove_host_rule, remove_link, remove_namespace};
use crate::{RUN_ENV, RUN_LABEL, Result, RunTag};
use bollard::query_parameters::{
    ListContainersOptionsBuilder, ListImagesOptionsBuilder, ListNetworksOptionsBuilder,
    ListVolumesOptionsBuilder,
};
use serde::Serialize;
use std::collections::{BTreeSet, HashMap};

#[derive(Clone, Debug, Default)]
pub struct CleanOptions {
    /// Also remove runs whose owner is still alive (never the calling process's own runs).
    pub include_live: bool,
    /// Skip Docker (for machines without an engine; otherwise an absent engine is skipped).
    pub skip_docker: bool,
}

/// What `clean` removed and what it could not.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CleanReport {
    /// One line per removed object, e.g. `namespace schism-ab12cd34-n1`.
    pub removed: Vec<String>,
    /// Runs left alone because their owner process is alive.
    pub skipped_live: Vec<String>,
    pub errors: Vec<String>,
}

impl CleanReport {
    pub fn is_clean(&self) -> bool {
        self.errors.is_empty()
    }
}

/// Everything schism-made on this machine, grouped by run tag.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Leftovers {
    pub namespaces: BTreeSet<String>,
    pub links: BTreeSet<String>,
    pub host_rules: BTreeSet<String>,
    pub containers: BTreeSet<String>,
    pub networks: BTreeSet<String>,
    pub volumes: BTreeSet<String>,
    /// Node images a run built, as `schism-keeperd:<hash> built by schism-<tag>`.
    pub images: BTreeSet<String>,
    pub processes: BTreeSet<u32>,
    /// lazyfs mounts, as `schism-<tag>-n? on <mount point>`.
    pub mounts: BTreeSet<String>,
    /// libfaketime control files (clock faults).
    pub clock_files: BTreeSet<String>,
}

impl Leftovers {
    pub fn is_empty(&self) -> bool {
        self.namespaces.is_empty()
            && self.links.is_empty()
            && self.host_rules.is_empty()
            && self.containers.is_empty()
            && self.networks.is_empty()
            && self.volumes.is_empty()
            && self.images.is_empty()
            && self.processes.is_empty()
            && self.mounts.is_empty()
            && self.clock_files.is_empty()
    }
}

/// The tag in `schism-<tag>` or `schism-<tag>-n<i>`.
fn tag_of(name: &str) -> Option<RunTag> {
    let rest = name.strip_prefix("schism-")?;
    let tag = match rest.rsplit_once("-n") {
        Some((t, n)) if n.bytes().all(|b| b.is_ascii_digit()) && !n.is_empty() => t,
        _ => rest,
    };
    RunTag::parse(tag)
}

async fn namespaces() -> Vec<(RunTag, String)> {
    let Ok(listed) = run(&argv(&["ip", "netns", "list"])).await else {
        return Vec::new();
    };
    listed
        .stdout
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter_map(|ns| tag_of(ns).map(|t| (t, ns.to_string())))
        .collect()
}

/// Scratch namespaces `schism-probe-<pid>` (the nemesis's netem probe) whose process is gone.
async fn stale_probe_namespaces() -> Vec<String> {
    let Ok(listed) = run(&argv(&["ip", "netns", "list"])).await else {
        return Vec::new();
    };
    listed
        .stdout
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|ns| {
            ns.strip_prefix("schism-probe-")
                .and_then(|pid| pid.parse::<u32>().ok())
                .is_some_and(|pid| ledger::process_start(pid).is_none())
        })
        .map(str::to_string)
        .collect()
}

async fn links() -> Vec<(RunTag, String)> {
    let Ok(listed) = run(&argv(&["ip", "-j", "link", "show"])).await else {
        return Vec::new();
    };
    let Ok(serde_json::Value::Array(items)) = serde_json::from_str(&listed.stdout) else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|l| {
            let alias = l.get("ifalias")?.as_str()?;
            let name = l.get("ifname")?.as_str()?;
            Some((tag_of(alias)?, name.to_string()))
        })
        .collect()
}

/// Host FORWARD rules commented `schism-<tag>`, as the arguments after `-A`.
async fn host_rules() -> Vec<(RunTag, Vec<String>)> {
    let Ok(listed) = run(&argv(&["iptables", "-S", "FORWARD"])).await else {
        return Vec::new();
    };
    listed
        .stdout
        .lines()
        .filter_map(|line| {
            let words: Vec<String> = line.split_whitespace().map(str::to_string).collect();
            if words.first().map(String::as_str) != Some("-A") {
                return None;
            }
            let at = words.iter().position(|w| w == "--comment")?;
            let tag = tag_of(words.get(at + 1)?.trim_matches('"'))?;
            Some((tag, words[1..].to_vec()))
        })
        .collect()
}

/// Processes started by schism: their environment carries `SCHISM_RUN=<tag>`.
fn processes() -> Vec<(RunTag, u32)> {
    let me = std::process::id();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let needle = format!("{RUN_ENV}=");
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me)
        .filter_map(|pid| {
            let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
            env.split(|b| *b == 0).find_map(|var| {
                let var = std::str::from_utf8(var).ok()?;
                let tag = RunTag::parse(var.strip_prefix(&needle)?)?;
                Some((tag, pid))
            })
        })
        .collect()
}

/// lazyfs mounts named `schism-<tag>-n<i>`.
fn mounts() -> Vec<(RunTag, std::path::PathBuf)> {
    crate::lazyfs::mounted()
        .into_iter()
        .filter_map(|(source, point)| Some((tag_of(&source)?, point)))
        .collect()
}

/// Per-node files a run keeps in the registry, `<registry>/<tag>-n<i><suffix>`: lazyfs control
/// sockets (`.lazyfs.sock`) and libfaketime control files ([`crate::clock::CONTROL_SUFFIX`]).
fn registry_files(suffix: &str) -> Vec<(RunTag, std::path::PathBuf)> {
    let Ok(dir) = std::fs::read_dir(ledger::registry_dir()) else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let stem = name.strip_suffix(suffix)?;
            let (tag, _) = stem.rsplit_once("-n")?;
            Some((RunTag::parse(tag)?, e.path()))
        })
        .collect()
}

struct DockerObjects {
    containers: Vec<(RunTag, String)>,
    networks: Vec<(RunTag, String)>,
    volumes: Vec<(RunTag, String)>,
    images: Vec<(RunTag, String)>,
}

async fn docker_objects(docker: &bollard::Docker) -> Result<DockerObjects> {
    let filters = HashMap::from([("label", vec![RUN_LABEL])]);
    let err = |e: bollard::errors::Error| crate::ClusterError::Docker(e.to_string());
    let label = |labels: Option<&HashMap<String, String>>| {
        labels
            .and_then(|l| l.get(RUN_LABEL))
            .and_then(|t| RunTag::parse(t))
    };
    let containers = docker
        .list_containers(Some(
            ListContainersOptionsBuilder::default()
                .all(true)
                .filters(&filters)
                .build(),
        ))
        .await
        .map_err(err)?
        .into_iter()
        .filter_map(|c| {
            let tag = label(c.labels.as_ref())?;
            let name = c.names?.first()?.trim_start_matches('/').to_string();
            Some((tag, name))
        })
        .collect();
    let networks = docker
        .list_networks(Some(
            ListNetworksOptionsBuilder::default()
                .filters(&filters)
                .build(),
        ))
        .await
        .map_err(err)?
        .into_iter()
        .filter_map(|n| Some((label(n.labels.as_ref())?, n.name?)))
        .collect();
    let volumes = docker
        .list_volumes(Some(
            ListVolumesOptionsBuilder::default()
                .filters(&filters)
                .build(),
        ))
        .await
        .map_err(err)?
        .volumes
        .unwrap_or_default()
        .into_iter()
        .filter_map(|v| Some((label(Some(&v.labels))?, v.name)))
        .collect();
    let images = docker
        .list_images(Some(
            ListImagesOptionsBuilder::default()
                .filters(&filters)
                .build(),
        ))
        .await
        .map_err(err)?
        .into_iter()
        .flat_map(|i| {
            let tag = label(Some(&i.labels));
            i.repo_tags
                .into_iter()
                .filter(|name| name.starts_with(&format!("{}:", crate::docker::IMAGE_REPO)))
                .filter_map(move |name| Some((tag.clone()?, name)))
        })
        .collect();
    Ok(DockerObjects {
        containers,
        networks,
        volumes,
        images,
    })
}

async fn docker_if_present(skip: bool) -> Option<bollard::Docker> {
    if skip || !std::path::Path::new(&crate::preflight::docker_socket()).exists() {
        return None;
    }
    crate::docker::connect().await.ok()
}

/// Lists every schism object on this machine (for tests and `schism clean --dry-run`).
pub async fn list_leftovers() -> Leftovers {
    let mut found = Leftovers::default();
    found
        .namespaces
        .extend(namespaces().await.into_iter().map(|(_, n)| n));
    found
        .links
        .extend(links().await.into_iter().map(|(_, n)| n));
    found
        .host_rules
        .extend(host_rules().await.into_iter().map(|(_, r)| r.join(" ")));
    found
        .processes
        .extend(processes().into_iter().map(|(_, p)| p));
    found.mounts.extend(
        mounts()
            .into_iter()
            .map(|(tag, point)| format!("{}-n? on {}", tag.prefix(), point.display())),
    );
    found.clock_files.extend(
        registry_files(crate::clock::CONTROL_SUFFIX)
            .into_iter()
            .map(|(_, path)| path.display().to_string()),
    );
    if let Some(docker) = docker_if_present(false).await
        && let Ok(objects) = docker_objects(&docker).await
    {
        found
            .containers
            .extend(objects.containers.into_iter().map(|(_, n)| n));
        found
            .networks
            .extend(objects.networks.into_iter().map(|(_, n)| n));
        found
            .volumes
            .extend(objects.volumes.into_iter().map(|(_, n)| n));
        found.images.extend(
            objects
                .images
                .into_iter()
                .map(|(tag, n)| format!("{n} built by {}", tag.prefix())),
        );
    }
    found
}

/// Removes what dead runs left: processes first (so nothing recreates state), then containers,
/// namespaces, links, host rules, Docker networks, volumes and images, and finally their
/// ledgers.
pub async fn clean_leftovers(options: &CleanOptions) -> CleanReport {
    let mut report = CleanReport::default();
    let ledgers: Vec<LedgerData> = ledger::read_all();
    let me = std::process::id();
    let live: BTreeSet<String> = ledgers
        .iter()
        .filter(|l| l.owner_alive() && (!options.include_live || l.owner_pid == me))
        .map(|l| l.tag.clone())
        .collect();
    let mut live = live;
    let procs = processes();
    if !options.include_live {
        // A run without a ledger (written elsewhere, or lost) whose nodes still have their
        // parent is alive: the nodes of a killed run are orphans, adopted by init. Docker's
        // shims are the parents of every container and say nothing about the owner.
        for (tag, pid) in &procs {
            if let Some((ppid, comm)) = ledger::parent_of(*pid)
                && ppid > 1
                && !comm.starts_with("containerd-shim")
                && !procs.iter().any(|(_, p)| *p == ppid)
            {
                live.insert(tag.0.clone());
            }
        }
    }
    report.skipped_live = live.iter().cloned().collect();
    let dead = |tag: &RunTag| !live.contains(&tag.0);

    for (tag, pid) in procs {
        if dead(&tag) {
            let target = nix::unistd::Pid::from_raw(pid as i32);
            match nix::sys::signal::kill(target, nix::sys::signal::Signal::SIGKILL) {
                Ok(()) | Err(nix::errno::Errno::ESRCH) => {
                    report.removed.push(format!("process {pid} (run {tag})"))
                }
                Err(e) => report.errors.push(format!("killing process {pid}: {e}")),
            }
        }
    }

    // After the processes: a killed lazyfs daemon leaves its mount behind, unusable.
    for (tag, mount) in mounts().into_iter().filter(|(t, _)| dead(t)) {
        match crate::lazyfs::unmount(&mount).await {
            Ok(()) => report
                .removed
                .push(format!("mount {} (run {tag})", mount.display())),
            Err(e) => report.errors.push(e.to_string()),
        }
    }
    let registry = [
        (crate::lazyfs::SOCKET_SUFFIX, "socket"),
        (crate::clock::CONTROL_SUFFIX, "clock control file"),
    ];
    for (suffix, what) in registry {
        for (tag, file) in registry_files(suffix).into_iter().filter(|(t, _)| dead(t)) {
            if std::fs::remove_file(&file).is_ok() {
                report
                    .removed
                    .push(format!("{what} {} (run {tag})", file.display()));
            }
        }
    }

    let docker = docker_if_present(options.skip_docker).await;
    let mut docker_objs = None;
    if let Some(docker) = &docker {
        match docker_objects(docker).await {
            Ok(o) => docker_objs = Some(o),
            Err(e) => report.errors.push(format!("listing Docker objects: {e}")),
        }
    }
    if let (Some(docker), Some(objs)) = (&docker, &docker_objs) {
        for (tag, name) in objs.containers.iter().filter(|(t, _)| dead(t)) {
            match crate::docker::remove_objects(docker, std::slice::from_ref(name), &[], &[]).await
            {
                Ok(()) => report.removed.push(format!("container {name} (run {tag})")),
                Err(e) => report.errors.push(e.to_string()),
            }
        }
    }

    for (tag, ns) in namespaces().await.into_iter().filter(|(t, _)| dead(t)) {
        match remove_namespace(&ns).await {
            Ok(()) => report.removed.push(format!("namespace {ns} (run {tag})")),
            Err(e) => report.errors.push(e.to_string()),
        }
    }
    for ns in stale_probe_namespaces().await {
        match remove_namespace(&ns).await {
            Ok(()) => report
                .removed
                .push(format!("namespace {ns} (a netem probe)")),
            Err(e) => report.errors.push(e.to_string()),
        }
    }
    for (tag, link) in links().await.into_iter().filter(|(t, _)| dead(t)) {
        match remove_link(&link).await {
            Ok(()) => report.removed.push(format!("link {link} (run {tag})")),
            Err(e) => report.errors.push(e.to_string()),
        }
    }
    for (tag, rule) in host_rules().await.into_iter().filter(|(t, _)| dead(t)) {
        match remove_host_rule(&rule).await {
            Ok(()) => report
                .removed
                .push(format!("iptables rule `{}` (run {tag})", rule.join(" "))),
            Err(e) => report.errors.push(e.to_string()),
        }
    }

    if let (Some(docker), Some(objs)) = (&docker, &docker_objs) {
        for (tag, name) in objs.networks.iter().filter(|(t, _)| dead(t)) {
            match crate::docker::remove_objects(docker, &[], std::slice::from_ref(name), &[]).await
            {
                Ok(()) => report.removed.push(format!("network {name} (run {tag})")),
                Err(e) => report.errors.push(e.to_string()),
            }
        }
        for (tag, name) in objs.volumes.iter().filter(|(t, _)| dead(t)) {
            match crate::docker::remove_objects(docker, &[], &[], std::slice::from_ref(name)).await
            {
                Ok(()) => report.removed.push(format!("volume {name} (run {tag})")),
                Err(e) => report.errors.push(e.to_string()),
            }
        }
        // Images after the containers: the label names the run that built one, the ledger
        // covers a run killed between its ledger entry and the end of its build.
        let mut images: BTreeSet<(String, String)> = objs
            .images
            .iter()
            .filter(|(t, _)| dead(t))
            .map(|(t, n)| (t.0.clone(), n.clone()))
            .collect();
        for l in ledgers.iter().filter(|l| !live.contains(&l.tag)) {
            images.extend(l.images.iter().map(|n| (l.tag.clone(), n.clone())));
        }
        for (tag, name) in images {
            match crate::docker::remove_images(docker, std::slice::from_ref(&name)).await {
                Ok(removed) if !removed.is_empty() => {
                    report.removed.push(format!("image {name} (run {tag})"))
                }
                Ok(_) => {}
                Err(e) => report.errors.push(e.to_string()),
            }
        }
    }

    if report.errors.is_empty() {
        for l in ledgers.iter().filter(|l| !live.contains(&l.tag)) {
            ledger::remove(&RunTag(l.tag.clone()));
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_come_only_from_our_names() {
        assert_eq!(tag_of("schism-ab12-n3"), Some(RunTag("ab12".into())));
        assert_eq!(tag_of("schism-ab12"), Some(RunTag("ab12".into())));
        assert_eq!(tag_of("schismo-ab12"), None);
        assert_eq!(tag_of("other-ab12-n1"), None);
        assert_eq!(tag_of("schism-UPPER"), None);
        assert_eq!(tag_of("schism-waytoolongtag-n1"), None);
    }
}
