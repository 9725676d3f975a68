//! # confer-door-chat: the Chat API door
//!
//! Socket.IO v4 on namespace `/data`, as `shared/specs/chat-api-socketio.md` and the
//! Chat API section of `shared/specs/README.md` describe. The session token from
//! `POST /api/v1/login` arrives as query `session`, a `Session` header or the auth payload
//! `{session}`; the server answers with the `login` event (0 ok, 2 expired, 7 conflict).
//!
//! ## Layout
//! - [`session`]: connecting (authentication, `login`), the per-socket state, the pump that
//!   turns core deliveries into emitted events, disconnecting.
//! - [`cmd`]: the client events by area, each parsing its arguments, calling the core and
//!   answering through the ack with `{result, …}`.
//! - [`args`]: the three argument forms, ids as numbers or strings, documented misspellings.
//! - [`render`]: groups, messages, calls and statuses as this door shows them.
//! - [`codes`]: result codes and the one mapping from core errors.
//!
//! socketioxide drops a payload it cannot deserialize, so every handler takes the raw
//! value and parses it here: a client always gets an ack with a result code.

pub mod args;
pub mod cmd;
pub mod codes;
pub mod render;
pub mod session;

use std::sync::Arc;
use std::time::Duration;

use confer_core::Core;
use socketioxide::handler::ConnectHandler;
use socketioxide::layer::SocketIoLayer;
use socketioxide::SocketIo;
use tokio_util::sync::CancellationToken;

/// The door's limits (from the binary's config).
#[derive(Clone, Debug)]
pub struct Settings {
    /// Deliveries waiting for one socket; when full, the socket is cut.
    pub outbound_queue: usize,
    /// Requests per second a socket may make, sustained.
    pub rate_per_sec: u32,
    /// Requests a socket may make in a burst.
    pub rate_burst: u32,
    /// Largest Socket.IO payload accepted (bytes).
    pub max_payload: u64,
}

/// What every socket of the door shares.
pub struct ChatApi {
    pub core: Arc<Core>,
    pub settings: Settings,
    /// Cancelled at shutdown: sockets are disconnected.
    pub shutdown: CancellationToken,
}

/// The Socket.IO layer to mount on the HTTP router (it serves `/socket.io/`).
pub fn layer(door: Arc<ChatApi>) -> (SocketIoLayer, SocketIo) {
    let (layer, io) = SocketIo::builder()
        .max_payload(door.settings.max_payload)
        .ping_interval(Duration::from_secs(25))
        .with_state(door)
        .build_layer();
    io.ns("/data", session::on_connect.with(session::authenticate));
    (layer, io)
}
