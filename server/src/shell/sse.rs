//! Watch events on their way to clients: one bounded queue per session on this node, drained
//! by at most one server-sent-event stream (`GET /v1/sessions/{id}/events`).
//!
//! Events are queued whether or not a stream is attached, so a client that (re)connects its
//! stream late still gets what fired in between. A new stream for a session replaces the old
//! one, which ends. The queue of an ended session is kept a little while so a late stream can
//! still read the final `session` event.
//!
//! A reply to a session's request waits (briefly, see [`EVENT_FLUSH_WAIT_MS`]) until the
//! session's stream has taken every event queued before the reply was released, so a client
//! is sent a watch event before it can read the data that fired it (ZooKeeper gets this from
//! its single connection; here events and replies travel on different ones).

use crate::api::{SessionEvent, SessionId, WatchEvent, Zxid};
use axum::response::sse::Event;
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Events queued for one session at most. A client that does not drain its stream loses what
/// was queued and is told so with an `overflow` event (its watches must be set again).
pub const MAX_SESSION_EVENTS: usize = 10_000;
/// How long the queue of an ended session waits for a stream to read its end.
pub const ENDED_SESSION_RETENTION_MS: u64 = 60_000;
/// Longest a reply waits for the session's attached stream to take the events queued before
/// it. A stream that cannot keep up only delays its own session's replies, and only this long.
pub const EVENT_FLUSH_WAIT_MS: u64 = 1_000;
/// Interval of SSE keep-alive comments: a client notices a dead node after a few of them.
pub const KEEP_ALIVE_MS: u64 = 1_000;

/// What a session's queue holds, in order.
#[derive(Clone, Debug)]
pub enum Item {
    Watch(WatchEvent),
    Overflow { dropped: u64 },
    Ended(SessionEvent),
}

#[derive(Serialize)]
struct OverflowEvent {
    dropped: u64,
}

#[derive(Default)]
struct Queue {
    items: VecDeque<Item>,
    ended_at: Option<Instant>,
    /// The attached stream: its generation and how to wake it.
    stream: Option<(u64, Arc<Notify>)>,
    /// Items ever queued, and items taken by a stream (or dropped): `pushed - taken` are
    /// still waiting.
    pushed: u64,
    taken: u64,
    /// Woken whenever `taken` advances or the stream goes: replies waiting for a flush.
    flushed: Arc<Notify>,
}

#[derive(Default)]
pub struct EventHub {
    queues: Mutex<HashMap<SessionId, Queue>>,
    generations: std::sync::atomic::AtomicU64,
}

/// What a stream finds when it looks at its queue.
enum Take {
    Items(Vec<Item>),
    /// Another stream took over, or the queue is gone.
    Detached,
}

impl EventHub {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SessionId, Queue>> {
        self.queues.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, session: SessionId, item: Item) {
        let mut queues = self.lock();
        let queue = queues.entry(session).or_default();
        if queue.ended_at.is_some() {
            return;
        }
        if matches!(item, Item::Watch(_)) && queue.items.len() >= MAX_SESSION_EVENTS {
            let dropped = queue
                .items
                .iter()
                .map(|i| match i {
                    Item::Overflow { dropped } => *dropped,
                    _ => 1,
                })
                .sum();
            tracing::warn!(
                session,
                dropped,
                "event stream not drained; dropping its events"
            );
            queue.taken += queue.items.len() as u64;
            queue.items.clear();
            queue.items.push_back(Item::Overflow { dropped });
            queue.pushed += 1;
        }
        if matches!(item, Item::Ended(_)) {
            queue.ended_at = Some(Instant::now());
        }
        queue.items.push_back(item);
        queue.pushed += 1;
        if let Some((_, notify)) = &queue.stream {
            notify.notify_one();
        }
    }

    /// The driver: a watch fired for `session`.
    pub fn push_watch(&self, session: SessionId, event: WatchEvent) {
        self.push(session, Item::Watch(event));
    }

    /// The driver: `session`'s watches on this node are gone unfired (a SNAP sync): its
    /// stream says `overflow`, as when its queue overflowed, so the client sets them again.
    pub fn watches_lost(&self, session: SessionId) {
        self.push(session, Item::Overflow { dropped: 0 });
    }

    /// The driver: `session` ended; its stream sends the `session` event and closes.
    pub fn end_session(&self, session: SessionId, expired: bool, zxid: Zxid) {
        let state = if expired { "expired" } else { "closed" };
        self.push(
            session,
            Item::Ended(SessionEvent {
                state: state.to_string(),
                zxid,
            }),
        );
        let retention = Duration::from_millis(ENDED_SESSION_RETENTION_MS);
        self.lock().retain(|_, q| match q.ended_at {
            Some(at) => at.elapsed() < retention,
            None => true,
        });
    }

    /// The driver, releasing a reply for `session`: how many of its events the attached stream
    /// must take before the reply may leave (`None`: nothing to wait for).
    pub fn flush_mark(&self, session: SessionId) -> Option<u64> {
        let queues = self.lock();
        let q = queues.get(&session)?;
        (q.stream.is_some() && q.taken < q.pushed).then_some(q.pushed)
    }

    /// Waits until `session`'s stream has taken `mark` events, it went away, or
    /// `EVENT_FLUSH_WAIT_MS` passed.
    pub async fn wait_flushed(&self, session: SessionId, mark: u64) {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(EVENT_FLUSH_WAIT_MS);
        loop {
            let flushed = {
                let queues = self.lock();
                match queues.get(&session) {
                    Some(q) if q.stream.is_some() && q.taken < mark => q.flushed.clone(),
                    _ => return,
                }
            };
            let notified = flushed.notified();
            tokio::pin!(notified);
            // Registered before the check below, so a wake-up in between is not missed.
            notified.as_mut().enable();
            {
                let queues = self.lock();
                match queues.get(&session) {
                    Some(q) if q.stream.is_some() && q.taken < mark => {}
                    _ => return,
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                tracing::debug!(session, "event stream slow to flush; replying anyway");
                return;
            }
        }
    }

    /// True when this node saw `session` end and still holds its final event.
    pub fn has_ended(&self, session: SessionId) -> bool {
        self.lock()
            .get(&session)
            .is_some_and(|q| q.ended_at.is_some())
    }

    /// Attaches a new stream to `session`'s queue, replacing any previous one.
    pub fn attach(
        self: &Arc<Self>,
        session: SessionId,
        stop: CancellationToken,
    ) -> impl futures::Stream<Item = Result<Event, std::convert::Infallible>> + use<> {
        use futures::StreamExt;
        self.attach_items(session, stop)
            .map(|item| Ok(to_event(&item)))
    }

    /// As `attach`, for a connection that encodes the items itself (the ZooKeeper port). An
    /// item counts as taken when the stream yields it, so the consumer must send it before it
    /// sends any reply it receives afterwards.
    pub fn attach_items(
        self: &Arc<Self>,
        session: SessionId,
        stop: CancellationToken,
    ) -> impl futures::Stream<Item = Item> + use<> {
        let generation = self
            .generations
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let notify = Arc::new(Notify::new());
        {
            let mut queues = self.lock();
            let queue = queues.entry(session).or_default();
            if let Some((_, old)) = queue.stream.replace((generation, notify.clone())) {
                // Wakes the old stream, which finds itself detached and ends; what it had
                // taken but not handed over is lost with it.
                old.notify_one();
                queue.taken = queue.pushed - queue.items.len() as u64;
                queue.flushed.notify_waiters();
            }
        }
        let state = StreamState {
            hub: self.clone(),
            session,
            generation,
            notify,
            buf: VecDeque::new(),
            finished: false,
            stop,
        };
        futures::stream::unfold(state, |mut st| async move {
            let item = st.next().await?;
            Some((item, st))
        })
    }

    fn take(&self, session: SessionId, generation: u64) -> Take {
        let mut queues = self.lock();
        match queues.get_mut(&session) {
            Some(q) if q.stream.as_ref().is_some_and(|(g, _)| *g == generation) => {
                // Counted as taken once the stream hands them to the connection (`yielded`).
                Take::Items(q.items.drain(..).collect())
            }
            _ => Take::Detached,
        }
    }

    /// The stream of `generation` is about to hand one event to its connection. False if it
    /// was replaced meanwhile: then it must end without sending it.
    fn yielded(&self, session: SessionId, generation: u64) -> bool {
        let mut queues = self.lock();
        match queues.get_mut(&session) {
            Some(q) if q.stream.as_ref().is_some_and(|(g, _)| *g == generation) => {
                q.taken += 1;
                q.flushed.notify_waiters();
                true
            }
            _ => false,
        }
    }

    /// The stream delivered the session's end: nothing more can come for it.
    fn forget(&self, session: SessionId, generation: u64) {
        let mut queues = self.lock();
        if queues
            .get(&session)
            .is_some_and(|q| q.stream.as_ref().is_some_and(|(g, _)| *g == generation))
            && let Some(q) = queues.remove(&session)
        {
            q.flushed.notify_waiters();
        }
    }

    fn detach(&self, session: SessionId, generation: u64) {
        let mut queues = self.lock();
        if let Some(q) = queues.get_mut(&session)
            && q.stream.as_ref().is_some_and(|(g, _)| *g == generation)
        {
            q.stream = None;
            // Items the stream took but never handed over are lost with its connection.
            q.taken = q.pushed - q.items.len() as u64;
            q.flushed.notify_waiters();
        }
    }
}

struct StreamState {
    hub: Arc<EventHub>,
    session: SessionId,
    generation: u64,
    notify: Arc<Notify>,
    buf: VecDeque<Item>,
    finished: bool,
    stop: CancellationToken,
}

impl StreamState {
    async fn next(&mut self) -> Option<Item> {
        loop {
            if self.finished {
                return None;
            }
            if let Some(item) = self.buf.pop_front() {
                if !self.hub.yielded(self.session, self.generation) {
                    return None;
                }
                if matches!(item, Item::Ended(_)) {
                    self.finished = true;
                    self.hub.forget(self.session, self.generation);
                }
                return Some(item);
            }
            match self.hub.take(self.session, self.generation) {
                Take::Items(items) if !items.is_empty() => {
                    self.buf.extend(items);
                    continue;
                }
                Take::Items(_) => {}
                Take::Detached => return None,
            }
            // `notify_one` stores a permit when nobody waits, so a push between `take` and
            // here is not missed.
            tokio::select! {
                _ = self.stop.cancelled() => return None,
                _ = self.notify.notified() => {}
            }
        }
    }
}

impl Drop for StreamState {
    fn drop(&mut self) {
        if !self.finished {
            self.hub.detach(self.session, self.generation);
        }
    }
}

fn to_event(item: &Item) -> Event {
    let (name, json) = match item {
        Item::Watch(e) => ("watch", serde_json::to_string(e)),
        Item::Overflow { dropped } => (
            "overflow",
            serde_json::to_string(&OverflowEvent { dropped: *dropped }),
        ),
        Item::Ended(e) => ("session", serde_json::to_string(e)),
    };
    // These types always serialise; an empty object is a safe fallback all the same.
    Event::default()
        .event(name)
        .data(json.unwrap_or_else(|_| "{}".to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::EventKind;
    use futures::StreamExt;

    fn watch(zxid: Zxid) -> WatchEvent {
        WatchEvent {
            kind: EventKind::DataChanged,
            path: "/a".to_string(),
            zxid,
        }
    }

    #[tokio::test]
    async fn queued_events_are_flushed_on_attach_and_a_new_stream_replaces_the_old() {
        let hub = Arc::new(EventHub::default());
        hub.push_watch(7, watch(1));
        hub.push_watch(7, watch(2));
        let stop = CancellationToken::new();
        let mut first = Box::pin(hub.attach(7, stop.clone()));
        assert!(first.next().await.is_some());
        assert!(first.next().await.is_some());
        let mut second = Box::pin(hub.attach(7, stop.clone()));
        assert!(first.next().await.is_none(), "the replaced stream ends");
        hub.push_watch(7, watch(3));
        hub.end_session(7, true, 4);
        assert!(second.next().await.is_some());
        assert!(second.next().await.is_some());
        assert!(
            second.next().await.is_none(),
            "the stream ends after the session event"
        );
        assert!(
            !hub.has_ended(7),
            "the queue is forgotten once its end was delivered"
        );
    }

    #[tokio::test]
    async fn a_reply_waits_until_the_stream_took_the_events_before_it() {
        let hub = Arc::new(EventHub::default());
        let stop = CancellationToken::new();
        assert_eq!(hub.flush_mark(3), None, "no queue, nothing to wait for");
        let mut stream = Box::pin(hub.attach(3, stop.clone()));
        assert_eq!(
            hub.flush_mark(3),
            None,
            "an empty queue, nothing to wait for"
        );
        hub.push_watch(3, watch(1));
        hub.push_watch(3, watch(2));
        let mark = hub.flush_mark(3).expect("two events not yet taken");
        let waiter = {
            let hub = hub.clone();
            tokio::spawn(async move { hub.wait_flushed(3, mark).await })
        };
        assert!(stream.next().await.is_some());
        assert!(stream.next().await.is_some());
        waiter.await.unwrap();
        assert_eq!(hub.flush_mark(3), None);
        drop(stream);
        hub.push_watch(3, watch(4));
        assert_eq!(
            hub.flush_mark(3),
            None,
            "no stream attached: the reply goes at once"
        );
    }

    #[tokio::test]
    async fn an_undrained_queue_stays_bounded() {
        let hub = Arc::new(EventHub::default());
        for zxid in 0..(MAX_SESSION_EVENTS as u64 * 2 + 5) {
            hub.push_watch(1, watch(zxid));
        }
        let len = hub.lock().get(&1).map(|q| q.items.len()).unwrap_or(0);
        assert!(len <= MAX_SESSION_EVENTS + 1);
    }
}
