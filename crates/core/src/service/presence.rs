//! Chat API sessions and presence.
//!
//! A Chat API connection is a session of the `chat` door, tied to the login token it
//! used: a second connection with the same token replaces the first ("conflict", code 7).
//! A user is online while it has at least one chat session; the users who share a chat
//! group with it hear `user_status` when that changes; when its last session closes, it
//! stops typing everywhere (`typing.rs`).

use crate::bus::{Delivery, Mailbox, SessionInfo};
use crate::error::CoreResult;
use crate::event::EventBody;
use crate::ids::SessionId;
use crate::model::{now_us, Principal};

use super::Core;

/// The door name of Chat API sessions; pushes to users go to these sessions.
pub const CHAT_DOOR: &str = "chat";
/// The stop code a session replaced by a newer connection with the same token gets.
pub const CONFLICT_STOP_CODE: u64 = 7;

impl Core {
    /// Open a Chat API session for `who`, logged in with `token`. An older session with
    /// the same token is stopped with [`CONFLICT_STOP_CODE`]. The first chat session of
    /// a user makes it online for its peers.
    pub async fn open_chat_session(
        &self,
        who: &Principal,
        token: &str,
        remote: String,
        mailbox: Mailbox,
    ) -> CoreResult<SessionInfo> {
        let token_hash = crate::auth::token_hash(token);
        let mine = self.registry.sessions_of_uin(who.uin);
        for old in mine
            .iter()
            .filter(|s| s.door == CHAT_DOOR && s.token_hash == Some(token_hash))
        {
            let stop = Delivery::Stop {
                code: CONFLICT_STOP_CODE,
                reason: "logged in elsewhere with the same session".into(),
            };
            let _ = self.registry.deliver(&old.session_id, stop);
            // Its connection closes on its own; it no longer counts from now on.
            self.close_session(old).await;
        }
        let was_online = self.is_online(who.uin);
        let info = SessionInfo {
            session_id: SessionId::random(),
            uin: who.uin,
            user: who.login.clone(),
            remote,
            door: CHAT_DOOR,
            token_hash: Some(token_hash),
            started_at_us: crate::model::now_us(),
            meta: None,
        };
        let info = self.register_session(info, mailbox)?;
        if !was_online {
            self.announce_status(who.uin, true, None).await;
        }
        Ok(info)
    }

    /// Close a Chat API session; the user's last one makes it offline for its peers.
    pub async fn close_chat_session(&self, session: &SessionInfo) {
        self.close_session(session).await;
        if !self.is_online(session.uin) {
            let now = now_us();
            if let Err(e) = self.storage.set_last_seen(session.uin, now).await {
                tracing::warn!(error = %e, "could not store last_seen");
            }
            self.announce_status(session.uin, false, Some(now)).await;
            self.typing_gone(session.uin).await;
        }
    }

    /// Whether a user has a live chat session.
    pub fn is_online(&self, uin: crate::Uin) -> bool {
        self.registry
            .sessions_of_uin(uin)
            .iter()
            .any(|s| s.door == CHAT_DOOR)
    }

    async fn announce_status(&self, uin: crate::Uin, online: bool, last_seen_at_us: Option<i64>) {
        let peers = match self.storage.peers_of(uin).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "presence: peers unavailable");
                return;
            }
        };
        let body = EventBody::UserStatus {
            uin,
            online,
            last_seen_at_us,
        };
        self.push_chat(peers, "user_status", uin.to_string(), body);
    }
}
