//! `add_file`, as the Moodle plugin answered it: `{token, method: "add_file", item_id}` as
//! JSON or a form, moves the caller's own draft into the attachment store →
//! `{"success": true}`; errors are `{exception, errorcode, message}` with 400 (bad
//! request), 401 (bad token) or 404 (no such draft of yours).

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::FilesApi;

fn fail(status: StatusCode, exception: &str, errorcode: &str, message: &str) -> Response {
    (
        status,
        Json(json!({"exception": exception, "errorcode": errorcode, "message": message})),
    )
        .into_response()
}

/// The request's fields, from JSON or `application/x-www-form-urlencoded`.
fn fields(headers: &HeaderMap, body: &[u8]) -> Option<HashMap<String, String>> {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if is_form {
        let text = std::str::from_utf8(body).ok()?;
        return Some(
            text.split('&')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (decode(k), decode(v)))
                .collect(),
        );
    }
    let Value::Object(map) = serde_json::from_slice(body).ok()? else {
        return None;
    };
    Some(
        map.into_iter()
            .map(|(k, v)| {
                let v = match v {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                (k, v)
            })
            .collect(),
    )
}

/// Percent-decoding of a form value (`+` is a space).
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match u8::from_str_radix(s.get(i + 1..i + 3).unwrap_or(""), 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub async fn add_file(
    State(api): State<Arc<FilesApi>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(fields) = fields(&headers, &body) else {
        return fail(
            StatusCode::BAD_REQUEST,
            "invalid_parameter_exception",
            "invalidparameter",
            "the body must be JSON or a form",
        );
    };
    if fields.get("method").map(String::as_str) != Some("add_file") {
        return fail(
            StatusCode::BAD_REQUEST,
            "invalid_parameter_exception",
            "invalidparameter",
            "method must be add_file",
        );
    }
    let Some(item_id) = fields
        .get("item_id")
        .and_then(|i| i.trim().parse::<u64>().ok())
    else {
        return fail(
            StatusCode::BAD_REQUEST,
            "invalid_parameter_exception",
            "invalidparameter",
            "item_id is required",
        );
    };
    let token = fields.get("token").cloned().unwrap_or_default();
    let Ok(who) = api.core.authenticate_token(None, &token).await else {
        return fail(
            StatusCode::UNAUTHORIZED,
            "moodle_exception",
            "invalidtoken",
            "Invalid token - token not found",
        );
    };
    match api.core.add_file(&who, item_id).await {
        Ok(_) => Json(json!({"success": true})).into_response(),
        Err(confer_core::CoreError::AttachmentNotFound) => fail(
            StatusCode::NOT_FOUND,
            "file_exception",
            "filenotfound",
            "File not found",
        ),
        Err(confer_core::CoreError::AttachmentGone) => fail(
            StatusCode::NOT_FOUND,
            "file_exception",
            "filenotfound",
            "The file was removed",
        ),
        Err(e) => {
            tracing::error!(error = %e, "add_file");
            fail(
                StatusCode::INTERNAL_SERVER_ERROR,
                "moodle_exception",
                "generalexceptionmessage",
                "internal error",
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::decode;

    #[test]
    fn form_values_are_percent_decoded() {
        assert_eq!(decode("a+b%20c%2Fd"), "a b c/d");
        assert_eq!(decode("100%"), "100%");
        assert_eq!(decode("%zz"), "%zz");
    }
}
