//! A process's connection: one session on exactly one node, whichever protocol the run's
//! clients speak ([`Protocol`]): keeper's HTTP API ([`http`]) or ZooKeeper's own client
//! protocol ([`zk`]); in a simulated run, the simulated cluster's port ([`simulated`]). Neither transport fails over or retries, so every request goes where the
//! worker chose. Workloads see one [`Conn`] with typed methods; each reply carries what the
//! protocol tells (over ZooKeeper's protocol a reply's zxid is not known: `None`), and every
//! failure is one [`ConnError`], so [`completion_of`] stays the one mapping onto `fail`/`info`.

mod http;
mod observer;
mod simulated;
mod zk;

pub use observer::Observer;
pub use simulated::SimLink;

use super::{Env, Node};
use crate::client::Completion;
use crate::config::Protocol;
use futures::FutureExt;
use keeper_wire::{
    Consistency, CreateMode, ErrorCode, EventKind, Op as TxnOp, OpResult, Stat, Zxid,
};
use std::time::Duration;

/// Session timeout every process asks for. Long enough to survive a short pause of its node's
/// leader, short enough that expiries happen within a test.
pub const SESSION_TIMEOUT_MS: u64 = 6_000;
/// Pause before reopening a broken event stream, or trying another node in a setup.
const EVENT_RECONNECT_MS: u64 = 200;
/// How long a workload's setup may take: the fresh cluster may still be settling.
pub const SETUP_BUDGET_MS: u64 = 30_000;

/// Why a request failed: a ZooKeeper error code (keeper's names for them), and whether the
/// request may still have taken effect (a timeout, a lost connection).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ConnError {
    pub code: ErrorCode,
    pub indeterminate: bool,
    pub message: String,
}

impl ConnError {
    /// The request certainly did not take effect.
    pub fn definite(code: ErrorCode, message: impl Into<String>) -> ConnError {
        ConnError {
            code,
            indeterminate: false,
            message: message.into(),
        }
    }

    /// The request may have taken effect, or may yet.
    pub fn indeterminate(code: ErrorCode, message: impl Into<String>) -> ConnError {
        ConnError {
            code,
            indeterminate: true,
            message: message.into(),
        }
    }

    pub fn code(&self) -> ErrorCode {
        self.code
    }

    pub fn is_indeterminate(&self) -> bool {
        self.indeterminate
    }
}

impl From<keeper_client::Error> for ConnError {
    fn from(e: keeper_client::Error) -> ConnError {
        ConnError {
            code: e.code(),
            indeterminate: e.is_indeterminate(),
            message: e.to_string(),
        }
    }
}

/// A created znode. `path` has the sequence suffix of a sequential create.
#[derive(Clone, Debug)]
pub struct Created {
    pub path: String,
    pub stat: Stat,
    /// The reply's zxid, where the protocol tells it (the create's own is `stat.czxid`).
    pub zxid: Option<Zxid>,
}

/// A znode's data and Stat.
#[derive(Clone, Debug)]
pub struct Data {
    pub data: String,
    pub stat: Stat,
    /// The zxid the serving node had applied, where the protocol tells it.
    pub zxid: Option<Zxid>,
}

/// Whether a znode exists (its Stat if so).
#[derive(Clone, Debug)]
pub struct Existence {
    pub stat: Option<Stat>,
    pub zxid: Option<Zxid>,
}

/// A znode's children (names, sorted) and its own Stat.
#[derive(Clone, Debug)]
pub struct Children {
    pub children: Vec<String>,
    pub stat: Stat,
    pub zxid: Option<Zxid>,
}

/// A znode's Stat after a setData (the write's own zxid is `stat.mzxid`).
#[derive(Clone, Debug)]
pub struct Written {
    pub stat: Stat,
    pub zxid: Option<Zxid>,
}

/// A watch that fired.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchFired {
    pub kind: EventKind,
    pub path: String,
    /// The transaction that fired it, where the server told it (ZooKeeper before 3.9 does not).
    pub zxid: Option<Zxid>,
}

/// The session ended, as the server said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionEnd {
    /// Expired (else closed).
    pub expired: bool,
    /// The zxid of the expiry or close, where the server told it.
    pub zxid: Option<Zxid>,
}

/// What a session's event stream reported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnEvent {
    Watch(WatchFired),
    /// The server ended the session. Only sent when the server said so: a client that merely
    /// lost its server reports `Disconnected`.
    Ended(SessionEnd),
    /// The connection or the event stream broke: watches set on this node may be lost (or,
    /// over ZooKeeper's protocol, set again by the client and fired late).
    Disconnected,
}

enum Transport {
    Http(http::HttpConn),
    Zk(zk::ZkConn),
    Sim(simulated::SimConn),
}

/// One session on one node. Every request is bounded by the run's operation timeout.
pub struct Conn {
    transport: Transport,
}

/// Calls the same method on whichever transport the connection has.
macro_rules! dispatch {
    ($self:ident . $method:ident ( $($arg:expr),* )) => {
        match &$self.transport {
            Transport::Http(c) => c.$method($($arg),*).await,
            Transport::Zk(c) => c.$method($($arg),*).await,
            Transport::Sim(c) => c.$method($($arg),*).await,
        }
    };
}

impl Conn {
    /// Opens a session on `node` over the run's protocol (or the simulated cluster's port).
    pub async fn open(env: &Env, node: &Node) -> Result<Conn, String> {
        if let Some(link) = &env.sim {
            let conn = simulated::SimConn::open(link, &node.name, env.op_timeout).await?;
            return Ok(Conn {
                transport: Transport::Sim(conn),
            });
        }
        let transport = match env.protocol {
            Protocol::Http => {
                Transport::Http(http::HttpConn::open(&node.url, env.op_timeout).await?)
            }
            Protocol::Zk => Transport::Zk(zk::ZkConn::open(&node.zk_addr, env.op_timeout).await?),
        };
        Ok(Conn { transport })
    }

    /// The session timeout the server granted (it clamps the asked [`SESSION_TIMEOUT_MS`] to
    /// its own bounds: keeper and ZooKeeper to 2–20 ticks).
    pub fn session_timeout(&self) -> Duration {
        match &self.transport {
            Transport::Http(c) => c.session_timeout(),
            Transport::Zk(c) => c.session_timeout(),
            Transport::Sim(c) => c.session_timeout(),
        }
    }

    /// The session id, as the history records it.
    pub fn session(&self) -> u64 {
        match &self.transport {
            Transport::Http(c) => c.session(),
            Transport::Zk(c) => c.session(),
            Transport::Sim(c) => c.session(),
        }
    }

    pub async fn create(
        &self,
        path: &str,
        data: &str,
        mode: CreateMode,
    ) -> Result<Created, ConnError> {
        dispatch!(self.create(path, data, mode))
    }

    pub async fn get_data(
        &self,
        path: &str,
        watch: bool,
        consistency: Consistency,
    ) -> Result<Data, ConnError> {
        dispatch!(self.get_data(path, watch, consistency))
    }

    /// `Ok` with no Stat when the node does not exist; a watch is then set on its creation.
    pub async fn exists(
        &self,
        path: &str,
        watch: bool,
        consistency: Consistency,
    ) -> Result<Existence, ConnError> {
        dispatch!(self.exists(path, watch, consistency))
    }

    pub async fn get_children(
        &self,
        path: &str,
        watch: bool,
        consistency: Consistency,
    ) -> Result<Children, ConnError> {
        dispatch!(self.get_children(path, watch, consistency))
    }

    pub async fn set_data(
        &self,
        path: &str,
        data: &str,
        version: i32,
    ) -> Result<Written, ConnError> {
        dispatch!(self.set_data(path, data, version))
    }

    /// The reply's zxid where the protocol tells it (not necessarily the delete's own).
    pub async fn delete(&self, path: &str, version: i32) -> Result<Option<Zxid>, ConnError> {
        dispatch!(self.delete(path, version))
    }

    /// One multi: `check` exists (any version), then setData on `path`. A failed check is
    /// `no_node` (or `runtime_inconsistency`, as the server words it).
    pub async fn check_and_set_data(
        &self,
        check: &str,
        path: &str,
        data: &str,
        version: i32,
    ) -> Result<Written, ConnError> {
        dispatch!(self.check_and_set_data(check, path, data, version))
    }

    /// Closes the session on the server and stops the background tasks. `Ok` once the server
    /// acknowledged the close, with its zxid where the protocol tells it.
    pub async fn close(&self) -> Result<Option<Zxid>, ConnError> {
        dispatch!(self.close())
    }

    /// Closes the session, best effort, outcome ignored: what a workload client's
    /// `Client::close` ends with (the worker bounds it; the run is over for this client).
    pub fn close_and_forget(self) -> futures::future::BoxFuture<'static, ()> {
        async move {
            let _ = self.close().await;
        }
        .boxed()
    }

    /// The client goes quiet: no more heartbeats or pings, so the server expires the session
    /// on its own. Events keep flowing to the sink given to [`Conn::spawn_events`], which is
    /// told `Ended` (expired) when the server says the session is gone.
    pub fn go_quiet(&self) {
        match &self.transport {
            Transport::Http(c) => c.go_quiet(),
            Transport::Zk(c) => c.go_quiet(),
            Transport::Sim(c) => c.go_quiet(),
        }
    }

    /// Passes the session's events to `sink` (from a background task) until the session ends
    /// or the connection is closed or dropped. Call once, before the first watch is set.
    pub fn spawn_events(&self, sink: impl Fn(ConnEvent) + Send + Sync + 'static) {
        match &self.transport {
            Transport::Http(c) => c.spawn_events(sink),
            Transport::Zk(c) => c.spawn_events(sink),
            Transport::Sim(c) => c.spawn_events(sink),
        }
    }
}

/// The operations of [`Conn::check_and_set_data`]'s multi, for the transports that build one.
fn check_and_set_ops(check: &str, path: &str, data: &str, version: i32) -> Vec<TxnOp> {
    vec![
        TxnOp::Check {
            path: check.to_string(),
            version: keeper_wire::ANY_VERSION,
        },
        TxnOp::SetData {
            path: path.to_string(),
            data: data.to_string(),
            version,
        },
    ]
}

/// What a [`check_and_set_ops`] multi that succeeded wrote: its setData's Stat.
fn written_by_multi(results: Vec<OpResult>, zxid: Zxid) -> Result<Written, ConnError> {
    let stat = results.into_iter().find_map(|r| match r {
        OpResult::SetData { stat } => Some(stat),
        _ => None,
    });
    match stat {
        Some(stat) => Ok(Written {
            stat,
            zxid: Some(zxid),
        }),
        // Applied (the multi succeeded) but the reply lacks its result: the outcome is known
        // to the server only.
        None => Err(ConnError::indeterminate(
            ErrorCode::Internal,
            "a multi reply without its setData result",
        )),
    }
}

/// How a failed request ends in the history: indeterminate errors are `info`, definite ones
/// `fail`; an expired session also makes the worker open a new one.
pub fn completion_of(e: &ConnError) -> Completion {
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

/// A workload's setup: creates `paths` (persistent, in order, each unless it exists) through
/// any node that answers, over the run's protocol, within [`SETUP_BUDGET_MS`].
pub fn setup_paths(
    env: &Env,
    paths: Vec<String>,
) -> futures::future::BoxFuture<'_, anyhow::Result<()>> {
    async move { ensure_paths(env, &paths, Duration::from_millis(SETUP_BUDGET_MS)).await }.boxed()
}

/// Creates each of `paths` that does not exist yet, parents first, with a short-lived
/// session on one node after another. Retries while the cluster settles, until `budget`.
pub async fn ensure_paths(env: &Env, paths: &[String], budget: Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + budget;
    let mut last_error = String::from("no node to try");
    let mut attempt = 0usize;
    while tokio::time::Instant::now() < deadline && !env.nodes.is_empty() {
        let node = &env.nodes[attempt % env.nodes.len()];
        attempt += 1;
        let conn = match Conn::open(env, node).await {
            Ok(c) => c,
            Err(e) => {
                last_error = e;
                tokio::time::sleep(Duration::from_millis(EVENT_RECONNECT_MS)).await;
                continue;
            }
        };
        let mut done = true;
        for path in paths {
            match conn.create(path, "", CreateMode::Persistent).await {
                Ok(_) => {}
                Err(e) if e.code() == ErrorCode::NodeExists => {}
                Err(e) => {
                    last_error = format!("creating {path} on {}: {e}", node.name);
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

#[cfg(test)]
mod tests {
    use super::*;
    use checker::history::EventType;
    use keeper_client::Error;
    use keeper_wire::KeeperError;

    #[test]
    fn indeterminate_errors_become_info_and_expiry_reopens() {
        let timeout = Error::Timeout {
            url: "u".into(),
            message: "m".into(),
        };
        assert_eq!(completion_of(&timeout.into()).kind, EventType::Info);
        let lost = Error::ConnectionLost {
            url: "u".into(),
            message: "m".into(),
        };
        assert_eq!(completion_of(&lost.into()).kind, EventType::Info);
        let refused = Error::Unreachable {
            url: "u".into(),
            message: "m".into(),
        };
        assert_eq!(completion_of(&refused.into()).kind, EventType::Fail);
        let expired = Error::Keeper(KeeperError::new(ErrorCode::SessionExpired, "gone"));
        let c = completion_of(&expired.into());
        assert_eq!((c.kind, c.reopen), (EventType::Fail, true));
        let bad = Error::Keeper(KeeperError::new(ErrorCode::BadVersion, "v"));
        assert_eq!(
            completion_of(&bad.into()).error.as_deref(),
            Some("bad_version")
        );
    }
}
