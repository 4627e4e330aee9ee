//! schism's faults. A fault is a value ([`Fault`]) with a start and a heal; a [`Schedule`] is
//! a seeded, serializable list of faults with times; [`run_schedule`] executes one against a
//! [`cluster::Backend`], logging each start and heal as a JSON line with the exact commands
//! and their exit statuses, and heals everything at the end, on cancellation and on error.
//!
//! Partitions are iptables DROP rules inside the nodes' own network namespaces, in Jepsen's
//! shapes ([`grudge`]); slow links are tc `tbf`; random loss is iptables `statistic` (no kernel
//! module needed); delay and reordering are tc `netem`, refused where the kernel lacks it.
//! Clock faults rewrite a node's libfaketime control file ([`cluster::clock`]): its time runs
//! fast or slow, jumps, or strobes, and runs at the true rate again at heal, never stepped back
//! (a monotonic clock never goes back); the machine's clock is untouched.
//! This crate does not choose *which* faults a test uses: the harness passes the set.

pub mod corrupt;
pub mod fault;
pub mod grudge;
pub mod runner;
pub mod schedule;

pub use fault::{
    CLOCK_FAULTS, FAULT_KINDS, Fault, FaultKind, FaultSet, NETWORK_FAULTS, PartitionShape, Targets,
};
pub use runner::{
    FaultLog, LogEntry, Phase, RunSummary, RunningSchedule, check_support, heal_all, run_schedule,
    spawn,
};
pub use schedule::{Pacing, Schedule, Step};

use cluster::host::{argv, run};
use tokio::sync::OnceCell;

/// The one line users see when a delay fault meets a kernel without netem.
pub const NO_NETEM: &str =
    "this kernel has no netem qdisc: the delay/loss faults need it (modprobe sch_netem)";

#[derive(Debug, thiserror::Error)]
pub enum NemesisError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Unsupported(String),
    #[error(transparent)]
    Cluster(#[from] cluster::ClusterError),
    #[error("writing the nemesis log: {0}")]
    Log(String),
}

static NETEM: OnceCell<bool> = OnceCell::const_new();

/// Whether the kernel has the netem qdisc, found out once by adding one in a scratch network
/// namespace (never on the host's own interfaces).
pub async fn netem_available() -> bool {
    *NETEM
        .get_or_init(|| async {
            let ns = format!("schism-probe-{}", std::process::id());
            if !run(&argv(&["ip", "netns", "add", &ns]))
                .await
                .is_ok_and(|r| r.success())
            {
                return false;
            }
            let probe = run(&argv(&[
                "ip", "netns", "exec", &ns, "tc", "qdisc", "add", "dev", "lo", "root", "netem",
                "delay", "1ms",
            ]))
            .await;
            let _ = run(&argv(&["ip", "netns", "del", &ns])).await;
            probe.is_ok_and(|r| r.success())
        })
        .await
}
