//! `conf kick {ID, PartyID}`: the owner takes a party out of the live room (it stays an
//! occupant and may join again); everyone, the kicked party included, gets `delParties`.

use serde_json::Map;

use super::{CmdResult, Ctx};
use crate::codes::VspError;
use crate::frame::Params;

pub struct ConfKick {
    id: u64,
    party: u64,
}

impl ConfKick {
    pub fn parse(p: &mut Params) -> Result<Self, VspError> {
        Ok(ConfKick {
            id: p.id("ID")?,
            party: p.id("PartyID")?,
        })
    }

    pub async fn apply(self, ctx: &mut Ctx<'_>) -> CmdResult {
        let me = ctx.logged_in()?;
        ctx.door
            .core
            .kick_party(&me.who, &self.id.to_string(), self.party)
            .await?;
        Ok(Map::new())
    }
}
