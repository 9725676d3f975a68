//! `HubStore` on PostgreSQL: the edge-to-hub sync's tables (migration 3, SQLite's 11),
//! with the SQLite backend's semantics (`crates/store-sqlite/src/hub.rs`). Every change of
//! several rows is one transaction, so a roster, a batch or a box removal is stored whole
//! or not at all; a box's batch is prepared and taken under its row's lock, so two nodes
//! never hand the same batch out twice.

use async_trait::async_trait;
use confer_core::hub::{HubBatchItem, HubBox, HubGroup, HubLinkKind, HubLog, HubSetting};
use confer_core::store::{HubStore, StoreResult};
use confer_core::{GroupId, Json, Uin};
use tokio_postgres::{Row, Transaction};

use crate::{backend, from_sql_id, one_row, to_sql_id, PgStore};

const BOX_COLUMNS: &str = "boxid, created_at, last_sync, roster, roster_at, roster_key, siteip, \
     (SELECT COUNT(*) FROM hub_keys k WHERE k.boxid = b.boxid), \
     (SELECT COUNT(*) FROM hub_batch q WHERE q.boxid = b.boxid)";

fn box_row(row: &Row) -> Result<HubBox, tokio_postgres::Error> {
    Ok(HubBox {
        boxid: row.try_get(0)?,
        created_at_us: row.try_get(1)?,
        last_sync: row.try_get(2)?,
        roster: row
            .try_get::<_, Option<String>>(3)?
            .map(Json::from_validated),
        roster_at_us: row.try_get(4)?,
        roster_key: row.try_get(5)?,
        siteip: row.try_get(6)?,
        keys: usize::try_from(row.try_get::<_, i64>(7)?).unwrap_or(0),
        pending: usize::try_from(row.try_get::<_, i64>(8)?).unwrap_or(0),
    })
}

fn setting_row(row: &Row) -> Result<HubSetting, tokio_postgres::Error> {
    Ok(HubSetting {
        id: from_sql_id(row.try_get(0)?),
        boxid: row.try_get(1)?,
        key: row.try_get(2)?,
        value: row.try_get(3)?,
        timestamp: row.try_get(4)?,
    })
}

/// Create the box if it is new, then lock its row until the transaction ends: changes to
/// one box take turns across nodes.
async fn lock_box(tx: &Transaction<'_>, boxid: &str, now_us: i64) -> StoreResult<()> {
    tx.execute(
        "INSERT INTO hub_boxes (boxid, created_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        &[&boxid, &now_us],
    )
    .await
    .map_err(backend)?;
    tx.execute(
        "SELECT 1 FROM hub_boxes WHERE boxid = $1 FOR UPDATE",
        &[&boxid],
    )
    .await
    .map_err(backend)?;
    Ok(())
}

#[async_trait]
impl HubStore for PgStore {
    async fn hub_add_key(
        &self,
        boxid: &str,
        token_hash: [u8; 32],
        replace: bool,
        now_us: i64,
    ) -> StoreResult<()> {
        let hash = token_hash.to_vec();
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(backend)?;
        lock_box(&tx, boxid, now_us).await?;
        if replace {
            tx.execute("DELETE FROM hub_keys WHERE boxid = $1", &[&boxid])
                .await
                .map_err(backend)?;
        }
        tx.execute(
            "INSERT INTO hub_keys (boxid, token_hash, created_at) VALUES ($1, $2, $3)
             ON CONFLICT (boxid, token_hash) DO UPDATE SET created_at = excluded.created_at",
            &[&boxid, &hash, &now_us],
        )
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)
    }

    async fn hub_keys(&self, boxid: &str) -> StoreResult<Vec<[u8; 32]>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT token_hash FROM hub_keys WHERE boxid = $1 ORDER BY created_at DESC",
                &[&boxid],
            )
            .await
            .map_err(backend)?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let hash: Vec<u8> = row.try_get(0).map_err(backend)?;
            if let Ok(hash) = <[u8; 32]>::try_from(hash.as_slice()) {
                out.push(hash);
            }
        }
        Ok(out)
    }

    async fn hub_remove_keys(&self, boxid: &str) -> StoreResult<bool> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(backend)?;
        tx.execute("DELETE FROM hub_keys WHERE boxid = $1", &[&boxid])
            .await
            .map_err(backend)?;
        let known = tx
            .query_opt("SELECT 1 FROM hub_boxes WHERE boxid = $1", &[&boxid])
            .await
            .map_err(backend)?
            .is_some();
        tx.commit().await.map_err(backend)?;
        Ok(known)
    }

    async fn hub_box(&self, boxid: &str) -> StoreResult<Option<HubBox>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                &format!("SELECT {BOX_COLUMNS} FROM hub_boxes b WHERE boxid = $1"),
                &[&boxid],
            )
            .await
            .map_err(backend)?;
        row.as_ref().map(box_row).transpose().map_err(backend)
    }

    async fn hub_boxes(&self) -> StoreResult<Vec<HubBox>> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!("SELECT {BOX_COLUMNS} FROM hub_boxes b ORDER BY boxid"),
                &[],
            )
            .await
            .map_err(backend)?;
        rows.iter()
            .map(box_row)
            .collect::<Result<_, _>>()
            .map_err(backend)
    }

    async fn hub_remove_box(&self, boxid: &str) -> StoreResult<bool> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(backend)?;
        for table in ["hub_keys", "hub_batch", "hub_settings"] {
            tx.execute(&format!("DELETE FROM {table} WHERE boxid = $1"), &[&boxid])
                .await
                .map_err(backend)?;
        }
        let n = tx
            .execute("DELETE FROM hub_boxes WHERE boxid = $1", &[&boxid])
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(n > 0)
    }

    async fn hub_set_roster(
        &self,
        boxid: &str,
        roster: Json,
        key_hint: String,
        siteip: String,
        mut teachers: Vec<(String, String)>,
        now_us: i64,
    ) -> StoreResult<()> {
        // Rows are locked in one order, so two rosters naming the same teachers at once
        // wait for each other instead of deadlocking.
        teachers.sort();
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(backend)?;
        lock_box(&tx, boxid, now_us).await?;
        tx.execute(
            "UPDATE hub_boxes SET roster = $2, roster_at = $3, roster_key = $4, siteip = $5
             WHERE boxid = $1",
            &[&boxid, &roster.as_str(), &now_us, &key_hint, &siteip],
        )
        .await
        .map_err(backend)?;
        for (username, email) in &teachers {
            tx.execute(
                "INSERT INTO hub_teachers (username, email) VALUES ($1, $2)
                 ON CONFLICT (username) DO UPDATE SET email = excluded.email",
                &[username, email],
            )
            .await
            .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)
    }

    async fn hub_teacher_by_email(&self, email: &str) -> StoreResult<Option<String>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT username FROM hub_teachers WHERE lower(email) = lower($1)
                 ORDER BY username LIMIT 1",
                &[&email],
            )
            .await
            .map_err(backend)?;
        row.map(|r| r.try_get(0)).transpose().map_err(backend)
    }

    async fn hub_link(&self, kind: HubLinkKind, key: &str) -> StoreResult<Option<u64>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT id FROM hub_links WHERE kind = $1 AND key = $2",
                &[&kind.as_str(), &key],
            )
            .await
            .map_err(backend)?;
        row.map(|r| r.try_get::<_, i64>(0).map(from_sql_id))
            .transpose()
            .map_err(backend)
    }

    async fn hub_set_link(&self, kind: HubLinkKind, key: &str, id: u64) -> StoreResult<bool> {
        let id = to_sql_id(id)?;
        let sql = if kind == HubLinkKind::EdgeMark {
            "INSERT INTO hub_links (kind, key, id) VALUES ($1, $2, $3)
             ON CONFLICT (kind, key) DO UPDATE SET id = excluded.id"
        } else {
            "INSERT INTO hub_links (kind, key, id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING"
        };
        let client = self.client().await?;
        let n = client
            .execute(sql, &[&kind.as_str(), &key, &id])
            .await
            .map_err(backend)?;
        Ok(n > 0)
    }

    async fn hub_claim_attachment(&self, item_id: u64, owner: Uin) -> StoreResult<()> {
        let (item, owner) = (to_sql_id(item_id)?, to_sql_id(owner.0)?);
        let client = self.client().await?;
        one_row(
            client
                .execute(
                    "UPDATE attachments SET owner = $2 WHERE item_id = $1",
                    &[&item, &owner],
                )
                .await,
        )
    }

    async fn hub_add_group(&self, boxid: &str, group: GroupId) -> StoreResult<()> {
        let group = to_sql_id(group.0)?;
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO hub_groups (boxid, group_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&boxid, &group],
            )
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn hub_groups(&self, boxid: &str) -> StoreResult<Vec<HubGroup>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT group_id, handed_seq FROM hub_groups WHERE boxid = $1 ORDER BY group_id",
                &[&boxid],
            )
            .await
            .map_err(backend)?;
        rows.iter()
            .map(|r| {
                Ok(HubGroup {
                    group_id: GroupId(from_sql_id(r.try_get(0)?)),
                    handed_seq: from_sql_id(r.try_get(1)?),
                })
            })
            .collect::<Result<_, tokio_postgres::Error>>()
            .map_err(backend)
    }

    async fn hub_prepare_batch(
        &self,
        boxid: &str,
        since: i64,
        items: Vec<HubBatchItem>,
        marks: Vec<HubGroup>,
        now_secs: i64,
    ) -> StoreResult<()> {
        let items = items
            .iter()
            .map(|i| Ok((to_sql_id(i.message_id)?, i.recipient.as_str())))
            .collect::<StoreResult<Vec<_>>>()?;
        let marks = marks
            .iter()
            .map(|m| Ok((to_sql_id(m.group_id.0)?, to_sql_id(m.handed_seq)?)))
            .collect::<StoreResult<Vec<_>>>()?;
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(backend)?;
        lock_box(&tx, boxid, now_secs.saturating_mul(1_000_000)).await?;
        for (message, recipient) in &items {
            tx.execute(
                "INSERT INTO hub_batch (boxid, message_id, recipient) VALUES ($1, $2, $3)
                 ON CONFLICT DO NOTHING",
                &[&boxid, message, recipient],
            )
            .await
            .map_err(backend)?;
        }
        for (group, seq) in &marks {
            tx.execute(
                "UPDATE hub_groups SET handed_seq = $3 WHERE boxid = $1 AND group_id = $2",
                &[&boxid, group, seq],
            )
            .await
            .map_err(backend)?;
        }
        tx.execute(
            "UPDATE hub_boxes SET batch_since = $2, last_sync = $3 WHERE boxid = $1",
            &[&boxid, &since, &now_secs],
        )
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)
    }

    async fn hub_take_batch(&self, boxid: &str, since: i64) -> StoreResult<Vec<HubBatchItem>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(backend)?;
        let prepared = tx
            .query_opt(
                "SELECT batch_since FROM hub_boxes WHERE boxid = $1 FOR UPDATE",
                &[&boxid],
            )
            .await
            .map_err(backend)?
            .map(|r| r.try_get::<_, Option<i64>>(0))
            .transpose()
            .map_err(backend)?
            .flatten();
        if prepared != Some(since) {
            return Ok(Vec::new());
        }
        let items = tx
            .query(
                "SELECT message_id, recipient FROM hub_batch
                 WHERE boxid = $1 AND handed_as IS NULL
                 ORDER BY message_id, recipient",
                &[&boxid],
            )
            .await
            .map_err(backend)?
            .iter()
            .map(|r| {
                Ok(HubBatchItem {
                    message_id: from_sql_id(r.try_get(0)?),
                    recipient: r.try_get(1)?,
                })
            })
            .collect::<Result<Vec<_>, tokio_postgres::Error>>()
            .map_err(backend)?;
        tx.execute(
            "UPDATE hub_batch SET handed_as = $2 WHERE boxid = $1 AND handed_as IS NULL",
            &[&boxid, &since],
        )
        .await
        .map_err(backend)?;
        tx.execute(
            "UPDATE hub_boxes SET batch_since = NULL WHERE boxid = $1",
            &[&boxid],
        )
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(items)
    }

    async fn hub_confirm_batch(&self, boxid: &str, stored: Option<i64>) -> StoreResult<()> {
        let stored = stored.unwrap_or(i64::MAX);
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(backend)?;
        tx.execute(
            "DELETE FROM hub_batch WHERE boxid = $1 AND handed_as <= $2",
            &[&boxid, &stored],
        )
        .await
        .map_err(backend)?;
        tx.execute(
            "UPDATE hub_batch SET handed_as = NULL WHERE boxid = $1 AND handed_as > $2",
            &[&boxid, &stored],
        )
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)
    }

    async fn hub_add_logs(
        &self,
        boxid: &str,
        kind: &str,
        items: Vec<Json>,
        now_us: i64,
    ) -> StoreResult<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(backend)?;
        for item in &items {
            tx.execute(
                "INSERT INTO hub_logs (boxid, kind, item, at) VALUES ($1, $2, $3, $4)",
                &[&boxid, &kind, &item.as_str(), &now_us],
            )
            .await
            .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)
    }

    async fn hub_logs(&self, boxid: &str, limit: usize) -> StoreResult<Vec<HubLog>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT id, kind, item, at FROM hub_logs WHERE boxid = $1 ORDER BY id LIMIT $2",
                &[&boxid, &limit],
            )
            .await
            .map_err(backend)?;
        rows.iter()
            .map(|r| {
                Ok(HubLog {
                    id: from_sql_id(r.try_get(0)?),
                    kind: r.try_get(1)?,
                    item: Json::from_validated(r.try_get::<_, String>(2)?),
                    at_us: r.try_get(3)?,
                })
            })
            .collect::<Result<_, tokio_postgres::Error>>()
            .map_err(backend)
    }

    async fn hub_queue_setting(
        &self,
        boxid: &str,
        key: &str,
        value: &str,
        now_secs: i64,
    ) -> StoreResult<HubSetting> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "INSERT INTO hub_settings (boxid, key, value, at) VALUES ($1, $2, $3, $4)
                 RETURNING id, boxid, key, value, at",
                &[&boxid, &key, &value, &now_secs],
            )
            .await
            .map_err(backend)?;
        setting_row(&row).map_err(backend)
    }

    async fn hub_settings(&self, boxid: &str) -> StoreResult<Vec<HubSetting>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT id, boxid, key, value, at FROM hub_settings WHERE boxid = $1 ORDER BY id",
                &[&boxid],
            )
            .await
            .map_err(backend)?;
        rows.iter()
            .map(setting_row)
            .collect::<Result<_, _>>()
            .map_err(backend)
    }

    async fn hub_delete_setting(&self, boxid: &str, id: u64) -> StoreResult<bool> {
        let Ok(id) = i64::try_from(id) else {
            return Ok(false);
        };
        let client = self.client().await?;
        let n = client
            .execute(
                "DELETE FROM hub_settings WHERE boxid = $1 AND id = $2",
                &[&boxid, &id],
            )
            .await
            .map_err(backend)?;
        Ok(n > 0)
    }

    async fn set_account_admin(&self, uin: Uin, admin: bool) -> StoreResult<()> {
        let uin = to_sql_id(uin.0)?;
        let client = self.client().await?;
        one_row(
            client
                .execute(
                    "UPDATE accounts SET admin = $2 WHERE uin = $1",
                    &[&uin, &admin],
                )
                .await,
        )
    }

    async fn account_is_admin(&self, uin: Uin) -> StoreResult<bool> {
        let Ok(uin) = i64::try_from(uin.0) else {
            return Ok(false);
        };
        let client = self.client().await?;
        let row = client
            .query_opt("SELECT admin FROM accounts WHERE uin = $1", &[&uin])
            .await
            .map_err(backend)?;
        row.map(|r| r.try_get::<_, bool>(0))
            .transpose()
            .map_err(backend)
            .map(|a| a.unwrap_or(false))
    }
}
