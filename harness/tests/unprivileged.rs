//! Issue 11: `schism test --backend netns` run by a user who may not create namespaces
//! refuses with one line before it creates anything: no results directory is left behind.
//! Runs schism as `nobody` (needs root to switch user; skipped otherwise).

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

const SCHISM: &str = env!("CARGO_BIN_EXE_schism");
/// The unprivileged user and group the test runs schism as.
const NOBODY: &str = "65534";

#[test]
fn a_netns_run_without_privileges_refuses_before_creating_anything() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: switching to nobody needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let results = dir.path().join("results");
    let out = Command::new("setpriv")
        .args([
            &format!("--reuid={NOBODY}"),
            &format!("--regid={NOBODY}"),
            "--clear-groups",
            SCHISM,
            "test",
            "--backend",
            "netns",
            "--results",
        ])
        .arg(&results)
        .output()
        .expect("setpriv (util-linux) runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "an unprivileged netns run failed");
    assert!(
        stderr.contains("needs root") && stderr.trim().lines().count() == 1,
        "one line saying why: {stderr}"
    );
    assert!(
        !results.exists(),
        "nothing was created: {:?}",
        std::fs::read_dir(&results).map(|d| d.count())
    );
}
