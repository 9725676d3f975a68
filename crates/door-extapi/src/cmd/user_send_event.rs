//! `core/user/send_event {user, type?, body?}`: a `core/user_event` to every session of
//! `user`. Any logged-in user may send one to any existing user.

use confer_core::Json;

use super::{body_arg, CmdResult, Ctx, Reply};
use crate::args::Args;
use crate::error::CmdError;

pub struct UserSendEvent {
    user: String,
    kind: Option<String>,
    body: Option<Json>,
}

impl UserSendEvent {
    pub fn parse(args: &mut Args) -> Result<Self, CmdError> {
        Ok(UserSendEvent {
            user: args.req_str("user")?,
            kind: args.pattern("type")?,
            body: body_arg(args, "body")?,
        })
    }

    pub async fn apply(self, ctx: &mut Ctx<'_>) -> CmdResult {
        ctx.logged_in()?;
        ctx.core
            .send_user_event(&self.user, self.kind, self.body)
            .await?;
        Ok(Reply::Data(None))
    }
}
