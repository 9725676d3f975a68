//! A synthetic WebRTC peer (a str0m client on its own UDP socket) that sends generated
//! Opus and VP8 frames and counts what it receives, per sender: the endpoint's tests and
//! `confer-bench sfu` talk to the SFU through it exactly as a browser would (full ICE,
//! DTLS-SRTP, RTCP).
//!
//! Each generated frame starts with a header the receiver reads back: the VP8 frame tag
//! byte (key or inter frame), then the sender's id, the frame's number and the wall time
//! it was sent at. From those a receiver counts frames per sender, their loss (numbers
//! never seen) and their jitter (RFC 3550's estimator on the transit times).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::media::{Direction, KeyframeRequestKind, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::watch;

/// Audio: one 20 ms frame.
const AUDIO_INTERVAL: Duration = Duration::from_millis(20);
/// Video: 30 frames a second.
const VIDEO_INTERVAL: Duration = Duration::from_micros(33_333);
/// A keyframe every this many video frames, and whenever one is asked for.
const KEYFRAME_EVERY: u64 = 90;
/// sender id + frame number + sent time.
const HEADER: usize = 1 + 8 + 8 + 8;

/// What a synthetic peer offers and sends.
#[derive(Debug, Clone)]
pub struct PeerOptions {
    /// Its id, written in every frame it sends.
    pub id: u64,
    /// Receive slots: 1 is the simplest client (one sendrecv audio + one sendrecv video
    /// line); each further slot adds a recvonly audio and a recvonly video line.
    pub slots: usize,
    pub audio_kbps: u32,
    pub video_kbps: u32,
}

impl Default for PeerOptions {
    fn default() -> Self {
        PeerOptions {
            id: 1,
            slots: 1,
            audio_kbps: 32,
            video_kbps: 500,
        }
    }
}

/// What a peer received from one sender.
#[derive(Debug, Clone, Default)]
pub struct Received {
    pub audio_frames: u64,
    pub video_frames: u64,
    pub bytes: u64,
    /// Frames whose number was skipped (counted when a later one arrives).
    pub lost: u64,
    /// RFC 3550 interarrival jitter of the video frames, in milliseconds.
    pub jitter_ms: f64,
    last_audio_seq: Option<u64>,
    last_video_seq: Option<u64>,
    last_transit_us: Option<i64>,
}

impl Received {
    fn frame(&mut self, kind: MediaKind, seq: u64, sent_us: u64, bytes: usize) {
        self.bytes += bytes as u64;
        let last = match kind {
            MediaKind::Audio => {
                self.audio_frames += 1;
                &mut self.last_audio_seq
            }
            MediaKind::Video => {
                self.video_frames += 1;
                &mut self.last_video_seq
            }
        };
        if let Some(previous) = *last {
            if seq > previous + 1 {
                self.lost += seq - previous - 1;
            }
        }
        if last.is_none_or(|previous| seq > previous) {
            *last = Some(seq);
        }
        if kind == MediaKind::Video {
            let transit = wall_micros() as i64 - sent_us as i64;
            if let Some(previous) = self.last_transit_us {
                let d = (transit - previous).abs() as f64 / 1000.0;
                self.jitter_ms += (d - self.jitter_ms) / 16.0;
            }
            self.last_transit_us = Some(transit);
        }
    }
}

/// What a running peer shares with whoever watches it.
#[derive(Debug, Default)]
pub struct PeerState {
    /// Per sender id.
    pub received: HashMap<u64, Received>,
    pub connected: bool,
    /// The connection ended (ICE disconnected or closed).
    pub ended: bool,
    pub frames_sent: u64,
    /// Keyframe requests (PLI/FIR) that reached this peer as a sender.
    pub keyframe_requests: u64,
    /// Set to make the peer send a PLI on its first receive slot's video line.
    pub ask_keyframe: bool,
}

/// A peer with its offer made, waiting for the answer.
pub struct SyntheticPeer {
    options: PeerOptions,
    rtc: Rtc,
    pending: Option<SdpPendingOffer>,
    socket: UdpSocket,
    local: SocketAddr,
    audio: Mid,
    video: Mid,
}

impl SyntheticPeer {
    /// Binds a socket on `ip` and makes the offer; returns the peer and the offer's SDP.
    pub async fn new(
        options: PeerOptions,
        ip: std::net::IpAddr,
    ) -> std::io::Result<(SyntheticPeer, String)> {
        let socket = UdpSocket::bind(SocketAddr::new(ip, 0)).await?;
        let local = socket.local_addr()?;
        let mut rtc = Rtc::builder()
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(true)
            .build(Instant::now());
        let candidate = Candidate::host(local, "udp").map_err(std::io::Error::other)?;
        rtc.add_local_candidate(candidate);
        let mut change = rtc.sdp_api();
        let stream = Some(format!("peer{}", options.id));
        let audio = change.add_media(
            MediaKind::Audio,
            Direction::SendRecv,
            stream.clone(),
            None,
            None,
        );
        let video = change.add_media(MediaKind::Video, Direction::SendRecv, stream, None, None);
        for _ in 1..options.slots.max(1) {
            change.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
            change.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
        }
        let (offer, pending) = change
            .apply()
            .ok_or_else(|| std::io::Error::other("no offer"))?;
        let sdp = offer.to_sdp_string();
        Ok((
            SyntheticPeer {
                options,
                rtc,
                pending: Some(pending),
                socket,
                local,
                audio,
                video,
            },
            sdp,
        ))
    }

    /// Applies the endpoint's answer.
    pub fn accept_answer(&mut self, sdp: &str) -> Result<(), String> {
        let answer = SdpAnswer::from_sdp_string(sdp).map_err(|e| e.to_string())?;
        let pending = self.pending.take().ok_or("answer already accepted")?;
        self.rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .map_err(|e| e.to_string())
    }

    /// The peer's own address (where the endpoint sends its media).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Runs the peer until `stop` turns true or its connection ends; `state` is updated as
    /// frames arrive.
    pub async fn run(mut self, state: Arc<Mutex<PeerState>>, mut stop: watch::Receiver<bool>) {
        let mut buf = vec![0u8; 2048];
        let started = Instant::now();
        let mut next_audio = started;
        let mut next_video = started;
        let mut audio_seq = 0u64;
        let mut video_seq = 0u64;
        let mut want_keyframe = true;
        let audio_bytes = (self.options.audio_kbps as usize * 1000 / 8 / 50).max(HEADER + 1);
        let video_bytes = (self.options.video_kbps as usize * 1000 / 8 / 30).max(HEADER + 1);
        let mut connected = false;
        loop {
            // Drain output.
            let timeout = loop {
                match self.rtc.poll_output() {
                    Ok(Output::Timeout(at)) => break at,
                    Ok(Output::Transmit(t)) => {
                        let _ = self.socket.send_to(&t.contents, t.destination).await;
                    }
                    Ok(Output::Event(event)) => match event {
                        Event::Connected => {
                            connected = true;
                            lock(&state).connected = true;
                        }
                        Event::IceConnectionStateChange(IceConnectionState::Disconnected)
                        | Event::Closed => {
                            lock(&state).ended = true;
                            return;
                        }
                        Event::MediaData(data) => {
                            if let Some((sender, seq, sent_us)) = read_header(&data.data) {
                                let kind = if self
                                    .rtc
                                    .media(data.mid)
                                    .is_some_and(|m| m.kind() == MediaKind::Video)
                                {
                                    MediaKind::Video
                                } else {
                                    MediaKind::Audio
                                };
                                lock(&state).received.entry(sender).or_default().frame(
                                    kind,
                                    seq,
                                    sent_us,
                                    data.data.len(),
                                );
                            }
                        }
                        Event::KeyframeRequest(_) => {
                            want_keyframe = true;
                            lock(&state).keyframe_requests += 1;
                        }
                        _ => {}
                    },
                    Err(_) => {
                        lock(&state).ended = true;
                        return;
                    }
                }
                if !self.rtc.is_alive() {
                    lock(&state).ended = true;
                    return;
                }
            };
            let now = Instant::now();
            let next_frame = next_audio.min(next_video);
            let wake = if connected {
                timeout.min(next_frame)
            } else {
                timeout
            };
            let wake = wake.max(now);
            tokio::select! {
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() {
                        let _ = self.rtc.close();
                        while let Ok(Output::Transmit(t)) = self.rtc.poll_output() {
                            let _ = self.socket.send_to(&t.contents, t.destination).await;
                        }
                        return;
                    }
                }
                received = self.socket.recv_from(&mut buf) => {
                    if let Ok((n, source)) = received {
                        if let Ok(contents) = (&buf[..n]).try_into() {
                            let input = Input::Receive(Instant::now(), Receive {
                                proto: Protocol::Udp,
                                source,
                                destination: self.local,
                                contents,
                            });
                            if self.rtc.handle_input(input).is_err() {
                                lock(&state).ended = true;
                                return;
                            }
                        }
                    }
                }
                _ = tokio::time::sleep_until(wake.into()) => {}
            }
            let now = Instant::now();
            let _ = self.rtc.handle_input(Input::Timeout(now));
            if std::mem::take(&mut lock(&state).ask_keyframe) {
                if let Some(mut writer) = self.rtc.writer(self.video) {
                    let _ = writer.request_keyframe(None, KeyframeRequestKind::Pli);
                }
            }
            if !connected {
                next_audio = now;
                next_video = now;
                continue;
            }
            let elapsed = now.duration_since(started);
            if now >= next_audio {
                let frame = make_frame(0, self.options.id, audio_seq, audio_bytes);
                let time = MediaTime::from_micros(elapsed.as_micros() as u64);
                if let Some(writer) = self.rtc.writer(self.audio) {
                    let pt = writer.payload_params().next().map(|p| p.pt());
                    if let Some(pt) = pt {
                        if writer.write(pt, now, time, frame).is_ok() {
                            audio_seq += 1;
                            lock(&state).frames_sent += 1;
                        }
                    }
                }
                next_audio += AUDIO_INTERVAL;
            }
            if now >= next_video {
                let keyframe = want_keyframe || video_seq.is_multiple_of(KEYFRAME_EVERY);
                // VP8 frame tag: bit 0 clear is a key frame.
                let tag = if keyframe { 0x10 } else { 0x11 };
                let frame = make_frame(tag, self.options.id, video_seq, video_bytes);
                let time = MediaTime::from_micros(elapsed.as_micros() as u64);
                if let Some(writer) = self.rtc.writer(self.video) {
                    let pt = writer.payload_params().next().map(|p| p.pt());
                    if let Some(pt) = pt {
                        if writer.write(pt, now, time, frame).is_ok() {
                            video_seq += 1;
                            want_keyframe = false;
                            lock(&state).frames_sent += 1;
                        }
                    }
                }
                next_video += VIDEO_INTERVAL;
            }
        }
    }
}

fn lock(state: &Mutex<PeerState>) -> std::sync::MutexGuard<'_, PeerState> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn wall_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

fn make_frame(tag: u8, sender: u64, seq: u64, bytes: usize) -> Vec<u8> {
    let mut frame = Vec::with_capacity(bytes);
    frame.push(tag);
    frame.extend_from_slice(&sender.to_be_bytes());
    frame.extend_from_slice(&seq.to_be_bytes());
    frame.extend_from_slice(&wall_micros().to_be_bytes());
    frame.resize(bytes, 0x5a);
    frame
}

fn read_header(frame: &[u8]) -> Option<(u64, u64, u64)> {
    let field = |at: usize| -> Option<u64> {
        Some(u64::from_be_bytes(frame.get(at..at + 8)?.try_into().ok()?))
    };
    Some((field(1)?, field(9)?, field(17)?))
}
