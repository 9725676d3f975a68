//! The Chat API's result codes (`result` in every ack) and the one mapping from core
//! errors to them. 0, 2, 7 and 13 are the document's; the others are confer's.

use confer_core::CoreError;

pub const OK: u64 = 0;
/// Missing, mistyped or unparseable arguments.
pub const INVALID_PARAMETERS: u64 = 1;
/// The session token is unknown or expired.
pub const SESSION_EXPIRED: u64 = 2;
/// No such group, message, call or user (or the caller may not know of it).
pub const NOT_FOUND: u64 = 3;
/// The caller is not allowed to do this (not the owner, not the sender …).
pub const FORBIDDEN: u64 = 4;
/// The caller is blocked in this group.
pub const BLOCKED: u64 = 5;
/// Larger than the server accepts.
pub const TOO_LARGE: u64 = 6;
/// The same session connected again elsewhere.
pub const CONFLICT: u64 = 7;
/// Too many requests; slow down.
pub const RATE_LIMITED: u64 = 8;
/// The server failed; nothing was changed.
pub const INTERNAL_ERROR: u64 = 9;
/// Not possible in the current state (e.g. leaving a private group's two members).
pub const INVALID_STATE: u64 = 10;
/// Unknown event name.
pub const UNKNOWN_EVENT: u64 = 11;
/// `create_call` in a group whose call is still live (ringing or accepted).
pub const BUSY: u64 = 12;
/// A retried `create_message` (same nonce): the original message is returned.
pub const DUPLICATE_MESSAGE: u64 = 13;

/// A non-zero result with a message for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub code: u64,
    pub message: String,
}

impl Failure {
    pub fn new(code: u64, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
        }
    }

    pub fn invalid(what: &str) -> Self {
        Failure::new(
            INVALID_PARAMETERS,
            format!("invalid or missing parameter: {what}"),
        )
    }
}

impl From<CoreError> for Failure {
    fn from(e: CoreError) -> Self {
        let code = match &e {
            CoreError::InvalidValue(_) | CoreError::InvalidSessionId => INVALID_PARAMETERS,
            CoreError::InvalidCredentials => SESSION_EXPIRED,
            CoreError::UserNotFound
            | CoreError::ConversationNotFound
            | CoreError::MessageNotFound
            | CoreError::CallNotFound
            | CoreError::AttachmentNotFound
            | CoreError::SessionNotFound => NOT_FOUND,
            CoreError::Unauthorized => FORBIDDEN,
            CoreError::Blocked => BLOCKED,
            CoreError::CallInProgress => BUSY,
            CoreError::TooLarge(_) => TOO_LARGE,
            CoreError::LoginThrottled { .. } | CoreError::Busy { .. } => RATE_LIMITED,
            CoreError::ConversationDestroyed
            | CoreError::InvalidOperation(_)
            | CoreError::UserExists
            | CoreError::ConversationExists
            | CoreError::AttachmentGone
            | CoreError::DuplicateSession
            | CoreError::SessionUnavailable
            | CoreError::NotConfigured(_) => INVALID_STATE,
            CoreError::Timeout
            | CoreError::Remote { .. }
            | CoreError::Storage(_)
            | CoreError::Internal(_) => {
                tracing::error!(error = %e, "chat api: internal error");
                return Failure::new(INTERNAL_ERROR, "internal error");
            }
        };
        Failure::new(code, chat_words(&e))
    }
}

/// The core's error text in the Chat API's own words: its conversations are "groups"
/// (the core's texts say "conference", the External API's word).
fn chat_words(e: &CoreError) -> String {
    match e {
        CoreError::ConversationNotFound => "group not found".into(),
        CoreError::ConversationExists => "group already exists".into(),
        CoreError::ConversationDestroyed => "group deleted".into(),
        other => other.to_string().replace("conference", "group"),
    }
}
