//! The edge-to-hub sync, both roles: what the hub does with what a box sends (keys,
//! rosters turned into accounts and conversations, edge messages posted through the one
//! posting path, attachments, hub→edge batches, logs, settings), and the few steps of the
//! edge role that touch the core (storing what the hub sent). The wire forms live in
//! `confer-door-chathost` (hub) and the binary's `sync` module (edge).
//!
//! Mapping (decided here, documented in ARCHITECTURE.md): teachers are hub accounts named
//! by their username, shared by every box; students are `<username>.<boxid>`; each
//! student has a private conversation with each teacher of each course, opened by the
//! teacher with a welcome message (type 5, never sent back to the box); each course has
//! a group conversation, its class chat. Accounts the hub creates have no password
//! (nobody can log in as them until an administrator sets one with `confer user
//! passwd`).

use std::collections::BTreeSet;

use crate::auth;
use crate::error::{CoreError, CoreResult};
use crate::event::Json;
use crate::hub::{
    HubBatchItem, HubBox, HubCourse, HubEdgeMessage, HubGroup, HubIncoming, HubLinkKind, HubLog,
    HubPosted, HubSetting,
};
use crate::ids::Uin;
use crate::model::{
    now_us, Account, Attachment, AttachmentState, Conversation, ConversationKind, Message,
    NewAccount, NewMessage, Principal,
};
use crate::store::StoreError;

use super::Core;

/// A stored password hash no password matches: accounts the hub creates.
const NO_PASSWORD: &str = "!";
/// The most items one `messageStatus` adds to a box's batch; the rest follow next time.
pub const MAX_BATCH: usize = 5_000;
/// The message type of a welcome message ("first message").
const WELCOME_KIND: u32 = 5;
/// The longest box id, username, key or setting accepted.
const MAX_NAME: usize = 256;

/// Whether a box id, username or course id can be used as one: not empty, not too long,
/// no control characters, and none of the separators the hub's keys use.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && !name.chars().any(|c| c.is_control() || c == '|' || c == '/')
}

fn check_name(name: &str, what: &str) -> CoreResult<()> {
    if valid_name(name) {
        Ok(())
    } else {
        Err(CoreError::InvalidValue(format!("{what}: {name:?}")))
    }
}

/// The hub login of a box's student.
pub fn student_login(username: &str, boxid: &str) -> String {
    format!("{username}.{boxid}")
}

/// The Chat API message type of an attachment kind.
pub fn attachment_kind(kind: &str) -> u32 {
    match kind {
        "photo" | "image" => 2,
        "audio" => 3,
        "video" => 4,
        _ => 12,
    }
}

/// The attachment kind (`photo`, `audio`, `video`, `document`) of a MIME type.
pub fn kind_of_mimetype(mimetype: &str) -> &'static str {
    if mimetype.starts_with("image/") {
        "photo"
    } else if mimetype.starts_with("audio/") {
        "audio"
    } else if mimetype.starts_with("video/") {
        "video"
    } else {
        "document"
    }
}

fn principal(account: &Account) -> Principal {
    Principal {
        uin: account.uin,
        login: account.login.clone(),
        admin: false,
    }
}

fn now_secs() -> i64 {
    now_us() / 1_000_000
}

impl Core {
    /// Whether `token` is a key of `boxid`. With `trust_on_first_use`, an unknown box is
    /// registered with it (a token shorter than 8 characters is replaced by a new one,
    /// queued to the box as the setting `authorization`).
    pub async fn hub_check_key(
        &self,
        boxid: &str,
        token: &str,
        trust_on_first_use: bool,
    ) -> CoreResult<bool> {
        if !valid_name(boxid) || token.is_empty() {
            return Ok(false);
        }
        let keys = self.storage.hub_keys(boxid).await?;
        let given = auth::token_hash(token);
        if keys.iter().any(|k| auth::constant_time_eq(k, &given)) {
            return Ok(true);
        }
        let unknown = keys.is_empty() && self.storage.hub_box(boxid).await?.is_none();
        if !(trust_on_first_use && unknown) {
            return Ok(false);
        }
        self.storage
            .hub_add_key(boxid, given, false, now_us())
            .await?;
        if token.len() < 8 {
            let fresh = uuid::Uuid::new_v4().to_string();
            self.hub_add_key(boxid, &fresh, false, "authorization")
                .await?;
        }
        tracing::info!(boxid, "box registered on first use");
        Ok(true)
    }

    /// Register `token` as a key of `boxid` (creating the box); `replace` removes its
    /// other keys first. With a `setting` key, the token is also queued to the box as that
    /// setting, so it learns its new key on its next run.
    pub async fn hub_add_key(
        &self,
        boxid: &str,
        token: &str,
        replace: bool,
        setting: &str,
    ) -> CoreResult<()> {
        check_name(boxid, "boxid")?;
        if token.is_empty() || token.len() > MAX_NAME || token.chars().any(char::is_control) {
            return Err(CoreError::InvalidValue("token".into()));
        }
        self.storage
            .hub_add_key(boxid, auth::token_hash(token), replace, now_us())
            .await?;
        if !setting.is_empty() {
            self.storage
                .hub_queue_setting(boxid, setting, token, now_secs())
                .await?;
        }
        Ok(())
    }

    pub async fn hub_remove_keys(&self, boxid: &str) -> CoreResult<bool> {
        Ok(self.storage.hub_remove_keys(boxid).await?)
    }

    pub async fn hub_box(&self, boxid: &str) -> CoreResult<Option<HubBox>> {
        Ok(self.storage.hub_box(boxid).await?)
    }

    pub async fn hub_boxes(&self) -> CoreResult<Vec<HubBox>> {
        Ok(self.storage.hub_boxes().await?)
    }

    pub async fn hub_remove_box(&self, boxid: &str) -> CoreResult<bool> {
        Ok(self.storage.hub_remove_box(boxid).await?)
    }

    /// Whether `who` may use the hub's admin API: the configured admin, or an account
    /// with the admin flag.
    pub async fn is_hub_admin(&self, who: &Principal) -> CoreResult<bool> {
        Ok(who.admin || self.storage.account_is_admin(who.uin).await?)
    }

    /// Set an account's administrator flag (`confer user add --admin`).
    pub async fn set_account_admin(&self, login: &str, admin: bool) -> CoreResult<()> {
        let account = self
            .storage
            .account_by_login(login)
            .await?
            .ok_or(CoreError::UserNotFound)?;
        Ok(self.storage.set_account_admin(account.uin, admin).await?)
    }

    /// The account `login`, created without a password when missing.
    pub(crate) async fn ensure_account(
        &self,
        login: &str,
        name: Option<String>,
    ) -> CoreResult<Account> {
        if let Some(a) = self.storage.account_by_login(login).await? {
            return Ok(a);
        }
        let new = NewAccount {
            uin: None,
            login: login.to_string(),
            name,
            password_hash: NO_PASSWORD.into(),
            created_at_us: now_us(),
        };
        match self.storage.create_account(new).await {
            Ok(a) => Ok(a),
            // Created meanwhile by another request: that one.
            Err(StoreError::Conflict(_)) => self
                .storage
                .account_by_login(login)
                .await?
                .ok_or(CoreError::UserNotFound),
            Err(e) => Err(e.into()),
        }
    }

    /// The private conversation of a student and a teacher, opened by the teacher with a
    /// welcome message when it is new; counted as the box's.
    async fn ensure_private(
        &self,
        boxid: &str,
        student: &Account,
        teacher: &Account,
        course: Option<&str>,
    ) -> CoreResult<Conversation> {
        let (conv, created) = self
            .create_group(
                &principal(teacher),
                ConversationKind::Private,
                None,
                None,
                None,
                BTreeSet::from([student.uin]),
            )
            .await?;
        self.storage.hub_add_group(boxid, conv.group_id).await?;
        if created {
            let name = student.name.as_deref().unwrap_or(&student.login);
            let text = match course {
                Some(course) => format!(
                    "Welcome, {name}: this is your conversation with {} about {course} \
                     (box {boxid}).",
                    teacher.name.as_deref().unwrap_or(&teacher.login)
                ),
                None => format!("Welcome, {name} (box {boxid})."),
            };
            let welcome = NewMessage {
                group_id: conv.group_id,
                sender: teacher.uin,
                sender_login: teacher.login.clone(),
                session_id: None,
                kind: WELCOME_KIND,
                text: Some(text),
                attachments: None,
                body: None,
                nonce: Some(format!("welcome:{boxid}:{}", student.login)),
                version: 0,
                created_at_us: now_us(),
                files: Vec::new(),
                push_to: Vec::new(),
            };
            self.store_message(&conv, &principal(teacher), welcome, &[])
                .await?;
        }
        Ok(conv)
    }

    /// Take a box's roster: make sure every teacher and student has an account, every
    /// student a private conversation with each teacher of the course, and every course
    /// its class chat; then store the roster (it replaces the box's previous one). Safe
    /// to repeat: what exists is kept. When a step fails the roster is not stored, and
    /// posting it again finishes the work.
    pub async fn hub_apply_roster(
        &self,
        boxid: &str,
        courses: Vec<HubCourse>,
        roster: Json,
        key_hint: String,
        siteip: String,
    ) -> CoreResult<()> {
        check_name(boxid, "boxid")?;
        for course in &courses {
            check_name(&course.id, "course id")?;
            for p in course.teachers.iter().chain(&course.students) {
                check_name(&p.username, "username")?;
            }
        }
        let mut teacher_emails = Vec::new();
        for course in &courses {
            let mut teachers = Vec::new();
            for t in &course.teachers {
                teachers.push(self.ensure_account(&t.username, t.display_name()).await?);
                if let Some(email) = t.email.as_deref().filter(|e| !e.is_empty()) {
                    teacher_emails.push((t.username.clone(), email.to_string()));
                }
            }
            let mut students = Vec::new();
            for s in &course.students {
                let login = student_login(&s.username, boxid);
                students.push(self.ensure_account(&login, s.display_name()).await?);
            }
            for s in &students {
                for t in &teachers {
                    self.ensure_private(boxid, s, t, Some(&course.name)).await?;
                }
            }
            self.ensure_class_chat(boxid, course, &teachers, &students)
                .await?;
        }
        self.storage
            .hub_set_roster(boxid, roster, key_hint, siteip, teacher_emails, now_us())
            .await?;
        Ok(())
    }

    async fn ensure_class_chat(
        &self,
        boxid: &str,
        course: &HubCourse,
        teachers: &[Account],
        students: &[Account],
    ) -> CoreResult<()> {
        let members: BTreeSet<Uin> = teachers.iter().chain(students).map(|a| a.uin).collect();
        let Some(owner) = teachers.first().or(students.first()) else {
            return Ok(());
        };
        let key = format!("{boxid}|{}", course.id);
        let existing = match self.storage.hub_link(HubLinkKind::Course, &key).await? {
            Some(id) => self
                .storage
                .conversation(crate::ids::GroupId(id))
                .await?
                .filter(|c| !c.destroyed),
            None => None,
        };
        let conv = match existing {
            Some(conv) => {
                for uin in members.difference(&conv.occupants) {
                    self.storage
                        .add_occupant(conv.group_id, *uin, now_us())
                        .await?;
                }
                conv
            }
            None => {
                let (conv, _) = self
                    .create_group(
                        &principal(owner),
                        ConversationKind::Group,
                        Some(course.name.clone()),
                        None,
                        None,
                        members,
                    )
                    .await?;
                self.storage
                    .hub_set_link(HubLinkKind::Course, &key, conv.group_id.0)
                    .await?;
                conv
            }
        };
        self.storage.hub_add_group(boxid, conv.group_id).await?;
        Ok(())
    }

    /// The attachment a box uploaded as `id`, if it did.
    pub async fn hub_attachment(&self, boxid: &str, id: &str) -> CoreResult<Option<Attachment>> {
        let key = format!("{boxid}-{id}");
        match self
            .storage
            .hub_link(HubLinkKind::EdgeAttachment, &key)
            .await?
        {
            Some(item) => Ok(self.storage.attachment(item).await?),
            None => Ok(None),
        }
    }

    /// Record a box's upload, whose bytes are in the blob store under `sha256`; one
    /// already stored under `<boxid>-<id>` is kept (`false`).
    pub async fn hub_register_attachment(
        &self,
        boxid: &str,
        id: &str,
        sha256: String,
        size: u64,
        mimetype: String,
        filename: String,
    ) -> CoreResult<bool> {
        check_name(boxid, "boxid")?;
        check_name(id, "id")?;
        if self.hub_attachment(boxid, id).await?.is_some() {
            return Ok(false);
        }
        // Held by the hub until a message of the box carries it (then its sender's).
        let hub = super::admin_principal();
        let stored = self
            .register_upload(&hub, sha256, size, mimetype, filename)
            .await?;
        self.storage
            .set_attachment_state(stored.item_id, AttachmentState::Stored)
            .await?;
        Ok(self
            .storage
            .hub_set_link(
                HubLinkKind::EdgeAttachment,
                &format!("{boxid}-{id}"),
                stored.item_id,
            )
            .await?)
    }

    /// Store one edge→hub message of a box (see [`HubPosted`]). Idempotent on
    /// `<boxid>-<id>`: the message's nonce is that key too, so a post that died between
    /// storing and recording it is recognized on the retry.
    pub async fn hub_post_edge_message(
        &self,
        boxid: &str,
        m: HubEdgeMessage,
    ) -> CoreResult<HubPosted> {
        check_name(boxid, "boxid")?;
        check_name(&m.id, "id")?;
        check_name(&m.sender_username, "sender.username")?;
        let key = format!("{boxid}-{}", m.id);
        if self
            .storage
            .hub_link(HubLinkKind::EdgeMessage, &key)
            .await?
            .is_some()
        {
            return Ok(HubPosted::Duplicate);
        }
        let Some(teacher) = self
            .storage
            .hub_teacher_by_email(&m.recipient_email)
            .await?
        else {
            return Ok(HubPosted::Skipped);
        };
        let Some(teacher) = self.storage.account_by_login(&teacher).await? else {
            return Ok(HubPosted::Skipped);
        };
        let student = self
            .ensure_account(&student_login(&m.sender_username, boxid), None)
            .await?;
        let mut item_ids = Vec::new();
        let mut kind = 0;
        if let Some((id, att_kind)) = &m.attachment {
            let Some(a) = self.hub_attachment(boxid, id).await? else {
                return Ok(HubPosted::MissingAttachment);
            };
            if a.owner != student.uin {
                self.storage
                    .hub_claim_attachment(a.item_id, student.uin)
                    .await?;
            }
            item_ids.push(a.item_id);
            kind = attachment_kind(att_kind);
        }
        let conv = self.ensure_private(boxid, &student, &teacher, None).await?;
        let text = m.text.filter(|t| !t.trim().is_empty());
        let new = NewMessage {
            group_id: conv.group_id,
            sender: student.uin,
            sender_login: student.login.clone(),
            session_id: None,
            kind,
            text,
            attachments: m.attachments_text,
            body: None,
            nonce: Some(key.clone()),
            version: 0,
            created_at_us: now_us(),
            files: Vec::new(),
            push_to: Vec::new(),
        };
        let (stored, _) = self
            .store_message(&conv, &principal(&student), new, &item_ids)
            .await?;
        self.storage
            .hub_set_link(HubLinkKind::EdgeMessage, &key, stored.message_id)
            .await?;
        Ok(HubPosted::Stored)
    }

    /// `messageStatus`: the box's last sync time (1 if never), after adding to its batch
    /// every message written since to its students by someone else, oldest first per
    /// conversation, and moving its sync time to now (past the answered time, so each
    /// batch is handed as a `since` of its own). Items not yet fetched stay in the
    /// batch, which holds at most [`MAX_BATCH`] items; the rest come next time.
    ///
    /// `stored` (confer's extension, `?stored=`): the `since` of the last batch the edge
    /// stored. Items handed as a later `since` (a batch lost on the way) are handed
    /// again; the others are done with. Without it (the original edge), every item
    /// handed before is done with: a batch is handed once.
    pub async fn hub_prepare_batch(&self, boxid: &str, stored: Option<i64>) -> CoreResult<i64> {
        self.storage.hub_confirm_batch(boxid, stored).await?;
        let known = self.storage.hub_box(boxid).await?;
        let since = match &known {
            Some(b) if b.last_sync > 0 => b.last_sync,
            _ => 1,
        };
        let room = MAX_BATCH.saturating_sub(known.map_or(0, |b| b.pending));
        let suffix = format!(".{boxid}");
        let mut items = Vec::new();
        let mut marks = Vec::new();
        'groups: for group in self.storage.hub_groups(boxid).await? {
            let Some(conv) = self.storage.conversation(group.group_id).await? else {
                continue;
            };
            let mut students = Vec::new();
            for uin in &conv.occupants {
                if let Some(a) = self.storage.account_by_uin(*uin).await? {
                    if let Some(name) = a.login.strip_suffix(&suffix) {
                        students.push(name.to_string());
                    }
                }
            }
            let mut mark = group.handed_seq;
            loop {
                let page = self
                    .storage
                    .messages_after(
                        group.group_id,
                        mark,
                        self.settings.max_list,
                        self.settings.max_list_bytes,
                    )
                    .await?;
                for m in &page.messages {
                    if items.len() + students.len() > room {
                        marks.push(HubGroup {
                            group_id: group.group_id,
                            handed_seq: mark,
                        });
                        break 'groups;
                    }
                    mark = m.seq;
                    if m.deleted || m.kind == WELCOME_KIND || m.sender_login.ends_with(&suffix) {
                        continue;
                    }
                    for s in &students {
                        items.push(HubBatchItem {
                            message_id: m.message_id,
                            recipient: s.clone(),
                        });
                    }
                }
                if !page.more || page.messages.is_empty() {
                    break;
                }
            }
            marks.push(HubGroup {
                group_id: group.group_id,
                handed_seq: mark,
            });
        }
        self.storage
            .hub_prepare_batch(boxid, since, items, marks, now_secs().max(since + 1))
            .await?;
        Ok(since)
    }

    /// `GET /messages/:since`: the batch prepared as `since`, once (its items are kept
    /// until the next `messageStatus` says whether the edge stored them); each item with its
    /// message (items whose message is gone are left out).
    pub async fn hub_take_batch(
        &self,
        boxid: &str,
        since: i64,
    ) -> CoreResult<Vec<(HubBatchItem, Message)>> {
        let mut out = Vec::new();
        for item in self.storage.hub_take_batch(boxid, since).await? {
            if let Some(m) = self.storage.message(item.message_id).await? {
                out.push((item, m));
            }
        }
        Ok(out)
    }

    /// A file the box may download: one a message in one of its conversations carries.
    pub async fn hub_box_file(
        &self,
        boxid: &str,
        message_id: u64,
        item_id: u64,
    ) -> CoreResult<Attachment> {
        let message = self
            .storage
            .message(message_id)
            .await?
            .ok_or(CoreError::AttachmentNotFound)?;
        let groups = self.storage.hub_groups(boxid).await?;
        let ok = groups.iter().any(|g| g.group_id == message.group_id)
            && message.files.iter().any(|f| f.item_id == item_id);
        if !ok {
            return Err(CoreError::AttachmentNotFound);
        }
        let a = self.attachment_for_admin(item_id).await?;
        if a.state == AttachmentState::Missing {
            return Err(CoreError::AttachmentGone);
        }
        Ok(a)
    }

    pub async fn hub_add_logs(&self, boxid: &str, kind: &str, items: Vec<Json>) -> CoreResult<()> {
        Ok(self
            .storage
            .hub_add_logs(boxid, kind, items, now_us())
            .await?)
    }

    pub async fn hub_logs(&self, boxid: &str) -> CoreResult<Vec<HubLog>> {
        Ok(self
            .storage
            .hub_logs(boxid, self.settings.max_list * 10)
            .await?)
    }

    /// Queue a setting for a box (an empty `boxid`: the edge's own received settings).
    pub async fn hub_queue_setting(
        &self,
        boxid: &str,
        key: &str,
        value: &str,
    ) -> CoreResult<HubSetting> {
        if key.is_empty() || key.len() > MAX_NAME || value.len() > 64 * 1024 {
            return Err(CoreError::InvalidValue("key".into()));
        }
        Ok(self
            .storage
            .hub_queue_setting(boxid, key, value, now_secs())
            .await?)
    }

    pub async fn hub_settings(&self, boxid: &str) -> CoreResult<Vec<HubSetting>> {
        Ok(self.storage.hub_settings(boxid).await?)
    }

    pub async fn hub_delete_setting(&self, boxid: &str, id: u64) -> CoreResult<bool> {
        Ok(self.storage.hub_delete_setting(boxid, id).await?)
    }

    pub async fn hub_link(&self, kind: HubLinkKind, key: &str) -> CoreResult<Option<u64>> {
        Ok(self.storage.hub_link(kind, key).await?)
    }

    pub async fn hub_set_link(&self, kind: HubLinkKind, key: &str, id: u64) -> CoreResult<bool> {
        Ok(self.storage.hub_set_link(kind, key, id).await?)
    }

    /// Edge: store a message the hub sent, from `sender` (created when missing) to the
    /// local `recipient`, in their private conversation, through the one posting path;
    /// idempotent on the hub's id (its nonce). Returns `false` if it was stored before.
    pub async fn edge_store_from_hub(&self, m: HubIncoming) -> CoreResult<bool> {
        let HubIncoming {
            hub_id,
            sender,
            recipient,
            text,
            attachments,
            kind,
            item_ids,
        } = m;
        let (hub_id, recipient, item_ids) = (hub_id.as_str(), recipient.as_str(), &item_ids[..]);
        check_name(hub_id, "id")?;
        check_name(&sender.username, "sender.username")?;
        if self.hub_link(HubLinkKind::FromHub, hub_id).await?.is_some() {
            return Ok(false);
        }
        let recipient = self
            .storage
            .account_by_login(recipient)
            .await?
            .ok_or(CoreError::UserNotFound)?;
        let from = self
            .ensure_account(&sender.username, sender.display_name())
            .await?;
        for id in item_ids {
            self.storage.hub_claim_attachment(*id, from.uin).await?;
        }
        let (conv, _) = self
            .create_group(
                &principal(&from),
                ConversationKind::Private,
                None,
                None,
                None,
                BTreeSet::from([recipient.uin]),
            )
            .await?;
        let new = NewMessage {
            group_id: conv.group_id,
            sender: from.uin,
            sender_login: from.login.clone(),
            session_id: None,
            kind,
            text,
            attachments,
            body: None,
            nonce: Some(format!("hub:{hub_id}")),
            version: 0,
            created_at_us: now_us(),
            files: Vec::new(),
            push_to: Vec::new(),
        };
        let (stored, duplicate) = self
            .store_message(&conv, &principal(&from), new, item_ids)
            .await?;
        self.hub_set_link(HubLinkKind::FromHub, hub_id, stored.message_id)
            .await?;
        Ok(!duplicate)
    }

    /// Edge: record a file downloaded from the hub (its bytes already in the blob
    /// store), held by the admin until its message claims it.
    pub async fn edge_register_download(
        &self,
        sha256: String,
        size: u64,
        mimetype: String,
        filename: String,
    ) -> CoreResult<Attachment> {
        let stored = self
            .register_upload(&super::admin_principal(), sha256, size, mimetype, filename)
            .await?;
        self.storage
            .set_attachment_state(stored.item_id, AttachmentState::Stored)
            .await?;
        Ok(stored)
    }

    /// Edge: every chat group with its messages after `after_id` (by message id),
    /// for the edge's push (no access check: the binary's own tool).
    pub async fn edge_groups(&self) -> CoreResult<Vec<Conversation>> {
        Ok(self.storage.list_chat_groups().await?)
    }

    /// Edge: a group's messages after `after_seq`, oldest first (one page).
    pub async fn edge_messages_after(
        &self,
        group: crate::ids::GroupId,
        after_seq: u64,
    ) -> CoreResult<crate::model::MessagePage> {
        Ok(self
            .storage
            .messages_after(
                group,
                after_seq,
                self.settings.max_list,
                self.settings.max_list_bytes,
            )
            .await?)
    }

    /// Edge: an account by number (the tool's own reads).
    pub async fn edge_account(&self, uin: Uin) -> CoreResult<Option<Account>> {
        Ok(self.storage.account_by_uin(uin).await?)
    }
}
