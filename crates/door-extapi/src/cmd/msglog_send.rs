//! `media/conf/msglog_send {conf_id, msg}` → `{msg_id}`, answered only once the message
//! is durably stored; then members get `msglog_new_msg`.

use serde_json::json;

use super::{object_json, CmdResult, Ctx, Reply};
use crate::args::Args;
use crate::error::CmdError;

pub struct MsglogSend {
    conf_id: String,
    msg: confer_core::Json,
}

impl MsglogSend {
    pub fn parse(args: &mut Args) -> Result<Self, CmdError> {
        Ok(MsglogSend {
            conf_id: args.req_str("conf_id")?,
            msg: object_json(args.req_object("msg")?),
        })
    }

    pub async fn apply(self, ctx: &mut Ctx<'_>) -> CmdResult {
        let me = ctx.logged_in()?;
        let message = ctx
            .core
            .post_conference_message(&me.who, &me.session.session_id, &self.conf_id, self.msg)
            .await?;
        Ok(Reply::Data(Some(json!({ "msg_id": message.seq }))))
    }
}
