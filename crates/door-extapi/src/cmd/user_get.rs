//! `core/user/get {user}` → `{session_id: {remote, type}}` for each live session of the
//! user. The user itself or the admin may ask.

use serde_json::{json, Map, Value};

use super::{CmdResult, Ctx, Reply};
use crate::args::Args;
use crate::error::CmdError;

pub struct UserGet {
    user: String,
}

impl UserGet {
    pub fn parse(args: &mut Args) -> Result<Self, CmdError> {
        Ok(UserGet {
            user: args.req_str("user")?,
        })
    }

    pub fn apply(self, ctx: &mut Ctx<'_>) -> CmdResult {
        let me = ctx.logged_in()?;
        let sessions: Map<String, Value> = ctx
            .core
            .user_sessions(&me.who, &self.user)?
            .into_iter()
            .map(|s| {
                (
                    s.session_id.to_string(),
                    json!({"remote": s.remote, "type": s.door, "uin": s.uin.0}),
                )
            })
            .collect();
        Ok(Reply::Data(Some(Value::Object(sessions))))
    }
}
