//! `add_file`, as the Moodle plugin answered it: `{token, method: "add_file", item_id}` as
//! JSON or a form (decided by content, whatever the `Content-Type`), moves the caller's own draft into the attachment store →
//! `{"success": true}`; errors are `{exception, errorcode, message}` with 400 (bad
//! request), 401 (bad token), 404 (no such draft of yours) or 413 (a body over 2 MiB).

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
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

/// The request's fields, decided by content: a body that parses as a JSON object is JSON
/// (`curl -d '{…}'` labels it a form), anything else is read as
/// `application/x-www-form-urlencoded` (what the Moodle plugin posted). `Err` says what is
/// wrong with the body.
fn fields(headers: &HeaderMap, body: &[u8]) -> Result<HashMap<String, String>, String> {
    const EXPECTED: &str = "send token, method=add_file and item_id as a JSON object or a form";
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(format!("the body is empty: {EXPECTED}"));
    }
    let says_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("application/json"));
    let looks_json = body
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| matches!(b, b'{' | b'['));
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => {
            return Ok(map
                .into_iter()
                .map(|(k, v)| {
                    let v = match v {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    (k, v)
                })
                .collect())
        }
        Ok(_) if says_json || looks_json => {
            return Err(format!("the body is JSON but not an object: {EXPECTED}"))
        }
        Err(e) if says_json || looks_json => {
            return Err(format!("the body is not valid JSON ({e}): {EXPECTED}"))
        }
        _ => {}
    }
    let text = std::str::from_utf8(body)
        .map_err(|e| format!("the form body is not UTF-8 ({e}): {EXPECTED}"))?;
    let pairs: HashMap<String, String> = text
        .trim()
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect();
    if pairs.is_empty() {
        return Err(format!(
            "the body is neither a JSON object nor a form (name=value&…): {EXPECTED}"
        ));
    }
    Ok(pairs)
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
    body: Result<Bytes, BytesRejection>,
) -> Response {
    // A body that cannot be read (over axum's default limit, 2 MiB: 413) is told in this
    // endpoint's error form, not as the framework's plain text.
    let body = match body {
        Ok(body) => body,
        Err(e) => {
            return fail(
                e.status(),
                "invalid_parameter_exception",
                "invalidparameter",
                &e.body_text(),
            )
        }
    };
    let fields = match fields(&headers, &body) {
        Ok(f) => f,
        Err(why) => {
            return fail(
                StatusCode::BAD_REQUEST,
                "invalid_parameter_exception",
                "invalidparameter",
                &why,
            )
        }
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
    use super::{decode, fields};
    use axum::http::{header, HeaderMap, HeaderValue};

    #[test]
    fn form_values_are_percent_decoded() {
        assert_eq!(decode("a+b%20c%2Fd"), "a b c/d");
        assert_eq!(decode("100%"), "100%");
        assert_eq!(decode("%zz"), "%zz");
    }

    #[test]
    fn json_by_content_else_a_form_else_a_reason() {
        let mut form = HeaderMap::new();
        form.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        let json = fields(&form, br#"{"method":"add_file","item_id":3}"#).unwrap();
        assert_eq!(json["method"], "add_file");
        assert_eq!(json["item_id"], "3");
        let f = fields(&form, b"token=a%2Bb&method=add_file&item_id=3").unwrap();
        assert_eq!((f["token"].as_str(), f["item_id"].as_str()), ("a+b", "3"));
        assert!(fields(&form, b"").unwrap_err().contains("empty"));
        assert!(fields(&form, b"{\"method\":")
            .unwrap_err()
            .contains("not valid JSON"));
        assert!(fields(&form, b"[1]").unwrap_err().contains("not an object"));
        assert!(fields(&form, b"hello").unwrap_err().contains("neither"));
        assert!(fields(&form, b"a=\xff").unwrap_err().contains("UTF-8"));
    }
}
