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
    /// The number of its last change: its `message_id` until it is edited or deleted, then
    /// the number that change took. Change numbers are one server-wide rising count shared
    /// by messages, groups and members' marks, so "every change after N" is one bound.
    pub change_seq: u64,
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
