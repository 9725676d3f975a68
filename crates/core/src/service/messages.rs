//! The msglog side of messages: storing an arbitrary JSON `msg` in a conversation and
//! listing by `seq`. A message is acknowledged (this returns) only after storage made it
//! durable; then it is announced through every door (see `chat_messages`).

use std::sync::Arc;

use crate::error::{CoreError, CoreResult};
use crate::event::Json;
use crate::ids::SessionId;
use crate::model::{now_us, Message, MessagePage, NewMessage, Principal};

use super::Core;

impl Core {
    /// Store a msglog message (an arbitrary JSON object) in a conference the caller
    /// occupies, then publish `media/conf/msglog_new_msg`.
    pub async fn post_conference_message(
        &self,
        caller: &Principal,
        session: &SessionId,
        conf_id: &str,
        msg: Json,
        attachment_ids: &[u64],
    ) -> CoreResult<Arc<Message>> {
        let conv = self.visible_conversation(caller, conf_id).await?;
        let new = NewMessage {
            group_id: conv.group_id,
            sender: caller.uin,
            sender_login: caller.login.clone(),
            session_id: Some(session.clone()),
            kind: 0,
            text: None,
            attachments: None,
            body: Some(msg),
            nonce: None,
            version: 0,
            created_at_us: now_us(),
            files: Vec::new(),
            push_to: Vec::new(),
        };
        let (message, _) = self
            .store_message(&conv, caller, new, attachment_ids)
            .await?;
        Ok(message)
    }

    /// Store a line of text in a conversation the caller occupies (the conference door's
    /// `instantmsg`): a plain text message (type 0), so the Chat API lists it as its own
    /// and msglog shows it as `message`. Blank text is refused.
    pub async fn post_conference_text(
        &self,
        caller: &Principal,
        session: &SessionId,
        conf_id: &str,
        text: String,
    ) -> CoreResult<Arc<Message>> {
        if text.trim().is_empty() {
            return Err(CoreError::InvalidValue("msg: a message needs text".into()));
        }
        let conv = self.visible_conversation(caller, conf_id).await?;
        let new = NewMessage {
            group_id: conv.group_id,
            sender: caller.uin,
            sender_login: caller.login.clone(),
            session_id: Some(session.clone()),
            kind: 0,
            text: Some(text),
            attachments: None,
            body: None,
            nonce: None,
            version: 0,
            created_at_us: now_us(),
            files: Vec::new(),
            push_to: Vec::new(),
        };
        let (message, _) = self.store_message(&conv, caller, new, &[]).await?;
        Ok(message)
    }

    /// Messages of a conversation the caller occupies, with `seq > after_seq`, oldest
    /// first, at most `limit` (capped by `max_list`) and `max_list_bytes`; `more` when
    /// the page stopped before the last message.
    pub async fn conference_messages(
        &self,
        caller: &Principal,
        conf_id: &str,
        after_seq: u64,
        limit: Option<usize>,
    ) -> CoreResult<MessagePage> {
        let conv = self.visible_conversation(caller, conf_id).await?;
        let limit = limit
            .unwrap_or(self.settings.max_list)
            .min(self.settings.max_list);
        Ok(self
            .storage
            .messages_after(
                conv.group_id,
                after_seq,
                limit,
                self.settings.max_list_bytes,
            )
            .await?)
    }
}
