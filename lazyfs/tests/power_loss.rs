//! The real `schism-lazyfs` binary, mounted, driven with ordinary file operations: what was
//! synced survives a power loss, what was not is gone, and a renamed file survives only when
//! its directory was fsynced. Needs root and /dev/fuse (as the netns backend does).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// How long the daemon may take to mount.
const MOUNT_WAIT_MS: u64 = 10_000;
const POLL_MS: u64 = 20;

struct Mounted {
    child: Child,
    dir: tempfile::TempDir,
}

impl Mounted {
    fn start() -> Mounted {
        if let Some(missing) = lazyfs::missing_prerequisite() {
            panic!("{missing}");
        }
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("backing")).unwrap();
        fs::create_dir(dir.path().join("mnt")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_schism-lazyfs"))
            .arg("--backing")
            .arg(dir.path().join("backing"))
            .arg("--mount")
            .arg(dir.path().join("mnt"))
            .arg("--control")
            .arg(dir.path().join("control.sock"))
            .arg("--name")
            .arg("lazyfs-test")
            .spawn()
            .unwrap();
        let m = Mounted { child, dir };
        let deadline = Instant::now() + Duration::from_millis(MOUNT_WAIT_MS);
        while lazyfs::request(&m.socket(), "status").is_err() {
            assert!(Instant::now() < deadline, "lazyfs did not come up");
            std::thread::sleep(Duration::from_millis(POLL_MS));
        }
        m
    }

    fn mnt(&self) -> PathBuf {
        self.dir.path().join("mnt")
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("control.sock")
    }

    fn power_loss(&self) -> String {
        lazyfs::request(&self.socket(), "power-loss").unwrap()
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("fusermount3")
            .arg("-u")
            .arg(self.mnt())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn fsync_dir(dir: &Path) {
    File::open(dir).unwrap().sync_all().unwrap();
}

fn read(path: &Path) -> Option<Vec<u8>> {
    fs::read(path).ok()
}

#[test]
fn unsynced_data_is_lost_and_synced_data_survives() {
    let m = Mounted::start();
    let mnt = m.mnt();
    let mut f = File::create(mnt.join("wal")).unwrap();
    f.write_all(b"durable").unwrap();
    f.sync_data().unwrap();
    fsync_dir(&mnt);
    f.write_all(b" and lost").unwrap();
    // Visible before the power loss: the program reads its own writes.
    assert_eq!(read(&mnt.join("wal")).unwrap(), b"durable and lost");
    drop(f);
    // Never synced at all, though its name was made durable.
    fs::write(mnt.join("unsynced"), b"gone").unwrap();
    fsync_dir(&mnt);

    let answer = m.power_loss();
    assert!(answer.contains("dropped"), "{answer}");
    assert_eq!(read(&mnt.join("wal")).unwrap(), b"durable");
    assert_eq!(read(&mnt.join("unsynced")).unwrap(), b"");
}

#[test]
fn truncations_and_overwrites_are_unsynced_too() {
    let m = Mounted::start();
    let mnt = m.mnt();
    let data: Vec<u8> = (0..3 * 4096 + 100).map(|i| (i % 251) as u8).collect();
    let f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(mnt.join("log"))
        .unwrap();
    f.write_all_at(&data, 0).unwrap();
    f.sync_all().unwrap();
    fsync_dir(&mnt);
    // Cut into the second page, overwrite across a page boundary, then grow with a hole.
    f.set_len(5000).unwrap();
    f.write_all_at(b"XYZ", 4094).unwrap();
    f.write_all_at(b"end", 9000).unwrap();
    let now = read(&mnt.join("log")).unwrap();
    assert_eq!(now.len(), 9003);
    assert_eq!(&now[4094..4097], b"XYZ");
    assert!(
        now[5000..9000].iter().all(|&b| b == 0),
        "the cut part reads as zeros"
    );
    m.power_loss();
    assert_eq!(read(&mnt.join("log")).unwrap(), data);

    // The same changes, synced, are all there after a power loss.
    f.set_len(5000).unwrap();
    f.write_all_at(b"XYZ", 4094).unwrap();
    f.write_all_at(b"end", 9000).unwrap();
    f.sync_data().unwrap();
    m.power_loss();
    assert_eq!(read(&mnt.join("log")).unwrap(), now);
}

#[test]
fn a_rename_survives_only_when_its_directory_was_fsynced() {
    let m = Mounted::start();
    let mnt = m.mnt();
    // keeper's pattern: write a temp file, fsync it, rename it into place, fsync the directory.
    fs::write(mnt.join("snapshot"), b"old").unwrap();
    File::open(mnt.join("snapshot"))
        .unwrap()
        .sync_all()
        .unwrap();
    fsync_dir(&mnt);

    let tmp = mnt.join("snapshot.tmp");
    let mut f = File::create(&tmp).unwrap();
    f.write_all(b"new").unwrap();
    f.sync_all().unwrap();
    fs::rename(&tmp, mnt.join("snapshot")).unwrap();
    assert_eq!(read(&mnt.join("snapshot")).unwrap(), b"new");
    m.power_loss();
    // The directory was not fsynced: the rename and the temp file's creation are undone, and
    // the file it replaced is back.
    assert_eq!(read(&mnt.join("snapshot")).unwrap(), b"old");
    assert_eq!(read(&tmp), None);

    let mut f = File::create(&tmp).unwrap();
    f.write_all(b"new").unwrap();
    f.sync_all().unwrap();
    fs::rename(&tmp, mnt.join("snapshot")).unwrap();
    fsync_dir(&mnt);
    m.power_loss();
    assert_eq!(read(&mnt.join("snapshot")).unwrap(), b"new");
    assert_eq!(read(&tmp), None);
}

#[test]
fn an_unlink_is_undone_unless_its_directory_was_fsynced() {
    let m = Mounted::start();
    let mnt = m.mnt();
    fs::create_dir(mnt.join("sub")).unwrap();
    fs::write(mnt.join("sub/a"), b"a").unwrap();
    File::open(mnt.join("sub/a")).unwrap().sync_all().unwrap();
    fsync_dir(&mnt.join("sub"));
    fsync_dir(&mnt);

    fs::remove_file(mnt.join("sub/a")).unwrap();
    assert_eq!(read(&mnt.join("sub/a")), None);
    m.power_loss();
    assert_eq!(read(&mnt.join("sub/a")).unwrap(), b"a");

    fs::remove_file(mnt.join("sub/a")).unwrap();
    fsync_dir(&mnt.join("sub"));
    m.power_loss();
    assert_eq!(read(&mnt.join("sub/a")), None);
    let names: Vec<_> = fs::read_dir(&mnt)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(
        names,
        vec![std::ffi::OsString::from("sub")],
        "the trash is never listed"
    );
}

#[test]
fn a_torn_power_loss_keeps_a_page_aligned_prefix_of_the_writes() {
    let m = Mounted::start();
    let mnt = m.mnt();
    let f = File::create(mnt.join("wal")).unwrap();
    f.sync_all().unwrap();
    fsync_dir(&mnt);
    // Eight appends of 3000 bytes, each a distinct byte value.
    let chunk = 3000usize;
    for i in 0..8u8 {
        f.write_all_at(&vec![i + 1; chunk], (i as usize * chunk) as u64)
            .unwrap();
    }
    let answer = lazyfs::request(&m.socket(), "power-loss torn 7").unwrap();
    let kept = read(&mnt.join("wal")).unwrap();
    // Whatever is kept is a prefix of what was written, and every write but the last kept one
    // is whole, so the file ends at a write's end or at a page boundary.
    for (at, byte) in kept.iter().enumerate() {
        assert_eq!(*byte as usize, at / chunk + 1, "byte {at} ({answer})");
    }
    assert!(
        kept.len().is_multiple_of(chunk) || kept.len().is_multiple_of(4096),
        "{} bytes kept ({answer})",
        kept.len()
    );
    assert!(
        lazyfs::request(&m.socket(), "power-loss torn x")
            .unwrap_err()
            .contains("not a number")
    );
}
