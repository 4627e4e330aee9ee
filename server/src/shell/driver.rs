//! The driver: the only owner of the `Core` and the `Storage`.
//!
//! It runs as one task on the runtime's worker threads, not on a thread of its own: a request's
//! path (HTTP handler → driver → peer writer, peer reader → driver → handler) then hands each
//! step to the next task on the same worker (tokio runs a task woken by the running one next),
//! where a dedicated thread cost an OS wake-up per hop, the largest cost of a write on a loaded
//! machine. Its work is synchronous (stepping the core, and `Storage::sync`, which blocks in
//! fsync for a fraction of a millisecond per batch); the runtime's other workers serve
//! meanwhile. Async code talks to it through one bounded channel ([`DriverHandle`]); what comes
//! out goes to oneshots, peer outboxes and session event queues, all of which accept a value
//! without waiting, so a slow client or peer never stalls the driver.

use super::peer::Transport;
use super::sse::EventHub;
use crate::api::{DigestReply, ErrorCode, KeeperError, NodeId, SessionId, Status, Zxid};
use crate::core::{
    Bug, ClientRequest, Config, Core, Input, Millis, Output, PeerMsg, Persist, Ready, RequestId,
    Response,
};
use crate::storage::{OpenMode, Storage};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// Inputs taken into one batch (one group commit) at most.
pub const MAX_BATCH: usize = 1024;
/// Inputs waiting for the driver at most; senders wait for room (backpressure).
pub const MAX_DRIVER_QUEUE: usize = 8192;
/// Client requests the core is working on at most; more are refused with `not_ready`.
pub const MAX_PENDING_REQUESTS: usize = 16_384;
/// How much longer than the core's request timeout an HTTP handler waits for the driver
/// before it answers `timeout` itself (the core should always answer first).
pub const REPLY_MARGIN_MS: u64 = 2_000;

/// A reply as the core gives it: the node's applied zxid and the outcome.
pub type ClientReply = (Zxid, Result<Response, KeeperError>);

/// A reply on its way to a handler, with how many of the session's events its stream must
/// take first (see `EventHub::flush_mark`).
pub struct Answer {
    reply: ClientReply,
    flush: Option<u64>,
}

pub enum DriverInput {
    Client {
        body: ClientRequest,
        reply: oneshot::Sender<Answer>,
    },
    Peer {
        from: NodeId,
        msg: PeerMsg,
    },
    /// A connection from this peer ended (see `Input::PeerDisconnected`).
    PeerDisconnected {
        peer: NodeId,
    },
    Status(oneshot::Sender<Status>),
    Digest(oneshot::Sender<DigestReply>),
}

/// What async code holds to talk to the driver.
#[derive(Clone)]
pub struct DriverHandle {
    tx: mpsc::Sender<DriverInput>,
    /// The outer bound on any wait for the driver.
    reply_bound: Duration,
    hub: Arc<EventHub>,
}

impl DriverHandle {
    /// A handle whose inputs land in `tx`, for tests of the transport.
    #[cfg(test)]
    pub fn for_test(tx: mpsc::Sender<DriverInput>) -> DriverHandle {
        DriverHandle {
            tx,
            reply_bound: Duration::from_millis(REPLY_MARGIN_MS),
            hub: Arc::default(),
        }
    }

    /// Hands a client request to the core and waits for its reply.
    pub async fn call(&self, body: ClientRequest) -> Result<(Zxid, Response), KeeperError> {
        let session = session_of(&body);
        let (reply, rx) = oneshot::channel();
        let bound = self.reply_bound;
        let wait = async {
            if self
                .tx
                .send(DriverInput::Client { body, reply })
                .await
                .is_err()
            {
                return Err(stopping());
            }
            // The driver dropped the request: it stopped (shutdown or a fatal error) after it
            // took the request, so the outcome is unknown.
            rx.await.map_err(|_| {
                KeeperError::new(
                    ErrorCode::Timeout,
                    "the server stopped before it answered; the outcome is unknown",
                )
            })
        };
        let answer = tokio::time::timeout(bound, wait).await;
        if let (
            Ok(Ok(Answer {
                flush: Some(mark), ..
            })),
            Some(session),
        ) = (&answer, session)
        {
            self.hub.wait_flushed(session, *mark).await;
        }
        match answer {
            Ok(Ok(Answer {
                reply: (_, Err(e)), ..
            }))
            | Ok(Err(e)) => Err(e),
            Ok(Ok(Answer {
                reply: (zxid, Ok(response)),
                ..
            })) => Ok((zxid, response)),
            Err(_) => Err(KeeperError::new(
                ErrorCode::Timeout,
                format!(
                    "no reply within {} ms; the outcome is unknown",
                    bound.as_millis()
                ),
            )),
        }
    }

    pub async fn status(&self) -> Result<Status, KeeperError> {
        self.query(DriverInput::Status).await
    }

    pub async fn digest(&self) -> Result<DigestReply, KeeperError> {
        self.query(DriverInput::Digest).await
    }

    async fn query<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> DriverInput,
    ) -> Result<T, KeeperError> {
        let (tx, rx) = oneshot::channel();
        let wait = async {
            self.tx.send(make(tx)).await.map_err(|_| stopping())?;
            rx.await.map_err(|_| stopping())
        };
        tokio::time::timeout(self.reply_bound, wait)
            .await
            .unwrap_or_else(|_| {
                Err(KeeperError::new(
                    ErrorCode::Timeout,
                    "the server did not answer in time",
                ))
            })
    }

    /// Hands a peer message to the core, waiting for room: a reader that waits stops reading
    /// its socket, which pushes back on the sending peer.
    pub async fn peer(&self, from: NodeId, msg: PeerMsg) -> bool {
        self.tx.send(DriverInput::Peer { from, msg }).await.is_ok()
    }

    /// Tells the core that the connection from `peer` ended. Sent on the channel that carried
    /// the connection's messages, so the core sees it after all of them.
    pub async fn peer_disconnected(&self, peer: NodeId) {
        let _ = self.tx.send(DriverInput::PeerDisconnected { peer }).await;
    }
}

/// The session a request acts for, if any.
fn session_of(body: &ClientRequest) -> Option<SessionId> {
    match body {
        ClientRequest::CreateSession { .. } => None,
        ClientRequest::Heartbeat { session, .. }
        | ClientRequest::CloseSession { session, .. }
        | ClientRequest::Write { session, .. }
        | ClientRequest::Multi { session, .. }
        | ClientRequest::Read { session, .. }
        | ClientRequest::Sync { session, .. }
        | ClientRequest::SetWatches { session, .. }
        | ClientRequest::RemoveWatches { session, .. } => Some(*session),
    }
}

fn stopping() -> KeeperError {
    KeeperError::new(ErrorCode::NotReady, "the server is shutting down")
}

pub struct DriverConfig {
    pub core: Config,
    pub data_dir: PathBuf,
    pub snapshot_every: u64,
    pub log_retain_txns: usize,
    pub fsync: bool,
}

/// The driver's result: `Ok` after a requested stop, `Err` after a fatal error.
pub type DriverDone = oneshot::Receiver<anyhow::Result<()>>;

/// Turns what the driver reported (or its silence, if it panicked) into a result.
pub fn outcome(
    received: Result<anyhow::Result<()>, oneshot::error::RecvError>,
) -> anyhow::Result<()> {
    received.unwrap_or_else(|_| Err(anyhow::anyhow!("the driver panicked")))
}

/// Opens the storage and recovers the core (on a blocking thread), then runs the driver as a
/// task until `stop`. Returns once the storage is open, or the error that prevented it.
pub async fn spawn(
    config: DriverConfig,
    transport: Transport,
    hub: Arc<EventHub>,
    stop: CancellationToken,
) -> anyhow::Result<(DriverHandle, DriverDone)> {
    let (tx, rx) = mpsc::channel(MAX_DRIVER_QUEUE);
    let (done_tx, done_rx) = oneshot::channel();
    let reply_bound = Duration::from_millis(config.core.request_timeout_ms + REPLY_MARGIN_MS);
    let id = config.core.id;
    let handle = DriverHandle {
        tx,
        reply_bound,
        hub: hub.clone(),
    };
    let opened = tokio::task::spawn_blocking(move || Driver::open(config, transport, hub)).await;
    let driver = match opened {
        Ok(Ok(driver)) => driver,
        Ok(Err(e)) => return Err(e),
        Err(_) => return Err(anyhow::anyhow!("the driver panicked while starting")),
    };
    tokio::spawn(async move {
        let result = driver.run(rx, stop).await;
        if let Err(e) = &result {
            tracing::error!(id, "stopping: {e:#}");
        }
        let _ = done_tx.send(result);
    });
    Ok((handle, done_rx))
}

/// Wall-clock time that never goes backwards: the wall clock at startup plus monotonic time.
struct Clock {
    start_wall_ms: Millis,
    start: Instant,
}

impl Clock {
    fn new() -> Clock {
        let start_wall_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Clock {
            start_wall_ms,
            start: Instant::now(),
        }
    }

    fn now(&self) -> Millis {
        self.start_wall_ms + self.start.elapsed().as_millis() as u64
    }
}

/// Something to answer once the batch is durable.
enum Deferred {
    Reply(oneshot::Sender<Answer>, ClientReply),
    Status(oneshot::Sender<Status>),
    Digest(oneshot::Sender<DigestReply>),
}

struct Driver {
    id: NodeId,
    core: Core,
    storage: Storage,
    transport: Transport,
    hub: Arc<EventHub>,
    clock: Clock,
    tick_every_ms: u64,
    next_tick: Millis,
    next_request: RequestId,
    /// Requests the core owes a reply: the session they act for and the waiting handler.
    pending: HashMap<RequestId, (Option<SessionId>, oneshot::Sender<Answer>)>,
    /// Messages the core addressed to this node itself, stepped in the next batch.
    loopback: Vec<PeerMsg>,
    snapshot_every: u64,
    log_retain_txns: usize,
    /// Transactions written to the log since the last snapshot on disk.
    logged_since_snapshot: u64,
    last_applied: Zxid,
    /// The clock's reading at the last batch, to notice a leap (see `core::MAX_CLOCK_STEP_MS`).
    last_batch_at: Millis,
}

enum Wake {
    Input(DriverInput),
    Tick,
    Stop,
}

impl Driver {
    fn open(
        config: DriverConfig,
        transport: Transport,
        hub: Arc<EventHub>,
    ) -> anyhow::Result<Driver> {
        // A member of an ensemble cuts damaged data and recovers it from the others (the core
        // does not vote meanwhile); a standalone server has no other copy and refuses.
        let standalone = config.core.voters.len() == 1;
        let mode = OpenMode {
            repair: !standalone,
            skip_corrupt_records: config.core.has_bug(Bug::CorruptLogServed),
        };
        let (mut storage, recovered) = Storage::open_with(&config.data_dir, mode).map_err(|e| {
            anyhow::anyhow!(
                "cannot use data directory {}: {e}",
                config.data_dir.display()
            )
        })?;
        if standalone && let Some(why) = &recovered.damage {
            anyhow::bail!(
                "cannot use data directory {}: it was damaged ({why}) and a standalone server has no other copy to recover from",
                config.data_dir.display()
            );
        }
        storage.set_fsync(config.fsync);
        let clock = Clock::new();
        let now = clock.now();
        let id = config.core.id;
        // The core ticks at least every tick_ms; ticking twice as often keeps its timers within
        // half a tick of the truth.
        let tick_every_ms = (config.core.tick_ms / 2).max(1);
        let core = Core::new(config.core, recovered, now);
        let last_applied = core.applied_zxid();
        Ok(Driver {
            id,
            core,
            storage,
            transport,
            hub,
            // Request ids must not repeat across restarts: a transaction forwarded before a
            // crash can still commit after it and carry its old request id back here. Starting
            // from the startup time scaled by 2^20 stays ahead of every earlier run unless
            // that run issued over a million requests per millisecond.
            next_request: clock.start_wall_ms << 20,
            clock,
            tick_every_ms,
            next_tick: now,
            pending: HashMap::new(),
            loopback: Vec::new(),
            snapshot_every: config.snapshot_every,
            log_retain_txns: config.log_retain_txns,
            logged_since_snapshot: 0,
            last_applied,
            last_batch_at: now,
        })
    }

    async fn run(
        mut self,
        mut rx: mpsc::Receiver<DriverInput>,
        stop: CancellationToken,
    ) -> anyhow::Result<()> {
        loop {
            let mut inputs = Vec::new();
            let now = self.clock.now();
            let due = self.tick_due();
            if now < due && self.loopback.is_empty() {
                let wait = Duration::from_millis(due - now);
                let wake = tokio::select! {
                    biased;
                    _ = stop.cancelled() => Wake::Stop,
                    input = rx.recv() => input.map_or(Wake::Stop, Wake::Input),
                    _ = tokio::time::sleep(wait) => Wake::Tick,
                };
                match wake {
                    Wake::Stop => return self.finish(),
                    Wake::Input(input) => inputs.push(input),
                    Wake::Tick => {}
                }
            } else if stop.is_cancelled() {
                return self.finish();
            }
            while inputs.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(input) => inputs.push(input),
                    Err(_) => break,
                }
            }
            self.batch(inputs)?;
            // The batch woke handlers and peer writers on this worker: let them run (and
            // send) before the next batch, instead of after it.
            tokio::task::yield_now().await;
        }
    }

    /// When the core next needs a tick: the regular schedule, or earlier when it asks.
    fn tick_due(&self) -> Millis {
        self.core
            .next_deadline()
            .map_or(self.next_tick, |at| at.min(self.next_tick))
    }

    /// The final sync of a graceful stop. Requests still pending are dropped: their handlers
    /// answer `timeout` (the outcome is unknown to them).
    fn finish(mut self) -> anyhow::Result<()> {
        self.storage
            .sync()
            .map_err(|e| anyhow::anyhow!("storage failed: {e}"))?;
        tracing::info!(
            id = self.id,
            applied_zxid = format_args!("{:#x}", self.last_applied),
            log_records = self.storage.log_records(),
            "driver stopped"
        );
        Ok(())
    }

    /// Steps the core with every input, makes the batch durable, then lets its effects out.
    fn batch(&mut self, inputs: Vec<DriverInput>) -> anyhow::Result<()> {
        let now = self.clock.now();
        // The loop runs a batch at least every half tick: a longer step is a clock that leapt
        // forward (or a process that was stopped), and the core is told so before it acts on
        // the new time.
        let step = now.saturating_sub(self.last_batch_at);
        if step > crate::core::MAX_CLOCK_STEP_MS {
            tracing::warn!(step_ms = step, "the clock leapt forward");
            self.core.clock_leapt(step);
        }
        self.last_batch_at = self.last_batch_at.max(now);
        let mut ready = Ready::default();
        let mut deferred = Vec::new();
        for msg in std::mem::take(&mut self.loopback) {
            let from = self.id;
            ready.append(self.core.step(now, Input::Peer { from, msg }));
        }
        for input in inputs {
            match input {
                DriverInput::Client { body, reply } => {
                    if self.pending.len() >= MAX_PENDING_REQUESTS {
                        let busy = KeeperError::new(
                            ErrorCode::NotReady,
                            format!("{MAX_PENDING_REQUESTS} requests are already in progress"),
                        );
                        deferred.push(Deferred::Reply(reply, (self.last_applied, Err(busy))));
                        continue;
                    }
                    let request = self.next_request;
                    self.next_request += 1;
                    self.pending.insert(request, (session_of(&body), reply));
                    ready.append(self.core.step(now, Input::Client { request, body }));
                }
                DriverInput::Peer { from, msg } => {
                    ready.append(self.core.step(now, Input::Peer { from, msg }));
                }
                DriverInput::PeerDisconnected { peer } => {
                    ready.append(self.core.step(now, Input::PeerDisconnected { peer }));
                }
                DriverInput::Status(tx) => deferred.push(Deferred::Status(tx)),
                DriverInput::Digest(tx) => deferred.push(Deferred::Digest(tx)),
            }
        }
        if now >= self.tick_due() {
            ready.append(self.core.step(now, Input::Tick));
            self.next_tick = now + self.tick_every_ms;
            // Handlers that gave up (client gone, outer bound hit) leave closed oneshots.
            self.pending.retain(|_, (_, tx)| !tx.is_closed());
        }

        // A leader's proposals leave before the fsync, so that the followers' fsyncs overlap
        // the leader's own, and so do commits and forwarded writes, which need no fsync of this
        // batch, and, in an ensemble, what clients are told, which rests on a quorum's disks
        // already (`Ready::take_early` keeps each link and each session in order).
        for output in ready.take_early(&self.core) {
            self.carry_out(output);
        }

        // The durability rule: every Persist of the batch is on disk before any of its other
        // effects leaves the process. One fsync for the whole batch is the group commit.
        for p in &ready.persist {
            self.storage
                .persist(p)
                .map_err(|e| anyhow::anyhow!("storage failed: {e}"))?;
        }
        if !ready.persist.is_empty() {
            self.storage
                .sync()
                .map_err(|e| anyhow::anyhow!("storage failed (fsync): {e}"))?;
        }
        Persist::count_logged(&mut self.logged_since_snapshot, &ready.persist);

        // In the core's order: a watch event reaches the session's queue before the reply
        // that follows it.
        for output in ready.after_persist {
            self.carry_out(output);
        }
        for d in deferred {
            match d {
                Deferred::Reply(tx, reply) => {
                    let _ = tx.send(Answer { reply, flush: None });
                }
                Deferred::Status(tx) => {
                    let _ = tx.send(self.core.status());
                }
                Deferred::Digest(tx) => {
                    let _ = tx.send(self.core.digest());
                }
            }
        }
        self.maybe_snapshot()
    }

    /// Lets one of the core's outputs out: to a peer (or to this node's next batch), to the
    /// handler waiting for a reply, or to a session's event stream.
    fn carry_out(&mut self, output: Output) {
        match output {
            Output::Send { to, msg } => {
                if to == self.id {
                    self.loopback.push(msg);
                } else {
                    self.transport.send(to, msg);
                }
            }
            Output::Reply {
                request,
                zxid,
                result,
            } => match self.pending.remove(&request) {
                Some((session, tx)) => {
                    let flush = session.and_then(|s| self.hub.flush_mark(s));
                    let _ = tx.send(Answer {
                        reply: (zxid, result),
                        flush,
                    });
                }
                None => tracing::debug!(request, "reply for a request nobody waits for"),
            },
            Output::Event { session, event } => self.hub.push_watch(session, event),
            Output::SessionEnded {
                session,
                expired,
                zxid,
            } => self.hub.end_session(session, expired, zxid),
            Output::WatchesLost { session } => self.hub.watches_lost(session),
        }
    }

    /// Snapshot policy: after every `snapshot_every` transactions written to the log, save the
    /// applied tree and let the core forget the log it covers. Counted as ZooKeeper's snapCount
    /// counts, by what the log grew: a SNAP sync brings its own snapshot and restarts the
    /// count (`Persist::count_logged`), so the node does not write the same tree again at once.
    fn maybe_snapshot(&mut self) -> anyhow::Result<()> {
        self.last_applied = self.core.applied_zxid();
        if self.logged_since_snapshot < self.snapshot_every {
            return Ok(());
        }
        let snapshot = self.core.snapshot();
        let zxid = snapshot.zxid;
        self.storage
            .save_snapshot(&snapshot)
            .map_err(|e| anyhow::anyhow!("storage failed (snapshot): {e}"))?;
        self.core.compact(zxid, self.log_retain_txns);
        self.logged_since_snapshot = 0;
        tracing::info!(
            id = self.id,
            zxid = format_args!("{zxid:#x}"),
            znodes = snapshot.nodes.len(),
            log_records = self.storage.log_records(),
            "snapshot saved"
        );
        Ok(())
    }
}
