//! How core values look on the Chat API. 64-bit ids are decimal strings, group times are
//! seconds, message times microseconds, as the original server sent them.

use confer_core::model::{Call, GroupListing};
use confer_core::{Conversation, ConversationKind, Event, EventBody, Json, Message};
use serde_json::{json, Map, Value};

fn id(n: u64) -> Value {
    Value::String(n.to_string())
}

fn uins<'a>(set: impl IntoIterator<Item = &'a confer_core::Uin>) -> Value {
    Value::Array(set.into_iter().map(|u| id(u.0)).collect())
}

fn secs(us: i64) -> i64 {
    us / 1_000_000
}

/// Merge the display fields stored with a message or call into its object.
fn merge_extra(obj: &mut Map<String, Value>, extra: Option<&Json>) {
    if let Some(Ok(Value::Object(fields))) =
        extra.map(|e| serde_json::from_str::<Value>(e.as_str()))
    {
        for (k, v) in fields {
            obj.entry(k).or_insert(v);
        }
    }
}

pub fn group_type(kind: &ConversationKind) -> u8 {
    match kind {
        ConversationKind::Private => 1,
        ConversationKind::Group => 2,
        ConversationKind::Public => 3,
        ConversationKind::Conference { .. } => 2,
    }
}

pub fn group(c: &Conversation) -> Value {
    json!({
        "group_id": id(c.group_id.0),
        "type": group_type(&c.kind),
        "name": c.name,
        "avatar_url": c.avatar_url,
        "owner_uin": id(c.owner.0),
        "creator_uin": id(c.creator.0),
        "occupants_uins": uins(&c.occupants),
        "blocked_uins": uins(&c.blocked),
        "created_at": secs(c.created_at_us),
        "updated_at": secs(c.updated_at_us),
    })
}

/// A `list_group` item: the group plus the caller's own view of it.
pub fn listing(g: &GroupListing) -> Value {
    let mut v = group(&g.conversation);
    if let Value::Object(obj) = &mut v {
        obj.insert("muted".into(), Value::Bool(g.state.muted));
        obj.insert("pinned".into(), Value::Bool(g.state.pinned_at_us.is_some()));
        obj.insert(
            "last_message_id".into(),
            id(g.last_message.as_ref().map_or(0, |m| m.message_id)),
        );
        obj.insert(
            "last_message".into(),
            g.last_message.as_ref().map_or(Value::Null, message),
        );
        obj.insert("unread_cnt".into(), Value::from(g.unread));
    }
    v
}

/// Message status: 4 deleted, otherwise 1 sent.
pub fn message(m: &Message) -> Value {
    let mut obj = Map::new();
    obj.insert("message_id".into(), id(m.message_id));
    obj.insert("group_id".into(), id(m.group_id.0));
    obj.insert("type".into(), Value::from(m.kind));
    obj.insert(
        "message".into(),
        m.text.clone().map_or(Value::Null, Value::String),
    );
    obj.insert(
        "attachments".into(),
        m.attachments.clone().map_or(Value::Null, Value::String),
    );
    obj.insert("sender_uin".into(), id(m.sender.0));
    obj.insert("status".into(), Value::from(if m.deleted { 4 } else { 1 }));
    obj.insert(
        "nonce".into(),
        m.nonce.clone().map_or(Value::Null, Value::String),
    );
    obj.insert("version".into(), Value::from(m.version));
    obj.insert("created_at".into(), Value::from(m.created_at_us));
    obj.insert("updated_at".into(), Value::from(m.updated_at_us));
    // A message from the External API carries its `msg` object; show it as `body`.
    if m.text.is_none() && m.kind == 0 {
        if let Some(Ok(body)) = m
            .body
            .as_ref()
            .map(|b| serde_json::from_str::<Value>(b.as_str()))
        {
            obj.insert("body".into(), body);
        }
    } else {
        merge_extra(&mut obj, m.body.as_ref());
    }
    Value::Object(obj)
}

pub fn call(c: &Call) -> Value {
    let mut obj = Map::new();
    obj.insert("call_id".into(), id(c.call_id));
    obj.insert("group_id".into(), id(c.group_id.0));
    obj.insert("media_type".into(), Value::from(c.media_type));
    obj.insert("call_status".into(), Value::from(c.status as u8));
    obj.insert("caller_uin".into(), id(c.caller.0));
    obj.insert("callee_uins".into(), uins(&c.callees));
    obj.insert("started_at".into(), Value::from(c.started_at_us));
    obj.insert(
        "accepted_at".into(),
        c.accepted_at_us.map_or(Value::Null, Value::from),
    );
    obj.insert(
        "stopped_at".into(),
        c.stopped_at_us.map_or(Value::Null, Value::from),
    );
    merge_extra(&mut obj, c.extra.as_ref());
    Value::Object(obj)
}

/// The event name and payload a pushed core event becomes, if it is for this door.
pub fn push(event: &Event) -> Option<(String, Value)> {
    let name = event.kind.clone()?;
    let payload = match &event.body {
        EventBody::Message(m) => json!({ "message": message(m) }),
        EventBody::Group(g) => json!({ "group": group(g) }),
        EventBody::UserStatus {
            uin,
            online,
            last_seen_at_us,
        } => json!({"user_status": {
            "uin": id(uin.0),
            "online_status": if *online { 1 } else { 2 },
            "message_status": "",
            "last_seen_at": last_seen_at_us.map(secs),
        }}),
        EventBody::Call { call: c, answer } => {
            let mut v = json!({ "call": call(c) });
            if let (Some((uin, a)), Value::Object(obj)) = (answer, &mut v) {
                obj.insert("uin".into(), id(uin.0));
                obj.insert("answer".into(), Value::from(*a));
                obj.insert("call_id".into(), id(c.call_id));
                obj.insert("group_id".into(), id(c.group_id.0));
            }
            v
        }
        EventBody::Signal(j) => serde_json::from_str(j.as_str()).unwrap_or(Value::Null),
        _ => return None,
    };
    Some((name, payload))
}
