//! # confer-door-vsp: the conference door
//!
//! The "Pallada" protocol over a WebSocket at `/vsp/ws`: client commands `{dst, lng, cmd,
//! seq, obj, params}`, answers `{"ANSW":…}` and events `{"EVT":…}`, as
//! `shared/specs/conference-events.md` describes with the command set of
//! `shared/specs/README.md`. `docs/vsp.md` is the protocol page.
//!
//! A conference here is a core conversation (`ID` = `group_id`): an External API
//! conference, or a chat group the caller is a member of. Joining puts the session in the
//! conversation's live room; everything that happens there, through any door, reaches it
//! as the conference's events (`media/conf/*/<conf_id>`), which this door renders as
//! `conf.changed`, `conf.instantmsg` and `conf.webrtc`.
//!
//! ## Layout
//! - [`connection`]: one task per WebSocket: reads commands, writes answers, the session's
//!   bounded mailbox rendered as events, the `timer.time` tick.
//! - [`frame`]: decoding commands, encoding `ANSW` and `EVT` frames.
//! - [`cmd`]: one file per command: parse its `params`, apply to the core, answer.
//! - [`render`]: parties, `confdata`, instant messages, chat colours.
//! - [`codes`]: the door's result codes and the one mapping from core errors.
//! - [`page`]: the test page at `/vsp/test` (plain JavaScript in `page/`), which the
//!   browser tests drive.
//!
//! Media (`CALLME_S2`, `hangup`) goes to the server's [`MediaEndpoint`] when one is
//! plugged in; without one those commands answer [`codes::MEDIA_UNAVAILABLE`].

pub mod cmd;
pub mod codes;
pub mod connection;
pub mod frame;
pub mod page;
pub mod render;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, State, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use confer_core::media::{MediaEndpoint, MediaEvent};
use confer_core::service::PartyChange;
use confer_core::turn::TurnSettings;
use confer_core::Core;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use cmd::DOOR;

/// The door's limits and timers (from the binary's config).
#[derive(Clone, Debug)]
pub struct Settings {
    /// How often every connection gets `timer.time`.
    pub timer_interval: Duration,
    /// The largest frame accepted; a larger one closes the connection with 1009.
    pub max_frame_bytes: usize,
    /// Deliveries waiting for one connection; when full, the connection is cut (1008).
    pub outbound_queue: usize,
    /// How long one write to a client may take before the connection is cut.
    pub write_timeout: Duration,
    /// Commands a connection may make per second, sustained, and in one burst; beyond
    /// them a command is answered [`codes::RATE_LIMITED`], not run.
    pub rate_per_sec: u32,
    pub rate_burst: u32,
    /// `ClusterID` in every conference event.
    pub cluster_id: u64,
    /// The ICE servers `CALLME_S1` hands out.
    pub turn: TurnSettings,
    /// The Content-Security-Policy of the test page at `/vsp/test` (the binary hands in
    /// the web client's, so one policy covers every page the server serves).
    pub page_csp: &'static str,
}

/// What every connection of the door shares.
pub struct Vsp {
    pub core: Arc<Core>,
    pub settings: Settings,
    /// The server's WebRTC endpoint, when the binary plugs one in.
    pub media: Option<Arc<dyn MediaEndpoint>>,
    /// Cancelled at shutdown: connections close with 1001.
    pub shutdown: CancellationToken,
    /// Tracks connection tasks so shutdown can wait for them to finish.
    pub tracker: TaskTracker,
}

/// The door's routes, `GET /vsp/ws` and the test page (serve with `into_make_service_with_connect_info`).
/// With a media endpoint, its events are heard from here on (see [`listen_media`]).
pub fn router(door: Arc<Vsp>) -> Router {
    if door.media.is_some() {
        door.tracker.spawn(listen_media(door.clone()));
    }
    Router::new()
        .route("/vsp/ws", get(upgrade))
        .route("/vsp/test", get(page::html))
        .route("/vsp/test.js", get(page::js))
        .route("/vsp/test.css", get(page::css))
        .with_state(door)
}

/// One task for the whole door: what the media endpoint says about a party becomes a
/// change of that party in the core, which every door in the conference hears (what it
/// sends: `bMicOn`/`bCamOn`; its media ended: `conf.webrtc.Disconnected`).
pub async fn listen_media(door: Arc<Vsp>) {
    let Some(media) = door.media.clone() else {
        return;
    };
    let mut events = media.events();
    loop {
        let event = tokio::select! {
            _ = door.shutdown.cancelled() => return,
            event = events.recv() => event,
        };
        let (key, change, ended) = match event {
            Ok(MediaEvent::Ended { key, .. }) => {
                let change = PartyChange {
                    media: Some(false),
                    ..PartyChange::default()
                };
                (key, change, true)
            }
            Ok(MediaEvent::Sending {
                key, audio, video, ..
            }) => {
                let change = PartyChange {
                    mic: Some(audio),
                    cam: Some(video),
                    ..PartyChange::default()
                };
                (key, change, false)
            }
            // For the party's own connection only (it renders them itself).
            Ok(MediaEvent::Slots { .. }) => continue,
            Err(RecvError::Lagged(n)) => {
                tracing::warn!(lost = n, "conference door fell behind the media events");
                continue;
            }
            Err(RecvError::Closed) => return,
        };
        if let Err(e) = door.core.party_media(key, change, ended).await {
            tracing::warn!(error = %e, "could not record a party's media event");
        }
    }
}

async fn upgrade(
    State(door): State<Arc<Vsp>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ws: WebSocketUpgrade,
) -> Response {
    let max = door.settings.max_frame_bytes;
    // Small socket buffers, as the External API's: the read buffer lives as long as the
    // connection.
    ws.max_message_size(max)
        .max_frame_size(max)
        .read_buffer_size(512)
        .write_buffer_size(0)
        .on_upgrade(move |socket| {
            let tracker = door.tracker.clone();
            tracker.track_future(connection::run(door, socket, peer))
        })
}
