//! A member's own settings and the owner's blocks: `block_user`/`unblock_user`,
//! `mute_group`/`unmute_group`, `pin_group`/`unpin_group`.

use confer_core::Uin;

use super::{Ctx, Outcome, Reply};
use crate::args::Args;

pub async fn block(ctx: &Ctx<'_>, mut args: Args, blocked: bool) -> Outcome {
    let group = args.group()?;
    // The document's unblock example sends `blocked_uin`; its table says `unblocked_uin`.
    let names: &[&str] = if blocked {
        &["blocked_uin"]
    } else {
        &["unblocked_uin", "blocked_uin"]
    };
    let target = Uin(args.u64(names)?);
    ctx.core
        .set_blocked(ctx.who, group, target, blocked)
        .await?;
    Ok(Reply::ok())
}

pub async fn mute(ctx: &Ctx<'_>, mut args: Args, muted: bool) -> Outcome {
    ctx.core.set_muted(ctx.who, args.group()?, muted).await?;
    Ok(Reply::ok())
}

pub async fn pin(ctx: &Ctx<'_>, mut args: Args, pinned: bool) -> Outcome {
    ctx.core.set_pinned(ctx.who, args.group()?, pinned).await?;
    Ok(Reply::ok())
}
