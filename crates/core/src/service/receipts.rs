//! Message receipts: each member's received and seen marks in a group, and the status and
//! `received_uins`/`seen_uins` of a message that follow from them.
//!
//! A mark is a `seq` watermark per member (`MemberState::received_seq`, `seen_seq`):
//! `received_message {group_id, message_id}` says one of the member's devices has every
//! message up to that one, `seen_message` that the member has seen them (which counts as
//! received too, and is also what `unread_cnt` counts from). Posting counts as having seen
//! what came before, as for unread counts. The server's own delivery to a socket does not
//! count as received: only a client knows that a message reached its user's device.
//!
//! A message's status is then 3 (seen) once every recipient (the group's members but the
//! sender) has seen it, 2 (received) once every one has received it, else 1 (sent); 4 when
//! deleted ([`Message::status`]). Receipts are not stored per message: one mark written
//! covers every message before it, and a message's receipts are worked out from the
//! group's marks wherever it is shown ([`Core::with_receipts`]).
//!
//! When a member's mark moves, the group's members (the sender's sockets, the others, and
//! the member's own other devices) hear `message_status` with the message as it now is;
//! it speaks for every earlier message too. The member's own sockets also hear
//! `seen_message` (the message it saw up to), so its other devices clear the same unread
//! count.

use std::sync::Arc;

use crate::error::{CoreError, CoreResult};
use crate::event::EventBody;
use crate::ids::GroupId;
use crate::model::{Message, Principal, Receipts};

use super::Core;

/// Which mark a receipt moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Receipt {
    /// `received_message`: a device of the member has it.
    Received,
    /// `seen_message`: the member has seen it.
    Seen,
}

impl Core {
    /// Fill in the receipts of messages of one group, from one read of its marks.
    pub(super) async fn with_receipts(
        &self,
        group: GroupId,
        messages: &mut [Message],
    ) -> CoreResult<()> {
        let Some(from) = messages.iter().map(|m| m.seq).min() else {
            return Ok(());
        };
        let marks = self.storage.read_marks(group, from).await?;
        for m in messages.iter_mut() {
            m.receipts = Receipts::of(m, &marks);
        }
        Ok(())
    }

    /// One message with its receipts; a failed read leaves them empty (logged), so a
    /// push still goes out.
    pub(super) async fn receipted(&self, message: Message) -> Message {
        let mut one = [message];
        if let Err(e) = self.with_receipts(one[0].group_id, &mut one).await {
            tracing::warn!(error = %e, "message receipts unavailable");
        }
        let [message] = one;
        message
    }

    /// Move the caller's received or seen mark in `group` up to `message_id` (never
    /// back). When it moved, the members hear `message_status`, and for a seen mark the
    /// caller's own sockets hear `seen_message`. Returns the message with its receipts.
    pub async fn mark_message(
        &self,
        caller: &Principal,
        group: GroupId,
        message_id: u64,
        receipt: Receipt,
    ) -> CoreResult<Message> {
        let message = self
            .storage
            .message(message_id)
            .await?
            .filter(|m| m.group_id == group)
            .ok_or(CoreError::MessageNotFound)?;
        let mut moved = false;
        let (conv, _) = self
            .change_state(caller, group, |s, _| {
                let mark = match receipt {
                    Receipt::Received => &mut s.received_seq,
                    Receipt::Seen => &mut s.seen_seq,
                };
                moved = *mark < message.seq;
                *mark = (*mark).max(message.seq);
            })
            .await?;
        let message = self.receipted(message).await;
        if moved {
            let shown = Arc::new(message.clone());
            self.push_chat(
                conv.occupants.iter().copied(),
                "message_status",
                group.to_string(),
                EventBody::Message(shown.clone()),
            );
            if receipt == Receipt::Seen {
                self.push_chat(
                    [caller.uin],
                    "seen_message",
                    group.to_string(),
                    EventBody::Message(shown),
                );
            }
        }
        Ok(message)
    }
}
