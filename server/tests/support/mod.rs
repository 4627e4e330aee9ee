//! Test support: real `keeperd` processes on loopback and a small JSON/SSE client for them.
//! Every wait here is bounded; a test that waits too long fails with what it was waiting for.
#![allow(dead_code)]

use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long a node may take to print its ready line.
pub const START_TIMEOUT_MS: u64 = 30_000;
/// How long a node may take to exit after SIGTERM.
pub const STOP_TIMEOUT_MS: u64 = 15_000;
/// Per-request bound of the test client.
pub const REQUEST_TIMEOUT_MS: u64 = 15_000;
/// How long a condition polled by `eventually` may take to become true.
pub const EVENTUALLY_MS: u64 = 30_000;

/// Lowest port `free_port` hands out.
const MIN_TEST_PORT: u16 = 10_000;
/// Tries of `free_port` before it gives up.
const MAX_PORT_TRIES: usize = 10_000;

/// A port that was free a moment ago, for peer addresses (every node must know them before any
/// starts; client ports use port 0 instead). It lies below the kernel's ephemeral range: a
/// port from that range, left unbound while its node is down, can be taken as the source port
/// of any outgoing connection, and the node could not bind it again when it restarts.
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .next()
                .and_then(|p| p.parse::<u16>().ok())
        })
        .unwrap_or(32_768)
        .max(MIN_TEST_PORT + 1_000);
    let span = (ephemeral_start - MIN_TEST_PORT) as u64;
    for _ in 0..MAX_PORT_TRIES {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        let port = MIN_TEST_PORT + (h.finish() % span) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port on 127.0.0.1 below {ephemeral_start}");
}

/// One keeperd process.
pub struct Node {
    pub id: u64,
    pub data_dir: PathBuf,
    pub client_addr: SocketAddr,
    /// Flags it was started with, for a restart.
    pub args: Vec<String>,
    pub log_path: PathBuf,
    child: Option<Child>,
}

impl Node {
    /// Starts keeperd with `--id`, `--data-dir`, `--client-addr 127.0.0.1:0` and `extra`, and
    /// waits for its ready line.
    pub fn start(id: u64, data_dir: &Path, extra: &[String]) -> Node {
        let mut args = vec![
            "--id".to_string(),
            id.to_string(),
            "--data-dir".to_string(),
            data_dir.display().to_string(),
            "--client-addr".to_string(),
            "127.0.0.1:0".to_string(),
        ];
        args.extend(extra.iter().cloned());
        let log_path = data_dir.with_extension(format!("{id}.log"));
        Node::spawn(id, data_dir.to_path_buf(), args, log_path)
    }

    fn spawn(id: u64, data_dir: PathBuf, args: Vec<String>, log_path: PathBuf) -> Node {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("cannot open the node's log file");
        let mut child = Command::new(env!("CARGO_BIN_EXE_keeperd"))
            .args(&args)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or("info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("cannot start keeperd");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            // Keep draining so the node never blocks on a full pipe.
            for _ in lines {}
        });
        let line = match rx.recv_timeout(Duration::from_millis(START_TIMEOUT_MS)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "keeperd {id} printed no ready line within {START_TIMEOUT_MS} ms; log:\n{}",
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                );
            }
        };
        let client_addr = line
            .rsplit(' ')
            .next()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("unexpected ready line {line:?}"));
        Node {
            id,
            data_dir,
            client_addr,
            args,
            log_path,
            child: Some(child),
        }
    }

    pub fn api(&self) -> Api {
        Api::new(self.client_addr)
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(0)
    }

    /// SIGKILL: no chance to flush or sync anything.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait for the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("node is running");
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_millis(STOP_TIMEOUT_MS);
        loop {
            if let Some(status) = child.try_wait().expect("wait for keeperd") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "keeperd {} did not exit within {STOP_TIMEOUT_MS} ms of SIGTERM",
                    self.id
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the node again with the same flags and data directory (on a new client port:
    /// it was started with port 0).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop the node before restarting it");
        let (id, dir, args, log) = (
            self.id,
            self.data_dir.clone(),
            self.args.clone(),
            self.log_path.clone(),
        );
        *self = Node::spawn(id, dir, args, log);
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// `n` ensemble members on loopback: returns each node's `--peers` list entry flags.
pub fn ensemble_flags(n: u64, extra: &[&str]) -> Vec<Vec<String>> {
    let mut ports: Vec<u16> = Vec::new();
    while ports.len() < n as usize {
        let port = free_port();
        if !ports.contains(&port) {
            ports.push(port);
        }
    }
    let peers = ports
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{}=127.0.0.1:{p}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    (0..n)
        .map(|_| {
            let mut flags = vec!["--peers".to_string(), peers.clone()];
            flags.extend(extra.iter().map(|s| s.to_string()));
            flags
        })
        .collect()
}

/// Polls `check` until it returns `Some`, for at most `EVENTUALLY_MS`.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_millis(EVENTUALLY_MS);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "gave up after {EVENTUALLY_MS} ms waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A reply: the HTTP status and the JSON body (`Value::Null` if the body is not JSON).
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
}

impl Reply {
    /// Asserts success and returns the body.
    pub fn ok(self) -> Value {
        assert!(self.status.is_success(), "expected success, got {self:?}");
        self.body
    }

    /// Asserts an error with this code and HTTP status; returns the body.
    pub fn err(self, code: &str, status: u16) -> Value {
        assert_eq!(
            (self.status.as_u16(), self.body["error"].as_str()),
            (status, Some(code)),
            "expected {code} ({status}), got {self:?}"
        );
        assert!(
            self.body["message"].is_string(),
            "an error names its problem: {self:?}"
        );
        self.body
    }
}

/// A minimal client of keeperd's HTTP API, raw enough to send malformed requests.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    http: reqwest::Client,
}

impl Api {
    pub fn new(addr: SocketAddr) -> Api {
        // No pooled connections: after a refused oversized body the server closes the
        // connection, and a pooled one could be reused just as it goes away.
        let http = reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(0)
            .build()
            .expect("reqwest client");
        Api {
            base: format!("http://{addr}"),
            http,
        }
    }

    async fn finish(&self, req: reqwest::RequestBuilder) -> Result<Reply, reqwest::Error> {
        let resp = req
            .timeout(Duration::from_millis(REQUEST_TIMEOUT_MS))
            .send()
            .await?;
        let status = resp.status();
        let bytes = resp.bytes().await?;
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok(Reply { status, body })
    }

    /// POSTs JSON; panics if the node cannot be reached.
    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.try_post(path, body)
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"))
    }

    pub async fn try_post(&self, path: &str, body: Value) -> Result<Reply, reqwest::Error> {
        let req = self.http.post(format!("{}{path}", self.base)).json(&body);
        self.finish(req).await
    }

    /// POSTs raw bytes as JSON.
    pub async fn post_raw(&self, path: &str, body: Vec<u8>) -> Reply {
        let req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body);
        self.finish(req)
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"))
    }

    pub async fn get(&self, path: &str) -> Reply {
        let req = self.http.get(format!("{}{path}", self.base));
        self.finish(req)
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    pub async fn delete(&self, path: &str) -> Reply {
        let req = self.http.delete(format!("{}{path}", self.base));
        self.finish(req)
            .await
            .unwrap_or_else(|e| panic!("DELETE {path}: {e}"))
    }

    pub async fn status(&self) -> Option<Value> {
        let req = self.http.get(format!("{}/status", self.base));
        self.finish(req).await.ok().map(|r| r.body)
    }

    /// Waits until the node serves clients, then opens a session.
    pub async fn session(&self, timeout_ms: u64) -> u64 {
        eventually("the node to serve clients", || async {
            self.status().await.filter(|s| s["serving"] == json!(true))
        })
        .await;
        let reply = self
            .post("/v1/sessions", json!({ "timeout_ms": timeout_ms }))
            .await
            .ok();
        reply["session"].as_u64().expect("session id")
    }

    pub async fn create(&self, session: u64, path: &str, data: &str, mode: &str) -> Reply {
        self.post(
            "/v1/create",
            json!({ "session": session, "path": path, "data": data, "mode": mode }),
        )
        .await
    }

    pub async fn get_data(&self, session: u64, path: &str, watch: bool) -> Reply {
        self.post(
            "/v1/get_data",
            json!({ "session": session, "path": path, "watch": watch }),
        )
        .await
    }

    pub async fn exists(&self, session: u64, path: &str, watch: bool) -> Reply {
        self.post(
            "/v1/exists",
            json!({ "session": session, "path": path, "watch": watch }),
        )
        .await
    }

    pub async fn set_data(&self, session: u64, path: &str, data: &str, version: i32) -> Reply {
        self.post(
            "/v1/set_data",
            json!({ "session": session, "path": path, "data": data, "version": version }),
        )
        .await
    }

    pub async fn children(&self, session: u64, path: &str, watch: bool) -> Reply {
        self.post(
            "/v1/get_children",
            json!({ "session": session, "path": path, "watch": watch }),
        )
        .await
    }

    pub async fn delete_node(&self, session: u64, path: &str, version: i32) -> Reply {
        self.post(
            "/v1/delete",
            json!({ "session": session, "path": path, "version": version }),
        )
        .await
    }

    /// Opens the session's event stream; `Err` carries the refusal.
    pub async fn events(&self, session: u64) -> Result<EventStream, Reply> {
        let resp = self
            .http
            .get(format!("{}/v1/sessions/{session}/events", self.base))
            .send()
            .await
            .expect("GET events");
        let status = resp.status();
        if !status.is_success() {
            let bytes = resp.bytes().await.unwrap_or_default();
            let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            return Err(Reply { status, body });
        }
        Ok(EventStream {
            bytes: Box::pin(resp.bytes_stream()),
            buf: String::new(),
        })
    }
}

/// A server-sent-event stream, parsed just enough for keeperd's events.
pub struct EventStream {
    bytes: std::pin::Pin<
        Box<dyn futures::Stream<Item = Result<axum::body::Bytes, reqwest::Error>> + Send>,
    >,
    buf: String,
}

/// How long a test waits for one event it expects.
pub const EVENT_TIMEOUT_MS: u64 = 15_000;

impl EventStream {
    /// The next event as (name, JSON data); `None` when the stream ended. Keep-alive comments
    /// are skipped. Panics if nothing arrives within `EVENT_TIMEOUT_MS`.
    pub async fn next(&mut self) -> Option<(String, Value)> {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(EVENT_TIMEOUT_MS);
        loop {
            while let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut name = String::from("message");
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        name = v.trim().to_string();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if !data.is_empty() {
                    let value = serde_json::from_str(&data)
                        .unwrap_or_else(|e| panic!("event data {data:?} is not JSON: {e}"));
                    return Some((name, value));
                }
            }
            let chunk = tokio::time::timeout_at(deadline, self.bytes.next())
                .await
                .unwrap_or_else(|_| panic!("no event within {EVENT_TIMEOUT_MS} ms"));
            match chunk {
                Some(Ok(bytes)) => self.buf.push_str(&String::from_utf8_lossy(&bytes)),
                Some(Err(_)) | None => return None,
            }
        }
    }
}
