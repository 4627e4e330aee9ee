//! ZooKeeper's own shell, `zkCli.sh` (Debian's `zookeeper` package), against a 3-node keeper
//! ensemble through its ZooKeeper ports: the leader-election walk-through of seed 003. Three
//! shells, each on a different node, create `-e -s /election/leader_`; the smallest leads;
//! its owner dies, its session expires, its node disappears and the next shell's watch fires;
//! then that one quits and the third shell's watch fires.
//!
//! Skipped (with a line saying so) where zkCli.sh is not installed; `.ci/run` installs it.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::Node;

const ZKCLI: &str = "/usr/share/zookeeper/bin/zkCli.sh";
/// How long a shell may take to print what a step expects (JVM start, session expiry).
const EXPECT_TIMEOUT_MS: u64 = 60_000;

/// One zkCli.sh process fed commands on stdin; everything it prints is collected.
struct Shell {
    name: &'static str,
    child: Child,
    stdin: ChildStdin,
    out: Arc<Mutex<String>>,
    /// Output before this offset was matched by an earlier `expect`.
    seen: usize,
}

impl Shell {
    fn start(name: &'static str, server: SocketAddr) -> Shell {
        Shell::start_with(name, &server.to_string())
    }

    /// `servers`: zkCli.sh's `-server` list, `HOST:PORT,HOST:PORT,...`.
    fn start_with(name: &'static str, servers: &str) -> Shell {
        let mut child = Command::new(ZKCLI)
            .args(["-server", servers])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("start zkCli.sh");
        let out = Arc::new(Mutex::new(String::new()));
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let out = out.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let mut o = out.lock().unwrap();
                    o.push_str(&line);
                    o.push('\n');
                }
            });
        }
        let stdin = child.stdin.take().unwrap();
        Shell {
            name,
            child,
            stdin,
            out,
            seen: 0,
        }
    }

    fn send(&mut self, command: &str) {
        writeln!(self.stdin, "{command}").expect("write to zkCli.sh");
        self.stdin.flush().unwrap();
    }

    /// Waits until the output after the last match contains `text`.
    fn expect(&mut self, text: &str) {
        let deadline = Instant::now() + Duration::from_millis(EXPECT_TIMEOUT_MS);
        loop {
            {
                let out = self.out.lock().unwrap();
                if let Some(at) = out[self.seen..].find(text) {
                    self.seen += at + text.len();
                    return;
                }
                assert!(
                    Instant::now() < deadline,
                    "{}: no {text:?} within {EXPECT_TIMEOUT_MS} ms; output:\n{}",
                    self.name,
                    *out
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn output_since_last_match(&self) -> String {
        self.out.lock().unwrap()[self.seen..].to_string()
    }

    /// Like Ctrl+C in the walk-through: the client dies without closing its session.
    fn kill(&mut self) {
        let pgid = nix::unistd::Pid::from_raw(-(self.child.id() as i32));
        let _ = nix::sys::signal::kill(pgid, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

impl Drop for Shell {
    fn drop(&mut self) {
        self.kill();
    }
}

use std::os::unix::process::CommandExt;

fn start_ensemble(dir: &Path) -> (Vec<Node>, Vec<SocketAddr>) {
    let flags = support::ensemble_flags(3, &[]);
    let mut nodes = Vec::new();
    let mut zk = Vec::new();
    for (i, mut f) in flags.into_iter().enumerate() {
        let addr: SocketAddr = format!("127.0.0.1:{}", support::free_port())
            .parse()
            .unwrap();
        f.extend(["--zk-addr".to_string(), addr.to_string()]);
        nodes.push(Node::start(
            i as u64 + 1,
            &dir.join(format!("n{}", i + 1)),
            &f,
        ));
        zk.push(addr);
    }
    (nodes, zk)
}

#[test]
fn zkcli_leader_election_walkthrough() {
    if !Path::new(ZKCLI).exists() {
        eprintln!("skipping: {ZKCLI} is not installed (apt-get install zookeeper)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_nodes, zk) = start_ensemble(dir.path());

    // Terminal 1: the parent node and the first candidate. zkCli retries its connection until
    // the ensemble has a leader.
    let mut t1 = Shell::start("terminal 1", zk[0]);
    t1.expect("state:SyncConnected type:None");
    t1.send(r#"create /election "election""#);
    t1.expect("Created /election");
    t1.send(r#"create -e -s /election/leader_ "node1""#);
    t1.expect("Created /election/leader_0000000000");

    // Terminals 2 and 3, on the other nodes: each watches its predecessor.
    let mut t2 = Shell::start("terminal 2", zk[1]);
    t2.expect("state:SyncConnected type:None");
    t2.send(r#"create -e -s /election/leader_ "node2""#);
    t2.expect("Created /election/leader_0000000001");
    t2.send("stat -w /election/leader_0000000000");
    t2.expect("ephemeralOwner");

    let mut t3 = Shell::start("terminal 3", zk[2]);
    t3.expect("state:SyncConnected type:None");
    t3.send(r#"create -e -s /election/leader_ "node3""#);
    t3.expect("Created /election/leader_0000000002");
    t3.send("stat -w /election/leader_0000000001");
    t3.expect("ephemeralOwner");

    // Step 3: the smallest sequence number leads.
    t3.send("ls /election");
    t3.expect("[leader_0000000000, leader_0000000001, leader_0000000002]");
    t3.send("get /election/leader_0000000000");
    t3.expect("node1");

    // Step 4: the leader's client dies; its session expires on the ensemble and its ephemeral
    // node goes. Terminal 2's watch fires.
    t1.kill();
    t2.expect("WatchedEvent state:SyncConnected type:NodeDeleted path:/election/leader_0000000000");
    t2.send("ls /election");
    t2.expect("[leader_0000000001, leader_0000000002]");
    // Terminal 3 watches the new leader, which is alive: nothing fired there.
    assert!(
        !t3.output_since_last_match().contains("NodeDeleted"),
        "terminal 3's watch fired although its predecessor lives:\n{}",
        t3.output_since_last_match()
    );

    // The new leader quits cleanly (closeSession): its node goes at once, terminal 3 leads.
    t2.send("quit");
    t3.expect("WatchedEvent state:SyncConnected type:NodeDeleted path:/election/leader_0000000001");
    t3.send("ls /election");
    t3.expect("[leader_0000000002]");
}

#[test]
fn zkcli_commands_beyond_the_walkthrough() {
    if !Path::new(ZKCLI).exists() {
        eprintln!("skipping: {ZKCLI} is not installed (apt-get install zookeeper)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let zk: SocketAddr = format!("127.0.0.1:{}", support::free_port())
        .parse()
        .unwrap();
    let _node = Node::start(
        1,
        &dir.path().join("n1"),
        &["--zk-addr".to_string(), zk.to_string()],
    );
    let mut sh = Shell::start("zkCli", zk);
    sh.expect("state:SyncConnected type:None");
    // Each command, then what zkCli.sh prints for it.
    let steps: &[(&str, &str)] = &[
        ("create /a x", "Created /a"),
        ("create /a/b", "Created /a/b"),
        ("create /a/b/c", "Created /a/b/c"),
        ("getAllChildrenNumber /a", "\n2\n"),
        ("sync /a", "Sync is OK"),
        ("get -w /a", "\nx\n"),
        ("removewatches /a -d", "type:DataWatchRemoved path:/a"),
        ("removewatches /a -d", "No such watcher for /a"),
        ("getAcl /a", "'world,'anyone\n: cdrwa"),
        ("setAcl /a digest:u:p:cdrwa", "Acl is not valid : /a"),
        ("create -c /cont", "Created /cont"),
        ("create /cont/x", "Created /cont/x"),
        ("delete /cont/x", ""),
        // The container went with its last child.
        ("ls /", "[a, zookeeper]"),
        ("ls -s /a", "numChildren = 1"),
        ("create /a/b", "Node already exists: /a/b"),
        ("delete /a", "Node not empty: /a"),
        ("set -v 7 /a y", "version No is not valid : /a"),
        ("deleteall /a", ""),
        ("ls /", "[zookeeper]"),
    ];
    for (command, answer) in steps {
        sh.send(command);
        sh.expect(answer);
    }
}

/// `srvr`'s `Connections:` count of the ZooKeeper port at `addr` (this query's own included).
fn connections(addr: SocketAddr) -> Option<u64> {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.write_all(b"srvr").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.lines()
        .find_map(|l| l.strip_prefix("Connections: "))
        .and_then(|n| n.trim().parse().ok())
}

#[test]
fn zkcli_watch_survives_a_reconnect_to_another_node() {
    if !Path::new(ZKCLI).exists() {
        eprintln!("skipping: {ZKCLI} is not installed (apt-get install zookeeper)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (mut nodes, zk) = start_ensemble(dir.path());
    let all = zk
        .iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(",");
    // The watcher may use any node; it picks one at random.
    let mut w = Shell::start_with("watcher", &all);
    w.expect("state:SyncConnected type:None");
    w.send("create /w v0");
    w.expect("Created /w");
    w.send("get -w /w");
    w.expect("\nv0\n");

    // Kill the node the watcher is connected to (the only one with a client besides the
    // `srvr` query itself). Its watch lived there only.
    let deadline = Instant::now() + Duration::from_millis(EXPECT_TIMEOUT_MS);
    let under = loop {
        if let Some(i) = (0..3).find(|i| connections(zk[*i]) == Some(2)) {
            break i;
        }
        assert!(
            Instant::now() < deadline,
            "no node shows the watcher's connection"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    nodes[under].kill9();
    w.expect("state:Disconnected");
    w.expect("state:SyncConnected type:None");

    // The Java client set its watch again on the node it reconnected to (setWatches), so a
    // change made through another node fires it there.
    let mut s = Shell::start("setter", zk[(under + 1) % 3]);
    s.expect("state:SyncConnected type:None");
    s.send("set /w v1");
    w.expect("WatchedEvent state:SyncConnected type:NodeDataChanged path:/w");
}
