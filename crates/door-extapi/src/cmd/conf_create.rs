//! `media/conf/create {conf_id?, class: "sfu"|"mcu"}` → `{conf_id}`. The caller owns the
//! new conference; without a `conf_id` a random one is made. The calling session is
//! subscribed to the conference's events (it gets `created`) but has not joined it.
//! A destroyed conference's id is not reused (304003).

use serde_json::json;

use super::{CmdResult, Ctx, Reply};
use crate::args::Args;
use crate::error::CmdError;

pub struct ConfCreate {
    conf_id: Option<String>,
    class: String,
}

impl ConfCreate {
    pub fn parse(args: &mut Args) -> Result<Self, CmdError> {
        Ok(ConfCreate {
            conf_id: args.opt_str("conf_id")?,
            class: args.opt_str("class")?.unwrap_or_else(|| "sfu".to_string()),
        })
    }

    pub async fn apply(self, ctx: &mut Ctx<'_>) -> CmdResult {
        let me = ctx.logged_in()?;
        let conv = ctx
            .core
            .create_conference(&me.who, &me.session.session_id, self.conf_id, self.class)
            .await?;
        Ok(Reply::Data(Some(json!({ "conf_id": conv.public_id() }))))
    }
}
