//! confer's own WebRTC media endpoint (the SFU), behind the core's `MediaEndpoint` seam.
//!
//! # Layout
//! - [`Sfu`] (this file): the handle doors talk to. `open` builds a party's `Rtc` from its
//!   offer (ICE-lite, DTLS-SRTP, Opus + VP8 only) and hands it to the driver; `close` asks
//!   the driver to end it; `events` is the broadcast of `MediaEvent`s.
//! - `driver`: the one task that owns the UDP socket and every party's `Rtc`: it
//!   demultiplexes datagrams (STUN by our ICE ufrag, everything else by remote address),
//!   drives the `Rtc`s' clocks and forwards media between the parties of a conference.
//! - `slots`: which other party each receive slot of a party shows (pure, unit-tested).
//! - `synthetic`: a str0m client that sends generated frames and counts what it receives
//!   (the tests' and `confer-bench sfu`'s peer).
//! - `sdp`: the SDP built for clients that send only ICE credentials and a fingerprint, the
//!   bitrate line added to answers, and one media stream id per receive slot in them.
//!
//! **Forwarding decision: fixed receive slots, no renegotiation.** A party's offer
//! decides, once, how many others it can see and hear: its first audio and first video
//! line that send are what it sends; every audio and video line that receives (the
//! sendrecv ones included) is a receive slot, the n-th audio and n-th video line making
//! slot n. Each slot shows one other party of the conference, in join order; when that
//! party leaves, the slot is given to the next one not yet shown. The frames are written
//! into the slot's own stream (str0m repacketizes them with the slot's SSRC and sequence
//! numbers), so the simplest client, one sendrecv audio + one sendrecv video line,
//! receives the first other party on those very lines, and nobody renegotiates when
//! people come and go.

mod driver;
mod sdp;
mod slots;
pub mod synthetic;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use confer_core::media::{
    MediaAnswer, MediaEndpoint, MediaError, MediaEvent, MediaOffer, PartyKey,
};
use confer_core::metrics::Metrics;
use confer_core::Uin;
use str0m::change::SdpOffer;
use str0m::config::DtlsCert;
use str0m::crypto::CryptoProvider;
use str0m::{Candidate, Rtc};
use tokio::sync::{broadcast, mpsc, oneshot};

pub use driver::Command;

/// How many media events a lagging receiver of [`Sfu::events`] may fall behind.
const EVENT_CAPACITY: usize = 1024;
/// Commands (open, close) waiting for the driver.
const COMMAND_CAPACITY: usize = 256;
/// An offer's SDP larger than this is refused before parsing.
const MAX_OFFER_BYTES: usize = 64 * 1024;

/// What the endpoint is configured with (from the server's `Config`).
#[derive(Debug, Clone)]
pub struct SfuConfig {
    /// The one UDP socket every party's media goes through (`media_udp_bind`).
    pub bind: SocketAddr,
    /// The address announced to clients when it differs from the bound one
    /// (`media_public_ip`); required when `bind` is a wildcard address.
    pub public_ip: Option<IpAddr>,
    /// At most this many parties of one conference have media at once.
    pub max_parties_per_conference: usize,
    /// What one party may send, in kbit/s (audio and video together): announced in the
    /// answer (`b=AS`) and enforced on what is forwarded.
    pub party_max_kbps: u32,
    /// A party whose ICE and DTLS have not connected this long after `open` is ended.
    pub connect_timeout: Duration,
}

impl Default for SfuConfig {
    fn default() -> Self {
        SfuConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            public_ip: None,
            max_parties_per_conference: 16,
            party_max_kbps: 2500,
            connect_timeout: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SfuError {
    #[error("media_udp_bind {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    #[error("media_udp_bind is a wildcard address ({0}): set media_public_ip to the address clients reach")]
    NoPublicAddress(SocketAddr),
    #[error("DTLS certificate: {0}")]
    Certificate(String),
}

/// The running endpoint. Dropping the last handle stops the driver.
pub struct Sfu {
    commands: mpsc::Sender<Command>,
    events: broadcast::Sender<MediaEvent>,
    /// The address clients send media to.
    public: SocketAddr,
    crypto: Arc<CryptoProvider>,
    /// One certificate for every party: generating one per call costs a key generation.
    cert: DtlsCert,
    config: SfuConfig,
}

impl Sfu {
    /// Binds the socket and starts the driver task on the current runtime.
    pub async fn start(config: SfuConfig, metrics: Arc<Metrics>) -> Result<Arc<Sfu>, SfuError> {
        let socket = tokio::net::UdpSocket::bind(config.bind)
            .await
            .map_err(|e| SfuError::Bind(config.bind, e))?;
        let local = socket
            .local_addr()
            .map_err(|e| SfuError::Bind(config.bind, e))?;
        let public = match config.public_ip {
            Some(ip) => SocketAddr::new(ip, local.port()),
            None if local.ip().is_unspecified() => return Err(SfuError::NoPublicAddress(local)),
            None => local,
        };
        let crypto = Arc::new(str0m::crypto::from_feature_flags());
        let cert = crypto
            .dtls_provider
            .generate_certificate()
            .ok_or_else(|| SfuError::Certificate("could not generate one".into()))?;
        let (commands, command_rx) = mpsc::channel(COMMAND_CAPACITY);
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let driver = driver::Driver::new(
            socket,
            public,
            config.clone(),
            metrics,
            events.clone(),
            command_rx,
        );
        tokio::spawn(driver.run());
        tracing::info!(%local, %public, "media endpoint listening");
        Ok(Arc::new(Sfu {
            commands,
            events,
            public,
            crypto,
            cert,
            config,
        }))
    }

    /// The address clients send media to (the announced one).
    pub fn public_addr(&self) -> SocketAddr {
        self.public
    }

    fn build_rtc(&self) -> Rtc {
        Rtc::builder()
            .set_ice_lite(true)
            .set_crypto_provider(self.crypto.clone())
            .set_dtls_cert(self.cert.clone())
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(true)
            .build(Instant::now())
    }
}

#[async_trait]
impl MediaEndpoint for Sfu {
    async fn open(
        &self,
        key: PartyKey,
        uin: Uin,
        offer: MediaOffer,
    ) -> Result<MediaAnswer, MediaError> {
        let sdp = match (&offer.sdp, &offer.ufrag, &offer.pwd, &offer.fingerprint) {
            (Some(sdp), _, _, _) if !sdp.trim().is_empty() => sdp.clone(),
            (_, Some(ufrag), Some(pwd), Some(fingerprint)) => {
                sdp::offer_from_credentials(ufrag, pwd, fingerprint)?
            }
            _ => {
                return Err(MediaError::BadOffer(
                    "sdp, or ufrag + pwd + fingerprint, is required".into(),
                ))
            }
        };
        if sdp.len() > MAX_OFFER_BYTES {
            return Err(MediaError::BadOffer("sdp is too large".into()));
        }
        let parsed = SdpOffer::from_sdp_string(&sdp)
            .map_err(|e| MediaError::BadOffer(format!("sdp: {e}")))?;
        let mut rtc = self.build_rtc();
        let candidate = Candidate::host(self.public, "udp")
            .map_err(|e| MediaError::BadOffer(format!("local candidate: {e}")))?;
        rtc.add_local_candidate(candidate);
        let answer = rtc
            .sdp_api()
            .accept_offer(parsed)
            .map_err(|e| MediaError::BadOffer(format!("offer not accepted: {e}")))?;
        let creds = rtc.direct_api().local_ice_credentials();
        let fingerprint = rtc.direct_api().local_dtls_fingerprint().to_string();
        let answer_sdp = sdp::with_slot_streams(&sdp::with_bitrate(
            &answer.to_sdp_string(),
            self.config.party_max_kbps,
        ));
        let (reply, admitted) = oneshot::channel();
        let open = Command::Open {
            key,
            uin,
            ufrag: creds.ufrag.clone(),
            rtc: Box::new(rtc),
            reply,
        };
        self.commands
            .send(open)
            .await
            .map_err(|_| MediaError::Unavailable)?;
        admitted.await.map_err(|_| MediaError::Unavailable)??;
        Ok(MediaAnswer {
            ufrag: creds.ufrag,
            pwd: creds.pass,
            fingerprint,
            ip: self.public.ip().to_string(),
            port: self.public.port(),
            sdp: answer_sdp,
        })
    }

    async fn close(&self, key: PartyKey) {
        let _ = self.commands.send(Command::Close { key }).await;
    }

    fn events(&self) -> broadcast::Receiver<MediaEvent> {
        self.events.subscribe()
    }
}
