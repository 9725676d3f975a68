//! A Chat API socket's life, as one task: the namespace CONNECT and authentication, the
//! `login` event, client events run as commands (several at once, each answered through
//! its ack), the core's deliveries pushed as events, the heartbeat, and the end.
//!
//! Everything a socket does happens in this task, so its packets leave in the order they
//! are made and its state needs no lock. Deliveries wait in the session's bounded mailbox;
//! when it fills (the client stopped reading) the mailbox cancels the socket's `cut` token
//! and the socket is cut, so a slow client never holds up anybody else. A write that
//! times out cuts it too.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use confer_core::bus::{Delivery, Mailbox, MailboxReceiver, RemoteError, SessionInfo};
use confer_core::event::DoorSlot;
use confer_core::rate::RateBucket;
use confer_core::{Event, Principal};
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use serde_json::{json, Value};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::codes::{CONFLICT, INVALID_PARAMETERS, OK, SESSION_EXPIRED};
use crate::sio::packet::{self, EnginePacket, SioKind, NAMESPACE};
use crate::sio::transport::{Input, Link, OutboxLimit, SendError};
use crate::{cmd, render, ChatApi};

/// tungstenite's read buffer per WebSocket: it lives as long as the socket, so it is
/// small; larger messages are read in several steps (512-byte reads; most events are
/// smaller).
pub const WS_READ_BUFFER: usize = 512;
/// Commands one socket may have running; beyond it, its next packets wait to be read.
const MAX_IN_FLIGHT: usize = 32;
/// The event that tells a socket whether it is logged in (`{result, uin?}`): after the
/// namespace CONNECT, and before the server disconnects it (expired, conflict).
pub const LOGIN: &str = "login";
/// Deliveries written in one go when several are waiting.
const DRAIN_BATCH: usize = 64;
/// Bytes of packets tungstenite gathers before it writes to the socket; each turn of a
/// socket's loop ends with a flush, so this only bounds what one turn holds back. Its
/// buffer keeps the largest size it reached, so it stays small.
pub const WS_WRITE_BUFFER: usize = 4096;
/// A socket that has not connected the namespace by then is closed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(45);
/// The longest data a client's Engine.IO ping may carry (`probe` is what clients send);
/// a longer one closes the socket, since its pong would echo it back.
const MAX_PING_DATA: usize = 32;

const CLOSE_NORMAL: u16 = 1000;
const CLOSE_GOING_AWAY: u16 = 1001;
const CLOSE_POLICY: u16 = 1008;
const CLOSE_PROTOCOL: u16 = confer_websocket::CLOSE_PROTOCOL;

/// A logged-in socket's identity, shared with the commands it runs.
pub struct ChatSession {
    pub who: Principal,
    pub info: SessionInfo,
}

/// What the socket keeps of the HTTP request that opened it. Only this is copied out:
/// holding the request itself would keep hyper's whole read buffer alive per socket.
pub struct Hello {
    pub sid: String,
    pub query_token: Option<String>,
    pub header_token: Option<String>,
    pub remote: String,
}

/// The Engine.IO open packet for a new socket.
pub fn open_packet(door: &ChatApi, sid: &str, upgrade: bool) -> String {
    let s = &door.settings;
    packet::open(
        sid,
        upgrade,
        s.ping_interval.as_millis(),
        s.ping_timeout.as_millis(),
        s.max_payload,
    )
}

/// How a socket ends: whether the server says DISCONNECT first, and the close code.
struct Ending {
    disconnect: bool,
    close: Option<(u16, &'static str)>,
}

impl Ending {
    /// The server ends the namespace session and closes the transport.
    fn server(code: u16, reason: &'static str) -> Ending {
        Ending {
            disconnect: true,
            close: Some((code, reason)),
        }
    }

    /// The client went; close what is left of the transport.
    fn client(close: Option<(u16, &'static str)>) -> Ending {
        Ending {
            disconnect: false,
            close,
        }
    }
}

type Step = Result<(), Ending>;
type Running = Pin<Box<dyn Future<Output = Option<Utf8Bytes>> + Send>>;

struct Socket {
    door: Arc<ChatApi>,
    link: Link,
    hello: Hello,
    /// Set once the namespace is connected and the token was good.
    session: Option<Arc<ChatSession>>,
    deliveries: Option<MailboxReceiver>,
    /// Cancelled when the socket must end: at shutdown, and once logged in also when
    /// its mailbox overflows (a child of the shutdown token, cancelled by the mailbox).
    cut: CancellationToken,
    /// Commands running, each giving its ack packet (if the client asked for one).
    running: FuturesUnordered<Running>,
    /// Packets made in this turn of the loop, written together at its end.
    out: Vec<Utf8Bytes>,
    bucket: RateBucket,
    /// A pong arrived since the last look.
    ponged: bool,
}

/// Run a socket until it ends.
pub fn run(door: Arc<ChatApi>, link: Link, hello: Hello) -> impl Future<Output = ()> {
    // The socket is built before the future: an `async fn` would keep room for its
    // arguments all the socket's life, beside the socket they were moved into.
    let bucket = RateBucket::full(door.settings.rate_burst);
    let mut socket = Socket {
        cut: door.shutdown.clone(),
        door,
        link,
        hello,
        session: None,
        deliveries: None,
        running: FuturesUnordered::new(),
        out: Vec::new(),
        bucket,
        ponged: false,
    };
    async move {
        let ending = socket.serve().await;
        socket.finish(ending).await;
    }
}

async fn recv(rx: &mut Option<MailboxReceiver>) -> Delivery {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// The event's packet on this door, made once for all its recipients (`None` when the
/// Chat API does not show it). Cached as the frame itself: each recipient clones a
/// reference to the same bytes, with no allocation or UTF-8 check of its own.
fn event_packet(event: &Event) -> Option<Utf8Bytes> {
    event
        .rendered(DoorSlot::ChatApi, |e| {
            render::push(e).map(|(name, payload)| Utf8Bytes::from(packet::event(&name, &payload)))
        })
        .flatten()
}

impl Socket {
    async fn serve(&mut self) -> Ending {
        let door = self.door.clone();
        let settings = &door.settings;
        let heartbeat = tokio::time::sleep(settings.ping_interval);
        tokio::pin!(heartbeat);
        let mut ping_out = false;
        let connect_by = tokio::time::sleep(CONNECT_TIMEOUT);
        tokio::pin!(connect_by);
        loop {
            let step: Step = tokio::select! {
                _ = self.cut.cancelled() => if door.shutdown.is_cancelled() {
                    Err(Ending::server(CLOSE_GOING_AWAY, "server shutting down"))
                } else {
                    door.core.metrics().slow_consumer_cut();
                    Err(Ending::server(CLOSE_POLICY, "outbound queue full: client too slow"))
                },
                input = self.link.next(), if self.running.len() < MAX_IN_FLIGHT => self.on_input(input).await,
                delivery = recv(&mut self.deliveries) => self.on_deliveries(delivery),
                Some(ack) = self.running.next(), if !self.running.is_empty() => {
                    self.out.extend(ack);
                    Ok(())
                }
                _ = &mut heartbeat => {
                    let unpolled = match &self.link {
                        Link::Poll(poll, _) => poll.unpolled_for(),
                        Link::Ws(_) => Duration::ZERO,
                    };
                    if unpolled > settings.ping_interval + settings.ping_timeout {
                        // It never reads its pings, whatever it POSTs (an unasked pong
                        // included): its packets would only pile up.
                        Err(Ending::client(Some((CLOSE_POLICY, "no poll in time"))))
                    } else if ping_out {
                        Err(Ending::client(Some((CLOSE_POLICY, "ping timeout"))))
                    } else {
                        ping_out = true;
                        heartbeat.as_mut().reset(Instant::now() + settings.ping_timeout);
                        self.out.push(Utf8Bytes::from_static("2"));
                        Ok(())
                    }
                }
                _ = &mut connect_by, if self.session.is_none() => {
                    Err(Ending::client(Some((CLOSE_POLICY, "no namespace connect in time"))))
                }
            };
            if std::mem::take(&mut self.ponged) && ping_out {
                ping_out = false;
                heartbeat
                    .as_mut()
                    .reset(Instant::now() + settings.ping_interval);
            }
            if let Err(ending) = step.and_then(|()| self.take_ready()) {
                return ending;
            }
            if !self.flush().await {
                return Ending::client(None);
            }
        }
    }

    /// Take the answers and deliveries that are ready too, without waiting, so that they
    /// leave in this turn's one write. A posted message's ack and its echo to the sender's
    /// own socket become ready together: one write instead of two, on both ends.
    fn take_ready(&mut self) -> Step {
        while let Some(Some(ack)) = self.running.next().now_or_never() {
            self.out.extend(ack);
        }
        match self.deliveries.as_mut().and_then(MailboxReceiver::try_recv) {
            Some(delivery) => self.on_deliveries(delivery),
            None => Ok(()),
        }
    }

    /// Write what this turn made. `false` when the client cannot take it.
    async fn flush(&mut self) -> bool {
        if self.out.is_empty() {
            return true;
        }
        let s = &self.door.settings;
        let limit = OutboxLimit {
            packets: s.outbound_queue,
            bytes: s.poll_outbox_bytes,
        };
        match self.link.send(&mut self.out, limit, s.write_timeout).await {
            Ok(()) => true,
            Err(SendError::Gone) => false,
            Err(SendError::Slow) => {
                self.door.core.metrics().slow_consumer_cut();
                false
            }
        }
    }

    async fn finish(mut self, ending: Ending) {
        if ending.disconnect {
            self.out.push(Utf8Bytes::from_static(packet::DISCONNECT));
            let _ = self.flush().await;
        }
        let polling = matches!(self.link, Link::Poll(..));
        self.link
            .close(ending.close, self.door.settings.write_timeout)
            .await;
        if polling {
            // The client's last GET still finds the close packet; then the sid goes.
            let door = self.door.clone();
            let sid = std::mem::take(&mut self.hello.sid);
            tokio::spawn(async move {
                tokio::time::sleep(door.settings.ping_timeout).await;
                door.engine.forget(&sid);
            });
        }
        // Commands still running are dropped with the socket: nobody is left to answer.
        drop(self.running);
        if let Some(session) = self.session.take() {
            self.door.core.close_chat_session(&session.info).await;
            self.door.core.metrics().connection_closed(cmd::DOOR);
            // Closed, so the count of refused deliveries is final: told once.
            let dropped = self.deliveries.as_ref().map_or(0, MailboxReceiver::dropped);
            let id = &session.info.session_id;
            self.door.core.report_dropped(Some(id), cmd::DOOR, dropped);
        }
    }

    async fn on_input(&mut self, input: Input) -> Step {
        match input {
            Input::Text(text) => self.on_engine(text.as_str()).await,
            Input::Upgraded(ws) => {
                self.link.upgrade(ws, &mut self.out);
                self.door.engine.forget(&self.hello.sid);
                Ok(())
            }
            Input::Skip => Ok(()),
            Input::Closed(close) => Err(Ending::client(close)),
        }
    }

    async fn on_engine(&mut self, text: &str) -> Step {
        match packet::parse_engine(text) {
            Some(EnginePacket::Pong) => {
                self.ponged = true;
                Ok(())
            }
            Some(EnginePacket::Ping(data)) if data.len() > MAX_PING_DATA => Err(Ending::client(
                Some((CLOSE_PROTOCOL, "ping payload too large")),
            )),
            Some(EnginePacket::Ping(data)) => {
                self.out.push(format!("3{data}").into());
                Ok(())
            }
            Some(EnginePacket::Message(m)) => self.on_sio(m).await,
            Some(EnginePacket::Close) => Err(Ending::client(Some((CLOSE_NORMAL, "")))),
            Some(EnginePacket::Upgrade | EnginePacket::Noop) => Ok(()),
            None => {
                tracing::debug!(len = text.len(), "unknown engine.io packet ignored");
                Ok(())
            }
        }
    }

    async fn on_sio(&mut self, text: &str) -> Step {
        let p = match packet::parse_sio(text) {
            Ok(p) => p,
            Err(why) => {
                tracing::debug!(why, "malformed socket.io packet ignored");
                return Ok(());
            }
        };
        if p.ns != NAMESPACE {
            if p.kind == SioKind::Connect {
                self.out
                    .push(packet::connect_error(p.ns, "Invalid namespace").into());
            }
            return Ok(());
        }
        match p.kind {
            // Boxed: authentication's state is large and needed once, so it does not
            // become part of every idle socket's task.
            SioKind::Connect => Box::pin(self.connect(p.data)).await,
            SioKind::Disconnect => Err(Ending::client(Some((CLOSE_NORMAL, "")))),
            SioKind::Event => {
                self.event(p.id, p.data);
                Ok(())
            }
            SioKind::BinaryEvent => {
                // Its attachments follow as binary frames, which are skipped.
                self.refuse(p.id, "binary payloads are not accepted");
                Ok(())
            }
            SioKind::Ack | SioKind::BinaryAck | SioKind::ConnectError => Ok(()),
        }
    }

    /// Answer an event that cannot run with `result: 1`, if the client asked for an ack.
    fn refuse(&mut self, id: Option<u64>, why: &str) {
        if let Some(id) = id {
            let body = cmd::answer(Err(crate::codes::Failure::new(INVALID_PARAMETERS, why)));
            self.out.push(packet::ack(id, &body).into());
        }
    }

    fn emit(&mut self, name: &str, payload: &Value) {
        self.out
            .push(packet::event(name, &payload.to_string()).into());
    }

    /// The namespace CONNECT: authenticate with the token from the auth payload, the
    /// query or the header, open the core session, and say `login`. A bad token still
    /// connects, is told `login {result: 2}`, and is disconnected.
    async fn connect(&mut self, auth: &str) -> Step {
        if self.session.is_some() {
            return Ok(());
        }
        let from_auth = serde_json::from_str::<Value>(auth)
            .ok()
            .and_then(|a| a.get("session").and_then(Value::as_str).map(str::to_string))
            .filter(|t| !t.is_empty());
        let token = from_auth
            .or_else(|| self.hello.query_token.clone())
            .or_else(|| self.hello.header_token.clone());
        self.out.push(packet::connected(&self.hello.sid).into());
        let door = self.door.clone();
        let who = match token {
            None => None,
            Some(token) => match door.core.authenticate_token(None, &token).await {
                Err(_) => None,
                Ok(who) => {
                    let cut = door.shutdown.child_token();
                    let (mailbox, rx) = Mailbox::bounded(door.settings.outbound_queue, cut.clone());
                    match door
                        .core
                        .open_chat_session(&who, &token, self.hello.remote.clone(), mailbox)
                        .await
                    {
                        Ok(info) => Some((who, info, rx, cut)),
                        Err(e) => {
                            tracing::warn!(error = %e, "chat session not opened");
                            None
                        }
                    }
                }
            },
        };
        let Some((who, info, rx, cut)) = who else {
            self.emit(LOGIN, &json!({"result": SESSION_EXPIRED}));
            return Err(Ending::server(CLOSE_NORMAL, ""));
        };
        door.core.metrics().connection_opened(cmd::DOOR);
        self.emit(LOGIN, &json!({"result": OK, "uin": who.uin.0.to_string()}));
        // The peers' presence as it is now (nothing without peers); later changes come
        // as `user_status`.
        match door.core.presence_snapshot(&who).await {
            Ok(peers) if peers.is_empty() => {}
            Ok(peers) => self.emit(render::USER_STATUSES, &render::user_statuses(&peers)),
            Err(e) => tracing::warn!(error = %e, "presence snapshot not sent"),
        }
        self.session = Some(Arc::new(ChatSession { who, info }));
        self.deliveries = Some(rx);
        self.cut = cut;
        Ok(())
    }

    /// A client event: runs beside the socket's other work; its ack goes out when done.
    fn event(&mut self, id: Option<u64>, data: &str) {
        let Some(session) = self.session.clone() else {
            return;
        };
        let (name, arg) = match packet::event_args(data) {
            Ok(parsed) => parsed,
            Err(why) => return self.refuse(id, why),
        };
        let s = &self.door.settings;
        let allowed = self.bucket.allow(s.rate_per_sec, s.rate_burst);
        let door = self.door.clone();
        self.running.push(Box::pin(async move {
            let body = cmd::handle(&door, &session, &name, arg, allowed).await;
            id.map(|id| Utf8Bytes::from(packet::ack(id, &body)))
        }));
    }

    /// A delivery, and whatever else is already waiting (up to a batch).
    fn on_deliveries(&mut self, first: Delivery) -> Step {
        self.on_delivery(first)?;
        for _ in 1..DRAIN_BATCH {
            let Some(rx) = self.deliveries.as_mut() else {
                break;
            };
            match rx.try_recv() {
                Some(delivery) => self.on_delivery(delivery)?,
                None => break,
            }
        }
        Ok(())
    }

    fn on_delivery(&mut self, delivery: Delivery) -> Step {
        match delivery {
            Delivery::Event { event, .. } => {
                self.out.extend(event_packet(&event));
                Ok(())
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
                self.emit(LOGIN, &json!({ "result": result }));
                Err(Ending::server(CLOSE_NORMAL, ""))
            }
        }
    }
}
