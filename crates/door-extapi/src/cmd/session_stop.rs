//! `core/session/stop {session_id}`: disconnect a session. The admin may stop any, a user
//! only its own.

use confer_core::SessionId;

use super::{CmdResult, Ctx, Reply};
use crate::args::Args;
use crate::error::CmdError;

pub struct SessionStop {
    session_id: SessionId,
}

impl SessionStop {
    pub fn parse(args: &mut Args) -> Result<Self, CmdError> {
        Ok(SessionStop {
            session_id: SessionId::new(args.req_str("session_id")?),
        })
    }

    pub fn apply(self, ctx: &mut Ctx<'_>) -> CmdResult {
        let me = ctx.logged_in()?;
        ctx.core.stop_session(&me.who, &self.session_id)?;
        Ok(Reply::Data(None))
    }
}
