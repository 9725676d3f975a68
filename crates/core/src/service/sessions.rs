//! Live sessions: opening and closing them, user and session events, commands forwarded
//! between sessions, and `session log`.

use std::collections::BTreeMap;

use tokio::sync::oneshot;

use crate::bus::{Delivery, ForwardedRequest, Mailbox, PushError, SessionInfo};
use crate::error::{CoreError, CoreResult};
use crate::event::{Event, EventBody, Grant, Json, Subscription};
use crate::ids::SessionId;
use crate::logsink::{LogError, LogRecord};
use crate::model::Principal;

use super::Core;

/// The longest client-chosen session id accepted.
const MAX_SESSION_ID_LEN: usize = 128;

/// The error code a stopped session is closed with (External API "session stop").
pub const SESSION_STOP_CODE: u64 = 100061;

/// The subscriptions every session starts with: its user's and its own session's events.
pub(super) const OWN_SUBSCRIPTIONS: usize = 2;

impl Core {
    /// Register a new live session for `who` and subscribe it to its own user and session
    /// events. `requested` is a client-chosen id; a random one is made when it is `None`.
    /// `token` is the login token it authenticated with, if any: the session ends with it.
    /// `meta` is what the client said about itself, kept with the session.
    #[allow(clippy::too_many_arguments)]
    pub fn open_session(
        &self,
        who: &Principal,
        requested: Option<String>,
        token: Option<&str>,
        remote: String,
        door: &'static str,
        mailbox: Mailbox,
        meta: Option<Json>,
    ) -> CoreResult<SessionInfo> {
        let session_id = match requested {
            Some(id) if id.is_empty() || id.len() > MAX_SESSION_ID_LEN => {
                return Err(CoreError::InvalidSessionId)
            }
            Some(id) => SessionId::new(id),
            None => SessionId::random(),
        };
        let info = SessionInfo {
            session_id,
            uin: who.uin,
            user: who.login.clone(),
            remote,
            door,
            token_hash: token.map(crate::auth::token_hash),
            started_at_us: crate::model::now_us(),
            meta,
        };
        self.register_session(info, mailbox)
    }

    /// Register a session and subscribe it to its own user and session events.
    pub(super) fn register_session(
        &self,
        info: SessionInfo,
        mailbox: Mailbox,
    ) -> CoreResult<SessionInfo> {
        if !self.registry.register(info.clone(), mailbox) {
            return Err(CoreError::DuplicateSession);
        }
        let session_id = &info.session_id;
        // Its own, for its whole life: no grant, and not counted against the cap.
        self.bus.subscribe(
            session_id,
            Subscription::to_object("core", "session_event", session_id.as_str()),
            None,
            usize::MAX,
        );
        self.bus.subscribe(
            session_id,
            Subscription::to_object("core", "user_event", &info.user),
            None,
            usize::MAX,
        );
        Ok(info)
    }

    /// Forget a session that ended: it leaves its conference rooms (the others are told),
    /// loses its subscriptions and leaves the registry. Conference occupancy is kept, so
    /// the user still reads the history after reconnecting.
    pub async fn close_session(&self, session: &SessionInfo) {
        for room in self.registry.rooms_of(&session.session_id) {
            if let Some(member) = self.registry.leave_room(room, &session.session_id) {
                // Only the public id is needed; a conversation that vanished has nobody
                // left to tell.
                if let Ok(Some(conv)) = self.storage.conversation(room).await {
                    self.publish_member_change(conv.public_id(), member, "stopped_member");
                }
            }
        }
        self.bus.drop_session(&session.session_id);
        self.registry.unregister(&session.session_id);
        // Whoever watched this session's events watched this session, not its name: a
        // later session with the same id is not theirs to watch.
        self.revoke_grant(Grant::Session(session.session_id.clone()));
    }

    /// A connection ended whose full queue refused `dropped` deliveries (read from its
    /// mailbox once the session is closed, so the count is final): one log line for the
    /// cut, whatever the count, and the count in `/metrics`. Every door calls it.
    pub fn report_dropped(&self, session: Option<&SessionId>, door: &'static str, dropped: u64) {
        if dropped == 0 {
            return;
        }
        self.metrics.deliveries_dropped(dropped);
        match session {
            Some(s) => {
                tracing::warn!(session = %s, door, dropped, "outbound queue full: session cut, deliveries dropped")
            }
            None => tracing::warn!(
                door,
                dropped,
                "outbound queue full: connection cut, deliveries dropped"
            ),
        }
    }

    /// Users with live sessions and their session ids. The admin sees everybody; any other
    /// user sees only itself.
    pub fn list_users(&self, caller: &Principal) -> BTreeMap<String, Vec<SessionId>> {
        let mut users: BTreeMap<String, Vec<SessionId>> = BTreeMap::new();
        for s in self.registry.all_sessions() {
            if caller.admin || s.user == caller.login {
                users.entry(s.user).or_default().push(s.session_id);
            }
        }
        for sessions in users.values_mut() {
            sessions.sort();
        }
        users
    }

    /// The live sessions of a user: the user itself or the admin may ask.
    pub fn user_sessions(&self, caller: &Principal, user: &str) -> CoreResult<Vec<SessionInfo>> {
        if !caller.admin && caller.login != user {
            return Err(CoreError::Unauthorized);
        }
        let sessions = self.registry.sessions_of_user(user);
        if sessions.is_empty() {
            return Err(CoreError::UserNotFound);
        }
        Ok(sessions)
    }

    /// Disconnect a session: the admin may stop any, a user only its own.
    pub fn stop_session(&self, caller: &Principal, target: &SessionId) -> CoreResult<()> {
        let info = self
            .registry
            .session(target)
            .ok_or(CoreError::SessionNotFound)?;
        if !caller.admin && info.user != caller.login {
            return Err(CoreError::Unauthorized);
        }
        let stop = Delivery::Stop {
            code: SESSION_STOP_CODE,
            reason: "session stop".into(),
        };
        match self.registry.deliver(target, stop) {
            // A full queue has cut the session already, which is what was asked.
            Ok(()) | Err(PushError::Full) => Ok(()),
            Err(PushError::Closed) => Err(CoreError::SessionNotFound),
        }
    }

    /// Send a `core/user_event` to every session of `user`. Any logged-in user may send
    /// to any existing user; that is what the event is for.
    pub async fn send_user_event(
        &self,
        user: &str,
        kind: Option<String>,
        body: Option<Json>,
    ) -> CoreResult<()> {
        if !self.user_exists(user).await? {
            return Err(CoreError::UserNotFound);
        }
        self.publish(Event::new(
            "core",
            Some("user_event".into()),
            kind,
            Some(user.to_string()),
            body.map_or(EventBody::Empty, EventBody::Json),
        ));
        Ok(())
    }

    /// Send a `core/session_event` to one live session.
    pub fn send_session_event(
        &self,
        target: &SessionId,
        kind: Option<String>,
        body: EventBody,
    ) -> CoreResult<()> {
        if self.registry.session(target).is_none() {
            return Err(CoreError::SessionNotFound);
        }
        self.publish(Event::new(
            "core",
            Some("session_event".into()),
            kind,
            Some(target.to_string()),
            body,
        ));
        Ok(())
    }

    /// Forward a command to another session and wait for its client's answer.
    pub async fn forward_command(
        &self,
        target: &SessionId,
        class: String,
        subclass: Option<String>,
        cmd: String,
        data: Option<Json>,
    ) -> CoreResult<Option<Json>> {
        let (reply, answer) = oneshot::channel();
        let request = ForwardedRequest {
            class,
            subclass,
            cmd,
            data,
            reply,
        };
        match self
            .registry
            .deliver(target, Delivery::Request(Box::new(request)))
        {
            Ok(()) => {}
            Err(PushError::Closed) => return Err(CoreError::SessionNotFound),
            Err(PushError::Full) => return Err(CoreError::SessionUnavailable),
        }
        match tokio::time::timeout(self.settings.forward_timeout, answer).await {
            Err(_) => Err(CoreError::Timeout),
            // The target's connection ended before answering.
            Ok(Err(_)) => Err(CoreError::SessionNotFound),
            Ok(Ok(Ok(data))) => Ok(data),
            Ok(Ok(Err(remote))) => Err(CoreError::Remote {
                code: remote.code,
                error: remote.error,
            }),
        }
    }

    /// Ship a log record to the configured sink.
    pub async fn log(&self, record: LogRecord) -> CoreResult<()> {
        let sink = self.logs.as_ref().ok_or(CoreError::NotConfigured("gelf"))?;
        sink.send(record).await.map_err(|e| match e {
            LogError::TooLarge(why) => CoreError::InvalidValue(why),
            LogError::Failed(why) => CoreError::Internal(why),
        })
    }
}
