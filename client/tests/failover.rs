//! A session over a real 3-node ensemble survives the crash of the server it talks to.

mod common;

use std::time::Duration;

use common::Ensemble;
use keeper_client::api::{CreateMode, ErrorCode};
use keeper_client::{ClientConfig, Error, Event, Session};

/// Longest the ensemble may take to elect a new leader and serve again.
const RECOVERY_TIMEOUT_MS: u64 = 30_000;

/// Retries `op` while it fails definitely with `not_ready` (nothing happened, so retrying is
/// safe), up to [`RECOVERY_TIMEOUT_MS`].
async fn when_ready<T, F, Fut>(op: F) -> Result<T, Error>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_millis(RECOVERY_TIMEOUT_MS);
    loop {
        match op().await {
            Err(e)
                if !e.is_indeterminate()
                    && e.code() == ErrorCode::NotReady
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            other => return other,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_fails_over_when_its_server_crashes() {
    let mut ensemble = Ensemble::start(3).await;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(RECOVERY_TIMEOUT_MS);
    let leader = loop {
        if let Some(leader) = ensemble.leader().await {
            break leader;
        }
        assert!(tokio::time::Instant::now() < deadline, "no leader elected");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Start the session on the leader: its crash also forces an election.
    let mut servers = ensemble.urls();
    servers.rotate_left(leader);
    let mut config = ClientConfig::new(servers);
    config.request_timeout = Duration::from_millis(RECOVERY_TIMEOUT_MS / 2);
    config.session_timeout = Duration::from_millis(10_000);
    let session = when_ready(|| Session::connect(config.clone()))
        .await
        .expect("connect");
    assert_eq!(session.current_server(), ensemble.nodes[leader].url);
    let mut events = session.events();
    session
        .create("/eph", "mine", CreateMode::Ephemeral)
        .await
        .unwrap();
    session
        .create("/p", "kept", CreateMode::Persistent)
        .await
        .unwrap();
    let seen = session.last_zxid();

    ensemble.nodes[leader].kill();

    // A read fails over and still sees everything this session saw.
    let (data, _) = when_ready(|| session.get_data("/p", false)).await.unwrap();
    assert_eq!(data, "kept");
    assert_ne!(session.current_server(), ensemble.nodes[leader].url);
    assert!(session.last_zxid() >= seen);
    // The session moved, so its event stream did too: the user hears about it.
    let disconnected = tokio::time::timeout(Duration::from_millis(RECOVERY_TIMEOUT_MS), async {
        loop {
            match events.recv().await {
                Some(Event::Disconnected) => return true,
                Some(Event::Watch(_)) => continue,
                _ => return false,
            }
        }
    })
    .await
    .expect("an event in time");
    assert!(disconnected, "Disconnected reported after the failover");

    // Writes go on under the same session, and its ephemeral node outlived the crash.
    // A write caught by the crash may end indeterminate (the client never retries it blindly);
    // then it is retried by hand, and `node_exists` means the earlier attempt took effect.
    let deadline = tokio::time::Instant::now() + Duration::from_millis(RECOVERY_TIMEOUT_MS);
    loop {
        match when_ready(|| session.create("/after", "", CreateMode::Persistent)).await {
            Ok(_) => break,
            Err(e) if e.code() == ErrorCode::NodeExists => break,
            Err(e) if e.is_indeterminate() && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("write after the failover: {e}"),
        }
    }
    let (data, stat) = when_ready(|| session.get_data("/eph", false))
        .await
        .unwrap();
    assert_eq!(data, "mine");
    assert_eq!(stat.ephemeral_owner, session.id());

    session.close().await.unwrap();
    let survivors: Vec<String> = ensemble
        .urls()
        .into_iter()
        .enumerate()
        .filter(|(i, _)| *i != leader)
        .map(|(_, url)| url)
        .collect();
    let observer = when_ready(|| Session::connect(ClientConfig::new(survivors.clone())))
        .await
        .expect("connect to the survivors");
    assert_eq!(
        observer.exists("/eph", false).await.unwrap(),
        None,
        "closing removed the ephemeral node"
    );
    observer.close().await.unwrap();
}
