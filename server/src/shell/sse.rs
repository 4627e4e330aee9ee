//! Watch events on their way to clients: one bounded queue per session on this node, drained
//! by at most one server-sent-event stream (`GET /v1/sessions/{id}/events`).
//!
//! Events are queued whether or not a stream is attached, so a client that (re)connects its
//! stream late still gets what fired in between. A new stream for a session replaces the old
//! one, which ends. The queue of an ended session is kept a little while so a late stream can
//! still read the final `session` event.

use crate::api::{SessionEvent, SessionId, WatchEvent, Zxid};
use axum::response::sse::Event;
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Events queued for one session at most. A client that does not drain its stream loses the
/// oldest ones and is told so with an `overflow` event (its watches must be set again).
pub const MAX_SESSION_EVENTS: usize = 10_000;
/// How long the queue of an ended session waits for a stream to read its end.
pub const ENDED_SESSION_RETENTION_MS: u64 = 60_000;
/// Interval of SSE keep-alive comments: a client notices a dead node after a few of them.
pub const KEEP_ALIVE_MS: u64 = 1_000;

#[derive(Clone, Debug)]
enum Item {
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
            tracing::warn!(session, dropped, "event stream not drained; dropping its events");
            queue.items.clear();
            queue.items.push_back(Item::Overflow { dropped });
        }
        if matches!(item, Item::Ended(_)) {
            queue.ended_at = Some(Instant::now());
        }
        queue.items.push_back(item);
        if let Some((_, notify)) = &queue.stream {
            notify.notify_one();
        }
    }

    /// The driver: a watch fired for `session`.
    pub fn push_watch(&self, session: SessionId, event: WatchEvent) {
        self.push(session, Item::Watch(event));
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
        let generation = self
            .generations
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let notify = Arc::new(Notify::new());
        {
            let mut queues = self.lock();
            let queue = queues.entry(session).or_default();
            if let Some((_, old)) = queue.stream.replace((generation, notify.clone())) {
                // Wakes the old stream, which finds itself detached and ends.
                old.notify_one();
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
            Some((Ok(to_event(&item)), st))
        })
    }

    fn take(&self, session: SessionId, generation: u64) -> Take {
        let mut queues = self.lock();
        match queues.get_mut(&session) {
            Some(q) if q.stream.as_ref().is_some_and(|(g, _)| *g == generation) => {
                Take::Items(q.items.drain(..).collect())
            }
            _ => Take::Detached,
        }
    }

    /// The stream delivered the session's end: nothing more can come for it.
    fn forget(&self, session: SessionId, generation: u64) {
        let mut queues = self.lock();
        if queues
            .get(&session)
            .is_some_and(|q| q.stream.as_ref().is_some_and(|(g, _)| *g == generation))
        {
            queues.remove(&session);
        }
    }

    fn detach(&self, session: SessionId, generation: u64) {
        let mut queues = self.lock();
        if let Some(q) = queues.get_mut(&session)
            && q.stream.as_ref().is_some_and(|(g, _)| *g == generation)
        {
            q.stream = None;
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
        assert!(second.next().await.is_none(), "the stream ends after the session event");
        assert!(!hub.has_ended(7), "the queue is forgotten once its end was delivered");
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
