//! Session tokens, and password hashes for tools.
//!
//! The server hashes and verifies passwords only through the bounded
//! [`PasswordHasher`](crate::hasher::PasswordHasher). [`hash_password`] is for tools that
//! prepare hashes to import (the benchmark's users). Tokens are 32 random bytes from the
//! OS, given to the client in hex; only their SHA-256 is stored, so a leaked database does
//! not leak live tokens.

use argon2::password_hash::{rand_core::OsRng, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::error::{CoreError, CoreResult};

/// Hash a password with Argon2id's default parameters (those the server verifies), for
/// `import_account`. CPU-heavy: not for the async executor, nor for the server itself.
pub fn hash_password(password: &str) -> CoreResult<String> {
    hash_password_with(password, Params::default())
}

/// Hash a password with the given parameters, with argon2's own PHC encoding.
pub fn hash_password_with(password: &str, params: Params) -> CoreResult<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| CoreError::Internal(format!("argon2: {e}")))
}

/// A new random token: 256 bits, hex-encoded.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// The form in which a token is stored and looked up.
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Compare two secrets in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_hashes_are_argon2id_phc_strings() {
        let h = hash_password("s3cret").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
    }

    #[test]
    fn tokens_are_long_random_and_distinct() {
        let a = new_token();
        let b = new_token();
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        assert_ne!(token_hash(&a), token_hash(&b));
    }

    #[test]
    fn constant_time_eq_compares_content() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
