//! The epochs file (ZAB's acceptedEpoch and currentEpoch, kept in one file so that a crash
//! never leaves one updated without the other): `[magic][u32 LE format version][u32 LE
//! accepted epoch][u32 LE current epoch][u32 LE crc32 of the bytes before it]`.

use super::StorageError;
use std::path::Path;

const EPOCHS_MAGIC: &[u8; 8] = b"KEEPEPOC";
const EPOCHS_FORMAT_VERSION: u32 = 1;
const EPOCHS_BYTES: usize = 8 + 4 + 4 + 4 + 4;

pub(super) fn encode(accepted_epoch: u32, current_epoch: u32) -> [u8; EPOCHS_BYTES] {
    let mut out = [0u8; EPOCHS_BYTES];
    out[0..8].copy_from_slice(EPOCHS_MAGIC);
    out[8..12].copy_from_slice(&EPOCHS_FORMAT_VERSION.to_le_bytes());
    out[12..16].copy_from_slice(&accepted_epoch.to_le_bytes());
    out[16..20].copy_from_slice(&current_epoch.to_le_bytes());
    let crc = crc32fast::hash(&out[0..20]);
    out[20..24].copy_from_slice(&crc.to_le_bytes());
    out
}

/// (accepted epoch, current epoch). The file is renamed into place complete, so any damage is
/// corruption.
pub(super) fn decode(path: &Path, bytes: &[u8]) -> Result<(u32, u32), StorageError> {
    let corrupt = |reason: &str| StorageError::Corrupt {
        path: path.to_path_buf(),
        offset: 0,
        reason: reason.to_string(),
    };
    if bytes.len() != EPOCHS_BYTES {
        return Err(corrupt(&format!(
            "epochs file is {} bytes, expected {EPOCHS_BYTES}",
            bytes.len()
        )));
    }
    if &bytes[0..8] != EPOCHS_MAGIC {
        return Err(corrupt("not a keeper epochs file (bad magic)"));
    }
    if u32::from_le_bytes(bytes[20..24].try_into().expect("4 bytes"))
        != crc32fast::hash(&bytes[0..20])
    {
        return Err(corrupt("epochs file crc mismatch"));
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if version != EPOCHS_FORMAT_VERSION {
        return Err(corrupt(&format!(
            "epochs format version {version}, this keeper reads {EPOCHS_FORMAT_VERSION}"
        )));
    }
    let accepted = u32::from_le_bytes(bytes[12..16].try_into().expect("4 bytes"));
    let current = u32::from_le_bytes(bytes[16..20].try_into().expect("4 bytes"));
    Ok((accepted, current))
}
