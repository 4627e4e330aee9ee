//! Simulated watches: the clients also set one-shot watches on the keys (`exists` or `get_data`
//! with a watch, through the core's own watch support) and record them as a real run's watch
//! clients do (harness/src/workload/watch.rs and conn/): a `watch` operation whose completion
//! carries the kind and the node's zxid, and each event as an `event` observation of the
//! session, with its path, type and zxid. The watches checker (checker/src/invariants/watch.rs)
//! judges them beside the register's checkers.
//!
//! A client behaves as ZooKeeper's client library: its watches live on the node it is connected
//! to, and when it reconnects (its node crashed, or an error sent it to another node) it sets
//! them again there with `SetWatches` and the last zxid it saw, so the node fires at once what
//! changed meanwhile. Those catch-up events carry the node's zxid, not the change's, so events
//! that arrive while a `SetWatches` is in flight are recorded without a zxid (as the ZooKeeper
//! transport records events after a reconnect). Watches set on a node the client left stay
//! there (keeper keeps a session's watches per node); an event of such a left-behind
//! registration is not the client's to record, as ZooKeeper's library hands it to no watcher.
//! Events a node sends while the client is not connected to it are lost with the connection.

use std::collections::{BTreeMap, BTreeSet};

use checker::history::{Event, EventType, WATCH_F};
use keeper::api::{Consistency, KeeperError, SessionId, WatchEvent, Zxid};
use keeper::core::{ClientRequest, Read, Response};
use rand::RngExt;
use serde_json::{Value, json};

use crate::{Pending, Sim, key_name, node_name};

/// Share of a client's operations that set a watch (when a key is left that it does not watch).
pub(crate) const WATCH_SHARE: f64 = 0.15;

/// A client's watches and what it learned without asking.
#[derive(Default)]
pub(crate) struct ClientWatches {
    /// Watches this session holds, by path: whether the node existed when it was set (a data
    /// watch; else an exists watch on a missing node). Set again on every reconnect.
    held: BTreeMap<String, bool>,
    /// Events that nodes may still send for what this client left there, by (node, path): a
    /// registration from a connection it dropped, or a `SetWatches` whose outcome it does not
    /// know (it may yet fire, or register). An over-count only hides such an event; an
    /// under-count would record an event that answers no watch.
    left: BTreeMap<(u64, String), u32>,
    /// Nodes that may still carry out a `SetWatches` of this client whose outcome it does not
    /// know: their events may be its catch-up, with the node's zxid. Cleared by a later reply
    /// from the node (it takes requests in order) or its death.
    unsure: BTreeSet<u64>,
    /// The connection broke or moved: set the watches again before the next request.
    reconnect: bool,
    /// A `SetWatches` is in flight: events now may be its catch-up, with the node's zxid.
    resyncing: bool,
    /// Observations held while one of the client's operations is in flight (the harness's
    /// `Observer`): the history shows an operation's completion before what came during it.
    observed: Vec<Event>,
    /// The session's end was recorded.
    ended: bool,
}

impl ClientWatches {
    /// Whether a `watch` operation on `key` may be issued: one watch per path at a time, so
    /// that each event answers one recorded watch.
    pub(crate) fn may_watch(&self, key: &str) -> bool {
        !self.held.contains_key(key)
    }
}

impl Sim {
    /// Client `c` draws a `watch` operation on a key it does not watch yet; `None` to do
    /// something else.
    pub(crate) fn draw_watch(
        &mut self,
        c: usize,
        session: SessionId,
    ) -> Option<(&'static str, String, Value, ClientRequest)> {
        if !self.rng.random_bool(WATCH_SHARE) {
            return None;
        }
        let key = key_name(self.rng.random_range(0..self.swarm.keys));
        if !self.clients[c].watches.may_watch(&key) {
            return None;
        }
        let exists = self.rng.random_bool(0.5);
        let consistency = if self.rng.random_bool(0.5) {
            Consistency::Local
        } else {
            Consistency::Linearizable
        };
        let read = if exists {
            Read::Exists { path: key.clone() }
        } else {
            Read::GetData { path: key.clone() }
        };
        let kind = if exists { "exists" } else { "data" };
        let body = ClientRequest::Read {
            session,
            last_zxid: self.clients[c].last_zxid,
            read,
            watch: true,
            consistency,
        };
        Some((WATCH_F, key, json!({ "kind": kind }), body))
    }

    /// A `watch` operation's successful reply: the completion's value, as the watch client
    /// records it (the invocation's kind and the read's result), and the watch is held.
    pub(crate) fn watch_set(
        &mut self,
        c: usize,
        node: u64,
        key: &str,
        inv: &Value,
        resp: Response,
    ) -> Value {
        let mut value = inv.clone();
        let existed = match resp {
            Response::Exists { stat } => {
                value["result"] = json!({ "exists": stat.is_some() });
                stat.is_some()
            }
            Response::Data { data, stat } => {
                value["result"] = json!({ "data": data, "version": stat.version });
                true
            }
            other => panic!("a watch's read answered {other:?}"),
        };
        let w = &mut self.clients[c].watches;
        w.held.insert(key.to_string(), existed);
        // The node keeps one registration per session and path: one left there earlier is
        // this one now (and what it took before this request, it has carried out).
        w.left.remove(&(node, key.to_string()));
        value
    }

    /// Client `c` drops its connection (an error, or its node died): its watches may stay on
    /// that node, and it sets them again on its next connection.
    pub(crate) fn disconnect(&mut self, c: usize) {
        let node = self.clients[c].node;
        let w = &mut self.clients[c].watches;
        for path in w.held.keys() {
            *w.left.entry((node, path.clone())).or_default() += 1;
        }
        w.reconnect = true;
        w.resyncing = false;
    }

    /// Node `id` dropped `session`'s watches unfired (a SNAP sync): its stream said so, and the
    /// client sets them again there, as a ZooKeeper client does after the disconnect it gets.
    pub(crate) fn watches_lost(&mut self, id: u64, session: SessionId) {
        let Some(c) = self.clients.iter().position(|x| x.session == Some(session)) else {
            return;
        };
        if self.clients[c].node != id {
            return;
        }
        let w = &mut self.clients[c].watches;
        w.left.retain(|(n, _), _| *n != id);
        w.reconnect = true;
        w.resyncing = false;
    }

    /// Node `id` died: every watch it held is gone, and the clients connected to it lost their
    /// connection.
    pub(crate) fn watches_node_died(&mut self, id: u64) {
        for client in &mut self.clients {
            client.watches.left.retain(|(n, _), _| *n != id);
            client.watches.unsure.remove(&id);
            if client.node == id {
                client.watches.reconnect = true;
                client.watches.resyncing = false;
            }
        }
    }

    /// Client `c` starts afresh without its session (it expired, or was abandoned): its watches
    /// are gone with it. Records the expiry if the server said so and it is not recorded yet.
    pub(crate) fn session_gone(&mut self, c: usize, expired: bool) {
        if expired && !self.clients[c].watches.ended {
            self.observe(c, None, "expired", None, json!({"state": "expired"}), None);
        }
        self.flush_observed(c);
        self.clients[c].session = None;
        self.clients[c].watches = ClientWatches::default();
    }

    /// Before its next request, a reconnected client sets its watches again; returns the
    /// request, or `None` when it needs none.
    pub(crate) fn rewatch(&mut self, c: usize, session: SessionId) -> Option<ClientRequest> {
        let last_zxid = self.clients[c].last_zxid;
        let w = &mut self.clients[c].watches;
        if !w.reconnect {
            return None;
        }
        w.reconnect = false;
        if w.held.is_empty() {
            return None;
        }
        w.resyncing = true;
        let (mut data, mut exist) = (Vec::new(), Vec::new());
        for (path, existed) in &w.held {
            if *existed {
                data.push(path.clone());
            } else {
                exist.push(path.clone());
            }
        }
        Some(ClientRequest::SetWatches {
            session,
            last_zxid,
            relative_zxid: last_zxid,
            data,
            exist,
            child: Vec::new(),
        })
    }

    /// The outcome of client `c`'s `SetWatches` to `node`, for `paths`.
    pub(crate) fn rewatched(
        &mut self,
        c: usize,
        node: u64,
        paths: &[String],
        result: &Result<Response, KeeperError>,
    ) {
        let w = &mut self.clients[c].watches;
        w.resyncing = false;
        match result {
            // Every request the node took before it is carried out, and a registration left
            // there is the one just set. Not so for a path whose catch-up event fired: keeper
            // sends it without consuming a registration the session still has there, which
            // then fires too.
            Ok(_) => {
                for path in paths.iter().filter(|p| w.held.contains_key(*p)) {
                    w.left.remove(&(node, path.clone()));
                }
            }
            // It may yet be carried out there (a paused node takes it later): each path may
            // fire once more, with the node's zxid.
            Err(e) if e.error.is_indeterminate() => {
                w.unsure.insert(node);
                for path in paths {
                    *w.left.entry((node, path.clone())).or_default() += 1;
                }
            }
            Err(_) => {}
        }
    }

    /// A reply from `node` reached client `c`: the node carried out every request of the
    /// client it took before.
    pub(crate) fn replied(&mut self, c: usize, node: u64) {
        self.clients[c].watches.unsure.remove(&node);
    }

    /// Node `node` sends a watch event to `session`'s event stream.
    pub(crate) fn watch_event(&mut self, node: u64, session: SessionId, event: WatchEvent) {
        let Some(c) = self.clients.iter().position(|x| x.session == Some(session)) else {
            return;
        };
        let path = event.path.clone();
        let connected = self.clients[c].node == node;
        let w = &mut self.clients[c].watches;
        let key = (node, path.clone());
        let stray = w.left.get(&key).is_some_and(|n| *n > 0);
        if stray && let Some(n) = w.left.get_mut(&key) {
            *n -= 1;
        }
        if !connected || w.reconnect {
            // Not connected there: the event is lost with the connection.
            return;
        }
        let ours = w.held.remove(&path).is_some();
        if !ours && stray {
            return;
        }
        if ours && let Some(n) = w.left.get_mut(&key).filter(|_| stray) {
            // Ours after all: what was left there may still come.
            *n += 1;
        }
        // Without a zxid while a `SetWatches` may be catching up: the node then sends its own
        // zxid, not the change's.
        let zxid = (!w.resyncing && !w.unsure.contains(&node)).then_some(event.zxid);
        let client = &mut self.clients[c];
        client.last_zxid = client.last_zxid.max(event.zxid);
        let value = json!({"path": path, "zxid": zxid, "type": event.kind});
        self.observe(c, Some(node), "event", Some(path), value, zxid);
    }

    /// Node `node` ended `session` (its expiry or close committed): its event stream says so.
    pub(crate) fn session_ended(
        &mut self,
        node: u64,
        session: SessionId,
        expired: bool,
        zxid: Zxid,
    ) {
        let Some(c) = self.clients.iter().position(|x| x.session == Some(session)) else {
            return;
        };
        let w = &self.clients[c].watches;
        if self.clients[c].node != node || w.reconnect || w.ended || !expired {
            return;
        }
        self.observe(
            c,
            Some(node),
            "expired",
            None,
            json!({"state": "expired"}),
            Some(zxid),
        );
    }

    /// Records an observation of client `c` (held while one of its operations is in flight).
    fn observe(
        &mut self,
        c: usize,
        node: Option<u64>,
        f: &str,
        key: Option<String>,
        value: Value,
        zxid: Option<Zxid>,
    ) {
        let client = &self.clients[c];
        let mut e = Event::new(0, 0, client.process, EventType::Ok, f, value);
        e.key = key;
        e.node = Some(node_name(node.unwrap_or(client.node)));
        e.session = client.session;
        e.zxid = zxid;
        let in_flight = matches!(client.pending, Some((_, _, Pending::Op { .. }, _)));
        if f == "expired" {
            self.clients[c].watches.ended = true;
        }
        if in_flight {
            self.clients[c].watches.observed.push(e);
        } else {
            self.record(e);
        }
    }

    /// Records what client `c` observed during its operation, once its completion is recorded.
    pub(crate) fn flush_observed(&mut self, c: usize) {
        for e in std::mem::take(&mut self.clients[c].watches.observed) {
            self.record(e);
        }
    }
}
