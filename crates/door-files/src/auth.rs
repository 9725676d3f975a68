//! Who is asking: the login token from `Authorization: Bearer`, a `token` query
//! parameter, or the `confer_session` cookie.

use axum::http::{header, HeaderMap, Uri};
use confer_core::{Core, Principal};

pub fn token_of(headers: &HeaderMap, uri: &Uri) -> Option<String> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_string());
    let query = uri.query().and_then(|q| {
        q.split('&')
            .find_map(|kv| kv.strip_prefix("token=").map(str::to_string))
    });
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| {
            c.trim()
                .strip_prefix(&format!("{}=", crate::SESSION_COOKIE))
                .map(str::to_string)
        });
    bearer.or(query).or(cookie).filter(|t| !t.is_empty())
}

pub async fn principal(core: &Core, token: Option<String>) -> Option<Principal> {
    core.authenticate_token(None, &token?).await.ok()
}
