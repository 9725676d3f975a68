//! `cd info {ID}` → `{confdata, parties}` of a conference the caller occupies.

use serde_json::Value;

use super::{fields, CmdResult, Ctx};
use crate::codes::VspError;
use crate::frame::Params;
use crate::render;

pub struct CdInfo {
    id: u64,
}

impl CdInfo {
    pub fn parse(p: &mut Params) -> Result<Self, VspError> {
        Ok(CdInfo { id: p.id("ID")? })
    }

    pub async fn apply(self, ctx: &mut Ctx<'_>) -> CmdResult {
        let me = ctx.logged_in()?;
        let (conv, mut members) = ctx
            .door
            .core
            .conference_info(&me.who, &self.id.to_string())
            .await?;
        members.sort_by_key(|m| m.party);
        let parties: Vec<Value> = members.iter().map(render::party).collect();
        Ok(fields([
            ("confdata", render::confdata(&conv, members.len())),
            ("parties", Value::from(parties)),
        ]))
    }
}
