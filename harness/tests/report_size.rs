//! `report.html` of a long run stays small: the plots are downsampled, the timeline shows a
//! window around the violation (or the first fault), so the page of five times the operations
//! is about the same size.

use checker::generate::{self, GenConfig};
use checker::{FaultPeriod, ModelKind};
use schism::report::{Digest, Focus, ReportInput, render};
use schism::verdict::Results;

/// The page of a generated cas-register history of `ops` operations (20% info, so failures and
/// indeterminate points are many), one fault in its middle, checked for real.
fn page(ops: usize) -> String {
    let cfg = GenConfig {
        ops,
        keys: 100,
        processes: 20,
        info_share: 0.2,
        violation: true,
        seed: 3,
        model: ModelKind::CasRegister,
    };
    let events = generate::generate(&cfg);
    let mid = events[events.len() / 2].time;
    let faults = vec![FaultPeriod {
        fault: "partition".into(),
        description: "partition isolate-leader".into(),
        resolution: None,
        nodes: vec![1],
        start_ns: mid,
        end_ns: Some(mid + 1_000_000_000),
    }];
    let opts = checker::CheckOptions {
        model: Some(ModelKind::CasRegister),
        ..checker::CheckOptions::default()
    };
    let v = checker::check_history(&events, None, &opts).unwrap();
    assert!(v.counterexample().is_some());
    let results = Results::new(v.checkers);
    let history = Digest::of_events(&events, Focus::of(&results, &faults));
    render(&ReportInput {
        record: None,
        results: &results,
        history: &history,
        faults: &faults,
        counterexample_html: None,
        notes: &[],
    })
}

#[test]
fn the_page_of_five_times_the_operations_is_about_the_same_size() {
    let small = page(40_000);
    let large = page(200_000);
    assert!(
        large.len() < small.len() + small.len() / 5,
        "40k ops: {} bytes, 200k ops: {} bytes",
        small.len(),
        large.len()
    );
    // The timeline is the window around the violation, not the run's first operations.
    assert!(large.contains("around the violation"), "no window sentence");
}

/// The figure for docs/CHECKER.md: `cargo test -p schism --test report_size -- --ignored
/// --nocapture`.
#[test]
#[ignore]
fn size_of_the_page_of_a_million_operations() {
    let p = page(1_000_000);
    println!("report.html of 1,000,000 operations: {} bytes", p.len());
}
