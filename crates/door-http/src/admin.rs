//! The admin HTTP API under `/api/v1/admin/`: chat groups, their members, messages sent
//! in a member's name, and the live sessions of this server. The `confer group`,
//! `message` and `session` commands are its clients: they must act on the running
//! server, because live sessions exist only there and the store's conversation cache
//! assumes the server is the database's only writer.
//!
//! Authentication is HTTP Basic with the user `admin` and the configured
//! `admin_password` (checked by the core, in constant time). Without an admin password
//! every request is 403; missing or wrong credentials are 401 with a `WWW-Authenticate`
//! challenge. Every error is `{"error": "text"}`. Users are named by login or by decimal
//! `uin` (a login that reads as a number wins over the number). Each handler only decodes, calls one `Core::admin_*` method with the admin's
//! `Principal`, and renders: the rules live in the core (`service/admin.rs`).

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use base64::Engine as _;
use confer_core::bus::SessionInfo;
use confer_core::model::ADMIN_LOGIN;
use confer_core::{Conversation, ConversationKind, Core, CoreError, GroupId, Principal, SessionId};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

/// The answer a request gets instead (boxed: a `Response` is large).
type Refused = Box<Response>;

/// The realm of the Basic challenge.
const CHALLENGE: &str = "Basic realm=\"confer admin\"";

pub fn router(core: Arc<Core>) -> Router {
    Router::new()
        .route("/api/v1/admin/groups", get(list_groups).post(create_group))
        .route("/api/v1/admin/groups/{group_id}/members", post(add_member))
        .route(
            "/api/v1/admin/groups/{group_id}/members/{user}",
            delete(remove_member),
        )
        .route(
            "/api/v1/admin/groups/{group_id}/messages",
            post(send_message),
        )
        .route("/api/v1/admin/sessions", get(list_sessions))
        .route("/api/v1/admin/sessions/{session_id}", delete(stop_session))
        .route("/api/v1/admin/{*rest}", axum::routing::any(unknown))
        .with_state(core)
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

fn core_error(e: CoreError) -> Response {
    if matches!(e, CoreError::ConversationNotFound) {
        // The core's word is the External API's ("conference"); here it is a group.
        return error(StatusCode::NOT_FOUND, "group not found");
    }
    let status = match &e {
        CoreError::InvalidValue(_) | CoreError::TooLarge(_) => StatusCode::BAD_REQUEST,
        CoreError::UserNotFound
        | CoreError::ConversationNotFound
        | CoreError::SessionNotFound
        | CoreError::MessageNotFound => StatusCode::NOT_FOUND,
        CoreError::InvalidOperation(_)
        | CoreError::UserExists
        | CoreError::ConversationExists
        | CoreError::ConversationDestroyed
        | CoreError::Blocked => StatusCode::CONFLICT,
        CoreError::Unauthorized => StatusCode::FORBIDDEN,
        CoreError::Storage(_) | CoreError::Internal(_) => {
            tracing::error!(error = %e, "admin api");
            return error(StatusCode::INTERNAL_SERVER_ERROR, "internal error");
        }
        _ => StatusCode::BAD_REQUEST,
    };
    error(status, &e.to_string())
}

/// The admin, from the request's Basic credentials; otherwise the answer to send.
async fn authenticate(
    core: &Core,
    headers: &HeaderMap,
    from: IpAddr,
) -> Result<Principal, Refused> {
    if !core.admin_enabled() {
        return Err(Box::new(error(
            StatusCode::FORBIDDEN,
            "admin API disabled: no admin_password",
        )));
    }
    let unauthorized = |message: &str| {
        let mut response = error(StatusCode::UNAUTHORIZED, message);
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static(CHALLENGE),
        );
        Box::new(response)
    };
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(unauthorized("admin credentials required (HTTP Basic)"));
    };
    let credentials = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b64| {
            base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .ok()
        })
        .and_then(|raw| String::from_utf8(raw).ok());
    let Some(credentials) = credentials else {
        return Err(unauthorized("malformed Basic credentials"));
    };
    let (user, password) = credentials.split_once(':').unwrap_or((&credentials, ""));
    if user != ADMIN_LOGIN {
        return Err(unauthorized("invalid admin credentials"));
    }
    // The same path as every password login: the login limits of the account `admin`
    // and of the client address, and the doubling delay after a failure, so the admin
    // password cannot be guessed any faster here than at `POST /api/v1/login`.
    match core
        .authenticate_password(ADMIN_LOGIN, password, from)
        .await
    {
        Ok(admin) if admin.admin => Ok(admin),
        Ok(_) | Err(CoreError::InvalidCredentials) => {
            Err(unauthorized("invalid admin credentials"))
        }
        Err(e) => Err(Box::new(crate::core_error(e))),
    }
}

/// A JSON body of type `T`; unknown fields are refused by name, as is `null` for a field.
fn body<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, Refused> {
    serde_json::from_slice(bytes).map_err(|e| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            &format!("invalid body: {e}"),
        ))
    })
}

/// A group id: a decimal number (one too large for any group is simply not found).
fn group_id(raw: &str) -> Result<GroupId, Refused> {
    if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            &format!("group_id must be a decimal number, not {raw:?}"),
        )));
    }
    raw.parse()
        .map(GroupId)
        .map_err(|_| Box::new(error(StatusCode::NOT_FOUND, "group not found")))
}

/// A user named by login or uin.
async fn user(core: &Core, name: &str) -> Result<confer_core::Uin, Refused> {
    match core.find_user(name).await {
        Ok(account) => Ok(account.uin),
        Err(CoreError::UserNotFound) => Err(Box::new(error(
            StatusCode::NOT_FOUND,
            &format!("user not found: {name}"),
        ))),
        Err(e) => Err(Box::new(core_error(e))),
    }
}

fn kind_number(kind: &ConversationKind) -> u8 {
    match kind {
        ConversationKind::Private => 1,
        ConversationKind::Group => 2,
        ConversationKind::Public => 3,
        ConversationKind::Conference { .. } => 0,
    }
}

fn group_json(g: &Conversation) -> Value {
    json!({
        "group_id": g.group_id.to_string(),
        "type": kind_number(&g.kind),
        "name": g.name,
        "owner_uin": g.owner.to_string(),
        "members": g.occupants.iter().map(|u| u.to_string()).collect::<Vec<_>>(),
        "created_at": g.created_at_us / 1_000_000,
    })
}

/// The door a session came through, as the admin API names it.
fn door_name(door: &str) -> &str {
    match door {
        "api_server" => "extapi",
        other => other,
    }
}

fn session_json(s: &SessionInfo) -> Value {
    json!({
        "session_id": s.session_id.as_str(),
        "user": s.user,
        "uin": s.uin.to_string(),
        "door": door_name(s.door),
        "remote": s.remote,
        "started_at": s.started_at_us / 1_000_000,
    })
}

/// The admin, or answer the authentication failure.
macro_rules! as_admin {
    ($core:expr, $headers:expr, $peer:expr) => {
        match authenticate(&$core, &$headers, $peer.ip()).await {
            Ok(admin) => admin,
            Err(response) => return *response,
        }
    };
}

/// Unwrap a `Result<T, Refused>` or answer its refusal.
macro_rules! or_answer {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(response) => return *response,
        }
    };
}

async fn list_groups(
    State(core): State<Arc<Core>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let admin = as_admin!(core, headers, peer);
    match core.admin_list_groups(&admin).await {
        Ok(groups) => Json(groups.iter().map(group_json).collect::<Vec<_>>()).into_response(),
        Err(e) => core_error(e),
    }
}

/// An optional field that, when present, must not be `null`.
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateGroup {
    name: String,
    owner: String,
    #[serde(default)]
    members: Vec<String>,
    #[serde(rename = "type", default, deserialize_with = "present")]
    kind: Option<u8>,
}

async fn create_group(
    State(core): State<Arc<Core>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Response {
    let admin = as_admin!(core, headers, peer);
    let req: CreateGroup = or_answer!(body(&bytes));
    let kind = match req.kind.unwrap_or(2) {
        1 => ConversationKind::Private,
        2 => ConversationKind::Group,
        3 => ConversationKind::Public,
        other => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("type must be 1 (private), 2 (group) or 3 (public), not {other}"),
            )
        }
    };
    let owner = or_answer!(user(&core, &req.owner).await);
    let mut members = BTreeSet::from([owner]);
    for name in &req.members {
        members.insert(or_answer!(user(&core, name).await));
    }
    match core
        .admin_create_group(&admin, kind, Some(req.name), owner, members)
        .await
    {
        Ok(group) => (StatusCode::CREATED, Json(group_json(&group))).into_response(),
        Err(e) => core_error(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddMember {
    user: String,
}

async fn add_member(
    State(core): State<Arc<Core>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(group): Path<String>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Response {
    let admin = as_admin!(core, headers, peer);
    let group = or_answer!(group_id(&group));
    let req: AddMember = or_answer!(body(&bytes));
    let uin = or_answer!(user(&core, &req.user).await);
    match core.admin_add_member(&admin, group, uin).await {
        Ok(group) => Json(group_json(&group)).into_response(),
        Err(e) => core_error(e),
    }
}

async fn remove_member(
    State(core): State<Arc<Core>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path((group, member)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let admin = as_admin!(core, headers, peer);
    let group = or_answer!(group_id(&group));
    let uin = or_answer!(user(&core, &member).await);
    match core.admin_remove_member(&admin, group, uin).await {
        Ok(group) => Json(group_json(&group)).into_response(),
        Err(e) => core_error(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SendMessage {
    text: String,
    #[serde(rename = "as", default, deserialize_with = "present")]
    sender: Option<String>,
}

async fn send_message(
    State(core): State<Arc<Core>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(group): Path<String>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Response {
    let admin = as_admin!(core, headers, peer);
    let group = or_answer!(group_id(&group));
    let req: SendMessage = or_answer!(body(&bytes));
    let sender = match &req.sender {
        Some(name) => Some(or_answer!(user(&core, name).await)),
        None => None,
    };
    match core
        .admin_post_message(&admin, group, sender, req.text)
        .await
    {
        Ok(m) => (
            StatusCode::CREATED,
            Json(json!({
                "message_id": m.message_id.to_string(),
                "group_id": m.group_id.to_string(),
                "seq": m.seq,
                "sender_uin": m.sender.to_string(),
                "created_at": m.created_at_us,
            })),
        )
            .into_response(),
        Err(e) => core_error(e),
    }
}

async fn list_sessions(
    State(core): State<Arc<Core>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let admin = as_admin!(core, headers, peer);
    match core.admin_sessions(&admin) {
        Ok(sessions) => Json(sessions.iter().map(session_json).collect::<Vec<_>>()).into_response(),
        Err(e) => core_error(e),
    }
}

async fn stop_session(
    State(core): State<Arc<Core>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(session): Path<String>,
    headers: HeaderMap,
) -> Response {
    let admin = as_admin!(core, headers, peer);
    match core.stop_session(&admin, &SessionId::new(session.as_str())) {
        Ok(()) => Json(json!({ "stopped": true })).into_response(),
        Err(CoreError::SessionNotFound) => {
            error(StatusCode::NOT_FOUND, &format!("no live session {session}"))
        }
        Err(e) => core_error(e),
    }
}

async fn unknown(
    State(core): State<Arc<Core>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    as_admin!(core, headers, peer);
    error(StatusCode::NOT_FOUND, "no such admin endpoint")
}
