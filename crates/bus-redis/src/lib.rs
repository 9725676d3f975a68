//! # confer-bus-redis: events and chat pushes across nodes, over Redis pub/sub
//!
//! The first part of the Redis pair (issue 20). Each node keeps its own sessions and
//! subscriptions in the local pair (`confer-bus`); [`RedisBus`] and [`RedisRegistry`]
//! wrap them and carry across nodes, on one channel ([`CHANNEL`]), what must reach
//! sessions wherever they live:
//! - `EventBus::publish`: every other node publishes the event to its own subscribers
//!   (External API subscriptions, conference events);
//! - `SessionRegistry::deliver_to_users` (chat pushes: messages, groups, typing,
//!   signalling): every other node delivers to its own sessions of those users;
//! - `EventBus::revoke`: a right that ended takes its subscriptions away on every node.
//!
//! Live calls and their ringing timers are kept in Redis too ([`calls::RedisCalls`], the
//! core's `CallState`), so a call rings, connects and times out across nodes.
//!
//! A node skips what it sent itself (`from` is its `node_id`). Session lookups
//! (`session`, user lists, presence, `session cmd`) and conference rooms are still each
//! node's own: the shared directory with heartbeats comes next.
//!
//! Two threads per node, blocking, so nothing here needs the caller's runtime: the
//! subscriber (subscribed before [`start`] returns, so nothing published after it is
//! missed) and the publisher, fed by a queue bounded in items and bytes; what does not fit
//! is dropped and counted, never waited for (a publishing core never blocks on Redis).

pub mod calls;
mod codec;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Duration;

use confer_bus::{LocalBus, LocalRegistry};
use confer_core::bus::{
    Delivery, EventBus, Mailbox, PushError, RoomMember, SessionInfo, SessionRegistry,
};
use confer_core::event::{Event, Grant, Subscription};
use confer_core::{GroupId, SessionId, Uin};
use serde_json::{json, Value};

/// The one pub/sub channel of a cluster.
pub const CHANNEL: &str = "confer:bus";

/// How long the subscriber waits for a message before it looks whether to stop.
const POLL: Duration = Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
pub enum RedisBusError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis subscriber: {0}")]
    Subscriber(String),
}

/// How a node joins the others.
#[derive(Clone, Debug)]
pub struct RedisOptions {
    /// `redis://host:port/`.
    pub url: String,
    /// This node's name, unique in the cluster.
    pub node_id: String,
    /// Frames waiting for the publisher, at most.
    pub queue: usize,
    /// Bytes of frames waiting for the publisher, at most.
    pub queue_bytes: usize,
}

/// What both wrappers share: the outgoing queue and this node's name.
struct Link {
    node_id: String,
    tx: SyncSender<Vec<u8>>,
    queued_bytes: Arc<AtomicUsize>,
    max_bytes: usize,
    dropped: AtomicU64,
    stop: Arc<AtomicBool>,
}

impl Link {
    fn send(&self, op: &str, mut frame: Value) {
        frame["from"] = self.node_id.as_str().into();
        frame["op"] = op.into();
        let bytes = frame.to_string().into_bytes();
        let len = bytes.len();
        if self.queued_bytes.fetch_add(len, Ordering::AcqRel) + len > self.max_bytes {
            self.queued_bytes.fetch_sub(len, Ordering::AcqRel);
            self.drop_one();
            return;
        }
        match self.tx.try_send(bytes) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.queued_bytes.fetch_sub(len, Ordering::AcqRel);
                self.drop_one();
            }
        }
    }

    fn drop_one(&self) {
        if self.dropped.fetch_add(1, Ordering::Relaxed) == 0 {
            tracing::warn!("the Redis publish queue is full; frames to other nodes are dropped");
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

/// Join the cluster: connect, subscribe, and start the publisher. Fails when Redis cannot
/// be reached now (a node that starts without its bus would be silently alone).
pub fn start(
    options: RedisOptions,
    local_bus: Arc<LocalBus>,
    local_registry: Arc<LocalRegistry>,
) -> Result<(RedisBus, RedisRegistry), RedisBusError> {
    let client = redis::Client::open(options.url.as_str())?;
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = sync_channel::<Vec<u8>>(options.queue.max(1));
    let queued_bytes = Arc::new(AtomicUsize::new(0));

    // The publisher: one connection, frames sent in pipelines of what is waiting.
    let publisher = client.clone();
    let counted = queued_bytes.clone();
    std::thread::Builder::new()
        .name("confer-redis-pub".into())
        .spawn(move || publish_loop(publisher, rx, counted))
        .map_err(|e| RedisBusError::Subscriber(e.to_string()))?;

    // The subscriber: subscribed before we return.
    let (ready_tx, ready_rx) = sync_channel::<Result<(), String>>(1);
    let node_id = options.node_id.clone();
    let stopping = stop.clone();
    let (bus, registry) = (local_bus.clone(), local_registry.clone());
    std::thread::Builder::new()
        .name("confer-redis-sub".into())
        .spawn(move || {
            subscribe_loop(client, node_id, stopping, bus, registry, ready_tx);
        })
        .map_err(|e| RedisBusError::Subscriber(e.to_string()))?;
    match ready_rx.recv_timeout(Duration::from_secs(10)) {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(RedisBusError::Subscriber(e)),
        Err(_) => return Err(RedisBusError::Subscriber("no answer from Redis".into())),
    }
    let link = Arc::new(Link {
        node_id: options.node_id,
        tx,
        queued_bytes,
        max_bytes: options.queue_bytes.max(1),
        dropped: AtomicU64::new(0),
        stop,
    });
    Ok((
        RedisBus {
            local: local_bus,
            link: link.clone(),
        },
        RedisRegistry {
            local: local_registry,
            link,
        },
    ))
}

fn publish_loop(client: redis::Client, rx: Receiver<Vec<u8>>, queued: Arc<AtomicUsize>) {
    let mut conn: Option<redis::Connection> = None;
    while let Ok(first) = rx.recv() {
        let mut frames = vec![first];
        while frames.len() < 256 {
            match rx.try_recv() {
                Ok(f) => frames.push(f),
                Err(_) => break,
            }
        }
        let bytes: usize = frames.iter().map(Vec::len).sum();
        queued.fetch_sub(bytes, Ordering::AcqRel);
        if conn.is_none() {
            conn = client.get_connection().ok();
        }
        let Some(c) = conn.as_mut() else {
            tracing::warn!(frames = frames.len(), "Redis unreachable; frames dropped");
            continue;
        };
        let mut pipe = redis::pipe();
        for f in &frames {
            pipe.cmd("PUBLISH").arg(CHANNEL).arg(f.as_slice()).ignore();
        }
        if let Err(e) = pipe.exec(c) {
            tracing::warn!(error = %e, frames = frames.len(), "publishing to Redis failed");
            conn = None;
        }
    }
}

fn subscribe_loop(
    client: redis::Client,
    node_id: String,
    stop: Arc<AtomicBool>,
    bus: Arc<LocalBus>,
    registry: Arc<LocalRegistry>,
    ready: SyncSender<Result<(), String>>,
) {
    let mut ready = Some(ready);
    while !stop.load(Ordering::Acquire) {
        let attempt = (|| -> redis::RedisResult<redis::Connection> {
            let conn = client.get_connection()?;
            conn.set_read_timeout(Some(POLL))?;
            Ok(conn)
        })();
        let mut conn = match attempt {
            Ok(conn) => conn,
            Err(e) => {
                if let Some(ready) = ready.take() {
                    let _ = ready.send(Err(e.to_string()));
                    return;
                }
                tracing::warn!(error = %e, "Redis subscriber reconnecting");
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        };
        let mut pubsub = conn.as_pubsub();
        if let Err(e) = pubsub.subscribe(CHANNEL) {
            if let Some(ready) = ready.take() {
                let _ = ready.send(Err(e.to_string()));
                return;
            }
            continue;
        }
        if let Some(ready) = ready.take() {
            let _ = ready.send(Ok(()));
        }
        while !stop.load(Ordering::Acquire) {
            match pubsub.get_message() {
                Ok(msg) => apply(msg.get_payload_bytes(), &node_id, &bus, &registry),
                Err(e) if e.is_timeout() => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "Redis subscriber lost its connection");
                    break;
                }
            }
        }
    }
}

/// Act on one frame from another node; a frame that does not parse is dropped.
fn apply(payload: &[u8], node_id: &str, bus: &LocalBus, registry: &LocalRegistry) {
    let Ok(frame) = serde_json::from_slice::<Value>(payload) else {
        tracing::warn!("a frame from Redis that is not JSON was dropped");
        return;
    };
    if frame["from"].as_str() == Some(node_id) {
        return;
    }
    let applied = match frame["op"].as_str() {
        Some("event") => codec::event_from(&frame["event"]).map(|event| {
            bus.publish(event);
        }),
        Some("push") => (|| {
            let event = Arc::new(codec::event_from(&frame["event"])?);
            let door = frame["door"].as_str()?;
            let uins: Vec<Uin> = frame["uins"]
                .as_array()?
                .iter()
                .map(|u| u.as_u64().map(Uin))
                .collect::<Option<_>>()?;
            let merge = frame["merge"]
                .as_array()?
                .iter()
                .map(|j| j.as_str().map(confer_core::event::Json::from_validated))
                .collect::<Option<Vec<_>>>()?;
            let make = || Delivery::Event {
                event: event.clone(),
                merge: merge.clone(),
            };
            registry.deliver_to_users(&mut uins.into_iter(), door, &make);
            Some(())
        })(),
        Some("revoke") => codec::grant_from(&frame["grant"]).map(|grant| {
            bus.revoke(&grant);
        }),
        _ => None,
    };
    if applied.is_none() {
        tracing::warn!(op = ?frame["op"], "a frame from Redis that does not parse was dropped");
    }
}

/// The event bus of a node in a cluster: local subscriptions, events published to all.
pub struct RedisBus {
    local: Arc<LocalBus>,
    link: Arc<Link>,
}

impl EventBus for RedisBus {
    fn subscribe(
        &self,
        session: &SessionId,
        subscription: Subscription,
        grant: Option<Grant>,
        max: usize,
    ) -> bool {
        self.local.subscribe(session, subscription, grant, max)
    }

    fn unsubscribe(&self, session: &SessionId, pattern: &Subscription) -> bool {
        self.local.unsubscribe(session, pattern)
    }

    fn subscriptions(&self, session: &SessionId) -> Vec<Subscription> {
        self.local.subscriptions(session)
    }

    fn drop_session(&self, session: &SessionId) {
        self.local.drop_session(session)
    }

    fn revoke(&self, grant: &Grant) -> usize {
        self.link
            .send("revoke", json!({"grant": codec::grant(grant)}));
        self.local.revoke(grant)
    }

    fn publish(&self, event: Event) -> usize {
        self.link
            .send("event", json!({"event": codec::event(&event)}));
        self.local.publish(event)
    }
}

/// The session registry of a node in a cluster: its own sessions, with chat pushes to
/// users carried to the other nodes' sessions of those users.
pub struct RedisRegistry {
    local: Arc<LocalRegistry>,
    link: Arc<Link>,
}

impl SessionRegistry for RedisRegistry {
    fn register(&self, info: SessionInfo, mailbox: Mailbox) -> bool {
        self.local.register(info, mailbox)
    }
    fn unregister(&self, session: &SessionId) {
        self.local.unregister(session)
    }
    fn session(&self, session: &SessionId) -> Option<SessionInfo> {
        self.local.session(session)
    }
    fn sessions_of_user(&self, user: &str) -> Vec<SessionInfo> {
        self.local.sessions_of_user(user)
    }
    fn sessions_of_uin(&self, uin: Uin) -> Vec<SessionInfo> {
        self.local.sessions_of_uin(uin)
    }
    fn all_sessions(&self) -> Vec<SessionInfo> {
        self.local.all_sessions()
    }
    fn deliver(&self, session: &SessionId, delivery: Delivery) -> Result<(), PushError> {
        self.local.deliver(session, delivery)
    }

    fn deliver_to_users(
        &self,
        uins: &mut dyn Iterator<Item = Uin>,
        door: &str,
        make: &dyn Fn() -> Delivery,
    ) -> usize {
        let uins: Vec<Uin> = uins.collect();
        if let Delivery::Event { event, merge } = make() {
            self.link.send(
                "push",
                json!({
                    "event": codec::event(&event),
                    "door": door,
                    "uins": uins.iter().map(|u| u.0).collect::<Vec<u64>>(),
                    "merge": merge.iter().map(|j| j.as_str()).collect::<Vec<&str>>(),
                }),
            );
        }
        self.local
            .deliver_to_users(&mut uins.into_iter(), door, make)
    }

    fn join_room(&self, room: GroupId, member: RoomMember) -> bool {
        self.local.join_room(room, member)
    }
    fn leave_room(&self, room: GroupId, session: &SessionId) -> Option<RoomMember> {
        self.local.leave_room(room, session)
    }
    fn room_members(&self, room: GroupId) -> Vec<RoomMember> {
        self.local.room_members(room)
    }
    fn update_party(
        &self,
        room: GroupId,
        party: u64,
        change: &mut dyn FnMut(&mut confer_core::bus::PartyState),
    ) -> Option<RoomMember> {
        self.local.update_party(room, party, change)
    }
    fn rooms_of(&self, session: &SessionId) -> Vec<GroupId> {
        self.local.rooms_of(session)
    }
    fn clear_room(&self, room: GroupId) -> Vec<RoomMember> {
        self.local.clear_room(room)
    }
}
