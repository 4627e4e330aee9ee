//! The write-ahead log file: a header naming the snapshot the log continues from, then
//! crc-framed records in strictly increasing zxid order:
//! `[u32 LE payload length][u32 LE crc32 of payload][u32 LE crc32 of the 8 bytes before][payload: Txn as JSON]`.
//!
//! The frame's own checksum is what tells a torn write from damage (issue 11). A record whose
//! frame is intact and whose payload is all in the file was written completely, so a payload
//! that does not match its crc is corruption, even in the last record: it may have been fsynced
//! and acknowledged, and cutting it would silently lose it. Only a tail that was never
//! completely written is cut: fewer bytes than a frame, an intact frame whose payload runs past
//! the end of the file, or bytes that end in zeros up to the end of the file (a filesystem
//! fills a block that the crash kept from being written with zeros; an encoded txn never
//! contains a zero byte).

use super::{Base, MAX_RECORD_BYTES, StorageError};
use crate::api::Zxid;
use crate::txn::Txn;
use std::path::Path;

const LOG_MAGIC: &[u8; 8] = b"KEEPLOG\0";
/// 2: frames carry a checksum of their length and payload checksum.
const LOG_FORMAT_VERSION: u32 = 2;
/// magic, version, snapshot generation (0: none), snapshot zxid, crc32 of the fields before it.
pub(super) const HEADER_BYTES: usize = 8 + 4 + 8 + 8 + 4;
pub(super) const FRAME_BYTES: usize = 12;

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
    let frame_crc = crc32fast::hash(&out[0..8]);
    out.extend_from_slice(&frame_crc.to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

/// What the bytes at a record's offset turned out to be.
enum Frame<'a> {
    Intact {
        payload: &'a [u8],
        next: usize,
    },
    /// A write the crash cut short: the tail from here on is cut.
    Torn(String),
    /// A record that was completely written and is damaged: the log is refused.
    Corrupt(String),
}

/// Reads the frame at `at`. `zeros_from` is where the file's final run of zero bytes starts
/// (the file's length if it does not end in a zero).
fn frame_at(bytes: &[u8], at: usize, zeros_from: usize) -> Frame<'_> {
    let rest = bytes.len() - at;
    if rest < FRAME_BYTES {
        return Frame::Torn(format!("{rest} bytes left, too few for a record frame"));
    }
    let word =
        |i: usize| u32::from_le_bytes(bytes[at + i..at + i + 4].try_into().expect("4 bytes"));
    let (len, crc, frame_crc) = (word(0) as usize, word(4), word(8));
    if crc32fast::hash(&bytes[at..at + 8]) != frame_crc {
        return if zeros_from < at + FRAME_BYTES {
            Frame::Torn("record frame ends in zeros up to the end of the file".into())
        } else {
            Frame::Corrupt("record frame crc mismatch".into())
        };
    }
    // The frame is as written: a length it promises is what was written, so a bad one is not a
    // torn write but a bug or a foreign file.
    if len == 0 || len > MAX_RECORD_BYTES {
        return Frame::Corrupt(format!(
            "record length {len} (allowed: 1..={MAX_RECORD_BYTES})"
        ));
    }
    if len > rest - FRAME_BYTES {
        return Frame::Torn(format!(
            "record of {len} bytes runs past the end of the file ({} bytes left)",
            rest - FRAME_BYTES
        ));
    }
    let end = at + FRAME_BYTES + len;
    let payload = &bytes[at + FRAME_BYTES..end];
    if crc32fast::hash(payload) != crc {
        return if zeros_from < end {
            Frame::Torn("record ends in zeros up to the end of the file".into())
        } else {
            Frame::Corrupt(format!(
                "record crc mismatch in a complete record (its frame is intact and all {len} \
                 bytes are present: damage, not a torn write)"
            ))
        };
    }
    Frame::Intact { payload, next: end }
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
    /// The first completely written record that is damaged (bad crc, does not decode, out of
    /// order): its offset and why. The scan stops there: nothing at or after it is trusted,
    /// since a damaged frame no longer says where the next record starts.
    pub corrupt: Option<(u64, String)>,
}

/// Reads a whole log file. A torn tail and the first damaged record are reported, not cut:
/// the caller decides (refuse, or cut and recover from the ensemble) once the whole directory
/// has been looked at, so a failed open changes nothing on disk. A damaged header is an error:
/// without it the records have no base.
///
/// `skip_corrupt` is the injected bug `corrupt-log-served` only.
pub(super) fn scan(path: &Path, bytes: &[u8], skip_corrupt: bool) -> Result<Scan, StorageError> {
    let base = decode_header(path, bytes)?;
    let mut scan = Scan {
        base,
        txns: Vec::new(),
        index: Vec::new(),
        end: HEADER_BYTES as u64,
        torn: None,
        corrupt: None,
    };
    let mut last = base.map(|b| b.zxid);
    let mut at = HEADER_BYTES;
    let zeros_from = bytes.len() - bytes.iter().rev().take_while(|&&b| b == 0).count();
    while at < bytes.len() {
        let (payload, next) = match frame_at(bytes, at, zeros_from) {
            Frame::Intact { payload, next } => (payload, next),
            Frame::Corrupt(reason) => {
                // BUG(corrupt-log-served): a record whose payload fails its crc but whose frame
                // is intact is skipped, and the records after it are served as if the log had
                // no hole.
                if skip_corrupt && let Some(next) = skippable(bytes, at) {
                    tracing::warn!(offset = at, %reason, "skipping a damaged log record");
                    at = next;
                    continue;
                }
                scan.corrupt = Some((at as u64, reason));
                break;
            }
            Frame::Torn(reason) => {
                scan.torn = Some((at as u64, reason));
                break;
            }
        };
        // The crc matched, so these are the bytes that were written: a record that does not
        // decode, or is out of order, is not a torn write but a bug or a foreign file.
        let txn: Txn = match serde_json::from_slice(payload) {
            Ok(txn) => txn,
            Err(e) => {
                scan.corrupt = Some((at as u64, format!("record does not decode as a txn: {e}")));
                break;
            }
        };
        if let Some(prev) = last
            && txn.zxid <= prev
        {
            scan.corrupt = Some((
                at as u64,
                format!("record zxid {:#x} does not follow zxid {prev:#x}", txn.zxid),
            ));
            break;
        }
        last = Some(txn.zxid);
        scan.index.push((txn.zxid, at as u64));
        scan.txns.push(txn);
        at = next;
        scan.end = at as u64;
    }
    Ok(scan)
}

/// Where the record after the one at `at` starts, when the frame at `at` is intact (only its
/// payload is damaged) and the record is all in the file. Used by `corrupt-log-served` only.
fn skippable(bytes: &[u8], at: usize) -> Option<usize> {
    let frame = bytes.get(at..at + FRAME_BYTES)?;
    let word = |i: usize| u32::from_le_bytes(frame[i..i + 4].try_into().expect("4 bytes"));
    if crc32fast::hash(&frame[0..8]) != word(8) {
        return None;
    }
    let next = at + FRAME_BYTES + word(0) as usize;
    (next <= bytes.len()).then_some(next)
}
