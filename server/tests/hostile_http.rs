//! A hostile client against an in-process node (issue 11): slow heads, bodies that never
//! arrive, huge announced bodies, idle and surplus connections, requests hyper cannot parse and
//! session ids that name no session. Each must be answered with the API's JSON error or a
//! close, within the node's limits, while other clients are served.

mod support;

use keeper::shell::{self, HttpLimits, ServerConfig};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::time::Duration;
use support::Api;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// Short limits, so the tests need not wait out the defaults.
const HEADER_READ_MS: u64 = 3_000;
const BODY_READ_MS: u64 = 1_000;
const IDLE_MS: u64 = 1_500;
/// How long a test waits for the node to close a connection; far beyond every limit above,
/// and what a connection held for ever runs into.
const CLOSE_WAIT_MS: u64 = 30_000;
/// The slowloris client's pace: one header byte this often.
const SLOWLORIS_BYTE_EVERY_MS: u64 = 2_000;

struct Node {
    _dir: tempfile::TempDir,
    addr: SocketAddr,
    stop: CancellationToken,
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn node(max_connections: usize) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::new(1, dir.path().join("data"), "127.0.0.1:0".parse().unwrap());
    config.http_limits = HttpLimits {
        header_read_ms: HEADER_READ_MS,
        body_read_ms: BODY_READ_MS,
        idle_ms: IDLE_MS,
        max_connections,
    };
    let stop = CancellationToken::new();
    let running = shell::start(config, stop.clone()).await.unwrap();
    let addr = running.client_addr;
    tokio::spawn(running.wait());
    Node {
        _dir: dir,
        addr,
        stop,
    }
}

/// Everything the node sends on a connection until it closes it; panics if it holds it.
async fn until_closed(conn: &mut TcpStream, what: &str) -> Vec<u8> {
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_millis(CLOSE_WAIT_MS), async {
        let mut buf = [0u8; 4096];
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "{what}: the node held the connection");
    got
}

/// The status and JSON body of a raw HTTP response.
fn parse_response(bytes: &[u8]) -> (u16, Value) {
    let text = String::from_utf8_lossy(bytes);
    let status = text
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {text:?}"));
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// Sends `request` and returns the node's answer once it closed the connection.
async fn exchange(addr: SocketAddr, request: &[u8]) -> (u16, Value) {
    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.write_all(request).await.unwrap();
    let got = until_closed(
        &mut conn,
        &String::from_utf8_lossy(&request[..40.min(request.len())]),
    )
    .await;
    parse_response(&got)
}

fn assert_json_error(status: u16, body: &Value, expect_status: u16, what: &str) {
    assert_eq!(status, expect_status, "{what}: {body}");
    assert_eq!(body["error"], "bad_arguments", "{what}: {body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{what}: {body}"
    );
}

async fn assert_served(api: &Api) {
    let reply = api.get("/status").await;
    assert!(
        reply.status.is_success(),
        "another client is served: {reply:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_connections_are_closed_and_others_are_served() {
    let node = node(1024).await;
    let api = Api::new(node.addr);
    let head = b"POST /v1/get_data HTTP/1.1\r\nhost: keeper\r\nx-slow: aaaaaaaaaaaaaaaaaaaa";
    let mut lorises = Vec::new();
    for _ in 0..20 {
        let mut conn = TcpStream::connect(node.addr).await.unwrap();
        conn.write_all(b"P").await.unwrap();
        lorises.push(tokio::spawn(async move {
            // One byte every two seconds until the node closes the connection.
            for &byte in &head[1..] {
                tokio::time::sleep(Duration::from_millis(SLOWLORIS_BYTE_EVERY_MS)).await;
                if conn.write_all(&[byte]).await.is_err() {
                    return true;
                }
            }
            until_closed(&mut conn, "slowloris").await;
            true
        }));
    }
    assert_served(&api).await;
    for loris in lorises {
        let closed = tokio::time::timeout(Duration::from_millis(CLOSE_WAIT_MS), loris).await;
        assert!(
            matches!(closed, Ok(Ok(true))),
            "a slowloris connection was held beyond {CLOSE_WAIT_MS} ms"
        );
    }
    assert_served(&api).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_announced_and_stalled_bodies_get_json_errors_and_a_close() {
    let node = node(1024).await;
    let api = Api::new(node.addr);
    let (status, body) = exchange(
        node.addr,
        b"POST /v1/get_data HTTP/1.1\r\nhost: keeper\r\ncontent-length: 99999999999\r\n\r\n{",
    )
    .await;
    assert_json_error(status, &body, 413, "Content-Length: 99999999999");

    // A body that stops after one byte, while another client is served.
    let mut conn = TcpStream::connect(node.addr).await.unwrap();
    conn.write_all(b"POST /v1/get_data HTTP/1.1\r\nhost: keeper\r\ncontent-length: 100\r\n\r\n{")
        .await
        .unwrap();
    assert_served(&api).await;
    let (status, body) = parse_response(&until_closed(&mut conn, "stalled body").await);
    assert_json_error(status, &body, 408, "a body that stops after one byte");
    assert_served(&api).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_surplus_connections_are_closed() {
    let node = node(4).await;
    // An idle keep-alive connection: one request answered, then silence.
    let mut idle = TcpStream::connect(node.addr).await.unwrap();
    idle.write_all(b"GET /status HTTP/1.1\r\nhost: keeper\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 12];
    idle.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    until_closed(&mut idle, "an idle keep-alive connection").await;

    // Four connections take every slot: a fifth is closed unanswered. Once they are gone,
    // clients are served again.
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut conn = TcpStream::connect(node.addr).await.unwrap();
        conn.write_all(b"GET /status HTTP/1.1\r\nhost: keeper\r\n\r\n")
            .await
            .unwrap();
        let mut status = [0u8; 12];
        conn.read_exact(&mut status).await.unwrap();
        held.push(conn);
    }
    let mut surplus = TcpStream::connect(node.addr).await.unwrap();
    let _ = surplus
        .write_all(b"GET /status HTTP/1.1\r\nhost: keeper\r\n\r\n")
        .await;
    let answer = until_closed(&mut surplus, "a connection beyond the limit").await;
    assert!(
        answer.is_empty(),
        "a surplus connection is closed unanswered"
    );
    drop(held);
    let api = Api::new(node.addr);
    support::eventually("clients to be served again", || async {
        api.status().await.filter(|s| s.is_object())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_hyper_cannot_parse_get_json_errors() {
    let node = node(1024).await;
    let long_target = format!("/{}", "a".repeat(200_000));
    let cases: Vec<(&str, Vec<u8>, &[u16])> = vec![
        (
            "a space in the target",
            b"GET /a b HTTP/1.1\r\nhost: keeper\r\n\r\n".to_vec(),
            &[400],
        ),
        (
            "a 0xff byte in the target",
            b"GET /\xff HTTP/1.1\r\nhost: keeper\r\n\r\n".to_vec(),
            &[400],
        ),
        (
            "a 200,000-character target",
            format!("GET {long_target} HTTP/1.1\r\nhost: keeper\r\n\r\n").into_bytes(),
            &[414, 431],
        ),
        (
            "a header without a colon",
            b"GET /status HTTP/1.1\r\nhost keeper\r\n\r\n".to_vec(),
            &[400],
        ),
    ];
    for (what, request, statuses) in cases {
        let (status, body) = exchange(node.addr, &request).await;
        assert!(
            statuses.contains(&status),
            "{what}: status {status}, {body}"
        );
        assert_json_error(status, &body, status, what);
    }
    assert_served(&Api::new(node.addr)).await;
}

/// A session id is not a zxid: an unknown one is `session_expired` (410) wherever it appears,
/// not `not_ready` (503) for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_session_is_gone_not_not_ready() {
    let node = node(1024).await;
    let api = Api::new(node.addr);
    let session = api.session(10_000).await;
    api.create(session, "/a", "x", "persistent").await.ok();
    for unknown in [u64::MAX, session + (1 << 32), session + 1_000] {
        let reply = api.get_data(unknown, "/a", false).await;
        reply.err("session_expired", 410);
        let reply = api
            .post(&format!("/v1/sessions/{unknown}/heartbeat"), json!({}))
            .await;
        reply.err("session_expired", 410);
        let reply = api
            .post("/v1/sync", json!({ "session": unknown, "path": "/" }))
            .await;
        reply.err("session_expired", 410);
    }
    // A client ahead of the node is still told to wait, and a live session still works.
    let ahead = api
        .post(
            "/v1/get_data",
            json!({ "session": session, "path": "/a", "last_zxid": u64::MAX }),
        )
        .await;
    ahead.err("not_ready", 503);
    api.get_data(session, "/a", false).await.ok();
}
