//! One HTTP request to a keeper server, and the one way its reply is classified: the decoded
//! reply, keeper's error body, or a transport or protocol error. [`NodeClient`](crate::NodeClient)
//! and the status reader ([`crate::status`]) both send through here.

use std::time::Duration;

use keeper_wire::KeeperError;
use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// How much of an unparseable reply body is quoted in an error message.
const MAX_QUOTED_BODY_BYTES: usize = 200;

/// Accept `http://host:port`, `host:port` (http assumed), with or without a trailing slash.
pub fn normalize_url(server: &str) -> Result<String> {
    let trimmed = server.trim();
    if trimmed.is_empty() {
        return Err(Error::BadArguments("empty server address".to_string()));
    }
    let with_scheme = if trimmed.contains("://") {
        trimmed.to_string()
    } else {
        format!("http://{trimmed}")
    };
    let parsed = reqwest::Url::parse(&with_scheme)
        .map_err(|e| Error::BadArguments(format!("bad server address {server:?}: {e}")))?;
    if parsed.scheme() != "http" || parsed.host_str().is_none() {
        return Err(Error::BadArguments(format!(
            "bad server address {server:?}: expected http://HOST:PORT"
        )));
    }
    Ok(with_scheme.trim_end_matches('/').to_string())
}

/// One request to the server at `url` (normalised, no trailing slash), bounded by `timeout`,
/// its reply decoded as `Rep` or as keeper's error body. Every call of [`NodeClient`] and the
/// status reader ([`crate::status`]) go through here, so replies are classified one way.
pub(crate) async fn request<Req: Serialize, Rep: DeserializeOwned>(
    http: &reqwest::Client,
    url: &str,
    method: Method,
    path: &str,
    body: Option<&Req>,
    timeout: Duration,
) -> Result<Rep> {
    let mut request = http
        .request(method, format!("{url}{path}"))
        .timeout(timeout);
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request
        .send()
        .await
        .map_err(|e| Error::from_transport(url, e))?;
    let status = response.status().as_u16();
    let body = match response.bytes().await {
        Ok(body) => body,
        // The status line arrived, so the verdict is known for refusals even if the body
        // broke: keep it (Protocol classifies 4xx and 503 as definite).
        Err(e) if !(200..300).contains(&status) => {
            return Err(Error::Protocol {
                url: url.to_string(),
                status,
                message: format!("reply body lost: {e}"),
            });
        }
        Err(e) => return Err(Error::from_transport(url, e)),
    };
    if (200..300).contains(&status) {
        serde_json::from_slice(&body).map_err(|e| Error::Protocol {
            url: url.to_string(),
            status,
            message: format!("undecodable reply: {e}: {}", quote(&body)),
        })
    } else {
        Err(error_reply(url, status, &body))
    }
}

pub(crate) fn error_reply(url: &str, status: u16, body: &[u8]) -> Error {
    match serde_json::from_slice::<KeeperError>(body) {
        Ok(err) => Error::Keeper(err),
        // axum's own rejections (bad JSON, unknown field, body too large) are plain text.
        Err(_) => Error::Protocol {
            url: url.to_string(),
            status,
            message: quote(body),
        },
    }
}

fn quote(body: &[u8]) -> String {
    let end = body.len().min(MAX_QUOTED_BODY_BYTES);
    let mut text = String::from_utf8_lossy(&body[..end]).trim().to_string();
    if body.len() > end {
        text.push_str("...");
    }
    text
}
