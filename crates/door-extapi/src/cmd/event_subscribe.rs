//! `core/event/subscribe {class, subclass?, type?, obj_id?, body?, service?}`. Omitted or
//! `"*"` fields match anything. The core checks the caller may observe those events.
//! `service`, when given, must be this server's (100020 otherwise).

use confer_core::Subscription;

use super::{body_arg, CmdResult, Ctx, Reply};
use crate::args::Args;
use crate::error::CmdError;

pub struct EventSubscribe {
    subscription: Subscription,
    service: Option<String>,
}

/// The pattern fields of a subscription, as both subscribe and unsubscribe read them.
pub fn parse_subscription(args: &mut Args) -> Result<Subscription, CmdError> {
    Ok(Subscription {
        class: args.req_str("class")?,
        subclass: args.pattern("subclass")?,
        kind: args.pattern("type")?,
        obj_id: args.pattern("obj_id")?,
        body: body_arg(args, "body")?,
    })
}

impl EventSubscribe {
    pub fn parse(args: &mut Args) -> Result<Self, CmdError> {
        Ok(EventSubscribe {
            subscription: parse_subscription(args)?,
            service: args.opt_str("service")?,
        })
    }

    pub async fn apply(self, ctx: &mut Ctx<'_>) -> CmdResult {
        ctx.this_service(self.service.as_deref())?;
        let me = ctx.logged_in()?;
        ctx.core
            .subscribe(&me.who, &me.session.session_id, self.subscription)
            .await?;
        Ok(Reply::Data(None))
    }
}
