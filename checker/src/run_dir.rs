//! The run directory: the one home of its file names, its record types and how they are read
//! and written. The harness's runner writes it, the checker judges it, the report shows it; all
//! three take names, types, the tolerant JSON-lines reader and the writer from here.
//!
//! ```text
//! test.json         the configuration, seed, versions and command line (written first)
//! schedule.json     the fault schedule, written before the nemesis starts
//! history.jsonl     one [`Event`] per line, streamed and synced while the test runs
//! nemesis.jsonl     one [`NemesisEntry`] per fault start and heal
//! status.jsonl      one [`StatusSample`] per node and sampling instant
//! nodes/<node>/     each node's logs
//! recovery.json     what the liveness phase saw after the heal (`liveness::Recovery`)
//! results.json      every checker's verdict
//! counterexample.html, report.html
//! ```
//!
//! Tolerance, one rule for every JSON-lines file: a last line without its newline that does not
//! parse was cut off by a crash and is dropped (and said); any other bad line is an error that
//! names the file and the line.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use crate::history::{Event, EventType};

pub const TEST_FILE: &str = "test.json";
pub const SCHEDULE_FILE: &str = "schedule.json";
pub const HISTORY_FILE: &str = "history.jsonl";
pub const NEMESIS_FILE: &str = "nemesis.jsonl";
pub const STATUS_FILE: &str = "status.jsonl";
pub const NODES_DIR: &str = "nodes";
pub const RECOVERY_FILE: &str = "recovery.json";
pub const RESULTS_FILE: &str = "results.json";
pub const REPORT_FILE: &str = "report.html";
pub const COUNTEREXAMPLE_FILE: &str = "counterexample.html";
/// `results/latest`: a relative symlink to the newest run (beside the runs, not in one).
pub const LATEST_LINK: &str = "latest";

/// A file of the run directory that could not be read, with the place and what was expected.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReadError {
    #[error("{}: cannot read: {message}", file.display())]
    Io { file: PathBuf, message: String },
    #[error("{}:{line}: expected {expected}", file.display())]
    Malformed {
        file: PathBuf,
        line: usize,
        expected: String,
    },
}

/// One line of `status.jsonl`: a node's `GET /status` (or why it did not answer) at a time.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StatusSample {
    /// Nanoseconds since the run started.
    pub time: u64,
    pub node: String,
    /// The node's reply, exactly as sent (so fields this crate does not know survive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The node's `GET /v1/digest` taken with the status: `{"zxid", "digest", "znodes"}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<Value>,
}

/// One line of `nemesis.jsonl` as its readers need it: the fields of the nemesis crate's
/// `LogEntry` that say when which fault was in effect (its commands and actions are for people).
/// `time` and `label` are accepted for logs written by hand. The harness's tests serialize a
/// real `nemesis::LogEntry` and read it back through this type, so the two cannot drift apart.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct NemesisEntry {
    /// Nanoseconds on the run clock.
    #[serde(alias = "time")]
    pub time_ns: u64,
    /// Index in the schedule's steps; absent for heal-all (a number, or a name in a hand-written log).
    #[serde(default)]
    pub step: Option<Value>,
    /// `partition`, `kill`, ..., or [`HEAL_ALL`].
    #[serde(default)]
    pub fault: String,
    #[serde(default, alias = "label")]
    pub description: Option<String>,
    /// `start` or `heal`.
    pub phase: String,
    #[serde(default)]
    pub nodes: Vec<u64>,
    #[serde(default)]
    pub resolution: Option<String>,
}

/// The `fault` of the entry the nemesis writes when it heals everything (at the end, on
/// cancellation, on error): it ends every open period.
pub const HEAL_ALL: &str = "heal-all";

/// What a JSON-lines file held.
#[derive(Debug, Clone, PartialEq)]
pub struct Jsonl<T> {
    pub values: Vec<T>,
    /// The line each value stands on, from 1.
    pub lines: Vec<usize>,
    /// The last line, cut off by a crash and dropped: its number and why it did not parse.
    pub cut_off: Option<(usize, String)>,
}

/// Parses JSON lines (see the module's rule); `file` only names it in errors, `expected` says
/// what a line should be.
pub fn parse_jsonl<T: DeserializeOwned>(
    text: &str,
    file: &Path,
    expected: &str,
) -> Result<Jsonl<T>, ReadError> {
    collect_jsonl(text.as_bytes(), file, expected)
}

/// Reads and parses a JSON-lines file (see [`parse_jsonl`]).
pub fn read_jsonl<T: DeserializeOwned>(path: &Path, expected: &str) -> Result<Jsonl<T>, ReadError> {
    let file = File::open(path).map_err(|e| io_error(path, e))?;
    collect_jsonl(BufReader::new(file), path, expected)
}

fn collect_jsonl<T: DeserializeOwned>(
    input: impl BufRead,
    file: &Path,
    expected: &str,
) -> Result<Jsonl<T>, ReadError> {
    let mut values = Vec::new();
    let mut lines = Vec::new();
    let cut_off = each_jsonl(input, file, expected, |line, v| {
        values.push(v);
        lines.push(line);
    })?;
    Ok(Jsonl {
        values,
        lines,
        cut_off,
    })
}

/// Reads a JSON-lines file one line at a time, handing each value and its line number (counted
/// from one) to `each`, without holding the file: the way to read a history of gigabytes. The
/// same rule as [`parse_jsonl`]; returns the cut-off last line, if there was one.
pub fn for_each_jsonl<T: DeserializeOwned>(
    path: &Path,
    expected: &str,
    each: impl FnMut(usize, T),
) -> Result<Option<(usize, String)>, ReadError> {
    let file = File::open(path).map_err(|e| io_error(path, e))?;
    each_jsonl(
        BufReader::with_capacity(1 << 20, file),
        path,
        expected,
        each,
    )
}

fn io_error(path: &Path, e: std::io::Error) -> ReadError {
    ReadError::Io {
        file: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// The one reader behind the forms above.
fn each_jsonl<T: DeserializeOwned>(
    mut input: impl BufRead,
    file: &Path,
    expected: &str,
    mut each: impl FnMut(usize, T),
) -> Result<Option<(usize, String)>, ReadError> {
    let mut buf = Vec::new();
    let mut number = 0;
    loop {
        buf.clear();
        let read = input
            .read_until(b'\n', &mut buf)
            .map_err(|e| io_error(file, e))?;
        if read == 0 {
            return Ok(None);
        }
        number += 1;
        let complete = buf.last() == Some(&b'\n');
        let line = buf.trim_ascii();
        if line.is_empty() {
            continue;
        }
        match serde_json::from_slice::<T>(line) {
            Ok(v) => each(number, v),
            // Only the very last line can be cut off: it alone lacks its newline.
            Err(err) if !complete => return Ok(Some((number, err.to_string()))),
            Err(err) => {
                return Err(ReadError::Malformed {
                    file: file.to_path_buf(),
                    line: number,
                    expected: format!("{expected} ({err})"),
                });
            }
        }
    }
}

/// Writes `value` as pretty JSON to `path` through a temporary file, so a reader never sees
/// half a file, and syncs it.
pub fn write_json_synced<T: Serialize>(path: &Path, value: &T) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut file =
            File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
        serde_json::to_writer_pretty(&mut file, value)?;
        file.write_all(b"\n")?;
        file.sync_all()?;
    }
    fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Reads a JSON file of the run directory.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    let text =
        fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not valid: ", path.display()))
}

/// An append-only JSON-lines file: the one writer of `history.jsonl`, `status.jsonl` and
/// `nemesis.jsonl`'s kind of file. Callers decide when to sync.
pub struct JsonlWriter {
    out: BufWriter<File>,
    path: PathBuf,
}

impl JsonlWriter {
    pub fn create(path: &Path) -> anyhow::Result<JsonlWriter> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        Ok(JsonlWriter {
            out: BufWriter::new(file),
            path: path.to_path_buf(),
        })
    }

    pub fn append<T: Serialize>(&mut self, value: &T) -> anyhow::Result<()> {
        serde_json::to_writer(&mut self.out, value)
            .with_context(|| format!("cannot write to {}", self.path.display()))?;
        self.out.write_all(b"\n")?;
        Ok(())
    }

    pub fn flush(&mut self) -> anyhow::Result<()> {
        self.out.flush()?;
        Ok(())
    }

    /// A second handle on the file, to sync it without holding the writer.
    pub fn file_handle(&self) -> anyhow::Result<File> {
        Ok(self.out.get_ref().try_clone()?)
    }

    /// Flushes the buffer and makes the data durable.
    pub fn sync(&mut self) -> anyhow::Result<()> {
        self.out.flush()?;
        self.out.get_ref().sync_data()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cut_off_last_line_is_dropped_and_any_other_bad_line_is_an_error() {
        let file = Path::new("s.jsonl");
        let ok: Jsonl<Value> = parse_jsonl("{\"a\":1}\n\n{\"a\":2}\n{\"a\"", file, "x").unwrap();
        assert_eq!(ok.values.len(), 2);
        assert_eq!(ok.lines, vec![1, 3]);
        assert_eq!(ok.cut_off.map(|c| c.0), Some(4));
        let whole: Jsonl<Value> = parse_jsonl("{\"a\":1}\n", file, "x").unwrap();
        assert!(whole.cut_off.is_none());
        let bad = parse_jsonl::<Value>("{\"a\"\n{\"a\":1}\n", file, "x").unwrap_err();
        assert!(matches!(bad, ReadError::Malformed { line: 1, .. }), "{bad}");
        // A bad last line that did end with its newline was written whole: it is an error.
        assert!(parse_jsonl::<Value>("{\"a\":1}\nnope\n", file, "x").is_err());
    }

    /// The streamed form reads a file with the same rule, value by value.
    #[test]
    fn the_streamed_reader_follows_the_same_rule() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.jsonl");
        fs::write(&path, "{\"a\":1}\n\n{\"a\":2}\n{\"a\"").unwrap();
        let mut seen = Vec::new();
        let cut = for_each_jsonl(&path, "x", |line, v: Value| {
            seen.push((line, v["a"].clone()))
        })
        .unwrap();
        assert_eq!(seen, vec![(1, 1.into()), (3, 2.into())]);
        assert_eq!(cut.map(|c| c.0), Some(4));
        fs::write(&path, "{\"a\":1}\nnope\n{\"a\":2}\n").unwrap();
        let err = for_each_jsonl(&path, "x", |_, _: Value| {}).unwrap_err();
        assert!(matches!(err, ReadError::Malformed { line: 2, .. }), "{err}");
        let missing = for_each_jsonl(&dir.path().join("none"), "x", |_, _: Value| {});
        assert!(matches!(missing, Err(ReadError::Io { .. })));
    }
}
