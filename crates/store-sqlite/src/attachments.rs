//! `AttachmentStore` on SQLite: attachment metadata and the messages that carry them.

use async_trait::async_trait;
use confer_core::model::{Attachment, AttachmentState, StaleAttachment};
use confer_core::store::{AttachmentStore, StoreResult};
use confer_core::{GroupId, Uin};
use rusqlite::{params, OptionalExtension, Row};

use crate::{backend, exec, one_row, query_row, to_sql_id, SqliteStore};

const COLUMNS: &str = "item_id, owner, sha256, size, mimetype, filename, state, created_at";

fn state_of(n: i64) -> AttachmentState {
    match n {
        0 => AttachmentState::Draft,
        1 => AttachmentState::Stored,
        _ => AttachmentState::Missing,
    }
}

fn attachment_row(row: &Row<'_>) -> rusqlite::Result<Attachment> {
    Ok(Attachment {
        item_id: row.get::<_, i64>(0)? as u64,
        owner: Uin(row.get::<_, i64>(1)? as u64),
        sha256: row.get(2)?,
        size: row.get::<_, i64>(3)? as u64,
        mimetype: row.get(4)?,
        filename: row.get(5)?,
        state: state_of(row.get(6)?),
        created_at_us: row.get(7)?,
    })
}

#[async_trait]
impl AttachmentStore for SqliteStore {
    async fn insert_attachment(&self, a: Attachment) -> StoreResult<Attachment> {
        let owner = to_sql_id(a.owner.0)?;
        let size = to_sql_id(a.size)?;
        self.write(move |conn| {
            exec(conn,
                "INSERT INTO attachments (owner, sha256, size, mimetype, filename, state, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![owner, a.sha256, size, a.mimetype, a.filename, a.state as i64, a.created_at_us],
            )
            .map_err(backend)?;
            Ok(Attachment {
                item_id: conn.last_insert_rowid() as u64,
                ..a
            })
        })
        .await
    }

    async fn attachment(&self, item_id: u64) -> StoreResult<Option<Attachment>> {
        let Ok(id) = i64::try_from(item_id) else {
            return Ok(None);
        };
        self.read(move |conn| {
            query_row(
                conn,
                &format!("SELECT {COLUMNS} FROM attachments WHERE item_id = ?1"),
                [id],
                attachment_row,
            )
            .optional()
        })
        .await
    }

    async fn set_attachment_state(&self, item_id: u64, state: AttachmentState) -> StoreResult<()> {
        let id = to_sql_id(item_id)?;
        self.write(move |conn| {
            one_row(exec(
                conn,
                "UPDATE attachments SET state = ?2 WHERE item_id = ?1",
                params![id, state as i64],
            ))?;
            Ok(())
        })
        .await
    }

    async fn link_attachments(
        &self,
        message_id: u64,
        group: GroupId,
        item_ids: &[u64],
    ) -> StoreResult<()> {
        let message = to_sql_id(message_id)?;
        let group = to_sql_id(group.0)?;
        let ids: Vec<i64> = item_ids
            .iter()
            .map(|i| to_sql_id(*i))
            .collect::<StoreResult<_>>()?;
        self.write(move |conn| {
            for id in ids {
                exec(conn,
                    "INSERT OR IGNORE INTO message_attachments (item_id, message_id, group_id) VALUES (?1, ?2, ?3)",
                    params![id, message, group],
                )
                .map_err(backend)?;
                exec(conn, "UPDATE attachments SET state = 1 WHERE item_id = ?1 AND state = 0", [id])
                    .map_err(backend)?;
            }
            Ok(())
        })
        .await
    }

    async fn attachment_visible_to(&self, item_id: u64, uin: Uin) -> StoreResult<bool> {
        let (id, uin) = (to_sql_id(item_id)?, to_sql_id(uin.0)?);
        self.read(move |conn| {
            query_row(
                conn,
                "SELECT EXISTS (SELECT 1 FROM message_attachments ma
                    JOIN occupants o ON o.group_id = ma.group_id
                    WHERE ma.item_id = ?1 AND o.uin = ?2)",
                params![id, uin],
                |r| r.get::<_, bool>(0),
            )
        })
        .await
    }

    async fn stale_attachments(&self, cutoff_us: i64) -> StoreResult<Vec<StaleAttachment>> {
        self.read(move |conn| {
            let columns: String = COLUMNS
                .split(", ")
                .map(|c| format!("a.{c}"))
                .collect::<Vec<_>>()
                .join(", ");
            let mut stmt = conn.prepare(&format!(
                "SELECT {columns},
                    EXISTS (SELECT 1 FROM attachments o WHERE o.sha256 = a.sha256
                            AND o.item_id != a.item_id AND o.state != 2) AS shared
                 FROM attachments a
                 JOIN message_attachments ma ON ma.item_id = a.item_id
                 JOIN messages m ON m.message_id = ma.message_id
                 WHERE a.state = 1
                 GROUP BY a.item_id
                 HAVING MAX(m.created_at) < ?1
                 ORDER BY a.item_id"
            ))?;
            let rows = stmt.query_map([cutoff_us], |row| {
                Ok(StaleAttachment {
                    attachment: attachment_row(row)?,
                    blob_shared: row.get::<_, bool>(8)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    async fn replace_content(
        &self,
        item_id: u64,
        sha256: String,
        size: u64,
        mimetype: String,
        filename: String,
    ) -> StoreResult<()> {
        let id = to_sql_id(item_id)?;
        let size = to_sql_id(size)?;
        self.write(move |conn| {
            one_row(exec(
                conn,
                "UPDATE attachments SET sha256 = ?2, size = ?3, mimetype = ?4, filename = ?5
                 WHERE item_id = ?1",
                params![id, sha256, size, mimetype, filename],
            ))?;
            Ok(())
        })
        .await
    }

    async fn attachments_at_least(&self, min_size: u64) -> StoreResult<Vec<Attachment>> {
        let min = i64::try_from(min_size).unwrap_or(i64::MAX);
        self.read(move |conn| {
            let mut stmt = conn.prepare(&format!(
                "SELECT {COLUMNS} FROM attachments WHERE size >= ?1 AND state != 2 ORDER BY item_id"
            ))?;
            let rows = stmt.query_map([min], attachment_row)?;
            rows.collect()
        })
        .await
    }

    async fn blob_in_use(&self, sha256: &str, except: u64) -> StoreResult<bool> {
        let sha = sha256.to_string();
        let except = to_sql_id(except)?;
        self.read(move |conn| {
            query_row(conn,
                "SELECT EXISTS (SELECT 1 FROM attachments WHERE sha256 = ?1 AND item_id != ?2 AND state != 2)",
                params![sha, except],
                |r| r.get::<_, bool>(0),
            )
        })
        .await
    }
}
