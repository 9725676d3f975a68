//! `conf instantmsg {ID, msg}`: a line of chat, stored as a core text message (so the
//! External API's `msglog_get` and the Chat API's `list_message` show it, and their
//! members get `msglog_new_msg` / `message`); every party in the conference, the sender
//! included, gets `conf.instantmsg`.

use serde_json::Map;

use super::{CmdResult, Ctx};
use crate::codes::VspError;
use crate::frame::Params;

pub struct ConfInstantmsg {
    id: u64,
    msg: String,
}

impl ConfInstantmsg {
    pub fn parse(p: &mut Params) -> Result<Self, VspError> {
        Ok(ConfInstantmsg {
            id: p.id("ID")?,
            msg: p.req("msg")?,
        })
    }

    pub async fn apply(self, ctx: &mut Ctx<'_>) -> CmdResult {
        let me = ctx.logged_in()?;
        ctx.door
            .core
            .post_conference_text(
                &me.who,
                &me.session.session_id,
                &self.id.to_string(),
                self.msg,
            )
            .await?;
        Ok(Map::new())
    }
}
