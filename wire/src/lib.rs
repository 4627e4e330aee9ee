//! keeper-wire: what keeper says on the wire, and nothing else.
//!
//! The HTTP/JSON API's request and reply bodies and error codes ([`api`]), zxids and the ids
//! derived from them ([`zxid`]), and a node's `GET /status` ([`status`]). The server, the
//! client, the cluster backends and the harness all read and write these types, so a field
//! changes in one place. This crate deliberately holds no behaviour beyond serde and the
//! small rules that are part of the format (a zxid's halves, an error code's HTTP status and
//! whether it is indeterminate): no I/O, no async, no server logic.

pub mod api;
pub mod status;
pub mod zxid;

pub use api::*;
pub use status::*;
pub use zxid::*;
