//! Engine.IO v4 and Socket.IO v5 packets as text: parsing what clients send, encoding what
//! the server sends. Pure functions, no I/O, so every rule of the wire format is tested
//! here and nowhere else.
//!
//! Engine.IO: one digit for the type, then the data: `0` open, `1` close, `2` ping, `3`
//! pong, `4` message, `5` upgrade, `6` noop. Long-polling joins packets with `\x1e`.
//! Socket.IO rides inside Engine.IO messages: one digit for its type, `N-` (attachment
//! count) for the binary kinds, `/nsp,` unless the namespace is `/`, the ack id, then JSON.

use serde_json::Value;

/// The only namespace the Chat API serves.
pub const NAMESPACE: &str = "/data";
/// Separates packets in a long-polling body.
pub const SEPARATOR: char = '\x1e';

/// An Engine.IO packet a client sent.
#[derive(Debug, PartialEq, Eq)]
pub enum EnginePacket<'a> {
    Close,
    Ping(&'a str),
    Pong,
    Message(&'a str),
    Upgrade,
    Noop,
}

/// Parse one Engine.IO text packet; `None` for an unknown type or an empty packet.
pub fn parse_engine(text: &str) -> Option<EnginePacket<'_>> {
    let rest = text.get(1..)?;
    Some(match text.as_bytes().first()? {
        b'1' => EnginePacket::Close,
        b'2' => EnginePacket::Ping(rest),
        b'3' => EnginePacket::Pong,
        b'4' => EnginePacket::Message(rest),
        b'5' => EnginePacket::Upgrade,
        b'6' => EnginePacket::Noop,
        _ => return None,
    })
}

/// Socket.IO packet types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SioKind {
    Connect,
    Disconnect,
    Event,
    Ack,
    ConnectError,
    BinaryEvent,
    BinaryAck,
}

/// A Socket.IO packet a client sent; `data` is its JSON text, unparsed.
#[derive(Debug, PartialEq, Eq)]
pub struct SioPacket<'a> {
    pub kind: SioKind,
    pub ns: &'a str,
    pub id: Option<u64>,
    pub data: &'a str,
}

/// Parse a Socket.IO packet (an Engine.IO message's data).
pub fn parse_sio(text: &str) -> Result<SioPacket<'_>, &'static str> {
    let kind = match text.as_bytes().first() {
        Some(b'0') => SioKind::Connect,
        Some(b'1') => SioKind::Disconnect,
        Some(b'2') => SioKind::Event,
        Some(b'3') => SioKind::Ack,
        Some(b'4') => SioKind::ConnectError,
        Some(b'5') => SioKind::BinaryEvent,
        Some(b'6') => SioKind::BinaryAck,
        _ => return Err("unknown packet type"),
    };
    let mut rest = &text[1..];
    if matches!(kind, SioKind::BinaryEvent | SioKind::BinaryAck) {
        let dash = rest
            .find('-')
            .ok_or("binary packet without attachment count")?;
        if rest[..dash].is_empty() || !rest[..dash].bytes().all(|b| b.is_ascii_digit()) {
            return Err("bad attachment count");
        }
        rest = &rest[dash + 1..];
    }
    let ns = if rest.starts_with('/') {
        let end = rest.find(',').unwrap_or(rest.len());
        let ns = &rest[..end];
        rest = rest.get(end + 1..).unwrap_or("");
        ns
    } else {
        "/"
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let id = if digits == 0 {
        None
    } else {
        Some(
            rest[..digits]
                .parse::<u64>()
                .map_err(|_| "ack id too large")?,
        )
    };
    Ok(SioPacket {
        kind,
        ns,
        id,
        data: &rest[digits..],
    })
}

/// An event's name and argument. No argument is `None`; several are one array, as a
/// handler written for one argument would see them.
pub fn event_args(data: &str) -> Result<(String, Option<Value>), &'static str> {
    let Ok(Value::Array(items)) = serde_json::from_str::<Value>(data) else {
        return Err("an event is a JSON array");
    };
    let mut items = items.into_iter();
    let Some(Value::String(name)) = items.next() else {
        return Err("an event starts with its name");
    };
    let mut args: Vec<Value> = items.collect();
    let arg = match args.len() {
        0 => None,
        1 => args.pop(),
        _ => Some(Value::Array(args)),
    };
    Ok((name, arg))
}

/// The Engine.IO open packet.
pub fn open(
    sid: &str,
    upgrade: bool,
    ping_interval_ms: u128,
    ping_timeout_ms: u128,
    max_payload: usize,
) -> String {
    let upgrades = if upgrade { r#"["websocket"]"# } else { "[]" };
    format!(
        r#"0{{"sid":{},"upgrades":{upgrades},"pingInterval":{ping_interval_ms},"pingTimeout":{ping_timeout_ms},"maxPayload":{max_payload}}}"#,
        Value::from(sid)
    )
}

/// The server's answer to a namespace CONNECT.
pub fn connected(sid: &str) -> String {
    format!(r#"40{NAMESPACE},{{"sid":{}}}"#, Value::from(sid))
}

/// A refused namespace CONNECT.
pub fn connect_error(ns: &str, message: &str) -> String {
    let nsp = if ns == "/" {
        String::new()
    } else {
        format!("{ns},")
    };
    format!(r#"44{nsp}{{"message":{}}}"#, Value::from(message))
}

/// An event from the server; `payload` is JSON text.
pub fn event(name: &str, payload: &str) -> String {
    let mut out = String::with_capacity(NAMESPACE.len() + name.len() + payload.len() + 8);
    out.push_str("42");
    out.push_str(NAMESPACE);
    out.push_str(",[");
    if name.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        // The door's own event names: nothing to escape, so no serializer.
        out.push('"');
        out.push_str(name);
        out.push('"');
    } else {
        out.push_str(&Value::from(name).to_string());
    }
    out.push(',');
    out.push_str(payload);
    out.push(']');
    out
}

/// The answer to an event that asked for one; `payload` is JSON text.
pub fn ack(id: u64, payload: &str) -> String {
    let mut digits = itoa::Buffer::new();
    let id = digits.format(id);
    let mut out = String::with_capacity(NAMESPACE.len() + id.len() + payload.len() + 5);
    out.push_str("43");
    out.push_str(NAMESPACE);
    out.push(',');
    out.push_str(id);
    out.push('[');
    out.push_str(payload);
    out.push(']');
    out
}

/// The server ends the namespace session.
pub const DISCONNECT: &str = "41/data,";

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn engine_packets() {
        assert_eq!(parse_engine("2probe"), Some(EnginePacket::Ping("probe")));
        assert_eq!(parse_engine("3"), Some(EnginePacket::Pong));
        assert_eq!(
            parse_engine("40/data,"),
            Some(EnginePacket::Message("0/data,"))
        );
        assert_eq!(parse_engine("1"), Some(EnginePacket::Close));
        assert_eq!(parse_engine(""), None);
        assert_eq!(parse_engine("9"), None);
        assert_eq!(parse_engine("é"), None);
    }

    #[test]
    fn socketio_packets() {
        let p = parse_sio(r#"0/data,{"session":"t"}"#).unwrap();
        assert_eq!(
            (p.kind, p.ns, p.id, p.data),
            (SioKind::Connect, "/data", None, r#"{"session":"t"}"#)
        );
        let p = parse_sio("0/data,").unwrap();
        assert_eq!((p.ns, p.data), ("/data", ""));
        let p = parse_sio("0").unwrap();
        assert_eq!((p.ns, p.data), ("/", ""));
        let p = parse_sio("0/data").unwrap();
        assert_eq!((p.ns, p.data), ("/data", ""));
        let p = parse_sio(r#"2/data,12["list_group",{}]"#).unwrap();
        assert_eq!(
            (p.kind, p.id, p.data),
            (SioKind::Event, Some(12), r#"["list_group",{}]"#)
        );
        let p = parse_sio(r#"2["x"]"#).unwrap();
        assert_eq!((p.ns, p.id), ("/", None));
        let p = parse_sio(r#"51-/data,7["up",{"_placeholder":true,"num":0}]"#).unwrap();
        assert_eq!((p.kind, p.id), (SioKind::BinaryEvent, Some(7)));
        assert!(parse_sio("5/data,").is_err());
        assert!(parse_sio("x").is_err());
        assert!(parse_sio("").is_err());
        assert!(parse_sio("2/data,99999999999999999999999[]").is_err());
    }

    #[test]
    fn event_arguments() {
        assert_eq!(
            event_args(r#"["a",{"k":1}]"#).unwrap(),
            ("a".into(), Some(json!({"k": 1})))
        );
        assert_eq!(event_args(r#"["a"]"#).unwrap(), ("a".into(), None));
        assert_eq!(
            event_args(r#"["a",1,2]"#).unwrap(),
            ("a".into(), Some(json!([1, 2])))
        );
        assert!(event_args(r#"[1,2]"#).is_err());
        assert!(event_args(r#"{"a":1}"#).is_err());
        assert!(event_args("[").is_err());
    }

    #[test]
    fn server_packets() {
        assert_eq!(connected("s1"), r#"40/data,{"sid":"s1"}"#);
        assert_eq!(connect_error("/", "no"), r#"44{"message":"no"}"#);
        assert_eq!(connect_error("/x", "no"), r#"44/x,{"message":"no"}"#);
        assert_eq!(
            event("login", r#"{"result":0}"#),
            r#"42/data,["login",{"result":0}]"#
        );
        assert_eq!(ack(3, r#"{"result":0}"#), r#"43/data,3[{"result":0}]"#);
        // A name with something to escape is escaped as JSON, as any string would be.
        assert_eq!(event("a\"b\u{1}", "1"), r#"42/data,["a\"b\u0001",1]"#);
        let open: Value =
            serde_json::from_str(&open("s\"1", true, 25000, 20000, 100)[1..]).unwrap();
        assert_eq!(
            open,
            json!({"sid": "s\"1", "upgrades": ["websocket"], "pingInterval": 25000, "pingTimeout": 20000, "maxPayload": 100})
        );
    }
}
