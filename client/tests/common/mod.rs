//! A real keeperd for the tests: started on a free loopback port with its own data directory,
//! killed when dropped.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use keeper_client::NodeClient;

/// How long a fresh keeperd may take to serve.
pub const STARTUP_TIMEOUT_MS: u64 = 20_000;
const STARTUP_POLL_MS: u64 = 50;

pub fn keeperd_binary() -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_keeper-cli")).with_file_name("keeperd");
    assert!(
        path.exists(),
        "build keeperd first: cargo build -p keeper (looked for {})",
        path.display()
    );
    path
}

pub fn cli_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_keeper-cli"))
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local addr").port()
}

pub struct Keeperd {
    child: Child,
    pub url: String,
    _dir: tempfile::TempDir,
}

impl Keeperd {
    /// Starts a single-node keeperd and waits until it serves.
    pub async fn start() -> Keeperd {
        let server = Keeperd::spawn(1, &[]);
        server.wait_serving().await;
        server
    }

    /// Starts node `id` of an ensemble (`peers`: `1=HOST:PORT,...`, empty for standalone)
    /// without waiting.
    fn spawn(id: u64, peers: &[String]) -> Keeperd {
        let dir = tempfile::tempdir().expect("temp dir");
        let addr = format!("127.0.0.1:{}", free_port());
        let log = std::fs::File::create(dir.path().join("keeperd.log")).expect("log file");
        let mut command = Command::new(keeperd_binary());
        command
            .args(["--id", &id.to_string(), "--data-dir"])
            .arg(dir.path().join("data"))
            .args(["--client-addr", &addr]);
        if !peers.is_empty() {
            command.args(["--peers", &peers.join(",")]);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("start keeperd");
        Keeperd {
            child,
            url: format!("http://{addr}"),
            _dir: dir,
        }
    }

    /// SIGKILL, as a crash.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    async fn wait_serving(&self) {
        let node = NodeClient::new(&self.url, Duration::from_millis(500)).expect("node client");
        let deadline = Instant::now() + Duration::from_millis(STARTUP_TIMEOUT_MS);
        loop {
            if let Ok(status) = node.status().await
                && status.serving
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "keeperd at {} did not serve within {STARTUP_TIMEOUT_MS} ms; log:\n{}",
                self.url,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(STARTUP_POLL_MS)).await;
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("keeperd.log")).unwrap_or_default()
    }
}

impl Drop for Keeperd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback ensemble of keeperd processes.
pub struct Ensemble {
    pub nodes: Vec<Keeperd>,
}

impl Ensemble {
    /// Starts `size` nodes and waits until each serves.
    pub async fn start(size: u64) -> Ensemble {
        let peers: Vec<String> = (1..=size)
            .map(|id| format!("{id}=127.0.0.1:{}", free_port()))
            .collect();
        let nodes: Vec<Keeperd> = (1..=size).map(|id| Keeperd::spawn(id, &peers)).collect();
        for node in &nodes {
            node.wait_serving().await;
        }
        Ensemble { nodes }
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.url.clone()).collect()
    }

    /// Index of the node that reports itself leading, if one does.
    pub async fn leader(&self) -> Option<usize> {
        for (i, node) in self.nodes.iter().enumerate() {
            let client = NodeClient::new(&node.url, Duration::from_millis(500)).ok()?;
            if let Ok(status) = client.status().await
                && status.role == keeper_client::api::Role::Leading
            {
                return Some(i);
            }
        }
        None
    }
}
