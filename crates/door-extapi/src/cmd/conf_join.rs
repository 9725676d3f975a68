//! `media/conf/join {conf_id, role?}`: the caller's session joins the conference (role
//! "member" unless given) and is subscribed to its events; the others get
//! `started_member`.

use super::{CmdResult, Ctx, Reply};
use crate::args::Args;
use crate::error::CmdError;

pub struct ConfJoin {
    conf_id: String,
    role: String,
}

impl ConfJoin {
    pub fn parse(args: &mut Args) -> Result<Self, CmdError> {
        Ok(ConfJoin {
            conf_id: args.req_str("conf_id")?,
            role: args
                .opt_str("role")?
                .unwrap_or_else(|| "member".to_string()),
        })
    }

    pub async fn apply(self, ctx: &mut Ctx<'_>) -> CmdResult {
        let me = ctx.logged_in()?;
        ctx.core
            .join_conference(&me.who, &me.session.session_id, &self.conf_id, self.role)
            .await?;
        Ok(Reply::Data(None))
    }
}
