//! Checking a JSON-lines history too large to hold in memory (an hour of a nightly run: tens of
//! millions of operations), with the same verdicts as the in-memory check of `run.rs`.
//!
//! One pass reads the file line by line and pairs invocations with completions by process,
//! holding only the operations still open (one per process). Each completed operation goes,
//! as its two raw lines, to a spill file chosen by its key (key `i` to file `i %`
//! [`MAX_SPILL_FILES`], so up to that many keys each have a file of their own); stats and
//! monotonic reads are judged in the same pass from running tallies. Then the linearizability
//! search takes the spill files one at a time per worker thread and the keys of each one at a
//! time: only one key's operations are ever parsed into events at once, so memory is bounded
//! by the largest key's history (and the spill file it shares), not by the run.
//!
//! Spill files are unlinked as soon as they are created (`tempfile::tempfile`), so nothing is
//! left behind on success, failure or Ctrl-C. The position of an event within its key's slice
//! differs from its position in the file, but the search only compares positions of one key's
//! events, and everything shown (indexes, lines) is the file's.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use crate::history::{self, Event, EventType, Op};
use crate::invariants::{self, MonotonicReadsScan, MonotonicSnapshot, StatsTally};
use crate::linear::{self, Budget, KeyReport, Limits, TranslateError};
use crate::model::{
    CasRegisterModel, KvModel, Model, ModelGuess, ModelKind, MultiRegisterModel, MutexModel,
    RegisterModel, ZnodeModel,
};
use crate::plan::{self, CheckError, CheckOptions, checker_names, model_to_check};
use crate::reader::ReadError;
use crate::verdict::{CheckerResult, OpView, RunVerdict, Verdict};

/// Files at least this large are checked streamed by `schism check` (smaller ones are read
/// whole: quicker, and a 64 MiB history holds about 250,000 operations, ~300 MB in memory).
pub const STREAM_MIN_BYTES: u64 = 64 << 20;
/// Spill files, at most (each an open descriptor and a write buffer during the first pass).
pub const MAX_SPILL_FILES: usize = 256;
/// Write buffer of each spill file.
const SPILL_BUFFER_BYTES: usize = 64 << 10;
/// The checkers the streamed check knows; a workload with any other is read whole.
const STREAMED_CHECKERS: [&str; 3] = ["linearizable", "monotonic-reads", "stats"];
/// Bytes looked at to tell a JSON-lines history from the other formats.
const SNIFF_BYTES: usize = 64;

#[derive(Clone, Debug)]
pub struct StreamConfig {
    /// Spill files (keys share one when there are more keys than files).
    pub spill_files: usize,
}

impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig {
            spill_files: MAX_SPILL_FILES,
        }
    }
}

/// What the streamed check held, for the benchmark and the test that memory follows the largest
/// key rather than the run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamStats {
    pub events: usize,
    pub ops: usize,
    pub keys: usize,
    /// The most operations of one key parsed into events at once.
    pub max_key_ops_held: usize,
    /// The most operations of one spill file held (as raw lines) at once.
    pub max_spill_ops_held: usize,
    /// The most operations open at once during the first pass.
    pub max_open_ops: usize,
    pub spill_bytes: u64,
}

/// Does `schism check` stream this file? Large JSON lines whose checkers it knows.
pub fn should_stream(path: &Path, workload: Option<&str>, opts: &CheckOptions) -> bool {
    let large = std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() >= STREAM_MIN_BYTES);
    large && looks_like_jsonl(path) && streamable(workload, opts)
}

fn streamable(workload: Option<&str>, opts: &CheckOptions) -> bool {
    checker_names(opts, workload)
        .iter()
        .all(|n| STREAMED_CHECKERS.contains(n))
}

/// Starts like `{"`: the reader's test for JSON lines.
fn looks_like_jsonl(path: &Path) -> bool {
    let mut head = [0u8; SNIFF_BYTES];
    let n = File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .unwrap_or(0);
    let text = String::from_utf8_lossy(&head[..n]);
    let t = text.trim_start();
    t.starts_with('{') && t[1..].trim_start().starts_with('"')
}

/// An operation whose invocation has been read and whose completion has not.
struct Open {
    invoke: Event,
    line: usize,
    offset: u64,
    snapshot: MonotonicSnapshot<LineOffsets>,
}

/// Where an operation's invocation and completion lines start in the file.
type LineOffsets = (u64, u64);

/// The first pass: pairing, the running checkers, the spill.
struct Scan {
    recovery_ops: &'static [&'static str],
    spill: Vec<Option<BufWriter<File>>>,
    spill_keys: Vec<Vec<u32>>,
    key_ids: HashMap<String, u32>,
    key_names: Vec<String>,
    key_ops: Vec<usize>,
    open: HashMap<u64, Open>,
    guess: ModelGuess,
    stats: StatsTally,
    monotonic: MonotonicReadsScan<LineOffsets>,
    ops: usize,
    completed_ok: usize,
    any_session: bool,
    max_open: usize,
    spill_bytes: u64,
    /// One operation's spill record, reused.
    scratch: Vec<u8>,
}

impl Scan {
    /// An operation, complete or (at the end) not.
    fn op(&mut self, invoke: Open, complete: Option<(&Event, usize, u64)>) -> std::io::Result<()> {
        let inv = &invoke.invoke;
        let observation = inv.is_observation();
        self.ops += 1;
        let c_ev = complete.map(|(c, ..)| c);
        let kind = c_ev.map_or(EventType::Info, |c| c.kind);
        if kind == EventType::Ok {
            self.completed_ok += 1;
        }
        let session = inv.session.or_else(|| c_ev.and_then(|c| c.session));
        self.any_session |= session.is_some();
        self.guess.add(&inv.f, &inv.value, inv.is_observation());
        if observation {
            return Ok(());
        }
        if !self.recovery_ops.contains(&inv.f.as_str()) {
            self.stats.add(&inv.f, kind);
        }
        if let Some((c, _, c_offset)) = complete {
            self.monotonic.complete(
                kind == EventType::Ok,
                session,
                c.zxid,
                invoke.snapshot,
                inv.session.is_some(),
                inv.index as usize,
                (invoke.offset, c_offset),
            );
        }
        let key = inv
            .key
            .as_deref()
            .or_else(|| c_ev.and_then(|c| c.key.as_deref()))
            .unwrap_or("");
        let id = match self.key_ids.get(key) {
            Some(&id) => id,
            None => {
                let id = self.key_names.len() as u32;
                self.key_ids.insert(key.to_string(), id);
                self.key_names.push(key.to_string());
                self.key_ops.push(0);
                id
            }
        };
        self.key_ops[id as usize] += 1;
        let file = id as usize % self.spill.len();
        if self.spill[file].is_none() {
            self.spill[file] = Some(BufWriter::with_capacity(
                SPILL_BUFFER_BYTES,
                tempfile::tempfile()?,
            ));
        }
        if self.key_ops[id as usize] == 1 {
            self.spill_keys[file].push(id);
        }
        let Some(out) = self.spill[file].as_mut() else {
            unreachable!("the spill file was just created");
        };
        let n = 1 + u8::from(complete.is_some());
        self.scratch.clear();
        self.scratch.extend_from_slice(&id.to_le_bytes());
        self.scratch.push(n);
        encode_event(inv, key, invoke.line, &mut self.scratch);
        if let Some((c, line, _)) = complete {
            encode_event(c, key, line, &mut self.scratch);
        }
        out.write_all(&self.scratch)?;
        self.spill_bytes += self.scratch.len() as u64;
        Ok(())
    }
}

fn io_error(path: &Path, e: impl std::fmt::Display) -> CheckError {
    CheckError::Read(ReadError::Io {
        file: path.to_path_buf(),
        message: e.to_string(),
    })
}

fn malformed(path: &Path, line: usize, expected: String) -> CheckError {
    CheckError::Read(ReadError::Malformed {
        file: path.to_path_buf(),
        line,
        expected,
    })
}

/// Checks a JSON-lines history file in one pass plus one search per key, without holding it:
/// the same verdicts, counterexamples and errors as `run::check_file` (except which of two
/// different defects of one malformed file is named first).
pub fn check_file(
    path: &Path,
    workload: Option<&str>,
    opts: &CheckOptions,
    cfg: &StreamConfig,
) -> Result<(RunVerdict, StreamStats), CheckError> {
    if !streamable(workload, opts) {
        return Err(CheckError::Malformed {
            file: Some(path.to_path_buf()),
            problem: format!(
                "the streamed check knows {}, not all of {}",
                STREAMED_CHECKERS.join(", "),
                checker_names(opts, workload).join(", ")
            ),
        });
    }
    let file = File::open(path).map_err(|e| io_error(path, e))?;
    let spill_files = cfg.spill_files.clamp(1, MAX_SPILL_FILES);
    let mut scan = Scan {
        recovery_ops: workload.map_or(&[], plan::workload_recovery_ops),
        spill: (0..spill_files).map(|_| None).collect(),
        spill_keys: vec![Vec::new(); spill_files],
        key_ids: HashMap::new(),
        key_names: Vec::new(),
        key_ops: Vec::new(),
        open: HashMap::new(),
        guess: ModelGuess::default(),
        stats: StatsTally::default(),
        monotonic: MonotonicReadsScan::default(),
        ops: 0,
        completed_ok: 0,
        any_session: false,
        max_open: 0,
        spill_bytes: 0,
        scratch: Vec::new(),
    };
    let (events, warnings) = first_pass(path, file, &mut scan)?;
    let mut stats = StreamStats {
        events,
        ops: scan.ops,
        keys: scan.key_names.len(),
        max_open_ops: scan.max_open,
        spill_bytes: scan.spill_bytes,
        ..StreamStats::default()
    };
    let mut results = Vec::new();
    for name in checker_names(opts, workload) {
        let r = match name {
            "linearizable" => {
                let guess = scan.guess.clone();
                let Some(kind) = model_to_check(opts, workload, scan.ops == 0, || guess.kind())?
                else {
                    continue;
                };
                let r = search_spilled(path, &mut scan, kind, opts, &mut stats)?;
                invariants::require_evidence(r, scan.completed_ok, "no operation completed ok")
            }
            "monotonic-reads" => {
                let r = scan
                    .monotonic
                    .result(|a, b| Ok(vec![op_view_at(path, a)?, op_view_at(path, b)?]));
                if r.verdict == Verdict::Unknown && !scan.any_session {
                    continue;
                }
                r
            }
            "stats" => scan.stats.result(),
            _ => continue,
        };
        results.push(r);
    }
    let mut v = RunVerdict::from_checkers(workload.map(str::to_string), scan.ops, results);
    if scan.ops == 0 {
        v.warnings
            .push("the history has no operations: nothing was checked".to_string());
    }
    v.warnings.extend(warnings);
    Ok((v, stats))
}

/// Reads the file once; returns the events read and the reader's warnings. Errors are the
/// reader's and the pairing's, with the same wording as for a file read whole.
fn first_pass(
    path: &Path,
    file: File,
    scan: &mut Scan,
) -> Result<(usize, Vec<String>), CheckError> {
    let expected = "one JSON event with index, time, process, type, f, value";
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut buf: Vec<u8> = Vec::new();
    let (mut line_no, mut offset, mut events) = (0usize, 0u64, 0usize);
    let mut warnings = Vec::new();
    // The first pairing error; reading goes on so that a line that is not JSON further on is
    // named first, as when the file is read whole.
    let mut pair_error: Option<(usize, String)> = None;
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| io_error(path, e))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        let line_offset = offset;
        offset += n as u64;
        let complete_line = buf.last() == Some(&b'\n');
        let raw: &[u8] = buf.trim_ascii_end();
        if raw.trim_ascii().is_empty() {
            continue;
        }
        if std::str::from_utf8(raw).is_err() {
            return Err(io_error(path, "stream did not contain valid UTF-8"));
        }
        let e: Event = match serde_json::from_slice(raw) {
            Ok(e) => e,
            Err(err) if !complete_line => {
                // A run that crashed may have left half a line at the end.
                if events == 0 {
                    return Err(malformed(path, line_no, format!("{expected} ({err})")));
                }
                warnings.push(format!(
                    "{}:{line_no}: ignored the incomplete last line ({err})",
                    path.display()
                ));
                break;
            }
            Err(err) => return Err(malformed(path, line_no, format!("{expected} ({err})"))),
        };
        if e.index != events as u64 {
            return Err(malformed(
                path,
                line_no,
                format!(
                    "index {events} (indexes count from 0 without gaps), not {}",
                    e.index
                ),
            ));
        }
        events += 1;
        if pair_error.is_some() {
            continue;
        }
        if let Err(problem) = pair_event(scan, e, line_no, line_offset) {
            pair_error = Some((line_no, problem));
        }
    }
    if let Some((line, problem)) = pair_error {
        return Err(CheckError::Malformed {
            file: Some(path.to_path_buf()),
            problem: format!("line {line}: {problem}"),
        });
    }
    // Invocations still open at the end: operations whose outcome is unknown.
    let mut open: Vec<Open> = scan.open.drain().map(|(_, o)| o).collect();
    open.sort_by_key(|o| o.invoke.index);
    for o in open {
        scan.op(o, None).map_err(|e| io_error(path, e))?;
    }
    Ok((events, warnings))
}

/// Pairs one event as `history::pair` does; the error is its problem, worded the same.
fn pair_event(scan: &mut Scan, e: Event, line: usize, offset: u64) -> Result<(), String> {
    let io = |err: std::io::Error| format!("cannot write a spill file: {err}");
    if e.is_observation() && e.kind != EventType::Invoke {
        scan.observation(&e);
        return Ok(());
    }
    match e.kind {
        EventType::Invoke => {
            if let Some(prev) = scan.open.get(&e.process) {
                return Err(format!(
                    "process {} invokes `{}` while its `{}` (event {}) has not completed; \
                     expected one operation at a time per process",
                    e.process, e.f, prev.invoke.f, prev.invoke.index
                ));
            }
            let snapshot = scan.monotonic.at_invoke(e.session);
            scan.open.insert(
                e.process,
                Open {
                    invoke: e,
                    line,
                    offset,
                    snapshot,
                },
            );
            scan.max_open = scan.max_open.max(scan.open.len());
            Ok(())
        }
        _ => {
            let Some(o) = scan.open.remove(&e.process) else {
                return Err(format!(
                    "`{}` completion for process {} which has no pending invocation; \
                     expected an `invoke` first",
                    e.kind.as_str(),
                    e.process
                ));
            };
            if o.invoke.f != e.f {
                return Err(format!(
                    "completion `{}` of process {} does not match its invocation `{}`",
                    e.f, e.process, o.invoke.f
                ));
            }
            if e.time < o.invoke.time {
                return Err(format!(
                    "`{}` of process {} completes at time {}, before its invocation at \
                     time {}; expected a completion no earlier than its invocation",
                    e.kind.as_str(),
                    e.process,
                    e.time,
                    o.invoke.time
                ));
            }
            scan.op(o, Some((&e, line, offset))).map_err(io)
        }
    }
}

impl Scan {
    /// A watch event or an expiry: one line that is its own invocation and completion. It
    /// counts as an operation but no checker here reads it.
    fn observation(&mut self, e: &Event) {
        self.ops += 1;
        if e.kind == EventType::Ok {
            self.completed_ok += 1;
        }
        self.any_session |= e.session.is_some();
        self.guess.add(&e.f, &e.value, true);
    }
}

/// The operation whose lines start at `at` in `path`, read again (to show a monotonic-reads
/// violation found in the first pass).
fn op_view_at(path: &Path, at: LineOffsets) -> Result<OpView, String> {
    let read = |offset: u64| -> Result<Event, String> {
        let mut f = File::open(path).map_err(|e| e.to_string())?;
        f.seek(SeekFrom::Start(offset)).map_err(|e| e.to_string())?;
        let mut line = Vec::new();
        BufReader::new(f)
            .read_until(b'\n', &mut line)
            .map_err(|e| e.to_string())?;
        serde_json::from_slice(line.trim_ascii_end()).map_err(|e| e.to_string())
    };
    let (invoke, complete) = (read(at.0)?, read(at.1)?);
    let op = Op {
        invoke_pos: invoke.index as usize,
        invoke: &invoke,
        complete_pos: Some(complete.index as usize),
        complete: Some(&complete),
    };
    Ok(OpView::of(&op))
}

/// The linearizability search over the spilled keys: worker threads take spill files in turn
/// (the one holding the largest key first), and the keys of a file one at a time.
fn search_spilled(
    path: &Path,
    scan: &mut Scan,
    kind: ModelKind,
    opts: &CheckOptions,
    stats: &mut StreamStats,
) -> Result<CheckerResult, CheckError> {
    let started = Instant::now();
    let limits = opts.limits();
    let initial = opts.initial.clone();
    let mut files = Vec::new();
    for (w, keys) in scan.spill.iter_mut().zip(&scan.spill_keys) {
        if let Some(w) = w.take() {
            let f = w.into_inner().map_err(|e| io_error(path, e.error()))?;
            files.push((f, keys.clone()));
        }
    }
    // The order `linear::check` hands keys out in: largest first, then by name.
    let mut order: Vec<u32> = (0..scan.key_names.len() as u32).collect();
    let names = &scan.key_names;
    let key_ops = &scan.key_ops;
    order.sort_by(|&a, &b| {
        key_ops[b as usize]
            .cmp(&key_ops[a as usize])
            .then(names[a as usize].cmp(&names[b as usize]))
    });
    let mut rank = vec![0usize; order.len()];
    for (r, &k) in order.iter().enumerate() {
        rank[k as usize] = r;
    }
    for (_, keys) in files.iter_mut() {
        keys.sort_by_key(|&k| rank[k as usize]);
    }
    files.sort_by_key(|(_, keys)| keys.first().map_or(usize::MAX, |&k| rank[k as usize]));
    let held = Held::default();
    let ctx = SpillCtx {
        names,
        key_ops,
        held: &held,
    };
    fn go<M: Model>(
        m: &M,
        files: Vec<SpillFile>,
        ctx: &SpillCtx<'_>,
        limits: &Limits,
    ) -> Result<Vec<Option<KeyReport>>, String> {
        search_files(m, files, ctx, limits)
    }
    let keys = order.len();
    let reports = match kind {
        ModelKind::Register => go(&RegisterModel { initial }, files, &ctx, &limits),
        ModelKind::CasRegister => go(&CasRegisterModel { initial }, files, &ctx, &limits),
        ModelKind::Znode => go(&ZnodeModel { initial }, files, &ctx, &limits),
        ModelKind::Mutex => go(&MutexModel, files, &ctx, &limits),
        ModelKind::Kv => go(&KvModel { initial }, files, &ctx, &limits),
        ModelKind::MultiRegister => go(&MultiRegisterModel { initial }, files, &ctx, &limits),
    }
    .map_err(|e| io_error(path, e))?;
    debug_assert_eq!(reports.len(), keys);
    stats.max_key_ops_held = held.key_ops.load(Ordering::Relaxed);
    stats.max_spill_ops_held = held.spill_ops.load(Ordering::Relaxed);
    let mut by_key: Vec<Option<KeyReport>> = reports;
    let ordered: Vec<KeyReport> = order
        .iter()
        .map(|&k| {
            by_key[k as usize].take().unwrap_or_else(|| {
                KeyReport::skipped(
                    &names[k as usize],
                    key_ops[k as usize],
                    &Budget::unlimited(),
                )
            })
        })
        .collect();
    linear::summarize(kind.name(), ordered, started).map_err(|e: TranslateError| {
        CheckError::Malformed {
            file: Some(path.to_path_buf()),
            problem: format!("line {}: expected {}", e.position, e.expected),
        }
    })
}

/// High-water marks of what the search held.
#[derive(Default)]
struct Held {
    key_ops: AtomicUsize,
    spill_ops: AtomicUsize,
}

struct SpillCtx<'a> {
    names: &'a [String],
    key_ops: &'a [usize],
    held: &'a Held,
}

/// A spill file and its keys, in the order they are searched.
type SpillFile = (File, Vec<u32>);

/// One spilled operation: its events, encoded ([`encode_event`]), slices of the spill file.
type Spilled<'b> = Vec<&'b [u8]>;

fn search_files<M: Model>(
    model: &M,
    files: Vec<SpillFile>,
    ctx: &SpillCtx<'_>,
    limits: &Limits,
) -> Result<Vec<Option<KeyReport>>, String> {
    let budget = Budget::new(limits.time_limit, limits.memory_limit_bytes);
    let threads = limits.threads(files.len());
    let files: Vec<Mutex<Option<SpillFile>>> =
        files.into_iter().map(|f| Mutex::new(Some(f))).collect();
    let reports: Vec<Mutex<Option<KeyReport>>> =
        ctx.names.iter().map(|_| Mutex::new(None)).collect();
    let failure: Mutex<Option<String>> = Mutex::new(None);
    budget.share_out(files.len(), threads, |i| {
        let Some((file, keys)) = files[i].lock().ok().and_then(|mut f| f.take()) else {
            return;
        };
        if let Err(e) = search_file(model, file, &keys, ctx, &budget, &reports) {
            budget.stop();
            if let Ok(mut f) = failure.lock() {
                f.get_or_insert(e);
            }
        }
    });
    if let Some(e) = failure.into_inner().ok().flatten() {
        return Err(e);
    }
    Ok(reports
        .into_iter()
        .map(|r| r.into_inner().ok().flatten())
        .collect())
}

/// Reads one spill file back and searches its keys one at a time.
fn search_file<M: Model>(
    model: &M,
    mut file: File,
    keys: &[u32],
    ctx: &SpillCtx<'_>,
    budget: &Budget,
    reports: &[Mutex<Option<KeyReport>>],
) -> Result<(), String> {
    let mut bytes = Vec::new();
    file.seek(SeekFrom::Start(0))
        .and_then(|_| file.read_to_end(&mut bytes))
        .map_err(|e| format!("cannot read a spill file back: {e}"))?;
    drop(file);
    let mut by_key: HashMap<u32, Vec<Spilled<'_>>> = HashMap::new();
    let mut at = 0usize;
    let mut held = 0usize;
    let corrupt = || "a spill file was cut short".to_string();
    let take = |at: &mut usize, n: usize| -> Result<&[u8], String> {
        let s = bytes.get(*at..*at + n).ok_or_else(corrupt)?;
        *at += n;
        Ok(s)
    };
    while at < bytes.len() {
        let id = u32::from_le_bytes(take(&mut at, 4)?.try_into().map_err(|_| corrupt())?);
        let n = take(&mut at, 1)?[0];
        let mut op = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let len = u32::from_le_bytes(take(&mut at, 4)?.try_into().map_err(|_| corrupt())?);
            op.push(take(&mut at, len as usize)?);
        }
        by_key.entry(id).or_default().push(op);
        held += 1;
    }
    ctx.held.spill_ops.fetch_max(held, Ordering::Relaxed);
    for &k in keys {
        let name = &ctx.names[k as usize];
        let ops_of_key = by_key.remove(&k).unwrap_or_default();
        if budget.stopped() {
            break;
        }
        if budget.exceeded().is_some() {
            if let Ok(mut slot) = reports[k as usize].lock() {
                *slot = Some(KeyReport::skipped(name, ctx.key_ops[k as usize], budget));
            }
            continue;
        }
        ctx.held
            .key_ops
            .fetch_max(ops_of_key.len(), Ordering::Relaxed);
        let report = search_key(model, &ops_of_key, name, budget)?;
        if let Ok(mut slot) = reports[k as usize].lock() {
            *slot = Some(report);
        }
    }
    Ok(())
}

/// Parses one key's spilled operations into events (in history order) and searches them.
fn search_key<M: Model>(
    model: &M,
    spilled: &[Spilled<'_>],
    key: &str,
    budget: &Budget,
) -> Result<KeyReport, String> {
    let mut events: Vec<(Event, usize)> = Vec::with_capacity(2 * spilled.len());
    for op in spilled {
        for &bytes in op {
            events.push(decode_event(bytes, key).ok_or("a spill file does not read back")?);
        }
    }
    events.sort_by_key(|(e, _)| e.index);
    let (events, lines): (Vec<Event>, Vec<usize>) = events.into_iter().unzip();
    let ops = history::pair(&events).map_err(|e| format!("key {key}: {e}"))?;
    let indices: Vec<usize> = (0..ops.len()).collect();
    let mut report = linear::check_key(model, &ops, &indices, key, budget);
    // Errors name the file's line, not the position within this key.
    report.map_error_position(|pos| lines.get(pos).copied().unwrap_or(pos));
    Ok(report)
}

/// Flags of an encoded event: which optional fields follow.
const KEY_IS_OPS: u8 = 1;
const KEY_OTHER: u8 = 2;
const HAS_ERROR: u8 = 4;
const HAS_NODE: u8 = 8;
const HAS_ZXID: u8 = 16;
const HAS_SESSION: u8 = 32;
const HAS_VALUE: u8 = 64;

/// Appends one event of an operation on `key`, with its line, in a compact binary form (the
/// spill of a long history is about half the size of its JSON, and reads back without
/// parsing anything but values): length (u32), line, index, time, process (u64 each), type,
/// flags, `f`, then the optional fields the flags name.
fn encode_event(e: &Event, key: &str, line: usize, out: &mut Vec<u8>) {
    let len_at = out.len();
    out.extend_from_slice(&[0; 4]);
    let str_field = |s: &str, out: &mut Vec<u8>| {
        out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    };
    for n in [line as u64, e.index, e.time, e.process] {
        out.extend_from_slice(&n.to_le_bytes());
    }
    out.push(match e.kind {
        EventType::Invoke => 0,
        EventType::Ok => 1,
        EventType::Fail => 2,
        EventType::Info => 3,
    });
    let mut flags = 0u8;
    match e.key.as_deref() {
        Some(k) if k == key => flags |= KEY_IS_OPS,
        Some(_) => flags |= KEY_OTHER,
        None => {}
    }
    for (bit, present) in [
        (HAS_ERROR, e.error.is_some()),
        (HAS_NODE, e.node.is_some()),
        (HAS_ZXID, e.zxid.is_some()),
        (HAS_SESSION, e.session.is_some()),
        (HAS_VALUE, !e.value.is_null()),
    ] {
        if present {
            flags |= bit;
        }
    }
    out.push(flags);
    str_field(&e.f, out);
    if let (Some(k), true) = (&e.key, flags & KEY_OTHER != 0) {
        str_field(k, out);
    }
    for s in [&e.error, &e.node].into_iter().flatten() {
        str_field(s, out);
    }
    for n in [e.zxid, e.session].into_iter().flatten() {
        out.extend_from_slice(&n.to_le_bytes());
    }
    if !e.value.is_null() {
        let at = out.len();
        out.extend_from_slice(&[0; 4]);
        // Writing a `Value` to a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, &e.value);
        let n = (out.len() - at - 4) as u32;
        out[at..at + 4].copy_from_slice(&n.to_le_bytes());
    }
    let n = (out.len() - len_at - 4) as u32;
    out[len_at..len_at + 4].copy_from_slice(&n.to_le_bytes());
}

/// A reader of the spill's encoded fields.
struct Cursor<'b> {
    bytes: &'b [u8],
    at: usize,
}

impl<'b> Cursor<'b> {
    fn take(&mut self, n: usize) -> Option<&'b [u8]> {
        let s = self.bytes.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn string(&mut self) -> Option<String> {
        let n = self.u32()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }
}

/// Reads back what [`encode_event`] wrote (without its length): the event and its line.
fn decode_event(bytes: &[u8], key: &str) -> Option<(Event, usize)> {
    let mut c = Cursor { bytes, at: 0 };
    let (line, index, time, process) = (c.u64()?, c.u64()?, c.u64()?, c.u64()?);
    let kind = match c.take(1)?[0] {
        0 => EventType::Invoke,
        1 => EventType::Ok,
        2 => EventType::Fail,
        3 => EventType::Info,
        _ => return None,
    };
    let flags = c.take(1)?[0];
    let f = c.string()?;
    let mut e = Event::new(index, time, process, kind, &f, serde_json::Value::Null);
    if flags & KEY_IS_OPS != 0 {
        e.key = Some(key.to_string());
    }
    if flags & KEY_OTHER != 0 {
        e.key = Some(c.string()?);
    }
    if flags & HAS_ERROR != 0 {
        e.error = Some(c.string()?);
    }
    if flags & HAS_NODE != 0 {
        e.node = Some(c.string()?);
    }
    if flags & HAS_ZXID != 0 {
        e.zxid = Some(c.u64()?);
    }
    if flags & HAS_SESSION != 0 {
        e.session = Some(c.u64()?);
    }
    if flags & HAS_VALUE != 0 {
        let n = c.u32()? as usize;
        e.value = serde_json::from_slice(c.take(n)?).ok()?;
    }
    Some((e, line as usize))
}
