//! The event bus and the session registry: how the core reaches live sessions.
//!
//! Both are traits because a session may live on another node: the in-process pair is in
//! `confer-bus`; a Redis-backed pair joins nodes later. **Invariant:** nothing outside
//! these traits assumes a session lives in this process; the core addresses sessions only
//! by id, through [`SessionRegistry`], and events only through [`EventBus`].

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::event::{Event, Json, Subscription};
use crate::ids::{GroupId, SessionId, Uin};

/// Something for a live session's connection to send to its client.
#[derive(Debug)]
pub enum Delivery {
    /// An event that matched one of the session's subscriptions; `merge` is that
    /// subscription's body.
    Event {
        event: Arc<Event>,
        merge: Option<Json>,
    },
    /// A command another session sent with `session cmd`; the connection answers `reply`.
    /// Boxed: it is rare and large, and every mailbox slot is as big as the largest variant.
    Request(Box<ForwardedRequest>),
    /// The session is being stopped; the connection closes with this code.
    Stop { code: u64, reason: String },
}

/// A command forwarded to a session, waiting for its client's answer.
#[derive(Debug)]
pub struct ForwardedRequest {
    pub class: String,
    pub subclass: Option<String>,
    pub cmd: String,
    pub data: Option<Json>,
    pub reply: oneshot::Sender<Result<Option<Json>, RemoteError>>,
}

/// The error a session's client answered a forwarded command with.
#[derive(Clone, Debug)]
pub struct RemoteError {
    pub code: u64,
    pub error: String,
}

/// The sending half of a session's bounded outbound queue.
///
/// A full queue means the client stopped reading: rather than block the sender (and with
/// it everyone else the event goes to), the session is cut through `overflow`.
#[derive(Clone, Debug)]
pub struct Mailbox {
    tx: mpsc::Sender<Delivery>,
    overflow: CancellationToken,
}

/// Why a delivery did not reach a session's queue.
#[derive(Debug, PartialEq, Eq)]
pub enum PushError {
    /// The queue was full; the session has been told to disconnect.
    Full,
    /// The connection is gone.
    Closed,
}

impl Mailbox {
    /// A mailbox with room for `capacity` deliveries, its receiver, and the token the
    /// connection watches for overflow.
    pub fn bounded(capacity: usize) -> (Mailbox, mpsc::Receiver<Delivery>, CancellationToken) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let overflow = CancellationToken::new();
        (
            Mailbox {
                tx,
                overflow: overflow.clone(),
            },
            rx,
            overflow,
        )
    }

    /// Queue without waiting. On a full queue the session is cut, never waited for.
    pub fn push(&self, delivery: Delivery) -> Result<(), PushError> {
        match self.tx.try_send(delivery) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.overflow.cancel();
                Err(PushError::Full)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(PushError::Closed),
        }
    }
}

/// A live session, as the registry lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionInfo {
    pub session_id: SessionId,
    pub uin: Uin,
    pub user: String,
    /// The peer address as the door saw it.
    pub remote: String,
    /// Which door it came through, e.g. "api_server".
    pub door: &'static str,
    /// A short hash of the login token the session used, if any: a second connection
    /// with the same token replaces the first (Chat API "conflict").
    pub token_id: Option<String>,
}

/// A session's presence in a conference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomMember {
    pub session_id: SessionId,
    pub uin: Uin,
    pub user: String,
    pub role: String,
}

/// The directory of live sessions and of who is in which conference room right now.
pub trait SessionRegistry: Send + Sync {
    /// Register a session. Fails with `false` if its id is taken.
    fn register(&self, info: SessionInfo, mailbox: Mailbox) -> bool;
    fn unregister(&self, session: &SessionId);
    fn session(&self, session: &SessionId) -> Option<SessionInfo>;
    fn sessions_of_user(&self, user: &str) -> Vec<SessionInfo>;
    fn sessions_of_uin(&self, uin: Uin) -> Vec<SessionInfo>;
    /// Every live session, grouped by nothing; callers group as they render.
    fn all_sessions(&self) -> Vec<SessionInfo>;
    /// Queue a delivery for one session.
    fn deliver(&self, session: &SessionId, delivery: Delivery) -> Result<(), PushError>;
    /// Queue `make()` for every session of `uin` that came through `door`; how many took
    /// it. (One lookup per user, nothing copied: the hot path of group pushes.)
    fn deliver_to_user(&self, uin: Uin, door: &str, make: &dyn Fn() -> Delivery) -> usize;

    /// Put a session in a conference room; `false` if it was there already.
    fn join_room(&self, room: GroupId, member: RoomMember) -> bool;
    /// Take a session out of a room; the member it was, if it was there.
    fn leave_room(&self, room: GroupId, session: &SessionId) -> Option<RoomMember>;
    fn room_members(&self, room: GroupId) -> Vec<RoomMember>;
    /// The rooms a session is in (to leave them when it ends).
    fn rooms_of(&self, session: &SessionId) -> Vec<GroupId>;
    /// Empty a room (the conference was destroyed); the members it had.
    fn clear_room(&self, room: GroupId) -> Vec<RoomMember>;
}

/// Subscriptions and publishing. Delivery goes through the registry's mailboxes.
pub trait EventBus: Send + Sync {
    /// Add a subscription; one with the same pattern is replaced (its body too).
    fn subscribe(&self, session: &SessionId, subscription: Subscription);
    /// Remove the subscription with the same pattern; `false` if there was none.
    fn unsubscribe(&self, session: &SessionId, pattern: &Subscription) -> bool;
    fn subscriptions(&self, session: &SessionId) -> Vec<Subscription>;
    /// Forget every subscription of a session that ended.
    fn drop_session(&self, session: &SessionId);
    /// Deliver to every matching subscription; the number of deliveries queued.
    fn publish(&self, event: Event) -> usize;
}
