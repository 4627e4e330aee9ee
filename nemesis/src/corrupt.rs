//! The `corrupt` fault's disk work (Jepsen's bitflip-wal, bitflip-snap and truncate): damage
//! the newest write-ahead log or snapshot file of a node that is down. The file is found by
//! name in the node's data directory: keeper's `log.<generation>` and `snapshot.<generation>`,
//! or ZooKeeper's `version-2/log.<zxid>` and `version-2/snapshot.<zxid>`; "newest" is the last
//! modified. Which bytes are hit is drawn from the step's seed and the file's length, and
//! reported for `nemesis.jsonl`.

use cluster::{ClusterError, Result};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::fs::{self, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Bits flipped by one `bitflip`: between 1 and this many.
pub const MAX_FLIPPED_BITS: u32 = 8;
/// The region a `bitflip` hits: its flips all fall within this many bytes.
pub const BITFLIP_REGION_BYTES: u64 = 64;
/// Most bytes a `truncate` cuts off the end of the file.
pub const MAX_TRUNCATE_BYTES: u64 = 4_096;

/// Which file of the node's data the fault damages.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum DataFile {
    /// The newest write-ahead log.
    Wal,
    /// The newest snapshot; the newest log when the node has none yet (said in the report).
    Snapshot,
}

/// What is done to it.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum Damage {
    /// Flip 1 to `MAX_FLIPPED_BITS` random bits within one `BITFLIP_REGION_BYTES` region.
    Bitflip,
    /// Cut 1 to `MAX_TRUNCATE_BYTES` bytes (at most the whole file) off its end.
    Truncate,
}

impl DataFile {
    fn prefix(self) -> &'static str {
        match self {
            DataFile::Wal => "log.",
            DataFile::Snapshot => "snapshot.",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            DataFile::Wal => "wal",
            DataFile::Snapshot => "snapshot",
        }
    }
}

impl Damage {
    pub fn name(self) -> &'static str {
        match self {
            Damage::Bitflip => "bitflip",
            Damage::Truncate => "truncate",
        }
    }
}

/// The newest file whose name is `prefix` followed by hex digits, in `dir` or its `version-2`.
fn newest(dir: &Path, prefix: &str) -> Result<Option<PathBuf>> {
    let mut best: Option<(std::time::SystemTime, PathBuf)> = None;
    for d in [dir.to_path_buf(), dir.join("version-2")] {
        let entries = match fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io(format!("listing {}", d.display()), e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| io(format!("listing {}", d.display()), e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some(rest) = name.strip_prefix(prefix) else {
                continue;
            };
            if rest.is_empty() || !rest.chars().all(|c| c.is_ascii_hexdigit()) {
                continue;
            }
            let modified = entry
                .metadata()
                .and_then(|m| m.modified())
                .map_err(|e| io(format!("reading {}", entry.path().display()), e))?;
            if best.as_ref().is_none_or(|(t, _)| modified > *t) {
                best = Some((modified, entry.path()));
            }
        }
    }
    Ok(best.map(|(_, p)| p))
}

fn io(context: String, source: std::io::Error) -> ClusterError {
    ClusterError::Io { context, source }
}

/// Damages `file` in the data directory `dir` (of a node that is down) as `damage` says, with
/// the bytes drawn from `seed`, and makes the damage durable. Returns what was done, for the
/// log: the file, the region, the bits or the lengths.
pub fn corrupt(dir: &Path, file: DataFile, damage: Damage, seed: u64) -> Result<String> {
    let (path, fallback) = match newest(dir, file.prefix())? {
        Some(p) => (p, ""),
        None => match newest(dir, DataFile::Wal.prefix())? {
            Some(p) if file == DataFile::Snapshot => (p, "no snapshot yet; "),
            _ => {
                return Err(ClusterError::Invalid(format!(
                    "no {} file in {} to corrupt",
                    file.name(),
                    dir.display()
                )));
            }
        },
    };
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| io(format!("opening {}", path.display()), e))?;
    let len = f
        .metadata()
        .map_err(|e| io(format!("reading {}", path.display()), e))?
        .len();
    if len == 0 {
        return Err(ClusterError::Invalid(format!(
            "{} is empty: nothing to corrupt",
            path.display()
        )));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let what = match damage {
        Damage::Bitflip => {
            let region = BITFLIP_REGION_BYTES.min(len);
            let start = rng.random_range(0..=len - region);
            let mut bytes = vec![0u8; region as usize];
            let ctx = || format!("rewriting {}", path.display());
            f.seek(SeekFrom::Start(start))
                .and_then(|_| f.read_exact(&mut bytes))
                .map_err(|e| io(ctx(), e))?;
            // Distinct bits, so that no flip undoes another.
            let flips = rng.random_range(1..=MAX_FLIPPED_BITS) as usize;
            let mut bits = std::collections::BTreeSet::new();
            while bits.len() < flips {
                bits.insert(rng.random_range(0..region * 8));
            }
            let mut offsets = Vec::new();
            for bit in bits {
                bytes[(bit / 8) as usize] ^= 1 << (bit % 8);
                offsets.push(start + bit / 8);
            }
            f.seek(SeekFrom::Start(start))
                .and_then(|_| f.write_all(&bytes))
                .and_then(|_| f.sync_all())
                .map_err(|e| io(ctx(), e))?;
            offsets.sort_unstable();
            offsets.dedup();
            format!(
                "flipped {flips} bits in bytes {start}..{} (at {offsets:?})",
                start + region
            )
        }
        Damage::Truncate => {
            let cut = rng.random_range(1..=MAX_TRUNCATE_BYTES.min(len));
            f.set_len(len - cut)
                .and_then(|_| f.sync_all())
                .map_err(|e| io(format!("truncating {}", path.display()), e))?;
            format!("cut {cut} bytes off the end ({len} -> {} bytes)", len - cut)
        }
    };
    Ok(format!(
        "{fallback}{} {}: {what} of {len}",
        damage.name(),
        path.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("log.0000000000000001"), vec![7u8; 1000]).unwrap();
        fs::write(dir.path().join("epochs"), vec![1u8; 24]).unwrap();
        dir
    }

    #[test]
    fn a_bitflip_changes_bits_in_one_region_of_the_newest_log_only() {
        let dir = data_dir();
        let report = corrupt(dir.path(), DataFile::Wal, Damage::Bitflip, 3).unwrap();
        let after = fs::read(dir.path().join("log.0000000000000001")).unwrap();
        assert_eq!(after.len(), 1000);
        let changed: Vec<usize> = (0..after.len()).filter(|&i| after[i] != 7).collect();
        assert!(!changed.is_empty(), "{report}");
        assert!((changed[changed.len() - 1] - changed[0]) < BITFLIP_REGION_BYTES as usize);
        assert_eq!(fs::read(dir.path().join("epochs")).unwrap(), vec![1u8; 24]);
        assert!(report.contains("log.0000000000000001"), "{report}");
    }

    #[test]
    fn a_truncate_shortens_the_file_and_says_by_how_much() {
        let dir = data_dir();
        let report = corrupt(dir.path(), DataFile::Wal, Damage::Truncate, 9).unwrap();
        let len = fs::metadata(dir.path().join("log.0000000000000001"))
            .unwrap()
            .len();
        assert!(len < 1000);
        assert!(report.contains(&format!("1000 -> {len} bytes")), "{report}");
    }

    #[test]
    fn the_same_seed_damages_the_same_bytes() {
        let (a, b) = (data_dir(), data_dir());
        corrupt(a.path(), DataFile::Wal, Damage::Bitflip, 42).unwrap();
        corrupt(b.path(), DataFile::Wal, Damage::Bitflip, 42).unwrap();
        assert_eq!(
            fs::read(a.path().join("log.0000000000000001")).unwrap(),
            fs::read(b.path().join("log.0000000000000001")).unwrap()
        );
    }

    #[test]
    fn the_snapshot_is_preferred_and_the_log_stands_in_when_there_is_none() {
        let dir = data_dir();
        let report = corrupt(dir.path(), DataFile::Snapshot, Damage::Bitflip, 1).unwrap();
        assert!(report.starts_with("no snapshot yet; "), "{report}");
        let zk = dir.path().join("version-2");
        fs::create_dir(&zk).unwrap();
        fs::write(zk.join("snapshot.1a"), vec![0u8; 100]).unwrap();
        let report = corrupt(dir.path(), DataFile::Snapshot, Damage::Truncate, 1).unwrap();
        assert!(report.contains("snapshot.1a"), "{report}");
        assert!(fs::metadata(zk.join("snapshot.1a")).unwrap().len() < 100);
    }

    #[test]
    fn an_empty_data_directory_is_one_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let e = corrupt(dir.path(), DataFile::Wal, Damage::Bitflip, 1).unwrap_err();
        assert!(e.to_string().contains("no wal file"), "{e}");
    }
}
