//! `media/conf/get_info {conf_id}` → `{class, members: {session_id: {role, user_id}}}`.

use serde_json::{json, Map, Value};

use super::conf_get_list::conf_class;
use super::{CmdResult, Ctx, Reply};
use crate::args::Args;
use crate::error::CmdError;

pub struct ConfGetInfo {
    conf_id: String,
}

impl ConfGetInfo {
    pub fn parse(args: &mut Args) -> Result<Self, CmdError> {
        Ok(ConfGetInfo {
            conf_id: args.req_str("conf_id")?,
        })
    }

    pub async fn apply(self, ctx: &mut Ctx<'_>) -> CmdResult {
        let me = ctx.logged_in()?;
        let (conv, members) = ctx.core.conference_info(&me.who, &self.conf_id).await?;
        let members: Map<String, Value> = members
            .into_iter()
            .map(|m| {
                (
                    m.session_id.to_string(),
                    json!({"role": m.role, "user_id": m.user}),
                )
            })
            .collect();
        Ok(Reply::Data(Some(json!({
            "conf_id": conv.public_id(),
            "class": conf_class(&conv.kind),
            "members": members,
        }))))
    }
}
