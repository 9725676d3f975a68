//! The event bus and the session registry: how the core reaches live sessions.
//!
//! Both are traits because a session may live on another node: the in-process pair is in
//! `confer-bus`; the Redis-backed pair of `confer-bus-redis` joins nodes. **Invariant:** nothing outside
//! these traits assumes a session lives in this process; the core addresses sessions only
//! by id, through [`SessionRegistry`], and events only through [`EventBus`].

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{oneshot, Notify};
use tokio_util::sync::CancellationToken;

use crate::event::{Event, Grant, Json, Subscription};
use crate::ids::{GroupId, SessionId, Uin};

/// Something for a live session's connection to send to its client.
#[derive(Debug)]
pub enum Delivery {
    /// An event that matched the session's subscriptions (delivered once however many
    /// matched); `merge` holds the bodies of those that have one, most specific first.
    Event { event: Arc<Event>, merge: Vec<Json> },
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
///
/// The queue is a plain `VecDeque` that allocates only while deliveries wait (a channel
/// would reserve a block of slots up front): most sessions are idle most of the time,
/// and every idle byte counts per connection.
#[derive(Clone, Debug)]
pub struct Mailbox {
    shared: Arc<MailboxShared>,
}

#[derive(Debug)]
struct MailboxShared {
    queue: Mutex<VecDeque<Delivery>>,
    capacity: usize,
    ready: Notify,
    /// The receiver is gone.
    closed: AtomicBool,
    overflow: CancellationToken,
    /// Deliveries refused because the queue was full (counted, never logged one by
    /// one: the connection reports the total once, [`crate::Core::report_dropped`]).
    dropped: AtomicU64,
}

impl MailboxShared {
    fn queue(&self) -> std::sync::MutexGuard<'_, VecDeque<Delivery>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The receiving half: the connection's task reads its deliveries from here.
#[derive(Debug)]
pub struct MailboxReceiver {
    shared: Arc<MailboxShared>,
}

/// A queue that grew past this while busy is given back once it drains.
const KEEP_CAPACITY: usize = 64;

impl MailboxReceiver {
    /// The next delivery, waiting for one. Cancel-safe.
    pub async fn recv(&mut self) -> Delivery {
        loop {
            if let Some(delivery) = self.try_recv() {
                return delivery;
            }
            // `notify_one` keeps a permit when nobody waits, so a push between the check
            // above and this wait is not missed.
            self.shared.ready.notified().await;
        }
    }

    /// How many deliveries the full queue refused so far.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// The next delivery if one is waiting.
    pub fn try_recv(&mut self) -> Option<Delivery> {
        let mut queue = self.shared.queue();
        let delivery = queue.pop_front();
        if queue.is_empty() && queue.capacity() > KEEP_CAPACITY {
            *queue = VecDeque::new();
        }
        delivery
    }
}

impl Drop for MailboxReceiver {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.queue().clear();
    }
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
    /// A mailbox with room for `capacity` deliveries, and its receiver. `cut` is cancelled
    /// when the queue overflows; a connection passes a child of the server's shutdown
    /// token, so that one token it watches tells it of both (no shared token polled by
    /// every connection on every wake-up).
    pub fn bounded(capacity: usize, cut: CancellationToken) -> (Mailbox, MailboxReceiver) {
        let shared = Arc::new(MailboxShared {
            queue: Mutex::new(VecDeque::new()),
            capacity: capacity.max(1),
            ready: Notify::new(),
            closed: AtomicBool::new(false),
            overflow: cut,
            dropped: AtomicU64::new(0),
        });
        (
            Mailbox {
                shared: shared.clone(),
            },
            MailboxReceiver { shared },
        )
    }

    /// Queue without waiting. On a full queue the session is cut, never waited for.
    pub fn push(&self, delivery: Delivery) -> Result<(), PushError> {
        let shared = &self.shared;
        if shared.closed.load(Ordering::Acquire) {
            return Err(PushError::Closed);
        }
        {
            let mut queue = shared.queue();
            if queue.len() >= shared.capacity {
                drop(queue);
                shared.dropped.fetch_add(1, Ordering::Relaxed);
                shared.overflow.cancel();
                return Err(PushError::Full);
            }
            queue.push_back(delivery);
        }
        shared.ready.notify_one();
        Ok(())
    }
}

/// One typer typing in one group: to `receiver` only, or to the group's other members.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TypingEntry {
    pub who: Uin,
    pub group: GroupId,
    pub receiver: Option<Uin>,
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
    /// The stored hash (SHA-256) of the login token the session used, if any: the
    /// session ends when the token is revoked or expires, and on the Chat API a second
    /// connection with the same token replaces the first ("conflict").
    pub token_hash: Option<[u8; 32]>,
    /// When it was registered (µs since the epoch).
    pub started_at_us: i64,
    /// What the client told about itself at login (External API: the login's extra
    /// fields, a JSON object the door validated and bounded), shown by `user get`.
    pub meta: Option<Json>,
}

/// A session's presence in a conference: one party of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomMember {
    pub session_id: SessionId,
    pub uin: Uin,
    pub user: String,
    pub role: String,
    /// The party's id, unique in the conference while it lives (the conference door's
    /// `PartyID`, and the media endpoint's `PartyKey::party`).
    pub party: u64,
    /// The user's display name (its login if it has none).
    pub name: String,
    /// How many parties were in the room when this one joined (from 0).
    pub index: u32,
    pub state: PartyState,
}

/// What a party says about itself (microphone, camera, raised hand) and whether its media
/// with the server's endpoint is up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PartyState {
    pub mic: bool,
    pub cam: bool,
    pub hand_up: bool,
    pub media: bool,
}

/// The directory of live sessions and of who is in which conference room right now.
pub trait SessionRegistry: Send + Sync {
    /// Register a session. Fails with `false` if its id is taken.
    fn register(&self, info: SessionInfo, mailbox: Mailbox) -> bool;
    fn unregister(&self, session: &SessionId);
    fn session(&self, session: &SessionId) -> Option<SessionInfo>;
    fn sessions_of_user(&self, user: &str) -> Vec<SessionInfo>;
    fn sessions_of_uin(&self, uin: Uin) -> Vec<SessionInfo>;
    /// Every live session, grouped by nothing; callers group as they render. With a
    /// registry spanning nodes: every node's.
    fn all_sessions(&self) -> Vec<SessionInfo>;
    /// The live sessions of this process only (the token check reads these: each node
    /// checks its own). The same as [`all_sessions`](Self::all_sessions) on one node.
    fn local_sessions(&self) -> Vec<SessionInfo> {
        self.all_sessions()
    }
    /// Sessions left by a node that died (it stopped renewing its heartbeat), taken out
    /// of the directory and handed to this node, once, to be closed as if their
    /// connections had ended (presence, grants). Always empty on one node.
    fn orphans(&self) -> Vec<SessionInfo> {
        Vec::new()
    }
    /// A typing entry of this node began (`on`) or ended (`service/typing.rs`: a new
    /// typer or receiver in a group, not each renewal). A cluster keeps this node's
    /// entries where the node that closes its sessions after its death finds them. One
    /// node: nothing.
    fn typing(&self, _entry: TypingEntry, _on: bool) {}
    /// Typing entries a dead node left (with its [`orphans`](Self::orphans)), handed to
    /// this node, once, to say "stopped typing" for. Always empty on one node.
    fn orphan_typing(&self) -> Vec<TypingEntry> {
        Vec::new()
    }
    /// Queue a delivery for one session.
    fn deliver(&self, session: &SessionId, delivery: Delivery) -> Result<(), PushError>;
    /// Queue `make()` for every session of each of `uins` that came through `door`; how
    /// many took it. (One lookup per user, nothing copied, one pass for the whole group:
    /// the hot path of group pushes.)
    fn deliver_to_users(
        &self,
        uins: &mut dyn Iterator<Item = Uin>,
        door: &str,
        make: &dyn Fn() -> Delivery,
    ) -> usize;

    /// Put a session in a conference room; `false` if it was there already.
    fn join_room(&self, room: GroupId, member: RoomMember) -> bool;
    /// Take a session out of a room; the member it was, if it was there.
    fn leave_room(&self, room: GroupId, session: &SessionId) -> Option<RoomMember>;
    fn room_members(&self, room: GroupId) -> Vec<RoomMember>;
    /// Change the state of the party with id `party` in a room; the member as it now is,
    /// or `None` if no such party is there.
    fn update_party(
        &self,
        room: GroupId,
        party: u64,
        change: &mut dyn FnMut(&mut PartyState),
    ) -> Option<RoomMember>;
    /// The rooms a session is in (to leave them when it ends).
    fn rooms_of(&self, session: &SessionId) -> Vec<GroupId>;
    /// Empty a room (the conference was destroyed); the members it had.
    fn clear_room(&self, room: GroupId) -> Vec<RoomMember>;
    /// The party id for this process's `local`-th party (`RoomMember::party`): unique in
    /// the whole registry, so a registry spanning nodes makes it unique across them.
    fn party_id(&self, local: u64) -> u64 {
        local
    }
}

/// Subscriptions and publishing. Delivery goes through the registry's mailboxes.
pub trait EventBus: Send + Sync {
    /// Add a subscription resting on `grant` (none: on the login alone); one with the
    /// same pattern is replaced (its body and grant too). `false`, and nothing changed,
    /// when the pattern is new and the session holds `max` subscriptions already.
    fn subscribe(
        &self,
        session: &SessionId,
        subscription: Subscription,
        grant: Option<Grant>,
        max: usize,
    ) -> bool;
    /// Remove the subscription with the same pattern; `false` if there was none.
    fn unsubscribe(&self, session: &SessionId, pattern: &Subscription) -> bool;
    fn subscriptions(&self, session: &SessionId) -> Vec<Subscription>;
    /// Forget every subscription of a session that ended.
    fn drop_session(&self, session: &SessionId);
    /// A right ended: remove every subscription, of any session, that rested on it; how
    /// many. Matching cost does not depend on how many subscriptions one session holds.
    fn revoke(&self, grant: &Grant) -> usize;
    /// Deliver to every matching subscription; the number of deliveries queued.
    fn publish(&self, event: Event) -> usize;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stop(code: u64) -> Delivery {
        Delivery::Stop {
            code,
            reason: String::new(),
        }
    }

    fn code(d: Delivery) -> u64 {
        match d {
            Delivery::Stop { code, .. } => code,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn deliveries_arrive_in_order_and_wake_the_receiver() {
        let (mailbox, mut rx) = Mailbox::bounded(4, CancellationToken::new());
        let waiting = tokio::spawn(async move {
            let first = code(rx.recv().await);
            (first, code(rx.recv().await))
        });
        tokio::task::yield_now().await;
        mailbox.push(stop(1)).unwrap();
        mailbox.push(stop(2)).unwrap();
        assert_eq!(waiting.await.unwrap(), (1, 2));
    }

    #[test]
    fn a_full_mailbox_cuts_the_session_and_a_dropped_receiver_closes_it() {
        let overflow = CancellationToken::new();
        let (mailbox, rx) = Mailbox::bounded(2, overflow.clone());
        mailbox.push(stop(1)).unwrap();
        mailbox.push(stop(2)).unwrap();
        assert!(!overflow.is_cancelled());
        assert_eq!(mailbox.push(stop(3)), Err(PushError::Full));
        assert!(overflow.is_cancelled());
        assert_eq!(mailbox.push(stop(4)), Err(PushError::Full));
        assert_eq!(rx.dropped(), 2);
        drop(rx);
        assert_eq!(mailbox.push(stop(5)), Err(PushError::Closed));
    }

    #[test]
    fn a_drained_mailbox_gives_back_what_a_burst_grew() {
        let (mailbox, mut rx) = Mailbox::bounded(1000, CancellationToken::new());
        for i in 0..500 {
            mailbox.push(stop(i)).unwrap();
        }
        let mut seen = 0;
        while let Some(d) = rx.try_recv() {
            assert_eq!(code(d), seen);
            seen += 1;
        }
        assert_eq!(seen, 500);
        assert_eq!(rx.shared.queue().capacity(), 0);
    }
}
