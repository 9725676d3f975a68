//! `core/event/unsubscribe {class, subclass?, type?, obj_id?}`: removes the subscription
//! with exactly these fields (its body does not matter).

use confer_core::Subscription;

use super::event_subscribe::parse_subscription;
use super::{CmdResult, Ctx, Reply};
use crate::args::Args;
use crate::error::CmdError;

pub struct EventUnsubscribe {
    pattern: Subscription,
}

impl EventUnsubscribe {
    pub fn parse(args: &mut Args) -> Result<Self, CmdError> {
        Ok(EventUnsubscribe {
            pattern: parse_subscription(args)?,
        })
    }

    pub fn apply(self, ctx: &mut Ctx<'_>) -> CmdResult {
        let me = ctx.logged_in()?;
        ctx.core
            .unsubscribe(&me.session.session_id, &self.pattern)?;
        Ok(Reply::Data(None))
    }
}
