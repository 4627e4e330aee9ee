//! ZooKeeper's leader-election and lock recipes on a [`Session`].
//!
//! Both are the same queue: each contender creates an `ephemeral_sequential` node under a parent;
//! the lowest sequence number is first (the leader, the lock holder). Every other contender
//! watches only its predecessor (`exists` with a watch), so a departure wakes one contender, not
//! the whole herd; when the watch fires it re-reads the children, because the predecessor may
//! have left while an earlier node is still there.
//!
//! The sequence number is a fencing token: it only grows for a given parent, so a write fenced
//! with it (or a multi that first `check`s the contender's own node) cannot come from a deposed
//! leader after a newer one took over.
//!
//! Contract: at most one contender per session and parent, because a contender that lost the
//! answer to its create finds its node again by the session that owns it.

use std::time::Duration;

use keeper_wire::{ANY_VERSION, CreateMode, ErrorCode, KeeperError};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::session::{Event, Session};

/// Name prefix of election nodes: `PARENT/leader_0000000007`.
pub const ELECTION_PREFIX: &str = "leader_";
/// Name prefix of lock nodes: `PARENT/lock_0000000007`.
pub const LOCK_PREFIX: &str = "lock_";
/// Digits of the sequence suffix keeper appends to sequential nodes.
const SEQUENCE_DIGITS: usize = 10;
/// A waiting contender re-reads the queue at least this often, so a watch event lost with an
/// event stream (or a full queue) delays it by at most this much.
pub const RECHECK_INTERVAL_MS: u64 = 2_000;
/// Pause before re-reading the queue after a read failed.
const READ_RETRY_PAUSE_MS: u64 = 100;

/// The sequence number of a sequential node's name, if it has `prefix` and a 10-digit suffix.
pub fn sequence_of(name: &str, prefix: &str) -> Option<u64> {
    let digits = name.strip_prefix(prefix)?;
    if digits.len() != SEQUENCE_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// One place in a queue of contenders under `parent`.
struct Contender {
    session: Session,
    parent: String,
    prefix: &'static str,
    /// Full path of our node.
    node: String,
    sequence: u64,
    events: mpsc::Receiver<Event>,
}

enum Position {
    First,
    /// Full path of the contender just before us.
    Behind(String),
}

fn child_path(parent: &str, name: &str) -> String {
    if parent == "/" {
        format!("/{name}")
    } else {
        format!("{parent}/{name}")
    }
}

fn gone(node: &str) -> Error {
    Error::Keeper(KeeperError::new(
        ErrorCode::NoNode,
        format!("contender node {node} is gone (session expired or node deleted)"),
    ))
}

impl Contender {
    async fn join(
        session: &Session,
        parent: &str,
        prefix: &'static str,
        data: &str,
    ) -> Result<Contender> {
        let parent = parent.trim_end_matches('/');
        let parent = if parent.is_empty() { "/" } else { parent };
        // Convenience: the parent is made if missing. Any failure here shows up as a clear
        // `no_node` from the create below, so it is not reported twice.
        if session.exists(parent, false).await.ok().flatten().is_none() {
            let _ = session.create(parent, "", CreateMode::Persistent).await;
        }
        // Subscribe before creating so no watch event can slip between the two.
        let events = session.subscribe_lossy(&child_path(parent, prefix));
        let base = child_path(parent, prefix);
        // A node of ours left by an earlier join whose create ended indeterminate is taken over
        // rather than duplicated: a second node would queue this session behind itself.
        let node = match find_own(session, parent, prefix).await {
            Some(node) => node,
            None => match session
                .create(&base, data, CreateMode::EphemeralSequential)
                .await
            {
                Ok(node) => node,
                Err(e) if e.is_indeterminate() => match find_own(session, parent, prefix).await {
                    Some(node) => node,
                    None => return Err(e),
                },
                Err(e) => return Err(e),
            },
        };
        let name = node.rsplit('/').next().unwrap_or_default();
        let sequence = sequence_of(name, prefix).ok_or_else(|| Error::Protocol {
            url: session.current_server(),
            status: 200,
            message: format!("created {node}, which has no sequence suffix"),
        })?;
        Ok(Contender {
            session: session.clone(),
            parent: parent.to_string(),
            prefix,
            node,
            sequence,
            events,
        })
    }

    async fn position(&self) -> Result<Position> {
        let children = self.session.get_children(&self.parent, false).await?;
        let mut queue: Vec<(u64, &String)> = children
            .iter()
            .filter_map(|name| Some((sequence_of(name, self.prefix)?, name)))
            .collect();
        queue.sort();
        let mine = queue
            .iter()
            .position(|(sequence, _)| *sequence == self.sequence)
            .ok_or_else(|| gone(&self.node))?;
        Ok(match mine {
            0 => Position::First,
            _ => Position::Behind(child_path(&self.parent, queue[mine - 1].1)),
        })
    }

    /// Waits until first in the queue; `Ok(false)` if `timeout` passed first.
    async fn wait_until_first(&mut self, timeout: Duration) -> Result<bool> {
        let deadline = Instant::now() + timeout;
        loop {
            // Wake-ups queued before this check are answered by it.
            while self.events.try_recv().is_ok() {}
            match self.check_once().await {
                Ok(None) => return Ok(true),
                Ok(Some(predecessor)) => {
                    tracing::debug!(node = %self.node, %predecessor, "waiting for predecessor")
                }
                Err(e) if retryable(&e) => {
                    tracing::debug!(node = %self.node, error = %e, "queue read failed; retrying");
                    let pause = Duration::from_millis(READ_RETRY_PAUSE_MS);
                    tokio::time::sleep_until(deadline.min(Instant::now() + pause)).await;
                    if Instant::now() >= deadline {
                        return Ok(false);
                    }
                    continue;
                }
                Err(e) => return Err(e),
            }
            let recheck = Instant::now() + Duration::from_millis(RECHECK_INTERVAL_MS);
            tokio::select! {
                event = self.events.recv() => match event {
                    Some(Event::Watch(_)) | Some(Event::Disconnected) => {}
                    Some(Event::Expired) => return Err(session_over(true)),
                    Some(Event::Closed) | None => return Err(session_over(false)),
                },
                _ = tokio::time::sleep_until(deadline.min(recheck)) => {}
            }
            if Instant::now() >= deadline {
                // One last look: the predecessor may have left just now.
                return Ok(matches!(self.position().await, Ok(Position::First)));
            }
        }
    }

    /// `None` when first; otherwise the predecessor, now watched.
    async fn check_once(&self) -> Result<Option<String>> {
        loop {
            match self.position().await? {
                Position::First => return Ok(None),
                Position::Behind(predecessor) => {
                    if self.session.exists(&predecessor, true).await?.is_some() {
                        return Ok(Some(predecessor));
                    }
                    // It left between the two reads: look again at once. Each pass finds the
                    // queue shorter, so this ends.
                }
            }
        }
    }

    async fn leave(&self) -> Result<()> {
        match self.session.delete(&self.node, ANY_VERSION).await {
            Err(Error::Keeper(e)) if e.error == ErrorCode::NoNode => Ok(()),
            other => other,
        }
    }
}

/// Failures after which reading the queue again may succeed.
fn retryable(e: &Error) -> bool {
    e.is_indeterminate() || e.code() == ErrorCode::NotReady
}

fn session_over(expired: bool) -> Error {
    if expired {
        Error::Keeper(KeeperError::new(
            ErrorCode::SessionExpired,
            "the session expired while waiting",
        ))
    } else {
        Error::Closed
    }
}

/// After an indeterminate create: our node, if the create took effect (found by owner).
async fn find_own(session: &Session, parent: &str, prefix: &str) -> Option<String> {
    let children = session.get_children(parent, false).await.ok()?;
    for name in children.iter().filter(|n| sequence_of(n, prefix).is_some()) {
        let path = child_path(parent, name);
        if let Ok(Some(stat)) = session.exists(&path, false).await
            && stat.ephemeral_owner == session.id()
        {
            return Some(path);
        }
    }
    None
}

/// A contender in a leader election under a parent node.
pub struct LeaderElection {
    contender: Contender,
}

impl LeaderElection {
    /// Enters the election: creates `PARENT/leader_NNNNNNNNNN` (ephemeral, sequential) holding
    /// `data`; the parent is created if missing. Does not wait.
    pub async fn join(session: &Session, parent: &str, data: &str) -> Result<LeaderElection> {
        Ok(LeaderElection {
            contender: Contender::join(session, parent, ELECTION_PREFIX, data).await?,
        })
    }

    /// Full path of this contender's node; a fenced write can `check` it in a multi.
    pub fn node_path(&self) -> &str {
        &self.contender.node
    }

    /// The node's sequence number: larger for every later leader of this parent.
    pub fn fencing_token(&self) -> u64 {
        self.contender.sequence
    }

    /// Whether this contender leads now (one read of the queue).
    pub async fn is_leader(&self) -> Result<bool> {
        Ok(matches!(self.contender.position().await?, Position::First))
    }

    /// Waits until this contender leads: `Ok(true)`, or `Ok(false)` when `timeout` passed.
    /// An error means the contender is out (its node or session is gone) or the ensemble could
    /// not be read.
    pub async fn wait_until_leader(&mut self, timeout: Duration) -> Result<bool> {
        self.contender.wait_until_first(timeout).await
    }

    /// Leaves the election by deleting the node (a session close or expiry does the same).
    pub async fn resign(self) -> Result<()> {
        self.contender.leave().await
    }
}

/// A mutual-exclusion lock under a parent node.
pub struct Lock {
    session: Session,
    parent: String,
    contender: Option<Contender>,
    held: bool,
}

impl Lock {
    pub fn new(session: &Session, parent: &str) -> Lock {
        Lock {
            session: session.clone(),
            parent: parent.to_string(),
            contender: None,
            held: false,
        }
    }

    /// Takes the lock: `Ok(true)` when held, `Ok(false)` when `timeout` passed first (the
    /// queue node is then removed again). Acquiring a held lock returns `Ok(true)` at once.
    pub async fn acquire(&mut self, timeout: Duration) -> Result<bool> {
        if self.held {
            return Ok(true);
        }
        let deadline = Instant::now() + timeout;
        if self.contender.is_none() {
            self.contender =
                Some(Contender::join(&self.session, &self.parent, LOCK_PREFIX, "").await?);
        }
        let Some(contender) = self.contender.as_mut() else {
            return Err(Error::Closed);
        };
        let remaining = deadline.saturating_duration_since(Instant::now());
        match contender.wait_until_first(remaining).await {
            Ok(true) => {
                self.held = true;
                Ok(true)
            }
            Ok(false) => {
                // Give up our place, or we would get the lock later without knowing.
                let result = contender.leave().await;
                if result.is_ok() {
                    self.contender = None;
                }
                result.map(|()| false)
            }
            Err(e) => {
                if matches!(e.code(), ErrorCode::NoNode | ErrorCode::SessionExpired)
                    || matches!(e, Error::Closed)
                {
                    self.contender = None;
                }
                Err(e)
            }
        }
    }

    /// Whether this handle believes it holds the lock (it stops being true if the session
    /// expires; fence writes with [`Lock::fencing_token`]).
    pub fn is_held(&self) -> bool {
        self.held
    }

    /// The held lock's sequence number, a fencing token.
    pub fn fencing_token(&self) -> Option<u64> {
        self.contender
            .as_ref()
            .filter(|_| self.held)
            .map(|c| c.sequence)
    }

    /// Full path of this handle's queue node, if it has one.
    pub fn node_path(&self) -> Option<&str> {
        self.contender.as_ref().map(|c| c.node.as_str())
    }

    /// Releases the lock (deletes the node). Releasing a lock not held is a no-op.
    pub async fn release(&mut self) -> Result<()> {
        if let Some(contender) = &self.contender {
            contender.leave().await?;
        }
        self.contender = None;
        self.held = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_parse_only_from_well_formed_names() {
        assert_eq!(sequence_of("leader_0000000012", ELECTION_PREFIX), Some(12));
        assert_eq!(sequence_of("leader_12", ELECTION_PREFIX), None);
        assert_eq!(sequence_of("lock_0000000001", ELECTION_PREFIX), None);
        assert_eq!(sequence_of("leader_00000000x1", ELECTION_PREFIX), None);
    }

    #[test]
    fn child_paths_join_under_root_and_below() {
        assert_eq!(child_path("/", "a"), "/a");
        assert_eq!(child_path("/e", "a"), "/e/a");
    }
}
