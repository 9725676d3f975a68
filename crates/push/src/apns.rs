//! APNs with token-based auth: `POST {endpoint}/3/device/{token}` over HTTP/2, signed by
//! an ES256 provider token from the `.p8` key (`kid` the key id, `iss` the team id),
//! renewed every 50 minutes (Apple refuses one older than an hour). Messages are
//! `apns-push-type: alert` to the bundle's topic with `apns-collapse-id` per group; a
//! call to a PushKit token (type 4) is `voip` to `<bundle>.voip`. 410 and
//! `BadDeviceToken` remove the token.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use confer_core::model::{PushDelivery, PushKind};
use tokio::sync::Mutex;

use crate::jwt::{now_secs, Signer};
use crate::{classify, client, collapse_id, network, ApnsConfig, Outcome, Provider, PushError};

/// A provider token is renewed after this long (Apple: at most one hour, at most one
/// renewal per 20 minutes).
const TOKEN_LIFETIME: Duration = Duration::from_secs(50 * 60);

pub struct Apns {
    endpoint: String,
    key_id: String,
    team_id: String,
    bundle_id: String,
    signer: Signer,
    http: reqwest::Client,
    token: Mutex<Option<(String, Instant)>>,
}

impl Apns {
    pub fn new(config: &ApnsConfig) -> Result<Self, PushError> {
        let pem = std::fs::read_to_string(&config.key)
            .map_err(|e| PushError::Key(format!("{}: {e}", config.key.display())))?;
        let mut builder = reqwest::Client::builder().http2_prior_knowledge();
        if let Some(ca) = &config.ca {
            let pem =
                std::fs::read(ca).map_err(|e| PushError::Key(format!("{}: {e}", ca.display())))?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| PushError::Key(format!("{}: {e}", ca.display())))?;
            builder = builder.add_root_certificate(cert);
        }
        Ok(Apns {
            endpoint: config.endpoint.trim_end_matches('/').to_string(),
            key_id: config.key_id.clone(),
            team_id: config.team_id.clone(),
            bundle_id: config.bundle_id.clone(),
            signer: Signer::es256(&pem)?,
            http: client(builder)?,
            token: Mutex::new(None),
        })
    }

    async fn provider_token(&self) -> Result<String, Outcome> {
        let mut held = self.token.lock().await;
        if let Some((token, made)) = held.as_ref() {
            if made.elapsed() < TOKEN_LIFETIME {
                return Ok(token.clone());
            }
        }
        let token = self
            .signer
            .sign(
                Some(&self.key_id),
                &serde_json::json!({"iss": self.team_id, "iat": now_secs()}),
            )
            .map_err(|e| Outcome::Failed(e.to_string()))?;
        *held = Some((token.clone(), Instant::now()));
        Ok(token)
    }
}

/// Whether a delivery goes to PushKit (a call to a VoIP token).
fn is_voip(d: &PushDelivery) -> bool {
    d.token_type == crate::TOKEN_PUSHKIT
}

/// The JSON APNs is sent for a delivery.
pub fn payload(d: &PushDelivery) -> serde_json::Value {
    let mut json = if is_voip(d) {
        serde_json::json!({"aps": {}})
    } else {
        let body = match d.kind {
            PushKind::Message => d.body.clone(),
            PushKind::Call => Some("Incoming call".to_string()),
            PushKind::CallCancelled => Some("Call ended".to_string()),
        };
        let mut alert = serde_json::json!({"title": d.title});
        if let Some(body) = body {
            alert["body"] = body.into();
        }
        serde_json::json!({"aps": {
            "alert": alert,
            "badge": d.badge,
            "sound": "default",
            "thread-id": format!("group-{}", d.group_id),
        }})
    };
    json["kind"] = d.kind.name().into();
    json["group_id"] = d.group_id.to_string().into();
    json["title"] = d.title.clone().into();
    if let Some(id) = d.message_id {
        json["message_id"] = id.to_string().into();
    }
    if let Some(id) = d.call_id {
        json["call_id"] = id.to_string().into();
    }
    json
}

#[async_trait]
impl Provider for Apns {
    fn name(&self) -> &'static str {
        "apns"
    }

    async fn send(&self, d: &PushDelivery) -> Outcome {
        if is_voip(d) && d.kind == PushKind::Message {
            // PushKit is for calls only: Apple ends apps that get other VoIP pushes.
            return Outcome::Failed("a message to a PushKit token".into());
        }
        let token = match self.provider_token().await {
            Ok(t) => t,
            Err(outcome) => return outcome,
        };
        let (push_type, topic) = if is_voip(d) {
            ("voip", format!("{}.voip", self.bundle_id))
        } else {
            ("alert", self.bundle_id.clone())
        };
        let url = format!("{}/3/device/{}", self.endpoint, d.token);
        let req = self
            .http
            .post(url)
            .header("authorization", format!("bearer {token}"))
            .header("apns-push-type", push_type)
            .header("apns-topic", topic)
            .header("apns-priority", "10")
            .header("apns-collapse-id", collapse_id(d))
            .body(payload(d).to_string());
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => return network(&e),
        };
        let status = resp.status();
        let outcome = classify(status, resp.headers());
        if let Outcome::Failed(_) = outcome {
            let text = resp.text().await.unwrap_or_default();
            if text.contains("BadDeviceToken") || text.contains("Unregistered") {
                return Outcome::DeadToken;
            }
            if text.contains("ExpiredProviderToken") {
                *self.token.lock().await = None;
                return Outcome::Retry(None);
            }
            return Outcome::Failed(format!("APNs: HTTP {status} {text}"));
        }
        outcome
    }
}
