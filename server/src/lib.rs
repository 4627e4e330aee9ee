//! keeper: a ZooKeeper-style coordination server.
//!
//! A replicated tree of znodes with sessions, ephemeral and sequential nodes and one-shot
//! watches, kept consistent across an ensemble by a ZAB-style protocol. The protocol, the
//! tree, sessions and watches live in [`core`], a deterministic state machine with no I/O;
//! [`shell`] runs it on tokio with real sockets, timers and an fsynced log ([`storage`]).
//! Clients use its HTTP API ([`api`], the `keeper-wire` crate, re-exported) or ZooKeeper's own wire protocol ([`zk`]).
//! keeper deliberately has no ACLs, quotas, observers or dynamic reconfiguration.

/// The wire types live in their own crate so that clients and the harness need not depend on
/// the server; `keeper::api` (and `crate::api` inside) stay the paths the server uses.
pub use keeper_wire as api;
pub mod bugs;
pub mod core;
pub mod path;
pub mod shell;
pub mod storage;
pub mod tree;
pub mod txn;
pub mod zk;
