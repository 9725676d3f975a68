//! `core/session/log {source, message, level?, full_message?, meta?}`: ship a log record
//! (GELF 1.1 in the binary). The caller's user and session id are added; `meta` values
//! must be integers or strings, as GELF additional fields. A meta key that would replace
//! one of the server's fields (`user`, `session_id`) or GELF's forbidden `_id` is renamed
//! by the sink (`_meta_user`), never dropped and never in the server's place. `level` is
//! 1–7 (the spec's range; 0, emergency, is not a client's to send). A record too large to
//! ship (over GELF's 128 UDP chunks) is refused with 100046, not dropped.

use confer_core::logsink::LogRecord;
use confer_core::model::now_us;
use confer_core::Json;
use serde_json::Value;

use super::{CmdResult, Ctx, Reply};
use crate::args::Args;
use crate::error::CmdError;

pub struct SessionLog {
    source: String,
    message: String,
    level: u8,
    full_message: Option<String>,
    meta: Vec<(String, Json)>,
}

impl SessionLog {
    pub fn parse(args: &mut Args) -> Result<Self, CmdError> {
        let level = match args.opt_u64("level")? {
            None => 1,
            Some(l @ 1..=7) => l as u8,
            Some(_) => return Err(CmdError::invalid("level")),
        };
        let mut meta = Vec::new();
        for (key, value) in args.opt_object("meta")?.unwrap_or_default() {
            let valid_key = !key.is_empty()
                && key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
            let valid_value = matches!(value, Value::String(_)) || value.as_i64().is_some();
            if !valid_key || !valid_value {
                return Err(CmdError::invalid(&format!("meta.{key}")));
            }
            meta.push((key, Json::from_validated(value.to_string())));
        }
        Ok(SessionLog {
            source: args.req_str("source")?,
            message: args.req_str("message")?,
            level,
            full_message: args.opt_str("full_message")?,
            meta,
        })
    }

    pub async fn apply(self, ctx: &mut Ctx<'_>) -> CmdResult {
        let me = ctx.logged_in()?;
        let record = LogRecord {
            host: self.source,
            short_message: self.message,
            full_message: self.full_message,
            level: self.level,
            user: me.who.login.clone(),
            session_id: me.session.session_id.to_string(),
            meta: self.meta,
            timestamp_us: now_us(),
        };
        ctx.core.log(record).await?;
        Ok(Reply::Data(None))
    }
}
