//! The admin session: `POST /chathost/auth {username, password}` (JSON or a form, with
//! an optional `redirect`) logs a hub administrator in (the configured `admin`, or an
//! account with the admin flag) and sets the session cookie: a JSON request gets 200
//! `{username}` (401 on a bad login), a form 302 to `redirect` or the dashboard (back to
//! the login page without a session). `GET /chathost/auth`: 200 `{username}` or 401.
//! `GET /chathost/logout`: ends the session (200), 401 without one.

use std::net::{IpAddr, Ipv4Addr};

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use confer_core::CoreError;
use serde_json::{json, Value};

use crate::auth::{admin_of, session_token, SESSION_COOKIE};
use crate::{core_error, error, ok_json, Call, ChathostApi};

/// Where a browser goes after logging in, and back to when it fails.
const DASHBOARD: &str = "/chathost/admin";
const LOGIN_PAGE: &str = "/chathost/login";

pub(crate) fn form_fields(body: &[u8]) -> Value {
    let text = String::from_utf8_lossy(body);
    let mut map = serde_json::Map::new();
    for pair in text.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let decode = |s: &str| crate::percent_decode(&s.replace('+', " "));
        map.insert(decode(k), Value::String(decode(v)));
    }
    Value::Object(map)
}

/// Only a path on this server: an open redirect would send a logged-in admin anywhere.
fn local_redirect(target: Option<&str>) -> &str {
    match target {
        Some(t) if t.starts_with('/') && !t.starts_with("//") && !t.contains('\\') => t,
        _ => DASHBOARD,
    }
}

fn redirect(to: &str, cookie: Option<String>) -> Response {
    let mut r = StatusCode::FOUND.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    if let Some(c) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        r.headers_mut().insert(header::SET_COOKIE, c);
    }
    r
}

pub(crate) async fn login(api: &ChathostApi, call: Call) -> Response {
    let is_form = call
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let from = call
        .peer
        .map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), |p| p.ip());
    let bytes = match call.bytes(api).await {
        Ok(b) => b,
        Err(refused) => return refused,
    };
    let body: Value = if is_form {
        form_fields(&bytes)
    } else {
        match serde_json::from_slice(&bytes) {
            Ok(v @ Value::Object(_)) => v,
            _ => return error(StatusCode::BAD_REQUEST, "the body must be a JSON object"),
        }
    };
    let field = |k: &str| body.get(k).and_then(Value::as_str).unwrap_or_default();
    let (username, password) = (field("username"), field("password"));
    let target = local_redirect(body.get("redirect").and_then(Value::as_str)).to_string();
    if username.is_empty() || password.is_empty() {
        return if is_form {
            redirect(LOGIN_PAGE, None)
        } else {
            error(
                StatusCode::BAD_REQUEST,
                "username and password are required",
            )
        };
    }
    let who = match api
        .core
        .authenticate_password(username, password, from)
        .await
    {
        Ok(who) => who,
        Err(CoreError::InvalidCredentials) if is_form => return redirect(LOGIN_PAGE, None),
        Err(e) => return core_error(e),
    };
    match api.core.is_hub_admin(&who).await {
        Ok(true) => {}
        Ok(false) if is_form => return redirect(LOGIN_PAGE, None),
        Ok(false) => return error(StatusCode::UNAUTHORIZED, "not a hub administrator"),
        Err(e) => return core_error(e),
    }
    let token = match api.core.issue_token(&who).await {
        Ok((token, _)) => token,
        Err(e) => return core_error(e),
    };
    let cookie = format!("{SESSION_COOKIE}={token}; Path=/chathost; HttpOnly; SameSite=Lax");
    if is_form {
        return redirect(&target, Some(cookie));
    }
    let mut r = ok_json(json!({ "username": who.login }));
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

pub(crate) async fn session(api: &ChathostApi, headers: &HeaderMap) -> Response {
    match admin_of(api, headers).await {
        Ok(who) => ok_json(json!({ "username": who.login })),
        Err(refused) => refused,
    }
}

pub(crate) async fn logout(api: &ChathostApi, headers: &HeaderMap) -> Response {
    if let Err(refused) = admin_of(api, headers).await {
        return refused;
    }
    if let Some(token) = session_token(headers) {
        if let Err(e) = api.core.revoke_token(&token).await {
            return core_error(e);
        }
    }
    let mut r = ok_json(json!({ "success": true }));
    let gone = format!("{SESSION_COOKIE}=; Path=/chathost; HttpOnly; Max-Age=0");
    if let Ok(v) = HeaderValue::from_str(&gone) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}
