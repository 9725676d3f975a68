//! The door's decoders of what a box or a browser sends, reachable from the fuzz target
//! `chathost_payloads` in `fuzz/`: rosters, message arrays, the bearer credential, path
//! segments and login forms. Hidden from the docs and not an API; each function runs
//! exactly the code a request runs, without storage.

use axum::http::{header, HeaderMap, HeaderValue};

/// A `POST /courseRosters` body: the number of courses, or why it is refused.
pub fn roster(body: &[u8]) -> Result<usize, String> {
    let value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    crate::rosters::parse(&value).map(|c| c.len())
}

/// A `POST /messages` body: each message's id and attachment id, or why it is refused.
pub fn messages(body: &[u8]) -> Result<Vec<(String, Option<String>)>, String> {
    let value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    crate::messages::parse(&value).map(|ms| {
        ms.into_iter()
            .map(|(m, _)| (m.id, m.attachment.map(|a| a.0)))
            .collect()
    })
}

/// An `Authorization` header value read as a box credential.
pub fn credential(value: &[u8]) -> Option<(String, String)> {
    let mut headers = HeaderMap::new();
    headers.insert(header::AUTHORIZATION, HeaderValue::from_bytes(value).ok()?);
    crate::auth::credential(&headers)
}

/// A path segment as the router decodes it.
pub fn segment(raw: &str) -> String {
    crate::percent_decode(raw)
}

/// A login form body: its fields as JSON text.
pub fn form(body: &[u8]) -> String {
    crate::admin_auth::form_fields(body).to_string()
}
