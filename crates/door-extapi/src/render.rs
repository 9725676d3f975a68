//! How core values look on the External API: events and stored messages.

use confer_core::model::MessageFile;
use confer_core::{Event, EventBody, Json, Message};
use serde_json::{Map, Value};

/// Parse door-validated JSON text back into a value (it was checked on the way in, so a
/// failure means corruption on disk; it renders as null rather than failing the frame).
pub fn json_value(json: &Json) -> Value {
    serde_json::from_str(json.as_str()).unwrap_or(Value::Null)
}

/// Keys of a shown message that only the server sets, yet not on every message (so a
/// client's own would pass for the server's): `msglog_send` refuses them in `msg`.
pub const RESERVED_MSG_KEYS: [&str; 4] = ["message_id", "type", "deleted", "files"];

/// A stored message as msglog shows it: the `msg` object plus `msg_id`, `user_id`,
/// `session_id` and `timestamp` (µs), and `files` when it carries uploads. A message
/// posted through the Chat API also shows its chat fields (`type`, `message`,
/// `attachments`, `message_id`).
pub fn message(m: &Message) -> Value {
    let mut obj = match m.body.as_ref().map(json_value) {
        Some(Value::Object(map)) => map,
        _ => Map::new(),
    };
    // The server's fields win, also over a body stored before `msglog_send` refused them.
    for key in RESERVED_MSG_KEYS {
        obj.remove(key);
    }
    if m.text.is_some() || m.attachments.is_some() || m.kind != 0 {
        obj.insert("type".into(), Value::from(m.kind));
        obj.insert("message_id".into(), Value::from(m.message_id.to_string()));
        if let Some(text) = &m.text {
            obj.insert("message".into(), Value::from(text.as_str()));
        }
        if let Some(att) = &m.attachments {
            obj.insert("attachments".into(), Value::from(att.as_str()));
        }
    }
    obj.insert("msg_id".into(), Value::from(m.seq));
    obj.insert("user_id".into(), Value::from(m.sender_login.as_str()));
    if let Some(s) = &m.session_id {
        obj.insert("session_id".into(), Value::from(s.as_str()));
    }
    obj.insert("timestamp".into(), Value::from(m.created_at_us));
    if !m.files.is_empty() {
        obj.insert("files".into(), files(&m.files));
    }
    if m.deleted {
        obj.insert("deleted".into(), Value::from(true));
    }
    Value::Object(obj)
}

/// The uploads a message carries: `[{item_id, url, filename, mimetype, size}]`.
fn files(files: &[MessageFile]) -> Value {
    files
        .iter()
        .map(|f| {
            serde_json::json!({
                "item_id": f.item_id.to_string(),
                "url": f.url(),
                "filename": f.filename,
                "mimetype": f.mimetype,
                "size": f.size,
            })
        })
        .collect()
}

fn body(event: &Event) -> Option<Value> {
    match &event.body {
        EventBody::Empty => None,
        EventBody::Json(j) => Some(json_value(j)),
        EventBody::Message(m) => Some(message(m)),
        EventBody::Member(m) => Some(serde_json::json!({
            "session_id": m.session_id.as_str(), "role": m.role, "user_id": m.user
        })),
        EventBody::Destroyed { code, reason } => {
            Some(serde_json::json!({"code": code, "reason": reason}))
        }
        EventBody::Signal(j) => Some(json_value(j)),
        EventBody::Group(g) => {
            Some(serde_json::json!({"group_id": g.group_id.0.to_string(), "name": g.name}))
        }
        EventBody::UserStatus { uin, online, .. } => {
            Some(serde_json::json!({"uin": uin.0.to_string(), "online": online}))
        }
        EventBody::Call { call, .. } => Some(serde_json::json!({
            "call_id": call.call_id.to_string(), "group_id": call.group_id.0.to_string(),
            "call_status": call.status as u8
        })),
        EventBody::UnrecognizedFields {
            class,
            subclass,
            cmd,
            fields,
        } => Some(serde_json::json!({
            "class": class, "subclass": subclass, "cmd": cmd, "fields": fields
        })),
    }
}

/// The `data` of an event frame: `{class, subclass?, type?, obj_id?, body?}`, with
/// wildcard fields and an empty body left out. `merge` holds the bodies of the matching
/// subscriptions, most specific first, merged in when both are objects: a key the
/// event's body has keeps its value, then the first subscription's to name it wins.
pub fn event_data(event: &Event, merge: &[Json]) -> String {
    let mut data = Map::new();
    data.insert("class".into(), Value::from(event.class.as_str()));
    for (key, value) in [
        ("subclass", &event.subclass),
        ("type", &event.kind),
        ("obj_id", &event.obj_id),
    ] {
        if let Some(v) = value {
            data.insert(key.into(), Value::from(v.as_str()));
        }
    }
    let mut body = body(event);
    for extra in merge.iter().map(json_value) {
        body = match (body, extra) {
            (Some(Value::Object(mut b)), Value::Object(e)) => {
                for (k, v) in e {
                    b.entry(k).or_insert(v);
                }
                Some(Value::Object(b))
            }
            (None, Value::Object(e)) => Some(Value::Object(e)),
            (b, _) => b,
        };
    }
    match body {
        Some(Value::Object(b)) if b.is_empty() => {}
        Some(b) => {
            data.insert("body".into(), b);
        }
        None => {}
    }
    Value::Object(data).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_and_empty_bodies_are_left_out_and_bodies_merge() {
        let e = Event::new(
            "app",
            Some("s".into()),
            None,
            None,
            EventBody::Json(Json::from_validated(r#"{"a":1}"#)),
        );
        assert_eq!(
            event_data(&e, &[]),
            r#"{"class":"app","subclass":"s","body":{"a":1}}"#
        );
        let merged = event_data(
            &e,
            &[
                Json::from_validated(r#"{"b":2,"a":9}"#),
                Json::from_validated(r#"{"b":3,"c":4}"#),
            ],
        );
        assert_eq!(
            merged,
            r#"{"class":"app","subclass":"s","body":{"a":1,"b":2,"c":4}}"#
        );
        let empty = Event::new("app", None, None, None, EventBody::Empty);
        assert_eq!(event_data(&empty, &[]), r#"{"class":"app"}"#);
    }
}
