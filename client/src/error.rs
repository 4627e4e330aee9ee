//! The client's error type: definite failures (the operation did not take effect) kept apart
//! from indeterminate ones (it may have), because a tester's verdict depends on the difference.

use keeper_wire::{ErrorCode, KeeperError};

/// Everything a keeper client call can fail with.
///
/// Definite: [`Error::Keeper`] with a definite code, [`Error::Unreachable`], [`Error::Closed`],
/// [`Error::BadArguments`]. Indeterminate: [`Error::Timeout`], [`Error::ConnectionLost`], a
/// server-side `timeout` inside [`Error::Keeper`], and [`Error::Protocol`] for a reply that
/// came back but could not be understood.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The server answered with an error (its code, message and, for a multi, per-op results).
    #[error("{0}")]
    Keeper(KeeperError),
    /// The connection could not be opened, so the request never reached the server.
    #[error("unreachable: {url}: {message}")]
    Unreachable { url: String, message: String },
    /// No answer in time after the request may have been sent.
    #[error("timeout: {url}: {message}")]
    Timeout { url: String, message: String },
    /// The connection broke after the request may have been sent.
    #[error("connection lost: {url}: {message}")]
    ConnectionLost { url: String, message: String },
    /// The server answered something that is not keeper's API (status kept for the verdict).
    #[error("unexpected reply from {url} (HTTP {status}): {message}")]
    Protocol {
        url: String,
        status: u16,
        message: String,
    },
    /// The session was closed by this client; nothing was sent.
    #[error("session closed")]
    Closed,
    /// Rejected locally before anything was sent (bad URL, empty server list, bad path...).
    #[error("bad arguments: {0}")]
    BadArguments(String),
}

/// `Result` with the client's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// True when the operation may have taken effect despite the error.
    pub fn is_indeterminate(&self) -> bool {
        match self {
            Error::Keeper(e) => e.error.is_indeterminate(),
            Error::Timeout { .. } | Error::ConnectionLost { .. } => true,
            // A 2xx we could not parse was applied; a 5xx other than not_ready may have been.
            Error::Protocol { status, .. } => {
                (200..300).contains(status) || (*status >= 500 && *status != 503)
            }
            Error::Unreachable { .. } | Error::Closed | Error::BadArguments(_) => false,
        }
    }

    /// The ZooKeeper-style code of this error. Client-side failures map onto the nearest code:
    /// an unreachable node is `not_ready` (the request was not accepted), a closed session is
    /// `session_expired`.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::Keeper(e) => e.error,
            Error::Unreachable { .. } => ErrorCode::NotReady,
            Error::Timeout { .. } => ErrorCode::Timeout,
            Error::ConnectionLost { .. } => ErrorCode::ConnectionLoss,
            Error::Protocol { status, .. } => match *status {
                400..=499 => ErrorCode::BadArguments,
                503 => ErrorCode::NotReady,
                504 => ErrorCode::Timeout,
                _ => ErrorCode::ConnectionLoss,
            },
            Error::Closed => ErrorCode::SessionExpired,
            Error::BadArguments(_) => ErrorCode::BadArguments,
        }
    }

    /// The server's error, if it sent one.
    pub fn keeper(&self) -> Option<&KeeperError> {
        match self {
            Error::Keeper(e) => Some(e),
            _ => None,
        }
    }

    /// True when another server may accept the same request: the node did not take it
    /// (`not_ready`, unreachable). Safe to retry elsewhere, for writes too.
    pub(crate) fn is_refusal(&self) -> bool {
        !self.is_indeterminate() && self.code() == ErrorCode::NotReady
    }

    /// Classify a transport failure from reqwest. Only a failure to connect proves that
    /// nothing was sent; everything else may have reached the server.
    pub(crate) fn from_transport(url: &str, err: reqwest::Error) -> Error {
        let message = error_chain(&err);
        if err.is_builder() {
            Error::BadArguments(message)
        } else if err.is_connect() {
            Error::Unreachable {
                url: url.to_string(),
                message,
            }
        } else if err.is_timeout() {
            Error::Timeout {
                url: url.to_string(),
                message,
            }
        } else {
            Error::ConnectionLost {
                url: url.to_string(),
                message,
            }
        }
    }
}

impl From<KeeperError> for Error {
    fn from(e: KeeperError) -> Self {
        Error::Keeper(e)
    }
}

/// The error with its sources, because reqwest's top-level text ("error sending request")
/// hides the cause a user needs ("Connection refused").
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_codes_keep_their_determinacy() {
        let definite = Error::Keeper(KeeperError::new(ErrorCode::NotReady, "no leader"));
        assert!(!definite.is_indeterminate());
        assert!(definite.is_refusal());
        let timeout = Error::Keeper(KeeperError::new(ErrorCode::Timeout, "no quorum"));
        assert!(timeout.is_indeterminate());
        assert!(!timeout.is_refusal());
        let exists = Error::Keeper(KeeperError::new(ErrorCode::NodeExists, "/a"));
        assert!(!exists.is_indeterminate());
        assert!(!exists.is_refusal());
    }

    #[test]
    fn client_side_failures_split_at_the_send() {
        let never_sent = Error::Unreachable {
            url: "u".into(),
            message: "refused".into(),
        };
        assert!(!never_sent.is_indeterminate());
        assert_eq!(never_sent.code(), ErrorCode::NotReady);
        let maybe_sent = Error::ConnectionLost {
            url: "u".into(),
            message: "reset".into(),
        };
        assert!(maybe_sent.is_indeterminate());
        assert_eq!(maybe_sent.code(), ErrorCode::ConnectionLoss);
        let garbled_ok = Error::Protocol {
            url: "u".into(),
            status: 200,
            message: "bad json".into(),
        };
        assert!(garbled_ok.is_indeterminate());
        let rejected = Error::Protocol {
            url: "u".into(),
            status: 422,
            message: "unknown field".into(),
        };
        assert!(!rejected.is_indeterminate());
        assert_eq!(rejected.code(), ErrorCode::BadArguments);
    }
}
