//! The media endpoint seam: how a door asks the server's own WebRTC endpoint (the SFU) for a
//! party's media, and how it learns that the media ended.
//!
//! The core names only what every door needs: open a party's endpoint from the client's
//! offer, close it, and the events that come back. The implementation (ICE, DTLS-SRTP,
//! forwarding) lives in its own crate and is plugged in by the binary; without one, doors
//! answer that media is not available.

use async_trait::async_trait;

use crate::ids::{GroupId, Uin};

/// One party's media in one conference: a user's device in a call. A door picks the id
/// (the conference door uses its `PartyID`); it is unique per conference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PartyKey {
    pub conference: GroupId,
    pub party: u64,
}

/// What a client sends to start its media: its SDP offer, or, for clients of the original
/// protocol, its ICE credentials and DTLS fingerprint (the endpoint then builds the
/// session from them and a default audio + video description).
#[derive(Debug, Clone, Default)]
pub struct MediaOffer {
    pub sdp: Option<String>,
    pub ufrag: Option<String>,
    pub pwd: Option<String>,
    pub fingerprint: Option<String>,
}

/// The endpoint's side of the handshake, as the conference door's `conf.webrtc.servufrag`
/// announces it.
#[derive(Debug, Clone)]
pub struct MediaAnswer {
    pub ufrag: String,
    pub pwd: String,
    /// `sha-256 AB:CD:…`
    pub fingerprint: String,
    /// The address clients send media to (`media_public_ip` or the bound address).
    pub ip: String,
    pub port: u16,
    /// The full SDP answer, for clients that would rather not build it.
    pub sdp: String,
}

/// Why a party's media ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaEndReason {
    /// The door closed it (hang-up, leave, socket closed).
    Closed,
    /// ICE or DTLS failed, or consent to send expired.
    Failed,
}

/// One receive slot of a party: the lines (the offer's `a=mid` values) it receives on, and
/// the party of the same conference it shows, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaSlot {
    pub audio_mid: Option<String>,
    pub video_mid: Option<String>,
    pub party: Option<u64>,
}

/// What the endpoint tells the doors about a party's media.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaEvent {
    /// The party's media ended; it no longer sends or receives.
    Ended {
        key: PartyKey,
        uin: Uin,
        reason: MediaEndReason,
    },
    /// What the party is actually sending changed.
    Sending {
        key: PartyKey,
        uin: Uin,
        audio: bool,
        video: bool,
    },
    /// Which party each of the party's receive slots shows now (after its media opened,
    /// and whenever one of them changes): for the party's own client only.
    Slots {
        key: PartyKey,
        uin: Uin,
        slots: Vec<MediaSlot>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// The offer is not one the endpoint can answer (bad SDP, missing fields).
    #[error("bad offer: {0}")]
    BadOffer(String),
    /// The conference has `max_parties_per_conference` parties with media already.
    #[error("conference is full")]
    Full,
    /// The endpoint is not running.
    #[error("media endpoint unavailable")]
    Unavailable,
}

/// The server's WebRTC endpoint. Every party of a conference that has opened its media
/// receives every other party's audio and video.
#[async_trait]
pub trait MediaEndpoint: Send + Sync + 'static {
    /// Opens (or replaces) the party's media from its offer and answers it.
    async fn open(
        &self,
        key: PartyKey,
        uin: Uin,
        offer: MediaOffer,
    ) -> Result<MediaAnswer, MediaError>;
    /// Ends the party's media; a `MediaEvent::Ended` with `Closed` follows. Unknown keys are
    /// ignored.
    async fn close(&self, key: PartyKey);
    /// Every media event from now on. A receiver that lags loses the oldest events.
    fn events(&self) -> tokio::sync::broadcast::Receiver<MediaEvent>;
}
