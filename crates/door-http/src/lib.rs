//! # confer-door-http: plain HTTP endpoints
//!
//! - `POST /api/v1/login {user, password}` → `{session, uin, user, expires_at}`: a login
//!   token for the other doors (External API `login {user, token}`, Chat API `session`).
//!   401 with `{"error": …}` on bad credentials; 429 with `Retry-After` (seconds) once
//!   the account or the client address has failed too often (the core's login limits),
//!   503 with `Retry-After` when the password hasher is too busy to take the attempt.
//! - `POST /api/v1/register {user, password, name?}` → the same answer as a login, for a
//!   new account (when `open_registration` is on: else 403). 409 when the login is taken,
//!   400 for a login or password `user add` would refuse; 429 and 503 as for a login
//!   (the core's `register_account` applies the login limits).
//! - `POST /api/v1/logout` with the token as `Authorization: Bearer`, or `{session}` in
//!   the body: revokes it. A body, if any, must be that JSON object (400 otherwise, even
//!   beside a bearer token).
//! - `GET /healthz`: 200 `ok` while the server runs.
//! - `GET /metrics`: Prometheus text format.
//! - `/api/v1/admin/…`: the admin HTTP API ([`admin`]).
//! - `GET /` and `/assets/…`: the web client, embedded ([`web`]).
//!
//! JSON bodies are parsed by hand from bytes, so a malformed one gets this door's own
//! JSON error rather than the framework's plain-text rejection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use confer_core::{Core, CoreError, Principal};
use serde::Deserialize;
use serde_json::json;

pub mod admin;
pub mod web;

pub fn router(core: Arc<Core>) -> Router {
    let admin = admin::router(core.clone());
    Router::new()
        .route("/api/v1/login", post(login))
        .route("/api/v1/register", post(register))
        .route("/api/v1/logout", post(logout))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(core)
        .merge(admin)
        .merge(web::router())
}

#[derive(Deserialize)]
struct LoginRequest {
    user: String,
    password: String,
}

#[derive(Deserialize)]
struct RegisterRequest {
    user: String,
    password: String,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize, Default)]
struct LogoutRequest {
    session: Option<String>,
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

/// A "try later" answer: `status` with `Retry-After` in whole seconds (at least 1).
fn try_later(status: StatusCode, retry_after: Duration, message: &str) -> Response {
    let secs = retry_after.as_secs_f64().ceil().max(1.0) as u64;
    let mut response = error(status, message);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
    response
}

pub(crate) fn core_error(e: CoreError) -> Response {
    match e {
        CoreError::InvalidCredentials => {
            error(StatusCode::UNAUTHORIZED, "invalid user or password")
        }
        CoreError::LoginThrottled { retry_after } => {
            try_later(StatusCode::TOO_MANY_REQUESTS, retry_after, &e.to_string())
        }
        CoreError::Busy { retry_after } => {
            try_later(StatusCode::SERVICE_UNAVAILABLE, retry_after, &e.to_string())
        }
        CoreError::Storage(_) | CoreError::Internal(_) => {
            tracing::error!(error = %e, "http door");
            error(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
        other => error(StatusCode::BAD_REQUEST, &other.to_string()),
    }
}

/// A body that could not be read (over axum's default limit, 2 MiB: 413), told in this
/// door's JSON rather than as the framework's plain-text rejection.
fn unreadable(e: BytesRejection) -> Response {
    error(e.status(), &e.body_text())
}

async fn login(
    State(core): State<Arc<Core>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) => return unreadable(e),
    };
    let req: LoginRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, &format!("invalid body: {e}")),
    };
    let who = match core
        .authenticate_password(&req.user, &req.password, peer.ip())
        .await
    {
        Ok(who) => who,
        Err(e) => return core_error(e),
    };
    session_answer(&core, &who).await
}

/// The answer of a login or sign-up: a new token for `who`.
async fn session_answer(core: &Core, who: &Principal) -> Response {
    match core.issue_token(who).await {
        Ok((token, expires_at_us)) => Json(json!({
            "session": token,
            "uin": who.uin.0.to_string(),
            "user": who.login,
            "expires_at": expires_at_us / 1_000_000,
        }))
        .into_response(),
        Err(e) => core_error(e),
    }
}

async fn register(
    State(core): State<Arc<Core>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) => return unreadable(e),
    };
    let req: RegisterRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, &format!("invalid body: {e}")),
    };
    let name = req.name.filter(|n| !n.trim().is_empty());
    match core
        .register_account(&req.user, &req.password, name, peer.ip())
        .await
    {
        Ok(account) => {
            let who = Principal {
                uin: account.uin,
                login: account.login,
                admin: false,
            };
            session_answer(&core, &who).await
        }
        Err(CoreError::Unauthorized) => error(StatusCode::FORBIDDEN, "registration is closed"),
        Err(CoreError::UserExists) => error(StatusCode::CONFLICT, "that login is taken"),
        Err(e) => core_error(e),
    }
}

async fn logout(
    State(core): State<Arc<Core>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) => return unreadable(e),
    };
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    // A body is read even beside a bearer token, so a malformed one is never ignored.
    let req: LogoutRequest = if body.is_empty() {
        LogoutRequest::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => return error(StatusCode::BAD_REQUEST, &format!("invalid body: {e}")),
        }
    };
    let Some(token) = bearer.or(req.session) else {
        return error(StatusCode::UNAUTHORIZED, "no session token");
    };
    match core.revoke_token(&token).await {
        Ok(true) => Json(json!({ "result": "ok" })).into_response(),
        Ok(false) => error(StatusCode::UNAUTHORIZED, "unknown session token"),
        Err(e) => core_error(e),
    }
}

async fn healthz() -> &'static str {
    "ok"
}

async fn metrics(State(core): State<Arc<Core>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        core.metrics().render(),
    )
        .into_response()
}
