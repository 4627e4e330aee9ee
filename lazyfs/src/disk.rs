//! The disk model: a backing directory that holds exactly what survived the last power loss,
//! and in memory everything the program did not sync yet.
//!
//! # The durability rule (what survives a power loss)
//! - **File data** (writes and truncations) lives in memory, per file, until that file is
//!   fsynced or fdatasynced; then it is written to the backing file and synced there. Closing a
//!   file syncs nothing.
//! - **Directory entries** (create, mkdir, unlink, rmdir, rename) are applied to the backing
//!   directory at once, because other processes must see them, but each is logged with what
//!   undoes it. An entry change becomes durable when a directory it touched is fsynced: fsync of
//!   directory D makes every pending entry change up to and including the last one that touched
//!   D durable (a prefix of the order they happened in). A prefix keeps the state after a power
//!   loss one the program could have observed, and it is at most as generous as ext4's ordered
//!   journal. fsync of a *file* does not make its name durable: a new or renamed file survives
//!   only if its directory was fsynced after the change.
//! - **Power loss** drops every file's unsynced data and undoes the pending entry changes, newest
//!   first. With `torn`, each file instead keeps a random page-aligned prefix of its unsynced
//!   writes (in the order they were made), the last kept write cut at a 4 KiB page: a disk that
//!   lost power in the middle of writing back.
//! - Attributes other than the size (mode, owner, times) pass through and are not modelled.
//!
//! Unlinked and replaced files are moved into a hidden trash directory in the backing root
//! (same filesystem, so a rename), from where an undo brings them back; they are deleted once
//! their removal is durable.

use rand::RngExt;
use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// The unit in which unsynced data is held, and at which a torn write is cut.
pub const PAGE_BYTES: u64 = 4096;
/// The hidden directory (in the backing root) holding removed files until the removal is
/// durable. Never listed, never looked up.
pub const TRASH_DIR: &str = ".lazyfs-trash";
/// Unsynced data held per mount before the file being written is written back (synced) as a
/// kernel under memory pressure would: bounds the daemon's memory.
pub const MAX_PENDING_BYTES: u64 = 256 << 20;

/// An inode number as the kernel sees it; 1 is the root.
pub type Ino = u64;
pub const ROOT_INO: Ino = 1;

/// Unsynced data of one file: the pages written since its last sync over the backing file.
/// Invariants: `valid <= len`; page bytes beyond `len` are zero.
struct Pending {
    /// The length the program sees.
    len: u64,
    /// Backing bytes at offsets below this are current unless a page overrides them; above it
    /// they were truncated away (and read as zero).
    valid: u64,
    pages: BTreeMap<u64, Box<[u8]>>,
    /// Every write and truncation since the sync, oldest first: what a torn power loss replays
    /// a prefix of.
    ops: Vec<DataOp>,
}

enum DataOp {
    Write { offset: u64, data: Vec<u8> },
    Truncate { len: u64 },
}

/// One pending directory-entry change, with what undoes it.
#[derive(Debug)]
enum EntryChange {
    /// `path` was created (file or directory): undone by removing it.
    Created { path: PathBuf },
    /// `path` was removed: it waits in the trash as `trash`.
    Removed { path: PathBuf, trash: PathBuf },
    /// `from` was renamed to `to`; what `to` held before waits in the trash.
    Renamed {
        from: PathBuf,
        to: PathBuf,
        replaced: Option<PathBuf>,
    },
}

impl EntryChange {
    fn touches(&self, dir: &Path) -> bool {
        let parent = |p: &Path| p.parent().map(Path::to_path_buf).unwrap_or_default();
        match self {
            EntryChange::Created { path } | EntryChange::Removed { path, .. } => {
                parent(path) == dir
            }
            EntryChange::Renamed { from, to, .. } => parent(from) == dir || parent(to) == dir,
        }
    }
}

/// What a power loss dropped, for the control socket's answer.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LossReport {
    pub files: usize,
    pub bytes_dropped: u64,
    pub bytes_kept: u64,
    pub entries_undone: usize,
}

impl std::fmt::Display for LossReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "dropped {} unsynced bytes of {} files (kept {} torn), undid {} entry changes",
            self.bytes_dropped, self.files, self.bytes_kept, self.entries_undone
        )
    }
}

/// The backing directory plus the unsynced state. Paths inside are relative to the root
/// (the root itself is the empty path).
pub struct Disk {
    root: PathBuf,
    paths: HashMap<Ino, PathBuf>,
    inos: HashMap<PathBuf, Ino>,
    next_ino: Ino,
    files: HashMap<Ino, Pending>,
    pending_bytes: u64,
    entries: Vec<EntryChange>,
    next_trash: u64,
}

fn zero_page() -> Box<[u8]> {
    vec![0u8; PAGE_BYTES as usize].into_boxed_slice()
}

impl Disk {
    /// Opens `root` as the backing directory; a trash left by an earlier daemon is emptied
    /// (its removals happened before that daemon stopped).
    pub fn new(root: &Path) -> io::Result<Disk> {
        let root = root.canonicalize()?;
        let trash = root.join(TRASH_DIR);
        match fs::remove_dir_all(&trash) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        fs::create_dir(&trash)?;
        let mut disk = Disk {
            root,
            paths: HashMap::new(),
            inos: HashMap::new(),
            next_ino: ROOT_INO + 1,
            files: HashMap::new(),
            pending_bytes: 0,
            entries: Vec::new(),
            next_trash: 0,
        };
        disk.paths.insert(ROOT_INO, PathBuf::new());
        disk.inos.insert(PathBuf::new(), ROOT_INO);
        Ok(disk)
    }

    fn full(&self, rel: &Path) -> PathBuf {
        self.root.join(rel)
    }

    /// The backing directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The backing path of an inode.
    pub fn full_path(&self, ino: Ino) -> io::Result<PathBuf> {
        Ok(self.full(&self.path(ino)?))
    }

    /// The relative path of an inode the kernel knows.
    pub fn path(&self, ino: Ino) -> io::Result<PathBuf> {
        self.paths
            .get(&ino)
            .cloned()
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ESTALE))
    }

    /// The relative path of `name` in directory `parent`; the trash is not a name.
    pub fn child(&self, parent: Ino, name: &std::ffi::OsStr) -> io::Result<PathBuf> {
        let dir = self.path(parent)?;
        if dir.as_os_str().is_empty() && name == TRASH_DIR {
            return Err(io::Error::from_raw_os_error(libc::ENOENT));
        }
        if name.is_empty() || name == "." || name == ".." || name.to_string_lossy().contains('/') {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        Ok(dir.join(name))
    }

    /// The inode of a relative path, assigned on first sight.
    pub fn ino_of(&mut self, rel: &Path) -> Ino {
        if let Some(&ino) = self.inos.get(rel) {
            return ino;
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        self.inos.insert(rel.to_path_buf(), ino);
        self.paths.insert(ino, rel.to_path_buf());
        ino
    }

    /// The backing metadata of an inode, and the size the program sees.
    pub fn stat(&self, ino: Ino) -> io::Result<(fs::Metadata, u64)> {
        let meta = fs::symlink_metadata(self.full(&self.path(ino)?))?;
        let size = self.files.get(&ino).map_or(meta.len(), |p| p.len);
        Ok((meta, size))
    }

    /// The directory's entries (name, inode, is-directory), without the trash.
    pub fn list(&mut self, ino: Ino) -> io::Result<Vec<(std::ffi::OsString, Ino, bool)>> {
        let dir = self.path(ino)?;
        let mut out = Vec::new();
        for entry in fs::read_dir(self.full(&dir))? {
            let entry = entry?;
            let name = entry.file_name();
            if dir.as_os_str().is_empty() && name == TRASH_DIR {
                continue;
            }
            let is_dir = entry.file_type()?.is_dir();
            let child = self.ino_of(&dir.join(&name));
            out.push((name, child, is_dir));
        }
        Ok(out)
    }

    // ---- file data ----

    fn backing_len(&self, ino: Ino) -> io::Result<u64> {
        Ok(fs::metadata(self.full(&self.path(ino)?))?.len())
    }

    fn pending(&mut self, ino: Ino) -> io::Result<&mut Pending> {
        if !self.files.contains_key(&ino) {
            let len = self.backing_len(ino)?;
            self.files.insert(
                ino,
                Pending {
                    len,
                    valid: len,
                    pages: BTreeMap::new(),
                    ops: Vec::new(),
                },
            );
        }
        Ok(self.files.get_mut(&ino).expect("inserted above"))
    }

    /// The current bytes of page `index` of a pending file (backing bytes below `valid`, zeros
    /// above), not counting a page held in memory.
    fn load_page(&self, ino: Ino, valid: u64, index: u64) -> io::Result<Box<[u8]>> {
        let mut page = zero_page();
        let start = index * PAGE_BYTES;
        if start < valid {
            let want = (valid - start).min(PAGE_BYTES) as usize;
            let file = File::open(self.full(&self.path(ino)?))?;
            let mut got = 0;
            while got < want {
                match file.read_at(&mut page[got..want], start + got as u64)? {
                    0 => break,
                    n => got += n,
                }
            }
        }
        Ok(page)
    }

    pub fn read(&self, ino: Ino, offset: u64, size: u32) -> io::Result<Vec<u8>> {
        let Some(p) = self.files.get(&ino) else {
            let file = File::open(self.full(&self.path(ino)?))?;
            let mut buf = vec![0u8; size as usize];
            let mut got = 0;
            while got < buf.len() {
                match file.read_at(&mut buf[got..], offset + got as u64)? {
                    0 => break,
                    n => got += n,
                }
            }
            buf.truncate(got);
            return Ok(buf);
        };
        let end = (offset + size as u64).min(p.len);
        let mut out = Vec::with_capacity(end.saturating_sub(offset) as usize);
        let mut at = offset;
        while at < end {
            let index = at / PAGE_BYTES;
            let within = (at % PAGE_BYTES) as usize;
            let take = ((PAGE_BYTES - within as u64).min(end - at)) as usize;
            match p.pages.get(&index) {
                Some(page) => out.extend_from_slice(&page[within..within + take]),
                None => {
                    let page = self.load_page(ino, p.valid, index)?;
                    out.extend_from_slice(&page[within..within + take]);
                }
            }
            at += take as u64;
        }
        Ok(out)
    }

    /// Applies a write to the pending pages only (no op log, no accounting).
    fn apply_write(&mut self, ino: Ino, offset: u64, data: &[u8]) -> io::Result<u64> {
        let valid = self.pending(ino)?.valid;
        let mut added = 0;
        let mut at = 0usize;
        while at < data.len() {
            let pos = offset + at as u64;
            let index = pos / PAGE_BYTES;
            let within = (pos % PAGE_BYTES) as usize;
            let take = (PAGE_BYTES as usize - within).min(data.len() - at);
            if !self.files[&ino].pages.contains_key(&index) {
                let page = self.load_page(ino, valid, index)?;
                self.files
                    .get_mut(&ino)
                    .expect("pending")
                    .pages
                    .insert(index, page);
                added += PAGE_BYTES;
            }
            let p = self.files.get_mut(&ino).expect("pending");
            p.pages.get_mut(&index).expect("loaded")[within..within + take]
                .copy_from_slice(&data[at..at + take]);
            at += take;
        }
        let p = self.files.get_mut(&ino).expect("pending");
        p.len = p.len.max(offset + data.len() as u64);
        Ok(added)
    }

    fn apply_truncate(&mut self, ino: Ino, len: u64) -> io::Result<()> {
        let p = self.pending(ino)?;
        if len < p.len {
            p.valid = p.valid.min(len);
            let first_gone = len.div_ceil(PAGE_BYTES);
            p.pages.retain(|&i, _| i < first_gone);
            if let Some(page) = p.pages.get_mut(&(len / PAGE_BYTES)) {
                page[(len % PAGE_BYTES) as usize..].fill(0);
            }
        }
        p.len = len;
        Ok(())
    }

    pub fn write(&mut self, ino: Ino, offset: u64, data: &[u8]) -> io::Result<()> {
        let added = self.apply_write(ino, offset, data)?;
        let p = self.files.get_mut(&ino).expect("pending");
        p.ops.push(DataOp::Write {
            offset,
            data: data.to_vec(),
        });
        self.pending_bytes += added + data.len() as u64;
        if self.pending_bytes > MAX_PENDING_BYTES {
            self.sync(ino)?;
        }
        Ok(())
    }

    pub fn truncate(&mut self, ino: Ino, len: u64) -> io::Result<()> {
        self.apply_truncate(ino, len)?;
        self.files
            .get_mut(&ino)
            .expect("pending")
            .ops
            .push(DataOp::Truncate { len });
        Ok(())
    }

    fn forget_pending(&mut self, ino: Ino) -> Option<Pending> {
        let p = self.files.remove(&ino)?;
        let bytes = p.pages.len() as u64 * PAGE_BYTES
            + p.ops
                .iter()
                .map(|op| match op {
                    DataOp::Write { data, .. } => data.len() as u64,
                    DataOp::Truncate { .. } => 0,
                })
                .sum::<u64>();
        self.pending_bytes = self.pending_bytes.saturating_sub(bytes);
        Some(p)
    }

    /// fsync/fdatasync: the file's data becomes durable.
    pub fn sync(&mut self, ino: Ino) -> io::Result<()> {
        let path = self.full(&self.path(ino)?);
        let Some(p) = self.forget_pending(ino) else {
            return Ok(());
        };
        let file = match OpenOptions::new().write(true).open(&path) {
            Ok(f) => f,
            // Removed for good (its removal was durable): nothing left to make durable.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        file.set_len(p.valid)?;
        for (&index, page) in &p.pages {
            let start = index * PAGE_BYTES;
            if start >= p.len {
                break;
            }
            let n = (p.len - start).min(PAGE_BYTES) as usize;
            file.write_all_at(&page[..n], start)?;
        }
        file.set_len(p.len)?;
        file.sync_data()
    }

    // ---- directory entries ----

    /// Moves the inode mappings under `from` to `to` (a rename of a file or a whole tree).
    fn remap(&mut self, from: &Path, to: &Path) {
        let moved: Vec<(PathBuf, Ino)> = self
            .inos
            .iter()
            .filter(|(p, _)| p.starts_with(from))
            .map(|(p, i)| (p.clone(), *i))
            .collect();
        for (old, ino) in moved {
            self.inos.remove(&old);
            let rest = old.strip_prefix(from).expect("filtered by prefix");
            let new = if rest.as_os_str().is_empty() {
                to.to_path_buf()
            } else {
                to.join(rest)
            };
            self.inos.insert(new.clone(), ino);
            self.paths.insert(ino, new);
        }
    }

    /// Renames in the backing directory and moves the mappings along.
    fn move_path(&mut self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(self.full(from), self.full(to))?;
        self.remap(from, to);
        Ok(())
    }

    fn move_to_trash(&mut self, rel: &Path) -> io::Result<PathBuf> {
        let trash = Path::new(TRASH_DIR).join(self.next_trash.to_string());
        self.next_trash += 1;
        self.move_path(rel, &trash)?;
        Ok(trash)
    }

    /// Forgets the inodes under `rel` (gone for good) and their unsynced data.
    fn drop_tree(&mut self, rel: &Path) {
        let gone: Vec<(PathBuf, Ino)> = self
            .inos
            .iter()
            .filter(|(p, _)| p.starts_with(rel))
            .map(|(p, i)| (p.clone(), *i))
            .collect();
        for (path, ino) in gone {
            self.inos.remove(&path);
            self.paths.remove(&ino);
            self.forget_pending(ino);
        }
    }

    fn delete(&mut self, rel: &Path) -> io::Result<()> {
        let full = self.full(rel);
        let result = if fs::symlink_metadata(&full)?.is_dir() {
            fs::remove_dir_all(&full)
        } else {
            fs::remove_file(&full)
        };
        self.drop_tree(rel);
        result
    }

    pub fn create_file(&mut self, rel: &Path, mode: u32) -> io::Result<Ino> {
        use std::os::unix::fs::OpenOptionsExt;
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(self.full(rel))?;
        self.entries.push(EntryChange::Created {
            path: rel.to_path_buf(),
        });
        Ok(self.ino_of(rel))
    }

    pub fn mkdir(&mut self, rel: &Path, mode: u32) -> io::Result<Ino> {
        use std::os::unix::fs::DirBuilderExt;
        fs::DirBuilder::new().mode(mode).create(self.full(rel))?;
        self.entries.push(EntryChange::Created {
            path: rel.to_path_buf(),
        });
        Ok(self.ino_of(rel))
    }

    /// unlink and rmdir (`dir` says which was asked, for the right errors).
    pub fn remove(&mut self, rel: &Path, dir: bool) -> io::Result<()> {
        let meta = fs::symlink_metadata(self.full(rel))?;
        match (dir, meta.is_dir()) {
            (true, false) => return Err(io::Error::from_raw_os_error(libc::ENOTDIR)),
            (false, true) => return Err(io::Error::from_raw_os_error(libc::EISDIR)),
            (true, true) => {
                if fs::read_dir(self.full(rel))?.next().is_some() {
                    return Err(io::Error::from_raw_os_error(libc::ENOTEMPTY));
                }
            }
            (false, false) => {}
        }
        let trash = self.move_to_trash(rel)?;
        self.entries.push(EntryChange::Removed {
            path: rel.to_path_buf(),
            trash,
        });
        Ok(())
    }

    pub fn rename(&mut self, from: &Path, to: &Path, no_replace: bool) -> io::Result<()> {
        let source = fs::symlink_metadata(self.full(from))?;
        if from == to {
            return Ok(());
        }
        if source.is_dir() && to.starts_with(from) {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        let replaced = match fs::symlink_metadata(self.full(to)) {
            Ok(target) => {
                if no_replace {
                    return Err(io::Error::from_raw_os_error(libc::EEXIST));
                }
                match (source.is_dir(), target.is_dir()) {
                    (false, true) => return Err(io::Error::from_raw_os_error(libc::EISDIR)),
                    (true, false) => return Err(io::Error::from_raw_os_error(libc::ENOTDIR)),
                    (true, true) if fs::read_dir(self.full(to))?.next().is_some() => {
                        return Err(io::Error::from_raw_os_error(libc::ENOTEMPTY));
                    }
                    _ => {}
                }
                Some(self.move_to_trash(to)?)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        if let Err(e) = self.move_path(from, to) {
            if let Some(trash) = &replaced {
                let _ = self.move_path(trash, to);
            }
            return Err(e);
        }
        self.entries.push(EntryChange::Renamed {
            from: from.to_path_buf(),
            to: to.to_path_buf(),
            replaced,
        });
        Ok(())
    }

    /// fsync of a directory: see the module's durability rule.
    pub fn sync_dir(&mut self, ino: Ino) -> io::Result<()> {
        let dir = self.path(ino)?;
        if let Some(last) = self.entries.iter().rposition(|c| c.touches(&dir)) {
            let durable: Vec<EntryChange> = self.entries.drain(..=last).collect();
            for change in durable {
                match change {
                    EntryChange::Removed { trash, .. }
                    | EntryChange::Renamed {
                        replaced: Some(trash),
                        ..
                    } => self.delete(&trash)?,
                    _ => {}
                }
            }
        }
        File::open(self.full(&dir))?.sync_all()
    }

    /// Unsynced bytes and entry changes held right now.
    pub fn unsynced(&self) -> (u64, usize) {
        let bytes = self
            .files
            .values()
            .flat_map(|p| &p.ops)
            .map(|op| match op {
                DataOp::Write { data, .. } => data.len() as u64,
                DataOp::Truncate { .. } => 0,
            })
            .sum();
        (bytes, self.entries.len())
    }

    /// The power loss. Without `torn`, every unsynced write and entry change is lost; with it,
    /// each file keeps a random prefix of its unsynced writes, cut at a page (see the module).
    pub fn power_loss(&mut self, torn: Option<&mut rand_chacha::ChaCha8Rng>) -> LossReport {
        let mut report = LossReport::default();
        let inos: Vec<Ino> = self.files.keys().copied().collect();
        let mut rng = torn;
        for ino in inos {
            let Some(p) = self.forget_pending(ino) else {
                continue;
            };
            report.files += 1;
            let total: u64 = p
                .ops
                .iter()
                .map(|op| match op {
                    DataOp::Write { data, .. } => data.len() as u64,
                    DataOp::Truncate { .. } => 0,
                })
                .sum();
            let mut kept = 0;
            if let Some(rng) = rng.as_deref_mut() {
                kept = self.replay_prefix(ino, p.ops, rng).unwrap_or(0);
            }
            report.bytes_kept += kept;
            report.bytes_dropped += total - kept;
        }
        while let Some(change) = self.entries.pop() {
            report.entries_undone += 1;
            // An undo that fails means the backing directory was changed behind our back; the
            // rest is still undone as far as it can be.
            let _ = match change {
                EntryChange::Created { path } => self.delete(&path),
                EntryChange::Removed { path, trash } => self.move_path(&trash, &path),
                EntryChange::Renamed { from, to, replaced } => {
                    self.move_path(&to, &from).and_then(|()| match replaced {
                        Some(trash) => self.move_path(&trash, &to),
                        None => Ok(()),
                    })
                }
            };
        }
        report
    }

    /// Makes durable a random prefix of `ops`, the last kept write cut at a page boundary of
    /// the file. Returns the bytes kept.
    fn replay_prefix(
        &mut self,
        ino: Ino,
        ops: Vec<DataOp>,
        rng: &mut rand_chacha::ChaCha8Rng,
    ) -> io::Result<u64> {
        let keep = rng.random_range(0..=ops.len());
        let mut kept = 0;
        for (i, op) in ops.into_iter().take(keep).enumerate() {
            match op {
                DataOp::Truncate { len } => self.apply_truncate(ino, len)?,
                DataOp::Write { offset, data } => {
                    let mut data = data;
                    if i + 1 == keep {
                        // The write the power cut interrupted: only whole pages reached the disk.
                        let end = offset + data.len() as u64;
                        let cut = rng.random_range(offset..=end) / PAGE_BYTES * PAGE_BYTES;
                        data.truncate(cut.saturating_sub(offset) as usize);
                    }
                    kept += data.len() as u64;
                    self.apply_write(ino, offset, &data)?;
                }
            }
        }
        if keep > 0 {
            self.sync(ino)?;
        }
        Ok(kept)
    }
}
