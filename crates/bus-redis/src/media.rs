//! Conference media across nodes: one media host per conference, over Redis.
//!
//! [`ClusterMedia`] is the core's `MediaEndpoint` for a node of a cluster. It wraps the
//! node's own endpoint (the SFU) and decides, per conference, which node's SFU carries
//! its media: **the first node to open media for a conference claims it**
//! (`<prefix>:media:host:<conference>` holds the host's node id, written only when absent
//! or when its holder's `<prefix>:alive:<node>` is gone, one Lua script), renewed every
//! third of `node_timeout` while the host has parties of it, released when it has none.
//! Every party of that conference, on whatever node its socket is, gets its endpoint on
//! the host: an open on another node is sent to the host's media channel
//! (`<prefix>:media:<node>`), the host opens it on its own SFU and sends the answer back,
//! so the answer's candidate is the host's media address and the client's UDP goes
//! straight there; only signalling crosses Redis. The host relays what its SFU says
//! about such a party (`MediaEvent`s) to the party's node, which hands them to its doors;
//! a close goes to the host the same way.
//!
//! **A node's doors hear the events of the parties whose sockets it holds, and only
//! those**, whichever SFU carries them. When a host dies (its alive key expires), the
//! nodes of its parties end them (`MediaEvent::Ended`, `Failed`) and the next open claims
//! the conference on a live node; when a party's node dies, the host closes its media.
//!
//! Each start of a node's media has a number of its own, its *life*
//! (`INCR <prefix>:media:lives`), kept in `<prefix>:media:life:<node>` (renewed with the
//! beat, expiring as the alive key does) and sent with every frame. A party remembers
//! the life of the host that answered it, a host the life of each served party's node:
//! **a node that restarted within `node_timeout` is dead to the media of its earlier
//! life**, which its new process no longer has. And **a host that finds its claim taken
//! ends its parties of that conference** (it was taken for dead while it stalled, and a
//! live node claimed the conference): their doors say so, their clients call again and
//! meet the others on the new host, rather than two hosts splitting one conference.
//!
//! Bounded: opens waiting for a host's answer ([`MAX_PENDING_OPENS`], each at most the
//! configured timeout), opens served for other nodes at once ([`MAX_SERVED_OPENS`]), and
//! frames waiting for the publisher in items and bytes (what does not fit is dropped and
//! counted, never waited for). Two blocking threads (the subscriber, the publisher), one
//! for the beat, and one task relaying the local SFU's events.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use confer_core::media::{
    MediaAnswer, MediaEndReason, MediaEndpoint, MediaError, MediaEvent, MediaOffer, MediaSlot,
    PartyKey,
};
use confer_core::metrics::Metrics;
use confer_core::{GroupId, Uin};
use serde_json::{json, Value};
use tokio::sync::{broadcast, oneshot, Semaphore};

use crate::{subscribe_until, Names, RedisBusError, DEFAULT_PREFIX};

/// Opens this node waits for another node's answer to, at most; more are refused as
/// unavailable.
pub const MAX_PENDING_OPENS: usize = 256;
/// Opens this node serves for other nodes at once; more are answered unavailable.
pub const MAX_SERVED_OPENS: usize = 64;
/// Frames waiting for the publisher, at most, and their bytes.
const QUEUE: usize = 4096;
const QUEUE_BYTES: usize = 16 << 20;
/// Media events a lagging door may fall behind (as the SFU's own broadcast).
const EVENT_CAPACITY: usize = 1024;

/// Claim a conference: ours when nobody holds it, we do, or its holder is dead.
/// KEYS[1] the claim; ARGV: our id, TTL in ms, the alive keys' prefix. Returns the host.
const CLAIM: &str = r"
local cur = redis.call('GET', KEYS[1])
if cur and cur ~= ARGV[1] and redis.call('EXISTS', ARGV[3] .. cur) == 1 then return cur end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return ARGV[1]
";
/// Renew our claim (or take it again when it lapsed); 0 when another node holds it.
const RENEW: &str = r"
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if not cur then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end
return 0
";
/// Let our claim go.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

/// How a node's media joins the cluster (the same `node_id` and prefix as its bus).
#[derive(Clone, Debug)]
pub struct ClusterMediaOptions {
    pub url: String,
    pub node_id: String,
    pub prefix: String,
    /// A host silent this long is dead (its claims expire after it too).
    pub node_timeout: Duration,
    /// How long an open waits for the host's answer (`media_forward_timeout_ms`).
    pub open_timeout: Duration,
    /// Where frames dropped on the way to other nodes are counted (`/metrics`).
    pub metrics: Arc<Metrics>,
}

/// A host's answer to a forwarded open, and the host's life.
type Pending = oneshot::Sender<(Result<MediaAnswer, MediaError>, u64)>;

/// Where one of this node's parties has its media: a host of another node.
struct Remote {
    host: String,
    /// The host's life that answered the open; 0 until its answer is in.
    life: u64,
    uin: Uin,
}

/// A party of another node whose media this node hosts.
struct Served {
    origin: String,
    /// The origin's life that sent the open.
    life: u64,
}

struct Inner {
    me: String,
    /// This start's number (see the module doc).
    life: u64,
    names: Names,
    local: Arc<dyn MediaEndpoint>,
    /// For claims, on the runtime's blocking threads.
    conn: Mutex<Option<redis::Connection>>,
    client: redis::Client,
    /// What this node's doors hear.
    events: broadcast::Sender<MediaEvent>,
    pending: Mutex<HashMap<u64, Pending>>,
    next_id: AtomicU64,
    /// This node's parties whose media another node hosts.
    remote: Mutex<HashMap<PartyKey, Remote>>,
    /// Parties of other nodes this node hosts.
    served: Mutex<HashMap<PartyKey, Served>>,
    /// Parties with media on this node's SFU, by conference (what the claims cover).
    hosted: Mutex<HashMap<GroupId, HashSet<u64>>>,
    /// Conferences whose last hosted party ended: their claims go at the next beat.
    releasing: Mutex<HashSet<GroupId>>,
    serving: Arc<Semaphore>,
    tx: SyncSender<(String, Vec<u8>)>,
    queued: AtomicUsize,
    dropped: AtomicU64,
    metrics: Arc<Metrics>,
    stop: AtomicBool,
    runtime: tokio::runtime::Handle,
    ttl: Duration,
    open_timeout: Duration,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Where a node's media keeps its life (see the module doc).
fn life_key(names: &Names, node: &str) -> String {
    format!("{}:media:life:{node}", names.prefix)
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl Inner {
    fn claim_key(&self, conference: GroupId) -> String {
        format!("{}:media:host:{}", self.names.prefix, conference.0)
    }

    fn channel(&self, node: &str) -> String {
        format!("{}:media:{node}", self.names.prefix)
    }

    fn alive_prefix(&self) -> String {
        self.names.alive("")
    }

    fn life_key(&self, node: &str) -> String {
        life_key(&self.names, node)
    }

    /// To one node's media channel; dropped (and counted) when the queue is full.
    fn send_to(&self, node: &str, op: &str, mut frame: Value) {
        frame["from"] = self.me.as_str().into();
        frame["life"] = self.life.into();
        frame["op"] = op.into();
        let frame = frame.to_string().into_bytes();
        let channel = self.channel(node);
        let len = frame.len() + channel.len();
        if self.queued.fetch_add(len, Ordering::AcqRel) + len > QUEUE_BYTES
            || self.tx.try_send((channel, frame)).is_err()
        {
            self.queued.fetch_sub(len, Ordering::AcqRel);
            self.metrics.cluster_frames_dropped(1);
            if self.dropped.fetch_add(1, Ordering::Relaxed) == 0 {
                tracing::warn!("the media frames queue to Redis is full; frames are dropped");
            }
        }
    }

    /// Which node hosts the conference's media, claiming it when free (one round trip).
    fn host_of(&self, conference: GroupId) -> Result<String, redis::RedisError> {
        let mut conn = lock(&self.conn);
        let mut c = match conn.take() {
            Some(c) => c,
            None => {
                let c = self.client.get_connection()?;
                // A Redis that stops answering fails the open instead of holding it.
                c.set_read_timeout(Some(self.open_timeout))?;
                c.set_write_timeout(Some(self.open_timeout))?;
                c
            }
        };
        let host = redis::cmd("EVAL")
            .arg(CLAIM)
            .arg(1)
            .arg(self.claim_key(conference))
            .arg(&self.me)
            .arg(ms(self.ttl))
            .arg(self.alive_prefix())
            .query::<String>(&mut c);
        // A connection that failed is dropped; the next claim connects again.
        if host.is_ok() {
            *conn = Some(c);
        }
        host
    }

    fn hosting(&self, key: PartyKey) {
        lock(&self.hosted)
            .entry(key.conference)
            .or_default()
            .insert(key.party);
        lock(&self.releasing).remove(&key.conference);
    }

    fn not_hosting(&self, key: PartyKey) {
        let mut hosted = lock(&self.hosted);
        if let Some(parties) = hosted.get_mut(&key.conference) {
            parties.remove(&key.party);
            if parties.is_empty() {
                hosted.remove(&key.conference);
                lock(&self.releasing).insert(key.conference);
            }
        }
    }

    /// An open another node sends for one of its parties: on our SFU, answered back.
    fn serve_open(self: &Arc<Self>, from: &str, frame: &Value) -> Option<()> {
        let id = frame["id"].as_u64()?;
        let life = frame["life"].as_u64()?;
        let key = key_from(frame)?;
        let uin = Uin(frame["uin"].as_u64()?);
        let offer = offer_from(&frame["offer"]);
        let Ok(permit) = self.serving.clone().try_acquire_owned() else {
            self.send_to(from, "answer", error_to(id, &MediaError::Unavailable));
            return Some(());
        };
        let (inner, from) = (self.clone(), from.to_string());
        self.runtime.spawn(async move {
            let _permit = permit;
            // Before the SFU can say anything about it, so its events go to its node.
            let served = Served {
                origin: from.clone(),
                life,
            };
            lock(&inner.served).insert(key, served);
            let reply = match inner.local.open(key, uin, offer).await {
                Ok(answer) => {
                    inner.hosting(key);
                    json!({"id": id, "ok": answer_to(&answer)})
                }
                Err(e) => {
                    lock(&inner.served).remove(&key);
                    error_to(id, &e)
                }
            };
            inner.send_to(&from, "answer", reply);
        });
        Some(())
    }

    fn take_answer(&self, frame: &Value) -> Option<()> {
        let id = frame["id"].as_u64()?;
        let life = frame["life"].as_u64()?;
        let result = if let Some(ok) = frame.get("ok") {
            Ok(answer_from(ok)?)
        } else {
            Err(match frame["error"].as_str()? {
                "bad_offer" => MediaError::BadOffer(frame["why"].as_str().unwrap_or("").into()),
                "full" => MediaError::Full,
                _ => MediaError::Unavailable,
            })
        };
        if let Some(waiting) = lock(&self.pending).remove(&id) {
            let _ = waiting.send((result, life));
        }
        Some(())
    }

    /// Act on one frame of our media channel; one that does not parse is dropped.
    fn apply(self: &Arc<Self>, payload: &[u8]) {
        let Ok(frame) = serde_json::from_slice::<Value>(payload) else {
            tracing::warn!("a media frame from Redis that is not JSON was dropped");
            return;
        };
        let Some(from) = frame["from"].as_str() else {
            return;
        };
        let applied = match frame["op"].as_str() {
            Some("open") => self.serve_open(from, &frame),
            Some("answer") => self.take_answer(&frame),
            Some("close") => key_from(&frame).map(|key| {
                if lock(&self.served)
                    .get(&key)
                    .is_some_and(|s| s.origin == from)
                {
                    let local = self.local.clone();
                    self.runtime.spawn(async move { local.close(key).await });
                }
            }),
            Some("event") => event_from(&frame["event"]).map(|event| {
                let key = event_key(&event);
                {
                    let mut remote = lock(&self.remote);
                    // Only the party's host now speaks for it: what an earlier host
                    // says (it closing the party that moved) is stale.
                    if remote.get(&key).is_none_or(|r| r.host != from) {
                        return;
                    }
                    if matches!(event, MediaEvent::Ended { .. }) {
                        remote.remove(&key);
                    }
                }
                let _ = self.events.send(event);
            }),
            _ => None,
        };
        if applied.is_none() {
            tracing::warn!(op = ?frame["op"], "a media frame from Redis that does not parse was dropped");
        }
    }

    /// What our SFU says: to the party's node (ours: our doors).
    fn relay(&self, event: MediaEvent) {
        let key = event_key(&event);
        let ended = matches!(event, MediaEvent::Ended { .. });
        if ended {
            self.not_hosting(key);
        }
        let origin = {
            let mut served = lock(&self.served);
            if ended {
                served.remove(&key).map(|s| s.origin)
            } else {
                served.get(&key).map(|s| s.origin.clone())
            }
        };
        match origin {
            Some(node) => self.send_to(&node, "event", json!({"event": event_to(&event)})),
            None => {
                let _ = self.events.send(event);
            }
        }
    }

    /// One beat: renew our life and claims, let go of empty claims, end our parties of
    /// a conference another node took, end our parties whose host died or restarted,
    /// and close the ones we host whose node died or restarted.
    fn beat(&self, c: &mut redis::Connection) -> redis::RedisResult<()> {
        let () = redis::cmd("SET")
            .arg(self.life_key(&self.me))
            .arg(self.life)
            .arg("PX")
            .arg(ms(self.ttl))
            .query(c)?;
        let conferences: Vec<GroupId> = lock(&self.hosted).keys().copied().collect();
        for conference in conferences {
            let held: i64 = redis::cmd("EVAL")
                .arg(RENEW)
                .arg(1)
                .arg(self.claim_key(conference))
                .arg(&self.me)
                .arg(ms(self.ttl))
                .query(c)?;
            if held == 0 {
                self.give_up(conference);
            }
        }
        let released: Vec<GroupId> = lock(&self.releasing).drain().collect();
        for conference in released {
            if !lock(&self.hosted).contains_key(&conference) {
                let _: i64 = redis::cmd("EVAL")
                    .arg(RELEASE)
                    .arg(1)
                    .arg(self.claim_key(conference))
                    .arg(&self.me)
                    .query(c)?;
            }
        }

        // The life of every node we depend on (none: dead), one round trip.
        let mut nodes: HashSet<String> = lock(&self.remote)
            .values()
            .map(|r| r.host.clone())
            .collect();
        nodes.extend(lock(&self.served).values().map(|s| s.origin.clone()));
        if nodes.is_empty() {
            return Ok(());
        }
        let nodes: Vec<String> = nodes.into_iter().collect();
        let mut ask = redis::pipe();
        for node in &nodes {
            ask.cmd("EXISTS")
                .arg(self.names.alive(node))
                .cmd("GET")
                .arg(self.life_key(node));
        }
        let answers: Vec<(bool, Option<u64>)> = ask.query(c)?;
        let lives: HashMap<String, Option<u64>> = nodes
            .into_iter()
            .zip(answers)
            .map(|(node, (alive, life))| (node, life.filter(|_| alive)))
            .collect();
        // Gone: the node is dead, or it is not the life we knew (0: not known yet).
        let gone = |node: &str, known: u64| match lives.get(node) {
            Some(Some(now)) => known != 0 && *now != known,
            _ => true,
        };

        let ended: Vec<(PartyKey, Uin)> = {
            let mut remote = lock(&self.remote);
            let keys: Vec<PartyKey> = remote
                .iter()
                .filter(|(_, r)| gone(&r.host, r.life))
                .map(|(k, _)| *k)
                .collect();
            keys.into_iter()
                .filter_map(|k| remote.remove(&k).map(|r| (k, r.uin)))
                .collect()
        };
        for (key, uin) in ended {
            tracing::warn!(
                conference = key.conference.0,
                party = key.party,
                "the node hosting this party's media died or restarted; its media ended"
            );
            let _ = self.events.send(MediaEvent::Ended {
                key,
                uin,
                reason: MediaEndReason::Failed,
            });
        }
        let orphans: Vec<PartyKey> = lock(&self.served)
            .iter()
            .filter(|(_, s)| gone(&s.origin, s.life))
            .map(|(k, _)| *k)
            .collect();
        for key in orphans {
            let local = self.local.clone();
            self.runtime.spawn(async move { local.close(key).await });
        }
        Ok(())
    }

    /// Another node holds the claim on `conference` (this node was taken for dead): end
    /// every party of it on our SFU, so that they call again and meet on the claim's
    /// holder.
    fn give_up(&self, conference: GroupId) {
        let parties: Vec<u64> = lock(&self.hosted)
            .get(&conference)
            .map(|p| p.iter().copied().collect())
            .unwrap_or_default();
        tracing::warn!(
            conference = conference.0,
            parties = parties.len(),
            "another node took this conference's media; its parties here are ended to call again there"
        );
        for party in parties {
            let key = PartyKey { conference, party };
            let local = self.local.clone();
            self.runtime.spawn(async move { local.close(key).await });
        }
    }
}

/// The media endpoint of a node in a cluster (see the module doc). Dropping it stops its
/// threads.
pub struct ClusterMedia {
    inner: Arc<Inner>,
    _stop: tokio::sync::watch::Sender<()>,
}

impl ClusterMedia {
    /// Connects, subscribes to this node's media channel and starts relaying `local`'s
    /// events; must run inside a tokio runtime. Fails when Redis cannot be reached now.
    pub fn start(
        options: ClusterMediaOptions,
        local: Arc<dyn MediaEndpoint>,
    ) -> Result<Arc<ClusterMedia>, RedisBusError> {
        let client = redis::Client::open(options.url.as_str())?;
        let mut conn = client.get_connection()?;
        conn.set_read_timeout(Some(options.open_timeout))?;
        conn.set_write_timeout(Some(options.open_timeout))?;
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|e| RedisBusError::Subscriber(e.to_string()))?;
        let names = Names {
            prefix: if options.prefix.is_empty() {
                DEFAULT_PREFIX.to_string()
            } else {
                options.prefix.clone()
            },
        };
        let ttl = options.node_timeout.max(Duration::from_millis(300));
        let life: u64 = redis::cmd("INCR")
            .arg(format!("{}:media:lives", names.prefix))
            .query(&mut conn)?;
        let () = redis::cmd("SET")
            .arg(life_key(&names, &options.node_id))
            .arg(life)
            .arg("PX")
            .arg(ms(ttl))
            .query(&mut conn)?;
        let (tx, rx) = sync_channel(QUEUE);
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let inner = Arc::new(Inner {
            me: options.node_id.clone(),
            life,
            names,
            local: local.clone(),
            conn: Mutex::new(Some(conn)),
            client: client.clone(),
            events,
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            remote: Mutex::new(HashMap::new()),
            served: Mutex::new(HashMap::new()),
            hosted: Mutex::new(HashMap::new()),
            releasing: Mutex::new(HashSet::new()),
            serving: Arc::new(Semaphore::new(MAX_SERVED_OPENS)),
            tx,
            queued: AtomicUsize::new(0),
            dropped: AtomicU64::new(0),
            metrics: options.metrics.clone(),
            stop: AtomicBool::new(false),
            runtime,
            ttl,
            open_timeout: options.open_timeout.max(Duration::from_millis(1)),
        });

        let publisher = client.clone();
        let queued = inner.clone();
        std::thread::Builder::new()
            .name("confer-media-pub".into())
            .spawn(move || publish_loop(publisher, rx, queued))
            .map_err(|e| RedisBusError::Subscriber(e.to_string()))?;

        let (ready_tx, ready_rx) = sync_channel::<Result<(), String>>(1);
        let (subscriber, sub_inner) = (client.clone(), inner.clone());
        std::thread::Builder::new()
            .name("confer-media-sub".into())
            .spawn(move || subscribe_loop(subscriber, sub_inner, ready_tx))
            .map_err(|e| RedisBusError::Subscriber(e.to_string()))?;
        match ready_rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(RedisBusError::Subscriber(e)),
            Err(_) => return Err(RedisBusError::Subscriber("no answer from Redis".into())),
        }

        let beating = inner.clone();
        std::thread::Builder::new()
            .name("confer-media-beat".into())
            .spawn(move || beat_loop(client, beating))
            .map_err(|e| RedisBusError::Subscriber(e.to_string()))?;

        let (stop, mut stopped) = tokio::sync::watch::channel(());
        let relaying = inner.clone();
        let mut local_events = local.events();
        inner.runtime.spawn(async move {
            loop {
                let event = tokio::select! {
                    _ = stopped.changed() => break,
                    event = local_events.recv() => event,
                };
                match event {
                    Ok(event) => relaying.relay(event),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(
                            lost = n,
                            "the cluster media relay fell behind the SFU's events"
                        );
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
            relaying.stop.store(true, Ordering::Release);
        });
        Ok(Arc::new(ClusterMedia { inner, _stop: stop }))
    }
}

impl Drop for ClusterMedia {
    fn drop(&mut self) {
        self.inner.stop.store(true, Ordering::Release);
    }
}

#[async_trait]
impl MediaEndpoint for ClusterMedia {
    async fn open(
        &self,
        key: PartyKey,
        uin: Uin,
        offer: MediaOffer,
    ) -> Result<MediaAnswer, MediaError> {
        let inner = self.inner.clone();
        let host = tokio::task::spawn_blocking(move || inner.host_of(key.conference))
            .await
            .map_err(|_| MediaError::Unavailable)?
            .map_err(|e| {
                tracing::warn!(error = %e, "could not find a conference's media host in Redis");
                MediaError::Unavailable
            })?;
        let inner = &self.inner;
        let before = lock(&inner.remote).remove(&key);
        if let Some(old) = before.as_ref().filter(|old| old.host != host) {
            // Moved to another host: the old one lets it go.
            inner.send_to(&old.host, "close", key_to(key));
        }
        if host == inner.me {
            let answer = inner.local.open(key, uin, offer).await?;
            inner.hosting(key);
            return Ok(answer);
        }
        let id = inner.next_id.fetch_add(1, Ordering::Relaxed);
        let (reply, answer) = oneshot::channel();
        {
            let mut pending = lock(&inner.pending);
            if pending.len() >= MAX_PENDING_OPENS {
                pending.retain(|_, waiting| !waiting.is_closed());
            }
            if pending.len() >= MAX_PENDING_OPENS {
                return Err(MediaError::Unavailable);
            }
            pending.insert(id, reply);
        }
        let remote = Remote {
            host: host.clone(),
            life: 0,
            uin,
        };
        lock(&inner.remote).insert(key, remote);
        let mut frame = key_to(key);
        frame["id"] = id.into();
        frame["uin"] = uin.0.into();
        frame["offer"] = offer_to(&offer);
        inner.send_to(&host, "open", frame);
        let result = match tokio::time::timeout(inner.open_timeout, answer).await {
            Ok(Ok((result, life))) => {
                if let Some(r) = lock(&inner.remote).get_mut(&key).filter(|r| r.host == host) {
                    r.life = life;
                }
                result
            }
            _ => {
                lock(&inner.pending).remove(&id);
                tracing::warn!(host = %host, "a conference's media host did not answer an open");
                Err(MediaError::Unavailable)
            }
        };
        if result.is_err() {
            lock(&inner.remote).remove(&key);
        }
        result
    }

    async fn close(&self, key: PartyKey) {
        let host = lock(&self.inner.remote).get(&key).map(|r| r.host.clone());
        match host {
            Some(host) => self.inner.send_to(&host, "close", key_to(key)),
            None => self.inner.local.close(key).await,
        }
    }

    fn events(&self) -> broadcast::Receiver<MediaEvent> {
        self.inner.events.subscribe()
    }
}

fn publish_loop(client: redis::Client, rx: Receiver<(String, Vec<u8>)>, inner: Arc<Inner>) {
    // Holding `inner` would keep its sender alive: keep only what is needed.
    let queued = Arc::downgrade(&inner);
    let metrics = inner.metrics.clone();
    drop(inner);
    let mut conn: Option<redis::Connection> = None;
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < 256 {
            match rx.try_recv() {
                Ok(out) => batch.push(out),
                Err(_) => break,
            }
        }
        let bytes: usize = batch.iter().map(|(c, f)| c.len() + f.len()).sum();
        if let Some(inner) = queued.upgrade() {
            inner.queued.fetch_sub(bytes, Ordering::AcqRel);
        }
        if conn.is_none() {
            conn = client.get_connection().ok();
        }
        let Some(c) = conn.as_mut() else {
            tracing::warn!(
                frames = batch.len(),
                "Redis unreachable; media frames dropped"
            );
            metrics.cluster_frames_dropped(batch.len() as u64);
            continue;
        };
        let mut pipe = redis::pipe();
        for (channel, frame) in &batch {
            pipe.cmd("PUBLISH")
                .arg(channel)
                .arg(frame.as_slice())
                .ignore();
        }
        if let Err(e) = pipe.exec(c) {
            tracing::warn!(error = %e, frames = batch.len(), "publishing media frames to Redis failed");
            metrics.cluster_frames_dropped(batch.len() as u64);
            conn = None;
        }
    }
}

fn subscribe_loop(client: redis::Client, inner: Arc<Inner>, ready: SyncSender<Result<(), String>>) {
    let channels = [inner.channel(&inner.me)];
    subscribe_until(
        &client,
        &channels,
        &inner.stop,
        ready,
        "Redis media subscriber",
        |frame| inner.apply(frame),
    );
}

fn beat_loop(client: redis::Client, inner: Arc<Inner>) {
    let every = inner.ttl / 3;
    let mut conn: Option<redis::Connection> = None;
    while !inner.stop.load(Ordering::Acquire) {
        if conn.is_none() {
            conn = client
                .get_connection()
                .and_then(|c| {
                    c.set_read_timeout(Some(inner.ttl))?;
                    Ok(c)
                })
                .ok();
        }
        if let Some(c) = conn.as_mut() {
            if let Err(e) = inner.beat(c) {
                tracing::warn!(error = %e, "the media beat to Redis failed");
                conn = None;
            }
        }
        let mut slept = Duration::ZERO;
        while slept < every && !inner.stop.load(Ordering::Acquire) {
            let step = (every - slept).min(Duration::from_millis(100));
            std::thread::sleep(step);
            slept += step;
        }
    }
}

// The wire form of what crosses nodes.

fn key_to(key: PartyKey) -> Value {
    json!({"conference": key.conference.0, "party": key.party})
}

fn key_from(v: &Value) -> Option<PartyKey> {
    Some(PartyKey {
        conference: GroupId(v["conference"].as_u64()?),
        party: v["party"].as_u64()?,
    })
}

fn offer_to(offer: &MediaOffer) -> Value {
    json!({"sdp": offer.sdp, "ufrag": offer.ufrag, "pwd": offer.pwd, "fingerprint": offer.fingerprint})
}

fn offer_from(v: &Value) -> MediaOffer {
    let text = |k: &str| v[k].as_str().map(str::to_string);
    MediaOffer {
        sdp: text("sdp"),
        ufrag: text("ufrag"),
        pwd: text("pwd"),
        fingerprint: text("fingerprint"),
    }
}

fn answer_to(a: &MediaAnswer) -> Value {
    json!({"ufrag": a.ufrag, "pwd": a.pwd, "fingerprint": a.fingerprint, "ip": a.ip,
           "port": a.port, "sdp": a.sdp})
}

fn answer_from(v: &Value) -> Option<MediaAnswer> {
    let text = |k: &str| v[k].as_str().map(str::to_string);
    Some(MediaAnswer {
        ufrag: text("ufrag")?,
        pwd: text("pwd")?,
        fingerprint: text("fingerprint")?,
        ip: text("ip")?,
        port: u16::try_from(v["port"].as_u64()?).ok()?,
        sdp: text("sdp")?,
    })
}

fn error_to(id: u64, e: &MediaError) -> Value {
    match e {
        MediaError::BadOffer(why) => json!({"id": id, "error": "bad_offer", "why": why}),
        MediaError::Full => json!({"id": id, "error": "full"}),
        MediaError::Unavailable => json!({"id": id, "error": "unavailable"}),
    }
}

fn event_key(event: &MediaEvent) -> PartyKey {
    match event {
        MediaEvent::Ended { key, .. }
        | MediaEvent::Sending { key, .. }
        | MediaEvent::Slots { key, .. } => *key,
    }
}

fn event_to(event: &MediaEvent) -> Value {
    match event {
        MediaEvent::Ended { key, uin, reason } => {
            let mut v = key_to(*key);
            v["kind"] = "ended".into();
            v["uin"] = uin.0.into();
            v["failed"] = (*reason == MediaEndReason::Failed).into();
            v
        }
        MediaEvent::Sending {
            key,
            uin,
            audio,
            video,
        } => {
            let mut v = key_to(*key);
            v["kind"] = "sending".into();
            v["uin"] = uin.0.into();
            v["audio"] = (*audio).into();
            v["video"] = (*video).into();
            v
        }
        MediaEvent::Slots { key, uin, slots } => {
            let mut v = key_to(*key);
            v["kind"] = "slots".into();
            v["uin"] = uin.0.into();
            v["slots"] = slots
                .iter()
                .map(|s| json!({"audio_mid": s.audio_mid, "video_mid": s.video_mid, "party": s.party}))
                .collect();
            v
        }
    }
}

fn event_from(v: &Value) -> Option<MediaEvent> {
    let key = key_from(v)?;
    let uin = Uin(v["uin"].as_u64()?);
    Some(match v["kind"].as_str()? {
        "ended" => MediaEvent::Ended {
            key,
            uin,
            reason: if v["failed"].as_bool()? {
                MediaEndReason::Failed
            } else {
                MediaEndReason::Closed
            },
        },
        "sending" => MediaEvent::Sending {
            key,
            uin,
            audio: v["audio"].as_bool()?,
            video: v["video"].as_bool()?,
        },
        "slots" => MediaEvent::Slots {
            key,
            uin,
            slots: v["slots"]
                .as_array()?
                .iter()
                .map(|s| {
                    Some(MediaSlot {
                        audio_mid: s["audio_mid"].as_str().map(str::to_string),
                        video_mid: s["video_mid"].as_str().map(str::to_string),
                        party: match &s["party"] {
                            Value::Null => None,
                            p => Some(p.as_u64()?),
                        },
                    })
                })
                .collect::<Option<_>>()?,
        },
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_events_and_answers_survive_the_wire() {
        let key = PartyKey {
            conference: GroupId(7),
            party: (3 << 32) | 9,
        };
        let events = [
            MediaEvent::Ended {
                key,
                uin: Uin(4),
                reason: MediaEndReason::Failed,
            },
            MediaEvent::Sending {
                key,
                uin: Uin(4),
                audio: true,
                video: false,
            },
            MediaEvent::Slots {
                key,
                uin: Uin(4),
                slots: vec![
                    MediaSlot {
                        audio_mid: Some("0".into()),
                        video_mid: None,
                        party: Some(11),
                    },
                    MediaSlot {
                        audio_mid: None,
                        video_mid: Some("3".into()),
                        party: None,
                    },
                ],
            },
        ];
        for event in events {
            assert_eq!(event_from(&event_to(&event)), Some(event));
        }
        let answer = MediaAnswer {
            ufrag: "u".into(),
            pwd: "p".into(),
            fingerprint: "sha-256 AB".into(),
            ip: "10.0.0.2".into(),
            port: 3479,
            sdp: "v=0".into(),
        };
        let back = answer_from(&answer_to(&answer)).expect("parses");
        assert_eq!((back.ip.as_str(), back.port), ("10.0.0.2", 3479));
        assert_eq!(event_from(&json!({"kind": "ended"})), None);
        assert!(answer_from(&json!({"ufrag": "u", "port": 70000})).is_none());
    }
}
