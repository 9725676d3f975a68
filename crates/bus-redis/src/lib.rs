//! # confer-bus-redis: several nodes as one server, over Redis
//!
//! Each node keeps its own sessions and subscriptions in the local pair (`confer-bus`);
//! [`RedisBus`] and [`RedisRegistry`] wrap them and carry across nodes, over Redis
//! pub/sub, what must reach sessions wherever they live:
//! - `EventBus::publish`: every other node publishes the event to its own subscribers
//!   (External API subscriptions, conference events);
//! - `SessionRegistry::deliver_to_users` (chat pushes: messages, groups, presence,
//!   typing, signalling): every other node delivers to its own sessions of those users;
//! - `EventBus::revoke`: a right that ended takes its subscriptions away on every node;
//! - the session directory (`directory.rs`): which node holds which session, with the
//!   user index, so `session`, user lists, `user get` and presence see every node's
//!   sessions; `deliver` to a session of another node (`session stop`, `send_event`'s
//!   target check, `session cmd`) is sent to that node's own channel, and a forwarded
//!   command's answer comes back on the asking node's channel under its request id
//!   (waiting bounded by the core's `forward_timeout`, at most [`MAX_PENDING`] at once);
//! - heartbeats: each node renews `<prefix>:alive:<node>` (expiring after `node_timeout`)
//!   and says `beat` on the cluster channel every third of it; a node silent for
//!   `node_timeout` is dead, its sessions leave the directory and the live node with the
//!   lowest id hands them to its core to close (`SessionRegistry::orphans`);
//! - typing: each node keeps its live typing entries in `<prefix>:typing:<node>` (one
//!   write when an entry starts or ends, none per renewal), and the dead node's closer
//!   hands them to its core with its sessions (`SessionRegistry::orphan_typing`), which
//!   says "stopped typing" for each: the dead node's timers died with it.
//!
//! One cluster channel (`<prefix>:bus`) for what every node hears, one per node
//! (`<prefix>:node:<node>`) for what is addressed to it, every key and channel under the
//! cluster's prefix (`redis_prefix`, [`DEFAULT_PREFIX`]); a node skips what it sent itself
//! (`from` is its `node_id`). Conference rooms are shared the same way as sessions
//! (`directory.rs`): a room's members are every node's parties, and party ids are unique
//! across nodes (`party_id`: this start's number in the high bits).
//!
//! Live calls and their ringing timers are kept in Redis too ([`calls::RedisCalls`], the
//! core's `CallState`), so a call rings, connects and times out across nodes.
//!
//! Who is online too ([`online::RedisOnline`], the core's `OnlineState`): each user's
//! first chat session and its last are decided once for the cluster, not from a node's
//! copy of the directory, which comes a little late.
//!
//! Conference media too ([`media::ClusterMedia`], the core's `MediaEndpoint` wrapping the
//! node's SFU): one node hosts each conference's media, the first to open it; parties on
//! other nodes are opened there over Redis, and their media goes straight to it.
//!
//! Three threads per node, blocking, so nothing here needs the caller's runtime: the
//! subscriber (subscribed before [`start`] returns, so nothing published after it is
//! missed), the publisher, fed by a queue bounded in items and bytes (what does not fit
//! is dropped and counted, never waited for: a publishing core never blocks on Redis),
//! and the heartbeat, which also sweeps dead nodes. (The presence count and the media
//! relay have threads of their own: `online.rs`, `media.rs`.)

mod blocking;
pub mod calls;
mod codec;
mod directory;
pub mod media;
pub mod online;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use confer_bus::{LocalBus, LocalRegistry};
use confer_core::bus::{
    Delivery, EventBus, ForwardedRequest, Mailbox, PushError, RemoteError, RoomMember, SessionInfo,
    SessionRegistry, TypingEntry,
};
use confer_core::event::{Event, Grant, Json, Subscription};
use confer_core::metrics::Metrics;
use confer_core::service::CHAT_DOOR;
use confer_core::{GroupId, SessionId, Uin};
use redis::Commands;
use serde_json::{json, Value};
use tokio::sync::oneshot;

use directory::Directory;

/// The default prefix of every key and channel (`redis_prefix`).
pub const DEFAULT_PREFIX: &str = "confer";
/// Forwarded commands (`session cmd`) this node waits for answers to, at most; more are
/// refused as unavailable.
pub const MAX_PENDING: usize = 4096;

/// How long the subscriber waits for a message before it looks whether to stop.
const POLL: Duration = Duration::from_millis(500);

/// The names of a cluster's keys and channels, all under its prefix, so that several
/// clusters (or test runs) can share one Redis.
#[derive(Clone, Debug)]
pub(crate) struct Names {
    prefix: String,
}

impl Names {
    /// The names under `prefix` ([`DEFAULT_PREFIX`] when it is empty).
    pub(crate) fn new(prefix: &str) -> Names {
        Names {
            prefix: if prefix.is_empty() {
                DEFAULT_PREFIX.to_string()
            } else {
                prefix.to_string()
            },
        }
    }

    /// A key of another part of this crate (`calls.rs`), under the same prefix.
    pub(crate) fn key(&self, rest: &str) -> String {
        format!("{}:{rest}", self.prefix)
    }

    /// The pub/sub channel every node of the cluster hears.
    fn channel(&self) -> String {
        format!("{}:bus", self.prefix)
    }

    /// The set of node ids that joined (a dead one is taken out by its closer).
    fn nodes(&self) -> String {
        format!("{}:nodes", self.prefix)
    }

    /// What is addressed to one node.
    fn node_channel(&self, node: &str) -> String {
        format!("{}:node:{node}", self.prefix)
    }

    /// How many node starts the cluster has seen (each start's number).
    fn starts(&self) -> String {
        format!("{}:starts", self.prefix)
    }

    /// The key whose expiry says a node died.
    pub(crate) fn alive(&self, node: &str) -> String {
        format!("{}:alive:{node}", self.prefix)
    }

    /// A user's chat sessions as presence counts them (`online.rs`), session id → node.
    pub(crate) fn online(&self, uin: Uin) -> String {
        format!("{}:online:{uin}", self.prefix)
    }

    /// A node's sessions, session id → entry (`codec::session_info`).
    fn sessions(&self, node: &str) -> String {
        format!("{}:sessions:{node}", self.prefix)
    }

    /// A node's live typing entries, `<typer>:<group>` → the receiver's uin (empty: the
    /// group's other members).
    fn typing(&self, node: &str) -> String {
        format!("{}:typing:{node}", self.prefix)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RedisBusError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis subscriber: {0}")]
    Subscriber(String),
    #[error("redis presence thread: {0}")]
    Thread(String),
}

/// How a node joins the others.
#[derive(Clone, Debug)]
pub struct RedisOptions {
    /// `redis://host:port/`.
    pub url: String,
    /// This node's name, unique in the cluster.
    pub node_id: String,
    /// The prefix of the cluster's keys and channels ([`DEFAULT_PREFIX`]): the nodes of
    /// one cluster share it; clusters sharing one Redis each need their own.
    pub prefix: String,
    /// Frames waiting for the publisher, at most.
    pub queue: usize,
    /// Bytes of frames waiting for the publisher, at most.
    pub queue_bytes: usize,
    /// A node not heard from for this long is dead (its sessions expire).
    pub node_timeout: Duration,
    /// How long this node waits for its client's answer to a command forwarded from
    /// another node before saying the session is gone.
    pub request_timeout: Duration,
    /// Where frames dropped on the way to other nodes are counted (`/metrics`).
    pub metrics: Arc<Metrics>,
}

/// One thing for the publisher to do.
enum Out {
    Publish {
        channel: String,
        frame: Vec<u8>,
    },
    SetSession {
        node: String,
        id: String,
        entry: Vec<u8>,
    },
    DelSession {
        node: String,
        id: String,
    },
    /// This node's typing entry (`Names::typing`).
    SetTyping {
        key: String,
        field: String,
        receiver: String,
    },
    DelTyping {
        key: String,
        field: String,
    },
}

impl Out {
    fn bytes(&self) -> usize {
        match self {
            Out::Publish { channel, frame } => channel.len() + frame.len(),
            Out::SetSession { node, id, entry } => node.len() + id.len() + entry.len(),
            Out::DelSession { node, id } => node.len() + id.len(),
            Out::SetTyping {
                key,
                field,
                receiver,
            } => key.len() + field.len() + receiver.len(),
            Out::DelTyping { key, field } => key.len() + field.len(),
        }
    }
}

type Answer = oneshot::Sender<Result<Option<Json>, RemoteError>>;

/// What the wrappers and the threads share.
struct Shared {
    node_id: String,
    /// This start's number in the cluster (`INCR <prefix>:starts`, 20 bits): the high
    /// half of the party ids this node hands out, so they are unique across nodes.
    node_number: u64,
    names: Names,
    tx: SyncSender<Out>,
    queued_bytes: Arc<AtomicUsize>,
    max_bytes: usize,
    dropped: AtomicU64,
    metrics: Arc<Metrics>,
    stop: Arc<AtomicBool>,
    bus: Arc<LocalBus>,
    local: Arc<LocalRegistry>,
    directory: Directory,
    /// Commands forwarded to sessions of other nodes, by request id, waiting for answers.
    pending: Mutex<HashMap<u64, Answer>>,
    next_request: AtomicU64,
    /// Sessions of dead nodes for this node's core to close.
    orphans: Mutex<Vec<SessionInfo>>,
    /// Typing entries of dead nodes for this node's core to say "stopped" for.
    orphan_typing: Mutex<Vec<TypingEntry>>,
    /// Where a command forwarded from another node waits for its client's answer.
    runtime: Option<tokio::runtime::Handle>,
    request_timeout: Duration,
}

impl Shared {
    fn enqueue(&self, out: Out) {
        let len = out.bytes();
        if self.queued_bytes.fetch_add(len, Ordering::AcqRel) + len > self.max_bytes {
            self.queued_bytes.fetch_sub(len, Ordering::AcqRel);
            self.drop_one();
            return;
        }
        match self.tx.try_send(out) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.queued_bytes.fetch_sub(len, Ordering::AcqRel);
                self.drop_one();
            }
        }
    }

    fn publish(&self, channel: String, op: &str, mut frame: Value) {
        frame["from"] = self.node_id.as_str().into();
        frame["op"] = op.into();
        let frame = frame.to_string().into_bytes();
        self.enqueue(Out::Publish { channel, frame });
    }

    /// To every node.
    fn send(&self, op: &str, frame: Value) {
        self.publish(self.names.channel(), op, frame);
    }

    /// To one node.
    fn send_to(&self, node: &str, op: &str, frame: Value) {
        self.publish(self.names.node_channel(node), op, frame);
    }

    fn drop_one(&self) {
        self.metrics.cluster_frames_dropped(1);
        if self.dropped.fetch_add(1, Ordering::Relaxed) == 0 {
            tracing::warn!("the Redis publish queue is full; frames to other nodes are dropped");
        }
    }

    /// Tell the others about a session of this node, and write it to the directory.
    fn announce(&self, info: &SessionInfo) {
        let entry = codec::session_info(info);
        self.enqueue(Out::SetSession {
            node: self.node_id.clone(),
            id: info.session_id.to_string(),
            entry: entry.to_string().into_bytes(),
        });
        self.send("up", json!({ "session": entry }));
    }

    /// Queue a delivery for a session another node holds.
    fn deliver_remote(
        &self,
        node: &str,
        session: &SessionId,
        delivery: Delivery,
    ) -> Result<(), PushError> {
        match delivery {
            Delivery::Stop { code, reason } => self.send_to(
                node,
                "stop",
                json!({"session": session.as_str(), "code": code, "reason": reason}),
            ),
            Delivery::Event { event, merge } => self.send_to(
                node,
                "deliver",
                json!({
                    "session": session.as_str(),
                    "event": codec::event(&event),
                    "merge": merge.iter().map(|j| j.as_str()).collect::<Vec<&str>>(),
                }),
            ),
            Delivery::Request(request) => {
                let ForwardedRequest {
                    class,
                    subclass,
                    cmd,
                    data,
                    reply,
                } = *request;
                let id = self.next_request.fetch_add(1, Ordering::Relaxed);
                {
                    let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                    if pending.len() >= MAX_PENDING {
                        // Those whose caller stopped waiting (timed out) go first.
                        pending.retain(|_, answer| !answer.is_closed());
                    }
                    if pending.len() >= MAX_PENDING {
                        return Err(PushError::Full);
                    }
                    pending.insert(id, reply);
                }
                self.send_to(
                    node,
                    "request",
                    json!({
                        "id": id, "session": session.as_str(), "class": class,
                        "subclass": subclass, "cmd": cmd,
                        "data": data.as_ref().map(|j| j.as_str()),
                    }),
                );
            }
        }
        Ok(())
    }

    /// A command another node forwards to a session of this one: deliver it, and send
    /// the client's answer (or "gone") back to the asking node.
    fn serve_request(self: &Arc<Self>, from: &str, frame: &Value) -> Option<()> {
        let id = frame["id"].as_u64()?;
        let session = SessionId::new(frame["session"].as_str()?);
        let (reply, answer) = oneshot::channel();
        let request = ForwardedRequest {
            class: frame["class"].as_str()?.to_string(),
            subclass: frame["subclass"].as_str().map(str::to_string),
            cmd: frame["cmd"].as_str()?.to_string(),
            data: frame["data"].as_str().map(Json::from_validated),
            reply,
        };
        let gone = json!({"id": id, "gone": true});
        let Some(runtime) = &self.runtime else {
            self.send_to(from, "reply", gone);
            return Some(());
        };
        if self
            .local
            .deliver(&session, Delivery::Request(Box::new(request)))
            .is_err()
        {
            self.send_to(from, "reply", gone);
            return Some(());
        }
        let (shared, to, timeout) = (self.clone(), from.to_string(), self.request_timeout);
        runtime.spawn(async move {
            let body = match tokio::time::timeout(timeout, answer).await {
                Ok(Ok(Ok(data))) => json!({"id": id, "ok": data.as_ref().map(|j| j.as_str())}),
                Ok(Ok(Err(e))) => json!({"id": id, "error": {"code": e.code, "error": e.error}}),
                _ => gone,
            };
            shared.send_to(&to, "reply", body);
        });
        Some(())
    }

    /// The answer to a command this node forwarded.
    fn take_reply(&self, frame: &Value) -> Option<()> {
        let id = frame["id"].as_u64()?;
        let answer = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id)?;
        let result = if let Some(e) = frame.get("error") {
            Err(RemoteError {
                code: e["code"].as_u64()?,
                error: e["error"].as_str()?.to_string(),
            })
        } else if frame.get("gone").is_some() {
            // Dropping the sender says the session is gone.
            return Some(());
        } else {
            Ok(frame["ok"].as_str().map(Json::from_validated))
        };
        let _ = answer.send(result);
        Some(())
    }

    /// Act on one frame from another node; a frame that does not parse is dropped.
    fn apply(self: &Arc<Self>, payload: &[u8]) {
        let Ok(frame) = serde_json::from_slice::<Value>(payload) else {
            tracing::warn!("a frame from Redis that is not JSON was dropped");
            return;
        };
        let Some(from) = frame["from"].as_str() else {
            return;
        };
        if from == self.node_id {
            return;
        }
        self.directory.heard(from);
        let session = || frame["session"].as_str().map(SessionId::new);
        let applied = match frame["op"].as_str() {
            Some("event") => codec::event_from(&frame["event"]).map(|event| {
                self.bus.publish(event);
            }),
            Some("push") => (|| {
                let event = Arc::new(codec::event_from(&frame["event"])?);
                let door = frame["door"].as_str()?;
                let uins: Vec<Uin> = frame["uins"]
                    .as_array()?
                    .iter()
                    .map(|u| u.as_u64().map(Uin))
                    .collect::<Option<_>>()?;
                let merge = merges(&frame["merge"])?;
                let make = || Delivery::Event {
                    event: event.clone(),
                    merge: merge.clone(),
                };
                self.local
                    .deliver_to_users(&mut uins.into_iter(), door, &make);
                Some(())
            })(),
            Some("revoke") => codec::grant_from(&frame["grant"]).map(|grant| {
                self.bus.revoke(&grant);
            }),
            Some("beat") => Some(()),
            Some("hello") => {
                self.directory.reset(from);
                Some(())
            }
            Some("up") => codec::session_info_from(&frame["session"]).map(|info| {
                self.directory.up(from, info);
            }),
            Some("down") => session().map(|id| {
                self.directory.down(&id);
            }),
            Some("stop") => (|| {
                let stop = Delivery::Stop {
                    code: frame["code"].as_u64()?,
                    reason: frame["reason"].as_str()?.to_string(),
                };
                let _ = self.local.deliver(&session()?, stop);
                Some(())
            })(),
            Some("deliver") => (|| {
                let event = Delivery::Event {
                    event: Arc::new(codec::event_from(&frame["event"])?),
                    merge: merges(&frame["merge"])?,
                };
                let _ = self.local.deliver(&session()?, event);
                Some(())
            })(),
            Some("joined") => (|| {
                let member = codec::member_from(&frame["member"])?;
                self.directory
                    .joined(from, GroupId(frame["room"].as_u64()?), member);
                Some(())
            })(),
            Some("left") => (|| {
                let (room, session) = (GroupId(frame["room"].as_u64()?), session()?);
                // Ours when another node let one of our parties go (a kick).
                self.local.leave_room(room, &session);
                self.directory.left(room, &session);
                Some(())
            })(),
            Some("party") => (|| {
                let room = GroupId(frame["room"].as_u64()?);
                let member = codec::member_from(&frame["member"])?;
                let state = member.state;
                // Ours when another node changed one of our parties.
                self.local
                    .update_party(room, member.party, &mut |s| *s = state);
                self.directory.set_party(room, member);
                Some(())
            })(),
            Some("cleared") => frame["room"].as_u64().map(|room| {
                self.local.clear_room(GroupId(room));
                self.directory.clear_room(GroupId(room));
            }),
            Some("request") => self.serve_request(from, &frame),
            Some("reply") => {
                // An answer nobody waits for any more (timed out) is no error.
                let _ = self.take_reply(&frame);
                Some(())
            }
            _ => None,
        };
        if applied.is_none() {
            tracing::warn!(op = ?frame["op"], "a frame from Redis that does not parse was dropped");
        }
    }
}

/// Empty a list the heartbeat fills for the core.
fn take<T>(list: &Mutex<Vec<T>>) -> Vec<T> {
    std::mem::take(&mut *list.lock().unwrap_or_else(|e| e.into_inner()))
}

fn merges(v: &Value) -> Option<Vec<Json>> {
    v.as_array()?
        .iter()
        .map(|j| j.as_str().map(Json::from_validated))
        .collect()
}

/// Held by the two wrappers: when both are gone, the threads stop.
struct Guard(Arc<Shared>);

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.stop.store(true, Ordering::Release);
    }
}

/// Join the cluster: connect, subscribe, read the directory, and start the publisher and
/// the heartbeat. Fails when Redis cannot be reached now (a node that starts without its
/// bus would be silently alone).
pub fn start(
    options: RedisOptions,
    local_bus: Arc<LocalBus>,
    local_registry: Arc<LocalRegistry>,
) -> Result<(RedisBus, RedisRegistry), RedisBusError> {
    let client = redis::Client::open(options.url.as_str())?;
    let mut conn = client.get_connection()?;
    let me = options.node_id.clone();
    let names = Names::new(&options.prefix);
    let timeout = options.node_timeout.max(Duration::from_millis(300));
    let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);

    // Sessions this node held in an earlier life (same node id) are its own to close.
    let stale: HashMap<String, String> = conn.hgetall(names.sessions(&me))?;
    let () = conn.del(names.sessions(&me))?;
    let stale_typing = take_typing(&mut conn, &names, &me)?;
    let () = conn.sadd(names.nodes(), &me)?;
    let () = redis::cmd("SET")
        .arg(names.alive(&me))
        .arg(1)
        .arg("PX")
        .arg(timeout_ms)
        .query(&mut conn)?;

    let starts: u64 = conn.incr(names.starts(), 1)?;
    let node_number = starts & 0xF_FFFF;
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = sync_channel::<Out>(options.queue.max(1));
    let queued_bytes = Arc::new(AtomicUsize::new(0));
    let shared = Arc::new(Shared {
        node_id: me.clone(),
        node_number,
        names: names.clone(),
        tx,
        queued_bytes: queued_bytes.clone(),
        max_bytes: options.queue_bytes.max(1),
        dropped: AtomicU64::new(0),
        metrics: options.metrics.clone(),
        stop: stop.clone(),
        bus: local_bus.clone(),
        local: local_registry.clone(),
        directory: Directory::new(me.clone(), timeout),
        pending: Mutex::new(HashMap::new()),
        next_request: AtomicU64::new(1),
        orphans: Mutex::new(
            stale
                .values()
                .filter_map(|v| serde_json::from_str::<Value>(v).ok())
                .filter_map(|v| codec::session_info_from(&v))
                .collect(),
        ),
        orphan_typing: Mutex::new(stale_typing),
        runtime: tokio::runtime::Handle::try_current().ok(),
        request_timeout: options.request_timeout,
    });

    // The publisher: one connection, what is waiting sent in one pipeline.
    let (publisher, publisher_names) = (client.clone(), names.clone());
    let publisher_metrics = options.metrics.clone();
    std::thread::Builder::new()
        .name("confer-redis-pub".into())
        .spawn(move || {
            publish_loop(
                publisher,
                publisher_names,
                rx,
                queued_bytes,
                publisher_metrics,
            )
        })
        .map_err(|e| RedisBusError::Subscriber(e.to_string()))?;

    // The subscriber: subscribed before we go on.
    let (ready_tx, ready_rx) = sync_channel::<Result<(), String>>(1);
    let (subscriber, sub_shared) = (client.clone(), shared.clone());
    std::thread::Builder::new()
        .name("confer-redis-sub".into())
        .spawn(move || subscribe_loop(subscriber, sub_shared, ready_tx))
        .map_err(|e| RedisBusError::Subscriber(e.to_string()))?;
    match ready_rx.recv_timeout(Duration::from_secs(10)) {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(RedisBusError::Subscriber(e)),
        Err(_) => return Err(RedisBusError::Subscriber("no answer from Redis".into())),
    }

    // The other nodes' sessions, as the directory holds them now.
    let nodes: Vec<String> = conn.smembers(names.nodes())?;
    for node in nodes.iter().filter(|n| **n != me) {
        let alive: bool = conn.exists(names.alive(node))?;
        if alive {
            shared.directory.heard(node);
        } else {
            shared.directory.known_dead(node);
        }
        let entries: HashMap<String, String> = conn.hgetall(names.sessions(node))?;
        for v in entries.values() {
            if let Some(info) = serde_json::from_str::<Value>(v)
                .ok()
                .and_then(|v| codec::session_info_from(&v))
            {
                shared.directory.up(node, info);
            }
        }
    }
    // Whatever the others kept of this node's earlier life goes.
    shared.send("hello", json!({}));

    let beating = shared.clone();
    std::thread::Builder::new()
        .name("confer-redis-beat".into())
        .spawn(move || heartbeat_loop(client, beating, timeout))
        .map_err(|e| RedisBusError::Subscriber(e.to_string()))?;

    let guard = Arc::new(Guard(shared));
    Ok((
        RedisBus {
            local: local_bus,
            guard: guard.clone(),
        },
        RedisRegistry {
            local: local_registry,
            guard,
        },
    ))
}

/// Read and delete a node's typing entries (`Names::typing`); an entry that does not parse
/// is skipped.
fn take_typing(
    conn: &mut redis::Connection,
    names: &Names,
    node: &str,
) -> redis::RedisResult<Vec<TypingEntry>> {
    let (entries, ()): (HashMap<String, String>, ()) = redis::pipe()
        .atomic()
        .hgetall(names.typing(node))
        .del(names.typing(node))
        .query(conn)?;
    Ok(entries
        .iter()
        .filter_map(|(field, receiver)| {
            let (who, group) = field.split_once(':')?;
            Some(TypingEntry {
                who: Uin(who.parse().ok()?),
                group: GroupId(group.parse().ok()?),
                receiver: match receiver.as_str() {
                    "" => None,
                    r => Some(Uin(r.parse().ok()?)),
                },
            })
        })
        .collect())
}

fn publish_loop(
    client: redis::Client,
    names: Names,
    rx: Receiver<Out>,
    queued: Arc<AtomicUsize>,
    metrics: Arc<Metrics>,
) {
    let mut conn: Option<redis::Connection> = None;
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < 256 {
            match rx.try_recv() {
                Ok(out) => batch.push(out),
                Err(_) => break,
            }
        }
        let bytes: usize = batch.iter().map(Out::bytes).sum();
        queued.fetch_sub(bytes, Ordering::AcqRel);
        if conn.is_none() {
            conn = client.get_connection().ok();
        }
        let Some(c) = conn.as_mut() else {
            tracing::warn!(frames = batch.len(), "Redis unreachable; frames dropped");
            metrics.cluster_frames_dropped(batch.len() as u64);
            continue;
        };
        let mut pipe = redis::pipe();
        for out in &batch {
            match out {
                Out::Publish { channel, frame } => {
                    pipe.cmd("PUBLISH")
                        .arg(channel)
                        .arg(frame.as_slice())
                        .ignore();
                }
                Out::SetSession { node, id, entry } => {
                    pipe.cmd("HSET")
                        .arg(names.sessions(node))
                        .arg(id)
                        .arg(entry.as_slice())
                        .ignore();
                }
                Out::DelSession { node, id } => {
                    pipe.cmd("HDEL").arg(names.sessions(node)).arg(id).ignore();
                }
                Out::SetTyping {
                    key,
                    field,
                    receiver,
                } => {
                    pipe.cmd("HSET").arg(key).arg(field).arg(receiver).ignore();
                }
                Out::DelTyping { key, field } => {
                    pipe.cmd("HDEL").arg(key).arg(field).ignore();
                }
            }
        }
        if let Err(e) = pipe.exec(c) {
            tracing::warn!(error = %e, frames = batch.len(), "publishing to Redis failed");
            metrics.cluster_frames_dropped(batch.len() as u64);
            conn = None;
        }
    }
}

fn subscribe_loop(
    client: redis::Client,
    shared: Arc<Shared>,
    ready: SyncSender<Result<(), String>>,
) {
    let channels = [
        shared.names.channel(),
        shared.names.node_channel(&shared.node_id),
    ];
    subscribe_until(
        &client,
        &channels,
        &shared.stop,
        ready,
        "Redis subscriber",
        |frame| shared.apply(frame),
    );
}

/// Subscribe to `channels` and hand every message's payload to `apply` until `stop` is
/// set, reconnecting (once a second) whenever the connection is lost. The first attempt's
/// outcome goes to `ready`: a node that cannot subscribe at start fails to start. Shared by
/// the bus's subscriber and the media layer's ([`media`]).
pub(crate) fn subscribe_until(
    client: &redis::Client,
    channels: &[String],
    stop: &AtomicBool,
    ready: SyncSender<Result<(), String>>,
    what: &str,
    mut apply: impl FnMut(&[u8]),
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
                tracing::warn!(error = %e, "{what} reconnecting");
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        };
        let mut pubsub = conn.as_pubsub();
        if let Err(e) = pubsub.subscribe(channels) {
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
                Ok(msg) => apply(msg.get_payload_bytes()),
                Err(e) if e.is_timeout() => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "{what} lost its connection");
                    break;
                }
            }
        }
    }
}

/// Every third of `timeout`: renew this node's liveness, say `beat`, and sweep the nodes
/// that fell silent. When this node's key had expired (Redis was out of reach, the others
/// took it for dead), it writes and announces its sessions again.
fn heartbeat_loop(client: redis::Client, shared: Arc<Shared>, timeout: Duration) {
    let every = timeout / 3;
    let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
    let me = shared.node_id.clone();
    let mut conn: Option<redis::Connection> = None;
    while !shared.stop.load(Ordering::Acquire) {
        if conn.is_none() {
            conn = client.get_connection().ok();
        }
        if let Some(c) = conn.as_mut() {
            // Was it still there, and renew it (one round trip; no `SET … GET`, which
            // older Redis lacks).
            let renewed: redis::RedisResult<(bool,)> = redis::pipe()
                .cmd("EXISTS")
                .arg(shared.names.alive(&me))
                .cmd("SET")
                .arg(shared.names.alive(&me))
                .arg(1)
                .arg("PX")
                .arg(timeout_ms)
                .ignore()
                .query(c);
            match renewed {
                Ok((true,)) => {}
                Ok((false,)) => {
                    tracing::warn!("this node was taken for dead; announcing its sessions again");
                    let _: redis::RedisResult<()> = c.sadd(shared.names.nodes(), &me);
                    shared.send("hello", json!({}));
                    let mut counted = redis::pipe();
                    for info in shared.local.all_sessions() {
                        shared.announce(&info);
                        if info.door == CHAT_DOOR {
                            // Its presence fields, which others may have removed (`online.rs`).
                            counted
                                .hset(shared.names.online(info.uin), info.session_id.as_str(), &me)
                                .ignore();
                        }
                    }
                    if let Err(e) = counted.query::<()>(c) {
                        tracing::warn!(error = %e, "this node's users are not counted online again");
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "heartbeat to Redis failed");
                    conn = None;
                }
            }
        }
        shared.send("beat", json!({}));

        let expired = shared.directory.expire();
        for node in &expired.nodes {
            tracing::warn!(node = %node, sessions = expired.sessions.len(), "a node stopped answering; its sessions expire");
        }
        if expired.closer && !expired.nodes.is_empty() {
            if let Some(c) = conn.as_mut() {
                let mut typing = Vec::new();
                for node in &expired.nodes {
                    match take_typing(c, &shared.names, node) {
                        Ok(entries) => typing.extend(entries),
                        Err(e) => {
                            tracing::warn!(error = %e, node = %node, "a dead node's typing is not stopped");
                        }
                    }
                    let _: redis::RedisResult<()> = c.del(shared.names.sessions(node));
                    let _: redis::RedisResult<()> = c.srem(shared.names.nodes(), node);
                }
                shared
                    .orphan_typing
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend(typing);
            }
            shared
                .orphans
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(expired.sessions);
        }

        let mut slept = Duration::ZERO;
        while slept < every && !shared.stop.load(Ordering::Acquire) {
            let step = (every - slept).min(Duration::from_millis(100));
            std::thread::sleep(step);
            slept += step;
        }
    }
}

/// The event bus of a node in a cluster: local subscriptions, events published to all.
pub struct RedisBus {
    local: Arc<LocalBus>,
    guard: Arc<Guard>,
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
        self.guard
            .0
            .send("revoke", json!({"grant": codec::grant(grant)}));
        self.local.revoke(grant)
    }

    fn publish(&self, event: Event) -> usize {
        self.guard
            .0
            .send("event", json!({"event": codec::event(&event)}));
        self.local.publish(event)
    }
}

/// The session registry of a node in a cluster: its own sessions in the local registry,
/// every node's in the directory; deliveries go to the node that holds the session.
pub struct RedisRegistry {
    local: Arc<LocalRegistry>,
    guard: Arc<Guard>,
}

impl RedisRegistry {
    fn shared(&self) -> &Shared {
        &self.guard.0
    }
}

impl SessionRegistry for RedisRegistry {
    fn register(&self, info: SessionInfo, mailbox: Mailbox) -> bool {
        // A session id another live node holds is taken too.
        if self.shared().directory.session(&info.session_id).is_some() {
            return false;
        }
        if !self.local.register(info.clone(), mailbox) {
            return false;
        }
        self.shared().announce(&info);
        true
    }

    fn unregister(&self, session: &SessionId) {
        let shared = self.shared();
        let node = if self.local.session(session).is_some() {
            self.local.unregister(session);
            shared.node_id.clone()
        } else if let Some((node, _)) = shared.directory.down(session) {
            // Closed here for a node that is gone, or a conflict across nodes.
            node
        } else {
            return;
        };
        shared.enqueue(Out::DelSession {
            node,
            id: session.to_string(),
        });
        shared.send("down", json!({"session": session.as_str()}));
    }

    fn session(&self, session: &SessionId) -> Option<SessionInfo> {
        self.local
            .session(session)
            .or_else(|| self.shared().directory.session(session).map(|(_, s)| s))
    }

    fn sessions_of_user(&self, user: &str) -> Vec<SessionInfo> {
        let mut all = self.local.sessions_of_user(user);
        all.extend(self.shared().directory.of_user(user));
        all
    }

    fn sessions_of_uin(&self, uin: Uin) -> Vec<SessionInfo> {
        let mut all = self.local.sessions_of_uin(uin);
        all.extend(self.shared().directory.of_uin(uin));
        all
    }

    fn all_sessions(&self) -> Vec<SessionInfo> {
        let mut all = self.local.all_sessions();
        all.extend(self.shared().directory.all());
        all
    }

    fn local_sessions(&self) -> Vec<SessionInfo> {
        self.local.all_sessions()
    }

    fn orphans(&self) -> Vec<SessionInfo> {
        take(&self.shared().orphans)
    }

    fn typing(&self, entry: TypingEntry, on: bool) {
        let shared = self.shared();
        let key = shared.names.typing(&shared.node_id);
        let field = format!("{}:{}", entry.who, entry.group);
        shared.enqueue(if on {
            let receiver = entry.receiver.map(|r| r.to_string()).unwrap_or_default();
            Out::SetTyping {
                key,
                field,
                receiver,
            }
        } else {
            Out::DelTyping { key, field }
        });
    }

    fn orphan_typing(&self) -> Vec<TypingEntry> {
        take(&self.shared().orphan_typing)
    }

    fn deliver(&self, session: &SessionId, delivery: Delivery) -> Result<(), PushError> {
        if self.local.session(session).is_some() {
            return self.local.deliver(session, delivery);
        }
        match self.shared().directory.session(session) {
            Some((node, _)) => self.shared().deliver_remote(&node, session, delivery),
            None => Err(PushError::Closed),
        }
    }

    fn deliver_to_users(
        &self,
        uins: &mut dyn Iterator<Item = Uin>,
        door: &str,
        make: &dyn Fn() -> Delivery,
    ) -> usize {
        let uins: Vec<Uin> = uins.collect();
        if let Delivery::Event { event, merge } = make() {
            self.shared().send(
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
        let frame = json!({"room": room.0, "member": codec::member(&member)});
        if !self.local.join_room(room, member) {
            return false;
        }
        self.shared().send("joined", frame);
        true
    }

    fn leave_room(&self, room: GroupId, session: &SessionId) -> Option<RoomMember> {
        let frame = json!({"room": room.0, "session": session.as_str()});
        let left = match self.local.leave_room(room, session) {
            Some(member) => Some(member),
            // Another node's party (kicked from here, or its node died): every node,
            // its own included, lets it go.
            None => self
                .shared()
                .directory
                .left(room, session)
                .map(|(_, member)| member),
        };
        if left.is_some() {
            self.shared().send("left", frame);
        }
        left
    }

    fn room_members(&self, room: GroupId) -> Vec<RoomMember> {
        let mut members = self.local.room_members(room);
        members.extend(self.shared().directory.members(room));
        members
    }

    fn update_party(
        &self,
        room: GroupId,
        party: u64,
        change: &mut dyn FnMut(&mut confer_core::bus::PartyState),
    ) -> Option<RoomMember> {
        let member = match self.local.update_party(room, party, change) {
            Some(member) => member,
            None => self.shared().directory.update_party(room, party, change)?.1,
        };
        self.shared().send(
            "party",
            json!({"room": room.0, "member": codec::member(&member)}),
        );
        Some(member)
    }

    fn rooms_of(&self, session: &SessionId) -> Vec<GroupId> {
        if self.local.session(session).is_some() {
            return self.local.rooms_of(session);
        }
        // A session of another node (one that died, being closed here): a scan of the
        // rooms, on this rare path only.
        self.shared().directory.rooms_of(session)
    }

    fn clear_room(&self, room: GroupId) -> Vec<RoomMember> {
        let mut members = self.local.clear_room(room);
        members.extend(self.shared().directory.clear_room(room));
        self.shared().send("cleared", json!({"room": room.0}));
        members
    }

    fn party_id(&self, local: u64) -> u64 {
        (self.shared().node_number << 32) | (local & 0xFFFF_FFFF)
    }
}
