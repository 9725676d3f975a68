//! `MessageStore` on SQLite. The next `seq` comes from the conversation's `last_seq`,
//! bumped in the same transaction as the insert, so sequences have no gaps.

use std::sync::Arc;

use async_trait::async_trait;
use confer_core::model::{Appended, Message, MessageQuery, NewMessage};
use confer_core::store::{MessageStore, StoreError, StoreResult};
use confer_core::{GroupId, Json, SessionId, Uin};
use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::{backend, exec, one_row, query_row, to_sql_id, SqliteStore};

pub(crate) const COLUMNS: &str =
    "message_id, group_id, seq, sender, sender_login, session_id, kind, text, \
                       attachments, body, nonce, version, created_at, updated_at, deleted";

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
    })
}

fn by_nonce(
    conn: &Connection,
    group: i64,
    sender: i64,
    nonce: &str,
) -> rusqlite::Result<Option<Message>> {
    query_row(
        conn,
        &format!(
            "SELECT {COLUMNS} FROM messages WHERE group_id = ?1 AND sender = ?2 AND nonce = ?3"
        ),
        params![group, sender, nonce],
        message_row,
    )
    .optional()
}

#[async_trait]
impl MessageStore for SqliteStore {
    async fn append_message(&self, new: NewMessage) -> StoreResult<Appended> {
        let group = to_sql_id(new.group_id.0)?;
        let sender = to_sql_id(new.sender.0)?;
        self.write(move |conn| {
            if let Some(nonce) = &new.nonce {
                if let Some(existing) = by_nonce(conn, group, sender, nonce).map_err(backend)? {
                    return Ok(Appended {
                        message: Arc::new(existing),
                        duplicate: true,
                    });
                }
            }
            let seq: i64 = query_row(
                conn,
                "UPDATE conversations SET last_seq = last_seq + 1
                 WHERE group_id = ?1 RETURNING last_seq",
                [group],
                |r| r.get(0),
            )
            .optional()
            .map_err(backend)?
            .ok_or(StoreError::NotFound)?;
            exec(conn,
                "INSERT INTO messages (group_id, seq, sender, sender_login, session_id, kind, text,
                    attachments, body, nonce, version, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?12)",
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
                ],
            )
            .map_err(backend)?;
            let message_id = conn.last_insert_rowid() as u64;
            // Posting means having read everything before it: the sender's seen mark
            // moves in the same transaction (one commit, not two).
            exec(conn,
                "UPDATE occupants SET seen_seq = MAX(seen_seq, ?3) WHERE group_id = ?1 AND uin = ?2",
                params![group, sender, seq],
            )
            .map_err(backend)?;
            Ok(Appended {
                message: Arc::new(Message {
                    message_id,
                    group_id: new.group_id,
                    seq: seq as u64,
                    sender: new.sender,
                    sender_login: new.sender_login,
                    session_id: new.session_id,
                    kind: new.kind,
                    text: new.text,
                    attachments: new.attachments,
                    body: new.body,
                    nonce: new.nonce,
                    version: new.version,
                    created_at_us: new.created_at_us,
                    updated_at_us: new.created_at_us,
                    deleted: false,
                }),
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
    ) -> StoreResult<Vec<Message>> {
        let group = to_sql_id(group.0)?;
        let after = i64::try_from(after_seq).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM messages WHERE group_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3"
            ))?;
            let rows = stmt.query_map(params![group, after, limit], message_row)?;
            rows.collect()
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
        self.write(move |conn| {
            one_row(exec(
                conn,
                "UPDATE messages SET text = ?2, attachments = COALESCE(?3, attachments),
                        version = version + 1, updated_at = ?4
                     WHERE message_id = ?1 AND deleted = 0",
                params![id, text, attachments, now_us],
            ))?;
            by_id(conn, id)
                .map_err(backend)?
                .ok_or(StoreError::NotFound)
        })
        .await
    }

    async fn delete_message(&self, message_id: u64, now_us: i64) -> StoreResult<Message> {
        let id = to_sql_id(message_id)?;
        self.write(move |conn| {
            one_row(exec(
                conn,
                "UPDATE messages SET text = NULL, attachments = NULL, body = NULL, deleted = 1,
                        updated_at = ?2
                     WHERE message_id = ?1 AND deleted = 0",
                params![id, now_us],
            ))?;
            by_id(conn, id)
                .map_err(backend)?
                .ok_or(StoreError::NotFound)
        })
        .await
    }

    async fn list_messages(
        &self,
        group: GroupId,
        query: MessageQuery,
    ) -> StoreResult<Vec<Message>> {
        let group = to_sql_id(group.0)?;
        let before = query
            .before
            .map(|b| i64::try_from(b).unwrap_or(i64::MAX))
            .unwrap_or(i64::MAX);
        let after = query
            .after
            .map(|a| i64::try_from(a).unwrap_or(i64::MAX))
            .unwrap_or(0);
        let above_seq = i64::try_from(query.above_seq).unwrap_or(i64::MAX);
        let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
        let offset = i64::try_from(query.offset).unwrap_or(i64::MAX);
        let order = if query.oldest_first { "ASC" } else { "DESC" };
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM messages
                 WHERE group_id = ?1 AND message_id < ?2 AND message_id > ?3 AND seq > ?4
                 ORDER BY message_id {order} LIMIT ?5 OFFSET ?6"
            ))?;
            let rows = stmt.query_map(
                params![group, before, after, above_seq, limit, offset],
                message_row,
            )?;
            rows.collect()
        })
        .await
    }
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
