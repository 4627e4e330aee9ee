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
