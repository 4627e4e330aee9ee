//! The election and lock recipes against a real keeperd.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::Keeperd;
use keeper_client::api::{ANY_VERSION, CreateMode};
use keeper_client::{ClientConfig, LeaderElection, Lock, Session};

/// Longest a contender may wait for leadership after its predecessors left.
const TAKEOVER_TIMEOUT_MS: u64 = 15_000;

async fn session(server: &Keeperd) -> Session {
    Session::connect(ClientConfig::new([server.url.clone()]))
        .await
        .expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lowest_leads_and_the_next_takes_over_with_a_larger_token() {
    let server = Keeperd::start().await;
    let sessions = [
        session(&server).await,
        session(&server).await,
        session(&server).await,
    ];
    let mut contenders = Vec::new();
    for (i, s) in sessions.iter().enumerate() {
        contenders.push(
            LeaderElection::join(s, "/election", &format!("node{i}"))
                .await
                .expect("join"),
        );
    }
    let mut leaders = 0;
    for c in &contenders {
        if c.is_leader().await.unwrap() {
            leaders += 1;
        }
    }
    assert_eq!(leaders, 1, "exactly one leader");
    assert!(
        contenders[0].is_leader().await.unwrap(),
        "the first to join has the lowest number"
    );
    let tokens: Vec<u64> = contenders.iter().map(|c| c.fencing_token()).collect();
    assert!(
        tokens.windows(2).all(|w| w[0] < w[1]),
        "tokens grow: {tokens:?}"
    );
    assert!(
        contenders[0]
            .wait_until_leader(Duration::from_millis(10))
            .await
            .unwrap()
    );
    assert!(
        !contenders[2]
            .wait_until_leader(Duration::from_millis(200))
            .await
            .unwrap()
    );

    let mut contenders = contenders.into_iter();
    let first = contenders.next().unwrap();
    let mut second = contenders.next().unwrap();
    let mut third = contenders.next().unwrap();

    // The leader's session dies: the next contender takes over.
    let waiting = tokio::spawn(async move {
        let led = second
            .wait_until_leader(Duration::from_millis(TAKEOVER_TIMEOUT_MS))
            .await;
        (led, second)
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    sessions[0].close().await.unwrap();
    drop(first);
    let (led, second) = waiting.await.unwrap();
    assert!(
        led.unwrap(),
        "the second contender leads after the first's session closed"
    );
    assert!(second.fencing_token() > tokens[0]);
    assert!(!third.is_leader().await.unwrap());

    // The leader resigns: the third takes over.
    second.resign().await.unwrap();
    assert!(
        third
            .wait_until_leader(Duration::from_millis(TAKEOVER_TIMEOUT_MS))
            .await
            .unwrap()
    );
    assert!(third.fencing_token() > tokens[1]);
    for s in &sessions[1..] {
        s.close().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lock_excludes_and_no_update_is_lost() {
    const WORKERS: usize = 4;
    const ROUNDS: usize = 5;
    let server = Keeperd::start().await;
    let setup = session(&server).await;
    setup
        .create("/counter", "0", CreateMode::Persistent)
        .await
        .unwrap();
    let inside = Arc::new(AtomicUsize::new(0));

    let mut tasks = Vec::new();
    for _ in 0..WORKERS {
        let s = session(&server).await;
        let inside = inside.clone();
        tasks.push(tokio::spawn(async move {
            let mut lock = Lock::new(&s, "/locks");
            let mut tokens = Vec::new();
            for _ in 0..ROUNDS {
                let held = lock
                    .acquire(Duration::from_millis(TAKEOVER_TIMEOUT_MS * 2))
                    .await
                    .expect("acquire");
                assert!(held, "lock acquired in time");
                tokens.push(lock.fencing_token().expect("a held lock has a token"));
                assert_eq!(
                    inside.fetch_add(1, Ordering::SeqCst),
                    0,
                    "two holders at once"
                );
                // An unconditional read-modify-write: only mutual exclusion keeps it exact.
                let (value, _) = s.get_data("/counter", false).await.unwrap();
                let next: u64 = value.parse::<u64>().unwrap() + 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
                s.set_data("/counter", &next.to_string(), ANY_VERSION)
                    .await
                    .unwrap();
                inside.fetch_sub(1, Ordering::SeqCst);
                lock.release().await.expect("release");
                assert!(!lock.is_held());
            }
            s.close().await.unwrap();
            tokens
        }));
    }
    let mut all_tokens = Vec::new();
    for task in tasks {
        all_tokens.extend(task.await.expect("worker"));
    }
    let (value, _) = setup.get_data("/counter", false).await.unwrap();
    assert_eq!(value, (WORKERS * ROUNDS).to_string(), "no update lost");
    all_tokens.sort();
    all_tokens.dedup();
    assert_eq!(
        all_tokens.len(),
        WORKERS * ROUNDS,
        "every holder had its own token"
    );
    setup.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_that_times_out_leaves_the_queue() {
    let server = Keeperd::start().await;
    let holder_session = session(&server).await;
    let waiter_session = session(&server).await;
    let mut holder = Lock::new(&holder_session, "/l");
    assert!(holder.acquire(Duration::from_secs(5)).await.unwrap());
    let mut waiter = Lock::new(&waiter_session, "/l");
    assert!(!waiter.acquire(Duration::from_millis(300)).await.unwrap());
    assert_eq!(waiter.node_path(), None);
    assert_eq!(
        holder_session
            .get_children("/l", false)
            .await
            .unwrap()
            .len(),
        1
    );
    holder.release().await.unwrap();
    assert!(waiter.acquire(Duration::from_secs(5)).await.unwrap());
    waiter.release().await.unwrap();
    holder_session.close().await.unwrap();
    waiter_session.close().await.unwrap();
}
