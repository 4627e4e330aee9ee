//! The history recorder: gives every event its index and time and streams it to
//! `history.jsonl` (or, in a simulated run, keeps it in memory).
//!
//! Index and time are assigned under one lock, so the file is ordered by both, as the checker
//! requires. The file is flushed and synced every [`SYNC_INTERVAL_MS`] by a background task,
//! outside the lock, so workers never wait for the disk.

use crate::store::{JsonlWriter, SYNC_INTERVAL_MS};
use checker::history::{Event, EventType};
use checker::invariants::StatsTally;
use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The run's clock: monotonic nanoseconds since the run started. Every file of a run
/// (history, nemesis, status) uses this one origin. It is tokio's clock, which is the real
/// monotonic clock except in a simulated run, where the runtime's paused clock is the
/// simulation's time (`crate::sim_run`).
#[derive(Clone, Copy, Debug)]
pub struct RunClock {
    start: Instant,
}

impl RunClock {
    pub fn start_now() -> RunClock {
        RunClock {
            start: Instant::now(),
        }
    }
    pub fn start(&self) -> std::time::Instant {
        self.start.into_std()
    }
    pub fn now_ns(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
    pub fn ns_at(&self, at: std::time::Instant) -> u64 {
        u64::try_from(
            at.saturating_duration_since(self.start.into_std())
                .as_nanos(),
        )
        .unwrap_or(u64::MAX)
    }
}

/// Counts for the progress bar.
#[derive(Default, Debug)]
pub struct Counters {
    pub invoked: AtomicU64,
    pub ok: AtomicU64,
    pub fail: AtomicU64,
    pub info: AtomicU64,
    pub max_process: AtomicU64,
}

impl Counters {
    /// (invoked, ok, fail, info).
    pub fn snapshot(&self) -> (u64, u64, u64, u64) {
        (
            self.invoked.load(Ordering::Relaxed),
            self.ok.load(Ordering::Relaxed),
            self.fail.load(Ordering::Relaxed),
            self.info.load(Ordering::Relaxed),
        )
    }
}

/// Where the recorded events go.
enum Sink {
    File(JsonlWriter),
    /// A simulated run's history, checked in memory and written only if it fails.
    Memory(Vec<Event>),
}

struct State {
    sink: Sink,
    next_index: u64,
    /// The first write error; the run fails with it at the end.
    error: Option<String>,
}

/// Shared by every worker.
#[derive(Clone)]
pub struct Recorder {
    clock: RunClock,
    state: Arc<Mutex<State>>,
    file: Option<Arc<File>>,
    counters: Arc<Counters>,
}

impl Recorder {
    pub fn create(path: &Path, clock: RunClock) -> anyhow::Result<Recorder> {
        let writer = JsonlWriter::create(path)?;
        let file = Arc::new(writer.file_handle()?);
        Ok(Recorder {
            clock,
            state: Arc::new(Mutex::new(State {
                sink: Sink::File(writer),
                next_index: 0,
                error: None,
            })),
            file: Some(file),
            counters: Arc::new(Counters::default()),
        })
    }

    /// A recorder that keeps the history in memory ([`Recorder::take_events`]).
    pub fn in_memory(clock: RunClock) -> Recorder {
        Recorder {
            clock,
            state: Arc::new(Mutex::new(State {
                sink: Sink::Memory(Vec::new()),
                next_index: 0,
                error: None,
            })),
            file: None,
            counters: Arc::new(Counters::default()),
        }
    }

    /// The `stats` checker's tally of the operations completed so far (every issued kind but
    /// `recovery_ops`, `WorkloadKind::recovery_ops`, as the checker counts): in-memory
    /// recorders only (a file's counts nothing).
    pub fn stats(&self, recovery_ops: &[&str]) -> StatsTally {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut tally = StatsTally::default();
        if let Sink::Memory(events) = &state.sink {
            let completed = events.iter().filter(|e| {
                e.kind != EventType::Invoke
                    && !e.is_observation()
                    && !recovery_ops.contains(&e.f.as_str())
            });
            for e in completed {
                tally.add(&e.f, e.kind);
            }
        }
        tally
    }

    /// The events an in-memory recorder holds, taken out (none for a file's).
    pub fn take_events(&self) -> Vec<Event> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match &mut state.sink {
            Sink::Memory(events) => std::mem::take(events),
            Sink::File(_) => Vec::new(),
        }
    }

    pub fn clock(&self) -> RunClock {
        self.clock
    }

    pub fn counters(&self) -> Arc<Counters> {
        self.counters.clone()
    }

    /// A process number no event recorded so far has used.
    pub fn fresh_process(&self) -> u64 {
        self.counters.max_process.load(Ordering::Relaxed) + 1
    }

    /// Stamps `event` with the next index and the current time, appends it, and returns it.
    pub fn record(&self, mut event: Event) -> Event {
        let counter = match event.kind {
            EventType::Invoke => &self.counters.invoked,
            EventType::Ok => &self.counters.ok,
            EventType::Fail => &self.counters.fail,
            EventType::Info => &self.counters.info,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.counters
            .max_process
            .fetch_max(event.process, Ordering::Relaxed);
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        event.index = state.next_index;
        event.time = self.clock.now_ns();
        state.next_index += 1;
        let appended = match &mut state.sink {
            Sink::File(writer) => writer.append(&event),
            Sink::Memory(events) => {
                events.push(event.clone());
                Ok(())
            }
        };
        if let Err(e) = appended
            && state.error.is_none()
        {
            state.error = Some(format!("{e:#}"));
        }
        event
    }

    /// Makes everything recorded so far durable. The fsync runs outside the lock.
    pub fn sync(&self) -> anyhow::Result<()> {
        {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if let Sink::File(writer) = &mut state.sink {
                writer.flush()?;
            }
        }
        if let Some(file) = &self.file {
            file.sync_data()?;
        }
        Ok(())
    }

    /// Syncs every [`SYNC_INTERVAL_MS`] until `cancel` fires, then once more.
    pub fn spawn_sync_task(&self, cancel: CancellationToken) -> tokio::task::JoinHandle<()> {
        let recorder = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(SYNC_INTERVAL_MS));
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tick.tick() => {}
                }
                let r = recorder.clone();
                if let Ok(Err(e)) = tokio::task::spawn_blocking(move || r.sync()).await {
                    r_note(&recorder, e);
                }
            }
            if let Err(e) = recorder.sync() {
                r_note(&recorder, e);
            }
        })
    }

    /// Syncs and reports the first error any write met.
    pub fn finish(&self) -> anyhow::Result<u64> {
        self.sync()?;
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = &state.error {
            anyhow::bail!("writing the history failed: {e}");
        }
        Ok(state.next_index)
    }
}

fn r_note(recorder: &Recorder, e: anyhow::Error) {
    let mut state = recorder.state.lock().unwrap_or_else(|p| p.into_inner());
    if state.error.is_none() {
        state.error = Some(format!("{e:#}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::read_jsonl;

    fn event(process: u64, kind: EventType) -> Event {
        Event {
            index: 0,
            time: 0,
            process,
            kind,
            f: "read".into(),
            value: serde_json::Value::Null,
            key: None,
            error: None,
            node: None,
            zxid: None,
            session: None,
        }
    }

    #[test]
    fn concurrent_records_are_ordered_by_index_and_time_and_durable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.jsonl");
        let recorder = Recorder::create(&path, RunClock::start_now()).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|p| {
                let r = recorder.clone();
                std::thread::spawn(move || {
                    for _ in 0..250 {
                        r.record(event(p, EventType::Invoke));
                        r.record(event(p, EventType::Ok));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(recorder.finish().unwrap(), 2000);
        let read = read_jsonl::<Event>(&path, "an event").unwrap();
        assert!(read.cut_off.is_none());
        let events = read.values;
        assert_eq!(events.len(), 2000);
        for (i, pair) in events.windows(2).enumerate() {
            assert_eq!(pair[0].index, i as u64);
            assert_eq!(pair[1].index, i as u64 + 1);
            assert!(pair[0].time <= pair[1].time, "time goes backwards at {i}");
        }
        assert_eq!(recorder.counters().snapshot(), (1000, 1000, 0, 0));
    }
}
