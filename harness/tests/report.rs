//! The results store, the check bridge, the report and JUnit, on synthetic runs judged by the
//! real checker.

mod common;

use schism::store::{LATEST_LINK, RESULTS_FILE, list_runs};
use schism::verdict::Verdict;

#[test]
fn a_valid_run_is_checked_reported_and_listed() {
    let root = tempfile::tempdir().unwrap();
    let run = common::write_run(root.path(), false);
    let results = schism::check::check_run(&run).unwrap();
    assert_eq!(results.verdict, Verdict::Valid, "{results:?}");
    assert!(results.checkers.iter().any(|c| c.name == "linearizable"));
    run.write_results(&results).unwrap();
    let report = schism::report::write_for_run(&run, &results).unwrap();
    let html = std::fs::read_to_string(report).unwrap();

    // The verdict comes first, then the charts, with the fault shaded and labelled.
    let verdict_at = html
        .find(r#"data-verdict="valid""#)
        .expect("verdict marker");
    let latency_at = html.find("<h2>Latency</h2>").expect("latency section");
    assert!(verdict_at < latency_at);
    assert!(
        html.matches("<svg").count() >= 3,
        "latency, throughput and timeline"
    );
    assert!(html.contains("kill n2"));
    // Self-contained: nothing is fetched, and user text is escaped.
    for fetch in ["<script", "<link", "src=\"http", "href=\"http", "url(http"] {
        assert!(!html.contains(fetch), "the report must not contain {fetch}");
    }
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));

    run.mark_latest(root.path()).unwrap();
    assert!(root.path().join(LATEST_LINK).join(RESULTS_FILE).is_file());
    let runs = list_runs(root.path()).unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].verdict, Some(Verdict::Valid));
}

#[test]
fn a_violation_gets_its_counterexample_in_the_report_and_fails_junit() {
    let root = tempfile::tempdir().unwrap();
    let run = common::write_run(root.path(), true);
    let results = schism::check::check_run(&run).unwrap();
    assert_eq!(results.verdict, Verdict::Invalid);
    let page = results
        .counterexample
        .as_deref()
        .expect("a counterexample page");
    assert!(run.file(page).is_file());
    let html =
        std::fs::read_to_string(schism::report::write_for_run(&run, &results).unwrap()).unwrap();
    assert!(html.contains(r#"data-verdict="invalid""#));
    assert!(html.contains(r#"id="counterexample""#));

    let xml = schism::output::render(&[schism::output::JunitRun {
        suite: "schism.register".into(),
        report: None,
        seconds: 1.0,
        results: Some(&results),
        error: None,
    }]);
    assert!(xml.contains(r#"failures="1""#), "{xml}");
    assert!(xml.contains(r#"name="linearizable""#));
    assert!(xml.contains("<failure"));
}

#[test]
fn a_harness_failure_is_a_junit_error_not_a_pass() {
    let xml = schism::output::render(&[schism::output::JunitRun {
        suite: "schism.register".into(),
        report: None,
        seconds: 0.0,
        results: None,
        error: Some("cannot set up the cluster".into()),
    }]);
    assert!(xml.contains(r#"errors="1""#));
    assert!(xml.contains("cannot set up the cluster"));
}

#[test]
fn a_history_cut_off_mid_line_is_still_reported() {
    let root = tempfile::tempdir().unwrap();
    let run = common::write_run(root.path(), false);
    let path = run.file(schism::store::HISTORY_FILE);
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(r#"{"index":12,"time":1,"proc"#);
    std::fs::write(&path, text).unwrap();
    let results = schism::verdict::Results::new(Vec::new());
    let html =
        std::fs::read_to_string(schism::report::write_for_run(&run, &results).unwrap()).unwrap();
    assert!(html.contains("partial line"));
    assert!(
        html.contains(r#"data-verdict="unknown""#),
        "no checker: not valid"
    );
}

/// `schism report DIR` writes a stored run's page again; a directory that is not a run, or one
/// without results, gets one line and a harness-failure exit, and the others are still written.
#[test]
fn schism_report_rewrites_the_page_and_names_what_it_cannot() {
    let root = tempfile::tempdir().unwrap();
    let run = common::write_run(root.path(), true);
    let results = schism::check::check_run(&run).unwrap();
    run.write_results(&results).unwrap();
    let page = run.file(schism::store::REPORT_FILE);
    assert!(!page.exists());
    let not_a_run = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_schism"))
        .arg("report")
        .arg(not_a_run.path())
        .arg(&run.path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(255), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("is not a run directory"), "{stderr}");
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains(r#"id="counterexample""#));
    assert!(String::from_utf8_lossy(&out.stdout).contains("report.html"));
}
