//! Who is calling: a box by its credential `Authorization: Bearer <boxid>|<token>`
//! (checked against the box's keys in the core; trust on first use when configured), or
//! a hub administrator by the session cookie [`SESSION_COOKIE`] that `POST
//! /chathost/auth` sets.

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use confer_core::Principal;

use crate::{core_error, error, ChathostApi};

/// The admin session's cookie.
pub const SESSION_COOKIE: &str = "chathost_session";

/// `(boxid, token)` from the bearer credential, if well-formed.
pub(crate) fn credential(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let rest = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))?
        .trim();
    let (boxid, token) = rest.split_once('|')?;
    let (boxid, token) = (boxid.trim(), token.trim());
    (!boxid.is_empty() && !token.is_empty()).then(|| (boxid.to_string(), token.to_string()))
}

/// The box a sync call comes from: 401 without a valid credential.
pub(crate) async fn box_of(api: &ChathostApi, headers: &HeaderMap) -> Result<String, Response> {
    let Some((boxid, token)) = credential(headers) else {
        return Err(error(
            StatusCode::UNAUTHORIZED,
            "Authorization: Bearer <boxid>|<token> is required",
        ));
    };
    match api
        .core
        .hub_check_key(&boxid, &token, api.trust_on_first_use)
        .await
    {
        Ok(true) => Ok(boxid),
        Ok(false) => Err(error(StatusCode::UNAUTHORIZED, "unknown box or wrong key")),
        Err(e) => Err(core_error(e)),
    }
}

/// A hint naming the key a request came with, never the key itself.
pub(crate) fn key_hint(headers: &HeaderMap) -> String {
    match credential(headers) {
        Some((boxid, token)) => {
            let head: String = token.chars().take(4).collect();
            format!("{boxid}|{head}…")
        }
        None => String::new(),
    }
}

/// The session token in the admin cookie.
pub(crate) fn session_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| {
            c.trim()
                .strip_prefix(&format!("{SESSION_COOKIE}="))
                .map(str::to_string)
        })
        .filter(|t| !t.is_empty())
}

/// The hub administrator of the session: 401 without one.
pub(crate) async fn admin_of(
    api: &ChathostApi,
    headers: &HeaderMap,
) -> Result<Principal, Response> {
    let refused = || error(StatusCode::UNAUTHORIZED, "log in at /chathost/auth first");
    let token = session_token(headers).ok_or_else(refused)?;
    let who = api
        .core
        .authenticate_token(None, &token)
        .await
        .map_err(|_| refused())?;
    match api.core.is_hub_admin(&who).await {
        Ok(true) => Ok(who),
        Ok(false) => Err(refused()),
        Err(e) => Err(core_error(e)),
    }
}
