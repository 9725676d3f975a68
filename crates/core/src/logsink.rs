//! Where `session log` records go. The binary plugs in a GELF sender; with none
//! configured the command answers "not configured" rather than dropping logs silently.

use async_trait::async_trait;

use crate::event::Json;

/// One log record, in GELF's terms.
#[derive(Clone, Debug)]
pub struct LogRecord {
    pub host: String,
    pub short_message: String,
    pub full_message: Option<String>,
    /// Syslog level 0–7.
    pub level: u8,
    pub user: String,
    pub session_id: String,
    /// Extra fields as (name, JSON value text); the door validated the values.
    pub meta: Vec<(String, Json)>,
    pub timestamp_us: i64,
}

/// Why a record was not shipped.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The record cannot be shipped as it is (e.g. more than GELF's 128 UDP chunks): the
    /// client's to fix, so it is told (External API 100046).
    #[error("{0}")]
    TooLarge(String),
    /// The sink failed (network, server): an internal error.
    #[error("{0}")]
    Failed(String),
}

#[async_trait]
pub trait LogSink: Send + Sync {
    async fn send(&self, record: LogRecord) -> Result<(), LogError>;
}
