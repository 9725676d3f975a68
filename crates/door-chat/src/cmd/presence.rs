//! `user_status {online_status, message_status?}`: the caller chooses how it is shown
//! (1 online, 3 idle, 4 invisible, 5 away, 6 busy) and, optionally, a free-text status.
//! Stored and pushed by the core (`confer_core::service::presence`): its own sockets hear
//! `user_status` as chosen, its peers as they see it (invisible is offline).

use super::{check_self, Ctx, Outcome, Reply};
use crate::args::Args;
use crate::codes::Failure;
use crate::render;

pub async fn set(ctx: &Ctx<'_>, mut args: Args) -> Outcome {
    check_self(&mut args, ctx, &["uin"])?;
    let online_status = u8::try_from(args.u64(&["online_status"])?)
        .map_err(|_| Failure::invalid("online_status"))?;
    let message_status = args.opt_str(&["message_status"])?;
    let now = ctx
        .core
        .set_user_status(ctx.who, online_status, message_status)
        .await?;
    Ok(Reply::ok().with(
        "user_status",
        render::user_status(now.uin, now.online_status, &now.message_status, None),
    ))
}
