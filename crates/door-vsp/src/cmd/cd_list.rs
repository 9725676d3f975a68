//! `cd list` → `{confs: [{ID, name, owner, parties}]}`: the conferences the caller may
//! enter (those it occupies, and its chat groups), newest first, at most `max_list`.

use serde_json::Value;

use super::{fields, CmdResult, Ctx};

pub struct CdList;

impl CdList {
    pub async fn apply(self, ctx: &mut Ctx<'_>) -> CmdResult {
        let me = ctx.logged_in()?;
        let list = ctx.door.core.enterable_conferences(&me.who).await?;
        let confs: Vec<Value> = list
            .iter()
            .map(|(conv, parties)| {
                serde_json::json!({
                    "ID": conv.group_id.0,
                    "name": conv.name.clone().unwrap_or_else(|| conv.public_id()),
                    "owner": conv.owner.0,
                    "parties": parties,
                })
            })
            .collect();
        Ok(fields([("confs", Value::from(confs))]))
    }
}
