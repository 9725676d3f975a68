//! `conf leave {ID}`: the session leaves the live room (its media, if open, is closed);
//! the others get `delParties`. Leaving a conference with the user's last session ends
//! its occupancy (not the owner's; a chat group's membership stays).

use confer_core::media::PartyKey;
use confer_core::GroupId;
use serde_json::Map;

use super::{CmdResult, Ctx};
use crate::codes::VspError;
use crate::frame::Params;

pub struct ConfLeave {
    id: u64,
}

impl ConfLeave {
    pub fn parse(p: &mut Params) -> Result<Self, VspError> {
        Ok(ConfLeave { id: p.id("ID")? })
    }

    pub async fn apply(self, ctx: &mut Ctx<'_>) -> CmdResult {
        let me = ctx.logged_in()?;
        ctx.door
            .core
            .leave_conference(&me.who, &me.session.session_id, &self.id.to_string())
            .await?;
        if let Some(joined) = ctx.state.joined.remove(&GroupId(self.id)) {
            if let (true, Some(media)) = (joined.media, &ctx.door.media) {
                let key = PartyKey {
                    conference: GroupId(self.id),
                    party: joined.party,
                };
                media.close(key).await;
            }
        }
        Ok(Map::new())
    }
}
