//! A Chat API socket's life: authentication (a connect middleware, so it finishes before
//! the client may emit anything), the `login` event, the pump from the core's deliveries
//! to emitted events, and the end.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::ConnectInfo;
use confer_core::bus::{Delivery, Mailbox, RemoteError, SessionInfo};
use confer_core::event::DoorSlot;
use confer_core::Principal;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use socketioxide::extract::{SocketRef, State, TryData};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

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
    Ok(Arc<ChatSession>, Arc<PumpInput>),
    Failed,
}

/// The receiving side of the session's mailbox, handed from the middleware to the pump.
struct PumpInput {
    rx: Mutex<Option<mpsc::Receiver<Delivery>>>,
    overflow: CancellationToken,
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
                let (mailbox, rx, overflow) = Mailbox::bounded(door.settings.outbound_queue);
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
                        Arc::new(PumpInput {
                            rx: Mutex::new(Some(rx)),
                            overflow,
                        }),
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
    let Some(Auth::Ok(session, input)) = s.extensions.get::<Auth>() else {
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
    let rx = input.rx.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(rx) = rx {
        tokio::spawn(pump(s.clone(), door.clone(), rx, input.overflow.clone()));
    }
    let _ = s.emit(
        "login",
        &json!({"result": OK, "uin": session.who.uin.0.to_string()}),
    );
}

/// Emit what the core delivers to this socket until it ends.
async fn pump(
    s: SocketRef,
    door: Arc<ChatApi>,
    mut rx: mpsc::Receiver<Delivery>,
    overflow: CancellationToken,
) {
    loop {
        let delivery = tokio::select! {
            _ = door.shutdown.cancelled() => break,
            _ = overflow.cancelled() => {
                door.core.metrics().slow_consumer_cut();
                break;
            }
            d = rx.recv() => match d {
                Some(d) => d,
                None => return,
            },
        };
        match delivery {
            Delivery::Event { event, .. } => {
                let Some(name) = event.kind.clone() else {
                    continue;
                };
                // Rendered once per event for every recipient on this door.
                let payload = event.rendered(DoorSlot::ChatApi, |e| {
                    render::push(e).map_or_else(|| "null".to_string(), |(_, v)| v.to_string())
                });
                if &*payload == "null" {
                    continue;
                }
                // Emitted as raw JSON: the rendered text is copied into each packet, never
                // parsed or serialized again per recipient.
                let Ok(raw) = serde_json::from_str::<&RawValue>(&payload) else {
                    continue;
                };
                if let Err(e) = s.emit(name.as_str(), raw) {
                    tracing::debug!(error = %e, %name, "chat emit failed; disconnecting");
                    if s.connected() {
                        door.core.metrics().slow_consumer_cut();
                    }
                    break;
                }
            }
            Delivery::Request(req) => {
                let _ = req.reply.send(Err(RemoteError {
                    code: 100006,
                    error: "chat sessions take no forwarded commands".into(),
                }));
            }
            Delivery::Stop { code, .. } => {
                let result = if code == confer_core::service::CONFLICT_STOP_CODE {
                    CONFLICT
                } else {
                    SESSION_EXPIRED
                };
                let _ = s.emit("login", &json!({"result": result}));
                break;
            }
        }
    }
    let _ = s.disconnect();
}
