//! # confer-door-chat: the Chat API door
//!
//! Socket.IO v4 on namespace `/data`, as `shared/specs/chat-api-socketio.md` and the
//! Chat API section of `shared/specs/README.md` describe. The session token from
//! `POST /api/v1/login` arrives as query `session`, a `Session` header or the auth payload
//! `{session}`; the server answers with the `login` event (0 ok, 2 expired, 7 conflict).
//!
//! ## Layout
//! - [`sio`]: Socket.IO and Engine.IO themselves: the wire format, the WebSocket and
//!   long-polling transports, the HTTP side at `/socket.io/`.
//! - [`session`]: one socket's life as one task: connecting (authentication, `login`),
//!   client events run as commands, core deliveries pushed as events, the heartbeat, the
//!   end.
//! - [`cmd`]: the client events by area, each parsing its arguments, calling the core and
//!   answering through the ack with `{result, …}`.
//! - [`args`]: the three argument forms, ids as numbers or strings, documented misspellings.
//! - [`render`]: groups, messages, calls and statuses as this door shows them.
//! - [`codes`]: result codes and the one mapping from core errors.
//!
//! Bad input never goes unanswered: an event with an ack always gets `{result, message}`,
//! whatever its arguments were.

pub mod args;
pub mod cmd;
pub mod codes;
pub mod render;
pub mod session;
pub mod sio;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use confer_core::Core;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The door's limits (from the binary's config).
#[derive(Clone, Debug)]
pub struct Settings {
    /// Deliveries waiting for one socket; when full, the socket is cut. Also the most
    /// packets that may wait for a long-polling client's next GET.
    pub outbound_queue: usize,
    /// Requests per second a socket may make, sustained.
    pub rate_per_sec: u32,
    /// Requests a socket may make in a burst.
    pub rate_burst: u32,
    /// Largest Socket.IO message or polling body accepted (bytes).
    pub max_payload: usize,
    /// The most bytes of packets that may wait for a long-polling client's next GET
    /// (beside `outbound_queue` packets); past it the socket is cut.
    pub poll_outbox_bytes: usize,
    /// How often the server pings each socket, and how long it waits for the pong.
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
    /// A write that takes longer ends the socket.
    pub write_timeout: Duration,
    /// The STUN/TURN servers `create_call` and `answer_call` answers carry.
    pub turn: confer_core::turn::TurnSettings,
}

/// What every socket of the door shares.
pub struct ChatApi {
    pub core: Arc<Core>,
    pub settings: Settings,
    /// Cancelled at shutdown: sockets are disconnected.
    pub shutdown: CancellationToken,
    /// The long-polling sockets.
    pub engine: sio::Engine,
    /// Every socket's task, so that shutdown waits for sockets to close their sessions.
    pub tracker: TaskTracker,
}

impl ChatApi {
    pub fn new(
        core: Arc<Core>,
        settings: Settings,
        shutdown: CancellationToken,
        tracker: TaskTracker,
    ) -> Arc<ChatApi> {
        Arc::new(ChatApi {
            core,
            settings,
            shutdown,
            engine: sio::Engine::default(),
            tracker,
        })
    }
}

/// The door's routes (`/socket.io/`).
pub fn router(door: Arc<ChatApi>) -> Router {
    sio::router(door)
}
