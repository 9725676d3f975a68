//! `cd create {name}` → `{ID}`: a new conference; the caller is its owner and first
//! occupant (it joins with `conf join`). The External API sees it as a conference of
//! class `sfu`.

use serde_json::Value;

use super::{fields, CmdResult, Ctx};
use crate::codes::VspError;
use crate::frame::Params;

pub struct CdCreate {
    name: String,
}

impl CdCreate {
    pub fn parse(p: &mut Params) -> Result<Self, VspError> {
        Ok(CdCreate {
            name: p.req("name")?,
        })
    }

    pub async fn apply(self, ctx: &mut Ctx<'_>) -> CmdResult {
        let me = ctx.logged_in()?;
        let conv = ctx
            .door
            .core
            .create_named_conference(
                &me.who,
                &me.session.session_id,
                None,
                "sfu".into(),
                Some(self.name),
            )
            .await?;
        Ok(fields([("ID", Value::from(conv.group_id.0))]))
    }
}
