//! Accounts, principals, conversations and messages: the core's stored aggregates.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::event::Json;
use crate::ids::{GroupId, SessionId, Uin};

/// The login of the configured administrator; reserved, never an account.
pub const ADMIN_LOGIN: &str = "admin";

/// A stored user account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub uin: Uin,
    pub login: String,
    pub name: Option<String>,
    pub avatar_url: Option<String>,
    /// PHC string of an Argon2id hash.
    pub password_hash: String,
    pub created_at_us: i64,
}

/// What a new account is made from; `uin` is assigned by storage when `None`.
#[derive(Clone, Debug)]
pub struct NewAccount {
    pub uin: Option<Uin>,
    pub login: String,
    pub name: Option<String>,
    pub password_hash: String,
    pub created_at_us: i64,
}

/// Who is calling: an authenticated account or the configured admin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub uin: Uin,
    pub login: String,
    pub admin: bool,
}

/// A stored login token (only its SHA-256 is kept).
#[derive(Clone, Debug)]
pub struct TokenRecord {
    pub token_hash: [u8; 32],
    pub uin: Uin,
    pub login: String,
    pub expires_at_us: i64,
}

/// The kind of a conversation. Chat group types are 1, 2, 3 as the Chat API numbers them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConversationKind {
    Private,
    Group,
    Public,
    /// A conference; `class` is "sfu" or "mcu" as the External API names it.
    Conference {
        class: String,
    },
}

/// A stored conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conversation {
    pub group_id: GroupId,
    /// Unique string alias (the External API's `conf_id`).
    pub alias: Option<String>,
    pub kind: ConversationKind,
    pub name: Option<String>,
    pub avatar_url: Option<String>,
    pub owner: Uin,
    pub creator: Uin,
    pub occupants: BTreeSet<Uin>,
    /// Users who may no longer post here.
    pub blocked: BTreeSet<Uin>,
    pub created_at_us: i64,
    pub updated_at_us: i64,
    pub destroyed: bool,
    /// The id of its newest message (0: none). Stores read it as 0 (it changes on every
    /// post, and conversations are cached); the core fills it in wherever it shows a chat
    /// group (answers and group pushes).
    pub last_message_id: u64,
    /// The change number of its last change of its own (created, renamed, members, owner,
    /// blocks): see [`Message::change_seq`] for the space these numbers share.
    pub change_seq: u64,
    /// Members who left this private group: it is hidden from them until it comes back
    /// (a message in it, or `check_group`/`create_group` for the pair).
    pub hidden: BTreeSet<Uin>,
}

impl Conversation {
    /// Chat groups (private, group, public), as opposed to conferences.
    pub fn is_chat_group(&self) -> bool {
        !matches!(self.kind, ConversationKind::Conference { .. })
    }

    /// The name a door shows for it: its alias, else its decimal number.
    pub fn public_id(&self) -> String {
        match &self.alias {
            Some(alias) => alias.clone(),
            None => self.group_id.to_string(),
        }
    }
}

/// What a new conversation is made from.
#[derive(Clone, Debug)]
pub struct NewConversation {
    pub alias: Option<String>,
    pub kind: ConversationKind,
    pub name: Option<String>,
    pub avatar_url: Option<String>,
    pub owner: Uin,
    pub creator: Uin,
    pub occupants: BTreeSet<Uin>,
    pub created_at_us: i64,
}

/// A stored message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Global, increasing over all conversations.
    pub message_id: u64,
    pub group_id: GroupId,
    /// Per conversation, from 1, no gaps (the External API's `msg_id`).
    pub seq: u64,
    pub sender: Uin,
    pub sender_login: String,
    pub session_id: Option<SessionId>,
    /// Chat API message type (0 text …); msglog messages are 0.
    pub kind: u32,
    pub text: Option<String>,
    pub attachments: Option<String>,
    /// An arbitrary JSON object the sender attached (the msglog `msg`).
    pub body: Option<Json>,
    pub nonce: Option<String>,
    pub version: u32,
    pub created_at_us: i64,
    pub updated_at_us: i64,
    pub deleted: bool,
    /// The uploads the message carries, resolved when it was posted.
    pub files: Vec<MessageFile>,
    /// Who of its recipients has received and seen it. Not stored with the message (it
    /// follows the members' marks, see [`ReadMark`]): stores read it empty, and the core
    /// fills it in wherever it shows a chat message (answers, edits, `message_status`).
    pub receipts: Receipts,
    /// The number of its last change: its `message_id` until it is edited or deleted, then
    /// the number that change took. Change numbers are one server-wide rising count shared
    /// by messages, groups and members' marks, so "every change after N" is one bound.
    pub change_seq: u64,
}

/// Who of a message's recipients (the group's members but its sender) has it: `received`
/// holds those who have received it (seeing counts), `seen` those who have seen it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Receipts {
    /// How many recipients it has.
    pub recipients: usize,
    pub received: Vec<Uin>,
    pub seen: Vec<Uin>,
}

/// Message status as the Chat API numbers it.
pub const STATUS_SENT: u8 = 1;
pub const STATUS_RECEIVED: u8 = 2;
pub const STATUS_SEEN: u8 = 3;
pub const STATUS_DELETED: u8 = 4;

impl Message {
    /// 4 deleted; 3 once every recipient has seen it, 2 once every one has received it;
    /// else (and when it has no recipient) 1, sent.
    pub fn status(&self) -> u8 {
        let r = &self.receipts;
        if self.deleted {
            STATUS_DELETED
        } else if r.recipients > 0 && r.seen.len() >= r.recipients {
            STATUS_SEEN
        } else if r.recipients > 0 && r.received.len() >= r.recipients {
            STATUS_RECEIVED
        } else {
            STATUS_SENT
        }
    }
}

/// One member's delivery marks in a group: every message with a `seq` up to
/// `received_seq` has reached one of its devices (`received_message`), every one up to
/// `seen_seq` has been seen (`seen_message`; posting counts as having seen what came
/// before, and seeing as having received).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadMark {
    pub uin: Uin,
    pub received_seq: u64,
    pub seen_seq: u64,
}

impl Receipts {
    /// A message's receipts from its group's members' marks.
    pub fn of(message: &Message, marks: &[ReadMark]) -> Receipts {
        let mut r = Receipts::default();
        for mark in marks.iter().filter(|m| m.uin != message.sender) {
            r.recipients += 1;
            if mark.seen_seq >= message.seq {
                r.seen.push(mark.uin);
            }
            if mark.received_seq.max(mark.seen_seq) >= message.seq {
                r.received.push(mark.uin);
            }
        }
        r
    }
}

/// An upload a message carries: what a recipient needs to download and show it, resolved
/// (and ownership checked) when the message is posted and kept with it, so rendering the
/// message needs no storage read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageFile {
    pub item_id: u64,
    pub filename: String,
    pub mimetype: String,
    pub size: u64,
}

impl MessageFile {
    /// Where it is downloaded (see [`crate::references::file_url`]).
    pub fn url(&self) -> String {
        crate::references::file_url(self.item_id, &self.filename)
    }
}

impl Message {
    /// What the message weighs in a listing: its content and names, plus a fixed share
    /// for the other fields. Listings stop at `max_list_bytes` of it.
    pub fn listed_bytes(&self) -> usize {
        const FIXED: usize = 128;
        FIXED
            + self.sender_login.len()
            + self.session_id.as_ref().map_or(0, |s| s.as_str().len())
            + self.text.as_ref().map_or(0, String::len)
            + self.attachments.as_ref().map_or(0, String::len)
            + self.body.as_ref().map_or(0, |b| b.as_str().len())
            + self.nonce.as_ref().map_or(0, String::len)
            + self
                .files
                .iter()
                .map(|f| 64 + f.filename.len() + f.mimetype.len())
                .sum::<usize>()
    }
}

/// One page of a listing: at most the count and the bytes asked for; `more` when the
/// listing stopped at either limit before running out of messages.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MessagePage {
    pub messages: Vec<Message>,
    pub more: bool,
}

impl MessagePage {
    /// Take rows in order until `limit` rows or `max_bytes` ([`Message::listed_bytes`])
    /// would be passed; the first row is always taken, so paging moves on. Rows are
    /// pulled one at a time, so what lies past the limits is never read into memory.
    pub fn collect<E>(
        rows: impl Iterator<Item = Result<Message, E>>,
        limit: usize,
        max_bytes: usize,
    ) -> Result<MessagePage, E> {
        let mut page = MessagePage::default();
        let mut bytes = 0usize;
        for row in rows {
            let message = row?;
            let size = message.listed_bytes();
            if page.messages.len() >= limit
                || (!page.messages.is_empty() && bytes.saturating_add(size) > max_bytes)
            {
                page.more = true;
                break;
            }
            bytes = bytes.saturating_add(size);
            page.messages.push(message);
        }
        Ok(page)
    }
}

/// What a new message is made from; storage assigns ids and `seq`.
#[derive(Clone, Debug)]
pub struct NewMessage {
    pub group_id: GroupId,
    pub sender: Uin,
    pub sender_login: String,
    pub session_id: Option<SessionId>,
    pub kind: u32,
    pub text: Option<String>,
    pub attachments: Option<String>,
    pub body: Option<Json>,
    pub nonce: Option<String>,
    pub version: u32,
    pub created_at_us: i64,
    /// The uploads it carries (see [`MessageFile`]).
    pub files: Vec<MessageFile>,
    /// Who gets a push for it (decided by the core, `service/push.rs`): written to the
    /// push outbox in the same store write as the message, unless it is a retry.
    pub push_to: Vec<Uin>,
}

impl NewMessage {
    /// The message this becomes once stored as `message_id` (also its change number) with
    /// `seq`: what every backend answers an append with.
    pub fn into_stored(self, message_id: u64, seq: u64) -> Message {
        Message {
            message_id,
            group_id: self.group_id,
            seq,
            sender: self.sender,
            sender_login: self.sender_login,
            session_id: self.session_id,
            kind: self.kind,
            text: self.text,
            attachments: self.attachments,
            body: self.body,
            nonce: self.nonce,
            version: self.version,
            created_at_us: self.created_at_us,
            updated_at_us: self.created_at_us,
            deleted: false,
            files: self.files,
            receipts: Default::default(),
            change_seq: message_id,
        }
    }
}

/// The result of appending: the stored message, and whether it existed already (same
/// sender, conversation and nonce), in which case nothing new was stored.
#[derive(Clone, Debug)]
pub struct Appended {
    pub message: Arc<Message>,
    pub duplicate: bool,
}

/// Microseconds since the Unix epoch, from the system clock.
pub fn now_us() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(now.as_micros()).unwrap_or(i64::MAX)
}

/// A user's own view of a conversation: notification, pin, clear and read marks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemberState {
    pub muted: bool,
    /// When the user pinned it (µs); pinned conversations list first.
    pub pinned_at_us: Option<i64>,
    /// `delete_conversation` hides every message with `seq <= cleared_seq` from this user.
    pub cleared_seq: u64,
    /// The newest `seq` the user has seen; later messages from others are unread.
    pub seen_seq: u64,
    /// The newest `seq` one of the user's devices has received (`received_message`).
    pub received_seq: u64,
    /// The user left this private group: it is hidden from them (see
    /// [`Conversation::hidden`]).
    pub hidden: bool,
}

/// One conversation as `list_group` shows it to one user.
#[derive(Clone, Debug)]
pub struct GroupListing {
    pub conversation: Conversation,
    pub state: MemberState,
    pub last_message: Option<Message>,
    pub unread: u64,
    /// The number of the last change that shows in this listing: the group's own, the
    /// user's marks, or any of its messages (new, edited, deleted).
    pub change_seq: u64,
}

/// A group a user no longer sees: left, removed, ended, or (private) hidden.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeftGroup {
    pub group_id: GroupId,
    /// The number of the change by which the user lost it.
    pub change_seq: u64,
}

/// What changed for one user after a change number (`list_group` with `since_seq`),
/// read at one instant: the groups they see that changed, and those they no longer see.
#[derive(Clone, Debug, Default)]
pub struct ChangedGroups {
    pub groups: Vec<GroupListing>,
    pub left: Vec<LeftGroup>,
}

/// Which messages a listing wants. Bounds are message ids, exclusive.
#[derive(Clone, Debug, Default)]
pub struct MessageQuery {
    /// Only messages older than this one (`last_message_id`).
    pub before: Option<u64>,
    /// Only messages newer than this one (`last_seen_message_id`).
    pub after: Option<u64>,
    /// Only messages with a larger `seq` (what the user cleared is hidden).
    pub above_seq: u64,
    pub offset: usize,
    pub limit: usize,
    /// Stop before the listing passes this many bytes ([`Message::listed_bytes`]).
    pub max_bytes: usize,
    /// Oldest first (catching up after `after`) or newest first (browsing history).
    pub oldest_first: bool,
    /// Every message whose [`Message::change_seq`] is larger (new, edited or deleted), in
    /// change order; `before`, `after`, `offset` and `oldest_first` are then not used.
    pub changed_after: Option<u64>,
}

/// A call's state, numbered as the Chat API does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallStatus {
    Ongoing = 1,
    Timeout = 2,
    Finished = 3,
}

/// An audio or video call in a conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    pub call_id: u64,
    pub group_id: GroupId,
    /// 1 audio, 2 video.
    pub media_type: u8,
    pub status: CallStatus,
    pub caller: Uin,
    pub callees: BTreeSet<Uin>,
    /// Callees who accepted.
    pub accepted: BTreeSet<Uin>,
    /// Callees who rejected (or failed).
    pub declined: BTreeSet<Uin>,
    /// Display fields the caller sent along (group_name, sender_name …), as JSON.
    pub extra: Option<Json>,
    pub started_at_us: i64,
    pub accepted_at_us: Option<i64>,
    pub stopped_at_us: Option<i64>,
}

impl Call {
    /// Caller or callee: who may signal and stop.
    pub fn involves(&self, uin: Uin) -> bool {
        self.caller == uin || self.callees.contains(&uin)
    }
}

/// Online status as the Chat API numbers it. A user chooses 1 or 3–6 (`user_status`);
/// 2 is what others see while it has no chat socket, or while it is invisible.
pub const ONLINE: u8 = 1;
pub const OFFLINE: u8 = 2;
pub const IDLE: u8 = 3;
pub const INVISIBLE: u8 = 4;
pub const AWAY: u8 = 5;
pub const BUSY: u8 = 6;

/// A user's presence: the status it chose and its free-text `message_status` (stored),
/// and when it was last online. What others see of it is [`Presence::shown`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Presence {
    pub uin: Uin,
    pub online_status: u8,
    pub message_status: String,
    pub last_seen_at_us: Option<i64>,
}

impl Presence {
    /// The status others see: offline without a chat socket or while invisible, else
    /// the chosen one.
    pub fn shown(&self, connected: bool) -> u8 {
        if connected && self.online_status != INVISIBLE {
            self.online_status
        } else {
            OFFLINE
        }
    }
}

/// A device token for push notifications.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceToken {
    pub uin: Uin,
    /// 1 Android (FCM), 2 iOS (APNs), 3 Web, 4 iOS PushKit.
    pub kind: u8,
    pub token: String,
}

/// Where an uploaded file is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachmentState {
    /// Uploaded, only its owner can see it.
    Draft = 0,
    /// Moved into the attachment store (`add_file`), ready to be sent.
    Stored = 1,
    /// Its file was removed by clean-up; the messages stay and say so.
    Missing = 2,
}

/// An uploaded file: metadata only; the bytes live in a blob store under `sha256`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    pub item_id: u64,
    pub owner: Uin,
    /// Hex SHA-256 of the content: the blob's name, and the HTTP ETag.
    pub sha256: String,
    pub size: u64,
    pub mimetype: String,
    pub filename: String,
    pub state: AttachmentState,
    pub created_at_us: i64,
}

/// What clean-up finds: an attachment whose every message is older than the cut-off.
#[derive(Clone, Debug)]
pub struct StaleAttachment {
    pub attachment: Attachment,
    /// Whether another live attachment shares the blob (then the bytes stay).
    pub blob_shared: bool,
}

/// What a push notification is about; the numbers are the outbox's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PushKind {
    Message = 1,
    Call = 2,
    /// A call push's follow-up: the call was answered, stopped or timed out.
    CallCancelled = 3,
}

impl PushKind {
    pub fn from_code(code: i64) -> Option<Self> {
        match code {
            1 => Some(PushKind::Message),
            2 => Some(PushKind::Call),
            3 => Some(PushKind::CallCancelled),
            _ => None,
        }
    }

    /// The name providers see (the webhook's `kind`).
    pub fn name(self) -> &'static str {
        match self {
            PushKind::Message => "message",
            PushKind::Call => "call",
            PushKind::CallCancelled => "call_cancelled",
        }
    }
}

/// An event waiting in the push outbox: a message or call and the users it should reach
/// by push. The core turns it into [`PushDelivery`]s (one per device token), applying the
/// rules that need reads (mutes, blocks, badges) off the posting path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushEntry {
    /// Assigned by storage (0 in a new one).
    pub id: u64,
    pub kind: PushKind,
    pub group_id: GroupId,
    /// The message id, or the call id for call kinds.
    pub ref_id: u64,
    pub sender: Uin,
    pub recipients: Vec<Uin>,
    pub created_at_us: i64,
}

/// One notification for one device, as the worker sends it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushDelivery {
    /// Assigned by storage (0 in a new one).
    pub id: u64,
    pub kind: PushKind,
    /// The recipient.
    pub uin: Uin,
    /// 1 FCM, 2 APNs, 3 Web Push, 4 APNs PushKit (the Chat API's token types).
    pub token_type: u8,
    pub token: String,
    pub group_id: GroupId,
    pub message_id: Option<u64>,
    pub call_id: Option<u64>,
    pub title: String,
    /// The message's text, only with `push_preview` on.
    pub body: Option<String>,
    /// The recipient's unread messages over every group.
    pub badge: u64,
    /// When the event was stored: a delivery older than `push_max_age_secs` is dropped.
    pub created_at_us: i64,
    /// Attempts made so far, and when the next is due.
    pub attempts: u32,
    pub next_at_us: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn posted(seq: u64, sender: u64) -> Message {
        Message {
            message_id: seq,
            group_id: GroupId(1),
            seq,
            sender: Uin(sender),
            sender_login: String::new(),
            session_id: None,
            kind: 0,
            text: None,
            attachments: None,
            body: None,
            nonce: None,
            version: 0,
            created_at_us: 0,
            updated_at_us: 0,
            deleted: false,
            files: Vec::new(),
            receipts: Receipts::default(),
            change_seq: seq,
        }
    }

    #[test]
    fn status_is_received_once_every_recipient_has_it_and_seen_once_every_one_saw_it() {
        let mark = |uin, received_seq, seen_seq| ReadMark {
            uin: Uin(uin),
            received_seq,
            seen_seq,
        };
        let mut m = posted(5, 1);
        let status = |m: &mut Message, marks: &[ReadMark]| {
            m.receipts = Receipts::of(m, marks);
            m.status()
        };
        assert_eq!(
            status(&mut m, &[mark(1, 0, 0)]),
            STATUS_SENT,
            "no recipient"
        );
        assert_eq!(status(&mut m, &[mark(1, 0, 9), mark(2, 4, 0)]), STATUS_SENT);
        assert_eq!(
            status(&mut m, &[mark(2, 5, 0), mark(3, 0, 7)]),
            STATUS_RECEIVED
        );
        assert_eq!(m.receipts.received, vec![Uin(2), Uin(3)]);
        assert_eq!(m.receipts.seen, vec![Uin(3)]);
        assert_eq!(status(&mut m, &[mark(2, 0, 5), mark(3, 0, 6)]), STATUS_SEEN);
        m.deleted = true;
        assert_eq!(m.status(), STATUS_DELETED);
    }

    #[test]
    fn an_invisible_or_disconnected_user_is_shown_offline() {
        let p = |online_status| Presence {
            uin: Uin(1),
            online_status,
            message_status: String::new(),
            last_seen_at_us: None,
        };
        assert_eq!(p(BUSY).shown(true), BUSY);
        assert_eq!(p(BUSY).shown(false), OFFLINE);
        assert_eq!(p(INVISIBLE).shown(true), OFFLINE);
        assert_eq!(p(IDLE).shown(true), IDLE);
        assert_eq!(p(AWAY).shown(true), AWAY);
        assert_eq!(p(ONLINE).shown(true), ONLINE);
    }
}
