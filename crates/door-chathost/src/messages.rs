//! `POST /messages` (edge→hub) and `GET /messages/:since` (hub→edge).
//!
//! Edge→hub: the body is checked whole (400 unless an array of message objects, each
//! with `id`, `sender.username` and `recipient.email`), then each is stored by the core
//! (`Core::hub_post_edge_message`, idempotent on `<boxid>-<id>`). All stored (or
//! skipped, or stored before): 200. Any whose attachment was not uploaded: 404 with the
//! JSON array of their ids, the others stored.
//!
//! Hub→edge: the batch prepared by `messageStatus` for that `since`, handed out once:
//! `[{id, subject: null, message, sender: {username}, recipient: {username},
//! created_on}]`; a file's `message` is `<attachment type=… id=… filename=…
//! filepath=…>`, `filepath` being where the box downloads it (`/chathost/files/…`,
//! with its credential).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use confer_core::hub::{HubEdgeMessage, HubPosted};
use serde_json::{json, Value};

use crate::rosters::text_of;
use crate::{core_error, error, number, ok_json, Call, ChathostApi};

/// Escape a value for an attribute of the `<attachment …>` tag.
pub(crate) fn attr(value: &str) -> String {
    value
        .replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// One edge message, or why it is refused.
fn parse_one(value: &Value, at: &str) -> Result<(HubEdgeMessage, Option<String>), String> {
    let obj = value
        .as_object()
        .ok_or_else(|| format!("{at}: a message must be an object"))?;
    let id = text_of(obj.get("id"))
        .filter(|id| !id.is_empty())
        .ok_or_else(|| format!("{at}.id is required"))?;
    let sender = text_of(obj.get("sender").and_then(|s| s.get("username")))
        .ok_or_else(|| format!("{at}.sender.username is required"))?;
    let recipient = obj
        .get("recipient")
        .and_then(|r| r.get("email"))
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{at}.recipient.email is required"))?;
    let message = obj
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let attachment = match obj.get("attachment") {
        None | Some(Value::Null) => None,
        Some(a @ Value::Object(_)) => {
            let aid =
                text_of(a.get("id")).ok_or_else(|| format!("{at}.attachment.id is required"))?;
            let kind = a.get("type").and_then(Value::as_str).unwrap_or("document");
            let name = a
                .get("filename")
                .and_then(Value::as_str)
                .map(str::to_string);
            Some((aid, kind.to_string(), name))
        }
        Some(_) => return Err(format!("{at}.attachment must be an object or null")),
    };
    // An attachment message's text is its `<attachment …>` tag: no caption of its own.
    let text = if attachment.is_some() && message.trim_start().starts_with("<attachment") {
        None
    } else {
        Some(message.to_string())
    };
    let filename = attachment.as_ref().and_then(|a| a.2.clone());
    Ok((
        HubEdgeMessage {
            id,
            sender_username: sender,
            recipient_email: recipient.to_string(),
            text,
            attachment: attachment.map(|(id, kind, _)| (id, kind)),
            attachments_text: None,
        },
        filename,
    ))
}

/// The messages of a body, or why it is refused.
pub(crate) fn parse(body: &Value) -> Result<Vec<(HubEdgeMessage, Option<String>)>, String> {
    let items = body
        .as_array()
        .ok_or("the body must be a JSON array of messages")?;
    items
        .iter()
        .enumerate()
        .map(|(i, m)| parse_one(m, &format!("[{i}]")))
        .collect()
}

pub(crate) async fn post(api: &ChathostApi, boxid: &str, call: Call) -> Response {
    let body = match call.json(api).await {
        Ok(v) => v,
        Err(refused) => return refused,
    };
    let parsed = match parse(&body) {
        Ok(p) => p,
        Err(why) => return error(StatusCode::BAD_REQUEST, &why),
    };
    let _turn = match api.storing_turn().await {
        Ok(t) => t,
        Err(refused) => return refused,
    };
    let mut failed = Vec::new();
    let (mut stored, mut skipped) = (0, 0);
    for (mut m, _filename) in parsed {
        if let Some((aid, kind)) = &m.attachment {
            match api.core.hub_attachment(boxid, aid).await {
                Ok(Some(a)) => {
                    m.attachments_text = Some(
                        json!([{
                            "item_id": a.item_id.to_string(),
                            "type": kind,
                            "filename": a.filename,
                            "mimetype": a.mimetype,
                        }])
                        .to_string(),
                    );
                }
                Ok(None) => {
                    failed.push(Value::String(m.id.clone()));
                    continue;
                }
                Err(e) => return core_error(e),
            }
        }
        let id = m.id.clone();
        match api.core.hub_post_edge_message(boxid, m).await {
            Ok(HubPosted::Stored) => stored += 1,
            Ok(HubPosted::Duplicate) => {}
            Ok(HubPosted::Skipped) => skipped += 1,
            Ok(HubPosted::MissingAttachment) => failed.push(Value::String(id)),
            Err(confer_core::CoreError::InvalidValue(why)) => {
                tracing::debug!(boxid, id, why, "edge message refused");
                failed.push(Value::String(id));
            }
            Err(e) => return core_error(e),
        }
    }
    if failed.is_empty() {
        ok_json(json!({ "success": true, "stored": stored, "skipped": skipped }))
    } else {
        (StatusCode::NOT_FOUND, axum::Json(Value::Array(failed))).into_response()
    }
}

pub(crate) async fn get(api: &ChathostApi, boxid: &str, since: &str) -> Response {
    let since = match number(since, "since") {
        Ok(n) => i64::try_from(n).unwrap_or(i64::MAX),
        Err(refused) => return refused,
    };
    let batch = match api.core.hub_take_batch(boxid, since).await {
        Ok(b) => b,
        Err(e) => return core_error(e),
    };
    let items: Vec<Value> = batch
        .into_iter()
        .map(|(item, m)| {
            let message = match m.files.first() {
                Some(f) => format!(
                    "<attachment type=\"{}\" id=\"{}\" filename=\"{}\" filepath=\"/chathost/files/{}/{}\">",
                    confer_core::service::kind_of_mimetype(&f.mimetype),
                    f.item_id,
                    attr(&f.filename),
                    m.message_id,
                    f.item_id
                ),
                None => m.text.clone().unwrap_or_default(),
            };
            json!({
                "id": format!("{}.{}", m.message_id, item.recipient),
                "subject": null,
                "message": message,
                "sender": {"username": m.sender_login},
                "recipient": {"username": item.recipient},
                "created_on": m.created_at_us / 1_000_000,
            })
        })
        .collect();
    ok_json(Value::Array(items))
}
