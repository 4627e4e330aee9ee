//! A node's simulated disk: the real storage's files as bytes in memory (`keeper::storage::image`
//! encodes them and judges them on reopen, exactly as `Storage::open_with` does), with what a
//! crash leaves of them modelled on the real shell and storage:
//!
//! - Appends are written when persisted and durable only at the batch's fsync (`sync`); a
//!   truncation, a snapshot (a new log generation, from a SNAP sync or the node's own schedule,
//!   which copies the log's tail after the snapshot into it), the epochs file and the clearing of the
//!   damage marker are durable at once (each is fsynced or renamed-after-fsync in place).
//! - A process crash (`kill`) loses nothing written: the kernel holds it. Unsynced bytes stay
//!   unsynced across the restart (the real open does not fsync a log it does not cut) until the
//!   next fsync of the file.
//! - A power loss keeps a prefix of the unsynced bytes: whole records, or (torn writes) a record
//!   cut short, possibly padded with zeros to the end of a block, as a filesystem leaves a block
//!   whose data never reached the disk.
//! - Corruption (a bit flip, the real `corrupt` fault's `bitflip`) hits a stopped node's log or
//!   snapshot; the reopen finds it by crc and cuts the history before it, reporting
//!   `Recovered::damage` for protocol-aware recovery.

use std::path::Path;

use keeper::api::Zxid;
use keeper::core::{Persist, Recovered};
use keeper::storage::OpenMode;
use keeper::storage::image::{self, Image};
use keeper::tree::Snapshot;
use rand::RngExt;
use rand_chacha::ChaCha8Rng;

/// A filesystem block: a torn write's zero padding reaches at most to the end of one.
const BLOCK_BYTES: usize = 4_096;
/// Bits one bit flip changes, at most (the real `corrupt` fault's `MAX_FLIPPED_BITS`).
const MAX_FLIPPED_BITS: u32 = 8;
/// The flips of one corruption fall within this many bytes (`BITFLIP_REGION_BYTES`).
const BITFLIP_REGION_BYTES: usize = 64;

/// What a power loss may do to the unsynced tail of the log.
#[derive(Clone, Copy, Debug)]
pub(crate) enum PowerLoss {
    /// A prefix of the unsynced records survives, each whole.
    WholeRecords,
    /// The prefix may end inside a record (a torn write), perhaps padded with zeros.
    Torn,
}

#[derive(Clone)]
pub(crate) struct Disk {
    /// The live log's generation (its file name) and bytes: header, then records.
    generation: u64,
    log: Vec<u8>,
    /// (zxid, byte offset) of each record in `log`, for `TruncateAfter`.
    index: Vec<(Zxid, usize)>,
    /// The log's first `synced` bytes survive a power loss.
    synced: usize,
    /// The snapshot the log's header names: (generation, zxid, file bytes).
    snapshot: Option<(u64, Zxid, Vec<u8>)>,
    epochs: Option<Vec<u8>>,
    /// The `damaged` marker: set by a reopen that found damage, removed by `HistoryRestored`.
    damaged: Option<String>,
}

impl Default for Disk {
    /// A data directory as the first open leaves it: an empty log of generation 1, durable.
    fn default() -> Disk {
        let log = image::log_header(None);
        Disk {
            generation: 1,
            synced: log.len(),
            log,
            index: Vec::new(),
            snapshot: None,
            epochs: None,
            damaged: None,
        }
    }
}

impl Disk {
    /// Carries out one `Persist` as `Storage::persist` does (appends wait for `sync`).
    pub(crate) fn persist(&mut self, p: &Persist) {
        match p {
            Persist::Append(txns) => {
                for txn in txns {
                    let record = image::log_record(txn).expect("a txn the core made encodes");
                    self.index.push((txn.zxid, self.log.len()));
                    self.log.extend_from_slice(&record);
                }
            }
            Persist::TruncateAfter(zxid) => {
                let keep = self.index.partition_point(|&(z, _)| z <= *zxid);
                if let Some(&(_, offset)) = self.index.get(keep) {
                    self.log.truncate(offset);
                    self.index.truncate(keep);
                }
                // The truncation is fsynced, and with it every append before it.
                self.sync();
            }
            // ZAB's SNAP replaces the whole state: the new generation's log is empty.
            Persist::Snapshot(snapshot) => self.replace(snapshot, false),
            Persist::Epochs {
                accepted_epoch,
                current_epoch,
            } => self.epochs = Some(image::epochs_file(*accepted_epoch, *current_epoch)),
            Persist::HistoryRestored => {
                if self.damaged.is_some() {
                    // The log is fsynced first, and only then the marker removed.
                    self.sync();
                    self.damaged = None;
                }
            }
        }
    }

    /// Saves a snapshot the node took on its own schedule, as `Storage::save_snapshot` does:
    /// a new generation whose log keeps the records after the snapshot's zxid (compaction).
    /// A snapshot older than the current one is refused (the real driver then stops the node);
    /// an equal one changes nothing. Returns whether a new generation was written.
    pub(crate) fn save_snapshot(&mut self, snapshot: &Snapshot) -> Result<bool, String> {
        if let Some((_, base, _)) = &self.snapshot {
            if snapshot.zxid < *base {
                return Err(format!(
                    "snapshot at zxid {:#x} is older than the current one at {base:#x}",
                    snapshot.zxid
                ));
            }
            if snapshot.zxid == *base {
                return Ok(false);
            }
        }
        self.replace(snapshot, true);
        Ok(true)
    }

    /// Makes `snapshot` the base of a new generation (`Storage::replace`): the snapshot file,
    /// then a log naming it, each written whole and fsynced; the rename of the log is the
    /// commit point. With `keep_tail`, the records after the snapshot's zxid are copied into
    /// the new log, so they are durable from then on whether or not they were synced before.
    fn replace(&mut self, snapshot: &Snapshot, keep_tail: bool) {
        let keep = if keep_tail {
            self.index.partition_point(|&(z, _)| z <= snapshot.zxid)
        } else {
            self.index.len()
        };
        let tail_start = self.index.get(keep).map_or(self.log.len(), |&(_, off)| off);
        self.generation += 1;
        let bytes = image::snapshot_file(snapshot).expect("a snapshot encodes");
        self.snapshot = Some((self.generation, snapshot.zxid, bytes));
        let mut log = image::log_header(Some((self.generation, snapshot.zxid)));
        let index = self.index[keep..]
            .iter()
            .map(|&(z, off)| (z, off - tail_start + log.len()))
            .collect();
        log.extend_from_slice(&self.log[tail_start..]);
        self.log = log;
        self.index = index;
        self.synced = self.log.len();
    }

    /// The batch's group commit: every byte of the log is durable.
    pub(crate) fn sync(&mut self) {
        self.synced = self.log.len();
    }

    /// Whether the disk has bytes a power loss could lose.
    pub(crate) fn has_unsynced(&self) -> bool {
        self.synced < self.log.len()
    }

    /// The power fails: what the disk has not made durable is lost, but for a prefix the
    /// drive happened to write. Returns the bytes lost, and whether a record was torn.
    pub(crate) fn power_loss(&mut self, rng: &mut ChaCha8Rng, how: PowerLoss) -> (usize, bool) {
        if !self.has_unsynced() {
            return (0, false);
        }
        let before = self.log.len();
        let boundaries: Vec<usize> = std::iter::once(self.synced)
            .chain(
                self.index
                    .iter()
                    .map(|&(_, offset)| offset)
                    .filter(|&offset| offset > self.synced),
            )
            .chain(std::iter::once(self.log.len()))
            .collect();
        let keep = match how {
            PowerLoss::WholeRecords => boundaries[rng.random_range(0..boundaries.len())],
            PowerLoss::Torn => rng.random_range(self.synced..self.log.len()),
        };
        self.log.truncate(keep);
        if matches!(how, PowerLoss::Torn) && rng.random_bool(0.5) {
            // The file's size reached the disk, its last block's data did not.
            let block_end = (keep / BLOCK_BYTES + 1) * BLOCK_BYTES;
            let zeros = rng.random_range(1..=block_end - keep);
            self.log.resize(keep + zeros, 0);
        }
        // A tail the reopen will cut: part of a record, or zeros.
        let torn = self.log.len() > keep || !self.index.iter().any(|&(_, offset)| offset == keep);
        let torn = torn && keep < before;
        self.index.retain(|&(_, offset)| offset < keep);
        self.synced = self.log.len();
        (before - keep, torn)
    }

    /// Flips 1 to `MAX_FLIPPED_BITS` bits within one `BITFLIP_REGION_BYTES` region of the
    /// snapshot (if `snapshot` and there is one) or the log. Returns what it hit, for the log.
    pub(crate) fn bitflip(&mut self, rng: &mut ChaCha8Rng, snapshot: bool) -> String {
        let (file, bytes) = match &mut self.snapshot {
            Some((g, _, bytes)) if snapshot => (format!("snapshot.{g:016x}"), bytes),
            _ => (format!("log.{:016x}", self.generation), &mut self.log),
        };
        let region = rng.random_range(0..bytes.len().div_ceil(BITFLIP_REGION_BYTES));
        let start = region * BITFLIP_REGION_BYTES;
        let end = (start + BITFLIP_REGION_BYTES).min(bytes.len());
        let flips = rng
            .random_range(1..=MAX_FLIPPED_BITS)
            .min((end - start) as u32 * 8);
        // Distinct bits: two flips of one bit would undo each other.
        let mut bits = std::collections::BTreeSet::new();
        while bits.len() < flips as usize {
            bits.insert(rng.random_range(start * 8..end * 8));
        }
        for bit in bits {
            bytes[bit / 8] ^= 1 << (bit % 8);
        }
        format!("{flips} bits flipped in {file} bytes {start}..{end}")
    }

    /// Whether the node's history is cut short by damage (the marker is present).
    pub(crate) fn is_damaged(&self) -> bool {
        self.damaged.is_some()
    }

    /// Reopens the disk as the real storage does (`Storage::open_with` with `mode`), leaving
    /// the files as that open would: the log cut to its intact records (fsynced), or a new
    /// empty generation when no usable base was found; the damage marker as reported.
    pub(crate) fn open(&mut self, dir: &Path, mode: OpenMode) -> Result<Recovered, String> {
        let files = Image {
            log: Some((self.generation, self.log.clone())),
            snapshot: self.snapshot.as_ref().map(|(g, _, b)| (*g, b.clone())),
            epochs: self.epochs.clone(),
            damaged: self.damaged.clone(),
        };
        let recovered = files.recover(dir, mode).map_err(|e| e.to_string())?;
        let base = match (&recovered.snapshot, &self.snapshot) {
            (Some(s), Some((g, zxid, _))) => {
                debug_assert_eq!(s.zxid, *zxid);
                Some((*g, *zxid))
            }
            (None, Some(_)) => {
                // The snapshot (or the header naming it) was damaged: a new, empty generation.
                self.generation += 1;
                self.snapshot = None;
                None
            }
            _ => None,
        };
        let mut log = image::log_header(base);
        let mut index = Vec::with_capacity(recovered.log.len());
        for txn in &recovered.log {
            index.push((txn.zxid, log.len()));
            log.extend(image::log_record(txn).expect("a recovered txn encodes"));
        }
        if log != self.log {
            // A cut (torn tail or damage) or a new generation is fsynced by the open; an
            // untouched log keeps whatever the kernel had not yet written.
            self.log = log;
            self.synced = self.log.len();
        }
        self.index = index;
        self.damaged = recovered.damage.clone();
        Ok(recovered)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keeper::txn::{Txn, TxnBody};
    use rand::SeedableRng;

    fn txn(zxid: Zxid) -> Txn {
        Txn {
            zxid,
            time_ms: 1,
            session: 7,
            origin: None,
            body: TxnBody::CreateSession { timeout_ms: 3_000 },
        }
    }

    fn dir() -> &'static Path {
        Path::new("n1")
    }

    fn mode() -> OpenMode {
        OpenMode {
            repair: true,
            skip_corrupt_records: false,
        }
    }

    fn zxids(r: &Recovered) -> Vec<Zxid> {
        r.log.iter().map(|t| t.zxid).collect()
    }

    #[test]
    fn a_power_loss_keeps_what_was_synced_and_a_prefix_of_the_rest() {
        for seed in 0..200 {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let mut disk = Disk::default();
            disk.persist(&Persist::Append((1..=3).map(txn).collect()));
            disk.sync();
            disk.persist(&Persist::Append((4..=6).map(txn).collect()));
            let how = if seed % 2 == 0 {
                PowerLoss::WholeRecords
            } else {
                PowerLoss::Torn
            };
            disk.power_loss(&mut rng, how);
            let r = disk
                .open(dir(), mode())
                .expect("a torn tail is cut, not refused");
            assert_eq!(r.damage, None, "seed {seed}: a torn write is not damage");
            let got = zxids(&r);
            assert!(got.len() >= 3, "seed {seed}: synced records lost: {got:?}");
            assert_eq!(
                got,
                (1..=got.len() as u64).collect::<Vec<_>>(),
                "seed {seed}"
            );
            // The cut log is whole again: a second open finds the same.
            assert_eq!(zxids(&disk.open(dir(), mode()).expect("opens")), got);
        }
    }

    #[test]
    fn a_kill_loses_nothing_and_unsynced_bytes_stay_at_risk_across_the_restart() {
        let mut disk = Disk::default();
        disk.persist(&Persist::Append((1..=3).map(txn).collect()));
        let r = disk.open(dir(), mode()).expect("opens");
        assert_eq!(zxids(&r), vec![1, 2, 3]);
        assert!(
            disk.has_unsynced(),
            "the real open does not fsync an intact log"
        );
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        disk.power_loss(&mut rng, PowerLoss::WholeRecords);
        assert!(zxids(&disk.open(dir(), mode()).expect("opens")).len() <= 3);
    }

    #[test]
    fn a_bit_flip_is_found_and_cuts_the_history_with_damage() {
        for seed in 0..100 {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let mut disk = Disk::default();
            disk.persist(&Persist::Epochs {
                accepted_epoch: 2,
                current_epoch: 2,
            });
            disk.persist(&Persist::Append((1..=5).map(txn).collect()));
            disk.sync();
            let what = disk.bitflip(&mut rng, false);
            let r = disk.open(dir(), mode()).expect("repairs");
            assert!(r.damage.is_some(), "seed {seed}: {what} went unnoticed");
            assert!(
                r.log.len() < 5,
                "seed {seed}: {what} served a damaged record"
            );
            assert_eq!((r.accepted_epoch, r.current_epoch), (2, 2));
            assert!(disk.is_damaged());
            // The marker stays until the history is restored.
            assert!(disk.open(dir(), mode()).expect("opens").damage.is_some());
            disk.persist(&Persist::HistoryRestored);
            assert_eq!(disk.open(dir(), mode()).expect("opens").damage, None);
        }
    }

    fn snapshot(zxid: Zxid) -> Snapshot {
        Snapshot {
            zxid,
            ..keeper::tree::DataTree::new().to_snapshot()
        }
    }

    #[test]
    fn a_scheduled_snapshot_keeps_the_tail_after_it_durable() {
        let mut disk = Disk::default();
        disk.persist(&Persist::Append((1..=3).map(txn).collect()));
        disk.sync();
        disk.persist(&Persist::Append((4..=6).map(txn).collect()));
        assert_eq!(disk.save_snapshot(&snapshot(3)), Ok(true));
        // The new generation is written whole and fsynced, its copied tail with it.
        assert!(!disk.has_unsynced());
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        disk.power_loss(&mut rng, PowerLoss::Torn);
        let r = disk.open(dir(), mode()).expect("opens");
        assert_eq!(r.snapshot.as_ref().map(|s| s.zxid), Some(3));
        assert_eq!(zxids(&r), vec![4, 5, 6]);
        // The tail's index moved with it: appends and truncations still land right.
        disk.persist(&Persist::Append(vec![txn(7)]));
        disk.persist(&Persist::TruncateAfter(5));
        assert_eq!(zxids(&disk.open(dir(), mode()).expect("opens")), vec![4, 5]);
        // As the real storage: an older snapshot is refused, an equal one changes nothing.
        assert!(disk.save_snapshot(&snapshot(2)).is_err());
        assert_eq!(disk.save_snapshot(&snapshot(3)), Ok(false));
        // A snapshot past the log's end leaves an empty tail.
        assert_eq!(disk.save_snapshot(&snapshot(9)), Ok(true));
        let r = disk.open(dir(), mode()).expect("opens");
        assert_eq!(r.snapshot.as_ref().map(|s| s.zxid), Some(9));
        assert!(r.log.is_empty());
    }

    #[test]
    fn a_snap_sync_replaces_the_whole_log() {
        let mut disk = Disk::default();
        disk.persist(&Persist::Append((1..=6).map(txn).collect()));
        disk.sync();
        disk.persist(&Persist::Snapshot(snapshot(4)));
        let r = disk.open(dir(), mode()).expect("opens");
        assert_eq!(r.snapshot.as_ref().map(|s| s.zxid), Some(4));
        assert!(r.log.is_empty(), "a SNAP keeps no tail: {:?}", zxids(&r));
    }

    #[test]
    fn a_standalone_open_refuses_damage() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut disk = Disk::default();
        disk.persist(&Persist::Append((1..=5).map(txn).collect()));
        disk.sync();
        disk.bitflip(&mut rng, false);
        assert!(disk.open(dir(), OpenMode::default()).is_err());
    }
}
