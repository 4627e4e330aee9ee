//! What a client learns without asking (watch events, its session's end), recorded in the
//! history in the right place relative to its own operations.

use crate::client::Completion;
use keeper_wire::Zxid;
use std::sync::Arc;

/// Records what a client learns without asking (watch events, its session's end) as single
/// `ok` lines of its process. While one of the process's operations is in flight they are
/// held back until its completion is recorded: an event can arrive before the reply of the
/// read that set its watch, and the history must show the watch first. After an `info` the
/// process is over, and later observations are dropped (its session is then in doubt anyway).
#[derive(Clone)]
pub struct Observer {
    recorder: crate::recorder::Recorder,
    process: u64,
    session: u64,
    node: String,
    state: Arc<std::sync::Mutex<ObserverState>>,
}

#[derive(Default)]
struct ObserverState {
    in_flight: bool,
    held: Vec<checker::history::Event>,
    over: bool,
}

impl Observer {
    pub fn new(
        recorder: &crate::recorder::Recorder,
        process: u64,
        session: u64,
        node: &str,
    ) -> Observer {
        Observer {
            recorder: recorder.clone(),
            process,
            session,
            node: node.to_string(),
            state: Arc::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ObserverState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An operation of this process is about to be recorded.
    pub fn begin_op(&self) {
        self.lock().in_flight = true;
    }

    /// Its completion is recorded: release what was held (or drop it after an `info`).
    pub fn end_op(&self, completion: &Completion) {
        let mut state = self.lock();
        state.in_flight = false;
        if completion.kind == checker::history::EventType::Info {
            state.over = true;
            state.held.clear();
            return;
        }
        for event in std::mem::take(&mut state.held) {
            self.recorder.record(event);
        }
    }

    /// Records (or holds) an observation: `f` is `event` or `expired`.
    pub fn observe(
        &self,
        f: &str,
        key: Option<&str>,
        value: serde_json::Value,
        zxid: Option<Zxid>,
    ) {
        let event = checker::history::Event {
            index: 0,
            time: 0,
            process: self.process,
            kind: checker::history::EventType::Ok,
            f: f.to_string(),
            value,
            key: key.map(str::to_string),
            error: None,
            node: Some(self.node.clone()),
            zxid,
            session: Some(self.session),
        };
        let mut state = self.lock();
        if state.over {
            return;
        }
        if state.in_flight {
            state.held.push(event);
        } else {
            // Recorded under our lock so it cannot overtake a release in end_op.
            self.recorder.record(event);
        }
    }

    /// The process is over (its client is being dropped): nothing more is recorded.
    pub fn finish(&self) {
        let mut state = self.lock();
        state.over = true;
        state.held.clear();
    }
}
