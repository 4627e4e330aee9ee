//! The client API over HTTP/JSON (axum). Each handler turns a request body into a
//! `ClientRequest`, waits for the core's `Response` and turns it into the reply type of
//! `crate::api`. Every error, including a body that does not parse and a route that does not
//! exist, is a JSON `KeeperError` with the status `ErrorCode::http_status` names.

use super::driver::DriverHandle;
use super::sse::{EventHub, KEEP_ALIVE_MS};
use crate::api::{
    ChildrenReply, CreateReply, CreateRequest, CreateSessionRequest, DataReply, DeleteRequest,
    ErrorCode, ExistsReply, HeartbeatRequest, KeeperError, MultiReply, MultiRequest, Op,
    ReadRequest, SessionId, SessionReply, SetDataRequest, StatReply, SyncRequest, Zxid, ZxidReply,
};
use crate::core::{ClientRequest, Read, Response as CoreResponse};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, Path, Request, State};
use axum::http::{Method, StatusCode, Uri};
use axum::response::sse::{KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Room in a request body beyond the data itself: paths, the JSON around them, multi ops.
pub const BODY_SLACK_BYTES: usize = 64 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub driver: DriverHandle,
    pub hub: Arc<EventHub>,
    pub stop: CancellationToken,
    pub body_limit: usize,
    /// How long reading a request body may take (`HttpLimits::body_read_ms`).
    pub body_read_ms: u64,
}

pub fn router(state: AppState) -> Router {
    let limit = state.body_limit;
    Router::new()
        .route("/status", get(status))
        .route("/v1/digest", get(digest))
        .route("/v1/sessions", post(create_session))
        .route("/v1/sessions/{id}", axum::routing::delete(close_session))
        .route("/v1/sessions/{id}/heartbeat", post(heartbeat))
        .route("/v1/sessions/{id}/events", get(events))
        .route("/v1/create", post(create))
        .route("/v1/delete", post(delete))
        .route("/v1/set_data", post(set_data))
        .route("/v1/multi", post(multi))
        .route("/v1/exists", post(exists))
        .route("/v1/get_data", post(get_data))
        .route("/v1/get_children", post(get_children))
        .route("/v1/sync", post(sync))
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// An error on its way to the client.
pub struct ApiError {
    status: StatusCode,
    body: KeeperError,
    /// Close the connection after the reply: the request's body was not read to its end.
    close: bool,
}

impl From<KeeperError> for ApiError {
    fn from(body: KeeperError) -> ApiError {
        let status = StatusCode::from_u16(body.error.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        ApiError {
            status,
            body,
            close: false,
        }
    }
}

impl ApiError {
    fn bad(message: impl Into<String>) -> ApiError {
        KeeperError::new(ErrorCode::BadArguments, message).into()
    }

    fn with_status(status: StatusCode, error: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            body: KeeperError::new(error, message),
            close: false,
        }
    }

    fn closing(mut self) -> ApiError {
        self.close = true;
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body)).into_response();
        if self.close {
            response.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
        }
        response
    }
}

type ApiResult<T> = Result<Json<T>, ApiError>;

/// A JSON body, parsed here rather than by axum's `Json` so that every failure is a JSON
/// `bad_arguments` naming the problem, and the content type is not insisted on.
pub struct Body<T>(T);

/// Like [`Body`], but an empty body means `T::default()`.
pub struct OptionalBody<T>(T);

/// Reads a request body within the body limit and the body read time (issue 11: a request
/// announcing a huge body, or one whose body stops, must not hold the connection).
async fn body_bytes(req: Request, state: &AppState) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::with_status(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::BadArguments,
            "request body too large (the limit is twice --max-data-bytes plus 64 KiB)",
        )
        .closing()
    };
    let announced = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if announced.is_some_and(|len| len > state.body_limit as u64) {
        return Err(too_large());
    }
    let read = Bytes::from_request(req, state);
    let Ok(read) = tokio::time::timeout(Duration::from_millis(state.body_read_ms), read).await
    else {
        return Err(ApiError::with_status(
            StatusCode::REQUEST_TIMEOUT,
            ErrorCode::BadArguments,
            format!(
                "the request body did not arrive within {} ms",
                state.body_read_ms
            ),
        )
        .closing());
    };
    read.map_err(|rejection: BytesRejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            too_large()
        } else {
            ApiError::bad(format!(
                "cannot read the request body: {}",
                rejection.body_text()
            ))
        }
    })
}

fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| ApiError::bad(format!("invalid request body: {e}")))
}

impl<T: DeserializeOwned> FromRequest<AppState> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let bytes = body_bytes(req, state).await?;
        parse(&bytes).map(Body)
    }
}

impl<T: DeserializeOwned + Default> FromRequest<AppState> for OptionalBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let bytes = body_bytes(req, state).await?;
        if bytes.iter().all(|b| b.is_ascii_whitespace()) {
            return Ok(OptionalBody(T::default()));
        }
        parse(&bytes).map(OptionalBody)
    }
}

/// A session id in the URL.
pub struct SessionPath(SessionId);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for SessionPath {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::bad(e.body_text()))?;
        raw.parse()
            .map(SessionPath)
            .map_err(|_| ApiError::bad(format!("session id {raw:?} is not a number")))
    }
}

async fn no_route(method: Method, uri: Uri) -> ApiError {
    ApiError::with_status(
        StatusCode::NOT_FOUND,
        ErrorCode::BadArguments,
        format!("no such API call: {method} {}; see docs/API.md", uri.path()),
    )
}

async fn wrong_method(method: Method, uri: Uri) -> ApiError {
    ApiError::with_status(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::BadArguments,
        format!("{} does not take {method}; see docs/API.md", uri.path()),
    )
}

/// The core answered with a response this call never produces: a bug, reported as one.
fn unexpected(response: CoreResponse) -> ApiError {
    KeeperError::new(
        ErrorCode::Internal,
        format!("unexpected response from the core: {response:?}"),
    )
    .into()
}

async fn status(State(app): State<AppState>) -> ApiResult<crate::api::Status> {
    Ok(Json(app.driver.status().await?))
}

async fn digest(State(app): State<AppState>) -> ApiResult<crate::api::DigestReply> {
    Ok(Json(app.driver.digest().await?))
}

async fn create_session(
    State(app): State<AppState>,
    Body(req): Body<CreateSessionRequest>,
) -> ApiResult<SessionReply> {
    let body = ClientRequest::CreateSession {
        timeout_ms: req.timeout_ms,
        last_zxid: req.last_zxid,
    };
    match app.driver.call(body).await? {
        (
            zxid,
            CoreResponse::Session {
                session,
                timeout_ms,
            },
        ) => Ok(Json(SessionReply {
            session,
            timeout_ms,
            zxid,
        })),
        (_, other) => Err(unexpected(other)),
    }
}

async fn done(app: &AppState, body: ClientRequest) -> ApiResult<ZxidReply> {
    match app.driver.call(body).await? {
        (zxid, CoreResponse::Done) => Ok(Json(ZxidReply { zxid })),
        (_, other) => Err(unexpected(other)),
    }
}

async fn heartbeat(
    State(app): State<AppState>,
    SessionPath(session): SessionPath,
    OptionalBody(req): OptionalBody<HeartbeatRequest>,
) -> ApiResult<ZxidReply> {
    let body = ClientRequest::Heartbeat {
        session,
        last_zxid: req.last_zxid,
    };
    done(&app, body).await
}

async fn close_session(
    State(app): State<AppState>,
    SessionPath(session): SessionPath,
    OptionalBody(req): OptionalBody<HeartbeatRequest>,
) -> ApiResult<ZxidReply> {
    let body = ClientRequest::CloseSession {
        session,
        last_zxid: req.last_zxid,
    };
    done(&app, body).await
}

async fn events(
    State(app): State<AppState>,
    SessionPath(session): SessionPath,
) -> Result<Response, ApiError> {
    // A session this node saw end still has its final event to give. Any other session must
    // be alive: a heartbeat asks the core (and counts as one: the client is evidently there).
    if !app.hub.has_ended(session) {
        let body = ClientRequest::Heartbeat {
            session,
            last_zxid: 0,
        };
        app.driver.call(body).await?;
    }
    let stream = app.hub.attach(session, app.stop.clone());
    let keep_alive = KeepAlive::new().interval(Duration::from_millis(KEEP_ALIVE_MS));
    Ok(Sse::new(stream).keep_alive(keep_alive).into_response())
}

async fn write(
    app: &AppState,
    session: SessionId,
    last_zxid: Zxid,
    op: Op,
) -> Result<(Zxid, CoreResponse), ApiError> {
    let body = ClientRequest::Write {
        session,
        last_zxid,
        op,
    };
    Ok(app.driver.call(body).await?)
}

async fn create(
    State(app): State<AppState>,
    Body(req): Body<CreateRequest>,
) -> ApiResult<CreateReply> {
    let op = Op::Create {
        path: req.path,
        data: req.data,
        mode: req.mode,
    };
    match write(&app, req.session, req.last_zxid, op).await? {
        (zxid, CoreResponse::Created { path, stat }) => Ok(Json(CreateReply { path, stat, zxid })),
        (_, other) => Err(unexpected(other)),
    }
}

async fn delete(
    State(app): State<AppState>,
    Body(req): Body<DeleteRequest>,
) -> ApiResult<ZxidReply> {
    let op = Op::Delete {
        path: req.path,
        version: req.version,
    };
    match write(&app, req.session, req.last_zxid, op).await? {
        (zxid, CoreResponse::Done) => Ok(Json(ZxidReply { zxid })),
        (_, other) => Err(unexpected(other)),
    }
}

async fn set_data(
    State(app): State<AppState>,
    Body(req): Body<SetDataRequest>,
) -> ApiResult<StatReply> {
    let op = Op::SetData {
        path: req.path,
        data: req.data,
        version: req.version,
    };
    match write(&app, req.session, req.last_zxid, op).await? {
        (zxid, CoreResponse::Stat { stat }) => Ok(Json(StatReply { stat, zxid })),
        (_, other) => Err(unexpected(other)),
    }
}

async fn multi(
    State(app): State<AppState>,
    Body(req): Body<MultiRequest>,
) -> ApiResult<MultiReply> {
    let body = ClientRequest::Multi {
        session: req.session,
        last_zxid: req.last_zxid,
        ops: req.ops,
    };
    match app.driver.call(body).await? {
        (zxid, CoreResponse::Multi { results }) => Ok(Json(MultiReply { results, zxid })),
        (_, other) => Err(unexpected(other)),
    }
}

async fn read(
    app: &AppState,
    req: ReadRequest,
    make: fn(String) -> Read,
) -> Result<(Zxid, CoreResponse), ApiError> {
    let body = ClientRequest::Read {
        session: req.session,
        last_zxid: req.last_zxid,
        read: make(req.path),
        watch: req.watch,
        consistency: req.consistency,
    };
    Ok(app.driver.call(body).await?)
}

async fn exists(
    State(app): State<AppState>,
    Body(req): Body<ReadRequest>,
) -> ApiResult<ExistsReply> {
    match read(&app, req, |path| Read::Exists { path }).await? {
        (zxid, CoreResponse::Exists { stat }) => Ok(Json(ExistsReply { stat, zxid })),
        (_, other) => Err(unexpected(other)),
    }
}

async fn get_data(
    State(app): State<AppState>,
    Body(req): Body<ReadRequest>,
) -> ApiResult<DataReply> {
    match read(&app, req, |path| Read::GetData { path }).await? {
        (zxid, CoreResponse::Data { data, stat }) => Ok(Json(DataReply { data, stat, zxid })),
        (_, other) => Err(unexpected(other)),
    }
}

async fn get_children(
    State(app): State<AppState>,
    Body(req): Body<ReadRequest>,
) -> ApiResult<ChildrenReply> {
    match read(&app, req, |path| Read::GetChildren { path }).await? {
        (zxid, CoreResponse::Children { children, stat }) => Ok(Json(ChildrenReply {
            children,
            stat,
            zxid,
        })),
        (_, other) => Err(unexpected(other)),
    }
}

async fn sync(State(app): State<AppState>, Body(req): Body<SyncRequest>) -> ApiResult<ZxidReply> {
    let body = ClientRequest::Sync {
        session: req.session,
        last_zxid: req.last_zxid,
        path: req.path,
    };
    done(&app, body).await
}
