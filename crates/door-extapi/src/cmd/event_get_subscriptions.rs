//! `core/event/get_subscriptions` → the session's subscriptions, wildcards as `"*"`.

use serde_json::{Map, Value};

use super::{CmdResult, Ctx, Reply};
use crate::render::json_value;

pub struct EventGetSubscriptions;

impl EventGetSubscriptions {
    pub fn apply(self, ctx: &mut Ctx<'_>) -> CmdResult {
        let me = ctx.logged_in()?;
        let star = |v: &Option<String>| Value::from(v.as_deref().unwrap_or("*"));
        let list: Vec<Value> = ctx
            .core
            .subscriptions(&me.session.session_id)
            .iter()
            .map(|s| {
                let mut obj = Map::new();
                obj.insert("class".into(), Value::from(s.class.as_str()));
                obj.insert("subclass".into(), star(&s.subclass));
                obj.insert("type".into(), star(&s.kind));
                obj.insert("obj_id".into(), star(&s.obj_id));
                if let Some(body) = &s.body {
                    obj.insert("body".into(), json_value(body));
                }
                Value::Object(obj)
            })
            .collect();
        Ok(Reply::Data(Some(Value::Array(list))))
    }
}
