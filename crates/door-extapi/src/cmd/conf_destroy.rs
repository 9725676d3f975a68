//! `media/conf/destroy {conf_id}`: the owner or the admin ends a conference. Its members
//! get `destroyed`; its message history is kept.

use super::{CmdResult, Ctx, Reply};
use crate::args::Args;
use crate::error::CmdError;

pub struct ConfDestroy {
    conf_id: String,
}

impl ConfDestroy {
    pub fn parse(args: &mut Args) -> Result<Self, CmdError> {
        Ok(ConfDestroy {
            conf_id: args.req_str("conf_id")?,
        })
    }

    pub async fn apply(self, ctx: &mut Ctx<'_>) -> CmdResult {
        let me = ctx.logged_in()?;
        ctx.core.destroy_conference(&me.who, &self.conf_id).await?;
        Ok(Reply::Data(None))
    }
}
