//! `nd logout`: answered, then the connection closes (1000); the session ends, leaving
//! its conferences (the others get `delParties`).

use serde_json::Map;

use super::{CmdResult, Ctx};

pub struct NdLogout;

impl NdLogout {
    pub fn apply(self, ctx: &mut Ctx<'_>) -> CmdResult {
        ctx.logged_in()?;
        ctx.state.logout = true;
        Ok(Map::new())
    }
}
