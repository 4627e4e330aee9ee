//! The simulated transport: one keeper session on one node of a simulated cluster (`sim::Sim`
//! with a port, driven by `crate::sim_run`), behaving as the HTTP transport does: no failover,
//! heartbeats every third of the session timeout, the largest zxid seen sent back as
//! `last_zxid`, and the session's events from its node (a node's death breaks the stream:
//! `Disconnected`). Requests reach the node's real core; every error maps onto the HTTP
//! client's own [`keeper_client::Error`], so the workloads' `fail`/`info` rule is the same one.

use super::{
    Children, ConnError, ConnEvent, Created, Data, Existence, SESSION_TIMEOUT_MS, SessionEnd,
    WatchFired, Written, check_and_set_ops, written_by_multi,
};
use ::sim::{ClientRequest, PortMsg, PortOutcome, Read, Response, Sim, Ticket};
use keeper_client::Error as ClientError;
use keeper_wire::{Consistency, CreateMode, ErrorCode, Op as TxnOp, SessionId, Zxid};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

type Sink = Arc<dyn Fn(ConnEvent) + Send + Sync>;

/// The simulated cluster as its clients reach it: the simulation, the requests waiting for
/// their replies, and each session's event sink by (node, session).
#[derive(Clone)]
pub struct SimLink {
    inner: Arc<Mutex<Link>>,
}

struct Link {
    sim: Sim,
    waiting: BTreeMap<Ticket, oneshot::Sender<PortOutcome>>,
    sinks: BTreeMap<(u64, SessionId), Sink>,
}

impl std::fmt::Debug for SimLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SimLink")
    }
}

impl SimLink {
    pub fn new(sim: Sim) -> SimLink {
        SimLink {
            inner: Arc::new(Mutex::new(Link {
                sim,
                waiting: BTreeMap::new(),
                sinks: BTreeMap::new(),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Link> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the simulation (a phase that steps time itself, a fault switch).
    pub fn with_sim<R>(&self, f: impl FnOnce(&mut Sim) -> R) -> R {
        f(&mut self.lock().sim)
    }

    /// Steps the simulation until `elapsed_ms` (simulated ms since the seed started), then
    /// hands out what the nodes said: replies to their requests, events to their sessions.
    pub fn advance_to(&self, elapsed_ms: u64) {
        let msgs = {
            let mut link = self.lock();
            while link.sim.elapsed_ms() < elapsed_ms {
                link.sim.step();
            }
            link.sim.take_port()
        };
        self.deliver(msgs);
    }

    /// What is still undelivered, delivered (after a phase that stepped the simulation).
    pub fn deliver_pending(&self) {
        let msgs = self.lock().sim.take_port();
        self.deliver(msgs);
    }

    fn deliver(&self, msgs: Vec<PortMsg>) {
        for msg in msgs {
            match msg {
                PortMsg::Done {
                    ticket, outcome, ..
                } => {
                    // The requester may have given up (its timeout): nobody waits then.
                    if let Some(tx) = self.lock().waiting.remove(&ticket) {
                        let _ = tx.send(outcome);
                    }
                }
                PortMsg::Watch {
                    node,
                    session,
                    event,
                } => self.tell(
                    node,
                    session,
                    ConnEvent::Watch(WatchFired {
                        kind: event.kind,
                        path: event.path,
                        zxid: Some(event.zxid),
                    }),
                ),
                PortMsg::SessionEnded {
                    node,
                    session,
                    expired,
                    zxid,
                } => {
                    // The stream's last event: the sink is done with.
                    let sink = self.lock().sinks.remove(&(node, session));
                    if let Some(sink) = sink {
                        sink(ConnEvent::Ended(SessionEnd {
                            expired,
                            zxid: Some(zxid),
                        }));
                    }
                }
                // As the HTTP transport takes an `overflow` event.
                PortMsg::WatchesLost { node, session } => {
                    self.tell(node, session, ConnEvent::Disconnected)
                }
                PortMsg::NodeDown { node } => {
                    let sinks: Vec<Sink> = self
                        .lock()
                        .sinks
                        .iter()
                        .filter(|((n, _), _)| *n == node)
                        .map(|(_, s)| s.clone())
                        .collect();
                    for sink in sinks {
                        sink(ConnEvent::Disconnected);
                    }
                }
            }
        }
    }

    /// Passes `event` to the sink of `session` on `node`, if it has one (outside the lock: a
    /// sink records through the recorder).
    fn tell(&self, node: u64, session: SessionId, event: ConnEvent) {
        let sink = self.lock().sinks.get(&(node, session)).cloned();
        if let Some(sink) = sink {
            sink(event);
        }
    }

    /// Sends `body` to `node`; the receiver gets its outcome when the driver delivers it.
    fn submit(&self, node: u64, body: ClientRequest) -> oneshot::Receiver<PortOutcome> {
        let (tx, rx) = oneshot::channel();
        let mut link = self.lock();
        // In one critical section with the submit: a reply the core gives at once waits in
        // the port until the driver delivers it, and finds its sender here.
        let ticket = link.sim.submit(node, body);
        link.waiting.insert(ticket, tx);
        rx
    }

    fn attach(&self, node: u64, session: SessionId, sink: Sink) {
        self.lock().sinks.insert((node, session), sink);
    }

    fn detach(&self, node: u64, session: SessionId) {
        self.lock().sinks.remove(&(node, session));
    }

    /// The simulation back, once every client is gone (`None` while one still holds the link).
    pub fn into_sim(self) -> Option<Sim> {
        Arc::try_unwrap(self.inner)
            .ok()
            .map(|m| m.into_inner().unwrap_or_else(|p| p.into_inner()).sim)
    }
}

pub(super) struct SimConn {
    link: SimLink,
    node: u64,
    /// The node's name in errors: `sim://n1`.
    url: String,
    session: SessionId,
    /// The session timeout the node granted.
    timeout: Duration,
    op_timeout: Duration,
    last_zxid: Arc<AtomicU64>,
    heartbeats: Arc<AtomicBool>,
    cancel: CancellationToken,
}

/// One request through the link, bounded by `op_timeout`, with the HTTP client's errors.
async fn call(
    link: &SimLink,
    node: u64,
    url: &str,
    op_timeout: Duration,
    body: ClientRequest,
) -> Result<(Zxid, Response), ClientError> {
    let rx = link.submit(node, body);
    let outcome = match tokio::time::timeout(op_timeout, rx).await {
        Ok(Ok(outcome)) => outcome,
        Err(_) => {
            return Err(ClientError::Timeout {
                url: url.to_string(),
                message: format!("no reply within {op_timeout:?}"),
            });
        }
        Ok(Err(_)) => {
            return Err(ClientError::ConnectionLost {
                url: url.to_string(),
                message: "the simulation ended".into(),
            });
        }
    };
    match outcome {
        PortOutcome::Reply {
            zxid,
            result: Ok(response),
        } => Ok((zxid, response)),
        PortOutcome::Reply { result: Err(e), .. } => Err(ClientError::Keeper(e)),
        PortOutcome::Refused => Err(ClientError::Unreachable {
            url: url.to_string(),
            message: "connection refused (the node is down)".into(),
        }),
        PortOutcome::Lost => Err(ClientError::ConnectionLost {
            url: url.to_string(),
            message: "the node died with the request in flight".into(),
        }),
    }
}

fn unexpected(response: Response) -> ConnError {
    ConnError::indeterminate(
        ErrorCode::Internal,
        format!("unexpected response from the core: {response:?}"),
    )
}

impl SimConn {
    /// Creates a session on node `name` and starts heartbeating it every third of its timeout.
    pub(super) async fn open(
        link: &SimLink,
        name: &str,
        op_timeout: Duration,
    ) -> Result<SimConn, String> {
        let node =
            cluster::node_id(name).ok_or_else(|| format!("{name} is not a simulated node"))?;
        let url = format!("sim://{name}");
        let body = ClientRequest::CreateSession {
            timeout_ms: SESSION_TIMEOUT_MS,
            last_zxid: 0,
        };
        let (zxid, session, timeout_ms) = match call(link, node, &url, op_timeout, body).await {
            Ok((
                zxid,
                Response::Session {
                    session,
                    timeout_ms,
                },
            )) => (zxid, session, timeout_ms),
            Ok((_, other)) => return Err(format!("create_session on {url}: {other:?}")),
            Err(e) => return Err(format!("create_session on {url}: {e}")),
        };
        let conn = SimConn {
            link: link.clone(),
            node,
            url,
            session,
            timeout: Duration::from_millis(timeout_ms),
            op_timeout,
            last_zxid: Arc::new(AtomicU64::new(zxid)),
            heartbeats: Arc::new(AtomicBool::new(true)),
            cancel: CancellationToken::new(),
        };
        conn.spawn_heartbeats(conn.timeout);
        Ok(conn)
    }

    fn spawn_heartbeats(&self, timeout: Duration) {
        let (link, node, url, session) =
            (self.link.clone(), self.node, self.url.clone(), self.session);
        let (last, enabled, cancel) = (
            self.last_zxid.clone(),
            self.heartbeats.clone(),
            self.cancel.clone(),
        );
        let period = timeout / 3;
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    biased;
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(period) => {}
                }
                if !enabled.load(Ordering::Relaxed) {
                    continue;
                }
                let body = ClientRequest::Heartbeat {
                    session,
                    last_zxid: last.load(Ordering::Relaxed),
                };
                match call(&link, node, &url, period, body).await {
                    Ok((zxid, _)) => {
                        last.fetch_max(zxid, Ordering::Relaxed);
                    }
                    Err(e) if e.code() == ErrorCode::SessionExpired => return,
                    Err(_) => {}
                }
            }
        });
    }

    pub(super) fn session(&self) -> u64 {
        self.session
    }

    pub(super) fn session_timeout(&self) -> Duration {
        self.timeout
    }

    fn last_zxid(&self) -> Zxid {
        self.last_zxid.load(Ordering::Relaxed)
    }

    /// `body` to this session's node; remembers the reply's zxid (requests send the largest).
    async fn request(&self, body: ClientRequest) -> Result<(Zxid, Response), ConnError> {
        let (zxid, response) =
            call(&self.link, self.node, &self.url, self.op_timeout, body).await?;
        self.last_zxid.fetch_max(zxid, Ordering::Relaxed);
        Ok((zxid, response))
    }

    async fn read(
        &self,
        read: Read,
        watch: bool,
        consistency: Consistency,
    ) -> Result<(Zxid, Response), ConnError> {
        self.request(ClientRequest::Read {
            session: self.session,
            last_zxid: self.last_zxid(),
            read,
            watch,
            consistency,
        })
        .await
    }

    async fn write(&self, op: TxnOp) -> Result<(Zxid, Response), ConnError> {
        self.request(ClientRequest::Write {
            session: self.session,
            last_zxid: self.last_zxid(),
            op,
        })
        .await
    }

    pub(super) async fn create(
        &self,
        path: &str,
        data: &str,
        mode: CreateMode,
    ) -> Result<Created, ConnError> {
        let op = TxnOp::Create {
            path: path.to_string(),
            data: data.to_string(),
            mode,
        };
        match self.write(op).await? {
            (zxid, Response::Created { path, stat }) => Ok(Created {
                path,
                stat,
                zxid: Some(zxid),
            }),
            (_, other) => Err(unexpected(other)),
        }
    }

    pub(super) async fn get_data(
        &self,
        path: &str,
        watch: bool,
        consistency: Consistency,
    ) -> Result<Data, ConnError> {
        let read = Read::GetData {
            path: path.to_string(),
        };
        match self.read(read, watch, consistency).await? {
            (zxid, Response::Data { data, stat }) => Ok(Data {
                data,
                stat,
                zxid: Some(zxid),
            }),
            (_, other) => Err(unexpected(other)),
        }
    }

    pub(super) async fn exists(
        &self,
        path: &str,
        watch: bool,
        consistency: Consistency,
    ) -> Result<Existence, ConnError> {
        let read = Read::Exists {
            path: path.to_string(),
        };
        match self.read(read, watch, consistency).await? {
            (zxid, Response::Exists { stat }) => Ok(Existence {
                stat,
                zxid: Some(zxid),
            }),
            (_, other) => Err(unexpected(other)),
        }
    }

    pub(super) async fn get_children(
        &self,
        path: &str,
        watch: bool,
        consistency: Consistency,
    ) -> Result<Children, ConnError> {
        let read = Read::GetChildren {
            path: path.to_string(),
        };
        match self.read(read, watch, consistency).await? {
            (zxid, Response::Children { children, stat }) => Ok(Children {
                children,
                stat,
                zxid: Some(zxid),
            }),
            (_, other) => Err(unexpected(other)),
        }
    }

    pub(super) async fn set_data(
        &self,
        path: &str,
        data: &str,
        version: i32,
    ) -> Result<Written, ConnError> {
        let op = TxnOp::SetData {
            path: path.to_string(),
            data: data.to_string(),
            version,
        };
        match self.write(op).await? {
            (zxid, Response::Stat { stat }) => Ok(Written {
                stat,
                zxid: Some(zxid),
            }),
            (_, other) => Err(unexpected(other)),
        }
    }

    pub(super) async fn delete(&self, path: &str, version: i32) -> Result<Option<Zxid>, ConnError> {
        let op = TxnOp::Delete {
            path: path.to_string(),
            version,
        };
        match self.write(op).await? {
            (zxid, Response::Done) => Ok(Some(zxid)),
            (_, other) => Err(unexpected(other)),
        }
    }

    pub(super) async fn check_and_set_data(
        &self,
        check: &str,
        path: &str,
        data: &str,
        version: i32,
    ) -> Result<Written, ConnError> {
        let body = ClientRequest::Multi {
            session: self.session,
            last_zxid: self.last_zxid(),
            ops: check_and_set_ops(check, path, data, version),
        };
        match self.request(body).await? {
            (zxid, Response::Multi { results }) => written_by_multi(results, zxid),
            (_, other) => Err(unexpected(other)),
        }
    }

    /// Passes the session's events from its node to `sink` until the session ends or the
    /// connection is closed or dropped.
    pub(super) fn spawn_events(&self, sink: impl Fn(ConnEvent) + Send + Sync + 'static) {
        self.link.attach(self.node, self.session, Arc::new(sink));
    }

    /// No more heartbeats: with no requests either, the node expires the session.
    pub(super) fn go_quiet(&self) {
        self.heartbeats.store(false, Ordering::Relaxed);
    }

    /// Closes the session on the node and stops the heartbeats and the events.
    pub(super) async fn close(&self) -> Result<Option<Zxid>, ConnError> {
        self.cancel.cancel();
        self.link.detach(self.node, self.session);
        let body = ClientRequest::CloseSession {
            session: self.session,
            last_zxid: self.last_zxid(),
        };
        match self.request(body).await? {
            (zxid, Response::Done) => Ok(Some(zxid)),
            (_, other) => Err(unexpected(other)),
        }
    }
}

impl Drop for SimConn {
    fn drop(&mut self) {
        self.cancel.cancel();
        self.link.detach(self.node, self.session);
    }
}
