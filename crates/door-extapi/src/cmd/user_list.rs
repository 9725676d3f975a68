//! `core/user/list` → `{user: [session_id…]}`: users with live sessions. The admin sees
//! everybody; a user sees only itself.

use serde_json::{Map, Value};

use super::{CmdResult, Ctx, Reply};

pub struct UserList;

impl UserList {
    pub fn apply(self, ctx: &mut Ctx<'_>) -> CmdResult {
        let me = ctx.logged_in()?;
        let users: Map<String, Value> = ctx
            .core
            .list_users(&me.who)
            .into_iter()
            .map(|(user, sessions)| {
                let ids = sessions.iter().map(|s| Value::from(s.as_str())).collect();
                (user, Value::Array(ids))
            })
            .collect();
        Ok(Reply::Data(Some(Value::Object(users))))
    }
}
