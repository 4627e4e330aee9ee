//! Reading histories from files: our JSON lines, Jepsen's `history.edn`, Jepsen's `history.txt`
//! and the `jepsen.util` lines of `jepsen.log`. The format is detected from the content.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::edn;
use crate::history::{Event, EventType};

/// Lines looked at when deciding whether a text file is a Jepsen log.
const DETECT_LINES: usize = 1000;

/// A history file that could not be read, with the place and what was expected there.
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
    let malformed = |line: usize, expected: &str| ReadError::Malformed {
        file: file.to_path_buf(),
        line,
        expected: expected.to_string(),
    };
    let trimmed = text.trim_start();
    if trimmed.is_empty() {
        return Ok(History {
            format: Format::JsonLines,
            events: Vec::new(),
            lines: Vec::new(),
            warnings: vec!["the history is empty".into()],
        });
    }
    let after_brace = trimmed[1..].trim_start();
    if trimmed.starts_with('{') && after_brace.starts_with('"') {
        return parse_jsonl(text, file);
    }
    if trimmed.starts_with('[')
        || trimmed.starts_with('#')
        || (trimmed.starts_with('{')
            && (after_brace.starts_with(':') || after_brace.starts_with('}')))
    {
        return parse_edn(text, file);
    }
    let lines: Vec<&str> = text.lines().take(DETECT_LINES).collect();
    if lines.iter().any(|l| l.contains(JEPSEN_UTIL)) {
        return parse_text(text, file, true);
    }
    let first = lines
        .iter()
        .find(|l| !l.trim().is_empty())
        .copied()
        .unwrap_or("");
    if text_op(first).is_some() {
        return parse_text(text, file, false);
    }
    Err(malformed(
        1,
        "a history: JSON lines (docs/HISTORY.md), Jepsen history.edn, Jepsen history.txt \
         or a jepsen.log with jepsen.util lines",
    ))
}

fn parse_jsonl(text: &str, file: &Path) -> Result<History, ReadError> {
    let mut events = Vec::new();
    let mut lines = Vec::new();
    let mut warnings = Vec::new();
    let total = text.lines().count();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Event>(line) {
            Ok(e) => {
                events.push(e);
                lines.push(i + 1);
            }
            Err(err) => {
                // A run that crashed may have left half a line at the end: check what is there.
                if i + 1 == total && !text.ends_with('\n') {
                    warnings.push(format!(
                        "{}:{}: ignored the incomplete last line ({err})",
                        file.display(),
                        i + 1
                    ));
                    break;
                }
                return Err(ReadError::Malformed {
                    file: file.to_path_buf(),
                    line: i + 1,
                    expected: format!(
                        "one JSON event with index, time, process, type, f, value ({err})"
                    ),
                });
            }
        }
    }
    Ok(History {
        format: Format::JsonLines,
        events,
        lines,
        warnings,
    })
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

fn parse_edn(text: &str, file: &Path) -> Result<History, ReadError> {
    let mut p = edn::Parser::new(text);
    let mut forms = Vec::new();
    let mut warnings = Vec::new();
    while p.skip_space() {
        let start = p.offset();
        match p.value() {
            Ok(v) => forms.push((start, v)),
            Err(e) => {
                // A run that crashed may have cut the last form off: check what precedes it.
                if e.offset >= text.trim_end().len() && !forms.is_empty() {
                    warnings.push(format!(
                        "{}:{}: ignored an incomplete last operation",
                        file.display(),
                        line_of(text, start)
                    ));
                    break;
                }
                return Err(ReadError::Malformed {
                    file: file.to_path_buf(),
                    line: line_of(text, e.offset),
                    expected: format!("{} (EDN)", e.expected),
                });
            }
        }
    }
    // Either one vector of op maps, or one op map per line.
    let ops: Vec<(usize, Value)> = if forms.len() == 1 && forms[0].1.is_array() {
        let (start, v) = forms.pop().unwrap_or_default();
        let line = line_of(text, start);
        match v {
            Value::Array(items) => items.into_iter().map(|i| (line, i)).collect(),
            _ => Vec::new(),
        }
    } else {
        forms
            .into_iter()
            .map(|(start, v)| (line_of(text, start), v))
            .collect()
    };
    let mut events = Vec::with_capacity(ops.len());
    let mut lines = Vec::with_capacity(ops.len());
    for (line, v) in ops {
        if let Some(e) =
            edn_event(&v, events.len() as u64).map_err(|expected| ReadError::Malformed {
                file: file.to_path_buf(),
                line,
                expected,
            })?
        {
            events.push(e);
            lines.push(line);
        }
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

const JEPSEN_UTIL: &str = "jepsen.util - ";

/// `process \t :type \t :f \t value [\t error]` as Jepsen prints ops; `None` when the line is not
/// one. Process `:nemesis` gives `Some(None)`.
#[allow(clippy::type_complexity)]
fn text_op(line: &str) -> Option<Option<(u64, EventType, String, String, Option<String>)>> {
    let mut parts = line.trim_end_matches('\r').split('\t');
    let process = parts.next()?.trim();
    let kind = kind_of(parts.next()?.trim().strip_prefix(':')?)?;
    let f = parts.next()?.trim();
    let f = f.strip_prefix(':').unwrap_or(f).to_string();
    let value = parts.next().unwrap_or("nil").to_string();
    let error = parts
        .next()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    if process == ":nemesis" {
        return Some(None);
    }
    let process = process.parse::<u64>().ok()?;
    Some(Some((process, kind, f, value, error)))
}

fn parse_text(text: &str, file: &Path, log: bool) -> Result<History, ReadError> {
    let mut events = Vec::new();
    let mut lines = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let body = if log {
            match line.split_once(JEPSEN_UTIL) {
                Some((_, rest)) => rest,
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
            if log {
                // jepsen.util logs other things too; only op lines matter.
                continue;
            }
            return Err(malformed(
                "`process<TAB>:type<TAB>:f<TAB>value` with :type one of :invoke :ok :fail :info"
                    .into(),
            ));
        };
        let Some((process, kind, f, value, error)) = op else {
            continue;
        };
        let value = edn::parse(value.trim())
            .map_err(|e| malformed(format!("an EDN value in the 4th column: {}", e.expected)))?;
        let position = events.len() as u64;
        let mut e = Event::new(position, position, process, kind, &f, value);
        e.error = error;
        events.push(e);
        lines.push(i + 1);
    }
    Ok(History {
        format: if log {
            Format::JepsenLog
        } else {
            Format::JepsenText
        },
        events,
        lines,
        warnings: Vec::new(),
    })
}

/// One line of `status.jsonl`: a node's `/status` (or why it did not answer) at a time.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StatusSample {
    /// Nanoseconds since the run started.
    pub time: u64,
    pub node: String,
    #[serde(default)]
    pub status: Option<Value>,
    #[serde(default)]
    pub error: Option<String>,
    /// The node's `/v1/digest` taken with the status: `{"zxid", "digest", "znodes"}`.
    #[serde(default)]
    pub digest: Option<Value>,
}

pub fn read_status(file: &Path) -> Result<Vec<StatusSample>, ReadError> {
    let text = std::fs::read_to_string(file).map_err(|e| ReadError::Io {
        file: file.to_path_buf(),
        message: e.to_string(),
    })?;
    let total = text.lines().count();
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<StatusSample>(line) {
            Ok(s) => out.push(s),
            Err(_) if i + 1 == total && !text.ends_with('\n') => break,
            Err(err) => {
                return Err(ReadError::Malformed {
                    file: file.to_path_buf(),
                    line: i + 1,
                    expected: format!(
                        "{{\"time\": ns, \"node\": name, \"status\": {{..}}}} or with \"error\" ({err})"
                    ),
                });
            }
        }
    }
    Ok(out)
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
}
