//! A process's connection: one keeper session on exactly one node, kept alive by our own
//! heartbeats, over `NodeClient` (no failover, no retries), so every request goes where the
//! worker chose and every reply's zxid is known. Also maps client errors onto completions.

use crate::client::Completion;
use futures::FutureExt;
use keeper_client::{Error, NodeClient, StreamEvent};
use keeper_wire::{
    CreateSessionRequest, ErrorCode, HeartbeatRequest, SessionEvent, SessionId, WatchEvent, Zxid,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Session timeout every process asks for. Long enough to survive a short pause of its node's
/// leader, short enough that expiries happen within a test.
pub const SESSION_TIMEOUT_MS: u64 = 6_000;
/// Pause before reopening a broken event stream.
const EVENT_RECONNECT_MS: u64 = 200;

/// What a session's event stream reported.
#[derive(Clone, Debug)]
pub enum ConnEvent {
    Watch(WatchEvent),
    /// The session expired or was closed (`state`), at `zxid`.
    Ended(SessionEvent),
    /// The stream broke: watches set on this node may be lost.
    Disconnected,
}

/// One session on one node.
pub struct Conn {
    pub node: NodeClient,
    pub session: SessionId,
    pub timeout: Duration,
    last_zxid: Arc<AtomicU64>,
    heartbeats: Arc<AtomicBool>,
    /// Set when a heartbeat learned the session is gone.
    expired: Arc<AtomicBool>,
    cancel: CancellationToken,
}

impl Conn {
    /// Creates a session on `url` and starts heartbeating it every third of its timeout.
    pub async fn open(url: &str, op_timeout: Duration) -> Result<Conn, String> {
        let node = NodeClient::new(url, op_timeout).map_err(|e| e.to_string())?;
        let reply = node
            .create_session(&CreateSessionRequest {
                timeout_ms: SESSION_TIMEOUT_MS,
                last_zxid: 0,
            })
            .await
            .map_err(|e| format!("create_session on {url}: {e}"))?;
        let conn = Conn {
            node,
            session: reply.session,
            timeout: Duration::from_millis(reply.timeout_ms),
            last_zxid: Arc::new(AtomicU64::new(reply.zxid)),
            heartbeats: Arc::new(AtomicBool::new(true)),
            expired: Arc::new(AtomicBool::new(false)),
            cancel: CancellationToken::new(),
        };
        conn.spawn_heartbeats();
        Ok(conn)
    }

    fn spawn_heartbeats(&self) {
        let (node, session, last, enabled, expired, cancel) = (
            self.node.with_timeout(self.timeout / 3),
            self.session,
            self.last_zxid.clone(),
            self.heartbeats.clone(),
            self.expired.clone(),
            self.cancel.clone(),
        );
        let period = self.timeout / 3;
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(period) => {}
                }
                if !enabled.load(Ordering::Relaxed) {
                    continue;
                }
                let req = HeartbeatRequest {
                    last_zxid: last.load(Ordering::Relaxed),
                };
                match node.heartbeat(session, &req).await {
                    Ok(r) => {
                        last.fetch_max(r.zxid, Ordering::Relaxed);
                    }
                    Err(e) if e.code() == ErrorCode::SessionExpired => {
                        expired.store(true, Ordering::Relaxed);
                        return;
                    }
                    Err(_) => {}
                }
            }
        });
    }

    /// Streams the session's events into `sink` until the session ends or the connection is
    /// dropped. Reopens a broken stream (after reporting `Disconnected`).
    pub fn spawn_events(&self, sink: impl Fn(ConnEvent) + Send + Sync + 'static) {
        let (node, session, cancel) = (self.node.clone(), self.session, self.cancel.clone());
        tokio::spawn(async move {
            loop {
                let stream = tokio::select! {
                    _ = cancel.cancelled() => return,
                    s = node.events(session) => s,
                };
                match stream {
                    Ok(mut stream) => loop {
                        let item = tokio::select! {
                            _ = cancel.cancelled() => return,
                            item = stream.next() => item,
                        };
                        match item {
                            Some(Ok(StreamEvent::Watch(w))) => sink(ConnEvent::Watch(w)),
                            Some(Ok(StreamEvent::Session(s))) => {
                                sink(ConnEvent::Ended(s));
                                return;
                            }
                            // The server dropped events: as good as a broken stream.
                            Some(Ok(StreamEvent::Overflow { .. })) => sink(ConnEvent::Disconnected),
                            Some(Err(_)) | None => {
                                sink(ConnEvent::Disconnected);
                                break;
                            }
                        }
                    },
                    Err(e) if e.code() == ErrorCode::SessionExpired => return,
                    Err(_) => sink(ConnEvent::Disconnected),
                }
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(EVENT_RECONNECT_MS)) => {}
                }
            }
        });
    }

    pub fn last_zxid(&self) -> Zxid {
        self.last_zxid.load(Ordering::Relaxed)
    }

    /// Remembers a zxid a reply carried (requests send the largest seen).
    pub fn saw(&self, zxid: Zxid) {
        self.last_zxid.fetch_max(zxid, Ordering::Relaxed);
    }

    pub fn set_heartbeats(&self, enabled: bool) {
        self.heartbeats.store(enabled, Ordering::Relaxed);
    }

    pub fn known_expired(&self) -> bool {
        self.expired.load(Ordering::Relaxed)
    }

    /// Closes the session on the server (bounded by the client's timeout) and stops the tasks.
    pub async fn close(&self) -> Result<Zxid, Error> {
        self.cancel.cancel();
        let req = HeartbeatRequest {
            last_zxid: self.last_zxid(),
        };
        let r = self
            .node
            .close_session(self.session, &req)
            .await
            .map(|r| r.zxid);
        if let Ok(z) = r {
            self.saw(z);
        }
        r
    }

    /// Stops the background tasks without telling the server (it expires the session).
    pub fn abandon(&self) {
        self.cancel.cancel();
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// How a failed request ends in the history: indeterminate errors are `info`, definite ones
/// `fail`; an expired session also makes the worker open a new one.
pub fn completion_of(e: &Error) -> Completion {
    let code = e.code();
    if e.is_indeterminate() {
        return Completion::info(code.as_str());
    }
    let c = Completion::fail(code.as_str());
    if code == ErrorCode::SessionExpired {
        c.reopening()
    } else {
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use checker::history::EventType;
    use keeper_wire::KeeperError;

    #[test]
    fn indeterminate_errors_become_info_and_expiry_reopens() {
        let timeout = Error::Timeout {
            url: "u".into(),
            message: "m".into(),
        };
        assert_eq!(completion_of(&timeout).kind, EventType::Info);
        let lost = Error::ConnectionLost {
            url: "u".into(),
            message: "m".into(),
        };
        assert_eq!(completion_of(&lost).kind, EventType::Info);
        let refused = Error::Unreachable {
            url: "u".into(),
            message: "m".into(),
        };
        assert_eq!(completion_of(&refused).kind, EventType::Fail);
        let expired = Error::Keeper(KeeperError::new(ErrorCode::SessionExpired, "gone"));
        let c = completion_of(&expired);
        assert_eq!((c.kind, c.reopen), (EventType::Fail, true));
        let bad = Error::Keeper(KeeperError::new(ErrorCode::BadVersion, "v"));
        assert_eq!(completion_of(&bad).error.as_deref(), Some("bad_version"));
    }
}

/// Creates each of `paths` (persistent, empty) that does not exist yet, parents first, with a
/// short-lived session on one of `urls`. Retries while the cluster settles, until `budget`.
/// A workload's setup: creates `paths` (persistent, in order) through any node that answers,
/// within the setup budget.
pub fn setup_paths(
    env: &super::Env,
    paths: Vec<String>,
) -> futures::future::BoxFuture<'_, anyhow::Result<()>> {
    async move {
        let urls: Vec<String> = env.nodes.iter().map(|n| n.url.clone()).collect();
        ensure_paths(
            &urls,
            &paths,
            env.op_timeout,
            Duration::from_millis(SETUP_BUDGET_MS),
        )
        .await
    }
    .boxed()
}

pub async fn ensure_paths(
    urls: &[String],
    paths: &[String],
    op_timeout: Duration,
    budget: Duration,
) -> anyhow::Result<()> {
    use keeper_wire::{CreateMode, CreateRequest};
    let deadline = tokio::time::Instant::now() + budget;
    let mut last_error = String::new();
    let mut attempt = 0usize;
    while tokio::time::Instant::now() < deadline {
        let url = &urls[attempt % urls.len().max(1)];
        attempt += 1;
        let conn = match Conn::open(url, op_timeout).await {
            Ok(c) => c,
            Err(e) => {
                last_error = e;
                tokio::time::sleep(Duration::from_millis(EVENT_RECONNECT_MS)).await;
                continue;
            }
        };
        let mut done = true;
        for path in paths {
            let req = CreateRequest {
                session: conn.session,
                last_zxid: conn.last_zxid(),
                path: path.clone(),
                data: String::new(),
                mode: CreateMode::Persistent,
            };
            match conn.node.create(&req).await {
                Ok(r) => conn.saw(r.zxid),
                Err(e) if e.code() == ErrorCode::NodeExists => {}
                Err(e) => {
                    last_error = format!("creating {path} on {url}: {e}");
                    done = false;
                    break;
                }
            }
        }
        let _ = conn.close().await;
        if done {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(EVENT_RECONNECT_MS)).await;
    }
    anyhow::bail!("could not create the workload's znodes within {budget:?}: {last_error}")
}

/// A znode's data as the history records it: JSON when it parses, else the string.
pub fn data_value(data: &str) -> serde_json::Value {
    serde_json::from_str(data).unwrap_or_else(|_| serde_json::Value::String(data.to_string()))
}

/// How long a workload's setup may take: the fresh cluster may still be settling.
pub const SETUP_BUDGET_MS: u64 = 30_000;

/// Records what a client learns without asking (watch events, its session's end) as single
/// `ok` lines of its process. While one of the process's operations is in flight they are
/// held back until its completion is recorded: an event can arrive before the reply of the
/// read that set its watch, and the history must show the watch first. After an `info` the
/// process is over, and later observations are dropped (its session is then in doubt anyway).
#[derive(Clone)]
pub struct Observer {
    recorder: crate::recorder::Recorder,
    process: u64,
    session: u64,
    node: String,
    state: Arc<std::sync::Mutex<ObserverState>>,
}

#[derive(Default)]
struct ObserverState {
    in_flight: bool,
    held: Vec<checker::history::Event>,
    over: bool,
}

impl Observer {
    pub fn new(
        recorder: &crate::recorder::Recorder,
        process: u64,
        session: u64,
        node: &str,
    ) -> Observer {
        Observer {
            recorder: recorder.clone(),
            process,
            session,
            node: node.to_string(),
            state: Arc::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ObserverState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An operation of this process is about to be recorded.
    pub fn begin_op(&self) {
        self.lock().in_flight = true;
    }

    /// Its completion is recorded: release what was held (or drop it after an `info`).
    pub fn end_op(&self, completion: &Completion) {
        let mut state = self.lock();
        state.in_flight = false;
        if completion.kind == checker::history::EventType::Info {
            state.over = true;
            state.held.clear();
            return;
        }
        for event in std::mem::take(&mut state.held) {
            self.recorder.record(event);
        }
    }

    /// Records (or holds) an observation: `f` is `event` or `expired`.
    pub fn observe(
        &self,
        f: &str,
        key: Option<&str>,
        value: serde_json::Value,
        zxid: Option<Zxid>,
    ) {
        let event = checker::history::Event {
            index: 0,
            time: 0,
            process: self.process,
            kind: checker::history::EventType::Ok,
            f: f.to_string(),
            value,
            key: key.map(str::to_string),
            error: None,
            node: Some(self.node.clone()),
            zxid,
            session: Some(self.session),
        };
        let mut state = self.lock();
        if state.over {
            return;
        }
        if state.in_flight {
            state.held.push(event);
        } else {
            // Recorded under our lock so it cannot overtake a release in end_op.
            self.recorder.record(event);
        }
    }

    /// The process is over (its client is being dropped): nothing more is recorded.
    pub fn finish(&self) {
        let mut state = self.lock();
        state.over = true;
        state.held.clear();
    }
}
