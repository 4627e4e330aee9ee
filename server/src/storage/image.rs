//! The storage's files as bytes, for a disk kept in memory (`schism sim`'s simulated disk): the
//! same encodings as `Storage` writes, and the same judgement of them on reopen
//! (`Storage::open_with`'s: a torn tail is cut, damage is refused or, repairing, cut and
//! reported), without a filesystem. What a simulated crash leaves of the bytes is the
//! simulator's business; what a node makes of them is this module's, so the two cannot drift.

use super::{Base, Found, OpenMode, StorageError, epochs, judge_state, log, read_state, snapshot};
use crate::api::Zxid;
use crate::core::Recovered;
use crate::tree::Snapshot;
use crate::txn::Txn;
use std::path::{Path, PathBuf};

/// Bytes of a log file's header (before its first record).
pub const LOG_HEADER_BYTES: usize = log::HEADER_BYTES;

/// The header of a log generation that continues the snapshot `(generation, zxid)`, or none.
pub fn log_header(snapshot: Option<(u64, Zxid)>) -> Vec<u8> {
    log::encode_header(snapshot.map(|(generation, zxid)| Base { generation, zxid })).to_vec()
}

/// One log record, framed (`Err`: the txn cannot be encoded or is above `MAX_RECORD_BYTES`).
pub fn log_record(txn: &Txn) -> Result<Vec<u8>, String> {
    log::encode_record(txn)
}

/// A snapshot file.
pub fn snapshot_file(snapshot: &Snapshot) -> Result<Vec<u8>, String> {
    snapshot::encode(snapshot)
}

/// The epochs file.
pub fn epochs_file(accepted_epoch: u32, current_epoch: u32) -> Vec<u8> {
    epochs::encode(accepted_epoch, current_epoch).to_vec()
}

/// A data directory's contents: the live log, the snapshot its header names (a directory the
/// storage left has no other), the epochs file and the damage marker.
#[derive(Clone, Debug, Default)]
pub struct Image {
    /// The live log's generation and bytes; `None` for a directory never opened.
    pub log: Option<(u64, Vec<u8>)>,
    /// A snapshot file's generation and bytes.
    pub snapshot: Option<(u64, Vec<u8>)>,
    pub epochs: Option<Vec<u8>>,
    /// The `damaged` marker's text, when present.
    pub damaged: Option<String>,
}

impl Image {
    /// What `Storage::open_with` would recover from these files, `dir` naming them in errors.
    /// The directory the open would leave behind is the one `Recovered` describes: the log cut
    /// to its intact records (a new, empty generation when no usable base was found) and the
    /// damage marker set to `Recovered::damage`.
    pub fn recover(&self, dir: &Path, mode: OpenMode) -> Result<Recovered, StorageError> {
        let mut recovered = Recovered::default();
        if let Some(bytes) = &self.epochs {
            (recovered.accepted_epoch, recovered.current_epoch) =
                epochs::decode(&dir.join(super::EPOCHS_FILE), bytes)?;
        }
        let state = match &self.log {
            None => match &self.snapshot {
                Some((g, _)) => Err(StorageError::Corrupt {
                    path: dir.join(super::snapshot_name(*g)),
                    offset: 0,
                    reason: "a snapshot without any log file; refusing to guess the state".into(),
                }),
                None => Ok(None),
            },
            Some((generation, bytes)) => {
                let path = dir.join(super::log_name(*generation));
                read_state(dir, &path, bytes, mode.skip_corrupt_records, |snap_path| {
                    Ok(self
                        .snapshot
                        .as_ref()
                        .filter(|(g, _)| dir.join(super::snapshot_name(*g)) == snap_path)
                        .map(|(_, bytes)| bytes.clone()))
                })
                .map(|found| Some((path, found, *generation)))
            }
        };
        let (state, damage): (Option<(PathBuf, Found, u64)>, _) = judge_state(state, mode)?;
        recovered.damage = damage.or_else(|| self.damaged.clone());
        if let Some((_, found, _)) = state {
            recovered.snapshot = found.snapshot;
            recovered.log = found.scan.txns;
        }
        Ok(recovered)
    }
}
