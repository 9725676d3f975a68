//! `core/event/send` (also `send_event`) `{class, subclass?, type?, obj_id?, body?,
//! service?}` (`service`, when given, must be this server's: 100020 otherwise):
//! fire an event. Omitted or `"*"` fields are left out of the event, so only wildcard
//! subscribers get it. Classes `core` and `media` are the server's own (admin only).

use confer_core::{Event, EventBody};

use super::{body_arg, CmdResult, Ctx, Reply};
use crate::args::Args;
use crate::error::CmdError;

pub struct EventSend {
    event: Event,
    service: Option<String>,
}

impl EventSend {
    pub fn parse(args: &mut Args) -> Result<Self, CmdError> {
        let class = args.req_str("class")?;
        let subclass = args.pattern("subclass")?;
        let kind = args.pattern("type")?;
        let obj_id = args.pattern("obj_id")?;
        let body = body_arg(args, "body")?.map_or(EventBody::Empty, EventBody::Json);
        Ok(EventSend {
            event: Event::new(class, subclass, kind, obj_id, body),
            service: args.opt_str("service")?,
        })
    }

    pub fn apply(self, ctx: &mut Ctx<'_>) -> CmdResult {
        ctx.this_service(self.service.as_deref())?;
        let me = ctx.logged_in()?;
        ctx.core.fire_event(&me.who, self.event)?;
        Ok(Reply::Data(None))
    }
}
