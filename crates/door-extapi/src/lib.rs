//! # confer-door-extapi: the External API door
//!
//! JSON frames `{class, subclass, cmd, data, tid}` over a WebSocket at `/api/ws`, as
//! `shared/specs/external-api-core.md` and `external-api-conf-msglog.md` describe, with the
//! corrections of `shared/specs/README.md`.
//!
//! ## Layout
//! - [`connection`]: one task per WebSocket: login state, server requests (events, pings,
//!   forwarded commands) and their reply timeouts, the bounded outbound queue.
//! - [`frame`]: decoding client frames, encoding server frames.
//! - [`args`]: typed access to `data` that also finds unrecognized fields.
//! - [`cmd`]: one file per command: parse, apply to the core, answer.
//! - [`render`]: how core events and messages look as JSON here.
//! - [`error`]: the door's error codes and the one mapping from core errors.
//!
//! This is the only place that knows the External API's JSON; it calls the core and never
//! touches storage.

pub mod args;
pub mod cmd;
pub mod connection;
pub mod error;
pub mod frame;
pub mod render;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, State, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use confer_core::Core;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use cmd::DOOR;

/// The door's limits and timers (from the binary's config).
#[derive(Clone, Debug)]
pub struct Settings {
    /// How often the server pings each connection.
    pub ping_interval: Duration,
    /// How long a server request may wait for the client's answer.
    pub reply_timeout: Duration,
    /// How long, once the client sent `{ack: tid}`.
    pub acked_reply_timeout: Duration,
    /// The largest frame accepted; a larger one closes the connection with 1009.
    pub max_frame_bytes: usize,
    /// Deliveries waiting for one connection; when full, the connection is cut.
    pub outbound_queue: usize,
    /// How long one write to a client may take before the connection is cut.
    pub write_timeout: Duration,
    /// Commands a connection may make per second, sustained, and in one burst; beyond
    /// them a command is answered with [`error::RATE_LIMITED`].
    pub rate_per_sec: u32,
    pub rate_burst: u32,
    /// This server's service name, which `service` in `event subscribe`/`send` may give.
    pub service: String,
}

/// What every connection of the door shares.
pub struct ExtApi {
    pub core: Arc<Core>,
    pub settings: Settings,
    /// Cancelled at shutdown: connections close with 1001.
    pub shutdown: CancellationToken,
    /// Tracks connection tasks so shutdown can wait for them to finish.
    pub tracker: TaskTracker,
}

/// The door's routes: `GET /api/ws`. Serve with `into_make_service_with_connect_info`.
pub fn router(door: Arc<ExtApi>) -> Router {
    Router::new()
        .route("/api/ws", get(upgrade))
        .with_state(door)
}

async fn upgrade(
    State(door): State<Arc<ExtApi>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ws: WebSocketUpgrade,
) -> Response {
    let max = door.settings.max_frame_bytes;
    // Small socket buffers: tungstenite's 128 KiB defaults would cost every idle
    // connection a quarter of a megabyte. The read buffer lives as long as the
    // connection, so it is 512 bytes (larger frames are read in several steps); each frame
    // is flushed as it is sent anyway.
    ws.max_message_size(max)
        .max_frame_size(max)
        .read_buffer_size(512)
        .write_buffer_size(0)
        .on_upgrade(move |socket| {
            let tracker = door.tracker.clone();
            tracker.track_future(connection::run(door, socket, peer))
        })
}
