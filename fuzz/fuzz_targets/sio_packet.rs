//! Chat API transport: a long-polling body (Engine.IO packets joined by `\x1e`; a
//! WebSocket text frame is one such packet), each packet read as the session reads it:
//! Engine.IO, then Socket.IO, then an event's name and argument, then the argument.
//! What the server would send back (an event, an ack, a refused namespace) is encoded
//! with its own encoders and must parse to what was decoded.
#![no_main]

use confer_door_chat::args::Args;
use confer_door_chat::sio::packet::{self, EnginePacket, SioKind, SioPacket, NAMESPACE, SEPARATOR};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The polling POST refuses a body that is not UTF-8 before splitting it.
    let Ok(body) = std::str::from_utf8(data) else {
        return;
    };
    for text in body.split(SEPARATOR) {
        let Some(EnginePacket::Message(message)) = packet::parse_engine(text) else {
            continue;
        };
        let Ok(p) = packet::parse_sio(message) else {
            continue;
        };
        assert!(message.ends_with(p.data));
        match p.kind {
            SioKind::Connect if p.ns != NAMESPACE => {
                let refused = packet::connect_error(p.ns, "Invalid namespace");
                let back = sio(&refused);
                assert_eq!(
                    (back.kind, back.ns, back.id),
                    (SioKind::ConnectError, p.ns, None)
                );
            }
            SioKind::Event => event(p.id, p.data),
            _ => {}
        }
    }
});

fn event(id: Option<u64>, data: &str) {
    let Ok((name, arg)) = packet::event_args(data) else {
        return;
    };
    if let Some(arg) = &arg {
        let pushed = packet::event(&name, &arg.to_string());
        let back = sio(&pushed);
        assert_eq!(
            (back.kind, back.ns, back.id),
            (SioKind::Event, NAMESPACE, None)
        );
        assert_eq!(
            packet::event_args(back.data),
            Ok((name.clone(), Some(arg.clone())))
        );
    }
    if let Some(id) = id {
        let answer = packet::ack(id, r#"{"result":0}"#);
        let back = sio(&answer);
        assert_eq!(
            (back.kind, back.ns, back.id),
            (SioKind::Ack, NAMESPACE, Some(id))
        );
    }
    if let Some(arg) = arg {
        let _ = Args::parse(arg).map(|a| a.rest());
    }
}

/// A packet the server sends, parsed as a client's: it must be a Socket.IO message.
fn sio(text: &str) -> SioPacket<'_> {
    let Some(EnginePacket::Message(message)) = packet::parse_engine(text) else {
        panic!("not an engine.io message: {text}");
    };
    packet::parse_sio(message).unwrap_or_else(|why| panic!("{why}: {text}"))
}
