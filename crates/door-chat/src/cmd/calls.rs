//! Call events: `create_call`, `answer_call`, `stop_call`, `call_status`, and the relayed
//! `ice_sdp`, `ice_candidate` (to the receiver's sockets only) and `event` (typing and
//! call events, to one member or the other online members).
//!
//! Relayed payloads keep the client's fields, with `sender_uin` set by the server to the
//! authenticated caller, so nobody can speak for someone else.

use confer_core::{Json, Uin};
use serde_json::Value;

use super::{check_self, Ctx, Outcome, Reply, DISPLAY_FIELDS};
use crate::args::Args;
use crate::codes::Failure;
use crate::render;

pub async fn create(ctx: &Ctx<'_>, mut args: Args) -> Outcome {
    check_self(&mut args, ctx, &["caller_uin"])?;
    let group = args.group()?;
    let media_type =
        u8::try_from(args.u64(&["media_type"])?).map_err(|_| Failure::invalid("media_type"))?;
    let callees = args.opt_uins(&["callee_uins", "callee_uin"])?;
    let extra = args.extras(DISPLAY_FIELDS);
    let call = ctx
        .core
        .create_call(ctx.who, group, media_type, callees, extra)
        .await?;
    Ok(Reply::ok()
        .with("call", render::call(&call))
        .with("ice_servers", ice_servers(ctx)))
}

pub async fn answer(ctx: &Ctx<'_>, mut args: Args) -> Outcome {
    check_self(&mut args, ctx, &["uin"])?;
    let group = args.group()?;
    let call_id = args.u64(&["call_id"])?;
    let answer = u8::try_from(args.u64(&["answer"])?).map_err(|_| Failure::invalid("answer"))?;
    let call = ctx
        .core
        .answer_call(ctx.who, group, call_id, answer)
        .await?;
    Ok(Reply::ok()
        .with("call", render::call(&call))
        .with("ice_servers", ice_servers(ctx)))
}

pub async fn stop(ctx: &Ctx<'_>, mut args: Args) -> Outcome {
    check_self(&mut args, ctx, &["uin"])?;
    let group = args.group()?;
    let call_id = args.u64(&["call_id"])?;
    let call = ctx.core.stop_call(ctx.who, group, call_id).await?;
    Ok(Reply::ok().with("call", render::call(&call)))
}

pub async fn status(ctx: &Ctx<'_>, mut args: Args) -> Outcome {
    let group = args.group()?;
    let call_id = args.u64(&["call_id"])?;
    let call = ctx.core.call_status(ctx.who, group, call_id).await?;
    Ok(Reply::ok()
        .with("call_id", Value::from(call.call_id.to_string()))
        .with("group_id", Value::from(call.group_id.0.to_string()))
        .with("call_status", Value::from(call.status as u8)))
}

/// The caller's ICE servers in the browser's `RTCIceServer` form: `[{urls: [stun]},
/// {urls: [turn…], username, credential}]`, the same time-limited TURN credentials the
/// conference door's `servdesc` carries (`confer_core::turn`); empty when none are
/// configured.
fn ice_servers(ctx: &Ctx<'_>) -> Value {
    let ice = ctx.turn.ice_servers(ctx.who.uin);
    let mut servers = Vec::new();
    if let Some(stun) = ice.stun {
        servers.push(serde_json::json!({ "urls": [stun] }));
    }
    if let Some(turn) = ice.turn {
        servers.push(serde_json::json!({
            "urls": turn.urls,
            "username": turn.username,
            "credential": turn.credential,
        }));
    }
    Value::from(servers)
}

/// The rest of the payload with the ids normalised and the sender stamped.
fn relayed(ctx: &Ctx<'_>, args: Args, ids: &[(&str, Option<u64>)]) -> Json {
    let mut rest = args.rest();
    for (key, value) in ids {
        match value {
            Some(v) => rest.insert((*key).to_string(), Value::from(v.to_string())),
            None => rest.remove(*key),
        };
    }
    rest.insert("sender_uin".into(), Value::from(ctx.who.uin.0.to_string()));
    Json::from_validated(Value::Object(rest).to_string())
}

pub async fn signal(ctx: &Ctx<'_>, mut args: Args, kind: &str) -> Outcome {
    check_self(&mut args, ctx, &["sender_uin"])?;
    let group = args.group()?;
    let call_id = args.u64(&["call_id"])?;
    let receiver = args.u64(&["receiver_uin"])?;
    let payload = relayed(
        ctx,
        args,
        &[
            ("group_id", Some(group.0)),
            ("call_id", Some(call_id)),
            ("receiver_uin", Some(receiver)),
        ],
    );
    ctx.core
        .relay_call_signal(ctx.who, group, call_id, Uin(receiver), kind, payload)
        .await?;
    Ok(Reply::ok())
}

pub async fn event(ctx: &Ctx<'_>, mut args: Args) -> Outcome {
    check_self(&mut args, ctx, &["sender_uin"])?;
    let group = args.group()?;
    let kind = match u8::try_from(args.u64(&["type"])?) {
        Ok(k @ 1..=9) => k,
        _ => return Err(Failure::invalid("type")),
    };
    let receiver = args.opt_u64(&["receiver_uin"])?;
    let call_id = args.opt_u64(&["call_id"])?;
    let mut payload = relayed(
        ctx,
        args,
        &[
            ("group_id", Some(group.0)),
            ("call_id", call_id),
            ("receiver_uin", receiver),
        ],
    );
    // `type` was taken out to validate it; put it back.
    if let Ok(Value::Object(mut obj)) = serde_json::from_str::<Value>(payload.as_str()) {
        obj.insert("type".into(), Value::from(kind));
        payload = Json::from_validated(Value::Object(obj).to_string());
    }
    ctx.core
        .relay_group_event(ctx.who, group, receiver.map(Uin), kind, payload)
        .await?;
    Ok(Reply::ok())
}
