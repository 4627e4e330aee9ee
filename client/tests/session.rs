//! The library against a real keeperd: typed operations, error classification, watches,
//! session close and expiry, failover past a dead server.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use common::{Keeperd, free_port};
use keeper_client::api::{
    ANY_VERSION, Consistency, CreateMode, CreateRequest, ErrorCode, EventKind, Op, OpResult,
    ReadRequest,
};
use keeper_client::{ClientConfig, Error, Event, NodeClient, Session, SessionState};

/// Longest wait for a watch event.
const EVENT_TIMEOUT_MS: u64 = 10_000;

async fn session(server: &Keeperd) -> Session {
    Session::connect(ClientConfig::new([server.url.clone()]))
        .await
        .expect("connect")
}

fn code(result: Result<impl std::fmt::Debug, Error>) -> ErrorCode {
    let error = result.expect_err("an error");
    assert!(!error.is_indeterminate(), "{error} should be definite");
    error.code()
}

async fn next_event(events: &mut tokio::sync::mpsc::Receiver<Event>) -> Event {
    tokio::time::timeout(Duration::from_millis(EVENT_TIMEOUT_MS), events.recv())
        .await
        .expect("an event in time")
        .expect("the session is open")
}

/// The next watch event, skipping stream reconnections.
async fn next_watch(events: &mut tokio::sync::mpsc::Receiver<Event>) -> (EventKind, String) {
    loop {
        match next_event(events).await {
            Event::Watch(w) => return (w.kind, w.path),
            Event::Disconnected => continue,
            other => panic!("expected a watch event, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_operations_and_definite_errors() {
    let server = Keeperd::start().await;
    let s = session(&server).await;

    assert_eq!(
        s.create("/a", "one", CreateMode::Persistent).await.unwrap(),
        "/a"
    );
    assert_eq!(
        code(s.create("/a", "x", CreateMode::Persistent).await),
        ErrorCode::NodeExists
    );
    assert_eq!(
        code(s.create("/no/parent", "", CreateMode::Persistent).await),
        ErrorCode::NoNode
    );
    assert_eq!(
        code(s.create("bad", "", CreateMode::Persistent).await),
        ErrorCode::BadArguments
    );

    let (data, stat) = s.get_data("/a", false).await.unwrap();
    assert_eq!(data, "one");
    assert_eq!(stat.version, 0);
    assert!(stat.czxid <= s.last_zxid());

    // set_data is a compare-and-set on the version.
    let stat = s.set_data("/a", "two", 0).await.unwrap();
    assert_eq!(stat.version, 1);
    assert_eq!(
        code(s.set_data("/a", "three", 0).await),
        ErrorCode::BadVersion
    );
    assert_eq!(s.get_data("/a", false).await.unwrap().0, "two");

    assert_eq!(s.exists("/missing", false).await.unwrap(), None);
    assert_eq!(code(s.get_data("/missing", false).await), ErrorCode::NoNode);

    let first = s
        .create("/a/s-", "", CreateMode::PersistentSequential)
        .await
        .unwrap();
    let second = s
        .create("/a/s-", "", CreateMode::PersistentSequential)
        .await
        .unwrap();
    assert_eq!(first, "/a/s-0000000000");
    assert_eq!(second, "/a/s-0000000001");
    assert_eq!(
        s.get_children("/a", false).await.unwrap(),
        vec!["s-0000000000", "s-0000000001"]
    );
    assert_eq!(code(s.delete("/a", ANY_VERSION).await), ErrorCode::NotEmpty);

    s.create("/e", "", CreateMode::Ephemeral).await.unwrap();
    assert_eq!(
        code(s.create("/e/child", "", CreateMode::Persistent).await),
        ErrorCode::NoChildrenForEphemerals
    );

    // A multi applies all or nothing and reports every op's outcome when it fails.
    let ops = vec![
        Op::Create {
            path: "/m".into(),
            data: "".into(),
            mode: CreateMode::Persistent,
        },
        Op::Check {
            path: "/a".into(),
            version: 99,
        },
    ];
    let failed = s.multi(ops).await.expect_err("a failed check");
    assert_eq!(failed.code(), ErrorCode::BadVersion);
    assert!(!failed.is_indeterminate());
    let results = failed
        .keeper()
        .and_then(|e| e.results.clone())
        .expect("per-op results");
    assert_eq!(results.len(), 2);
    assert_eq!(s.exists("/m", false).await.unwrap(), None);
    let ops = vec![
        Op::Create {
            path: "/m".into(),
            data: "".into(),
            mode: CreateMode::Persistent,
        },
        Op::Check {
            path: "/a".into(),
            version: 1,
        },
        Op::SetData {
            path: "/a".into(),
            data: "four".into(),
            version: 1,
        },
    ];
    let results = s.multi(ops).await.unwrap();
    assert!(matches!(&results[0], OpResult::Create { path, .. } if path == "/m"));
    assert!(matches!(results[1], OpResult::Check));
    assert!(matches!(&results[2], OpResult::SetData { stat } if stat.version == 2));

    s.sync("/").await.unwrap();
    s.delete("/m", ANY_VERSION).await.unwrap();
    assert_eq!(code(s.delete("/m", ANY_VERSION).await), ErrorCode::NoNode);

    s.close().await.unwrap();
    assert_eq!(s.state(), SessionState::Closed);
    assert!(matches!(s.exists("/a", false).await, Err(Error::Closed)));
    let other = session(&server).await;
    assert_eq!(
        other.exists("/e", false).await.unwrap(),
        None,
        "close removes ephemerals"
    );
    other.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transport_failures_are_classified_by_whether_the_request_left() {
    let timeout = Duration::from_millis(500);
    let request = CreateRequest {
        session: 1,
        last_zxid: 0,
        path: "/x".into(),
        data: String::new(),
        mode: CreateMode::Persistent,
    };

    // Nobody listens: the request never left, a definite failure.
    let refused = NodeClient::new(&format!("127.0.0.1:{}", free_port()), timeout).unwrap();
    let error = refused
        .create(&request)
        .await
        .expect_err("connection refused");
    assert!(matches!(error, Error::Unreachable { .. }), "{error:?}");
    assert!(!error.is_indeterminate());
    assert_eq!(error.code(), ErrorCode::NotReady);

    // A server that takes the request and never answers: indeterminate.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let holder = std::thread::spawn(move || {
        let (stream, _) = silent.accept().unwrap();
        std::thread::sleep(Duration::from_secs(2));
        drop(stream);
    });
    let node = NodeClient::new(&silent_addr.to_string(), timeout).unwrap();
    let error = node.create(&request).await.expect_err("no answer");
    assert!(matches!(error, Error::Timeout { .. }), "{error:?}");
    assert!(error.is_indeterminate());
    holder.join().unwrap();

    // A server that reads the request and hangs up: indeterminate.
    let rude = TcpListener::bind("127.0.0.1:0").unwrap();
    let rude_addr = rude.local_addr().unwrap();
    let hanger = std::thread::spawn(move || {
        let (mut stream, _) = rude.accept().unwrap();
        let mut buf = [0u8; 1024];
        let _ = stream.read(&mut buf);
        let _ = stream.write_all(b"");
        drop(stream);
    });
    let node = NodeClient::new(&rude_addr.to_string(), timeout).unwrap();
    let error = node.create(&request).await.expect_err("hung up");
    assert!(error.is_indeterminate(), "{error:?}");
    assert_eq!(error.code(), ErrorCode::ConnectionLoss);
    hanger.join().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_and_status_through_node_client() {
    let server = Keeperd::start().await;
    let node = NodeClient::new(&server.url, Duration::from_secs(5)).unwrap();
    let status = node.status().await.unwrap();
    assert!(status.serving);
    let digest = node.digest().await.unwrap();
    assert!(digest.znodes >= 1);
    // An unknown session is refused definitely.
    let request = CreateRequest {
        session: 0xdead,
        last_zxid: 0,
        path: "/x".into(),
        data: String::new(),
        mode: CreateMode::Persistent,
    };
    let error = node.create(&request).await.expect_err("unknown session");
    assert!(!error.is_indeterminate(), "{error:?}");
    // A client that has seen more than the node has applied is refused with not_ready, so it
    // never reads an older view after failing over. (Writes are ordered by the leader and
    // need no such check.)
    let s = session(&server).await;
    let ahead = ReadRequest {
        session: s.id(),
        last_zxid: s.last_zxid() + 1_000_000,
        path: "/".into(),
        watch: false,
        consistency: Consistency::Local,
    };
    let error = node
        .exists(&ahead)
        .await
        .expect_err("client ahead of the node");
    assert_eq!(error.code(), ErrorCode::NotReady);
    assert!(!error.is_indeterminate());
    s.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_arrive_on_the_event_channel() {
    let server = Keeperd::start().await;
    let watcher = session(&server).await;
    let writer = session(&server).await;
    let mut events = watcher.events();

    assert_eq!(watcher.exists("/w", true).await.unwrap(), None);
    writer
        .create("/w", "a", CreateMode::Persistent)
        .await
        .unwrap();
    assert_eq!(
        next_watch(&mut events).await,
        (EventKind::Created, "/w".to_string())
    );

    watcher.get_data("/w", true).await.unwrap();
    writer.set_data("/w", "b", ANY_VERSION).await.unwrap();
    assert_eq!(
        next_watch(&mut events).await,
        (EventKind::DataChanged, "/w".to_string())
    );

    watcher.get_children("/w", true).await.unwrap();
    writer
        .create("/w/c", "", CreateMode::Persistent)
        .await
        .unwrap();
    assert_eq!(
        next_watch(&mut events).await,
        (EventKind::ChildrenChanged, "/w".to_string())
    );

    // Watches are one-shot: a second change with no watch set sends nothing, so the next event
    // is the one for the watch set after it.
    writer.set_data("/w", "c", ANY_VERSION).await.unwrap();
    watcher.exists("/w/c", true).await.unwrap();
    writer.delete("/w/c", ANY_VERSION).await.unwrap();
    assert_eq!(
        next_watch(&mut events).await,
        (EventKind::Deleted, "/w/c".to_string())
    );

    watcher.close().await.unwrap();
    assert_eq!(next_event(&mut events).await, Event::Closed);
    writer.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_without_heartbeats_expires_and_loses_its_ephemerals() {
    let server = Keeperd::start().await;
    let mut config = ClientConfig::new([server.url.clone()]);
    config.session_timeout = Duration::from_millis(2_000);
    let doomed = Session::connect(config).await.unwrap();
    let mut events = doomed.events();
    doomed
        .create("/mine", "", CreateMode::Ephemeral)
        .await
        .unwrap();
    doomed.set_heartbeats(false);

    let bound = doomed.timeout() * 3 + Duration::from_millis(EVENT_TIMEOUT_MS);
    let ended = tokio::time::timeout(bound, async {
        loop {
            match events.recv().await {
                Some(Event::Expired) => return true,
                Some(_) => continue,
                None => return false,
            }
        }
    })
    .await
    .expect("expiry reported in time");
    assert!(ended, "the channel reports Expired before it ends");
    assert_eq!(doomed.state(), SessionState::Expired);
    assert_eq!(
        code(doomed.exists("/mine", false).await),
        ErrorCode::SessionExpired
    );

    let observer = session(&server).await;
    assert_eq!(observer.exists("/mine", false).await.unwrap(), None);
    observer.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_skips_a_dead_server_and_reads_follow_the_session() {
    let server = Keeperd::start().await;
    let dead = format!("http://127.0.0.1:{}", free_port());
    let s = Session::connect(ClientConfig::new([dead, server.url.clone()]))
        .await
        .expect("the live server takes the session");
    assert_eq!(s.current_server(), server.url);
    s.create("/f", "x", CreateMode::Persistent).await.unwrap();
    let linear = s.with_consistency(keeper_client::api::Consistency::Linearizable);
    assert_eq!(linear.get_data("/f", false).await.unwrap().0, "x");
    let synced = s.with_consistency(keeper_client::api::Consistency::Sync);
    assert_eq!(synced.get_data("/f", false).await.unwrap().0, "x");
    s.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_last_handle_stops_heartbeats_so_the_session_expires() {
    let server = Keeperd::start().await;
    let mut config = ClientConfig::new([server.url.clone()]);
    config.session_timeout = Duration::from_millis(2_000);
    let dropped = Session::connect(config).await.unwrap();
    let timeout = dropped.timeout();
    dropped
        .create("/dropped", "", CreateMode::Ephemeral)
        .await
        .unwrap();
    let clone = dropped.clone();
    drop(dropped);
    // A clone keeps the session alive...
    tokio::time::sleep(timeout * 2).await;
    assert!(clone.exists("/dropped", false).await.unwrap().is_some());
    drop(clone);

    // ...and once the last handle is gone the server expires it.
    let observer = session(&server).await;
    let bound = tokio::time::Instant::now() + timeout * 3 + Duration::from_millis(EVENT_TIMEOUT_MS);
    while observer.exists("/dropped", false).await.unwrap().is_some() {
        assert!(
            tokio::time::Instant::now() < bound,
            "the session outlived its last handle"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    observer.close().await.unwrap();
}
