//! `schism sim`: a whole schism test in simulated time. The real keeper `Core` of every node runs
//! in one thread under a simulated network (loss, delay, reordering, duplication, partitions in
//! Jepsen's shapes, one-way cuts), simulated disks (`disk`: the real storage's bytes, with fsync
//! latency, power losses that lose unsynced and tear the last writes, bit flips found by crc),
//! crashes, restarts and pauses, while simulated clients run the register workload (reads, writes
//! and cas on a few keys, through random nodes, with sessions) and set one-shot watches on the
//! keys (`watch`: ZooKeeper's client library's behaviour, set again on every reconnect, each
//! event recorded as a real run's watch client records it). Everything is drawn from one seed
//! (`ChaCha8Rng`), and each seed draws its own fault mix, cluster size and intensities (swarm
//! testing). The clients' history, status samples and a recovery record are checked by schism's
//! real checkers (the register's, and `watches` for the watches), so a failing seed is an
//! ordinary results directory.
//!
//! Deliberately not here: a wall clock, OS randomness, unordered maps (iteration order would leak
//! into the schedule), threads. The harness (`schism sim`) owns those. Not simulated (yet):
//! child watches, ephemeral and sequential nodes, the HTTP shell.

mod disk;
mod port;
mod watch;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use disk::{Disk, PowerLoss};
/// What a port's clients send and get: the core's own request and response types.
pub use keeper::core::{ClientRequest, Read, Response};
pub use port::{PortMsg, PortOutcome, Ticket};
use watch::ClientWatches;

use checker::RunVerdict;
use checker::history::{Event, EventType};
use checker::liveness::{NodeEnd, Recovery};
use checker::reader::StatusSample;
use checker::run_dir::HEAL_ALL;
use keeper::api::{Consistency, ErrorCode, KeeperError, Op, Role, SessionId, Zxid};
use keeper::core::{Config, Core, Input, Output, PeerMsg, Persist, Ready, Recovered};
use keeper::storage::OpenMode;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use serde_json::{Value, json};

/// keeper's injectable bugs, re-exported so that `schism sim --server-bug` names them without
/// depending on the server crate itself.
pub use keeper::bugs::Bug;

/// The catch matrix's bugs that act in the core or the storage's reopen and show to this
/// simulation's own clients and checkers (`linearizable`, `single-leader`, `convergence`,
/// `recovery`, `watches`). Those that need sessions, ephemeral or sequential nodes or multis
/// are in [`SIMULATED_WITH_WORKLOAD`]; `no-fsync` needs a real disk's fsync setting.
pub const SIMULATED_BUGS: &[Bug] = &[
    Bug::StaleRead,
    Bug::EarlyAck,
    Bug::SplitBrain,
    Bug::VoteIgnoresEpoch,
    Bug::SyncNoTrunc,
    Bug::ElectionNeverSettles,
    // A synced history held only in memory: the simulated disk keeps what was persisted, and a
    // crash after the sync restarts the node without it.
    Bug::NewleaderAckBeforeDurable,
    Bug::EpochBeforeLog,
    // The simulated disk's bit flips, read back by the real scan with its injected skip.
    Bug::CorruptLogServed,
    // The clients' watches, judged by the watches checker.
    Bug::WatchDrop,
    Bug::WatchDuplicate,
    // A follower that rejoins after its leader died or it was cut off.
    Bug::WatchStaleAfterReconnect,
    // A SNAP sync held only in memory: it shows once snapshots on a schedule with no log
    // retained behind them make a lagging follower's sync a SNAP, and that follower restarts
    // before its own next snapshot.
    Bug::SnapshotInMemory,
    // A deposed leader's unacked proposals escape the TRUNC (ZOOKEEPER-2845): partitions of
    // the leader, then its return.
    Bug::OldLeaderKeepsUncommitted,
];

/// The catch matrix's bugs the simulation shows only through one of schism's workloads
/// (`schism sim --workload W`, the catch matrix row's workload): they live in sessions,
/// ephemeral and sequential nodes and multis, which the simulation's own clients do not use.
pub const SIMULATED_WITH_WORKLOAD: &[Bug] = &[
    // Sessions that expire keep their ephemeral nodes: the session workload's reads see them.
    Bug::EphemeralLeak,
    // A leader whose clock runs fast (the seed's clock skew) expires live sessions.
    Bug::LeaseOnFastClock,
    // A node restored from a scheduled snapshot reuses sequence numbers: the sequential
    // workload's creates.
    Bug::SequenceReuse,
    // A snapshot cut right after a multi: the election workload's fenced writes are multis.
    Bug::FuzzySnapshotMulti,
];

/// Whether this build can inject server bugs (keeper's `bugs` feature, through ours).
pub const BUGS_ENABLED: bool = cfg!(feature = "bugs");

/// The simulated clock advances in steps of this many ms.
const STEP_MS: u64 = 5;
/// Every node gets a tick this often (the core needs one at least every `tick_ms`) in a seed
/// that draws no timings; the liveness phase looks at the cluster this often.
const TICK_MS: u64 = 100;
/// The simulated time the cores start at (ms since the Unix epoch, as the shell would say).
const START_MS: u64 = 1_000_000;
/// A client gives up on an operation after this long and records it as indeterminate.
const OP_TIMEOUT_MS: u64 = 2_000;
/// The core's own request timeout (it answers `timeout` past it).
const REQUEST_TIMEOUT_MS: u64 = 1_500;
/// Session timeout the clients ask for.
const SESSION_TIMEOUT_MS: u64 = 3_000;
/// Status samples are taken this often, as the harness's poller does.
const STATUS_EVERY_MS: u64 = 250;
/// Before the faults: the cluster gets this long to elect, and the keys are created.
const WARMUP_MS: u64 = 3_000;
/// After the heal, the cluster must elect, acknowledge a write, serve a read and converge
/// within this much simulated time.
pub const RECOVERY_BOUND_MS: u64 = 20_000;
/// After the liveness phase, the clients work without faults for at least this long...
const QUIET_MIN_MS: u64 = 2_000;
/// ... and until every operation kind has succeeded once (evidence for every checker), or
/// this long at most.
const QUIET_MAX_MS: u64 = 15_000;
/// The operation kinds: the register workload's, and the watches the clients set beside it.
const OP_KINDS: [&str; 4] = ["read", "write", "cas", checker::history::WATCH_F];
/// Bounds on the simulated network delay of one message, in ms.
const MAX_DELAY_MS: u64 = 60;
/// Time budget of the linearizability search per seed.
const CHECK_TIME_LIMIT_S: u64 = 20;
/// A process id for the setup client, above any worker's.
const SETUP_PROCESS: u64 = 1_000_000;
/// Errors of the liveness probe kept for the recovery record.
const MAX_PROBE_ERRORS: usize = 10;
/// A skewed node's clock runs up to this many parts per million faster or slower than
/// simulated time (10%: far beyond a real crystal's 100 ppm, to reach timeouts' edges).
const MAX_SKEW_PPM: i64 = 100_000;
/// Of the seeds with skewed clocks, the share where one node's clock runs far fast, from 1.5x
/// to 3x.
const FAST_CLOCK_SHARE: f64 = 0.3;
const MIN_FAST_CLOCK_PPM: i64 = 500_000;
const MAX_FAST_CLOCK_PPM: i64 = 2_000_000;
/// A skewed node's clock starts up to this far from simulated time.
const MAX_CLOCK_OFFSET_MS: i64 = 5_000;
/// A clock jump moves a running node's clock forward by up to this much (a running process's
/// clock never goes back: the shell's clock is monotonic).
const MAX_CLOCK_JUMP_MS: u64 = 10_000;
/// Across a restart, a node's wall clock may have been stepped back by up to this much.
const MAX_CLOCK_STEP_BACK_MS: u64 = 5_000;
/// The stream of the seed's generator that draws clocks, apart from everything else, so that a
/// seed without clock faults runs exactly as it did before clocks were simulated.
const CLOCK_STREAM: u64 = 1;
/// The stream that draws the disks' faults and fsync latencies, for the same reason.
const DISK_STREAM: u64 = 2;
/// A simulated fsync takes up to this long (a seed draws its own bound below it).
const MAX_FSYNC_MS: u64 = 20;
/// The stream that draws the snapshot policy, for the same reason.
const SNAPSHOT_STREAM: u64 = 3;
/// The stream that draws the nodes' timeouts (tick, sync and init limits), for the same reason.
const TIMING_STREAM: u64 = 4;
/// Ticks a seed may draw, ms (keeperd's default is 200; the simulation's own was 100).
const TICK_CHOICES_MS: [u64; 3] = [50, 100, 200];
/// A drawn sync limit leaves at least this long to notice a lost leader or quorum: several
/// round trips of the slowest simulated link and fsync, as an operator sizes ZooKeeper's
/// syncLimit above its network's delays.
const MIN_SYNC_LIMIT_MS: u64 = 400;
/// The sync and init limits of a seed that draws no timings: keeperd's defaults.
const DEFAULT_SYNC_LIMIT_TICKS: u64 = 5;
const DEFAULT_INIT_LIMIT_TICKS: u64 = 10;
/// Sync and init limits a seed may draw, in ticks.
const MAX_SYNC_LIMIT_TICKS: u64 = 10;
const MAX_INIT_LIMIT_TICKS: u64 = 20;
/// A seed that takes snapshots takes one every 1 to this many logged transactions: a seed
/// logs a few hundred, so that most nodes snapshot several times and restart from one.
const MAX_SNAPSHOT_EVERY_TXNS: u64 = 50;

/// What the user fixes; everything else a seed draws (`Default`: seed 0, all drawn, no bug).
#[derive(Clone, Debug, Default, Serialize)]
pub struct SimConfig {
    pub seed: u64,
    /// 3 or 5; `None`: the seed draws it.
    pub nodes: Option<usize>,
    /// A server bug to inject (needs the `bugs` feature).
    pub bug: Option<Bug>,
    /// Also lose single messages and reorder them within a link, which TCP never does. The
    /// core's contract says it tolerates both (docs/SIM.md says what that took); they are off
    /// unless asked for, as a real link never does either.
    pub lossy_links: bool,
    /// Clock skew and jumps: `None` lets the seed draw them, `Some(true)` forces both on every
    /// node, `Some(false)` leaves every clock exact.
    pub clocks: Option<bool>,
    /// Disk faults (fsync latency, power losses with lost and torn writes, bit flips):
    /// `None` lets the seed draw them, `Some(true)` forces all on, `Some(false)` leaves every
    /// disk perfect (each batch durable at once, as before disks were simulated).
    pub disks: Option<bool>,
    /// Snapshots on a schedule, as the shell's driver takes them: `None` lets the seed draw a
    /// policy, `Some(true)` forces one on, `Some(false)` takes none (a node's log then only
    /// grows, and a SNAP sync is the only snapshot).
    pub snapshots: Option<bool>,
    /// Print every input each node's core takes, with its role, epoch and zxids, and what the
    /// step sent or answered, to stderr: the way to read how a failing seed went wrong.
    pub trace: bool,
}

/// What a seed drew: its swarm of faults and intensities.
#[derive(Clone, Debug, Serialize)]
pub struct Swarm {
    pub nodes: usize,
    pub clients: usize,
    pub keys: usize,
    /// Simulated ms of workload under faults.
    pub fault_ms: u64,
    /// Mean simulated ms between two faults.
    pub fault_every_ms: u64,
    pub loss: f64,
    pub duplicate: f64,
    pub reorder: f64,
    pub max_delay_ms: u64,
    pub partitions: bool,
    pub one_way_cuts: bool,
    pub crashes: bool,
    pub pauses: bool,
    /// Client operations per simulated second, over all clients.
    pub op_rate: u64,
    /// Each node's clock runs at its own rate from its own offset.
    pub clock_skew: bool,
    /// Running nodes' clocks jump forward (a fault kind), and step back across a restart.
    pub clock_jumps: bool,
    /// Per node (n1 first): ppm faster (+) or slower (-) than simulated time.
    pub skew_ppm: Vec<i64>,
    /// Per node: its clock minus simulated time at the start, ms.
    pub clock_offset_ms: Vec<i64>,
    /// Each fsync takes 0 to this many ms; the batch's outputs wait for it, its early sends
    /// (`PeerMsg::may_precede_fsync`: a leader's proposals and commits, a follower's forwards)
    /// do not. 0: durable at once.
    pub max_fsync_ms: u64,
    /// A crash may be a power loss: what was not fsynced is lost (a prefix may survive).
    pub power_loss: bool,
    /// A power loss may tear the last write (cut inside a record, maybe padded with zeros).
    pub torn_writes: bool,
    /// A stopped node's log or snapshot may get a bit flip (a minority of voters at most are
    /// damaged at once: beyond that keeper loses availability by design).
    pub corruption: bool,
    /// Each node saves a snapshot after this many transactions appended to its log
    /// (keeperd's `--snapshot-every`); `None`: never on its own.
    pub snapshot_every_txns: Option<u64>,
    /// After a snapshot, the core keeps this many transactions before it in memory, for
    /// followers a little behind to sync by DIFF (keeperd's `--log-retain-txns`); 0 sends
    /// every follower behind the snapshot a SNAP.
    pub log_retain_txns: usize,
    /// Every node's tick (`Config::tick_ms`), its sync and init limits in ticks: drawn from
    /// their own stream in half the seeds; the others keep 100 ms, 5 and 10.
    pub tick_ms: u64,
    pub sync_limit_ticks: u64,
    pub init_limit_ticks: u64,
}

impl Swarm {
    fn draw(rng: &mut ChaCha8Rng, nodes: Option<usize>, lossy: bool) -> Swarm {
        let nodes = nodes.unwrap_or(if rng.random_bool(0.5) { 3 } else { 5 });
        let mut s = Swarm {
            nodes,
            clients: rng.random_range(2..=6),
            keys: rng.random_range(2..=5),
            fault_ms: rng.random_range(10_000..=20_000),
            fault_every_ms: rng.random_range(500..=5_000),
            loss: if lossy && rng.random_bool(0.5) {
                rng.random_range(0.0..0.15)
            } else {
                0.0
            },
            duplicate: if rng.random_bool(0.3) {
                rng.random_range(0.0..0.05)
            } else {
                0.0
            },
            reorder: if lossy && rng.random_bool(0.3) {
                rng.random_range(0.0..0.1)
            } else {
                0.0
            },
            max_delay_ms: rng.random_range(2..=MAX_DELAY_MS),
            partitions: rng.random_bool(0.7),
            one_way_cuts: rng.random_bool(0.3),
            crashes: rng.random_bool(0.6),
            pauses: rng.random_bool(0.4),
            op_rate: rng.random_range(10..=50),
            clock_skew: false,
            clock_jumps: false,
            skew_ppm: vec![0; nodes],
            clock_offset_ms: vec![0; nodes],
            max_fsync_ms: 0,
            power_loss: false,
            torn_writes: false,
            corruption: false,
            snapshot_every_txns: None,
            log_retain_txns: 0,
            tick_ms: TICK_MS,
            sync_limit_ticks: DEFAULT_SYNC_LIMIT_TICKS,
            init_limit_ticks: DEFAULT_INIT_LIMIT_TICKS,
        };
        // A seed with no fault at all tests little; give it at least partitions.
        if !(s.partitions || s.one_way_cuts || s.crashes || s.pauses) {
            s.partitions = true;
        }
        s
    }

    /// Draws the disks from their own stream (`DISK_STREAM`).
    fn draw_disks(&mut self, rng: &mut ChaCha8Rng, disks: Option<bool>) {
        let on = |rng: &mut ChaCha8Rng, p: f64| disks.unwrap_or_else(|| rng.random_bool(p));
        if on(rng, 0.5) {
            self.max_fsync_ms = rng.random_range(1..=MAX_FSYNC_MS);
        }
        self.power_loss = on(rng, 0.4);
        self.torn_writes = self.power_loss && on(rng, 0.5);
        self.corruption = on(rng, 0.3);
    }

    /// Draws the snapshot policy from its own stream (`SNAPSHOT_STREAM`): half the policies
    /// retain no log behind a snapshot (every lagging follower gets a SNAP), half the shell's
    /// default (such followers sync by DIFF, and restarts still start from snapshots).
    fn draw_snapshots(&mut self, rng: &mut ChaCha8Rng, snapshots: Option<bool>) {
        if !snapshots.unwrap_or_else(|| rng.random_bool(0.5)) {
            return;
        }
        self.snapshot_every_txns = Some(rng.random_range(1..=MAX_SNAPSHOT_EVERY_TXNS));
        self.log_retain_txns = if rng.random_bool(0.5) {
            0
        } else {
            keeper::core::LOG_RETAIN_TXNS
        };
    }

    /// Draws the timeouts from their own stream (`TIMING_STREAM`): a tick of 50, 100 or 200 ms,
    /// a sync limit from `MIN_SYNC_LIMIT_MS` up to 10 ticks, an init limit from twice that up
    /// to 20 ticks (the session timeouts the nodes grant follow the tick: 2 to 20 ticks).
    fn draw_timings(&mut self, rng: &mut ChaCha8Rng) {
        if !rng.random_bool(0.5) {
            return;
        }
        self.tick_ms = TICK_CHOICES_MS[rng.random_range(0..TICK_CHOICES_MS.len())];
        let min_sync = MIN_SYNC_LIMIT_MS.div_ceil(self.tick_ms).max(2);
        self.sync_limit_ticks = rng.random_range(min_sync..=MAX_SYNC_LIMIT_TICKS.max(min_sync));
        let min_init = 2 * self.sync_limit_ticks;
        self.init_limit_ticks = rng.random_range(min_init..=MAX_INIT_LIMIT_TICKS.max(min_init));
    }

    /// Draws the clocks from their own stream (`CLOCK_STREAM`).
    fn draw_clocks(&mut self, rng: &mut ChaCha8Rng, clocks: Option<bool>) {
        self.clock_skew = clocks.unwrap_or_else(|| rng.random_bool(0.5));
        self.clock_jumps = clocks.unwrap_or_else(|| rng.random_bool(0.3));
        if self.clock_skew {
            for n in 0..self.nodes {
                self.skew_ppm[n] = rng.random_range(-MAX_SKEW_PPM..=MAX_SKEW_PPM);
                self.clock_offset_ms[n] =
                    rng.random_range(-MAX_CLOCK_OFFSET_MS..=MAX_CLOCK_OFFSET_MS);
            }
            // Drawn after every node's, so that the seeds without one draw as before: in some
            // seeds one node's clock runs far fast (a broken clock source, libfaketime's
            // rate), which is where a lease that trusts its clock fails; keeper's sessions stay
            // sound up to a clock 4x fast (two timeouts of its own clock, docs/FAULTS.md).
            if rng.random_bool(FAST_CLOCK_SHARE) {
                let n = rng.random_range(0..self.nodes);
                self.skew_ppm[n] = rng.random_range(MIN_FAST_CLOCK_PPM..=MAX_FAST_CLOCK_PPM);
            }
        }
    }
}

/// A node's clock: what its core is told the time is. It runs at its own rate from its own
/// offset and jumps; while one core runs it never goes back (the shell's clock is the wall
/// clock at start plus monotonic time), so a step back shows only across a restart. The core
/// takes every time it uses (session expiry, election and sync timeouts, its ticks) from here.
#[derive(Clone, Debug)]
struct NodeClock {
    skew_ppm: i64,
    offset_ms: i64,
    /// Jumps so far, ms.
    jumped_ms: i64,
    /// The node's next tick, on its own clock.
    next_tick: u64,
    /// Its tick (`Swarm::tick_ms`).
    tick_ms: u64,
}

impl NodeClock {
    fn new(skew_ppm: i64, offset_ms: i64, tick_ms: u64) -> NodeClock {
        let mut c = NodeClock {
            skew_ppm,
            offset_ms,
            jumped_ms: 0,
            next_tick: 0,
            tick_ms,
        };
        c.next_tick = c.read(START_MS) + tick_ms;
        c
    }

    /// The node's time at simulated time `now`.
    fn read(&self, now: u64) -> u64 {
        let elapsed = i128::from(now - START_MS);
        let scaled = elapsed * i128::from(1_000_000 + self.skew_ppm) / 1_000_000;
        let t =
            i128::from(START_MS) + i128::from(self.offset_ms) + scaled + i128::from(self.jumped_ms);
        u64::try_from(t.max(0)).expect("fits")
    }

    /// Whether the node ticks at `now`; schedules the next one (missed ticks are skipped, as
    /// after a jump).
    fn tick_due(&mut self, now: u64) -> bool {
        let local = self.read(now);
        if local < self.next_tick {
            return false;
        }
        self.next_tick += self.tick_ms;
        if self.next_tick <= local {
            self.next_tick = local + self.tick_ms;
        }
        true
    }
}

/// A node: its core when running, its disk always.
struct Node {
    core: Option<Core>,
    disk: Disk,
    /// Paused until this time (a SIGSTOP): its inputs wait in `held`.
    paused_until: Option<u64>,
    /// In the fsync of a batch until this time, with the batch's outputs that wait for it: as
    /// the shell's driver, the node takes no input meanwhile (they wait in `held`).
    syncing: Option<(u64, Vec<Output>)>,
    held: Vec<Input>,
    /// Why the last restart failed (the storage refused the disk), or why the running node
    /// stopped (its storage refused a snapshot): the node stays down.
    start_error: Option<String>,
    clock: NodeClock,
    /// Its clock's reading at the core's last batch, to notice a leap as the shell's driver
    /// does (`keeper::core::MAX_CLOCK_STEP_MS`): a clock jump, or a pause.
    last_batch_at: u64,
    /// Transactions appended to the log since the last snapshot, by this process
    /// (`Persist::count_logged`, as the driver counts): the snapshot policy's count.
    logged_since_snapshot: u64,
}

/// What a client asked and is waiting for.
#[derive(Clone, Debug)]
enum Pending {
    Session,
    Heartbeat,
    /// Setting the watches on these paths again after a reconnect (not an operation of the
    /// history).
    SetWatches(Vec<String>),
    /// An operation of the history: its f, key and invocation value.
    Op {
        f: &'static str,
        key: String,
        value: Value,
    },
}

struct Client {
    process: u64,
    session: Option<SessionId>,
    last_zxid: Zxid,
    node: u64,
    /// (node, request, what, deadline ms).
    pending: Option<(u64, u64, Pending, u64)>,
    last_sent_ms: u64,
    /// The version this client last saw per key, for its next cas.
    versions: BTreeMap<String, i32>,
    watches: ClientWatches,
}

/// Who waits for a request's reply.
#[derive(Clone, Copy)]
enum Waiter {
    Client(usize),
    Probe,
    /// A client outside the simulation (`port`): the request id is its ticket.
    Port,
}

/// The liveness phase's probe: session, then write, then linearizable read.
#[derive(Default)]
struct Probe {
    session: Option<SessionId>,
    pending: Option<(u64, u64, u64)>,
    written: Option<Zxid>,
    last_error: Option<ErrorCode>,
    errors: Vec<String>,
}

/// One fault's start or heal, as a nemesis logs it: the harness writes these to `nemesis.jsonl`
/// with the nemesis crate's own log entry, so the report shades the periods a fault was in
/// effect, as for a real run.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct FaultEvent {
    /// Simulated ns since the seed started (the history's clock).
    pub time_ns: u64,
    /// The fault's index among the seed's faults; `None` for the final heal of everything.
    pub step: Option<usize>,
    /// `partition`, `kill`, `pause`, `clock`, or `heal-all` (the nemesis's names).
    pub fault: &'static str,
    pub description: String,
    /// `true` for the start, `false` for the heal.
    pub start: bool,
    /// The nodes it acted on.
    pub nodes: Vec<u64>,
}

/// The faults in effect, by kind, with the step each started as.
#[derive(Default)]
struct OpenFaults {
    /// Partitions and one-way cuts: they heal together (one heal time for the network).
    network: Vec<(usize, String, Vec<u64>)>,
    /// By node: the step, and `kill` or `power-loss`.
    crashed: BTreeMap<u64, (usize, &'static str)>,
    paused: BTreeMap<u64, usize>,
}

/// What the simulated disks went through in one seed: evidence that their faults happened.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DiskEvents {
    /// Power losses (of running or stopped nodes).
    pub power_losses: u64,
    /// Power losses that lost bytes not yet fsynced...
    pub lost_unsynced: u64,
    /// ... of which left a record torn (cut inside it).
    pub torn: u64,
    /// Bit flips in a stopped node's log or snapshot.
    pub corruptions: u64,
    /// Restarts after bit flips whose storage found damage and cut the history
    /// (`Recovered::damage`)...
    pub damaged_opens: u64,
    /// ... and that found none (a flip crc32 cannot see, or that hit no record).
    pub undetected_corruptions: u64,
    /// Batches whose outputs waited for a simulated fsync.
    pub delayed_fsyncs: u64,
    /// Snapshots the nodes saved on their schedule (each a new generation)...
    pub snapshots: u64,
    /// ... and restarts whose storage recovered a snapshot (saved or from a SNAP sync).
    pub snapshot_restarts: u64,
}

/// The outcome of one seed.
#[derive(Debug)]
pub struct SimOutcome {
    pub seed: u64,
    pub swarm: Swarm,
    /// The workload whose checkers judged the history (`register` for the simulation's own
    /// clients).
    pub workload: String,
    pub history: Vec<Event>,
    pub status: Vec<StatusSample>,
    /// Every fault's start and heal, in time order.
    pub faults: Vec<FaultEvent>,
    pub recovery: Recovery,
    pub verdict: RunVerdict,
    /// FNV-1a of the history's JSONL text: equal for two runs of one seed.
    pub history_hash: u64,
    /// Simulated ms the seed covered.
    pub simulated_ms: u64,
    pub disk_events: DiskEvents,
}

pub struct Sim {
    seed: u64,
    rng: ChaCha8Rng,
    /// Draws clocks only (its own stream of the seed).
    clock_rng: ChaCha8Rng,
    /// Draws disk faults and fsync latencies only (its own stream of the seed).
    disk_rng: ChaCha8Rng,
    swarm: Swarm,
    bug: Option<Bug>,
    now: u64,
    ids: Vec<u64>,
    nodes: BTreeMap<u64, Node>,
    /// Messages in flight, by (delivery ms, sequence): a stable delivery order.
    net: BTreeMap<(u64, u64), (u64, u64, PeerMsg)>,
    net_seq: u64,
    /// Latest delivery time per link: links are FIFO unless the seed reorders.
    fifo: BTreeMap<(u64, u64), u64>,
    /// Directed pairs (from, to) that cannot talk.
    cut: BTreeSet<(u64, u64)>,
    heal_cut_at: Option<u64>,
    faults: bool,
    next_request: u64,
    waiters: BTreeMap<(u64, u64), Waiter>,
    clients: Vec<Client>,
    next_process: u64,
    history: Vec<Event>,
    status: Vec<StatusSample>,
    probe: Probe,
    restart_at: BTreeMap<u64, u64>,
    next_value: u64,
    trace: bool,
    fault_log: Vec<FaultEvent>,
    open: OpenFaults,
    next_step: usize,
    /// Nodes whose disk was corrupted since they last started.
    corrupted: BTreeSet<u64>,
    /// The operation kinds that succeeded at least once.
    succeeded: BTreeSet<&'static str>,
    disk_events: DiskEvents,
    /// What the nodes said to clients outside the simulation, when they are the clients
    /// (`Sim::with_port`); `None` when the simulation's own clients run.
    port: Option<Vec<PortMsg>>,
}

fn node_name(id: u64) -> String {
    format!("n{id}")
}

fn key_name(k: usize) -> String {
    format!("/r{k}")
}

impl Sim {
    pub fn new(cfg: &SimConfig) -> Sim {
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let mut swarm = Swarm::draw(&mut rng, cfg.nodes, cfg.lossy_links);
        let mut clock_rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        clock_rng.set_stream(CLOCK_STREAM);
        swarm.draw_clocks(&mut clock_rng, cfg.clocks);
        let mut disk_rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        disk_rng.set_stream(DISK_STREAM);
        swarm.draw_disks(&mut disk_rng, cfg.disks);
        let mut snapshot_rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        snapshot_rng.set_stream(SNAPSHOT_STREAM);
        swarm.draw_snapshots(&mut snapshot_rng, cfg.snapshots);
        let mut timing_rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        timing_rng.set_stream(TIMING_STREAM);
        swarm.draw_timings(&mut timing_rng);
        let ids: Vec<u64> = (1..=swarm.nodes as u64).collect();
        let mut sim = Sim {
            seed: cfg.seed,
            rng,
            clock_rng,
            disk_rng,
            bug: cfg.bug,
            now: START_MS,
            ids: ids.clone(),
            nodes: BTreeMap::new(),
            net: BTreeMap::new(),
            net_seq: 0,
            fifo: BTreeMap::new(),
            cut: BTreeSet::new(),
            heal_cut_at: None,
            faults: false,
            next_request: 1,
            waiters: BTreeMap::new(),
            clients: Vec::new(),
            next_process: swarm.clients as u64,
            history: Vec::new(),
            status: Vec::new(),
            probe: Probe::default(),
            restart_at: BTreeMap::new(),
            next_value: 0,
            trace: cfg.trace,
            fault_log: Vec::new(),
            open: OpenFaults::default(),
            next_step: 0,
            corrupted: BTreeSet::new(),
            succeeded: BTreeSet::new(),
            disk_events: DiskEvents::default(),
            port: None,
            swarm,
        };
        for (i, &id) in ids.iter().enumerate() {
            let clock = NodeClock::new(
                sim.swarm.skew_ppm[i],
                sim.swarm.clock_offset_ms[i],
                sim.swarm.tick_ms,
            );
            let core = Core::new(sim.config(id), Recovered::default(), clock.read(sim.now));
            sim.nodes.insert(
                id,
                Node {
                    core: Some(core),
                    disk: Disk::default(),
                    paused_until: None,
                    syncing: None,
                    held: Vec::new(),
                    start_error: None,
                    last_batch_at: clock.read(sim.now),
                    clock,
                    logged_since_snapshot: 0,
                },
            );
        }
        for process in 0..sim.swarm.clients as u64 {
            let node = sim.random_node();
            sim.clients.push(Client {
                process,
                session: None,
                last_zxid: 0,
                node,
                pending: None,
                last_sent_ms: 0,
                versions: BTreeMap::new(),
                watches: ClientWatches::default(),
            });
        }
        sim
    }

    fn config(&self, id: u64) -> Config {
        let mut c = Config::new(id, self.ids.clone());
        c.tick_ms = self.swarm.tick_ms;
        c.sync_limit_ticks = self.swarm.sync_limit_ticks;
        c.init_limit_ticks = self.swarm.init_limit_ticks;
        c.request_timeout_ms = REQUEST_TIMEOUT_MS;
        c.bug = self.bug;
        c
    }

    fn random_node(&mut self) -> u64 {
        self.ids[self.rng.random_range(0..self.ids.len())]
    }

    fn elapsed_ns(&self) -> u64 {
        (self.now - START_MS) * 1_000_000
    }

    fn record(&mut self, mut e: Event) {
        if e.kind == EventType::Ok
            && let Some(f) = OP_KINDS.iter().find(|f| **f == e.f)
        {
            self.succeeded.insert(*f);
        }
        e.index = self.history.len() as u64;
        e.time = self.elapsed_ns();
        self.history.push(e);
    }

    // ---- nodes -------------------------------------------------------------------------

    fn input(&mut self, id: u64, input: Input) {
        self.batch(id, vec![input]);
    }

    /// Steps node `id`'s core with `inputs` as one batch, as the shell's driver does with what
    /// queued while it was busy: one fsync for the whole batch (group commit).
    fn batch(&mut self, id: u64, inputs: Vec<Input>) {
        let node = self.nodes.get_mut(&id).expect("a known node");
        let now = node.clock.read(self.now);
        if node.paused_until.is_some() || node.syncing.is_some() {
            for input in inputs {
                // A paused process misses its ticks; a driver in fsync ticks once it is done.
                let tick = matches!(input, Input::Tick);
                if !tick
                    || (node.syncing.is_some()
                        && !node.held.iter().any(|i| matches!(i, Input::Tick)))
                {
                    node.held.push(input);
                }
            }
            return;
        }
        let Some(core) = node.core.as_mut() else {
            return;
        };
        // As the shell's driver: a step longer than a normal one is told to the core before it
        // acts on the new time (its session deadlines move on by the leap).
        let step = now.saturating_sub(node.last_batch_at);
        if step > keeper::core::MAX_CLOCK_STEP_MS {
            if self.trace {
                eprintln!("{now} n{id} the clock leapt forward {step} ms");
            }
            core.clock_leapt(step);
        }
        node.last_batch_at = node.last_batch_at.max(now);
        let trace = self.trace;
        let mut ready = Ready::default();
        for input in inputs {
            if trace {
                let st = core.status();
                eprintln!(
                    "{now} n{id} [{:?} e{} z{:#x} c{:#x}] <- {input:?}",
                    st.role, st.epoch, st.last_zxid, st.committed_zxid
                );
            }
            let step = core.step(now, input);
            if trace {
                for o in &step.after_persist {
                    eprintln!("    -> {o:?}");
                }
            }
            ready.append(step);
        }
        // As the shell's driver: what may precede the fsync leaves first (a leader's proposals
        // and commits, a follower's forwards, and in an ensemble what clients are told), then
        // the batch is written and fsynced, and only then does the rest leave.
        let early = ready.take_early(core);
        for p in &ready.persist {
            node.disk.persist(p);
        }
        Persist::count_logged(&mut node.logged_since_snapshot, &ready.persist);
        let persisted = !ready.persist.is_empty();
        self.carry_out(id, early);
        if persisted {
            let fsync_ms = match self.swarm.max_fsync_ms {
                0 => 0,
                max => self.disk_rng.random_range(0..=max),
            };
            let node = self.nodes.get_mut(&id).expect("a known node");
            if fsync_ms > 0 {
                self.disk_events.delayed_fsyncs += 1;
                node.syncing = Some((self.now + fsync_ms, ready.after_persist));
                return;
            }
            node.disk.sync();
        }
        self.carry_out(id, ready.after_persist);
        self.maybe_snapshot(id);
    }

    /// The shell's snapshot policy (`Driver::maybe_snapshot`), once node `id`'s batch is done:
    /// after `snapshot_every_txns` transactions logged, the applied tree is saved
    /// (`Disk::save_snapshot`) and the core forgets the log it covers but the last
    /// `log_retain_txns`. Not while a later batch is in its fsync: the driver snapshots only
    /// between batches, and this one's turn comes when that batch is done.
    fn maybe_snapshot(&mut self, id: u64) {
        let Some(every) = self.swarm.snapshot_every_txns else {
            return;
        };
        let node = self.nodes.get_mut(&id).expect("a known node");
        if node.syncing.is_some() || node.logged_since_snapshot < every {
            return;
        }
        let Some(core) = node.core.as_mut() else {
            return;
        };
        let snapshot = core.snapshot();
        match node.disk.save_snapshot(&snapshot) {
            Ok(saved) => {
                core.compact(snapshot.zxid, self.swarm.log_retain_txns);
                node.logged_since_snapshot = 0;
                self.disk_events.snapshots += u64::from(saved);
                if self.trace {
                    eprintln!(
                        "{} n{id} snapshot at z{:#x} ({})",
                        node.clock.read(self.now),
                        snapshot.zxid,
                        if saved { "saved" } else { "already the base" }
                    );
                }
            }
            Err(e) => {
                // The real driver stops on a storage error, and its process exits.
                self.crash(id, None);
                let node = self.nodes.get_mut(&id).expect("a known node");
                node.start_error = Some(format!("storage failed (snapshot): {e}"));
            }
        }
    }

    /// Lets a batch's outputs out of node `id`, once its persists are durable.
    fn carry_out(&mut self, id: u64, outputs: Vec<Output>) {
        for o in outputs {
            match o {
                Output::Send { to, msg } => self.send(id, to, msg),
                Output::Reply {
                    request,
                    zxid,
                    result,
                } => self.reply(id, request, zxid, result),
                // What a session's event stream carries: to the port's clients when they are
                // the clients.
                o if self.port.is_some() => self.send_to_port(id, o),
                Output::Event { session, event } => self.watch_event(id, session, event),
                Output::SessionEnded {
                    session,
                    expired,
                    zxid,
                } => self.session_ended(id, session, expired, zxid),
                Output::WatchesLost { session } => self.watches_lost(id, session),
            }
        }
    }

    /// Nodes whose fsync is done let their batch out and take the inputs that waited.
    fn finish_syncs(&mut self) {
        let done: Vec<u64> = self
            .nodes
            .iter()
            .filter(|(_, n)| {
                n.paused_until.is_none() && n.syncing.as_ref().is_some_and(|(t, _)| *t <= self.now)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in done {
            let node = self.nodes.get_mut(&id).expect("a known node");
            let (_, outputs) = node.syncing.take().expect("listed as syncing");
            node.disk.sync();
            let held = std::mem::take(&mut node.held);
            self.carry_out(id, outputs);
            self.maybe_snapshot(id);
            self.batch(id, held);
        }
    }

    fn send(&mut self, from: u64, to: u64, msg: PeerMsg) {
        if self.faults && self.rng.random_bool(self.swarm.loss) {
            return;
        }
        let copies = if self.faults && self.rng.random_bool(self.swarm.duplicate) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let delay = self.rng.random_range(1..=self.swarm.max_delay_ms);
            let mut at = self.now + delay;
            let reorder = self.faults && self.rng.random_bool(self.swarm.reorder);
            let last = self.fifo.entry((from, to)).or_insert(0);
            if !reorder {
                at = at.max(*last);
            }
            *last = (*last).max(at);
            self.net_seq += 1;
            self.net.insert((at, self.net_seq), (from, to, msg.clone()));
        }
    }

    fn deliver_due(&mut self) {
        while let Some(entry) = self.net.first_entry() {
            if entry.key().0 > self.now {
                break;
            }
            let (from, to, msg) = entry.remove();
            if self.cut.contains(&(from, to)) {
                // A cut link is TCP under a partition: what was sent waits and arrives, in
                // order, when the link heals (messages silently lost mid-stream would be a gap
                // no real link has; see `SimConfig::lossy_links`).
                let at = self.heal_cut_at.unwrap_or(self.now).max(self.now + STEP_MS);
                self.net_seq += 1;
                self.net.insert((at, self.net_seq), (from, to, msg));
                continue;
            }
            self.input(to, Input::Peer { from, msg });
        }
    }

    /// The node's process dies (`power` also its machine's power: the disk loses what it had
    /// not made durable). A batch in its fsync never leaves.
    fn crash(&mut self, id: u64, power: Option<PowerLoss>) {
        let node = self.nodes.get_mut(&id).expect("a known node");
        node.core = None;
        node.paused_until = None;
        node.syncing = None;
        node.held.clear();
        if let Some(how) = power {
            let (lost, torn) = node.disk.power_loss(&mut self.disk_rng, how);
            self.disk_events.power_losses += 1;
            self.disk_events.lost_unsynced += u64::from(lost > 0);
            self.disk_events.torn += u64::from(torn);
        }
        if let Some(step) = self.open.paused.remove(&id) {
            self.log_heal(step, "pause", format!("pause {}", node_name(id)), vec![id]);
        }
        // Its clients lose their connections: whatever they asked is now indeterminate.
        let lost: Vec<(u64, u64)> = self
            .waiters
            .keys()
            .filter(|(n, _)| *n == id)
            .copied()
            .collect();
        for (node, request) in lost {
            let waiter = self.waiters.remove(&(node, request)).expect("listed");
            self.complete(waiter, node, request, PortOutcome::Lost);
        }
        if let Some(port) = self.port.as_mut() {
            port.push(PortMsg::NodeDown { node: id });
        }
        self.watches_node_died(id);
    }

    fn restart(&mut self, id: u64) {
        let cfg = self.config(id);
        let node = self.nodes.get_mut(&id).expect("a known node");
        if node.core.is_some() {
            return;
        }
        // Not on the restarts of `heal`, which draws no more faults.
        if self.faults && self.swarm.clock_jumps && self.clock_rng.random_bool(0.5) {
            // The wall clock was stepped back while the node was down (NTP): its new shell
            // starts from the earlier time.
            let back = self.clock_rng.random_range(1..=MAX_CLOCK_STEP_BACK_MS);
            node.clock.jumped_ms -= back as i64;
            let local = node.clock.read(self.now);
            node.clock.next_tick = local + node.clock.tick_ms;
            self.log_instant(
                "clock",
                format!(
                    "clock of {} stepped back {back} ms across its restart",
                    node_name(id)
                ),
                vec![id],
            );
        }
        // An ensemble's member repairs damage from the others (the shell's `OpenMode`).
        let mode = OpenMode {
            repair: self.ids.len() > 1,
            skip_corrupt_records: cfg.has_bug(Bug::CorruptLogServed),
        };
        let node = self.nodes.get_mut(&id).expect("a known node");
        let now = node.clock.read(self.now);
        match node.disk.open(Path::new(&node_name(id)), mode) {
            Ok(recovered) => {
                if self.corrupted.contains(&id) {
                    if recovered.damage.is_some() {
                        self.disk_events.damaged_opens += 1;
                    } else {
                        self.disk_events.undetected_corruptions += 1;
                    }
                }
                self.corrupted.remove(&id);
                self.disk_events.snapshot_restarts += u64::from(recovered.snapshot.is_some());
                node.start_error = None;
                node.last_batch_at = now;
                node.logged_since_snapshot = 0;
                node.core = Some(Core::new(cfg, recovered, now));
            }
            Err(e) => node.start_error = Some(format!("cannot use its data directory: {e}")),
        }
    }

    fn resume(&mut self, id: u64) {
        let node = self.nodes.get_mut(&id).expect("a known node");
        node.paused_until = None;
        let held = std::mem::take(&mut node.held);
        self.batch(id, held);
    }

    // ---- faults ------------------------------------------------------------------------

    fn shuffled_ids(&mut self) -> Vec<u64> {
        let mut ids = self.ids.clone();
        for i in (1..ids.len()).rev() {
            let j = self.rng.random_range(0..=i);
            ids.swap(i, j);
        }
        ids
    }

    /// Cuts every link between the two sides, both ways.
    fn split(&mut self, side: &BTreeSet<u64>) {
        for &a in &self.ids {
            for &b in &self.ids {
                if side.contains(&a) != side.contains(&b) {
                    self.cut.insert((a, b));
                }
            }
        }
    }

    /// Logs a fault's start; returns its step.
    fn log_start(&mut self, fault: &'static str, description: String, nodes: Vec<u64>) -> usize {
        let step = self.next_step;
        self.next_step += 1;
        self.fault_log.push(FaultEvent {
            time_ns: self.elapsed_ns(),
            step: Some(step),
            fault,
            description,
            start: true,
            nodes,
        });
        step
    }

    fn log_heal(&mut self, step: usize, fault: &'static str, description: String, nodes: Vec<u64>) {
        self.fault_log.push(FaultEvent {
            time_ns: self.elapsed_ns(),
            step: Some(step),
            fault,
            description,
            start: false,
            nodes,
        });
    }

    /// A fault that happens at an instant (a clock jump): its start and its heal at once.
    fn log_instant(&mut self, fault: &'static str, description: String, nodes: Vec<u64>) {
        let step = self.log_start(fault, description.clone(), nodes.clone());
        self.log_heal(step, fault, description, nodes);
    }

    /// Every partition and cut heals at once (the network has one heal time).
    fn log_network_healed(&mut self) {
        for (step, description, nodes) in std::mem::take(&mut self.open.network) {
            self.log_heal(step, "partition", description, nodes);
        }
    }

    fn log_network_cut(&mut self, description: String, nodes: Vec<u64>) {
        let step = self.log_start("partition", description.clone(), nodes.clone());
        self.open.network.push((step, description, nodes));
    }

    fn fault(&mut self) {
        let mut kinds = Vec::new();
        if self.swarm.partitions {
            kinds.push(0);
        }
        if self.swarm.one_way_cuts {
            kinds.push(1);
        }
        if self.swarm.crashes {
            kinds.push(2);
        }
        if self.swarm.pauses {
            kinds.push(3);
        }
        if self.swarm.clock_jumps {
            kinds.push(4);
        }
        if self.swarm.power_loss {
            kinds.push(5);
        }
        if self.swarm.corruption {
            kinds.push(6);
        }
        let kind = kinds[self.rng.random_range(0..kinds.len())];
        let heal_in = self.rng.random_range(500..=8_000);
        match kind {
            0 => {
                // Jepsen's shapes: one node isolated, a random majority/minority split, a
                // bridge (two halves joined by one node), or (5 nodes) a ring of majorities.
                self.cut.clear();
                self.log_network_healed();
                let ids = self.shuffled_ids();
                let n = ids.len();
                let names = |ids: &[u64]| {
                    ids.iter()
                        .map(|id| node_name(*id))
                        .collect::<Vec<_>>()
                        .join(",")
                };
                let description = match self.rng.random_range(0..4) {
                    0 => {
                        self.split(&ids[..1].iter().copied().collect());
                        format!("partition isolate {}", node_name(ids[0]))
                    }
                    1 => {
                        let k = self.rng.random_range(1..=n / 2);
                        self.split(&ids[..k].iter().copied().collect());
                        format!("partition {} | {}", names(&ids[..k]), names(&ids[k..]))
                    }
                    2 => {
                        let half = n / 2;
                        let bridge = ids[half];
                        let (a, b) = (&ids[..half], &ids[half + 1..]);
                        for &x in a {
                            for &y in b {
                                self.cut.insert((x, y));
                                self.cut.insert((y, x));
                            }
                        }
                        format!(
                            "partition bridge {} | {} | {}",
                            names(a),
                            node_name(bridge),
                            names(b)
                        )
                    }
                    _ => {
                        // Ring: each node talks to its two neighbours only.
                        for i in 0..n {
                            for j in 0..n {
                                let d = (i + n - j) % n;
                                if d > 1 && d < n - 1 {
                                    self.cut.insert((ids[i], ids[j]));
                                }
                            }
                        }
                        format!("partition ring {}", names(&ids))
                    }
                };
                self.log_network_cut(description, ids);
                self.heal_cut_at = Some(self.now + heal_in);
            }
            1 => {
                let ids = self.shuffled_ids();
                self.cut.insert((ids[0], ids[1]));
                self.log_network_cut(
                    format!("one-way cut {} -> {}", node_name(ids[0]), node_name(ids[1])),
                    vec![ids[0], ids[1]],
                );
                self.heal_cut_at = Some(self.now + heal_in);
            }
            2 | 5 => {
                let syncing: Vec<u64> = self
                    .nodes
                    .iter()
                    .filter(|(_, n)| n.syncing.is_some())
                    .map(|(id, _)| *id)
                    .collect();
                // Half the power losses strike a node in its fsync: the window in which a
                // leader's proposals are out but not yet durable, which a uniformly drawn
                // moment would rarely hit.
                let id = if kind == 5 && !syncing.is_empty() && self.disk_rng.random_bool(0.5) {
                    syncing[self.disk_rng.random_range(0..syncing.len())]
                } else {
                    self.random_node()
                };
                // A power loss of a node already down still loses what its kernel held.
                let (fault, power) = if kind == 5 {
                    let how = if self.swarm.torn_writes && self.disk_rng.random_bool(0.5) {
                        PowerLoss::Torn
                    } else {
                        PowerLoss::WholeRecords
                    };
                    ("power-loss", Some(how))
                } else {
                    ("kill", None)
                };
                self.crash(id, power);
                if !self.open.crashed.contains_key(&id) {
                    let description = format!("{fault} {}", node_name(id));
                    let step = self.log_start(fault, description, vec![id]);
                    self.open.crashed.insert(id, (step, fault));
                }
                self.restart_at.insert(id, self.now + heal_in);
            }
            6 => self.corrupt(),
            4 => {
                let id = self.random_node();
                let jump = self.clock_rng.random_range(1..=MAX_CLOCK_JUMP_MS);
                let node = self.nodes.get_mut(&id).expect("a known node");
                node.clock.jumped_ms += jump as i64;
                self.log_instant(
                    "clock",
                    format!("clock of {} jumped {jump} ms forward", node_name(id)),
                    vec![id],
                );
            }
            _ => {
                let id = self.random_node();
                let node = self.nodes.get_mut(&id).expect("a known node");
                if node.core.is_some() && node.paused_until.is_none() {
                    node.paused_until = Some(self.now + heal_in);
                    let step =
                        self.log_start("pause", format!("pause {}", node_name(id)), vec![id]);
                    self.open.paused.insert(id, step);
                }
            }
        }
    }

    /// The real `corrupt` fault's bitflip: a stopped node's log or snapshot is damaged, found
    /// by crc when it restarts. Only while fewer than a minority of the voters are damaged:
    /// with a majority damaged keeper stops by design (docs/ARCHITECTURE.md "Damaged disks").
    fn corrupt(&mut self) {
        let minority = (self.ids.len() - 1) / 2;
        let damaged =
            |sim: &Sim, id: u64| sim.nodes[&id].disk.is_damaged() || sim.corrupted.contains(&id);
        let candidates: Vec<u64> = self
            .ids
            .iter()
            .copied()
            .filter(|id| self.nodes[id].core.is_none() && self.restart_at.contains_key(id))
            .filter(|&id| {
                let others = self
                    .ids
                    .iter()
                    .filter(|&&o| o != id && damaged(self, o))
                    .count();
                others < minority
            })
            .collect();
        if candidates.is_empty() {
            return;
        }
        let id = candidates[self.disk_rng.random_range(0..candidates.len())];
        let snapshot = self.disk_rng.random_bool(0.5);
        let node = self.nodes.get_mut(&id).expect("a known node");
        let what = node.disk.bitflip(&mut self.disk_rng, snapshot);
        self.corrupted.insert(id);
        self.disk_events.corruptions += 1;
        self.log_instant(
            "corrupt",
            format!("corrupt {}: {what}", node_name(id)),
            vec![id],
        );
    }

    fn heal_due(&mut self) {
        if self.heal_cut_at.is_some_and(|t| t <= self.now) {
            self.cut.clear();
            self.heal_cut_at = None;
            self.log_network_healed();
        }
        let due: Vec<u64> = self
            .restart_at
            .iter()
            .filter(|(_, t)| **t <= self.now)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            self.restart_at.remove(&id);
            self.restart(id);
            if let Some((step, fault)) = self.open.crashed.remove(&id) {
                let description = format!("{fault} {}", node_name(id));
                self.log_heal(step, fault, description, vec![id]);
            }
        }
        let resume: Vec<u64> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.paused_until.is_some_and(|t| t <= self.now))
            .map(|(id, _)| *id)
            .collect();
        for id in resume {
            self.resume(id);
            if let Some(step) = self.open.paused.remove(&id) {
                self.log_heal(step, "pause", format!("pause {}", node_name(id)), vec![id]);
            }
        }
    }

    /// Ends every fault (heals the network, restarts and resumes every node) and draws no more.
    pub fn heal(&mut self) {
        self.open = OpenFaults::default();
        self.fault_log.push(FaultEvent {
            time_ns: self.elapsed_ns(),
            step: None,
            fault: HEAL_ALL,
            description: "heal all".into(),
            start: false,
            nodes: self.ids.clone(),
        });
        self.faults = false;
        self.cut.clear();
        self.heal_cut_at = None;
        self.restart_at.clear();
        for id in self.ids.clone() {
            self.restart(id);
            if self.nodes[&id].paused_until.is_some() {
                self.resume(id);
            }
        }
    }

    // ---- clients -----------------------------------------------------------------------

    fn request(&mut self, node: u64, waiter: Waiter, body: ClientRequest) -> u64 {
        let request = self.next_request;
        self.next_request += 1;
        self.waiters.insert((node, request), waiter);
        let running = self.nodes[&node].core.is_some();
        if running {
            self.input(node, Input::Client { request, body });
        } else {
            self.waiters.remove(&(node, request));
            self.complete(waiter, node, request, PortOutcome::Refused);
        }
        request
    }

    /// A client starts its next step, if idle.
    fn client_step(&mut self, c: usize, issue_op: bool) {
        if self.clients[c].pending.is_some() {
            return;
        }
        let now = self.now;
        let Some(session) = self.clients[c].session else {
            if now >= self.clients[c].last_sent_ms + 200 {
                let body = ClientRequest::CreateSession {
                    timeout_ms: SESSION_TIMEOUT_MS,
                    last_zxid: self.clients[c].last_zxid,
                };
                self.client_send(c, Pending::Session, body);
            }
            return;
        };
        if let Some(body) = self.rewatch(c, session) {
            let ClientRequest::SetWatches { data, exist, .. } = &body else {
                unreachable!("rewatch asks for SetWatches");
            };
            let paths = data.iter().chain(exist).cloned().collect();
            return self.client_send(c, Pending::SetWatches(paths), body);
        }
        let last_zxid = self.clients[c].last_zxid;
        if !issue_op {
            if now >= self.clients[c].last_sent_ms + SESSION_TIMEOUT_MS / 3 {
                let body = ClientRequest::Heartbeat { session, last_zxid };
                self.client_send(c, Pending::Heartbeat, body);
            }
            return;
        }
        if let Some((f, key, inv, body)) = self.draw_watch(c, session) {
            return self.invoke(c, f, key, inv, body);
        }
        let key = key_name(self.rng.random_range(0..self.swarm.keys));
        let roll = self.rng.random_range(0..100);
        // Distinct values keep the linearizability search small.
        self.next_value += 1;
        let value = self.next_value;
        let (f, inv, body) = if roll < 45 {
            (
                "read",
                Value::Null,
                ClientRequest::Read {
                    session,
                    last_zxid,
                    read: Read::GetData { path: key.clone() },
                    watch: false,
                    consistency: Consistency::Linearizable,
                },
            )
        } else if roll < 75 {
            (
                "write",
                json!(value),
                ClientRequest::Write {
                    session,
                    last_zxid,
                    op: Op::SetData {
                        path: key.clone(),
                        data: value.to_string(),
                        version: -1,
                    },
                },
            )
        } else {
            let from = self.clients[c].versions.get(&key).copied().unwrap_or(0);
            (
                "cas",
                json!({"from_version": from, "to": value}),
                ClientRequest::Write {
                    session,
                    last_zxid,
                    op: Op::SetData {
                        path: key.clone(),
                        data: value.to_string(),
                        version: from,
                    },
                },
            )
        };
        self.invoke(c, f, key, inv, body);
    }

    /// Client `c` invokes an operation of the history.
    fn invoke(&mut self, c: usize, f: &'static str, key: String, inv: Value, body: ClientRequest) {
        let client = &self.clients[c];
        let mut e = Event::new(0, 0, client.process, EventType::Invoke, f, inv.clone());
        e.key = Some(key.clone());
        e.node = Some(node_name(client.node));
        e.session = client.session;
        self.record(e);
        self.client_send(c, Pending::Op { f, key, value: inv }, body);
    }

    /// Client `c` sends `body` to its node and waits, as `pending`, for the reply or
    /// `OP_TIMEOUT_MS`.
    fn client_send(&mut self, c: usize, pending: Pending, body: ClientRequest) {
        let node = self.clients[c].node;
        self.clients[c].last_sent_ms = self.now;
        self.clients[c].pending = Some((node, 0, pending, self.now + OP_TIMEOUT_MS));
        let r = self.request(node, Waiter::Client(c), body);
        // A node that is down answers at once, which takes the pending request away.
        if let Some(p) = self.clients[c].pending.as_mut() {
            p.1 = r;
        }
    }

    fn reply(
        &mut self,
        node: u64,
        request: u64,
        zxid: Zxid,
        result: Result<Response, KeeperError>,
    ) {
        if let Some(w) = self.waiters.remove(&(node, request)) {
            if let Waiter::Client(c) = w {
                self.replied(c, node);
            }
            self.complete(w, node, request, PortOutcome::Reply { zxid, result });
        }
    }

    /// Request `request` to `node` ended: a port's client is told exactly how; the
    /// simulation's own clients and the probe see a refused or lost connection as
    /// `connection_loss`, indeterminate (a refused connection is definite in reality, but a
    /// client cannot always tell: the conservative choice).
    fn complete(&mut self, waiter: Waiter, node: u64, request: u64, outcome: PortOutcome) {
        let (zxid, result) = match (waiter, outcome) {
            (Waiter::Port, outcome) => return self.port_done(request, node, outcome),
            (_, PortOutcome::Reply { zxid, result }) => (zxid, result),
            (_, PortOutcome::Refused) => (
                0,
                Err(KeeperError::new(
                    ErrorCode::ConnectionLoss,
                    "connection refused",
                )),
            ),
            (_, PortOutcome::Lost) => (
                0,
                Err(KeeperError::new(ErrorCode::ConnectionLoss, "node crashed")),
            ),
        };
        match waiter {
            Waiter::Client(c) => self.client_complete(c, node, zxid, result),
            Waiter::Probe => self.probe_complete(result),
            Waiter::Port => {}
        }
    }

    fn client_complete(
        &mut self,
        c: usize,
        node: u64,
        zxid: Zxid,
        result: Result<Response, KeeperError>,
    ) {
        let Some((_, _, pending, _)) = self.clients[c].pending.take() else {
            return;
        };
        let expired = matches!(&result, Err(e) if e.error == ErrorCode::SessionExpired);
        if result.is_err() {
            // Try another node next time: this one may be down, partitioned or behind. The
            // connection is dropped, and the watches are set again on the next one.
            self.disconnect(c);
            self.clients[c].node = self.random_node();
        }
        if result.is_ok() {
            self.clients[c].last_zxid = self.clients[c].last_zxid.max(zxid);
        }
        let (f, key, inv) = match pending {
            Pending::Session => {
                if let Ok(Response::Session { session, .. }) = result {
                    self.clients[c].session = Some(session);
                    self.clients[c].watches = ClientWatches::default();
                }
                return;
            }
            Pending::SetWatches(paths) => {
                self.rewatched(c, node, &paths, &result);
                if expired {
                    self.session_gone(c, true);
                }
                return;
            }
            Pending::Heartbeat => {
                if expired {
                    self.session_gone(c, true);
                }
                return;
            }
            Pending::Op { f, key, value } => (f, key, value),
        };
        let client = &self.clients[c];
        let (process, session) = (client.process, client.session);
        let mut e = match result {
            Ok(resp) if f == checker::history::WATCH_F => {
                let value = self.watch_set(c, node, &key, &inv, resp);
                let mut e = Event::new(0, 0, process, EventType::Ok, f, value);
                e.zxid = Some(zxid);
                e
            }
            Ok(resp) => {
                let value = match resp {
                    Response::Data { data, stat } => {
                        self.clients[c].versions.insert(key.clone(), stat.version);
                        let data: Value =
                            serde_json::from_str(&data).unwrap_or(Value::String(data));
                        json!([data, stat.version])
                    }
                    Response::Stat { stat } => {
                        self.clients[c].versions.insert(key.clone(), stat.version);
                        json!({"version": stat.version})
                    }
                    _ => Value::Null,
                };
                let mut e = Event::new(0, 0, process, EventType::Ok, f, value);
                e.zxid = Some(zxid);
                e
            }
            Err(err) if f == "read" && err.error == ErrorCode::NoNode => {
                let mut e = Event::new(0, 0, process, EventType::Ok, f, Value::Null);
                e.zxid = Some(zxid);
                e
            }
            Err(err) => {
                let kind = if err.error.is_indeterminate() {
                    EventType::Info
                } else {
                    EventType::Fail
                };
                if f == "cas" && err.error == ErrorCode::BadVersion {
                    self.clients[c].versions.remove(&key);
                }
                let mut e = Event::new(0, 0, process, kind, f, inv);
                e.error = Some(err.error.as_str().to_string());
                e
            }
        };
        e.key = Some(key);
        e.node = Some(node_name(node));
        e.session = session;
        let info = e.kind == EventType::Info;
        self.record(e);
        self.flush_observed(c);
        if expired {
            self.session_gone(c, true);
        } else if info && f == checker::history::WATCH_F {
            // Whether the node took this watch is unknown: a later event could answer it or
            // not. The real worker opens a new client (and session) after an `info`; so does
            // this one after an unknown watch.
            self.session_gone(c, false);
        }
        if info {
            // Jepsen: a process that got `info` never invokes again.
            self.clients[c].process = self.next_process;
            self.next_process += 1;
        }
    }

    /// Operations past their deadline become indeterminate (the client stops waiting).
    fn expire_requests(&mut self) {
        for c in 0..self.clients.len() {
            let Some((node, request, _, deadline)) = self.clients[c].pending else {
                continue;
            };
            if self.now >= deadline {
                self.waiters.remove(&(node, request));
                let err = KeeperError::new(ErrorCode::Timeout, "client timeout");
                self.client_complete(c, node, 0, Err(err));
            }
        }
        if let Some((node, request, deadline)) = self.probe.pending
            && self.now >= deadline
        {
            self.waiters.remove(&(node, request));
            self.probe_complete(Err(KeeperError::new(ErrorCode::Timeout, "probe timeout")));
        }
    }

    // ---- the run -----------------------------------------------------------------------

    fn leader(&self) -> Option<u64> {
        self.nodes.iter().find_map(|(id, n)| {
            n.core
                .as_ref()
                .filter(|c| c.status().role == Role::Leading)
                .map(|_| *id)
        })
    }

    fn sample_status(&mut self) {
        let time = self.elapsed_ns();
        for (id, n) in &self.nodes {
            let mut s = StatusSample {
                time,
                node: node_name(*id),
                status: None,
                error: None,
                digest: None,
            };
            match (&n.core, n.paused_until) {
                (Some(core), None) => {
                    s.status = serde_json::to_value(core.status()).ok();
                    s.digest = serde_json::to_value(core.digest()).ok();
                }
                (Some(_), Some(_)) => s.error = Some("timeout (paused)".into()),
                (None, _) => s.error = Some("connection refused (crashed)".into()),
            }
            self.status.push(s);
        }
    }

    /// Advances simulated time by `ms`, with clients issuing operations if `ops`.
    fn run_for(&mut self, ms: u64, ops: bool) {
        let end = self.now + ms;
        while self.now < end {
            self.tick(ops);
        }
    }

    fn tick(&mut self, ops: bool) {
        self.now += STEP_MS;
        // Each node ticks on its own clock (all at once, on multiples of TICK_MS, when no
        // clock is skewed).
        for id in self.ids.clone() {
            let now = self.now;
            if self
                .nodes
                .get_mut(&id)
                .expect("a known node")
                .clock
                .tick_due(now)
            {
                self.input(id, Input::Tick);
            }
        }
        if self.now.is_multiple_of(STATUS_EVERY_MS) {
            self.sample_status();
        }
        self.heal_due();
        self.finish_syncs();
        self.deliver_due();
        self.expire_requests();
        // Each client issues operations at its share of the rate, heartbeats otherwise.
        let per_step = self.swarm.op_rate as f64 * STEP_MS as f64 / 1_000.0;
        for c in 0..self.clients.len() {
            let issue = ops
                && self
                    .rng
                    .random_bool((per_step / self.clients.len() as f64).min(1.0));
            self.client_step(c, issue);
        }
        if self.faults
            && self
                .rng
                .random_bool((STEP_MS as f64 / self.swarm.fault_every_ms as f64).min(1.0))
        {
            self.fault();
        }
    }

    fn probe_send(&mut self, body: ClientRequest) {
        let node = self.leader().unwrap_or_else(|| self.ids[0]);
        let r = self.request(node, Waiter::Probe, body);
        if self.waiters.contains_key(&(node, r)) {
            self.probe.pending = Some((node, r, self.now + OP_TIMEOUT_MS));
        }
    }

    fn probe_complete(&mut self, result: Result<Response, KeeperError>) {
        self.probe.pending = None;
        match result {
            Ok(Response::Session { session, .. }) => self.probe.session = Some(session),
            Ok(Response::Created { stat, .. }) | Ok(Response::Stat { stat }) => {
                self.probe.written = Some(stat.mzxid)
            }
            Ok(Response::Data { .. }) => self.probe.errors.push("read-ok".into()),
            Ok(_) => {}
            Err(e) => {
                if e.error == ErrorCode::NodeExists {
                    self.probe.written = Some(0);
                }
                self.probe.last_error = Some(e.error);
                self.probe.errors.truncate(MAX_PROBE_ERRORS - 1);
                self.probe
                    .errors
                    .push(format!("{}: {}", e.error.as_str(), e.message))
            }
        }
    }

    /// After the heal: elect, write, read, converge, all within `RECOVERY_BOUND_MS`. Steps
    /// time itself; a port's requests go on meanwhile.
    pub fn liveness(&mut self) -> Recovery {
        let healed_at = self.elapsed_ns();
        let start = self.now;
        let mut rec = Recovery {
            timeout_ms: RECOVERY_BOUND_MS,
            healed_at,
            ..Recovery::default()
        };
        let mut read_done = false;
        let mut last_applied: Option<Zxid> = None;
        while self.now < start + RECOVERY_BOUND_MS {
            self.tick(false);
            if !self.now.is_multiple_of(TICK_MS) {
                continue;
            }
            let since = self.now - start;
            let statuses: Vec<_> = self
                .nodes
                .values()
                .filter_map(|n| n.core.as_ref().map(|c| c.status()))
                .collect();
            if rec.leader_ms.is_none() {
                let leaders: BTreeSet<_> = statuses.iter().map(|s| s.leader).collect();
                if statuses.len() == self.ids.len()
                    && statuses.iter().all(|s| s.serving)
                    && leaders.len() == 1
                    && !leaders.contains(&None)
                {
                    rec.leader_ms = Some(since);
                }
                continue;
            }
            if self.probe.pending.is_none() {
                match (self.probe.session, self.probe.written, read_done) {
                    (None, _, _) => self.probe_send(ClientRequest::CreateSession {
                        timeout_ms: SESSION_TIMEOUT_MS,
                        last_zxid: 0,
                    }),
                    (Some(session), None, _) => self.probe_send(ClientRequest::Write {
                        session,
                        last_zxid: 0,
                        op: Op::Create {
                            path: "/sim-probe".into(),
                            data: "probe".into(),
                            mode: keeper::api::CreateMode::Persistent,
                        },
                    }),
                    (Some(session), Some(z), false) => {
                        rec.write_ms.get_or_insert(since);
                        let before = self.probe.errors.len();
                        self.probe_send(ClientRequest::Read {
                            session,
                            last_zxid: z,
                            read: Read::GetData {
                                path: "/sim-probe".into(),
                            },
                            watch: false,
                            consistency: Consistency::Linearizable,
                        });
                        let _ = before;
                    }
                    _ => {}
                }
            }
            if !read_done && self.probe.errors.last().is_some_and(|e| e == "read-ok") {
                self.probe.errors.pop();
                read_done = true;
                rec.read_ms = Some(since);
            }
            let applied: BTreeSet<Zxid> = statuses.iter().map(|s| s.applied_zxid).collect();
            if statuses.len() == self.ids.len() && applied.len() == 1 {
                let z = *applied.first().expect("one");
                if rec.converged_ms.is_none() && last_applied == Some(z) && read_done {
                    rec.converged_ms = Some(since);
                    break;
                }
                last_applied = Some(z);
            } else {
                last_applied = None;
            }
        }
        rec.nodes = self
            .nodes
            .iter()
            .map(|(id, n)| match &n.core {
                Some(c) => {
                    let d = c.digest();
                    NodeEnd {
                        node: node_name(*id),
                        zxid: Some(d.zxid),
                        digest: Some(d.digest),
                        error: None,
                    }
                }
                None => NodeEnd {
                    node: node_name(*id),
                    error: Some(n.start_error.clone().unwrap_or_else(|| "down".into())),
                    ..NodeEnd::default()
                },
            })
            .collect();
        rec.errors = std::mem::take(&mut self.probe.errors);
        rec.errors.truncate(10);
        rec
    }

    /// The last phase: the workload runs on the healed cluster, so every seed ends with
    /// evidence for every checker (a seed whose faults kept, say, every `cas` from succeeding
    /// would otherwise leave `stats` nothing to judge). It stops once each operation kind has
    /// succeeded, after `QUIET_MIN_MS` at least; a cluster that cannot serve runs out
    /// `QUIET_MAX_MS` and the checkers say `unknown` (and `recovery` what went wrong).
    fn quiet_workload(&mut self) {
        let start = self.now;
        while self.now < start + QUIET_MAX_MS {
            self.tick(true);
            if self.now >= start + QUIET_MIN_MS && self.succeeded.len() == OP_KINDS.len() {
                break;
            }
        }
    }

    /// Creates the keys through the clients' ordinary path, as the setup process.
    fn create_keys(&mut self) {
        // One session for setup, through whichever node leads.
        for k in 0..self.swarm.keys {
            let key = key_name(k);
            let process = SETUP_PROCESS + k as u64;
            let mut e = Event::new(0, 0, process, EventType::Invoke, "create", json!(0));
            e.key = Some(key.clone());
            self.record(e);
            let outcome = self.setup_create(&key);
            let mut e = match outcome {
                Ok(zxid) => {
                    let mut e = Event::new(0, 0, process, EventType::Ok, "create", Value::Null);
                    e.zxid = Some(zxid);
                    e
                }
                Err(err) => {
                    let kind = if err.error.is_indeterminate() {
                        EventType::Info
                    } else {
                        EventType::Fail
                    };
                    let mut e = Event::new(0, 0, process, kind, "create", json!(0));
                    e.error = Some(err.error.as_str().to_string());
                    e
                }
            };
            e.key = Some(key);
            self.record(e);
        }
    }

    /// Runs one create to completion (fault-free phase), returning its zxid. Retries refusals
    /// that say nothing was done (`not_ready`); once an attempt was indeterminate, the outcome
    /// can only be `ok` or indeterminate.
    fn setup_create(&mut self, key: &str) -> Result<Zxid, KeeperError> {
        let deadline = self.now + OP_TIMEOUT_MS;
        self.probe = Probe::default();
        let mut uncertain = false;
        let result = loop {
            if self.now >= deadline {
                break Err(KeeperError::new(ErrorCode::Timeout, "setup create"));
            }
            if self.probe.pending.is_none() {
                match self.probe.last_error.take() {
                    Some(code) if code.is_indeterminate() => uncertain = true,
                    Some(ErrorCode::NotReady) | None => {}
                    Some(code) => {
                        let code = if uncertain { ErrorCode::Timeout } else { code };
                        break Err(KeeperError::new(code, "setup create"));
                    }
                }
                match (self.probe.session, self.probe.written) {
                    (_, Some(z)) => break Ok(z),
                    (None, _) => self.probe_send(ClientRequest::CreateSession {
                        timeout_ms: SESSION_TIMEOUT_MS,
                        last_zxid: 0,
                    }),
                    (Some(session), None) => self.probe_send(ClientRequest::Write {
                        session,
                        last_zxid: 0,
                        op: Op::Create {
                            path: key.to_string(),
                            data: "0".into(),
                            mode: keeper::api::CreateMode::Persistent,
                        },
                    }),
                }
            }
            self.tick(false);
        };
        self.probe = Probe::default();
        result
    }
}

/// FNV-1a over bytes: a stable hash (std's `DefaultHasher` may change between releases).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The history as `history.jsonl` text.
pub fn history_jsonl(history: &[Event]) -> String {
    let mut out = String::new();
    for e in history {
        out.push_str(&serde_json::to_string(e).expect("an event serializes"));
        out.push('\n');
    }
    out
}

/// Runs one seed: warm-up, keys, workload under faults, heal, liveness; then checks it all.
pub fn run_seed(cfg: &SimConfig) -> SimOutcome {
    let mut sim = Sim::new(cfg);
    sim.run_for(WARMUP_MS, false);
    sim.create_keys();
    sim.faults = true;
    let fault_ms = sim.swarm.fault_ms;
    sim.run_for(fault_ms, true);
    sim.heal();
    let recovery = sim.liveness();
    sim.quiet_workload();
    let history = std::mem::take(&mut sim.history);
    sim.finish(history, "register", recovery)
}
