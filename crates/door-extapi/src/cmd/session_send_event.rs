//! `core/session/send_event {session_id, type?, body?}`: a `core/session_event` to one
//! live session.

use confer_core::{EventBody, Json, SessionId};

use super::{body_arg, CmdResult, Ctx, Reply};
use crate::args::Args;
use crate::error::CmdError;

pub struct SessionSendEvent {
    session_id: SessionId,
    kind: Option<String>,
    body: Option<Json>,
}

impl SessionSendEvent {
    pub fn parse(args: &mut Args) -> Result<Self, CmdError> {
        Ok(SessionSendEvent {
            session_id: SessionId::new(args.req_str("session_id")?),
            kind: args.pattern("type")?,
            body: body_arg(args, "body")?,
        })
    }

    pub fn apply(self, ctx: &mut Ctx<'_>) -> CmdResult {
        ctx.logged_in()?;
        let body = self.body.map_or(EventBody::Empty, EventBody::Json);
        ctx.core
            .send_session_event(&self.session_id, self.kind, body)?;
        Ok(Reply::Data(None))
    }
}
