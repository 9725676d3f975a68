//! [`Core`]: the operations every door calls.
//!
//! Each operation takes the caller's [`Principal`] (and session, where it matters) and
//! checks that the caller may do it before touching storage or the bus. The authorisation
//! policy is written down in ARCHITECTURE.md ("Who may do what").
//!
//! - `accounts`: accounts, passwords, login tokens.
//! - `sessions`: live sessions, session/user events, forwarded commands, logs.
//! - `events`: subscriptions and fired events.
//! - `conferences`: conferences and their live rooms.
//! - `messages`: storing and listing conversation messages.
//! - `parties`: a conference's parties as the conference door shows them: their state
//!   (microphone, camera, hand, media), kick, mute, end.
//! - `attachments`: uploaded files' metadata, ownership and who may read them.
//! - `admin`: the admin's operations on a running server (groups, messages, sessions).
//! - `hub`: the edge-to-hub sync, both roles (rosters, edge messages, batches, settings).
//! - `tokens`: live sessions end with the login token they were opened with.
//! - `typing`: typing indicators end by themselves (timeout, last socket gone).
//! - `receipts`: members' received/seen marks, and message status and receipts from them.
//! - `profiles`: users' display names and avatars, and the display fields of messages.
//! - `push`: who gets a push notification, and the durable outbox the worker sends from.

mod accounts;
mod admin;
mod attachments;
mod calls;
mod chat_messages;
mod conferences;
mod events;
mod groups;
mod hub;
mod messages;
mod parties;
mod presence;
mod profiles;
mod push;
mod receipts;
mod sessions;
mod tokens;
mod typing;

pub use accounts::{admin_principal, failed_login_delay};
pub use chat_messages::ChatMessageInput;
pub use conferences::DESTROYED_BY_REQUEST;
pub use groups::{GroupChanges, GroupSort};
pub use hub::{
    attachment_kind, kind_of_mimetype, student_login, valid_name as hub_valid_name, MAX_BATCH,
};
pub use parties::PartyChange;
pub use presence::{CHAT_DOOR, CONFLICT_STOP_CODE};
pub use profiles::Profile;
pub use push::PushSettings;
pub use receipts::Receipt;
pub use sessions::SESSION_STOP_CODE;
pub use tokens::TOKEN_ENDED_STOP_CODE;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::bus::{Delivery, EventBus, SessionRegistry};
use crate::calls::{CallState, LocalCalls};
use crate::error::CoreResult;
use crate::event::Event;
use crate::hasher::{HasherSettings, PasswordHasher};
use crate::ids::Uin;
use crate::login_limits::{LoginLimitSettings, LoginLimits};
use crate::logsink::LogSink;
use crate::metrics::Metrics;
use crate::online::{LocalOnline, OnlineState};
use crate::store::Storage;

/// The knobs the core itself needs (the binary's config holds the rest).
#[derive(Clone, Debug)]
pub struct CoreSettings {
    /// Password of the built-in `admin` user; `None` disables admin login.
    pub admin_password: Option<String>,
    /// How long a login token from `POST /api/v1/login` stays valid.
    pub token_lifetime: Duration,
    /// How long a `session cmd` waits for the target's answer.
    pub forward_timeout: Duration,
    /// The most messages one listing returns.
    pub max_list: usize,
    /// The most bytes of messages one listing returns ([`Message::listed_bytes`]).
    ///
    /// [`Message::listed_bytes`]: crate::model::Message::listed_bytes
    pub max_list_bytes: usize,
    /// How long a call rings before it times out.
    pub call_timeout: Duration,
    /// How long a typing indicator (chat `event` type 8) lasts without a renewal before
    /// the core says type 9 itself.
    pub typing_timeout: Duration,
    /// The largest message, through any door (text + attachments + body, bytes).
    pub max_message_bytes: usize,
    /// The most subscriptions one session may add (its own two are not counted).
    pub max_subscriptions_per_session: usize,
    /// Bounds of the password hasher (concurrency, queue, wait).
    pub hasher: HasherSettings,
    /// Login rate limits per account and per client address.
    pub login_limits: LoginLimitSettings,
    /// Whether clients may create their own accounts (`Core::register_account`).
    pub open_registration: bool,
    /// Push notifications to offline devices (`push.rs`); off by default.
    pub push: PushSettings,
}

/// The shared core. Cheap to clone behind an `Arc`; every field is itself shared.
pub struct Core {
    storage: Arc<dyn Storage>,
    bus: Arc<dyn EventBus>,
    registry: Arc<dyn SessionRegistry>,
    logs: Option<Arc<dyn LogSink>>,
    metrics: Arc<Metrics>,
    settings: CoreSettings,
    /// Calls still ringing or in progress and their ringing timers (`crate::calls`): this
    /// process's memory, or Redis for a cluster ([`Core::with_calls`]).
    calls: Arc<dyn CallState>,
    /// Whether the task that ends timed-out calls runs (`calls.rs`).
    call_timers: AtomicBool,
    /// Each user's chat sessions, as presence counts them (`crate::online`): this
    /// process's memory, or Redis for a cluster ([`Core::with_online`]).
    online: Arc<dyn OnlineState>,
    /// Chat sessions whose count in `online` failed: presence decides theirs from the
    /// registry (`presence.rs`).
    uncounted: Mutex<HashSet<crate::ids::SessionId>>,
    /// Who is typing where, until when (`typing.rs`): one entry per typer per group.
    typing: typing::TypingState,
    /// Every Argon2 hash and verification runs here, bounded (`hasher.rs`).
    hasher: PasswordHasher,
    /// Password logins per account and address (`login_limits.rs`).
    login_limits: LoginLimits,
    /// The next conference party of this process; its id is
    /// `SessionRegistry::party_id` of it (unique across nodes with a registry spanning them).
    next_party: AtomicU64,
    /// Display names and avatars, read on every post (`profiles.rs`).
    profiles: profiles::ProfileCache,
    /// The push worker's wake-up and the calls rung by push (`push.rs`).
    push: push::PushState,
}

impl Core {
    pub fn new(
        storage: Arc<dyn Storage>,
        bus: Arc<dyn EventBus>,
        registry: Arc<dyn SessionRegistry>,
        logs: Option<Arc<dyn LogSink>>,
        metrics: Arc<Metrics>,
        settings: CoreSettings,
    ) -> Self {
        Core {
            storage,
            bus,
            registry,
            logs,
            hasher: PasswordHasher::new(&settings.hasher, metrics.clone()),
            login_limits: LoginLimits::new(&settings.login_limits),
            metrics,
            settings,
            calls: Arc::new(LocalCalls::default()),
            call_timers: AtomicBool::new(false),
            online: Arc::new(LocalOnline::default()),
            uncounted: Mutex::default(),
            typing: typing::TypingState::default(),
            next_party: AtomicU64::new(1),
            profiles: profiles::ProfileCache::default(),
            push: push::PushState::default(),
        }
    }

    /// Keep the live calls in `calls` instead of this process's memory (several nodes
    /// share them through Redis).
    pub fn with_calls(mut self, calls: Arc<dyn CallState>) -> Self {
        self.calls = calls;
        self
    }

    /// Count each user's chat sessions for presence in `online` instead of this
    /// process's memory (several nodes share one count through Redis).
    pub fn with_online(mut self, online: Arc<dyn OnlineState>) -> Self {
        self.online = online;
        self
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Finish pending storage writes; the last step of a graceful shutdown.
    pub async fn flush(&self) -> CoreResult<()> {
        self.storage.flush().await?;
        Ok(())
    }

    fn publish(&self, event: Event) -> usize {
        let n = self.bus.publish(event);
        self.metrics.events_delivered(n as u64);
        n
    }

    /// Push a chat event (`kind` is the Socket.IO event name) about object `obj_id`.
    fn push_chat(
        &self,
        to: impl IntoIterator<Item = Uin>,
        kind: &str,
        obj_id: String,
        body: crate::event::EventBody,
    ) -> usize {
        self.push_to_users(
            to,
            Event::new("chat", None, Some(kind.to_string()), Some(obj_id), body),
        )
    }

    /// Push an event straight to the Chat API sessions of some users (group messages,
    /// presence, calls). One shared `Arc<Event>`, so the door renders it once.
    fn push_to_users(&self, uins: impl IntoIterator<Item = Uin>, event: Event) -> usize {
        let event = Arc::new(event);
        let make = || Delivery::Event {
            event: event.clone(),
            merge: Vec::new(),
        };
        let delivered = self
            .registry
            .deliver_to_users(&mut uins.into_iter(), CHAT_DOOR, &make);
        self.metrics.events_delivered(delivered as u64);
        delivered
    }
}
