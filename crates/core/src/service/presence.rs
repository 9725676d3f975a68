//! Chat API sessions and presence.
//!
//! A Chat API connection is a session of the `chat` door, tied to the login token it
//! used: a second connection with the same token replaces the first ("conflict", code 7).
//! A user is online while it has at least one chat session; the users who share a chat
//! group with it hear `user_status` when that changes; when its last session closes, it
//! stops typing everywhere (`typing.rs`). Which session is a user's first and which its
//! last is decided by the core's `OnlineState` (`crate::online`), the same on every node.
//!
//! A user may choose its status (`user_status`: 1 online, 3 idle, 4 invisible, 5 away,
//! 6 busy) and a free-text `message_status`; both are stored with the account and kept
//! across connections. Its peers see the chosen status while it has a chat socket, except
//! that an invisible user is shown offline (2) to everyone but itself: it is never
//! announced online, and choosing invisible is announced as going offline. Its own
//! sockets hear its real status, so its devices agree. A new socket gets a snapshot of
//! its peers' presence as they see it ([`Core::presence_snapshot`]).

use std::collections::HashSet;
use std::time::Duration;

use crate::bus::{Delivery, Mailbox, SessionInfo};
use crate::error::{CoreError, CoreResult};
use crate::event::EventBody;
use crate::ids::{SessionId, Uin};
use crate::model::{now_us, Presence, Principal, INVISIBLE, OFFLINE, ONLINE};
use crate::store::{StoreError, StoreResult};

use super::Core;

/// The door name of Chat API sessions; pushes to users go to these sessions.
pub const CHAT_DOOR: &str = "chat";
/// The stop code a session replaced by a newer connection with the same token gets.
pub const CONFLICT_STOP_CODE: u64 = 7;
/// The longest `message_status` accepted (bytes).
pub const MAX_MESSAGE_STATUS: usize = 256;
/// The most peers a socket's presence snapshot names (about 80 bytes each on the wire).
pub const SNAPSHOT_MAX_PEERS: usize = 10_000;
/// How long a connect or a close waits for the presence count (`crate::online`: Redis on
/// a cluster) before it decides from the registry's view instead: Redis out of reach slows
/// no connection by more than this.
const ONLINE_WAIT: Duration = Duration::from_secs(2);
/// The statuses a user may choose; 2 (offline) is only ever shown, never chosen.
const CHOOSABLE: [u8; 5] = [1, 3, 4, 5, 6];

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
            if let Err(e) = within_wait(self.online.leave(old.uin, &old.session_id)).await {
                self.count_failed(&e, "a replaced session is still counted");
            }
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
        let first = match within_wait(self.online.join(who.uin, &info.session_id)).await {
            Ok(first) => first,
            Err(e) => {
                self.count_failed(&e, "decided from this node's view");
                self.uncounted_sessions().insert(info.session_id.clone());
                !was_online
            }
        };
        if first {
            let presence = self.presence_of(who.uin).await;
            if presence.online_status != INVISIBLE {
                self.announce_status(&presence, presence.online_status, None)
                    .await;
            }
        }
        Ok(info)
    }

    /// Close a Chat API session; the user's last one makes it offline for its peers.
    pub async fn close_chat_session(&self, session: &SessionInfo) {
        self.close_session(session).await;
        let uncounted = self.uncounted_sessions().remove(&session.session_id);
        let last = match within_wait(self.online.leave(session.uin, &session.session_id)).await {
            Ok(Some(last)) => last,
            // Never counted (its join failed), or the count is out of reach: this
            // node's view of the registry decides.
            Ok(None) if uncounted => !self.is_online(session.uin),
            // Taken out already by whoever replaced it (a conflict) or found its node
            // dead; that one has decided.
            Ok(None) => false,
            Err(e) => {
                self.count_failed(&e, "decided from this node's view");
                !self.is_online(session.uin)
            }
        };
        if last {
            let now = now_us();
            if let Err(e) = self.storage.set_last_seen(session.uin, now).await {
                tracing::warn!(error = %e, "could not store last_seen");
            }
            // An invisible user looked offline already.
            let presence = self.presence_of(session.uin).await;
            if presence.online_status != INVISIBLE {
                self.announce_status(&presence, OFFLINE, Some(now)).await;
            }
            self.typing_gone(session.uin).await;
        }
    }

    /// A presence count that failed or was late, counted (`/metrics`) and logged on the
    /// 1st, 2nd, 4th, 8th … time: a storm of them (Redis out of reach, a starved
    /// machine) writes a few lines, not one per connection.
    fn count_failed(&self, error: &StoreError, outcome: &str) {
        let n = self.metrics.presence_uncounted();
        if n.is_power_of_two() {
            tracing::warn!(error = %error, failed_so_far = n, "presence count: {outcome}");
        }
    }

    /// The chat sessions whose join `OnlineState` did not take (it failed).
    fn uncounted_sessions(&self) -> std::sync::MutexGuard<'_, HashSet<SessionId>> {
        self.uncounted.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a user has a live chat session.
    pub fn is_online(&self, uin: crate::Uin) -> bool {
        self.registry
            .sessions_of_uin(uin)
            .iter()
            .any(|s| s.door == CHAT_DOOR)
    }

    /// A user's stored presence; a failed read counts as plainly online (logged).
    async fn presence_of(&self, uin: Uin) -> Presence {
        match self.storage.presences(vec![uin]).await {
            Ok(mut found) if !found.is_empty() => found.swap_remove(0),
            other => {
                if let Err(e) = other {
                    tracing::warn!(error = %e, "presence unavailable");
                }
                Presence {
                    uin,
                    online_status: ONLINE,
                    message_status: String::new(),
                    last_seen_at_us: None,
                }
            }
        }
    }

    /// Choose an online status (1, 3, 4, 5, 6) and, when given, a `message_status`; both
    /// are stored. The caller's sockets hear `user_status` with the real status, its
    /// peers with what they see of it (invisible is offline).
    pub async fn set_user_status(
        &self,
        caller: &Principal,
        online_status: u8,
        message_status: Option<String>,
    ) -> CoreResult<Presence> {
        if !CHOOSABLE.contains(&online_status) {
            return Err(CoreError::InvalidValue(
                "online_status: one of 1, 3, 4, 5, 6 (4 to appear offline)".into(),
            ));
        }
        if message_status
            .as_ref()
            .is_some_and(|m| m.len() > MAX_MESSAGE_STATUS)
        {
            return Err(CoreError::TooLarge("message_status"));
        }
        let before = self.presence_of(caller.uin).await;
        let message_status = message_status.unwrap_or_else(|| before.message_status.clone());
        self.storage
            .set_presence(caller.uin, online_status, message_status.clone())
            .await?;
        let now = Presence {
            online_status,
            message_status,
            ..before.clone()
        };
        self.push_chat(
            [caller.uin],
            "user_status",
            caller.uin.to_string(),
            status_body(&now, online_status, None),
        );
        let connected = self.is_online(caller.uin);
        let (was, shown) = (before.shown(connected), now.shown(connected));
        if shown != OFFLINE || was != OFFLINE {
            let last_seen = (shown == OFFLINE).then(now_us);
            self.announce_status(&now, shown, last_seen).await;
        }
        Ok(now)
    }

    /// The presence of everyone `who` shares a chat group with, as `who` sees it: the
    /// chosen status of those with a chat socket, offline (2) for the rest and for the
    /// invisible. One read of the peers and one of their presence.
    /// At most [`SNAPSHOT_MAX_PEERS`], connected peers first: one left out is offline.
    pub async fn presence_snapshot(&self, who: &Principal) -> CoreResult<Vec<Presence>> {
        let peers = self.storage.peers_of(who.uin).await?;
        let (mut chosen, offline): (Vec<Uin>, Vec<Uin>) =
            peers.into_iter().partition(|u| self.is_online(*u));
        chosen.extend(offline);
        chosen.truncate(SNAPSHOT_MAX_PEERS);
        let mut found = self.storage.presences(chosen).await?;
        for p in &mut found {
            p.online_status = p.shown(self.is_online(p.uin));
            if p.online_status == OFFLINE {
                p.message_status.clear();
            } else {
                p.last_seen_at_us = None;
            }
        }
        Ok(found)
    }

    /// Tell `presence`'s peers that it is now shown as `shown`.
    async fn announce_status(&self, presence: &Presence, shown: u8, last_seen_at_us: Option<i64>) {
        let uin = presence.uin;
        let peers = match self.storage.peers_of(uin).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "presence: peers unavailable");
                return;
            }
        };
        let body = status_body(presence, shown, last_seen_at_us);
        self.push_chat(peers, "user_status", uin.to_string(), body);
    }
}

/// A presence count's answer (`crate::online`), failing after [`ONLINE_WAIT`].
async fn within_wait<T>(
    count: impl std::future::Future<Output = StoreResult<T>>,
) -> StoreResult<T> {
    tokio::time::timeout(ONLINE_WAIT, count)
        .await
        .unwrap_or_else(|_| {
            Err(StoreError::Backend(format!(
                "presence count: no answer within {ONLINE_WAIT:?}"
            )))
        })
}

/// A `user_status` push of `presence`, shown as `shown`. An offline user's
/// `message_status` is not shown.
fn status_body(presence: &Presence, shown: u8, last_seen_at_us: Option<i64>) -> EventBody {
    EventBody::UserStatus {
        uin: presence.uin,
        online: shown != OFFLINE,
        online_status: shown,
        message_status: if shown == OFFLINE {
            String::new()
        } else {
            presence.message_status.clone()
        },
        last_seen_at_us,
    }
}
