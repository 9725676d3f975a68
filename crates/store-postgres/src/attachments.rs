//! `AttachmentStore` on PostgreSQL: attachment metadata and the messages that carry them.

use async_trait::async_trait;
use confer_core::model::{Attachment, AttachmentState, StaleAttachment};
use confer_core::store::{AttachmentStore, StoreResult};
use confer_core::{GroupId, Uin};
use tokio_postgres::Row;

use crate::{backend, from_sql_id, missing_or_backend, one_row, to_sql_id, PgStore};

const COLUMNS: &str = "item_id, owner, sha256, size, mimetype, filename, state, created_at";

fn state_of(n: i64) -> AttachmentState {
    match n {
        0 => AttachmentState::Draft,
        1 => AttachmentState::Stored,
        _ => AttachmentState::Missing,
    }
}

fn attachment_row(row: &Row) -> Result<Attachment, tokio_postgres::Error> {
    Ok(Attachment {
        item_id: from_sql_id(row.try_get(0)?),
        owner: Uin(from_sql_id(row.try_get(1)?)),
        sha256: row.try_get(2)?,
        size: from_sql_id(row.try_get(3)?),
        mimetype: row.try_get(4)?,
        filename: row.try_get(5)?,
        state: state_of(row.try_get(6)?),
        created_at_us: row.try_get(7)?,
    })
}

fn prefixed(prefix: &str) -> String {
    COLUMNS
        .split(", ")
        .map(|c| format!("{prefix}.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[async_trait]
impl AttachmentStore for PgStore {
    async fn insert_attachment(&self, a: Attachment) -> StoreResult<Attachment> {
        let owner = to_sql_id(a.owner.0)?;
        let size = to_sql_id(a.size)?;
        let client = self.client().await?;
        let row = client
            .query_one(
                "INSERT INTO attachments (owner, sha256, size, mimetype, filename, state, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING item_id",
                &[
                    &owner,
                    &a.sha256,
                    &size,
                    &a.mimetype,
                    &a.filename,
                    &(a.state as i64),
                    &a.created_at_us,
                ],
            )
            .await
            .map_err(backend)?;
        let item_id = from_sql_id(row.try_get(0).map_err(backend)?);
        Ok(Attachment { item_id, ..a })
    }

    async fn attachment(&self, item_id: u64) -> StoreResult<Option<Attachment>> {
        let Ok(id) = i64::try_from(item_id) else {
            return Ok(None);
        };
        let client = self.client().await?;
        let row = client
            .query_opt(
                &format!("SELECT {COLUMNS} FROM attachments WHERE item_id = $1"),
                &[&id],
            )
            .await
            .map_err(backend)?;
        row.as_ref()
            .map(attachment_row)
            .transpose()
            .map_err(backend)
    }

    async fn set_attachment_state(&self, item_id: u64, state: AttachmentState) -> StoreResult<()> {
        let id = to_sql_id(item_id)?;
        let client = self.client().await?;
        one_row(
            client
                .execute(
                    "UPDATE attachments SET state = $2 WHERE item_id = $1",
                    &[&id, &(state as i64)],
                )
                .await,
        )
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
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(backend)?;
        for id in ids {
            tx.execute(
                "INSERT INTO message_attachments (item_id, message_id, group_id)
                 VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                &[&id, &message, &group],
            )
            .await
            .map_err(missing_or_backend)?;
            tx.execute(
                "UPDATE attachments SET state = 1 WHERE item_id = $1 AND state = 0",
                &[&id],
            )
            .await
            .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)
    }

    async fn attachment_visible_to(&self, item_id: u64, uin: Uin) -> StoreResult<bool> {
        let (id, uin) = (to_sql_id(item_id)?, to_sql_id(uin.0)?);
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM message_attachments ma
                    JOIN occupants o ON o.group_id = ma.group_id
                    WHERE ma.item_id = $1 AND o.uin = $2)",
                &[&id, &uin],
            )
            .await
            .map_err(backend)?;
        row.try_get(0).map_err(backend)
    }

    async fn stale_attachments(&self, cutoff_us: i64) -> StoreResult<Vec<StaleAttachment>> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {},
                        EXISTS (SELECT 1 FROM attachments o WHERE o.sha256 = a.sha256
                                AND o.item_id != a.item_id AND o.state != 2) AS shared
                     FROM attachments a
                     JOIN message_attachments ma ON ma.item_id = a.item_id
                     JOIN messages m ON m.message_id = ma.message_id
                     WHERE a.state = 1
                     GROUP BY a.item_id
                     HAVING MAX(m.created_at) < $1
                     ORDER BY a.item_id",
                    prefixed("a")
                ),
                &[&cutoff_us],
            )
            .await
            .map_err(backend)?;
        rows.iter()
            .map(|row| {
                Ok(StaleAttachment {
                    attachment: attachment_row(row)?,
                    blob_shared: row.try_get(8)?,
                })
            })
            .collect::<Result<_, tokio_postgres::Error>>()
            .map_err(backend)
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
        let client = self.client().await?;
        one_row(
            client
                .execute(
                    "UPDATE attachments SET sha256 = $2, size = $3, mimetype = $4, filename = $5
                     WHERE item_id = $1",
                    &[&id, &sha256, &size, &mimetype, &filename],
                )
                .await,
        )
    }

    async fn attachments_at_least(&self, min_size: u64) -> StoreResult<Vec<Attachment>> {
        let min = i64::try_from(min_size).unwrap_or(i64::MAX);
        let client = self.client().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM attachments WHERE size >= $1 AND state != 2
                     ORDER BY item_id"
                ),
                &[&min],
            )
            .await
            .map_err(backend)?;
        rows.iter()
            .map(attachment_row)
            .collect::<Result<_, _>>()
            .map_err(backend)
    }

    async fn blob_in_use(&self, sha256: &str, except: u64) -> StoreResult<bool> {
        let except = to_sql_id(except)?;
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM attachments WHERE sha256 = $1 AND item_id != $2
                    AND state != 2)",
                &[&sha256, &except],
            )
            .await
            .map_err(backend)?;
        row.try_get(0).map_err(backend)
    }
}
