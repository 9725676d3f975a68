//! `core/user/get {user}` → `{session_id: {remote, type, uin, …}}` for each live session
//! of the user, with the session's login metadata beside the server's fields (which win
//! a key both have). The user itself or the admin may ask.

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
                let mut info = match s.meta.as_ref().map(crate::render::json_value) {
                    Some(Value::Object(meta)) => meta,
                    _ => Map::new(),
                };
                info.insert("remote".into(), json!(s.remote));
                info.insert("type".into(), json!(s.door));
                info.insert("uin".into(), json!(s.uin.0));
                (s.session_id.to_string(), Value::Object(info))
            })
            .collect();
        Ok(Reply::Data(Some(Value::Object(sessions))))
    }
}
