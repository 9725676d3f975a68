//! Message events: `create_message` (idempotent on `nonce`: a retry answers 13 with the
//! original), `update_message` (sender only), `delete_message` (sender or owner),
//! `list_message`, and the receipts `received_message` and `seen_message`.
//!
//! `list_message`: `last_seen_message_id` alone lists oldest first after it (catching
//! up); otherwise newest first before `last_message_id`. Both bounds are exclusive.
//! `seen_message {group_id, message_id}` (confer's) marks everything up to that message
//! as seen; `unread_cnt` counts later messages from others. Posting marks as seen too.
//! `received_message {group_id, message_id}` marks everything up to it as received by one
//! of the caller's devices. Message objects carry `status`, `received_uins` and
//! `seen_uins` from those marks (`confer_core::service::receipts`).
//! A `list_message` page stops at `psize` (capped by `max_list`) or `max_list_bytes`,
//! whichever comes first, and answers `more: true` when messages are left beyond it:
//! continue from the last `message_id` received (`last_message_id` newest first,
//! `last_seen_message_id` oldest first), not by `pindex`, since a page cut by bytes is
//! shorter than `psize`.
//!
//! Catching up on changes: `list_message {group_id, since_seq}` lists, oldest change
//! first, every message whose `change_seq` is above `since_seq`: new ones, edited ones
//! as they are now, deleted ones as tombstones (`status` 4), each once. Page on with the
//! last `change_seq` received while `more`; it cannot be combined with the id bounds.
//!
//! `sender_name`, `sender_avatar`, `group_name`, `group_avatar` are the server's (from the
//! sender's profile and the group, as they were when the message was posted): a client's
//! are read and ignored.

use confer_core::service::{ChatMessageInput, Receipt};
use serde_json::Value;

use super::{Ctx, Outcome, Reply, DISPLAY_FIELDS};
use crate::args::Args;
use crate::codes::{Failure, DUPLICATE_MESSAGE};
use crate::render;

/// The default `psize` of `list_message`.
const DEFAULT_PAGE: usize = 50;

pub async fn create(ctx: &Ctx<'_>, mut args: Args) -> Outcome {
    let group = args.group()?;
    let attachments = args.opt_text(&["attachments", "attactments"])?;
    // Attachments that name uploaded files by item id grant the group access to them;
    // other custom content is kept as it is.
    let attachment_ids = attachments
        .as_deref()
        .and_then(|a| serde_json::from_str::<Value>(a).ok())
        .and_then(|v| confer_core::references::item_ids(&v, crate::args::upload_shape))
        .unwrap_or_default();
    // What a client claims its name (or the group's) is does not count: read and dropped.
    let _claimed = args.extras(DISPLAY_FIELDS);
    let input = ChatMessageInput {
        kind: args.opt_u32(&["type"])?.unwrap_or(0),
        text: args.opt_text(&["message"])?,
        attachments,
        attachment_ids,
        nonce: args.opt_str(&["nonce"])?,
        version: args.opt_u32(&["version"])?.unwrap_or(0),
        extra: None,
    };
    let (message, duplicate) = ctx
        .core
        .post_chat_message(ctx.who, &ctx.session.session_id, group, input)
        .await?;
    let mut reply = Reply::ok().with_json("message", render::message_json(&message));
    if duplicate {
        reply.code = DUPLICATE_MESSAGE;
    }
    Ok(reply)
}

pub async fn update(ctx: &Ctx<'_>, mut args: Args) -> Outcome {
    let group = args.group()?;
    let message_id = args.u64(&["message_id"])?;
    let text = args.opt_text(&["message"])?;
    let attachments = args.opt_text(&["attachments", "attactments"])?;
    let message = ctx
        .core
        .edit_chat_message(ctx.who, group, message_id, text, attachments)
        .await?;
    Ok(Reply::ok().with_json("message", render::message_json(&message)))
}

pub async fn delete(ctx: &Ctx<'_>, mut args: Args) -> Outcome {
    let group = args.group()?;
    let message_id = args.u64(&["message_id"])?;
    ctx.core
        .delete_chat_message(ctx.who, group, message_id)
        .await?;
    Ok(Reply::ok())
}

pub async fn list(ctx: &Ctx<'_>, mut args: Args) -> Outcome {
    let group = args.group()?;
    let before = args.opt_u64(&["last_message_id"])?.filter(|b| *b > 0);
    let after = args.opt_u64(&["last_seen_message_id"])?;
    let since = args.opt_u64(&["since_seq"])?;
    let page = args.opt_u64(&["pindex"])?.unwrap_or(0) as usize;
    let size = args
        .opt_u64(&["psize"])?
        .map_or(DEFAULT_PAGE, |s| s as usize);
    let listed = match since {
        Some(_) if before.is_some() || after.is_some() || page > 0 => {
            return Err(Failure::invalid(
                "since_seq (not with last_message_id, last_seen_message_id or pindex)",
            ))
        }
        Some(since) => {
            ctx.core
                .list_chat_changes(ctx.who, group, since, size)
                .await?
        }
        None => {
            ctx.core
                .list_chat_messages(ctx.who, group, before, after, page, size)
                .await?
        }
    };
    let mut list = String::from("[");
    for (i, m) in listed.messages.iter().enumerate() {
        if i > 0 {
            list.push(',');
        }
        list.push_str(&render::message_json(m));
    }
    list.push(']');
    Ok(Reply::ok()
        .with_json("messages", list)
        .with("more", Value::Bool(listed.more)))
}

/// `seen_message` / `received_message {group_id, message_id}`: the caller's mark moves up
/// to that message (see `confer_core::service::Receipt`).
pub async fn mark(ctx: &Ctx<'_>, mut args: Args, receipt: Receipt) -> Outcome {
    let group = args.group()?;
    let message_id = args.u64(&["message_id"])?;
    ctx.core
        .mark_message(ctx.who, group, message_id, receipt)
        .await?;
    Ok(Reply::ok())
}
