//! A Chat API socket's life: authentication (a connect middleware, so it finishes before
//! the client may emit anything), the `login` event, the sink that turns the core's
//! deliveries into emitted events, and the end.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::ConnectInfo;
use confer_core::bus::{Delivery, DeliverySink, Mailbox, PushError, RemoteError, SessionInfo};
use confer_core::event::DoorSlot;
use confer_core::Principal;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use socketioxide::extract::{SocketRef, State, TryData};
use socketioxide::{SendError, SocketError};

use crate::codes::{CONFLICT, OK, SESSION_EXPIRED};
use crate::{cmd, render, ChatApi};

/// A logged-in socket's state, kept in the socket's extensions.
pub struct ChatSession {
    pub who: Principal,
    pub info: SessionInfo,
    /// Token bucket for rate limiting: (tokens, last refill). A std `Mutex`: held for a
    /// few instructions, never across `.await`.
    bucket: Mutex<(f64, Instant)>,
}

impl ChatSession {
    /// Take one request from the bucket; `false` when the socket is over its rate.
    pub fn allow(&self, per_sec: u32, burst: u32) -> bool {
        let mut b = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let refill = now.duration_since(b.1).as_secs_f64() * f64::from(per_sec);
        b.0 = (b.0 + refill).min(f64::from(burst));
        b.1 = now;
        if b.0 >= 1.0 {
            b.0 -= 1.0;
            true
        } else {
            false
        }
    }
}

/// What authentication left for the connect handler.
#[derive(Clone)]
enum Auth {
    Ok(Arc<ChatSession>, Arc<SocketSink>),
    Failed,
}

/// The core's deliveries for one socket, emitted straight into socketioxide's bounded
/// per-socket queue: no queue and pump task of our own, so a delivery crosses one task
/// hand-off fewer (the fan-out profile counted three). The sending task renders and emits.
///
/// The session opens (and deliveries may arrive) in the connect middleware, before the
/// client has its namespace connect; those wait here, bounded like the socket's queue,
/// until [`SocketSink::open`] has said `login`.
struct SocketSink {
    socket: SocketRef,
    door: Arc<ChatApi>,
    /// A std `Mutex`, held while one delivery is emitted (a non-blocking queue push).
    state: Mutex<SinkState>,
}

enum SinkState {
    Connecting(Vec<Delivery>),
    Open,
    Closed,
}

impl SocketSink {
    /// Say `login`, then emit what waited, then emit as deliveries come.
    fn open(&self, login: &Value) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let waiting = match std::mem::replace(&mut *state, SinkState::Open) {
            SinkState::Connecting(waiting) => waiting,
            other => {
                *state = other;
                return;
            }
        };
        let _ = self.socket.emit("login", login);
        for delivery in waiting {
            if self.emit(delivery).is_err() {
                *state = SinkState::Closed;
                return;
            }
        }
    }

    /// Emit one delivery; `Err` once the socket is done with (cut, stopped or gone).
    fn emit(&self, delivery: Delivery) -> Result<(), PushError> {
        match delivery {
            Delivery::Event { event, .. } => {
                let Some(name) = event.kind.as_deref() else {
                    return Ok(());
                };
                // Rendered once per event for every recipient on this door.
                let payload = event.rendered(DoorSlot::ChatApi, |e| {
                    render::push(e).map_or_else(|| "null".to_string(), |(_, v)| v.to_string())
                });
                // Emitted as raw JSON: the rendered text is copied into each packet, never
                // parsed or serialized again per recipient.
                let Ok(raw) = serde_json::from_str::<&RawValue>(&payload) else {
                    return Ok(());
                };
                if raw.get() == "null" {
                    return Ok(());
                }
                match self.socket.emit(name, raw) {
                    Ok(()) => Ok(()),
                    Err(SendError::Socket(SocketError::InternalChannelFull)) => {
                        tracing::debug!(%name, "chat socket queue full; disconnecting");
                        self.door.core.metrics().slow_consumer_cut();
                        self.disconnect();
                        Err(PushError::Full)
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, %name, "chat emit failed; disconnecting");
                        self.disconnect();
                        Err(PushError::Closed)
                    }
                }
            }
            Delivery::Request(req) => {
                let _ = req.reply.send(Err(RemoteError {
                    code: 100006,
                    error: "chat sessions take no forwarded commands".into(),
                }));
                Ok(())
            }
            Delivery::Stop { code, .. } => {
                let result = if code == confer_core::service::CONFLICT_STOP_CODE {
                    CONFLICT
                } else {
                    SESSION_EXPIRED
                };
                let _ = self.socket.emit("login", &json!({"result": result}));
                self.disconnect();
                Err(PushError::Closed)
            }
        }
    }

    fn disconnect(&self) {
        // The disconnect handler (which closes the core session) runs as its own task,
        // so this never re-enters the registry that is calling us.
        let _ = self.socket.clone().disconnect();
    }
}

impl DeliverySink for SocketSink {
    fn push(&self, delivery: Delivery) -> Result<(), PushError> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match &mut *state {
            SinkState::Closed => Err(PushError::Closed),
            SinkState::Connecting(waiting) => {
                if waiting.len() < self.door.settings.outbound_queue {
                    waiting.push(delivery);
                    return Ok(());
                }
                *state = SinkState::Closed;
                self.door.core.metrics().slow_consumer_cut();
                self.disconnect();
                Err(PushError::Full)
            }
            SinkState::Open => {
                let sent = self.emit(delivery);
                if sent.is_err() {
                    *state = SinkState::Closed;
                }
                sent
            }
        }
    }
}

/// The token from query `session`, header `Session`, or the auth payload `{session}`.
fn token_of(s: &SocketRef, auth: Option<Value>) -> Option<String> {
    let parts = s.req_parts();
    let from_query = parts.uri.query().and_then(|q| {
        q.split('&')
            .find_map(|kv| kv.strip_prefix("session=").map(str::to_string))
    });
    let from_header = parts
        .headers
        .get("session")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let from_auth = auth.and_then(|a| a.get("session").and_then(Value::as_str).map(str::to_string));
    from_auth
        .or(from_query)
        .or(from_header)
        .filter(|t| !t.is_empty())
}

/// Connect middleware: authenticate and open the core session. It never refuses the
/// connection; a failure is told with `login {result: 2}` by the handler.
pub async fn authenticate(
    s: SocketRef,
    State(door): State<Arc<ChatApi>>,
    TryData(auth): TryData<Value>,
) -> Result<(), std::convert::Infallible> {
    let outcome = match token_of(&s, auth.ok()) {
        None => Auth::Failed,
        Some(token) => match door.core.authenticate_token(None, &token).await {
            Err(_) => Auth::Failed,
            Ok(who) => {
                let sink = Arc::new(SocketSink {
                    socket: s.clone(),
                    door: door.clone(),
                    state: Mutex::new(SinkState::Connecting(Vec::new())),
                });
                let mailbox = Mailbox::sink(sink.clone());
                let remote = s
                    .req_parts()
                    .extensions
                    .get::<ConnectInfo<std::net::SocketAddr>>()
                    .map_or_else(|| "unknown".to_string(), |c| c.0.to_string());
                match door
                    .core
                    .open_chat_session(&who, &token, remote, mailbox)
                    .await
                {
                    Ok(info) => Auth::Ok(
                        Arc::new(ChatSession {
                            who,
                            info,
                            bucket: Mutex::new((
                                f64::from(door.settings.rate_burst),
                                Instant::now(),
                            )),
                        }),
                        sink,
                    ),
                    Err(e) => {
                        tracing::warn!(error = %e, "chat session not opened");
                        Auth::Failed
                    }
                }
            }
        },
    };
    s.extensions.insert(outcome);
    Ok(())
}

/// Connect handler: registers the event handlers at once, then says `login`.
pub async fn on_connect(s: SocketRef, State(door): State<Arc<ChatApi>>) {
    let Some(Auth::Ok(session, sink)) = s.extensions.get::<Auth>() else {
        let _ = s.emit("login", &json!({"result": SESSION_EXPIRED}));
        let _ = s.disconnect();
        return;
    };
    door.core.metrics().connection_opened(crate::cmd::DOOR);
    s.extensions.insert(session.clone());
    cmd::register(&s);
    s.on_disconnect(async |s: SocketRef, State(door): State<Arc<ChatApi>>| {
        if let Some(session) = s.extensions.get::<Arc<ChatSession>>() {
            door.core.close_chat_session(&session.info).await;
            door.core.metrics().connection_closed(crate::cmd::DOOR);
        }
    });
    // The sink is no longer needed in the extensions (the registry holds it); keeping it
    // there would tie the socket and its sink in a cycle.
    s.extensions.remove::<Auth>();
    sink.open(&json!({"result": OK, "uin": session.who.uin.0.to_string()}));
}
