//! schism: a Jepsen-style test harness for keeper.
//!
//! A test sets up a cluster ([`cluster`]), runs workers that invoke operations against it
//! while a nemesis injects faults, records everything in a results directory ([`store`]),
//! heals, reads the final state, tears down, hands the history to the `checker` crate and
//! writes a report. This crate decides nothing about correctness: every verdict comes from
//! the checker, and a run the checker cannot judge is `unknown`, never `valid`.
//!
//! Pieces, each with one job: [`generator`] (what to invoke, how fast, seeded), [`worker`]
//! (Jepsen processes: invoke, complete, `info` on doubt), [`workload`] (client + generator +
//! checkers), [`recorder`] (the streamed history), [`report`] and [`junit`] (output),
//! [`serve`] (the web view), [`runner`] (the phases of `schism test`).

pub mod check;
pub mod cli;
pub mod client;
pub mod config;
pub mod faults;
pub mod gate;
pub mod generator;
pub mod keeperd;
pub mod output;
pub mod progress;
pub mod recorder;
pub mod recovery;
pub mod report;
pub mod runner;
pub mod serve;
pub mod sim;
pub mod sim_run;
pub mod status;
pub mod store;
pub mod system;
pub mod verdict;
pub mod worker;
pub mod workload;
