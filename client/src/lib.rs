//! keeper-client: the Rust client of keeper, a ZooKeeper-style coordination service.
//!
//! - [`NodeClient`]: the HTTP/JSON API of one server, typed, one request per call, no retries.
//!   For testers that must know exactly which node got which request.
//! - [`Session`]: a session over an ensemble, as a ZooKeeper client keeps it: heartbeats,
//!   failover, the largest zxid seen sent with every request, watch events on a channel.
//! - [`recipes`]: leader election and a lock, the ZooKeeper recipes.
//! - [`status`]: the one reader of a node's `GET /status` and `GET /v1/digest`, with their
//!   deadlines, for the cluster backends, nemesis and the harness.
//!
//! Errors are split into definite (the operation did not happen) and indeterminate (it may
//! have); see [`Error::is_indeterminate`]. The wire types come from `keeper-wire` and are
//! re-exported as [`api`]. The client deliberately has no connection-string parsing, chroot,
//! ACLs or automatic watch re-registration.

pub mod error;
pub mod node;
pub mod recipes;
mod request;
pub mod session;
pub mod status;

pub use error::{Error, Result};
pub use keeper_wire as api;
pub use node::{EventStream, NodeClient, StreamEvent};
pub use recipes::{LeaderElection, Lock};
pub use request::normalize_url;
pub use session::{ClientConfig, Event, Session, SessionState};
