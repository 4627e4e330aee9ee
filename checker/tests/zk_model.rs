//! The watches checker against a small model of a correct ZooKeeper, recorded as the
//! `zookeeper-client` crate and the harness record it: no zxid on reads, deletes or events. The
//! model has the freedoms a real ensemble has and the checker must allow: a follower that lags
//! the leader and serves reads (and sets watches) from its older state, requests processed
//! while others are in flight, one notification per session handed to every client-side
//! watcher of the path, and events held by the harness while an operation of the process is in
//! flight. Whatever it produces must never be `invalid`.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use checker::{CheckOptions, Event, EventType, Verdict, check_history};
use proptest::prelude::*;
use serde_json::{Value, json};

const PARENT: &str = "/p";
const PATHS: [&str; 2] = ["/p/w0", "/p/w1"];
/// zxids start here, so no zxid is confused with a small count.
const FIRST_ZXID: u64 = 100;
const SERVERS: usize = 3;
const CLIENTS: usize = 4;

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Txn {
    Create(usize),
    Delete(usize),
    Set(usize),
}

/// One replica's tree: path index -> (czxid, mzxid), and the parent's pzxid.
#[derive(Default, Clone)]
struct Tree {
    nodes: BTreeMap<usize, (u64, u64)>,
    pzxid: u64,
}

impl Tree {
    fn apply(&mut self, txn: Txn, zxid: u64) {
        match txn {
            Txn::Create(i) => {
                self.nodes.insert(i, (zxid, zxid));
                self.pzxid = zxid;
            }
            Txn::Delete(i) => {
                self.nodes.remove(&i);
                self.pzxid = zxid;
            }
            Txn::Set(i) => {
                if let Some(n) = self.nodes.get_mut(&i) {
                    n.1 = zxid;
                }
            }
        }
    }
}

#[derive(Default)]
struct Server {
    applied: usize,
    tree: Tree,
    /// path -> clients with a data (exists) watch on it; PARENT's children -> clients.
    data_watches: HashMap<usize, BTreeSet<usize>>,
    child_watches: BTreeSet<usize>,
    /// Requests received, not processed yet.
    queue: VecDeque<usize>,
}

enum Msg {
    /// The completion to record, and the client-side watcher to add with it.
    Reply(Event, Option<(String, bool)>),
    /// A notification: path and type.
    Notify(String, &'static str),
}

struct Client {
    server: usize,
    session: u64,
    /// The operation in flight: (f, path index or PARENT).
    pending: Option<(&'static str, Option<usize>)>,
    channel: VecDeque<Msg>,
    /// Client-side oneshot watchers: (path, on children).
    watchers: Vec<(String, bool)>,
    held: Vec<Event>,
}

struct Model {
    rng: Rng,
    log: Vec<Txn>,
    leader: Tree,
    servers: Vec<Server>,
    clients: Vec<Client>,
    history: Vec<Event>,
}

impl Model {
    fn record(&mut self, mut e: Event) {
        let i = self.history.len() as u64;
        e.index = i;
        e.time = i * 1_000_000;
        self.history.push(e);
    }

    fn apply_next(&mut self, s: usize) {
        let server = &mut self.servers[s];
        let txn = self.log[server.applied];
        server.applied += 1;
        let zxid = FIRST_ZXID + server.applied as u64;
        server.tree.apply(txn, zxid);
        let mut notify: Vec<(usize, String, &'static str)> = Vec::new();
        let mut fire_data = |server: &mut Server, i: usize, ty: &'static str| {
            let fired = server.data_watches.remove(&i).unwrap_or_default();
            for &c in &fired {
                notify.push((c, PATHS[i].to_string(), ty));
            }
            fired
        };
        match txn {
            Txn::Create(i) => {
                fire_data(server, i, "NodeCreated");
            }
            Txn::Set(i) => {
                fire_data(server, i, "NodeDataChanged");
            }
            Txn::Delete(i) => {
                fire_data(server, i, "NodeDeleted");
            }
        }
        if matches!(txn, Txn::Create(_) | Txn::Delete(_)) {
            for c in std::mem::take(&mut server.child_watches) {
                notify.push((c, PARENT.to_string(), "NodeChildrenChanged"));
            }
        }
        for (c, path, ty) in notify {
            self.clients[c].channel.push_back(Msg::Notify(path, ty));
        }
    }

    fn invoke(&mut self, c: usize) {
        let (f, target) = match self.rng.below(10) {
            0..=3 => ("watch", Some(self.rng.below(PATHS.len()))),
            4 => ("watch", None),
            5..=6 => ("write", Some(self.rng.below(PATHS.len()))),
            7..=8 => ("create", Some(self.rng.below(PATHS.len()))),
            _ => ("delete", Some(self.rng.below(PATHS.len()))),
        };
        let key = target.map_or(PARENT, |i| PATHS[i]);
        let value = match (f, target) {
            ("watch", Some(_)) => json!({"kind": "exists"}),
            ("watch", None) => json!({"kind": "children"}),
            ("delete", _) => Value::Null,
            _ => json!(self.rng.below(100)),
        };
        let client = &mut self.clients[c];
        client.pending = Some((f, target));
        let mut e = Event::new(0, 0, c as u64, EventType::Invoke, f, value);
        e.key = Some(key.to_string());
        e.session = Some(client.session);
        let s = client.server;
        self.record(e);
        self.servers[s].queue.push_back(c);
    }

    /// Server `s` processes its oldest request.
    fn process(&mut self, s: usize) {
        let Some(c) = self.servers[s].queue.pop_front() else {
            return;
        };
        let (f, target) = self.clients[c].pending.expect("a request in flight");
        let key = target.map_or(PARENT, |i| PATHS[i]).to_string();
        let mut kind = EventType::Ok;
        let mut value = Value::Null;
        let mut zxid = None;
        let mut watcher = None;
        match (f, target) {
            ("watch", Some(i)) => {
                // exists: registered whether or not the node exists; its Stat if it does.
                self.servers[s].data_watches.entry(i).or_default().insert(c);
                let node = self.servers[s].tree.nodes.get(&i).copied();
                value = json!({"kind": "exists", "result": {"exists": node.is_some()}});
                if let Some((czxid, mzxid)) = node {
                    value["stat"] = json!({"mzxid": mzxid, "pzxid": czxid});
                }
                watcher = Some((key.clone(), false));
            }
            ("watch", None) => {
                self.servers[s].child_watches.insert(c);
                let tree = &self.servers[s].tree;
                let children: Vec<&str> = tree.nodes.keys().map(|&i| PATHS[i]).collect();
                value = json!({"kind": "children", "result": {"children": children},
                               "stat": {"mzxid": 1, "pzxid": tree.pzxid}});
                watcher = Some((key.clone(), true));
            }
            (_, Some(i)) => {
                // Writes are checked against the leader's latest state, committed, and applied
                // by this server (and everything before them) before it replies.
                let exists = self.leader.nodes.contains_key(&i);
                let txn = match f {
                    "create" if !exists => Some(Txn::Create(i)),
                    "write" if exists => Some(Txn::Set(i)),
                    "delete" if exists => Some(Txn::Delete(i)),
                    _ => None,
                };
                match txn {
                    None => kind = EventType::Fail,
                    Some(txn) => {
                        self.log.push(txn);
                        let z = FIRST_ZXID + self.log.len() as u64;
                        self.leader.apply(txn, z);
                        while self.servers[s].applied < self.log.len() {
                            self.apply_next(s);
                        }
                        if f != "delete" {
                            zxid = Some(z);
                        }
                    }
                }
            }
            _ => unreachable!(),
        }
        let mut e = Event::new(0, 0, c as u64, kind, f, value);
        e.key = Some(key);
        e.session = Some(self.clients[c].session);
        e.zxid = zxid;
        if kind == EventType::Fail {
            e.error = Some("refused".into());
        }
        self.clients[c].channel.push_back(Msg::Reply(e, watcher));
    }

    /// Client `c` takes the next message off its connection.
    fn receive(&mut self, c: usize) {
        let Some(msg) = self.clients[c].channel.pop_front() else {
            return;
        };
        match msg {
            Msg::Reply(e, watcher) => {
                let ok = e.kind == EventType::Ok;
                self.record(e);
                let client = &mut self.clients[c];
                client.pending = None;
                if let (true, Some(w)) = (ok, watcher) {
                    client.watchers.push(w);
                }
                for e in std::mem::take(&mut self.clients[c].held) {
                    self.record(e);
                }
            }
            Msg::Notify(path, ty) => {
                let client = &mut self.clients[c];
                let mut fired = 0;
                client.watchers.retain(|(p, children)| {
                    let interested = match ty {
                        "NodeChildrenChanged" => *children,
                        "NodeDeleted" => true,
                        _ => !*children,
                    };
                    if p == &path && interested {
                        fired += 1;
                        false
                    } else {
                        true
                    }
                });
                let (session, in_flight) = (client.session, client.pending.is_some());
                for _ in 0..fired {
                    let mut e = Event::new(
                        0,
                        0,
                        c as u64,
                        EventType::Ok,
                        "event",
                        json!({"path": path, "type": ty, "zxid": null}),
                    );
                    e.key = Some(path.clone());
                    e.session = Some(session);
                    if in_flight {
                        self.clients[c].held.push(e);
                    } else {
                        self.record(e);
                    }
                }
            }
        }
    }

    fn run(seed: u64, steps: usize) -> Vec<Event> {
        let mut m = Model {
            rng: Rng(seed | 1),
            log: Vec::new(),
            leader: Tree::default(),
            servers: (0..SERVERS).map(|_| Server::default()).collect(),
            clients: (0..CLIENTS)
                .map(|c| Client {
                    server: c % SERVERS,
                    session: 1000 + c as u64,
                    pending: None,
                    channel: VecDeque::new(),
                    watchers: Vec::new(),
                    held: Vec::new(),
                })
                .collect(),
            history: Vec::new(),
        };
        for step in 0..steps * 4 {
            let invoking = step < steps * 3;
            match m.rng.below(4) {
                0 => {
                    let s = m.rng.below(SERVERS);
                    if m.servers[s].applied < m.log.len() {
                        m.apply_next(s);
                    }
                }
                1 if invoking => {
                    let c = m.rng.below(CLIENTS);
                    if m.clients[c].pending.is_none() {
                        m.invoke(c);
                    }
                }
                2 => {
                    let s = m.rng.below(SERVERS);
                    m.process(s);
                }
                _ => {
                    let c = m.rng.below(CLIENTS);
                    m.receive(c);
                }
            }
        }
        // Drain: every request answered, every server caught up, every message delivered.
        loop {
            let mut busy = false;
            for s in 0..SERVERS {
                while !m.servers[s].queue.is_empty() {
                    m.process(s);
                    busy = true;
                }
                while m.servers[s].applied < m.log.len() {
                    m.apply_next(s);
                    busy = true;
                }
            }
            for c in 0..CLIENTS {
                while !m.clients[c].channel.is_empty() {
                    m.receive(c);
                    busy = true;
                }
            }
            if !busy {
                break;
            }
        }
        // The run goes on for a minute: a watch that had to fire has had time to.
        let i = m.history.len() as u64;
        let mut e = Event::new(
            i,
            i * 1_000_000 + 60_000_000_000,
            99,
            EventType::Invoke,
            "write",
            json!(0),
        );
        e.key = Some("/elsewhere".into());
        m.history.push(e);
        m.history
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn a_correct_zookeeper_never_gets_an_invalid_watch_verdict(seed in any::<u64>()) {
        let history = Model::run(seed, 60);
        let opts = CheckOptions { threads: Some(1), ..CheckOptions::default() };
        let v = check_history(&history, Some("watch"), &opts).expect("checkable");
        let w = v.checkers.iter().find(|c| c.name == "watches").expect("a watches checker");
        let text: Vec<String> = history.iter().map(|e| serde_json::to_string(e).unwrap()).collect();
        prop_assert_ne!(w.verdict, Verdict::Invalid, "{}\n{}", w.summary, text.join("\n"));
    }
}

/// The model is not so timid that nothing happens: its histories have events, and a notification
/// the harness records twice for one watcher is caught in most of them.
#[test]
fn the_model_fires_watches_and_a_duplicated_event_is_mostly_caught() {
    let opts = CheckOptions {
        threads: Some(1),
        ..CheckOptions::default()
    };
    let (mut with_events, mut caught) = (0, 0);
    for seed in 1..=50u64 {
        let history = Model::run(seed * 7919, 60);
        let Some(pos) = history.iter().rposition(|e| e.f == "event") else {
            continue;
        };
        with_events += 1;
        // The same event recorded again right after: one watcher, two events.
        let mut twice = history.clone();
        twice.insert(pos + 1, history[pos].clone());
        for (i, e) in twice.iter_mut().enumerate() {
            e.index = i as u64;
        }
        let v = check_history(&twice, Some("watch"), &opts).expect("checkable");
        let w = v.checkers.iter().find(|c| c.name == "watches").unwrap();
        caught += usize::from(w.verdict == Verdict::Invalid);
    }
    assert!(
        with_events >= 40,
        "only {with_events} of 50 histories had an event"
    );
    assert!(
        caught * 2 >= with_events,
        "{caught} of {with_events} duplicates caught"
    );
}

// ---------------------------------------------------------------------------------------------
// sessions

/// A correct ZooKeeper's sessions and ephemerals, recorded without zxids on reads, closes and
/// expiries: replicas that lag, reads served from their state, a close applied by the replica
/// that answers it, and an expiry announced to its client before the close commits (or, as after
/// a leader died, long before).
mod sessions {
    use super::*;

    #[derive(Clone, Copy)]
    enum Txn {
        Create(usize, u64),
        Close(u64),
    }

    #[derive(Default, Clone)]
    struct Tree {
        owner: BTreeMap<usize, u64>,
    }

    impl Tree {
        fn apply(&mut self, txn: Txn) {
            match txn {
                Txn::Create(i, s) => {
                    self.owner.insert(i, s);
                }
                Txn::Close(s) => self.owner.retain(|_, o| *o != s),
            }
        }
    }

    #[derive(Default)]
    struct Server {
        applied: usize,
        tree: Tree,
        queue: VecDeque<usize>,
    }

    struct Client {
        server: usize,
        session: u64,
        pending: Option<(&'static str, usize)>,
        reply: Option<Event>,
    }

    struct Model {
        rng: Rng,
        log: Vec<Txn>,
        leader: Tree,
        closed: BTreeSet<u64>,
        servers: Vec<Server>,
        clients: Vec<Client>,
        next_session: u64,
        /// Sessions gone quiet, not announced expired yet; announced, not closed yet.
        quiet: Vec<(usize, u64)>,
        expiring: Vec<u64>,
        history: Vec<Event>,
    }

    impl Model {
        fn record(&mut self, mut e: Event) {
            let i = self.history.len() as u64;
            e.index = i;
            e.time = i * 1_000_000;
            self.history.push(e);
        }

        fn commit(&mut self, txn: Txn) -> u64 {
            self.log.push(txn);
            self.leader.apply(txn);
            FIRST_ZXID + self.log.len() as u64
        }

        fn apply_next(&mut self, s: usize) {
            let server = &mut self.servers[s];
            if server.applied < self.log.len() {
                server.tree.apply(self.log[server.applied]);
                server.applied += 1;
            }
        }

        fn event(
            &self,
            c: usize,
            kind: EventType,
            f: &str,
            value: Value,
            key: Option<usize>,
        ) -> Event {
            let mut e = Event::new(0, 0, c as u64, kind, f, value);
            e.key = key.map(|i| format!("/e/{i}"));
            e.session = Some(self.clients[c].session);
            e
        }

        fn invoke(&mut self, c: usize) {
            let i = self.rng.below(5);
            let f = match self.rng.below(20) {
                0..=6 => "create_ephemeral",
                7..=15 => "read",
                16..=18 => "close_session",
                _ => "stop_heartbeats",
            };
            let key = (f != "close_session" && f != "stop_heartbeats").then_some(i);
            let e = self.event(c, EventType::Invoke, f, Value::Null, key);
            self.record(e);
            if f == "stop_heartbeats" {
                // The session goes quiet; the worker carries on with a new one.
                let e = self.event(c, EventType::Ok, f, Value::Null, None);
                self.record(e);
                self.quiet.push((c, self.clients[c].session));
                self.new_session(c);
                return;
            }
            self.clients[c].pending = Some((f, i));
            let s = self.clients[c].server;
            self.servers[s].queue.push_back(c);
        }

        fn new_session(&mut self, c: usize) {
            self.next_session += 1;
            self.clients[c].session = self.next_session;
            self.clients[c].server = self.rng.below(SERVERS);
        }

        fn process(&mut self, s: usize) {
            let Some(c) = self.servers[s].queue.pop_front() else {
                return;
            };
            let (f, i) = self.clients[c].pending.expect("a request in flight");
            let session = self.clients[c].session;
            let (kind, value, zxid, key) = match f {
                "create_ephemeral" => {
                    if self.leader.owner.contains_key(&i) || self.closed.contains(&session) {
                        (EventType::Fail, Value::Null, None, Some(i))
                    } else {
                        let z = self.commit(Txn::Create(i, session));
                        (EventType::Ok, Value::Null, Some(z), Some(i))
                    }
                }
                "read" => {
                    let owner = self.servers[s].tree.owner.get(&i).copied();
                    (
                        EventType::Ok,
                        owner.map_or(Value::Null, |o| json!({"owner": o})),
                        None,
                        Some(i),
                    )
                }
                _ => {
                    self.commit(Txn::Close(session));
                    self.closed.insert(session);
                    (EventType::Ok, Value::Null, None, None)
                }
            };
            // The replica answers after applying everything up to the write.
            if f != "read" {
                while self.servers[s].applied < self.log.len() {
                    self.apply_next(s);
                }
            }
            let mut e = self.event(c, kind, f, value, key);
            e.zxid = zxid;
            self.clients[c].reply = Some(e);
        }

        fn receive(&mut self, c: usize) {
            if let Some(e) = self.clients[c].reply.take() {
                let closed = e.f == "close_session";
                self.record(e);
                self.clients[c].pending = None;
                if closed {
                    self.new_session(c);
                }
            }
        }

        pub fn run(seed: u64, steps: usize) -> Vec<Event> {
            let mut m = Model {
                rng: Rng(seed | 1),
                log: Vec::new(),
                leader: Tree::default(),
                closed: BTreeSet::new(),
                servers: (0..SERVERS).map(|_| Server::default()).collect(),
                clients: (0..CLIENTS)
                    .map(|c| Client {
                        server: c % SERVERS,
                        session: 1000 + c as u64,
                        pending: None,
                        reply: None,
                    })
                    .collect(),
                next_session: 2000,
                quiet: Vec::new(),
                expiring: Vec::new(),
                history: Vec::new(),
            };
            for step in 0..steps * 4 {
                let invoking = step < steps * 3;
                match m.rng.below(6) {
                    0 => {
                        let s = m.rng.below(SERVERS);
                        m.apply_next(s);
                    }
                    1 if invoking => {
                        let c = m.rng.below(CLIENTS);
                        if m.clients[c].pending.is_none() {
                            m.invoke(c);
                        }
                    }
                    2 => {
                        let s = m.rng.below(SERVERS);
                        m.process(s);
                    }
                    3 => {
                        let c = m.rng.below(CLIENTS);
                        m.receive(c);
                    }
                    4 if !m.quiet.is_empty() => {
                        // The leader marks a quiet session closing and tells its client: the
                        // close is not committed yet.
                        let (c, s) = m.quiet.remove(m.rng.below(m.quiet.len()));
                        let mut e = Event::new(
                            0,
                            0,
                            c as u64,
                            EventType::Ok,
                            "expired",
                            json!({"state": "expired"}),
                        );
                        e.session = Some(s);
                        m.record(e);
                        m.expiring.push(s);
                    }
                    5 if !m.expiring.is_empty() => {
                        let s = m.expiring.remove(m.rng.below(m.expiring.len()));
                        m.commit(Txn::Close(s));
                        m.closed.insert(s);
                    }
                    _ => {}
                }
            }
            for s in 0..SERVERS {
                while !m.servers[s].queue.is_empty() {
                    m.process(s);
                }
            }
            for c in 0..CLIENTS {
                m.receive(c);
            }
            m.history
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn a_correct_zookeeper_never_gets_an_invalid_sessions_verdict(seed in any::<u64>()) {
            let history = Model::run(seed, 300);
            let opts = CheckOptions { threads: Some(1), ..CheckOptions::default() };
            let v = check_history(&history, Some("session"), &opts).expect("checkable");
            let r = v.checkers.iter().find(|c| c.name == "sessions").expect("a sessions checker");
            let text: Vec<String> = history.iter().map(|e| serde_json::to_string(e).unwrap()).collect();
            prop_assert_ne!(r.verdict, Verdict::Invalid, "{}\n{}", r.summary, text.join("\n"));
        }
    }

    /// The model judges reads: most of its histories have reads judged by the reader's own
    /// session, and a read made to see a closed session's node after the reader wrote is caught.
    #[test]
    fn the_model_judges_reads_and_a_surviving_ephemeral_is_caught() {
        let opts = CheckOptions {
            threads: Some(1),
            ..CheckOptions::default()
        };
        let (mut judged, mut planted, mut caught) = (0, 0, 0);
        for seed in 1..=50u64 {
            let history = Model::run(seed * 104_729, 300);
            let v = check_history(&history, Some("session"), &opts).expect("checkable");
            let r = v.checkers.iter().find(|c| c.name == "sessions").unwrap();
            judged += usize::from(r.details["judged_by_session"].as_u64().unwrap_or(0) > 0);

            // A close acknowledged of a session that owned a node, followed by a write and a
            // read of that node by another session.
            let owned = history.iter().enumerate().find_map(|(close, e)| {
                if e.f != "close_session" || e.kind != EventType::Ok {
                    return None;
                }
                history[..close].iter().rfind(|c| {
                    c.f == "create_ephemeral" && c.kind == EventType::Ok && c.session == e.session
                })
            });
            let Some(owned) = owned else {
                continue;
            };
            planted += 1;
            let path = owned.key.clone();
            let mut bad = history.clone();
            let mut push = |kind, f: &str, key: Option<String>, value: Value, zxid| {
                let i = bad.len() as u64;
                let mut e = Event::new(i, i * 1_000_000, 77, kind, f, value);
                e.key = key;
                e.session = Some(7777);
                e.zxid = zxid;
                bad.push(e);
            };
            push(
                EventType::Invoke,
                "create_ephemeral",
                Some("/e/other".into()),
                Value::Null,
                None,
            );
            push(
                EventType::Ok,
                "create_ephemeral",
                Some("/e/other".into()),
                Value::Null,
                Some(99_999),
            );
            push(EventType::Invoke, "read", path.clone(), Value::Null, None);
            push(
                EventType::Ok,
                "read",
                path,
                json!({"owner": owned.session}),
                None,
            );
            let v = check_history(&bad, Some("session"), &opts).expect("checkable");
            let r = v.checkers.iter().find(|c| c.name == "sessions").unwrap();
            caught += usize::from(r.verdict == Verdict::Invalid);
        }
        assert!(
            judged >= 25,
            "reads judged by the reader's session in only {judged} of 50 histories"
        );
        assert!(
            planted >= 25,
            "only {planted} histories had a close of an ephemeral's owner"
        );
        assert_eq!(caught, planted);
    }
}
