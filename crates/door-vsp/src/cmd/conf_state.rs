//! `conf state {ID, bMicOn?, bCamOn?, bHandUp?}` (`"0"`/`"1"`): the caller's own party
//! says what it does; everyone in the conference gets `updParties`.

use confer_core::service::PartyChange;
use serde_json::Map;

use super::{CmdResult, Ctx};
use crate::codes::VspError;
use crate::frame::Params;

pub struct ConfState {
    id: u64,
    change: PartyChange,
}

impl ConfState {
    pub fn parse(p: &mut Params) -> Result<Self, VspError> {
        let id = p.id("ID")?;
        let change = PartyChange {
            mic: p.flag("bMicOn")?,
            cam: p.flag("bCamOn")?,
            hand_up: p.flag("bHandUp")?,
            media: None,
        };
        if change == PartyChange::default() {
            return Err(VspError::bad_param(
                "bMicOn",
                "give at least one of bMicOn, bCamOn, bHandUp",
            ));
        }
        Ok(ConfState { id, change })
    }

    pub async fn apply(self, ctx: &mut Ctx<'_>) -> CmdResult {
        let me = ctx.logged_in()?;
        ctx.door
            .core
            .change_party(
                &me.who,
                &me.session.session_id,
                &self.id.to_string(),
                self.change,
            )
            .await?;
        Ok(Map::new())
    }
}
