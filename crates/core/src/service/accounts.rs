//! Accounts, passwords and login tokens.
//!
//! Every password is hashed and verified by the core's bounded hasher (`hasher.rs`);
//! password logins pass the per-account and per-address limits (`login_limits.rs`) first.
//! So does a sign-up (`register_account`, when `open_registration` is on): the same
//! password rules as `user add`, the same buckets as a login.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::auth;
use crate::error::{CoreError, CoreResult};
use crate::ids::Uin;
use crate::model::{now_us, Account, NewAccount, Principal, TokenRecord, ADMIN_LOGIN};
use crate::store::StoreError;

use super::Core;

/// The longest login accepted.
const MAX_LOGIN_LEN: usize = 256;

impl Core {
    /// Create an account. The password is hashed by the bounded hasher.
    pub async fn add_account(
        &self,
        login: &str,
        password: &str,
        uin: Option<u64>,
        name: Option<String>,
    ) -> CoreResult<Account> {
        if password.is_empty() {
            return Err(CoreError::InvalidValue("password must not be empty".into()));
        }
        check_new_login(login, uin)?;
        let password_hash = self.hasher.hash(password).await?;
        self.insert_account(login, password_hash, uin, name).await
    }

    /// Create an account from an existing Argon2 PHC hash (importing users from another
    /// system, or creating many test users without hashing each password).
    pub async fn import_account(
        &self,
        login: &str,
        password_hash: &str,
        uin: Option<u64>,
        name: Option<String>,
    ) -> CoreResult<Account> {
        check_new_login(login, uin)?;
        if !password_hash.starts_with("$argon2") || !self.hasher.accepts(password_hash) {
            return Err(CoreError::InvalidValue(
                "an Argon2 PHC hash is required, with at most the default memory cost".into(),
            ));
        }
        self.insert_account(login, password_hash.to_string(), uin, name)
            .await
    }

    async fn insert_account(
        &self,
        login: &str,
        password_hash: String,
        uin: Option<u64>,
        name: Option<String>,
    ) -> CoreResult<Account> {
        let new = NewAccount {
            uin: uin.map(Uin),
            login: login.to_string(),
            name,
            password_hash,
            created_at_us: now_us(),
        };
        match self.storage.create_account(new).await {
            Err(StoreError::Conflict(_)) => Err(CoreError::UserExists),
            other => Ok(other?),
        }
    }

    /// Sign-up: a client at `from` creates its own account, when the server's
    /// `open_registration` is on (else [`CoreError::Unauthorized`], before anything else).
    /// The login and password follow the rules of [`Core::add_account`]; the attempt
    /// takes a token from the login limits of the login and of the address first (else
    /// [`CoreError::LoginThrottled`], before any hashing). A created account keeps its
    /// tokens (so one address creates at most the address burst of accounts, then the
    /// per-minute rate); a taken login counts as a failed login and waits its delay, like
    /// a wrong password, so guessing logins costs the same either way.
    pub async fn register_account(
        &self,
        login: &str,
        password: &str,
        name: Option<String>,
        from: IpAddr,
    ) -> CoreResult<Account> {
        if !self.settings.open_registration {
            return Err(CoreError::Unauthorized);
        }
        if password.is_empty() {
            return Err(CoreError::InvalidValue("password must not be empty".into()));
        }
        check_new_login(login, None)?;
        let attempt = match self.login_limits.admit(login, from, Instant::now()) {
            Ok(attempt) => attempt,
            Err(retry_after) => {
                self.metrics.login_throttled();
                return Err(CoreError::LoginThrottled { retry_after });
            }
        };
        let created = self.add_account(login, password, None, name).await;
        match &created {
            Ok(_) => {}
            Err(CoreError::UserExists) => {
                let failures = self.login_limits.failed(&attempt);
                tokio::time::sleep(failed_login_delay(failures)).await;
            }
            Err(_) => self.login_limits.not_tried(&attempt, Instant::now()),
        }
        created
    }

    pub async fn list_accounts(&self) -> CoreResult<Vec<Account>> {
        Ok(self.storage.list_accounts().await?)
    }

    pub async fn set_password(&self, login: &str, password: &str) -> CoreResult<()> {
        if password.is_empty() {
            return Err(CoreError::InvalidValue("password must not be empty".into()));
        }
        let account = self
            .storage
            .account_by_login(login)
            .await?
            .ok_or(CoreError::UserNotFound)?;
        let hash = self.hasher.hash(password).await?;
        self.storage.set_password_hash(account.uin, hash).await?;
        // The old password's tokens go with it, and the sessions they opened (here at
        // once; a server in another process notices at its next token check).
        self.storage.delete_tokens_of(account.uin).await?;
        self.end_token_sessions_of(account.uin);
        Ok(())
    }

    /// Check a login and password from client address `from`: the configured admin, or an
    /// account. The attempt must first pass the login limits of the account and of the
    /// address (else [`CoreError::LoginThrottled`], before any hashing); an unknown user
    /// costs one Argon2 verification like a wrong password; a failure is answered after
    /// the doubling delay of the account's or address's recent failures.
    pub async fn authenticate_password(
        &self,
        login: &str,
        password: &str,
        from: IpAddr,
    ) -> CoreResult<Principal> {
        let attempt = match self.login_limits.admit(login, from, Instant::now()) {
            Ok(attempt) => attempt,
            Err(retry_after) => {
                self.metrics.login_throttled();
                return Err(CoreError::LoginThrottled { retry_after });
            }
        };
        let checked = self.check_password(login, password).await;
        match &checked {
            Ok(_) => self.login_limits.succeeded(&attempt, Instant::now()),
            Err(CoreError::InvalidCredentials) => {
                let failures = self.login_limits.failed(&attempt);
                tokio::time::sleep(failed_login_delay(failures)).await;
            }
            Err(_) => self.login_limits.not_tried(&attempt, Instant::now()),
        }
        checked
    }

    async fn check_password(&self, login: &str, password: &str) -> CoreResult<Principal> {
        if login == ADMIN_LOGIN {
            return match &self.settings.admin_password {
                Some(expected)
                    if auth::constant_time_eq(expected.as_bytes(), password.as_bytes()) =>
                {
                    Ok(admin_principal())
                }
                _ => Err(CoreError::InvalidCredentials),
            };
        }
        let account = self.storage.account_by_login(login).await?;
        let stored = account.as_ref().map(|a| a.password_hash.as_str());
        // Unknown users verify against a dummy hash: both answers cost the same.
        let matches = self.hasher.verify(password, stored).await?;
        match account {
            Some(account) if matches => Ok(Principal {
                uin: account.uin,
                login: account.login,
                admin: false,
            }),
            _ => Err(CoreError::InvalidCredentials),
        }
    }

    /// Issue a login token for an authenticated principal: the token and its expiry (µs).
    pub async fn issue_token(&self, who: &Principal) -> CoreResult<(String, i64)> {
        let token = auth::new_token();
        let lifetime = i64::try_from(self.settings.token_lifetime.as_micros()).unwrap_or(i64::MAX);
        let expires_at_us = now_us().saturating_add(lifetime);
        self.storage
            .insert_token(TokenRecord {
                token_hash: auth::token_hash(&token),
                uin: who.uin,
                login: who.login.clone(),
                expires_at_us,
            })
            .await?;
        Ok((token, expires_at_us))
    }

    /// The principal a token stands for; when `login` is given it must be the token's.
    pub async fn authenticate_token(
        &self,
        login: Option<&str>,
        token: &str,
    ) -> CoreResult<Principal> {
        let record = self
            .storage
            .token(auth::token_hash(token), now_us())
            .await?
            .ok_or(CoreError::InvalidCredentials)?;
        if login.is_some_and(|l| l != record.login) {
            return Err(CoreError::InvalidCredentials);
        }
        Ok(Principal {
            admin: record.login == ADMIN_LOGIN && record.uin == Uin(0),
            uin: record.uin,
            login: record.login,
        })
    }

    /// Revoke a token, stopping the live sessions opened with it; `false` if it was unknown.
    pub async fn revoke_token(&self, token: &str) -> CoreResult<bool> {
        let hash = auth::token_hash(token);
        let known = self.storage.delete_token(hash).await?;
        // Every connection that used it ends with it.
        self.end_token_sessions(hash);
        Ok(known)
    }

    /// Whether a user (account login or admin) exists.
    pub(super) async fn user_exists(&self, login: &str) -> CoreResult<bool> {
        Ok(login == ADMIN_LOGIN || self.storage.account_by_login(login).await?.is_some())
    }
}

/// The configured administrator.
pub fn admin_principal() -> Principal {
    Principal {
        uin: Uin(0),
        login: ADMIN_LOGIN.to_string(),
        admin: true,
    }
}

/// A login and number a new account may take.
fn check_new_login(login: &str, uin: Option<u64>) -> CoreResult<()> {
    if login.is_empty() || login.len() > MAX_LOGIN_LEN || login.chars().any(char::is_control) {
        return Err(CoreError::InvalidValue("login".into()));
    }
    if login == ADMIN_LOGIN {
        return Err(CoreError::InvalidValue(
            "the login 'admin' is reserved".into(),
        ));
    }
    if uin == Some(0) {
        return Err(CoreError::InvalidValue(
            "uin 0 is reserved for admin".into(),
        ));
    }
    if uin.is_some_and(|u| i64::try_from(u).is_err()) {
        return Err(CoreError::InvalidValue("uin out of range".into()));
    }
    Ok(())
}

/// How long to wait before answering a failed login, the `n`th recent one of its account
/// or address (whichever has more, on any connection): 100 ms, doubling, capped at 10 s.
pub fn failed_login_delay(failures: u32) -> Duration {
    let shift = failures.saturating_sub(1).min(7);
    Duration::from_millis((100u64 << shift).min(10_000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_login_delay_doubles_and_caps() {
        assert_eq!(failed_login_delay(1), Duration::from_millis(100));
        assert_eq!(failed_login_delay(2), Duration::from_millis(200));
        assert_eq!(failed_login_delay(3), Duration::from_millis(400));
        assert_eq!(failed_login_delay(30), Duration::from_millis(10_000));
    }
}
