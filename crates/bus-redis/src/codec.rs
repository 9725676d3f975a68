//! The wire form of what crosses nodes: events (with every body the core makes), chat
//! deliveries, grants, as JSON objects. Client JSON (`Json`) travels as its text, so a
//! body arrives byte for byte as it was validated. Decoding never panics: what does not
//! parse is `None`, and the caller drops it.

use std::collections::BTreeSet;
use std::sync::Arc;

use confer_core::bus::{PartyState, RoomMember, SessionInfo};
use confer_core::event::{Event, EventBody, Grant, Json};
use confer_core::model::{
    Call, CallStatus, Conversation, ConversationKind, Message, MessageFile, Receipts,
};
use confer_core::{GroupId, SessionId, Uin};
use serde_json::{json, Value};

fn uins(set: &BTreeSet<Uin>) -> Value {
    set.iter().map(|u| u.0).collect::<Vec<u64>>().into()
}

fn uin_set(v: &Value) -> Option<BTreeSet<Uin>> {
    v.as_array()?.iter().map(|u| u.as_u64().map(Uin)).collect()
}

fn uin_list(list: &[Uin]) -> Value {
    list.iter().map(|u| u.0).collect::<Vec<u64>>().into()
}

fn uin_vec(v: &Value) -> Option<Vec<Uin>> {
    v.as_array()?.iter().map(|u| u.as_u64().map(Uin)).collect()
}

fn json_text(j: &Option<Json>) -> Value {
    j.as_ref().map_or(Value::Null, |j| j.as_str().into())
}

fn opt_json(v: &Value) -> Option<Json> {
    v.as_str().map(Json::from_validated)
}

fn opt_str(v: &Value) -> Option<String> {
    v.as_str().map(str::to_string)
}

fn message(m: &Message) -> Value {
    json!({
        "message_id": m.message_id, "group_id": m.group_id.0, "seq": m.seq,
        "sender": m.sender.0, "sender_login": m.sender_login,
        "session_id": m.session_id.as_ref().map(|s| s.as_str()),
        "kind": m.kind, "text": m.text, "attachments": m.attachments,
        "body": json_text(&m.body), "nonce": m.nonce, "version": m.version,
        "created_at_us": m.created_at_us, "updated_at_us": m.updated_at_us,
        "deleted": m.deleted,
        "files": m.files.iter().map(|f| json!({
            "item_id": f.item_id, "filename": f.filename, "mimetype": f.mimetype, "size": f.size,
        })).collect::<Vec<_>>(),
        "receipts": {
            "recipients": m.receipts.recipients,
            "received": uin_list(&m.receipts.received), "seen": uin_list(&m.receipts.seen),
        },
        "change_seq": m.change_seq,
    })
}

fn message_from(v: &Value) -> Option<Message> {
    Some(Message {
        message_id: v["message_id"].as_u64()?,
        group_id: GroupId(v["group_id"].as_u64()?),
        seq: v["seq"].as_u64()?,
        sender: Uin(v["sender"].as_u64()?),
        sender_login: v["sender_login"].as_str()?.to_string(),
        session_id: v["session_id"].as_str().map(SessionId::new),
        kind: u32::try_from(v["kind"].as_u64()?).ok()?,
        text: opt_str(&v["text"]),
        attachments: opt_str(&v["attachments"]),
        body: opt_json(&v["body"]),
        nonce: opt_str(&v["nonce"]),
        version: u32::try_from(v["version"].as_u64()?).ok()?,
        created_at_us: v["created_at_us"].as_i64()?,
        updated_at_us: v["updated_at_us"].as_i64()?,
        deleted: v["deleted"].as_bool()?,
        files: v["files"]
            .as_array()?
            .iter()
            .map(|f| {
                Some(MessageFile {
                    item_id: f["item_id"].as_u64()?,
                    filename: f["filename"].as_str()?.to_string(),
                    mimetype: f["mimetype"].as_str()?.to_string(),
                    size: f["size"].as_u64()?,
                })
            })
            .collect::<Option<_>>()?,
        receipts: Receipts {
            recipients: usize::try_from(v["receipts"]["recipients"].as_u64()?).ok()?,
            received: uin_vec(&v["receipts"]["received"])?,
            seen: uin_vec(&v["receipts"]["seen"])?,
        },
        change_seq: v["change_seq"].as_u64()?,
    })
}

fn conversation(c: &Conversation) -> Value {
    let (kind, class) = match &c.kind {
        ConversationKind::Private => ("private", None),
        ConversationKind::Group => ("group", None),
        ConversationKind::Public => ("public", None),
        ConversationKind::Conference { class } => ("conference", Some(class.as_str())),
    };
    json!({
        "group_id": c.group_id.0, "alias": c.alias, "kind": kind, "class": class,
        "name": c.name, "avatar_url": c.avatar_url, "owner": c.owner.0,
        "creator": c.creator.0, "occupants": uins(&c.occupants), "blocked": uins(&c.blocked),
        "created_at_us": c.created_at_us, "updated_at_us": c.updated_at_us,
        "destroyed": c.destroyed, "last_message_id": c.last_message_id,
        "change_seq": c.change_seq, "hidden": uins(&c.hidden),
    })
}

fn conversation_from(v: &Value) -> Option<Conversation> {
    let kind = match v["kind"].as_str()? {
        "private" => ConversationKind::Private,
        "group" => ConversationKind::Group,
        "public" => ConversationKind::Public,
        _ => ConversationKind::Conference {
            class: v["class"].as_str()?.to_string(),
        },
    };
    Some(Conversation {
        group_id: GroupId(v["group_id"].as_u64()?),
        alias: opt_str(&v["alias"]),
        kind,
        name: opt_str(&v["name"]),
        avatar_url: opt_str(&v["avatar_url"]),
        owner: Uin(v["owner"].as_u64()?),
        creator: Uin(v["creator"].as_u64()?),
        occupants: uin_set(&v["occupants"])?,
        blocked: uin_set(&v["blocked"])?,
        created_at_us: v["created_at_us"].as_i64()?,
        updated_at_us: v["updated_at_us"].as_i64()?,
        destroyed: v["destroyed"].as_bool()?,
        last_message_id: v["last_message_id"].as_u64()?,
        change_seq: v["change_seq"].as_u64()?,
        hidden: uin_set(&v["hidden"])?,
    })
}

pub(crate) fn call(c: &Call) -> Value {
    json!({
        "call_id": c.call_id, "group_id": c.group_id.0, "media_type": c.media_type,
        "status": c.status as u8, "caller": c.caller.0, "callees": uins(&c.callees),
        "accepted": uins(&c.accepted), "declined": uins(&c.declined),
        "extra": json_text(&c.extra), "started_at_us": c.started_at_us,
        "accepted_at_us": c.accepted_at_us, "stopped_at_us": c.stopped_at_us,
    })
}

pub(crate) fn call_from(v: &Value) -> Option<Call> {
    Some(Call {
        call_id: v["call_id"].as_u64()?,
        group_id: GroupId(v["group_id"].as_u64()?),
        media_type: u8::try_from(v["media_type"].as_u64()?).ok()?,
        status: match v["status"].as_u64()? {
            1 => CallStatus::Ongoing,
            2 => CallStatus::Timeout,
            _ => CallStatus::Finished,
        },
        caller: Uin(v["caller"].as_u64()?),
        callees: uin_set(&v["callees"])?,
        accepted: uin_set(&v["accepted"])?,
        declined: uin_set(&v["declined"])?,
        extra: opt_json(&v["extra"]),
        started_at_us: v["started_at_us"].as_i64()?,
        accepted_at_us: v["accepted_at_us"].as_i64(),
        stopped_at_us: v["stopped_at_us"].as_i64(),
    })
}

pub fn member(m: &RoomMember) -> Value {
    let st = &m.state;
    json!({
        "session_id": m.session_id.as_str(), "uin": m.uin.0, "user": m.user, "role": m.role,
        "party": m.party, "name": m.name, "index": m.index,
        "state": [st.mic, st.cam, st.hand_up, st.media],
    })
}

pub fn member_from(v: &Value) -> Option<RoomMember> {
    let flag = |i: usize| v["state"].get(i)?.as_bool();
    Some(RoomMember {
        session_id: SessionId::new(v["session_id"].as_str()?),
        uin: Uin(v["uin"].as_u64()?),
        user: v["user"].as_str()?.to_string(),
        role: v["role"].as_str()?.to_string(),
        party: v["party"].as_u64()?,
        name: v["name"].as_str()?.to_string(),
        index: u32::try_from(v["index"].as_u64()?).ok()?,
        state: PartyState {
            mic: flag(0)?,
            cam: flag(1)?,
            hand_up: flag(2)?,
            media: flag(3)?,
        },
    })
}

fn body(b: &EventBody) -> Value {
    match b {
        EventBody::Empty => json!({"t": "empty"}),
        EventBody::Json(j) => json!({"t": "json", "json": j.as_str()}),
        EventBody::Message(m) => json!({"t": "message", "message": message(m)}),
        EventBody::Member(m) => json!({"t": "member", "member": member(m)}),
        EventBody::Destroyed { code, reason } => {
            json!({"t": "destroyed", "code": code, "reason": reason})
        }
        EventBody::Group(c) => json!({"t": "group", "group": conversation(c)}),
        EventBody::UserStatus {
            uin,
            online,
            online_status,
            message_status,
            last_seen_at_us,
        } => json!({
            "t": "status", "uin": uin.0, "online": online, "online_status": online_status,
            "message_status": message_status, "last_seen_at_us": last_seen_at_us,
        }),
        EventBody::Call { call: c, answer } => json!({
            "t": "call", "call": call(c),
            "answer": answer.map(|(u, how)| json!([u.0, how])),
        }),
        EventBody::Signal(j) => json!({"t": "signal", "json": j.as_str()}),
        EventBody::UnrecognizedFields {
            class,
            subclass,
            cmd,
            fields,
        } => {
            json!({"t": "unrecognized", "class": class, "subclass": subclass, "cmd": cmd, "fields": fields})
        }
    }
}

fn body_from(v: &Value) -> Option<EventBody> {
    Some(match v["t"].as_str()? {
        "empty" => EventBody::Empty,
        "json" => EventBody::Json(opt_json(&v["json"])?),
        "message" => EventBody::Message(Arc::new(message_from(&v["message"])?)),
        "member" => EventBody::Member(Box::new(member_from(&v["member"])?)),
        "destroyed" => EventBody::Destroyed {
            code: v["code"].as_u64()?,
            reason: v["reason"].as_str()?.to_string(),
        },
        "group" => EventBody::Group(Arc::new(conversation_from(&v["group"])?)),
        "status" => EventBody::UserStatus {
            uin: Uin(v["uin"].as_u64()?),
            online: v["online"].as_bool()?,
            online_status: u8::try_from(v["online_status"].as_u64()?).ok()?,
            message_status: v["message_status"].as_str()?.to_string(),
            last_seen_at_us: v["last_seen_at_us"].as_i64(),
        },
        "call" => EventBody::Call {
            call: Arc::new(call_from(&v["call"])?),
            answer: match &v["answer"] {
                Value::Array(a) => Some((
                    Uin(a.first()?.as_u64()?),
                    u8::try_from(a.get(1)?.as_u64()?).ok()?,
                )),
                _ => None,
            },
        },
        "signal" => EventBody::Signal(opt_json(&v["json"])?),
        "unrecognized" => EventBody::UnrecognizedFields {
            class: v["class"].as_str()?.to_string(),
            subclass: v["subclass"].as_str()?.to_string(),
            cmd: v["cmd"].as_str()?.to_string(),
            fields: v["fields"]
                .as_array()?
                .iter()
                .map(|f| f.as_str().map(str::to_string))
                .collect::<Option<_>>()?,
        },
        _ => return None,
    })
}

pub fn event(e: &Event) -> Value {
    json!({
        "class": e.class, "subclass": e.subclass, "kind": e.kind, "obj_id": e.obj_id,
        "body": body(&e.body),
    })
}

pub fn event_from(v: &Value) -> Option<Event> {
    Some(Event::new(
        v["class"].as_str()?,
        opt_str(&v["subclass"]),
        opt_str(&v["kind"]),
        opt_str(&v["obj_id"]),
        body_from(&v["body"])?,
    ))
}

pub fn grant(g: &Grant) -> Value {
    match g {
        Grant::Member { group, uin } => json!({"member": [group.0, uin.0]}),
        Grant::Session(s) => json!({"session": s.as_str()}),
    }
}

pub fn grant_from(v: &Value) -> Option<Grant> {
    if let Some(s) = v["session"].as_str() {
        return Some(Grant::Session(SessionId::new(s)));
    }
    let m = v["member"].as_array()?;
    Some(Grant::Member {
        group: GroupId(m.first()?.as_u64()?),
        uin: Uin(m.get(1)?.as_u64()?),
    })
}

/// The doors a session may have come through; another node's name is mapped back to
/// the same `&'static str` (a door this build does not know shows as "remote").
const DOORS: [&str; 4] = ["chat", "api_server", "vsp", "chat_api"];

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// A session's directory entry.
pub fn session_info(s: &SessionInfo) -> Value {
    json!({
        "session_id": s.session_id.as_str(), "uin": s.uin.0, "user": s.user,
        "remote": s.remote, "door": s.door,
        "token_hash": s.token_hash.as_ref().map(|h| hex(h)),
        "started_at_us": s.started_at_us, "meta": json_text(&s.meta),
    })
}

pub fn session_info_from(v: &Value) -> Option<SessionInfo> {
    let door = v["door"].as_str()?;
    Some(SessionInfo {
        session_id: SessionId::new(v["session_id"].as_str()?),
        uin: Uin(v["uin"].as_u64()?),
        user: v["user"].as_str()?.to_string(),
        remote: v["remote"].as_str()?.to_string(),
        door: DOORS
            .iter()
            .find(|d| **d == door)
            .copied()
            .unwrap_or("remote"),
        token_hash: match v["token_hash"].as_str() {
            Some(h) => Some(unhex32(h)?),
            None => None,
        },
        started_at_us: v["started_at_us"].as_i64()?,
        meta: opt_json(&v["meta"]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_with_a_message_crosses_unchanged() {
        let m = Message {
            message_id: 7,
            group_id: GroupId(3),
            seq: 2,
            sender: Uin(1),
            sender_login: "alice".into(),
            session_id: Some(SessionId::new("s1")),
            kind: 0,
            text: Some("hi".into()),
            attachments: None,
            body: Some(Json::from_validated(r#"{"text":"hi","x":[1,2]}"#)),
            nonce: Some("n".into()),
            version: 1,
            created_at_us: 10,
            updated_at_us: 11,
            deleted: false,
            files: vec![MessageFile {
                item_id: 4,
                filename: "a b.png".into(),
                mimetype: "image/png".into(),
                size: 9,
            }],
            receipts: Receipts {
                recipients: 2,
                received: vec![Uin(2)],
                seen: vec![],
            },
            change_seq: 7,
        };
        let e = Event::new(
            "media",
            Some("conf".into()),
            Some("msglog_new_msg".into()),
            Some("room".into()),
            EventBody::Message(Arc::new(m.clone())),
        );
        let back = event_from(&event(&e)).unwrap();
        assert_eq!(back.class, "media");
        assert_eq!(back.obj_id.as_deref(), Some("room"));
        match back.body {
            EventBody::Message(got) => assert_eq!(*got, m),
            other => panic!("{other:?}"),
        }
        assert!(event_from(&json!({"class": "x", "body": {"t": "nope"}})).is_none());
    }

    #[test]
    fn a_session_entry_crosses_unchanged() {
        let s = SessionInfo {
            session_id: SessionId::new("s1"),
            uin: Uin(5),
            user: "bob".into(),
            remote: "127.0.0.1:5".into(),
            door: "chat",
            token_hash: Some([0xab; 32]),
            started_at_us: 42,
            meta: Some(Json::from_validated(r#"{"app":"x"}"#)),
        };
        assert_eq!(session_info_from(&session_info(&s)), Some(s.clone()));
        let bad = json!({"session_id": "s", "uin": 1, "user": "u", "remote": "", "door": "chat",
            "token_hash": "zz", "started_at_us": 1});
        assert_eq!(session_info_from(&bad), None);
    }
}
