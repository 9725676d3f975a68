//! `conf end {ID}`: the owner ends the conference: it is destroyed (External API
//! `destroyed`), every party gets `conf.changed` with all parties in `delParties` and
//! `confdata.state` 2. A chat group is not ended here ([`crate::codes::INVALID_STATE`]).

use serde_json::Map;

use super::{CmdResult, Ctx};
use crate::codes::VspError;
use crate::frame::Params;

pub struct ConfEnd {
    id: u64,
}

impl ConfEnd {
    pub fn parse(p: &mut Params) -> Result<Self, VspError> {
        Ok(ConfEnd { id: p.id("ID")? })
    }

    pub async fn apply(self, ctx: &mut Ctx<'_>) -> CmdResult {
        let me = ctx.logged_in()?;
        ctx.door
            .core
            .end_conference(&me.who, &self.id.to_string())
            .await?;
        Ok(Map::new())
    }
}
