//! `conf hangup {ID}`: the caller's party closes its media with the server's endpoint;
//! everyone in the conference gets `conf.webrtc.Disconnected` (when the endpoint says
//! the media ended). Without a media endpoint: [`MEDIA_UNAVAILABLE`].

use confer_core::GroupId;
use serde_json::Map;

use super::{CmdResult, Ctx};
use crate::codes::{VspError, MEDIA_UNAVAILABLE};
use crate::frame::Params;

pub struct ConfHangup {
    id: u64,
}

impl ConfHangup {
    pub fn parse(p: &mut Params) -> Result<Self, VspError> {
        Ok(ConfHangup { id: p.id("ID")? })
    }

    pub async fn apply(self, ctx: &mut Ctx<'_>) -> CmdResult {
        let Some(media) = ctx.door.media.clone() else {
            ctx.logged_in()?;
            return Err(VspError::new(
                MEDIA_UNAVAILABLE,
                "media is not available yet on this server",
            ));
        };
        let key = ctx.own_party(self.id).await?;
        media.close(key).await;
        if let Some(joined) = ctx.state.joined.get_mut(&GroupId(self.id)) {
            joined.media = false;
        }
        Ok(Map::new())
    }
}
