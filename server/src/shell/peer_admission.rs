//! Who may hold an incoming peer connection (issue 11): the ensemble secret, the HMAC
//! challenge that proves a connection knows it, and the bounded slots connections wait in.
//!
//! The handshake, after the connector's `Hello { from, to, version }`:
//! 1. the acceptor sends a fresh random nonce (`Challenge`);
//! 2. the connector answers `Proof`: HMAC-SHA256 under the secret of a domain tag, `from`, `to`
//!    and the nonce, so a proof cannot be replayed on another connection, for another claimed
//!    id or towards another server;
//! 3. the acceptor checks it in constant time and says `Verdict`; on refusal it closes.
//!
//! Only the acceptor authenticates: connections are one-way (the connector only writes), so
//! what matters is that no stranger's messages reach the core. Without a secret every proof is
//! accepted (a single machine, tests); `keeperd` warns about that once at start-up.
//!
//! Slots: a hello costs nothing to forge, so a claimed id earns nothing until it is proven.
//! Handshakes are bounded in total and per claimed id, and when a bound is reached the oldest
//! handshake goes (a real peer proves itself within a round trip, so it is never the oldest
//! for long); a proven connection replaces the older proven connection of the same id (a
//! peer keeps one outgoing connection, so a newer proof means the old one is dead).

use super::peer::MAX_INCOMING_PEER_CONNECTIONS;
use crate::api::NodeId;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;

/// A shorter secret is refused: it would be guessable.
pub const MIN_PEER_SECRET_BYTES: usize = 16;
/// A longer secret file is refused (it is not a secret but some other file).
pub const MAX_PEER_SECRET_BYTES: usize = 4096;
/// Random bytes in each challenge.
pub const PEER_NONCE_BYTES: usize = 32;
/// Connections claiming one id that may be in their handshake at once; a newer one evicts the
/// oldest.
pub const MAX_HANDSHAKES_PER_CLAIMED_ID: usize = 4;
/// The environment variable `keeperd` reads the secret from when no file is named.
pub const PEER_SECRET_ENV: &str = "KEEPER_PEER_SECRET";
/// Binds a proof to this protocol and version.
const PROOF_DOMAIN: &[u8] = b"keeper peer hello v2\0";

/// The ensemble's shared secret. Its `Debug` does not show it.
#[derive(Clone)]
pub struct PeerSecret(Arc<Vec<u8>>);

impl std::fmt::Debug for PeerSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PeerSecret({} bytes)", self.0.len())
    }
}

impl PeerSecret {
    /// A secret from its text; surrounding whitespace (a file's final newline) is not part of it.
    pub fn new(text: &[u8]) -> Result<PeerSecret, String> {
        let trimmed = text.trim_ascii();
        if trimmed.len() < MIN_PEER_SECRET_BYTES {
            return Err(format!(
                "the peer secret is {} bytes; at least {MIN_PEER_SECRET_BYTES} are needed",
                trimmed.len()
            ));
        }
        if trimmed.len() > MAX_PEER_SECRET_BYTES {
            return Err(format!(
                "the peer secret is over {MAX_PEER_SECRET_BYTES} bytes"
            ));
        }
        Ok(PeerSecret(Arc::new(trimmed.to_vec())))
    }

    pub fn from_file(path: &Path) -> Result<PeerSecret, String> {
        use std::io::Read;
        let file = std::fs::File::open(path)
            .map_err(|e| format!("cannot read the peer secret file {}: {e}", path.display()))?;
        let mut bytes = Vec::new();
        file.take(MAX_PEER_SECRET_BYTES as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("cannot read the peer secret file {}: {e}", path.display()))?;
        PeerSecret::new(&bytes).map_err(|e| format!("{}: {e}", path.display()))
    }

    fn mac(&self, from: NodeId, to: NodeId, nonce: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(PROOF_DOMAIN);
        mac.update(&from.to_be_bytes());
        mac.update(&to.to_be_bytes());
        mac.update(nonce);
        mac
    }

    /// What `from` sends to prove, on a connection to `to`, that it knows the secret.
    pub fn proof(&self, from: NodeId, to: NodeId, nonce: &[u8]) -> Vec<u8> {
        self.mac(from, to, nonce).finalize().into_bytes().to_vec()
    }

    /// Checks a proof in constant time.
    pub fn verify(&self, from: NodeId, to: NodeId, nonce: &[u8], proof: &[u8]) -> bool {
        self.mac(from, to, nonce).verify_slice(proof).is_ok()
    }
}

/// Acceptor → connector, after the hello.
#[derive(Serialize, Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Challenge {
    /// Hex.
    pub nonce: String,
}

/// Connector → acceptor.
#[derive(Serialize, Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Proof {
    /// Hex; empty from a node that has no secret.
    pub proof: String,
}

/// Acceptor → connector: the end of the handshake.
#[derive(Serialize, Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Verdict {
    pub accepted: bool,
    pub reason: String,
}

pub fn new_nonce() -> std::io::Result<[u8; PEER_NONCE_BYTES]> {
    let mut nonce = [0u8; PEER_NONCE_BYTES];
    getrandom::fill(&mut nonce)
        .map_err(|e| std::io::Error::other(format!("no randomness: {e}")))?;
    Ok(nonce)
}

pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn from_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The incoming connections of one node, oldest first.
#[derive(Default)]
pub struct PeerSlots {
    state: Mutex<SlotTable>,
}

#[derive(Default)]
struct SlotTable {
    next: u64,
    /// Keyed by admission order, so iteration goes oldest first.
    entries: BTreeMap<u64, Entry>,
}

struct Entry {
    claimed: Option<NodeId>,
    proven: bool,
    evicted: CancellationToken,
}

impl SlotTable {
    fn evict(&mut self, key: u64) {
        if let Some(entry) = self.entries.remove(&key) {
            entry.evicted.cancel();
        }
    }

    fn oldest_handshake(&self, claimed: Option<Option<NodeId>>) -> Option<u64> {
        self.entries
            .iter()
            .find(|(_, e)| !e.proven && claimed.is_none_or(|c| e.claimed == c))
            .map(|(k, _)| *k)
    }
}

/// One incoming connection's place; it frees itself when dropped.
pub struct Slot {
    key: u64,
    slots: Arc<PeerSlots>,
    /// Cancelled when a newer connection takes this one's place.
    pub evicted: CancellationToken,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.table().entries.remove(&self.key);
    }
}

impl PeerSlots {
    fn table(&self) -> std::sync::MutexGuard<'_, SlotTable> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A place for a new connection; when all are taken, the oldest unproven connection is
    /// evicted for it. `None` only if every place holds a proven peer (more than the ensemble
    /// has: a bug elsewhere, but not a reason to take a proven peer's place).
    pub fn admit(self: &Arc<Self>) -> Option<Slot> {
        let mut table = self.table();
        if table.entries.len() >= MAX_INCOMING_PEER_CONNECTIONS {
            let oldest = table.oldest_handshake(None)?;
            table.evict(oldest);
        }
        let key = table.next;
        table.next += 1;
        let evicted = CancellationToken::new();
        table.entries.insert(
            key,
            Entry {
                claimed: None,
                proven: false,
                evicted: evicted.clone(),
            },
        );
        Some(Slot {
            key,
            slots: self.clone(),
            evicted,
        })
    }

    /// The connection's hello claimed `id`: at most `MAX_HANDSHAKES_PER_CLAIMED_ID` such
    /// handshakes stay.
    pub fn claim(&self, slot: &Slot, id: NodeId) {
        let mut table = self.table();
        if let Some(entry) = table.entries.get_mut(&slot.key) {
            entry.claimed = Some(id);
        }
        let pending = |t: &SlotTable| {
            t.entries
                .values()
                .filter(|e| !e.proven && e.claimed == Some(id))
                .count()
        };
        while pending(&table) > MAX_HANDSHAKES_PER_CLAIMED_ID {
            let Some(oldest) = table.oldest_handshake(Some(Some(id))) else {
                break;
            };
            table.evict(oldest);
        }
    }

    /// The connection proved its claim: it replaces any older proven connection of that id.
    pub fn prove(&self, slot: &Slot) {
        let mut table = self.table();
        let Some(entry) = table.entries.get_mut(&slot.key) else {
            return;
        };
        entry.proven = true;
        let id = entry.claimed;
        let older: Vec<u64> = table
            .entries
            .iter()
            .filter(|(k, e)| **k != slot.key && e.proven && e.claimed == id)
            .map(|(k, _)| *k)
            .collect();
        for key in older {
            table.evict(key);
        }
    }

    #[cfg(test)]
    fn counts(&self) -> (usize, usize) {
        let table = self.table();
        let proven = table.entries.values().filter(|e| e.proven).count();
        (table.entries.len(), proven)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proofs_bind_the_secret_the_ids_and_the_nonce() {
        let secret = PeerSecret::new(b"0123456789abcdef0123\n").unwrap();
        let other = PeerSecret::new(b"fedcba9876543210fedc").unwrap();
        let nonce = [7u8; PEER_NONCE_BYTES];
        let proof = secret.proof(2, 1, &nonce);
        assert!(secret.verify(2, 1, &nonce, &proof));
        assert!(!other.verify(2, 1, &nonce, &proof));
        assert!(!secret.verify(3, 1, &nonce, &proof));
        assert!(!secret.verify(2, 3, &nonce, &proof));
        assert!(!secret.verify(2, 1, &[8u8; PEER_NONCE_BYTES], &proof));
        assert!(!secret.verify(2, 1, &nonce, &proof[..31]));
        assert!(PeerSecret::new(b"short\n").is_err());
        assert_eq!(from_hex(&to_hex(&proof)).unwrap(), proof);
        assert!(from_hex("0g").is_none() && from_hex("abc").is_none());
        assert!(!format!("{secret:?}").contains("0123"));
    }

    #[test]
    fn claims_are_bounded_per_id_and_proofs_replace_older_proofs() {
        let slots = Arc::new(PeerSlots::default());
        let real = slots.admit().unwrap();
        slots.claim(&real, 2);
        slots.prove(&real);
        // Seventy strangers claim id 2: only the newest few handshakes stay, the proven
        // connection is untouched.
        let strangers: Vec<Slot> = (0..70)
            .map(|_| {
                let s = slots.admit().unwrap();
                slots.claim(&s, 2);
                s
            })
            .collect();
        assert_eq!(slots.counts(), (1 + MAX_HANDSHAKES_PER_CLAIMED_ID, 1));
        assert!(!real.evicted.is_cancelled());
        assert!(strangers[0].evicted.is_cancelled());
        assert!(!strangers[69].evicted.is_cancelled());
        // A reconnecting real peer proves itself and replaces its old connection.
        let again = slots.admit().unwrap();
        slots.claim(&again, 2);
        slots.prove(&again);
        assert!(real.evicted.is_cancelled());
        assert!(!again.evicted.is_cancelled());
        drop(strangers);
        assert_eq!(slots.counts(), (1, 1));
    }

    #[test]
    fn the_total_is_bounded_and_evicts_handshakes_not_proven_peers() {
        let slots = Arc::new(PeerSlots::default());
        let real = slots.admit().unwrap();
        slots.claim(&real, 3);
        slots.prove(&real);
        let anonymous: Vec<Slot> = (0..2 * MAX_INCOMING_PEER_CONNECTIONS)
            .map(|_| slots.admit().unwrap())
            .collect();
        assert_eq!(slots.counts(), (MAX_INCOMING_PEER_CONNECTIONS, 1));
        assert!(!real.evicted.is_cancelled());
        assert!(anonymous[0].evicted.is_cancelled());
    }
}
