//! The ZooKeeper transport: one session over ZooKeeper's own client protocol, through the
//! `zookeeper-client` crate, to exactly one server (the connect string names only the node
//! the worker chose, so the crate never fails over on its own; it does reconnect to that
//! same server after a lost connection, and sets its watches again there).
//!
//! What this protocol does not tell, and how the connection copes:
//! - The crate does not expose reply headers, so no reply carries a zxid (`None`); the Stats
//!   do (a create's `czxid`, a setData's `mzxid`).
//! - The crate pings on its own and has no "stop pinging": going quiet drops the connection
//!   without closing the session (every session is opened detached, so dropping the client
//!   never closes it), and the expiry is learned by reattaching to the session later, which
//!   the server refuses once it expired.
//! - Closing a session is therefore a reattach without detaching and a drop: the crate then
//!   sends closeSession and waits for its reply.
//! - The crate concludes `Expired` on its own when it could not reconnect within the session
//!   timeout; only the server's word counts, so an expiry is confirmed by a reattach before it
//!   is reported, else it is a mere `Disconnected`.

use super::{
    Children, ConnError, ConnEvent, Created, Data, Existence, SESSION_TIMEOUT_MS, SessionEnd,
    WatchFired, Written,
};
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use keeper_wire::{Consistency, CreateMode, ErrorCode, EventKind, Stat, Zxid};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use zookeeper_client as zk;

pub(super) struct ZkConn {
    /// Where the session lives, and how to reach it again (reattach, probe).
    prober: Prober,
    /// `None` once the session was closed or the client went quiet.
    client: Mutex<Option<zk::Client>>,
    id: u64,
    states: zk::StateWatcher,
    /// Watches set by reads, handed to the event task (which holds the receiver).
    watches: mpsc::UnboundedSender<zk::OneshotWatcher>,
    unforwarded: Mutex<Option<mpsc::UnboundedReceiver<zk::OneshotWatcher>>>,
    quiet: Arc<AtomicBool>,
    cancel: CancellationToken,
}

/// Reattaches to a session, to close it or to learn whether it is still alive.
#[derive(Clone)]
struct Prober {
    addr: String,
    info: zk::SessionInfo,
    session_timeout: Duration,
    op_timeout: Duration,
}

/// What a reattach learned.
enum Probe {
    /// The server refused the session: it expired (or was closed).
    Expired,
    /// The server took the session back (which renewed it).
    Alive,
    /// No answer: the node is down or cut off.
    Unknown,
}

impl Prober {
    fn connector(&self) -> zk::Connector {
        zk::Client::connector()
            .with_session(self.info.clone())
            .with_session_timeout(self.session_timeout)
            .with_fail_eagerly()
    }

    async fn probe(&self) -> Probe {
        let connect = quietly(self.connector().with_detached().connect(&self.addr));
        match tokio::time::timeout(self.op_timeout, connect).await {
            Ok(Err(zk::Error::SessionExpired)) => Probe::Expired,
            // Detached: dropping it leaves the session to expire on its own again.
            Ok(Ok(client)) => {
                drop(client);
                Probe::Alive
            }
            Ok(Err(_)) | Err(_) => Probe::Unknown,
        }
    }

    /// After the client went quiet: waits, then asks the server whether the session is gone,
    /// until it is (reported to `sink`) or `cancel`. Each probe that finds the session alive
    /// renews it, so probes are further apart than the server lets a silent session live:
    /// ZooKeeper one timeout, keeper two of its leader's clock (docs/FAULTS.md).
    async fn until_expired(&self, cancel: &CancellationToken, sink: &impl Fn(ConnEvent)) {
        let period = self.session_timeout * QUIET_PROBE_TIMEOUTS;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(period) => {}
            }
            if let Probe::Expired = self.probe().await {
                sink(ConnEvent::Ended(SessionEnd {
                    expired: true,
                    zxid: None,
                }));
                return;
            }
        }
    }
}

/// Session timeouts between two probes of a quiet session (see `Prober::until_expired`).
const QUIET_PROBE_TIMEOUTS: u32 = 3;

impl ZkConn {
    /// Opens a session on the server at `addr` (`IP:PORT`).
    pub(super) async fn open(addr: &str, op_timeout: Duration) -> Result<ZkConn, String> {
        let connect = quietly(
            zk::Client::connector()
                .with_session_timeout(Duration::from_millis(SESSION_TIMEOUT_MS))
                .with_detached()
                .with_fail_eagerly()
                .connect(addr),
        );
        let client = match tokio::time::timeout(op_timeout, connect).await {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => return Err(format!("connecting to {addr}: {e}")),
            Err(_) => return Err(format!("no session from {addr} within {op_timeout:?}")),
        };
        let (tx, rx) = mpsc::unbounded_channel();
        Ok(ZkConn {
            prober: Prober {
                addr: addr.to_string(),
                info: client.session().clone(),
                session_timeout: client.session_timeout(),
                op_timeout,
            },
            id: client.session_id().0 as u64,
            states: client.state_watcher(),
            client: Mutex::new(Some(client)),
            watches: tx,
            unforwarded: Mutex::new(Some(rx)),
            quiet: Arc::new(AtomicBool::new(false)),
            cancel: CancellationToken::new(),
        })
    }

    pub(super) fn session(&self) -> u64 {
        self.id
    }

    pub(super) fn session_timeout(&self) -> Duration {
        self.prober.session_timeout
    }

    fn client(&self) -> Result<zk::Client, ConnError> {
        self.client
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| {
                ConnError::definite(ErrorCode::SessionExpired, "the session was closed here")
            })
    }

    /// Bounds a request by the operation timeout.
    async fn call<T>(
        &self,
        request: impl Future<Output = Result<T, zk::Error>>,
    ) -> Result<T, ConnError>
    where
        T: Send,
    {
        let timeout = self.prober.op_timeout;
        match tokio::time::timeout(timeout, request).await {
            Ok(r) => r.map_err(error_of),
            Err(_) => Err(ConnError::indeterminate(
                ErrorCode::Timeout,
                format!("no reply from {} within {timeout:?}", self.prober.addr),
            )),
        }
    }

    fn watch(&self, watcher: Option<zk::OneshotWatcher>) {
        if let Some(w) = watcher {
            // Without an event task the watcher just waits in the channel.
            let _ = self.watches.send(w);
        }
    }

    pub(super) async fn create(
        &self,
        path: &str,
        data: &str,
        mode: CreateMode,
    ) -> Result<Created, ConnError> {
        let client = self.client()?;
        let mode = match mode {
            CreateMode::Persistent => zk::CreateMode::Persistent,
            CreateMode::Ephemeral => zk::CreateMode::Ephemeral,
            CreateMode::PersistentSequential => zk::CreateMode::PersistentSequential,
            CreateMode::EphemeralSequential => zk::CreateMode::EphemeralSequential,
            CreateMode::Container => zk::CreateMode::Container,
        };
        let options = mode.with_acls(zk::Acls::anyone_all());
        let sequential = matches!(
            mode,
            zk::CreateMode::PersistentSequential | zk::CreateMode::EphemeralSequential
        );
        let (stat, sequence) = self
            .call(client.create(path, data.as_bytes(), &options))
            .await?;
        Ok(Created {
            path: if sequential {
                format!("{path}{sequence}")
            } else {
                path.to_string()
            },
            stat: stat_of(&stat),
            zxid: None,
        })
    }

    pub(super) async fn get_data(
        &self,
        path: &str,
        watch: bool,
        consistency: Consistency,
    ) -> Result<Data, ConnError> {
        let client = self.client()?;
        let sync = syncs_first(consistency)?;
        let (data, stat, watcher) = self
            .call(async {
                if sync {
                    client.sync(path).await?;
                }
                if watch {
                    let (d, s, w) = client.get_and_watch_data(path).await?;
                    Ok((d, s, Some(w)))
                } else {
                    let (d, s) = client.get_data(path).await?;
                    Ok((d, s, None))
                }
            })
            .await?;
        self.watch(watcher);
        Ok(Data {
            data: String::from_utf8_lossy(&data).into_owned(),
            stat: stat_of(&stat),
            zxid: None,
        })
    }

    pub(super) async fn exists(
        &self,
        path: &str,
        watch: bool,
        consistency: Consistency,
    ) -> Result<Existence, ConnError> {
        let client = self.client()?;
        let sync = syncs_first(consistency)?;
        let (stat, watcher) = self
            .call(async {
                if sync {
                    client.sync(path).await?;
                }
                if watch {
                    let (s, w) = client.check_and_watch_stat(path).await?;
                    Ok((s, Some(w)))
                } else {
                    Ok((client.check_stat(path).await?, None))
                }
            })
            .await?;
        self.watch(watcher);
        Ok(Existence {
            stat: stat.as_ref().map(stat_of),
            zxid: None,
        })
    }

    pub(super) async fn get_children(
        &self,
        path: &str,
        watch: bool,
        consistency: Consistency,
    ) -> Result<Children, ConnError> {
        let client = self.client()?;
        let sync = syncs_first(consistency)?;
        let (mut children, stat, watcher) = self
            .call(async {
                if sync {
                    client.sync(path).await?;
                }
                if watch {
                    let (c, s, w) = client.get_and_watch_children(path).await?;
                    Ok((c, s, Some(w)))
                } else {
                    let (c, s) = client.get_children(path).await?;
                    Ok((c, s, None))
                }
            })
            .await?;
        self.watch(watcher);
        // ZooKeeper lists children in no particular order; keeper's HTTP API sorts them.
        children.sort();
        Ok(Children {
            children,
            stat: stat_of(&stat),
            zxid: None,
        })
    }

    pub(super) async fn set_data(
        &self,
        path: &str,
        data: &str,
        version: i32,
    ) -> Result<Written, ConnError> {
        let client = self.client()?;
        let stat = self
            .call(client.set_data(path, data.as_bytes(), expected(version)))
            .await?;
        Ok(Written {
            stat: stat_of(&stat),
            zxid: None,
        })
    }

    pub(super) async fn delete(&self, path: &str, version: i32) -> Result<Option<Zxid>, ConnError> {
        let client = self.client()?;
        self.call(client.delete(path, expected(version))).await?;
        Ok(None)
    }

    pub(super) async fn check_and_set_data(
        &self,
        check: &str,
        path: &str,
        data: &str,
        version: i32,
    ) -> Result<Written, ConnError> {
        let client = self.client()?;
        let mut multi = client.new_multi_writer();
        multi
            .add_check_version(check, keeper_wire::ANY_VERSION)
            .map_err(error_of)?;
        multi
            .add_set_data(path, data.as_bytes(), expected(version))
            .map_err(error_of)?;
        let results = self
            .call(multi.commit().map(|r| r.map_err(zk::Error::from)))
            .await?;
        results
            .iter()
            .find_map(|r| match r {
                zk::MultiWriteResult::SetData { stat } => Some(Written {
                    stat: stat_of(stat),
                    zxid: None,
                }),
                _ => None,
            })
            .ok_or_else(|| {
                ConnError::indeterminate(
                    ErrorCode::Internal,
                    "a multi reply without its setData result",
                )
            })
    }

    /// One task forwards fired watches and the session's state changes to `sink`.
    ///
    /// Several reads of one path leave several watchers in the crate, and one notification
    /// from the server fires all of them at once, while ZooKeeper (and the history's checker)
    /// count one event: the task forwards each notification once ([`Notifications`]). When
    /// the server tells the event's zxid (keeper does; ZooKeeper before 3.9 does not), a
    /// notification is known by its type, path and zxid. Without one, the watchers that fired
    /// together are one notification: the crate hands a notification to all its watchers in
    /// one step, `FuturesUnordered` yields them in the order they were woken, and the task
    /// waits [`SETTLE_MS`] for the rest of a notification before it forwards what it has.
    pub(super) fn spawn_events(&self, sink: impl Fn(ConnEvent) + Send + Sync + 'static) {
        let Some(mut watches) = self
            .unforwarded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        else {
            return;
        };
        let (mut states, cancel, quiet, prober) = (
            self.states.clone(),
            self.cancel.clone(),
            self.quiet.clone(),
            self.prober.clone(),
        );
        tokio::spawn(async move {
            let mut pending = FuturesUnordered::new();
            let mut seen = Notifications::default();
            loop {
                tokio::select! {
                    biased;
                    _ = cancel.cancelled() => return,
                    state = states.changed() => {
                        seen.troubled = true;
                        if on_state(state, &quiet, &prober, &cancel, &sink).await {
                            return;
                        }
                    }
                    Some(w) = watches.recv() => pending.push(w.changed()),
                    Some(first) = pending.next(), if !pending.is_empty() => {
                        let mut batch = vec![first];
                        // The rest of this notification: until nothing more fires for a while
                        // (a watcher still in the channel may have fired too).
                        loop {
                            tokio::time::sleep(Duration::from_millis(SETTLE_MS)).await;
                            while let Ok(w) = watches.try_recv() {
                                pending.push(w.changed());
                            }
                            let before = batch.len();
                            while let Some(Some(next)) = pending.next().now_or_never() {
                                batch.push(next);
                            }
                            if batch.len() == before || batch.len() >= MAX_BATCH {
                                break;
                            }
                        }
                        // A state change that came with the batch taints it.
                        let state = states.changed().now_or_never();
                        seen.troubled |= state.is_some();
                        for fired in seen.forward(batch) {
                            sink(ConnEvent::Watch(fired));
                        }
                        if let Some(state) = state
                            && on_state(state, &quiet, &prober, &cancel, &sink).await
                        {
                            return;
                        }
                    }
                }
            }
        });
    }

    /// Drops the connection without closing the session, which then expires on the server.
    pub(super) fn go_quiet(&self) {
        self.quiet.store(true, Ordering::SeqCst);
        drop(self.client.lock().unwrap_or_else(|p| p.into_inner()).take());
    }

    pub(super) async fn close(&self) -> Result<Option<Zxid>, ConnError> {
        self.cancel.cancel();
        let timeout = self.prober.op_timeout;
        // The detached client goes without closing the session. Its connection must be gone
        // before the session is reattached, or the two would take it from each other.
        drop(self.client.lock().unwrap_or_else(|p| p.into_inner()).take());
        let mut states = self.states.clone();
        if tokio::time::timeout(timeout, terminal_state(&mut states))
            .await
            .is_err()
        {
            // Nothing that could close the session was sent.
            return Err(ConnError::definite(
                ErrorCode::NotReady,
                format!("the connection to {} did not end", self.prober.addr),
            ));
        }
        let client = match tokio::time::timeout(
            timeout,
            quietly(self.prober.connector().connect(&self.prober.addr)),
        )
        .await
        {
            Ok(Ok(client)) => client,
            Ok(Err(zk::Error::SessionExpired)) => {
                return Err(ConnError::definite(
                    ErrorCode::SessionExpired,
                    "the session was gone before the close",
                ));
            }
            // Nothing was sent that could close the session.
            Ok(Err(e)) => {
                return Err(ConnError::definite(
                    ErrorCode::NotReady,
                    format!("reattaching to {} to close: {e}", self.prober.addr),
                ));
            }
            Err(_) => {
                return Err(ConnError::definite(
                    ErrorCode::NotReady,
                    format!("no reattach from {} within {timeout:?}", self.prober.addr),
                ));
            }
        };
        // The last client of a session that is not detached closes it: the crate sends
        // closeSession and reaches `Closed` once the reply came.
        let mut states = client.state_watcher();
        drop(client);
        match tokio::time::timeout(timeout, terminal_state(&mut states)).await {
            Ok(zk::SessionState::Closed) => Ok(None),
            Ok(state) => Err(ConnError::indeterminate(
                ErrorCode::ConnectionLoss,
                format!("closing ended {state} instead"),
            )),
            Err(_) => Err(ConnError::indeterminate(
                ErrorCode::Timeout,
                format!(
                    "no close reply from {} within {timeout:?}",
                    self.prober.addr
                ),
            )),
        }
    }
}

impl Drop for ZkConn {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Handles a state change of the session; true when the event task is over.
async fn on_state(
    state: zk::SessionState,
    quiet: &AtomicBool,
    prober: &Prober,
    cancel: &CancellationToken,
    sink: &impl Fn(ConnEvent),
) -> bool {
    match state {
        zk::SessionState::Closed if quiet.load(Ordering::SeqCst) => {
            prober.until_expired(cancel, sink).await;
            true
        }
        zk::SessionState::Expired => {
            match prober.probe().await {
                Probe::Expired => sink(ConnEvent::Ended(SessionEnd {
                    expired: true,
                    zxid: None,
                })),
                Probe::Alive | Probe::Unknown => sink(ConnEvent::Disconnected),
            }
            true
        }
        state if state.is_terminated() => {
            sink(ConnEvent::Disconnected);
            true
        }
        // Disconnected, or connected again after one: either way the connection broke.
        _ => {
            sink(ConnEvent::Disconnected);
            false
        }
    }
}

/// How long the event task waits for more watchers of one notification to fire.
const SETTLE_MS: u64 = 5;
/// Most events the event task gathers before it forwards them.
const MAX_BATCH: usize = 1_024;
/// Notifications with a zxid remembered to recognise their other watchers.
const MAX_REMEMBERED: usize = 256;

/// What the event task forwarded, to forward each notification once.
#[derive(Default)]
struct Notifications {
    /// Recent notifications that carried a zxid: (type, path, zxid).
    recent: std::collections::VecDeque<(zk::EventType, String, i64)>,
    /// The connection broke since the session began: the crate may have set the watches
    /// again, and the server fires what it missed with its current zxid, not the change's.
    /// Such events are forwarded without a zxid.
    troubled: bool,
}

impl Notifications {
    /// The watches of `batch` (fired together, in the crate's order) as the server sent them:
    /// one event per notification. Session events (the crate's news of a terminal state to
    /// its watchers) are not watch events.
    fn forward(&mut self, batch: Vec<zk::WatchedEvent>) -> Vec<WatchFired> {
        let mut out = Vec::new();
        let mut previous: Option<(zk::EventType, String, i64)> = None;
        for event in batch {
            let kind = match event.event_type {
                zk::EventType::NodeCreated => EventKind::Created,
                zk::EventType::NodeDeleted => EventKind::Deleted,
                zk::EventType::NodeDataChanged => EventKind::DataChanged,
                zk::EventType::NodeChildrenChanged => EventKind::ChildrenChanged,
                zk::EventType::Session => continue,
            };
            let key = (event.event_type, event.path.clone(), event.zxid);
            // ZooKeeper before 3.9 sends `WatchedEvent::NO_ZXID` (-1): unknown, not a number.
            let known = event.zxid >= 0;
            if previous.as_ref() == Some(&key) || (known && self.recent.contains(&key)) {
                continue;
            }
            if known {
                if self.recent.len() >= MAX_REMEMBERED {
                    self.recent.pop_front();
                }
                self.recent.push_back(key.clone());
            }
            previous = Some(key);
            out.push(WatchFired {
                kind,
                path: event.path,
                zxid: (known && !self.troubled).then_some(event.zxid as Zxid),
            });
        }
        out
    }
}

/// Runs a connect without the crate's log lines: a refused reattach (the session expired, the
/// very thing a probe asks) or an unreachable node is an answer here, which the caller turns
/// into an error or an event, not a warning for the user.
fn quietly<F: Future>(connect: F) -> impl Future<Output = F::Output> {
    use tracing::instrument::WithSubscriber;
    connect.with_subscriber(tracing::subscriber::NoSubscriber::default())
}

async fn terminal_state(states: &mut zk::StateWatcher) -> zk::SessionState {
    loop {
        let state = states.peek_state();
        if state.is_terminated() {
            return state;
        }
        states.changed().await;
    }
}

/// Whether a read of `consistency` is a sync first. Linearizable reads are keeper's HTTP API
/// only (the CLI refuses them with `--protocol zk`).
fn syncs_first(consistency: Consistency) -> Result<bool, ConnError> {
    match consistency {
        Consistency::Local => Ok(false),
        Consistency::Sync => Ok(true),
        Consistency::Linearizable => Err(ConnError::definite(
            ErrorCode::BadArguments,
            "linearizable reads need keeper's HTTP API (--protocol http)",
        )),
    }
}

/// ZooKeeper's "any version" is -1, the crate's `None`.
fn expected(version: i32) -> Option<i32> {
    (version != keeper_wire::ANY_VERSION).then_some(version)
}

fn stat_of(s: &zk::Stat) -> Stat {
    Stat {
        czxid: s.czxid as Zxid,
        mzxid: s.mzxid as Zxid,
        pzxid: s.pzxid as Zxid,
        ctime: s.ctime.max(0) as u64,
        mtime: s.mtime.max(0) as u64,
        version: s.version,
        cversion: s.cversion,
        ephemeral_owner: s.ephemeral_owner as u64,
        data_length: s.data_length.max(0) as u32,
        num_children: s.num_children.max(0) as u32,
    }
}

/// The crate's error as a ZooKeeper code, and whether the request may have taken effect.
fn error_of(e: zk::Error) -> ConnError {
    use zk::Error as Z;
    let message = e.to_string();
    let definite = |code| ConnError::definite(code, message.clone());
    match e {
        Z::NoNode => definite(ErrorCode::NoNode),
        Z::NodeExists => definite(ErrorCode::NodeExists),
        Z::BadVersion => definite(ErrorCode::BadVersion),
        Z::NotEmpty => definite(ErrorCode::NotEmpty),
        Z::NoChildrenForEphemerals => definite(ErrorCode::NoChildrenForEphemerals),
        Z::RuntimeInconsistent => definite(ErrorCode::RuntimeInconsistency),
        Z::NoWatcher => definite(ErrorCode::NoWatcher),
        // The session is over for this client (expired, closed here, or now served through
        // another connection): nothing was applied, and the worker opens a new one.
        Z::SessionExpired | Z::ClientClosed | Z::SessionMoved => {
            definite(ErrorCode::SessionExpired)
        }
        // Refused before anything was applied.
        Z::NoHosts | Z::Throttled | Z::NotReadOnly => definite(ErrorCode::NotReady),
        Z::BadArguments(_)
        | Z::InvalidAcl
        | Z::NoAuth
        | Z::AuthFailed
        | Z::Unimplemented
        | Z::QuotaExceeded
        | Z::MarshallingError
        | Z::ReconfigDisabled => definite(ErrorCode::BadArguments),
        Z::ConnectionLoss => ConnError::indeterminate(ErrorCode::ConnectionLoss, message),
        Z::Timeout => ConnError::indeterminate(ErrorCode::Timeout, message),
        // A reply that could not be read, or a code the crate does not know: the request
        // may have been applied.
        _ => ConnError::indeterminate(ErrorCode::Internal, message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fired(kind: zk::EventType, path: &str, zxid: i64) -> zk::WatchedEvent {
        zk::WatchedEvent::new(kind, path).with_zxid(zxid)
    }

    #[test]
    fn one_notification_to_several_watchers_is_one_event() {
        use zk::EventType::*;
        let batch = vec![
            fired(NodeDeleted, "/w/a", 7),
            fired(NodeDeleted, "/w/a", 7),
            fired(NodeChildrenChanged, "/w", 7),
            fired(NodeCreated, "/w/a", 9),
        ];
        let out = Notifications::default().forward(batch);
        let kinds: Vec<_> = out.iter().map(|f| (f.kind, f.zxid)).collect();
        assert_eq!(
            kinds,
            vec![
                (EventKind::Deleted, Some(7)),
                (EventKind::ChildrenChanged, Some(7)),
                (EventKind::Created, Some(9)),
            ]
        );
    }

    #[test]
    fn a_notification_with_a_zxid_is_forwarded_once_even_when_its_watchers_come_apart() {
        use zk::EventType::*;
        let mut seen = Notifications::default();
        assert_eq!(
            seen.forward(vec![fired(NodeDataChanged, "/w/a", 7)]).len(),
            1
        );
        assert!(
            seen.forward(vec![fired(NodeDataChanged, "/w/a", 7)])
                .is_empty()
        );
        assert_eq!(
            seen.forward(vec![fired(NodeDataChanged, "/w/a", 8)]).len(),
            1
        );
        // Without a zxid, only watchers that fired together are known to be one.
        assert_eq!(
            seen.forward(vec![fired(NodeDataChanged, "/w/a", -1)]).len(),
            1
        );
        assert_eq!(
            seen.forward(vec![fired(NodeDataChanged, "/w/a", -1)]).len(),
            1
        );
    }

    #[test]
    fn zxids_are_unknown_when_not_sent_or_after_a_reconnect() {
        let batch = vec![fired(zk::EventType::NodeDataChanged, "/w/a", -1)];
        assert_eq!(Notifications::default().forward(batch)[0].zxid, None);
        let mut troubled = Notifications {
            troubled: true,
            ..Default::default()
        };
        let batch = vec![fired(zk::EventType::NodeDataChanged, "/w/a", 12)];
        assert_eq!(troubled.forward(batch)[0].zxid, None);
        let session = zk::WatchedEvent::new_session(zk::SessionState::Expired);
        assert!(Notifications::default().forward(vec![session]).is_empty());
    }

    #[test]
    fn only_a_lost_connection_or_timeout_is_indeterminate() {
        assert!(error_of(zk::Error::ConnectionLoss).is_indeterminate());
        assert!(error_of(zk::Error::Timeout).is_indeterminate());
        for definite in [
            zk::Error::NoNode,
            zk::Error::BadVersion,
            zk::Error::SessionExpired,
            zk::Error::ClientClosed,
            zk::Error::NoHosts,
        ] {
            assert!(!error_of(definite).is_indeterminate());
        }
        assert_eq!(
            error_of(zk::Error::RuntimeInconsistent).code,
            ErrorCode::RuntimeInconsistency
        );
        assert_eq!(
            error_of(zk::Error::SessionExpired).code,
            ErrorCode::SessionExpired
        );
    }

    #[test]
    fn any_version_is_none() {
        assert_eq!(expected(-1), None);
        assert_eq!(expected(3), Some(3));
    }
}
