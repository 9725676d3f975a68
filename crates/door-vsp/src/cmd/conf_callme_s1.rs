//! `conf CALLME_S1 {ID}`: the first step of the WebRTC handshake. Answered, then
//! `conf.webrtc.servdesc` with the ICE servers for the caller's party: TURN credentials
//! in the TURN REST API form (`username` `<expiry>:<uin>`, `credential`
//! `base64(HMAC-SHA1(turn_secret, username))`, valid `turn_ttl_secs`), or the STUN
//! address only when no `turn_secret` is configured.

use serde_json::{json, Map, Value};

use super::{CmdResult, Ctx};
use crate::codes::VspError;
use crate::frame::{self, Params};

pub struct ConfCallmeS1 {
    id: u64,
}

impl ConfCallmeS1 {
    pub fn parse(p: &mut Params) -> Result<Self, VspError> {
        Ok(ConfCallmeS1 { id: p.id("ID")? })
    }

    pub async fn apply(self, ctx: &mut Ctx<'_>) -> CmdResult {
        let key = ctx.own_party(self.id).await?;
        let uin = ctx.logged_in()?.who.uin;
        let ice = ctx.door.settings.turn.ice_servers(uin);
        let stun = ice.stun.clone().unwrap_or_default();
        let data = match &ice.turn {
            Some(turn) => json!({
                "serveraddr": turn.urls.first().cloned().unwrap_or_default(),
                "username": turn.username,
                "credential": turn.credential,
                "urls": turn.urls,
                "stun": stun,
                "expires": turn.expires_at,
            }),
            None => json!({ "serveraddr": stun }),
        };
        let result = json!({
            "ClusterID": ctx.cluster(),
            "ID": self.id,
            "PartyID": key.party,
            "EvtData": data,
        });
        ctx.events
            .push(frame::event("conf", "webrtc", Some("servdesc"), result));
        Ok(Map::<String, Value>::new())
    }
}
