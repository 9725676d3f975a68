//! One WebSocket connection: a single task that reads client frames, runs commands,
//! writes answers, and sends the server's own requests (events, pings, forwarded
//! commands), closing the connection when one of those goes unanswered too long.
//!
//! Deliveries from the core arrive through the session's bounded mailbox; when it fills
//! (the client stopped reading) the core cancels `overflow` and this task closes the
//! connection, so a slow client never holds up anybody else. Writes have a timeout for the
//! same reason.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use confer_core::bus::{Delivery, Mailbox, RemoteError};
use confer_core::event::DoorSlot;
use confer_core::rate::RateBucket;
use confer_core::{EventBody, Json};
use futures_util::stream::FuturesUnordered;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::args::Args;
use crate::cmd::{Command, ConnState, Ctx, Deferred, Reply, DOOR};
use crate::error::{CmdError, RATE_LIMITED, SYNTAX_ERROR};
use crate::frame::{self, Incoming, Request};
use crate::render;
use crate::ExtApi;

// Close codes (RFC 6455) this door uses; protocol errors map to theirs in
// `confer_websocket`, shared with the Chat API.
use confer_websocket::{CLOSE_GOING_AWAY, CLOSE_NORMAL, CLOSE_POLICY};

/// A server request waiting for the client's answer.
enum Pending {
    Event,
    Ping,
    Forwarded(oneshot::Sender<Result<Option<Json>, RemoteError>>),
}

struct Conn {
    door: Arc<ExtApi>,
    ws: Box<WebSocket>,
    state: ConnState,
    next_tid: u64,
    pending: HashMap<u64, (Pending, Instant)>,
    /// The same deadlines, ordered, to find the next one to expire.
    deadlines: BTreeSet<(Instant, u64)>,
    /// Commands that answer later (a forwarded `session cmd`), run beside the rest.
    deferred: FuturesUnordered<Deferred>,
    /// The connection's command rate (answers to server requests are not counted).
    bucket: RateBucket,
}

/// Why the loop ended, and what to tell the client.
struct Ending {
    code: u16,
    reason: &'static str,
}

/// Serve one connection until it ends.
pub fn run(
    door: Arc<ExtApi>,
    socket: WebSocket,
    peer: SocketAddr,
) -> impl std::future::Future<Output = ()> {
    // The socket moves to the heap at once: an `async fn` keeps its arguments' room in
    // the task for the connection's whole life, wherever they are moved to.
    serve(door, Box::new(socket), peer)
}

async fn serve(door: Arc<ExtApi>, ws: Box<WebSocket>, peer: SocketAddr) {
    let metrics = door.core.metrics().clone();
    metrics.connection_opened(DOOR);
    // One token for both ways the server ends a connection: shutdown (its parent) and
    // overflow (the mailbox cancels it).
    let cut = door.shutdown.child_token();
    let (mailbox, mut deliveries) = Mailbox::bounded(door.settings.outbound_queue, cut.clone());
    let mut conn = Conn {
        ws,
        state: ConnState {
            remote: peer.to_string(),
            peer,
            login: None,
            mailbox: Some(mailbox),
        },
        next_tid: 1,
        pending: HashMap::new(),
        deadlines: BTreeSet::new(),
        deferred: FuturesUnordered::new(),
        bucket: RateBucket::full(door.settings.rate_burst),
        door,
    };
    let period = conn.door.settings.ping_interval;
    let mut ping = tokio::time::interval_at(Instant::now() + period, period);

    let ending: Option<Ending> = loop {
        let deadline = conn.deadlines.first().map(|(at, _)| *at);
        let step = tokio::select! {
            _ = cut.cancelled() => if conn.door.shutdown.is_cancelled() {
                Err(Some(Ending { code: CLOSE_GOING_AWAY, reason: "server shutting down" }))
            } else {
                metrics.slow_consumer_cut();
                Err(Some(Ending { code: CLOSE_POLICY, reason: "outbound queue full: client too slow" }))
            },
            incoming = conn.ws.next() => match incoming {
                None => Err(None),
                Some(Ok(Message::Close(_))) => {
                    // RFC 6455 §5.5.1: answer with a Close frame (the client's code echoed).
                    confer_websocket::answer_close(&mut conn.ws, conn.door.settings.write_timeout).await;
                    Err(None)
                }
                // Boxed: a command's state lives on the heap only while it runs, instead of
                // making every idle connection's task as large as the largest command.
                Some(Ok(Message::Text(text))) => Box::pin(conn.on_text(text.as_str())).await,
                Some(Ok(Message::Binary(_))) => {
                    let e = CmdError::new(SYNTAX_ERROR, "syntax error: binary frames are not accepted");
                    conn.send(frame::error(0, &e)).await
                }
                Some(Ok(_)) => Ok(()),
                Some(Err(e)) => Err(confer_websocket::close_for(&e).map(|(code, reason)| Ending { code, reason })),
            },
            delivery = deliveries.recv() => conn.on_delivery(delivery).await,
            Some((tid, answer)) = conn.deferred.next(), if !conn.deferred.is_empty() => {
                conn.answer(tid, "core/session/cmd", answer).await
            }
            _ = ping.tick() => {
                let time = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                conn.request(Pending::Ping, "core", None, "ping", Some(json!({"time": time}))).await
            }
            _ = sleep_until(deadline) => {
                conn.expire_first();
                Err(Some(Ending { code: CLOSE_POLICY, reason: "session timeout: no answer to a server request" }))
            }
        };
        if let Err(ending) = step {
            break ending;
        }
    };

    if let Some(ending) = ending {
        tracing::debug!(
            code = ending.code,
            reason = ending.reason,
            "closing external api connection"
        );
        let close = Message::Close(Some(CloseFrame {
            code: ending.code,
            reason: Utf8Bytes::from_static(ending.reason),
        }));
        let _ = tokio::time::timeout(conn.door.settings.write_timeout, conn.ws.send(close)).await;
    }
    let session = conn.state.login.take().map(|login| login.session);
    if let Some(session) = &session {
        conn.door.core.close_session(session).await;
    }
    // Closed, so nothing more is queued: the count is final, and told once.
    let session_id = session.as_ref().map(|s| &s.session_id);
    conn.door
        .core
        .report_dropped(session_id, DOOR, deliveries.dropped());
    metrics.connection_closed(DOOR);
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

type Step = Result<(), Option<Ending>>;

impl Conn {
    async fn send(&mut self, text: String) -> Step {
        let write = self.ws.send(Message::Text(text.into()));
        match tokio::time::timeout(self.door.settings.write_timeout, write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(None),
            Err(_) => {
                self.door.core.metrics().slow_consumer_cut();
                Err(Some(Ending {
                    code: CLOSE_POLICY,
                    reason: "write timeout: client too slow",
                }))
            }
        }
    }

    async fn on_text(&mut self, text: &str) -> Step {
        match frame::decode(text) {
            Err(bad) => {
                self.door.core.metrics().command(DOOR, "invalid", false);
                self.send(frame::error(bad.tid, &bad.error)).await
            }
            Ok(Incoming::Request(req)) => self.on_request(req).await,
            Ok(Incoming::Answer { tid, result }) => {
                self.on_answer(tid, result);
                Ok(())
            }
            Ok(Incoming::Ack { tid }) => {
                self.extend(tid);
                Ok(())
            }
            Ok(Incoming::Stray(why)) => {
                // The server's tid space: answering would speak in the client's.
                tracing::debug!(why, "stray answer ignored");
                Ok(())
            }
        }
    }

    async fn on_request(&mut self, req: Request) -> Step {
        let tid = req.tid;
        let name = format!("{}/{}/{}", req.class, req.subclass, req.cmd);
        let settings = &self.door.settings;
        if !self
            .bucket
            .allow(settings.rate_per_sec, settings.rate_burst)
        {
            // Answered, not run: a flood costs its sender, never its target.
            let e = CmdError::new(RATE_LIMITED, "rate limited: too many commands");
            return self.answer(tid, &name, Err(e)).await;
        }
        let outcome = self.run_command(req).await;
        match outcome {
            // Taken, answered later (a forwarded `session cmd`): the caller is told so.
            Ok(Reply::Deferred) => self.send(frame::ack(tid)).await,
            Ok(Reply::Data(data)) => self.answer(tid, &name, Ok(data)).await,
            Ok(Reply::Page { list, more }) => {
                self.door.core.metrics().command(DOOR, &name, true);
                self.send(frame::ok_page(tid, list, more)).await
            }
            Err(e) => self.answer(tid, &name, Err(e)).await,
        }
    }

    async fn run_command(&mut self, req: Request) -> Result<Reply, CmdError> {
        let mut args = Args::new(req.data)?;
        let logged_in = self.state.login.is_some();
        let cmd = Command::parse(&req.class, &req.subclass, &req.cmd, &mut args, logged_in)?;
        let unrecognized = args.unrecognized();
        let mut ctx = Ctx {
            core: &self.door.core,
            state: &mut self.state,
            deferred: &mut self.deferred,
            tid: req.tid,
            service: &self.door.settings.service,
        };
        let reply = cmd.apply(&mut ctx).await?;
        if let (false, Some(login)) = (unrecognized.is_empty(), &self.state.login) {
            let body = EventBody::UnrecognizedFields {
                class: req.class,
                subclass: req.subclass,
                cmd: req.cmd,
                fields: unrecognized,
            };
            // The session is this connection's own; it exists while we run.
            let _ = self.door.core.send_session_event(
                &login.session.session_id,
                Some("unrecognized_fields".into()),
                body,
            );
        }
        Ok(reply)
    }

    /// Write the answer to a client request, counting it by command and result.
    async fn answer(
        &mut self,
        tid: u64,
        name: &str,
        result: Result<Option<Value>, CmdError>,
    ) -> Step {
        let known = !matches!(&result, Err(e) if e.code == crate::error::UNKNOWN_COMMAND);
        let label = if known { name } else { "unknown" };
        self.door
            .core
            .metrics()
            .command(DOOR, label, result.is_ok());
        let text = match result {
            Ok(data) => frame::ok(tid, data),
            Err(e) => frame::error(tid, &e),
        };
        self.send(text).await
    }

    fn on_answer(&mut self, tid: u64, result: Result<Option<Value>, CmdError>) {
        let Some((pending, at)) = self.pending.remove(&tid) else {
            tracing::debug!(tid, "answer to no pending server request");
            return;
        };
        self.deadlines.remove(&(at, tid));
        if self.pending.is_empty() {
            // Nothing in flight: give the tables' memory back. A connection spends most
            // of its life idle between two pings, and a table keeps its capacity.
            self.pending = HashMap::new();
            self.deadlines = BTreeSet::new();
        }
        if let Pending::Forwarded(reply) = pending {
            let relayed = result
                .map(|data| data.map(|d| Json::from_validated(d.to_string())))
                .map_err(|e| RemoteError {
                    code: e.code,
                    error: e.error,
                });
            let _ = reply.send(relayed);
        }
    }

    /// The earliest server request went unanswered past its deadline (the connection
    /// closes next): a forwarded command's caller is told it timed out, not that the
    /// session vanished.
    fn expire_first(&mut self) {
        let Some((_, tid)) = self.deadlines.pop_first() else {
            return;
        };
        if let Some((Pending::Forwarded(reply), _)) = self.pending.remove(&tid) {
            let _ = reply.send(Err(RemoteError {
                code: crate::error::TIMEOUT,
                error: "timeout: the session did not answer in time".into(),
            }));
        }
    }

    /// The client acked a server request: it gets the longer timeout.
    fn extend(&mut self, tid: u64) {
        let longer = Instant::now() + self.door.settings.acked_reply_timeout;
        if let Some((_, at)) = self.pending.get_mut(&tid) {
            self.deadlines.remove(&(*at, tid));
            *at = longer;
            self.deadlines.insert((longer, tid));
        }
    }

    fn track(&mut self, pending: Pending) -> u64 {
        let tid = self.next_tid;
        self.next_tid += 1;
        let at = Instant::now() + self.door.settings.reply_timeout;
        self.pending.insert(tid, (pending, at));
        self.deadlines.insert((at, tid));
        tid
    }

    async fn request(
        &mut self,
        pending: Pending,
        class: &str,
        subclass: Option<&str>,
        cmd: &str,
        data: Option<Value>,
    ) -> Step {
        let tid = self.track(pending);
        self.send(frame::request(tid, class, subclass, cmd, data))
            .await
    }

    async fn on_delivery(&mut self, delivery: Delivery) -> Step {
        match delivery {
            Delivery::Event { event, merge } => {
                let tid = self.track(Pending::Event);
                let text = match merge.is_empty() {
                    // The common case: rendered once for every recipient on this door.
                    true => frame::event(
                        tid,
                        &event
                            .rendered(DoorSlot::ExternalApi, |e| {
                                Arc::<str>::from(render::event_data(e, &[]))
                            })
                            .unwrap_or_default(),
                    ),
                    false => frame::event(tid, &render::event_data(&event, &merge)),
                };
                self.send(text).await
            }
            Delivery::Request(req) => {
                let data = req.data.as_ref().map(render::json_value);
                let (class, subclass, cmd) = (req.class, req.subclass, req.cmd);
                self.request(
                    Pending::Forwarded(req.reply),
                    &class,
                    subclass.as_deref(),
                    &cmd,
                    data,
                )
                .await
            }
            Delivery::Stop { code, reason } => {
                tracing::info!(%reason, "session stopped");
                Err(Some(
                    if code == confer_core::service::TOKEN_ENDED_STOP_CODE {
                        Ending {
                            code: CLOSE_POLICY,
                            reason: "token revoked or expired",
                        }
                    } else {
                        Ending {
                            code: CLOSE_NORMAL,
                            reason: "session stopped",
                        }
                    },
                ))
            }
        }
    }
}
