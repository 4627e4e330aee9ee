//! Durable storage: the write-ahead log, snapshots and the epochs, in one data directory.
//!
//! Files in the directory:
//! - `log.<generation>`: the live log. Its header names the snapshot it continues from (or
//!   none); then crc-framed transactions in strictly increasing zxid order (see `log`).
//! - `snapshot.<generation>`: the snapshot the live log's header names.
//! - `epochs`: ZAB's accepted and current epoch (missing: both 0).
//!
//! Every file but the live log's tail is written whole to `NAME.tmp`, fsynced, renamed into
//! place and the directory fsynced, so it is either absent or complete. Replacing the state
//! (a snapshot and the log after it) writes a new snapshot and then a new log generation: the
//! rename of the new log is the single commit point. A crash before it leaves the old log and
//! snapshot in charge; after it, the new ones. `open` picks the newest log generation and
//! deletes whatever it does not refer to (temp files, older generations, uncommitted
//! snapshots), and only after it has found the whole directory sound: a failed open changes
//! nothing on disk.
//!
//! Appends are buffered; `sync` is the group commit that makes them durable. After an I/O
//! error the storage refuses all further work: after a failed fsync the kernel may have
//! dropped the dirty pages, and a retry that "succeeds" would be a lie (fsyncgate).

mod epochs;
pub mod image;
mod log;
mod snapshot;

pub use snapshot::MAX_SNAPSHOT_BYTES;

use crate::api::Zxid;
use crate::core::{Persist, Recovered};
use crate::tree::Snapshot;
use crate::txn::Txn;
use nix::fcntl::{Flock, FlockArg};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Largest payload of one log record. A longer length in an intact frame is damage.
pub const MAX_RECORD_BYTES: usize = 64 << 20;
/// Appends are gathered in memory up to this much before they reach the file without a `sync`.
const LOG_BUFFER_BYTES: usize = 1 << 20;
const EPOCHS_FILE: &str = "epochs";
/// Present while this node's history is cut short by damage and not yet synced again from a
/// leader; holds why (see `Storage::open_with`).
pub const DAMAGE_FILE: &str = "damaged";
const TEMP_SUFFIX: &str = ".tmp";

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{}: {source}", .path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{}: corrupt at byte offset {offset}: {reason}", .path.display())]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    /// The caller asked for something that would break the log's invariants (a bug in it).
    #[error("{}: refused: {reason}", .path.display())]
    Refused { path: PathBuf, reason: String },
    #[error("{}: another process holds this data directory", .path.display())]
    Locked { path: PathBuf },
    #[error("{}: storage stopped after an earlier I/O error; restart the node", .path.display())]
    Failed { path: PathBuf },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StorageError + '_ {
    move |source| StorageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The snapshot a log generation continues from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Base {
    /// The generation that wrote it: its file is `snapshot.<generation>`.
    generation: u64,
    zxid: Zxid,
}

pub struct Storage {
    dir: PathBuf,
    /// Held for the storage's lifetime: two nodes writing one directory would interleave logs.
    _lock: Flock<File>,
    generation: u64,
    log_path: PathBuf,
    log: BufWriter<File>,
    /// Length of the live log, counting bytes still in the buffer.
    end: u64,
    /// (zxid, byte offset of its record) of every record in the live log.
    index: Vec<(Zxid, u64)>,
    base: Option<Base>,
    unsynced: bool,
    fsync: bool,
    failed: bool,
    /// `DAMAGE_FILE` exists.
    damaged: bool,
}

/// How `Storage::open_with` treats damage.
#[derive(Clone, Copy, Debug, Default)]
pub struct OpenMode {
    /// Cut the history at the first damage and report it in `Recovered::damage`, instead of
    /// failing the open. For a member of an ensemble, which recovers what it lost from the
    /// others; a standalone server has no other copy and refuses to start.
    pub repair: bool,
    /// The injected bug `corrupt-log-served`: skip a damaged record and keep reading.
    pub skip_corrupt_records: bool,
}

fn log_name(generation: u64) -> String {
    format!("log.{generation:016x}")
}

fn snapshot_name(generation: u64) -> String {
    format!("snapshot.{generation:016x}")
}

fn parse_generation(name: &str, prefix: &str) -> Option<u64> {
    let hex = name.strip_prefix(prefix)?;
    if hex.len() != 16 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

#[derive(Default)]
struct Listing {
    logs: Vec<u64>,
    snapshots: Vec<u64>,
    temps: Vec<PathBuf>,
}

fn list(dir: &Path) -> Result<Listing, StorageError> {
    let mut listing = Listing::default();
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(TEMP_SUFFIX) {
            listing.temps.push(entry.path());
        } else if let Some(g) = parse_generation(name, "log.") {
            listing.logs.push(g);
        } else if let Some(g) = parse_generation(name, "snapshot.") {
            listing.snapshots.push(g);
        }
    }
    Ok(listing)
}

fn fsync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

fn remove(path: &Path) -> Result<(), StorageError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err(path)(e)),
        _ => Ok(()),
    }
}

/// Writes `dir/name` whole: to a temp file, fsynced, renamed, directory fsynced (the fsyncs
/// only when `fsync`). Returns the file, open for reading and writing at its end.
fn write_whole(
    dir: &Path,
    name: &str,
    fsync: bool,
    fill: impl FnOnce(&mut BufWriter<&File>) -> io::Result<()>,
) -> Result<File, StorageError> {
    let temp = dir.join(format!("{name}{TEMP_SUFFIX}"));
    let path = dir.join(name);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&temp)
        .map_err(io_err(&temp))?;
    let mut out = BufWriter::new(&file);
    fill(&mut out)
        .and_then(|()| out.flush())
        .map_err(io_err(&temp))?;
    drop(out);
    // BUG(no-fsync): with fsync disabled, files are renamed into place unsynced.
    if fsync {
        file.sync_all().map_err(io_err(&temp))?;
    }
    fs::rename(&temp, &path).map_err(io_err(&path))?;
    if fsync {
        fsync_dir(dir)?;
    }
    Ok(file)
}

/// What `open` found: the newest log (path, scan, generation) and the snapshot it continues
/// from, or `None` for an empty directory. Damage that leaves no usable base (a log header,
/// a missing or damaged snapshot, a snapshot without a log) is an error; damage inside the log
/// is in the scan's `corrupt`.
fn find_state(
    dir: &Path,
    listing: &Listing,
    skip_corrupt: bool,
) -> Result<Option<(PathBuf, Found, u64)>, StorageError> {
    let Some(generation) = listing.logs.iter().copied().max() else {
        if let Some(&g) = listing.snapshots.iter().max() {
            // Every snapshot is written while a log exists, and a log is deleted only once a
            // newer one is in place: a snapshot alone means files were lost.
            return Err(StorageError::Corrupt {
                path: dir.join(snapshot_name(g)),
                offset: 0,
                reason: "a snapshot without any log file; refusing to guess the state".into(),
            });
        }
        return Ok(None);
    };
    let path = dir.join(log_name(generation));
    let bytes = fs::read(&path).map_err(io_err(&path))?;
    let found = read_state(
        dir,
        &path,
        &bytes,
        skip_corrupt,
        |snap_path| match fs::read(snap_path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(snap_path)(e)),
        },
    )?;
    Ok(Some((path, found, generation)))
}

/// The pure half of `find_state`, shared with `image::recover`: scans the log's bytes and
/// checks the snapshot its header names, which `read_snapshot` fetches (`None`: missing).
fn read_state(
    dir: &Path,
    path: &Path,
    bytes: &[u8],
    skip_corrupt: bool,
    read_snapshot: impl FnOnce(&Path) -> Result<Option<Vec<u8>>, StorageError>,
) -> Result<Found, StorageError> {
    let scan = log::scan(path, bytes, skip_corrupt)?;
    let mut snapshot = None;
    if let Some(base) = scan.base {
        let snap_path = dir.join(snapshot_name(base.generation));
        let Some(snap_bytes) = read_snapshot(&snap_path)? else {
            return Err(StorageError::Corrupt {
                path: path.to_path_buf(),
                offset: 0,
                reason: format!(
                    "the log continues {}, which is missing",
                    snapshot_name(base.generation)
                ),
            });
        };
        let snap = snapshot::decode(&snap_path, &snap_bytes)?;
        if snap.zxid != base.zxid {
            return Err(StorageError::Corrupt {
                path: snap_path,
                offset: 0,
                reason: format!(
                    "snapshot is at zxid {:#x}, {} expects {:#x}",
                    snap.zxid,
                    path.file_name()
                        .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
                    base.zxid
                ),
            });
        }
        snapshot = Some(snap);
    }
    Ok(Found { scan, snapshot })
}

/// How `open_with` judges what `find_state` found, shared with `image::recover`: damage fails
/// the open unless `mode.repair`, which cuts the history before it (nothing at all when no
/// usable base was found) and says why in the second value.
#[allow(clippy::type_complexity)]
fn judge_state<T>(
    state: Result<Option<(PathBuf, Found, T)>, StorageError>,
    mode: OpenMode,
) -> Result<(Option<(PathBuf, Found, T)>, Option<String>), StorageError> {
    let (state, mut damage) = match state {
        Ok(found) => (found, None),
        Err(e @ StorageError::Corrupt { .. }) if mode.repair => (None, Some(e.to_string())),
        Err(e) => return Err(e),
    };
    if let Some((path, found, _)) = &state
        && let Some((offset, reason)) = &found.scan.corrupt
    {
        let e = StorageError::Corrupt {
            path: path.clone(),
            offset: *offset,
            reason: reason.clone(),
        };
        if !mode.repair {
            return Err(e);
        }
        damage = Some(e.to_string());
    }
    Ok((state, damage))
}

struct Found {
    scan: log::Scan,
    snapshot: Option<Snapshot>,
}

impl Storage {
    /// Opens (creating if needed) the data directory and recovers the newest snapshot, the log
    /// records after it and the epochs. A torn tail of the log (a last write that never
    /// completed, see `log`) is cut off; a damaged record that was completely written, the
    /// last one included, is corruption and fails the open, changing nothing on disk. This is
    /// the open of a standalone server, which has no other copy of its data: see `open_with`.
    pub fn open(dir: &Path) -> Result<(Storage, Recovered), StorageError> {
        Storage::open_with(dir, OpenMode::default())
    }

    /// `open`, with `mode` saying what to do about damage. With `mode.repair` (a member of an
    /// ensemble), damage does not fail the open: the history is cut to what is intact before
    /// it (the records before a corrupt one; nothing at all when the snapshot or the log's
    /// header is damaged or missing), a `damaged` marker is made durable first, and
    /// `Recovered::damage` says why. The marker stays until the core reports, through
    /// `Persist::HistoryRestored`, that the node has synced its history from a leader, so a
    /// crash in between cannot make the cut history look whole.
    pub fn open_with(dir: &Path, mode: OpenMode) -> Result<(Storage, Recovered), StorageError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let dir_handle = File::open(dir).map_err(io_err(dir))?;
        let lock =
            Flock::lock(dir_handle, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| {
                match errno {
                    nix::errno::Errno::EWOULDBLOCK => StorageError::Locked {
                        path: dir.to_path_buf(),
                    },
                    e => io_err(dir)(io::Error::from(e)),
                }
            })?;
        let listing = list(dir)?;

        // Find the state and check all of it before touching anything.
        let mut recovered = Recovered::default();
        let epochs_path = dir.join(EPOCHS_FILE);
        match fs::read(&epochs_path) {
            Ok(bytes) => {
                (recovered.accepted_epoch, recovered.current_epoch) =
                    epochs::decode(&epochs_path, &bytes)?
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&epochs_path)(e)),
        }
        let marker = dir.join(DAMAGE_FILE);
        let earlier_damage = match fs::read(&marker) {
            Ok(bytes) => Some(String::from_utf8_lossy(&bytes).into_owned()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err(&marker)(e)),
        };
        let (scan, damage) =
            judge_state(find_state(dir, &listing, mode.skip_corrupt_records), mode)?;
        if let Some(reason) = &damage {
            // Durable before anything is cut: from here on, this node may lack transactions it
            // acknowledged, and must not vote until it has them again (see `core`).
            tracing::error!(
                "damaged data: {reason}; cutting the history before it and recovering it from the ensemble"
            );
            write_whole(dir, DAMAGE_FILE, true, |out| {
                out.write_all(reason.as_bytes())
            })?;
        }
        let damaged = damage.is_some() || earlier_damage.is_some();
        recovered.damage = damage.or(earlier_damage);

        // Sound (or to be repaired): now clean up what the committed state does not refer to.
        let mut removed = false;
        for temp in &listing.temps {
            remove(temp)?;
            removed = true;
        }
        let (generation, log_path, log_file, end, index, base) = match scan {
            Some((path, found, generation)) => {
                let base_generation = found.scan.base.map(|b| b.generation);
                for &g in listing.logs.iter().filter(|&&g| g != generation) {
                    remove(&dir.join(log_name(g)))?;
                    removed = true;
                }
                for &g in listing
                    .snapshots
                    .iter()
                    .filter(|&&g| Some(g) != base_generation)
                {
                    remove(&dir.join(snapshot_name(g)))?;
                    removed = true;
                }
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&path)
                    .map_err(io_err(&path))?;
                // A torn tail, or (repairing) everything from the first damaged record on.
                if let Some((offset, reason)) =
                    found.scan.torn.as_ref().or(found.scan.corrupt.as_ref())
                {
                    tracing::warn!(
                        file = %path.display(),
                        offset,
                        reason = %reason,
                        "cutting the log's tail"
                    );
                    file.set_len(found.scan.end).map_err(io_err(&path))?;
                    file.sync_all().map_err(io_err(&path))?;
                }
                if let Some(snapshot) = found.snapshot {
                    recovered.snapshot = Some(snapshot);
                }
                recovered.log = found.scan.txns;
                (
                    generation,
                    path,
                    file,
                    found.scan.end,
                    found.scan.index,
                    found.scan.base,
                )
            }
            None => {
                // A new, empty history; above every generation present, so that it is the one
                // a later open picks even if removing the damaged files below is cut short.
                let generation = listing
                    .logs
                    .iter()
                    .chain(&listing.snapshots)
                    .max()
                    .map_or(1, |g| g + 1);
                let name = log_name(generation);
                let file = write_whole(dir, &name, true, |out| {
                    out.write_all(&log::encode_header(None))
                })?;
                for &g in &listing.logs {
                    remove(&dir.join(log_name(g)))?;
                    removed = true;
                }
                for &g in &listing.snapshots {
                    remove(&dir.join(snapshot_name(g)))?;
                    removed = true;
                }
                (
                    generation,
                    dir.join(name),
                    file,
                    log::HEADER_BYTES as u64,
                    Vec::new(),
                    None,
                )
            }
        };
        if removed {
            fsync_dir(dir)?;
        }
        let mut storage = Storage {
            dir: dir.to_path_buf(),
            _lock: lock,
            generation,
            log_path,
            log: BufWriter::with_capacity(LOG_BUFFER_BYTES, log_file),
            end,
            index,
            base,
            unsynced: false,
            fsync: true,
            failed: false,
            damaged,
        };
        let path = storage.log_path.clone();
        storage
            .log
            .get_mut()
            .seek(SeekFrom::Start(end))
            .map_err(io_err(&path))?;
        Ok((storage, recovered))
    }

    /// Carries out one `Persist` output. `Append` is buffered and made durable by `sync`; the
    /// others are durable when this returns.
    pub fn persist(&mut self, p: &Persist) -> Result<(), StorageError> {
        self.guard(|s| match p {
            Persist::Append(txns) => s.append(txns),
            Persist::TruncateAfter(zxid) => s.truncate_after(*zxid),
            Persist::Snapshot(snapshot) => s.replace(snapshot, false),
            Persist::Epochs {
                accepted_epoch,
                current_epoch,
            } => s.write_epochs(*accepted_epoch, *current_epoch),
            Persist::HistoryRestored => s.clear_damage(),
        })
    }

    /// Group commit: makes every append so far durable. The shell calls it once per batch,
    /// before anything that depends on durability leaves the process.
    pub fn sync(&mut self) -> Result<(), StorageError> {
        self.guard(Storage::sync_log)
    }

    fn sync_log(&mut self) -> Result<(), StorageError> {
        if !self.unsynced {
            return Ok(());
        }
        self.log.flush().map_err(io_err(&self.log_path))?;
        // BUG(no-fsync): the appends reach the kernel, so they survive a kill -9, but are
        // never fsynced: a power loss (schism's `power-loss`) loses acknowledged writes.
        if self.fsync {
            self.log
                .get_ref()
                .sync_data()
                .map_err(io_err(&self.log_path))?;
        }
        self.unsynced = false;
        Ok(())
    }

    /// The history is whole again (synced from a leader): the log, appends of this batch
    /// included, is made durable first, and only then the damage marker removed.
    fn clear_damage(&mut self) -> Result<(), StorageError> {
        if !self.damaged {
            return Ok(());
        }
        self.sync_log()?;
        remove(&self.dir.join(DAMAGE_FILE))?;
        fsync_dir(&self.dir)?;
        self.damaged = false;
        tracing::info!("history restored from the ensemble; the damage marker is removed");
        Ok(())
    }

    /// Whether the history is cut short by damage and not yet restored (`DAMAGE_FILE`).
    pub fn is_damaged(&self) -> bool {
        self.damaged
    }

    /// Saves a snapshot of the applied tree and drops the log records it covers (zxid <=
    /// snapshot.zxid), keeping the later ones. Crash-safe: see the module comment.
    pub fn save_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), StorageError> {
        self.guard(|s| {
            if let Some(base) = s.base {
                if snapshot.zxid < base.zxid {
                    return Err(s.refused(format!(
                        "snapshot at zxid {:#x} is older than the current one at {:#x}",
                        snapshot.zxid, base.zxid
                    )));
                }
                if snapshot.zxid == base.zxid {
                    return Ok(());
                }
            }
            s.replace(snapshot, true)
        })
    }

    /// Fault injection `no-fsync` (issue 6): when false, no fsync is done at all.
    pub fn set_fsync(&mut self, enabled: bool) {
        self.fsync = enabled;
    }

    /// Records in the live log.
    pub fn log_records(&self) -> u64 {
        self.index.len() as u64
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Runs `op` unless an earlier I/O error stopped the storage, and stops it on an I/O error.
    fn guard(
        &mut self,
        op: impl FnOnce(&mut Storage) -> Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        if self.failed {
            return Err(StorageError::Failed {
                path: self.dir.clone(),
            });
        }
        let result = op(self);
        if matches!(result, Err(StorageError::Io { .. })) {
            self.failed = true;
        }
        result
    }

    fn refused(&self, reason: String) -> StorageError {
        StorageError::Refused {
            path: self.log_path.clone(),
            reason,
        }
    }

    /// The zxid every new record must exceed.
    fn last_zxid(&self) -> Option<Zxid> {
        self.index
            .last()
            .map(|&(z, _)| z)
            .or(self.base.map(|b| b.zxid))
    }

    fn append(&mut self, txns: &[Txn]) -> Result<(), StorageError> {
        // Check and encode the whole batch first: a refused batch writes nothing.
        let mut last = self.last_zxid();
        let mut records = Vec::with_capacity(txns.len());
        for txn in txns {
            if let Some(prev) = last
                && txn.zxid <= prev
            {
                return Err(self.refused(format!(
                    "append of zxid {:#x} after zxid {prev:#x}: zxids must increase",
                    txn.zxid
                )));
            }
            last = Some(txn.zxid);
            records.push((
                txn.zxid,
                log::encode_record(txn).map_err(|r| self.refused(r))?,
            ));
        }
        for (zxid, record) in records {
            self.log
                .write_all(&record)
                .map_err(io_err(&self.log_path))?;
            self.index.push((zxid, self.end));
            self.end += record.len() as u64;
            self.unsynced = true;
        }
        Ok(())
    }

    fn truncate_after(&mut self, zxid: Zxid) -> Result<(), StorageError> {
        if let Some(base) = self.base
            && zxid < base.zxid
        {
            return Err(self.refused(format!(
                "truncate after zxid {zxid:#x}, below the snapshot at {:#x}",
                base.zxid
            )));
        }
        self.log.flush().map_err(io_err(&self.log_path))?;
        let keep = self.index.partition_point(|&(z, _)| z <= zxid);
        if let Some(&(_, offset)) = self.index.get(keep) {
            let file = self.log.get_mut();
            file.set_len(offset).map_err(io_err(&self.log_path))?;
            file.seek(SeekFrom::Start(offset))
                .map_err(io_err(&self.log_path))?;
            self.index.truncate(keep);
            self.end = offset;
        }
        // BUG(no-fsync)
        if self.fsync {
            self.log
                .get_ref()
                .sync_all()
                .map_err(io_err(&self.log_path))?;
        }
        self.unsynced = false;
        Ok(())
    }

    /// Makes `snapshot` the base of a new log generation. With `keep_tail`, the records after
    /// the snapshot move to the new log (compaction); without, the new log is empty (ZAB's SNAP
    /// replaces the whole state).
    fn replace(&mut self, snapshot: &Snapshot, keep_tail: bool) -> Result<(), StorageError> {
        self.log.flush().map_err(io_err(&self.log_path))?;
        let generation = self.generation + 1;
        let snap_bytes = snapshot::encode(snapshot).map_err(|r| self.refused(r))?;
        // 1. The snapshot, complete and durable, but not yet referred to by any log.
        write_whole(&self.dir, &snapshot_name(generation), self.fsync, |out| {
            out.write_all(&snap_bytes)
        })?;
        // 2. The new log: the commit point is its rename.
        let keep = if keep_tail {
            self.index.partition_point(|&(z, _)| z <= snapshot.zxid)
        } else {
            self.index.len()
        };
        let tail_start = self.index.get(keep).map_or(self.end, |&(_, off)| off);
        let base = Base {
            generation,
            zxid: snapshot.zxid,
        };
        let old_log = self.log_path.clone();
        let end_before = self.end;
        let file = write_whole(&self.dir, &log_name(generation), self.fsync, |out| {
            out.write_all(&log::encode_header(Some(base)))?;
            let mut from = File::open(&old_log)?;
            from.seek(SeekFrom::Start(tail_start))?;
            let copied = io::copy(&mut (&mut from).take(end_before - tail_start), out)?;
            if copied != end_before - tail_start {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("{} ended while its tail was copied", old_log.display()),
                ));
            }
            Ok(())
        })?;
        // 3. Committed: switch over, then delete what the new log does not refer to.
        let shift = tail_start - log::HEADER_BYTES as u64;
        self.index.drain(..keep);
        for entry in &mut self.index {
            entry.1 -= shift;
        }
        self.end -= shift;
        let old_base = self.base.replace(base);
        self.generation = generation;
        self.log_path = self.dir.join(log_name(generation));
        self.log = BufWriter::with_capacity(LOG_BUFFER_BYTES, file);
        self.unsynced = false;
        let end = self.end;
        self.log
            .get_mut()
            .seek(SeekFrom::Start(end))
            .map_err(io_err(&self.log_path))?;
        remove(&old_log)?;
        if let Some(old) = old_base {
            remove(&self.dir.join(snapshot_name(old.generation)))?;
        }
        if self.fsync {
            fsync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// Records the epochs. The appends before them in the batch are made durable first: the
    /// epochs file is fsynced as it is written, and a crash between it and the batch's group
    /// commit would otherwise leave a node claiming an epoch whose history it lacks, which can
    /// then win an election and truncate committed transactions (ZOOKEEPER-4643; the ZAB rule
    /// is that a follower's history is on disk before it takes the leader's epoch).
    fn write_epochs(
        &mut self,
        accepted_epoch: u32,
        current_epoch: u32,
    ) -> Result<(), StorageError> {
        self.sync_log()?;
        let bytes = epochs::encode(accepted_epoch, current_epoch);
        write_whole(&self.dir, EPOCHS_FILE, self.fsync, |out| {
            out.write_all(&bytes)
        })?;
        Ok(())
    }
}
