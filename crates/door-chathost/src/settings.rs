//! `GET /settings`: the box's pending settings `[{deleteId, boxid, key, value,
//! timestamp}]`, each handed out once (again only after the hub restarts);
//! `DELETE /settings/:deleteId`: confirms one (200, 404 if the box has none such, 400
//! for an id that is not a number).

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};

use crate::{core_error, error, number, ok_json, ChathostApi};

pub(crate) async fn get(api: &ChathostApi, boxid: &str) -> Response {
    let settings = match api.core.hub_settings(boxid).await {
        Ok(s) => s,
        Err(e) => return core_error(e),
    };
    let mut handed = api.handed.lock().unwrap_or_else(|e| e.into_inner());
    let out: Vec<Value> = settings
        .into_iter()
        .filter(|s| handed.insert(s.id))
        .map(|s| {
            json!({
                "deleteId": s.id.to_string(),
                "boxid": s.boxid,
                "key": s.key,
                "value": s.value,
                "timestamp": s.timestamp,
            })
        })
        .collect();
    ok_json(Value::Array(out))
}

pub(crate) async fn delete(api: &ChathostApi, boxid: &str, id: &str) -> Response {
    let id = match number(id, "deleteId") {
        Ok(n) => n,
        Err(refused) => return refused,
    };
    match api.core.hub_delete_setting(boxid, id).await {
        Ok(true) => {
            api.handed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
            ok_json(json!({ "success": true }))
        }
        Ok(false) => error(StatusCode::NOT_FOUND, "no such setting for this box"),
        Err(e) => core_error(e),
    }
}
