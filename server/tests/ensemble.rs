//! Replication on real `keeperd` processes on loopback (issue 3): elections after SIGKILL,
//! catch-up by DIFF and by SNAP, a paused leader that must step down without committing its
//! stale writes, and quorum arithmetic on five nodes. Every wait is bounded (see `support`).

mod support;

use futures::future::join_all;
use serde_json::{Value, json};
use support::{Api, Node, ensemble_flags, eventually};
use tempfile::TempDir;

const TICK: &str = "100";

struct Ensemble {
    _dir: TempDir,
    nodes: Vec<Node>,
}

impl Ensemble {
    fn start(n: u64, extra: &[&str]) -> Ensemble {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut flags = vec!["--tick-ms", TICK];
        flags.extend_from_slice(extra);
        let nodes = ensemble_flags(n, &flags)
            .into_iter()
            .enumerate()
            .map(|(i, f)| {
                let id = i as u64 + 1;
                Node::start(id, &dir.path().join(format!("n{id}")), &f)
            })
            .collect();
        Ensemble { _dir: dir, nodes }
    }

    fn node(&self, id: u64) -> &Node {
        &self.nodes[id as usize - 1]
    }

    fn node_mut(&mut self, id: u64) -> &mut Node {
        &mut self.nodes[id as usize - 1]
    }

    /// Waits for a leader that a quorum of the listed nodes follows; returns its id and epoch.
    async fn leader_among(&self, ids: &[u64]) -> (u64, u64) {
        let apis: Vec<(u64, Api)> = ids.iter().map(|&i| (i, self.node(i).api())).collect();
        eventually("a leader followed by a quorum", || async {
            let mut leaders = Vec::new();
            let mut following = std::collections::BTreeMap::<u64, usize>::new();
            for (id, api) in &apis {
                let Some(s) = api.status().await else {
                    continue;
                };
                if s["role"] == "leading" && s["serving"] == json!(true) {
                    leaders.push((*id, s["epoch"].as_u64().unwrap()));
                }
                if s["serving"] == json!(true)
                    && let Some(l) = s["leader"].as_u64()
                {
                    *following.entry(l).or_default() += 1;
                }
            }
            let total = self.nodes.len();
            leaders
                .into_iter()
                .find(|(id, _)| following.get(id).copied().unwrap_or(0) * 2 > total)
        })
        .await
    }

    /// Waits until every listed node has applied the same tree; returns the digest.
    async fn converged(&self, ids: &[u64]) -> Value {
        let apis: Vec<Api> = ids.iter().map(|&i| self.node(i).api()).collect();
        eventually("every node to apply the same tree", || async {
            let mut digests = Vec::new();
            for api in &apis {
                let reply = api.get("/v1/digest").await;
                if !reply.status.is_success() {
                    return None;
                }
                digests.push(reply.body);
            }
            let first = digests[0].clone();
            digests.iter().all(|d| *d == first).then_some(first)
        })
        .await
    }
}

/// `count` writes spread over `apis`, `concurrency` at a time; every one must succeed.
async fn write_many(apis: &[Api], session: u64, prefix: &str, count: usize, concurrency: usize) {
    for chunk in (0..count).collect::<Vec<_>>().chunks(concurrency) {
        let writes = chunk.iter().map(|&i| {
            let api = apis[i % apis.len()].clone();
            let path = format!("{prefix}{i}");
            async move {
                let reply = api.create(session, &path, "v", "persistent").await;
                assert!(reply.status.is_success(), "write {path}: {reply:?}");
            }
        });
        join_all(writes).await;
    }
}

fn signal(node: &Node, sig: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(node.pid()), sig).expect("signal keeperd");
}

/// Waits until every thread of the node's process is stopped (state `T` in /proc).
async fn wait_stopped(node: &Node) {
    let tasks = format!("/proc/{}/task", node.pid());
    eventually("the paused node's threads to stop", || {
        let tasks = tasks.clone();
        async move {
            let entries = std::fs::read_dir(&tasks).ok()?;
            let all_stopped = entries.flatten().all(|t| {
                std::fs::read_to_string(t.path().join("stat")).is_ok_and(|stat| {
                    // The state follows the command name, which is in parentheses.
                    stat.rsplit_once(") ")
                        .is_some_and(|(_, rest)| rest.starts_with('T'))
                })
            });
            all_stopped.then_some(())
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_survive_leader_and_follower_loss_and_catch_up() {
    let mut e = Ensemble::start(3, &["--snapshot-every", "300"]);
    let (leader, epoch) = e.leader_among(&[1, 2, 3]).await;
    let session = e.node(1).api().session(20_000).await;
    e.node(1)
        .api()
        .create(session, "/r", "", "persistent")
        .await
        .ok();

    // Writes through every node.
    let all: Vec<Api> = e.nodes.iter().map(|n| n.api()).collect();
    write_many(&all, session, "/r/a", 30, 6).await;

    // SIGKILL the leader: the other two elect a new one in a later epoch and take writes.
    e.node_mut(leader).kill9();
    let rest: Vec<u64> = [1, 2, 3].into_iter().filter(|&i| i != leader).collect();
    let (leader2, epoch2) = e.leader_among(&rest).await;
    assert!(epoch2 > epoch, "a new leader starts a new epoch");
    let rest_apis: Vec<Api> = rest.iter().map(|&i| e.node(i).api()).collect();
    let session = rest_apis[0].session(20_000).await;
    write_many(&rest_apis, session, "/r/b", 30, 6).await;

    // The old leader comes back behind: it is brought up to date (DIFF) and rejoins.
    e.node_mut(leader).restart();
    e.leader_among(&[1, 2, 3]).await;
    e.converged(&[1, 2, 3]).await;

    // Kill a follower; writes go on; enough writes pass while it is down that the leader's
    // log no longer reaches back to it, so it comes back by SNAP.
    let follower = [1, 2, 3]
        .into_iter()
        .find(|&i| i != leader2)
        .expect("a follower");
    e.node_mut(follower).kill9();
    let live: Vec<Api> = [1, 2, 3]
        .into_iter()
        .filter(|&i| i != follower)
        .map(|i| e.node(i).api())
        .collect();
    write_many(&live, session, "/r/c", 1_400, 24).await;
    e.node_mut(follower).restart();
    e.leader_among(&[1, 2, 3]).await;
    let digest = e.converged(&[1, 2, 3]).await;
    let leader_log = e.node(leader2).log();
    assert!(
        leader_log.contains("by DIFF"),
        "some follower was synced by DIFF"
    );
    assert!(
        leader_log.contains(&format!("syncing follower {follower} by SNAP")),
        "the follower that missed 1,400 writes was synced by SNAP; leader log:\n{}",
        leader_log
            .lines()
            .filter(|l| l.contains("syncing"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // Every write is there: 1 + 30 + 30 + 1400 children in all, on every node.
    let count = e
        .node(follower)
        .api()
        .children(session, "/r", false)
        .await
        .ok()["children"]
        .as_array()
        .map(|c| c.len())
        .unwrap_or(0);
    assert_eq!(count, 30 + 30 + 1_400);
    assert_eq!(digest["znodes"], json!(3 + 30 + 30 + 1_400));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_leader_steps_down_and_its_stale_writes_never_commit() {
    let e = Ensemble::start(3, &[]);
    let (leader, epoch) = e.leader_among(&[1, 2, 3]).await;
    let api = e.node(leader).api();
    let session = api.session(2_000).await;
    api.create(session, "/p", "", "persistent").await.ok();

    signal(e.node(leader), nix::sys::signal::Signal::SIGSTOP);
    // The stop is asynchronous: a write that reaches the leader before every thread has
    // stopped may still be proposed, and legitimately committed by the next leader.
    wait_stopped(e.node(leader)).await;
    // While it is stopped, a write sent to it waits in its socket buffer.
    let stale = tokio::spawn({
        let api = api.clone();
        async move {
            api.try_post(
                "/v1/create",
                json!({"session": session, "path": "/p/stale", "data": "x"}),
            )
            .await
        }
    });
    let rest: Vec<u64> = [1, 2, 3].into_iter().filter(|&i| i != leader).collect();
    let (_, epoch2) = e.leader_among(&rest).await;
    assert!(epoch2 > epoch);
    // Longer than the new leader's wait for a silent session (two session timeouts of 2 s,
    // `SESSION_CLOCK_MARGIN`) and the sync limit (5 ticks).
    tokio::time::sleep(std::time::Duration::from_millis(5_000)).await;
    signal(e.node(leader), nix::sys::signal::Signal::SIGCONT);

    // The stale write fails or times out; it must never be committed anywhere.
    let reply = stale.await.expect("join");
    if let Ok(r) = &reply {
        assert!(
            !r.status.is_success(),
            "a write sent to a deposed leader succeeded: {r:?}"
        );
    }
    // The old leader rejoins as a follower of the new epoch.
    let old = e.node(leader).api();
    eventually("the old leader to follow the new one", || async {
        old.status().await.filter(|s| {
            s["role"] == "following"
                && s["serving"] == json!(true)
                && s["epoch"].as_u64() >= Some(epoch2)
        })
    })
    .await;
    e.converged(&[1, 2, 3]).await;
    let reader = e.node(rest[0]).api();
    let s2 = reader.session(10_000).await;
    let exists = reader.exists(s2, "/p/stale", false).await.ok();
    assert_eq!(exists["stat"], Value::Null, "the stale write was committed");
    // The session on the paused leader expired meanwhile: the new leader decided it.
    let r = reader.exists(session, "/p", false).await;
    assert_eq!(r.body["error"], "session_expired", "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_commit_with_two_down_but_not_with_three() {
    let mut e = Ensemble::start(5, &["--request-timeout-ms", "2000"]);
    let (leader, _) = e.leader_among(&[1, 2, 3, 4, 5]).await;
    let followers: Vec<u64> = (1..=5).filter(|&i| i != leader).collect();
    e.node_mut(followers[0]).kill9();
    e.node_mut(followers[1]).kill9();
    let api = e.node(leader).api();
    let session = api.session(20_000).await;
    api.create(session, "/two-down", "", "persistent")
        .await
        .ok();

    e.node_mut(followers[2]).kill9();
    // Two of five left: no quorum. The leader steps down; nothing commits.
    let r = api
        .try_post(
            "/v1/create",
            json!({"session": session, "path": "/three-down", "data": ""}),
        )
        .await;
    if let Ok(r) = &r {
        assert!(
            !r.status.is_success(),
            "a write committed without a quorum: {r:?}"
        );
    }
    eventually("the leader to step down", || async {
        api.status().await.filter(|s| s["serving"] == json!(false))
    })
    .await;
    // Bring one back: a quorum again, and what was acknowledged with two down is there. (The
    // write made without a quorum was never acknowledged; ZAB may still commit it later if its
    // proposer leads again, as ZooKeeper may: its outcome was reported as unknown.)
    e.node_mut(followers[2]).restart();
    let live: Vec<u64> = (1..=5)
        .filter(|&i| i != followers[0] && i != followers[1])
        .collect();
    let (l, _) = e.leader_among(&live).await;
    let api = e.node(l).api();
    let s = api.session(10_000).await;
    assert!(api.exists(s, "/two-down", false).await.ok()["stat"].is_object());
    e.converged(&live).await;
}
