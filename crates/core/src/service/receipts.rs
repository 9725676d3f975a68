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
//! When a member's mark moves, the message's sender and the member's own sockets hear
//! `message_status` with the message as it now is (it speaks for every earlier message
//! too); when the message's status changed with it (to 2 or 3), every member hears it.
//! So a receipt costs a couple of deliveries, and a message's status changes reach a
//! group of any size at most twice, rather than every member hearing every receipt. The
//! member's own sockets also hear `seen_message` (the message it saw up to), so its other
//! devices clear the same unread count.

use std::sync::Arc;

use crate::error::{CoreError, CoreResult};
use crate::event::EventBody;
use crate::ids::{GroupId, Uin};
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
    /// back). When it moved, `message_status` goes to the message's sender and the
    /// caller's own sockets, and to every member when the message's status changed with
    /// it; for a seen mark the caller's own sockets also hear `seen_message`. Returns the
    /// message with its receipts.
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
        self.member_group(caller, group).await?;
        // Read before the write: the status it had. Of racing receipts, the last one's
        // read after its write sees every other, so a change is never missed (at worst
        // told twice).
        let before = self.receipted(message.clone()).await.status();
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
            // Every member on a change of status, else only who follows each receipt:
            // a large group's members do not each hear every other member's receipts.
            let to: Vec<Uin> = if message.status() != before {
                conv.occupants.iter().copied().collect()
            } else {
                let mut to = vec![message.sender];
                if caller.uin != message.sender {
                    to.push(caller.uin);
                }
                to
            };
            self.push_chat(
                to,
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
