//! TURN credentials: the ICE servers a client behind NAT is given, whichever door it
//! calls through (the conference door's `conf.webrtc.servdesc`, the Chat API's
//! `create_call`/`answer_call` answers).
//!
//! The credentials are those of the TURN REST API (draft-uberti-behave-turn-rest), which
//! coturn's `use-auth-secret` / `static-auth-secret` checks without asking us: the
//! username is `<expiry unix time>:<uin>`, the password `base64(HMAC-SHA1(secret,
//! username))`. Nothing is stored; a credential is valid until its expiry, for anyone who
//! holds it, so its lifetime (`turn_ttl_secs`) is the only bound on a leaked one.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use sha1::{Digest, Sha1};

use crate::ids::Uin;

/// What the binary configures.
#[derive(Clone, Debug, Default)]
pub struct TurnSettings {
    /// The secret shared with the TURN server; `None`: no TURN, STUN only.
    pub secret: Option<String>,
    /// How long a credential is valid.
    pub ttl: Duration,
    /// The TURN server's URLs (`turn:host:port?transport=udp`, …).
    pub urls: Vec<String>,
    /// A STUN server's URL (`stun:host:port`), given with or without TURN.
    pub stun_url: Option<String>,
}

/// Time-limited credentials for the TURN servers of [`TurnSettings::urls`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TurnCredentials {
    pub urls: Vec<String>,
    /// `<expiry unix time>:<uin>`.
    pub username: String,
    /// `base64(HMAC-SHA1(secret, username))`.
    pub credential: String,
    /// Unix time (seconds) the credentials stop working.
    pub expires_at: u64,
}

/// The ICE servers one client is given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IceServers {
    pub stun: Option<String>,
    /// `None` without a secret or without TURN URLs.
    pub turn: Option<TurnCredentials>,
}

impl TurnSettings {
    /// The ICE servers for user `uin`, valid from now for `ttl`.
    pub fn ice_servers(&self, uin: Uin) -> IceServers {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.ice_servers_at(uin, now)
    }

    /// [`TurnSettings::ice_servers`] at unix time `now` (seconds).
    pub fn ice_servers_at(&self, uin: Uin, now: u64) -> IceServers {
        let turn = match &self.secret {
            Some(secret) if !self.urls.is_empty() => {
                let expires_at = now.saturating_add(self.ttl.as_secs());
                let username = format!("{expires_at}:{}", uin.0);
                Some(TurnCredentials {
                    urls: self.urls.clone(),
                    credential: credential(secret, &username),
                    username,
                    expires_at,
                })
            }
            _ => None,
        };
        IceServers {
            stun: self.stun_url.clone().filter(|s| !s.is_empty()),
            turn,
        }
    }
}

/// The TURN REST API password for `username`: `base64(HMAC-SHA1(secret, username))`.
pub fn credential(secret: &str, username: &str) -> String {
    base64::engine::general_purpose::STANDARD
        .encode(hmac_sha1(secret.as_bytes(), username.as_bytes()))
}

/// HMAC (RFC 2104) over SHA-1, whose block is 64 bytes.
fn hmac_sha1(key: &[u8], message: &[u8]) -> [u8; 20] {
    const BLOCK: usize = 64;
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..20].copy_from_slice(&Sha1::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.map(|b| b ^ byte);
    let inner = Sha1::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    let outer = Sha1::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize();
    outer.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_sha1_matches_rfc_2202() {
        // RFC 2202 test cases 2 and 6 (a key longer than the block).
        assert_eq!(
            hex::encode(hmac_sha1(b"Jefe", b"what do ya want for nothing?")),
            "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"
        );
        assert_eq!(
            hex::encode(hmac_sha1(
                &[0xaa; 80],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "aa4ae5e15272d00e95705637ce8a3b55ed402112"
        );
    }

    #[test]
    fn credentials_are_the_turn_rest_api_form() {
        let turn = TurnSettings {
            secret: Some("s3cret".into()),
            ttl: Duration::from_secs(60),
            urls: vec!["turn:127.0.0.1:3478".into()],
            stun_url: Some("stun:127.0.0.1:3478".into()),
        };
        let ice = turn.ice_servers_at(Uin(7), 1_000);
        let creds = ice.turn.unwrap_or_else(|| panic!("no TURN credentials"));
        assert_eq!(creds.username, "1060:7");
        assert_eq!(creds.expires_at, 1060);
        assert_eq!(creds.credential, credential("s3cret", "1060:7"));
        assert_eq!(ice.stun.as_deref(), Some("stun:127.0.0.1:3478"));
        // Without a secret: STUN only.
        let stun_only = TurnSettings {
            secret: None,
            ..turn
        };
        assert_eq!(stun_only.ice_servers_at(Uin(7), 1_000).turn, None);
    }
}
