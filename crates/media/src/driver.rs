//! The driver: the one task that owns the UDP socket and every party's `Rtc`.
//!
//! str0m is sans-IO: each `Rtc` is fed datagrams and clock ticks and polled for datagrams
//! to send, events and its next deadline. One task does that for every party, so no lock
//! is ever taken on the media path and forwarding a frame is a function call from one
//! party's `Rtc` to another's.
//!
//! **Demultiplexing:** a STUN binding request is routed by the USERNAME's first half, our
//! ICE ufrag (unique per party), and its sender's address is learnt for that party only
//! once the party's `Rtc` accepted the request (its MESSAGE-INTEGRITY checks out);
//! everything else (DTLS, SRTP, SRTCP) is routed by that learnt address. A datagram that
//! fits nowhere, does not parse, or that the party's `Rtc` refuses is dropped and counted
//! (`confer_media_datagrams_dropped_total`); nothing a datagram holds can end a party or
//! the loop.
//!
//! **Bounds:** the command queue is bounded (`open` waits), parties per conference are
//! capped (`max_parties_per_conference`), each party's learnt addresses are capped
//! (`MAX_ADDRESSES`), what a party sends is forwarded only within its bitrate budget, and
//! str0m's own send buffers (NACK answers) are fixed in packets.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use confer_core::media::{MediaEndReason, MediaError, MediaEvent, MediaSlot, PartyKey};
use confer_core::metrics::Metrics;
use confer_core::{GroupId, Uin};
use str0m::ice::StunMessage;
use str0m::media::{KeyframeRequest, KeyframeRequestKind, MediaAdded, MediaData, MediaKind, Mid};
use str0m::net::{DatagramRecv, Protocol, Receive};
use str0m::{Event, IceConnectionState, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::{slots, SfuConfig};

/// Remote addresses remembered per party (ICE may try a few before one is nominated).
const MAX_ADDRESSES: usize = 8;
/// A connected party from which no STUN consent check arrived this long is ended
/// (RFC 7675's consent freshness: browsers check every few seconds).
const CONSENT_TIMEOUT: Duration = Duration::from_secs(30);
/// A party that sent no audio (or video) frame this long counts as not sending it.
const SENDING_IDLE: Duration = Duration::from_millis(1500);
/// How often consent, connect deadlines and what parties send are looked at.
const HOUSEKEEPING: Duration = Duration::from_millis(250);
/// At most one keyframe request per source and this interval, however many ask.
const KEYFRAME_INTERVAL: Duration = Duration::from_millis(500);
/// Datagrams read in one go before commands and timers get their turn.
const READ_BURST: usize = 64;
/// The largest datagram read; anything longer is cut and then fails to parse.
const DATAGRAM_BYTES: usize = 2048;

/// What `Sfu` asks of the driver.
pub enum Command {
    /// Start the party's media (replacing one with the same key); answered once admitted.
    Open {
        key: PartyKey,
        uin: Uin,
        ufrag: String,
        rtc: Box<Rtc>,
        reply: oneshot::Sender<Result<(), MediaError>>,
    },
    /// End the party's media (`MediaEvent::Ended` with `Closed`).
    Close { key: PartyKey },
}

/// A token bucket in bytes: what a party may have forwarded.
struct Budget {
    bytes_per_sec: f64,
    capacity: f64,
    tokens: f64,
    at: Instant,
}

impl Budget {
    fn new(kbps: u32, now: Instant) -> Budget {
        let bytes_per_sec = f64::from(kbps) * 1000.0 / 8.0;
        // One second of burst, and never less than a large keyframe.
        let capacity = bytes_per_sec.max(64.0 * 1024.0);
        Budget {
            bytes_per_sec,
            capacity,
            tokens: capacity,
            at: now,
        }
    }

    fn take(&mut self, bytes: usize, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        self.tokens = (self.tokens + elapsed * self.bytes_per_sec).min(self.capacity);
        let bytes = bytes as f64;
        if self.tokens >= bytes {
            self.tokens -= bytes;
            true
        } else {
            false
        }
    }
}

struct Party {
    uin: Uin,
    ufrag: String,
    rtc: Rtc,
    /// When the `Rtc` next wants a clock tick.
    timeout: Instant,
    addrs: VecDeque<SocketAddr>,
    /// The lines the party sends on (the first receiving line of each kind, our view).
    audio_in: Option<Mid>,
    video_in: Option<Mid>,
    /// The lines it receives on, in offer order: the receive slots.
    audio_out: Vec<Mid>,
    video_out: Vec<Mid>,
    /// Which other party each slot shows.
    slots: Vec<Option<PartyKey>>,
    /// Whether a `MediaEvent::Slots` told the party's slots yet.
    slots_told: bool,
    opened: Instant,
    connected: bool,
    last_stun: Instant,
    last_audio: Option<Instant>,
    last_video: Option<Instant>,
    /// What the last `Sending` event said.
    sending: (bool, bool),
    last_keyframe_request: Option<Instant>,
    budget: Budget,
    ended: Option<MediaEndReason>,
}

impl Party {
    fn add_media(&mut self, media: MediaAdded) {
        let (sends, receives) = match media.kind {
            MediaKind::Audio => (&mut self.audio_in, &mut self.audio_out),
            MediaKind::Video => (&mut self.video_in, &mut self.video_out),
        };
        // Our direction: receiving is what the party sends.
        if media.direction.is_receiving() && sends.is_none() {
            *sends = Some(media.mid);
        }
        if media.direction.is_sending() {
            receives.push(media.mid);
        }
        let slots = self.audio_out.len().max(self.video_out.len());
        self.slots.resize(slots, None);
    }

    /// The party's slots as `MediaEvent::Slots` tells them.
    fn slot_lines(&self) -> Vec<MediaSlot> {
        self.slots
            .iter()
            .enumerate()
            .map(|(n, shown)| MediaSlot {
                audio_mid: self.audio_out.get(n).map(|mid| mid.to_string()),
                video_mid: self.video_out.get(n).map(|mid| mid.to_string()),
                party: shown.map(|key| key.party),
            })
            .collect()
    }

    fn learn(&mut self, addr: SocketAddr) -> Option<SocketAddr> {
        if self.addrs.contains(&addr) {
            return None;
        }
        self.addrs.push_back(addr);
        if self.addrs.len() > MAX_ADDRESSES {
            return self.addrs.pop_front();
        }
        None
    }
}

/// A frame or request one party's `Rtc` produced that concerns others.
// Boxing each frame would cost an allocation per frame; these live only within one poll.
#[allow(clippy::large_enum_variant)]
enum Produced {
    Media(MediaData),
    Keyframe(KeyframeRequest),
}

pub struct Driver {
    socket: UdpSocket,
    /// The announced address: the destination of every datagram, as str0m sees it.
    public: SocketAddr,
    config: SfuConfig,
    metrics: Arc<Metrics>,
    events: broadcast::Sender<MediaEvent>,
    commands: mpsc::Receiver<Command>,
    parties: HashMap<PartyKey, Party>,
    by_ufrag: HashMap<String, PartyKey>,
    by_addr: HashMap<SocketAddr, PartyKey>,
    /// Each conference's parties with media, in join order.
    conferences: HashMap<GroupId, Vec<PartyKey>>,
}

impl Driver {
    pub fn new(
        socket: UdpSocket,
        public: SocketAddr,
        config: SfuConfig,
        metrics: Arc<Metrics>,
        events: broadcast::Sender<MediaEvent>,
        commands: mpsc::Receiver<Command>,
    ) -> Driver {
        Driver {
            socket,
            public,
            config,
            metrics,
            events,
            commands,
            parties: HashMap::new(),
            by_ufrag: HashMap::new(),
            by_addr: HashMap::new(),
            conferences: HashMap::new(),
        }
    }

    /// Runs until every `Sfu` handle is gone.
    pub async fn run(mut self) {
        let mut buf = vec![0u8; DATAGRAM_BYTES];
        let mut housekeeping = tokio::time::interval(HOUSEKEEPING);
        housekeeping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let deadline = self.next_timeout();
            tokio::select! {
                command = self.commands.recv() => match command {
                    Some(command) => self.command(command),
                    None => break,
                },
                received = self.socket.recv_from(&mut buf) => {
                    match received {
                        Ok((n, from)) => self.datagram(&buf[..n], from),
                        Err(error) => tracing::debug!(%error, "media socket read"),
                    }
                    for _ in 0..READ_BURST {
                        match self.socket.try_recv_from(&mut buf) {
                            Ok((n, from)) => self.datagram(&buf[..n], from),
                            Err(_) => break,
                        }
                    }
                },
                _ = tokio::time::sleep_until(deadline.into()) => {},
                _ = housekeeping.tick() => self.housekeeping(Instant::now()),
            }
            self.advance(Instant::now());
        }
        let keys: Vec<PartyKey> = self.parties.keys().copied().collect();
        for key in keys {
            self.remove(key, MediaEndReason::Closed);
        }
    }

    fn next_timeout(&self) -> Instant {
        let idle = Instant::now() + Duration::from_secs(1);
        self.parties
            .values()
            .map(|party| party.timeout)
            .min()
            .map_or(idle, |t| t.min(idle))
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Open {
                key,
                uin,
                ufrag,
                rtc,
                reply,
            } => {
                let admitted = self.open(key, uin, ufrag, *rtc);
                let _ = reply.send(admitted);
            }
            Command::Close { key } => {
                if self.parties.contains_key(&key) {
                    self.remove(key, MediaEndReason::Closed);
                }
            }
        }
    }

    fn open(&mut self, key: PartyKey, uin: Uin, ufrag: String, rtc: Rtc) -> Result<(), MediaError> {
        let order = self.conferences.entry(key.conference).or_default();
        let others = order.iter().filter(|k| **k != key).count();
        if others >= self.config.max_parties_per_conference {
            return Err(MediaError::Full);
        }
        if self.parties.contains_key(&key) {
            // Replaced: the party keeps its place, so nobody else's slots move.
            self.forget(key);
        } else if let Some(order) = self.conferences.get_mut(&key.conference) {
            order.push(key);
        }
        let now = Instant::now();
        self.by_ufrag.insert(ufrag.clone(), key);
        self.parties.insert(
            key,
            Party {
                uin,
                ufrag,
                rtc,
                timeout: now,
                addrs: VecDeque::new(),
                audio_in: None,
                video_in: None,
                audio_out: Vec::new(),
                video_out: Vec::new(),
                slots: Vec::new(),
                slots_told: false,
                opened: now,
                connected: false,
                last_stun: now,
                last_audio: None,
                last_video: None,
                sending: (false, false),
                last_keyframe_request: None,
                budget: Budget::new(self.config.party_max_kbps, now),
                ended: None,
            },
        );
        // Polling yields the offer's media lines, and `drain` fills the slots they make.
        self.drain(vec![key]);
        tracing::debug!(?key, "media opened");
        Ok(())
    }

    /// Drops the party's routing entries and `Rtc` (no event).
    fn forget(&mut self, key: PartyKey) -> Option<Party> {
        let mut party = self.parties.remove(&key)?;
        self.by_ufrag.remove(&party.ufrag);
        for addr in &party.addrs {
            if self.by_addr.get(addr) == Some(&key) {
                self.by_addr.remove(addr);
            }
        }
        // Say goodbye (RTCP BYE, DTLS close_notify) on the way out.
        if party.rtc.close().is_ok() {
            let _ = poll(&self.socket, &mut party);
        }
        Some(party)
    }

    /// Ends the party's media, tells the doors, and gives its slots to others.
    fn remove(&mut self, key: PartyKey, reason: MediaEndReason) {
        let Some(party) = self.forget(key) else {
            return;
        };
        if let Some(order) = self.conferences.get_mut(&key.conference) {
            order.retain(|k| *k != key);
            if order.is_empty() {
                self.conferences.remove(&key.conference);
            }
        }
        tracing::debug!(?key, ?reason, "media ended");
        let _ = self.events.send(MediaEvent::Ended {
            key,
            uin: party.uin,
            reason,
        });
        self.refill(key.conference);
    }

    /// Gives every free slot of the conference's parties to someone waiting for one, and
    /// asks each newly shown party for a keyframe so the receiver can start decoding.
    fn refill(&mut self, conference: GroupId) {
        let order = self
            .conferences
            .get(&conference)
            .cloned()
            .unwrap_or_default();
        let mut sources = Vec::new();
        for key in &order {
            if let Some(party) = self.parties.get_mut(key) {
                let before = party.slots.clone();
                for (_, source) in slots::refill(&mut party.slots, *key, &order) {
                    sources.push(source);
                }
                if !party.slots.is_empty() && (party.slots != before || !party.slots_told) {
                    party.slots_told = true;
                    let _ = self.events.send(MediaEvent::Slots {
                        key: *key,
                        uin: party.uin,
                        slots: party.slot_lines(),
                    });
                }
            }
        }
        sources.sort_by_key(|k| k.party);
        sources.dedup();
        for source in &sources {
            self.request_keyframe(*source, KeyframeRequestKind::Pli, true);
        }
        self.drain(sources);
    }

    fn request_keyframe(&mut self, source: PartyKey, kind: KeyframeRequestKind, force: bool) {
        let Some(party) = self.parties.get_mut(&source) else {
            return;
        };
        let now = Instant::now();
        let recent = party
            .last_keyframe_request
            .is_some_and(|at| now.duration_since(at) < KEYFRAME_INTERVAL);
        if recent && !force {
            return;
        }
        let Some(mid) = party.video_in else { return };
        if let Some(mut writer) = party.rtc.writer(mid) {
            if writer.request_keyframe(None, kind).is_ok() {
                party.last_keyframe_request = Some(now);
            }
        }
    }

    fn datagram(&mut self, data: &[u8], from: SocketAddr) {
        let now = Instant::now();
        let Some((key, stun)) = self.route(data, from) else {
            self.metrics.media_datagram_dropped();
            return;
        };
        let Ok(contents) = DatagramRecv::try_from(data) else {
            self.metrics.media_datagram_dropped();
            return;
        };
        let input = Input::Receive(
            now,
            Receive {
                proto: Protocol::Udp,
                source: from,
                destination: self.public,
                contents,
            },
        );
        let Some(party) = self.parties.get_mut(&key) else {
            self.metrics.media_datagram_dropped();
            return;
        };
        if !party.rtc.accepts(&input) {
            self.metrics.media_datagram_dropped();
            return;
        }
        if stun {
            party.last_stun = now;
            if let Some(old) = party.learn(from) {
                self.by_addr.remove(&old);
            }
            self.by_addr.insert(from, key);
        }
        if let Err(error) = party.rtc.handle_input(input) {
            // A bad datagram from the party's own address: not worth ending its media.
            tracing::debug!(?key, %error, "media datagram refused");
            self.metrics.media_datagram_dropped();
        }
        self.drain(vec![key]);
    }

    /// The party a datagram is for, and whether it is STUN (0–3 in the first byte, RFC 7983).
    fn route(&self, data: &[u8], from: SocketAddr) -> Option<(PartyKey, bool)> {
        let first = *data.first()?;
        if first <= 3 {
            let message = StunMessage::parse(data).ok()?;
            if !message.is_binding_request() {
                return None;
            }
            let (ours, _theirs) = message.split_username()?;
            return self.by_ufrag.get(ours).map(|key| (*key, true));
        }
        self.by_addr.get(&from).map(|key| (*key, false))
    }

    /// Polls the given parties, and every party their output reaches, until none has more.
    fn drain(&mut self, mut dirty: Vec<PartyKey>) {
        while let Some(key) = dirty.pop() {
            let Some(party) = self.parties.get_mut(&key) else {
                continue;
            };
            let slots_before = party.slots.len();
            let produced = poll(&self.socket, party);
            if let Some(reason) = party.ended {
                self.remove(key, reason);
                continue;
            }
            if party.slots.len() != slots_before {
                // The offer's lines showed up (str0m tells them on a later poll than the
                // first): the party's slots can be filled now.
                self.refill(key.conference);
            }
            for item in produced {
                match item {
                    Produced::Media(data) => self.forward(key, data, &mut dirty),
                    Produced::Keyframe(request) => self.keyframe_asked(key, request, &mut dirty),
                }
            }
        }
    }

    /// Writes a frame the party sent into the slot showing it at every other party.
    fn forward(&mut self, from: PartyKey, data: MediaData, dirty: &mut Vec<PartyKey>) {
        let now = Instant::now();
        let Some(sender) = self.parties.get_mut(&from) else {
            return;
        };
        let kind = if Some(data.mid) == sender.audio_in {
            sender.last_audio = Some(now);
            MediaKind::Audio
        } else if Some(data.mid) == sender.video_in {
            sender.last_video = Some(now);
            MediaKind::Video
        } else {
            return;
        };
        if !sender.budget.take(data.data.len(), now) {
            self.metrics.media_over_cap();
            if kind == MediaKind::Video {
                // What follows references the dropped frame: start again from a keyframe.
                self.request_keyframe(from, KeyframeRequestKind::Pli, false);
                dirty.push(from);
            }
            return;
        }
        if !data.contiguous && kind == MediaKind::Video {
            self.request_keyframe(from, KeyframeRequestKind::Pli, false);
            dirty.push(from);
        }
        let Some(order) = self.conferences.get(&from.conference) else {
            return;
        };
        let mut forwarded = 0;
        for receiver_key in order {
            if *receiver_key == from {
                continue;
            }
            let Some(receiver) = self.parties.get_mut(receiver_key) else {
                continue;
            };
            let Some(slot) = receiver.slots.iter().position(|s| *s == Some(from)) else {
                continue;
            };
            let lines = match kind {
                MediaKind::Audio => &receiver.audio_out,
                MediaKind::Video => &receiver.video_out,
            };
            let Some(mid) = lines.get(slot).copied() else {
                continue;
            };
            let Some(writer) = receiver.rtc.writer(mid) else {
                continue;
            };
            let Some(pt) = writer.match_params(data.params) else {
                continue;
            };
            match writer.write(pt, data.network_time, data.time, data.data.clone()) {
                Ok(()) => {
                    forwarded += 1;
                    dirty.push(*receiver_key);
                }
                Err(error) => tracing::debug!(key = ?receiver_key, %error, "media write"),
            }
        }
        self.metrics.media_forwarded(forwarded);
    }

    /// A receiver asked for a keyframe on one of its slots: ask the party the slot shows.
    fn keyframe_asked(
        &mut self,
        receiver: PartyKey,
        request: KeyframeRequest,
        dirty: &mut Vec<PartyKey>,
    ) {
        let Some(party) = self.parties.get(&receiver) else {
            return;
        };
        let Some(slot) = party.video_out.iter().position(|mid| *mid == request.mid) else {
            return;
        };
        let Some(Some(source)) = party.slots.get(slot).copied() else {
            return;
        };
        self.request_keyframe(source, request.kind, false);
        dirty.push(source);
    }

    /// Clock ticks for every party whose deadline has come.
    fn advance(&mut self, now: Instant) {
        let due: Vec<PartyKey> = self
            .parties
            .iter()
            .filter(|(_, party)| party.timeout <= now)
            .map(|(key, _)| *key)
            .collect();
        for key in &due {
            if let Some(party) = self.parties.get_mut(key) {
                if party.rtc.handle_input(Input::Timeout(now)).is_err() {
                    party.ended = Some(MediaEndReason::Failed);
                }
            }
        }
        self.drain(due);
    }

    /// Connect deadlines, consent, and what each party is actually sending.
    fn housekeeping(&mut self, now: Instant) {
        let mut failed = Vec::new();
        for (key, party) in self.parties.iter_mut() {
            let never_connected =
                !party.connected && now.duration_since(party.opened) > self.config.connect_timeout;
            let consent_expired =
                party.connected && now.duration_since(party.last_stun) > CONSENT_TIMEOUT;
            if never_connected || consent_expired {
                failed.push(*key);
                continue;
            }
            let active =
                |at: Option<Instant>| at.is_some_and(|at| now.duration_since(at) < SENDING_IDLE);
            let sending = (active(party.last_audio), active(party.last_video));
            if sending != party.sending {
                party.sending = sending;
                let _ = self.events.send(MediaEvent::Sending {
                    key: *key,
                    uin: party.uin,
                    audio: sending.0,
                    video: sending.1,
                });
            }
        }
        for key in failed {
            self.remove(key, MediaEndReason::Failed);
        }
    }
}

/// Polls one party's `Rtc` until it only has a deadline left: sends its datagrams, keeps
/// its state, and returns what concerns other parties.
fn poll(socket: &UdpSocket, party: &mut Party) -> Vec<Produced> {
    let mut produced = Vec::new();
    loop {
        if !party.rtc.is_alive() {
            party.ended.get_or_insert(MediaEndReason::Failed);
            return produced;
        }
        match party.rtc.poll_output() {
            Ok(Output::Timeout(at)) => {
                party.timeout = at;
                return produced;
            }
            Ok(Output::Transmit(transmit)) => {
                // A full socket buffer loses the datagram, as the network might.
                let _ = socket.try_send_to(&transmit.contents, transmit.destination);
            }
            Ok(Output::Event(event)) => match event {
                Event::Connected => party.connected = true,
                Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                    party.ended.get_or_insert(MediaEndReason::Failed);
                    return produced;
                }
                Event::MediaAdded(media) => party.add_media(media),
                Event::MediaData(data) => produced.push(Produced::Media(data)),
                Event::KeyframeRequest(request) => produced.push(Produced::Keyframe(request)),
                Event::Closed => {
                    party.ended.get_or_insert(MediaEndReason::Failed);
                    return produced;
                }
                _ => {}
            },
            Err(error) => {
                tracing::debug!(%error, "media poll");
                party.ended.get_or_insert(MediaEndReason::Failed);
                return produced;
            }
        }
    }
}
