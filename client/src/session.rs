//! [`Session`]: a keeper session over an ensemble, ZooKeeper-client style.
//!
//! One session lives on one server at a time (the *current* one). Two background tasks keep it
//! going: the heartbeat task (every third of the session timeout) and the event reader (the
//! session's SSE stream on the current server). Both fail over to the next server when the
//! current one is unreachable or refuses (`not_ready`).
//!
//! Retry rules, because a tester's verdict depends on them:
//! - a request the server did not accept (`not_ready`, connection refused) is retried on the next
//!   server, reads and writes alike, until the request timeout is used up;
//! - a read whose outcome is unknown (timeout, connection lost) is retried the same way;
//! - a write whose outcome is unknown is NEVER retried: its indeterminate error is returned.
//!
//! Every request carries the largest zxid this session has seen (`last_zxid`), so a server that
//! is behind refuses it and the session never reads an older view after failing over.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use keeper_wire::{
    Consistency, CreateMode, CreateRequest, CreateSessionRequest, DeleteRequest, ErrorCode,
    HeartbeatRequest, KeeperError, MultiRequest, Op, OpResult, ReadRequest, SessionId,
    SetDataRequest, Stat, SyncRequest, WatchEvent, Zxid,
};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::error::{Error, Result};
use crate::node::{NodeClient, StreamEvent};

/// Session timeout asked for unless the config says otherwise (the server clamps it).
pub const DEFAULT_SESSION_TIMEOUT_MS: u64 = 6_000;
/// How long [`Session::connect`] keeps trying the servers unless the config says otherwise.
pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 10_000;
/// Pause after every server refused in turn, so a leaderless ensemble is not hammered.
const ROUND_BACKOFF_MS: u64 = 100;
/// Pause before reopening a broken event stream.
const EVENT_RECONNECT_BACKOFF_MS: u64 = 200;
/// Events buffered for a receiver from [`Session::events`] before delivery waits for it.
pub const EVENT_QUEUE_LEN: usize = 1_024;
/// Events buffered for a recipe's internal subscription; recipes re-check on their own, so an
/// overflow there only loses a wake-up.
pub(crate) const RECIPE_EVENT_QUEUE_LEN: usize = 64;

/// How to reach the ensemble and how long to wait.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Server URLs (`http://127.0.0.1:2181` or `127.0.0.1:2181`), tried in this order.
    pub servers: Vec<String>,
    /// Requested session timeout; the server may clamp it ([`Session::timeout`] has the result).
    pub session_timeout: Duration,
    /// Budget of one operation, failovers included.
    pub request_timeout: Duration,
    /// Budget of [`Session::connect`], all servers included.
    pub connect_timeout: Duration,
    /// Consistency of reads unless [`Session::with_consistency`] says otherwise.
    pub read_consistency: Consistency,
}

impl ClientConfig {
    pub fn new<S: Into<String>>(servers: impl IntoIterator<Item = S>) -> ClientConfig {
        ClientConfig {
            servers: servers.into_iter().map(Into::into).collect(),
            session_timeout: Duration::from_millis(DEFAULT_SESSION_TIMEOUT_MS),
            request_timeout: Duration::from_millis(crate::node::DEFAULT_REQUEST_TIMEOUT_MS),
            connect_timeout: Duration::from_millis(DEFAULT_CONNECT_TIMEOUT_MS),
            read_consistency: Consistency::Local,
        }
    }
}

/// What a session's event receiver yields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A watch fired.
    Watch(WatchEvent),
    /// The event stream broke, the server dropped undelivered events, or the session moved to
    /// another server. Watches set before may be lost (they live on the server that took them,
    /// as in ZooKeeper): read again with `watch = true` to re-register them.
    Disconnected,
    /// The ensemble expired the session; its ephemeral nodes are gone. Nothing follows.
    Expired,
    /// The session was closed. Nothing follows.
    Closed,
}

/// Where a session is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionState {
    Active,
    Expired,
    Closed,
}

struct Subscriber {
    /// Only watch events whose path starts with this (all events when `None`); session-wide
    /// events (disconnected, expired, closed) always go through.
    path_prefix: Option<String>,
    /// A full queue drops the event instead of waiting (for recipes, which re-check anyway).
    lossy: bool,
    tx: mpsc::Sender<Event>,
}

struct Shared {
    id: SessionId,
    timeout: Duration,
    request_timeout: Duration,
    nodes: Vec<NodeClient>,
    /// Index into `nodes` of the current server; the event reader follows its changes.
    current: watch::Sender<usize>,
    last_zxid: AtomicU64,
    state: Mutex<SessionState>,
    subscribers: Mutex<Vec<Subscriber>>,
    heartbeats: AtomicBool,
    cancel: CancellationToken,
}

/// A keeper session. Clones share the session (and may differ in read consistency and request
/// timeout); the background tasks stop on [`Session::close`] or when the last clone is dropped
/// (the server then expires the session after its timeout).
#[derive(Clone)]
pub struct Session {
    shared: Arc<Shared>,
    _stop_on_drop: Arc<DropGuard>,
    consistency: Consistency,
    request_timeout: Duration,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Retried elsewhere after any failure but a definite answer.
    Read,
    /// Retried elsewhere only when the server did not accept it.
    Write,
}

trait Reply {
    fn zxid(&self) -> Zxid;
}

macro_rules! reply_zxid {
    ($($t:ty),*) => {
        $(impl Reply for $t {
            fn zxid(&self) -> Zxid {
                self.zxid
            }
        })*
    };
}
reply_zxid!(
    keeper_wire::CreateReply,
    keeper_wire::ZxidReply,
    keeper_wire::StatReply,
    keeper_wire::ExistsReply,
    keeper_wire::DataReply,
    keeper_wire::ChildrenReply,
    keeper_wire::MultiReply,
    keeper_wire::SessionReply
);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding these locks leaves plain data behind; keep going with it.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Session {
    /// Creates a session on the first server that accepts it, trying them in order (and again)
    /// until `config.connect_timeout` is used up, then starts the heartbeat and event tasks.
    pub async fn connect(config: ClientConfig) -> Result<Session> {
        if config.servers.is_empty() {
            return Err(Error::BadArguments("no servers given".to_string()));
        }
        if config.session_timeout.is_zero() || config.request_timeout.is_zero() {
            return Err(Error::BadArguments(
                "session and request timeouts must be positive".to_string(),
            ));
        }
        let nodes = NodeClient::for_servers(&config.servers, config.request_timeout)?;
        let deadline = Instant::now() + config.connect_timeout;
        let request = CreateSessionRequest {
            timeout_ms: config
                .session_timeout
                .as_millis()
                .try_into()
                .unwrap_or(u64::MAX),
            last_zxid: 0,
        };
        let mut index = 0;
        let reply = loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let attempt = nodes[index].with_timeout(remaining.min(config.request_timeout));
            // An indeterminate failure may leave a session behind on the server; nobody
            // heartbeats it, so it expires on its own.
            let error = match attempt.create_session(&request).await {
                Ok(reply) => break reply,
                Err(e) => e,
            };
            if matches!(error, Error::BadArguments(_)) || error.code() == ErrorCode::BadArguments {
                return Err(error);
            }
            index = (index + 1) % nodes.len();
            if index == 0 {
                sleep_within(deadline, Duration::from_millis(ROUND_BACKOFF_MS)).await;
            }
            if Instant::now() >= deadline {
                return Err(error);
            }
        };

        let cancel = CancellationToken::new();
        let (current, _) = watch::channel(index);
        let shared = Arc::new(Shared {
            id: reply.session,
            timeout: Duration::from_millis(reply.timeout_ms),
            request_timeout: config.request_timeout,
            nodes,
            current,
            last_zxid: AtomicU64::new(reply.zxid),
            state: Mutex::new(SessionState::Active),
            subscribers: Mutex::new(Vec::new()),
            heartbeats: AtomicBool::new(true),
            cancel: cancel.clone(),
        });
        let (opened_tx, opened_rx) = oneshot::channel();
        tokio::spawn(heartbeat_loop(shared.clone()));
        tokio::spawn(event_loop(shared.clone(), opened_tx));
        // A watch set before the event stream is open could fire unseen; give the stream a
        // bounded chance to open first. If it cannot, the reader keeps trying in the background.
        let _ = tokio::time::timeout(config.request_timeout, opened_rx).await;
        Ok(Session {
            shared,
            _stop_on_drop: Arc::new(cancel.drop_guard()),
            consistency: config.read_consistency,
            request_timeout: config.request_timeout,
        })
    }

    /// The same session, reading with another consistency.
    pub fn with_consistency(&self, consistency: Consistency) -> Session {
        Session {
            consistency,
            ..self.clone()
        }
    }

    /// The same session with another per-operation budget.
    pub fn with_request_timeout(&self, timeout: Duration) -> Session {
        Session {
            request_timeout: timeout,
            ..self.clone()
        }
    }

    pub fn id(&self) -> SessionId {
        self.shared.id
    }

    /// The session timeout the server granted.
    pub fn timeout(&self) -> Duration {
        self.shared.timeout
    }

    /// The largest zxid this session has seen.
    pub fn last_zxid(&self) -> Zxid {
        self.shared.last_zxid.load(Ordering::SeqCst)
    }

    /// URL of the server the session currently talks to.
    pub fn current_server(&self) -> String {
        let index = *self.shared.current.borrow();
        self.shared.nodes[index].url().to_string()
    }

    pub fn state(&self) -> SessionState {
        *lock(&self.shared.state)
    }

    /// Stops (or resumes) heartbeats, so that a test can let the session expire while the
    /// client keeps running. While stopped, a broken event stream is not reopened either
    /// (opening one counts as a heartbeat); operations still touch the session.
    pub fn set_heartbeats(&self, enabled: bool) {
        self.shared.heartbeats.store(enabled, Ordering::SeqCst);
    }

    /// A receiver of this session's events from now on. Each call makes a new receiver that
    /// gets every event; drain it (or drop it): a full receiver holds up event delivery.
    /// `recv()` returns `None` after `Expired` or `Closed`.
    pub fn events(&self) -> mpsc::Receiver<Event> {
        self.subscribe(None, false, EVENT_QUEUE_LEN)
    }

    /// Events for watches under `path_prefix` (and session-wide events), dropped when full.
    pub(crate) fn subscribe_lossy(&self, path_prefix: &str) -> mpsc::Receiver<Event> {
        self.subscribe(Some(path_prefix.to_string()), true, RECIPE_EVENT_QUEUE_LEN)
    }

    fn subscribe(
        &self,
        path_prefix: Option<String>,
        lossy: bool,
        len: usize,
    ) -> mpsc::Receiver<Event> {
        let (tx, rx) = mpsc::channel(len);
        if self.state() == SessionState::Active {
            lock(&self.shared.subscribers).push(Subscriber {
                path_prefix,
                lossy,
                tx,
            });
        }
        // Otherwise `tx` is dropped here and the receiver reports the end at once.
        rx
    }

    /// Creates a node; returns its path (with the sequence suffix for sequential modes).
    pub async fn create(&self, path: &str, data: &str, mode: CreateMode) -> Result<String> {
        let request = |last_zxid| CreateRequest {
            session: self.shared.id,
            last_zxid,
            path: path.to_string(),
            data: data.to_string(),
            mode,
        };
        let reply = self
            .run(Kind::Write, |node, last_zxid| {
                let request = request(last_zxid);
                async move { node.create(&request).await }
            })
            .await?;
        Ok(reply.path)
    }

    /// Deletes a node if its version matches (`ANY_VERSION`: any).
    pub async fn delete(&self, path: &str, version: i32) -> Result<()> {
        let request = |last_zxid| DeleteRequest {
            session: self.shared.id,
            last_zxid,
            path: path.to_string(),
            version,
        };
        self.run(Kind::Write, |node, last_zxid| {
            let request = request(last_zxid);
            async move { node.delete(&request).await }
        })
        .await?;
        Ok(())
    }

    /// Sets a node's data if its version matches (`ANY_VERSION`: any); returns the new stat.
    pub async fn set_data(&self, path: &str, data: &str, version: i32) -> Result<Stat> {
        let request = |last_zxid| SetDataRequest {
            session: self.shared.id,
            last_zxid,
            path: path.to_string(),
            data: data.to_string(),
            version,
        };
        let reply = self
            .run(Kind::Write, |node, last_zxid| {
                let request = request(last_zxid);
                async move { node.set_data(&request).await }
            })
            .await?;
        Ok(reply.stat)
    }

    /// Applies all `ops` atomically or none. A failed multi is `Error::Keeper` whose `results`
    /// give every op's outcome.
    pub async fn multi(&self, ops: Vec<Op>) -> Result<Vec<OpResult>> {
        let request = |last_zxid| MultiRequest {
            session: self.shared.id,
            last_zxid,
            ops: ops.clone(),
        };
        let reply = self
            .run(Kind::Write, |node, last_zxid| {
                let request = request(last_zxid);
                async move { node.multi(&request).await }
            })
            .await?;
        Ok(reply.results)
    }

    /// The node's stat, or `None` if it does not exist. `watch` sets a watch that fires on its
    /// creation, deletion or data change.
    pub async fn exists(&self, path: &str, watch: bool) -> Result<Option<Stat>> {
        let request = self.read_request(path, watch);
        let reply = self
            .run(Kind::Read, |node, last_zxid| {
                let request = ReadRequest {
                    last_zxid,
                    ..request.clone()
                };
                async move { node.exists(&request).await }
            })
            .await;
        match reply {
            Ok(reply) => Ok(reply.stat),
            Err(Error::Keeper(e)) if e.error == ErrorCode::NoNode => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The node's data and stat. `watch` fires on its deletion or data change.
    pub async fn get_data(&self, path: &str, watch: bool) -> Result<(String, Stat)> {
        let request = self.read_request(path, watch);
        let reply = self
            .run(Kind::Read, |node, last_zxid| {
                let request = ReadRequest {
                    last_zxid,
                    ..request.clone()
                };
                async move { node.get_data(&request).await }
            })
            .await?;
        Ok((reply.data, reply.stat))
    }

    /// The node's child names, sorted. `watch` fires on a child's creation or deletion, or the
    /// node's deletion.
    pub async fn get_children(&self, path: &str, watch: bool) -> Result<Vec<String>> {
        Ok(self.get_children_with_stat(path, watch).await?.0)
    }

    /// The node's child names, sorted, and its stat.
    pub async fn get_children_with_stat(
        &self,
        path: &str,
        watch: bool,
    ) -> Result<(Vec<String>, Stat)> {
        let request = self.read_request(path, watch);
        let reply = self
            .run(Kind::Read, |node, last_zxid| {
                let request = ReadRequest {
                    last_zxid,
                    ..request.clone()
                };
                async move { node.get_children(&request).await }
            })
            .await?;
        Ok((reply.children, reply.stat))
    }

    /// Waits until the current server has every write the leader committed before the sync.
    pub async fn sync(&self, path: &str) -> Result<()> {
        let request = |last_zxid| SyncRequest {
            session: self.shared.id,
            last_zxid,
            path: path.to_string(),
        };
        // A sync changes nothing, so it is retried like a read.
        self.run(Kind::Read, |node, last_zxid| {
            let request = request(last_zxid);
            async move { node.sync(&request).await }
        })
        .await?;
        Ok(())
    }

    /// Closes the session: the servers delete its ephemeral nodes at once. The background tasks
    /// stop whatever the outcome; the error (if any) says whether the close reached the server.
    pub async fn close(&self) -> Result<()> {
        match self.state() {
            SessionState::Closed => return Ok(()),
            SessionState::Expired => return Err(expired_error()),
            SessionState::Active => {}
        }
        let id = self.shared.id;
        // Closing twice is harmless (the second finds no session), so any failure is retried.
        let result = self
            .run_with(Kind::Read, true, |node, last_zxid| async move {
                node.close_session(id, &HeartbeatRequest { last_zxid })
                    .await
            })
            .await;
        self.shared.finish(SessionState::Closed);
        match result {
            Ok(_) => Ok(()),
            Err(Error::Keeper(e)) if e.error == ErrorCode::SessionExpired => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn read_request(&self, path: &str, watch: bool) -> ReadRequest {
        ReadRequest {
            session: self.shared.id,
            last_zxid: 0,
            path: path.to_string(),
            watch,
            consistency: self.consistency,
        }
    }

    async fn run<T, F, Fut>(&self, kind: Kind, op: F) -> Result<T>
    where
        T: Reply,
        F: Fn(NodeClient, Zxid) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        self.run_with(kind, false, op).await
    }

    /// Runs `op` on the current server, failing over and retrying by the rules in the module
    /// docs until the request timeout is used up.
    async fn run_with<T, F, Fut>(&self, kind: Kind, closing: bool, op: F) -> Result<T>
    where
        T: Reply,
        F: Fn(NodeClient, Zxid) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        if !closing {
            match self.state() {
                SessionState::Active => {}
                SessionState::Expired => return Err(expired_error()),
                SessionState::Closed => return Err(Error::Closed),
            }
        }
        let shared = &self.shared;
        let deadline = Instant::now() + self.request_timeout;
        let mut attempts = 0usize;
        loop {
            let index = *shared.current.borrow();
            let remaining = deadline.saturating_duration_since(Instant::now());
            let node = shared.nodes[index].with_timeout(remaining);
            let error = match op(node.clone(), self.last_zxid()).await {
                Ok(reply) => {
                    shared.observe(reply.zxid());
                    return Ok(reply);
                }
                Err(e) => e,
            };
            // An unconfirmed expiry came from a node that is behind: it refused the request.
            let mut refused = error.is_refusal();
            if says_expired(&error) && !closing {
                if shared.expiry_confirmed(&node).await {
                    shared.finish(SessionState::Expired);
                    return Err(error);
                }
                refused = true;
            }
            let client_side_unknown =
                matches!(error, Error::Timeout { .. } | Error::ConnectionLost { .. });
            if refused || client_side_unknown {
                shared.fail_over(index);
            }
            let retry = refused || (kind == Kind::Read && error.is_indeterminate());
            attempts += 1;
            if !retry || Instant::now() >= deadline {
                return Err(error);
            }
            if attempts.is_multiple_of(shared.nodes.len()) {
                sleep_within(deadline, Duration::from_millis(ROUND_BACKOFF_MS)).await;
                if Instant::now() >= deadline {
                    return Err(error);
                }
            }
        }
    }
}

/// The server's own word that the session is gone (not a client-side guess).
fn says_expired(error: &Error) -> bool {
    error.keeper().is_some() && error.code() == ErrorCode::SessionExpired
}

fn expired_error() -> Error {
    Error::Keeper(KeeperError::new(
        ErrorCode::SessionExpired,
        "the session has expired",
    ))
}

async fn sleep_within(deadline: Instant, pause: Duration) {
    tokio::time::sleep_until(deadline.min(Instant::now() + pause)).await;
}

impl Shared {
    /// Whether `node`'s `session_expired` is the ensemble's verdict. A node that has not yet
    /// applied the session's creation also says `session_expired`, so the claim counts only
    /// once the node has applied everything this session has seen and still says so.
    async fn expiry_confirmed(&self, node: &NodeClient) -> bool {
        let node = node.with_timeout(self.request_timeout);
        let last_zxid = self.last_zxid.load(Ordering::SeqCst);
        match node.status().await {
            Ok(status) if status.applied_zxid >= last_zxid => {}
            _ => return false,
        }
        let again = node
            .heartbeat(self.id, &HeartbeatRequest { last_zxid })
            .await;
        matches!(again, Err(e) if says_expired(&e))
    }

    fn observe(&self, zxid: Zxid) {
        self.last_zxid.fetch_max(zxid, Ordering::SeqCst);
    }

    /// Moves to the next server, unless someone already moved away from `from`.
    fn fail_over(&self, from: usize) {
        let count = self.nodes.len();
        self.current.send_if_modified(|current| {
            if *current == from && count > 1 {
                *current = (from + 1) % count;
                true
            } else {
                false
            }
        });
    }

    /// Ends the session locally: tells every subscriber and stops the background tasks.
    fn finish(&self, state: SessionState) {
        {
            let mut current = lock(&self.state);
            if *current != SessionState::Active {
                return;
            }
            *current = state;
        }
        let last = match state {
            SessionState::Expired => Event::Expired,
            _ => Event::Closed,
        };
        // Dropping the senders afterwards ends every receiver, so a subscriber whose queue is
        // full still learns that the session is over.
        let subscribers = std::mem::take(&mut *lock(&self.subscribers));
        for subscriber in subscribers {
            let _ = subscriber.tx.try_send(last.clone());
        }
        self.cancel.cancel();
    }

    async fn deliver(&self, event: Event) {
        let targets: Vec<(bool, mpsc::Sender<Event>)> = {
            let mut subscribers = lock(&self.subscribers);
            subscribers.retain(|s| !s.tx.is_closed());
            subscribers
                .iter()
                .filter(|s| match (&event, &s.path_prefix) {
                    (Event::Watch(w), Some(prefix)) => w.path.starts_with(prefix.as_str()),
                    _ => true,
                })
                .map(|s| (s.lossy, s.tx.clone()))
                .collect()
        };
        for (lossy, tx) in targets {
            if lossy {
                let _ = tx.try_send(event.clone());
            } else {
                tokio::select! {
                    _ = self.cancel.cancelled() => return,
                    _ = tx.send(event.clone()) => {}
                }
            }
        }
    }
}

async fn heartbeat_loop(shared: Arc<Shared>) {
    let interval = (shared.timeout / 3).max(Duration::from_millis(1));
    let attempt_timeout = interval.min(shared.request_timeout);
    let retry_pause = interval.min(Duration::from_millis(ROUND_BACKOFF_MS));
    let mut next = Instant::now() + interval;
    loop {
        tokio::select! {
            _ = shared.cancel.cancelled() => return,
            _ = tokio::time::sleep_until(next) => {}
        }
        if !shared.heartbeats.load(Ordering::SeqCst) {
            next = Instant::now() + interval;
            continue;
        }
        let mut delivered = false;
        // One pass over the servers at most, then wait a little: the session survives a
        // whole timeout, so there are several passes before it can expire.
        for _ in 0..shared.nodes.len() {
            let index = *shared.current.borrow();
            let node = shared.nodes[index].with_timeout(attempt_timeout);
            let request = HeartbeatRequest {
                last_zxid: shared.last_zxid.load(Ordering::SeqCst),
            };
            let result = tokio::select! {
                _ = shared.cancel.cancelled() => return,
                result = node.heartbeat(shared.id, &request) => result,
            };
            match result {
                Ok(reply) => {
                    shared.observe(reply.zxid);
                    delivered = true;
                    break;
                }
                Err(e) if says_expired(&e) && shared.expiry_confirmed(&node).await => {
                    shared.finish(SessionState::Expired);
                    return;
                }
                Err(e) => {
                    tracing::debug!(session = shared.id, error = %e, "heartbeat failed; failing over");
                    shared.fail_over(index);
                }
            }
        }
        next = Instant::now() + if delivered { interval } else { retry_pause };
    }
}

async fn event_loop(shared: Arc<Shared>, opened: oneshot::Sender<()>) {
    let mut opened = Some(opened);
    let mut current = shared.current.subscribe();
    let reconnect_pause = Duration::from_millis(EVENT_RECONNECT_BACKOFF_MS);
    loop {
        // Opening a stream counts as a heartbeat on the server, so a session told to stop
        // heartbeating does not reopen one (its current stream, if any, has already ended).
        if !shared.heartbeats.load(Ordering::SeqCst) {
            tokio::select! {
                _ = shared.cancel.cancelled() => return,
                _ = tokio::time::sleep(reconnect_pause) => {}
            }
            continue;
        }
        let index = *current.borrow_and_update();
        let node = shared.nodes[index].with_timeout(shared.request_timeout);
        let stream = tokio::select! {
            _ = shared.cancel.cancelled() => return,
            stream = node.events(shared.id) => stream,
        };
        let mut stream = match stream {
            Ok(stream) => stream,
            Err(e) if says_expired(&e) && shared.expiry_confirmed(&node).await => {
                shared.finish(SessionState::Expired);
                return;
            }
            Err(e) => {
                tracing::debug!(session = shared.id, error = %e, "event stream not opened");
                tokio::select! {
                    _ = shared.cancel.cancelled() => return,
                    _ = current.changed() => {}
                    _ = tokio::time::sleep(reconnect_pause) => {}
                }
                continue;
            }
        };
        if let Some(opened) = opened.take() {
            let _ = opened.send(());
        }
        let pause = loop {
            tokio::select! {
                _ = shared.cancel.cancelled() => return,
                // The session moved: watches set on the old server are gone with it.
                _ = current.changed() => break false,
                item = stream.next() => match item {
                    Some(Ok(StreamEvent::Watch(event))) => {
                        shared.observe(event.zxid);
                        shared.deliver(Event::Watch(event)).await;
                    }
                    Some(Ok(StreamEvent::Session(end))) => {
                        shared.observe(end.zxid);
                        let state = if end.state == "expired" {
                            SessionState::Expired
                        } else {
                            SessionState::Closed
                        };
                        shared.finish(state);
                        return;
                    }
                    Some(Ok(StreamEvent::Overflow { dropped })) => {
                        tracing::warn!(session = shared.id, dropped, "server dropped watch events");
                        shared.deliver(Event::Disconnected).await;
                    }
                    Some(Err(e)) => {
                        tracing::debug!(session = shared.id, error = %e, "event stream broke");
                        break true;
                    }
                    None => break true,
                },
            }
        };
        shared.deliver(Event::Disconnected).await;
        if pause {
            tokio::select! {
                _ = shared.cancel.cancelled() => return,
                _ = tokio::time::sleep(reconnect_pause) => {}
            }
        }
    }
}
