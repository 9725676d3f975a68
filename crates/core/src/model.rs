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
    pub owner: Uin,
    pub creator: Uin,
    pub occupants: BTreeSet<Uin>,
    pub created_at_us: i64,
    pub updated_at_us: i64,
    /// The `seq` of the newest message, 0 when there is none.
    pub last_seq: u64,
    pub destroyed: bool,
}

impl Conversation {
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
    pub owner: Uin,
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
