//! Socket.IO v5 over Engine.IO v4, as much of it as the Chat API uses: one namespace,
//! JSON events with acks, the WebSocket and long-polling transports and the upgrade
//! between them. Served at `/socket.io/`.
//!
//! Why our own and not a general library: here a socket is one task with one bounded
//! queue (the session's mailbox), and a pushed event's packet is encoded once for all of
//! its recipients. A general server spends three tasks and three queues per socket (~30
//! KB idle, measured) and encodes per recipient; see BENCHMARKS.md.
//!
//! - [`packet`]: the wire format, parsing and encoding, no I/O.
//! - [`transport`]: WebSocket or long-polling behind one [`transport::Link`].
//! - this file: the HTTP side: handshakes, polls, posts, upgrades, and the table of
//!   long-polling sockets. What a socket does once open is `crate::session`.

pub mod packet;
pub mod transport;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::json;

use crate::session::{self, Hello};
use crate::ChatApi;
use transport::{Input, Link, Poll};

/// The long-polling sockets, by sid, so that their GETs and POSTs find them.
#[derive(Default)]
pub struct Engine {
    polls: Mutex<HashMap<String, Arc<Poll>>>,
}

impl Engine {
    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Poll>>> {
        self.polls.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn find(&self, sid: &str) -> Option<Arc<Poll>> {
        self.table().get(sid).cloned()
    }

    /// Forget a polling socket that ended or moved to a WebSocket.
    pub fn forget(&self, sid: &str) {
        self.table().remove(sid);
    }
}

/// The door's routes.
pub fn router(door: Arc<ChatApi>) -> Router {
    Router::new()
        .route("/socket.io/", get(on_get).post(on_post))
        .route("/socket.io", get(on_get).post(on_post))
        .with_state(door)
}

#[derive(Deserialize)]
struct EngineQuery {
    #[serde(rename = "EIO")]
    eio: Option<String>,
    transport: Option<String>,
    sid: Option<String>,
    session: Option<String>,
}

/// Engine.IO's error answers: HTTP 400 with `{code, message}`.
fn refuse(code: u8, message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({"code": code, "message": message})),
    )
        .into_response()
}

fn text(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=UTF-8")], body).into_response()
}

/// A random socket id: 128 bits, URL-safe.
fn new_sid() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn hello(sid: String, query: EngineQuery, headers: &HeaderMap, peer: SocketAddr) -> Hello {
    // Only what the socket needs is copied out: holding the request (as a general server
    // does, for handlers to read) keeps hyper's whole read buffer alive per socket.
    Hello {
        sid,
        query_token: query.session.filter(|t| !t.is_empty()),
        header_token: headers
            .get("session")
            .and_then(|v| v.to_str().ok())
            .filter(|t| !t.is_empty())
            .map(str::to_string),
        remote: peer.to_string(),
    }
}

async fn on_get(
    State(door): State<Arc<ChatApi>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    query: Result<Query<EngineQuery>, QueryRejection>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let Ok(Query(query)) = query else {
        return refuse(3, "Bad request");
    };
    if query.eio.as_deref() != Some("4") {
        return refuse(5, "Unsupported protocol version");
    }
    match (query.transport.as_deref(), query.sid.clone()) {
        (Some("polling"), None) => {
            let sid = new_sid();
            let (poll, rx) = Poll::new();
            door.engine.table().insert(sid.clone(), poll.clone());
            let open = session::open_packet(&door, &sid, true);
            let hello = hello(sid, query, &headers, peer);
            let tracker = door.tracker.clone();
            tokio::spawn(tracker.track_future(session::run(door, Link::Poll(poll, rx), hello)));
            text(open)
        }
        (Some("polling"), Some(sid)) => match door.engine.find(&sid) {
            None => refuse(1, "Session ID unknown"),
            Some(poll) => match poll.take().await {
                Ok(body) => text(body),
                Err(_) => {
                    // Engine.IO: a second concurrent GET is a protocol violation, and
                    // ends the socket.
                    poll.closed.cancel();
                    let _ = poll.inbound.try_send(Input::Closed(None));
                    refuse(3, "Bad request")
                }
            },
        },
        (Some("websocket"), sid) => {
            let Ok(ws) = ws else {
                return refuse(3, "Bad request");
            };
            let ws = ws
                .max_message_size(door.settings.max_payload)
                .max_frame_size(door.settings.max_payload)
                .read_buffer_size(session::WS_READ_BUFFER)
                .write_buffer_size(session::WS_WRITE_BUFFER);
            match sid {
                None => {
                    let hello = hello(new_sid(), query, &headers, peer);
                    ws.on_upgrade(move |socket| {
                        // Boxed before the task's future is made, so that the future does
                        // not keep room for the socket itself all its life.
                        let mut link = Link::Ws(Box::new(socket));
                        let tracker = door.tracker.clone();
                        tracker.track_future(async move {
                            let open = session::open_packet(&door, &hello.sid, false);
                            let mut open = vec![open.into()];
                            let one = transport::OutboxLimit {
                                packets: 1,
                                bytes: usize::MAX,
                            };
                            let sent = link.send(&mut open, one, door.settings.write_timeout).await;
                            if sent.is_ok() {
                                session::run(door, link, hello).await;
                            }
                        })
                    })
                }
                Some(sid) => match door.engine.find(&sid) {
                    None => refuse(1, "Session ID unknown"),
                    Some(poll) => {
                        let timeout = door.settings.ping_timeout;
                        ws.on_upgrade(move |socket| async move {
                            if let Err(why) = upgrade(socket, &poll, timeout).await {
                                tracing::debug!(why, "chat transport upgrade abandoned");
                            }
                        })
                    }
                },
            }
        }
        _ => refuse(0, "Transport unknown"),
    }
}

/// The Engine.IO upgrade on the new WebSocket: `2probe` → `3probe`, then the client's
/// `5`, and the socket's task takes the WebSocket over.
async fn upgrade(
    mut ws: WebSocket,
    poll: &Poll,
    timeout: std::time::Duration,
) -> Result<(), &'static str> {
    expect(&mut ws, "2probe", timeout).await?;
    ws.send(Message::Text("3probe".into()))
        .await
        .map_err(|_| "probe answer failed")?;
    poll.noop();
    expect(&mut ws, "5", timeout).await?;
    poll.inbound
        .send(Input::Upgraded(Box::new(ws)))
        .await
        .map_err(|_| "the socket ended meanwhile")
}

/// The client's next frame must be the text `want`, within `timeout`.
async fn expect(
    ws: &mut WebSocket,
    want: &str,
    timeout: std::time::Duration,
) -> Result<(), &'static str> {
    match tokio::time::timeout(timeout, ws.next()).await {
        Ok(Some(Ok(Message::Text(t)))) if t.as_str() == want => Ok(()),
        _ => Err("the client did not follow the upgrade"),
    }
}

/// A POST: the client's packets for a polling socket.
async fn on_post(
    State(door): State<Arc<ChatApi>>,
    query: Result<Query<EngineQuery>, QueryRejection>,
    body: Body,
) -> Response {
    let Ok(Query(query)) = query else {
        return refuse(3, "Bad request");
    };
    let Some(poll) = query.sid.as_deref().and_then(|sid| door.engine.find(sid)) else {
        return refuse(1, "Session ID unknown");
    };
    let Some(_posting) = poll.posting() else {
        // Engine.IO: overlapping POSTs are a protocol violation, and end the socket.
        poll.closed.cancel();
        let _ = poll.inbound.try_send(Input::Closed(None));
        return refuse(3, "Bad request");
    };
    let Ok(bytes) = axum::body::to_bytes(body, door.settings.max_payload).await else {
        // Too large (or cut): Engine.IO closes such a socket.
        poll.closed.cancel();
        let _ = poll.inbound.send(Input::Closed(None)).await;
        return (StatusCode::PAYLOAD_TOO_LARGE, "payload too large").into_response();
    };
    let Ok(body) = std::str::from_utf8(&bytes) else {
        return refuse(3, "Bad request");
    };
    for packet in body.split(packet::SEPARATOR) {
        if poll.inbound.send(Input::Text(packet.into())).await.is_err() {
            return refuse(1, "Session ID unknown");
        }
    }
    text("ok".into())
}
