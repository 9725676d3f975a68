//! `conf CALLME_S2 {ID, sdp, ufrag?, pwd?, fingerprint?}`: the client's offer (its SDP,
//! or, for clients of the original protocol, just its ICE ufrag/pwd and DTLS
//! fingerprint) goes to the server's media endpoint, which answers; the caller then gets
//! `conf.webrtc.servufrag` with the endpoint's ufrag, pwd, fingerprint, ip, port and SDP
//! answer, and everyone sees its party's `State` become 2. Then (and whenever it changes)
//! the caller gets `conf.webrtc.slots`: which party each of its receive slots shows
//! (rendered by `connection`). Without a media endpoint: [`MEDIA_UNAVAILABLE`].

use confer_core::media::{MediaError, MediaOffer};
use confer_core::service::PartyChange;
use confer_core::GroupId;
use serde_json::{json, Map};

use super::{CmdResult, Ctx};
use crate::codes::{VspError, BAD_PARAMS, INVALID_STATE, MEDIA_UNAVAILABLE};
use crate::frame::{self, Params};

pub struct ConfCallmeS2 {
    id: u64,
    offer: MediaOffer,
}

impl ConfCallmeS2 {
    pub fn parse(p: &mut Params) -> Result<Self, VspError> {
        let id = p.id("ID")?;
        let offer = MediaOffer {
            sdp: p.opt("sdp"),
            ufrag: p.opt("ufrag"),
            pwd: p.opt("pwd"),
            fingerprint: p.opt("fingerprint"),
        };
        let bare = offer.ufrag.is_some() && offer.pwd.is_some() && offer.fingerprint.is_some();
        if offer.sdp.is_none() && !bare {
            return Err(VspError::bad_param(
                "sdp",
                "missing (or give ufrag, pwd and fingerprint)",
            ));
        }
        Ok(ConfCallmeS2 { id, offer })
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
        if ctx.state.media_events.is_none() {
            ctx.state.media_events = Some(media.events());
        }
        let me = ctx.logged_in()?;
        let answer = media
            .open(key, me.who.uin, self.offer)
            .await
            .map_err(|e| match e {
                MediaError::BadOffer(why) => VspError::new(BAD_PARAMS, format!("bad offer: {why}")),
                MediaError::Full => VspError::new(INVALID_STATE, "the conference is full"),
                MediaError::Unavailable => {
                    VspError::new(MEDIA_UNAVAILABLE, "the media endpoint is unavailable")
                }
            })?;
        let change = PartyChange {
            media: Some(true),
            ..PartyChange::default()
        };
        ctx.door
            .core
            .change_party(
                &me.who,
                &me.session.session_id,
                &self.id.to_string(),
                change,
            )
            .await?;
        if let Some(joined) = ctx.state.joined.get_mut(&GroupId(self.id)) {
            joined.media = true;
        }
        let result = json!({
            "ClusterID": ctx.cluster(),
            "ID": self.id,
            "PartyID": key.party,
            "EvtData": {
                "ufrag": answer.ufrag,
                "pwd": answer.pwd,
                "fingerprint": answer.fingerprint,
                "ip": answer.ip,
                "port": answer.port,
                "sdp": answer.sdp,
            },
        });
        ctx.events
            .push(frame::event("conf", "webrtc", Some("servufrag"), result));
        Ok(Map::new())
    }
}
