//! A stateright model of the real keeper core (issue 3, "Model checking").
//!
//! Each of three server actors wraps a `keeper::core::Core`, the same code `keeperd` runs; a
//! fourth actor is the client that offers a bounded number of writes to every server. The
//! network is stateright's unordered duplicating network: any message may be delayed, reordered
//! and delivered any number of times, including never (which is how loss looks to the actors).
//! A server may crash and restart; it recovers from what it persisted, through
//! `Core::new(cfg, Recovered { .. }, now)`, exactly like `keeperd` at boot.
//!
//! Two searches: an exhaustive breadth-first one (every state up to a depth: the first
//! election from a cold start, and writes, a crash and timeouts from an established leader),
//! and seeded random walks (stateright's simulation checker, with a chooser that only takes
//! steps that change something and injects a fault one step in `FAULT_ODDS`), which reach the
//! re-elections, restarts and resyncs that lie far beyond any exhaustive depth.
//!
//! Commands:
//! - the bounded check (part of `make test`, about a minute on 2 cores):
//!   `cargo test -p keeper --test model -- --nocapture`
//! - the deeper check (depths +2/+1, walks 4 minutes each):
//!   `KEEPER_MODEL_DEEP=1 cargo test --release -p keeper --test model -- --nocapture`
//! - the proof that the check has teeth (a leader that commits on its own ack is caught):
//!   `cargo test -p keeper --features bugs --test model the_model_catches -- --nocapture`
//! - the web explorer (Stateright Explorer, loopback only; `KEEPER_MODEL_WARM=1` starts it
//!   from the established leader):
//!   `KEEPER_MODEL_SERVE=127.0.0.1:3000 cargo test --release -p keeper --test model explore -- --nocapture`
//! - `KEEPER_MODEL_SEED=N` other walks, `KEEPER_MODEL_DEPTH=N` another depth for every search.
//!
//! ## Abstractions (what the model does not explore, and why that is sound for safety)
//! - **Time.** The core reads time only from `step(now, ..)`. Each server keeps a logical clock
//!   that two timers advance: `Tick` by `TICK_STEP_MS` (long enough for the election's finalize
//!   wait, a leader's ping and a follower's FOLLOWERINFO resend) and `Expire` by `EXPIRE_STEP_MS`
//!   (past every limit at once: init and sync limits, notification backoff), so that every
//!   timeout can fire. A tick after which the node did nothing (no output, and a core equal to
//!   one whose clock alone moved) is discarded: time passing silently on one node is the same
//!   execution as that node's clock standing still, and dropping it keeps `now` (which the core
//!   hashes) from multiplying the state space. A restart moves the node's clock by
//!   `RESTART_GAP_MS`, as real time passes while a node is down. A third timer, `LeaderLink`,
//!   tells a follower that its leader's connection closed (`Input::PeerDisconnected`), at any
//!   moment and without time passing, true or stale. Requests and sessions never time out within the horizon:
//!   they only produce indeterminate replies, which the properties do not need.
//! - **Duplicates.** stateright remembers the last delivered message in the state; the model
//!   forgets it, and a delivery that changes no actor and adds no message is a no-op.
//! - **Loss.** In a duplicating network a message that is never delivered is indistinguishable,
//!   to every actor, from a lost one, and the properties read actor states only; stateright's
//!   explicit `Drop` action (`LossyNetwork::Yes`) would only double the states per message sent.
//!   `KEEPER_MODEL_LOSSY=1` turns it on anyway.
//! - **Warm start.** Elections from a cold start are checked exhaustively to the cold depth. The
//!   write, crash and re-election checks start from a state the same model reaches by a fixed
//!   fault-free schedule (an established leader with two synced followers, every message sent
//!   so far still in the network as a possible duplicate), so that the bounded depth is spent
//!   on the interesting part.
//! - **Restarts** are bounded in total (`Setup::max_restarts`), not only concurrently.
//! - **No compaction**: the model never takes snapshots, so SNAP sync is not exercised here
//!   (the simulator and the storage tests cover it).
//!
//! ## Properties
//! Ghost state (recorded by the model after every step, saved with the node's disk so that it
//! survives a crash, never read by the core) keeps what each node has ever done:
//! - `at most one leader per epoch`: no epoch in which two nodes reported `role == Leading`.
//! - `a committed zxid names one transaction`: over every node and every point in time, each
//!   zxid at or below a node's `committed_zxid` names the same `Txn`.
//! - `committed transactions are never lost`: every transaction any node ever saw committed is,
//!   at that zxid, in the log of (a) every live node whose `committed_zxid` is at least that zxid
//!   and (b) every live established leader of a later epoch.
//! - `applied states are prefixes of one sequence`: equal applied zxid means equal tree digest,
//!   over every node and every point in time.
//! - sometimes `a leader is elected`, sometimes `a write is acknowledged`.

use keeper::api::{NodeId, Role, Zxid, epoch_of};
use keeper::core::{
    Bug, ClientRequest, Config, Core, Input, Output, PeerMsg, Persist, Recovered, Response,
};
use keeper::tree::Snapshot;
use keeper::txn::Txn;
use stateright::actor::{
    Actor, ActorModel, ActorModelAction, ActorModelState, Id, LossyNetwork, Network, Out,
    model_timeout,
};
use stateright::{Checker, Chooser, HasDiscoveries, Model, Property};
use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Instant;

const SERVERS: usize = 3;
/// The client actor's index, after the servers.
const CLIENT: usize = SERVERS;
const TICK_MS: u64 = 100;
/// One `Tick` timer: at least `FINALIZE_WAIT_MS` (200) and `tick_ms`.
const TICK_STEP_MS: u64 = 200;
/// One `Expire` timer: beyond every limit the core keeps (init 500 ms, sync 300 ms,
/// notification backoff 1 600 ms).
const EXPIRE_STEP_MS: u64 = 10_000;
/// Where every clock starts, and how far a restart moves a node's clock: more than any run can
/// advance it, so a restarted node never reuses a time (its follow `attempt` derives from it).
const START_MS: u64 = 1_000_000;
const RESTART_GAP_MS: u64 = 1_000_000_000;
/// Sessions (the model's writes) and requests outlive every run.
const SESSION_MS: u64 = 1_000_000_000_000;
const REQUEST_TIMEOUT_MS: u64 = 1_000_000_000_000;
/// Bound on the fault-free schedule that builds the warm start.
const MAX_SETTLE_STEPS: usize = 1_000;

// ---- the durable state --------------------------------------------------------------------

/// What the model records about a node's past, for the properties. Kept on the node's disk so
/// that it survives crashes; the core never sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
struct Ghost {
    /// Epochs in which this node reported itself an established leader.
    led: BTreeSet<u32>,
    /// Every transaction this node ever held at or below its commit point, by zxid (more than
    /// one per zxid is a violation).
    committed: BTreeMap<Zxid, Vec<Txn>>,
    /// Every tree digest this node ever had, by applied zxid.
    digests: BTreeMap<Zxid, BTreeSet<u64>>,
    /// Writes this node acknowledged to the client.
    acked: BTreeMap<Zxid, Txn>,
}

/// A node's disk: what `Ready::persist` wrote, as `keeperd`'s storage keeps it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
struct Disk {
    snapshot: Option<Snapshot>,
    log: Vec<Txn>,
    accepted_epoch: u32,
    current_epoch: u32,
    /// How many times the node has started (1 before the first crash).
    lives: u32,
    ghost: Ghost,
}

impl Disk {
    fn persist(&mut self, p: &Persist) {
        match p {
            Persist::Append(txns) => {
                for t in txns {
                    assert!(
                        self.log.last().is_none_or(|l| l.zxid < t.zxid),
                        "the core appended {:#x} out of order",
                        t.zxid
                    );
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
                    *accepted_epoch >= self.accepted_epoch && *current_epoch >= self.current_epoch,
                    "the core persisted an epoch going back"
                );
                self.accepted_epoch = *accepted_epoch;
                self.current_epoch = *current_epoch;
            }
            // The model's disks are never damaged.
            Persist::HistoryRestored => {}
        }
    }

    fn recovered(&self) -> Recovered {
        Recovered {
            snapshot: self.snapshot.clone(),
            log: self.log.clone(),
            accepted_epoch: self.accepted_epoch,
            current_epoch: self.current_epoch,
            damage: None,
        }
    }
}

// ---- actors -------------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Msg {
    Peer(PeerMsg),
    /// The client offers its write number `k` to a server.
    Write(u64),
}

/// stateright sorts messages (to number actions stably) but `PeerMsg` has no order: order by
/// a fixed-key hash, falling back to the debug text when two distinct messages collide.
impl Ord for Msg {
    fn cmp(&self, other: &Self) -> Ordering {
        if self == other {
            return Ordering::Equal;
        }
        stable_hash(self)
            .cmp(&stable_hash(other))
            .then_with(|| format!("{self:?}").cmp(&format!("{other:?}")))
    }
}

impl PartialOrd for Msg {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

fn stable_hash<T: Hash>(t: &T) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    t.hash(&mut h);
    h.finish()
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Timer {
    Tick,
    Expire,
    /// The connection from the leader this node follows closes (the shell's
    /// `Input::PeerDisconnected`): the leader crashed, or its link reset. It may fire at any
    /// moment, true or stale, as the shell's notice may be.
    LeaderLink,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Node {
    core: Core,
    /// The node's logical clock (the core keeps a copy).
    now: u64,
    disk: Disk,
    /// Client writes this life has taken (each at most once).
    taken: BTreeSet<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum State {
    Server(Box<Node>),
    Client,
}

#[derive(Clone)]
enum Member {
    Server { id: NodeId, bug: Option<Bug> },
    Client { writes: u64 },
}

fn node_id(actor: Id) -> NodeId {
    usize::from(actor) as NodeId + 1
}

fn actor_id(node: NodeId) -> Id {
    Id::from((node - 1) as usize)
}

fn config(id: NodeId, bug: Option<Bug>) -> Config {
    let mut c = Config::new(id, (1..=SERVERS as NodeId).collect());
    c.tick_ms = TICK_MS;
    c.init_limit_ticks = 5;
    c.sync_limit_ticks = 3;
    c.max_session_ticks = 2 * SESSION_MS / TICK_MS;
    c.request_timeout_ms = REQUEST_TIMEOUT_MS;
    c.bug = bug;
    c
}

impl Member {
    /// Feeds one input to the server's core and carries out what it returns. `advance` moves
    /// the clock (timers); a timer step that leaves no trace is discarded (see the module docs).
    fn feed(
        &self,
        state: &mut Cow<State>,
        advance: Option<u64>,
        input: Input,
        take: Option<u64>,
        o: &mut Out<Self>,
    ) {
        let Member::Server { id, .. } = self else {
            return;
        };
        let State::Server(n) = &**state else {
            return;
        };
        let now = n.now + advance.unwrap_or(0);
        let mut core = n.core.clone();
        let outputs = core.step(now, input);
        if outputs.is_empty() {
            let unchanged = match advance {
                // Time passing and nothing else: the same core as one that only saw the clock
                // move (a message from itself is ignored, but advances the core's clock).
                Some(_) => {
                    let mut idle = n.core.clone();
                    let nothing = PeerMsg::Ping {
                        epoch: 0,
                        seq: 0,
                        committed: 0,
                    };
                    let _ = idle.step(
                        now,
                        Input::Peer {
                            from: *id,
                            msg: nothing,
                        },
                    );
                    idle == core
                }
                None => core == n.core && take.is_none(),
            };
            if unchanged {
                return;
            }
        }
        let mut next = Node {
            core,
            now,
            disk: n.disk.clone(),
            taken: n.taken.clone(),
        };
        if let Some(k) = take {
            next.taken.insert(k);
        }
        let mut save = false;
        // The durability rule: the whole batch is persisted before anything leaves; a
        // stateright step is atomic, so persisting first is enough.
        for p in &outputs.persist {
            next.disk.persist(p);
            save = true;
        }
        for out in outputs.after_persist {
            match out {
                Output::Send { to, msg } => o.send(actor_id(to), Msg::Peer(msg)),
                Output::Reply {
                    result: Ok(Response::Session { session, .. }),
                    ..
                } => {
                    // A session's id is the zxid of the transaction that created it.
                    if let Some(t) = next.core.log().iter().find(|t| t.zxid == session) {
                        next.disk.ghost.acked.insert(session, t.clone());
                        save = true;
                    }
                }
                _ => {}
            }
        }
        save |= observe(&next.core, &mut next.disk.ghost);
        if save {
            o.save(next.disk.clone());
        }
        *state.to_mut() = State::Server(Box::new(next));
    }
}

/// Records in the ghost what the node's state shows now. True when the ghost changed.
fn observe(core: &Core, ghost: &mut Ghost) -> bool {
    let st = core.status();
    let mut changed = false;
    if st.role == Role::Leading {
        changed |= ghost.led.insert(st.epoch);
    }
    for t in core
        .log()
        .iter()
        .take_while(|t| t.zxid <= st.committed_zxid)
    {
        let seen = ghost.committed.entry(t.zxid).or_default();
        if !seen.contains(t) {
            seen.push(t.clone());
            changed = true;
        }
    }
    let d = core.digest();
    if d.zxid > 0 {
        changed |= ghost.digests.entry(d.zxid).or_default().insert(d.digest);
    }
    changed
}

impl Actor for Member {
    type Msg = Msg;
    type Timer = Timer;
    type State = State;
    type Storage = Disk;
    type Random = ();

    fn on_start(&self, _id: Id, storage: &Option<Disk>, o: &mut Out<Self>) -> State {
        match self {
            Member::Client { writes } => {
                for k in 1..=*writes {
                    for s in 0..SERVERS {
                        o.send(Id::from(s), Msg::Write(k));
                    }
                }
                State::Client
            }
            Member::Server { id, bug, .. } => {
                let mut disk = storage.clone().unwrap_or_default();
                disk.lives += 1;
                let now = START_MS + u64::from(disk.lives - 1) * RESTART_GAP_MS;
                let core = Core::new(config(*id, *bug), disk.recovered(), now);
                o.save(disk.clone());
                o.set_timer(Timer::Tick, model_timeout());
                o.set_timer(Timer::Expire, model_timeout());
                o.set_timer(Timer::LeaderLink, model_timeout());
                State::Server(Box::new(Node {
                    core,
                    now,
                    disk,
                    taken: BTreeSet::new(),
                }))
            }
        }
    }

    fn on_msg(&self, _id: Id, state: &mut Cow<State>, src: Id, msg: Msg, o: &mut Out<Self>) {
        match msg {
            Msg::Peer(msg) => {
                let input = Input::Peer {
                    from: node_id(src),
                    msg,
                };
                self.feed(state, None, input, None, o);
            }
            Msg::Write(k) => {
                let State::Server(n) = &**state else {
                    return;
                };
                // A server that does not serve would refuse the write; the client may offer
                // it to another server, or to this one later.
                if n.taken.contains(&k) || !n.core.status().serving {
                    return;
                }
                let input = Input::Client {
                    request: k,
                    body: ClientRequest::CreateSession {
                        timeout_ms: SESSION_MS + k,
                        last_zxid: 0,
                    },
                };
                self.feed(state, None, input, Some(k), o);
            }
        }
    }

    fn on_timeout(&self, _id: Id, state: &mut Cow<State>, timer: &Timer, o: &mut Out<Self>) {
        o.set_timer(timer.clone(), model_timeout());
        let step = match timer {
            Timer::Tick => TICK_STEP_MS,
            Timer::Expire => EXPIRE_STEP_MS,
            Timer::LeaderLink => {
                let (Member::Server { id, .. }, State::Server(n)) = (self, &**state) else {
                    return;
                };
                let status = n.core.status();
                if let Some(leader) = status.leader.filter(|l| *l != *id) {
                    let input = Input::PeerDisconnected { peer: leader };
                    self.feed(state, None, input, None, o);
                }
                return;
            }
        };
        self.feed(state, Some(step), Input::Tick, None, o);
    }
}

// ---- the model ----------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct Setup {
    bug: Option<Bug>,
    /// Client writes offered (each to every server).
    writes: u64,
    /// Crashes over the whole run (stateright's `max_crashes` only bounds concurrent ones).
    max_restarts: u32,
    lossy: bool,
    /// Start from an established leader (see the module docs) instead of a cold ensemble.
    warm: bool,
    /// Random walks choose a fault one step in this many.
    fault_odds: u64,
    /// A member that never starts (an inert actor in its place): the cold start of an ensemble
    /// with one member down, which halves the interleavings so that the exhaustive bound reaches
    /// an established leader (a quorum of the two others).
    absent: Option<NodeId>,
}

type Inner = ActorModel<Member, Setup>;
type SysState = ActorModelState<Member>;
type Action = ActorModelAction<Msg, Timer, ()>;

/// The actor model with its initial state replaced by a warm start when asked.
struct KeeperModel {
    inner: Inner,
    init: Vec<SysState>,
}

fn within_boundary(setup: &Setup, s: &SysState) -> bool {
    if s.crashed.get(CLIENT).copied().unwrap_or(false) {
        // The client has nothing durable to lose; crashing it only wastes states.
        return false;
    }
    let restarts: u32 = s.actor_storages[..SERVERS]
        .iter()
        .map(|d| d.as_ref().map_or(0, |d| d.lives.saturating_sub(1)))
        .sum();
    let down = s.crashed[..SERVERS].iter().filter(|c| **c).count() as u32;
    restarts + down <= setup.max_restarts
}

impl KeeperModel {
    fn new(setup: Setup) -> KeeperModel {
        let servers = (1..=SERVERS as NodeId).map(|id| {
            if setup.absent == Some(id) {
                // Sends nothing, sets no timer, ignores what it receives.
                Member::Client { writes: 0 }
            } else {
                Member::Server { id, bug: setup.bug }
            }
        });
        let inner = ActorModel::new(setup.clone(), ())
            .actors(servers)
            .actor(Member::Client {
                writes: setup.writes,
            })
            .lossy_network(if setup.lossy {
                LossyNetwork::Yes
            } else {
                LossyNetwork::No
            })
            .max_crashes(usize::from(setup.max_restarts > 0))
            .within_boundary(within_boundary);
        let mut init = inner.init_states();
        if setup.warm {
            init = init.into_iter().map(|s| settle(&inner, s)).collect();
        }
        KeeperModel { inner, init }
    }
}

/// Runs a fault-free schedule until a leader is established and both followers serve: deliver
/// each message once, in the model's action order; when none is left, the nodes take turns to
/// tick (a tick may resend a node's messages, so they become deliverable again). Client writes
/// stay in the network, undelivered.
fn settle(model: &Inner, mut state: SysState) -> SysState {
    let mut actions = Vec::new();
    // Delivered messages, by sender.
    let mut delivered: BTreeMap<u64, Id> = BTreeMap::new();
    let mut seen = BTreeSet::from([stable_hash(&state)]);
    let mut turn = 0usize;
    for _ in 0..MAX_SETTLE_STEPS {
        let statuses: Vec<_> = servers(&state).map(|(_, n, _)| n.core.status()).collect();
        let leading = statuses.iter().filter(|s| s.role == Role::Leading).count();
        if leading == 1 && statuses.iter().all(|s| s.serving) {
            return state;
        }
        actions.clear();
        model.actions(&state, &mut actions);
        let fresh = |s: &SysState| !seen.contains(&stable_hash(s));
        let mut next = None;
        for a in &actions {
            if let ActorModelAction::Deliver {
                src,
                msg: Msg::Peer(_),
                ..
            } = a
                && delivered.insert(stable_hash(a), *src).is_none()
            {
                next = next_state(model, &state, a.clone()).filter(fresh);
                if next.is_some() {
                    break;
                }
            }
        }
        if next.is_none() {
            let ticks: Vec<&Action> = actions
                .iter()
                .filter(|a| matches!(a, ActorModelAction::Timeout(_, Timer::Tick)))
                .collect();
            for _ in 0..ticks.len() {
                turn += 1;
                let tick = ticks[turn % ticks.len()];
                next = next_state(model, &state, tick.clone()).filter(fresh);
                if let (Some(_), ActorModelAction::Timeout(id, _)) = (&next, tick) {
                    delivered.retain(|_, src| src != id);
                    break;
                }
            }
        }
        state = next.unwrap_or_else(|| panic!("the fault-free schedule got stuck: {statuses:#?}"));
        seen.insert(stable_hash(&state));
    }
    let statuses: Vec<_> = servers(&state).map(|(_, n, _)| n.core.status()).collect();
    panic!("no established leader after {MAX_SETTLE_STEPS} fault-free steps: {statuses:#?}");
}

/// stateright's step, without its memory of the last delivered message (which would make a
/// state reached by two different deliveries two states), and with deliveries that change
/// nothing (a duplicate answered with duplicates) dropped as no-ops.
fn next_state(model: &Inner, state: &SysState, action: Action) -> Option<SysState> {
    let mut next = model.next_state(state, action)?;
    if let Network::UnorderedDuplicating(_, last) = &mut next.network {
        *last = None;
    }
    (next != *state).then_some(next)
}

/// Every server's index, state and whether it is down.
fn servers(s: &SysState) -> impl Iterator<Item = (usize, &Node, bool)> {
    s.actor_states
        .iter()
        .enumerate()
        .take(SERVERS)
        .filter_map(|(i, a)| match &**a {
            State::Server(n) => Some((i, &**n, s.crashed[i])),
            State::Client => None,
        })
}

/// The union of every node's ghost `committed`.
fn all_committed(s: &SysState) -> BTreeMap<Zxid, Vec<&Txn>> {
    let mut all: BTreeMap<Zxid, Vec<&Txn>> = BTreeMap::new();
    for (_, n, _) in servers(s) {
        for (z, ts) in &n.disk.ghost.committed {
            let seen = all.entry(*z).or_default();
            for t in ts {
                if !seen.contains(&t) {
                    seen.push(t);
                }
            }
        }
    }
    all
}

fn one_leader_per_epoch(_: &KeeperModel, s: &SysState) -> bool {
    let mut by_epoch: BTreeMap<u32, usize> = BTreeMap::new();
    for (i, n, _) in servers(s) {
        for e in &n.disk.ghost.led {
            if *by_epoch.entry(*e).or_insert(i) != i {
                return false;
            }
        }
    }
    true
}

fn committed_zxid_names_one_txn(_: &KeeperModel, s: &SysState) -> bool {
    all_committed(s).values().all(|ts| ts.len() == 1)
}

fn committed_never_lost(_: &KeeperModel, s: &SysState) -> bool {
    let committed = all_committed(s);
    for (_, n, down) in servers(s) {
        if down {
            continue;
        }
        let st = n.core.status();
        let leader_epoch = (st.role == Role::Leading).then_some(st.epoch);
        for (z, ts) in &committed {
            if *z <= n.core.log_start() {
                continue;
            }
            let must_have =
                *z <= st.committed_zxid || leader_epoch.is_some_and(|e| epoch_of(*z) < e);
            if must_have && !n.core.log().iter().any(|t| t.zxid == *z && t == ts[0]) {
                return false;
            }
        }
    }
    true
}

fn applied_states_are_prefixes(_: &KeeperModel, s: &SysState) -> bool {
    let mut digests: BTreeMap<Zxid, BTreeSet<u64>> = BTreeMap::new();
    for (_, n, _) in servers(s) {
        for (z, ds) in &n.disk.ghost.digests {
            digests.entry(*z).or_default().extend(ds);
        }
    }
    digests.values().all(|d| d.len() == 1)
}

fn leader_elected(_: &KeeperModel, s: &SysState) -> bool {
    servers(s).any(|(_, n, down)| !down && n.core.status().role == Role::Leading)
}

fn write_acknowledged(_: &KeeperModel, s: &SysState) -> bool {
    servers(s).any(|(_, n, _)| !n.disk.ghost.acked.is_empty())
}

const SAFETY: [&str; 4] = [
    "at most one leader per epoch",
    "a committed zxid names one transaction",
    "committed transactions are never lost",
    "applied states are prefixes of one sequence",
];

impl Model for KeeperModel {
    type State = SysState;
    type Action = Action;

    fn init_states(&self) -> Vec<SysState> {
        self.init.clone()
    }

    fn actions(&self, state: &SysState, actions: &mut Vec<Action>) {
        self.inner.actions(state, actions)
    }

    fn next_state(&self, state: &SysState, action: Action) -> Option<SysState> {
        next_state(&self.inner, state, action)
    }

    fn format_action(&self, action: &Action) -> String {
        self.inner.format_action(action)
    }

    fn format_step(&self, state: &SysState, action: Action) -> Option<String> {
        self.inner.format_step(state, action)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always(SAFETY[0], one_leader_per_epoch),
            Property::always(SAFETY[1], committed_zxid_names_one_txn),
            Property::always(SAFETY[2], committed_never_lost),
            Property::always(SAFETY[3], applied_states_are_prefixes),
            Property::sometimes("a leader is elected", leader_elected),
            Property::sometimes("a write is acknowledged", write_acknowledged),
        ]
    }

    fn within_boundary(&self, state: &SysState) -> bool {
        within_boundary(&self.inner.cfg, state)
    }
}

// ---- running checks -----------------------------------------------------------------------

struct Run {
    name: &'static str,
    setup: Setup,
    depth: usize,
    search: Search,
}

#[derive(Clone, Copy, Debug)]
enum Search {
    /// Every state up to the depth, breadth first.
    Exhaustive,
    /// Random walks up to the depth from the seed, for this long or until a property fails:
    /// the reach of the exhaustive search ends long before a re-election completes.
    Walks { seed: u64, secs: u64 },
}

struct Outcome {
    model: Arc<KeeperModel>,
    discoveries: BTreeMap<&'static str, stateright::Path<SysState, Action>>,
    /// The exhaustive search stopped at `EXHAUSTIVE_STATE_CAP` before its depth bound: it did
    /// not cover every state it was asked to.
    capped: bool,
}

/// Chooses uniformly among the actions that change something. stateright's own uniform
/// chooser also picks no-ops (stale duplicates are most of the network), and its path to a
/// discovery cannot be replayed when it did (0.31 records the index into the shrunken list).
#[derive(Clone)]
struct Effective(Arc<KeeperModel>);

impl Chooser<KeeperModel> for Effective {
    type State = u64;

    fn new_state(&self, seed: u64) -> u64 {
        seed
    }

    fn choose_initial_state(&self, _: &mut u64, _: &[SysState]) -> usize {
        0
    }

    fn choose_action(&self, rng: &mut u64, state: &SysState, actions: &[Action]) -> usize {
        // Faults (a node's timeouts all expiring, its leader's link closing, a crash) one step in FAULT_ODDS, so that
        // the protocol gets far enough between them to have something to lose.
        let is_fault = |a: &Action| {
            matches!(
                a,
                ActorModelAction::Timeout(_, Timer::Expire | Timer::LeaderLink)
                    | ActorModelAction::Crash(_)
            )
        };
        let want_fault = splitmix(rng).is_multiple_of(self.0.inner.cfg.fault_odds);
        for class in [want_fault, !want_fault] {
            let mut untried: Vec<usize> = (0..actions.len())
                .filter(|i| is_fault(&actions[*i]) == class)
                .collect();
            while !untried.is_empty() {
                let i = untried.swap_remove((splitmix(rng) % untried.len() as u64) as usize);
                if self.0.next_state(state, actions[i].clone()).is_some() {
                    return i;
                }
            }
        }
        0
    }
}

/// One walk step in this many is a fault.
const FAULT_ODDS: u64 = 12;
/// Planted bugs need faults close together.
#[cfg(feature = "bugs")]
const TEETH_FAULT_ODDS: u64 = 4;

/// A small, fixed pseudo-random sequence (splitmix64), so that a seed replays the same walks.
fn splitmix(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(2))
}

fn check(mut run: Run) -> Outcome {
    if let Some(depth) = std::env::var("KEEPER_MODEL_DEPTH")
        .ok()
        .and_then(|d| d.parse().ok())
    {
        run.depth = depth;
    }
    let started = Instant::now();
    let model = KeeperModel::new(run.setup.clone());
    let builder = model
        .checker()
        .threads(threads())
        .target_max_depth(run.depth);
    let checker: Box<dyn Checker<KeeperModel>> = match run.search {
        Search::Exhaustive => Box::new(
            builder
                .target_state_count(EXHAUSTIVE_STATE_CAP)
                .spawn_bfs()
                .join(),
        ),
        Search::Walks { seed, secs } => Box::new(
            builder
                .timeout(std::time::Duration::from_secs(secs))
                .finish_when(HasDiscoveries::AnyFailures)
                .spawn_simulation(
                    seed,
                    Effective(Arc::new(KeeperModel::new(run.setup.clone()))),
                )
                .join(),
        ),
    };
    eprintln!(
        "model {} ({:?}): {:?}, depth {}: {} unique states ({} generated), max depth {}, {:.1} s",
        run.name,
        run.search,
        run.setup,
        run.depth,
        checker.unique_state_count(),
        checker.state_count(),
        checker.max_depth(),
        started.elapsed().as_secs_f64()
    );
    // stateright's target state count bounds the states generated, not the unique ones.
    let capped =
        matches!(run.search, Search::Exhaustive) && checker.state_count() >= EXHAUSTIVE_STATE_CAP;
    if capped {
        eprintln!(
            "model {}: STATE CAP REACHED: the search stopped at {} states (cap {EXHAUSTIVE_STATE_CAP}) \
             before covering depth {}; its claim holds only for the states it visited",
            run.name,
            checker.unique_state_count(),
            run.depth
        );
    }
    let discoveries: BTreeMap<_, _> = checker.discoveries().into_iter().collect();
    let model = Arc::new(KeeperModel::new(run.setup));
    Outcome {
        model,
        discoveries,
        capped,
    }
}

impl Outcome {
    fn violations(&self) -> Vec<&'static str> {
        SAFETY
            .iter()
            .copied()
            .filter(|p| self.discoveries.contains_key(p))
            .collect()
    }

    /// The path to a discovery, one action per line, and every server's view at its end.
    fn describe(&self, name: &str) -> String {
        let Some(path) = self.discoveries.get(name) else {
            return format!("no discovery for {name:?}");
        };
        let mut text = format!(
            "{name}: a path of {} steps\n",
            path.clone().into_actions().len()
        );
        for a in path.clone().into_actions() {
            text.push_str(&format!("  {}\n", short_action(&self.model, &a)));
        }
        for (i, n, down) in servers(path.last_state()) {
            let st = n.core.status();
            text.push_str(&format!(
                "  node {}{}: {:?} epoch {} accepted {} last {:#x} committed {:#x} applied {:#x} log {:?}\n",
                i + 1,
                if down { " (down)" } else { "" },
                st.role,
                st.epoch,
                st.accepted_epoch,
                st.last_zxid,
                st.committed_zxid,
                st.applied_zxid,
                n.core.log().iter().map(|t| t.zxid).collect::<Vec<_>>()
            ));
        }
        text
    }
}

fn short_action(model: &KeeperModel, a: &Action) -> String {
    match a {
        ActorModelAction::Deliver { src, dst, msg } => {
            let who = |id: &Id| {
                if usize::from(*id) == CLIENT {
                    "client".to_string()
                } else {
                    format!("n{}", node_id(*id))
                }
            };
            format!("{} -> {}: {:?}", who(src), who(dst), msg)
        }
        ActorModelAction::Timeout(id, t) => format!("n{} timer {:?}", node_id(*id), t),
        ActorModelAction::Crash(id) => format!("n{} crashes", node_id(*id)),
        ActorModelAction::Recover(id) => format!("n{} restarts from its disk", node_id(*id)),
        other => model.format_action(other),
    }
}

fn deep() -> bool {
    std::env::var("KEEPER_MODEL_DEEP").is_ok_and(|v| v == "1")
}

fn lossy() -> bool {
    std::env::var("KEEPER_MODEL_LOSSY").is_ok_and(|v| v == "1")
}

fn correct(warm: bool, writes: u64, max_restarts: u32) -> Setup {
    Setup {
        bug: None,
        writes,
        max_restarts,
        lossy: lossy(),
        warm,
        fault_odds: FAULT_ODDS,
        absent: None,
    }
}

fn assert_safe(outcome: &Outcome) {
    let violations = outcome.violations();
    let report: Vec<String> = violations.iter().map(|v| outcome.describe(v)).collect();
    assert!(
        violations.is_empty(),
        "the model found a safety violation:\n{}",
        report.join("\n")
    );
}

/// Elections from a cold start, one member down: every interleaving of the first election up to
/// and past an established leader, with a crash.
#[test]
fn elections_from_a_cold_start_are_safe() {
    let depth = if deep() { COLD_DEEP_DEPTH } else { COLD_DEPTH };
    let outcome = check(Run {
        name: "cold",
        setup: Setup {
            absent: Some(2),
            ..correct(false, 0, 0)
        },
        depth,
        search: Search::Exhaustive,
    });
    assert_safe(&outcome);
    // A safety claim over states in which nothing happens is empty: the bound must reach the
    // states it claims to cover, an established leader among them.
    let Some(path) = outcome.discoveries.get("a leader is elected") else {
        panic!("no leader is elected within depth {depth}: raise COLD_DEPTH");
    };
    eprintln!(
        "model cold: the first established leader is {} steps from the start",
        path.clone().into_actions().len()
    );
    assert!(
        deep() || !outcome.capped,
        "the bounded cold search hit the state cap"
    );
}

/// Writes, a crash and restart, and re-elections from an established leader: every state
/// within the bound.
#[test]
fn writes_and_a_crash_from_an_established_leader_are_safe() {
    let (depth, writes) = if deep() {
        (WARM_DEEP_DEPTH, 2)
    } else {
        (WARM_DEPTH, 1)
    };
    let outcome = check(Run {
        name: "warm",
        setup: correct(true, writes, 1),
        depth,
        search: Search::Exhaustive,
    });
    assert_safe(&outcome);
    assert!(
        outcome.discoveries.contains_key("a write is acknowledged"),
        "no write acknowledged within depth {depth}"
    );
    assert!(
        deep() || !outcome.capped,
        "the bounded warm search hit the state cap"
    );
}

/// Deep random walks through writes, crashes and re-elections, from a cold and a warm start.
#[test]
fn random_walks_through_reelections_are_safe() {
    let (secs, depth) = if deep() {
        (WALK_DEEP_SECS, WALK_DEEP_DEPTH)
    } else {
        (WALK_SECS, WALK_DEPTH)
    };
    for (i, warm) in [false, true].into_iter().enumerate() {
        let outcome = check(Run {
            name: if warm { "walks-warm" } else { "walks-cold" },
            setup: correct(warm, 2, 2),
            depth,
            search: Search::Walks {
                seed: walk_seed() + i as u64,
                secs,
            },
        });
        assert_safe(&outcome);
        for p in ["a leader is elected", "a write is acknowledged"] {
            assert!(
                outcome.discoveries.contains_key(p),
                "the walks never saw {p:?}"
            );
        }
    }
}

/// Exhaustive bounds: the bounded check takes well under a minute on 2 cores in the test
/// profile; each level multiplies the states by about five.
/// The shortest path from a cold start to an established leader is about ten steps (votes, a
/// finalize timer, FOLLOWERINFO, LEADERINFO, ACKEPOCH, NEWLEADER and its ack): below that the
/// "one leader per epoch" claim would hold vacuously, so the cold check asserts it got there.
const COLD_DEPTH: usize = 13;
const COLD_DEEP_DEPTH: usize = 14;
const WARM_DEPTH: usize = 7;
const WARM_DEEP_DEPTH: usize = 9; // capped by EXHAUSTIVE_STATE_CAP
/// A memory guard: breadth-first search keeps its whole frontier (three cores each) in memory,
/// and the warm search at depth 9 outgrew 22 GB. A search that stops here says so.
const EXHAUSTIVE_STATE_CAP: usize = 3_000_000;
/// Random walks: how many steps deep, and for how long.
const WALK_DEPTH: usize = 80;
const WALK_SECS: u64 = 15;
const WALK_DEEP_DEPTH: usize = 200;
const WALK_DEEP_SECS: u64 = 240;

/// `KEEPER_MODEL_SEED=N` replays other walks (the default is fixed, so a run is repeatable up
/// to thread scheduling).
fn walk_seed() -> u64 {
    std::env::var("KEEPER_MODEL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
}

/// The checker has teeth: a leader that commits on its own ack loses acknowledged writes when
/// it is replaced before a follower has them. Fault injection is compiled in only with the
/// `bugs` feature: `cargo test -p keeper --features bugs --test model -- --nocapture`.
#[cfg(feature = "bugs")]
#[test]
fn the_model_catches_early_ack() {
    let outcome = check(Run {
        name: "early-ack",
        setup: Setup {
            bug: Some(Bug::EarlyAck),
            fault_odds: std::env::var("KEEPER_MODEL_FAULT_ODDS")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(TEETH_FAULT_ODDS),
            ..correct(true, 1, 1)
        },
        depth: WALK_DEPTH,
        search: Search::Walks {
            seed: walk_seed(),
            secs: TEETH_SECS,
        },
    });
    let found = outcome.violations();
    assert!(
        !found.is_empty(),
        "the model missed the early-ack bug in {TEETH_SECS} s of walks"
    );
    eprintln!("{}", outcome.describe(found[0]));
}

/// A bound on the search for the planted bug (found in about 40 s in the test profile).
#[cfg(feature = "bugs")]
const TEETH_SECS: u64 = 60;

/// Stateright Explorer on a loopback address, for manual exploration:
/// `KEEPER_MODEL_SERVE=127.0.0.1:3000 cargo test --release -p keeper --test model explore -- --nocapture`
#[test]
fn explore() {
    let Ok(addr) = std::env::var("KEEPER_MODEL_SERVE") else {
        return;
    };
    let addr: std::net::SocketAddr = match addr.parse() {
        Ok(a) => a,
        Err(e) => panic!("KEEPER_MODEL_SERVE={addr:?} is not an address like 127.0.0.1:3000: {e}"),
    };
    assert!(
        addr.ip().is_loopback(),
        "KEEPER_MODEL_SERVE must be a loopback address (127.0.0.0/8), not {addr}"
    );
    let warm = std::env::var("KEEPER_MODEL_WARM").is_ok_and(|v| v == "1");
    eprintln!("Stateright Explorer on http://{addr} (warm start: {warm}); Ctrl-C to stop");
    let _checker = KeeperModel::new(correct(warm, 1, 1))
        .checker()
        .threads(threads())
        .serve(addr);
    loop {
        std::thread::park();
    }
}
