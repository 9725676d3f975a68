//! `HubStore` on SQLite: the edge-to-hub sync's tables (migration 9). Every change of
//! several rows is one write (one savepoint), so a roster, a batch or a box removal is
//! stored whole or not at all.

use async_trait::async_trait;
use confer_core::event::Json;
use confer_core::hub::{HubBatchItem, HubBox, HubGroup, HubLinkKind, HubLog, HubSetting};
use confer_core::store::{HubStore, StoreResult};
use confer_core::{GroupId, Uin};
use rusqlite::{params, OptionalExtension, Row};

use crate::{backend, exec, one_row, query_row, to_sql_id, SqliteStore};

const BOX_COLUMNS: &str = "boxid, created_at, last_sync, roster, roster_at, roster_key, siteip, \
     (SELECT COUNT(*) FROM hub_keys k WHERE k.boxid = b.boxid), \
     (SELECT COUNT(*) FROM hub_batch q WHERE q.boxid = b.boxid)";

fn box_row(row: &Row<'_>) -> rusqlite::Result<HubBox> {
    Ok(HubBox {
        boxid: row.get(0)?,
        created_at_us: row.get(1)?,
        last_sync: row.get(2)?,
        roster: row.get::<_, Option<String>>(3)?.map(Json::from_validated),
        roster_at_us: row.get(4)?,
        roster_key: row.get(5)?,
        siteip: row.get(6)?,
        keys: row.get::<_, i64>(7)? as usize,
        pending: row.get::<_, i64>(8)? as usize,
    })
}

fn setting_row(row: &Row<'_>) -> rusqlite::Result<HubSetting> {
    Ok(HubSetting {
        id: row.get::<_, i64>(0)? as u64,
        boxid: row.get(1)?,
        key: row.get(2)?,
        value: row.get(3)?,
        timestamp: row.get(4)?,
    })
}

fn ensure_box(conn: &rusqlite::Connection, boxid: &str, now_us: i64) -> StoreResult<()> {
    exec(
        conn,
        "INSERT OR IGNORE INTO hub_boxes (boxid, created_at) VALUES (?1, ?2)",
        params![boxid, now_us],
    )
    .map_err(backend)?;
    Ok(())
}

#[async_trait]
impl HubStore for SqliteStore {
    async fn hub_add_key(
        &self,
        boxid: &str,
        token_hash: [u8; 32],
        replace: bool,
        now_us: i64,
    ) -> StoreResult<()> {
        let boxid = boxid.to_string();
        self.write(move |conn| {
            ensure_box(conn, &boxid, now_us)?;
            if replace {
                exec(conn, "DELETE FROM hub_keys WHERE boxid = ?1", [&boxid]).map_err(backend)?;
            }
            exec(
                conn,
                "INSERT INTO hub_keys (boxid, token_hash, created_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT DO UPDATE SET created_at = excluded.created_at",
                params![boxid, token_hash.to_vec(), now_us],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn hub_keys(&self, boxid: &str) -> StoreResult<Vec<[u8; 32]>> {
        let boxid = boxid.to_string();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT token_hash FROM hub_keys WHERE boxid = ?1 ORDER BY created_at DESC",
            )?;
            let rows = stmt.query_map([boxid], |r| r.get::<_, Vec<u8>>(0))?;
            let mut out = Vec::new();
            for row in rows {
                if let Ok(hash) = <[u8; 32]>::try_from(row?.as_slice()) {
                    out.push(hash);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn hub_remove_keys(&self, boxid: &str) -> StoreResult<bool> {
        let boxid = boxid.to_string();
        self.write(move |conn| {
            exec(conn, "DELETE FROM hub_keys WHERE boxid = ?1", [&boxid]).map_err(backend)?;
            let known: Option<i64> = query_row(
                conn,
                "SELECT 1 FROM hub_boxes WHERE boxid = ?1",
                [&boxid],
                |r| r.get(0),
            )
            .optional()
            .map_err(backend)?;
            Ok(known.is_some())
        })
        .await
    }

    async fn hub_box(&self, boxid: &str) -> StoreResult<Option<HubBox>> {
        let boxid = boxid.to_string();
        self.read(move |conn| {
            query_row(
                conn,
                &format!("SELECT {BOX_COLUMNS} FROM hub_boxes b WHERE boxid = ?1"),
                [boxid],
                box_row,
            )
            .optional()
        })
        .await
    }

    async fn hub_boxes(&self) -> StoreResult<Vec<HubBox>> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {BOX_COLUMNS} FROM hub_boxes b ORDER BY boxid"
            ))?;
            let rows = stmt.query_map([], box_row)?;
            rows.collect()
        })
        .await
    }

    async fn hub_remove_box(&self, boxid: &str) -> StoreResult<bool> {
        let boxid = boxid.to_string();
        self.write(move |conn| {
            for table in ["hub_keys", "hub_batch", "hub_settings"] {
                exec(
                    conn,
                    &format!("DELETE FROM {table} WHERE boxid = ?1"),
                    [&boxid],
                )
                .map_err(backend)?;
            }
            let n =
                exec(conn, "DELETE FROM hub_boxes WHERE boxid = ?1", [&boxid]).map_err(backend)?;
            Ok(n > 0)
        })
        .await
    }

    async fn hub_set_roster(
        &self,
        boxid: &str,
        roster: Json,
        key_hint: String,
        siteip: String,
        teachers: Vec<(String, String)>,
        now_us: i64,
    ) -> StoreResult<()> {
        let boxid = boxid.to_string();
        self.write(move |conn| {
            ensure_box(conn, &boxid, now_us)?;
            exec(
                conn,
                "UPDATE hub_boxes SET roster = ?2, roster_at = ?3, roster_key = ?4, siteip = ?5
                 WHERE boxid = ?1",
                params![boxid, roster.as_str(), now_us, key_hint, siteip],
            )
            .map_err(backend)?;
            for (username, email) in &teachers {
                exec(
                    conn,
                    "INSERT INTO hub_teachers (username, email) VALUES (?1, ?2)
                     ON CONFLICT DO UPDATE SET email = excluded.email",
                    params![username, email],
                )
                .map_err(backend)?;
            }
            Ok(())
        })
        .await
    }

    async fn hub_teacher_by_email(&self, email: &str) -> StoreResult<Option<String>> {
        let email = email.to_string();
        self.read(move |conn| {
            query_row(
                conn,
                "SELECT username FROM hub_teachers WHERE email = ?1 COLLATE NOCASE LIMIT 1",
                [email],
                |r| r.get(0),
            )
            .optional()
        })
        .await
    }

    async fn hub_link(&self, kind: HubLinkKind, key: &str) -> StoreResult<Option<u64>> {
        let key = key.to_string();
        self.read(move |conn| {
            query_row(
                conn,
                "SELECT id FROM hub_links WHERE kind = ?1 AND key = ?2",
                params![kind.as_str(), key],
                |r| r.get::<_, i64>(0).map(|n| n as u64),
            )
            .optional()
        })
        .await
    }

    async fn hub_set_link(&self, kind: HubLinkKind, key: &str, id: u64) -> StoreResult<bool> {
        let key = key.to_string();
        let id = to_sql_id(id)?;
        self.write(move |conn| {
            let sql = if kind == HubLinkKind::EdgeMark {
                "INSERT OR REPLACE INTO hub_links (kind, key, id) VALUES (?1, ?2, ?3)"
            } else {
                "INSERT OR IGNORE INTO hub_links (kind, key, id) VALUES (?1, ?2, ?3)"
            };
            let n = exec(conn, sql, params![kind.as_str(), key, id]).map_err(backend)?;
            Ok(n > 0)
        })
        .await
    }

    async fn hub_claim_attachment(&self, item_id: u64, owner: Uin) -> StoreResult<()> {
        let (item, owner) = (to_sql_id(item_id)?, to_sql_id(owner.0)?);
        self.write(move |conn| {
            one_row(exec(
                conn,
                "UPDATE attachments SET owner = ?2 WHERE item_id = ?1",
                params![item, owner],
            ))
        })
        .await
    }

    async fn hub_add_group(&self, boxid: &str, group: GroupId) -> StoreResult<()> {
        let boxid = boxid.to_string();
        let group = to_sql_id(group.0)?;
        self.write(move |conn| {
            exec(
                conn,
                "INSERT OR IGNORE INTO hub_groups (boxid, group_id) VALUES (?1, ?2)",
                params![boxid, group],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn hub_groups(&self, boxid: &str) -> StoreResult<Vec<HubGroup>> {
        let boxid = boxid.to_string();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT group_id, handed_seq FROM hub_groups WHERE boxid = ?1 ORDER BY group_id",
            )?;
            let rows = stmt.query_map([boxid], |r| {
                Ok(HubGroup {
                    group_id: GroupId(r.get::<_, i64>(0)? as u64),
                    handed_seq: r.get::<_, i64>(1)? as u64,
                })
            })?;
            rows.collect()
        })
        .await
    }

    async fn hub_prepare_batch(
        &self,
        boxid: &str,
        since: i64,
        items: Vec<HubBatchItem>,
        marks: Vec<HubGroup>,
        now_secs: i64,
    ) -> StoreResult<()> {
        let boxid = boxid.to_string();
        self.write(move |conn| {
            ensure_box(conn, &boxid, now_secs.saturating_mul(1_000_000))?;
            for item in &items {
                exec(
                    conn,
                    "INSERT OR IGNORE INTO hub_batch (boxid, message_id, recipient)
                     VALUES (?1, ?2, ?3)",
                    params![boxid, to_sql_id(item.message_id)?, item.recipient],
                )
                .map_err(backend)?;
            }
            for mark in &marks {
                exec(
                    conn,
                    "UPDATE hub_groups SET handed_seq = ?3 WHERE boxid = ?1 AND group_id = ?2",
                    params![
                        boxid,
                        to_sql_id(mark.group_id.0)?,
                        to_sql_id(mark.handed_seq)?
                    ],
                )
                .map_err(backend)?;
            }
            exec(
                conn,
                "UPDATE hub_boxes SET batch_since = ?2, last_sync = ?3 WHERE boxid = ?1",
                params![boxid, since, now_secs],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn hub_take_batch(&self, boxid: &str, since: i64) -> StoreResult<Vec<HubBatchItem>> {
        let boxid = boxid.to_string();
        self.write(move |conn| {
            let prepared: Option<Option<i64>> = query_row(
                conn,
                "SELECT batch_since FROM hub_boxes WHERE boxid = ?1",
                [&boxid],
                |r| r.get(0),
            )
            .optional()
            .map_err(backend)?;
            if prepared.flatten() != Some(since) {
                return Ok(Vec::new());
            }
            let mut stmt = conn
                .prepare_cached(
                    "SELECT message_id, recipient FROM hub_batch
                     WHERE boxid = ?1 AND handed_as IS NULL
                     ORDER BY message_id, recipient",
                )
                .map_err(backend)?;
            let items = stmt
                .query_map([&boxid], |r| {
                    Ok(HubBatchItem {
                        message_id: r.get::<_, i64>(0)? as u64,
                        recipient: r.get(1)?,
                    })
                })
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(backend)?;
            exec(
                conn,
                "UPDATE hub_batch SET handed_as = ?2 WHERE boxid = ?1 AND handed_as IS NULL",
                params![boxid, since],
            )
            .map_err(backend)?;
            exec(
                conn,
                "UPDATE hub_boxes SET batch_since = NULL WHERE boxid = ?1",
                [&boxid],
            )
            .map_err(backend)?;
            Ok(items)
        })
        .await
    }

    async fn hub_confirm_batch(&self, boxid: &str, stored: Option<i64>) -> StoreResult<()> {
        let boxid = boxid.to_string();
        self.write(move |conn| {
            let stored = stored.unwrap_or(i64::MAX);
            exec(
                conn,
                "DELETE FROM hub_batch WHERE boxid = ?1 AND handed_as <= ?2",
                params![boxid, stored],
            )
            .map_err(backend)?;
            exec(
                conn,
                "UPDATE hub_batch SET handed_as = NULL WHERE boxid = ?1 AND handed_as > ?2",
                params![boxid, stored],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn hub_add_logs(
        &self,
        boxid: &str,
        kind: &str,
        items: Vec<Json>,
        now_us: i64,
    ) -> StoreResult<()> {
        let (boxid, kind) = (boxid.to_string(), kind.to_string());
        self.write(move |conn| {
            for item in &items {
                exec(
                    conn,
                    "INSERT INTO hub_logs (boxid, kind, item, at) VALUES (?1, ?2, ?3, ?4)",
                    params![boxid, kind, item.as_str(), now_us],
                )
                .map_err(backend)?;
            }
            Ok(())
        })
        .await
    }

    async fn hub_logs(&self, boxid: &str, limit: usize) -> StoreResult<Vec<HubLog>> {
        let boxid = boxid.to_string();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, kind, item, at FROM hub_logs WHERE boxid = ?1 ORDER BY id LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![boxid, limit], |r| {
                Ok(HubLog {
                    id: r.get::<_, i64>(0)? as u64,
                    kind: r.get(1)?,
                    item: Json::from_validated(r.get::<_, String>(2)?),
                    at_us: r.get(3)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    async fn hub_queue_setting(
        &self,
        boxid: &str,
        key: &str,
        value: &str,
        now_secs: i64,
    ) -> StoreResult<HubSetting> {
        let (boxid, key, value) = (boxid.to_string(), key.to_string(), value.to_string());
        self.write(move |conn| {
            exec(
                conn,
                "INSERT INTO hub_settings (boxid, key, value, at) VALUES (?1, ?2, ?3, ?4)",
                params![boxid, key, value, now_secs],
            )
            .map_err(backend)?;
            Ok(HubSetting {
                id: conn.last_insert_rowid() as u64,
                boxid,
                key,
                value,
                timestamp: now_secs,
            })
        })
        .await
    }

    async fn hub_settings(&self, boxid: &str) -> StoreResult<Vec<HubSetting>> {
        let boxid = boxid.to_string();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, boxid, key, value, at FROM hub_settings WHERE boxid = ?1 ORDER BY id",
            )?;
            let rows = stmt.query_map([boxid], setting_row)?;
            rows.collect()
        })
        .await
    }

    async fn hub_delete_setting(&self, boxid: &str, id: u64) -> StoreResult<bool> {
        let boxid = boxid.to_string();
        let Ok(id) = i64::try_from(id) else {
            return Ok(false);
        };
        self.write(move |conn| {
            let n = exec(
                conn,
                "DELETE FROM hub_settings WHERE boxid = ?1 AND id = ?2",
                params![boxid, id],
            )
            .map_err(backend)?;
            Ok(n > 0)
        })
        .await
    }

    async fn set_account_admin(&self, uin: Uin, admin: bool) -> StoreResult<()> {
        let uin = to_sql_id(uin.0)?;
        self.write(move |conn| {
            one_row(exec(
                conn,
                "UPDATE accounts SET admin = ?2 WHERE uin = ?1",
                params![uin, admin],
            ))
        })
        .await
    }

    async fn account_is_admin(&self, uin: Uin) -> StoreResult<bool> {
        let Ok(uin) = i64::try_from(uin.0) else {
            return Ok(false);
        };
        self.read(move |conn| {
            let admin: Option<bool> = query_row(
                conn,
                "SELECT admin FROM accounts WHERE uin = ?1",
                [uin],
                |r| r.get(0),
            )
            .optional()?;
            Ok(admin.unwrap_or(false))
        })
        .await
    }
}
