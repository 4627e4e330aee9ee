//! Real-world histories (Knossos's and porcupine's test data) and hand-written ones in the
//! shapes Jepsen users have: each must get the verdict listed in `tests/data/jepsen/EXPECTED`,
//! which for the real ones is the verdict Knossos or porcupine gives.

use std::path::{Path, PathBuf};

use checker::Verdict;
use checker::cli::CheckArgs;
use clap::Parser;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    check: CheckArgs,
}

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/jepsen")
}

/// `schism check` arguments as a user would type them.
fn args(words: &[&str]) -> CheckArgs {
    let argv = std::iter::once("check").chain(words.iter().copied());
    Cli::try_parse_from(argv)
        .unwrap_or_else(|e| panic!("{words:?}: {e}"))
        .check
}

struct Expectation {
    path: String,
    expected: String,
    options: Vec<String>,
}

fn expectations() -> Vec<Expectation> {
    let text = std::fs::read_to_string(data_dir().join("EXPECTED")).unwrap();
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let mut words = l.split_whitespace().map(str::to_string);
            Expectation {
                path: words.next().unwrap(),
                expected: words.next().expect("a verdict after the path"),
                options: words.collect(),
            }
        })
        .collect()
}

fn files_under(dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            let rel = path.strip_prefix(data_dir()).unwrap();
            out.push(rel.to_string_lossy().into_owned());
        }
    }
}

#[test]
fn every_history_gets_its_known_verdict() {
    let all = expectations();
    let mut listed: Vec<String> = all.iter().map(|e| e.path.clone()).collect();
    let mut present = Vec::new();
    files_under(&data_dir(), &mut present);
    present.retain(|p| p != "EXPECTED" && p != "README.md" && !p.ends_with("LICENSE.md"));
    listed.sort();
    present.sort();
    assert_eq!(listed, present, "EXPECTED must list every history file");

    let mut failures = Vec::new();
    for e in &all {
        let path = data_dir().join(&e.path);
        let mut words: Vec<&str> = e.options.iter().map(String::as_str).collect();
        words.extend(["--threads", "1", "--time-limit", "60"]);
        let path_text = path.to_string_lossy().into_owned();
        words.push(&path_text);
        let a = args(&words);
        let got = match checker::run::check_path(&path, &a.options()) {
            Ok(v) => v.verdict.as_str().to_string(),
            Err(err) => {
                // `error:LINE`: the message names the file and the line.
                let text = err.to_string();
                let line = text
                    .strip_prefix(&format!("{path_text}:"))
                    .and_then(|rest| rest.split(':').next())
                    .unwrap_or("?");
                format!("error:{line}")
            }
        };
        if got != e.expected {
            failures.push(format!("{}: expected {}, got {got}", e.path, e.expected));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Changes one line of a real history and checks it again: a model that accepted anything
/// would pass the good files above, and fail here.
fn check_edited(rel: &str, from: &str, to: &str, options: &[&str]) -> Verdict {
    let text = std::fs::read_to_string(data_dir().join(rel)).unwrap();
    assert!(text.contains(from), "{rel} has no {from:?}");
    let dir = tempfile::tempdir().unwrap();
    let name = Path::new(rel).file_name().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
    let mut words = options.to_vec();
    let path_text = path.to_string_lossy().into_owned();
    words.push(&path_text);
    checker::run::check_path(&path, &args(&words).options())
        .unwrap()
        .verdict
}

#[test]
fn planted_violations_in_good_histories_are_found() {
    // Process 3 read x = 0 and y = 2 after y was written 2; make that read see y = 1.
    assert_eq!(
        check_edited(
            "knossos/multi-register/good/multi-register.edn",
            ":value [[:read :x 0] [:read :y 2]],\n :process 3",
            ":value [[:read :x 0] [:read :y 1]],\n :process 3",
            &["--initial", r#"{"x":0,"y":0}"#],
        ),
        Verdict::Invalid
    );
    // Without the initial values the file's first reads of 0 are impossible.
    assert_eq!(
        check_edited(
            "knossos/multi-register/good/multi-register.edn",
            "",
            "",
            &[]
        ),
        Verdict::Invalid
    );
    // kv: key 9 read after put "x 0 9 y" must see it; make it see the appended value before.
    assert_eq!(
        check_edited(
            "porcupine/kv/c01-ok.txt",
            r#":ok, :f :get, :key "9", :value "x 0 9 y""#,
            r#":ok, :f :get, :key "9", :value "x 0 2 yx 0 5 y""#,
            &[],
        ),
        Verdict::Invalid
    );
    // An append that lost its order: "x 0 5 y" then "x 0 2 y".
    assert_eq!(
        check_edited(
            "porcupine/kv/c01-ok.txt",
            r#":value "x 0 2 yx 0 5 y""#,
            r#":value "x 0 5 yx 0 2 y""#,
            &[],
        ),
        Verdict::Invalid
    );
}

#[test]
fn several_files_in_one_run_exit_with_the_worst() {
    let h = |rel: &str| data_dir().join(rel).to_string_lossy().into_owned();
    let good = [
        h("porcupine/kv/c01-ok.txt"),
        h("porcupine/etcd/etcd_002.log"),
    ];
    let bad = h("porcupine/etcd/etcd_000.log");
    let unknown = h("handwritten/empty.edn");
    let unreadable = h("handwritten/unreadable.log");
    let run = |paths: &[&String]| {
        let mut words = vec!["--threads", "1"];
        words.extend(paths.iter().map(|p| p.as_str()));
        checker::cli::run(&args(&words))
    };
    assert_eq!(run(&[&good[0], &good[1]]), 0);
    assert_eq!(run(&[&good[0], &unknown]), 2);
    assert_eq!(run(&[&unknown, &bad, &good[1]]), 1);
    assert_eq!(run(&[&bad, &unreadable, &good[0]]), 254);
    // --html writes one page: refused with several files.
    let mut a = args(&["--threads", "1", &good[0], &good[1]]);
    a.html = Some(PathBuf::from("/nonexistent/cx.html"));
    assert_eq!(checker::cli::run(&a), 254);
}

#[test]
fn impossible_histories_are_refused_with_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let ev = |index: u64, time: u64, kind: &str| {
        format!(
            r#"{{"index":{index},"time":{time},"process":0,"type":"{kind}","f":"write","value":1}}"#
        )
    };
    let skip = write(
        "skip.jsonl",
        &format!("{}\n{}\n", ev(0, 1, "invoke"), ev(5, 2, "ok")),
    );
    let err = checker::run::check_path(&skip, &Default::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("skip.jsonl:2: expected index 1"), "{err}");

    let back = write(
        "back.jsonl",
        &format!("{}\n{}\n", ev(0, 10, "invoke"), ev(1, 2, "ok")),
    );
    let err = checker::run::check_path(&back, &Default::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("line 2") && err.contains("before its invocation"),
        "{err}"
    );

    // The same events in order are fine.
    let good = write(
        "good.jsonl",
        &format!("{}\n{}\n", ev(0, 1, "invoke"), ev(1, 2, "ok")),
    );
    assert!(checker::run::check_path(&good, &Default::default()).is_ok());

    for p in [&skip, &back] {
        let path = p.to_string_lossy().into_owned();
        assert_eq!(checker::cli::run(&args(&[&path])), 254);
    }
}
