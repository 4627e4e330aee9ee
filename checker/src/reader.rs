//! Reading histories from files: our JSON lines, Jepsen's `history.edn`, Jepsen's `history.txt`
//! and the `jepsen.util` lines of `jepsen.log`. The format is detected from the content.

use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use crate::edn;
use crate::history::{Event, EventType};
use crate::run_dir;

/// Lines looked at when deciding whether a text file is a Jepsen log.
const DETECT_LINES: usize = 1000;

pub use crate::run_dir::{ReadError, StatusSample};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    JsonLines,
    JepsenEdn,
    JepsenText,
    JepsenLog,
}

/// The events of a history file, and notes about anything that was skipped.
#[derive(Debug, Clone)]
pub struct History {
    pub format: Format,
    pub events: Vec<Event>,
    /// The line each event starts on, from 1.
    pub lines: Vec<usize>,
    pub warnings: Vec<String>,
}

pub fn read_history(file: &Path) -> Result<History, ReadError> {
    let text = std::fs::read_to_string(file).map_err(|e| ReadError::Io {
        file: file.to_path_buf(),
        message: e.to_string(),
    })?;
    parse_history(&text, file)
}

/// Parses a history held in memory; `file` only names it in errors.
pub fn parse_history(text: &str, file: &Path) -> Result<History, ReadError> {
    let Some(first) = first_content_line(text) else {
        // Nothing at all, or only EDN comments: no operations, said plainly rather than
        // guessed at (the checkers then report `unknown`).
        return Ok(History {
            format: Format::JsonLines,
            events: Vec::new(),
            lines: Vec::new(),
            warnings: vec![format!(
                "{}: the file is empty: no operations",
                file.display()
            )],
        });
    };
    let trimmed = text.trim_start();
    let after_brace = trimmed.get(1..).unwrap_or("").trim_start();
    if trimmed.starts_with('{') && after_brace.starts_with('"') {
        return parse_jsonl(text, file);
    }
    if trimmed.starts_with(['[', '(', '#', ';'])
        || (trimmed.starts_with('{')
            && (after_brace.starts_with(':') || after_brace.starts_with('}')))
    {
        let mut h = parse_edn(text, file)?;
        split_independent(&mut h.events);
        return Ok(h);
    }
    let log = text
        .lines()
        .take(DETECT_LINES)
        .any(|l| util_body(l).is_some());
    if log || text.lines().nth(first - 1).and_then(text_op).is_some() {
        let mut h = parse_text(text, file, log)?;
        split_independent(&mut h.events);
        return Ok(h);
    }
    Err(ReadError::Malformed {
        file: file.to_path_buf(),
        line: first,
        expected: "a history: JSON lines (docs/HISTORY.md), Jepsen history.edn, Jepsen \
                   history.txt or a jepsen.log with jepsen.util lines"
            .into(),
    })
}

/// The line number (from 1) of the first line with something other than whitespace and EDN
/// `;` comments; `None` for a file with nothing in it.
fn first_content_line(text: &str) -> Option<usize> {
    text.lines()
        .position(|l| {
            let t = l.trim();
            !t.is_empty() && !t.starts_with(';')
        })
        .map(|i| i + 1)
}

fn parse_jsonl(text: &str, file: &Path) -> Result<History, ReadError> {
    let expected = "one JSON event with index, time, process, type, f, value";
    let read: run_dir::Jsonl<Event> = run_dir::parse_jsonl(text, file, expected)?;
    // Our recorder numbers events 0, 1, 2, ...: a gap or a repeat means events were lost or the
    // file was spliced, and nothing checked on it could be trusted.
    for (expected_index, (e, line)) in read.values.iter().zip(&read.lines).enumerate() {
        if e.index != expected_index as u64 {
            return Err(ReadError::Malformed {
                file: file.to_path_buf(),
                line: *line,
                expected: format!(
                    "index {expected_index} (indexes count from 0 without gaps), not {}",
                    e.index
                ),
            });
        }
    }
    let mut warnings = Vec::new();
    if let Some((line, err)) = read.cut_off {
        // A run that crashed may have left half a line at the end; a file that is nothing but
        // half a line is not a history.
        if read.values.is_empty() {
            return Err(ReadError::Malformed {
                file: file.to_path_buf(),
                line,
                expected: format!("{expected} ({err})"),
            });
        }
        warnings.push(format!(
            "{}:{line}: ignored the incomplete last line ({err})",
            file.display()
        ));
    }
    Ok(History {
        format: Format::JsonLines,
        events: read.values,
        lines: read.lines,
        warnings,
    })
}

/// Line numbers of byte offsets, for offsets that mostly grow: counts newlines from the last
/// offset asked about, so numbering every operation of a large file stays linear.
struct LineCounter<'a> {
    text: &'a [u8],
    offset: usize,
    line: usize,
}

impl<'a> LineCounter<'a> {
    fn new(text: &'a str) -> LineCounter<'a> {
        LineCounter {
            text: text.as_bytes(),
            offset: 0,
            line: 1,
        }
    }

    fn line(&mut self, offset: usize) -> usize {
        let offset = offset.min(self.text.len());
        if offset < self.offset {
            self.offset = 0;
            self.line = 1;
        }
        self.line += self.text[self.offset..offset]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        self.offset = offset;
        self.line
    }
}

/// Reads Jepsen's `history.edn`: one vector or list of op maps, or op maps one after another
/// (each possibly a tagged record such as `#jepsen.history.Op{...}`, possibly over several
/// lines, with `;` comments anywhere). A file cut off inside its last operation (a crashed
/// run) is read up to that operation, with a warning naming the line where it starts.
fn parse_edn(text: &str, file: &Path) -> Result<History, ReadError> {
    let mut p = edn::Parser::new(text);
    let mut at = LineCounter::new(text);
    let end = text.trim_end().len();
    let malformed = |line: usize, expected: String| ReadError::Malformed {
        file: file.to_path_buf(),
        line,
        expected,
    };
    let mut forms: Vec<(usize, Value)> = Vec::new();
    let mut warnings = Vec::new();
    // The history is one vector or list (its elements are the operations) or a run of forms.
    let close = match p.peek() {
        Some(b'[') => Some(b']'),
        Some(b'(') => Some(b')'),
        _ => None,
    };
    if let Some(open) = p.peek().filter(|_| close.is_some()) {
        p.expect_byte(open)
            .map_err(|e| malformed(at.line(e.offset), e.expected))?;
    }
    loop {
        let more = p.skip_space();
        let start = p.offset();
        match (more, close) {
            (false, None) => break,
            (false, Some(c)) => {
                warnings.push(format!(
                    "{}:{}: the history ends without its closing `{}`: the file was cut off; \
                     checked the {} operations before it",
                    file.display(),
                    at.line(start),
                    c as char,
                    forms.len()
                ));
                break;
            }
            (true, Some(c)) if p.peek() == Some(c) => {
                p.expect_byte(c)
                    .map_err(|e| malformed(at.line(e.offset), e.expected))?;
                if p.skip_space() {
                    return Err(malformed(
                        at.line(p.offset()),
                        format!(
                            "the end of the file after the history's closing `{}`",
                            c as char
                        ),
                    ));
                }
                break;
            }
            (true, _) => {}
        }
        match p.value() {
            Ok(v) => forms.push((at.line(start), v)),
            Err(e) if e.offset >= end => {
                // A run that crashed cut its last operation off: check what precedes it.
                let line = at.line(start);
                if forms.is_empty() {
                    return Err(malformed(
                        line,
                        format!("{} (EDN): the only operation is cut off", e.expected),
                    ));
                }
                warnings.push(format!(
                    "{}:{line}: ignored the operation cut off at the end of the file; checked \
                     the {} operations before it",
                    file.display(),
                    forms.len()
                ));
                break;
            }
            Err(e) => {
                return Err(malformed(
                    at.line(e.offset),
                    format!("{} (EDN)", e.expected),
                ));
            }
        }
    }
    let mut events = Vec::with_capacity(forms.len());
    let mut lines = Vec::with_capacity(forms.len());
    let mut nemesis = 0usize;
    for (line, v) in forms {
        match edn_event(&v, events.len() as u64).map_err(|expected| malformed(line, expected))? {
            Some(e) => {
                events.push(e);
                lines.push(line);
            }
            None => nemesis += 1,
        }
    }
    if events.is_empty() {
        warnings.push(format!(
            "{}: no client operations ({nemesis} nemesis entries ignored)",
            file.display()
        ));
    }
    Ok(History {
        format: Format::JepsenEdn,
        events,
        lines,
        warnings,
    })
}

fn kind_of(s: &str) -> Option<EventType> {
    Some(match s {
        "invoke" => EventType::Invoke,
        "ok" => EventType::Ok,
        "fail" => EventType::Fail,
        "info" => EventType::Info,
        _ => return None,
    })
}

fn as_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// One Jepsen op map; `Ok(None)` for the nemesis's operations, which are not client operations.
fn edn_event(v: &Value, position: u64) -> Result<Option<Event>, String> {
    let Some(m) = v.as_object() else {
        return Err("an op map {:process .. :type .. :f .. :value ..}".into());
    };
    let process = match m.get("process") {
        Some(Value::Number(n)) if n.as_u64().is_some() => n.as_u64().unwrap_or_default(),
        Some(Value::String(s)) if s == "nemesis" => return Ok(None),
        _ => return Err("`:process` with a non-negative integer (or :nemesis)".into()),
    };
    let kind = m
        .get("type")
        .and_then(Value::as_str)
        .and_then(kind_of)
        .ok_or("`:type` one of :invoke :ok :fail :info")?;
    let f = m.get("f").map(as_text).ok_or("`:f` naming the operation")?;
    let mut e = Event::new(
        m.get("index").and_then(Value::as_u64).unwrap_or(position),
        m.get("time").and_then(Value::as_u64).unwrap_or(position),
        process,
        kind,
        &f,
        m.get("value").cloned().unwrap_or(Value::Null),
    );
    e.error = m.get("error").filter(|v| !v.is_null()).map(as_text);
    e.key = m.get("key").filter(|v| !v.is_null()).map(as_text);
    e.node = m.get("node").filter(|v| !v.is_null()).map(as_text);
    Ok(Some(e))
}

/// The logger Jepsen prints ops with.
const JEPSEN_UTIL: &str = "jepsen.util";

/// What a `jepsen.log` line says after its logger name, when the logger is `jepsen.util`:
/// `... jepsen worker 0 - jepsen.util - 0 :invoke ...` (older Jepsen) or
/// `... jepsen worker 0 - jepsen.util 0 :invoke ...` (newer).
fn util_body(line: &str) -> Option<&str> {
    let (_, rest) = line.split_once(JEPSEN_UTIL)?;
    if !rest.starts_with(char::is_whitespace) {
        return None;
    }
    let rest = rest.trim_start();
    Some(rest.strip_prefix("- ").unwrap_or(rest))
}

/// One op line of a Jepsen text log, before its value is parsed.
struct TextOp<'a> {
    process: u64,
    kind: EventType,
    f: &'a str,
    /// The value and, after it, the error if any: `[1 2]`, `nil :timed-out`.
    rest: &'a str,
}

/// Splits off the first whitespace-separated field.
fn field(s: &str) -> Option<(&str, &str)> {
    let s = s.trim_start();
    if s.is_empty() {
        return None;
    }
    let end = s.find(char::is_whitespace).unwrap_or(s.len());
    Some((&s[..end], &s[end..]))
}

/// `process :type :f value [error]` as Jepsen prints ops, the fields separated by tabs (as
/// `jepsen.util/log-op` writes them) or by any run of whitespace (as they often are after
/// copying); `None` when the line is not one. Process `:nemesis` gives `Some(None)`.
fn text_op(line: &str) -> Option<Option<TextOp<'_>>> {
    let (process, rest) = field(line)?;
    let (kind, rest) = field(rest)?;
    let kind = kind_of(kind.strip_prefix(':')?)?;
    let (f, rest) = field(rest)?;
    if process == ":nemesis" {
        return Some(None);
    }
    Some(Some(TextOp {
        process: process.parse::<u64>().ok()?,
        kind,
        f: f.strip_prefix(':').unwrap_or(f),
        rest: rest.trim(),
    }))
}

/// Reads `history.txt` (every line an op) or a `jepsen.log` (op lines are those with
/// `jepsen.util`; other lines are skipped). A non-empty file from which no operation could
/// be read is an error naming the first line that could not be.
fn parse_text(text: &str, file: &Path, log: bool) -> Result<History, ReadError> {
    let mut events = Vec::new();
    let mut lines = Vec::new();
    let mut warnings = Vec::new();
    let mut first_unread: Option<usize> = None;
    let total = text.lines().count();
    for (i, line) in text.lines().enumerate() {
        // A run that crashed may have left half a line at the end: check what precedes it.
        let cut_off = i + 1 == total && !text.ends_with('\n') && !events.is_empty();
        let body = if log {
            match util_body(line) {
                Some(rest) => rest,
                None => continue,
            }
        } else {
            line
        };
        if body.trim().is_empty() {
            continue;
        }
        let malformed = |expected: String| ReadError::Malformed {
            file: file.to_path_buf(),
            line: i + 1,
            expected,
        };
        let Some(op) = text_op(body) else {
            if cut_off {
                warnings.push(format!(
                    "{}:{}: ignored the incomplete last line",
                    file.display(),
                    i + 1
                ));
                break;
            }
            if log {
                // jepsen.util logs other things too; only op lines matter.
                first_unread.get_or_insert(i + 1);
                continue;
            }
            return Err(malformed(
                "`process :type :f value` (separated by tabs or spaces) with :type one of \
                 :invoke :ok :fail :info"
                    .into(),
            ));
        };
        let Some(op) = op else {
            continue;
        };
        let mut p = edn::Parser::new(op.rest);
        let value = if op.rest.is_empty() {
            Value::Null
        } else {
            match p.value() {
                Ok(v) => v,
                Err(_) if cut_off => {
                    warnings.push(format!(
                        "{}:{}: ignored the incomplete last line",
                        file.display(),
                        i + 1
                    ));
                    break;
                }
                Err(e) => {
                    let expected = format!("an EDN value after `:{}`: {}", op.f, e.expected);
                    return Err(malformed(expected));
                }
            }
        };
        let error = op.rest.get(p.offset()..).unwrap_or("").trim();
        let position = events.len() as u64;
        let mut e = Event::new(position, position, op.process, op.kind, op.f, value);
        e.error = (!error.is_empty()).then(|| error.to_string());
        events.push(e);
        lines.push(i + 1);
    }
    if events.is_empty()
        && let Some(line) = first_unread
    {
        return Err(ReadError::Malformed {
            file: file.to_path_buf(),
            line,
            expected: "a `jepsen.util` line holding an op: `process :type :f value` \
                       (no operation could be read from this log)"
                .into(),
        });
    }
    Ok(History {
        format: if log {
            Format::JepsenLog
        } else {
            Format::JepsenText
        },
        events,
        lines,
        warnings,
    })
}

/// Jepsen's `independent` histories hold `[key value]` tuples as values (for example
/// `[3 [1 2]]`, a cas on key 3). When every invocation has one, with a key that is a plain
/// value, each event gets the key and its own value, so the checkers split the history by key
/// as Jepsen's `independent/checker` does. A history of nothing but `cas` with plain `[old
/// new]` pairs reads the same, so it is left alone. Histories that already name keys are left
/// alone too.
fn split_independent(events: &mut [Event]) {
    let tuple_key = |v: &Value| -> Option<Value> {
        match v.as_array()?.as_slice() {
            [k, _] if !k.is_array() && !k.is_object() && !k.is_null() => Some(k.clone()),
            _ => None,
        }
    };
    let invocations = || events.iter().filter(|e| e.kind == EventType::Invoke);
    if invocations().next().is_none()
        || events.iter().any(|e| e.key.is_some())
        || !invocations().all(|e| tuple_key(&e.value).is_some())
    {
        return;
    }
    let only_plain_cas = invocations()
        .all(|e| e.f == "cas" && e.value[1].as_array().is_none_or(|pair| pair.len() != 2));
    if only_plain_cas {
        return;
    }
    let mut open: std::collections::HashMap<u64, Value> = std::collections::HashMap::new();
    for e in events.iter_mut() {
        let key = if e.kind == EventType::Invoke {
            let k = tuple_key(&e.value).unwrap_or_default();
            open.insert(e.process, k.clone());
            k
        } else {
            match open.remove(&e.process) {
                Some(k) => k,
                None => continue,
            }
        };
        // A completion normally repeats the tuple; an `info` may carry something else (a
        // `:timed-out`), which then stands for the value.
        if tuple_key(&e.value).as_ref() == Some(&key) {
            e.value = e.value[1].take();
        }
        e.key = Some(as_text(&key));
    }
}

/// The samples of a `status.jsonl` (see [`run_dir`] for the tolerance rule).
pub fn read_status(file: &Path) -> Result<Vec<StatusSample>, ReadError> {
    let expected = "{\"time\": ns, \"node\": name, \"status\": {..}} or with \"error\"";
    Ok(run_dir::read_jsonl(file, expected)?.values)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(s: &str) -> Result<History, ReadError> {
        parse_history(s, Path::new("h"))
    }

    #[test]
    fn detects_each_format() {
        let jsonl = r#"{"index":0,"time":1,"process":0,"type":"invoke","f":"read","value":null}
{"index":1,"time":2,"process":0,"type":"ok","f":"read","value":3}
"#;
        let h = parse(jsonl).unwrap();
        assert_eq!(h.format, Format::JsonLines);
        assert_eq!(h.events[1].value, json!(3));

        let edn = "{:type :invoke, :f :cas, :value [1 2], :process 0, :time 5}\n\
                   {:type :info, :f :start, :value nil, :process :nemesis}\n\
                   {:type :ok, :f :cas, :value [1 2], :process 0, :time 9}\n";
        let h = parse(edn).unwrap();
        assert_eq!(h.format, Format::JepsenEdn);
        assert_eq!(h.events.len(), 2);
        assert_eq!(h.events[0].value, json!([1, 2]));
        assert_eq!(h.events[1].time, 9);

        let vec = "[{:type :invoke, :f :read, :value nil, :process 1}\n {:type :ok, :f :read, :value nil, :process 1}]";
        assert_eq!(parse(vec).unwrap().events.len(), 2);

        let txt = "0\t:invoke\t:write\t3\n0\t:ok\t:write\t3\n:nemesis\t:info\t:start\tnil\n";
        let h = parse(txt).unwrap();
        assert_eq!(h.format, Format::JepsenText);
        assert_eq!(h.events.len(), 2);
        assert_eq!(h.events[0].f, "write");

        let log = "INFO [2017-01-01 00:00:00,000] main - jepsen.core Running test\n\
                   INFO [2017-01-01 00:00:01,000] jepsen worker 0 - jepsen.util - 0\t:invoke\t:cas\t[1 4]\n\
                   INFO [2017-01-01 00:00:01,100] jepsen worker 0 - jepsen.util - 0\t:fail\t:cas\t[1 4]\n";
        let h = parse(log).unwrap();
        assert_eq!(h.format, Format::JepsenLog);
        assert_eq!(h.events.len(), 2);
        assert_eq!(h.events[1].kind, EventType::Fail);
    }

    #[test]
    fn malformed_lines_name_the_line() {
        let bad = "{\"index\":0,\"time\":1,\"process\":0,\"type\":\"invoke\",\"f\":\"read\",\"value\":null}\n{\"index\":1}\n{\"index\":2,\"time\":2,\"process\":0,\"type\":\"ok\",\"f\":\"read\",\"value\":3}\n";
        let err = parse(bad).unwrap_err().to_string();
        assert!(err.starts_with("h:2: expected"), "{err}");
        let err = parse("0\t:invoke\t:read\tnil\nxyz\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("h:2: expected"), "{err}");
        let err =
            parse("{:type :invoke :f :read :process 0}\n{:type :bogus :f :read :process 0}\n")
                .unwrap_err()
                .to_string();
        assert!(err.starts_with("h:2: expected"), "{err}");
        assert!(parse("hello world\n").is_err());
    }

    #[test]
    fn a_cut_off_last_line_is_ignored() {
        let cut = "{\"index\":0,\"time\":1,\"process\":0,\"type\":\"invoke\",\"f\":\"read\",\"value\":null}\n{\"index\":1,\"ti";
        let h = parse(cut).unwrap();
        assert_eq!(h.events.len(), 1);
        assert_eq!(h.warnings.len(), 1);
    }

    #[test]
    fn edn_lists_comments_tags_and_multiline_maps() {
        let edn = "; a comment first\n(#jepsen.history.Op{:index 0, :time 5, :type :invoke,\n   :process 0, :f :read, :value nil} ; trailing\n {:type :info, :f :kill, :process :nemesis}\n {:type :ok,\n  :f :read, :value 3, :process 0, :time 9})\n";
        let h = parse(edn).unwrap();
        assert_eq!(h.format, Format::JepsenEdn);
        assert_eq!(h.events.len(), 2);
        assert_eq!(h.lines, [2, 5]);
        assert_eq!(h.events[1].value, json!(3));
        assert!(h.warnings.is_empty(), "{:?}", h.warnings);
        // Anything after the closing bracket is an error, not silently dropped.
        let err = parse("[{:type :invoke :f :read :process 0}]\n{:x 1}\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("h:2: expected the end"), "{err}");
    }

    #[test]
    fn a_cut_off_edn_record_is_dropped_with_its_line() {
        let cut = "[{:type :invoke :f :read :process 0}\n {:type :ok :f :read\n  :value 3 :proc";
        let h = parse(cut).unwrap();
        assert_eq!(h.events.len(), 1);
        assert!(
            h.warnings[0].starts_with("h:2: ignored"),
            "{:?}",
            h.warnings
        );
        // All records complete, closing bracket missing: also a cut-off, named at the end.
        let h = parse("[{:type :invoke :f :read :process 0}\n").unwrap();
        assert_eq!(h.events.len(), 1);
        assert!(h.warnings[0].contains("closing `]`"), "{:?}", h.warnings);
        // A cut inside the only record leaves nothing to check: an error with the line.
        let err = parse("\n{:type :invoke :f").unwrap_err().to_string();
        assert!(err.starts_with("h:2: expected"), "{err}");
        // Bad syntax in the middle is not a cut-off.
        assert!(parse("[{:type :invoke :f :read :process 0}\n {:a}\n {:b 1}]").is_err());
    }

    #[test]
    fn text_logs_separated_by_any_whitespace() {
        let log = "INFO  jepsen.util - 4 :invoke :cas [1 2]\n\
                   INFO  jepsen.util -   4    :info   :cas   [1 2]   :timed-out\n\
                   INFO  jepsen.util - :nemesis :info :start nil\n";
        let h = parse(log).unwrap();
        assert_eq!(h.format, Format::JepsenLog);
        assert_eq!(h.events.len(), 2);
        assert_eq!(h.events[1].value, json!([1, 2]));
        assert_eq!(h.events[1].error.as_deref(), Some(":timed-out"));
        let txt = "0 :invoke :write 3\n0    :ok\t :write  3\n";
        assert_eq!(parse(txt).unwrap().events.len(), 2);
        // A log cut off inside its last line: the lines before it are read, with a warning.
        let cut = format!("{log}INFO  jepsen.util - 5 :invoke :cas [1");
        let h = parse(&cut).unwrap();
        assert_eq!(h.events.len(), 2);
        assert!(
            h.warnings[0].starts_with("h:4: ignored"),
            "{:?}",
            h.warnings
        );
        // A log of jepsen.util lines none of which is an op: an error naming the first.
        let err = parse("x jepsen.core - start\nx jepsen.util - hello\nx jepsen.util - 1 :bad\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("h:2: expected"), "{err}");
    }

    #[test]
    fn independent_tuples_become_keys() {
        let edn = "[{:type :invoke, :f :cas, :value [7 [1 2]], :process 0}\n\
                    {:type :invoke, :f :read, :value [8 nil], :process 1}\n\
                    {:type :info, :f :cas, :value :timed-out, :process 0}\n\
                    {:type :ok, :f :read, :value [8 4], :process 1}]";
        let h = parse(edn).unwrap();
        let keys: Vec<_> = h.events.iter().map(|e| e.key.as_deref()).collect();
        assert_eq!(keys, [Some("7"), Some("8"), Some("7"), Some("8")]);
        assert_eq!(h.events[0].value, json!([1, 2]));
        assert_eq!(h.events[2].value, json!("timed-out"));
        assert_eq!(h.events[3].value, json!(4));
        // A plain cas-register history of cas pairs is not mistaken for one.
        let plain = "{:type :invoke, :f :cas, :value [1 2], :process 0}\n\
                     {:type :ok, :f :cas, :value [1 2], :process 0}\n";
        let h = parse(plain).unwrap();
        assert!(h.events.iter().all(|e| e.key.is_none()));
        assert_eq!(h.events[0].value, json!([1, 2]));
    }

    #[test]
    fn empty_files_say_so_and_json_indexes_have_no_gaps() {
        for empty in ["", "\n  \n", "; only a comment\n"] {
            let h = parse(empty).unwrap();
            assert!(h.events.is_empty());
            assert!(h.warnings[0].contains("empty"), "{:?}", h.warnings);
        }
        let ev = |i: u64| {
            format!(
                r#"{{"index":{i},"time":{i},"process":0,"type":"invoke","f":"read","value":null}}"#
            )
        };
        let err = parse(&format!("{}\n{}\n", ev(0), ev(0)))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("h:2: expected index 1"), "{err}");
        let err = parse(&format!("{}\n", ev(3))).unwrap_err().to_string();
        assert!(err.starts_with("h:1: expected index 0"), "{err}");
    }

    proptest::proptest! {
        /// Whatever the bytes, reading gives events or one error, never a panic.
        #[test]
        fn reading_never_panics(
            text in "(jepsen\\.util( -)? |[0-9]|:invoke|:ok|:nemesis|:f|:value|:process|[\\[\\](){}#;\"\\\\ \\t\\n,]|é|nil|\\{\"index\":0)*"
        ) {
            let _ = parse(&text);
        }
    }
}
