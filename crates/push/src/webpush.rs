//! Web Push: RFC 8030 delivery to the subscription's endpoint, the payload encrypted as
//! RFC 8291 `aes128gcm` (ECDH P-256 with the browser's `p256dh`, HKDF-SHA-256 with its
//! `auth` secret, one AES-128-GCM record), authorized by RFC 8292 VAPID (an ES256 JWT for
//! the endpoint's origin, and the key's public point in `k`). A Web token is the browser's
//! subscription JSON: `{"endpoint": …, "keys": {"p256dh": …, "auth": …}}`. 404 and 410
//! remove the token.

use async_trait::async_trait;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use confer_core::model::{PushDelivery, PushKind};
use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM};
use ring::agreement::{self, EphemeralPrivateKey, UnparsedPublicKey, ECDH_P256};
use ring::hkdf::{KeyType, Salt, HKDF_SHA256};
use ring::rand::{SecureRandom, SystemRandom};
use serde::Deserialize;

use crate::jwt::{now_secs, Signer};
use crate::{classify, client, network, Outcome, Provider, PushError, WebPushConfig};

/// The record size written in the header: the payload always fits one record.
const RECORD_SIZE: u32 = 4096;

#[derive(Deserialize)]
struct Subscription {
    endpoint: String,
    keys: Keys,
}

#[derive(Deserialize)]
struct Keys {
    p256dh: String,
    auth: String,
}

pub struct WebPush {
    signer: Signer,
    public_key: String,
    subject: String,
    allow_http: bool,
    http: reqwest::Client,
}

impl WebPush {
    pub fn new(config: &WebPushConfig) -> Result<Self, PushError> {
        let pem = std::fs::read_to_string(&config.vapid_key)
            .map_err(|e| PushError::Key(format!("{}: {e}", config.vapid_key.display())))?;
        let signer = Signer::es256(&pem)?;
        let public_key = URL_SAFE_NO_PAD.encode(
            signer
                .ec_public_key()
                .ok_or_else(|| PushError::Key("VAPID needs a P-256 key".into()))?,
        );
        Ok(WebPush {
            signer,
            public_key,
            subject: config.subject.clone(),
            allow_http: config.allow_http,
            http: client(reqwest::Client::builder())?,
        })
    }

    /// The application server's public key, as browsers take it (`applicationServerKey`).
    pub fn public_key(&self) -> &str {
        &self.public_key
    }
}

struct Len(usize);

impl KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

fn hkdf(
    salt: &[u8],
    ikm: &[u8],
    info: &[u8],
    len: usize,
) -> Result<Vec<u8>, ring::error::Unspecified> {
    let prk = Salt::new(HKDF_SHA256, salt).extract(ikm);
    let mut out = vec![0; len];
    prk.expand(&[info], Len(len))?.fill(&mut out)?;
    Ok(out)
}

/// RFC 8291: `payload` encrypted for the browser key `ua_public` (65 bytes) and `auth`
/// (16 bytes), as one `aes128gcm` record with its header.
pub fn encrypt(
    payload: &[u8],
    ua_public: &[u8],
    auth: &[u8],
) -> Result<Vec<u8>, ring::error::Unspecified> {
    let rng = SystemRandom::new();
    let private = EphemeralPrivateKey::generate(&ECDH_P256, &rng)?;
    let as_public = private.compute_public_key()?;
    let shared = agreement::agree_ephemeral(
        private,
        &UnparsedPublicKey::new(&ECDH_P256, ua_public),
        |secret| secret.to_vec(),
    )?;
    let mut key_info = b"WebPush: info\0".to_vec();
    key_info.extend_from_slice(ua_public);
    key_info.extend_from_slice(as_public.as_ref());
    let ikm = hkdf(auth, &shared, &key_info, 32)?;
    let mut salt = [0u8; 16];
    rng.fill(&mut salt)?;
    let cek = hkdf(&salt, &ikm, b"Content-Encoding: aes128gcm\0", 16)?;
    let nonce = hkdf(&salt, &ikm, b"Content-Encoding: nonce\0", 12)?;
    let key = LessSafeKey::new(UnboundKey::new(&AES_128_GCM, &cek)?);
    let mut record = payload.to_vec();
    record.push(2); // the last record's delimiter, no padding
    let nonce: [u8; aead::NONCE_LEN] = nonce.try_into().map_err(|_| ring::error::Unspecified)?;
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::empty(),
        &mut record,
    )?;
    let mut body = Vec::with_capacity(16 + 4 + 1 + 65 + record.len());
    body.extend_from_slice(&salt);
    body.extend_from_slice(&RECORD_SIZE.to_be_bytes());
    body.push(as_public.as_ref().len() as u8);
    body.extend_from_slice(as_public.as_ref());
    body.extend_from_slice(&record);
    Ok(body)
}

/// What the service worker receives (the webhook's fields without the token).
pub fn payload(d: &PushDelivery) -> String {
    let mut json = serde_json::json!({
        "kind": d.kind.name(),
        "group_id": d.group_id.to_string(),
        "title": d.title,
        "badge": d.badge,
    });
    if let Some(id) = d.message_id {
        json["message_id"] = id.to_string().into();
    }
    if let Some(id) = d.call_id {
        json["call_id"] = id.to_string().into();
    }
    if let Some(body) = &d.body {
        json["body"] = body.clone().into();
    }
    json.to_string()
}

fn b64(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .ok()
        .or_else(|| base64::engine::general_purpose::STANDARD.decode(text).ok())
}

#[async_trait]
impl Provider for WebPush {
    fn name(&self) -> &'static str {
        "webpush"
    }

    async fn send(&self, d: &PushDelivery) -> Outcome {
        // A token that is no subscription can never work: it is dropped like a dead one.
        let Ok(sub) = serde_json::from_str::<Subscription>(&d.token) else {
            return Outcome::DeadToken;
        };
        let (Some(ua_public), Some(auth)) = (b64(&sub.keys.p256dh), b64(&sub.keys.auth)) else {
            return Outcome::DeadToken;
        };
        let Ok(url) = reqwest::Url::parse(&sub.endpoint) else {
            return Outcome::DeadToken;
        };
        if url.scheme() != "https" && !(self.allow_http && url.scheme() == "http") {
            return Outcome::DeadToken;
        }
        let audience = url.origin().ascii_serialization();
        let jwt = match self.signer.sign(
            None,
            &serde_json::json!({"aud": audience, "exp": now_secs() + 12 * 3600, "sub": self.subject}),
        ) {
            Ok(j) => j,
            Err(e) => return Outcome::Failed(e.to_string()),
        };
        let Ok(body) = encrypt(payload(d).as_bytes(), &ua_public, &auth) else {
            return Outcome::DeadToken;
        };
        let urgency = if d.kind == PushKind::Message {
            "normal"
        } else {
            "high"
        };
        let topic = crate::collapse_id(d);
        let resp = self
            .http
            .post(url)
            .header(
                "authorization",
                format!("vapid t={jwt}, k={}", self.public_key),
            )
            .header("content-encoding", "aes128gcm")
            .header("content-type", "application/octet-stream")
            .header("ttl", "86400")
            .header("urgency", urgency)
            .header("topic", topic)
            .body(body)
            .send()
            .await;
        match resp {
            Ok(resp) if resp.status() == reqwest::StatusCode::NOT_FOUND => Outcome::DeadToken,
            Ok(resp) => classify(resp.status(), resp.headers()),
            Err(e) => network(&e),
        }
    }
}
