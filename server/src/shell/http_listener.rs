//! The client API's connections and their limits (issue 11). `axum::serve` bounds neither time
//! nor connections, so a handful of slow clients could hold a node's HTTP side for ever; here
//! each connection runs on hyper's HTTP/1 machinery under these rules:
//! - at most `max_connections` at once; one more is accepted and closed at once;
//! - a request's head must be complete within `header_read_ms` of its first byte, and a
//!   connection with no request in flight is closed after `idle_ms` without a byte (both
//!   plain closes: there is no request yet to answer);
//! - a request body must arrive within `body_read_ms` (checked where bodies are read, in
//!   `http`, which answers 408 and closes);
//! - the responses hyper itself writes for requests it cannot parse (400, 414, 431) have
//!   empty bodies; they are replaced on the way out by the API's JSON error shape.
//!
//! Not bounded: how long a client takes to read a response. An event stream is a response
//! that lasts as long as the session, so a time limit would cut it.

use crate::api::{ErrorCode, KeeperError};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// Time from a request's first byte to the end of its head.
pub const HTTP_HEADER_READ_TIMEOUT_MS: u64 = 10_000;
/// Time to read a whole request body.
pub const HTTP_BODY_READ_TIMEOUT_MS: u64 = 10_000;
/// Time a connection may sit with no request in flight and no byte arriving.
pub const HTTP_IDLE_TIMEOUT_MS: u64 = 60_000;
/// Client connections at once (event streams included).
pub const MAX_HTTP_CONNECTIONS: usize = 1024;
/// Waiting on a failed `accept` (usually out of file descriptors) instead of spinning.
const ACCEPT_RETRY_MS: u64 = 50;
/// Fewest checks of a connection's deadlines per limit: a deadline is noticed within a
/// quarter of the limit.
const CHECKS_PER_LIMIT: u32 = 4;

/// The limits of the client API's connections; the defaults are the constants above.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpLimits {
    pub header_read_ms: u64,
    pub body_read_ms: u64,
    pub idle_ms: u64,
    pub max_connections: usize,
}

impl Default for HttpLimits {
    fn default() -> HttpLimits {
        HttpLimits {
            header_read_ms: HTTP_HEADER_READ_TIMEOUT_MS,
            body_read_ms: HTTP_BODY_READ_TIMEOUT_MS,
            idle_ms: HTTP_IDLE_TIMEOUT_MS,
            max_connections: MAX_HTTP_CONNECTIONS,
        }
    }
}

impl HttpLimits {
    pub fn validate(&self) -> Result<(), String> {
        if self.header_read_ms == 0 || self.body_read_ms == 0 || self.idle_ms == 0 {
            return Err("HTTP time limits must be positive".into());
        }
        if self.max_connections == 0 {
            return Err("the HTTP connection limit must be positive".into());
        }
        Ok(())
    }
}

/// Serves `app` on `listener` until `stop`, then lets the open connections finish (each is
/// told to close once its request in flight is answered).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    stop: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => {
                let (stream, remote) = match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        tracing::warn!("accepting a client connection failed: {e}");
                        tokio::time::sleep(Duration::from_millis(ACCEPT_RETRY_MS)).await;
                        continue;
                    }
                };
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    tracing::debug!(%remote, "too many client connections; closing one");
                    continue;
                };
                let (app, stop) = (app.clone(), stop.clone());
                connections.spawn(async move {
                    serve_connection(stream, app, limits, stop).await;
                    drop(slot);
                });
            }
        }
    }
    while connections.join_next().await.is_some() {}
}

/// Where a connection is between requests, for its deadlines.
#[derive(Default)]
struct Activity {
    /// Requests whose responses are not completely written yet.
    in_flight: usize,
    /// Since when no request has been in flight, and when the next one's first byte came.
    idle_since: Option<Instant>,
    head_since: Option<Instant>,
}

type SharedActivity = Arc<Mutex<Activity>>;

fn lock(activity: &SharedActivity) -> std::sync::MutexGuard<'_, Activity> {
    activity.lock().unwrap_or_else(|e| e.into_inner())
}

impl Activity {
    fn new(now: Instant) -> Activity {
        Activity {
            in_flight: 0,
            idle_since: Some(now),
            head_since: None,
        }
    }

    fn bytes_arrived(&mut self, now: Instant) {
        if self.in_flight == 0 && self.head_since.is_none() {
            self.head_since = Some(now);
        }
    }

    fn request_started(&mut self) {
        self.in_flight += 1;
        self.idle_since = None;
        self.head_since = None;
    }

    fn response_done(&mut self, now: Instant) {
        self.in_flight -= 1;
        if self.in_flight == 0 {
            self.idle_since = Some(now);
        }
    }

    /// Why the connection must close now, if it must.
    fn overdue(&self, now: Instant, limits: &HttpLimits) -> Option<&'static str> {
        if self.in_flight > 0 {
            return None;
        }
        let past = |since: Option<Instant>, ms: u64| {
            since.is_some_and(|s| now.duration_since(s) >= Duration::from_millis(ms))
        };
        if past(self.head_since, limits.header_read_ms) {
            Some("its request head did not arrive in time")
        } else if self.head_since.is_none() && past(self.idle_since, limits.idle_ms) {
            Some("idle for too long")
        } else {
            None
        }
    }
}

/// Ends a request's time in flight when hyper is done with its response body (written in
/// full, or the connection gone).
struct InFlight(SharedActivity);

impl Drop for InFlight {
    fn drop(&mut self) {
        lock(&self.0).response_done(Instant::now());
    }
}

/// A response body that carries its request's [`InFlight`].
struct TrackedBody {
    inner: axum::body::Body,
    _in_flight: InFlight,
}

impl http_body::Body for TrackedBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

async fn serve_connection(
    stream: TcpStream,
    app: Router,
    limits: HttpLimits,
    stop: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let activity: SharedActivity = Arc::new(Mutex::new(Activity::new(Instant::now())));
    let io = TokioIo::new(WatchedStream {
        inner: stream,
        activity: activity.clone(),
        replacing: None,
    });
    let tracked = activity.clone();
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        lock(&tracked).request_started();
        let in_flight = InFlight(tracked.clone());
        let app = app.clone();
        async move {
            let response = app
                .oneshot(req.map(axum::body::Body::new))
                .await
                .unwrap_or_else(|never| match never {});
            Ok::<_, std::convert::Infallible>(response.map(|inner| TrackedBody {
                inner,
                _in_flight: in_flight,
            }))
        }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(io, service);
    tokio::pin!(connection);
    let shortest = limits.header_read_ms.min(limits.idle_ms);
    let mut checks = tokio::time::interval(Duration::from_millis(
        (shortest / u64::from(CHECKS_PER_LIMIT)).max(1),
    ));
    let mut stopping = false;
    loop {
        tokio::select! {
            served = connection.as_mut() => {
                if let Err(e) = served {
                    tracing::debug!("client connection ended: {e}");
                }
                return;
            }
            _ = stop.cancelled(), if !stopping => {
                stopping = true;
                connection.as_mut().graceful_shutdown();
            }
            _ = checks.tick() => {
                if let Some(why) = lock(&activity).overdue(Instant::now(), &limits) {
                    // Dropping the connection closes the socket.
                    tracing::debug!("closing a client connection: {why}");
                    return;
                }
            }
        }
    }
}

/// The client's socket, watched for the first byte of each request and for hyper's own error
/// responses, which it rewrites.
struct WatchedStream {
    inner: TcpStream,
    activity: SharedActivity,
    /// A rewritten response being written: its bytes, how many are out, and the length of the
    /// response hyper asked to write (reported as written once all of ours are).
    replacing: Option<(Vec<u8>, usize, usize)>,
}

impl AsyncRead for WatchedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
        if buf.filled().len() > before {
            lock(&self.activity).bytes_arrived(Instant::now());
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for WatchedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.replacing.is_none()
            && let Some(reply) = json_reply_for_hyper_error(buf)
        {
            self.replacing = Some((reply, 0, buf.len()));
        }
        let this = &mut *self;
        if let Some((reply, written, asked)) = &mut this.replacing {
            while *written < reply.len() {
                let n = ready!(Pin::new(&mut this.inner).poll_write(cx, &reply[*written..]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                *written += n;
            }
            let asked = (*asked).min(buf.len());
            this.replacing = None;
            return Poll::Ready(Ok(asked));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// hyper answers a request it cannot parse by itself, with a bare head and no body: 400 (a bad
/// request line or header), 414 (a target too long), 431 (headers too large). No response of
/// the API is a 4xx without a body, so such a head is hyper's, and gets the API's error shape.
fn json_reply_for_hyper_error(buf: &[u8]) -> Option<Vec<u8>> {
    const HEAD_END: &[u8] = b"\r\n\r\n";
    let end = buf.windows(HEAD_END.len()).position(|w| w == HEAD_END)? + HEAD_END.len();
    if end != buf.len() {
        return None;
    }
    let head = std::str::from_utf8(buf).ok()?.to_ascii_lowercase();
    if !head.contains("\r\ncontent-length: 0\r\n") {
        return None;
    }
    let status: u16 = head.strip_prefix("http/1.1 ")?.get(..3)?.parse().ok()?;
    let (reason, message) = match status {
        400 => (
            "Bad Request",
            "malformed HTTP request: its request line or a header does not parse (a space or a \
             byte outside ASCII in the target must be percent-encoded)",
        ),
        414 => ("URI Too Long", "the request target is too long"),
        431 => (
            "Request Header Fields Too Large",
            "the request's headers are too large",
        ),
        _ => return None,
    };
    let body = serde_json::to_string(&KeeperError::new(ErrorCode::BadArguments, message)).ok()?;
    Some(
        format!(
            "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n\
             content-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bodiless_error_heads_are_rewritten() {
        let hyper_400 = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        let reply = String::from_utf8(json_reply_for_hyper_error(hyper_400).unwrap()).unwrap();
        assert!(reply.starts_with("HTTP/1.1 400 Bad Request\r\n"));
        assert!(reply.ends_with("}") && reply.contains("\"error\":\"bad_arguments\""));
        let api_400 = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 20\r\n\r\n{\"error\":\"x\"}";
        assert!(json_reply_for_hyper_error(api_400).is_none());
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
        assert!(json_reply_for_hyper_error(ok).is_none());
    }

    #[test]
    fn deadlines_apply_only_between_requests() {
        let limits = HttpLimits {
            header_read_ms: 100,
            body_read_ms: 100,
            idle_ms: 300,
            max_connections: 1,
        };
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut a = Activity::new(t0);
        assert_eq!(a.overdue(ms(299), &limits), None);
        assert!(a.overdue(ms(300), &limits).is_some());
        a.bytes_arrived(ms(50));
        assert!(a.overdue(ms(150), &limits).is_some(), "a slow head");
        a.request_started();
        assert_eq!(a.overdue(ms(10_000), &limits), None, "a long response");
        a.response_done(ms(10_000));
        assert_eq!(a.overdue(ms(10_200), &limits), None);
        assert!(a.overdue(ms(10_300), &limits).is_some());
    }
}
