//! The write-ahead log file: a header naming the snapshot the log continues from, then
//! crc-framed records `[u32 LE payload length][u32 LE crc32 of payload][payload: Txn as JSON]`
//! in strictly increasing zxid order.

use super::{Base, MAX_RECORD_BYTES, StorageError};
use crate::api::Zxid;
use crate::txn::Txn;
use std::path::Path;

const LOG_MAGIC: &[u8; 8] = b"KEEPLOG\0";
const LOG_FORMAT_VERSION: u32 = 1;
/// magic, version, snapshot generation (0: none), snapshot zxid, crc32 of the fields before it.
pub(super) const HEADER_BYTES: usize = 8 + 4 + 8 + 8 + 4;
pub(super) const FRAME_BYTES: usize = 8;

pub(super) fn encode_header(base: Option<Base>) -> [u8; HEADER_BYTES] {
    let (gen_, zxid) = base.map_or((0, 0), |b| (b.generation, b.zxid));
    let mut h = [0u8; HEADER_BYTES];
    h[0..8].copy_from_slice(LOG_MAGIC);
    h[8..12].copy_from_slice(&LOG_FORMAT_VERSION.to_le_bytes());
    h[12..20].copy_from_slice(&gen_.to_le_bytes());
    h[20..28].copy_from_slice(&zxid.to_le_bytes());
    let crc = crc32fast::hash(&h[0..28]);
    h[28..32].copy_from_slice(&crc.to_le_bytes());
    h
}

fn decode_header(path: &Path, bytes: &[u8]) -> Result<Option<Base>, StorageError> {
    let corrupt = |reason: String| StorageError::Corrupt {
        path: path.to_path_buf(),
        offset: 0,
        reason,
    };
    // The header is written and fsynced before the file is renamed into place, so a short or
    // damaged header is never a torn write.
    if bytes.len() < HEADER_BYTES {
        return Err(corrupt(format!(
            "log header is {} bytes, expected {HEADER_BYTES}",
            bytes.len()
        )));
    }
    if &bytes[0..8] != LOG_MAGIC {
        return Err(corrupt("not a keeper log file (bad magic)".into()));
    }
    let crc = u32::from_le_bytes(bytes[28..32].try_into().expect("4 bytes"));
    if crc != crc32fast::hash(&bytes[0..28]) {
        return Err(corrupt("log header crc mismatch".into()));
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if version != LOG_FORMAT_VERSION {
        return Err(corrupt(format!(
            "log format version {version}, this keeper reads {LOG_FORMAT_VERSION}"
        )));
    }
    let generation = u64::from_le_bytes(bytes[12..20].try_into().expect("8 bytes"));
    let zxid = u64::from_le_bytes(bytes[20..28].try_into().expect("8 bytes"));
    Ok((generation != 0).then_some(Base { generation, zxid }))
}

/// One record, framed. Refuses (as a caller bug) a payload above `MAX_RECORD_BYTES`.
pub(super) fn encode_record(txn: &Txn) -> Result<Vec<u8>, String> {
    let payload = serde_json::to_vec(txn).map_err(|e| format!("cannot encode txn: {e}"))?;
    if payload.len() > MAX_RECORD_BYTES {
        return Err(format!(
            "txn {:#x} encodes to {} bytes, above MAX_RECORD_BYTES {MAX_RECORD_BYTES}",
            txn.zxid,
            payload.len()
        ));
    }
    let mut out = Vec::with_capacity(FRAME_BYTES + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

/// The payload of the frame at `at` and where the next frame starts, or why it is not intact.
fn frame_at(bytes: &[u8], at: usize) -> Result<(&[u8], usize), String> {
    let rest = bytes.len() - at;
    if rest < FRAME_BYTES {
        return Err(format!("{rest} bytes left, too few for a record frame"));
    }
    let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().expect("4 bytes"));
    // A zero length would make eight zero bytes (a zero-filled tail) a valid frame.
    if len == 0 {
        return Err("record length 0".into());
    }
    if len > MAX_RECORD_BYTES {
        return Err(format!(
            "record length {len} above MAX_RECORD_BYTES {MAX_RECORD_BYTES}"
        ));
    }
    if len > rest - FRAME_BYTES {
        return Err(format!(
            "record length {len} runs past the end of the file ({} bytes left)",
            rest - FRAME_BYTES
        ));
    }
    let payload = &bytes[at + FRAME_BYTES..at + FRAME_BYTES + len];
    if crc32fast::hash(payload) != crc {
        return Err("record crc mismatch".into());
    }
    Ok((payload, at + FRAME_BYTES + len))
}

/// The first offset after `after` where an intact record starts, if any. This is what tells a
/// torn tail (nothing intact follows the bad bytes: a crash cut the last write short) from
/// corruption (a damaged record with good ones after it: cutting there would lose them).
/// Cheap in practice: inside JSON payloads the four bytes read as a length are printable, so
/// they exceed `MAX_RECORD_BYTES` and are rejected before any crc is computed.
fn intact_record_after(bytes: &[u8], after: usize) -> Option<usize> {
    (after + 1..bytes.len().saturating_sub(FRAME_BYTES - 1)).find(|&at| {
        frame_at(bytes, at).is_ok_and(|(payload, _)| serde_json::from_slice::<Txn>(payload).is_ok())
    })
}

pub(super) struct Scan {
    pub base: Option<Base>,
    pub txns: Vec<Txn>,
    /// (zxid, byte offset of its frame), one per record.
    pub index: Vec<(Zxid, u64)>,
    /// End of the last intact record: the file is cut here if there is a torn tail.
    pub end: u64,
    /// The torn tail's offset and why it is not a record.
    pub torn: Option<(u64, String)>,
}

/// Reads a whole log file. A torn tail is reported, not cut: the caller cuts it once the
/// whole directory has been found sound, so a failed open changes nothing on disk.
pub(super) fn scan(path: &Path, bytes: &[u8]) -> Result<Scan, StorageError> {
    let base = decode_header(path, bytes)?;
    let corrupt = |offset: usize, reason: String| StorageError::Corrupt {
        path: path.to_path_buf(),
        offset: offset as u64,
        reason,
    };
    let mut scan = Scan {
        base,
        txns: Vec::new(),
        index: Vec::new(),
        end: HEADER_BYTES as u64,
        torn: None,
    };
    let mut last = base.map(|b| b.zxid);
    let mut at = HEADER_BYTES;
    while at < bytes.len() {
        let (payload, next) = match frame_at(bytes, at) {
            Ok(frame) => frame,
            Err(reason) => {
                if let Some(good) = intact_record_after(bytes, at) {
                    return Err(corrupt(
                        at,
                        format!("{reason}, and an intact record follows at offset {good}"),
                    ));
                }
                scan.torn = Some((at as u64, reason));
                break;
            }
        };
        // The crc matched, so these are the bytes that were written: a record that does not
        // decode, or is out of order, is not a torn write but a bug or a foreign file.
        let txn: Txn = serde_json::from_slice(payload)
            .map_err(|e| corrupt(at, format!("record does not decode as a txn: {e}")))?;
        if let Some(prev) = last
            && txn.zxid <= prev
        {
            return Err(corrupt(
                at,
                format!("record zxid {:#x} does not follow zxid {prev:#x}", txn.zxid),
            ));
        }
        last = Some(txn.zxid);
        scan.index.push((txn.zxid, at as u64));
        scan.txns.push(txn);
        at = next;
        scan.end = at as u64;
    }
    Ok(scan)
}
