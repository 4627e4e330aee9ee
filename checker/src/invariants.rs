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
    let mut tally = StatsTally::default();
    for op in ops
        .iter()
        .filter(|o| !o.invoke.is_observation() && !recovery_ops.contains(&o.f()))
    {
        tally.add(op.f(), op.kind());
    }
    tally.result()
}

/// The counts [`stats`] judges, kept one operation at a time (the streamed check feeds it as
/// operations complete): per `f`, (issued, ok, fail, info).
#[derive(Default, Debug)]
pub struct StatsTally {
    by_f: BTreeMap<String, [usize; 4]>,
}

impl StatsTally {
    /// Counts an issued operation (not an observation, not a recovery operation).
    pub fn add(&mut self, f: &str, kind: EventType) {
        let c = match self.by_f.get_mut(f) {
            Some(c) => c,
            None => self.by_f.entry(f.to_string()).or_default(),
        };
        c[0] += 1;
        match kind {
            EventType::Ok => c[1] += 1,
            EventType::Fail => c[2] += 1,
            _ => c[3] += 1,
        }
    }

    pub fn result(&self) -> CheckerResult {
        const NAME: &str = "stats";
        let by_f = &self.by_f;
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
            .map(|(f, _)| f.as_str())
            .collect();
        if !never.is_empty() {
            return CheckerResult::new(
                NAME,
                Verdict::Unknown,
                never
                    .iter()
                    .map(|f| {
                        let c = by_f[*f];
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
}

// ---------------------------------------------------------------------------------------------

/// Monotonic reads: per session, an operation invoked after another completed never reports a
/// smaller zxid (ZooKeeper's single system image).
pub fn monotonic_reads(ops: &[Op<'_>]) -> CheckerResult {
    let mut by_session: BTreeMap<u64, Vec<&Op<'_>>> = BTreeMap::new();
    // Operations of a session with no zxid (ZooKeeper's reads and deletes): not checked.
    let mut without_zxid = 0usize;
    for op in ops {
        if op.kind() != EventType::Ok || op.invoke.is_observation() {
            continue;
        }
        match (op.session(), op.zxid()) {
            (Some(s), Some(_)) => by_session.entry(s).or_default().push(op),
            (Some(_), None) => without_zxid += 1,
            _ => {}
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
            return monotonic_inversion(*session, checked, views(&[a, b]));
        }
    }
    monotonic_valid(by_session.len(), checked, without_zxid)
}

/// Monotonic reads' verdict when `session` saw `ops[0]`'s zxid and then `ops[1]`'s smaller one.
fn monotonic_inversion(session: u64, checked: usize, ops: Vec<OpView>) -> CheckerResult {
    const NAME: &str = "monotonic-reads";
    let text = format!(
        "session {session} saw zxid {} and then, in a later operation, zxid {}: its view went back in time",
        ops[0].zxid.unwrap_or(0),
        ops[1].zxid.unwrap_or(0)
    );
    invalid(
        NAME,
        text.clone(),
        json!({"session": session, "ops_checked": checked}),
        Counterexample::new(NAME, text, ops),
    )
}

fn monotonic_valid(sessions: usize, checked: usize, without_zxid: usize) -> CheckerResult {
    require_evidence(
        CheckerResult::new(
            "monotonic-reads",
            Verdict::Valid,
            if without_zxid == 0 {
                format!("{sessions} sessions, {checked} ops with a zxid")
            } else {
                format!(
                    "{sessions} sessions, {checked} ops with a zxid ({without_zxid} without one, not checked)"
                )
            },
            json!({"sessions": sessions, "ops_checked": checked, "ops_without_zxid": without_zxid}),
        ),
        checked,
        "no completed operation carries a session and a zxid",
    )
}

/// [`monotonic_reads`] over a history read once, in order, without holding it: per session,
/// the largest zxid an operation completed with so far. An operation takes a snapshot of its
/// session's largest when it is invoked ([`MonotonicReadsScan::at_invoke`]); when it completes
/// `ok` with a smaller zxid, the session went back in time. It finds the same pair as
/// [`monotonic_reads`]: the first later operation by invocation, and the earliest-completed
/// operation with the largest zxid before it. `T` names an operation so that the caller can
/// show it afterwards (the streamed check: where its lines are in the file).
#[derive(Debug)]
pub struct MonotonicReadsScan<T> {
    sessions: BTreeMap<u64, SessionScan<T>>,
    checked: usize,
    without_zxid: usize,
    /// An `ok` operation with a zxid whose session only its completion named: no snapshot was
    /// taken at its invocation, so the session's order cannot be judged this way.
    unsnapshotted: usize,
}

#[derive(Debug)]
struct SessionScan<T> {
    /// (zxid, operation) of the largest zxid completed so far, the earliest on ties.
    best: Option<(u64, T)>,
    /// The inversion whose later operation was invoked first: (its invocation position, the
    /// earlier operation, the later one).
    found: Option<(usize, T, T)>,
}

/// What an operation's invocation saw of its session (see [`MonotonicReadsScan::at_invoke`]).
pub type MonotonicSnapshot<T> = Option<(u64, T)>;

impl<T: Copy> Default for MonotonicReadsScan<T> {
    fn default() -> Self {
        MonotonicReadsScan {
            sessions: BTreeMap::new(),
            checked: 0,
            without_zxid: 0,
            unsnapshotted: 0,
        }
    }
}

impl<T: Copy> MonotonicReadsScan<T> {
    /// The session's largest completed zxid when an operation of `session` is invoked.
    pub fn at_invoke(&self, session: Option<u64>) -> MonotonicSnapshot<T> {
        self.sessions.get(&session?)?.best
    }

    /// A completed operation (not an observation): `ok` or not, with its session, zxid, the
    /// snapshot its invocation took, whether the invocation named the session, and its
    /// invocation position.
    #[allow(clippy::too_many_arguments)]
    pub fn complete(
        &mut self,
        ok: bool,
        session: Option<u64>,
        zxid: Option<u64>,
        snapshot: MonotonicSnapshot<T>,
        invoke_named_session: bool,
        invoke_pos: usize,
        op: T,
    ) {
        if !ok {
            return;
        }
        let (Some(s), Some(z)) = (session, zxid) else {
            if session.is_some() {
                self.without_zxid += 1;
            }
            return;
        };
        self.checked += 1;
        if !invoke_named_session {
            self.unsnapshotted += 1;
        }
        let scan = self.sessions.entry(s).or_insert(SessionScan {
            best: None,
            found: None,
        });
        if let Some((za, a)) = snapshot
            && za > z
            && scan.found.as_ref().is_none_or(|f| invoke_pos < f.0)
        {
            scan.found = Some((invoke_pos, a, op));
        }
        if scan.best.is_none_or(|(zb, _)| z > zb) {
            scan.best = Some((z, op));
        }
    }

    /// The verdict; `show` turns the two operations of an inversion into views.
    pub fn result(&self, show: impl FnOnce(T, T) -> Result<Vec<OpView>, String>) -> CheckerResult {
        if let Some((session, (_, a, b))) = self
            .sessions
            .iter()
            .find_map(|(s, scan)| scan.found.as_ref().map(|f| (*s, f)))
        {
            return match show(*a, *b) {
                Ok(mut ops) => {
                    ops.sort_by_key(|o| o.invoke_index);
                    monotonic_inversion(session, self.checked, ops)
                }
                Err(e) => CheckerResult::new(
                    "monotonic-reads",
                    Verdict::Unknown,
                    format!(
                        "session {session} went back in time, but its operations could not be read again: {e}"
                    ),
                    json!({"session": session}),
                ),
            };
        }
        if self.unsnapshotted > 0 {
            return CheckerResult::new(
                "monotonic-reads",
                Verdict::Unknown,
                format!(
                    "{} ops name their session only on completion: not checked in one pass",
                    self.unsnapshotted
                ),
                json!({"ops_checked": self.checked, "unsnapshotted": self.unsnapshotted}),
            );
        }
        monotonic_valid(self.sessions.len(), self.checked, self.without_zxid)
    }
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
    let mut with_zxid = 0usize;
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
        // Where creates carry their zxid (the created node's czxid), concurrent ones are
        // ordered too: a sequence number is the parent's count of child changes when the create
        // is applied, and creates are applied in zxid order.
        let mut by_zxid: Vec<(u64, &Op<'_>, i128)> = list
            .iter()
            .filter_map(|&(o, n)| Some((o.zxid()?, o, n)))
            .collect();
        by_zxid.sort_by_key(|&(z, _, n)| (z, n));
        with_zxid += by_zxid.len();
        if let Some(pair) = by_zxid.windows(2).find(|p| p[0].2 >= p[1].2) {
            let ((za, oa, na), (zb, ob, nb)) = (pair[0], pair[1]);
            let text = format!(
                "under {parent}, the create at zxid {za} got {na}, the later one at zxid {zb} got {nb}"
            );
            return invalid(
                NAME,
                text.clone(),
                json!({"parent": parent, "zxids": [za, zb]}),
                Counterexample::new(NAME, text, views(&[oa, ob])),
            );
        }
    }
    let summary = if with_zxid == 0 {
        format!(
            "{} parents, {total} sequential creates (ordered by real time only: none carries a zxid)",
            by_parent.len()
        )
    } else if with_zxid < total {
        format!(
            "{} parents, {total} sequential creates ({with_zxid} also ordered by zxid, {} by real time only)",
            by_parent.len(),
            total - with_zxid
        )
    } else {
        format!(
            "{} parents, {total} sequential creates (all also ordered by zxid)",
            by_parent.len()
        )
    };
    require_evidence(
        CheckerResult::new(
            NAME,
            Verdict::Valid,
            summary,
            json!({"parents": by_parent.len(), "creates": total, "creates_with_zxid": with_zxid}),
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
    // Writes that carry the zxid that committed them are ordered by it; when some do not, all
    // are also ordered by real time (a write acknowledged before another was invoked has the
    // smaller zxid), which catches inversions between a write with a zxid and one without.
    let mut sorted: Vec<(&Op<'_>, i128)> = writes
        .iter()
        .copied()
        .filter(|(o, _)| o.zxid().is_some())
        .collect();
    sorted.sort_by_key(|(o, _)| o.zxid());
    let by_zxid = sorted.len();
    let mut newest: Option<(&Op<'_>, i128)> = None;
    let mut inversion = None;
    for &(o, t) in &sorted {
        if let Some((n, nt)) = newest
            && nt > t
        {
            inversion = Some((n, o));
            break;
        }
        if newest.is_none_or(|(_, nt)| t > nt) {
            newest = Some((o, t));
        }
    }
    if inversion.is_none() && by_zxid < writes.len() {
        let items: Vec<Timed> = writes
            .iter()
            .map(|(o, t)| (o.invoke_pos, o.complete_pos.unwrap_or(usize::MAX), *t))
            .collect();
        inversion = real_time_inversion(&items, false).map(|(a, b)| (writes[a].0, writes[b].0));
    }
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
        "fenced_writes_with_zxid": by_zxid,
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
                "{} claims, {} fenced writes{}, {} overlapping leaderships ({:.1} ms)",
                claims.len(),
                writes.len(),
                if by_zxid < writes.len() {
                    format!(" ({by_zxid} ordered by zxid, all by real time)")
                } else if by_zxid > 0 {
                    " (all ordered by zxid)".to_string()
                } else {
                    String::new()
                },
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

/// Operations that change the tree: a session that completed one has seen its zxid, which is
/// above that of every write acknowledged before it was invoked.
const WRITE_FS: [&str; 6] = [
    "create",
    "create_ephemeral",
    "write",
    "set",
    "cas",
    "delete",
];

/// A session's end that certainly took effect: a `close_session` acknowledged (the close commits
/// before its reply), or an expiry the server announced with its zxid. A client told of its
/// expiry without a zxid (ZooKeeper's) is not one: a ZooKeeper leader says a session expired as
/// soon as it marks it closing, before the close commits, and a leader elected after it died
/// revives the session (with a fresh timeout) and its ephemeral nodes.
#[derive(Clone, Copy)]
struct SessionEnd<'o, 'e> {
    /// Where the client learned of it.
    pos: usize,
    op: &'o Op<'e>,
}

impl SessionEnd<'_, '_> {
    fn zxid(&self) -> Option<u64> {
        self.op.zxid()
    }
}

/// What one session saw before each point of the history: for reads without a zxid, whether the
/// session's view had passed some end.
#[derive(Default)]
struct SessionView {
    /// Its `ok` operations by completion position: (completion, the largest zxid of any of them
    /// so far, the latest invocation of a write among them so far).
    seen: Vec<(usize, Option<u64>, Option<usize>)>,
}

impl SessionView {
    fn push(&mut self, op: &Op<'_>) {
        let (z, w) = self.seen.last().map_or((None, None), |l| (l.1, l.2));
        let write = WRITE_FS.contains(&op.f()).then_some(op.invoke_pos);
        let pos = op.complete_pos.unwrap_or(op.invoke_pos);
        self.seen.push((pos, z.max(op.zxid()), w.max(write)));
    }

    /// Had the session's view passed `end` by position `before`? It had when one of its
    /// operations completed by then reported a zxid at or above the end's, or, for a close,
    /// when one of its writes was invoked after the close was acknowledged and completed by
    /// then (writes are ordered after every acknowledged one, and a session's view never goes
    /// back).
    fn past(&self, end: &SessionEnd<'_, '_>, before: usize) -> bool {
        let i = self.seen.partition_point(|(pos, _, _)| *pos < before);
        let Some(&(_, zxid, write)) = i.checked_sub(1).and_then(|i| self.seen.get(i)) else {
            return false;
        };
        let by_zxid = zxid.zip(end.zxid()).is_some_and(|(z, ez)| z >= ez);
        let by_write = end.op.f() == "close_session" && write.is_some_and(|w| w > end.pos);
        by_zxid || by_write
    }
}

/// The share of its timeout a session certainly lives after one of its acknowledged writes was
/// invoked. The leader heard that write, so the client was speaking then, and a server may expire
/// the session only after a timeout of silence; half, not all of it, leaves room for a leader
/// clock that runs fast within what the server tolerates (keeper waits two timeouts of its own
/// clock: sessions stay sound up to a clock 4x fast) and for a touch a follower had not relayed
/// when it lost its leader.
pub const SESSION_LIFE_AFTER_WRITE: f64 = 0.5;

/// A session expired while its client was still speaking: its expiry (announced with a zxid, so
/// certainly decided by a leader, at or after the time it was seen) came less than
/// [`SESSION_LIFE_AFTER_WRITE`] of its timeout after one of its acknowledged writes was invoked.
/// The expiry's `timeout_ms` says the session's timeout; expiries without it are not judged.
fn early_expiry(ops: &[Op<'_>]) -> Option<CheckerResult> {
    const NAME: &str = "sessions";
    // session -> invocation time of its latest acknowledged write so far, by invocation order.
    let mut writes: HashMap<u64, Vec<&Op<'_>>> = HashMap::new();
    for op in ops {
        if let Some(s) = op.session()
            && WRITE_FS.contains(&op.f())
            && op.kind() == EventType::Ok
        {
            writes.entry(s).or_default().push(op);
        }
    }
    for op in ops {
        if op.f() != "expired" || op.kind() != EventType::Ok || op.zxid().is_none() {
            continue;
        }
        let Some(s) = op.session() else { continue };
        let timeout_ms = op
            .value()
            .get("timeout_ms")
            .or_else(|| op.result().get("timeout_ms"))
            .and_then(Value::as_u64);
        let Some(timeout_ms) = timeout_ms else {
            continue;
        };
        let seen = op.invoke_time();
        let life_ns = (timeout_ms as f64 * SESSION_LIFE_AFTER_WRITE * 1e6) as u64;
        let latest = writes
            .get(&s)
            .into_iter()
            .flatten()
            .filter(|w| w.invoke_time() <= seen)
            .max_by_key(|w| w.invoke_time());
        if let Some(write) = latest
            && seen - write.invoke_time() < life_ns
        {
            let after_ms = (seen - write.invoke_time()) / 1_000_000;
            let text = format!(
                "session {s} expired {after_ms} ms after its {} of {} was invoked, less than {} of its {timeout_ms} ms timeout: a live session was expired (a leader's clock ran fast?)",
                write.f(),
                write.key().unwrap_or("?"),
                SESSION_LIFE_AFTER_WRITE
            );
            return Some(invalid(
                NAME,
                text.clone(),
                json!({"session": s, "expired_after_ms": after_ms, "timeout_ms": timeout_ms}),
                Counterexample::new(NAME, text, views(&[*write, op])),
            ));
        }
    }
    None
}

/// Sessions and ephemerals: once a session's end has certainly taken effect ([`SessionEnd`]),
/// no read whose server had applied it sees one of the session's ephemeral nodes. With zxids on
/// the read and the end, a read below the end's zxid is a stale local read; without them, the
/// read is judged only when the reader's own session had passed the end ([`SessionView::past`]);
/// otherwise it may be a lagging server's local read, and is counted, not judged.
pub fn sessions(ops: &[Op<'_>]) -> CheckerResult {
    const NAME: &str = "sessions";
    let mut ended: HashMap<u64, SessionEnd<'_, '_>> = HashMap::new();
    // Sessions told they expired, with no zxid: not known to have ended.
    let mut told_expired: HashSet<u64> = HashSet::new();
    // path -> sessions that created (or may have created) an ephemeral node there
    let mut creators: HashMap<&str, Vec<(u64, usize)>> = HashMap::new();
    let mut views_of: HashMap<u64, SessionView> = HashMap::new();
    let mut by_completion: Vec<&Op<'_>> = ops
        .iter()
        .filter(|o| o.kind() == EventType::Ok && !o.invoke.is_observation())
        .collect();
    by_completion.sort_by_key(|o| o.complete_pos);
    for op in by_completion {
        if let Some(s) = op.session() {
            views_of.entry(s).or_default().push(op);
        }
    }
    for op in ops {
        let Some(s) = op.session() else { continue };
        match (op.f(), op.kind()) {
            ("expired", EventType::Ok) if op.zxid().is_none() => {
                told_expired.insert(s);
            }
            ("close_session", EventType::Ok) | ("expired", EventType::Ok) => {
                let pos = op.complete_pos.unwrap_or(op.invoke_pos);
                let e = ended.entry(s).or_insert(SessionEnd { pos, op });
                if pos < e.pos {
                    *e = SessionEnd { pos, op };
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
    if let Some(found) = early_expiry(ops) {
        return found;
    }
    // How a read compares with the ends of sessions whose ephemeral node it could show.
    enum Judged {
        /// Below an end's zxid: a lagging server's local read.
        Stale,
        /// At or past every end: by both zxids (true), or by the reader's session (false).
        Past(bool),
        /// Without zxids, nothing tells it from a lagging local read.
        Unknown,
    }
    let judge = |op: &Op<'_>, ends: &[&SessionEnd<'_, '_>]| -> Judged {
        if let Some(rz) = op.zxid()
            && ends.iter().all(|e| e.zxid().is_some())
        {
            let ez = ends.iter().filter_map(|e| e.zxid()).max().unwrap_or(0);
            return if rz < ez {
                Judged::Stale
            } else {
                Judged::Past(true)
            };
        }
        let reader = op.session().and_then(|s| views_of.get(&s));
        for e in ends {
            match (op.zxid(), e.zxid()) {
                (Some(rz), Some(ez)) if rz < ez => return Judged::Stale,
                (Some(_), Some(_)) => {}
                _ if reader.is_some_and(|r| r.past(e, op.invoke_pos)) => {}
                _ => return Judged::Unknown,
            }
        }
        Judged::Past(false)
    };
    let mut reads = 0usize;
    let mut stale = 0usize;
    // Reads of an ephemeral path invoked after a session that created it there had ended:
    // judged with the zxids of both, judged by the reader's own session, or not judged.
    let (mut by_zxid, mut by_session, mut unjudged) = (0usize, 0usize, 0usize);
    for op in ops {
        if !matches!(op.f(), "read" | "exists") || op.kind() != EventType::Ok {
            continue;
        }
        let before_read = |e: &&SessionEnd<'_, '_>| e.pos < op.invoke_pos;
        let ended_creators: Vec<&SessionEnd<'_, '_>> = op
            .key()
            .and_then(|k| creators.get(k))
            .into_iter()
            .flatten()
            .filter(|(_, at)| *at < op.invoke_pos)
            .filter_map(|(s, _)| ended.get(s))
            .filter(before_read)
            .collect();
        if !ended_creators.is_empty() {
            match judge(op, &ended_creators) {
                Judged::Stale | Judged::Past(true) => by_zxid += 1,
                Judged::Past(false) => by_session += 1,
                Judged::Unknown => unjudged += 1,
            }
        }
        if !shows_node(op.result()) {
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
        let ends: Option<Vec<&SessionEnd<'_, '_>>> = owners.iter().map(|s| ended.get(s)).collect();
        let Some(ends) = ends else { continue };
        if !ends.iter().all(before_read) {
            continue;
        }
        let full = match judge(op, &ends) {
            Judged::Stale => {
                stale += 1;
                continue;
            }
            Judged::Unknown => continue,
            Judged::Past(full) => full,
        };
        let end = ends[0];
        let how = if full {
            String::new()
        } else {
            format!(
                ", after its own session {} had seen the end take effect",
                op.session().unwrap_or(0)
            )
        };
        let text = format!(
            "a read of {} invoked after session {} ended ({}) still saw its ephemeral node{how}",
            op.key().unwrap_or("?"),
            owners[0],
            end.op.f()
        );
        return invalid(
            NAME,
            text.clone(),
            json!({"session": owners[0], "path": op.key()}),
            Counterexample::new(NAME, text, views(&[end.op, op])),
        );
    }
    let told = told_expired
        .iter()
        .filter(|s| !ended.contains_key(s))
        .count();
    let mut summary = format!(
        "{} sessions ended, {} ephemeral paths, {reads} reads saw a node ({stale} stale local reads)",
        ended.len(),
        creators.len()
    );
    if by_session + unjudged + told > 0 {
        summary.push_str(&format!(
            "; reads of an ephemeral path after its creator ended: {by_zxid} judged by zxids, {by_session} by the reader's own session, {unjudged} not judged (without zxids a lagging local read looks the same); {told} sessions told they expired without a zxid, not counted as ended"
        ));
    }
    // Evidence: an ended session that owned an ephemeral node, and, when zxids are missing
    // (an end or a read without one), at least one read after such an end that was judged.
    let partial = by_session + unjudged > 0
        || told > 0
        || ended.values().any(|e| e.zxid().is_none())
        || ops.iter().any(|o| {
            matches!(o.f(), "read" | "exists") && o.kind() == EventType::Ok && o.zxid().is_none()
        });
    let (evidence, missing) = if creators.is_empty() || ended.is_empty() {
        let missing = if told > 0 && !creators.is_empty() {
            format!(
                "no session that owned an ephemeral node certainly ended ({told} were told they expired, without a zxid: ZooKeeper says so before the close commits)"
            )
        } else {
            "no session that owned an ephemeral node ever ended".to_string()
        };
        (0, missing)
    } else if partial && by_zxid + by_session == 0 {
        (
            0,
            format!(
                "no read of an ephemeral path after its creator ended could be judged ({unjudged} without the zxids or a write of the reader's since the end to tell them from a lagging local read)"
            ),
        )
    } else {
        (ended.len(), String::new())
    };
    require_evidence(
        CheckerResult::new(
            NAME,
            Verdict::Valid,
            summary,
            json!({"sessions_ended": ended.len(), "ephemeral_paths": creators.len(),
                   "reads_seeing_nodes": reads, "stale_local_reads": stale,
                   "judged_by_zxid": by_zxid, "judged_by_session": by_session,
                   "not_judged": unjudged, "told_expired_without_zxid": told}),
        ),
        evidence,
        &missing,
    )
}

// ---------------------------------------------------------------------------------------------

mod watch;
pub use watch::watches;

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
