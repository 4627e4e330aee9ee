//! The progress bar on the terminal: elapsed time, operations done, ok/fail/info, the faults
//! in effect. Hidden when stderr is not a terminal (CI logs get the final summary only).

use crate::recorder::Counters;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often the bar is redrawn.
pub const PROGRESS_REFRESH_MS: u64 = 250;

/// The faults currently in effect, by id, with a label for humans. The nemesis integration
/// adds and removes them; the bar shows them.
#[derive(Clone, Default)]
pub struct ActiveFaults {
    inner: Arc<Mutex<BTreeMap<String, String>>>,
}

impl ActiveFaults {
    pub fn start(&self, id: &str, label: &str) {
        self.lock().insert(id.to_string(), label.to_string());
    }
    pub fn heal(&self, id: &str) {
        self.lock().remove(id);
    }
    pub fn heal_all(&self) {
        self.lock().clear();
    }
    pub fn labels(&self) -> Vec<String> {
        self.lock().values().cloned().collect()
    }
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, String>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    /// A bar for a run of `time_limit`; hidden unless stderr is a terminal.
    pub fn new(time_limit: Duration) -> Progress {
        let target = if std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr_with_hz(4)
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(Some(time_limit.as_millis() as u64), target);
        let style = ProgressStyle::with_template(
            "{prefix:>11} [{elapsed_precise}] {wide_bar:.cyan/blue} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        Progress { bar }
    }

    /// The phase of the test (`setup`, `running`, `healing`, ...).
    pub fn phase(&self, name: &str) {
        self.bar.set_prefix(name.to_string());
        self.bar.tick();
    }

    /// Prints a line above the bar (or plainly when hidden).
    pub fn println(&self, line: &str) {
        if self.bar.is_hidden() {
            eprintln!("{line}");
        } else {
            self.bar.println(line);
        }
    }

    /// Updates the bar from the counters until `stop` fires.
    pub fn spawn_updates(
        &self,
        counters: Arc<Counters>,
        faults: ActiveFaults,
        started: std::time::Instant,
        stop: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let bar = self.bar.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(PROGRESS_REFRESH_MS));
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tick.tick() => {}
                }
                bar.set_position(started.elapsed().as_millis() as u64);
                bar.set_message(status_line(&counters, &faults));
            }
        })
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// `1234 ops · 1200 ok · 3 fail · 31 info · faults: partition, kill n3`.
pub fn status_line(counters: &Counters, faults: &ActiveFaults) -> String {
    let (invoked, ok, fail, info) = counters.snapshot();
    let labels = faults.labels();
    let faults = if labels.is_empty() {
        "none".to_string()
    } else {
        labels.join(", ")
    };
    format!("{invoked} ops · {ok} ok · {fail} fail · {info} info · faults: {faults}")
}
