//! `conf join {ID}` → `{PartyID}`: the session enters the conference's live room (an
//! External API conference anyone who knows its id may join, or a chat group of the
//! caller's). The joiner then gets `conf.changed` with the full `confdata` and every
//! party in `addParties`; the others get `addParties` with the new one (External API
//! members see `started_member`).

use std::collections::BTreeMap;

use serde_json::Value;

use super::{fields, CmdResult, Ctx, Joined, MAX_JOINED};
use crate::codes::{VspError, INVALID_STATE};
use crate::frame::{self, Params};
use crate::render;

pub struct ConfJoin {
    id: u64,
}

impl ConfJoin {
    pub fn parse(p: &mut Params) -> Result<Self, VspError> {
        Ok(ConfJoin { id: p.id("ID")? })
    }

    pub async fn apply(self, ctx: &mut Ctx<'_>) -> CmdResult {
        if ctx.state.joined.len() >= MAX_JOINED {
            return Err(VspError::new(
                INVALID_STATE,
                format!("in {MAX_JOINED} conferences already: leave one first"),
            ));
        }
        let me = ctx.logged_in()?;
        let core = &ctx.door.core;
        let id = self.id.to_string();
        let (conv, member) = core
            .join_conference(&me.who, &me.session.session_id, &id, "member".into())
            .await?;
        let (conv, members) = match core.conference_info(&me.who, &id).await {
            Ok(info) => info,
            // Ended at once by its owner: this join is over too.
            Err(_) => (conv, vec![member.clone()]),
        };
        let mut parties: BTreeMap<u64, _> = members.into_iter().map(|m| (m.party, m)).collect();
        parties
            .entry(member.party)
            .or_insert_with(|| member.clone());
        let list: Vec<Value> = parties.values().map(render::party).collect();
        let changed = render::changed(
            ctx.cluster(),
            conv.group_id.0,
            [
                ("confdata", render::confdata(&conv, parties.len())),
                ("addParties", Value::from(list)),
            ],
        );
        ctx.events
            .push(frame::event("conf", "changed", None, changed));
        ctx.state.joined.insert(
            conv.group_id,
            Joined {
                public_id: conv.public_id(),
                party: member.party,
                media: false,
                parties,
            },
        );
        Ok(fields([("PartyID", Value::from(member.party))]))
    }
}
