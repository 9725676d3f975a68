//! Live sessions end with the login token they were opened with.
//!
//! A session opened with a token from `POST /api/v1/login` (every Chat API socket, an
//! External API `login {user, token}`) carries the token's hash in its [`SessionInfo`].
//! When the token is revoked (logout, a password change) or expires, every such session
//! is stopped with [`TOKEN_ENDED_STOP_CODE`]: the Chat API says `login {result: 2}` and
//! disconnects, the External API closes (1008, "token revoked or expired").
//!
//! Revocations in this process end their sessions at once. For those made by another
//! process on the same database (`confer user passwd`), and for expiry, the server checks
//! each live session's token again every `token_check_interval_ms`: one indexed read per
//! distinct token, whatever the number of sessions sharing it. With several nodes each
//! checks its own sessions (`SessionRegistry::local_sessions`); a revocation stops the
//! token's sessions on every node at once (the registry delivers the stop where they are).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::bus::{Delivery, SessionInfo};
use crate::ids::Uin;
use crate::model::now_us;

use super::{Core, CHAT_DOOR};

/// The stop code of a session whose token was revoked or expired (the External API's
/// "unauthorized"; the Chat API says `login {result: 2}`).
pub const TOKEN_ENDED_STOP_CODE: u64 = 100030;

/// Tokens checked per storage read.
const CHECK_BATCH: usize = 256;

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

    /// Check the token of every live session once; stop the sessions whose token was
    /// revoked (here or by another process) or has expired. How many were stopped.
    pub async fn check_tokens(&self) -> usize {
        let mut by_token: HashMap<[u8; 32], Vec<SessionInfo>> = HashMap::new();
        // Each node checks its own sessions; revocations here stop every node's at once.
        for s in self.registry.local_sessions() {
            if let Some(hash) = s.token_hash {
                by_token.entry(hash).or_default().push(s);
            }
        }
        let tokens: Vec<[u8; 32]> = by_token.keys().copied().collect();
        let mut ended = 0;
        // A batch per read, so that a check never holds a reader for long.
        for batch in tokens.chunks(CHECK_BATCH) {
            let live: HashSet<[u8; 32]> =
                match self.storage.live_tokens(batch.to_vec(), now_us()).await {
                    Ok(live) => live.into_iter().collect(),
                    // Storage trouble is not a revocation: look again next time.
                    Err(e) => {
                        tracing::warn!(error = %e, "token check: storage unavailable");
                        return ended;
                    }
                };
            for hash in batch.iter().filter(|h| !live.contains(*h)) {
                if let Some(sessions) = by_token.get(hash) {
                    self.stop_token_sessions(sessions);
                    ended += sessions.len();
                }
            }
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

    /// Run [`Core::check_tokens`] and [`Core::close_orphans`] every `interval` until
    /// `stop` is cancelled.
    pub async fn watch_tokens(self: Arc<Self>, interval: Duration, stop: CancellationToken) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            self.check_tokens().await;
            self.close_orphans().await;
        }
    }
}
