//! `media/conf/msglog_send {conf_id, msg}` → `{msg_id}`, answered only once the message
//! is durably stored; then members get `msglog_new_msg`.
//!
//! The stored message is shown as `msg` plus the server's fields. The server's fields
//! always win: `msg_id`, `user_id`, `session_id` and `timestamp` in `msg` are replaced,
//! and `message_id`, `type`, `deleted` and `files` (the uploads a message carries, with
//! their urls), which the server shows only on some messages, are refused here (100046),
//! so no client can pass its own for the server's.

use serde_json::json;

use super::{object_json, CmdResult, Ctx, Reply};
use crate::args::Args;
use crate::error::CmdError;
use crate::render::RESERVED_MSG_KEYS;

pub struct MsglogSend {
    conf_id: String,
    msg: confer_core::Json,
    /// Attachment item ids named in `msg.attachments` (numbers, strings or `{item_id}`).
    attachment_ids: Vec<u64>,
}

impl MsglogSend {
    pub fn parse(args: &mut Args) -> Result<Self, CmdError> {
        let conf_id = args.req_str("conf_id")?;
        let msg = args.req_object("msg")?;
        if let Some(key) = RESERVED_MSG_KEYS.iter().find(|k| msg.contains_key(**k)) {
            return Err(CmdError::new(
                crate::error::INVALID_VALUE,
                format!("invalid value: msg.{key} is a field of the server's"),
            ));
        }
        let attachment_ids = match msg.get("attachments") {
            None => Vec::new(),
            Some(list) => confer_core::references::item_ids(list, crate::args::upload_shape)
                .ok_or_else(|| CmdError::invalid("msg.attachments"))?,
        };
        Ok(MsglogSend {
            conf_id,
            msg: object_json(msg),
            attachment_ids,
        })
    }

    pub async fn apply(self, ctx: &mut Ctx<'_>) -> CmdResult {
        let me = ctx.logged_in()?;
        let message = ctx
            .core
            .post_conference_message(
                &me.who,
                &me.session.session_id,
                &self.conf_id,
                self.msg,
                &self.attachment_ids,
            )
            .await?;
        Ok(Reply::Data(Some(json!({ "msg_id": message.seq }))))
    }
}
