//! The generic webhook: every delivery as one JSON POST to `push_webhook_url`, signed in
//! `X-Confer-Signature: sha256=<hex HMAC-SHA256 of the body>` with `push_webhook_secret`.
//! Ids are decimal strings, as in the Chat API; `uin` is the recipient's.

use async_trait::async_trait;
use confer_core::model::PushDelivery;
use ring::hmac;

use crate::{classify, client, network, Outcome, Provider, PushError, WebhookConfig};

pub struct Webhook {
    url: String,
    key: Option<hmac::Key>,
    http: reqwest::Client,
}

impl Webhook {
    pub fn new(config: &WebhookConfig) -> Result<Self, PushError> {
        reqwest::Url::parse(&config.url)
            .map_err(|e| PushError::Config(format!("push_webhook_url: {e}")))?;
        Ok(Webhook {
            url: config.url.clone(),
            key: config
                .secret
                .as_ref()
                .map(|s| hmac::Key::new(hmac::HMAC_SHA256, s.as_bytes())),
            http: client(reqwest::Client::builder())?,
        })
    }
}

/// The webhook's JSON for a delivery.
pub fn body(d: &PushDelivery) -> String {
    let mut json = serde_json::json!({
        "kind": d.kind.name(),
        "uin": d.uin.to_string(),
        "token_type": d.token_type,
        "token": d.token,
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

/// `sha256=<hex>` of `body` under `key`.
pub fn signature(key: &hmac::Key, body: &[u8]) -> String {
    format!("sha256={}", hex::encode(hmac::sign(key, body).as_ref()))
}

#[async_trait]
impl Provider for Webhook {
    fn name(&self) -> &'static str {
        "webhook"
    }

    async fn send(&self, d: &PushDelivery) -> Outcome {
        let body = body(d);
        let mut req = self
            .http
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        if let Some(key) = &self.key {
            req = req.header("X-Confer-Signature", signature(key, body.as_bytes()));
        }
        match req.body(body).send().await {
            Ok(resp) => classify(resp.status(), resp.headers()),
            Err(e) => network(&e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_the_hex_hmac_of_the_body() {
        // RFC 4231 test case 2.
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"Jefe");
        assert_eq!(
            signature(&key, b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
