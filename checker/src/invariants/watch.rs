//! Watches: each fires at most once, for a change that happened, after it was set, and fires at
//! all when its change completed well before the end of the run.
//!
//! Two kinds of evidence, often in one history. keeper's HTTP API reports the zxid of the read
//! that set a watch and of each event; ZooKeeper 3.8 (and keeper's ZooKeeper port, through the
//! `zookeeper-client` crate) reports neither: a watch carries at most the Stat its read returned,
//! an event only its path and type. Rules that need the zxids apply where both are known; the
//! others lean on what a correct server guarantees without them (docs/CHECKER.md, "Checking
//! with few zxids"):
//! - a change's request is sent before the server applies it, and a notification is sent after:
//!   so an event's cause was invoked before the event was recorded, and likewise its watch;
//! - a watch fires once: so each event needs a watch of its own, set before it and not fired;
//! - a read that returned a Stat saw no change of the watched kind after it: the watch fires for
//!   the first change above that zxid, never for one at or below it;
//! - a read served before a write was submitted saw a state older than the write: a change
//!   invoked after the watch completed, or with a zxid above the watch's Stat, must fire it.

use std::collections::HashMap;

use serde_json::{Value, json};

use super::{WATCH_DELIVERY_GRACE_NS, invalid, require_evidence, views};
use crate::history::{EventType, Op};
use crate::verdict::{CheckerResult, Counterexample};

const NAME: &str = "watches";

/// The event types, normalised.
const EVENT_TYPES: [&str; 4] = ["created", "deleted", "changed", "children"];

/// Watch event types, normalised: `created`, `deleted`, `changed`, `children`.
fn event_type(t: &str) -> &'static str {
    match t
        .to_ascii_lowercase()
        .trim_start_matches("node")
        .trim_start_matches('_')
    {
        "created" => "created",
        "deleted" => "deleted",
        "changed" | "datachanged" | "data_changed" => "changed",
        "children" | "childrenchanged" | "children_changed" | "child" => "children",
        _ => "other",
    }
}

fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) => "/",
        Some(i) => &path[..i],
        None => "",
    }
}

/// Does a watch of `kind` (`data`, `exists`, `children`, or any) fire for an event of `ty`?
fn watch_fires(kind: &str, ty: &str) -> bool {
    match kind {
        "children" => matches!(ty, "children" | "deleted"),
        "data" | "exists" => matches!(ty, "created" | "deleted" | "changed"),
        _ => true,
    }
}

/// Which events a watch of `kind` can take: 0 the node's own (data, exists), 1 its children's,
/// 2 any (a watch whose kind was not recorded).
fn kind_class(kind: &str) -> u8 {
    match kind {
        "children" => 1,
        "data" | "exists" => 0,
        _ => 2,
    }
}

/// A write that triggers watches: its zxid when known, and the operation.
type Change<'o, 'e> = (Option<u64>, &'o Op<'e>);

/// An event as the missed-watch rule needs it: (position, type, whether it carried a zxid).
type Seen = (usize, &'static str, bool);

/// A watch set by a read, not known to have fired.
#[derive(Clone, Copy)]
struct Watch<'o, 'e> {
    /// The zxid the read reported (the server's view when it set the watch), where known.
    zxid: Option<u64>,
    /// Without it: the Stat the read returned, the watched node's mzxid (exists, data) or the
    /// parent's pzxid (children). No change the watch fires for happened between it and the read.
    anchor: Option<u64>,
    kind: &'o str,
    op: &'o Op<'e>,
}

/// The point a zxid-less watch was set at, from the Stat its read returned (`"stat"` in the
/// completion's value, or in its `result`): `mzxid` for a watch on the node, `pzxid` for one on
/// its children. `None` when the read returned no Stat (exists of a missing node).
fn anchor_of(op: &Op<'_>, kind: &str) -> Option<u64> {
    let v = op.result();
    let stat = v
        .get("stat")
        .filter(|s| !s.is_null())
        .or_else(|| v.get("result").and_then(|r| r.get("stat")))?;
    let field = if kind == "children" { "pzxid" } else { "mzxid" };
    stat.get(field).and_then(Value::as_u64)
}

/// The watches of one history, walked in the order the client learned of each thing.
struct Walk<'o, 'e> {
    /// (path, type) -> changes that would trigger it, in invocation order.
    changes: HashMap<(&'o str, &'static str), Vec<Change<'o, 'e>>>,
    /// Session -> the last position where its watches may have been lost (it ended, or an
    /// operation of it ended indeterminate: the connection broke).
    troubled: HashMap<u64, usize>,
    /// (session, path) -> watches not known to have fired.
    pending: HashMap<(u64, &'o str), Vec<Watch<'o, 'e>>>,
    last_event_zxid: HashMap<u64, (u64, &'o Op<'e>)>,
    /// Writes that carry their zxid, by invocation: (position, the smallest zxid of this one and
    /// every one invoked after it). A write completed before position p has a zxid below that
    /// of every write invoked after p.
    later_zxids: Vec<(usize, u64)>,
    /// Every watch without a zxid, for the missed-watch rule.
    zxidless: Vec<Watch<'o, 'e>>,
    /// (session, path) -> every event: (position, type, whether it carried a zxid).
    events: HashMap<(u64, &'o str), Vec<Seen>>,
    /// Session -> its `ok` operations and observations that carry a zxid: (completion
    /// position, zxid, completion time), by position. Evidence of what its node had applied.
    applied: HashMap<u64, Vec<(usize, u64, u64)>>,
}

impl<'o, 'e> Walk<'o, 'e> {
    fn new(ops: &'o [Op<'e>]) -> Self {
        let mut changes: HashMap<(&str, &'static str), Vec<Change<'_, '_>>> = HashMap::new();
        // session -> ephemeral paths it created (or may have): they vanish when it ends.
        let mut ephemerals: HashMap<u64, Vec<(&str, usize)>> = HashMap::new();
        for op in ops {
            if op.kind() == EventType::Fail || op.invoke.is_observation() {
                continue;
            }
            let Some(path) = op.key() else { continue };
            let zxid = if op.kind() == EventType::Ok {
                op.zxid()
            } else {
                None
            };
            let kinds: &[(&str, &'static str)] = match op.f() {
                "write" | "cas" | "set" => &[(path, "changed")],
                "create" | "create_ephemeral" => &[(path, "created"), (parent(path), "children")],
                "delete" => &[(path, "deleted"), (parent(path), "children")],
                _ => &[],
            };
            for &(p, t) in kinds {
                changes.entry((p, t)).or_default().push((zxid, op));
            }
            if op.f() == "create_ephemeral"
                && let Some(s) = op.session()
            {
                ephemerals.entry(s).or_default().push((path, op.invoke_pos));
            }
        }
        // A session's end deletes its ephemeral nodes: a cause for their events, at a zxid the
        // history does not give.
        for op in ops {
            let ends = matches!(
                (op.f(), op.kind()),
                ("close_session", EventType::Ok | EventType::Info) | ("expired", EventType::Ok)
            );
            let Some(paths) = op
                .session()
                .filter(|_| ends)
                .and_then(|s| ephemerals.get(&s))
            else {
                continue;
            };
            for &(path, created) in paths {
                if created < op.invoke_pos {
                    changes
                        .entry((path, "deleted"))
                        .or_default()
                        .push((None, op));
                    changes
                        .entry((parent(path), "children"))
                        .or_default()
                        .push((None, op));
                }
            }
        }
        for list in changes.values_mut() {
            list.sort_by_key(|(_, c)| c.invoke_pos);
        }
        let mut troubled: HashMap<u64, usize> = HashMap::new();
        for op in ops {
            if let Some(s) = op.session()
                && (op.kind() == EventType::Info || matches!(op.f(), "expired" | "close_session"))
            {
                let e = troubled.entry(s).or_insert(0);
                *e = (*e).max(op.invoke_pos);
            }
        }
        let mut later_zxids: Vec<(usize, u64)> = changes
            .values()
            .flatten()
            .filter_map(|(z, c)| Some((c.invoke_pos, (*z)?)))
            .collect();
        later_zxids.sort_unstable();
        let mut least = u64::MAX;
        for entry in later_zxids.iter_mut().rev() {
            least = least.min(entry.1);
            entry.1 = least;
        }
        let mut applied: HashMap<u64, Vec<(usize, u64, u64)>> = HashMap::new();
        for op in ops {
            if let (Some(s), Some(z), Some(t), EventType::Ok) =
                (op.session(), op.zxid(), op.complete_time(), op.kind())
            {
                let pos = op.complete_pos.unwrap_or(op.invoke_pos);
                applied.entry(s).or_default().push((pos, z, t));
            }
        }
        for list in applied.values_mut() {
            list.sort_unstable();
        }
        Walk {
            later_zxids,
            changes,
            troubled,
            applied,
            pending: HashMap::new(),
            last_event_zxid: HashMap::new(),
            zxidless: Vec::new(),
            events: HashMap::new(),
        }
    }

    /// Is the change `c`, whose zxid is unknown, certainly at or below `zxid`? It is when it
    /// completed before a write with a zxid at or below `zxid` was invoked.
    fn surely_at_or_below(&self, c: &Op<'_>, zxid: u64) -> bool {
        let Some(done) = c.complete_pos.filter(|_| c.kind() == EventType::Ok) else {
            return false;
        };
        let i = self.later_zxids.partition_point(|(pos, _)| *pos <= done);
        self.later_zxids
            .get(i)
            .is_some_and(|(_, least)| *least <= zxid)
    }

    fn troubled_since(&self, session: u64, pos: usize) -> bool {
        self.troubled.get(&session).is_some_and(|&p| p >= pos)
    }

    /// Had the session's node certainly applied `zxid` after position `after`, early enough
    /// (by `by_time`) that the event of a watch it fired had time to arrive? A reply or event of
    /// the session with a zxid at or above it says so. A node cut off from its leader never
    /// applies the change, and its sessions' watches cannot fire until it does.
    fn node_applied(&self, session: u64, zxid: u64, after: usize, by_time: u64) -> bool {
        self.applied.get(&session).is_some_and(|list| {
            list.iter()
                .any(|&(pos, z, t)| pos > after && z >= zxid && t <= by_time)
        })
    }

    /// A watch event that carries its zxid: the rules of keeper's HTTP histories. Returns the
    /// violation, if any.
    fn event_with_zxid(
        &mut self,
        op: &'o Op<'e>,
        s: u64,
        path: &'o str,
        ty: &'static str,
        z: u64,
    ) -> Option<CheckerResult> {
        if let Some(&(prev, prev_op)) = self.last_event_zxid.get(&s)
            && z < prev
        {
            let text =
                format!("session {s} received the event of zxid {z} after that of zxid {prev}");
            return Some(invalid(
                NAME,
                text.clone(),
                json!({"session": s}),
                Counterexample::new(NAME, text, views(&[prev_op, op])),
            ));
        }
        self.last_event_zxid.insert(s, (z, op));
        // The change must have happened: a write of that type on that path with that zxid, or
        // one whose zxid is unknown (indeterminate), invoked before the event arrived.
        let candidates = self.changes.get(&(path, ty));
        let cause = candidates.and_then(|c| {
            c.iter().find(|(cz, _)| *cz == Some(z)).or_else(|| {
                c.iter()
                    .find(|(cz, w)| cz.is_none() && w.invoke_pos < op.invoke_pos)
            })
        });
        match cause {
            None => {
                let text = format!(
                    "session {s} got a {ty} event for {path} at zxid {z}, a change that did not happen"
                );
                return Some(invalid(
                    NAME,
                    text.clone(),
                    json!({"session": s, "path": path, "zxid": z}),
                    Counterexample::new(NAME, text, views(&[op])),
                ));
            }
            Some((_, w)) if w.invoke_pos > op.invoke_pos => {
                let text = format!(
                    "session {s} got the {ty} event for {path} before the change was even requested"
                );
                return Some(invalid(
                    NAME,
                    text.clone(),
                    json!({"session": s, "path": path, "zxid": z}),
                    Counterexample::new(NAME, text, views(&[op, w])),
                ));
            }
            Some(_) => {}
        }
        // The event consumes every watch of the session on the path set before the change. A
        // watch fires on the FIRST change after it was set: if a known change came between the
        // watch and this event, the watch's event for it was lost.
        let troubled = &self.troubled;
        let changes = &self.changes;
        let list = self.pending.entry((s, path)).or_default();
        let before = list.len();
        let mut lost = None;
        list.retain(|w| {
            let Some(wz) = w.zxid else { return true };
            if !(wz < z && watch_fires(w.kind, ty)) {
                return true;
            }
            let reconnected = troubled.get(&s).is_some_and(|&p| p >= w.op.invoke_pos);
            if lost.is_none() && !reconnected {
                lost = EVENT_TYPES
                    .iter()
                    .filter(|t| watch_fires(w.kind, t))
                    .filter_map(|t| changes.get(&(path, *t)))
                    .flatten()
                    .filter_map(|(cz, c)| cz.filter(|cz| wz < *cz && *cz < z).map(|cz| (cz, *c)))
                    .min_by_key(|(cz, _)| *cz)
                    .map(|(cz, c)| (wz, w.op, cz, c));
            }
            false
        });
        if let Some((wz, w, cz, c)) = lost {
            let text = format!(
                "session {s}'s watch on {path} (set at zxid {wz}) should have fired for the change at zxid {cz}, but its first event was zxid {z}: an event was lost"
            );
            return Some(invalid(
                NAME,
                text.clone(),
                json!({"session": s, "path": path, "watch_zxid": wz, "missed_zxid": cz, "event_zxid": z}),
                Counterexample::new(NAME, text, views(&[w, c, op])),
            ));
        }
        if list.len() == before && take_watch(list, op, ty, false).is_none() {
            let text = format!(
                "session {s} got a {ty} event for {path} at zxid {z} with no watch pending: fired twice, or never set"
            );
            return Some(invalid(
                NAME,
                text.clone(),
                json!({"session": s, "path": path, "zxid": z}),
                Counterexample::new(NAME, text, views(&[op])),
            ));
        }
        None
    }

    /// A watch event without a zxid (ZooKeeper's): its cause and its watch are found by order.
    /// Returns the violation, if any.
    fn event_without_zxid(
        &mut self,
        op: &'o Op<'e>,
        s: u64,
        path: &'o str,
        ty: &'static str,
    ) -> Option<CheckerResult> {
        // Its cause: a change of that path and type invoked before the event was recorded. A
        // server that re-registers a data watch after a reconnect reports a node re-created
        // since as changed (its mzxid moved): a create is a cause of `changed` too. How many
        // events one change gives is not checked: a client library hands one notification to
        // each of its watchers on the path (the `zookeeper-client` crate does), and a harness
        // may record each.
        let causes: Vec<&Change<'o, 'e>> = self
            .changes
            .get(&(path, ty))
            .into_iter()
            .chain(
                (ty == "changed")
                    .then(|| self.changes.get(&(path, "created")))
                    .flatten(),
            )
            .flatten()
            .collect();
        let requested: Vec<&Change<'o, 'e>> = causes
            .iter()
            .copied()
            .filter(|(_, c)| c.invoke_pos < op.invoke_pos)
            .collect();
        if requested.is_empty() {
            let (text, cx) = match causes.iter().min_by_key(|(_, c)| c.invoke_pos) {
                None => (
                    format!(
                        "session {s} got a {ty} event for {path}, a change that did not happen"
                    ),
                    vec![op],
                ),
                Some((_, c)) => (
                    format!(
                        "session {s} got the {ty} event for {path} before the change was even requested"
                    ),
                    vec![op, *c],
                ),
            };
            return Some(invalid(
                NAME,
                text.clone(),
                json!({"session": s, "path": path, "type": ty}),
                Counterexample::new(NAME, text, views(&cx)),
            ));
        }
        // Its watch: one of the session's on the path, set before the event was recorded and
        // not fired yet.
        let list = self.pending.entry((s, path)).or_default();
        let Some((w, alone)) = take_watch(list, op, ty, true) else {
            let last_set = self
                .zxidless
                .iter()
                .rev()
                .find(|w| w.op.session() == Some(s) && w.op.key() == Some(path))
                .map(|w| w.op);
            let text = format!(
                "session {s} got a {ty} event for {path} with no watch pending: it fired twice, or before its watch was set"
            );
            let mut cx = vec![op];
            cx.extend(last_set);
            return Some(invalid(
                NAME,
                text.clone(),
                json!({"session": s, "path": path, "type": ty}),
                Counterexample::new(NAME, text, views(&cx)),
            ));
        };
        // When that watch is certainly the one that fired and its read returned a Stat, the
        // change came after the Stat: one with a zxid above it, or one whose zxid is unknown and
        // not known to be below it. (Not "not over before the watch was asked for": a lagging
        // follower serves a read from a state older than writes other sessions completed.) An
        // older change firing it is a notification sent twice, or for the wrong watch.
        if let (true, Some(anchor)) = (alone, w.anchor) {
            let after = requested.iter().any(|(cz, c)| match cz {
                Some(cz) => *cz > anchor,
                None => !self.surely_at_or_below(c, anchor),
            });
            if !after {
                let text = format!(
                    "session {s} got a {ty} event for {path} on the watch set when the node's Stat was at zxid {anchor}, but no such change came after it: an old change fired it (a notification sent twice?)"
                );
                return Some(invalid(
                    NAME,
                    text.clone(),
                    json!({"session": s, "path": path, "type": ty, "anchor": anchor}),
                    Counterexample::new(NAME, text, views(&[w.op, op])),
                ));
            }
        }
        None
    }
}

/// Takes, for `event` of type `ty`, a watch of `list` (only a zxid-less one unless `any`) that
/// was invoked before it and fires for it, and says whether it was the only one; `None` when
/// there is none. Several such
/// watches may all have fired with this one event (a server keeps one per session and path),
/// but one certainly did: the one taken is the oldest, and of the narrowest kind, which leaves
/// the most for later events. A deletion fires watches on the node and on its children alike:
/// when both kinds are pending, which one fired is not known, so none is taken.
fn take_watch<'o, 'e>(
    list: &mut Vec<Watch<'o, 'e>>,
    event: &Op<'_>,
    ty: &str,
    any: bool,
) -> Option<(Watch<'o, 'e>, bool)> {
    let candidates: Vec<usize> = (0..list.len())
        .filter(|&i| {
            let w = &list[i];
            (any || w.zxid.is_none())
                && w.op.invoke_pos < event.invoke_pos
                && watch_fires(w.kind, ty)
        })
        .collect();
    let &first = candidates.first()?;
    let alone = candidates.len() == 1;
    let class = |i: usize| kind_class(list[i].kind);
    if ty == "deleted" && candidates.iter().any(|&i| class(i) != class(first)) {
        return Some((list[first], false));
    }
    let taken = candidates
        .iter()
        .copied()
        .min_by_key(|&i| (class(i) == 2, list[i].op.invoke_pos))
        .unwrap_or(first);
    Some((list.remove(taken), alone))
}

/// Watches: each fires at most once, for a change that happened (a write with the event's zxid,
/// or without zxids one invoked before the event), after
/// the watch was set; a session's events come in zxid order where they carry one; and a watch
/// whose triggering change completed well before the end of the run did fire, once its node
/// had applied the change (with zxids: the session later saw one at or above the change's).
pub fn watches(ops: &[Op<'_>]) -> CheckerResult {
    let end_time = ops
        .iter()
        .filter_map(|o| o.complete_time().or(Some(o.invoke_time())))
        .max()
        .unwrap_or(0);
    let mut walk = Walk::new(ops);
    let (mut set, mut fired) = (0usize, 0usize);
    let (mut anchored, mut fired_without_zxid) = (0usize, 0usize);
    let mut set_with_zxid = 0usize;
    // A watch is learned of when its read completes; one without a zxid is placed at its
    // invocation, the earliest point an event could be its own (the harness may record an event
    // that arrived with the read's reply before the reply).
    let mut by_pos: Vec<&Op<'_>> = ops.iter().collect();
    by_pos.sort_by_key(|o| {
        if o.f() == "watch" && o.kind() == EventType::Ok && o.zxid().is_none() {
            o.invoke_pos
        } else {
            o.complete_pos.unwrap_or(o.invoke_pos)
        }
    });
    for op in by_pos {
        if op.f() == "watch" && op.kind() == EventType::Ok {
            let (Some(s), Some(path)) = (op.session(), op.key()) else {
                continue;
            };
            let kind = op
                .value()
                .get("kind")
                .and_then(Value::as_str)
                .unwrap_or("any");
            let zxid = op.zxid();
            let anchor = if zxid.is_none() {
                anchor_of(op, kind)
            } else {
                None
            };
            let w = Watch {
                zxid,
                anchor,
                kind,
                op,
            };
            walk.pending.entry((s, path)).or_default().push(w);
            if zxid.is_none() {
                walk.zxidless.push(w);
                anchored += usize::from(anchor.is_some());
            } else {
                set_with_zxid += 1;
            }
            set += 1;
            continue;
        }
        if op.f() != "event" {
            continue;
        }
        fired += 1;
        let v = op.result();
        let (Some(s), Some(path)) = (
            op.session(),
            v.get("path").and_then(Value::as_str).or(op.key()),
        ) else {
            let text = "a watch event without session or path".to_string();
            return CheckerResult::new(NAME, crate::verdict::Verdict::Unknown, text, json!({}));
        };
        let ty = event_type(v.get("type").and_then(Value::as_str).unwrap_or(""));
        // ZooKeeper 3.8 sends notifications with zxid -1, recorded as null: unknown.
        let zxid = v.get("zxid").and_then(Value::as_u64).or(op.zxid());
        walk.events
            .entry((s, path))
            .or_default()
            .push((op.invoke_pos, ty, zxid.is_some()));
        let checked = match zxid {
            Some(z) => walk.event_with_zxid(op, s, path, ty, z),
            None => {
                fired_without_zxid += 1;
                walk.event_without_zxid(op, s, path, ty)
            }
        };
        if let Some(violation) = checked {
            return violation;
        }
    }
    // Did an event recorded after `w` was invoked perhaps come from it? For a watch with a
    // zxid, events with one consumed it exactly above; only one without may have.
    let maybe_fired = |w: &Watch<'_, '_>, s: u64, path: &str| {
        walk.events.get(&(s, path)).is_some_and(|evs| {
            evs.iter().any(|&(pos, ty, with_zxid)| {
                pos > w.op.invoke_pos && watch_fires(w.kind, ty) && !(with_zxid && w.zxid.is_some())
            })
        })
    };
    // Watches that should have fired and did not.
    let mut missed = Vec::new();
    for ((s, path), list) in &walk.pending {
        for w in list {
            let Some(wz) = w.zxid else { continue };
            if walk.troubled_since(*s, w.op.invoke_pos) || maybe_fired(w, *s, path) {
                continue;
            }
            let set_at = w.op.complete_pos.unwrap_or(w.op.invoke_pos);
            let trigger = EVENT_TYPES.iter().find_map(|ty| {
                if !watch_fires(w.kind, ty) {
                    return None;
                }
                walk.changes.get(&(*path, *ty))?.iter().find(|(cz, c)| {
                    cz.is_some_and(|cz| {
                        cz > wz
                            && walk.node_applied(
                                *s,
                                cz,
                                set_at,
                                end_time.saturating_sub(WATCH_DELIVERY_GRACE_NS),
                            )
                    }) && c
                        .complete_time()
                        .is_some_and(|t| t + WATCH_DELIVERY_GRACE_NS <= end_time)
                })
            });
            if let Some((_, c)) = trigger {
                missed.push((w.op, *c));
            }
        }
    }
    // Without the read's zxid, a change certainly after the watch was set: one invoked after
    // the read completed (writes are ordered after every state a completed read could have
    // seen), or one whose zxid is above the Stat the read returned. Only changes that took
    // effect (`ok`), and not an expiry the history has no zxid for: a server may announce it
    // before the session's close commits (and a new leader then revives the session).
    for w in &walk.zxidless {
        let (Some(s), Some(path)) = (w.op.session(), w.op.key()) else {
            continue;
        };
        if walk.troubled_since(s, w.op.invoke_pos) || maybe_fired(w, s, path) {
            continue;
        }
        let after_read = w.op.complete_pos.unwrap_or(usize::MAX);
        let trigger = EVENT_TYPES.iter().find_map(|ty| {
            if !watch_fires(w.kind, ty) {
                return None;
            }
            walk.changes.get(&(path, *ty))?.iter().find(|(cz, c)| {
                c.kind() == EventType::Ok
                    && c.f() != "expired"
                    && (c.invoke_pos > after_read || cz.zip(w.anchor).is_some_and(|(cz, a)| cz > a))
                    && c.complete_time()
                        .is_some_and(|t| t + WATCH_DELIVERY_GRACE_NS <= end_time)
            })
        });
        if let Some((_, c)) = trigger {
            missed.push((w.op, *c));
        }
    }
    missed.sort_by_key(|(w, _)| w.invoke_pos);
    if let Some(&(w, c)) = missed.first() {
        let text = format!(
            "{} watch(es) never fired although the change completed; first: session {} on {}",
            missed.len(),
            w.session().unwrap_or(0),
            w.key().unwrap_or("?")
        );
        return invalid(
            NAME,
            text.clone(),
            json!({"missed": missed.len()}),
            Counterexample::new(NAME, text, views(&[w, c])),
        );
    }
    let without_zxid = set - set_with_zxid;
    let summary = if without_zxid == 0 && fired_without_zxid == 0 {
        format!("{set} watches set, {fired} events")
    } else {
        format!(
            "{set} watches set ({set_with_zxid} at a known zxid, {anchored} anchored by the Stat read, {} by real time only), {fired} events ({} with a zxid, {fired_without_zxid} without: checked by order and count)",
            without_zxid - anchored,
            fired - fired_without_zxid
        )
    };
    require_evidence(
        CheckerResult::new(
            NAME,
            crate::verdict::Verdict::Valid,
            summary,
            json!({"watches": set, "events": fired,
                   "watches_with_zxid": set_with_zxid, "watches_anchored": anchored,
                   "events_without_zxid": fired_without_zxid}),
        ),
        set,
        "no watch was ever set",
    )
}
