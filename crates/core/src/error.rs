//! The core's one error type. Each door maps every variant to its own wire codes in one
//! place (for the External API: `door-extapi/src/error.rs`).

use crate::store::StoreError;

pub type CoreResult<T> = Result<T, CoreError>;

#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// The caller is authenticated but may not do this.
    #[error("unauthorized")]
    Unauthorized,
    /// Wrong login, password or token.
    #[error("invalid credentials")]
    InvalidCredentials,
    /// No account with that login or number.
    #[error("user not found")]
    UserNotFound,
    /// An account with that login or number exists already.
    #[error("user already exists")]
    UserExists,
    /// A session with that id is registered already.
    #[error("duplicated session id")]
    DuplicateSession,
    /// A session id that is not acceptable (empty or too long).
    #[error("invalid session id")]
    InvalidSessionId,
    /// No live session with that id.
    #[error("session not found")]
    SessionNotFound,
    /// No conversation with that id or alias.
    #[error("conference not found")]
    ConversationNotFound,
    /// A conversation with that alias exists already.
    #[error("conference already exists")]
    ConversationExists,
    /// The conversation was destroyed; its history is kept but it takes no changes.
    #[error("conference destroyed")]
    ConversationDestroyed,
    /// No message with that id in that conversation.
    #[error("message not found")]
    MessageNotFound,
    /// No call with that id in that conversation.
    #[error("call not found")]
    CallNotFound,
    /// The group has a live call already (ringing or accepted).
    #[error("a call is already live in this group")]
    CallInProgress,
    /// No attachment with that id that the caller may see.
    #[error("attachment not found")]
    AttachmentNotFound,
    /// The attachment's file was removed by clean-up.
    #[error("attachment gone")]
    AttachmentGone,
    /// The caller was blocked in this conversation.
    #[error("blocked")]
    Blocked,
    /// Something is larger than the configured limit.
    #[error("too large: {0}")]
    TooLarge(&'static str),
    /// A parameter has a value the operation cannot take.
    #[error("invalid value: {0}")]
    InvalidValue(String),
    /// The operation does not apply in the current state (e.g. joining twice).
    #[error("invalid operation: {0}")]
    InvalidOperation(String),
    /// Too many failed logins for this account or from this address: try again after
    /// `retry_after` (HTTP 429 with `Retry-After`).
    #[error("too many login attempts; retry in {} s", retry_after.as_secs().max(1))]
    LoginThrottled { retry_after: std::time::Duration },
    /// The server is too busy to do this now (the password hasher's queue is full): try
    /// again after `retry_after` (HTTP 503 with `Retry-After`).
    #[error("server busy; retry in {} s", retry_after.as_secs().max(1))]
    Busy { retry_after: std::time::Duration },
    /// The other side did not answer in time.
    #[error("timeout")]
    Timeout,
    /// The remote session answered a forwarded command with an error.
    #[error("remote error {code}: {error}")]
    Remote { code: u64, error: String },
    /// The session's outbound queue is full or closed; the event was not delivered.
    #[error("session unavailable")]
    SessionUnavailable,
    /// Nothing is configured to take this (e.g. no GELF server for `session log`).
    #[error("not configured: {0}")]
    NotConfigured(&'static str),
    /// Storage failed; the operation did not take effect.
    #[error("storage: {0}")]
    Storage(#[from] StoreError),
    /// A bug or an environment failure that the caller cannot fix.
    #[error("internal error: {0}")]
    Internal(String),
}
