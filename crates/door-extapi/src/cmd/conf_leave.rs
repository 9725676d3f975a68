//! `media/conf/leave {conf_id}`: the caller's session leaves; the others get
//! `stopped_member`.

use super::{CmdResult, Ctx, Reply};
use crate::args::Args;
use crate::error::CmdError;

pub struct ConfLeave {
    conf_id: String,
}

impl ConfLeave {
    pub fn parse(args: &mut Args) -> Result<Self, CmdError> {
        Ok(ConfLeave {
            conf_id: args.req_str("conf_id")?,
        })
    }

    pub async fn apply(self, ctx: &mut Ctx<'_>) -> CmdResult {
        let me = ctx.logged_in()?;
        ctx.core
            .leave_conference(&me.who, &me.session.session_id, &self.conf_id)
            .await?;
        Ok(Reply::Data(None))
    }
}
