//! # confer-push: push delivery to offline devices
//!
//! The core decides who gets a push and keeps the durable outbox (`core::service::push`);
//! this crate sends what it holds, speaking HTTP and JSON to the providers, which the core
//! never does.
//!
//! - [`worker`]: the loop that turns outbox entries into deliveries (through the core),
//!   sends those due with bounded concurrency per provider, and records each outcome:
//!   delivered, retried later (exponential backoff with jitter, or the provider's
//!   `Retry-After`), dropped (refused for good, or older than `push_max_age_secs`), or
//!   the token removed (the provider said it is dead).
//! - [`webhook`] (any token type, JSON signed with HMAC-SHA256), [`fcm`] (FCM HTTP v1,
//!   OAuth2 from a service account), [`apns`] (token auth, HTTP/2, alerts and PushKit
//!   VoIP), [`webpush`] (RFC 8030 + RFC 8291 `aes128gcm` + RFC 8292 VAPID).
//! - [`jwt`]: the RS256 and ES256 tokens they need, signed with `ring`.

pub mod apns;
pub mod fcm;
pub mod jwt;
pub mod webhook;
pub mod webpush;
pub mod worker;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use confer_core::model::PushDelivery;

pub use worker::{start, Worker};

/// Token types, as the Chat API numbers them.
pub const TOKEN_FCM: u8 = 1;
pub const TOKEN_APNS: u8 = 2;
pub const TOKEN_WEB: u8 = 3;
pub const TOKEN_PUSHKIT: u8 = 4;

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// A key or credentials file that cannot be used.
    #[error("push key: {0}")]
    Key(String),
    /// A setting that does not work (missing companion field, bad URL).
    #[error("push configuration: {0}")]
    Config(String),
}

/// What the providers need; built by the binary from its `Config`.
#[derive(Clone, Debug, Default)]
pub struct PushConfig {
    /// Requests in flight at once, per provider.
    pub concurrency: usize,
    /// A delivery not sent within this long after its event is dropped.
    pub max_age: Duration,
    /// The name this node claims deliveries under, unique among the nodes that share an
    /// outbox and the same across its restarts (the server's `node_id`).
    pub node: String,
    pub webhook: Option<WebhookConfig>,
    pub fcm: Option<FcmConfig>,
    pub apns: Option<ApnsConfig>,
    pub webpush: Option<WebPushConfig>,
}

#[derive(Clone, Debug)]
pub struct WebhookConfig {
    pub url: String,
    /// Signs each body (`X-Confer-Signature`); none, no header.
    pub secret: Option<String>,
}

#[derive(Clone, Debug)]
pub struct FcmConfig {
    /// The service account's JSON file (`project_id`, `client_email`, `private_key`,
    /// `token_uri`).
    pub service_account: PathBuf,
    /// Base URL of the FCM API (`https://fcm.googleapis.com`).
    pub endpoint: String,
    /// Overrides the service account's `token_uri`.
    pub token_url: Option<String>,
}

#[derive(Clone, Debug)]
pub struct ApnsConfig {
    /// The `.p8` key from Apple's developer account.
    pub key: PathBuf,
    pub key_id: String,
    pub team_id: String,
    /// The app's bundle id: the topic of alerts; PushKit's is `<bundle>.voip`.
    pub bundle_id: String,
    /// Base URL (`https://api.push.apple.com`, or the sandbox).
    pub endpoint: String,
    /// A PEM CA certificate to trust besides the public roots (a test or private gateway).
    pub ca: Option<PathBuf>,
}

#[derive(Clone, Debug)]
pub struct WebPushConfig {
    /// The VAPID key: a P-256 private key in PKCS#8 PEM.
    pub vapid_key: PathBuf,
    /// VAPID `sub`: a `mailto:` or `https:` contact for the push services.
    pub subject: String,
    /// Whether subscription endpoints may be plain `http://` (tests only: a subscription
    /// is client input, and the server POSTs to it).
    pub allow_http: bool,
}

impl PushConfig {
    /// The token types some provider delivers: with only a webhook, every type goes to
    /// it; otherwise each type to its own provider, the webhook taking the rest.
    pub fn token_types(&self) -> BTreeSet<u8> {
        let mut types = BTreeSet::new();
        if self.webhook.is_some() {
            types.extend([TOKEN_FCM, TOKEN_APNS, TOKEN_WEB, TOKEN_PUSHKIT]);
        }
        if self.fcm.is_some() {
            types.insert(TOKEN_FCM);
        }
        if self.apns.is_some() {
            types.extend([TOKEN_APNS, TOKEN_PUSHKIT]);
        }
        if self.webpush.is_some() {
            types.insert(TOKEN_WEB);
        }
        types
    }
}

/// How one attempt ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// Try again: after the provider's `Retry-After` when it gave one, else backing off.
    Retry(Option<Duration>),
    /// The provider says the token will never work again.
    DeadToken,
    /// Refused for good (a malformed request, a rejected credential).
    Failed(String),
}

/// A push service.
#[async_trait]
pub trait Provider: Send + Sync {
    /// Its label on `/metrics`.
    fn name(&self) -> &'static str;
    async fn send(&self, delivery: &PushDelivery) -> Outcome;
}

/// The common reading of a provider's HTTP answer: 2xx delivered, 410 dead, 429 and 5xx
/// retried (after `Retry-After` seconds when given), anything else failed.
pub(crate) fn classify(
    status: reqwest::StatusCode,
    headers: &reqwest::header::HeaderMap,
) -> Outcome {
    if status.is_success() {
        Outcome::Delivered
    } else if status == reqwest::StatusCode::GONE {
        Outcome::DeadToken
    } else if status == reqwest::StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        Outcome::Retry(retry_after(headers))
    } else {
        Outcome::Failed(format!("HTTP {status}"))
    }
}

/// `Retry-After` in seconds (the HTTP-date form is taken as "no hint").
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// A network error: the request may not have arrived; retried.
pub(crate) fn network(e: &reqwest::Error) -> Outcome {
    let mut why = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        why.push_str(": ");
        why.push_str(&cause.to_string());
        source = cause.source();
    }
    tracing::info!(error = %why, "push: network error, will retry");
    Outcome::Retry(None)
}

/// The collapse id of a delivery: one notification per group while unread, one per call.
pub(crate) fn collapse_id(d: &PushDelivery) -> String {
    match d.call_id {
        Some(call) => format!("call-{call}"),
        None => format!("group-{}", d.group_id),
    }
}

/// An HTTP client for the providers: rustls, a timeout, no redirects.
pub(crate) fn client(builder: reqwest::ClientBuilder) -> Result<reqwest::Client, PushError> {
    builder
        .timeout(Duration::from_secs(30))
        .connect_timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| PushError::Config(format!("HTTP client: {e}")))
}
