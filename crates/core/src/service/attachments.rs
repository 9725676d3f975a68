//! Attachments: uploaded files' metadata and who may read them. The bytes live in a blob
//! store outside the core (`confer-door-files`); the core decides.
//!
//! Rules: an upload is a draft only its owner sees; `add_file` (owner only) moves it into
//! the attachment store; a message may carry only its sender's own attachments, and from
//! then on every member of that conversation may read them. Anyone else is told the file
//! does not exist.

use crate::error::{CoreError, CoreResult};
use crate::ids::{GroupId, Uin};
use crate::model::{now_us, Attachment, AttachmentState, MessageFile, Principal, StaleAttachment};

use super::Core;

/// The longest file name kept.
const MAX_FILENAME: usize = 255;

impl Core {
    /// Record an upload whose bytes are already in the blob store under `sha256`.
    pub async fn register_upload(
        &self,
        caller: &Principal,
        sha256: String,
        size: u64,
        mimetype: String,
        filename: String,
    ) -> CoreResult<Attachment> {
        let filename: String = filename
            .chars()
            .filter(|c| !c.is_control() && *c != '/' && *c != '\\')
            .take(MAX_FILENAME)
            .collect();
        let filename = if filename.is_empty() || filename == "." || filename == ".." {
            "file".to_string()
        } else {
            filename
        };
        Ok(self
            .storage
            .insert_attachment(Attachment {
                item_id: 0,
                owner: caller.uin,
                sha256,
                size,
                mimetype,
                filename,
                state: AttachmentState::Draft,
                created_at_us: now_us(),
            })
            .await?)
    }

    /// Move the caller's own draft into the attachment store.
    pub async fn add_file(&self, caller: &Principal, item_id: u64) -> CoreResult<Attachment> {
        let attachment = self
            .storage
            .attachment(item_id)
            .await?
            .filter(|a| a.owner == caller.uin)
            .ok_or(CoreError::AttachmentNotFound)?;
        match attachment.state {
            AttachmentState::Draft => {
                self.storage
                    .set_attachment_state(item_id, AttachmentState::Stored)
                    .await?;
                Ok(Attachment {
                    state: AttachmentState::Stored,
                    ..attachment
                })
            }
            AttachmentState::Stored => Ok(attachment),
            AttachmentState::Missing => Err(CoreError::AttachmentGone),
        }
    }

    /// An attachment the caller may read: its owner, a member of a conversation where a
    /// message carries it, or the admin. A removed one is `AttachmentGone`.
    pub async fn readable_attachment(
        &self,
        caller: &Principal,
        item_id: u64,
    ) -> CoreResult<Attachment> {
        let attachment = self
            .storage
            .attachment(item_id)
            .await?
            .ok_or(CoreError::AttachmentNotFound)?;
        let allowed = caller.admin
            || attachment.owner == caller.uin
            || self
                .storage
                .attachment_visible_to(item_id, caller.uin)
                .await?;
        if !allowed {
            return Err(CoreError::AttachmentNotFound);
        }
        if attachment.state == AttachmentState::Missing {
            return Err(CoreError::AttachmentGone);
        }
        Ok(attachment)
    }

    /// The files a message of `sender` carries: every id must be an attachment of the
    /// sender that still has its file. Each id counts once, in the order given.
    pub(super) async fn own_attachments(
        &self,
        sender: Uin,
        item_ids: &[u64],
    ) -> CoreResult<Vec<MessageFile>> {
        let mut files: Vec<MessageFile> = Vec::with_capacity(item_ids.len());
        for id in item_ids {
            if files.iter().any(|f| f.item_id == *id) {
                continue;
            }
            match self.storage.attachment(*id).await? {
                Some(a) if a.owner == sender && a.state != AttachmentState::Missing => {
                    files.push(MessageFile {
                        item_id: a.item_id,
                        filename: a.filename,
                        mimetype: a.mimetype,
                        size: a.size,
                    })
                }
                _ => return Err(CoreError::AttachmentNotFound),
            }
        }
        Ok(files)
    }

    pub(super) async fn link_attachments(
        &self,
        message_id: u64,
        group: GroupId,
        item_ids: &[u64],
    ) -> CoreResult<()> {
        if !item_ids.is_empty() {
            self.storage
                .link_attachments(message_id, group, item_ids)
                .await?;
        }
        Ok(())
    }

    /// Attachments whose every message is older than `cutoff_us` (for clean-up).
    pub async fn stale_attachments(&self, cutoff_us: i64) -> CoreResult<Vec<StaleAttachment>> {
        Ok(self.storage.stale_attachments(cutoff_us).await?)
    }

    /// Mark an attachment's file as removed; its messages stay.
    pub async fn mark_attachment_missing(&self, item_id: u64) -> CoreResult<()> {
        Ok(self
            .storage
            .set_attachment_state(item_id, AttachmentState::Missing)
            .await?)
    }

    /// Point an attachment at new (compressed) content of another format, whose files end
    /// in `extension`: the attachment is renamed to match (`cat.png` → `cat.webp`), and the
    /// file server leads its former name there ([`crate::references::is_former_name`]).
    /// Returns the new name.
    pub async fn replace_attachment_content(
        &self,
        item_id: u64,
        sha256: String,
        size: u64,
        mimetype: String,
        extension: &str,
    ) -> CoreResult<String> {
        let current = self.attachment_for_admin(item_id).await?;
        let filename = crate::references::with_extension(&current.filename, extension);
        self.storage
            .replace_content(item_id, sha256, size, mimetype, filename.clone())
            .await?;
        Ok(filename)
    }

    /// Whether another attachment still needs this blob.
    pub async fn blob_in_use(&self, sha256: &str, except: u64) -> CoreResult<bool> {
        Ok(self.storage.blob_in_use(sha256, except).await?)
    }

    /// Attachments whose file is at least `min_size` bytes (for `compress --all`).
    pub async fn attachments_at_least(&self, min_size: u64) -> CoreResult<Vec<Attachment>> {
        Ok(self.storage.attachments_at_least(min_size).await?)
    }

    /// Look up an attachment without an access check (administrative tools).
    pub async fn attachment_for_admin(&self, item_id: u64) -> CoreResult<Attachment> {
        self.storage
            .attachment(item_id)
            .await?
            .ok_or(CoreError::AttachmentNotFound)
    }
}
