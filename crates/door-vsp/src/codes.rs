//! The conference door's result codes, and the one mapping from core errors to them.
//!
//! The original protocol's codes beyond 0 are not public; these are confer's own,
//! documented in `docs/vsp.md`. Every error answer carries a code and a `text`.

use confer_core::CoreError;

pub const OK: u32 = 0;
/// Any command but `nd login` before login.
pub const NOT_LOGGED_IN: u32 = 1;
/// A parameter is missing, not a string, or not a valid value.
pub const BAD_PARAMS: u32 = 2;
pub const UNKNOWN_COMMAND: u32 = 3;
/// The conference does not exist, or the caller may not see it.
pub const NOT_FOUND: u32 = 4;
/// Only the owner may (kick, mute, end), or the caller is blocked there.
pub const FORBIDDEN: u32 = 5;
/// Not now: already logged in, already joined, not joined, conference ended.
pub const INVALID_STATE: u32 = 6;
/// A message over `max_message_bytes`.
pub const TOO_LARGE: u32 = 7;
/// Over the connection's command rate, or too many login attempts / the server too busy
/// to check a password now (the text says when to try again).
pub const RATE_LIMITED: u32 = 8;
pub const INTERNAL_ERROR: u32 = 9;
/// The frame is not a JSON object, or its `cmd`/`obj` is missing or not a string.
pub const BAD_FRAME: u32 = 10;
/// The server has no media endpoint (yet): `CALLME_S2`, `hangup`.
pub const MEDIA_UNAVAILABLE: u32 = 11;
/// Wrong user, password or token.
pub const LOGIN_FAILED: u32 = 12;

/// An error answer: `result: {code, text}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VspError {
    pub code: u32,
    pub text: String,
}

impl VspError {
    pub fn new(code: u32, text: impl Into<String>) -> Self {
        VspError {
            code,
            text: text.into(),
        }
    }

    pub fn bad_param(name: &str, why: &str) -> Self {
        VspError::new(BAD_PARAMS, format!("bad parameter {name}: {why}"))
    }
}

impl From<CoreError> for VspError {
    fn from(e: CoreError) -> Self {
        let code = match &e {
            CoreError::InvalidCredentials => LOGIN_FAILED,
            CoreError::Unauthorized | CoreError::Blocked => FORBIDDEN,
            CoreError::ConversationNotFound
            | CoreError::UserNotFound
            | CoreError::SessionNotFound
            | CoreError::MessageNotFound
            | CoreError::CallNotFound
            | CoreError::AttachmentNotFound
            | CoreError::AttachmentGone => NOT_FOUND,
            CoreError::InvalidValue(_) | CoreError::InvalidSessionId => BAD_PARAMS,
            CoreError::TooLarge(_) => TOO_LARGE,
            CoreError::ConversationDestroyed
            | CoreError::ConversationExists
            | CoreError::InvalidOperation(_)
            | CoreError::CallInProgress
            | CoreError::DuplicateSession
            | CoreError::UserExists
            | CoreError::SessionUnavailable => INVALID_STATE,
            CoreError::LoginThrottled { .. } | CoreError::Busy { .. } => RATE_LIMITED,
            CoreError::NotConfigured(_) => MEDIA_UNAVAILABLE,
            CoreError::Timeout
            | CoreError::Remote { .. }
            | CoreError::Storage(_)
            | CoreError::Internal(_) => {
                tracing::error!(error = %e, "internal error answering a conference command");
                return VspError::new(INTERNAL_ERROR, "internal error");
            }
        };
        VspError::new(code, e.to_string())
    }
}
