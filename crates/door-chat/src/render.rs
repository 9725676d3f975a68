//! How core values look on the Chat API. 64-bit ids are decimal strings, group times are
//! seconds, message times microseconds, as the original server sent them.

use confer_core::model::{Call, GroupListing, MessageFile, Presence};
use confer_core::{Conversation, ConversationKind, Event, EventBody, Json, Message};
use serde::Serialize;
use serde_json::value::RawValue;
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

/// Merge the display fields stored with a call into its object.
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
        "last_message_id": id(c.last_message_id),
        "change_seq": id(c.change_seq),
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
        // A listing's change number covers its messages and the caller's marks too.
        obj.insert("change_seq".into(), id(g.change_seq));
    }
    v
}

/// A message as a JSON value, inside answers built as values (a group listing's last
/// message); the one definition of its fields is [`message_json`].
pub fn message(m: &Message) -> Value {
    serde_json::from_str(&message_json(m)).unwrap_or(Value::Null)
}

/// A message as JSON text, written field by field: what every posted message costs twice
/// (its ack and its push). serde's map serializer cost ~380 instructions a field under
/// callgrind (each constant key escaped, each id formatted through `fmt`); here only the
/// sender's strings are escaped.
pub fn message_json(m: &Message) -> String {
    let size = [&m.text, &m.attachments, &m.nonce]
        .iter()
        .map(|s| s.as_ref().map_or(0, String::len))
        .sum::<usize>()
        + m.body.as_ref().map_or(0, |b| b.as_str().len());
    let mut o = JsonObject::with_capacity(224 + size);
    o.id("message_id", m.message_id);
    o.id("group_id", m.group_id.0);
    o.int("type", m.kind);
    o.str("message", m.text.as_deref());
    o.str("attachments", m.attachments.as_deref());
    o.id("sender_uin", m.sender.0);
    // 4 deleted, else as far as its recipients' marks go (`Message::status`).
    o.int("status", m.status());
    o.ids("received_uins", &m.receipts.received);
    o.ids("seen_uins", &m.receipts.seen);
    o.str("nonce", m.nonce.as_deref());
    o.int("version", m.version);
    o.int("created_at", m.created_at_us);
    o.int("updated_at", m.updated_at_us);
    o.id("change_seq", m.change_seq);
    if !m.files.is_empty() {
        o.raw("files", &files(&m.files).to_string());
    }
    let body = m.body.as_ref().map(|b| b.as_str());
    if m.text.is_none() && m.attachments.is_none() && m.kind == 0 {
        // A message from the External API carries its `msg` object; show it as `body`
        // (a chat message has text or attachments, its body holds display fields).
        if let Some(Ok(body)) = body.map(serde_json::from_str::<&RawValue>) {
            o.raw("body", body.get());
        }
    } else {
        // The display fields stored with it (the server's); they never replace a
        // message's own, and one not stored (unset) is `null`.
        match body {
            None => PlainFields::default().write(&mut o),
            Some(body) => match PlainFields::read(body) {
                Some(plain) => plain.write(&mut o),
                None => write_through_value(&mut o, body),
            },
        }
    }
    o.finish()
}

/// The display fields of a body that is not plain ([`PlainFields`]): parsed to a JSON value
/// and written back, every field the message's own do not name, then `null` for each
/// display field the body lacks.
fn write_through_value(o: &mut JsonObject, body: &str) {
    let extra = match serde_json::from_str::<Value>(body) {
        Ok(Value::Object(extra)) => extra,
        _ => Map::new(),
    };
    for (k, v) in extra.iter() {
        if !MESSAGE_FIELDS.contains(&k.as_str()) {
            o.any(k, v);
        }
    }
    for key in DISPLAY_FIELDS {
        if !extra.contains_key(key) {
            o.raw(key, "null");
        }
    }
}

/// The display fields stored with a chat message when they are what the server writes
/// (`{"group_name":"…",…}`: a few keys without escapes, each once, with strings without
/// escapes, `null`, booleans or small integers): copied as they are, where parsing them
/// into a `Value` map (a hashed map, two strings a field) and writing it back was the
/// larger part of rendering a message, twice per post. Anything else is `None`, and
/// takes the `Value` way; both write the same text (tested).
#[derive(Default)]
struct PlainFields<'a>(Vec<(&'a str, &'a str)>);

/// More stored fields than this take the `Value` way (the server writes four at most).
const PLAIN_FIELDS: usize = 8;

impl<'a> PlainFields<'a> {
    fn read(body: &'a str) -> Option<Self> {
        serde_json::from_str::<PlainFields<'a>>(body).ok()
    }

    fn write(&self, o: &mut JsonObject) {
        for (k, v) in &self.0 {
            if !MESSAGE_FIELDS.contains(k) {
                o.comma();
                o.put(*k);
                o.0.push(b':');
                o.0.extend_from_slice(v.as_bytes());
            }
        }
        for key in DISPLAY_FIELDS {
            if !self.0.iter().any(|(k, _)| *k == key) {
                o.raw(key, "null");
            }
        }
    }
}

/// A value whose text serde_json would write back unchanged from a `Value`.
fn plain_value(raw: &str) -> bool {
    match raw.as_bytes() {
        [b'"', inner @ .., b'"'] => !inner.contains(&b'\\'),
        b"null" | b"true" | b"false" => true,
        // Up to 18 digits fit an i64 exactly. `-0` is not: serde_json reads it as -0.0.
        [b'-', b'0', ..] => false,
        [b'-', digits @ ..] | digits => {
            (1..=18).contains(&digits.len()) && digits.iter().all(u8::is_ascii_digit)
        }
    }
}

impl<'de> serde::Deserialize<'de> for PlainFields<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Fields;
        impl<'de> serde::de::Visitor<'de> for Fields {
            type Value = PlainFields<'de>;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object of plain fields")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                use serde::de::Error;
                let mut fields: Vec<(&'de str, &'de str)> = Vec::new();
                // A key with escapes cannot be borrowed: an error here, so the `Value` way.
                while let Some((k, v)) = map.next_entry::<&'de str, &'de RawValue>()? {
                    let repeated = fields.iter().any(|(seen, _)| *seen == k);
                    if repeated || fields.len() == PLAIN_FIELDS || !plain_value(v.get()) {
                        return Err(A::Error::custom("not plain"));
                    }
                    fields.push((k, v.get()));
                }
                Ok(PlainFields(fields))
            }
        }
        d.deserialize_map(Fields)
    }
}

/// The uploads a message carries: `[{item_id, url, filename, mimetype, size}]`.
pub fn files(files: &[MessageFile]) -> Value {
    files
        .iter()
        .map(|f| {
            json!({
                "item_id": id(f.item_id),
                "url": f.url(),
                "filename": f.filename,
                "mimetype": f.mimetype,
                "size": f.size,
            })
        })
        .collect()
}

/// The display fields every chat message shows (`null` when unset).
const DISPLAY_FIELDS: [&str; 4] = ["group_name", "group_avatar", "sender_name", "sender_avatar"];

/// The fields a message object has; display fields stored with it never replace them.
const MESSAGE_FIELDS: [&str; 15] = [
    "message_id",
    "group_id",
    "type",
    "message",
    "attachments",
    "sender_uin",
    "status",
    "received_uins",
    "seen_uins",
    "nonce",
    "version",
    "created_at",
    "updated_at",
    "files",
    "change_seq",
];

/// A JSON object written as text. Keys given as `&'static str` are this door's own and
/// need no escaping; everything else is escaped by serde_json.
struct JsonObject(Vec<u8>);

impl JsonObject {
    fn with_capacity(n: usize) -> Self {
        let mut out = Vec::with_capacity(n);
        out.push(b'{');
        JsonObject(out)
    }

    /// The separator before a field, unless it is the first.
    fn comma(&mut self) {
        if self.0.len() > 1 {
            self.0.push(b',');
        }
    }

    fn key(&mut self, key: &'static str) {
        self.comma();
        self.0.push(b'"');
        self.0.extend_from_slice(key.as_bytes());
        self.0.extend_from_slice(b"\":");
    }

    /// A 64-bit id, as a decimal string.
    fn id(&mut self, key: &'static str, n: u64) {
        self.key(key);
        self.0.push(b'"');
        self.0
            .extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
        self.0.push(b'"');
    }

    fn int(&mut self, key: &'static str, n: impl itoa::Integer) {
        self.key(key);
        self.0
            .extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
    }

    fn str(&mut self, key: &'static str, s: Option<&str>) {
        self.key(key);
        match s {
            Some(s) => self.put(s),
            None => self.0.extend_from_slice(b"null"),
        }
    }

    /// JSON text that is already valid.
    fn raw(&mut self, key: &'static str, json: &str) {
        self.key(key);
        self.0.extend_from_slice(json.as_bytes());
    }

    /// Account numbers, as an array of decimal strings.
    fn ids(&mut self, key: &'static str, uins: &[confer_core::Uin]) {
        self.key(key);
        self.0.push(b'[');
        for (i, u) in uins.iter().enumerate() {
            if i > 0 {
                self.0.push(b',');
            }
            self.0.push(b'"');
            self.0
                .extend_from_slice(itoa::Buffer::new().format(u.0).as_bytes());
            self.0.push(b'"');
        }
        self.0.push(b']');
    }

    /// A key of the sender's, with its value.
    fn any(&mut self, key: &str, v: &Value) {
        self.comma();
        self.put(key);
        self.0.push(b':');
        self.put(v);
    }

    fn put(&mut self, v: &(impl Serialize + ?Sized)) {
        // Serializing a string or a `Value` into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut self.0, v);
    }

    fn finish(mut self) -> String {
        self.0.push(b'}');
        // Only UTF-8 went in: constant keys, digits and serde_json's output.
        String::from_utf8(self.0).unwrap_or_else(|_| "null".into())
    }
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

/// A `user_status` object: `{uin, online_status, message_status, last_seen_at}`.
pub fn user_status(
    uin: confer_core::Uin,
    online_status: u8,
    message_status: &str,
    last_seen_at_us: Option<i64>,
) -> Value {
    json!({
        "uin": id(uin.0),
        "online_status": online_status,
        "message_status": message_status,
        "last_seen_at": last_seen_at_us.map(secs),
    })
}

/// The presence snapshot a socket gets right after `login`:
/// `{user_statuses: [user_status …]}` (see [`USER_STATUSES`]).
pub fn user_statuses(peers: &[Presence]) -> Value {
    let list = peers
        .iter()
        .map(|p| user_status(p.uin, p.online_status, &p.message_status, p.last_seen_at_us))
        .collect();
    json!({ "user_statuses": Value::Array(list) })
}

/// The snapshot's event name. The session emits it itself, once, after `login`.
pub const USER_STATUSES: &str = "user_statuses";

/// Every event the server pushes to a chat socket besides `login`
/// ([`LOGIN`](crate::session::LOGIN)): [`push`] sends no other name, so this table is the
/// door's list of pushes (docs/asyncapi.yaml is checked against it).
pub const PUSHES: &[&str] = &[
    "message",
    "update_message",
    "delete_message",
    "message_status",
    "seen_message",
    "group",
    "update_group",
    "delete_group",
    "pin_group",
    "unpin_group",
    "mute_group",
    "unmute_group",
    "delete_conversation",
    "user_status",
    USER_STATUSES,
    "event",
    "start_call",
    "answer_call",
    "stop_call",
    "ice_sdp",
    "ice_candidate",
];

/// The event name and payload (JSON text) a pushed core event becomes, if it is for this
/// door. A name missing from [`PUSHES`] is an undocumented push: it is not sent.
pub fn push(event: &Event) -> Option<(String, String)> {
    let (name, payload) = push_unchecked(event)?;
    if !PUSHES.contains(&name.as_str()) {
        tracing::error!(event = %name, "chat push not in render::PUSHES: not sent");
        return None;
    }
    Some((name, payload))
}

fn push_unchecked(event: &Event) -> Option<(String, String)> {
    let name = event.kind.clone()?;
    let payload = match &event.body {
        EventBody::Message(m) => {
            let json = message_json(m);
            let mut payload = String::with_capacity(json.len() + 12);
            payload.push_str(r#"{"message":"#);
            payload.push_str(&json);
            payload.push('}');
            return Some((name, payload));
        }
        EventBody::Group(g) => json!({ "group": group(g) }),
        EventBody::UserStatus {
            uin,
            online_status,
            message_status,
            last_seen_at_us,
            ..
        } => {
            json!({ "user_status": user_status(*uin, *online_status, message_status, *last_seen_at_us) })
        }
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
    Some((name, payload.to_string()))
}

#[cfg(test)]
mod tests {
    use confer_core::{GroupId, Uin};

    use super::*;

    fn chat(body: Option<&str>, text: Option<&str>) -> Message {
        Message {
            message_id: 12,
            group_id: GroupId(3),
            seq: 1,
            sender: Uin(7),
            sender_login: "alice".into(),
            session_id: None,
            kind: 0,
            text: text.map(str::to_string),
            attachments: None,
            body: body.map(|b| Json::from_validated(b.to_string())),
            nonce: Some("n\"1".into()),
            version: 0,
            created_at_us: 5,
            updated_at_us: 6,
            deleted: false,
            files: Vec::new(),
            receipts: Default::default(),
            change_seq: 12,
        }
    }

    #[test]
    fn a_chat_message_carries_its_display_fields_but_they_replace_nothing() {
        let m = chat(
            Some(r#"{"sender_name":"Al","message_id":"forged","type":9}"#),
            Some("hi"),
        );
        let v: Value = serde_json::from_str(&message_json(&m)).unwrap();
        assert_eq!(
            v,
            json!({"message_id": "12", "group_id": "3", "type": 0, "message": "hi",
                   "attachments": null, "sender_uin": "7", "status": 1,
                   "received_uins": [], "seen_uins": [], "nonce": "n\"1",
                   "version": 0, "created_at": 5, "updated_at": 6, "change_seq": "12",
                   "sender_name": "Al", "group_name": null, "group_avatar": null,
                   "sender_avatar": null})
        );
        assert_eq!(message(&m), v);
    }

    /// The display fields copied as they are and through a `Value` give the same text.
    #[test]
    fn plain_display_fields_render_as_through_a_value() {
        let through_value = |body: &str| {
            let mut o = JsonObject::with_capacity(64);
            write_through_value(&mut o, body);
            o.finish()
        };
        let bodies = [
            r#"{"group_name":"bench"}"#,
            r#"{"group_name":"été 😀","group_avatar":"https://x/a.png","sender_name":"Al","sender_avatar":null}"#,
            r#"{ "sender_name" : "Al" , "n": -12, "ok": true, "no": false, "z": 0 }"#,
            r#"{"neg_zero":-0,"n":-7}"#,
            r#"{"sender_name":"quote \" and \u00e9"}"#,
            r#"{"sender_\u006eame":"escaped key"}"#,
            r#"{"sender_name":"a","sender_name":"b"}"#,
            r#"{"n":1.5,"m":1e3,"big":123456789012345678901234567890}"#,
            r#"{"o":{"a" : 1},"l":[1, 2]}"#,
            r#"{"message_id":"forged","type":9}"#,
            r#"{}"#,
            r#"[1]"#,
            r#""text""#,
        ];
        for body in bodies {
            let m = chat(Some(body), Some("hi"));
            let mut o = JsonObject::with_capacity(64);
            match PlainFields::read(body) {
                Some(plain) => plain.write(&mut o),
                None => {
                    // Not plain: message_json takes the `Value` way itself.
                    let whole = message_json(&m);
                    assert!(whole.ends_with(&through_value(body)[1..]), "{body}");
                    continue;
                }
            }
            assert_eq!(o.finish(), through_value(body), "{body}");
        }
        assert!(PlainFields::read(r#"{"group_name":"bench"}"#).is_some());
        assert!(PlainFields::read(r#"{"n":1.5}"#).is_none());
    }

    #[test]
    fn an_external_api_message_shows_its_msg_object_as_body() {
        let m = chat(Some(r#"{"text":"from the other door","n":[1,2]}"#), None);
        let v: Value = serde_json::from_str(&message_json(&m)).unwrap();
        assert_eq!(
            v["body"],
            json!({"text": "from the other door", "n": [1, 2]})
        );
        assert_eq!(v["message"], Value::Null);
    }

    #[test]
    fn the_senders_strings_are_escaped() {
        let text = "quote \" backslash \\ newline \n bell \u{7} é 😀";
        let v: Value = serde_json::from_str(&message_json(&chat(None, Some(text)))).unwrap();
        assert_eq!(v["message"], text);
        assert_eq!(v["nonce"], "n\"1");
    }

    #[test]
    fn a_deleted_message_has_status_4() {
        let mut m = chat(None, None);
        m.deleted = true;
        assert_eq!(message(&m)["status"], 4);
    }

    #[test]
    fn only_pushes_in_the_table_are_sent() {
        let signal = |name: &str| {
            Event::new(
                "chat",
                None,
                Some(name.into()),
                None,
                EventBody::Signal(Json::from_validated(r#"{"sdp":"v=0"}"#)),
            )
        };
        assert_eq!(
            push(&signal("ice_sdp")),
            Some(("ice_sdp".into(), r#"{"sdp":"v=0"}"#.into()))
        );
        assert_eq!(push(&signal("ice_sdp_v2")), None);
    }
}
