//! One WebSocket connection: a single task that reads commands, writes their answers,
//! renders the session's deliveries as events, and sends `timer.time`.
//!
//! Deliveries arrive through the session's bounded mailbox; when it fills (the client
//! stopped reading) the core cancels `cut` and this task closes the connection (1008), so
//! a slow client never holds up anybody else. Writes have a timeout for the same reason.
//! The conferences' events are rendered here per connection (they are few, and a party
//! list is the connection's own): `started_member`/`stopped_member`/`updated_member`
//! become `conf.changed`, `media_ended` (and `stopped_member` of a party whose media was
//! up) `conf.webrtc.Disconnected`, `msglog_new_msg`
//! `conf.instantmsg`, `destroyed` the end of the conference.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use confer_core::bus::{Delivery, Mailbox, RoomMember};
use confer_core::media::{MediaEvent, PartyKey};
use confer_core::rate::RateBucket;
use confer_core::{Event, EventBody, GroupId};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::time::Instant;

use crate::cmd::{Command, ConnState, Ctx, Joined, DOOR};
use crate::codes::{VspError, BAD_FRAME, RATE_LIMITED, UNKNOWN_COMMAND};
use crate::frame;
use crate::render;
use crate::Vsp;

use confer_websocket::{CLOSE_GOING_AWAY, CLOSE_NORMAL, CLOSE_POLICY};

struct Conn {
    door: Arc<Vsp>,
    ws: Box<WebSocket>,
    state: ConnState,
    /// The connection's command rate.
    bucket: RateBucket,
}

/// Why the loop ended, and what to tell the client.
struct Ending {
    code: u16,
    reason: &'static str,
}

type Step = Result<(), Option<Ending>>;

/// Serve one connection until it ends.
pub fn run(
    door: Arc<Vsp>,
    socket: WebSocket,
    peer: SocketAddr,
) -> impl std::future::Future<Output = ()> {
    // On the heap at once: an `async fn` keeps its arguments' room for the task's life.
    serve(door, Box::new(socket), peer)
}

async fn serve(door: Arc<Vsp>, ws: Box<WebSocket>, peer: SocketAddr) {
    let metrics = door.core.metrics().clone();
    metrics.connection_opened(DOOR);
    // One token for both ways the server ends a connection: shutdown (its parent) and
    // overflow (the mailbox cancels it).
    let cut = door.shutdown.child_token();
    let (mailbox, mut deliveries) = Mailbox::bounded(door.settings.outbound_queue, cut.clone());
    let mut conn = Conn {
        ws,
        state: ConnState {
            peer,
            login: None,
            mailbox: Some(mailbox),
            joined: BTreeMap::new(),
            logout: false,
            media_events: None,
        },
        bucket: RateBucket::full(door.settings.rate_burst),
        door,
    };
    let period = conn.door.settings.timer_interval;
    let mut timer = tokio::time::interval_at(Instant::now() + period, period);

    let ending: Option<Ending> = loop {
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
                    confer_websocket::answer_close(&mut conn.ws, conn.door.settings.write_timeout).await;
                    Err(None)
                }
                Some(Ok(Message::Text(text))) => Box::pin(conn.on_text(text.as_str())).await,
                Some(Ok(Message::Binary(_))) => {
                    let e = VspError::new(BAD_FRAME, "bad frame: binary frames are not accepted");
                    conn.send(frame::answer("", "", 0, &Err(e))).await
                }
                Some(Ok(_)) => Ok(()),
                Some(Err(e)) => Err(confer_websocket::close_for(&e).map(|(code, reason)| Ending { code, reason })),
            },
            delivery = deliveries.recv() => conn.on_delivery(delivery).await,
            event = media_event(&mut conn.state.media_events) => conn.on_media(event).await,
            _ = timer.tick() => {
                let t = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                conn.send(frame::event("timer", "time", None, json!({ "t": t }))).await
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
            "closing conference connection"
        );
        let close = Message::Close(Some(CloseFrame {
            code: ending.code,
            reason: Utf8Bytes::from_static(ending.reason),
        }));
        let _ = tokio::time::timeout(conn.door.settings.write_timeout, conn.ws.send(close)).await;
    }
    conn.close_media().await;
    let session = conn.state.login.take().map(|login| login.session);
    if let Some(session) = &session {
        conn.door.core.close_session(session).await;
    }
    let session_id = session.as_ref().map(|s| &s.session_id);
    conn.door
        .core
        .report_dropped(session_id, DOOR, deliveries.dropped());
    metrics.connection_closed(DOOR);
}

/// The next media event, or never when the connection has opened no media.
async fn media_event(
    events: &mut Option<broadcast::Receiver<MediaEvent>>,
) -> Result<MediaEvent, RecvError> {
    match events {
        Some(events) => events.recv().await,
        None => std::future::pending().await,
    }
}

impl Conn {
    /// A media event: the `Slots` of one of this connection's parties becomes
    /// `conf.webrtc.slots` `{ClusterID, ID, PartyID, EvtData: {slots: [{audio, video,
    /// PartyID}]}}`; the rest is the door's media task's (`listen_media`).
    async fn on_media(&mut self, event: Result<MediaEvent, RecvError>) -> Step {
        let (key, slots) = match event {
            Ok(MediaEvent::Slots { key, slots, .. }) => (key, slots),
            Ok(_) => return Ok(()),
            Err(RecvError::Lagged(n)) => {
                tracing::debug!(
                    lost = n,
                    "conference connection fell behind the media events"
                );
                return Ok(());
            }
            Err(RecvError::Closed) => {
                self.state.media_events = None;
                return Ok(());
            }
        };
        let ours = self
            .state
            .joined
            .get(&key.conference)
            .is_some_and(|j| j.party == key.party && j.media);
        if !ours {
            return Ok(());
        }
        let slots: Vec<Value> = slots
            .iter()
            .map(|s| json!({"audio": s.audio_mid, "video": s.video_mid, "PartyID": s.party}))
            .collect();
        let result = json!({
            "ClusterID": self.door.settings.cluster_id,
            "ID": key.conference.0,
            "PartyID": key.party,
            "EvtData": {"slots": slots},
        });
        self.send(frame::event("conf", "webrtc", Some("slots"), result))
            .await
    }

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
        let command = match frame::decode(text) {
            Ok(command) => command,
            Err(bad) => {
                self.door.core.metrics().command(DOOR, "invalid", false);
                return self
                    .send(frame::answer(&bad.obj, &bad.cmd, bad.seq, &Err(bad.error)))
                    .await;
            }
        };
        let (obj, cmd, seq) = (command.obj, command.cmd, command.seq);
        let settings = &self.door.settings;
        let result = if !self
            .bucket
            .allow(settings.rate_per_sec, settings.rate_burst)
        {
            // Answered, not run: a flood costs its sender, never its target.
            Err(VspError::new(
                RATE_LIMITED,
                "rate limited: too many commands",
            ))
        } else {
            let mut params = command.params;
            let mut events = Vec::new();
            let logged_in = self.state.login.is_some();
            let outcome = match Command::parse(&obj, &cmd, &mut params, logged_in) {
                Ok(c) => {
                    let mut ctx = Ctx {
                        door: &self.door,
                        state: &mut self.state,
                        events: &mut events,
                    };
                    c.apply(&mut ctx).await
                }
                Err(e) => Err(e),
            };
            let known = !matches!(&outcome, Err(e) if e.code == UNKNOWN_COMMAND);
            let label = if known {
                format!("{obj}/{cmd}")
            } else {
                "unknown".into()
            };
            self.door
                .core
                .metrics()
                .command(DOOR, &label, outcome.is_ok());
            if outcome.is_ok() {
                // The answer first, then what the command has to tell.
                if seq != 0 {
                    self.send(frame::answer(&obj, &cmd, seq, &outcome)).await?;
                }
                for event in events {
                    self.send(event).await?;
                }
                if self.state.logout {
                    return Err(Some(Ending {
                        code: CLOSE_NORMAL,
                        reason: "logged out",
                    }));
                }
                return Ok(());
            }
            outcome
        };
        // Errors are answered even with `seq` 0: the client learns what went wrong.
        self.send(frame::answer(&obj, &cmd, seq, &result)).await
    }

    async fn on_delivery(&mut self, delivery: Delivery) -> Step {
        match delivery {
            Delivery::Event { event, .. } => {
                for text in self.render_event(&event).await {
                    self.send(text).await?;
                }
                Ok(())
            }
            // Nobody forwards commands to this door's sessions (External API `session
            // cmd` is for its own): the request is dropped, its caller told it ended.
            Delivery::Request(_) => Ok(()),
            Delivery::Stop { code, reason } => {
                tracing::info!(%reason, "conference session stopped");
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

    /// The frames an event of one of the connection's conferences becomes.
    async fn render_event(&mut self, event: &Event) -> Vec<String> {
        if event.class != "media" || event.subclass.as_deref() != Some("conf") {
            return Vec::new();
        }
        let Some(public_id) = event.obj_id.as_deref() else {
            return Vec::new();
        };
        let Some(group) = self
            .state
            .joined
            .iter()
            .find(|(_, j)| j.public_id == public_id)
            .map(|(g, _)| *g)
        else {
            return Vec::new();
        };
        let cluster = self.door.settings.cluster_id;
        let changed = |field: &'static str, parties: Vec<Value>| {
            frame::event(
                "conf",
                "changed",
                None,
                render::changed(cluster, group.0, [(field, Value::from(parties))]),
            )
        };
        let kind = event.kind.as_deref().unwrap_or("");
        match (kind, &event.body) {
            ("started_member", EventBody::Member(m)) => {
                let Some(joined) = self.state.joined.get_mut(&group) else {
                    return Vec::new();
                };
                if joined.parties.contains_key(&m.party) {
                    return Vec::new();
                }
                joined.parties.insert(m.party, RoomMember::clone(m));
                vec![changed("addParties", vec![render::party(m)])]
            }
            ("stopped_member", EventBody::Member(m)) => {
                let Some(joined) = self.state.joined.get_mut(&group) else {
                    return Vec::new();
                };
                let Some(was) = joined.parties.remove(&m.party) else {
                    return Vec::new();
                };
                let own = joined.party == m.party;
                let mut frames = vec![changed("delParties", vec![render::party(m)])];
                if was.state.media {
                    // It left with its media up: the media ended with it (the endpoint's
                    // own end comes after the party is gone, and changes nobody then).
                    let result = json!({"ClusterID": cluster, "ID": group.0, "PartyID": m.party});
                    frames.push(frame::event("conf", "webrtc", Some("Disconnected"), result));
                }
                if own {
                    // Kicked: this connection is out of the conference.
                    self.forget(group).await;
                }
                frames
            }
            ("updated_member" | "media_ended", EventBody::Member(m)) => {
                let Some(joined) = self.state.joined.get_mut(&group) else {
                    return Vec::new();
                };
                if joined.party == m.party && !m.state.media {
                    joined.media = false;
                }
                joined.parties.insert(m.party, RoomMember::clone(m));
                let mut frames = vec![changed("updParties", vec![render::party(m)])];
                if kind == "media_ended" {
                    let result = json!({"ClusterID": cluster, "ID": group.0, "PartyID": m.party});
                    frames.push(frame::event("conf", "webrtc", Some("Disconnected"), result));
                }
                frames
            }
            ("msglog_new_msg", EventBody::Message(message)) => {
                let username = self
                    .state
                    .joined
                    .get(&group)
                    .and_then(|j| j.parties.values().find(|p| p.uin == message.sender))
                    .map_or_else(|| message.sender_login.clone(), |p| p.name.clone());
                let result = render::instantmsg(cluster, message, &username);
                vec![frame::event("conf", "instantmsg", None, result)]
            }
            ("destroyed", _) => {
                let Some(joined) = self.state.joined.get(&group) else {
                    return Vec::new();
                };
                let parties: Vec<Value> = joined.parties.values().map(render::party).collect();
                let confdata = json!({"ID": group.0, "state": render::CONF_ENDED, "parties": 0});
                let result = render::changed(
                    cluster,
                    group.0,
                    [("confdata", confdata), ("delParties", Value::from(parties))],
                );
                self.forget(group).await;
                vec![frame::event("conf", "changed", None, result)]
            }
            _ => Vec::new(),
        }
    }

    /// The connection is out of a conference (kicked, or it ended): its media closes.
    async fn forget(&mut self, group: GroupId) {
        if let Some(joined) = self.state.joined.remove(&group) {
            close_party_media(self.door.media.clone(), group, &joined).await;
        }
    }

    /// The connection ends: every media session it opened closes.
    async fn close_media(&mut self) {
        let joined = std::mem::take(&mut self.state.joined);
        for (group, j) in &joined {
            close_party_media(self.door.media.clone(), *group, j).await;
        }
    }
}

async fn close_party_media(
    media: Option<Arc<dyn confer_core::media::MediaEndpoint>>,
    group: GroupId,
    joined: &Joined,
) {
    if let (true, Some(media)) = (joined.media, media) {
        let key = PartyKey {
            conference: group,
            party: joined.party,
        };
        media.close(key).await;
    }
}
