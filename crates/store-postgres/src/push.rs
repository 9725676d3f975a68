//! `PushStore` on PostgreSQL: the push outbox, drained by every node at once.
//!
//! `push_outbox` holds entries (a message or call and its recipients); a message's is
//! inserted in the message's own transaction (`messages.rs`), so it commits with the
//! message or not at all. An entry becomes rows of `push_queue`, one per device, in one
//! transaction that first deletes the entry: when two nodes expand the same entry, the
//! second finds it gone (after waiting on the first's row lock) and inserts nothing.
//!
//! A node takes due rows with `FOR UPDATE SKIP LOCKED` and, in the same statement,
//! claims them: `claimed_by` its name and `next_at` the lease's end. No other node sees
//! them as due until then, so two nodes never send the same push; a node that dies
//! holding claims leaves them to whoever claims after the lease; one that restarts takes
//! its own back at once ([`PushStore::release_push_claims`]). A recorded outcome ends the
//! claim: the row is deleted, or due again at its retry time. Ids come from sequences and
//! are never reused, so an outcome for a row deleted meanwhile (a call push its
//! cancellation replaced) touches nothing.

use async_trait::async_trait;
use confer_core::model::{PushDelivery, PushEntry, PushKind};
use confer_core::store::{PushStore, StoreResult};
use confer_core::{GroupId, Uin};
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use crate::{backend, from_sql_id, to_sql_id, PgStore};

const QUEUE_COLUMNS: &str = "id, kind, uin, token_type, token, group_id, message_id, call_id, \
                             title, body, badge, created_at, attempts, next_at";

fn delivery_row(r: &Row) -> Result<PushDelivery, tokio_postgres::Error> {
    Ok(PushDelivery {
        id: from_sql_id(r.try_get(0)?),
        kind: PushKind::from_code(r.try_get(1)?).unwrap_or(PushKind::Message),
        uin: Uin(from_sql_id(r.try_get(2)?)),
        token_type: u8::try_from(r.try_get::<_, i64>(3)?).unwrap_or(0),
        token: r.try_get(4)?,
        group_id: GroupId(from_sql_id(r.try_get(5)?)),
        message_id: r.try_get::<_, Option<i64>>(6)?.map(from_sql_id),
        call_id: r.try_get::<_, Option<i64>>(7)?.map(from_sql_id),
        title: r.try_get(8)?,
        body: r.try_get(9)?,
        badge: from_sql_id(r.try_get(10)?),
        created_at_us: r.try_get(11)?,
        attempts: u32::try_from(r.try_get::<_, i64>(12)?).unwrap_or(u32::MAX),
        next_at_us: r.try_get(13)?,
    })
}

/// Insert an outbox entry (also in a message's append transaction).
pub(crate) async fn insert_entry<C: GenericClient>(
    client: &C,
    entry: &PushEntry,
) -> StoreResult<()> {
    let recipients = entry
        .recipients
        .iter()
        .map(|u| to_sql_id(u.0))
        .collect::<StoreResult<Vec<i64>>>()?;
    let stmt = client
        .prepare_cached(
            "INSERT INTO push_outbox (kind, group_id, ref_id, sender, recipients, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .await
        .map_err(backend)?;
    client
        .execute(
            &stmt,
            &[
                &(entry.kind as i64),
                &to_sql_id(entry.group_id.0)?,
                &to_sql_id(entry.ref_id)?,
                &to_sql_id(entry.sender.0)?,
                &recipients,
                &entry.created_at_us,
            ],
        )
        .await
        .map_err(backend)?;
    Ok(())
}

#[async_trait]
impl PushStore for PgStore {
    async fn token_holders(&self, uins: Vec<Uin>) -> StoreResult<Vec<Uin>> {
        let ids = uins
            .iter()
            .map(|u| to_sql_id(u.0))
            .collect::<StoreResult<Vec<i64>>>()?;
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT DISTINCT uin FROM device_tokens WHERE uin = ANY($1) ORDER BY uin",
                &[&ids],
            )
            .await
            .map_err(backend)?;
        rows.iter()
            .map(|r| r.try_get::<_, i64>(0).map(|u| Uin(from_sql_id(u))))
            .collect::<Result<Vec<_>, _>>()
            .map_err(backend)
    }

    async fn enqueue_push(&self, entry: PushEntry) -> StoreResult<()> {
        let client = self.client().await?;
        insert_entry(&client, &entry).await
    }

    async fn push_entries(&self, limit: usize) -> StoreResult<Vec<PushEntry>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT id, kind, group_id, ref_id, sender, recipients, created_at
                 FROM push_outbox ORDER BY id LIMIT $1",
                &[&limit],
            )
            .await
            .map_err(backend)?;
        rows.iter()
            .map(|r| {
                Ok(PushEntry {
                    id: from_sql_id(r.try_get(0)?),
                    kind: PushKind::from_code(r.try_get(1)?).unwrap_or(PushKind::Message),
                    group_id: GroupId(from_sql_id(r.try_get(2)?)),
                    ref_id: from_sql_id(r.try_get(3)?),
                    sender: Uin(from_sql_id(r.try_get(4)?)),
                    recipients: r
                        .try_get::<_, Vec<i64>>(5)?
                        .into_iter()
                        .map(|u| Uin(from_sql_id(u)))
                        .collect(),
                    created_at_us: r.try_get(6)?,
                })
            })
            .collect::<Result<Vec<_>, tokio_postgres::Error>>()
            .map_err(backend)
    }

    async fn expand_push(
        &self,
        entry_id: u64,
        deliveries: Vec<PushDelivery>,
        cancel_call: Option<u64>,
    ) -> StoreResult<()> {
        let entry_id = to_sql_id(entry_id)?;
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(backend)?;
        // Whoever removes the entry inserts its deliveries, once.
        let removed = tx
            .execute("DELETE FROM push_outbox WHERE id = $1", &[&entry_id])
            .await
            .map_err(backend)?;
        if removed == 0 {
            return Ok(());
        }
        if let Some(call) = cancel_call {
            tx.execute(
                "DELETE FROM push_queue WHERE call_id = $1 AND kind = $2",
                &[&to_sql_id(call)?, &(PushKind::Call as i64)],
            )
            .await
            .map_err(backend)?;
        }
        let insert = tx
            .prepare_cached(
                "INSERT INTO push_queue (kind, uin, token_type, token, group_id, message_id,
                    call_id, title, body, badge, created_at, attempts, next_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 0, $11)",
            )
            .await
            .map_err(backend)?;
        for d in &deliveries {
            tx.execute(
                &insert,
                &[
                    &(d.kind as i64),
                    &to_sql_id(d.uin.0)?,
                    &i64::from(d.token_type),
                    &d.token,
                    &to_sql_id(d.group_id.0)?,
                    &d.message_id.map(to_sql_id).transpose()?,
                    &d.call_id.map(to_sql_id).transpose()?,
                    &d.title,
                    &d.body,
                    &i64::try_from(d.badge).unwrap_or(i64::MAX),
                    &d.created_at_us,
                ],
            )
            .await
            .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)
    }

    async fn claim_pushes(
        &self,
        node: &str,
        token_types: &[u8],
        now_us: i64,
        lease_until_us: i64,
        limit: usize,
    ) -> StoreResult<Vec<PushDelivery>> {
        if token_types.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let types: Vec<i64> = token_types.iter().map(|t| i64::from(*t)).collect();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let client = self.client().await?;
        // One statement, so one transaction: the rows stay locked from the pick to the
        // claim, and a row another node is claiming right now is skipped, not waited for.
        let stmt = client
            .prepare_cached(&format!(
                "WITH due AS (
                    SELECT id FROM push_queue
                    WHERE next_at <= $1 AND token_type = ANY($2)
                    ORDER BY next_at, id LIMIT $3
                    FOR UPDATE SKIP LOCKED
                 )
                 UPDATE push_queue q SET next_at = $4, claimed_by = $5
                 FROM due WHERE q.id = due.id
                 RETURNING {}",
                QUEUE_COLUMNS
                    .split(", ")
                    .map(|c| format!("q.{c}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
            .await
            .map_err(backend)?;
        let rows = client
            .query(&stmt, &[&now_us, &types, &limit, &lease_until_us, &node])
            .await
            .map_err(backend)?;
        let mut claimed = rows
            .iter()
            .map(delivery_row)
            .collect::<Result<Vec<_>, _>>()
            .map_err(backend)?;
        claimed.sort_by_key(|d| d.id);
        Ok(claimed)
    }

    async fn release_push_claims(&self, node: &str, now_us: i64) -> StoreResult<()> {
        let client = self.client().await?;
        client
            .execute(
                "UPDATE push_queue SET next_at = LEAST(next_at, $2), claimed_by = NULL
                 WHERE claimed_by = $1",
                &[&node, &now_us],
            )
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn next_push_at(&self) -> StoreResult<Option<i64>> {
        let client = self.client().await?;
        let row = client
            .query_one("SELECT MIN(next_at) FROM push_queue", &[])
            .await
            .map_err(backend)?;
        row.try_get::<_, Option<i64>>(0).map_err(backend)
    }

    async fn push_done(&self, id: u64) -> StoreResult<()> {
        let id = to_sql_id(id)?;
        let client = self.client().await?;
        client
            .execute("DELETE FROM push_queue WHERE id = $1", &[&id])
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn push_retry(&self, id: u64, attempts: u32, next_at_us: i64) -> StoreResult<()> {
        let id = to_sql_id(id)?;
        let client = self.client().await?;
        client
            .execute(
                "UPDATE push_queue SET attempts = $2, next_at = $3, claimed_by = NULL
                 WHERE id = $1",
                &[&id, &i64::from(attempts), &next_at_us],
            )
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn remove_dead_token(&self, token: &str) -> StoreResult<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(backend)?;
        tx.execute("DELETE FROM device_tokens WHERE token = $1", &[&token])
            .await
            .map_err(backend)?;
        tx.execute("DELETE FROM push_queue WHERE token = $1", &[&token])
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)
    }
}
