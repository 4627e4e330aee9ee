//! Durable storage against real files: recovery, torn tails, corruption, truncation,
//! snapshots, crash-safety of compaction, and a real `kill -9` of a writing process.

use keeper::api::{Op, Stat, Zxid};
use keeper::core::{Persist, Recovered};
use keeper::storage::{DAMAGE_FILE, OpenMode, Storage, StorageError};
use keeper::tree::{SessionEntry, Snapshot, SnapshotNode};
use keeper::txn::{Origin, Txn, TxnBody};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The log file header and record frame sizes, as the format defines them.
const LOG_HEADER_BYTES: usize = 32;
const FRAME_BYTES: usize = 12;

fn txn(zxid: Zxid) -> Txn {
    Txn {
        zxid,
        time_ms: 1_700_000_000_000 + zxid,
        session: 7,
        origin: Some(Origin {
            node: 1,
            request: zxid,
        }),
        body: TxnBody::Op {
            op: Op::SetData {
                path: format!("/k/{}", zxid % 13),
                data: format!("value-{zxid}"),
                version: -1,
            },
        },
    }
}

fn txns(zxids: impl IntoIterator<Item = Zxid>) -> Vec<Txn> {
    zxids.into_iter().map(txn).collect()
}

fn snapshot(zxid: Zxid) -> Snapshot {
    Snapshot {
        zxid,
        nodes: vec![SnapshotNode {
            path: "/k".into(),
            data: format!("at {zxid}"),
            stat: Stat {
                czxid: 1,
                mzxid: zxid,
                ..Stat::default()
            },
            sequence: zxid,
            container: false,
        }],
        sessions: vec![(7, SessionEntry { timeout_ms: 4_000 })],
    }
}

fn open(dir: &Path) -> (Storage, Recovered) {
    Storage::open(dir).unwrap_or_else(|e| panic!("open failed: {e}"))
}

/// Files of a data directory by name.
type Files = BTreeMap<String, Vec<u8>>;

/// Every file in the directory with its bytes.
fn contents(dir: &Path) -> Files {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().into_string().unwrap(),
                fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

fn restore(dir: &Path, files: &Files) {
    for (name, bytes) in files {
        fs::write(dir.join(name), bytes).unwrap();
    }
}

fn log_path(dir: &Path) -> PathBuf {
    let mut logs: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_str().unwrap();
            name.starts_with("log.") && !name.ends_with(".tmp")
        })
        .collect();
    assert_eq!(logs.len(), 1, "one live log in {}", dir.display());
    logs.pop().unwrap()
}

/// (start, end) of every record in a log file.
fn records(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut at = LOG_HEADER_BYTES;
    let mut out = Vec::new();
    while at < bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        out.push((at, at + FRAME_BYTES + len));
        at += FRAME_BYTES + len;
    }
    assert_eq!(at, bytes.len(), "records end where the file ends");
    out
}

/// A directory holding `n` synced records (zxids 1..=n), and the log's bytes.
fn dir_with_records(n: u64) -> (tempfile::TempDir, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, _) = open(dir.path());
    s.persist(&Persist::Append(txns(1..=n))).unwrap();
    s.sync().unwrap();
    drop(s);
    let bytes = fs::read(log_path(dir.path())).unwrap();
    (dir, bytes)
}

#[test]
fn append_sync_reopen_recovers_log_epochs_and_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, rec) = open(dir.path());
    assert!(rec.snapshot.is_none() && rec.log.is_empty());
    assert_eq!((rec.accepted_epoch, rec.current_epoch), (0, 0));
    for batch in (1..=100u64).collect::<Vec<_>>().chunks(7) {
        s.persist(&Persist::Append(txns(batch.iter().copied())))
            .unwrap();
    }
    s.persist(&Persist::Epochs {
        accepted_epoch: 3,
        current_epoch: 2,
    })
    .unwrap();
    s.sync().unwrap();
    assert_eq!(s.log_records(), 100);
    drop(s);

    let (mut s, rec) = open(dir.path());
    assert_eq!(rec.log, txns(1..=100));
    assert_eq!((rec.accepted_epoch, rec.current_epoch), (3, 2));
    assert!(rec.snapshot.is_none());
    s.save_snapshot(&snapshot(60)).unwrap();
    assert_eq!(s.log_records(), 40);
    s.persist(&Persist::Append(txns(101..=110))).unwrap();
    s.sync().unwrap();
    drop(s);

    let (s, rec) = open(dir.path());
    assert_eq!(rec.snapshot, Some(snapshot(60)));
    assert_eq!(rec.log, txns(61..=110));
    assert_eq!(s.log_records(), 50);
    assert_eq!((rec.accepted_epoch, rec.current_epoch), (3, 2));
}

#[test]
fn the_epochs_never_reach_disk_before_the_appends_of_their_batch() {
    // A follower's NEWLEADER batch appends the synced history, then records the new epoch.
    // The epochs file is durable as soon as it is written, so the log must be written first:
    // read from disk before the batch's `sync`, the log already holds the history.
    let dir = tempfile::tempdir().unwrap();
    let (mut s, _) = open(dir.path());
    s.persist(&Persist::Append(txns(1..=3))).unwrap();
    s.persist(&Persist::Epochs {
        accepted_epoch: 2,
        current_epoch: 2,
    })
    .unwrap();
    let on_disk = fs::read(log_path(dir.path())).unwrap();
    assert_eq!(
        records(&on_disk).len(),
        3,
        "the epochs are durable while the history before them is not"
    );
}

#[test]
fn a_second_open_of_a_directory_in_use_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_s, _) = open(dir.path());
    assert!(matches!(
        Storage::open(dir.path()),
        Err(StorageError::Locked { .. })
    ));
}

/// After a torn tail is cut, the storage must append after the last good record and a reopen
/// must see exactly that.
fn assert_recovers_and_continues(dir: &Path, good: u64, good_len: usize) {
    let (mut s, rec) = open(dir);
    assert_eq!(rec.log, txns(1..=good), "complete records before the tail");
    assert_eq!(
        fs::metadata(log_path(dir)).unwrap().len() as usize,
        good_len,
        "file cut to the last good record"
    );
    s.persist(&Persist::Append(txns([good + 1]))).unwrap();
    s.sync().unwrap();
    drop(s);
    let (_, rec) = open(dir);
    assert_eq!(rec.log, txns(1..=good + 1));
}

#[test]
fn a_torn_last_record_is_cut_at_every_cut_point() {
    let (source, bytes) = dir_with_records(5);
    let name = log_path(source.path()).file_name().unwrap().to_owned();
    let (last_start, last_end) = *records(&bytes).last().unwrap();
    assert_eq!(last_end, bytes.len());
    for cut in last_start..last_end {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(&name), &bytes[..cut]).unwrap();
        assert_recovers_and_continues(dir.path(), 4, last_start);
    }
    // The last record complete in length, its end never written (a block the filesystem
    // zero-filled after the crash).
    for from in [last_start + 5, last_start + FRAME_BYTES, last_end - 1] {
        let dir = tempfile::tempdir().unwrap();
        let mut damaged = bytes.clone();
        damaged[from..].fill(0);
        fs::write(dir.path().join(&name), &damaged).unwrap();
        assert_recovers_and_continues(dir.path(), 4, last_start);
    }
}

/// Issue 11: a flipped byte anywhere in the last complete record (its frame or its payload)
/// is damage to a record that may have been acknowledged, not a torn write: the open is
/// refused with one line naming the file and the record's offset, and nothing is cut.
#[test]
fn a_flipped_byte_in_the_last_complete_record_is_refused_not_cut() {
    let (source, bytes) = dir_with_records(5);
    let name = log_path(source.path()).file_name().unwrap().to_owned();
    let (last_start, last_end) = *records(&bytes).last().unwrap();
    for at in last_start..last_end {
        let dir = tempfile::tempdir().unwrap();
        let mut damaged = bytes.clone();
        damaged[at] ^= 0x20;
        fs::write(dir.path().join(&name), &damaged).unwrap();
        let before = contents(dir.path());
        match Storage::open(dir.path()) {
            Err(e @ StorageError::Corrupt { .. }) => {
                let message = e.to_string();
                assert!(
                    message.contains(name.to_str().unwrap())
                        && message.contains(&format!("offset {last_start}"))
                        && !message.contains('\n'),
                    "byte {at}: one line naming file and offset: {message}"
                );
            }
            Err(e) => panic!("byte {at}: expected Corrupt, got {e}"),
            Ok(_) => panic!("byte {at}: a damaged last record was accepted (cut or read)"),
        }
        assert_eq!(contents(dir.path()), before, "byte {at}: nothing was cut");
    }
}

#[test]
fn garbage_after_the_last_record_is_cut() {
    let (source, bytes) = dir_with_records(5);
    let name = log_path(source.path()).file_name().unwrap().to_owned();
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    // An intact frame promising more than was written, and what may follow it.
    let promise = |payload: &[u8]| {
        let mut frame = [200u32.to_le_bytes(), 1234u32.to_le_bytes()].concat();
        let crc = crc32fast::hash(&frame);
        frame.extend_from_slice(&crc.to_le_bytes());
        frame.extend_from_slice(payload);
        frame
    };
    let mut tails: Vec<Vec<u8>> = vec![
        vec![0xff; 3],
        vec![0xff; FRAME_BYTES - 1],
        vec![0; 4096],
        promise(b""),
        promise(b"{\"zxid\":6"),
        [&promise(b"{\"zx")[..], &[0u8; 500]].concat(),
    ];
    for _ in 0..50 {
        // Fewer bytes than a frame, whatever they are.
        let len = rng.random_range(1..FRAME_BYTES);
        tails.push((0..len).map(|_| rng.random::<u8>()).collect());
    }
    for tail in tails {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(&name), [&bytes[..], &tail].concat()).unwrap();
        assert_recovers_and_continues(dir.path(), 5, bytes.len());
    }
}

/// Bytes after the last record that are not the start of one (a damaged frame, not a torn
/// write: a crash leaves a short or zero-filled tail) are refused rather than cut.
#[test]
fn garbage_frames_after_the_last_record_are_refused() {
    let (source, bytes) = dir_with_records(5);
    let name = log_path(source.path()).file_name().unwrap().to_owned();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for _ in 0..50 {
        let len = rng.random_range(FRAME_BYTES..300);
        let mut tail: Vec<u8> = (0..len).map(|_| rng.random::<u8>()).collect();
        *tail.last_mut().unwrap() |= 1;
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(&name), [&bytes[..], &tail].concat()).unwrap();
        match Storage::open(dir.path()) {
            Err(StorageError::Corrupt { offset, .. }) => assert_eq!(offset as usize, bytes.len()),
            Err(e) => panic!("expected Corrupt, got {e}"),
            Ok(_) => panic!("a log with a garbage frame opened"),
        }
    }
}

#[test]
fn a_bad_record_before_the_last_fails_open_and_changes_nothing() {
    let (source, bytes) = dir_with_records(10);
    let name = log_path(source.path()).file_name().unwrap().to_owned();
    let recs = records(&bytes);
    for (k, &(start, end)) in recs.iter().enumerate().take(recs.len() - 1) {
        // In the length, in the crcs, and in the payload.
        for at in [
            start + 1,
            start + 3,
            start + 5,
            start + 9,
            start + FRAME_BYTES + 2,
            end - 1,
        ] {
            let dir = tempfile::tempdir().unwrap();
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x41;
            fs::write(dir.path().join(&name), &damaged).unwrap();
            let before = contents(dir.path());
            match Storage::open(dir.path()) {
                Err(StorageError::Corrupt { path, offset, .. }) => {
                    assert_eq!(path, dir.path().join(&name), "record {k}, byte {at}");
                    assert_eq!(offset as usize, start, "record {k}, byte {at}");
                }
                Err(e) => panic!("record {k}, byte {at}: expected Corrupt, got {e}"),
                Ok(_) => panic!("record {k}, byte {at}: a corrupt log opened"),
            }
            assert_eq!(
                contents(dir.path()),
                before,
                "a failed open changes nothing"
            );
            let message = Storage::open(dir.path()).err().unwrap().to_string();
            assert!(
                message.contains(name.to_str().unwrap())
                    && message.contains(&format!("offset {start}"))
                    && !message.contains('\n'),
                "one line naming file and offset: {message}"
            );
        }
    }
}

#[test]
fn a_corrupt_snapshot_fails_open() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, _) = open(dir.path());
    s.persist(&Persist::Append(txns(1..=10))).unwrap();
    s.save_snapshot(&snapshot(5)).unwrap();
    drop(s);
    let snap = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("snapshot.")
        })
        .unwrap();
    let mut bytes = fs::read(&snap).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    fs::write(&snap, bytes).unwrap();
    let before = contents(dir.path());
    match Storage::open(dir.path()) {
        Err(StorageError::Corrupt { path, .. }) => assert_eq!(path, snap),
        other => panic!("expected Corrupt, got {:?}", other.err()),
    }
    assert_eq!(contents(dir.path()), before);
}

fn open_repairing(dir: &Path) -> (Storage, Recovered) {
    let mode = OpenMode {
        repair: true,
        ..OpenMode::default()
    };
    Storage::open_with(dir, mode).unwrap_or_else(|e| panic!("repairing open failed: {e}"))
}

fn zxids(r: &Recovered) -> Vec<Zxid> {
    r.log.iter().map(|t| t.zxid).collect()
}

/// A member of an ensemble (repairing open) never serves a damaged record nor anything after
/// it: the history is cut before it, the damage is reported and stays reported (a marker,
/// durable before the cut) across restarts until the core says the history is restored.
#[test]
fn a_damaged_record_is_cut_with_what_follows_and_reported_until_restored() {
    let (source, bytes) = dir_with_records(10);
    let name = log_path(source.path()).file_name().unwrap().to_owned();
    let recs = records(&bytes);
    for (k, &(start, end)) in recs.iter().enumerate() {
        for at in [start + 1, start + 9, start + FRAME_BYTES + 2, end - 1] {
            let dir = tempfile::tempdir().unwrap();
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x41;
            fs::write(dir.path().join(&name), &damaged).unwrap();
            let (s, r) = open_repairing(dir.path());
            let intact: Vec<Zxid> = (1..=k as u64).collect();
            assert_eq!(zxids(&r), intact, "record {k}, byte {at}");
            let why = r.damage.clone().expect("the damage is reported");
            assert!(why.contains(&format!("offset {start}")), "{why}");
            assert!(s.is_damaged());
            assert!(dir.path().join(DAMAGE_FILE).exists());
            drop(s);
            // The cut history now looks whole on disk; only the marker says it is not.
            let (mut s, r) = open_repairing(dir.path());
            assert_eq!(zxids(&r), intact);
            assert!(r.damage.is_some(), "still damaged after a restart");
            // Synced from a leader: the restored history is durable, the marker goes.
            s.persist(&Persist::Append(txns(k as u64 + 1..=12)))
                .unwrap();
            s.persist(&Persist::HistoryRestored).unwrap();
            s.sync().unwrap();
            drop(s);
            let (_, r) = open(dir.path());
            assert_eq!(zxids(&r), (1..=12).collect::<Vec<_>>());
            assert!(r.damage.is_none());
            assert!(!dir.path().join(DAMAGE_FILE).exists());
        }
    }
}

/// A damaged snapshot (or one cut short) leaves no base for the log after it: the whole
/// history goes, the epochs stay, and a later open starts from the new, empty generation.
#[test]
fn a_damaged_snapshot_leaves_an_empty_history_and_the_epochs() {
    for truncate in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = open(dir.path());
        s.persist(&Persist::Append(txns(1..=10))).unwrap();
        s.persist(&Persist::Epochs {
            accepted_epoch: 3,
            current_epoch: 2,
        })
        .unwrap();
        s.save_snapshot(&snapshot(5)).unwrap();
        s.sync().unwrap();
        drop(s);
        let snap = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.to_str().unwrap().contains("snapshot."))
            .unwrap();
        let mut bytes = fs::read(&snap).unwrap();
        if truncate {
            bytes.truncate(bytes.len() - 3);
        } else {
            let middle = bytes.len() / 2;
            bytes[middle] ^= 4;
        }
        fs::write(&snap, bytes).unwrap();
        let (s, r) = open_repairing(dir.path());
        assert!(
            r.snapshot.is_none() && r.log.is_empty(),
            "nothing damaged is served"
        );
        assert_eq!((r.accepted_epoch, r.current_epoch), (3, 2));
        assert!(r.damage.as_deref().unwrap().contains("snapshot"));
        drop(s);
        assert!(!snap.exists(), "the damaged snapshot is gone");
        let (_, r) = open_repairing(dir.path());
        assert!(r.snapshot.is_none() && r.log.is_empty() && r.damage.is_some());
    }
}

/// A torn tail is a crash, not damage: cut, and not reported.
#[test]
fn a_torn_tail_is_not_damage() {
    let (dir, bytes) = dir_with_records(5);
    let path = log_path(dir.path());
    fs::write(&path, &bytes[..bytes.len() - 4]).unwrap();
    let (_, r) = open_repairing(dir.path());
    assert_eq!(zxids(&r), vec![1, 2, 3, 4]);
    assert!(r.damage.is_none());
}

#[test]
fn truncate_after_then_append_then_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, _) = open(dir.path());
    s.persist(&Persist::Append(txns(1..=10))).unwrap();
    s.sync().unwrap();
    s.persist(&Persist::TruncateAfter(6)).unwrap();
    assert_eq!(s.log_records(), 6);
    s.persist(&Persist::TruncateAfter(20)).unwrap();
    assert_eq!(s.log_records(), 6);
    let mut replacement = txn(7);
    replacement.time_ms = 1;
    s.persist(&Persist::Append(vec![replacement.clone(), txn(8)]))
        .unwrap();
    s.sync().unwrap();
    drop(s);

    let (mut s, rec) = open(dir.path());
    let mut expected = txns(1..=6);
    expected.extend([replacement, txn(8)]);
    assert_eq!(rec.log, expected);

    // Truncating into the snapshot is a caller bug: refused, and the storage still works.
    s.save_snapshot(&snapshot(4)).unwrap();
    assert!(matches!(
        s.persist(&Persist::TruncateAfter(3)),
        Err(StorageError::Refused { .. })
    ));
    s.persist(&Persist::TruncateAfter(4)).unwrap();
    assert_eq!(s.log_records(), 0);
    s.persist(&Persist::Append(txns([5]))).unwrap();
    s.sync().unwrap();
    drop(s);
    let (_, rec) = open(dir.path());
    assert_eq!(rec.snapshot, Some(snapshot(4)));
    assert_eq!(rec.log, txns([5]));
}

#[test]
fn an_out_of_order_append_is_refused_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, _) = open(dir.path());
    s.persist(&Persist::Append(txns(1..=3))).unwrap();
    for bad in [vec![3], vec![2], vec![4, 5, 5], vec![6, 4]] {
        assert!(matches!(
            s.persist(&Persist::Append(txns(bad))),
            Err(StorageError::Refused { .. })
        ));
    }
    s.persist(&Persist::Append(txns([4]))).unwrap();
    s.sync().unwrap();
    drop(s);
    let (_, rec) = open(dir.path());
    assert_eq!(rec.log, txns(1..=4));
}

#[test]
fn a_snap_replaces_the_whole_state() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, _) = open(dir.path());
    s.persist(&Persist::Append(txns(1..=10))).unwrap();
    s.save_snapshot(&snapshot(3)).unwrap();
    // The leader's state at 7 replaces ours, including our records after 7.
    s.persist(&Persist::Snapshot(snapshot(7))).unwrap();
    assert_eq!(s.log_records(), 0);
    assert!(matches!(
        s.persist(&Persist::Append(txns([7]))),
        Err(StorageError::Refused { .. })
    ));
    drop(s);
    let (mut s, rec) = open(dir.path());
    assert_eq!(rec.snapshot, Some(snapshot(7)));
    assert!(rec.log.is_empty());
    // A SNAP may also move the state back (a follower with uncommitted records ahead).
    s.persist(&Persist::Snapshot(snapshot(2))).unwrap();
    s.persist(&Persist::Append(txns([3]))).unwrap();
    s.sync().unwrap();
    drop(s);
    let (_, rec) = open(dir.path());
    assert_eq!(rec.snapshot, Some(snapshot(2)));
    assert_eq!(rec.log, txns([3]));
    let names: Vec<String> = contents(dir.path()).into_keys().collect();
    assert_eq!(names.len(), 2, "one log and one snapshot remain: {names:?}");
}

#[test]
fn compaction_is_crash_safe_at_every_step() {
    // State A: snapshot at 10 and records 11..=30. State B: A compacted at 20.
    let dir = tempfile::tempdir().unwrap();
    let (mut s, _) = open(dir.path());
    s.persist(&Persist::Append(txns(1..=30))).unwrap();
    s.save_snapshot(&snapshot(10)).unwrap();
    drop(s);
    let a = contents(dir.path());
    let (mut s, _) = open(dir.path());
    s.save_snapshot(&snapshot(20)).unwrap();
    drop(s);
    let b = contents(dir.path());
    let new_in_b = |prefix: &str| {
        b.iter()
            .find(|(n, _)| n.starts_with(prefix) && !a.contains_key(*n))
            .map(|(n, v)| (n.clone(), v.clone()))
            .unwrap()
    };
    let (new_snap, new_snap_bytes) = new_in_b("snapshot.");
    let (new_log, new_log_bytes) = new_in_b("log.");

    let half = |v: &[u8]| v[..v.len() / 2].to_vec();
    let crashes: Vec<(&str, Files, Zxid)> = vec![
        (
            "while writing the new snapshot",
            [(format!("{new_snap}.tmp"), half(&new_snap_bytes))].into(),
            10,
        ),
        (
            "after the new snapshot, before the new log",
            [(new_snap.clone(), new_snap_bytes.clone())].into(),
            10,
        ),
        (
            "while writing the new log",
            [
                (new_snap.clone(), new_snap_bytes.clone()),
                (format!("{new_log}.tmp"), half(&new_log_bytes)),
            ]
            .into(),
            10,
        ),
        (
            "after the new log, before deleting the old files",
            b.clone(),
            20,
        ),
    ];
    for (step, extra, snap_zxid) in crashes {
        let dir = tempfile::tempdir().unwrap();
        restore(dir.path(), &a);
        restore(dir.path(), &extra);
        let (s, rec) = Storage::open(dir.path()).unwrap_or_else(|e| panic!("{step}: {e}"));
        assert_eq!(rec.snapshot, Some(snapshot(snap_zxid)), "{step}");
        assert_eq!(rec.log, txns(snap_zxid + 1..=30), "{step}");
        drop(s);
        let left = contents(dir.path());
        assert_eq!(
            left.len(),
            2,
            "{step}: leftovers removed: {:?}",
            left.keys()
        );
        assert!(left.keys().all(|n| !n.ends_with(".tmp")), "{step}");
    }
}

const CRASH_DIR_ENV: &str = "KEEPER_STORAGE_CRASH_DIR";
/// Set: the writer runs with the `no-fsync` fault and takes no snapshots (which would flush).
const CRASH_NO_FSYNC_ENV: &str = "KEEPER_STORAGE_CRASH_NO_FSYNC";
/// The writer stops by itself after this many records if nobody kills it.
const MAX_CHILD_RECORDS: u64 = 100_000;

/// Not a test on its own: the writer process of `kill_9_loses_no_synced_record`, which runs
/// this test binary again with the directory in the environment.
#[test]
fn crash_writer_child() {
    let Ok(dir) = std::env::var(CRASH_DIR_ENV) else {
        return;
    };
    let no_fsync = std::env::var_os(CRASH_NO_FSYNC_ENV).is_some();
    let (mut s, rec) = open(Path::new(&dir));
    s.set_fsync(!no_fsync);
    let last = rec
        .log
        .last()
        .map(|t| t.zxid)
        .or(rec.snapshot.as_ref().map(|s| s.zxid))
        .unwrap_or(0);
    let mut rng = ChaCha8Rng::seed_from_u64(last);
    let mut next = last + 1;
    // Snapshots only move forward (storage refuses an older one).
    let mut snapshot_at = rec.snapshot.as_ref().map(|s| s.zxid).unwrap_or(0);
    while next < last + MAX_CHILD_RECORDS {
        let batch = rng.random_range(1..4u64);
        s.persist(&Persist::Append(txns(next..next + batch)))
            .unwrap();
        s.sync().unwrap();
        for z in next..next + batch {
            println!("synced {z}");
        }
        next += batch;
        let at = next - 1 - rng.random_range(0..3).min(next - 1);
        if !no_fsync && rng.random_range(0..40) == 0 && at > snapshot_at {
            s.save_snapshot(&snapshot(at)).unwrap();
            snapshot_at = at;
        }
    }
}

/// Runs the writer until it has printed about `kill_after` synced zxids, SIGKILLs it, and
/// returns every zxid it printed.
fn run_writer_and_kill(dir: &Path, kill_after: usize, no_fsync: bool) -> Vec<Zxid> {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "--exact",
            "crash_writer_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CRASH_DIR_ENV, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if no_fsync {
        command.env(CRASH_NO_FSYNC_ENV, "1");
    }
    let mut child = command.spawn().unwrap();
    let mut synced = Vec::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for line in lines.by_ref() {
        if let Some(z) = line.unwrap().strip_prefix("synced ") {
            synced.push(z.parse().unwrap());
            if synced.len() == kill_after {
                break;
            }
        }
    }
    child.kill().unwrap(); // SIGKILL
    // What the writer printed before it died was synced too.
    for line in lines {
        if let Some(z) = line.unwrap().strip_prefix("synced ") {
            synced.push(z.parse().unwrap());
        }
    }
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "the writer was killed, it did not finish"
    );
    assert!(synced.len() >= kill_after, "the writer ran");
    synced
}

/// The highest zxid the directory holds, after checking the log continues its snapshot.
fn recovered_up_to(dir: &Path) -> Zxid {
    let (_, rec) = open(dir);
    let snap_zxid = rec.snapshot.as_ref().map_or(0, |s| s.zxid);
    let logged: Vec<Zxid> = rec.log.iter().map(|t| t.zxid).collect();
    assert!(
        logged.windows(2).all(|w| w[1] == w[0] + 1)
            && logged.first().is_none_or(|&z| z == snap_zxid + 1),
        "the log continues the snapshot without gaps"
    );
    logged.last().copied().unwrap_or(snap_zxid)
}

#[test]
fn kill_9_loses_no_synced_record() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let mut synced: Vec<Zxid> = Vec::new();
    for round in 0..4 {
        synced.extend(run_writer_and_kill(
            dir.path(),
            rng.random_range(20..1500),
            false,
        ));
        let up_to = recovered_up_to(dir.path());
        let lost: Vec<&Zxid> = synced.iter().filter(|&&z| z > up_to).collect();
        assert!(
            lost.is_empty(),
            "round {round}: synced zxids lost: {lost:?}"
        );
    }
}

/// The `no-fsync` fault is realistic: its appends reach the kernel, so a kill -9 loses nothing
/// that was "synced"; only a power loss does (schism's `power-loss` fault, through lazyfs).
#[test]
fn kill_9_with_the_no_fsync_fault_keeps_what_reached_the_kernel() {
    let dir = tempfile::tempdir().unwrap();
    let synced = run_writer_and_kill(dir.path(), 200, true);
    let up_to = recovered_up_to(dir.path());
    let lost: Vec<&Zxid> = synced.iter().filter(|&&z| z > up_to).collect();
    assert!(
        lost.is_empty(),
        "no-fsync lost zxids to a kill -9: {lost:?}"
    );
}
