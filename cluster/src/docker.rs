//! The docker backend: one container per node from an image built `FROM scratch` around a
//! statically linked `keeperd` (nothing is pulled), on a network `schism-<tag>` with a fixed
//! /24 and fixed addresses, the data directory on a volume per node that survives restarts.
//! Network faults run in a container's namespace from the host (`nsenter -t PID -n ...`), so
//! the image needs no tools.

use crate::host::{self, argv, run};
use crate::ledger::{self, Ledger};
use crate::{
    Backend, BackendKind, CLIENT_PORT, ClusterError, ClusterSpec, CommandRecord, NodeAddr, NodeId,
    NodeState, PEER_PORT, RUN_ENV, RUN_LABEL, Result, RunTag, STOP_GRACE_MS, ZK_CLIENT_PORT,
    check_node, fnv1a, node_name,
};
use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, EndpointIpamConfig, EndpointSettings, HostConfig, Ipam, IpamConfig,
    NetworkCreateRequest, NetworkingConfig, VolumeCreateRequest,
};
use bollard::query_parameters::{
    BuildImageOptionsBuilder, CreateContainerOptionsBuilder, KillContainerOptionsBuilder,
    LogsOptionsBuilder, RemoveContainerOptionsBuilder, RemoveImageOptionsBuilder,
    RemoveVolumeOptionsBuilder, StopContainerOptionsBuilder,
};
use futures::StreamExt;
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The repository of the images this backend builds; the tag is a hash of the binary, so runs
/// at the same time with one binary share one image. The run that built an image records it in
/// its ledger and labels it with its tag; its teardown (or `schism clean`, if it was killed)
/// removes it, unless another run's containers still use it.
pub const IMAGE_REPO: &str = "schism-keeperd";
/// Where a node's volume is mounted in its container.
const DATA_DIR: &str = "/data";
/// How many subnets to try when the engine says a pool overlaps another.
const MAX_NETWORK_ATTEMPTS: usize = 8;
/// Largest build output line kept in an error.
const MAX_BUILD_ERROR_BYTES: usize = 2048;

fn derr(context: &str, e: bollard::errors::Error) -> ClusterError {
    ClusterError::Docker(format!("{context}: {e}"))
}

fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// Connects to the engine and agrees on an API version (the engine here is older than bollard's
/// default).
pub async fn connect() -> Result<Docker> {
    let docker = Docker::connect_with_unix_defaults()
        .map_err(|e| ClusterError::Missing(format!("cannot reach the Docker engine: {e}")))?
        .negotiate_version()
        .await
        .map_err(|e| {
            ClusterError::Missing(format!(
                "cannot reach the Docker engine ({e}): start dockerd, or use --backend netns"
            ))
        })?;
    docker.ping().await.map_err(|e| {
        ClusterError::Missing(format!(
            "the Docker engine does not answer ({e}): start dockerd, or use --backend netns"
        ))
    })?;
    Ok(docker)
}

/// Builds a statically linked keeperd for the image (`FROM scratch` has no libc) and returns its
/// path. Takes minutes the first time; cargo makes later calls cheap.
pub async fn build_static_keeperd(workspace: &Path) -> Result<PathBuf> {
    const TARGET: &str = "x86_64-unknown-linux-gnu";
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = tokio::process::Command::new(cargo)
        .args([
            "build",
            "--release",
            "--target",
            TARGET,
            "-p",
            "keeper",
            "--bin",
            "keeperd",
        ])
        .current_dir(workspace)
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .status()
        .await
        .map_err(|e| ClusterError::io("running cargo", e))?;
    if !status.success() {
        return Err(ClusterError::Invalid(format!(
            "building a static keeperd failed ({status}): see cargo's output above"
        )));
    }
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"));
    Ok(target_dir.join(TARGET).join("release").join("keeperd"))
}

/// Builds (unless it exists) the node image from a static keeperd and returns its name.
/// `before_build` is called with the name just before a build starts (not when the image
/// already exists), so the caller can record it in its ledger first; the image is labelled
/// with `tag`.
pub async fn ensure_image(
    docker: &Docker,
    keeperd: &Path,
    tag: &RunTag,
    before_build: impl FnOnce(&str) -> Result<()>,
) -> Result<String> {
    let binary = std::fs::read(keeperd)
        .map_err(|e| ClusterError::io(format!("reading {}", keeperd.display()), e))?;
    if has_interpreter(&binary) {
        return Err(ClusterError::Invalid(format!(
            "the docker backend needs a statically linked keeperd, and {} is dynamically linked: build one with RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --target x86_64-unknown-linux-gnu -p keeper",
            keeperd.display()
        )));
    }
    let image = format!("{IMAGE_REPO}:{:016x}", fnv1a(&binary));
    if docker.inspect_image(&image).await.is_ok() {
        return Ok(image);
    }
    before_build(&image)?;
    let context = build_context(&binary)?;
    let labels = HashMap::from([(RUN_LABEL, tag.0.as_str())]);
    let options = BuildImageOptionsBuilder::default()
        .dockerfile("Dockerfile")
        .t(&image)
        .labels(&labels)
        .rm(true)
        .forcerm(true)
        .build();
    let mut stream = docker.build_image(options, None, Some(bollard::body_full(context.into())));
    while let Some(item) = stream.next().await {
        let info = item.map_err(|e| derr("building the node image", e))?;
        if let Some(detail) = info.error_detail {
            let mut message = detail.message.unwrap_or_default();
            message.truncate(MAX_BUILD_ERROR_BYTES);
            return Err(ClusterError::Docker(format!(
                "building the node image: {message}"
            )));
        }
    }
    docker
        .inspect_image(&image)
        .await
        .map_err(|e| derr("the node image is missing after its build", e))?;
    Ok(image)
}

/// True when an ELF64 binary asks for a dynamic loader (a PT_INTERP program header), which an
/// image `FROM scratch` does not have.
fn has_interpreter(binary: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    let u16_at = |o: usize| {
        binary
            .get(o..o + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u32_at = |o: usize| {
        binary
            .get(o..o + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let u64_at = |o: usize| {
        binary
            .get(o..o + 8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
    };
    if !binary.starts_with(b"\x7fELF") {
        return false;
    }
    let (Some(phoff), Some(entsize), Some(count)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38))
    else {
        return false;
    };
    (0..count as usize).any(|i| {
        let at = (phoff as usize).saturating_add(i * entsize as usize);
        u32_at(at) == Some(PT_INTERP)
    })
}

fn build_context(binary: &[u8]) -> Result<Vec<u8>> {
    let dockerfile = b"FROM scratch\nCOPY keeperd /keeperd\nENTRYPOINT [\"/keeperd\"]\n";
    let mut tar = tar::Builder::new(Vec::new());
    let mut add = |name: &str, mode: u32, bytes: &[u8]| {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(mode);
        header.set_cksum();
        tar.append_data(&mut header, name, bytes)
    };
    add("Dockerfile", 0o644, dockerfile)
        .and_then(|_| add("keeperd", 0o755, binary))
        .map_err(|e| ClusterError::io("writing the build context", e))?;
    tar.into_inner()
        .map_err(|e| ClusterError::io("writing the build context", e))
}

pub fn container_name(tag: &RunTag, node: NodeId) -> String {
    format!("{}-n{node}", tag.prefix())
}
pub fn volume_name(tag: &RunTag, node: NodeId) -> String {
    format!("{}-n{node}", tag.prefix())
}
pub fn network_name(tag: &RunTag) -> String {
    tag.prefix()
}

pub struct DockerCluster {
    spec: ClusterSpec,
    tag: RunTag,
    docker: Docker,
    ledger: Ledger,
    addrs: Mutex<Vec<NodeAddr>>,
    image: Mutex<Option<String>>,
}

/// A container's state as the engine reports it.
struct Inspected {
    running: bool,
    paused: bool,
    pid: i64,
}

impl DockerCluster {
    pub async fn connect(spec: ClusterSpec) -> Result<DockerCluster> {
        let docker = connect().await?;
        let tag = spec.tag();
        Ok(DockerCluster {
            ledger: Ledger::new(
                &tag,
                &spec.run_id,
                BackendKind::Docker,
                spec.base_dir.clone(),
            ),
            docker,
            addrs: Mutex::new(Vec::new()),
            image: Mutex::new(None),
            tag,
            spec,
        })
    }

    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    fn labels(&self) -> HashMap<String, String> {
        HashMap::from([(RUN_LABEL.to_string(), self.tag.0.clone())])
    }

    async fn inspect(&self, node: NodeId) -> Result<Option<Inspected>> {
        let name = container_name(&self.tag, node);
        match self.docker.inspect_container(&name, None).await {
            Ok(c) => {
                let state = c.state.unwrap_or_default();
                Ok(Some(Inspected {
                    running: state.running.unwrap_or(false),
                    paused: state.paused.unwrap_or(false),
                    pid: state.pid.unwrap_or(0),
                }))
            }
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(derr(&format!("inspecting {name}"), e)),
        }
    }

    async fn create_network(&self) -> Result<()> {
        let name = network_name(&self.tag);
        let mut taken: Vec<[u8; 3]> = ledger::read_all()
            .into_iter()
            .filter(|l| l.tag != self.tag.0)
            .filter_map(|l| l.subnet)
            .collect();
        let seed = fnv1a(self.tag.as_str().as_bytes()) ^ 0xd0c;
        for _ in 0..MAX_NETWORK_ATTEMPTS {
            let used = host::used_networks().await?;
            let net = host::choose_subnet(seed, &used, &taken)?;
            self.ledger.update(|l| {
                l.subnet = Some(net);
                if !l.networks.contains(&name) {
                    l.networks.push(name.clone());
                }
            })?;
            let request = NetworkCreateRequest {
                name: name.clone(),
                driver: Some("bridge".to_string()),
                ipam: Some(Ipam {
                    config: Some(vec![IpamConfig {
                        subnet: Some(format!("{}.{}.{}.0/24", net[0], net[1], net[2])),
                        gateway: Some(format!("{}.{}.{}.254", net[0], net[1], net[2])),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }),
                labels: Some(self.labels()),
                ..Default::default()
            };
            match self.docker.create_network(request).await {
                Ok(_) => {
                    let addrs = self
                        .spec
                        .node_ids()
                        .into_iter()
                        .map(|id| NodeAddr {
                            id,
                            name: node_name(id),
                            ip: Ipv4Addr::new(net[0], net[1], net[2], id as u8),
                            client_port: CLIENT_PORT,
                            peer_port: PEER_PORT,
                            zk_port: ZK_CLIENT_PORT,
                            system: self.spec.system,
                        })
                        .collect();
                    *self.addrs.lock().unwrap_or_else(|p| p.into_inner()) = addrs;
                    return Ok(());
                }
                // Another engine network (not a host route yet) holds this pool: try the next.
                Err(bollard::errors::Error::DockerResponseServerError { message, .. })
                    if message.contains("overlap") =>
                {
                    taken.push(net);
                }
                Err(e) => return Err(derr(&format!("creating network {name}"), e)),
            }
        }
        Err(ClusterError::Docker(format!(
            "creating network {name}: every subnet tried overlaps another network"
        )))
    }

    async fn create_node(&self, node: NodeId) -> Result<()> {
        let image = self
            .image
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| ClusterError::Invalid("the cluster is not set up yet".to_string()))?;
        let name = container_name(&self.tag, node);
        let volume = volume_name(&self.tag, node);
        let network = network_name(&self.tag);
        self.ledger.update(|l| {
            if !l.volumes.contains(&volume) {
                l.volumes.push(volume.clone());
            }
            if !l.containers.contains(&name) {
                l.containers.push(name.clone());
            }
        })?;
        self.docker
            .create_volume(VolumeCreateRequest {
                name: Some(volume.clone()),
                labels: Some(self.labels()),
                ..Default::default()
            })
            .await
            .map_err(|e| derr(&format!("creating volume {volume}"), e))?;
        let addrs = self.addrs();
        let ip = addrs[(node - 1) as usize].ip.to_string();
        let command = self.spec.node_command(node, &addrs, Path::new(DATA_DIR))?;
        if !command.files.is_empty() {
            return Err(ClusterError::Unsupported(format!(
                "the docker backend runs keeperd only, not {}: use --backend netns or local",
                self.spec.system
            )));
        }
        let body = ContainerCreateBody {
            image: Some(image),
            // The image's entrypoint is keeperd: the command's arguments are the container's.
            cmd: Some(command.args),
            env: Some(
                std::iter::once((RUN_ENV.to_string(), self.tag.to_string()))
                    .chain(command.env)
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect(),
            ),
            labels: Some(self.labels()),
            stop_timeout: Some((STOP_GRACE_MS / 1000) as i64),
            host_config: Some(HostConfig {
                binds: Some(vec![format!("{volume}:{DATA_DIR}")]),
                network_mode: Some(network.clone()),
                ..Default::default()
            }),
            networking_config: Some(NetworkingConfig {
                endpoints_config: Some(HashMap::from([(
                    network,
                    EndpointSettings {
                        ipam_config: Some(EndpointIpamConfig {
                            ipv4_address: Some(ip),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                )])),
            }),
            ..Default::default()
        };
        let options = CreateContainerOptionsBuilder::default().name(&name).build();
        self.docker
            .create_container(Some(options), body)
            .await
            .map_err(|e| derr(&format!("creating container {name}"), e))?;
        Ok(())
    }

    async fn signal(&self, node: NodeId, signal: &str) -> Result<()> {
        let name = container_name(&self.tag, node);
        let options = KillContainerOptionsBuilder::default()
            .signal(signal)
            .build();
        self.docker
            .kill_container(&name, Some(options))
            .await
            .map_err(|e| derr(&format!("sending {signal} to {name}"), e))
    }
}

/// Removes node images by name, after the containers that used them. Missing ones are not
/// errors; one still used by another run's containers (the engine answers 409) stays, since
/// that run is using it, and is not an error either.
pub(crate) async fn remove_images(docker: &Docker, images: &[String]) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    let mut first_error = None;
    for image in images {
        // Not forced: a forced removal would untag an image under a live run's containers.
        let options = RemoveImageOptionsBuilder::default().force(false).build();
        match docker.remove_image(image, Some(options), None).await {
            Ok(_) => removed.push(image.clone()),
            Err(e) if is_not_found(&e) => {}
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 409, ..
            }) => {
                tracing::info!("image {image} is in use by another run's containers: kept");
            }
            Err(e) => {
                first_error.get_or_insert(derr(&format!("removing image {image}"), e));
            }
        }
    }
    match first_error {
        None => Ok(removed),
        Some(e) => Err(e),
    }
}

/// Removes containers, networks and volumes by name; missing ones are not errors.
pub(crate) async fn remove_objects(
    docker: &Docker,
    containers: &[String],
    networks: &[String],
    volumes: &[String],
) -> Result<()> {
    let mut first_error = None;
    for c in containers {
        let options = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(true)
            .build();
        match docker.remove_container(c, Some(options)).await {
            Ok(()) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => {
                first_error.get_or_insert(derr(&format!("removing container {c}"), e));
            }
        }
    }
    for n in networks {
        match docker.remove_network(n).await {
            Ok(()) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => {
                first_error.get_or_insert(derr(&format!("removing network {n}"), e));
            }
        }
    }
    for v in volumes {
        let options = RemoveVolumeOptionsBuilder::default().force(true).build();
        match docker.remove_volume(v, Some(options)).await {
            Ok(()) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => {
                first_error.get_or_insert(derr(&format!("removing volume {v}"), e));
            }
        }
    }
    match first_error {
        None => Ok(()),
        Some(e) => Err(e),
    }
}

fn host_signal(pid: i64, sig: nix::sys::signal::Signal) {
    if pid > 0 {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig);
    }
}

impl Backend for DockerCluster {
    fn kind(&self) -> BackendKind {
        BackendKind::Docker
    }
    fn spec(&self) -> &ClusterSpec {
        &self.spec
    }
    fn addrs(&self) -> Vec<NodeAddr> {
        self.addrs.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    async fn setup(&self) -> Result<()> {
        self.ledger.update(|_| {})?;
        let ledger = &self.ledger;
        let image = ensure_image(&self.docker, &self.spec.keeperd, &self.tag, |image| {
            ledger.update(|l| l.images.push(image.to_string()))
        })
        .await?;
        *self.image.lock().unwrap_or_else(|p| p.into_inner()) = Some(image);
        self.create_network().await?;
        for node in self.spec.node_ids() {
            self.create_node(node).await?;
        }
        for node in self.spec.node_ids() {
            self.start(node).await?;
        }
        Ok(())
    }

    async fn start(&self, node: NodeId) -> Result<()> {
        check_node(&self.spec, node)?;
        let name = container_name(&self.tag, node);
        match self.inspect(node).await? {
            None => {
                return Err(ClusterError::Invalid(format!(
                    "container {name} does not exist: set the cluster up first"
                )));
            }
            Some(c) if c.running => return Ok(()),
            Some(_) => {}
        }
        self.docker
            .start_container(&name, None)
            .await
            .map_err(|e| derr(&format!("starting {name}"), e))
    }

    async fn stop(&self, node: NodeId) -> Result<()> {
        check_node(&self.spec, node)?;
        let Some(c) = self.inspect(node).await? else {
            return Ok(());
        };
        if !c.running {
            return Ok(());
        }
        let name = container_name(&self.tag, node);
        if c.paused {
            // The engine refuses to stop a paused container: queue SIGTERM, then thaw it.
            host_signal(c.pid, nix::sys::signal::Signal::SIGTERM);
            self.docker
                .unpause_container(&name)
                .await
                .map_err(|e| derr(&format!("unpausing {name}"), e))?;
        }
        let options = StopContainerOptionsBuilder::default()
            .t((STOP_GRACE_MS / 1000) as i32)
            .build();
        match self.docker.stop_container(&name, Some(options)).await {
            Ok(()) => Ok(()),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 304, ..
            }) => Ok(()),
            Err(e) => Err(derr(&format!("stopping {name}"), e)),
        }
    }

    async fn kill(&self, node: NodeId) -> Result<()> {
        check_node(&self.spec, node)?;
        let Some(c) = self.inspect(node).await? else {
            return Ok(());
        };
        if !c.running {
            return Ok(());
        }
        if c.paused {
            // SIGKILL is delivered the moment the freezer thaws: the node runs no more code.
            host_signal(c.pid, nix::sys::signal::Signal::SIGKILL);
            let name = container_name(&self.tag, node);
            self.docker
                .unpause_container(&name)
                .await
                .map_err(|e| derr(&format!("unpausing {name}"), e))?;
        } else {
            self.signal(node, "SIGKILL").await?;
        }
        // Wait (bounded) until the engine sees it down, so a following start is not refused.
        const KILL_SETTLE_POLLS: usize = 100;
        for _ in 0..KILL_SETTLE_POLLS {
            if !self.inspect(node).await?.is_some_and(|c| c.running) {
                return Ok(());
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        Err(ClusterError::Docker(format!(
            "node {node} still runs after SIGKILL"
        )))
    }

    async fn pause(&self, node: NodeId) -> Result<()> {
        check_node(&self.spec, node)?;
        match self.inspect(node).await? {
            Some(c) if c.running && c.paused => return Ok(()),
            Some(c) if c.running => {}
            _ => return Err(ClusterError::NotRunning(node)),
        }
        let name = container_name(&self.tag, node);
        self.docker
            .pause_container(&name)
            .await
            .map_err(|e| derr(&format!("pausing {name}"), e))
    }

    async fn resume(&self, node: NodeId) -> Result<()> {
        check_node(&self.spec, node)?;
        match self.inspect(node).await? {
            Some(c) if c.paused => {}
            _ => return Ok(()),
        }
        let name = container_name(&self.tag, node);
        self.docker
            .unpause_container(&name)
            .await
            .map_err(|e| derr(&format!("unpausing {name}"), e))
    }

    async fn wipe(&self, node: NodeId) -> Result<()> {
        check_node(&self.spec, node)?;
        if self.inspect(node).await?.is_some_and(|c| c.running) {
            return Err(ClusterError::Invalid(format!(
                "node {node} must be down to wipe its data"
            )));
        }
        // A volume cannot be emptied through the API: replace the container and its volume.
        remove_objects(
            &self.docker,
            &[container_name(&self.tag, node)],
            &[],
            &[volume_name(&self.tag, node)],
        )
        .await?;
        self.create_node(node).await
    }

    async fn state(&self, node: NodeId) -> Result<NodeState> {
        check_node(&self.spec, node)?;
        Ok(match self.inspect(node).await? {
            Some(c) if c.running && c.paused => NodeState::Paused,
            Some(c) if c.running => NodeState::Running,
            _ => NodeState::Down,
        })
    }

    async fn collect_logs(&self, dir: &Path) -> Result<()> {
        for node in self.spec.node_ids() {
            let name = container_name(&self.tag, node);
            if self.inspect(node).await?.is_none() {
                continue;
            }
            let options = LogsOptionsBuilder::default()
                .stdout(true)
                .stderr(true)
                .follow(false)
                .build();
            let mut log = Vec::new();
            let mut stream = self.docker.logs(&name, Some(options));
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| derr(&format!("reading the log of {name}"), e))?;
                log.extend_from_slice(&chunk.into_bytes());
            }
            let path = crate::node_log_path(dir, node, self.spec.system);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| ClusterError::io(format!("creating {}", parent.display()), e))?;
            }
            std::fs::write(&path, log)
                .map_err(|e| ClusterError::io(format!("writing {}", path.display()), e))?;
        }
        Ok(())
    }

    async fn run_on_node(&self, node: NodeId, cmd: &[String]) -> Result<CommandRecord> {
        check_node(&self.spec, node)?;
        let pid = match self.inspect(node).await? {
            Some(c) if c.running && c.pid > 0 => c.pid,
            _ => return Err(ClusterError::NotRunning(node)),
        };
        let mut full = argv(&["nsenter", "-t", &pid.to_string(), "-n"]);
        full.extend(cmd.iter().cloned());
        run(&full).await
    }

    async fn teardown(&self) -> Result<()> {
        let recorded = self.ledger.snapshot();
        remove_objects(
            &self.docker,
            &recorded.containers,
            &recorded.networks,
            &recorded.volumes,
        )
        .await?;
        remove_images(&self.docker, &recorded.images).await?;
        self.ledger.remove();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn dynamic_binaries_are_recognised() {
        // The test binary itself is dynamically linked.
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert!(super::has_interpreter(&me));
        assert!(!super::has_interpreter(b"not an elf file"));
    }
}
