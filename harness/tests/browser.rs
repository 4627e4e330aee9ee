//! The report in a real headless Chromium: it renders, shows the verdict, and logs nothing to
//! the console. Needs `chromium` (apt-get install chromium).

mod common;

use std::path::Path;
use std::process::Command;

/// Longest the browser may take per page.
const BROWSER_TIMEOUT_S: &str = "60";

fn chromium() -> &'static str {
    for candidate in ["chromium", "chromium-browser", "google-chrome"] {
        if Command::new("which")
            .arg(candidate)
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return candidate;
        }
    }
    panic!("this test needs Chromium: apt-get install -y chromium");
}

/// The page's DOM after loading, and the console lines the page produced.
fn load(page: &Path) -> (String, Vec<String>) {
    let out = Command::new("timeout")
        .args([
            BROWSER_TIMEOUT_S,
            chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
        ])
        .args(["--enable-logging=stderr", "--v=0", "--dump-dom"])
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let console = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.contains(":CONSOLE"))
        .map(str::to_string)
        .collect();
    (String::from_utf8_lossy(&out.stdout).into_owned(), console)
}

#[test]
fn the_console_check_sees_errors() {
    // The detector itself must be able to fail.
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("broken.html");
    std::fs::write(
        &page,
        "<!DOCTYPE html><html><body><script>no_such_function();</script></body></html>",
    )
    .unwrap();
    let (_, console) = load(&page);
    assert!(
        !console.is_empty(),
        "an uncaught error must show up on the console"
    );
}

#[test]
fn reports_render_with_their_verdict_and_no_console_output() {
    for violation in [false, true] {
        let root = tempfile::tempdir().unwrap();
        let run = common::write_run(root.path(), violation);
        let results = schism::check::check_run(&run).unwrap();
        let report = schism::report::write_for_run(&run, &results).unwrap();
        let (dom, console) = load(&report);
        let expected = if violation { "invalid" } else { "valid" };
        assert!(
            dom.contains(&format!(r#"id="verdict" data-verdict="{expected}""#)),
            "verdict not rendered"
        );
        assert!(dom.contains("<svg"), "charts not rendered");
        assert!(console.is_empty(), "console output: {console:?}");
    }
}
