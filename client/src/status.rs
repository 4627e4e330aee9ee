//! The one reader of a node's `GET /status` (and its companion `GET /v1/digest`), decoded into
//! keeper-wire's [`Status`] and [`DigestReply`]. [`NodeClient`](crate::NodeClient), the cluster
//! backends, nemesis and the harness's status sampler all ask through here, so there is one
//! request shape, one error classification and one table of deadlines.

use std::time::Duration;

use keeper_wire::{DigestReply, Status};
use reqwest::Method;

use crate::error::{Error, Result};
use crate::request::{normalize_url, request};

/// Longest a one-off `/status` or `/v1/digest` question may take (who leads? does every node
/// serve? which zxid has each applied?): a paused or cut-off node never answers, and the
/// question is asked again.
pub const STATUS_TIMEOUT_MS: u64 = 1_000;

/// A status *sample*'s deadline, shorter than [`STATUS_TIMEOUT_MS`]: the harness samples every
/// node every 250 ms, and a node that does not answer must not delay its next sample.
pub const STATUS_SAMPLE_TIMEOUT_MS: u64 = 250;

/// A plain-HTTP client for status requests: no proxies (nodes are on our own networks), no
/// total deadline of its own (each request brings its own).
pub fn http_client() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .build()
        .map_err(|e| Error::BadArguments(format!("cannot build HTTP client: {e}")))
}

/// `GET {url}/status` within `timeout` (`url` as [`normalize_url`] accepts it).
pub async fn fetch_status(http: &reqwest::Client, url: &str, timeout: Duration) -> Result<Status> {
    request::<(), _>(
        http,
        &normalize_url(url)?,
        Method::GET,
        "/status",
        None,
        timeout,
    )
    .await
}

/// `GET {url}/v1/digest` within `timeout`: the node's applied zxid and a digest of its tree.
pub async fn fetch_digest(
    http: &reqwest::Client,
    url: &str,
    timeout: Duration,
) -> Result<DigestReply> {
    request::<(), _>(
        http,
        &normalize_url(url)?,
        Method::GET,
        "/v1/digest",
        None,
        timeout,
    )
    .await
}
