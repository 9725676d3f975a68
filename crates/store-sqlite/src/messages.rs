//! `MessageStore` on SQLite. The next `seq` is one past the group's highest, read from its
//! `(group_id, seq)` index by the one writer in the same transaction as the insert, so
//! sequences have no gaps.

use std::sync::Arc;

use async_trait::async_trait;
use confer_core::model::{
    Appended, Message, MessageFile, MessagePage, MessageQuery, NewMessage, PushEntry, PushKind,
};
use confer_core::store::{MessageStore, StoreError, StoreResult};
use confer_core::{GroupId, Json, SessionId, Uin};
use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::{backend, exec, one_row, query_row, to_sql_id, SqliteStore};

pub(crate) const COLUMNS: &str =
    "message_id, group_id, seq, sender, sender_login, session_id, kind, text, \
                       attachments, body, nonce, version, created_at, updated_at, deleted, files, \
                       COALESCE(rev, message_id)";

pub(crate) fn message_row(row: &Row<'_>) -> rusqlite::Result<Message> {
    Ok(Message {
        message_id: row.get::<_, i64>(0)? as u64,
        group_id: GroupId(row.get::<_, i64>(1)? as u64),
        seq: row.get::<_, i64>(2)? as u64,
        sender: Uin(row.get::<_, i64>(3)? as u64),
        sender_login: row.get(4)?,
        session_id: row.get::<_, Option<String>>(5)?.map(SessionId::new),
        kind: row.get::<_, i64>(6)? as u32,
        text: row.get(7)?,
        attachments: row.get(8)?,
        // Stored bodies were validated as JSON by the door that received them.
        body: row.get::<_, Option<String>>(9)?.map(Json::from_validated),
        nonce: row.get(10)?,
        version: row.get::<_, i64>(11)? as u32,
        created_at_us: row.get(12)?,
        updated_at_us: row.get(13)?,
        deleted: row.get::<_, i64>(14)? != 0,
        files: decode_files(row.get::<_, Option<String>>(15)?.as_deref()),
        receipts: Default::default(),
        change_seq: row.get::<_, i64>(16)? as u64,
    })
}

/// A message's files as text: one line per file, `item_id TAB size TAB mimetype TAB
/// filename` (file names and types hold no control characters: the core strips them from
/// names, and types are the server's own). `None` when there are none.
fn encode_files(files: &[MessageFile]) -> Option<String> {
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

#[async_trait]
impl MessageStore for SqliteStore {
    async fn append_message(&self, new: NewMessage) -> StoreResult<Appended> {
        let group = to_sql_id(new.group_id.0)?;
        let sender = to_sql_id(new.sender.0)?;
        let nonces = self.nonces.clone();
        let clock = self.clock.clone();
        // Unguarded: the insert is its one change, and undoes itself when it fails
        // (`Writer::write_unguarded`). (A post's "read up to here" is derived when unread
        // counts are read, `conversations.rs`.)
        self.write_unguarded(move |conn| {
            let lock = || nonces.lock().unwrap_or_else(|e| e.into_inner());
            let key = new.nonce.as_deref().map(|n| lock().key(group, sender, n));
            // A retry gets the original. The window's answer is confirmed against the row:
            // a hash collision, or an id left by a rolled-back write, is no duplicate.
            if let Some(id) = key.and_then(|k| lock().get(k)) {
                let id = i64::try_from(id).unwrap_or(i64::MAX);
                if let Some(existing) = by_id(conn, id).map_err(backend)? {
                    if existing.group_id == new.group_id
                        && existing.sender == new.sender
                        && existing.nonce == new.nonce
                    {
                        return Ok(Appended {
                            message: Arc::new(existing),
                            duplicate: true,
                        });
                    }
                }
            }
            // From the index leaf the insert writes anyway (a counter in the group's row
            // was one more thing to keep in step with the messages).
            let seq: i64 = query_row(
                conn,
                "SELECT COALESCE(MAX(seq), 0) + 1 FROM messages WHERE group_id = ?1",
                [group],
                |r| r.get(0),
            )
            .map_err(backend)?;
            // The id is the message's change number (`changes.rs`): ids still only rise.
            let message_id = clock.next();
            exec(
                conn,
                "INSERT INTO messages (group_id, seq, sender, sender_login, session_id, kind, text,
                    attachments, body, nonce, version, created_at, updated_at, files, message_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?12, ?13, ?14)",
                params![
                    group,
                    seq,
                    sender,
                    new.sender_login,
                    new.session_id.as_ref().map(|s| s.as_str()),
                    new.kind,
                    new.text,
                    new.attachments,
                    new.body.as_ref().map(|b| b.as_str()),
                    new.nonce,
                    new.version,
                    new.created_at_us,
                    encode_files(&new.files),
                    message_id,
                ],
            )
            .map_err(|e| match e {
                // The group's row is gone (the core checked it just before).
                rusqlite::Error::SqliteFailure(err, _)
                    if err.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY =>
                {
                    StoreError::NotFound
                }
                other => backend(other),
            })?;
            let message_id = message_id as u64;
            if !new.push_to.is_empty() {
                // The push outbox entry commits with the message or not at all.
                crate::push::insert_entry(
                    conn,
                    &PushEntry {
                        id: 0,
                        kind: PushKind::Message,
                        group_id: new.group_id,
                        ref_id: message_id,
                        sender: new.sender,
                        recipients: new.push_to.clone(),
                        created_at_us: new.created_at_us,
                    },
                )
                .map_err(backend)?;
            }
            if let Some(k) = key {
                lock().remember(k, message_id, new.created_at_us);
            }
            Ok(Appended {
                message: Arc::new(new.into_stored(message_id, seq as u64)),
                duplicate: false,
            })
        })
        .await
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
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM messages WHERE group_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3"
            ))?;
            let rows = stmt.query_map(params![group, after, rows_wanted], message_row)?;
            MessagePage::collect(rows, limit, max_bytes)
        })
        .await
    }

    async fn message(&self, message_id: u64) -> StoreResult<Option<Message>> {
        let id = to_sql_id(message_id)?;
        self.read(move |conn| by_id(conn, id)).await
    }

    async fn edit_message(
        &self,
        message_id: u64,
        text: Option<String>,
        attachments: Option<String>,
        now_us: i64,
    ) -> StoreResult<Message> {
        let id = to_sql_id(message_id)?;
        let clock = self.clock.clone();
        self.write(move |conn| {
            one_row(exec(
                conn,
                "UPDATE messages SET text = COALESCE(?2, text), attachments = COALESCE(?3, attachments),
                        version = version + 1, updated_at = ?4, rev = ?5
                     WHERE message_id = ?1 AND deleted = 0",
                params![id, text, attachments, now_us, clock.next()],
            ))?;
            by_id(conn, id)
                .map_err(backend)?
                .ok_or(StoreError::NotFound)
        })
        .await
    }

    async fn delete_message(&self, message_id: u64, now_us: i64) -> StoreResult<Message> {
        let id = to_sql_id(message_id)?;
        let clock = self.clock.clone();
        self.write(move |conn| {
            one_row(exec(
                conn,
                "UPDATE messages SET text = NULL, attachments = NULL, body = NULL, files = NULL, deleted = 1,
                        updated_at = ?2, rev = ?3
                     WHERE message_id = ?1 AND deleted = 0",
                params![id, now_us, clock.next()],
            ))?;
            by_id(conn, id)
                .map_err(backend)?
                .ok_or(StoreError::NotFound)
        })
        .await
    }

    async fn list_messages(&self, group: GroupId, query: MessageQuery) -> StoreResult<MessagePage> {
        let group = to_sql_id(group.0)?;
        // One row past the page tells whether there is more.
        let limit = i64::try_from(query.limit.saturating_add(1)).unwrap_or(i64::MAX);
        let offset = i64::try_from(query.offset).unwrap_or(i64::MAX);
        let order = if query.oldest_first { "ASC" } else { "DESC" };
        if let Some(since) = query.changed_after {
            return self
                .read(move |conn| changed_after(conn, group, since, &query))
                .await;
        }
        self.read(move |conn| {
            // The bounds are message ids; the group's index is by seq. Within a group ids
            // and seqs grow together, so each id bound is the seq of the last message at
            // or below it.
            let mut low = i64::try_from(query.above_seq).unwrap_or(i64::MAX);
            if let Some(after) = query.after {
                low = low.max(seq_at_or_below(conn, group, after)?);
            }
            let high = match query.before {
                Some(0) => 0,
                Some(before) => seq_at_or_below(conn, group, before - 1)?,
                None => i64::MAX,
            };
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM messages
                 WHERE group_id = ?1 AND seq > ?2 AND seq <= ?3
                 ORDER BY seq {order} LIMIT ?4 OFFSET ?5"
            ))?;
            let rows = stmt.query_map(params![group, low, high, limit, offset], message_row)?;
            MessagePage::collect(rows, query.limit, query.max_bytes)
        })
        .await
    }
}

/// Every message of `group` whose change number is above `since` and whose seq is above
/// `query.above_seq`, in change order, one page. Two ordered halves, each from its index:
/// messages posted after `since` and never changed since (their number is their id, so
/// by seq from the first one past `since`), and messages changed after `since` (the
/// partial index of changed ones). A message changed after `since` is in the second half
/// only.
fn changed_after(
    conn: &Connection,
    group: i64,
    since: u64,
    query: &MessageQuery,
) -> rusqlite::Result<MessagePage> {
    let since_seq = seq_at_or_below(conn, group, since)?;
    let low = since_seq.max(i64::try_from(query.above_seq).unwrap_or(i64::MAX));
    let since = i64::try_from(since).unwrap_or(i64::MAX);
    let cleared = i64::try_from(query.above_seq).unwrap_or(i64::MAX);
    let limit = i64::try_from(query.limit.saturating_add(1)).unwrap_or(i64::MAX);
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT * FROM (
             SELECT * FROM (SELECT {COLUMNS} FROM messages
                 WHERE group_id = ?1 AND seq > ?2 AND rev IS NULL ORDER BY seq LIMIT ?5)
             UNION ALL
             SELECT * FROM (SELECT {COLUMNS} FROM messages
                 WHERE group_id = ?1 AND rev > ?3 AND seq > ?4 ORDER BY rev LIMIT ?5))
         ORDER BY 17 LIMIT ?5"
    ))?;
    let rows = stmt.query_map(params![group, low, since, cleared, limit], message_row)?;
    MessagePage::collect(rows, query.limit, query.max_bytes)
}

/// The seq of the group's last message whose id is at most `id` (0 if none).
///
/// Message ids grow across all groups and seqs grow within one, both assigned by the one
/// writer in the same step, so within a group they rise together. So the answer is an id
/// lookup when `id` is one of the group's messages (what clients send), else a binary
/// search over seq, each step one lookup in the `(group_id, seq)` index. Seqs have no
/// gaps, but the search does not rely on it.
fn seq_at_or_below(conn: &Connection, group: i64, id: u64) -> rusqlite::Result<i64> {
    let id = i64::try_from(id).unwrap_or(i64::MAX);
    let exact: Option<i64> = query_row(
        conn,
        "SELECT seq FROM messages WHERE message_id = ?1 AND group_id = ?2",
        params![id, group],
        |r| r.get(0),
    )
    .optional()?;
    if let Some(seq) = exact {
        return Ok(seq);
    }
    // The group's first message at or after a seq: (seq, id).
    let first_from = |seq: i64| -> rusqlite::Result<Option<(i64, i64)>> {
        query_row(
            conn,
            "SELECT seq, message_id FROM messages WHERE group_id = ?1 AND seq >= ?2
             ORDER BY seq LIMIT 1",
            params![group, seq],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
    };
    // Invariant: `low` is 0 or a seq whose message has an id at most `id`; no message
    // above seq `high` has one.
    let mut low = 0;
    let mut high: i64 = query_row(
        conn,
        "SELECT COALESCE(MAX(seq), 0) FROM messages WHERE group_id = ?1",
        [group],
        |r| r.get(0),
    )?;
    while low < high {
        let mid = low + (high - low + 1) / 2;
        match first_from(mid)? {
            Some((seq, found)) if found <= id => low = seq,
            _ => high = mid - 1,
        }
    }
    Ok(low)
}

fn by_id(conn: &Connection, id: i64) -> rusqlite::Result<Option<Message>> {
    query_row(
        conn,
        &format!("SELECT {COLUMNS} FROM messages WHERE message_id = ?1"),
        [id],
        message_row,
    )
    .optional()
}
