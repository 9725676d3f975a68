//! The few JSON Web Tokens the providers ask for, signed with `ring`: RS256 (FCM's OAuth2
//! grant, from a service account's key) and ES256 (APNs provider tokens, VAPID). Keys are
//! PKCS#8 PEM, as Google's service accounts, Apple's `.p8` files and `openssl genpkey`
//! write them.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, KeyPair, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING, RSA_PKCS1_SHA256,
};

use crate::PushError;

/// The DER inside a PEM block (the first one).
pub fn pem_der(pem: &str) -> Result<Vec<u8>, PushError> {
    let body: String = pem
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .map(str::trim)
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .map_err(|e| PushError::Key(format!("not a PEM key: {e}")))
}

/// A key that signs JWTs.
pub enum Signer {
    Rs256(RsaKeyPair),
    Es256(EcdsaKeyPair),
}

impl Signer {
    pub fn rs256(pem: &str) -> Result<Self, PushError> {
        let der = pem_der(pem)?;
        RsaKeyPair::from_pkcs8(&der)
            .map(Signer::Rs256)
            .map_err(|e| PushError::Key(format!("not an RSA PKCS#8 key: {e}")))
    }

    pub fn es256(pem: &str) -> Result<Self, PushError> {
        let der = pem_der(pem)?;
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der, &SystemRandom::new())
            .map(Signer::Es256)
            .map_err(|e| PushError::Key(format!("not a P-256 PKCS#8 key: {e}")))
    }

    /// The uncompressed public point of an ES256 key (VAPID's `k`).
    pub fn ec_public_key(&self) -> Option<&[u8]> {
        match self {
            Signer::Es256(k) => Some(k.public_key().as_ref()),
            Signer::Rs256(_) => None,
        }
    }

    /// `header.claims.signature`, each part base64url; `kid` goes in the header if given.
    pub fn sign(&self, kid: Option<&str>, claims: &serde_json::Value) -> Result<String, PushError> {
        let alg = match self {
            Signer::Rs256(_) => "RS256",
            Signer::Es256(_) => "ES256",
        };
        let mut header = serde_json::json!({"alg": alg, "typ": "JWT"});
        if let Some(kid) = kid {
            header["kid"] = kid.into();
        }
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let rng = SystemRandom::new();
        let signature = match self {
            Signer::Rs256(key) => {
                let mut sig = vec![0; key.public().modulus_len()];
                key.sign(&RSA_PKCS1_SHA256, &rng, input.as_bytes(), &mut sig)
                    .map_err(|_| PushError::Key("RSA signing failed".into()))?;
                sig
            }
            Signer::Es256(key) => key
                .sign(&rng, input.as_bytes())
                .map_err(|_| PushError::Key("ECDSA signing failed".into()))?
                .as_ref()
                .to_vec(),
        };
        Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature)))
    }
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
