//! The TCP transport between keeper servers.
//!
//! Frame: `[u32 big-endian length][u8 version][serde_json payload]`, where the length counts
//! the version byte and the payload. A connection opens with a handshake: the connector's
//! [`Hello`], then the acceptor's challenge, the connector's proof that it knows the ensemble
//! secret and the acceptor's verdict (see [`super::peer_admission`]); every later frame, from
//! the connector only, is one [`PeerMsg`].
//!
//! Each node keeps one outgoing connection per peer and only writes to it; connections that
//! peers open to it are only read. So a message from A to B always travels on A's connection,
//! and the two directions fail and reconnect independently. The transport is lossy by design:
//! the core tolerates lost, delayed and duplicated messages, so on any trouble (a full queue,
//! a failed write, a peer that is down) messages are dropped rather than waited for.

use super::driver::DriverHandle;
use super::peer_admission::{self, Challenge, PeerSecret, PeerSlots, Proof, Slot, Verdict};
use crate::api::NodeId;
use crate::core::PeerMsg;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// The frame format version this build speaks (2: the authenticated handshake).
pub const PEER_FRAME_VERSION: u8 = 2;
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
/// An incoming connection must say who it is and prove it within this long; an outgoing one
/// must get its verdict within this long.
pub const HANDSHAKE_TIMEOUT_MS: u64 = 3000;
/// Incoming peer connections at once, handshakes included (see `peer_admission` for who
/// makes way when they are all taken).
pub const MAX_INCOMING_PEER_CONNECTIONS: usize = 64;
/// Largest handshake frame: a hello, a challenge, a proof or a verdict is far smaller.
const MAX_HANDSHAKE_FRAME_BYTES: usize = 4096;

/// The first frame on every connection.
#[derive(Serialize, serde::Deserialize, Debug, PartialEq, Eq)]
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
        secret: Option<PeerSecret>,
        stop: CancellationToken,
    ) -> Transport {
        let mut outboxes = BTreeMap::new();
        for (peer, addr) in peers {
            let outbox = Arc::new(Outbox::default());
            let link = Link {
                me,
                peer,
                addr,
                secret: secret.clone(),
            };
            tokio::spawn(write_loop(link, outbox.clone(), stop.clone()));
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
    read_frame_within(r, MAX_FRAME_BYTES).await
}

/// One handshake message; a connection that ends or sends something else is refused.
async fn read_handshake<T: DeserializeOwned>(
    r: &mut (impl AsyncRead + Unpin),
    what: &str,
) -> std::io::Result<T> {
    let frame = read_frame_within(r, MAX_HANDSHAKE_FRAME_BYTES)
        .await?
        .ok_or_else(|| std::io::Error::other(format!("closed before its {what}")))?;
    serde_json::from_slice(&frame).map_err(|e| std::io::Error::other(format!("bad {what}: {e}")))
}

async fn write_handshake(
    w: &mut (impl tokio::io::AsyncWrite + Unpin),
    msg: &impl Serialize,
) -> std::io::Result<()> {
    let payload = serde_json::to_vec(msg).map_err(std::io::Error::other)?;
    let mut frame = Vec::new();
    encode_frame(&mut frame, &payload);
    write_all_bounded(w, &frame).await
}

async fn read_frame_within(
    r: &mut (impl AsyncRead + Unpin),
    max_bytes: usize,
) -> std::io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len == 0 || len > max_bytes {
        return Err(std::io::Error::other(format!(
            "frame of {len} bytes (allowed: 1..={max_bytes})"
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

/// One direction of the link between this node and a peer: who we are, whom we connect to.
#[derive(Clone)]
struct Link {
    me: NodeId,
    peer: NodeId,
    addr: SocketAddr,
    secret: Option<PeerSecret>,
}

/// Keeps one connection to `peer` and writes its outbox to it.
async fn write_loop(link: Link, outbox: Arc<Outbox>, stop: CancellationToken) {
    let (peer, addr) = (link.peer, link.addr);
    let mut backoff_ms = INITIAL_RECONNECT_BACKOFF_MS;
    let mut failures = 0u32;
    while !stop.is_cancelled() {
        let stream = match connect(&link).await {
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

/// Connects and authenticates: hello, the peer's challenge, our proof, its verdict.
async fn connect(link: &Link) -> std::io::Result<TcpStream> {
    let timeout = Duration::from_millis(CONNECT_TIMEOUT_MS);
    let mut stream = tokio::time::timeout(timeout, TcpStream::connect(link.addr))
        .await
        .map_err(|_| std::io::Error::other(format!("no answer in {CONNECT_TIMEOUT_MS} ms")))??;
    stream.set_nodelay(true)?;
    let handshake = async {
        let hello = Hello {
            from: link.me,
            to: link.peer,
            version: PEER_FRAME_VERSION,
        };
        write_handshake(&mut stream, &hello).await?;
        let challenge: Challenge = read_handshake(&mut stream, "challenge").await?;
        let nonce = peer_admission::from_hex(&challenge.nonce)
            .ok_or_else(|| std::io::Error::other("the challenge's nonce is not hex"))?;
        let proof = match &link.secret {
            Some(secret) => peer_admission::to_hex(&secret.proof(link.me, link.peer, &nonce)),
            None => String::new(),
        };
        write_handshake(&mut stream, &Proof { proof }).await?;
        let verdict: Verdict = read_handshake(&mut stream, "verdict").await?;
        if !verdict.accepted {
            return Err(std::io::Error::other(format!(
                "the peer refused this server: {}",
                verdict.reason
            )));
        }
        Ok(())
    };
    tokio::time::timeout(Duration::from_millis(HANDSHAKE_TIMEOUT_MS), handshake)
        .await
        .map_err(|_| {
            std::io::Error::other(format!("no handshake within {HANDSHAKE_TIMEOUT_MS} ms"))
        })??;
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

/// Accepts connections from peers and feeds what they send to the driver, once they have
/// proven they know `secret` (any connection from a member, without one).
pub async fn accept(
    listener: TcpListener,
    me: NodeId,
    members: Vec<NodeId>,
    secret: Option<PeerSecret>,
    driver: DriverHandle,
    stop: CancellationToken,
) {
    let acceptor = Arc::new(Acceptor {
        me,
        members,
        secret,
        slots: Arc::new(PeerSlots::default()),
    });
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
        let Some(slot) = acceptor.slots.admit() else {
            tracing::warn!(%remote, "too many peer connections; refusing one");
            continue;
        };
        let (acceptor, driver, stop) = (acceptor.clone(), driver.clone(), stop.clone());
        tokio::spawn(async move {
            let evicted = slot.evicted.clone();
            let outcome = tokio::select! {
                _ = evicted.cancelled() => Err(std::io::Error::other(
                    "replaced by a newer connection, or evicted while in its handshake",
                )),
                outcome = read_peer(stream, &acceptor, &slot, &driver, &stop) => outcome,
            };
            if let Err(e) = outcome {
                tracing::info!(%remote, "peer connection closed: {e}");
            }
        });
    }
}

/// What every incoming connection is checked against.
struct Acceptor {
    me: NodeId,
    members: Vec<NodeId>,
    secret: Option<PeerSecret>,
    slots: Arc<PeerSlots>,
}

impl Acceptor {
    /// Runs the acceptor's side of the handshake: `Ok(Some(id))` for a proven member,
    /// `Ok(None)` for a refused connection (the verdict is sent, the caller closes).
    async fn handshake(
        &self,
        stream: &mut TcpStream,
        slot: &Slot,
    ) -> std::io::Result<Option<NodeId>> {
        let hello: Hello = read_handshake(stream, "hello").await?;
        let refusal = if !self.members.contains(&hello.from) {
            Some(format!("{} is not a member of this ensemble", hello.from))
        } else if hello.to != self.me {
            Some(format!("this is server {}, not {}", self.me, hello.to))
        } else if hello.version != PEER_FRAME_VERSION {
            Some(format!(
                "hello version {}, this server speaks {PEER_FRAME_VERSION}",
                hello.version
            ))
        } else {
            None
        };
        if let Some(reason) = refusal {
            return self.refuse(stream, &hello, reason).await;
        }
        self.slots.claim(slot, hello.from);
        let nonce = peer_admission::new_nonce()?;
        let challenge = Challenge {
            nonce: peer_admission::to_hex(&nonce),
        };
        write_handshake(stream, &challenge).await?;
        let proof: Proof = read_handshake(stream, "proof").await?;
        if let Some(secret) = &self.secret {
            let proven = peer_admission::from_hex(&proof.proof)
                .is_some_and(|p| secret.verify(hello.from, self.me, &nonce, &p));
            if !proven {
                let reason = "wrong proof of the ensemble secret (is the same secret \
                              configured on every member?)";
                return self.refuse(stream, &hello, reason.to_string()).await;
            }
        }
        self.slots.prove(slot);
        let verdict = Verdict {
            accepted: true,
            reason: String::new(),
        };
        write_handshake(stream, &verdict).await?;
        Ok(Some(hello.from))
    }

    async fn refuse(
        &self,
        stream: &mut TcpStream,
        hello: &Hello,
        reason: String,
    ) -> std::io::Result<Option<NodeId>> {
        tracing::warn!(
            from = hello.from,
            to = hello.to,
            version = hello.version,
            "refusing a peer connection: {reason}"
        );
        let verdict = Verdict {
            accepted: false,
            reason,
        };
        // Best effort: the connection is closed either way.
        let _ = write_handshake(stream, &verdict).await;
        Ok(None)
    }
}

async fn read_peer(
    mut stream: TcpStream,
    acceptor: &Acceptor,
    slot: &Slot,
    driver: &DriverHandle,
    stop: &CancellationToken,
) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let handshake = tokio::time::timeout(
        Duration::from_millis(HANDSHAKE_TIMEOUT_MS),
        acceptor.handshake(&mut stream, slot),
    )
    .await
    .map_err(|_| {
        std::io::Error::other(format!("no handshake within {HANDSHAKE_TIMEOUT_MS} ms"))
    })??;
    let Some(from) = handshake else {
        return Ok(());
    };
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

    fn link(me: NodeId, peer: NodeId, addr: SocketAddr, secret: Option<&[u8]>) -> Link {
        Link {
            me,
            peer,
            addr,
            secret: secret.map(|s| PeerSecret::new(s).unwrap()),
        }
    }

    const SECRET: &[u8] = b"the ensemble secret of this test";

    /// Reads from a connection the acceptor refused: it must be closed (not held open).
    async fn assert_closed(mut conn: TcpStream) {
        let mut buf = [0u8; 512];
        let closed = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match conn.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {} // the verdict
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "the acceptor closes a refused connection");
    }

    /// A member that proves the secret gets its messages to the driver; a stranger, a member
    /// addressing another server, a member without the secret and one with a wrong secret are
    /// all refused and closed.
    #[tokio::test]
    async fn only_proven_members_get_through() {
        use super::super::driver::{DriverHandle, DriverInput};
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::channel(16);
        let stop = CancellationToken::new();
        tokio::spawn(accept(
            listener,
            1,
            vec![2],
            Some(PeerSecret::new(SECRET).unwrap()),
            DriverHandle::for_test(tx),
            stop.clone(),
        ));

        let wrong: &[u8] = b"not the ensemble secret at all";
        for (from, to, secret) in [
            (9, 1, Some(SECRET)),
            (2, 5, Some(SECRET)),
            (2, 1, None),
            (2, 1, Some(wrong)),
        ] {
            let refused = connect(&link(from, to, addr, secret)).await;
            assert!(
                refused.is_err(),
                "{from}->{to} with {secret:?} was accepted"
            );
        }
        // The same by hand, sending messages after the hello without any proof: the acceptor
        // closes the connection and nothing reaches the driver.
        let mut conn = TcpStream::connect(addr).await.unwrap();
        let hello = Hello {
            from: 2,
            to: 1,
            version: PEER_FRAME_VERSION,
        };
        write_handshake(&mut conn, &hello).await.unwrap();
        let mut frames = Vec::new();
        encode_frame(&mut frames, &serde_json::to_vec(&ping()).unwrap());
        let _ = conn.write_all(&frames).await;
        assert_closed(conn).await;
        assert!(
            rx.try_recv().is_err(),
            "nothing unproven reached the driver"
        );

        // A member, through the real writer.
        let secret = Some(PeerSecret::new(SECRET).unwrap());
        let transport = Transport::start(2, BTreeMap::from([(1, addr)]), secret, stop.clone());
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

    /// Without a secret any member gets in (and a stranger still does not).
    #[tokio::test]
    async fn without_a_secret_members_get_through() {
        use super::super::driver::DriverHandle;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, _rx) = tokio::sync::mpsc::channel(16);
        let stop = CancellationToken::new();
        tokio::spawn(accept(
            listener,
            1,
            vec![2],
            None,
            DriverHandle::for_test(tx),
            stop.clone(),
        ));
        assert!(connect(&link(2, 1, addr, None)).await.is_ok());
        assert!(connect(&link(9, 1, addr, None)).await.is_err());
        stop.cancel();
    }
}
