//! Who is online, decided in one place: [`OnlineState`], the chat sessions each user has,
//! counted where every node sees the same count, and [`LocalOnline`], its in-process
//! implementation.
//!
//! Presence (`service/presence.rs`) tells a user's peers "online" when its first chat
//! session opens and "offline" when its last one closes. The session registry can say
//! how many sessions a user has, but on a cluster each node's copy of the other nodes'
//! sessions arrives over pub/sub, a little late: a node whose user closed a socket right
//! after opening another on a second node would not yet know of the second one, and say
//! "offline" while the user is online. So the first and last are decided here instead:
//! one node's memory ([`LocalOnline`]), or Redis for a cluster (`confer-bus-redis`,
//! `online.rs`), behind the same trait.
//!
//! **Each user's first join and last leave are decided once, atomically:** of two
//! sessions opening at once one is first, of two closing at once one is last, on one
//! node or several. A session this state never counted (its join failed) leaves as
//! `None`, and the caller falls back on the registry's view.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use async_trait::async_trait;

use crate::ids::{SessionId, Uin};
use crate::store::StoreResult;

/// The chat sessions of every user, as counted for presence. Backend failures are
/// [`StoreError::Backend`](crate::store::StoreError::Backend).
#[async_trait]
pub trait OnlineState: Send + Sync {
    /// Count `session` of `uin`; `true` when it is the user's only one (it came online).
    async fn join(&self, uin: Uin, session: &SessionId) -> StoreResult<bool>;
    /// Stop counting `session` of `uin`: `Some(true)` when it was the user's last (it
    /// went offline), `Some(false)` when others are left, `None` when it was not counted.
    async fn leave(&self, uin: Uin, session: &SessionId) -> StoreResult<Option<bool>>;
}

/// [`OnlineState`] in this process's memory: one node.
#[derive(Default)]
pub struct LocalOnline {
    sessions: Mutex<HashMap<Uin, HashSet<SessionId>>>,
}

#[async_trait]
impl OnlineState for LocalOnline {
    async fn join(&self, uin: Uin, session: &SessionId) -> StoreResult<bool> {
        let mut all = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let mine = all.entry(uin).or_default();
        mine.insert(session.clone());
        Ok(mine.len() == 1)
    }

    async fn leave(&self, uin: Uin, session: &SessionId) -> StoreResult<Option<bool>> {
        let mut all = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let Some(mine) = all.get_mut(&uin) else {
            return Ok(None);
        };
        if !mine.remove(session) {
            return Ok(None);
        }
        let last = mine.is_empty();
        if last {
            all.remove(&uin);
        }
        Ok(Some(last))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_first_join_and_the_last_leave_are_told_once() {
        let online = LocalOnline::default();
        let (a, b) = (SessionId::random(), SessionId::random());
        assert!(online.join(Uin(7), &a).await.unwrap());
        assert!(!online.join(Uin(7), &b).await.unwrap());
        // Another user is counted apart.
        assert!(online.join(Uin(8), &a).await.unwrap());
        assert_eq!(online.leave(Uin(7), &a).await.unwrap(), Some(false));
        // A second leave of the same session is not a second "last".
        assert_eq!(online.leave(Uin(7), &a).await.unwrap(), None);
        assert_eq!(online.leave(Uin(7), &b).await.unwrap(), Some(true));
        assert_eq!(online.leave(Uin(7), &b).await.unwrap(), None);
        // Back again: first once more.
        assert!(online.join(Uin(7), &b).await.unwrap());
        assert_eq!(online.sessions.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn a_session_never_counted_leaves_as_unknown() {
        let online = LocalOnline::default();
        assert_eq!(
            online.leave(Uin(1), &SessionId::random()).await.unwrap(),
            None
        );
    }
}
