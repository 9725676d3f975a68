//! `conf mute {ID, PartyID}`: the owner turns a party's microphone off; everyone gets
//! `updParties` with its `bMicOn` false.

use serde_json::Map;

use super::{CmdResult, Ctx};
use crate::codes::VspError;
use crate::frame::Params;

pub struct ConfMute {
    id: u64,
    party: u64,
}

impl ConfMute {
    pub fn parse(p: &mut Params) -> Result<Self, VspError> {
        Ok(ConfMute {
            id: p.id("ID")?,
            party: p.id("PartyID")?,
        })
    }

    pub async fn apply(self, ctx: &mut Ctx<'_>) -> CmdResult {
        let me = ctx.logged_in()?;
        ctx.door
            .core
            .mute_party(&me.who, &self.id.to_string(), self.party)
            .await?;
        Ok(Map::new())
    }
}
