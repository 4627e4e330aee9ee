//! The invariants of a coordination service that are not (only) linearizability: single leader,
//! election safety, sequential nodes, sessions and ephemerals, watches, monotonic reads.
//! Each checker reads the operations (or `/status` samples) and returns a [`CheckerResult`];
//! docs/HISTORY.md says which operations each one reads.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde_json::{Value, json};

use crate::history::{EventType, Op};
use crate::reader::StatusSample;
use crate::verdict::{CheckerResult, Counterexample, OpView, Verdict};

/// How long after a triggering change completed the history must go on before a watch that
/// never fired counts as missed: delivery is asynchronous, and a run may end mid-flight.
pub const WATCH_DELIVERY_GRACE_NS: u64 = 5_000_000_000;
/// Violations listed in a checker's details, at most.
const MAX_LISTED: usize = 20;

/// An operation placed in real time: `(invocation position, completion position, value)`.
type Timed = (usize, usize, i128);

/// Finds `a`, `b` with `a` completed before `b` was invoked and `value(a) > value(b)` (or `>=`
/// with `strict`): the first such `b` in invocation order, with the largest earlier `a`.
fn real_time_inversion(items: &[Timed], strict: bool) -> Option<(usize, usize)> {
    let mut by_complete: Vec<usize> = (0..items.len()).collect();
    by_complete.sort_by_key(|&i| items[i].1);
    let mut by_invoke: Vec<usize> = (0..items.len()).collect();
    by_invoke.sort_by_key(|&i| items[i].0);
    let mut j = 0;
    let mut best: Option<usize> = None;
    for b in by_invoke {
        while j < by_complete.len() && items[by_complete[j]].1 < items[b].0 {
            let a = by_complete[j];
            if best.is_none_or(|x| items[a].2 > items[x].2) {
                best = Some(a);
            }
            j += 1;
        }
        if let Some(a) = best {
            let (va, vb) = (items[a].2, items[b].2);
            if va > vb || (strict && va == vb) {
                return Some((a, b));
            }
        }
    }
    None
}

fn views(ops: &[&Op<'_>]) -> Vec<OpView> {
    let mut v: Vec<OpView> = ops.iter().map(|o| OpView::of(o)).collect();
    v.sort_by_key(|o| o.invoke_index);
    v
}

fn invalid(name: &str, summary: String, details: Value, cx: Counterexample) -> CheckerResult {
    let mut r = CheckerResult::new(name, Verdict::Invalid, summary, details);
    r.counterexample = Some(cx);
    r
}

/// A checker's `valid` stands only on evidence: with nothing of what it needs in the history
/// (`seen == 0`), it reports `unknown` and says what was missing. Every checker's valid exit goes
/// through here.
pub fn require_evidence(result: CheckerResult, seen: usize, missing: &str) -> CheckerResult {
    if result.verdict != Verdict::Valid || seen > 0 {
        return result;
    }
    CheckerResult {
        verdict: Verdict::Unknown,
        summary: format!("nothing to check: {missing}"),
        ..result
    }
}

fn int_of(v: &Value) -> Option<i128> {
    match v {
        Value::Number(n) => n.as_i64().map(i128::from).or(n.as_u64().map(i128::from)),
        // A sequential node's path: the number is its last ten digits.
        Value::String(s) => {
            let digits: String = s
                .chars()
                .rev()
                .take_while(char::is_ascii_digit)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            digits.parse().ok()
        }
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------

/// Stats, as Jepsen's: every kind of operation the clients issued (`f`) succeeded at least once.
/// A run in which no write ever succeeded shows nothing about writes, whatever the other checkers
/// say, so it is `unknown` ("no write ever succeeded"), never `valid`. Observations (watch events,
/// expiries) are not issued, so they are not counted; nor are `recovery_ops`, which a workload
/// issues only to start afresh (see `run::workload_recovery_ops`).
pub fn stats(ops: &[Op<'_>], recovery_ops: &[&str]) -> CheckerResult {
    const NAME: &str = "stats";
    // f -> (issued, ok, fail, info)
    let mut by_f: BTreeMap<&str, [usize; 4]> = BTreeMap::new();
    for op in ops
        .iter()
        .filter(|o| !o.invoke.is_observation() && !recovery_ops.contains(&o.f()))
    {
        let c = by_f.entry(op.f()).or_default();
        c[0] += 1;
        match op.kind() {
            EventType::Ok => c[1] += 1,
            EventType::Fail => c[2] += 1,
            _ => c[3] += 1,
        }
    }
    let details = Value::Object(
        by_f.iter()
            .map(|(f, c)| {
                (
                    f.to_string(),
                    json!({"issued": c[0], "ok": c[1], "fail": c[2], "info": c[3]}),
                )
            })
            .collect(),
    );
    let never: Vec<&str> = by_f
        .iter()
        .filter(|(_, c)| c[1] == 0)
        .map(|(f, _)| *f)
        .collect();
    if !never.is_empty() {
        return CheckerResult::new(
            NAME,
            Verdict::Unknown,
            never
                .iter()
                .map(|f| {
                    let c = by_f[f];
                    format!(
                        "no {f} ever succeeded ({} issued: {} failed, {} indeterminate)",
                        c[0], c[2], c[3]
                    )
                })
                .collect::<Vec<_>>()
                .join("; "),
            details,
        );
    }
    let summary = by_f
        .iter()
        .map(|(f, c)| format!("{f} {}/{}", c[1], c[0]))
        .collect::<Vec<_>>()
        .join(", ");
    require_evidence(
        CheckerResult::new(
            NAME,
            Verdict::Valid,
            format!("ok/issued: {summary}"),
            details,
        ),
        by_f.len(),
        "no operation was issued",
    )
}

// ---------------------------------------------------------------------------------------------

/// Monotonic reads: per session, an operation invoked after another completed never reports a
/// smaller zxid (ZooKeeper's single system image).
pub fn monotonic_reads(ops: &[Op<'_>]) -> CheckerResult {
    const NAME: &str = "monotonic-reads";
    let mut by_session: BTreeMap<u64, Vec<&Op<'_>>> = BTreeMap::new();
    for op in ops {
        if op.kind() == EventType::Ok
            && !op.invoke.is_observation()
            && let (Some(s), Some(_)) = (op.session(), op.zxid())
        {
            by_session.entry(s).or_default().push(op);
        }
    }
    let checked: usize = by_session.values().map(Vec::len).sum();
    for (session, list) in &by_session {
        let items: Vec<Timed> = list
            .iter()
            .map(|o| {
                (
                    o.invoke_pos,
                    o.complete_pos.unwrap_or(usize::MAX),
                    o.zxid().unwrap_or(0) as i128,
                )
            })
            .collect();
        if let Some((a, b)) = real_time_inversion(&items, false) {
            let (a, b) = (list[a], list[b]);
            let text = format!(
                "session {session} saw zxid {} and then, in a later operation, zxid {}: its view went back in time",
                a.zxid().unwrap_or(0),
                b.zxid().unwrap_or(0)
            );
            return invalid(
                NAME,
                text.clone(),
                json!({"session": session, "ops_checked": checked}),
                Counterexample::new(NAME, text, views(&[a, b])),
            );
        }
    }
    require_evidence(
        CheckerResult::new(
            NAME,
            Verdict::Valid,
            format!("{} sessions, {checked} ops with a zxid", by_session.len()),
            json!({"sessions": by_session.len(), "ops_checked": checked}),
        ),
        checked,
        "no completed operation carries a session and a zxid",
    )
}

// ---------------------------------------------------------------------------------------------

/// Sequential nodes: under one parent (`key`), the numbers `create` returned are unique, and a
/// create that completed before another was invoked got the smaller number.
pub fn sequential(ops: &[Op<'_>]) -> CheckerResult {
    const NAME: &str = "sequential";
    let mut by_parent: BTreeMap<&str, Vec<(&Op<'_>, i128)>> = BTreeMap::new();
    let mut unreadable = 0usize;
    for op in ops {
        if op.f() == "create" && op.kind() == EventType::Ok {
            match int_of(op.result()) {
                Some(n) => by_parent
                    .entry(op.key().unwrap_or(""))
                    .or_default()
                    .push((op, n)),
                None => unreadable += 1,
            }
        }
    }
    if unreadable > 0 {
        return CheckerResult::new(
            NAME,
            Verdict::Unknown,
            format!("{unreadable} ok creates carry no sequence number"),
            json!({"unreadable": unreadable}),
        );
    }
    let total: usize = by_parent.values().map(Vec::len).sum();
    for (parent, list) in &by_parent {
        let mut seen: HashMap<i128, &Op<'_>> = HashMap::new();
        for &(op, n) in list {
            if let Some(first) = seen.insert(n, op) {
                let text = format!("two creates under {parent} got sequence number {n}");
                return invalid(
                    NAME,
                    text.clone(),
                    json!({"parent": parent, "sequence": n}),
                    Counterexample::new(NAME, text, views(&[first, op])),
                );
            }
        }
        let items: Vec<Timed> = list
            .iter()
            .map(|(o, n)| (o.invoke_pos, o.complete_pos.unwrap_or(usize::MAX), *n))
            .collect();
        if let Some((a, b)) = real_time_inversion(&items, true) {
            let ((oa, na), (ob, nb)) = (list[a], list[b]);
            let text = format!(
                "under {parent}, a create that completed first got {na}, one invoked after it got {nb}"
            );
            return invalid(
                NAME,
                text.clone(),
                json!({"parent": parent}),
                Counterexample::new(NAME, text, views(&[oa, ob])),
            );
        }
    }
    require_evidence(
        CheckerResult::new(
            NAME,
            Verdict::Valid,
            format!("{} parents, {total} sequential creates", by_parent.len()),
            json!({"parents": by_parent.len(), "creates": total}),
        ),
        total,
        "no sequential create succeeded",
    )
}

// ---------------------------------------------------------------------------------------------

fn token_of(op: &Op<'_>) -> Option<i128> {
    op.result()
        .get("token")
        .or_else(|| op.value().get("token"))
        .and_then(int_of)
}

/// Election safety: fencing tokens of successful claims are unique, and no fenced write by an
/// older token is accepted after one by a newer token. Overlapping leaderships are reported, not
/// judged: fencing exists because they happen.
pub fn election(ops: &[Op<'_>]) -> CheckerResult {
    const NAME: &str = "election-safety";
    let end_of_history = ops
        .iter()
        .filter_map(|o| o.complete_time().or(Some(o.invoke_time())))
        .max()
        .unwrap_or(0);
    let mut claims: Vec<(&Op<'_>, i128)> = Vec::new();
    let mut writes: Vec<(&Op<'_>, i128)> = Vec::new();
    for op in ops {
        if op.kind() != EventType::Ok {
            continue;
        }
        match op.f() {
            "claim" | "fenced_write" => {
                let Some(t) = token_of(op) else {
                    let text = format!("an ok `{}` carries no token", op.f());
                    return CheckerResult::new(NAME, Verdict::Unknown, text, json!({}));
                };
                if op.f() == "claim" {
                    claims.push((op, t));
                } else {
                    writes.push((op, t));
                }
            }
            _ => {}
        }
    }
    let mut by_token: HashMap<i128, &Op<'_>> = HashMap::new();
    for &(op, t) in &claims {
        if let Some(first) = by_token.insert(t, op) {
            let text = format!("two clients claimed leadership with the same token {t}");
            return invalid(
                NAME,
                text.clone(),
                json!({"token": t}),
                Counterexample::new(NAME, text, views(&[first, op])),
            );
        }
    }
    // Writes are ordered by the zxid that committed them when every one has it, else by real time.
    let inversion = if !writes.is_empty() && writes.iter().all(|(o, _)| o.zxid().is_some()) {
        let mut sorted = writes.clone();
        sorted.sort_by_key(|(o, _)| o.zxid());
        let mut newest: Option<(&Op<'_>, i128)> = None;
        let mut found = None;
        for &(o, t) in &sorted {
            if let Some((n, nt)) = newest
                && nt > t
            {
                found = Some((n, o));
                break;
            }
            if newest.is_none_or(|(_, nt)| t > nt) {
                newest = Some((o, t));
            }
        }
        found
    } else {
        let items: Vec<Timed> = writes
            .iter()
            .map(|(o, t)| (o.invoke_pos, o.complete_pos.unwrap_or(usize::MAX), *t))
            .collect();
        real_time_inversion(&items, false).map(|(a, b)| (writes[a].0, writes[b].0))
    };
    // Each leadership lasts from its claim until its process resigns, or its last event.
    let mut last_seen: HashMap<u64, u64> = HashMap::new();
    let mut resigned: HashMap<u64, Vec<u64>> = HashMap::new();
    for op in ops {
        let t = op.complete_time().unwrap_or(end_of_history);
        let e = last_seen.entry(op.process()).or_default();
        *e = (*e).max(t);
        if matches!(op.f(), "resign" | "release") && op.kind() == EventType::Ok {
            resigned.entry(op.process()).or_default().push(t);
        }
    }
    let terms: Vec<(i128, u64, u64, u64)> = claims
        .iter()
        .filter_map(|&(o, t)| {
            let start = o.complete_time()?;
            let end = resigned
                .get(&o.process())
                .and_then(|r| r.iter().copied().filter(|&x| x >= start).min())
                .or_else(|| last_seen.get(&o.process()).copied())
                .unwrap_or(end_of_history);
            Some((t, o.process(), start, end.max(start)))
        })
        .collect();
    let mut overlaps = Vec::new();
    let mut overlap_total_ns: u64 = 0;
    let mut sorted_terms = terms.clone();
    sorted_terms.sort_by_key(|x| x.2);
    for (i, a) in sorted_terms.iter().enumerate() {
        for b in &sorted_terms[i + 1..] {
            if b.2 >= a.3 {
                break;
            }
            let ns = a.3.min(b.3) - b.2;
            overlap_total_ns += ns;
            if overlaps.len() < MAX_LISTED {
                overlaps
                    .push(json!({"tokens": [a.0, b.0], "processes": [a.1, b.1], "overlap_ns": ns}));
            }
        }
    }
    let details = json!({
        "claims": claims.len(),
        "fenced_writes": writes.len(),
        "overlapping_claims": overlaps,
        "overlap_total_ns": overlap_total_ns,
    });
    if let Some((newer, older)) = inversion {
        let text = format!(
            "a fenced write with token {} was accepted after one with the newer token {}",
            token_of(older).unwrap_or(0),
            token_of(newer).unwrap_or(0)
        );
        return invalid(
            NAME,
            text.clone(),
            details,
            Counterexample::new(NAME, text, views(&[newer, older])),
        );
    }
    let claimed = claims.len();
    require_evidence(
        CheckerResult::new(
            NAME,
            Verdict::Valid,
            format!(
                "{} claims, {} fenced writes, {} overlapping leaderships ({:.1} ms)",
                claims.len(),
                writes.len(),
                details["overlapping_claims"].as_array().map_or(0, Vec::len),
                overlap_total_ns as f64 / 1e6
            ),
            details,
        ),
        claimed,
        "no leadership was ever claimed",
    )
}

// ---------------------------------------------------------------------------------------------

/// Does a read or exists result show a node? `null` and `false` say no.
fn shows_node(v: &Value) -> bool {
    !matches!(v, Value::Null | Value::Bool(false))
}

/// Sessions and ephemerals: once a session's close or expiry has been acknowledged, no read
/// invoked afterwards sees one of its ephemeral nodes.
pub fn sessions(ops: &[Op<'_>]) -> CheckerResult {
    const NAME: &str = "sessions";
    // session -> (position the end was acknowledged, the op, zxid of the end if known)
    let mut ended: HashMap<u64, (usize, &Op<'_>)> = HashMap::new();
    // path -> sessions that created (or may have created) an ephemeral node there
    let mut creators: HashMap<&str, Vec<(u64, usize)>> = HashMap::new();
    for op in ops {
        let Some(s) = op.session() else { continue };
        match (op.f(), op.kind()) {
            ("close_session", EventType::Ok) | ("expired", EventType::Ok) => {
                let pos = op.complete_pos.unwrap_or(op.invoke_pos);
                let e = ended.entry(s).or_insert((pos, op));
                if pos < e.0 {
                    *e = (pos, op);
                }
            }
            ("create_ephemeral", EventType::Ok | EventType::Info) => {
                if let Some(k) = op.key() {
                    creators.entry(k).or_default().push((s, op.invoke_pos));
                }
            }
            _ => {}
        }
    }
    let mut reads = 0usize;
    let mut stale = 0usize;
    for op in ops {
        if !matches!(op.f(), "read" | "exists")
            || op.kind() != EventType::Ok
            || !shows_node(op.result())
        {
            continue;
        }
        reads += 1;
        let owners: Vec<u64> = match op.result().get("owner").and_then(Value::as_u64) {
            Some(0) => continue,
            Some(owner) => vec![owner],
            None => match op.key().and_then(|k| creators.get(k)) {
                Some(c) => c
                    .iter()
                    .filter(|(_, at)| *at < op.complete_pos.unwrap_or(usize::MAX))
                    .map(|(s, _)| *s)
                    .collect(),
                None => continue,
            },
        };
        if owners.is_empty() {
            continue;
        }
        // Every session that could own the node must have ended before the read began.
        let ends: Option<Vec<&(usize, &Op<'_>)>> = owners.iter().map(|s| ended.get(s)).collect();
        let Some(ends) = ends else { continue };
        if !ends.iter().all(|(pos, _)| *pos < op.invoke_pos) {
            continue;
        }
        // A local read from a server that has not applied the close yet is stale, not wrong.
        if let (Some(rz), Some(ez)) = (op.zxid(), ends.iter().filter_map(|(_, e)| e.zxid()).max())
            && rz < ez
        {
            stale += 1;
            continue;
        }
        let (_, end) = ends[0];
        let text = format!(
            "a read of {} invoked after session {} ended ({}) still saw its ephemeral node",
            op.key().unwrap_or("?"),
            owners[0],
            end.f()
        );
        return invalid(
            NAME,
            text.clone(),
            json!({"session": owners[0], "path": op.key()}),
            Counterexample::new(NAME, text, views(&[end, op])),
        );
    }
    let evidence = if creators.is_empty() { 0 } else { ended.len() };
    require_evidence(
        CheckerResult::new(
            NAME,
            Verdict::Valid,
            format!(
                "{} sessions ended, {} ephemeral paths, {reads} reads saw a node ({stale} stale local reads)",
                ended.len(),
                creators.len()
            ),
            json!({"sessions_ended": ended.len(), "ephemeral_paths": creators.len(), "reads_seeing_nodes": reads, "stale_local_reads": stale}),
        ),
        evidence,
        "no session that owned an ephemeral node ever ended",
    )
}

// ---------------------------------------------------------------------------------------------

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

/// A write that triggers watches: its zxid when known, and the operation.
type Change<'o, 'e> = (Option<u64>, &'o Op<'e>);
/// A watch not yet fired: the zxid it was set at, its kind, the operation that set it.
type PendingWatch<'o, 'e> = (u64, &'o str, &'o Op<'e>);

/// Watches: each fires at most once, for a change that happened (a write with the event's zxid),
/// after the watch was set; a session's events come in zxid order; and a watch whose triggering
/// change completed well before the end of the run did fire.
pub fn watches(ops: &[Op<'_>]) -> CheckerResult {
    const NAME: &str = "watches";
    let end_time = ops
        .iter()
        .filter_map(|o| o.complete_time().or(Some(o.invoke_time())))
        .max()
        .unwrap_or(0);
    // (path, type) -> writes that would trigger it: (zxid if known, op)
    let mut changes: HashMap<(&str, &'static str), Vec<Change<'_, '_>>> = HashMap::new();
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
    }
    // Sessions whose watches may legitimately be lost: they ended or lost their connection;
    // the last position where that happened.
    let mut troubled: HashMap<u64, usize> = HashMap::new();
    for op in ops {
        if let Some(s) = op.session()
            && (op.kind() == EventType::Info || matches!(op.f(), "expired" | "close_session"))
        {
            let e = troubled.entry(s).or_insert(0);
            *e = (*e).max(op.invoke_pos);
        }
    }
    // (session, path) -> pending watches: (zxid set at, kind, op)
    let mut pending: HashMap<(u64, &str), Vec<PendingWatch<'_, '_>>> = HashMap::new();
    let mut last_event_zxid: HashMap<u64, (u64, &Op<'_>)> = HashMap::new();
    let (mut set, mut fired) = (0usize, 0usize);
    let mut by_pos: Vec<&Op<'_>> = ops.iter().collect();
    by_pos.sort_by_key(|o| o.complete_pos.unwrap_or(o.invoke_pos));
    for op in by_pos {
        if op.f() == "watch" && op.kind() == EventType::Ok {
            let (Some(s), Some(path), Some(z)) = (op.session(), op.key(), op.zxid()) else {
                continue;
            };
            let kind = op
                .value()
                .get("kind")
                .and_then(Value::as_str)
                .unwrap_or("any");
            pending.entry((s, path)).or_default().push((z, kind, op));
            set += 1;
            continue;
        }
        if op.f() != "event" {
            continue;
        }
        fired += 1;
        let v = op.result();
        let (Some(s), Some(path), Some(z)) = (
            op.session(),
            v.get("path").and_then(Value::as_str).or(op.key()),
            v.get("zxid").and_then(Value::as_u64).or(op.zxid()),
        ) else {
            let text = "a watch event without session, path or zxid".to_string();
            return CheckerResult::new(NAME, Verdict::Unknown, text, json!({}));
        };
        let ty = event_type(v.get("type").and_then(Value::as_str).unwrap_or(""));
        if let Some(&(prev, prev_op)) = last_event_zxid.get(&s)
            && z < prev
        {
            let text =
                format!("session {s} received the event of zxid {z} after that of zxid {prev}");
            return invalid(
                NAME,
                text.clone(),
                json!({"session": s}),
                Counterexample::new(NAME, text, views(&[prev_op, op])),
            );
        }
        last_event_zxid.insert(s, (z, op));
        // The change must have happened: a write of that type on that path with that zxid, or
        // one whose zxid is unknown (indeterminate), invoked before the event arrived.
        let candidates = changes.get(&(path, ty));
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
                return invalid(
                    NAME,
                    text.clone(),
                    json!({"session": s, "path": path, "zxid": z}),
                    Counterexample::new(NAME, text, views(&[op])),
                );
            }
            Some((_, w)) if w.invoke_pos > op.invoke_pos => {
                let text = format!(
                    "session {s} got the {ty} event for {path} before the change was even requested"
                );
                return invalid(
                    NAME,
                    text.clone(),
                    json!({"session": s, "path": path, "zxid": z}),
                    Counterexample::new(NAME, text, views(&[op, w])),
                );
            }
            Some(_) => {}
        }
        // The event consumes every watch of the session on the path set before the change. A
        // watch fires on the FIRST change after it was set: if a known change came between the
        // watch and this event, the watch's event for it was lost.
        let list = pending.entry((s, path)).or_default();
        let before = list.len();
        let mut lost = None;
        list.retain(|&(wz, kind, w)| {
            if !(wz < z && watch_fires(kind, ty)) {
                return true;
            }
            let reconnected = troubled.get(&s).is_some_and(|&p| p >= w.invoke_pos);
            if lost.is_none() && !reconnected {
                lost = ["created", "deleted", "changed", "children"]
                    .iter()
                    .filter(|t| watch_fires(kind, t))
                    .filter_map(|t| changes.get(&(path, *t)))
                    .flatten()
                    .filter_map(|(cz, c)| cz.filter(|cz| wz < *cz && *cz < z).map(|cz| (cz, *c)))
                    .min_by_key(|(cz, _)| *cz)
                    .map(|(cz, c)| (wz, w, cz, c));
            }
            false
        });
        if let Some((wz, w, cz, c)) = lost {
            let text = format!(
                "session {s}'s watch on {path} (set at zxid {wz}) should have fired for the change at zxid {cz}, but its first event was zxid {z}: an event was lost"
            );
            return invalid(
                NAME,
                text.clone(),
                json!({"session": s, "path": path, "watch_zxid": wz, "missed_zxid": cz, "event_zxid": z}),
                Counterexample::new(NAME, text, views(&[w, c, op])),
            );
        }
        if list.len() == before {
            let text = format!(
                "session {s} got a {ty} event for {path} at zxid {z} with no watch pending: fired twice, or never set"
            );
            return invalid(
                NAME,
                text.clone(),
                json!({"session": s, "path": path, "zxid": z}),
                Counterexample::new(NAME, text, views(&[op])),
            );
        }
    }
    // Watches that should have fired and did not.
    let mut missed = Vec::new();
    for ((s, path), list) in &pending {
        for &(wz, kind, w) in list {
            if troubled.get(s).is_some_and(|&p| p >= w.invoke_pos) {
                continue;
            }
            let trigger = ["created", "deleted", "changed", "children"]
                .iter()
                .find_map(|ty| {
                    if !watch_fires(kind, ty) {
                        return None;
                    }
                    changes.get(&(*path, *ty))?.iter().find(|(cz, c)| {
                        cz.is_some_and(|cz| cz > wz)
                            && c.complete_time()
                                .is_some_and(|t| t + WATCH_DELIVERY_GRACE_NS <= end_time)
                    })
                });
            if let Some((_, c)) = trigger {
                missed.push((w, *c));
            }
        }
    }
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
    require_evidence(
        CheckerResult::new(
            NAME,
            Verdict::Valid,
            format!("{set} watches set, {fired} events"),
            json!({"watches": set, "events": fired}),
        ),
        set,
        "no watch was ever set",
    )
}

// ---------------------------------------------------------------------------------------------

/// keeper's sync limit: a leader that has not heard from a quorum for this long steps down
/// (`SYNC_LIMIT_TICKS` x `TICK_MS` in the server).
pub const LEADER_SYNC_LIMIT_MS: u64 = 1_000;
/// Slack on top of the sync limit before an old leader that still says it leads is a violation:
/// `/status` is sampled every 250 ms with a 250 ms timeout, and the step-down waits for a tick.
pub const LEADER_STEP_DOWN_MARGIN_MS: u64 = 2_000;
/// How long a leader of an older epoch may still be seen leading once a newer epoch's leader is
/// established: the seeds' "the minority leader thinks it is still leader temporarily".
pub const OLD_LEADER_BOUND_MS: u64 = LEADER_SYNC_LIMIT_MS + LEADER_STEP_DOWN_MARGIN_MS;

/// Single leader: never two nodes leading in one epoch, no node's epoch goes down, and a leader
/// of an older epoch stops leading within [`OLD_LEADER_BOUND_MS`] of being seen to lead after a
/// newer epoch's leader was established. The bound counts the time the old leader was seen
/// running: it is measured from the first sample that shows it still leading after that point,
/// and again from the first one after any sample it did not answer, so a paused old leader
/// (silent while stopped, and still saying it leads in the moment after it resumes, before its
/// first tick steps it down) is not mistaken for one that kept leading (found by `schism sim
/// --seed 576`: paused 4.2 s across the new leader's start). A partitioned one answers every
/// sample, so its whole overlap is seen.
pub fn single_leader(samples: &[StatusSample]) -> CheckerResult {
    const NAME: &str = "single-leader";
    // epoch -> node -> first time seen leading it
    let mut leaders: BTreeMap<u64, BTreeMap<String, u64>> = BTreeMap::new();
    let mut last_epoch: HashMap<&str, (u64, u64)> = HashMap::new();
    let mut answered = 0usize;
    let mut sorted: Vec<&StatusSample> = samples.iter().collect();
    sorted.sort_by_key(|s| s.time);
    // (node, its epoch, newer epoch, newer leader) -> (first, last) time seen still leading
    let mut overlaps: BTreeMap<(String, u64), (u64, String, u64, u64)> = BTreeMap::new();
    let bound_ns = OLD_LEADER_BOUND_MS * 1_000_000;
    // node -> time of its latest sample that got no answer
    let mut last_silent: HashMap<&str, u64> = HashMap::new();
    for s in sorted {
        let Some(st) = &s.status else {
            last_silent.insert(&s.node, s.time);
            continue;
        };
        answered += 1;
        let Some(epoch) = st.get("epoch").and_then(Value::as_u64) else {
            continue;
        };
        if let Some(&(prev, at)) = last_epoch.get(s.node.as_str())
            && epoch < prev
        {
            let text = format!(
                "node {} went from epoch {prev} (at {:.3} s) back to epoch {epoch} (at {:.3} s)",
                s.node,
                at as f64 / 1e9,
                s.time as f64 / 1e9
            );
            return invalid(
                NAME,
                text.clone(),
                json!({"node": s.node}),
                Counterexample::new(NAME, text, Vec::new()),
            );
        }
        last_epoch.insert(&s.node, (epoch, s.time));
        if st.get("role").and_then(Value::as_str) != Some("leading") {
            continue;
        }
        leaders
            .entry(epoch)
            .or_default()
            .entry(s.node.clone())
            .or_insert(s.time);
        // The newest epoch another node was established to lead before this sample.
        let newer = leaders
            .range(epoch + 1..)
            .flat_map(|(e, nodes)| nodes.iter().map(move |(n, t)| (*e, n, *t)))
            .filter(|(_, n, t)| *n != &s.node && *t <= s.time)
            .max_by_key(|(e, _, _)| *e);
        if let Some((new_epoch, new_leader, _)) = newer {
            let entry = overlaps.entry((s.node.clone(), epoch)).or_insert((
                new_epoch,
                new_leader.clone(),
                s.time,
                s.time,
            ));
            if last_silent
                .get(s.node.as_str())
                .is_some_and(|&t| t > entry.3)
            {
                // Silent since it was last seen leading: count again from now.
                entry.2 = s.time;
            }
            entry.3 = s.time;
            let (new_epoch, new_leader, first, last) = entry.clone();
            if last - first > bound_ns {
                let text = format!(
                    "{} kept leading epoch {epoch} for {:.1} s (from {:.3} s to {:.3} s) after {new_leader} was leading epoch {new_epoch}: an old leader must step down within {} ms",
                    s.node,
                    (last - first) as f64 / 1e9,
                    first as f64 / 1e9,
                    last as f64 / 1e9,
                    OLD_LEADER_BOUND_MS
                );
                return invalid(
                    NAME,
                    text.clone(),
                    json!({
                        "old_leader": s.node, "old_epoch": epoch,
                        "new_leader": new_leader, "new_epoch": new_epoch,
                        "overlap_ms": (last - first) / 1_000_000,
                        "bound_ms": OLD_LEADER_BOUND_MS,
                    }),
                    Counterexample::new(NAME, text, Vec::new()),
                );
            }
        }
    }
    for (epoch, nodes) in &leaders {
        if nodes.len() > 1 {
            let text = format!(
                "{} nodes led in epoch {epoch}: {}",
                nodes.len(),
                nodes
                    .iter()
                    .map(|(n, t)| format!("{n} (from {:.3} s)", *t as f64 / 1e9))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            return invalid(
                NAME,
                text.clone(),
                json!({"epoch": epoch, "leaders": nodes}),
                Counterexample::new(NAME, text, Vec::new()),
            );
        }
    }
    let longest_overlap_ms = overlaps
        .values()
        .map(|(_, _, first, last)| (last - first) / 1_000_000)
        .max()
        .unwrap_or(0);
    let nodes: HashSet<&str> = samples.iter().map(|s| s.node.as_str()).collect();
    require_evidence(
        CheckerResult::new(
            NAME,
            Verdict::Valid,
            format!(
                "{} samples from {} nodes, {} epochs with a leader, old leaders stepped down within {} ms",
                answered,
                nodes.len(),
                leaders.len(),
                longest_overlap_ms
            ),
            json!({"samples": samples.len(), "answered": answered, "epochs": leaders.len(),
                   "longest_old_leader_overlap_ms": longest_overlap_ms}),
        ),
        leaders.len(),
        "no node was ever seen leading",
    )
}

// ---------------------------------------------------------------------------------------------

/// Convergence: replicas that have applied the same zxid hold the same tree. Every replica applies
/// one sequence of transactions, so two digests at one zxid can only differ when a replica
/// applied something else (a transaction it should have dropped, or a different outcome of the
/// same one). The harness samples `/v1/digest` with `/status` during the run and until the nodes
/// agree after healing; a run whose nodes never reach one zxid is reported, not judged.
pub fn convergence(samples: &[StatusSample]) -> CheckerResult {
    const NAME: &str = "convergence";
    // zxid -> digest -> (node, first time seen)
    let mut seen: BTreeMap<u64, BTreeMap<u64, (String, u64)>> = BTreeMap::new();
    let mut last: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    // zxid -> the replicas sampled at it
    let mut nodes_at: BTreeMap<u64, BTreeSet<&str>> = BTreeMap::new();
    let mut count = 0usize;
    for s in samples {
        let Some(d) = &s.digest else { continue };
        let (Some(zxid), Some(digest)) = (
            d.get("zxid").and_then(Value::as_u64),
            d.get("digest").and_then(Value::as_u64),
        ) else {
            continue;
        };
        count += 1;
        nodes_at.entry(zxid).or_default().insert(s.node.as_str());
        seen.entry(zxid)
            .or_default()
            .entry(digest)
            .or_insert((s.node.clone(), s.time));
        let e = last.entry(s.node.as_str()).or_insert((0, 0));
        if s.time >= e.1 {
            *e = (zxid, s.time);
        }
    }
    for (zxid, digests) in &seen {
        if digests.len() > 1 {
            let text = format!(
                "replicas differ at zxid {zxid:#x}: {}",
                digests
                    .iter()
                    .map(|(d, (n, t))| format!(
                        "{n} has digest {d:#018x} (at {:.3} s)",
                        *t as f64 / 1e9
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            return invalid(
                NAME,
                text.clone(),
                json!({"zxid": zxid, "digests": digests}),
                Counterexample::new(NAME, text, Vec::new()),
            );
        }
    }
    // Evidence: a zxid at which at least two replicas were sampled, so digests were compared.
    let compared = nodes_at.values().filter(|nodes| nodes.len() > 1).count();
    let finals: BTreeSet<u64> = last.values().map(|(z, _)| *z).collect();
    require_evidence(
        CheckerResult::new(
            NAME,
            Verdict::Valid,
            format!(
                "{count} digests from {} nodes at {} zxids, {compared} zxids seen on several replicas",
                last.len(),
                seen.len(),
            ),
            json!({"digests": count, "zxids": seen.len(), "compared_zxids": compared,
                   "final_zxids": finals.len()}),
        ),
        compared,
        "no two replicas were ever sampled at one zxid",
    )
}
