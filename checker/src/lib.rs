//! schism's checker: reads histories (ours and Jepsen's), checks them for linearizability
//! against sequential models, and checks the invariants of a coordination service (single
//! leader, election safety, sequential nodes, sessions and ephemerals, watches, monotonic
//! reads). It knows nothing about how a history was produced: no sockets, no clocks except the
//! check's own time budget.

pub mod cli;
pub mod edn;
pub mod faults;
pub mod generate;
pub mod history;
pub mod html;
pub mod invariants;
pub mod linear;
pub mod liveness;
pub mod model;
pub mod plan;
pub mod reader;
pub mod run;
pub mod run_dir;
pub mod stream;
pub mod verdict;
pub mod workload;

pub use faults::FaultPeriod;
pub use history::{Event, EventType, Op};
pub use html::counterexample_html;
pub use model::ModelKind;
pub use run::{
    CheckError, CheckOptions, check_history, check_run_dir, check_status, workload_checkers,
};
pub use verdict::{CheckerResult, Counterexample, RunVerdict, Verdict};
pub use workload::WorkloadKind;
