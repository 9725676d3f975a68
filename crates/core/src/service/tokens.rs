//! Live sessions end with the login token they were opened with.
//!
//! A session opened with a token from `POST /api/v1/login` (every Chat API socket, an
//! External API `login {user, token}`) carries the token's hash in its [`SessionInfo`].
//! When the token is revoked (logout, a password change) or expires, every such session
//! is stopped with [`TOKEN_ENDED_STOP_CODE`]: the Chat API says `login {result: 2}` and
//! disconnects, the External API closes (1008, "token revoked or expired").
//!
//! Revocations in this process end their sessions at once; with several nodes, on every
//! node at once (the registry delivers the stop where they are). For those made by
//! another process on the same database (`confer user passwd`), and for expiry, every
//! `token_check_interval_ms` each node looks at its own sessions
//! (`SessionRegistry::local_sessions`) with a [`TokenWatch`], and the cost does not grow
//! with the sessions it holds:
//!
//! - a token is read from storage once, when a session with it is first seen (one indexed
//!   read per distinct token), and its expiry is remembered: **expiry is checked in
//!   memory**;
//! - **revocations are learnt from the store's revocation log**
//!   ([`TokenStore::revoked_tokens`]): one range read of what was revoked since the last
//!   check, looking back [`LOOK_BACK_US`] further for the revoking process's clock and
//!   commit delay (a revocation seen twice stops nothing twice: its sessions are gone).
//!
//! Where the log cannot answer (the first check, a check after a pause longer than half
//! of the log's [`TOKEN_REVOCATIONS_KEPT_US`], more revocations than one read takes),
//! every token is read again, as the first time.
//!
//! [`TokenStore::revoked_tokens`]: crate::store::TokenStore::revoked_tokens

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::bus::{Delivery, SessionInfo};
use crate::ids::Uin;
use crate::model::now_us;
use crate::store::TOKEN_REVOCATIONS_KEPT_US;

use super::{Core, CHAT_DOOR};

/// The stop code of a session whose token was revoked or expired (the External API's
/// "unauthorized"; the Chat API says `login {result: 2}`).
pub const TOKEN_ENDED_STOP_CODE: u64 = 100030;

/// Tokens checked per storage read.
const CHECK_BATCH: usize = 256;

/// How much earlier than the last check a check asks the revocation log from: the
/// revoking process's clock may be behind this node's, and its commit come later than the
/// time it wrote.
const LOOK_BACK_US: i64 = 60_000_000;

/// The most revocations one check reads; with more, it reads every token again instead.
const MAX_REVOCATIONS: usize = 10_000;

/// What one node's checks remember between them (see the module doc).
#[derive(Debug, Default)]
struct TokenWatch {
    /// The tokens of this node's sessions read from storage already, with their expiry.
    known: HashMap<[u8; 32], i64>,
    /// When the last check that read the revocation log (or every token) began.
    checked_at_us: Option<i64>,
}

impl Core {
    /// Stop every live session opened with the token of this hash; how many.
    pub(super) fn end_token_sessions(&self, token_hash: [u8; 32]) -> usize {
        let ended: Vec<SessionInfo> = self
            .registry
            .all_sessions()
            .into_iter()
            .filter(|s| s.token_hash == Some(token_hash))
            .collect();
        self.stop_token_sessions(&ended);
        ended.len()
    }

    /// Stop the live sessions of a user that were opened with a token (its tokens were
    /// all revoked).
    pub(super) fn end_token_sessions_of(&self, uin: Uin) {
        let ended: Vec<SessionInfo> = self
            .registry
            .sessions_of_uin(uin)
            .into_iter()
            .filter(|s| s.token_hash.is_some())
            .collect();
        self.stop_token_sessions(&ended);
    }

    fn stop_token_sessions(&self, sessions: &[SessionInfo]) {
        for s in sessions {
            tracing::info!(user = %s.user, session = %s.session_id, "token ended: session stopped");
            let stop = Delivery::Stop {
                code: TOKEN_ENDED_STOP_CODE,
                reason: "token revoked or expired".into(),
            };
            // A full queue has cut the session already; a closed one is gone.
            let _ = self.registry.deliver(&s.session_id, stop);
        }
    }

    /// Check the token of every live session of this node once; stop the sessions whose
    /// token was revoked (here or by another process) or has expired. How many were
    /// stopped. `watch` carries what earlier checks learnt (the module doc).
    async fn check_tokens(&self, watch: &mut TokenWatch) -> usize {
        let mut by_token: HashMap<[u8; 32], Vec<SessionInfo>> = HashMap::new();
        // Each node checks its own sessions; revocations here stop every node's at once.
        for s in self.registry.local_sessions() {
            if let Some(hash) = s.token_hash {
                by_token.entry(hash).or_default().push(s);
            }
        }
        let started = now_us();
        let mut ended = 0;
        // Stop a token's sessions here, once: they leave `by_token`.
        let mut stop = |by_token: &mut HashMap<[u8; 32], Vec<SessionInfo>>, hash: &[u8; 32]| {
            if let Some(sessions) = by_token.remove(hash) {
                self.stop_token_sessions(&sessions);
                ended += sessions.len();
            }
        };
        // Revocations since the last check, or every token again when the log cannot say.
        let log_covers = watch
            .checked_at_us
            .filter(|at| started.saturating_sub(*at) < TOKEN_REVOCATIONS_KEPT_US / 2);
        let mut log_read = true;
        match log_covers {
            Some(at) => {
                let since = at.saturating_sub(LOOK_BACK_US);
                match self.storage.revoked_tokens(since, MAX_REVOCATIONS).await {
                    Ok(revoked) if revoked.len() < MAX_REVOCATIONS => {
                        for hash in &revoked {
                            watch.known.remove(hash);
                            stop(&mut by_token, hash);
                        }
                    }
                    Ok(_) => watch.known.clear(),
                    // Storage trouble is not a revocation: ask from the same time next
                    // check; expiry is still checked below.
                    Err(e) => {
                        tracing::warn!(error = %e, "token check: storage unavailable");
                        log_read = false;
                    }
                }
            }
            None => watch.known.clear(),
        }
        // Expiry, in memory; and forget the tokens no session here holds any more.
        watch.known.retain(|hash, expires| {
            if *expires <= started {
                stop(&mut by_token, hash);
            }
            by_token.contains_key(hash)
        });
        // Tokens not read yet: read once, remember their expiry.
        let unread: Vec<[u8; 32]> = by_token
            .keys()
            .filter(|h| !watch.known.contains_key(*h))
            .copied()
            .collect();
        // A batch per read, so that a check never holds a reader for long.
        for batch in unread.chunks(CHECK_BATCH) {
            let live: HashMap<[u8; 32], i64> =
                match self.storage.live_tokens(batch.to_vec(), started).await {
                    Ok(live) => live.into_iter().collect(),
                    Err(e) => {
                        tracing::warn!(error = %e, "token check: storage unavailable");
                        break;
                    }
                };
            for hash in batch {
                match live.get(hash) {
                    Some(expires) => {
                        watch.known.insert(*hash, *expires);
                    }
                    None => stop(&mut by_token, hash),
                }
            }
        }
        if log_read {
            watch.checked_at_us = Some(started);
        }
        ended
    }

    /// Close the sessions a dead node left ([`SessionRegistry::orphans`]), as their
    /// doors would have: a chat session's user goes offline for its peers if it has no
    /// other chat session, grants resting on them are revoked; and say "stopped typing"
    /// for the typing the dead node left (`typing.rs`). How many sessions.
    ///
    /// [`SessionRegistry::orphans`]: crate::bus::SessionRegistry::orphans
    pub async fn close_orphans(&self) -> usize {
        let orphans = self.registry.orphans();
        for s in &orphans {
            tracing::info!(user = %s.user, session = %s.session_id, "session of a dead node closed");
            if s.door == CHAT_DOOR {
                self.close_chat_session(s).await;
            } else {
                self.close_session(s).await;
            }
        }
        self.close_orphan_typing().await;
        orphans.len()
    }

    /// Check this node's sessions' tokens (the module doc) and run [`Core::close_orphans`]
    /// every `interval` until `stop` is cancelled.
    pub async fn watch_tokens(self: Arc<Self>, interval: Duration, stop: CancellationToken) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut watch = TokenWatch::default();
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            self.check_tokens(&mut watch).await;
            self.close_orphans().await;
        }
    }
}
