//! Storage traits, one per aggregate. The embedded backend is `confer-store-sqlite`; a
//! PostgreSQL backend implements the same traits without touching the core.
//!
//! **Contract:** a method that writes returns only after its change is durable (committed
//! and synced), so a door may acknowledge to its client as soon as it returns.

use std::collections::BTreeSet;

use async_trait::async_trait;

use crate::event::Json;
use crate::hub::{HubBatchItem, HubBox, HubGroup, HubLinkKind, HubLog, HubSetting};
use crate::ids::{GroupId, Uin};
use crate::model::{
    Account, Appended, Attachment, AttachmentState, Call, ChangedGroups, Conversation,
    ConversationKind, DeviceToken, GroupListing, MemberState, Message, MessagePage, MessageQuery,
    NewAccount, NewConversation, NewMessage, Presence, PushDelivery, PushEntry, ReadMark,
    StaleAttachment, TokenRecord,
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique key is taken (login, uin, alias).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The row to change does not exist.
    #[error("not found")]
    NotFound,
    /// The backend failed (disk, corruption, shut down).
    #[error("backend: {0}")]
    Backend(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

#[async_trait]
pub trait AccountStore: Send + Sync {
    async fn create_account(&self, account: NewAccount) -> StoreResult<Account>;
    async fn account_by_login(&self, login: &str) -> StoreResult<Option<Account>>;
    async fn account_by_uin(&self, uin: Uin) -> StoreResult<Option<Account>>;
    async fn list_accounts(&self) -> StoreResult<Vec<Account>>;
    async fn set_password_hash(&self, uin: Uin, password_hash: String) -> StoreResult<()>;
    /// Remember when a user was last online.
    async fn set_last_seen(&self, uin: Uin, at_us: i64) -> StoreResult<()>;
    async fn last_seen(&self, uin: Uin) -> StoreResult<Option<i64>>;
    /// Store the online status a user chose and its `message_status`.
    async fn set_presence(
        &self,
        uin: Uin,
        online_status: u8,
        message_status: String,
    ) -> StoreResult<()>;
    /// The stored presence of each of `uins` that has an account (one read for the lot).
    async fn presences(&self, uins: Vec<Uin>) -> StoreResult<Vec<Presence>>;
    /// Replace a user's display name and avatar URL (`None` clears one).
    async fn set_profile(
        &self,
        uin: Uin,
        name: Option<String>,
        avatar_url: Option<String>,
    ) -> StoreResult<()>;
}

#[async_trait]
pub trait TokenStore: Send + Sync {
    async fn insert_token(&self, token: TokenRecord) -> StoreResult<()>;
    /// The token if it exists and has not expired at `now_us`.
    async fn token(&self, token_hash: [u8; 32], now_us: i64) -> StoreResult<Option<TokenRecord>>;
    /// Revoke a token: delete it, and record the revocation ([`TokenStore::revoked_tokens`]).
    async fn delete_token(&self, token_hash: [u8; 32]) -> StoreResult<bool>;
    /// Those of `token_hashes` that exist and have not expired at `now_us`, each with its
    /// expiry: one read (and one indexed lookup per token) for the lot.
    async fn live_tokens(
        &self,
        token_hashes: Vec<[u8; 32]>,
        now_us: i64,
    ) -> StoreResult<Vec<([u8; 32], i64)>>;
    /// Revoke every token of a user (its password changed), recording each revocation;
    /// how many.
    async fn delete_tokens_of(&self, uin: Uin) -> StoreResult<usize>;
    /// The tokens revoked at or after `since_us` (by the revoker's clock), by any process
    /// on this storage, at most `limit` of them: an indexed range read, so that a server
    /// learns of revocations without reading every token it holds. A backend keeps each
    /// revocation for at least [`TOKEN_REVOCATIONS_KEPT_US`].
    async fn revoked_tokens(&self, since_us: i64, limit: usize) -> StoreResult<Vec<[u8; 32]>>;
}

/// How long a backend keeps a token's revocation for [`TokenStore::revoked_tokens`]: an
/// hour, after which it may prune it (the token itself is gone at once).
pub const TOKEN_REVOCATIONS_KEPT_US: i64 = 3_600_000_000;

#[async_trait]
pub trait ConversationStore: Send + Sync {
    async fn create_conversation(&self, new: NewConversation) -> StoreResult<Conversation>;
    /// Read on every post: backends are expected to answer it from memory where they can.
    async fn conversation(&self, id: GroupId) -> StoreResult<Option<Conversation>>;
    /// The `seq` of the conversation's newest message, 0 when there is none.
    async fn last_seq(&self, id: GroupId) -> StoreResult<u64>;
    async fn conversation_by_alias(&self, alias: &str) -> StoreResult<Option<Conversation>>;
    /// Conferences (not chat groups), optionally only those `member` occupies.
    async fn list_conferences(&self, member: Option<Uin>) -> StoreResult<Vec<Conversation>>;
    /// Every live (not destroyed) chat group, by id: the admin's listing.
    async fn list_chat_groups(&self) -> StoreResult<Vec<Conversation>>;
    async fn add_occupant(&self, id: GroupId, uin: Uin, now_us: i64) -> StoreResult<()>;
    async fn remove_occupant(&self, id: GroupId, uin: Uin, now_us: i64) -> StoreResult<()>;
    async fn mark_destroyed(&self, id: GroupId, now_us: i64) -> StoreResult<()>;
    /// Replace a chat group's editable fields.
    async fn update_group(&self, group: Conversation, now_us: i64) -> StoreResult<()>;
    /// Replace a chat group's editable fields and add and remove occupants, all in one
    /// transaction: when any part fails, nothing of it is written.
    async fn change_group(
        &self,
        group: Conversation,
        add: BTreeSet<Uin>,
        remove: BTreeSet<Uin>,
        now_us: i64,
    ) -> StoreResult<()>;
    /// Block or unblock `uin`; the group's `updated_at` becomes `now_us`.
    async fn set_blocked(
        &self,
        id: GroupId,
        uin: Uin,
        blocked: bool,
        now_us: i64,
    ) -> StoreResult<()>;
    /// A live chat group of `kind` whose occupants are exactly `occupants`.
    async fn find_group_with_occupants(
        &self,
        kind: &ConversationKind,
        occupants: &BTreeSet<Uin>,
    ) -> StoreResult<Option<Conversation>>;
    /// The chat groups (not conferences) `uin` occupies, with its state, the last message
    /// it can see and its unread count.
    async fn groups_of(&self, uin: Uin) -> StoreResult<Vec<GroupListing>>;
    async fn member_state(&self, id: GroupId, uin: Uin) -> StoreResult<Option<MemberState>>;
    async fn set_member_state(&self, id: GroupId, uin: Uin, state: MemberState) -> StoreResult<()>;
    /// Every occupant's delivery marks in a group, for the receipts of messages with
    /// `seq >= from_seq`: a member's own message at or after `from_seq` counts as its seen
    /// mark. This default reads each member's state (one read per member, and without
    /// counting posts); a backend answers it with one query.
    async fn read_marks(&self, id: GroupId, from_seq: u64) -> StoreResult<Vec<ReadMark>> {
        let _ = from_seq;
        let Some(conv) = self.conversation(id).await? else {
            return Ok(Vec::new());
        };
        let mut marks = Vec::with_capacity(conv.occupants.len());
        for uin in conv.occupants {
            if let Some(state) = self.member_state(id, uin).await? {
                marks.push(ReadMark {
                    uin,
                    received_seq: state.received_seq,
                    seen_seq: state.seen_seq,
                });
            }
        }
        Ok(marks)
    }
    /// Hide a private group from `uins` (they left it) or show it to them again; each
    /// takes a change number (see [`crate::model::Message::change_seq`]).
    async fn set_hidden(&self, id: GroupId, uins: BTreeSet<Uin>, hidden: bool) -> StoreResult<()>;
    /// What changed for `uin` after change number `since`, read at one instant: the chat
    /// groups it sees whose listing changed, and those it stopped seeing (left, removed,
    /// ended, hidden) after `since`.
    async fn groups_changed(&self, uin: Uin, since: u64) -> StoreResult<ChangedGroups>;
    /// Everyone who shares at least one live chat group with `uin` (not `uin` itself).
    async fn peers_of(&self, uin: Uin) -> StoreResult<BTreeSet<Uin>>;
}

#[async_trait]
pub trait DeviceTokenStore: Send + Sync {
    /// Register (or move to this user) a device token.
    async fn register_token(&self, token: DeviceToken) -> StoreResult<()>;
    /// Remove a user's token; `false` if it had none such.
    async fn unregister_token(&self, uin: Uin, token: &str) -> StoreResult<bool>;
    async fn device_tokens(&self, uin: Uin) -> StoreResult<Vec<DeviceToken>>;
}

#[async_trait]
pub trait CallStore: Send + Sync {
    /// Store a new call; `call_id` is assigned.
    async fn insert_call(&self, call: Call) -> StoreResult<Call>;
    async fn update_call(&self, call: Call) -> StoreResult<()>;
    async fn call(&self, call_id: u64) -> StoreResult<Option<Call>>;
}

#[async_trait]
pub trait MessageStore: Send + Sync {
    /// Store a message with the next `seq` of its conversation, and move the sender's seen
    /// mark to it. Idempotent on (conversation, sender, nonce) when a nonce is given.
    async fn append_message(&self, new: NewMessage) -> StoreResult<Appended>;
    /// Messages of a conversation with `seq > after_seq`, oldest first, at most `limit`
    /// and at most `max_bytes` (see [`MessagePage::collect`]).
    async fn messages_after(
        &self,
        group: GroupId,
        after_seq: u64,
        limit: usize,
        max_bytes: usize,
    ) -> StoreResult<MessagePage>;
    async fn message(&self, message_id: u64) -> StoreResult<Option<Message>>;
    /// Replace a message's text and/or attachments (`None` keeps the stored one), bumping
    /// its version.
    async fn edit_message(
        &self,
        message_id: u64,
        text: Option<String>,
        attachments: Option<String>,
        now_us: i64,
    ) -> StoreResult<Message>;
    /// Turn a message into a tombstone: content gone, `deleted` set.
    async fn delete_message(&self, message_id: u64, now_us: i64) -> StoreResult<Message>;
    async fn list_messages(&self, group: GroupId, query: MessageQuery) -> StoreResult<MessagePage>;
}

#[async_trait]
pub trait AttachmentStore: Send + Sync {
    async fn insert_attachment(&self, attachment: Attachment) -> StoreResult<Attachment>;
    async fn attachment(&self, item_id: u64) -> StoreResult<Option<Attachment>>;
    async fn set_attachment_state(&self, item_id: u64, state: AttachmentState) -> StoreResult<()>;
    /// Record that a message carries these attachments (which grants its group read access).
    async fn link_attachments(
        &self,
        message_id: u64,
        group: GroupId,
        item_ids: &[u64],
    ) -> StoreResult<()>;
    /// Whether `uin` occupies a conversation where a message carries the attachment.
    async fn attachment_visible_to(&self, item_id: u64, uin: Uin) -> StoreResult<bool>;
    /// Stored attachments all of whose messages were created before `cutoff_us`.
    async fn stale_attachments(&self, cutoff_us: i64) -> StoreResult<Vec<StaleAttachment>>;
    /// Point an attachment at new content (compression), keeping its id; renamed to
    /// `filename`.
    async fn replace_content(
        &self,
        item_id: u64,
        sha256: String,
        size: u64,
        mimetype: String,
        filename: String,
    ) -> StoreResult<()>;
    /// Attachments with a file of at least `min_size` bytes, oldest first.
    async fn attachments_at_least(&self, min_size: u64) -> StoreResult<Vec<Attachment>>;
    /// Whether any attachment other than `except` still needs this blob.
    async fn blob_in_use(&self, sha256: &str, except: u64) -> StoreResult<bool>;
}

/// The edge-to-hub sync's storage (both roles; see [`crate::hub`]). Keys are stored as
/// their SHA-256 only.
#[async_trait]
pub trait HubStore: Send + Sync {
    /// Register a key for a box, creating the box; `replace` first removes its other keys.
    async fn hub_add_key(
        &self,
        boxid: &str,
        token_hash: [u8; 32],
        replace: bool,
        now_us: i64,
    ) -> StoreResult<()>;
    /// The box's key hashes, newest first (empty for an unknown box).
    async fn hub_keys(&self, boxid: &str) -> StoreResult<Vec<[u8; 32]>>;
    /// Remove every key of a box; `false` if the box is unknown.
    async fn hub_remove_keys(&self, boxid: &str) -> StoreResult<bool>;
    async fn hub_box(&self, boxid: &str) -> StoreResult<Option<HubBox>>;
    async fn hub_boxes(&self) -> StoreResult<Vec<HubBox>>;
    /// Forget a box: its roster, keys, pending batch and settings (its conversations and
    /// messages stay); `false` if it was unknown.
    async fn hub_remove_box(&self, boxid: &str) -> StoreResult<bool>;
    /// Replace the box's roster and the teachers' emails it names, in one write.
    async fn hub_set_roster(
        &self,
        boxid: &str,
        roster: Json,
        key_hint: String,
        siteip: String,
        teachers: Vec<(String, String)>,
        now_us: i64,
    ) -> StoreResult<()>;
    /// The teacher (hub login) with this email, from any box's roster.
    async fn hub_teacher_by_email(&self, email: &str) -> StoreResult<Option<String>>;
    async fn hub_link(&self, kind: HubLinkKind, key: &str) -> StoreResult<Option<u64>>;
    /// Record a link; an existing one is kept (`false`), but for [`HubLinkKind::EdgeMark`],
    /// which is replaced.
    async fn hub_set_link(&self, kind: HubLinkKind, key: &str, id: u64) -> StoreResult<bool>;
    /// Give an attachment to a new owner, as stored (the student whose message carries it).
    async fn hub_claim_attachment(&self, item_id: u64, owner: Uin) -> StoreResult<()>;
    /// Count a conversation as the box's (kept if it is already).
    async fn hub_add_group(&self, boxid: &str, group: GroupId) -> StoreResult<()>;
    async fn hub_groups(&self, boxid: &str) -> StoreResult<Vec<HubGroup>>;
    /// In one write: add `items` to the box's pending batch, move its conversations'
    /// marks, remember that the batch is fetched as `since`, and set its sync time.
    async fn hub_prepare_batch(
        &self,
        boxid: &str,
        since: i64,
        items: Vec<HubBatchItem>,
        marks: Vec<HubGroup>,
        now_secs: i64,
    ) -> StoreResult<()>;
    /// Hand out the box's pending batch if it was prepared as `since` (else nothing): its
    /// items not yet handed, each then kept, marked as handed as `since`, until
    /// [`HubStore::hub_confirm_batch`].
    async fn hub_take_batch(&self, boxid: &str, since: i64) -> StoreResult<Vec<HubBatchItem>>;
    /// Before a batch is prepared: drop the box's handed items that the edge has stored
    /// (handed as a `since` at most `stored`; every handed item when `stored` is `None`,
    /// the original edge's way) and put the others back to be handed again.
    async fn hub_confirm_batch(&self, boxid: &str, stored: Option<i64>) -> StoreResult<()>;
    async fn hub_add_logs(
        &self,
        boxid: &str,
        kind: &str,
        items: Vec<Json>,
        now_us: i64,
    ) -> StoreResult<()>;
    /// The box's logs, oldest first, at most `limit`.
    async fn hub_logs(&self, boxid: &str, limit: usize) -> StoreResult<Vec<HubLog>>;
    /// Queue a setting for a box (the edge: `boxid` empty, its own received settings).
    async fn hub_queue_setting(
        &self,
        boxid: &str,
        key: &str,
        value: &str,
        now_secs: i64,
    ) -> StoreResult<HubSetting>;
    async fn hub_settings(&self, boxid: &str) -> StoreResult<Vec<HubSetting>>;
    /// Remove one setting of the box; `false` if it has none with that id.
    async fn hub_delete_setting(&self, boxid: &str, id: u64) -> StoreResult<bool>;
    /// The hub administrator flag of an account.
    async fn set_account_admin(&self, uin: Uin, admin: bool) -> StoreResult<()>;
    async fn account_is_admin(&self, uin: Uin) -> StoreResult<bool>;
}

/// The durable push outbox. Entries are written with what they are about (a message's
/// entry by [`MessageStore::append_message`], from `NewMessage::push_to`, in the same
/// write), turned into per-device deliveries by the core, and those are kept until the
/// worker reports them sent, dead or too old: a crash at any point loses nothing.
///
/// Several nodes may drain one outbox: an entry is expanded once (whoever removes it
/// inserts its deliveries), and a delivery is sent by the node that claimed it, until the
/// claim's lease runs out (then another node, or the same one restarted, may take it).
/// Delivery ids are never reused, so an outcome recorded late finds its own delivery or
/// nothing.
#[async_trait]
pub trait PushStore: Send + Sync {
    /// Those of `uins` who may hold a device token. A superset is allowed (a user who
    /// unregistered its last token may still be listed); it is read on every post, so
    /// backends answer it from memory.
    async fn token_holders(&self, uins: Vec<Uin>) -> StoreResult<Vec<Uin>>;
    /// Add an entry about something stored by another write (a call).
    async fn enqueue_push(&self, entry: PushEntry) -> StoreResult<()>;
    /// The oldest entries not yet turned into deliveries, at most `limit`.
    async fn push_entries(&self, limit: usize) -> StoreResult<Vec<PushEntry>>;
    /// Replace an entry by its deliveries in one write; with `cancel_call`, deliveries
    /// of that call still queued (claimed or not) are dropped first (it has ended). An
    /// entry already replaced (by another node) is left alone: its deliveries are not
    /// inserted twice.
    async fn expand_push(
        &self,
        entry_id: u64,
        deliveries: Vec<PushDelivery>,
        cancel_call: Option<u64>,
    ) -> StoreResult<()>;
    /// Claim for `node` up to `limit` deliveries of `token_types` due at `now_us`
    /// (soonest first), none claimed by another node at the same time: each one's
    /// `next_at` becomes `lease_until_us`, so no node takes it again before then unless
    /// its outcome is recorded first.
    async fn claim_pushes(
        &self,
        node: &str,
        token_types: &[u8],
        now_us: i64,
        lease_until_us: i64,
        limit: usize,
    ) -> StoreResult<Vec<PushDelivery>>;
    /// Make what `node` had claimed due at `now_us` again (it restarted: those requests
    /// ended with the process that made them).
    async fn release_push_claims(&self, node: &str, now_us: i64) -> StoreResult<()>;
    /// When the next delivery is due (or its lease runs out), if any is queued.
    async fn next_push_at(&self) -> StoreResult<Option<i64>>;
    /// A delivery is finished (sent, refused for good, or too old).
    async fn push_done(&self, id: u64) -> StoreResult<()>;
    /// A delivery failed for now: try again at `next_at_us` (its claim ends).
    async fn push_retry(&self, id: u64, attempts: u32, next_at_us: i64) -> StoreResult<()>;
    /// A provider said the token is dead: remove it and every delivery queued for it.
    async fn remove_dead_token(&self, token: &str) -> StoreResult<()>;
}

/// Everything the core needs from storage, implemented by each backend.
#[async_trait]
pub trait Storage:
    AccountStore
    + TokenStore
    + ConversationStore
    + MessageStore
    + DeviceTokenStore
    + CallStore
    + AttachmentStore
    + HubStore
    + PushStore
{
    /// Finish pending writes and close; called once at shutdown.
    async fn flush(&self) -> StoreResult<()>;

    /// Whether other processes (other nodes) write this database while this one runs.
    /// The core then keeps no cache that is right only for a sole writer (profiles,
    /// `service/profiles.rs`). `false`: this process is its only writer.
    fn shared(&self) -> bool {
        false
    }
}
