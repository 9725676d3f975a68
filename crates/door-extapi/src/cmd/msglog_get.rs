//! `media/conf/msglog_get {conf_id, after_msg_id?, limit?}` → the stored messages, oldest
//! first. Without `after_msg_id` it starts at the first. A page stops at `limit` (capped
//! by `max_list`) or `max_list_bytes`, whichever comes first; the answer then carries
//! `"more":true` beside `data`, and the next page starts at `after_msg_id` = the last
//! `msg_id` received.

use serde_json::Value;

use super::{CmdResult, Ctx, Reply};
use crate::args::Args;
use crate::error::CmdError;
use crate::render;

pub struct MsglogGet {
    conf_id: String,
    after: u64,
    limit: Option<usize>,
}

impl MsglogGet {
    pub fn parse(args: &mut Args) -> Result<Self, CmdError> {
        Ok(MsglogGet {
            conf_id: args.req_str("conf_id")?,
            after: args.opt_u64("after_msg_id")?.unwrap_or(0),
            limit: args
                .opt_u64("limit")?
                .map(|l| usize::try_from(l).unwrap_or(usize::MAX)),
        })
    }

    pub async fn apply(self, ctx: &mut Ctx<'_>) -> CmdResult {
        let me = ctx.logged_in()?;
        let page = ctx
            .core
            .conference_messages(&me.who, &self.conf_id, self.after, self.limit)
            .await?;
        let list: Vec<Value> = page.messages.iter().map(render::message).collect();
        Ok(Reply::Page {
            list: Value::Array(list),
            more: page.more,
        })
    }
}
