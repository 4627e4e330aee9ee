//! A deterministic simulation of a keeper ensemble: the real `Core` of every node, a network
//! that delays, reorders, duplicates and loses messages and cuts partitions, nodes that crash
//! and restart from what they persisted, and clients writing through random nodes. Every step
//! is checked against ZAB's safety properties; at the end the faults stop and the ensemble must
//! converge. Seeded: a failure prints the seed, and `SIM_SEED=N cargo test --test sim` replays it.
//! `SIM_SEEDS=N` runs more seeds (the default is a quick check for `make test`).

use keeper::api::{Op, Role, SessionId, WatchEvent, Zxid};
use keeper::core::{
    ClientRequest, Config, Core, Input, Output, PeerMsg, Persist, Read, Recovered, Response,
};
use keeper::tree::Snapshot;
use keeper::txn::Txn;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet};

const TICK_MS: u64 = 100;
/// How often a step that lets something out before its fsync (`Ready::take_early`) and
/// persists something ends in a crash before that fsync.
const CRASH_BEFORE_FSYNC_ODDS: f64 = 0.02;

/// What a node has on disk.
#[derive(Clone, Default)]
struct Disk {
    snapshot: Option<Snapshot>,
    log: Vec<Txn>,
    accepted_epoch: u32,
    current_epoch: u32,
    /// Set when the disk was damaged and the history cut (`Recovered::damage`).
    damage: Option<String>,
}

impl Disk {
    fn persist(&mut self, p: &Persist) {
        match p {
            Persist::Append(txns) => {
                for t in txns {
                    assert!(self.log.last().is_none_or(|l| l.zxid < t.zxid));
                    self.log.push(t.clone());
                }
            }
            Persist::TruncateAfter(z) => self.log.retain(|t| t.zxid <= *z),
            Persist::Snapshot(s) => {
                self.snapshot = Some(s.clone());
                self.log.clear();
            }
            Persist::Epochs {
                accepted_epoch,
                current_epoch,
            } => {
                assert!(
                    *accepted_epoch >= self.accepted_epoch,
                    "accepted epoch went back"
                );
                assert!(
                    *current_epoch >= self.current_epoch,
                    "current epoch went back"
                );
                self.accepted_epoch = *accepted_epoch;
                self.current_epoch = *current_epoch;
            }
            Persist::HistoryRestored => self.damage = None,
        }
    }

    fn recovered(&self) -> Recovered {
        Recovered {
            snapshot: self.snapshot.clone(),
            log: self.log.clone(),
            accepted_epoch: self.accepted_epoch,
            current_epoch: self.current_epoch,
            damage: self.damage.clone(),
        }
    }
}

struct InFlight {
    at: u64,
    from: u64,
    to: u64,
    msg: PeerMsg,
}

struct Sim {
    rng: ChaCha8Rng,
    now: u64,
    ids: Vec<u64>,
    nodes: BTreeMap<u64, Option<Core>>,
    disks: BTreeMap<u64, Disk>,
    net: Vec<InFlight>,
    /// Latest delivery time per (from, to): links are FIFO, like TCP.
    fifo: BTreeMap<(u64, u64), u64>,
    /// Pairs that cannot talk, until `heal_at`.
    cut: BTreeSet<(u64, u64)>,
    heal_at: u64,
    faults: bool,
    loss: f64,
    next_request: u64,
    /// Requests in flight: (node, request) -> what was asked.
    requests: BTreeMap<(u64, u64), ClientRequest>,
    sessions: Vec<SessionId>,
    /// Writes acknowledged to a client, by zxid.
    acked: BTreeMap<Zxid, Txn>,
    /// The one transaction each committed zxid names.
    committed: BTreeMap<Zxid, Txn>,
    /// The leader of each established epoch.
    leaders: BTreeMap<u32, u64>,
    /// The tree digest each applied zxid leads to.
    digests: BTreeMap<Zxid, u64>,
    writes_ok: u64,
    bug: Option<keeper::core::Bug>,
    /// Each node's applied zxid since it last started: it never goes back.
    applied: BTreeMap<u64, Zxid>,
    /// Whether crashes also damage disks (`corrupt`), and whether the damage is reported.
    damage: DiskDamage,
    /// When a disk was last damaged: one damaged node at a time, as schism's `corrupt`.
    last_damage_at: u64,
    /// Every watch event a node sent: (node, session, event).
    events: Vec<(u64, SessionId, WatchEvent)>,
    /// What nodes told sessions' event streams besides events: (node, session, what), with
    /// `lost` for `WatchesLost` and `ended` for `SessionEnded`.
    stream_news: Vec<(u64, SessionId, &'static str)>,
}

/// The simulator's `corrupt`: a crash that also cuts the node's disk, as keeper's storage does
/// when it finds a damaged record (the records from it on) or snapshot (everything).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum DiskDamage {
    Off,
    /// The storage reports the cut (`Recovered::damage`), as keeperd's does.
    Reported,
    /// The cut history looks whole: what a storage without the damage report would do.
    Unreported,
}

/// Odds that a crash (while `DiskDamage` is on) damages the disk, and the quiet time after a
/// damage before another.
const DAMAGE_ODDS: f64 = 0.5;
const DAMAGE_GAP_MS: u64 = 5_000;

impl Sim {
    fn new(seed: u64, n: u64) -> Sim {
        Sim::with_bug(seed, n, None)
    }

    fn with_bug(seed: u64, n: u64, bug: Option<keeper::core::Bug>) -> Sim {
        let ids: Vec<u64> = (1..=n).collect();
        let mut sim = Sim {
            rng: ChaCha8Rng::seed_from_u64(seed),
            now: 1_000_000,
            ids: ids.clone(),
            nodes: BTreeMap::new(),
            disks: BTreeMap::new(),
            net: Vec::new(),
            fifo: BTreeMap::new(),
            cut: BTreeSet::new(),
            heal_at: 0,
            faults: true,
            loss: 0.05,
            next_request: 1,
            requests: BTreeMap::new(),
            sessions: Vec::new(),
            acked: BTreeMap::new(),
            committed: BTreeMap::new(),
            leaders: BTreeMap::new(),
            digests: BTreeMap::new(),
            writes_ok: 0,
            bug,
            applied: BTreeMap::new(),
            damage: DiskDamage::Off,
            last_damage_at: 0,
            events: Vec::new(),
            stream_news: Vec::new(),
        };
        for &id in &ids {
            sim.disks.insert(id, Disk::default());
            let core = Core::new(sim.config(id), Recovered::default(), sim.now);
            sim.nodes.insert(id, Some(core));
        }
        sim
    }

    fn config(&self, id: u64) -> Config {
        let mut c = Config::new(id, self.ids.clone());
        c.tick_ms = TICK_MS;
        c.request_timeout_ms = 3_000;
        c.bug = self.bug;
        c
    }

    fn input(&mut self, id: u64, input: Input) {
        let now = self.now;
        let Some(Some(core)) = self.nodes.get_mut(&id) else {
            return;
        };
        let trace =
            std::env::var("SIM_TRACE").is_ok_and(|t| t.parse::<u64>().is_ok_and(|t| id == t));
        if trace && !matches!(input, Input::Tick) {
            eprintln!("{now} -> {id}: {input:?}");
        }
        let mut ready = core.step(now, input);
        if trace {
            for o in &ready.after_persist {
                match o {
                    Output::Send { to, msg } => eprintln!("{now} {id} -> {to}: {}", msg.name()),
                    o => eprintln!("{now} {id} out: {o:?}"),
                }
            }
        }
        // The shell lets some outputs out before its fsync (a leader's proposals and commits, a
        // follower's forwards, and in an ensemble what clients are told): sometimes the node
        // dies right then, with those out and nothing of the step on disk.
        let early = ready.take_early(core);
        if self.faults
            && !early.is_empty()
            && !ready.persist.is_empty()
            && self.rng.random_bool(CRASH_BEFORE_FSYNC_ODDS)
        {
            self.carry_out(id, early);
            return self.crash(id);
        }
        self.carry_out(id, early);
        // The durability rule: persist everything, then let the rest out.
        for p in &ready.persist {
            self.disks.get_mut(&id).unwrap().persist(p);
        }
        self.carry_out(id, ready.after_persist);
        self.check(id);
    }

    fn carry_out(&mut self, id: u64, outputs: Vec<Output>) {
        for o in outputs {
            match o {
                Output::Send { to, msg } => self.send(id, to, msg),
                Output::Reply {
                    request, result, ..
                } => self.reply(id, request, result),
                Output::Event { session, event } => self.events.push((id, session, event)),
                Output::WatchesLost { session } => self.stream_news.push((id, session, "lost")),
                Output::SessionEnded { session, .. } => {
                    self.stream_news.push((id, session, "ended"))
                }
            }
        }
    }

    fn send(&mut self, from: u64, to: u64, msg: PeerMsg) {
        if self.faults && self.rng.random_bool(self.loss) {
            return;
        }
        let copies = if self.faults && self.rng.random_bool(0.02) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let delay = self.rng.random_range(1..30);
            let last = self.fifo.entry((from, to)).or_insert(0);
            let at = (self.now + delay).max(*last);
            *last = at;
            self.net.push(InFlight {
                at,
                from,
                to,
                msg: msg.clone(),
            });
        }
    }

    fn reply(
        &mut self,
        node: u64,
        request: u64,
        result: Result<Response, keeper::api::KeeperError>,
    ) {
        let asked = self
            .requests
            .remove(&(node, request))
            .expect("a reply to a request that was never made, or a second reply");
        match (&asked, &result) {
            (ClientRequest::CreateSession { .. }, Ok(Response::Session { session, .. })) => {
                self.sessions.push(*session);
                self.ack(node, *session);
            }
            (ClientRequest::Write { .. }, Ok(Response::Stat { stat })) => {
                self.writes_ok += 1;
                self.ack(node, stat.mzxid);
            }
            (ClientRequest::Write { .. }, Ok(Response::Created { stat, .. })) => {
                self.writes_ok += 1;
                self.ack(node, stat.czxid);
            }
            _ => {}
        }
    }

    /// A write acknowledged at `zxid`: the transaction there must survive everything.
    fn ack(&mut self, node: u64, zxid: Zxid) {
        let core = self.nodes[&node].as_ref().unwrap();
        let txn = core
            .log()
            .iter()
            .find(|t| t.zxid == zxid)
            .cloned()
            .expect("an acknowledged write is in the answering node's log");
        self.acked.insert(zxid, txn);
    }

    /// Safety properties, after every step of node `id`.
    fn check(&mut self, id: u64) {
        let Some(Some(core)) = self.nodes.get(&id) else {
            return;
        };
        let st = core.status();
        // At most one leader per epoch.
        if st.role == Role::Leading {
            let leader = *self.leaders.entry(st.epoch).or_insert(id);
            assert_eq!(leader, id, "two leaders in epoch {}", st.epoch);
        }
        assert!(st.applied_zxid <= st.committed_zxid);
        assert!(st.committed_zxid <= st.last_zxid);
        // A committed zxid names the same transaction everywhere.
        for t in core
            .log()
            .iter()
            .take_while(|t| t.zxid <= st.committed_zxid)
        {
            if let Some(other) = self.committed.get(&t.zxid) {
                assert_eq!(other, t, "two transactions committed at {:#x}", t.zxid);
            } else {
                self.committed.insert(t.zxid, t.clone());
            }
        }
        // A node never discards what it applied (it only may after a restart, from disk).
        let before = self.applied.insert(id, st.applied_zxid).unwrap_or(0);
        assert!(
            st.applied_zxid >= before,
            "node {id} went back from applied {before:#x} to {:#x}",
            st.applied_zxid
        );
        // Each node's applied state is that of one global sequence at the same point.
        let d = core.digest();
        let known = *self.digests.entry(d.zxid).or_insert(d.digest);
        assert_eq!(
            known, d.digest,
            "node {id} applied up to {:#x} has a different tree",
            d.zxid
        );
    }

    fn tick_all(&mut self) {
        for id in self.ids.clone() {
            self.input(id, Input::Tick);
        }
    }

    fn deliver_due(&mut self) {
        // A stable sort keeps each link's messages in the order they were sent.
        self.net.sort_by_key(|m| m.at);
        while let Some(m) = self.net.first() {
            if m.at > self.now {
                break;
            }
            // Reordering: sometimes deliver a later message first.
            let i = if self.faults && self.net.len() > 1 && self.rng.random_bool(0.05) {
                1
            } else {
                0
            };
            let m = self.net.remove(i);
            if self.cut.contains(&(m.from, m.to)) {
                continue;
            }
            self.input(
                m.to,
                Input::Peer {
                    from: m.from,
                    msg: m.msg,
                },
            );
        }
    }

    fn client_request(&mut self) {
        let node = self.ids[self.rng.random_range(0..self.ids.len())];
        let request = self.next_request;
        self.next_request += 1;
        let roll = self.rng.random_range(0..100);
        let session = if self.sessions.is_empty() {
            0
        } else {
            self.sessions[self.rng.random_range(0..self.sessions.len())]
        };
        let body = if session == 0 || roll < 10 {
            ClientRequest::CreateSession {
                timeout_ms: 20 * TICK_MS,
                last_zxid: 0,
            }
        } else if roll < 25 {
            ClientRequest::Heartbeat {
                session,
                last_zxid: 0,
            }
        } else if roll < 40 {
            ClientRequest::Read {
                session,
                last_zxid: 0,
                read: Read::GetChildren {
                    path: "/".to_string(),
                },
                watch: roll % 2 == 0,
                consistency: if roll < 30 {
                    keeper::api::Consistency::Linearizable
                } else {
                    keeper::api::Consistency::Local
                },
            }
        } else if roll < 55 {
            ClientRequest::Write {
                session,
                last_zxid: 0,
                op: Op::Create {
                    path: format!("/n{}", self.rng.random_range(0..20)),
                    data: format!("c{request}"),
                    mode: if roll % 3 == 0 {
                        keeper::api::CreateMode::Ephemeral
                    } else {
                        keeper::api::CreateMode::PersistentSequential
                    },
                },
            }
        } else {
            ClientRequest::Write {
                session,
                last_zxid: 0,
                op: Op::SetData {
                    path: "/".to_string() + if roll % 2 == 0 { "zookeeper" } else { "" },
                    data: format!("s{request}"),
                    version: -1,
                },
            }
        };
        // Writes to the reserved node fail definitively: useful as a probe, but let most
        // writes go to a real node.
        let body = match body {
            ClientRequest::Write {
                session,
                last_zxid,
                op: Op::SetData { data, .. },
            } => ClientRequest::Write {
                session,
                last_zxid,
                op: Op::Create {
                    path: "/w".to_string(),
                    data,
                    mode: keeper::api::CreateMode::PersistentSequential,
                },
            },
            other => other,
        };
        if matches!(self.nodes.get(&node), Some(Some(_))) {
            self.requests.insert((node, request), body.clone());
            self.input(node, Input::Client { request, body });
        }
    }

    fn fault(&mut self) {
        let roll = self.rng.random_range(0..100);
        if roll < 40 && self.ids.len() > 1 {
            // Partition: cut one node off, or split in two.
            self.cut.clear();
            let k = self.rng.random_range(1..=self.ids.len() / 2);
            let mut side: Vec<u64> = self.ids.clone();
            for i in (1..side.len()).rev() {
                let j = self.rng.random_range(0..=i);
                side.swap(i, j);
            }
            let minority: BTreeSet<u64> = side[..k].iter().copied().collect();
            for &a in &self.ids {
                for &b in &self.ids {
                    if minority.contains(&a) != minority.contains(&b) {
                        self.cut.insert((a, b));
                    }
                }
            }
            self.heal_at = self.now + self.rng.random_range(500..5_000);
        } else if roll < 70 {
            // Crash a node.
            let id = self.ids[self.rng.random_range(0..self.ids.len())];
            self.crash(id);
            if self.damage != DiskDamage::Off
                && self.now >= self.last_damage_at + DAMAGE_GAP_MS
                && self.disks.values().all(|d| d.damage.is_none())
                && self.rng.random_bool(DAMAGE_ODDS)
            {
                self.damage_disk(id);
            }
        } else if roll < 75 {
            // A stale or spurious disconnect notice (a link that reset while the peer lives):
            // it may cost an election, never safety.
            let id = self.ids[self.rng.random_range(0..self.ids.len())];
            let peer = self.ids[self.rng.random_range(0..self.ids.len())];
            if peer != id {
                self.input(id, Input::PeerDisconnected { peer });
            }
        } else {
            // Restart every crashed node from its disk.
            for id in self.ids.clone() {
                if self.nodes[&id].is_none() {
                    let core = Core::new(self.config(id), self.disks[&id].recovered(), self.now);
                    self.nodes.insert(id, Some(core));
                    self.applied.remove(&id);
                }
            }
        }
    }

    /// Node `id` dies, losing nothing but its memory (the simulated disk is written when a
    /// step's outputs are carried out).
    fn crash(&mut self, id: u64) {
        if let Some(slot) = self.nodes.get_mut(&id) {
            *slot = None;
        }
        self.requests.retain(|(n, _), _| *n != id);
        // The dead process's connections close: every live node that is not cut off from it
        // hears so (a partitioned one does not, as no RST crosses a partition).
        for other in self.ids.clone() {
            if other != id && !self.cut.contains(&(id, other)) {
                self.input(other, Input::PeerDisconnected { peer: id });
            }
        }
    }

    /// Cuts the disk of node `id` (down) as keeper's storage does at damage: the log from a
    /// random record on, or (a damaged snapshot or log header) everything but the epochs.
    fn damage_disk(&mut self, id: u64) {
        self.last_damage_at = self.now;
        let disk = self.disks.get_mut(&id).unwrap();
        let why = if disk.log.is_empty() || self.rng.random_bool(0.2) {
            disk.snapshot = None;
            disk.log.clear();
            "damaged snapshot".to_string()
        } else {
            let keep = self.rng.random_range(0..disk.log.len());
            disk.log.truncate(keep);
            format!("damaged log record {keep}")
        };
        if self.damage == DiskDamage::Reported {
            disk.damage = Some(why);
        }
    }

    /// Starts node `id` (down) again from its disk.
    fn restart(&mut self, id: u64) {
        let core = Core::new(self.config(id), self.disks[&id].recovered(), self.now);
        self.nodes.insert(id, Some(core));
        self.applied.remove(&id);
    }

    fn heal(&mut self) {
        self.faults = false;
        self.cut.clear();
        for id in self.ids.clone() {
            if self.nodes[&id].is_none() {
                let core = Core::new(self.config(id), self.disks[&id].recovered(), self.now);
                self.nodes.insert(id, Some(core));
                self.applied.remove(&id);
            }
        }
    }

    fn run_for(&mut self, ms: u64, requests_per_s: u64, faults_per_s: u64) {
        let end = self.now + ms;
        let mut next_tick = self.now;
        while self.now < end {
            self.now += 5;
            if self.now >= next_tick {
                self.tick_all();
                next_tick = self.now + TICK_MS / 2;
            }
            if self.heal_at != 0 && self.now >= self.heal_at {
                self.cut.clear();
                self.heal_at = 0;
            }
            self.deliver_due();
            if self.rng.random_range(0..1000) < requests_per_s * 5 {
                self.client_request();
            }
            if self.faults && self.rng.random_range(0..200_000) < faults_per_s * 1000 {
                self.fault();
            }
        }
    }

    fn leader(&self) -> Option<u64> {
        self.nodes.iter().find_map(|(id, c)| {
            c.as_ref()
                .filter(|c| c.status().role == Role::Leading)
                .map(|_| *id)
        })
    }
}

fn simulate(seed: u64, n: u64, fault_ms: u64) {
    simulate_with(seed, n, fault_ms, None)
}

fn simulate_with(seed: u64, n: u64, fault_ms: u64, bug: Option<keeper::core::Bug>) {
    simulate_damaged(seed, n, fault_ms, bug, DiskDamage::Off)
}

/// Polls of 100 simulated ms for the replicas to agree after the heal and the probe.
const CONVERGE_POLLS: usize = 200;

fn simulate_damaged(
    seed: u64,
    n: u64,
    fault_ms: u64,
    bug: Option<keeper::core::Bug>,
    damage: DiskDamage,
) {
    let mut sim = Sim::with_bug(seed, n, bug);
    sim.damage = damage;
    sim.run_for(fault_ms, 40, 1);
    sim.heal();
    // Without faults the ensemble must elect a leader, serve, and converge.
    sim.run_for(15_000, 20, 0);
    let leader = sim
        .leader()
        .unwrap_or_else(|| panic!("seed {seed}: no leader after the faults stopped"));
    let probe_session = ClientRequest::CreateSession {
        timeout_ms: 2_000,
        last_zxid: 0,
    };
    let request = sim.next_request;
    sim.next_request += 1;
    sim.requests
        .insert((leader, request), probe_session.clone());
    sim.input(
        leader,
        Input::Client {
            request,
            body: probe_session,
        },
    );
    sim.run_for(3_000, 0, 0);
    // Sessions of clients that went away keep expiring after the heal (the leader waits two
    // timeouts of its own clock), and each expiry is a transaction: replicas are compared at a
    // moment when none is in flight, polled for at most CONVERGE_POLLS x 100 simulated ms.
    let digests_now = |sim: &Sim| -> BTreeSet<_> {
        sim.nodes
            .values()
            .map(|c| {
                let d = c.as_ref().unwrap().digest();
                (d.zxid, d.digest)
            })
            .collect()
    };
    let mut digests = digests_now(&sim);
    for _ in 0..CONVERGE_POLLS {
        if digests.len() == 1 {
            break;
        }
        sim.run_for(100, 0, 0);
        digests = digests_now(&sim);
    }
    let statuses: Vec<_> = sim
        .nodes
        .values()
        .map(|c| c.as_ref().unwrap().status())
        .collect();
    assert_eq!(
        digests.len(),
        1,
        "seed {seed}: replicas differ after healing: {statuses:#?}"
    );
    // No acknowledged write is lost: each is in the converged history.
    let core = sim.nodes[&leader].as_ref().unwrap();
    for (zxid, txn) in &sim.acked {
        if *zxid > core.log_start() {
            let have = core.log().iter().find(|t| t.zxid == *zxid);
            assert_eq!(
                have,
                Some(txn),
                "seed {seed}: acknowledged write {zxid:#x} lost"
            );
        }
        assert_eq!(
            sim.committed.get(zxid),
            Some(txn),
            "seed {seed}: acknowledged write {zxid:#x} not committed as acknowledged"
        );
    }
    assert!(
        sim.writes_ok > 0 || fault_ms == 0,
        "seed {seed}: no write succeeded at all"
    );
}

fn seeds() -> Vec<u64> {
    if let Ok(s) = std::env::var("SIM_SEED") {
        return vec![s.parse().expect("SIM_SEED is a number")];
    }
    let n: u64 = std::env::var("SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(12);
    let base = match std::env::var("SIM_RANDOM") {
        Ok(_) => rand::rng().random::<u32>() as u64,
        Err(_) => 1_000,
    };
    (0..n).map(|i| base + i).collect()
}

#[test]
fn three_nodes_stay_safe_and_converge() {
    for seed in seeds() {
        eprintln!("sim seed {seed} (replay: SIM_SEED={seed})");
        simulate(seed, 3, 30_000);
    }
}

#[test]
fn five_nodes_stay_safe_and_converge() {
    for seed in seeds().into_iter().take(6) {
        eprintln!("sim seed {seed} (replay: SIM_SEED={seed})");
        simulate(seed, 5, 30_000);
    }
}

/// A single voter commits on its own ack, in the batch that logs the proposal, so what it tells
/// its clients waits for that batch's fsync (`Core::answers_precede_fsync`): crashes, some of
/// them between a step and its fsync, lose no acknowledged write.
#[test]
fn a_single_voter_answers_only_what_its_disk_holds() {
    for seed in seeds().into_iter().take(6) {
        eprintln!("sim seed {seed} (replay: SIM_SEED={seed})");
        simulate(seed, 1, 30_000);
    }
}

/// schism's `corrupt` in the simulator: crashes that also cut a node's disk at damage, one node
/// at a time. A damaged node votes only once it has synced from a leader elected without it
/// ("Protocol-Aware Recovery", FAST 2018), so no acknowledged write is lost.
#[test]
fn damaged_disks_lose_no_acknowledged_write() {
    for seed in seeds() {
        eprintln!("sim seed {seed} (replay: SIM_SEED={seed})");
        simulate_damaged(seed, 3, 30_000, None, DiskDamage::Reported);
    }
    for seed in seeds().into_iter().take(4) {
        eprintln!("sim seed {seed}, 5 nodes (replay: SIM_SEED={seed})");
        simulate_damaged(seed, 5, 30_000, None, DiskDamage::Reported);
    }
}

/// The same faults with the damage unreported (the cut history looks whole, the node votes at
/// once) lose acknowledged writes: the report and the core's refusal to vote are what keep
/// them.
#[test]
fn an_unreported_damage_loses_acknowledged_writes() {
    let caught = (0..60u64).find(|seed| {
        std::panic::catch_unwind(|| {
            simulate_damaged(7_000 + seed, 3, 30_000, None, DiskDamage::Unreported)
        })
        .is_err()
    });
    eprintln!(
        "unreported damage: caught at seed {:?}",
        caught.map(|s| 7_000 + s)
    );
    assert!(
        caught.is_some(),
        "the simulator never lost a write to unreported damage"
    );
}

/// The rule itself, step by step: a node whose disk was cut at damage does not vote, so it
/// and one healthy node (which may lack writes the damaged node acknowledged) elect nobody;
/// once a leader that a quorum elected without it has synced it, its damage is cleared on
/// disk and it counts again.
#[test]
fn a_damaged_node_does_not_vote_until_it_has_synced_from_a_leader() {
    let mut sim = Sim::new(11, 3);
    sim.faults = false;
    sim.run_for(3_000, 20, 0);
    let leader = sim.leader().expect("a leader");
    assert!(sim.writes_ok > 0);
    let others: Vec<u64> = sim.ids.iter().copied().filter(|&i| i != leader).collect();
    let (damaged, healthy) = (others[0], others[1]);
    sim.crash(damaged);
    sim.crash(leader);
    sim.damage = DiskDamage::Reported;
    sim.damage_disk(damaged);
    sim.restart(damaged);
    sim.run_for(5_000, 0, 0);
    assert_eq!(
        sim.leader(),
        None,
        "a damaged node and one other elected a leader"
    );
    sim.restart(leader);
    sim.run_for(5_000, 0, 0);
    assert!(sim.leader().is_some(), "the healthy nodes elect");
    assert_eq!(
        sim.disks[&damaged].damage, None,
        "the damaged node synced and cleared its damage"
    );
    sim.crash(healthy);
    sim.run_for(5_000, 10, 0);
    assert!(
        sim.leader().is_some(),
        "the restored node votes again: it and one other elect"
    );
}

#[test]
fn a_fault_free_ensemble_elects_quickly_and_commits() {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let mut sim = Sim::new(7, 3);
    sim.faults = false;
    sim.run_for(3_000, 20, 0);
    for c in sim.nodes.values() {
        eprintln!("{:?}", c.as_ref().unwrap().status());
    }
    assert!(sim.leader().is_some());
    assert!(
        sim.writes_ok > 10,
        "only {} writes committed",
        sim.writes_ok
    );
}

/// The simulator has teeth: each protocol fault it can observe is caught within a few seeds.
/// (Faults visible only to clients — stale reads, lost watch events, leaked ephemerals, unsynced
/// writes — are the harness's to catch: see `schism gate`.)
#[cfg(feature = "bugs")]
#[test]
fn the_simulator_catches_injected_protocol_bugs() {
    use keeper::core::Bug;
    // The durability bugs of the sync (a history acked or an epoch taken before the history is
    // on disk) show when a node that synced crashes and restarts from its disk.
    for bug in [
        Bug::EarlyAck,
        Bug::SplitBrain,
        Bug::SyncNoTrunc,
        Bug::NewleaderAckBeforeDurable,
        Bug::EpochBeforeLog,
        Bug::OldLeaderKeepsUncommitted,
    ] {
        let caught = (0..40u64).find(|seed| {
            std::panic::catch_unwind(|| simulate_with(5_000 + seed, 3, 20_000, Some(bug))).is_err()
        });
        eprintln!(
            "{}: caught at seed {:?}",
            bug.name(),
            caught.map(|s| 5_000 + s)
        );
        assert!(caught.is_some(), "the simulator missed {}", bug.name());
    }
}

/// A follower that sees its leader's connection close stops following at once and answers the
/// write it forwarded with an indeterminate error, instead of holding it until the sync limit
/// or the request timeout; a closed link to another follower changes nothing.
#[test]
fn a_follower_that_loses_its_leaders_link_answers_in_flight_writes_at_once() {
    let mut sim = Sim::new(11, 3);
    sim.faults = false;
    sim.run_for(3_000, 0, 0);
    let leader = sim.leader().expect("a leader after a fault-free start");
    let followers: Vec<u64> = sim.ids.iter().copied().filter(|id| *id != leader).collect();
    let (follower, other) = (followers[0], followers[1]);
    let now = sim.now;
    let core = sim.nodes.get_mut(&follower).unwrap().as_mut().unwrap();
    let write = ClientRequest::CreateSession {
        timeout_ms: 2_000,
        last_zxid: 0,
    };
    let out = core.step(
        now,
        Input::Client {
            request: 1,
            body: write,
        },
    );
    assert!(
        out.after_persist.iter().any(|o| matches!(
            o,
            Output::Send { to, msg: PeerMsg::Forward { .. } } if *to == leader
        )),
        "the follower forwards the write: {out:?}"
    );

    let out = core.step(now, Input::PeerDisconnected { peer: other });
    assert!(
        out.is_empty(),
        "another follower's link is no news: {out:?}"
    );
    assert_eq!(core.status().role, Role::Following);

    let out = core.step(now, Input::PeerDisconnected { peer: leader });
    let answered = out.after_persist.iter().find_map(|o| match o {
        Output::Reply {
            request: 1, result, ..
        } => Some(result.clone()),
        _ => None,
    });
    match answered {
        Some(Err(e)) => assert!(e.error.is_indeterminate(), "{e:?}"),
        other => panic!("the write in flight is answered indeterminate at once, got {other:?}"),
    }
    assert_eq!(core.status().role, Role::Looking);
}

/// A follower's batch that logs a proposal and answers a ping in one group commit: nothing that
/// vouches for the proposal being on its disk (its ACK, and its PONG, which acks everything
/// through its last zxid) leaves before the batch's fsync (`Ready::take_early`).
#[test]
fn what_vouches_for_a_batchs_appends_waits_for_its_fsync() {
    let mut sim = Sim::new(21, 3);
    sim.faults = false;
    sim.run_for(3_000, 0, 0);
    let leader = sim.leader().expect("a leader after a fault-free start");
    let follower = *sim.ids.iter().find(|&&n| n != leader).unwrap();
    let now = sim.now;
    // A session's creation is a proposal; the leader is stepped by hand to take it out.
    let leading = sim.nodes.get_mut(&leader).unwrap().as_mut().unwrap();
    let create = ClientRequest::CreateSession {
        timeout_ms: 2_000,
        last_zxid: 0,
    };
    let out = leading.step(
        now,
        Input::Client {
            request: 1,
            body: create,
        },
    );
    let proposal = out
        .after_persist
        .into_iter()
        .find_map(|o| match o {
            Output::Send {
                to,
                msg: msg @ PeerMsg::Proposal { .. },
            } if to == follower => Some(msg),
            _ => None,
        })
        .expect("the leader proposes the session");
    let PeerMsg::Proposal { epoch, txn } = &proposal else {
        unreachable!()
    };
    let (epoch, zxid) = (*epoch, txn.zxid);

    let core = sim.nodes.get_mut(&follower).unwrap().as_mut().unwrap();
    let mut batch = core.step(
        now,
        Input::Peer {
            from: leader,
            msg: proposal,
        },
    );
    let ping = PeerMsg::Ping {
        epoch,
        seq: 1_000,
        committed: 0,
    };
    batch.append(core.step(
        now,
        Input::Peer {
            from: leader,
            msg: ping,
        },
    ));
    assert!(
        batch
            .persist
            .iter()
            .any(|p| matches!(p, Persist::Append(t) if t.iter().any(|t| t.zxid == zxid))),
        "the batch logs the proposal: {batch:?}"
    );
    for o in batch.take_early(core) {
        if let Output::Send { msg, .. } = o {
            assert!(
                !matches!(
                    msg,
                    PeerMsg::Ack { .. } | PeerMsg::Pong { .. } | PeerMsg::AckNewLeader { .. }
                ),
                "{} vouches for the batch's append before its fsync",
                msg.name()
            );
        }
    }
    let sends: Vec<&PeerMsg> = batch
        .after_persist
        .iter()
        .filter_map(|o| match o {
            Output::Send { msg, .. } => Some(msg),
            _ => None,
        })
        .collect();
    assert!(
        sends
            .iter()
            .any(|m| matches!(m, PeerMsg::Ack { zxid: z, .. } if *z == zxid)),
        "the ACK follows the fsync: {sends:?}"
    );
    assert!(
        sends
            .iter()
            .any(|m| matches!(m, PeerMsg::Pong { last_zxid, .. } if *last_zxid == zxid)),
        "the PONG follows the fsync and acks the proposal: {sends:?}"
    );
}

/// Sends `body` to `node` as a client request and runs the ensemble (fault-free) until it was
/// answered, at most `CLIENT_WAIT_MS`.
fn ask(sim: &mut Sim, node: u64, body: ClientRequest) {
    const CLIENT_WAIT_MS: u64 = 3_000;
    let request = sim.next_request;
    sim.next_request += 1;
    sim.requests.insert((node, request), body.clone());
    sim.input(node, Input::Client { request, body });
    for _ in 0..CLIENT_WAIT_MS / 50 {
        if !sim.requests.contains_key(&(node, request)) {
            return;
        }
        sim.run_for(50, 0, 0);
    }
    panic!("node {node} did not answer request {request}");
}

/// A session on a follower of a fault-free ensemble: it creates `/w`, changes it, and sets a
/// watch on it after reading it. Returns (ensemble, follower, session).
fn a_watch_set_after_the_last_change(bug: Option<keeper::core::Bug>) -> (Sim, u64, SessionId) {
    let mut sim = Sim::with_bug(21, 3, bug);
    sim.faults = false;
    sim.run_for(3_000, 0, 0);
    let leader = sim.leader().expect("a leader after a fault-free start");
    let follower = *sim.ids.iter().find(|&&n| n != leader).unwrap();
    ask(
        &mut sim,
        follower,
        ClientRequest::CreateSession {
            timeout_ms: 60_000,
            last_zxid: 0,
        },
    );
    let session = *sim.sessions.last().expect("the session was created");
    let write = |op| ClientRequest::Write {
        session,
        last_zxid: 0,
        op,
    };
    ask(
        &mut sim,
        follower,
        write(Op::Create {
            path: "/w".to_string(),
            data: "a".to_string(),
            mode: keeper::api::CreateMode::Persistent,
        }),
    );
    ask(
        &mut sim,
        follower,
        write(Op::SetData {
            path: "/w".to_string(),
            data: "b".to_string(),
            version: -1,
        }),
    );
    ask(&mut sim, follower, exists_and_watch(session, "/w"));
    (sim, follower, session)
}

fn exists_and_watch(session: SessionId, path: &str) -> ClientRequest {
    ClientRequest::Read {
        session,
        last_zxid: 0,
        read: Read::Exists {
            path: path.to_string(),
        },
        watch: true,
        consistency: keeper::api::Consistency::Sync,
    }
}

/// `watch-duplicate` is reachable by any watch: of three watches that each fire once, one
/// event comes twice (the fault's period is three events of a node).
#[cfg(feature = "bugs")]
#[test]
fn the_watch_duplicate_fault_sends_an_event_twice() {
    use keeper::core::Bug;
    const FIRINGS: usize = 3;
    for bug in [None, Some(Bug::WatchDuplicate)] {
        let (mut sim, follower, session) = a_watch_set_after_the_last_change(bug);
        sim.events.clear();
        for round in 0..FIRINGS {
            if round > 0 {
                ask(&mut sim, follower, exists_and_watch(session, "/w"));
            }
            ask(
                &mut sim,
                follower,
                ClientRequest::Write {
                    session,
                    last_zxid: 0,
                    op: Op::SetData {
                        path: "/w".to_string(),
                        data: format!("c{round}"),
                        version: -1,
                    },
                },
            );
        }
        // Only the follower holds the session's watch: the other nodes send it nothing.
        let got = sim
            .events
            .iter()
            .filter(|(n, s, _)| (*n, *s) == (follower, session))
            .count();
        let expected = FIRINGS + usize::from(bug.is_some());
        assert_eq!(
            got, expected,
            "{bug:?}: events of {FIRINGS} one-shot watches"
        );
    }
}

/// `watch-stale-after-reconnect` is reachable when the leader dies: the follower that rejoins
/// the next leader fires a watch for a change its session had read before setting it; the
/// correct follower fires nothing, as nothing changed.
#[cfg(feature = "bugs")]
#[test]
fn the_stale_watch_fault_fires_an_old_change_after_the_leader_dies() {
    use keeper::core::Bug;
    for bug in [None, Some(Bug::WatchStaleAfterReconnect)] {
        let (mut sim, follower, session) = a_watch_set_after_the_last_change(bug);
        let seen = sim.nodes[&follower].as_ref().unwrap().applied_zxid();
        sim.events.clear();
        let leader = sim.leader().unwrap();
        sim.crash(leader);
        sim.run_for(5_000, 0, 0);
        assert!(
            sim.leader().is_some_and(|l| l != leader),
            "{bug:?}: the survivors elected a leader"
        );
        let stale: Vec<_> = sim
            .events
            .iter()
            .filter(|(n, s, e)| (*n, *s) == (follower, session) && e.zxid <= seen)
            .collect();
        assert_eq!(
            stale.is_empty(),
            bug.is_none(),
            "{bug:?}: events of changes at or before zxid {seen:#x}: {stale:?}"
        );
    }
}

/// A node whose accepted epoch is above the leader's cannot follow it: it refuses the leader's
/// LEADERINFO, as ZooKeeper's Learner does ("Leaders epoch is less than accepted epoch"). It
/// took that epoch from a discovery of its own whose LEADERINFO was lost, while the others
/// established a lower one without it. The leader must step down when it hears that accepted
/// epoch, so that the next election proposes one above it; otherwise the node looks, finds the
/// same leader and is refused again, forever, and the ensemble never has every node following.
#[test]
fn a_leader_below_a_followers_accepted_epoch_steps_down_so_that_all_follow() {
    let mut sim = Sim::new(31, 3);
    sim.faults = false;
    // n3 took accepted epoch 2 (its own discovery's) and went down before anyone heard of it.
    sim.crash(3);
    sim.disks.get_mut(&3).unwrap().accepted_epoch = 2;
    sim.run_for(3_000, 0, 0);
    let leader = sim.leader().expect("n1 and n2 elect a leader");
    let established = sim.nodes[&leader].as_ref().unwrap().status().epoch;
    assert!(
        established < 2,
        "the scenario needs a leader below n3's accepted epoch, got epoch {established}"
    );
    sim.restart(3);
    sim.run_for(5_000, 5, 0);
    let statuses: Vec<_> = sim
        .ids
        .iter()
        .map(|id| sim.nodes[id].as_ref().unwrap().status())
        .collect();
    let leaders: BTreeSet<_> = statuses.iter().map(|s| s.leader).collect();
    assert!(
        statuses.iter().all(|s| s.serving) && leaders.len() == 1 && !leaders.contains(&None),
        "every node follows one leader: {statuses:?}"
    );
    let epoch = statuses[0].epoch;
    assert!(
        epoch >= 2,
        "the new epoch is at least n3's accepted one, got {epoch}"
    );
}

/// A follower re-synced by SNAP skips the changes in between, so no watch fires for them: it
/// must tell each session with watches there that they are lost (its stream overflows, and a
/// ZooKeeper client reconnects and sets them again) and each session that ended meanwhile that
/// it ended, not leave a watch armed for a change that already happened and a stream open for
/// a session that is gone (found by `schism sim --workload watch`).
#[test]
fn a_snap_sync_tells_its_sessions_their_watches_are_lost_and_ended_sessions_that_they_ended() {
    let (mut sim, follower, watcher) = a_watch_set_after_the_last_change(None);
    ask(
        &mut sim,
        follower,
        ClientRequest::CreateSession {
            timeout_ms: 1_000,
            last_zxid: 0,
        },
    );
    let short_lived = *sim.sessions.last().unwrap();
    let leader = sim.leader().unwrap();
    // The follower is cut off; meanwhile `/w` changes, and the short-lived session, heard from
    // by nobody, expires.
    for &other in &sim.ids.clone() {
        if other != follower {
            sim.cut.insert((follower, other));
            sim.cut.insert((other, follower));
        }
    }
    ask(
        &mut sim,
        leader,
        ClientRequest::CreateSession {
            timeout_ms: 60_000,
            last_zxid: 0,
        },
    );
    let writer = *sim.sessions.last().unwrap();
    ask(
        &mut sim,
        leader,
        ClientRequest::Write {
            session: writer,
            last_zxid: 0,
            op: Op::SetData {
                path: "/w".to_string(),
                data: "changed while cut off".to_string(),
                version: -1,
            },
        },
    );
    // Long enough for the short-lived session to expire (two of its timeouts), not the
    // watcher's (the ensemble grants it at most 20 ticks).
    sim.run_for(3_500, 0, 0);
    // The leader forgets the log the follower lacks, so it can only be synced by SNAP.
    let core = sim.nodes.get_mut(&leader).unwrap().as_mut().unwrap();
    core.compact(core.applied_zxid(), 0);
    sim.events.clear();
    sim.stream_news.clear();
    sim.heal();
    sim.run_for(5_000, 0, 0);
    let told =
        |session: SessionId, what: &str| sim.stream_news.contains(&(follower, session, what));
    let fired = sim
        .events
        .iter()
        .any(|(n, s, _)| (*n, *s) == (follower, watcher));
    assert!(
        fired || told(watcher, "lost"),
        "the watch on /w neither fired nor was reported lost: {:?}",
        sim.stream_news
    );
    assert!(
        told(short_lived, "ended"),
        "the expired session was not told it ended: {:?}",
        sim.stream_news
    );
}
