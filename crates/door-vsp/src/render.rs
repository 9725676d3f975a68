//! How core values look on the conference door: parties, `confdata`, `conf.changed`,
//! `conf.instantmsg`, and each user's chat colour.

use confer_core::bus::RoomMember;
use confer_core::{Conversation, Message, Uin};
use serde_json::{json, Map, Value};

/// The chat colours, `0xRRGGBB`: a user's is `PALETTE[uin % 8]`, the same on every
/// connection and every day.
pub const PALETTE: [u32; 8] = [
    0x1f77b4, 0xff7f0e, 0x2ca02c, 0xd62728, 0x9467bd, 0x8c564b, 0xe377c2, 0x17becf,
];

/// A party's `State`: in the conference, without media with the server.
pub const PARTY_JOINED: u8 = 1;
/// A party's `State`: its media with the server's endpoint is up.
pub const PARTY_MEDIA: u8 = 2;

/// `confdata.state`: nobody in it now.
pub const CONF_IDLE: u8 = 0;
/// `confdata.state`: parties are in it.
pub const CONF_ACTIVE: u8 = 1;
/// `confdata.state`: the owner ended it.
pub const CONF_ENDED: u8 = 2;

pub fn color(uin: Uin) -> u32 {
    PALETTE[(uin.0 % PALETTE.len() as u64) as usize]
}

/// One party: `{PartyID, username, login, uin, Index, State, role, bMicOn, bCamOn, bHandUp}`.
pub fn party(m: &RoomMember) -> Value {
    json!({
        "PartyID": m.party,
        "username": m.name,
        "login": m.user,
        "uin": m.uin.0,
        "Index": m.index,
        "State": if m.state.media { PARTY_MEDIA } else { PARTY_JOINED },
        "role": m.role,
        "bMicOn": m.state.mic,
        "bCamOn": m.state.cam,
        "bHandUp": m.state.hand_up,
    })
}

/// `confdata`: `{ID, name, owner, state, created, parties}` (times in seconds).
pub fn confdata(conv: &Conversation, parties: usize) -> Value {
    let state = match (conv.destroyed, parties) {
        (true, _) => CONF_ENDED,
        (false, 0) => CONF_IDLE,
        (false, _) => CONF_ACTIVE,
    };
    json!({
        "ID": conv.group_id.0,
        "name": conv.name.clone().unwrap_or_else(|| conv.public_id()),
        "owner": conv.owner.0,
        "state": state,
        "created": conv.created_at_us / 1_000_000,
        "parties": parties,
    })
}

/// The `result` of a `conf.changed`: `ClusterID`, `ID`, then the given fields.
pub fn changed(
    cluster: u64,
    id: u64,
    fields: impl IntoIterator<Item = (&'static str, Value)>,
) -> Value {
    let mut r = Map::new();
    r.insert("ClusterID".into(), Value::from(cluster));
    r.insert("ID".into(), Value::from(id));
    for (k, v) in fields {
        r.insert(k.into(), v);
    }
    Value::Object(r)
}

/// The line a stored message shows as: its text; for a message with only a JSON body
/// (External API `msglog_send`), the body's `text`, `message` or `msg` string, else the
/// body itself as JSON text.
pub fn message_line(m: &Message) -> String {
    if let Some(text) = &m.text {
        return text.clone();
    }
    let Some(body) = &m.body else {
        return String::new();
    };
    if let Ok(Value::Object(map)) = serde_json::from_str::<Value>(body.as_str()) {
        for key in ["text", "message", "msg"] {
            if let Some(Value::String(s)) = map.get(key) {
                return s.clone();
            }
        }
    }
    body.as_str().to_string()
}

/// The `result` of a `conf.instantmsg`.
pub fn instantmsg(cluster: u64, m: &Message, username: &str) -> Value {
    json!({
        "ClusterID": cluster,
        "ID": m.group_id.0,
        "username": username,
        "msg": message_line(m),
        "color": color(m.sender),
        "time": m.created_at_us / 1_000_000,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_are_stable_per_user() {
        assert_eq!(color(Uin(1)), PALETTE[1]);
        assert_eq!(color(Uin(9)), PALETTE[1]);
        assert_ne!(color(Uin(1)), color(Uin(2)));
    }
}
