//! FCM HTTP v1: `POST {endpoint}/v1/projects/{project_id}/messages:send` with an OAuth2
//! access token, obtained from the service account's key by the JWT bearer grant (RS256,
//! scope `firebase.messaging`) and kept until a minute before it expires. Messages carry
//! a notification (title, body) and string data; calls are data-only, high priority.
//! `UNREGISTERED` (404) and 410 remove the token.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use confer_core::model::{PushDelivery, PushKind};
use serde::Deserialize;
use tokio::sync::Mutex;

use crate::jwt::{now_secs, Signer};
use crate::{classify, client, collapse_id, network, FcmConfig, Outcome, Provider, PushError};

const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";

#[derive(Deserialize)]
struct ServiceAccount {
    project_id: String,
    client_email: String,
    private_key: String,
    #[serde(default)]
    token_uri: Option<String>,
}

pub struct Fcm {
    send_url: String,
    token_url: String,
    client_email: String,
    signer: Signer,
    http: reqwest::Client,
    /// The access token and when to fetch a new one.
    token: Mutex<Option<(String, Instant)>>,
}

impl Fcm {
    pub fn new(config: &FcmConfig) -> Result<Self, PushError> {
        let text = std::fs::read_to_string(&config.service_account)
            .map_err(|e| PushError::Key(format!("{}: {e}", config.service_account.display())))?;
        let account: ServiceAccount = serde_json::from_str(&text)
            .map_err(|e| PushError::Key(format!("{}: {e}", config.service_account.display())))?;
        let token_url = config
            .token_url
            .clone()
            .or(account.token_uri)
            .unwrap_or_else(|| "https://oauth2.googleapis.com/token".into());
        Ok(Fcm {
            send_url: format!(
                "{}/v1/projects/{}/messages:send",
                config.endpoint.trim_end_matches('/'),
                account.project_id
            ),
            token_url,
            client_email: account.client_email,
            signer: Signer::rs256(&account.private_key)?,
            http: client(reqwest::Client::builder())?,
            token: Mutex::new(None),
        })
    }

    /// A valid access token, fetched when none is held or it is about to expire.
    async fn access_token(&self) -> Result<String, Outcome> {
        let mut held = self.token.lock().await;
        if let Some((token, renew_at)) = held.as_ref() {
            if Instant::now() < *renew_at {
                return Ok(token.clone());
            }
        }
        let now = now_secs();
        let assertion = self
            .signer
            .sign(
                None,
                &serde_json::json!({
                    "iss": self.client_email,
                    "scope": SCOPE,
                    "aud": self.token_url,
                    "iat": now,
                    "exp": now + 3600,
                }),
            )
            .map_err(|e| Outcome::Failed(e.to_string()))?;
        let form = format!(
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={assertion}"
        );
        let resp = self
            .http
            .post(&self.token_url)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(form)
            .send()
            .await
            .map_err(|e| network(&e))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(match classify(status, resp.headers()) {
                Outcome::Retry(after) => Outcome::Retry(after),
                _ => Outcome::Failed(format!("FCM token grant: HTTP {status}")),
            });
        }
        #[derive(Deserialize)]
        struct Grant {
            access_token: String,
            #[serde(default)]
            expires_in: Option<u64>,
        }
        let text = resp.text().await.map_err(|e| network(&e))?;
        let grant: Grant = serde_json::from_str(&text)
            .map_err(|e| Outcome::Failed(format!("FCM token grant: {e}")))?;
        let lifetime = grant.expires_in.unwrap_or(3600).saturating_sub(60).max(1);
        *held = Some((
            grant.access_token.clone(),
            Instant::now() + Duration::from_secs(lifetime),
        ));
        Ok(grant.access_token)
    }
}

/// The `message` FCM is sent for a delivery.
pub fn message(d: &PushDelivery) -> serde_json::Value {
    let mut data = serde_json::json!({
        "kind": d.kind.name(),
        "group_id": d.group_id.to_string(),
        "badge": d.badge.to_string(),
        "title": d.title,
    });
    if let Some(id) = d.message_id {
        data["message_id"] = id.to_string().into();
    }
    if let Some(id) = d.call_id {
        data["call_id"] = id.to_string().into();
    }
    let mut message = serde_json::json!({
        "token": d.token,
        "data": data,
        "android": {"priority": "high", "collapse_key": collapse_id(d)},
    });
    if d.kind == PushKind::Message {
        let mut notification = serde_json::json!({"title": d.title});
        if let Some(body) = &d.body {
            notification["body"] = body.clone().into();
        }
        message["notification"] = notification;
        message["android"]["notification"] = serde_json::json!({"tag": collapse_id(d)});
    }
    serde_json::json!({ "message": message })
}

#[async_trait]
impl Provider for Fcm {
    fn name(&self) -> &'static str {
        "fcm"
    }

    async fn send(&self, d: &PushDelivery) -> Outcome {
        let token = match self.access_token().await {
            Ok(t) => t,
            Err(outcome) => return outcome,
        };
        let resp = match self
            .http
            .post(&self.send_url)
            .bearer_auth(&token)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(message(d).to_string())
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => return network(&e),
        };
        let status = resp.status();
        let outcome = classify(status, resp.headers());
        if status == reqwest::StatusCode::UNAUTHORIZED {
            // The token was revoked early: fetch another next time.
            *self.token.lock().await = None;
            return Outcome::Retry(None);
        }
        if let Outcome::Failed(_) = outcome {
            let text = resp.text().await.unwrap_or_default();
            if text.contains("UNREGISTERED")
                || (status == reqwest::StatusCode::NOT_FOUND)
                || (text.contains("INVALID_ARGUMENT") && text.contains("registration token"))
            {
                return Outcome::DeadToken;
            }
            return Outcome::Failed(format!("FCM: HTTP {status}"));
        }
        outcome
    }
}
