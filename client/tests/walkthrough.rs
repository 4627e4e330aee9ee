//! The classic three-terminal leader-election walk-through (issue 2), scripted through
//! keeper-cli shells against a real keeperd.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{Keeperd, cli_binary};

/// Longest wait for one line of output from a shell.
const LINE_TIMEOUT_MS: u64 = 15_000;
/// Longest wait for a shell to exit after `quit`.
const EXIT_TIMEOUT_MS: u64 = 15_000;

/// One keeper-cli process fed through a pipe, as if typed into a terminal.
struct Shell {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: mpsc::Receiver<String>,
    stderr: mpsc::Receiver<String>,
}

fn forward(stream: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

impl Shell {
    fn start(server: &Keeperd) -> Shell {
        let mut child = Command::new(cli_binary())
            .args(["--server", &server.url])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start keeper-cli");
        let stdout = forward(child.stdout.take().expect("stdout"));
        let stderr = forward(child.stderr.take().expect("stderr"));
        Shell {
            stdin: child.stdin.take(),
            child,
            stdout,
            stderr,
        }
    }

    fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("shell stdin open");
        writeln!(stdin, "{line}").expect("write to keeper-cli");
        stdin.flush().expect("flush keeper-cli stdin");
    }

    /// The next stdout line, or a failure that quotes stderr.
    fn line(&mut self) -> String {
        match self
            .stdout
            .recv_timeout(Duration::from_millis(LINE_TIMEOUT_MS))
        {
            Ok(line) => line,
            Err(_) => panic!(
                "no output from keeper-cli within {LINE_TIMEOUT_MS} ms; stderr: {:?}",
                self.stderr.try_iter().collect::<Vec<_>>()
            ),
        }
    }

    /// Stdout lines until one satisfies `wanted`, which is returned.
    fn line_matching(&mut self, wanted: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_millis(LINE_TIMEOUT_MS);
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            let line = self.line();
            if wanted(&line) {
                return line;
            }
            seen.push(line);
        }
        panic!("expected line not seen; saw {seen:?}");
    }

    fn error_line(&mut self) -> String {
        self.stderr
            .recv_timeout(Duration::from_millis(LINE_TIMEOUT_MS))
            .expect("an error line from keeper-cli")
    }

    fn run(&mut self, command: &str) -> String {
        self.send(command);
        self.line()
    }

    /// Closes stdin after `quit` and waits for the exit.
    fn quit(mut self) -> ExitStatus {
        self.send("quit");
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_millis(EXIT_TIMEOUT_MS);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for keeper-cli") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "keeper-cli did not exit after quit"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Shell {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_shells_elect_the_smallest_and_the_next_takes_over() {
    let server = Keeperd::start().await;
    let mut admin = Shell::start(&server);
    assert_eq!(
        admin.run(r#"create /election "election""#),
        "Created /election"
    );

    let mut shells: Vec<Shell> = (0..3).map(|_| Shell::start(&server)).collect();
    for (i, shell) in shells.iter_mut().enumerate() {
        assert_eq!(
            shell.run(&format!("create -e -s /election/leader_ node{}", i + 1)),
            format!("Created /election/leader_{i:010}")
        );
    }
    assert_eq!(
        admin.run("ls /election"),
        "[leader_0000000000, leader_0000000001, leader_0000000002]"
    );
    // The smallest sequence number leads: it is the first shell's node.
    assert_eq!(admin.run("get /election/leader_0000000000"), "node1");
    admin.line_matching(|l| l.starts_with("numChildren = "));

    // The second shell watches its predecessor, as the recipe does.
    let mut shells = shells.into_iter();
    let first = shells.next().expect("three shells");
    let mut second = shells.next().expect("three shells");
    let mut third = shells.next().expect("three shells");
    assert_eq!(
        second.run("watch /election/leader_0000000000"),
        "Watching /election/leader_0000000000"
    );

    // Closing the first shell ends its session, which removes its ephemeral node.
    assert!(first.quit().success());
    second.line_matching(|l| {
        l == "WATCHER:: WatchedEvent state:SyncConnected type:NodeDeleted \
              path:/election/leader_0000000000"
    });
    assert_eq!(
        admin.run("ls /election"),
        "[leader_0000000001, leader_0000000002]"
    );
    assert_eq!(
        third.run("ls /election"),
        "[leader_0000000001, leader_0000000002]"
    );

    assert!(second.quit().success());
    assert!(third.quit().success());
    assert_eq!(admin.run("ls /election"), "[]");
    assert!(admin.quit().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_print_one_line_and_fail_a_piped_shell() {
    let server = Keeperd::start().await;
    let mut shell = Shell::start(&server);
    assert_eq!(shell.run("create /a one"), "Created /a");
    shell.send("create /a again");
    assert_eq!(shell.error_line(), "Node already exists: /a");
    shell.send("get /missing");
    assert_eq!(shell.error_line(), "Node does not exist: /missing");
    shell.send("set /a two 7");
    assert_eq!(shell.error_line(), "version No is not valid : /a");
    // The shell keeps going after errors.
    assert_eq!(shell.run("get /a"), "one");
    shell.line_matching(|l| l == "dataVersion = 0");
    shell.line_matching(|l| l.starts_with("numChildren = "));
    assert_eq!(
        shell.run("stat /a"),
        "cZxid = 0x".to_string() + &shell_stat_czxid(&server).await
    );
    let status = shell.quit();
    assert_eq!(status.code(), Some(1), "a piped shell with errors exits 1");
}

/// `/a`'s czxid in the hex form keeper-cli prints.
async fn shell_stat_czxid(server: &Keeperd) -> String {
    let session =
        keeper_client::Session::connect(keeper_client::ClientConfig::new([server.url.clone()]))
            .await
            .expect("session");
    let stat = session
        .exists("/a", false)
        .await
        .expect("exists")
        .expect("/a exists");
    let _ = session.close().await;
    format!("{:x}", stat.czxid)
}
