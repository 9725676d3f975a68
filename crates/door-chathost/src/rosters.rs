//! `POST /courseRosters`: the box's roster, a JSON array of courses. It is checked whole
//! first (400 for a body that is not an array of course objects, a course without an
//! `id`, a person without a `username`), then taken by the core
//! (`Core::hub_apply_roster`: accounts, private conversations with their welcome
//! message, class chats) and stored as posted, replacing the box's previous roster.

use axum::http::StatusCode;
use axum::response::Response;
use confer_core::event::Json;
use confer_core::hub::{HubCourse, HubPerson};
use serde_json::{json, Value};

use crate::{core_error, error, ok_json, Call, ChathostApi};

/// A string or number field as text.
pub(crate) fn text_of(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn person(value: &Value, at: &str) -> Result<HubPerson, String> {
    let obj = value
        .as_object()
        .ok_or_else(|| format!("{at}: a person must be an object"))?;
    let username = text_of(obj.get("username"))
        .filter(|u| !u.trim().is_empty())
        .ok_or_else(|| format!("{at}: username is required"))?;
    let field = |k: &str| obj.get(k).and_then(Value::as_str).map(str::to_string);
    Ok(HubPerson {
        username: username.trim().to_string(),
        email: field("email"),
        first_name: field("first_name"),
        last_name: field("last_name"),
    })
}

fn people(
    course: &serde_json::Map<String, Value>,
    key: &str,
    at: &str,
) -> Result<Vec<HubPerson>, String> {
    match course.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, p)| person(p, &format!("{at}.{key}[{i}]")))
            .collect(),
        Some(_) => Err(format!("{at}.{key} must be an array")),
    }
}

/// The courses of a roster body, or why it is refused.
pub(crate) fn parse(body: &Value) -> Result<Vec<HubCourse>, String> {
    let items = body
        .as_array()
        .ok_or("the body must be a JSON array of courses")?;
    items
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let at = format!("[{i}]");
            let obj = c
                .as_object()
                .ok_or_else(|| format!("{at}: a course must be an object"))?;
            let id = text_of(obj.get("id")).ok_or_else(|| format!("{at}.id is required"))?;
            Ok(HubCourse {
                id,
                name: obj
                    .get("course_name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                teachers: people(obj, "teachers", &at)?,
                students: people(obj, "students", &at)?,
            })
        })
        .collect()
}

pub(crate) async fn post(api: &ChathostApi, boxid: &str, call: Call) -> Response {
    let hint = crate::auth::key_hint(&call.headers);
    let siteip = call.peer.map(|p| p.ip().to_string()).unwrap_or_default();
    let body = match call.json(api).await {
        Ok(v) => v,
        Err(refused) => return refused,
    };
    let courses = match parse(&body) {
        Ok(c) => c,
        Err(why) => return error(StatusCode::BAD_REQUEST, &why),
    };
    let count = courses.len();
    let _turn = match api.storing_turn().await {
        Ok(t) => t,
        Err(refused) => return refused,
    };
    let roster = Json::from_validated(body.to_string());
    match api
        .core
        .hub_apply_roster(boxid, courses, roster, hint, siteip)
        .await
    {
        Ok(()) => ok_json(json!({ "success": true, "courses": count })),
        Err(e) => core_error(e),
    }
}
