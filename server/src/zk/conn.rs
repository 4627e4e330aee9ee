//! One ZooKeeper client connection: the handshake, then requests answered in order, with watch
//! notifications interleaved.
//!
//! Ordering: a notification must reach the client before the reply to any request that reads
//! the change it announces. The driver queues a session's watch events on the `EventHub` before
//! it releases the reply of the same batch, and `DriverHandle::call` does not return until the
//! attached stream (this connection's) has yielded them. One task both drains that stream and
//! writes replies, and it writes an event as soon as the stream yields it, so nothing can
//! overtake it on the socket.

use super::jute::{JuteError, Reader};
use super::proto::{self, Framed, ReadOp, Request, code, op};
use super::{Shared, session_password};
use crate::api::{Consistency, ErrorCode, KeeperError, Role, SessionId, Zxid};
use crate::core::{ClientRequest, Read, Response};
use crate::shell::sse::Item;
use futures::StreamExt;
use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;

/// How long a new connection may take to send its first frame.
pub const CONNECT_TIMEOUT_MS: u64 = 10_000;
/// Requests read ahead of the one being answered, per connection. The reader stops reading the
/// socket beyond this, which pushes back on the client.
pub const MAX_QUEUED_REQUESTS: usize = 1_000;

/// Why a connection ended. Every one is logged once, with the client's address.
#[derive(Debug, thiserror::Error)]
enum Closed {
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("frame length {0} is out of range (at most {1} bytes)")]
    FrameLength(i64, usize),
    #[error("malformed {what}: {error}")]
    Malformed {
        what: &'static str,
        error: JuteError,
    },
    #[error("no frame within {0} ms")]
    Silent(u64),
    #[error("{0}")]
    Refused(String),
    #[error("session {0:#x} ended")]
    SessionEnded(SessionId),
    #[error("another connection took the session over")]
    Replaced,
    #[error("session closed by the client")]
    ByClient,
    #[error("the client closed the connection")]
    Eof,
    #[error("the server is stopping")]
    Stopping,
}

pub(super) async fn handle(stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    shared.stats.connections.fetch_add(1, Ordering::Relaxed);
    let result = serve(stream, &shared).await;
    shared.stats.connections.fetch_sub(1, Ordering::Relaxed);
    match result {
        Ok(()) | Err(Closed::Eof | Closed::ByClient | Closed::Stopping | Closed::Replaced) => {
            tracing::debug!(%peer, "zk connection closed")
        }
        Err(e) => tracing::info!(%peer, "zk connection closed: {e}"),
    }
}

/// Reads a frame's 4-byte length and checks it.
fn frame_length(prefix: [u8; 4], max: usize) -> Result<usize, Closed> {
    let len = i32::from_be_bytes(prefix);
    if len < 0 || len as usize > max {
        return Err(Closed::FrameLength(len as i64, max));
    }
    Ok(len as usize)
}

async fn read_exact_or_eof(
    rd: &mut (impl AsyncReadExt + Unpin),
    buf: &mut [u8],
) -> Result<(), Closed> {
    match rd.read_exact(buf).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(Closed::Eof),
        Err(e) => Err(Closed::Io(e)),
    }
}

async fn read_frame(rd: &mut OwnedReadHalf, max: usize) -> Result<Vec<u8>, Closed> {
    let mut prefix = [0u8; 4];
    read_exact_or_eof(rd, &mut prefix).await?;
    let mut body = vec![0u8; frame_length(prefix, max)?];
    read_exact_or_eof(rd, &mut body).await?;
    Ok(body)
}

async fn serve(mut stream: TcpStream, shared: &Arc<Shared>) -> Result<(), Closed> {
    let max = shared.settings.max_frame_bytes;
    let mut prefix = [0u8; 4];
    let first = tokio::time::timeout(
        Duration::from_millis(CONNECT_TIMEOUT_MS),
        read_exact_or_eof(&mut stream, &mut prefix),
    )
    .await;
    match first {
        Err(_) => return Err(Closed::Silent(CONNECT_TIMEOUT_MS)),
        Ok(r) => r?,
    }
    if let Some(word) = std::str::from_utf8(&prefix)
        .ok()
        .filter(|w| is_four_letter_word(w))
    {
        let text = four_letter_word(word, shared).await;
        stream.write_all(text.as_bytes()).await?;
        let _ = stream.shutdown().await;
        return Ok(());
    }
    let mut body = vec![0u8; frame_length(prefix, max)?];
    read_exact_or_eof(&mut stream, &mut body).await?;
    let connect = proto::ConnectRequest::decode(&mut Reader::new(&body)).map_err(|error| {
        Closed::Malformed {
            what: "ConnectRequest",
            error,
        }
    })?;
    let Some(session) = handshake(&mut stream, &connect, shared).await? else {
        return Ok(());
    };
    let (rd, wr) = stream.into_split();
    Connection {
        shared: shared.clone(),
        session: session.id,
        last_zxid: session.zxid,
        wr,
        owed: 0,
    }
    .run(rd, session.timeout_ms)
    .await
}

struct Established {
    id: SessionId,
    timeout_ms: u64,
    zxid: Zxid,
}

/// `ZooKeeperServer.processConnectRequest`: a new session, or an existing one taken over by
/// this connection. `None` when the client was told its session is gone.
async fn handshake(
    stream: &mut TcpStream,
    connect: &proto::ConnectRequest,
    shared: &Shared,
) -> Result<Option<Established>, Closed> {
    let status = shared
        .driver
        .status()
        .await
        .map_err(|e| Closed::Refused(format!("no status from the driver: {e}")))?;
    if !status.serving {
        return Err(Closed::Refused(
            "this server is not serving (no established leader)".into(),
        ));
    }
    let last_seen = connect.last_zxid_seen.max(0) as Zxid;
    // ZooKeeper refuses a client that has seen more than this server has: the client goes on
    // to another server rather than travel back in time.
    if last_seen > status.applied_zxid {
        return Err(Closed::Refused(format!(
            "the client has seen zxid {last_seen:#x}, this server only {:#x}",
            status.applied_zxid
        )));
    }
    let settings = &shared.settings;
    let timeout_ms =
        (connect.timeout_ms.max(0) as u64).clamp(settings.min_session_ms, settings.max_session_ms);
    let read_only = connect.read_only.is_some();
    let established = if connect.session_id == 0 {
        let body = ClientRequest::CreateSession {
            timeout_ms,
            last_zxid: last_seen,
        };
        match shared.driver.call(body).await {
            Ok((
                zxid,
                Response::Session {
                    session,
                    timeout_ms,
                },
            )) => Established {
                id: session,
                timeout_ms,
                zxid,
            },
            Ok((_, other)) => return Err(Closed::Refused(format!("unexpected {other:?}"))),
            Err(e) => return Err(Closed::Refused(format!("cannot create a session: {e}"))),
        }
    } else {
        let id = connect.session_id as SessionId;
        let valid = connect.password == session_password(connect.session_id);
        let alive = if valid {
            let body = ClientRequest::Heartbeat {
                session: id,
                last_zxid: last_seen,
            };
            match shared.driver.call(body).await {
                Ok((zxid, _)) => Some(zxid),
                Err(e) if e.error == ErrorCode::SessionExpired => None,
                Err(e) => return Err(Closed::Refused(format!("cannot renew session: {e}"))),
            }
        } else {
            None
        };
        match alive {
            Some(zxid) => Established {
                id,
                timeout_ms,
                zxid,
            },
            None => {
                // ZooKeeper's answer to an expired session or a wrong password: timeout 0,
                // session 0, then the connection closes. The client reports SESSIONEXPIRED.
                let frame = proto::connect_response(0, 0, &[0; 16], read_only);
                stream.write_all(&frame).await?;
                tracing::info!(
                    session = format_args!("{id:#x}"),
                    valid_password = valid,
                    "zk: reconnect refused: session expired or wrong password"
                );
                return Ok(None);
            }
        }
    };
    let password = session_password(established.id as i64);
    let frame = proto::connect_response(
        established.timeout_ms as i32,
        established.id as i64,
        &password,
        read_only,
    );
    stream.write_all(&frame).await?;
    Ok(Some(established))
}

/// A reply ready to write, and whether the connection ends after it.
struct Answer {
    frame: Vec<u8>,
    zxid: Option<Zxid>,
    close: Option<Closed>,
}

type Pending = Pin<Box<dyn Future<Output = Answer> + Send>>;

struct Connection {
    shared: Arc<Shared>,
    session: SessionId,
    /// The largest zxid this connection has told the client.
    last_zxid: Zxid,
    wr: OwnedWriteHalf,
    /// Requests read and not answered yet (counted in `Stats::outstanding`).
    owed: u64,
}

impl Connection {
    async fn run(mut self, rd: OwnedReadHalf, timeout_ms: u64) -> Result<(), Closed> {
        let shared = self.shared.clone();
        let (tx, mut frames) = mpsc::channel::<Result<Vec<u8>, Closed>>(MAX_QUEUED_REQUESTS);
        // The reader owns the read half, so that a partly read frame is never lost to a
        // cancelled select. A client silent for a whole session timeout is gone (ZooKeeper
        // closes such a connection too; its clients ping every third of the timeout).
        let reader = tokio::spawn(read_frames(
            rd,
            shared.settings.max_frame_bytes,
            timeout_ms,
            tx,
        ));
        let result = self.serve(&mut frames).await;
        reader.abort();
        shared
            .stats
            .outstanding
            .fetch_sub(self.owed, Ordering::Relaxed);
        let _ = self.wr.shutdown().await;
        result
    }

    async fn serve(
        &mut self,
        frames: &mut mpsc::Receiver<Result<Vec<u8>, Closed>>,
    ) -> Result<(), Closed> {
        let shared = self.shared.clone();
        let mut events = Box::pin(shared.hub.attach_items(self.session, shared.stop.clone()));
        let mut queue: VecDeque<Framed> = VecDeque::new();
        let mut inflight: Option<Pending> = None;
        loop {
            if inflight.is_none()
                && let Some(next) = queue.pop_front()
            {
                inflight = Some(Box::pin(execute(
                    shared.clone(),
                    self.session,
                    self.last_zxid,
                    next,
                )));
            }
            tokio::select! {
                biased;
                _ = shared.stop.cancelled() => return Err(Closed::Stopping),
                item = events.next() => match item {
                    Some(Item::Watch(event)) => {
                        self.send(&proto::notification(&event)).await?;
                    }
                    // The client lost watch events: make it reconnect, which sets its
                    // watches again and fires what changed meanwhile.
                    Some(Item::Overflow { dropped }) => {
                        return Err(Closed::Refused(format!("{dropped} watch events overflowed")));
                    }
                    // The session ended (closed by this client, or expired). A reply still
                    // owed (the closeSession's own) goes out before the connection closes.
                    // Another connection took the session over (the client reconnected).
                    None => return Err(Closed::Replaced),
                    Some(Item::Ended(_)) => {
                        if let Some(pending) = inflight.take() {
                            let answer = pending.await;
                            self.owed -= 1;
                            shared.stats.outstanding.fetch_sub(1, Ordering::Relaxed);
                            if !answer.frame.is_empty() {
                                self.send(&answer.frame).await?;
                            }
                        }
                        return Err(Closed::SessionEnded(self.session));
                    }
                },
                answer = async { inflight.as_mut().expect("guarded").await }, if inflight.is_some() => {
                    inflight = None;
                    self.owed -= 1;
                    shared.stats.outstanding.fetch_sub(1, Ordering::Relaxed);
                    if let Some(zxid) = answer.zxid {
                        self.last_zxid = self.last_zxid.max(zxid);
                    }
                    if !answer.frame.is_empty() {
                        self.send(&answer.frame).await?;
                    }
                    if let Some(closed) = answer.close {
                        return Err(closed);
                    }
                },
                frame = frames.recv(), if queue.len() < MAX_QUEUED_REQUESTS => match frame {
                    Some(Ok(frame)) => {
                        shared.stats.received.fetch_add(1, Ordering::Relaxed);
                        let framed = proto::decode_request(&frame).map_err(|error| {
                            Closed::Malformed { what: "request", error }
                        })?;
                        self.owed += 1;
                        shared.stats.outstanding.fetch_add(1, Ordering::Relaxed);
                        queue.push_back(framed);
                    }
                    Some(Err(closed)) => return Err(closed),
                    None => return Err(Closed::Eof),
                },
            }
        }
    }

    async fn send(&mut self, frame: &[u8]) -> Result<(), Closed> {
        self.wr.write_all(frame).await?;
        self.shared.stats.sent.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

async fn read_frames(
    mut rd: OwnedReadHalf,
    max: usize,
    timeout_ms: u64,
    tx: mpsc::Sender<Result<Vec<u8>, Closed>>,
) {
    loop {
        let frame =
            match tokio::time::timeout(Duration::from_millis(timeout_ms), read_frame(&mut rd, max))
                .await
            {
                Ok(frame) => frame,
                Err(_) => Err(Closed::Silent(timeout_ms)),
            };
        let last = frame.is_err();
        if tx.send(frame).await.is_err() || last {
            return;
        }
    }
}

/// Answers one request: the reply frame (header and record), or a reason to close.
async fn execute(
    shared: Arc<Shared>,
    session: SessionId,
    last_zxid: Zxid,
    framed: Framed,
) -> Answer {
    let Framed {
        xid,
        op: code,
        request,
    } = framed;
    let driver = &shared.driver;
    let header = |zxid: Zxid, err: i32| proto::reply_header(xid, zxid as i64, err);
    // A keeper error as ZooKeeper's reply; `NotReady` and `Timeout` close the connection
    // instead, as a ZooKeeper server that lost its leader does: the client sees connection
    // loss (indeterminate) and moves to another server.
    let fail = |e: KeeperError| match proto::zk_code(e.error) {
        Some(err) => Answer {
            frame: header(last_zxid, err).finish(),
            zxid: None,
            close: None,
        },
        None => Answer {
            frame: Vec::new(),
            zxid: None,
            close: Some(Closed::Refused(format!("{e}"))),
        },
    };
    let ok = |zxid: Zxid, w: super::jute::Writer| Answer {
        frame: w.finish(),
        zxid: Some(zxid),
        close: None,
    };
    let read = |read: Read, watch: bool| ClientRequest::Read {
        session,
        last_zxid,
        read,
        watch,
        consistency: Consistency::Local,
    };
    match request {
        Request::Ping => match driver
            .call(ClientRequest::Heartbeat { session, last_zxid })
            .await
        {
            Ok((zxid, _)) => ok(zxid, header(zxid, code::OK)),
            Err(e) => fail(e),
        },
        Request::CloseSession => match driver
            .call(ClientRequest::CloseSession { session, last_zxid })
            .await
        {
            Ok((zxid, _)) => Answer {
                frame: header(zxid, code::OK).finish(),
                zxid: Some(zxid),
                close: Some(Closed::ByClient),
            },
            Err(e) => fail(e),
        },
        Request::Write { op, reply_stat } => {
            let body = ClientRequest::Write {
                session,
                last_zxid,
                op,
            };
            match driver.call(body).await {
                Ok((zxid, Response::Created { path, stat })) => {
                    let mut w = header(zxid, code::OK);
                    w.string(&path);
                    if reply_stat {
                        w.stat(&stat);
                    }
                    ok(zxid, w)
                }
                Ok((zxid, Response::Stat { stat })) => {
                    let mut w = header(zxid, code::OK);
                    w.stat(&stat);
                    ok(zxid, w)
                }
                Ok((zxid, _)) => ok(zxid, header(zxid, code::OK)),
                Err(e) => fail(e),
            }
        }
        Request::Read(r) => match read_one(&shared, session, last_zxid, r.clone()).await {
            Ok((zxid, response)) => {
                let mut w = header(zxid, code::OK);
                write_read(&mut w, &r, &response);
                ok(zxid, w)
            }
            Err(e) => fail(e),
        },
        Request::Sync { path } => {
            let body = ClientRequest::Sync {
                session,
                last_zxid,
                path: path.clone(),
            };
            match driver.call(body).await {
                Ok((zxid, _)) => {
                    let mut w = header(zxid, code::OK);
                    w.string(&path);
                    ok(zxid, w)
                }
                Err(e) => fail(e),
            }
        }
        Request::Multi { ops } => {
            let codes: Vec<i32> = ops.iter().map(|(c, _)| *c).collect();
            let body = ClientRequest::Multi {
                session,
                last_zxid,
                ops: ops.into_iter().map(|(_, op)| op).collect(),
            };
            match driver.call(body).await {
                Ok((zxid, Response::Multi { results })) => {
                    let mut w = header(zxid, code::OK);
                    proto::multi_response(&mut w, &codes, &results);
                    ok(zxid, w)
                }
                Ok((zxid, _)) => ok(zxid, header(zxid, code::SYSTEM_ERROR)),
                // A multi that failed as a whole reports every op's outcome with header OK,
                // as ZooKeeper does; the client raises the first op error.
                Err(KeeperError {
                    results: Some(results),
                    ..
                }) => {
                    let mut w = header(last_zxid, code::OK);
                    proto::multi_response(&mut w, &codes, &results);
                    ok(last_zxid, w)
                }
                Err(e) => fail(e),
            }
        }
        Request::MultiRead { ops } => {
            // Each read is answered from this server's tree in turn, as ZooKeeper's multiRead
            // (not a snapshot: a write may land between two of them).
            let mut w = header(last_zxid, code::OK);
            let mut zxid = last_zxid;
            for r in ops {
                match read_one(&shared, session, last_zxid, r.clone()).await {
                    Ok((z, response)) => {
                        zxid = zxid.max(z);
                        let (c, children_only) = match &r {
                            ReadOp::GetData { .. } => (op::GET_DATA, false),
                            _ => (op::GET_CHILDREN, true),
                        };
                        w.int(c).bool(false).int(0);
                        match (&response, children_only) {
                            (Response::Children { children, .. }, true) => {
                                w.strings(children);
                            }
                            _ => write_read(&mut w, &r, &response),
                        }
                    }
                    Err(e) => match proto::zk_code(e.error) {
                        Some(err) => _ = w.int(op::ERROR).bool(false).int(err).int(err),
                        None => return fail(e),
                    },
                }
            }
            w.int(-1).bool(true).int(-1);
            ok(zxid, w)
        }
        Request::AllChildrenNumber { path } => {
            match driver
                .call(read(Read::AllChildrenNumber { path }, false))
                .await
            {
                Ok((zxid, Response::Count { count })) => {
                    let mut w = header(zxid, code::OK);
                    w.int(count.min(i32::MAX as u64) as i32);
                    ok(zxid, w)
                }
                Ok((zxid, _)) => ok(zxid, header(zxid, code::SYSTEM_ERROR)),
                Err(e) => fail(e),
            }
        }
        Request::SetWatches {
            relative_zxid,
            data,
            exist,
            child,
        } => {
            let body = ClientRequest::SetWatches {
                session,
                last_zxid,
                relative_zxid: relative_zxid.max(0) as Zxid,
                data,
                exist,
                child,
            };
            match driver.call(body).await {
                Ok((zxid, _)) => ok(zxid, header(zxid, code::OK)),
                Err(e) => fail(e),
            }
        }
        Request::RemoveWatches {
            path,
            kind,
            check_only,
        } => {
            let body = ClientRequest::RemoveWatches {
                session,
                path,
                kind,
                check_only,
            };
            match driver.call(body).await {
                Ok((zxid, _)) => ok(zxid, header(zxid, code::OK)),
                Err(e) => fail(e),
            }
        }
        Request::GetAcl { path } => match driver.call(read(Read::Exists { path }, false)).await {
            Ok((zxid, Response::Exists { stat: Some(stat) })) => {
                let mut w = header(zxid, code::OK);
                proto::open_acl(&mut w);
                w.stat(&stat);
                ok(zxid, w)
            }
            Ok((zxid, _)) => ok(zxid, header(zxid, code::NO_NODE)),
            Err(e) => fail(e),
        },
        Request::SetAcl { path, version } => {
            match driver.call(read(Read::Exists { path }, false)).await {
                // The ACL stays what it was (the open one), so its version stays 0.
                Ok((zxid, Response::Exists { stat: Some(stat) })) => {
                    if version != -1 && version != 0 {
                        ok(zxid, header(zxid, code::BAD_VERSION))
                    } else {
                        let mut w = header(zxid, code::OK);
                        w.stat(&stat);
                        ok(zxid, w)
                    }
                }
                Ok((zxid, _)) => ok(zxid, header(zxid, code::NO_NODE)),
                Err(e) => fail(e),
            }
        }
        Request::Refuse(err) => {
            tracing::debug!(xid, op = code, err, "zk: request refused");
            ok(last_zxid, header(last_zxid, err))
        }
    }
}

/// One read through the core, from this server's applied tree (ZooKeeper's reads are local).
async fn read_one(
    shared: &Shared,
    session: SessionId,
    last_zxid: Zxid,
    r: ReadOp,
) -> Result<(Zxid, Response), KeeperError> {
    let (read, watch) = match r {
        ReadOp::Exists { path, watch } => (Read::Exists { path }, watch),
        ReadOp::GetData { path, watch } => (Read::GetData { path }, watch),
        ReadOp::GetChildren { path, watch, .. } => (Read::GetChildren { path }, watch),
    };
    let body = ClientRequest::Read {
        session,
        last_zxid,
        read,
        watch,
        consistency: Consistency::Local,
    };
    match shared.driver.call(body).await? {
        // exists on a missing node is NONODE on the wire (the watch, if asked, is set).
        (_, Response::Exists { stat: None }) => {
            Err(KeeperError::new(ErrorCode::NoNode, "no such node"))
        }
        answer => Ok(answer),
    }
}

/// The record of a successful read.
fn write_read(w: &mut super::jute::Writer, r: &ReadOp, response: &Response) {
    match (r, response) {
        (_, Response::Exists { stat: Some(stat) }) => _ = w.stat(stat),
        (_, Response::Data { data, stat }) => _ = w.buffer(data.as_bytes()).stat(stat),
        (ReadOp::GetChildren { with_stat, .. }, Response::Children { children, stat }) => {
            w.strings(children);
            if *with_stat {
                w.stat(stat);
            }
        }
        _ => {}
    }
}

fn is_four_letter_word(word: &str) -> bool {
    matches!(word, "ruok" | "srvr" | "stat" | "mntr" | "isro" | "envi")
}

/// ZooKeeper's four-letter words, as text.
async fn four_letter_word(word: &str, shared: &Shared) -> String {
    if word == "ruok" {
        return "imok".into();
    }
    if word == "isro" {
        return "rw".into();
    }
    if word == "envi" {
        // Clients (kazoo's `server_version`) read the protocol level from this line.
        return format!("Environment:\nzookeeper.version={}\n", super::ZK_VERSION);
    }
    let Ok(status) = shared.driver.status().await else {
        return "This ZooKeeper instance is not currently serving requests\n".into();
    };
    let stats = &shared.stats;
    let mode = match status.role {
        _ if !status.serving => {
            return "This ZooKeeper instance is not currently serving requests\n".into();
        }
        Role::Leading if status.voters.len() == 1 => "standalone",
        Role::Leading => "leader",
        Role::Following => "follower",
        Role::Looking => "looking",
    };
    let version = super::ZK_VERSION;
    let received = stats.received.load(Ordering::Relaxed);
    let sent = stats.sent.load(Ordering::Relaxed);
    let connections = stats.connections.load(Ordering::Relaxed);
    let outstanding = stats.outstanding.load(Ordering::Relaxed);
    let zxid = status.applied_zxid;
    match word {
        "mntr" => {
            let mut out = format!(
                "zk_version\t{version}\nzk_server_state\t{mode}\nzk_zxid\t{zxid:#x}\n\
                 zk_epoch\t{}\nzk_packets_received\t{received}\nzk_packets_sent\t{sent}\n\
                 zk_num_alive_connections\t{connections}\nzk_outstanding_requests\t{outstanding}\n\
                 zk_znode_count\t{}\nzk_watch_count\t{}\n",
                status.epoch, status.znodes, status.watches
            );
            if mode == "leader" {
                // Followers counted as ZooKeeper's leader counts learners: synced ones.
                out.push_str(&format!(
                    "zk_followers\t{}\nzk_synced_followers\t{}\n",
                    status.synced_followers.len(),
                    status.synced_followers.len()
                ));
            }
            out
        }
        _ => {
            let clients = if word == "stat" {
                format!("Clients:\n ({connections} connections)\n\n")
            } else {
                String::new()
            };
            format!(
                "Zookeeper version: {version}\n{clients}Latency min/avg/max: 0/0.0/0\n\
                 Received: {received}\nSent: {sent}\nConnections: {connections}\n\
                 Outstanding: {outstanding}\nZxid: {zxid:#x}\nMode: {mode}\nNode count: {}\n",
                status.znodes
            )
        }
    }
}
