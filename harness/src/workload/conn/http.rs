//! The HTTP transport: one keeper session on one node over `NodeClient` (no failover, no
//! retries), kept alive by our own heartbeats, its events read from the node's SSE stream.
//! Every reply carries the node's zxid, which requests send back as `last_zxid`.

use super::{
    Children, ConnError, ConnEvent, Created, Data, EVENT_RECONNECT_MS, Existence,
    SESSION_TIMEOUT_MS, SessionEnd, WatchFired, Written, check_and_set_ops, written_by_multi,
};
use keeper_client::{NodeClient, StreamEvent};
use keeper_wire::{
    Consistency, CreateMode, CreateRequest, CreateSessionRequest, DeleteRequest, ErrorCode,
    HeartbeatRequest, MultiRequest, ReadRequest, SessionId, SetDataRequest, Zxid,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub(super) struct HttpConn {
    node: NodeClient,
    session: SessionId,
    /// The session timeout the node granted.
    timeout: Duration,
    last_zxid: Arc<AtomicU64>,
    heartbeats: Arc<AtomicBool>,
    cancel: CancellationToken,
}

impl HttpConn {
    /// Creates a session on `url` and starts heartbeating it every third of its timeout.
    pub(super) async fn open(url: &str, op_timeout: Duration) -> Result<HttpConn, String> {
        let node = NodeClient::new(url, op_timeout).map_err(|e| e.to_string())?;
        let reply = node
            .create_session(&CreateSessionRequest {
                timeout_ms: SESSION_TIMEOUT_MS,
                last_zxid: 0,
            })
            .await
            .map_err(|e| format!("create_session on {url}: {e}"))?;
        let conn = HttpConn {
            node,
            session: reply.session,
            timeout: Duration::from_millis(reply.timeout_ms),
            last_zxid: Arc::new(AtomicU64::new(reply.zxid)),
            heartbeats: Arc::new(AtomicBool::new(true)),
            cancel: CancellationToken::new(),
        };
        conn.spawn_heartbeats();
        Ok(conn)
    }

    fn spawn_heartbeats(&self) {
        let (node, session, last, enabled, cancel) = (
            self.node.with_timeout(self.timeout / 3),
            self.session,
            self.last_zxid.clone(),
            self.heartbeats.clone(),
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

    /// Remembers a zxid a reply carried (requests send the largest seen).
    fn saw(&self, zxid: Zxid) {
        self.last_zxid.fetch_max(zxid, Ordering::Relaxed);
    }

    fn read(&self, path: &str, watch: bool, consistency: Consistency) -> ReadRequest {
        ReadRequest {
            session: self.session,
            last_zxid: self.last_zxid(),
            path: path.to_string(),
            watch,
            consistency,
        }
    }

    pub(super) async fn create(
        &self,
        path: &str,
        data: &str,
        mode: CreateMode,
    ) -> Result<Created, ConnError> {
        let req = CreateRequest {
            session: self.session,
            last_zxid: self.last_zxid(),
            path: path.to_string(),
            data: data.to_string(),
            mode,
        };
        let r = self.node.create(&req).await?;
        self.saw(r.zxid);
        Ok(Created {
            path: r.path,
            stat: r.stat,
            zxid: Some(r.zxid),
        })
    }

    pub(super) async fn get_data(
        &self,
        path: &str,
        watch: bool,
        consistency: Consistency,
    ) -> Result<Data, ConnError> {
        let r = self
            .node
            .get_data(&self.read(path, watch, consistency))
            .await?;
        self.saw(r.zxid);
        Ok(Data {
            data: r.data,
            stat: r.stat,
            zxid: Some(r.zxid),
        })
    }

    pub(super) async fn exists(
        &self,
        path: &str,
        watch: bool,
        consistency: Consistency,
    ) -> Result<Existence, ConnError> {
        let r = self
            .node
            .exists(&self.read(path, watch, consistency))
            .await?;
        self.saw(r.zxid);
        Ok(Existence {
            stat: r.stat,
            zxid: Some(r.zxid),
        })
    }

    pub(super) async fn get_children(
        &self,
        path: &str,
        watch: bool,
        consistency: Consistency,
    ) -> Result<Children, ConnError> {
        let r = self
            .node
            .get_children(&self.read(path, watch, consistency))
            .await?;
        self.saw(r.zxid);
        Ok(Children {
            children: r.children,
            stat: r.stat,
            zxid: Some(r.zxid),
        })
    }

    pub(super) async fn set_data(
        &self,
        path: &str,
        data: &str,
        version: i32,
    ) -> Result<Written, ConnError> {
        let req = SetDataRequest {
            session: self.session,
            last_zxid: self.last_zxid(),
            path: path.to_string(),
            data: data.to_string(),
            version,
        };
        let r = self.node.set_data(&req).await?;
        self.saw(r.zxid);
        Ok(Written {
            stat: r.stat,
            zxid: Some(r.zxid),
        })
    }

    pub(super) async fn delete(&self, path: &str, version: i32) -> Result<Option<Zxid>, ConnError> {
        let req = DeleteRequest {
            session: self.session,
            last_zxid: self.last_zxid(),
            path: path.to_string(),
            version,
        };
        let r = self.node.delete(&req).await?;
        self.saw(r.zxid);
        Ok(Some(r.zxid))
    }

    pub(super) async fn check_and_set_data(
        &self,
        check: &str,
        path: &str,
        data: &str,
        version: i32,
    ) -> Result<Written, ConnError> {
        let req = MultiRequest {
            session: self.session,
            last_zxid: self.last_zxid(),
            ops: check_and_set_ops(check, path, data, version),
        };
        let r = self.node.multi(&req).await?;
        self.saw(r.zxid);
        written_by_multi(r.results, r.zxid)
    }

    /// Streams the session's events into `sink` until the session ends or the connection is
    /// dropped. Reopens a broken stream (after reporting `Disconnected`).
    pub(super) fn spawn_events(&self, sink: impl Fn(ConnEvent) + Send + Sync + 'static) {
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
                            Some(Ok(StreamEvent::Watch(w))) => sink(ConnEvent::Watch(WatchFired {
                                kind: w.kind,
                                path: w.path,
                                zxid: Some(w.zxid),
                            })),
                            Some(Ok(StreamEvent::Session(s))) => {
                                sink(ConnEvent::Ended(SessionEnd {
                                    expired: s.state == "expired",
                                    zxid: Some(s.zxid),
                                }));
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

    /// No more heartbeats: with no requests either, the node expires the session.
    pub(super) fn go_quiet(&self) {
        self.heartbeats.store(false, Ordering::Relaxed);
    }

    /// Closes the session on the server (bounded by the client's timeout) and stops the tasks.
    pub(super) async fn close(&self) -> Result<Option<Zxid>, ConnError> {
        self.cancel.cancel();
        let req = HeartbeatRequest {
            last_zxid: self.last_zxid(),
        };
        let r = self.node.close_session(self.session, &req).await?;
        self.saw(r.zxid);
        Ok(Some(r.zxid))
    }
}

impl Drop for HttpConn {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}
