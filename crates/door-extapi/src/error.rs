//! The External API's error codes, and the one mapping from core errors to them.

use confer_core::CoreError;

pub const INTERNAL_ERROR: u64 = 100002;
pub const INVALID_STATE: u64 = 100004;
pub const TIMEOUT: u64 = 100005;
/// `service` in `event subscribe`/`send` names a service other than this server.
pub const SERVICE_NOT_FOUND: u64 = 100020;
pub const NOT_IMPLEMENTED: u64 = 100006;
pub const UNAUTHORIZED: u64 = 100030;
pub const NOT_AUTHENTICATED: u64 = 100031;
pub const ALREADY_AUTHENTICATED: u64 = 100032;
pub const USER_NOT_FOUND: u64 = 100033;
pub const DUPLICATED_SESSION_ID: u64 = 100034;
pub const INVALID_SESSION_ID: u64 = 100035;
pub const INVALID_OPERATION: u64 = 100040;
pub const INVALID_PARAMETERS: u64 = 100041;
pub const UNKNOWN_COMMAND: u64 = 100042;
/// Not in the original list (its gap): a command over the connection's
/// `extapi_rate_per_sec`/`extapi_rate_burst`, not run.
pub const RATE_LIMITED: u64 = 100043;
pub const SYNTAX_ERROR: u64 = 100044;
pub const MISSING_FIELD: u64 = 100045;
pub const INVALID_VALUE: u64 = 100046;
/// confer's own: too many failed logins (account or address), or the server is too busy
/// to check a password now; the text says after how many seconds to try again.
pub const TRY_LATER: u64 = 100050;
pub const SESSION_TIMEOUT: u64 = 100060;
pub const SESSION_NOT_FOUND: u64 = 100062;
pub const CONF_NOT_FOUND: u64 = 304001;
pub const CONF_ALREADY_EXISTS: u64 = 304002;
pub const CONF_DESTROYED: u64 = 304003;

/// An error answer: `{"result":"error","data":{"code":C,"error":"text"}}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CmdError {
    pub code: u64,
    pub error: String,
}

impl CmdError {
    pub fn new(code: u64, error: impl Into<String>) -> Self {
        CmdError {
            code,
            error: error.into(),
        }
    }

    pub fn missing(field: &str) -> Self {
        CmdError::new(MISSING_FIELD, format!("missing field: {field}"))
    }

    pub fn invalid(field: &str) -> Self {
        CmdError::new(INVALID_VALUE, format!("invalid value: {field}"))
    }
}

impl From<CoreError> for CmdError {
    fn from(e: CoreError) -> Self {
        let code = match &e {
            CoreError::Unauthorized | CoreError::InvalidCredentials => UNAUTHORIZED,
            CoreError::UserNotFound => USER_NOT_FOUND,
            CoreError::UserExists | CoreError::InvalidOperation(_) | CoreError::CallInProgress => {
                INVALID_OPERATION
            }
            CoreError::DuplicateSession => DUPLICATED_SESSION_ID,
            CoreError::InvalidSessionId => INVALID_SESSION_ID,
            CoreError::SessionNotFound | CoreError::SessionUnavailable => SESSION_NOT_FOUND,
            CoreError::ConversationNotFound => CONF_NOT_FOUND,
            CoreError::ConversationExists => CONF_ALREADY_EXISTS,
            CoreError::ConversationDestroyed => CONF_DESTROYED,
            CoreError::InvalidValue(_)
            | CoreError::TooLarge(_)
            | CoreError::MessageNotFound
            | CoreError::CallNotFound
            | CoreError::AttachmentNotFound
            | CoreError::AttachmentGone => INVALID_VALUE,
            CoreError::Blocked => UNAUTHORIZED,
            CoreError::Timeout => TIMEOUT,
            CoreError::LoginThrottled { .. } | CoreError::Busy { .. } => TRY_LATER,
            CoreError::Remote { code, error } => return CmdError::new(*code, error.clone()),
            CoreError::NotConfigured(_) => NOT_IMPLEMENTED,
            CoreError::Storage(_) | CoreError::Internal(_) => {
                tracing::error!(error = %e, "internal error answering a command");
                return CmdError::new(INTERNAL_ERROR, "internal error");
            }
        };
        CmdError::new(code, e.to_string())
    }
}
