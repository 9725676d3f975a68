//! `POST /logs/:type`: `type` is `moodle`, `content`, `system` or `sync` (else 404); the
//! body a JSON array whose items are `{timestamp, log}` objects, content items, or the
//! bare strings old edges mix in (else 400). Each item is stored with the box and type,
//! all in one write.

use axum::http::StatusCode;
use axum::response::Response;
use confer_core::event::Json;
use serde_json::{json, Value};

use crate::{core_error, error, ok_json, Call, ChathostApi};

/// The log types a box posts.
pub(crate) const TYPES: [&str; 4] = ["moodle", "content", "system", "sync"];

pub(crate) async fn post(api: &ChathostApi, boxid: &str, kind: &str, call: Call) -> Response {
    if !TYPES.contains(&kind) {
        return error(
            StatusCode::NOT_FOUND,
            "the log type is moodle, content, system or sync",
        );
    }
    let body = match call.json(api).await {
        Ok(v) => v,
        Err(refused) => return refused,
    };
    let Some(items) = body.as_array() else {
        return error(
            StatusCode::BAD_REQUEST,
            "the body must be a JSON array of log items",
        );
    };
    if let Some(i) = items
        .iter()
        .position(|v| !matches!(v, Value::String(_) | Value::Object(_)))
    {
        return error(
            StatusCode::BAD_REQUEST,
            &format!("[{i}]: a log item is an object or a string"),
        );
    }
    let count = items.len();
    let items = items
        .iter()
        .map(|v| Json::from_validated(v.to_string()))
        .collect();
    match api.core.hub_add_logs(boxid, kind, items).await {
        Ok(()) => ok_json(json!({ "success": true, "stored": count })),
        Err(e) => core_error(e),
    }
}
