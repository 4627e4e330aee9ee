//! The progress bars on the terminal. `schism test`: elapsed time, operations done,
//! ok/fail/info, the faults in effect. `schism sim`: seeds done, seeds per second, simulated time
//! per wall second, invalid and unknown seeds. Hidden when stderr is not a terminal (CI logs get
//! the final summary only).

use crate::recorder::Counters;
use crate::verdict::Verdict;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
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

/// Stderr at 4 Hz when it is a terminal; nothing otherwise (CI).
fn draw_target() -> ProgressDrawTarget {
    if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr_with_hz(4)
    } else {
        ProgressDrawTarget::hidden()
    }
}

pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    /// A bar for a run of `time_limit`; hidden unless stderr is a terminal.
    pub fn new(time_limit: Duration) -> Progress {
        let bar = ProgressBar::with_draw_target(Some(time_limit.as_millis() as u64), draw_target());
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

/// The bar of `schism sim` (and `schism torture --sim`): seeds done of the total, seeds per
/// second, simulated seconds per wall second, and how many seeds were invalid or unknown. The
/// threads running seeds report each finished seed; the bar redraws itself at most 4 times a
/// second.
pub struct SimProgress {
    bar: ProgressBar,
    started: Instant,
    done: AtomicU64,
    simulated_ms: AtomicU64,
    invalid: AtomicU64,
    unknown: AtomicU64,
}

impl SimProgress {
    /// A bar over `seeds` seeds, or a counter when the run is bounded by wall time only.
    pub fn new(seeds: Option<u64>) -> SimProgress {
        let bar = ProgressBar::with_draw_target(seeds, draw_target());
        let template = if seeds.is_some() {
            "sim [{elapsed_precise}] {wide_bar:.cyan/blue} {pos}/{len} seeds · {msg}"
        } else {
            "sim [{elapsed_precise}] {pos} seeds · {msg}"
        };
        let style = ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        bar.set_style(style);
        SimProgress {
            bar,
            started: Instant::now(),
            done: AtomicU64::new(0),
            simulated_ms: AtomicU64::new(0),
            invalid: AtomicU64::new(0),
            unknown: AtomicU64::new(0),
        }
    }

    /// One seed finished with this verdict after covering `simulated_ms`.
    pub fn seed_done(&self, verdict: Verdict, simulated_ms: u64) {
        let done = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        let simulated_ms =
            self.simulated_ms.fetch_add(simulated_ms, Ordering::Relaxed) + simulated_ms;
        match verdict {
            Verdict::Invalid => self.invalid.fetch_add(1, Ordering::Relaxed),
            Verdict::Unknown => self.unknown.fetch_add(1, Ordering::Relaxed),
            Verdict::Valid => 0,
        };
        self.bar.set_position(done);
        self.bar.set_message(sim_status_line(
            done,
            simulated_ms,
            self.started.elapsed(),
            self.invalid.load(Ordering::Relaxed),
            self.unknown.load(Ordering::Relaxed),
        ));
    }

    /// Prints a line to stdout without tearing the bar.
    pub fn println(&self, line: &str) {
        self.bar.suspend(|| println!("{line}"));
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// `312 seeds/s · 6185x real time · 0 invalid · 2 unknown`.
pub fn sim_status_line(
    done: u64,
    simulated_ms: u64,
    wall: Duration,
    invalid: u64,
    unknown: u64,
) -> String {
    let wall_s = wall.as_secs_f64().max(1e-9);
    format!(
        "{:.0} seeds/s · {:.0}x real time · {invalid} invalid · {unknown} unknown",
        done as f64 / wall_s,
        simulated_ms as f64 / 1e3 / wall_s
    )
}
