//! The hub's admin API under `/chathost/admin/`, for a hub administrator's session
//! (`admin_auth`; 401 without one): boxes, a box's roster, logs, settings and keys, and
//! the hub's own system facts. Decisions where the original is silent: keys are stored
//! hashed, so `currentSecurityKey` is known only while a new key waits in the box's
//! settings queue, and `lastSecurityKey` is a hint (`<boxid>|<first 4 characters>…`).

use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};

use crate::auth::admin_of;
use crate::{core_error, error, number, ok_json, Call, ChathostApi};

/// The setting keys that carry a box's new key.
const KEY_SETTINGS: [&str; 2] = ["authorization", "moodle-security-key"];

pub(crate) async fn dispatch(api: &ChathostApi, call: Call, rest: &[&str]) -> Response {
    if let Err(refused) = admin_of(api, &call.headers).await {
        return refused;
    }
    // Path ids keep their case: take them from the decoded segments.
    let id = |i: usize| call.segments.get(i + 1).cloned().unwrap_or_default();
    let m = call.method.clone();
    match (rest, &m) {
        (["boxes"], &Method::GET) => boxes(api).await,
        (["boxes", _], &Method::DELETE) => remove_box(api, &id(1)).await,
        (["roster", _], &Method::GET) => roster(api, &id(1)).await,
        (["system"], &Method::GET) => system(api),
        (["logs", _], &Method::GET) => logs(api, &id(1)).await,
        (["settings", _], &Method::GET) => settings(api, &id(1)).await,
        (["settings", _], &Method::POST) => {
            let boxid = id(1);
            queue_setting(api, &boxid, call).await
        }
        (["settings", _, _], &Method::DELETE) => delete_setting(api, &id(1), &id(2)).await,
        (["security", _], &Method::GET) => security(api, &id(1)).await,
        (["security", _, _], &Method::PUT) => put_key(api, &id(1), &id(2)).await,
        (["security", _], &Method::DELETE) => remove_keys(api, &id(1)).await,
        _ => error(StatusCode::NOT_FOUND, "no such admin endpoint"),
    }
}

fn check_boxid(boxid: &str) -> Result<(), Response> {
    if confer_core::service::hub_valid_name(boxid) {
        Ok(())
    } else {
        Err(error(StatusCode::BAD_REQUEST, "not a box id"))
    }
}

/// Counts and site fields from a stored roster.
fn summary(roster: Option<&Value>) -> Value {
    let courses = roster
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut teachers = std::collections::BTreeSet::new();
    let mut students = std::collections::BTreeSet::new();
    let mut count = 0;
    for c in &courses {
        let is_site = crate::rosters::text_of(c.get("id")).as_deref() == Some("1");
        if !is_site {
            count += 1;
        }
        for (key, set) in [("teachers", &mut teachers), ("students", &mut students)] {
            for p in c.get(key).and_then(Value::as_array).into_iter().flatten() {
                if let Some(u) = crate::rosters::text_of(p.get("username")) {
                    set.insert(u);
                }
            }
        }
    }
    let site = courses.first();
    let field = |k: &str| site.and_then(|s| s.get(k)).cloned().unwrap_or(Value::Null);
    json!({
        "sitename": field("sitename"),
        "siteadmin_name": field("siteadmin_name"),
        "siteadmin_email": field("siteadmin_email"),
        "siteadmin_phone": field("siteadmin_phone"),
        "courses": count,
        "teachers": teachers.len(),
        "students": students.len(),
    })
}

fn parsed(roster: Option<&confer_core::event::Json>) -> Option<Value> {
    roster.and_then(|r| serde_json::from_str(r.as_str()).ok())
}

async fn boxes(api: &ChathostApi) -> Response {
    let boxes = match api.core.hub_boxes().await {
        Ok(b) => b,
        Err(e) => return core_error(e),
    };
    let out: Vec<Value> = boxes
        .iter()
        .map(|b| {
            let mut v = summary(parsed(b.roster.as_ref()).as_ref());
            v["boxid"] = json!(b.boxid);
            v["timestamp"] = json!(b.last_sync);
            v["siteip"] = json!(b.siteip);
            v
        })
        .collect();
    ok_json(Value::Array(out))
}

async fn remove_box(api: &ChathostApi, boxid: &str) -> Response {
    if let Err(r) = check_boxid(boxid) {
        return r;
    }
    match api.core.hub_remove_box(boxid).await {
        Ok(true) => ok_json(json!({})),
        Ok(false) => error(StatusCode::NOT_FOUND, "no such box"),
        Err(e) => core_error(e),
    }
}

async fn roster(api: &ChathostApi, boxid: &str) -> Response {
    if let Err(r) = check_boxid(boxid) {
        return r;
    }
    let b = match api.core.hub_box(boxid).await {
        Ok(b) => b,
        Err(e) => return core_error(e),
    };
    let Some(b) = b else {
        return ok_json(json!([]));
    };
    let mut roster = parsed(b.roster.as_ref()).unwrap_or_else(|| json!([]));
    if let Some(first) = roster.get_mut(0).and_then(Value::as_object_mut) {
        first.insert(
            "timestamp".into(),
            json!(b.roster_at_us.map(|t| t / 1_000_000)),
        );
    }
    ok_json(roster)
}

fn system(api: &ChathostApi) -> Response {
    ok_json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime": api.started.elapsed().as_secs(),
    }))
}

async fn logs(api: &ChathostApi, boxid: &str) -> Response {
    if let Err(r) = check_boxid(boxid) {
        return r;
    }
    match api.core.hub_logs(boxid).await {
        Ok(logs) => ok_json(Value::Array(
            logs.iter()
                .map(|l| {
                    json!({
                        "id": l.id.to_string(),
                        "boxid": boxid,
                        "type": l.kind,
                        "timestamp": l.at_us / 1_000_000,
                        "log": serde_json::from_str::<Value>(l.item.as_str()).unwrap_or(Value::Null),
                    })
                })
                .collect(),
        )),
        Err(e) => core_error(e),
    }
}

async fn settings(api: &ChathostApi, boxid: &str) -> Response {
    if let Err(r) = check_boxid(boxid) {
        return r;
    }
    let list = match api.core.hub_settings(boxid).await {
        Ok(s) => s,
        Err(e) => return core_error(e),
    };
    let handed = api.handed.lock().unwrap_or_else(|e| e.into_inner()).clone();
    ok_json(Value::Array(
        list.iter()
            .map(|s| {
                json!({
                    "deleteId": s.id.to_string(),
                    "boxid": s.boxid,
                    "key": s.key,
                    "value": s.value,
                    "timestamp": s.timestamp,
                    "pending": if handed.contains(&s.id) { "Yes" } else { "No" },
                })
            })
            .collect(),
    ))
}

async fn queue_setting(api: &ChathostApi, boxid: &str, call: Call) -> Response {
    if let Err(r) = check_boxid(boxid) {
        return r;
    }
    let body = match call.json(api).await {
        Ok(v) => v,
        Err(refused) => return refused,
    };
    let key = body.get("key").and_then(Value::as_str);
    let value = match body.get("value") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Null) | None => None,
        Some(other) => Some(other.to_string()),
    };
    let (Some(key), Some(value)) = (key.filter(|k| !k.is_empty()), value) else {
        return error(StatusCode::BAD_REQUEST, "{key, value} is required");
    };
    match api.core.hub_queue_setting(boxid, key, &value).await {
        Ok(_) => ok_json(json!({})),
        Err(e) => core_error(e),
    }
}

async fn delete_setting(api: &ChathostApi, boxid: &str, id: &str) -> Response {
    if let Err(r) = check_boxid(boxid) {
        return r;
    }
    let id = match number(id, "deleteId") {
        Ok(n) => n,
        Err(r) => return r,
    };
    match api.core.hub_delete_setting(boxid, id).await {
        Ok(true) => ok_json(json!({})),
        Ok(false) => error(StatusCode::NOT_FOUND, "no such setting for this box"),
        Err(e) => core_error(e),
    }
}

async fn security(api: &ChathostApi, boxid: &str) -> Response {
    if let Err(r) = check_boxid(boxid) {
        return r;
    }
    let (b, settings) = match (
        api.core.hub_box(boxid).await,
        api.core.hub_settings(boxid).await,
    ) {
        (Ok(b), Ok(s)) => (b, s),
        (Err(e), _) | (_, Err(e)) => return core_error(e),
    };
    let mut out = serde_json::Map::new();
    if let Some(s) = settings
        .iter()
        .rev()
        .find(|s| KEY_SETTINGS.contains(&s.key.as_str()))
    {
        out.insert(
            "currentSecurityKey".into(),
            json!(format!("{boxid}|{}", s.value)),
        );
    }
    if let Some(hint) = b.and_then(|b| b.roster_key).filter(|h| !h.is_empty()) {
        out.insert("lastSecurityKey".into(), json!(hint));
    }
    ok_json(Value::Object(out))
}

async fn put_key(api: &ChathostApi, boxid: &str, token: &str) -> Response {
    if let Err(r) = check_boxid(boxid) {
        return r;
    }
    let (replace, token) = match token.strip_prefix("resetKey ") {
        Some(t) => (true, t.trim()),
        None => (false, token.trim()),
    };
    match api
        .core
        .hub_add_key(boxid, token, replace, "moodle-security-key")
        .await
    {
        Ok(()) => ok_json(json!({})),
        Err(e) => core_error(e),
    }
}

async fn remove_keys(api: &ChathostApi, boxid: &str) -> Response {
    if let Err(r) = check_boxid(boxid) {
        return r;
    }
    match api.core.hub_remove_keys(boxid).await {
        Ok(_) => ok_json(json!({})),
        Err(e) => core_error(e),
    }
}
