//! `MessageStore` on PostgreSQL.
//!
//! Appends are written by this node's group-commit task (`appender.rs`), several to a
//! transaction; edits, deletes and listings are here.
//!
//! **Seqs without gaps across nodes:** an append locks its conversation's row and takes
//! `last_seq + 1` under the lock, which it holds until its commit. So appends to one
//! conversation from any number of nodes take turns: each gets the next seq, a
//! rolled-back append gives its seq back, and the message id (taken while the lock is
//! held) rises with the seq within the conversation, which listing by id bounds relies
//! on, as on SQLite.
//!
//! **Retries across nodes:** the nonce check runs under the same lock, through an index on
//! (group, sender, nonce), so a retry that reaches another node finds the original as
//! soon as it was acknowledged, and two copies of one retry take turns (the second finds
//! the first). Unlike SQLite's in-memory window, a nonce is recognized for as long as its
//! message exists (the newest message with it, should a migrated folder hold two).
//!
//! **Change numbers:** a message's id is its change number (`changes.rs`), taken from the
//! clock after the conversation's lock, so ids still rise with seqs within a conversation;
//! an edit or delete writes the number it takes into `rev`.

use async_trait::async_trait;
use confer_core::model::{Appended, Message, MessageFile, MessagePage, MessageQuery, NewMessage};
use confer_core::store::{MessageStore, StoreError, StoreResult};
use confer_core::{GroupId, Json, SessionId, Uin};
use tokio_postgres::{GenericClient, Row, Transaction};

use crate::changes::{lock_conversation, Clock};
use crate::{backend, from_sql_id, to_sql_id, PgStore};

pub(crate) const COLUMNS: &str =
    "message_id, group_id, seq, sender, sender_login, session_id, kind, text, \
     attachments, body, nonce, version, created_at, updated_at, deleted, files, \
     COALESCE(rev, message_id)";

pub(crate) fn message_row(row: &Row) -> Result<Message, tokio_postgres::Error> {
    Ok(Message {
        message_id: from_sql_id(row.try_get(0)?),
        group_id: GroupId(from_sql_id(row.try_get(1)?)),
        seq: from_sql_id(row.try_get(2)?),
        sender: Uin(from_sql_id(row.try_get(3)?)),
        sender_login: row.try_get(4)?,
        session_id: row.try_get::<_, Option<String>>(5)?.map(SessionId::new),
        kind: u32::try_from(row.try_get::<_, i64>(6)?).unwrap_or(0),
        text: row.try_get(7)?,
        attachments: row.try_get(8)?,
        // Stored bodies were validated as JSON by the door that received them.
        body: row
            .try_get::<_, Option<String>>(9)?
            .map(Json::from_validated),
        nonce: row.try_get(10)?,
        version: u32::try_from(row.try_get::<_, i64>(11)?).unwrap_or(0),
        created_at_us: row.try_get(12)?,
        updated_at_us: row.try_get(13)?,
        deleted: row.try_get(14)?,
        files: decode_files(row.try_get::<_, Option<String>>(15)?.as_deref()),
        change_seq: from_sql_id(row.try_get(16)?),
        // Receipts follow the members' marks; the core fills them in.
        receipts: Default::default(),
    })
}

/// A message's files as text, in the SQLite backend's form (so `confer migrate` copies
/// the column as it is): one line per file, `item_id TAB size TAB mimetype TAB filename`.
pub(crate) fn encode_files(files: &[MessageFile]) -> Option<String> {
    if files.is_empty() {
        return None;
    }
    let lines: Vec<String> = files
        .iter()
        .map(|f| {
            let clean = |s: &str| s.replace(['\t', '\n'], " ");
            format!(
                "{}\t{}\t{}\t{}",
                f.item_id,
                f.size,
                clean(&f.mimetype),
                clean(&f.filename)
            )
        })
        .collect();
    Some(lines.join("\n"))
}

/// The inverse of [`encode_files`]; a line that does not parse is left out.
fn decode_files(text: Option<&str>) -> Vec<MessageFile> {
    let Some(text) = text else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|line| {
            let mut parts = line.splitn(4, '\t');
            Some(MessageFile {
                item_id: parts.next()?.parse().ok()?,
                size: parts.next()?.parse().ok()?,
                mimetype: parts.next()?.to_string(),
                filename: parts.next()?.to_string(),
            })
        })
        .collect()
}

/// Rows of a listing into a page (see [`MessagePage::collect`]).
fn page(rows: &[Row], limit: usize, max_bytes: usize) -> StoreResult<MessagePage> {
    MessagePage::collect(rows.iter().map(message_row), limit, max_bytes).map_err(backend)
}

#[async_trait]
impl MessageStore for PgStore {
    async fn append_message(&self, new: NewMessage) -> StoreResult<Appended> {
        // Group commit: see `appender.rs`.
        self.appender().append(new).await
    }

    async fn messages_after(
        &self,
        group: GroupId,
        after_seq: u64,
        limit: usize,
        max_bytes: usize,
    ) -> StoreResult<MessagePage> {
        let group = to_sql_id(group.0)?;
        let after = i64::try_from(after_seq).unwrap_or(i64::MAX);
        // One row past the page tells whether there is more.
        let rows_wanted = i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX);
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM messages WHERE group_id = $1 AND seq > $2
                 ORDER BY seq LIMIT $3"
            ))
            .await
            .map_err(backend)?;
        let rows = client
            .query(&stmt, &[&group, &after, &rows_wanted])
            .await
            .map_err(backend)?;
        page(&rows, limit, max_bytes)
    }

    async fn message(&self, message_id: u64) -> StoreResult<Option<Message>> {
        let id = to_sql_id(message_id)?;
        let client = self.client().await?;
        by_id(&**client, id).await
    }

    async fn edit_message(
        &self,
        message_id: u64,
        text: Option<String>,
        attachments: Option<String>,
        now_us: i64,
    ) -> StoreResult<Message> {
        let id = to_sql_id(message_id)?;
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(backend)?;
        let mut clock = begin_message_change(&tx, id).await?;
        let row = tx
            .query_opt(
                &format!(
                    "UPDATE messages SET text = COALESCE($2, text),
                        attachments = COALESCE($3, attachments),
                        version = version + 1, updated_at = $4, rev = $5
                     WHERE message_id = $1 AND NOT deleted RETURNING {COLUMNS}"
                ),
                &[&id, &text, &attachments, &now_us, &clock.next()],
            )
            .await
            .map_err(backend)?
            .ok_or(StoreError::NotFound)?;
        let edited = message_row(&row).map_err(backend)?;
        clock.save(&tx).await?;
        tx.commit().await.map_err(backend)?;
        Ok(edited)
    }

    async fn delete_message(&self, message_id: u64, now_us: i64) -> StoreResult<Message> {
        let id = to_sql_id(message_id)?;
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(backend)?;
        let mut clock = begin_message_change(&tx, id).await?;
        let row = tx
            .query_opt(
                &format!(
                    "UPDATE messages SET text = NULL, attachments = NULL, body = NULL,
                        files = NULL, deleted = TRUE, updated_at = $2, rev = $3
                     WHERE message_id = $1 AND NOT deleted RETURNING {COLUMNS}"
                ),
                &[&id, &now_us, &clock.next()],
            )
            .await
            .map_err(backend)?
            .ok_or(StoreError::NotFound)?;
        let deleted = message_row(&row).map_err(backend)?;
        clock.save(&tx).await?;
        tx.commit().await.map_err(backend)?;
        Ok(deleted)
    }

    async fn list_messages(&self, group: GroupId, query: MessageQuery) -> StoreResult<MessagePage> {
        let group = to_sql_id(group.0)?;
        // One row past the page tells whether there is more.
        let limit = i64::try_from(query.limit.saturating_add(1)).unwrap_or(i64::MAX);
        let offset = i64::try_from(query.offset).unwrap_or(i64::MAX);
        let order = if query.oldest_first { "ASC" } else { "DESC" };
        let client = self.client().await?;
        if let Some(since) = query.changed_after {
            return changed_after(&**client, group, since, &query).await;
        }
        // The bounds are message ids; within a group ids and seqs rise together (see the
        // module doc), so each id bound is the seq of the last message at or below it.
        let mut low = i64::try_from(query.above_seq).unwrap_or(i64::MAX);
        if let Some(after) = query.after {
            low = low.max(seq_at_or_below(&**client, group, after).await?);
        }
        let high = match query.before {
            Some(0) => 0,
            Some(before) => seq_at_or_below(&**client, group, before - 1).await?,
            None => i64::MAX,
        };
        let rows = client
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM messages
                     WHERE group_id = $1 AND seq > $2 AND seq <= $3
                     ORDER BY seq {order} LIMIT $4 OFFSET $5"
                ),
                &[&group, &low, &high, &limit, &offset],
            )
            .await
            .map_err(backend)?;
        page(&rows, query.limit, query.max_bytes)
    }
}

/// Begin an edit or delete of message `id`: its conversation's row locked, then the
/// clock (`changes.rs`); `NotFound` if there is no such message.
async fn begin_message_change(tx: &Transaction<'_>, id: i64) -> StoreResult<Clock> {
    let group: i64 = tx
        .query_opt(
            "SELECT group_id FROM messages WHERE message_id = $1",
            &[&id],
        )
        .await
        .map_err(backend)?
        .ok_or(StoreError::NotFound)?
        .try_get(0)
        .map_err(backend)?;
    lock_conversation(tx, group).await?;
    Clock::lock(tx).await
}

/// Every message of `group` whose change number is above `since` and whose seq is above
/// `query.above_seq`, in change order, one page (as on SQLite): those posted after
/// `since` and never changed (by seq from the first one past `since`), and those changed
/// after `since` (the partial index of changed ones).
async fn changed_after<C: GenericClient + Sync>(
    client: &C,
    group: i64,
    since: u64,
    query: &MessageQuery,
) -> StoreResult<MessagePage> {
    let since_seq = seq_at_or_below(client, group, since).await?;
    let cleared = i64::try_from(query.above_seq).unwrap_or(i64::MAX);
    let low = since_seq.max(cleared);
    let since = i64::try_from(since).unwrap_or(i64::MAX);
    let limit = i64::try_from(query.limit.saturating_add(1)).unwrap_or(i64::MAX);
    let rows = client
        .query(
            &format!(
                "SELECT * FROM (
                     (SELECT {COLUMNS} FROM messages
                         WHERE group_id = $1 AND seq > $2 AND rev IS NULL ORDER BY seq LIMIT $5)
                     UNION ALL
                     (SELECT {COLUMNS} FROM messages
                         WHERE group_id = $1 AND rev > $3 AND seq > $4 ORDER BY rev LIMIT $5)
                 ) changed ORDER BY 17 LIMIT $5"
            ),
            &[&group, &low, &since, &cleared, &limit],
        )
        .await
        .map_err(backend)?;
    page(&rows, query.limit, query.max_bytes)
}

/// The seq of the group's last message whose id is at most `id` (0 if none): one query,
/// through the `(group_id, seq)` index, as ids rise with seqs within a group.
async fn seq_at_or_below<C: GenericClient + Sync>(
    client: &C,
    group: i64,
    id: u64,
) -> StoreResult<i64> {
    let id = i64::try_from(id).unwrap_or(i64::MAX);
    let row = client
        .query_one(
            "SELECT COALESCE(MAX(seq), 0) FROM messages WHERE group_id = $1 AND message_id <= $2",
            &[&group, &id],
        )
        .await
        .map_err(backend)?;
    row.try_get(0).map_err(backend)
}

async fn by_id<C: GenericClient + Sync>(client: &C, id: i64) -> StoreResult<Option<Message>> {
    let row = client
        .query_opt(
            &format!("SELECT {COLUMNS} FROM messages WHERE message_id = $1"),
            &[&id],
        )
        .await
        .map_err(backend)?;
    row.as_ref().map(message_row).transpose().map_err(backend)
}
