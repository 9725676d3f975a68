//! `media/conf/get_list` → `[{conf_id, class}]`: the conferences the caller occupies
//! (all of them, for the admin).

use confer_core::ConversationKind;
use serde_json::{json, Value};

use super::{CmdResult, Ctx, Reply};

pub struct ConfGetList;

impl ConfGetList {
    pub async fn apply(self, ctx: &mut Ctx<'_>) -> CmdResult {
        let me = ctx.logged_in()?;
        let list: Vec<Value> = ctx
            .core
            .list_conferences(&me.who)
            .await?
            .iter()
            .map(|c| json!({"conf_id": c.public_id(), "class": conf_class(&c.kind)}))
            .collect();
        Ok(Reply::Data(Some(Value::Array(list))))
    }
}

/// "sfu" or "mcu"; chat groups reached by number show as "chat".
pub fn conf_class(kind: &ConversationKind) -> &str {
    match kind {
        ConversationKind::Conference { class } => class,
        _ => "chat",
    }
}
