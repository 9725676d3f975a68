//! `register_profile_token {uin?, type, token}` and `unregister_profile_token {uin?, token}`:
//! the caller's device tokens, stored for push delivery.

use serde_json::Value;

use super::{check_self, Ctx, Outcome, Reply};
use crate::args::Args;
use crate::codes::Failure;

pub async fn register(ctx: &Ctx<'_>, mut args: Args) -> Outcome {
    check_self(&mut args, ctx, &["uin"])?;
    let kind = args.u64(&["type"])?;
    let kind = u8::try_from(kind).map_err(|_| Failure::invalid("type"))?;
    let token = args.str(&["token"])?;
    ctx.core
        .register_device_token(ctx.who, kind, token.clone())
        .await?;
    Ok(Reply::ok()
        .with("uin", Value::from(ctx.who.uin.0.to_string()))
        .with("type", Value::from(kind))
        .with("token", Value::from(token)))
}

pub async fn unregister(ctx: &Ctx<'_>, mut args: Args) -> Outcome {
    check_self(&mut args, ctx, &["uin"])?;
    let token = args.str(&["token"])?;
    ctx.core.unregister_device_token(ctx.who, &token).await?;
    Ok(Reply::ok()
        .with("uin", Value::from(ctx.who.uin.0.to_string()))
        .with("token", Value::from(token)))
}
