//! Hostile peers against a real ensemble (issue 11): a process that can reach the peer ports
//! but does not know the ensemble secret must not be heard, nor hold the slots real members
//! need. The ensemble must keep electing and serving meanwhile, and a restarted follower must
//! rejoin.

mod support;

use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use support::{Api, Node, ensemble_flags, eventually};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TICK: &str = "100";
/// Connections the slot hog keeps open, all claiming one member's id.
const HOG_CONNECTIONS: usize = 70;
/// How long the test waits for a refused connection to be closed.
const CLOSE_WAIT_MS: u64 = 15_000;

struct Ensemble {
    _dir: TempDir,
    nodes: Vec<Node>,
    peer_addrs: Vec<SocketAddr>,
}

impl Ensemble {
    fn start(n: u64) -> Ensemble {
        let dir = tempfile::tempdir().expect("tempdir");
        let secret = dir.path().join("peer-secret");
        std::fs::write(&secret, "a secret only the members know\n").unwrap();
        let secret = secret.display().to_string();
        let flags = ensemble_flags(n, &["--tick-ms", TICK, "--peer-secret-file", &secret]);
        let peer_addrs = flags[0][1]
            .split(',')
            .map(|e| e.split_once('=').unwrap().1.parse().unwrap())
            .collect();
        let nodes = flags
            .into_iter()
            .enumerate()
            .map(|(i, f)| {
                let id = i as u64 + 1;
                Node::start(id, &dir.path().join(format!("n{id}")), &f)
            })
            .collect();
        Ensemble {
            _dir: dir,
            nodes,
            peer_addrs,
        }
    }

    fn node(&self, id: u64) -> &Node {
        &self.nodes[id as usize - 1]
    }

    /// A leader that a quorum follows, among `ids`.
    async fn leader_among(&self, ids: &[u64]) -> u64 {
        let apis: Vec<(u64, Api)> = ids.iter().map(|&i| (i, self.node(i).api())).collect();
        let total = self.nodes.len();
        eventually("a leader followed by a quorum", || async {
            let mut leaders = Vec::new();
            let mut following = std::collections::BTreeMap::<u64, usize>::new();
            for (id, api) in &apis {
                let Some(s) = api.status().await else {
                    continue;
                };
                if s["role"] == "leading" && s["serving"] == json!(true) {
                    leaders.push(*id);
                }
                if s["serving"] == json!(true)
                    && let Some(l) = s["leader"].as_u64()
                {
                    *following.entry(l).or_default() += 1;
                }
            }
            leaders
                .into_iter()
                .find(|id| following.get(id).copied().unwrap_or(0) * 2 > total)
        })
        .await
    }

    /// Waits until `id` serves, then writes through it.
    async fn write_through(&self, id: u64, path: &str) {
        let api = self.node(id).api();
        let session = api.session(20_000).await;
        eventually("a write through the node", || async {
            let reply = api.create(session, path, "v", "persistent").await;
            reply.status.is_success().then_some(())
        })
        .await;
    }
}

/// A frame of the peer protocol: `[u32 BE length][u8 version][JSON]`.
fn frame(payload: &serde_json::Value) -> Vec<u8> {
    let payload = serde_json::to_vec(payload).unwrap();
    let mut out = ((payload.len() + 1) as u32).to_be_bytes().to_vec();
    out.push(keeper::shell::PEER_FRAME_VERSION);
    out.extend_from_slice(&payload);
    out
}

fn hello(from: u64, to: u64) -> Vec<u8> {
    frame(&json!({ "from": from, "to": to, "version": keeper::shell::PEER_FRAME_VERSION }))
}

/// Reads until the node closes the connection; panics if it is held open.
async fn assert_closed(conn: &mut TcpStream, what: &str) {
    let closed = tokio::time::timeout(Duration::from_millis(CLOSE_WAIT_MS), async {
        let mut buf = [0u8; 1024];
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "{what}: the node held the connection open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unauthenticated_peer_is_refused_and_closed() {
    let e = Ensemble::start(3);
    let leader = e.leader_among(&[1, 2, 3]).await;
    let follower = [1, 2, 3].into_iter().find(|&i| i != leader).unwrap();
    let to = e.peer_addrs[leader as usize - 1];

    // A member's id and an empty proof (what a member without the secret sends).
    let mut conn = TcpStream::connect(to).await.unwrap();
    let mut bytes = hello(follower, leader);
    bytes.extend(frame(&json!({ "proof": "" })));
    let _ = conn.write_all(&bytes).await;
    assert_closed(&mut conn, "an empty proof").await;

    // A wrong proof, and a forged proof of the right length.
    for proof in ["00", &"ab".repeat(32)] {
        let mut conn = TcpStream::connect(to).await.unwrap();
        conn.write_all(&hello(follower, leader)).await.unwrap();
        let _ = conn.write_all(&frame(&json!({ "proof": proof }))).await;
        assert_closed(&mut conn, "a wrong proof").await;
    }
    // Garbage instead of a hello.
    let mut conn = TcpStream::connect(to).await.unwrap();
    let _ = conn.write_all(&[0xff; 64]).await;
    assert_closed(&mut conn, "garbage").await;

    // The ensemble did not notice: same leader, writes go through every node.
    assert_eq!(e.leader_among(&[1, 2, 3]).await, leader);
    for id in [1, 2, 3] {
        e.write_through(id, &format!("/w{id}")).await;
    }
    let log = e.node(leader).log();
    assert!(
        log.contains("refusing a peer connection: wrong proof"),
        "the leader says why it refused; log:\n{log}"
    );
}

/// Seventy connections claiming member 2's id, reopened as soon as the node drops them, at
/// every node: a restarted member still rejoins, and the ensemble elects a new leader when the
/// old one dies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_hog_claiming_a_member_id_does_not_keep_members_out() {
    let mut e = Ensemble::start(3);
    let leader = e.leader_among(&[1, 2, 3]).await;

    let stop = Arc::new(AtomicBool::new(false));
    let opened = Arc::new(AtomicUsize::new(0));
    let mut hogs = Vec::new();
    for (i, &addr) in e.peer_addrs.iter().enumerate() {
        let to = i as u64 + 1;
        for _ in 0..HOG_CONNECTIONS {
            let (stop, opened) = (stop.clone(), opened.clone());
            hogs.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let Ok(mut conn) = TcpStream::connect(addr).await else {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    };
                    opened.fetch_add(1, Ordering::Relaxed);
                    let _ = conn.write_all(&hello(2, to)).await;
                    // Hold it, saying nothing more, until the node closes it.
                    let mut buf = [0u8; 256];
                    while let Ok(n) = conn.read(&mut buf).await {
                        if n == 0 || stop.load(Ordering::Relaxed) {
                            break;
                        }
                    }
                }
            }));
        }
    }
    eventually("the hog to open its connections", || async {
        (opened.load(Ordering::Relaxed) >= 3 * HOG_CONNECTIONS).then_some(())
    })
    .await;

    // Restart member 2 itself (the id the hog claims) and another follower: both rejoin.
    let followers: Vec<u64> = [1, 2, 3].into_iter().filter(|&i| i != leader).collect();
    for &id in &followers {
        let node = &mut e.nodes[id as usize - 1];
        node.kill9();
        node.restart();
        e.leader_among(&[1, 2, 3]).await;
        e.write_through(id, &format!("/rejoined{id}")).await;
    }
    // Kill the leader: the other two elect a new one and serve.
    e.nodes[leader as usize - 1].kill9();
    let new_leader = e.leader_among(&followers).await;
    assert_ne!(new_leader, leader);
    for &id in &followers {
        e.write_through(id, &format!("/after{id}")).await;
    }
    stop.store(true, Ordering::Relaxed);
    for hog in hogs {
        hog.abort();
    }
    assert!(
        opened.load(Ordering::Relaxed) > 3 * HOG_CONNECTIONS,
        "the nodes kept closing the hog's connections"
    );
}

/// Without a secret the node runs, and says so once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_secret_a_member_warns_once() {
    let dir = tempfile::tempdir().unwrap();
    let flags = ensemble_flags(3, &["--tick-ms", TICK]);
    // The warning comes before the ready line `Node::start` waits for.
    let node = Node::start(1, &dir.path().join("n1"), &flags[0]);
    let warnings = node.log().matches("no peer secret").count();
    assert_eq!(warnings, 1, "log:\n{}", node.log());
}
