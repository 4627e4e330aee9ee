//! [`NodeClient`]: keeper's HTTP API for one server, typed, with no retries and no session
//! management. Every call is bounded by the client's per-request timeout; the harness's
//! workers use it directly so that each operation goes to exactly the node they chose.

use std::pin::Pin;
use std::time::Duration;

use eventsource_stream::{EventStreamError, Eventsource};
use futures::{Stream, StreamExt};
use keeper_wire::{
    ChildrenReply, CreateReply, CreateRequest, CreateSessionRequest, DataReply, DeleteRequest,
    DigestReply, ExistsReply, HeartbeatRequest, MultiReply, MultiRequest, ReadRequest,
    SessionEvent, SessionId, SessionReply, SetDataRequest, StatReply, Status, SyncRequest,
    WatchEvent, ZxidReply,
};
use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::request::{error_reply, normalize_url, request};
use crate::status;

/// Longest a TCP connect may take. Kept short and separate from the request timeout so that an
/// unreachable (partitioned) node fails as "never sent", a definite outcome, instead of using up
/// the request's whole budget and ending indeterminate.
/// Per-request timeouts shorter than this make an unreachable node indeterminate (the request
/// timer fires first and cannot tell that nothing was sent).
pub const TCP_CONNECT_TIMEOUT_MS: u64 = 500;
/// A read on an event stream that yields nothing for this long means the node is gone (paused or
/// partitioned); servers send a keep-alive every second.
pub const EVENT_STREAM_READ_TIMEOUT_MS: u64 = 4_000;
/// Default per-request timeout of a [`NodeClient`].
pub const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 5_000;

/// The two reqwest clients every [`NodeClient`] of one program can share (one connection pool
/// each). Operations and event streams need different timeouts: a total deadline per operation,
/// a per-read idle timeout for a stream that stays open for the whole session.
#[derive(Clone)]
struct Http {
    ops: reqwest::Client,
    streams: reqwest::Client,
}

impl Http {
    fn new() -> Result<Http> {
        let connect = Duration::from_millis(TCP_CONNECT_TIMEOUT_MS);
        let ops = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(connect)
            .tcp_nodelay(true)
            .build()
            .map_err(|e| Error::BadArguments(format!("cannot build HTTP client: {e}")))?;
        let streams = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(connect)
            .read_timeout(Duration::from_millis(EVENT_STREAM_READ_TIMEOUT_MS))
            .tcp_nodelay(true)
            .build()
            .map_err(|e| Error::BadArguments(format!("cannot build HTTP client: {e}")))?;
        Ok(Http { ops, streams })
    }
}

/// A typed client for one keeper server. Cheap to clone; clones share connection pools.
#[derive(Clone)]
pub struct NodeClient {
    http: Http,
    url: String,
    timeout: Duration,
}

impl NodeClient {
    /// A client for the server at `url` (`http://127.0.0.1:2181` or `127.0.0.1:2181`) whose calls
    /// time out after `timeout`.
    pub fn new(url: &str, timeout: Duration) -> Result<NodeClient> {
        Ok(NodeClient {
            http: Http::new()?,
            url: normalize_url(url)?,
            timeout,
        })
    }

    /// One client per server, sharing connection pools.
    pub fn for_servers<S: AsRef<str>>(urls: &[S], timeout: Duration) -> Result<Vec<NodeClient>> {
        let http = Http::new()?;
        urls.iter()
            .map(|url| {
                Ok(NodeClient {
                    http: http.clone(),
                    url: normalize_url(url.as_ref())?,
                    timeout,
                })
            })
            .collect()
    }

    /// The same server with another per-request timeout.
    pub fn with_timeout(&self, timeout: Duration) -> NodeClient {
        NodeClient {
            http: self.http.clone(),
            url: self.url.clone(),
            timeout,
        }
    }

    /// The server's base URL, normalised (`http://host:port`).
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// `GET /status`, through the one reader ([`status::fetch_status`]).
    pub async fn status(&self) -> Result<Status> {
        status::fetch_status(&self.http.ops, &self.url, self.timeout).await
    }

    /// `GET /v1/digest`, through [`status::fetch_digest`].
    pub async fn digest(&self) -> Result<DigestReply> {
        status::fetch_digest(&self.http.ops, &self.url, self.timeout).await
    }

    /// `POST /v1/sessions`.
    pub async fn create_session(&self, req: &CreateSessionRequest) -> Result<SessionReply> {
        self.call(Method::POST, "/v1/sessions", Some(req)).await
    }

    /// `POST /v1/sessions/{id}/heartbeat`.
    pub async fn heartbeat(&self, session: SessionId, req: &HeartbeatRequest) -> Result<ZxidReply> {
        let path = format!("/v1/sessions/{session}/heartbeat");
        self.call(Method::POST, &path, Some(req)).await
    }

    /// `DELETE /v1/sessions/{id}`: closes the session, deleting its ephemeral nodes.
    pub async fn close_session(
        &self,
        session: SessionId,
        req: &HeartbeatRequest,
    ) -> Result<ZxidReply> {
        let path = format!("/v1/sessions/{session}");
        self.call(Method::DELETE, &path, Some(req)).await
    }

    /// `POST /v1/create`.
    pub async fn create(&self, req: &CreateRequest) -> Result<CreateReply> {
        self.call(Method::POST, "/v1/create", Some(req)).await
    }

    /// `POST /v1/delete`.
    pub async fn delete(&self, req: &DeleteRequest) -> Result<ZxidReply> {
        self.call(Method::POST, "/v1/delete", Some(req)).await
    }

    /// `POST /v1/set_data`.
    pub async fn set_data(&self, req: &SetDataRequest) -> Result<StatReply> {
        self.call(Method::POST, "/v1/set_data", Some(req)).await
    }

    /// `POST /v1/multi`. A failed multi is `Error::Keeper` with `results` set.
    pub async fn multi(&self, req: &MultiRequest) -> Result<MultiReply> {
        self.call(Method::POST, "/v1/multi", Some(req)).await
    }

    /// `POST /v1/exists`.
    pub async fn exists(&self, req: &ReadRequest) -> Result<ExistsReply> {
        self.call(Method::POST, "/v1/exists", Some(req)).await
    }

    /// `POST /v1/get_data`.
    pub async fn get_data(&self, req: &ReadRequest) -> Result<DataReply> {
        self.call(Method::POST, "/v1/get_data", Some(req)).await
    }

    /// `POST /v1/get_children`.
    pub async fn get_children(&self, req: &ReadRequest) -> Result<ChildrenReply> {
        self.call(Method::POST, "/v1/get_children", Some(req)).await
    }

    /// `POST /v1/sync`.
    pub async fn sync(&self, req: &SyncRequest) -> Result<ZxidReply> {
        self.call(Method::POST, "/v1/sync", Some(req)).await
    }

    /// `GET /v1/sessions/{id}/events`: opens the session's event stream on this server. Opening
    /// is bounded by the request timeout; afterwards a silence longer than
    /// [`EVENT_STREAM_READ_TIMEOUT_MS`] ends the stream with an error.
    pub async fn events(&self, session: SessionId) -> Result<EventStream> {
        let url = format!("{}/v1/sessions/{session}/events", self.url);
        let send = self
            .http
            .streams
            .get(&url)
            .header("accept", "text/event-stream")
            .send();
        let response = match tokio::time::timeout(self.timeout, send).await {
            Ok(sent) => sent.map_err(|e| Error::from_transport(&self.url, e))?,
            Err(_) => {
                return Err(Error::Timeout {
                    url: self.url.clone(),
                    message: format!("event stream not opened within {:?}", self.timeout),
                });
            }
        };
        let status = response.status().as_u16();
        if !response.status().is_success() {
            let body = tokio::time::timeout(self.timeout, response.bytes())
                .await
                .ok()
                .and_then(|b| b.ok())
                .unwrap_or_default();
            return Err(error_reply(&self.url, status, &body));
        }
        Ok(EventStream {
            url: self.url.clone(),
            inner: Box::pin(response.bytes_stream().eventsource()),
        })
    }

    async fn call<Req: Serialize, Rep: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&Req>,
    ) -> Result<Rep> {
        request(&self.http.ops, &self.url, method, path, body, self.timeout).await
    }
}

/// One item of a session's event stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamEvent {
    /// SSE event `watch`: a watch fired.
    Watch(WatchEvent),
    /// SSE event `session`: the session expired or was closed; the stream ends after it.
    Session(SessionEvent),
    /// SSE event `overflow`: the server dropped this many undelivered events of the session;
    /// its watches must be set again.
    Overflow { dropped: u64 },
}

#[derive(serde::Deserialize)]
struct OverflowData {
    dropped: u64,
}

type SseStream = Pin<
    Box<
        dyn Stream<
                Item = std::result::Result<
                    eventsource_stream::Event,
                    EventStreamError<reqwest::Error>,
                >,
            > + Send,
    >,
>;

/// An open event stream of one session on one server.
pub struct EventStream {
    url: String,
    inner: SseStream,
}

impl EventStream {
    /// The next event; `None` when the server ended the stream. An error means the stream broke
    /// (events fired meanwhile may be lost: re-check what you watch).
    pub async fn next(&mut self) -> Option<Result<StreamEvent>> {
        loop {
            let item = match self.inner.next().await? {
                Ok(item) => item,
                Err(EventStreamError::Transport(e)) => {
                    return Some(Err(Error::from_transport(&self.url, e)));
                }
                Err(e) => {
                    return Some(Err(Error::Protocol {
                        url: self.url.clone(),
                        status: 200,
                        message: format!("bad event stream: {e}"),
                    }));
                }
            };
            let parsed = match item.event.as_str() {
                "watch" => serde_json::from_str(&item.data).map(StreamEvent::Watch),
                "session" => serde_json::from_str(&item.data).map(StreamEvent::Session),
                "overflow" => serde_json::from_str(&item.data)
                    .map(|o: OverflowData| StreamEvent::Overflow { dropped: o.dropped }),
                // Keep-alives and events of later versions.
                _ => continue,
            };
            return Some(parsed.map_err(|e| Error::Protocol {
                url: self.url.clone(),
                status: 200,
                message: format!("bad {} event {:?}: {e}", item.event, item.data),
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_addresses_are_normalised() {
        assert_eq!(
            normalize_url("127.0.0.1:2181").unwrap(),
            "http://127.0.0.1:2181"
        );
        assert_eq!(
            normalize_url("http://127.0.0.1:2181/").unwrap(),
            "http://127.0.0.1:2181"
        );
        assert!(normalize_url("").is_err());
        assert!(normalize_url("https://127.0.0.1:1").is_err());
        assert!(normalize_url("http://").is_err());
    }
}
