//! ZooKeeper's client protocol (`keeperd --zk-addr`), so that ZooKeeper's own clients (zkCli.sh,
//! kazoo, Curator) talk to keeper beside its HTTP API. docs/API.md has the details.
//!
//! Each TCP connection is a length-prefixed stream of jute records ([`jute`], [`proto`]): a
//! `ConnectRequest` first, then requests, each answered in order. [`conn`] turns them into the
//! same core requests the HTTP API makes, one at a time per connection (ZooKeeper answers a
//! session's requests in the order they were sent, and a read sees the session's earlier
//! writes). A connection may instead open with a four-letter word (`ruok`, `srvr`, `stat`,
//! `mntr`), answered in text before the server closes it.
//!
//! Deliberately absent: authentication and ACLs other than `world:anyone` (refused with
//! ZooKeeper's codes), TTL nodes, persistent watches, reconfig, read-only mode, SASL, TLS.

mod conn;
pub mod jute;
pub mod proto;

use crate::shell::driver::DriverHandle;
use crate::shell::sse::EventHub;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// ZooKeeper's `superSecret`: the session password is derived from the session id and this, as
/// ZooKeeper does, so any server of the ensemble can check a reconnecting client's password
/// without replicating it. Like ZooKeeper's, it is a checksum against mixed-up sessions, not
/// a security feature.
pub const SESSION_SECRET: i64 = 0xB341_5C00;
/// The ZooKeeper version keeper answers to (`srvr`, `envi`): its protocol and features are
/// those of 3.5 (no persistent watches), and 3.5–3.9 clients speak it.
pub const ZK_VERSION: &str = concat!("3.5.0-keeper-", env!("CARGO_PKG_VERSION"));
/// Length of a session password.
pub const PASSWORD_BYTES: usize = 16;
/// Bytes a frame may carry beyond the largest znode data (path, header, ACL, multi framing).
/// ZooKeeper's own bound is `jute.maxbuffer`, 1 MiB by default.
pub const FRAME_SLACK_BYTES: usize = 64 * 1024;
/// Connections this port holds open at most; more are closed at once (with a log line).
pub const MAX_CONNECTIONS: usize = 4_096;

/// What the ZooKeeper port needs besides the driver.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Session timeouts are clamped to these (keeper's min/max session ticks times its tick).
    pub min_session_ms: u64,
    pub max_session_ms: u64,
    /// Largest frame accepted; a larger length prefix closes the connection.
    pub max_frame_bytes: usize,
}

/// Counters for the four-letter words.
#[derive(Default)]
pub(crate) struct Stats {
    pub connections: AtomicU64,
    pub received: AtomicU64,
    pub sent: AtomicU64,
    /// Requests read from clients and not answered yet, over all connections.
    pub outstanding: AtomicU64,
}

pub(crate) struct Shared {
    pub driver: DriverHandle,
    pub hub: Arc<EventHub>,
    pub settings: Settings,
    pub stats: Stats,
    pub stop: CancellationToken,
}

/// Accepts ZooKeeper clients until `stop`.
pub(crate) async fn serve(
    listener: TcpListener,
    driver: DriverHandle,
    hub: Arc<EventHub>,
    settings: Settings,
    stop: CancellationToken,
) {
    let shared = Arc::new(Shared {
        driver,
        hub,
        settings,
        stats: Stats::default(),
        stop: stop.clone(),
    });
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Out of file descriptors and the like: keep serving the connections we have.
                tracing::warn!("zk port: accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        if shared.stats.connections.load(Ordering::Relaxed) >= MAX_CONNECTIONS as u64 {
            tracing::warn!(%peer, "zk port: {MAX_CONNECTIONS} connections open; closing this one");
            continue;
        }
        let _ = stream.set_nodelay(true);
        tokio::spawn(conn::handle(stream, peer, shared.clone()));
    }
}

/// The password of `session`: `java.util.Random(session ^ SESSION_SECRET).nextBytes(16)`,
/// byte for byte what ZooKeeper's `generatePasswd` gives.
pub fn session_password(session: i64) -> [u8; PASSWORD_BYTES] {
    const MULTIPLIER: i64 = 0x5_DEEC_E66D;
    const MASK: i64 = (1 << 48) - 1;
    let mut seed = ((session ^ SESSION_SECRET) ^ MULTIPLIER) & MASK;
    let mut next_int = || {
        seed = (seed.wrapping_mul(MULTIPLIER).wrapping_add(0xB)) & MASK;
        (seed >> 16) as i32
    };
    let mut out = [0u8; PASSWORD_BYTES];
    for chunk in out.chunks_mut(4) {
        let mut rnd = next_int();
        for b in chunk {
            *b = rnd as u8;
            rnd >>= 8;
        }
    }
    out
}

/// Where the port listens, for logs.
pub fn describe(addr: SocketAddr) -> String {
    format!("ZooKeeper clients on {addr}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_deterministic_and_differ_between_sessions() {
        assert_eq!(
            session_password(0x1_0000_0001),
            session_password(0x1_0000_0001)
        );
        assert_ne!(
            session_password(0x1_0000_0001),
            session_password(0x1_0000_0002)
        );
    }

    #[test]
    fn the_generator_is_java_util_random() {
        // new java.util.Random(42).nextInt() == -1170105035; nextBytes takes it low byte first.
        let password = session_password(42 ^ SESSION_SECRET);
        assert_eq!(password[..4], (-1_170_105_035i32).to_le_bytes());
    }
}
