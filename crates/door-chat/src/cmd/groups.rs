//! Group events: `create_group`, `update_group` (with `push_all`/`pull_all` and owner
//! transfer), `leave_group`, `delete_conversation` (clears history for the caller only),
//! `list_group` (paged, pinned first) and `check_group`.
//!
//! `list_group {since_seq}` catches up instead: oldest change first, the groups whose
//! listing changed after that change number (in `groups`) and those the caller no longer
//! sees (`left_groups: [{group_id, change_seq}]`), `more` when the page stopped early.
//! `leave_group` of a private group hides it (`delete_group` to the leaver) until a
//! message in it or the leaver's `check_group`/`create_group` for the pair brings it back.

use confer_core::service::{GroupChanges, GroupSort};
use confer_core::ConversationKind;
use serde_json::Value;

use super::{check_self, Ctx, Outcome, Reply};
use crate::args::Args;
use crate::codes::Failure;
use crate::render;

/// The default and largest `psize` of `list_group`.
const DEFAULT_PAGE: usize = 20;

fn kind(code: u64) -> Result<ConversationKind, Failure> {
    match code {
        1 => Ok(ConversationKind::Private),
        2 => Ok(ConversationKind::Group),
        3 => Ok(ConversationKind::Public),
        _ => Err(Failure::invalid("type")),
    }
}

pub async fn create(ctx: &Ctx<'_>, mut args: Args) -> Outcome {
    let _appid = args.opt_u64(&["appid"])?;
    let kind = kind(args.u64(&["type"])?)?;
    let name = args.opt_str(&["name"])?;
    let avatar = args.opt_str(&["avatar_url"])?;
    let owner = args.opt_u64(&["owner_uin"])?.map(confer_core::Uin);
    let occupants = args
        .opt_uins(&["occupants_uins", "occupants_uin"])?
        .unwrap_or_default();
    let (group, _) = ctx
        .core
        .create_group(ctx.who, kind, name, avatar, owner, occupants)
        .await?;
    Ok(Reply::ok().with("group", render::group(&group)))
}

pub async fn update(ctx: &Ctx<'_>, mut args: Args) -> Outcome {
    let group = args.group()?;
    let changes = GroupChanges {
        name: args.opt_str(&["name"])?,
        avatar_url: args.opt_str(&["avatar_url"])?,
        owner: args.opt_u64(&["owner_uin"])?.map(confer_core::Uin),
        kind: args.opt_u64(&["type"])?.map(kind).transpose()?,
        add: args.opt_uins(&["push_all"])?.unwrap_or_default(),
        remove: args.opt_uins(&["pull_all"])?.unwrap_or_default(),
    };
    let group = ctx.core.update_group(ctx.who, group, changes).await?;
    Ok(Reply::ok().with("group", render::group(&group)))
}

pub async fn leave(ctx: &Ctx<'_>, mut args: Args) -> Outcome {
    ctx.core.leave_group(ctx.who, args.group()?).await?;
    Ok(Reply::ok())
}

pub async fn delete_conversation(ctx: &Ctx<'_>, mut args: Args) -> Outcome {
    ctx.core.clear_history(ctx.who, args.group()?).await?;
    Ok(Reply::ok())
}

pub async fn list(ctx: &Ctx<'_>, mut args: Args) -> Outcome {
    check_self(&mut args, ctx, &["uin"])?;
    let page = args.opt_u64(&["pindex"])?.unwrap_or(0) as usize;
    let size = args
        .opt_u64(&["psize"])?
        .map_or(DEFAULT_PAGE, |s| s as usize);
    let sort = match args.opt_u64(&["sort_by"])?.unwrap_or(1) {
        1 => GroupSort::LastMessage,
        2 => GroupSort::Created,
        _ => return Err(Failure::invalid("sort_by")),
    };
    if let Some(since) = args.opt_u64(&["since_seq"])? {
        if page > 0 {
            return Err(Failure::invalid("since_seq (not with pindex)"));
        }
        let (groups, left, more) = ctx.core.list_group_changes(ctx.who, since, size).await?;
        let left = left
            .iter()
            .map(|l| {
                serde_json::json!({
                    "group_id": l.group_id.0.to_string(),
                    "change_seq": l.change_seq.to_string(),
                })
            })
            .collect();
        return Ok(Reply::ok()
            .with(
                "groups",
                Value::Array(groups.iter().map(render::listing).collect()),
            )
            .with("left_groups", Value::Array(left))
            .with("more", Value::Bool(more)));
    }
    let groups = ctx.core.list_groups(ctx.who, page, size, sort).await?;
    Ok(Reply::ok().with(
        "groups",
        Value::Array(groups.iter().map(render::listing).collect()),
    ))
}

pub async fn check(ctx: &Ctx<'_>, mut args: Args) -> Outcome {
    let kind = kind(args.u64(&["type"])?)?;
    let occupants = args
        .opt_uins(&["occupants_uins", "occupants_uin"])?
        .ok_or_else(|| Failure::invalid("occupants_uins"))?;
    let group = ctx.core.check_group(ctx.who, kind, occupants).await?;
    Ok(Reply::ok().with("group", render::group(&group)))
}
