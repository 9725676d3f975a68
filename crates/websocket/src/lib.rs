//! # confer-websocket: what the doors speaking WebSocket share
//!
//! The External API (`/api/ws`) and the Chat API's WebSocket transport (`/socket.io/`)
//! end connections the same way, as RFC 6455 §7.4 asks, so the mapping lives here once:
//!
//! - [`close_for`]: the close code a failed read calls for (1009 too big, 1007 invalid
//!   UTF-8 in a text message, 1002 any other protocol violation such as an unmasked
//!   client frame), or none when the connection itself is broken.
//! - [`answer_close`]: send the reply to a client's Close frame, which tungstenite has
//!   queued but writes only on the next write or flush; without it a client that closes
//!   sees 1006 (no close frame) instead of its own code echoed.

use std::time::Duration;

use axum::extract::ws::WebSocket;
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Error as WsError;

/// RFC 6455 close codes the doors send.
pub const CLOSE_NORMAL: u16 = 1000;
pub const CLOSE_GOING_AWAY: u16 = 1001;
pub const CLOSE_PROTOCOL: u16 = 1002;
pub const CLOSE_INVALID_DATA: u16 = 1007;
pub const CLOSE_POLICY: u16 = 1008;
pub const CLOSE_TOO_BIG: u16 = 1009;

/// The close code and reason a read error calls for; `None` when the connection is
/// broken (nothing more can be sent on it).
pub fn close_for(error: &axum::Error) -> Option<(u16, &'static str)> {
    let ws = std::error::Error::source(error).and_then(|s| s.downcast_ref::<WsError>())?;
    tungstenite_close(ws)
}

fn tungstenite_close(error: &WsError) -> Option<(u16, &'static str)> {
    match error {
        WsError::Capacity(_) => Some((CLOSE_TOO_BIG, "message too large")),
        WsError::Utf8(_) => Some((CLOSE_INVALID_DATA, "invalid UTF-8 in a text message")),
        WsError::Protocol(_) => Some((CLOSE_PROTOCOL, "protocol error")),
        _ => None,
    }
}

/// The client sent Close: write the reply tungstenite queued (its own code echoed),
/// within `timeout`. Nothing else is sent on the connection after it.
pub async fn answer_close(ws: &mut WebSocket, timeout: Duration) {
    let _ = tokio::time::timeout(timeout, ws.flush()).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_tungstenite::tungstenite::error::{CapacityError, ProtocolError};

    #[test]
    fn read_errors_map_to_their_rfc_6455_codes() {
        let code = |e: WsError| tungstenite_close(&e).map(|(code, _)| code);
        let big = CapacityError::MessageTooLong {
            size: 2,
            max_size: 1,
        };
        assert_eq!(code(WsError::Capacity(big)), Some(1009));
        assert_eq!(code(WsError::Utf8("bad".into())), Some(1007));
        assert_eq!(
            code(WsError::Protocol(ProtocolError::UnmaskedFrameFromClient)),
            Some(1002)
        );
        assert_eq!(code(WsError::ConnectionClosed), None);
        let broken = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert_eq!(code(WsError::Io(broken)), None);
    }
}
