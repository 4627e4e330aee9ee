//! Snapshot files: `[magic][u32 LE format version][u64 LE payload length][u32 LE crc32 of
//! payload][payload: Snapshot as JSON]`. A snapshot file is only ever renamed into place
//! complete and fsynced, so any damage is corruption, never a torn write.

use super::StorageError;
use crate::tree::Snapshot;
use std::path::Path;

const SNAPSHOT_MAGIC: &[u8; 8] = b"KEEPSNAP";
const SNAPSHOT_FORMAT_VERSION: u32 = 1;
const SNAPSHOT_HEADER_BYTES: usize = 8 + 4 + 8 + 4;
/// Far above any tree keeper is meant to hold in memory; a larger length is damage.
pub const MAX_SNAPSHOT_BYTES: u64 = 16 << 30;

pub(super) fn encode(snapshot: &Snapshot) -> Result<Vec<u8>, String> {
    let payload =
        serde_json::to_vec(snapshot).map_err(|e| format!("cannot encode snapshot: {e}"))?;
    let mut out = Vec::with_capacity(SNAPSHOT_HEADER_BYTES + payload.len());
    out.extend_from_slice(SNAPSHOT_MAGIC);
    out.extend_from_slice(&SNAPSHOT_FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

pub(super) fn decode(path: &Path, bytes: &[u8]) -> Result<Snapshot, StorageError> {
    let corrupt = |offset: usize, reason: String| StorageError::Corrupt {
        path: path.to_path_buf(),
        offset: offset as u64,
        reason,
    };
    if bytes.len() < SNAPSHOT_HEADER_BYTES {
        return Err(corrupt(
            0,
            format!(
                "snapshot is {} bytes, shorter than its {SNAPSHOT_HEADER_BYTES}-byte header",
                bytes.len()
            ),
        ));
    }
    if &bytes[0..8] != SNAPSHOT_MAGIC {
        return Err(corrupt(0, "not a keeper snapshot (bad magic)".into()));
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if version != SNAPSHOT_FORMAT_VERSION {
        return Err(corrupt(
            8,
            format!(
                "snapshot format version {version}, this keeper reads {SNAPSHOT_FORMAT_VERSION}"
            ),
        ));
    }
    let len = u64::from_le_bytes(bytes[12..20].try_into().expect("8 bytes"));
    let crc = u32::from_le_bytes(bytes[20..24].try_into().expect("4 bytes"));
    let present = (bytes.len() - SNAPSHOT_HEADER_BYTES) as u64;
    if len > MAX_SNAPSHOT_BYTES || len != present {
        return Err(corrupt(
            12,
            format!("snapshot header says {len} payload bytes, the file holds {present}"),
        ));
    }
    let payload = &bytes[SNAPSHOT_HEADER_BYTES..];
    if crc32fast::hash(payload) != crc {
        return Err(corrupt(
            SNAPSHOT_HEADER_BYTES,
            "snapshot crc mismatch".into(),
        ));
    }
    serde_json::from_slice(payload).map_err(|e| {
        corrupt(
            SNAPSHOT_HEADER_BYTES,
            format!("snapshot does not decode: {e}"),
        )
    })
}
