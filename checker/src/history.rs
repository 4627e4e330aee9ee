//! Histories: what happened in a test, one event per line (see docs/HISTORY.md).

use serde::{Deserialize, Serialize};

/// Jepsen's operation types. `ok`: took effect. `fail`: did not. `info`: indeterminate; it may
/// take effect at any time after its invocation, or never, and its process never invokes again.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug, Hash)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    Invoke,
    Ok,
    Fail,
    Info,
}

/// One line of `history.jsonl`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Event {
    /// Position in the history, from 0, without gaps.
    pub index: u64,
    /// Nanoseconds since the run started (monotonic clock).
    pub time: u64,
    /// The Jepsen process: one operation at a time; a new number after an `info`.
    pub process: u64,
    #[serde(rename = "type")]
    pub kind: EventType,
    /// The operation's function: `read`, `write`, `cas`, `create`, ...
    pub f: String,
    #[serde(default)]
    pub value: serde_json::Value,
    /// The object the operation acts on (a znode path, a register name), where one applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The error code of a `fail` or `info`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The server the operation was sent to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The zxid the server reported with its reply, on completions that have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zxid: Option<u64>,
    /// The keeper session the operation used, where it matters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<u64>,
}

impl EventType {
    /// True for the three kinds that end an operation.
    pub fn is_completion(self) -> bool {
        self != EventType::Invoke
    }

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Invoke => "invoke",
            EventType::Ok => "ok",
            EventType::Fail => "fail",
            EventType::Info => "info",
        }
    }
}

/// Functions that record something a client was told without asking (a watch event, its
/// session's expiry). They are written as a single `ok` line with no `invoke` and never pair.
pub const OBSERVATION_FS: [&str; 2] = ["event", "expired"];

/// The operation that sets a watch (a read with a watch: `exists`, `get_data` or
/// `get_children`); the watches checker judges it, not the linearizability models.
pub const WATCH_F: &str = "watch";

impl Event {
    /// An event with the mandatory fields; the optional ones are `None`.
    pub fn new(
        index: u64,
        time: u64,
        process: u64,
        kind: EventType,
        f: &str,
        value: serde_json::Value,
    ) -> Event {
        Event {
            index,
            time,
            process,
            kind,
            f: f.to_string(),
            value,
            key: None,
            error: None,
            node: None,
            zxid: None,
            session: None,
        }
    }

    pub fn is_observation(&self) -> bool {
        OBSERVATION_FS.contains(&self.f.as_str())
    }
}

/// One operation: an invocation and its completion. Borrowed from the events, so pairing a
/// history of millions of events costs two pointers per operation.
#[derive(Clone, Copy, Debug)]
pub struct Op<'a> {
    /// Position of the invocation in the event slice.
    pub invoke_pos: usize,
    pub invoke: &'a Event,
    /// Position of the completion; `None` when the history ended first (counted as `info`).
    pub complete_pos: Option<usize>,
    pub complete: Option<&'a Event>,
}

impl<'a> Op<'a> {
    /// `ok`, `fail` or `info`; an operation that never completed is `info`.
    pub fn kind(&self) -> EventType {
        self.complete.map_or(EventType::Info, |e| e.kind)
    }
    pub fn f(&self) -> &'a str {
        &self.invoke.f
    }
    pub fn process(&self) -> u64 {
        self.invoke.process
    }
    pub fn key(&self) -> Option<&'a str> {
        self.invoke
            .key
            .as_deref()
            .or_else(|| self.complete.and_then(|c| c.key.as_deref()))
    }
    /// The value the operation was invoked with.
    pub fn value(&self) -> &'a serde_json::Value {
        &self.invoke.value
    }
    /// The value the completion carried (`null` when there was none).
    pub fn result(&self) -> &'a serde_json::Value {
        static NULL: serde_json::Value = serde_json::Value::Null;
        self.complete.map_or(&NULL, |c| &c.value)
    }
    pub fn invoke_time(&self) -> u64 {
        self.invoke.time
    }
    /// Completion time; `None` (+infinity) when the operation never completed.
    pub fn complete_time(&self) -> Option<u64> {
        self.complete.map(|c| c.time)
    }
    /// The zxid of the completion, where the server reported one.
    pub fn zxid(&self) -> Option<u64> {
        self.complete.and_then(|c| c.zxid)
    }
    pub fn session(&self) -> Option<u64> {
        self.invoke
            .session
            .or_else(|| self.complete.and_then(|c| c.session))
    }
    pub fn node(&self) -> Option<&'a str> {
        self.invoke
            .node
            .as_deref()
            .or_else(|| self.complete.and_then(|c| c.node.as_deref()))
    }
    pub fn error(&self) -> Option<&'a str> {
        self.complete.and_then(|c| c.error.as_deref())
    }
    /// Did this operation complete before `other` was invoked (real-time order)?
    pub fn precedes(&self, other: &Op<'_>) -> bool {
        self.complete_pos.is_some_and(|c| c < other.invoke_pos)
    }
}

/// Why a sequence of events is not a well-formed history.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event {position} (index {index}): {problem}")]
pub struct PairError {
    /// Position in the slice, from 0.
    pub position: usize,
    pub index: u64,
    pub problem: String,
}

/// Pairs invocations with completions by process. Invocations still open at the end are
/// operations whose outcome is unknown (`info`). `fail` operations are kept: each checker decides.
pub fn pair(events: &[Event]) -> Result<Vec<Op<'_>>, PairError> {
    let mut ops: Vec<Op<'_>> = Vec::with_capacity(events.len() / 2 + 1);
    // process -> index into `ops` of its pending invocation
    let mut open: std::collections::HashMap<u64, usize> = std::collections::HashMap::new();
    for (pos, e) in events.iter().enumerate() {
        if e.is_observation() && e.kind != EventType::Invoke {
            ops.push(Op {
                invoke_pos: pos,
                invoke: e,
                complete_pos: Some(pos),
                complete: Some(e),
            });
            continue;
        }
        match e.kind {
            EventType::Invoke => {
                if let Some(&prev) = open.get(&e.process) {
                    return Err(PairError {
                        position: pos,
                        index: e.index,
                        problem: format!(
                            "process {} invokes `{}` while its `{}` (event {}) has not completed; \
                             expected one operation at a time per process",
                            e.process, e.f, ops[prev].invoke.f, ops[prev].invoke_pos
                        ),
                    });
                }
                open.insert(e.process, ops.len());
                ops.push(Op {
                    invoke_pos: pos,
                    invoke: e,
                    complete_pos: None,
                    complete: None,
                });
            }
            _ => {
                let Some(i) = open.remove(&e.process) else {
                    return Err(PairError {
                        position: pos,
                        index: e.index,
                        problem: format!(
                            "`{}` completion for process {} which has no pending invocation; \
                             expected an `invoke` first",
                            e.kind.as_str(),
                            e.process
                        ),
                    });
                };
                if ops[i].invoke.f != e.f {
                    return Err(PairError {
                        position: pos,
                        index: e.index,
                        problem: format!(
                            "completion `{}` of process {} does not match its invocation `{}`",
                            e.f, e.process, ops[i].invoke.f
                        ),
                    });
                }
                // Both times come from one monotonic clock: a completion before its invocation
                // means the history was edited or spliced, and real-time order means nothing.
                if e.time < ops[i].invoke.time {
                    return Err(PairError {
                        position: pos,
                        index: e.index,
                        problem: format!(
                            "`{}` of process {} completes at time {}, before its invocation at \
                             time {}; expected a completion no earlier than its invocation",
                            e.kind.as_str(),
                            e.process,
                            e.time,
                            ops[i].invoke.time
                        ),
                    });
                }
                ops[i].complete_pos = Some(pos);
                ops[i].complete = Some(e);
            }
        }
    }
    Ok(ops)
}
