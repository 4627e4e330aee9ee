//! The port: the simulated cluster's client side, opened to a driver outside this crate.
//!
//! With a port ([`Sim::with_port`]) the simulation runs no clients of its own: whoever drives it
//! (the harness's simulated transport, `harness/src/workload/conn/sim.rs`) submits keeper client
//! requests to a node ([`Sim::submit`]), steps simulated time ([`Sim::step`]) and takes what the
//! nodes said ([`Sim::take_port`]): replies, watch events, session ends, and node deaths that
//! broke connections. A request reaches its node's core at once and its reply leaves with the
//! batch that made it, as over loopback; the faults between nodes are the simulation's.

use super::{
    CHECK_TIME_LIMIT_S, QUIET_MIN_MS, STEP_MS, Sim, SimConfig, SimOutcome, Swarm, WARMUP_MS,
    Waiter, fnv1a, history_jsonl,
};
use checker::CheckOptions;
use checker::history::Event;
use checker::liveness::Recovery;
use keeper::api::{KeeperError, SessionId, WatchEvent, Zxid};
use keeper::core::{ClientRequest, Output, Response};

/// One request through the port, as the driver tells its replies apart.
pub type Ticket = u64;

/// How a request ended, as a client connected to that node sees it.
#[derive(Clone, Debug, PartialEq)]
pub enum PortOutcome {
    /// The node answered: the zxid it had applied, and its result.
    Reply {
        zxid: Zxid,
        result: Result<Response, KeeperError>,
    },
    /// The node's process was down: the connection was refused, nothing was done.
    Refused,
    /// The node died with the request in flight: it may or may not have taken effect.
    Lost,
}

/// What a node said to the port's clients.
#[derive(Clone, Debug, PartialEq)]
pub enum PortMsg {
    Done {
        ticket: Ticket,
        node: u64,
        outcome: PortOutcome,
    },
    /// A watch of `session`, registered on `node`, fired.
    Watch {
        node: u64,
        session: SessionId,
        event: WatchEvent,
    },
    /// `node` applied the end of `session` (expired, or closed).
    SessionEnded {
        node: u64,
        session: SessionId,
        expired: bool,
        zxid: Zxid,
    },
    /// `node` lost `session`'s watches unfired (a SNAP sync replaced its tree): its event
    /// stream says so, as an overflow.
    WatchesLost { node: u64, session: SessionId },
    /// `node`'s process died: every connection to it broke.
    NodeDown { node: u64 },
}

impl Sim {
    /// A simulation whose clients are outside it: the seed draws everything as for
    /// [`super::run_seed`] (the same swarm, faults and clocks), but no client of its own runs.
    pub fn with_port(cfg: &SimConfig) -> Sim {
        let mut sim = Sim::new(cfg);
        sim.clients.clear();
        sim.port = Some(Vec::new());
        sim
    }

    /// The simulated ms one [`Sim::step`] covers.
    pub const STEP_MS: u64 = STEP_MS;
    /// The fault-free time a new cluster gets to elect before any client works.
    pub const WARMUP_MS: u64 = WARMUP_MS;
    /// The least fault-free workload time after the liveness phase.
    pub const QUIET_MS: u64 = QUIET_MIN_MS;

    pub fn swarm(&self) -> &Swarm {
        &self.swarm
    }

    /// The nodes' ids, `1..=n` (named `n1`, ...).
    pub fn node_ids(&self) -> &[u64] {
        &self.ids
    }

    /// Simulated ms since the seed started (the history's clock, in ms).
    pub fn elapsed_ms(&self) -> u64 {
        self.now - super::START_MS
    }

    /// Advances simulated time by one step: ticks, messages, faults when on, status samples.
    pub fn step(&mut self) {
        self.tick(true);
    }

    /// Faults start being drawn (the workload phase).
    pub fn start_faults(&mut self) {
        self.faults = true;
    }

    /// Sends `body` to `node` from a client connected to it.
    pub fn submit(&mut self, node: u64, body: ClientRequest) -> Ticket {
        self.request(node, Waiter::Port, body)
    }

    /// Everything the nodes said to the port's clients since the last call, in order.
    pub fn take_port(&mut self) -> Vec<PortMsg> {
        self.port.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// What `node` sends a session's event stream, to the port.
    pub(crate) fn send_to_port(&mut self, node: u64, output: Output) {
        let msg = match output {
            Output::Event { session, event } => PortMsg::Watch {
                node,
                session,
                event,
            },
            Output::SessionEnded {
                session,
                expired,
                zxid,
            } => PortMsg::SessionEnded {
                node,
                session,
                expired,
                zxid,
            },
            Output::WatchesLost { session } => PortMsg::WatchesLost { node, session },
            Output::Send { .. } | Output::Reply { .. } => return,
        };
        if let Some(port) = self.port.as_mut() {
            port.push(msg);
        }
    }

    pub(crate) fn port_done(&mut self, ticket: Ticket, node: u64, outcome: PortOutcome) {
        if let Some(port) = self.port.as_mut() {
            port.push(PortMsg::Done {
                ticket,
                node,
                outcome,
            });
        }
    }

    /// Checks the seed with `workload`'s checkers over `history` (the simulation's own clients',
    /// or recorded by the port's clients on the simulation's clock), the status samples and
    /// `recovery`: the seed's outcome.
    pub fn finish(self, history: Vec<Event>, workload: &str, recovery: Recovery) -> SimOutcome {
        let opts = CheckOptions {
            time_limit: Some(std::time::Duration::from_secs(CHECK_TIME_LIMIT_S)),
            threads: Some(1),
            ..CheckOptions::default()
        };
        let mut verdict = match checker::check_history(&history, Some(workload), &opts) {
            Ok(v) => v,
            Err(e) => {
                // A history the checker cannot read is the simulator's bug: say so as unknown.
                let mut v = checker::RunVerdict::from_checkers(Some(workload.into()), 0, vec![]);
                v.verdict = checker::Verdict::Unknown;
                v.warnings.push(format!("cannot check the history: {e}"));
                v
            }
        };
        verdict.push(checker::check_status(&self.status));
        verdict.push(checker::invariants::convergence(&self.status));
        verdict.push(checker::liveness::recovery(&recovery));
        let text = history_jsonl(&history);
        SimOutcome {
            seed: self.seed,
            swarm: self.swarm.clone(),
            workload: workload.to_string(),
            history_hash: fnv1a(text.as_bytes()),
            simulated_ms: self.now - super::START_MS,
            history,
            status: self.status,
            faults: self.fault_log,
            recovery,
            verdict,
            disk_events: self.disk_events,
        }
    }
}
