//! Profile events: `update_profile` (the caller's own display name and avatar URL; an
//! empty string clears one) and `get_profile` (the caller's, or that of someone sharing a
//! group with the caller). Both answer `{profile: {uin, name, avatar_url}}`.
//!
//! The server writes these into every message it stores as `sender_name` and
//! `sender_avatar` (`confer_core::service::Profile`); what a client sends under those
//! names is ignored.

use confer_core::service::Profile;
use confer_core::Uin;
use serde_json::{json, Value};

use super::{Ctx, Outcome, Reply};
use crate::args::Args;

fn render(p: &Profile) -> Value {
    json!({
        "uin": p.uin.0.to_string(),
        "name": p.name,
        "avatar_url": p.avatar_url,
    })
}

pub async fn update(ctx: &Ctx<'_>, mut args: Args) -> Outcome {
    super::check_self(&mut args, ctx, &["uin"])?;
    let name = args.opt_str(&["name"])?;
    let avatar = args.opt_str(&["avatar_url", "avatar"])?;
    let profile = ctx.core.update_profile(ctx.who, name, avatar).await?;
    Ok(Reply::ok().with("profile", render(&profile)))
}

pub async fn get(ctx: &Ctx<'_>, mut args: Args) -> Outcome {
    let uin = args.opt_u64(&["uin"])?.map_or(ctx.who.uin, Uin);
    let profile = ctx.core.get_profile(ctx.who, uin).await?;
    Ok(Reply::ok().with("profile", render(&profile)))
}
