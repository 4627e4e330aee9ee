//! The TCP transport between keeper servers.
//!
//! Frame: `[u32 big-endian length][u8 version][serde_json payload]`, where the length counts
//! the version byte and the payload. The first frame of a connection is a [`Hello`]; every
//! later frame is one [`PeerMsg`].
//!
//! Each node keeps one outgoing connection per peer and only writes to it; connections that
//! peers open to it are only read. So a message from A to B always travels on A's connection,
//! and the two directions fail and reconnect independently. The transport is lossy by design:
//! the core tolerates lost, delayed and duplicated messages, so on any trouble (a full queue,
//! a failed write, a peer that is down) messages are dropped rather than waited for.

use super::driver::DriverHandle;
use crate::api::NodeId;
use crate::core::PeerMsg;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

/// The frame format version this build speaks.
pub const PEER_FRAME_VERSION: u8 = 1;
/// Largest frame (version byte and payload); a SNAP sync of a large tree is the biggest.
pub const MAX_FRAME_BYTES: usize = 64 << 20;
/// Messages queued for one peer at most; on overflow the queue and the connection are dropped.
pub const MAX_PEER_QUEUE: usize = 8192;
pub const INITIAL_RECONNECT_BACKOFF_MS: u64 = 50;
pub const MAX_RECONNECT_BACKOFF_MS: u64 = 1000;
/// A partitioned peer must not hold a connect attempt for long.
pub const CONNECT_TIMEOUT_MS: u64 = 1000;
/// A write that makes no progress for this long means the peer is not reading: drop it.
pub const PEER_WRITE_TIMEOUT_MS: u64 = 5000;
/// An incoming connection must say who it is within this long.
pub const HELLO_TIMEOUT_MS: u64 = 5000;
/// Incoming peer connections at once; more are refused.
pub const MAX_INCOMING_PEER_CONNECTIONS: usize = 64;

/// The first frame on every connection.
#[derive(Serialize, Deserialize, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
struct Hello {
    from: NodeId,
    to: NodeId,
    version: u8,
}

/// Messages waiting for one peer. The driver pushes without waiting; the peer's writer task
/// takes them in bulk.
#[derive(Default)]
struct Outbox {
    state: Mutex<OutboxState>,
    ready: Notify,
}

#[derive(Default)]
struct OutboxState {
    msgs: VecDeque<PeerMsg>,
    /// Bumped on overflow: the writer drops its connection when it sees a new value.
    resets: u64,
}

/// The sending side: one outbox and one writer task per peer.
pub struct Transport {
    outboxes: BTreeMap<NodeId, Arc<Outbox>>,
}

impl Transport {
    /// Starts a writer task for every peer (`peers` excludes this node).
    pub fn start(
        me: NodeId,
        peers: BTreeMap<NodeId, SocketAddr>,
        stop: CancellationToken,
    ) -> Transport {
        let mut outboxes = BTreeMap::new();
        for (peer, addr) in peers {
            let outbox = Arc::new(Outbox::default());
            tokio::spawn(write_loop(me, peer, addr, outbox.clone(), stop.clone()));
            outboxes.insert(peer, outbox);
        }
        Transport { outboxes }
    }

    /// Queues a message; never waits.
    pub fn send(&self, to: NodeId, msg: PeerMsg) {
        let Some(outbox) = self.outboxes.get(&to) else {
            tracing::warn!(
                to,
                msg = msg.name(),
                "message for a server that is not a member"
            );
            return;
        };
        {
            let mut state = outbox.state.lock().unwrap_or_else(|e| e.into_inner());
            if state.msgs.len() >= MAX_PEER_QUEUE {
                tracing::warn!(
                    to,
                    dropped = state.msgs.len(),
                    "peer is not keeping up; dropping its queue and connection"
                );
                state.msgs.clear();
                state.resets += 1;
            }
            state.msgs.push_back(msg);
        }
        outbox.ready.notify_one();
    }
}

fn encode_frame(buf: &mut Vec<u8>, payload: &[u8]) -> bool {
    let len = payload.len() + 1;
    if len > MAX_FRAME_BYTES {
        return false;
    }
    buf.extend_from_slice(&(len as u32).to_be_bytes());
    buf.push(PEER_FRAME_VERSION);
    buf.extend_from_slice(payload);
    true
}

/// Reads one frame's payload. `Ok(None)` on a clean end of stream before a frame starts.
async fn read_frame(r: &mut (impl AsyncRead + Unpin)) -> std::io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len == 0 || len > MAX_FRAME_BYTES {
        return Err(std::io::Error::other(format!(
            "frame of {len} bytes (allowed: 1..={MAX_FRAME_BYTES})"
        )));
    }
    let mut version = [0u8; 1];
    r.read_exact(&mut version).await?;
    if version[0] != PEER_FRAME_VERSION {
        return Err(std::io::Error::other(format!(
            "frame version {} (this build speaks {PEER_FRAME_VERSION})",
            version[0]
        )));
    }
    let mut payload = vec![0u8; len - 1];
    r.read_exact(&mut payload).await?;
    Ok(Some(payload))
}

/// Keeps one connection to `peer` and writes its outbox to it.
async fn write_loop(
    me: NodeId,
    peer: NodeId,
    addr: SocketAddr,
    outbox: Arc<Outbox>,
    stop: CancellationToken,
) {
    let mut backoff_ms = INITIAL_RECONNECT_BACKOFF_MS;
    let mut failures = 0u32;
    while !stop.is_cancelled() {
        let stream = match connect(me, peer, addr).await {
            Ok(stream) => stream,
            Err(e) => {
                // What was queued for a peer we cannot reach is stale by the time we can.
                outbox
                    .state
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .msgs
                    .clear();
                if failures == 0 {
                    tracing::info!(peer, %addr, "cannot connect to peer: {e}");
                } else {
                    tracing::debug!(peer, %addr, "cannot connect to peer: {e}");
                }
                failures = failures.saturating_add(1);
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(backoff_ms)) => {}
                }
                backoff_ms = (backoff_ms * 2).min(MAX_RECONNECT_BACKOFF_MS);
                continue;
            }
        };
        tracing::info!(peer, %addr, "connected to peer");
        backoff_ms = INITIAL_RECONNECT_BACKOFF_MS;
        failures = 0;
        if let Err(e) = send_until_broken(stream, &outbox, &stop).await {
            tracing::info!(peer, %addr, "connection to peer lost: {e}");
        }
    }
}

async fn connect(me: NodeId, peer: NodeId, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let timeout = Duration::from_millis(CONNECT_TIMEOUT_MS);
    let mut stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| std::io::Error::other(format!("no answer in {CONNECT_TIMEOUT_MS} ms")))??;
    stream.set_nodelay(true)?;
    let hello = serde_json::to_vec(&Hello {
        from: me,
        to: peer,
        version: PEER_FRAME_VERSION,
    })
    .map_err(std::io::Error::other)?;
    let mut frame = Vec::new();
    encode_frame(&mut frame, &hello);
    write_all_bounded(&mut stream, &frame).await?;
    Ok(stream)
}

async fn write_all_bounded(
    w: &mut (impl tokio::io::AsyncWrite + Unpin),
    bytes: &[u8],
) -> std::io::Result<()> {
    let timeout = Duration::from_millis(PEER_WRITE_TIMEOUT_MS);
    match tokio::time::timeout(timeout, w.write_all(bytes)).await {
        Ok(result) => result,
        Err(_) => Err(std::io::Error::other(format!(
            "peer took no data for {PEER_WRITE_TIMEOUT_MS} ms"
        ))),
    }
}

/// Writes queued messages until the connection breaks, the queue overflows or the node stops.
async fn send_until_broken(
    stream: TcpStream,
    outbox: &Outbox,
    stop: &CancellationToken,
) -> std::io::Result<()> {
    let (mut read_half, mut write_half) = stream.into_split();
    let resets_at_connect = outbox
        .state
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .resets;
    let mut probe = [0u8; 1];
    let mut buf = Vec::new();
    loop {
        let (msgs, resets) = {
            let mut state = outbox.state.lock().unwrap_or_else(|e| e.into_inner());
            (std::mem::take(&mut state.msgs), state.resets)
        };
        if resets != resets_at_connect {
            return Err(std::io::Error::other("send queue overflowed"));
        }
        if msgs.is_empty() {
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                _ = outbox.ready.notified() => continue,
                // The peer never writes on this connection: anything readable is its end.
                read = read_half.read(&mut probe) => {
                    return Err(match read {
                        Ok(_) => std::io::Error::other("closed by the peer"),
                        Err(e) => e,
                    });
                }
            }
        }
        buf.clear();
        for msg in &msgs {
            let payload = serde_json::to_vec(msg).map_err(std::io::Error::other)?;
            if !encode_frame(&mut buf, &payload) {
                tracing::error!(
                    msg = msg.name(),
                    bytes = payload.len(),
                    "message exceeds MAX_FRAME_BYTES; not sent"
                );
            }
        }
        write_all_bounded(&mut write_half, &buf).await?;
    }
}

/// Accepts connections from peers and feeds what they send to the driver.
pub async fn accept(
    listener: TcpListener,
    me: NodeId,
    members: Vec<NodeId>,
    driver: DriverHandle,
    stop: CancellationToken,
) {
    let members = Arc::new(members);
    let slots = Arc::new(Semaphore::new(MAX_INCOMING_PEER_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, remote) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Usually out of file descriptors: wait a little instead of spinning.
                tracing::warn!("accepting a peer connection failed: {e}");
                tokio::time::sleep(Duration::from_millis(INITIAL_RECONNECT_BACKOFF_MS)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%remote, "too many peer connections; refusing one");
            continue;
        };
        let (members, driver, stop) = (members.clone(), driver.clone(), stop.clone());
        tokio::spawn(async move {
            let _slot = slot;
            if let Err(e) = read_peer(stream, me, &members, &driver, &stop).await {
                tracing::info!(%remote, "peer connection closed: {e}");
            }
        });
    }
}

async fn read_peer(
    mut stream: TcpStream,
    me: NodeId,
    members: &[NodeId],
    driver: &DriverHandle,
    stop: &CancellationToken,
) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let hello = tokio::time::timeout(
        Duration::from_millis(HELLO_TIMEOUT_MS),
        read_frame(&mut stream),
    )
    .await
    .map_err(|_| std::io::Error::other("no hello"))??
    .ok_or_else(|| std::io::Error::other("closed before its hello"))?;
    let hello: Hello = serde_json::from_slice(&hello)
        .map_err(|e| std::io::Error::other(format!("bad hello: {e}")))?;
    if !members.contains(&hello.from) || hello.to != me || hello.version != PEER_FRAME_VERSION {
        tracing::warn!(
            from = hello.from,
            to = hello.to,
            version = hello.version,
            "refusing a peer connection: not a member of this ensemble, or not meant for this \
             server"
        );
        return Ok(());
    }
    let from = hello.from;
    tracing::debug!(from, "peer connected");
    let mut reader = tokio::io::BufReader::new(stream);
    let ended = loop {
        let frame = tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            frame = read_frame(&mut reader) => frame,
        };
        let frame = match frame {
            Ok(Some(frame)) => frame,
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        };
        let msg: PeerMsg = match serde_json::from_slice(&frame) {
            Ok(msg) => msg,
            Err(e) => {
                break Err(std::io::Error::other(format!(
                    "bad message from {from}: {e}"
                )));
            }
        };
        if !driver.peer(from, msg).await {
            return Ok(());
        }
    };
    // A closed or reset connection: a follower whose leader this was elects at once.
    driver.peer_disconnected(from).await;
    ended
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_and_bounds_hold() {
        let mut buf = Vec::new();
        assert!(encode_frame(&mut buf, b"{\"a\":1}"));
        assert!(encode_frame(&mut buf, b"[]"));
        let mut r = &buf[..];
        assert_eq!(read_frame(&mut r).await.unwrap().unwrap(), b"{\"a\":1}");
        assert_eq!(read_frame(&mut r).await.unwrap().unwrap(), b"[]");
        assert!(read_frame(&mut r).await.unwrap().is_none());

        let mut huge = ((MAX_FRAME_BYTES + 1) as u32).to_be_bytes().to_vec();
        huge.push(PEER_FRAME_VERSION);
        assert!(read_frame(&mut &huge[..]).await.is_err());
        let wrong_version = [0, 0, 0, 3, 9, b'{', b'}'];
        assert!(read_frame(&mut &wrong_version[..]).await.is_err());
    }

    fn ping() -> PeerMsg {
        PeerMsg::Ping {
            epoch: 1,
            seq: 7,
            committed: 0,
        }
    }

    /// A member's messages reach the driver; a stranger's connection is dropped unread.
    #[tokio::test]
    async fn only_members_get_through() {
        use super::super::driver::{DriverHandle, DriverInput};
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::channel(16);
        let stop = CancellationToken::new();
        tokio::spawn(accept(
            listener,
            1,
            vec![2],
            DriverHandle::for_test(tx),
            stop.clone(),
        ));

        // A stranger (id 9), then a member addressing the wrong server: both refused.
        for (from, to) in [(9, 1), (2, 5)] {
            let mut conn = connect(from, to, addr).await.unwrap();
            let mut frame = Vec::new();
            encode_frame(&mut frame, &serde_json::to_vec(&ping()).unwrap());
            let _ = conn.write_all(&frame).await;
            let mut byte = [0u8; 1];
            let closed = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut byte))
                .await
                .expect("the acceptor closes the connection");
            assert!(matches!(closed, Ok(0) | Err(_)));
        }

        // A member, through the real writer.
        let transport = Transport::start(2, BTreeMap::from([(1, addr)]), stop.clone());
        transport.send(1, ping());
        let got = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("the member's message arrives")
            .unwrap();
        match got {
            DriverInput::Peer { from, msg } => assert_eq!((from, msg), (2, ping())),
            _ => panic!("expected a peer message"),
        }
        stop.cancel();
    }
}
