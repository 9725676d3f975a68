//! Chat messages: posting (idempotent on `nonce`), editing, deleting (a tombstone others
//! are told about) and listing with exclusive id bounds.
//!
//! Every stored message, whichever door it came through, is announced the same way
//! ([`Core::announce_message`]): as `message` to the members' Chat API sessions and as
//! `media/conf/msglog_new_msg` on the bus for External API subscribers.

use std::sync::Arc;

use crate::error::{CoreError, CoreResult};
use crate::event::{Event, EventBody, Json};
use crate::ids::{GroupId, SessionId};
use crate::model::{
    now_us, Conversation, Message, MessagePage, MessageQuery, NewMessage, Principal,
};

use super::Core;

/// The message types the Chat API defines (11 is unassigned).
const MESSAGE_TYPES: [u32; 13] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 13];

/// Why a message without content is refused.
const EMPTY_MESSAGE: &str = "message: a message needs text or attachments";

/// Whether a chat message carries anything: text that is not blank, or attachments that
/// are not blank or an empty JSON list/object/null. The chat posting path applies it, so it
/// holds for the Chat API and the admin API alike; the server's own call records (type 1)
/// carry the call as text. A msglog `msg` (External API) is the client's own object, kept
/// as it is: an empty `{}` is allowed there.
fn has_content(text: Option<&str>, attachments: Option<&str>) -> bool {
    fn blank(s: &str) -> bool {
        let squeezed: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        matches!(squeezed.as_str(), "" | "[]" | "{}" | "null" | "\"\"")
    }
    text.is_some_and(|t| !t.trim().is_empty()) || attachments.is_some_and(|a| !blank(a))
}

/// What a client sends to post a chat message.
#[derive(Clone, Debug, Default)]
pub struct ChatMessageInput {
    pub kind: u32,
    pub text: Option<String>,
    pub attachments: Option<String>,
    pub nonce: Option<String>,
    pub version: u32,
    /// Display fields a client sent along (group_name, sender_name …): not used; the
    /// server fills them from the account and the group (`profiles.rs`).
    pub extra: Option<Json>,
    /// Attachment item ids the message carries (the sender's own uploads).
    pub attachment_ids: Vec<u64>,
}

impl Core {
    /// Store a message in `conv` from `caller`, then announce it. Returns the message and
    /// whether it was a retry of one already stored (same nonce), which is not announced.
    ///
    /// Every door posts through here, so the checks every message needs live here: the
    /// conversation takes messages, the caller is not blocked, and the message is within
    /// `max_message_bytes`. Whether it has content is checked by the two posting paths
    /// (chat messages and msglog), since the chat path keeps display fields in `body`.
    pub(super) async fn store_message(
        &self,
        conv: &Conversation,
        caller: &Principal,
        new: NewMessage,
        attachment_ids: &[u64],
    ) -> CoreResult<(Arc<Message>, bool)> {
        self.check_message_size(
            new.text.as_deref(),
            new.attachments.as_deref(),
            new.body.as_ref(),
        )?;
        if conv.destroyed {
            return Err(CoreError::ConversationDestroyed);
        }
        if conv.blocked.contains(&caller.uin) {
            return Err(CoreError::Blocked);
        }
        let files = self.own_attachments(caller.uin, attachment_ids).await?;
        let appended = self
            .storage
            .append_message(NewMessage { files, ..new })
            .await?;
        if appended.duplicate {
            return Ok((appended.message, true));
        }
        self.link_attachments(appended.message.message_id, conv.group_id, attachment_ids)
            .await?;
        self.metrics.message_stored();
        self.announce_message(conv, "message", &appended.message);
        Ok((appended.message, false))
    }

    /// A message's content (text, attachments, body) within `max_message_bytes`, whichever
    /// door it came through.
    fn check_message_size(
        &self,
        text: Option<&str>,
        attachments: Option<&str>,
        body: Option<&Json>,
    ) -> CoreResult<()> {
        let size = text.map_or(0, str::len)
            + attachments.map_or(0, str::len)
            + body.map_or(0, |b| b.as_str().len());
        if size > self.settings.max_message_bytes {
            return Err(CoreError::TooLarge(
                "message content is larger than max_message_bytes",
            ));
        }
        Ok(())
    }

    /// Tell the members (Chat API) and subscribers (External API) about a message.
    pub(super) fn announce_message(&self, conv: &Conversation, kind: &str, message: &Arc<Message>) {
        self.push_chat(
            conv.occupants.iter().copied(),
            kind,
            conv.group_id.to_string(),
            EventBody::Message(message.clone()),
        );
        if kind == "message" {
            self.publish(Event::new(
                "media",
                Some("conf".into()),
                Some("msglog_new_msg".into()),
                Some(conv.public_id()),
                EventBody::Message(message.clone()),
            ));
        }
    }

    /// Post a chat message to a group the caller is in.
    pub async fn post_chat_message(
        &self,
        caller: &Principal,
        session: &SessionId,
        group: GroupId,
        input: ChatMessageInput,
    ) -> CoreResult<(Arc<Message>, bool)> {
        self.post_chat_message_from(caller, Some(session.clone()), group, input)
            .await
    }

    /// Post a chat message from `caller`, through a session or (the admin API) none.
    pub(super) async fn post_chat_message_from(
        &self,
        caller: &Principal,
        session: Option<SessionId>,
        group: GroupId,
        input: ChatMessageInput,
    ) -> CoreResult<(Arc<Message>, bool)> {
        if !MESSAGE_TYPES.contains(&input.kind) {
            return Err(CoreError::InvalidValue("type".into()));
        }
        if input.nonce.as_ref().is_some_and(|n| n.len() > 256) {
            return Err(CoreError::InvalidValue("nonce".into()));
        }
        // `extra` holds display fields (sender_name …), not content.
        if !has_content(input.text.as_deref(), input.attachments.as_deref()) {
            return Err(CoreError::InvalidValue(EMPTY_MESSAGE.into()));
        }
        let conv = self.member_group(caller, group).await?;
        let display = self.display_fields(&conv, caller.uin).await?;
        if !conv.hidden.is_empty() && !conv.destroyed && !conv.blocked.contains(&caller.uin) {
            // A private group someone left comes back to them with this message.
            self.unhide(&conv, conv.hidden.clone()).await?;
        }
        let new = NewMessage {
            group_id: group,
            sender: caller.uin,
            sender_login: caller.login.clone(),
            session_id: session,
            kind: input.kind,
            text: input.text,
            attachments: input.attachments,
            body: display,
            nonce: input.nonce,
            version: input.version,
            created_at_us: now_us(),
            files: Vec::new(),
        };
        let (message, duplicate) = self
            .store_message(&conv, caller, new, &input.attachment_ids)
            .await?;
        Ok((message, duplicate))
    }

    async fn own_message(
        &self,
        caller: &Principal,
        group: GroupId,
        message_id: u64,
    ) -> CoreResult<(Conversation, Message)> {
        let conv = self.member_group(caller, group).await?;
        let message = self
            .storage
            .message(message_id)
            .await?
            .filter(|m| m.group_id == group && !m.deleted)
            .ok_or(CoreError::MessageNotFound)?;
        Ok((conv, message))
    }

    /// Edit a message; only its sender may, and not while blocked. A field left out
    /// (`None`) is left as it is; leaving both out is refused.
    pub async fn edit_chat_message(
        &self,
        caller: &Principal,
        group: GroupId,
        message_id: u64,
        text: Option<String>,
        attachments: Option<String>,
    ) -> CoreResult<Arc<Message>> {
        if text.is_none() && attachments.is_none() {
            return Err(CoreError::InvalidValue(
                "nothing to change: give message or attachments".into(),
            ));
        }
        let (conv, message) = self.own_message(caller, group, message_id).await?;
        if message.sender != caller.uin {
            return Err(CoreError::Unauthorized);
        }
        if conv.blocked.contains(&caller.uin) {
            return Err(CoreError::Blocked);
        }
        self.check_message_size(
            text.as_deref().or(message.text.as_deref()),
            attachments.as_deref().or(message.attachments.as_deref()),
            message.body.as_ref(),
        )?;
        if !has_content(
            text.as_deref().or(message.text.as_deref()),
            attachments.as_deref().or(message.attachments.as_deref()),
        ) {
            return Err(CoreError::InvalidValue(EMPTY_MESSAGE.into()));
        }
        let edited = self
            .storage
            .edit_message(message_id, text, attachments, now_us())
            .await?;
        let edited = Arc::new(self.receipted(edited).await);
        self.announce_message(&conv, "update_message", &edited);
        Ok(edited)
    }

    /// Delete a message: its sender or the group's owner may. It stays as a tombstone.
    pub async fn delete_chat_message(
        &self,
        caller: &Principal,
        group: GroupId,
        message_id: u64,
    ) -> CoreResult<Arc<Message>> {
        let (conv, message) = self.own_message(caller, group, message_id).await?;
        if message.sender != caller.uin && conv.owner != caller.uin {
            return Err(CoreError::Unauthorized);
        }
        let deleted = Arc::new(self.storage.delete_message(message_id, now_us()).await?);
        self.announce_message(&conv, "delete_message", &deleted);
        Ok(deleted)
    }

    /// List a group's messages for the caller. `after` (exclusive) lists oldest first, to
    /// catch up; otherwise newest first, older than `before` (exclusive). What the caller
    /// cleared with `delete_conversation` is left out. A page stops at `page_size`
    /// (capped by `max_list`; 0 is refused) or `max_list_bytes`, and says whether there is
    /// `more`.
    pub async fn list_chat_messages(
        &self,
        caller: &Principal,
        group: GroupId,
        before: Option<u64>,
        after: Option<u64>,
        page: usize,
        page_size: usize,
    ) -> CoreResult<MessagePage> {
        if page_size == 0 {
            return Err(CoreError::InvalidValue(
                super::groups::PAGE_SIZE_ZERO.into(),
            ));
        }
        self.member_group(caller, group).await?;
        let state = self
            .storage
            .member_state(group, caller.uin)
            .await?
            .unwrap_or_default();
        let limit = page_size.clamp(1, self.settings.max_list);
        let query = MessageQuery {
            before,
            after,
            above_seq: state.cleared_seq,
            offset: page.saturating_mul(limit),
            limit,
            max_bytes: self.settings.max_list_bytes,
            oldest_first: after.is_some() && before.is_none(),
            changed_after: None,
        };
        let mut listed = self.storage.list_messages(group, query).await?;
        self.with_receipts(group, &mut listed.messages).await?;
        Ok(listed)
    }

    /// Every change to a group's messages after change number `since`, in change order:
    /// new messages, edited ones (as they are now) and deleted ones (tombstones), each
    /// once, with its `change_seq`; what the caller cleared is left out. A page stops at
    /// `page_size` (capped by `max_list`; 0 is refused) or `max_list_bytes`; continue from
    /// the last `change_seq` received while `more`.
    pub async fn list_chat_changes(
        &self,
        caller: &Principal,
        group: GroupId,
        since: u64,
        page_size: usize,
    ) -> CoreResult<MessagePage> {
        if page_size == 0 {
            return Err(CoreError::InvalidValue(
                super::groups::PAGE_SIZE_ZERO.into(),
            ));
        }
        self.member_group(caller, group).await?;
        let state = self
            .storage
            .member_state(group, caller.uin)
            .await?
            .unwrap_or_default();
        let query = MessageQuery {
            above_seq: state.cleared_seq,
            limit: page_size.clamp(1, self.settings.max_list),
            max_bytes: self.settings.max_list_bytes,
            changed_after: Some(since),
            ..MessageQuery::default()
        };
        let mut listed = self.storage.list_messages(group, query).await?;
        self.with_receipts(group, &mut listed.messages).await?;
        Ok(listed)
    }
}
