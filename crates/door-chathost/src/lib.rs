//! # confer-door-chathost: the hub role of the edge-to-hub sync
//!
//! The "chathost" HTTP API under `/chathost` that edge boxes (the Moodle plugin's
//! `push_messages`, or `confer sync push`) sync with, and the hub's admin API behind a
//! cookie login. `/work/shared/specs/chathost-api.md` is the contract; the core
//! (`service/hub.rs`) does the work, this door decodes, checks and renders.
//!
//! Paths are matched without regard to case (edges call both `/healthcheck` and
//! `/healthCheck`), so the door routes `/chathost/…` itself ([`dispatch`]) rather than
//! through axum's case-sensitive router. JSON bodies are read whole, at most
//! [`MAX_BODY`] bytes (413 beyond), at most [`BODY_READERS`] at once; at most
//! [`STORING`] rosters or message arrays are stored at once.
//!
//! ## Layout
//! - `auth`: the box credential (`Bearer <boxid>|<token>`) and the admin session cookie.
//! - `health` (`/healthcheck`, `/check`), `status` (`/messageStatus`), `rosters`,
//!   `messages` (both directions), `attachments` (exists, upload, download), `logs`,
//!   `settings`: the box's endpoints, one file each.
//! - `admin_auth` (`/auth`, `/logout`), `admin`: the admin API.
//! - `fuzzing` (hidden): the decoders of box input, for the fuzz target in `fuzz/`.
//! - [`FileStore`]: where attachment bytes go (the server plugs in its blob store).

// A refusal is the answer itself (a `Response`), returned once per request: its size
// costs nothing that matters here.
#![allow(clippy::result_large_err)]

mod admin;
mod admin_auth;
mod attachments;
mod auth;
#[doc(hidden)]
pub mod fuzzing;
mod health;
mod logs;
mod messages;
mod rosters;
mod settings;
mod status;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use confer_core::{Core, CoreError};
use serde_json::{json, Value};

/// The largest request body of the chathost API (bytes): 50 MB, as the original hub.
pub const MAX_BODY: usize = 50 * 1024 * 1024;
/// How many requests may hold a body in memory at once; others wait their turn.
pub const BODY_READERS: usize = 4;
/// How many rosters or message arrays are stored at once (each is many writes); others
/// wait their turn.
pub const STORING: usize = 2;

/// Where the hub keeps attachment bytes: content-addressed, type sniffed from content.
#[async_trait]
pub trait FileStore: Send + Sync {
    /// Store `bytes`; their SHA-256 (hex), size and MIME type (sniffed from the content).
    async fn put(&self, bytes: Bytes) -> std::io::Result<(String, u64, String)>;
    /// The bytes stored under `sha256`.
    async fn get(&self, sha256: &str) -> std::io::Result<Vec<u8>>;
}

/// What the endpoints share.
pub struct ChathostApi {
    pub core: Arc<Core>,
    pub files: Arc<dyn FileStore>,
    /// Register an unknown box on its first call (`hub_trust_on_first_use`).
    pub trust_on_first_use: bool,
    /// Settings handed to a box and not yet confirmed (in memory: handed again after a
    /// restart, as the original hub did).
    handed: Mutex<HashSet<u64>>,
    bodies: tokio::sync::Semaphore,
    /// Turns of storing a roster or a message array ([`STORING`]).
    storing: tokio::sync::Semaphore,
    started: Instant,
}

impl ChathostApi {
    pub fn new(core: Arc<Core>, files: Arc<dyn FileStore>, trust_on_first_use: bool) -> Self {
        ChathostApi {
            core,
            files,
            trust_on_first_use,
            handed: Mutex::new(HashSet::new()),
            bodies: tokio::sync::Semaphore::new(BODY_READERS),
            storing: tokio::sync::Semaphore::new(STORING),
            started: Instant::now(),
        }
    }
}

pub fn router(api: Arc<ChathostApi>) -> Router {
    Router::new()
        .route("/chathost", any(dispatch))
        .route("/chathost/", any(dispatch))
        .route("/chathost/{*rest}", any(dispatch))
        .layer(DefaultBodyLimit::max(MAX_BODY + 64 * 1024))
        .with_state(api)
}

/// A request as the endpoints see it.
pub(crate) struct Call {
    pub method: Method,
    pub headers: HeaderMap,
    pub peer: Option<SocketAddr>,
    /// The path segments after `/chathost`, percent-decoded.
    pub segments: Vec<String>,
    pub body: Body,
    /// Kept for extractors that read them (the body limit of `Multipart`).
    pub extensions: axum::http::Extensions,
}

impl Call {
    /// The whole body, at most [`MAX_BODY`] bytes: 413 beyond, 400 when it breaks off.
    pub async fn bytes(self, api: &ChathostApi) -> Result<Bytes, Response> {
        let declared = self
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > MAX_BODY as u64) {
            return Err(too_large());
        }
        let _turn = api
            .bodies
            .acquire()
            .await
            .map_err(|_| error(StatusCode::SERVICE_UNAVAILABLE, "shutting down"))?;
        match axum::body::to_bytes(self.body, MAX_BODY).await {
            Ok(b) => Ok(b),
            Err(e) => {
                let over = std::error::Error::source(&e)
                    .is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
                    || e.to_string().contains("length limit");
                if over {
                    Err(too_large())
                } else {
                    Err(error(StatusCode::BAD_REQUEST, &format!("body: {e}")))
                }
            }
        }
    }

    /// The body as JSON: 400 when it is not.
    pub async fn json(self, api: &ChathostApi) -> Result<Value, Response> {
        let bytes = self.bytes(api).await?;
        serde_json::from_slice(&bytes)
            .map_err(|e| error(StatusCode::BAD_REQUEST, &format!("invalid JSON: {e}")))
    }
}

fn too_large() -> Response {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!("the body is larger than {MAX_BODY} bytes"),
    )
}

/// `{"error": message}` with `status`.
pub(crate) fn error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({ "error": message }))).into_response()
}

impl ChathostApi {
    /// Wait for a turn to store a roster or a message array.
    pub(crate) async fn storing_turn(&self) -> Result<tokio::sync::SemaphorePermit<'_>, Response> {
        self.storing
            .acquire()
            .await
            .map_err(|_| error(StatusCode::SERVICE_UNAVAILABLE, "shutting down"))
    }
}

/// A JSON answer with 200.
pub(crate) fn ok_json(value: Value) -> Response {
    axum::Json(value).into_response()
}

/// The one mapping of core errors to this door's statuses.
pub(crate) fn core_error(e: CoreError) -> Response {
    match &e {
        CoreError::InvalidValue(_) | CoreError::TooLarge(_) => {
            error(StatusCode::BAD_REQUEST, &e.to_string())
        }
        CoreError::InvalidCredentials | CoreError::Unauthorized => {
            error(StatusCode::UNAUTHORIZED, &e.to_string())
        }
        CoreError::UserNotFound
        | CoreError::AttachmentNotFound
        | CoreError::ConversationNotFound
        | CoreError::MessageNotFound => error(StatusCode::NOT_FOUND, &e.to_string()),
        CoreError::AttachmentGone => error(StatusCode::GONE, &e.to_string()),
        CoreError::LoginThrottled { .. } => error(StatusCode::TOO_MANY_REQUESTS, &e.to_string()),
        CoreError::Busy { .. } => error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
        _ => {
            tracing::error!(error = %e, "chathost request failed");
            error(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
    }
}

/// Percent-decode one path segment (`%20` and `+` stay distinct: only `%XX` is decoded).
pub(crate) fn percent_decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Route `/chathost/…` by its lower-cased fixed segments; ids keep their case.
/// Every endpoint [`dispatch`] answers (method, path as docs/openapi.yaml writes it;
/// matched without regard to case; `healthcheck`, `check` and `logout` take any method).
/// `confer doc commands` prints it, and tests hold it to the router and to the document.
pub const ENDPOINTS: &[(&str, &str)] = &[
    ("GET", "/chathost/healthcheck"),
    ("GET", "/chathost/check"),
    ("GET", "/chathost/messageStatus"),
    ("POST", "/chathost/courseRosters"),
    ("POST", "/chathost/messages"),
    ("GET", "/chathost/messages/{since}"),
    ("GET", "/chathost/attachments/{id}/exists"),
    ("POST", "/chathost/attachments"),
    ("GET", "/chathost/files/{message_id}/{item_id}"),
    ("POST", "/chathost/logs/{type}"),
    ("GET", "/chathost/settings"),
    ("DELETE", "/chathost/settings/{deleteId}"),
    ("POST", "/chathost/auth"),
    ("GET", "/chathost/auth"),
    ("GET", "/chathost/logout"),
    ("GET", "/chathost/admin/boxes"),
    ("DELETE", "/chathost/admin/boxes/{boxid}"),
    ("GET", "/chathost/admin/roster/{boxid}"),
    ("GET", "/chathost/admin/system"),
    ("GET", "/chathost/admin/logs/{boxid}"),
    ("GET", "/chathost/admin/settings/{boxid}"),
    ("POST", "/chathost/admin/settings/{boxid}"),
    ("DELETE", "/chathost/admin/settings/{boxid}/{deleteId}"),
    ("GET", "/chathost/admin/security/{boxid}"),
    ("PUT", "/chathost/admin/security/{boxid}/{token}"),
    ("DELETE", "/chathost/admin/security/{boxid}"),
];

async fn dispatch(State(api): State<Arc<ChathostApi>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let query = parts.uri.query().map(str::to_string);
    let segments: Vec<String> = parts
        .uri
        .path()
        .split('/')
        .filter(|s| !s.is_empty())
        .skip(1)
        .map(percent_decode)
        .collect();
    let call = Call {
        method: parts.method,
        peer: parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0),
        headers: parts.headers,
        segments,
        body,
        extensions: parts.extensions,
    };
    let lower: Vec<String> = call.segments.iter().map(|s| s.to_lowercase()).collect();
    let fixed: Vec<&str> = lower.iter().map(String::as_str).collect();
    let m = call.method.clone();
    match (fixed.as_slice(), &m) {
        (["healthcheck"], _) => return health::healthcheck(),
        (["check"], _) => return health::check(&api, &call.headers).await,
        (["auth"], &Method::POST) => return admin_auth::login(&api, call).await,
        (["auth"], &Method::GET) => return admin_auth::session(&api, &call.headers).await,
        (["logout"], _) => return admin_auth::logout(&api, &call.headers).await,
        (["admin", ..], _) => return admin::dispatch(&api, call, &fixed[1..]).await,
        _ => {}
    }
    let boxid = match auth::box_of(&api, &call.headers).await {
        Ok(b) => b,
        Err(refused) => return refused,
    };
    match (fixed.as_slice(), &m) {
        (["messagestatus"], &Method::GET) => {
            status::message_status(&api, &boxid, query.as_deref()).await
        }
        (["courserosters"], &Method::POST) => rosters::post(&api, &boxid, call).await,
        (["messages"], &Method::POST) => messages::post(&api, &boxid, call).await,
        (["messages", _], &Method::GET) => {
            let since = call.segments[1].clone();
            messages::get(&api, &boxid, &since).await
        }
        (["attachments", _, "exists"], &Method::GET) => {
            attachments::exists(&api, &boxid, &call.segments[1]).await
        }
        (["attachments"], &Method::POST) => attachments::post(&api, &boxid, call).await,
        (["files", _, _], &Method::GET) => {
            let (m, i) = (call.segments[1].clone(), call.segments[2].clone());
            attachments::download(&api, &boxid, &m, &i).await
        }
        (["logs", kind], &Method::POST) => {
            let kind = kind.to_string();
            logs::post(&api, &boxid, &kind, call).await
        }
        (["settings"], &Method::GET) => settings::get(&api, &boxid).await,
        (["settings", _], &Method::DELETE) => {
            let id = call.segments[1].clone();
            settings::delete(&api, &boxid, &id).await
        }
        _ => error(StatusCode::NOT_FOUND, "no such chathost endpoint"),
    }
}

/// A path id that must be a whole number: 400 otherwise.
pub(crate) fn number(raw: &str, what: &str) -> Result<u64, Response> {
    raw.parse::<u64>().map_err(|_| {
        error(
            StatusCode::BAD_REQUEST,
            &format!("{what} must be a whole number"),
        )
    })
}
