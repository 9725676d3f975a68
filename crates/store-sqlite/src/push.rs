//! `PushStore` on SQLite: the push outbox.
//!
//! `push_outbox` holds entries (a message or call and its recipients), the first inserted
//! by the message's own append (`messages.rs`), so it commits with the message or not at
//! all. The core turns each into rows of `push_queue`, one per device, deleting the entry
//! in the same write; a queued row stays until the worker reports it finished, and carries
//! its attempts and when the next is due. A crash at any point leaves either the entry or
//! its rows. Row ids are never reused (AUTOINCREMENT): an outcome recorded for a row that
//! was removed meanwhile (a call's, by its cancellation) must not finish another. A
//! claim (`claimed_by`, and `next_at` moved to the lease's end) is what PostgreSQL needs
//! for several nodes; here, with one process per database, it is plain bookkeeping with
//! the same meaning, and every claim is void when the database is opened again.
//!
//! [`TokenHolders`] answers "who may hold a device token" from memory on every post: the
//! users with a token at open, plus every user given one since. Removing a token does not
//! take its user out (a superset costs an entry that turns into no delivery), so the set
//! is correct without reading the table again.

use std::collections::HashSet;
use std::sync::Mutex;

use async_trait::async_trait;
use confer_core::model::{PushDelivery, PushEntry, PushKind};
use confer_core::store::{PushStore, StoreResult};
use confer_core::{GroupId, Uin};
use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::{backend, exec, query_row, to_sql_id, SqliteStore};

/// Users who hold, or held since the store opened, a device token.
#[derive(Default)]
pub(crate) struct TokenHolders(Mutex<HashSet<u64>>);

impl TokenHolders {
    pub(crate) fn load(conn: &Connection) -> rusqlite::Result<Self> {
        let mut stmt = conn.prepare("SELECT DISTINCT uin FROM device_tokens")?;
        let uins = stmt
            .query_map([], |r| r.get::<_, i64>(0))?
            .collect::<rusqlite::Result<HashSet<i64>>>()?;
        Ok(TokenHolders(Mutex::new(
            uins.into_iter().map(|u| u as u64).collect(),
        )))
    }

    pub(crate) fn add(&self, uin: Uin) {
        self.lock().insert(uin.0);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<u64>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn encode_uins(uins: &[Uin]) -> String {
    let parts: Vec<String> = uins.iter().map(|u| u.0.to_string()).collect();
    parts.join(",")
}

/// The inverse of [`encode_uins`]; a part that does not parse is left out.
fn decode_uins(text: &str) -> Vec<Uin> {
    text.split(',')
        .filter_map(|p| p.parse().ok())
        .map(Uin)
        .collect()
}

/// At open: the claims of the process that had the database before (it ended, or died
/// with its requests) are void, and their deliveries due now. One process opens a SQLite
/// database at a time (its caches assume so), so whatever node name it claimed under.
pub(crate) fn release_claims(conn: &Connection, now_us: i64) -> rusqlite::Result<()> {
    exec(
        conn,
        "UPDATE push_queue SET next_at = MIN(next_at, ?1), claimed_by = NULL
         WHERE claimed_by IS NOT NULL",
        [now_us],
    )?;
    Ok(())
}

/// Insert an outbox entry on the writer's connection (also used by the message append).
pub(crate) fn insert_entry(conn: &Connection, entry: &PushEntry) -> rusqlite::Result<()> {
    exec(
        conn,
        "INSERT INTO push_outbox (kind, group_id, ref_id, sender, recipients, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            entry.kind as i64,
            entry.group_id.0 as i64,
            entry.ref_id as i64,
            entry.sender.0 as i64,
            encode_uins(&entry.recipients),
            entry.created_at_us,
        ],
    )?;
    Ok(())
}

const QUEUE_COLUMNS: &str = "id, kind, uin, token_type, token, group_id, message_id, call_id, \
                             title, body, badge, created_at, attempts, next_at";

fn delivery_row(r: &Row<'_>) -> rusqlite::Result<PushDelivery> {
    let kind = r.get::<_, i64>(1)?;
    Ok(PushDelivery {
        id: r.get::<_, i64>(0)? as u64,
        kind: PushKind::from_code(kind).unwrap_or(PushKind::Message),
        uin: Uin(r.get::<_, i64>(2)? as u64),
        token_type: r.get::<_, i64>(3)? as u8,
        token: r.get(4)?,
        group_id: GroupId(r.get::<_, i64>(5)? as u64),
        message_id: r.get::<_, Option<i64>>(6)?.map(|v| v as u64),
        call_id: r.get::<_, Option<i64>>(7)?.map(|v| v as u64),
        title: r.get(8)?,
        body: r.get(9)?,
        badge: r.get::<_, i64>(10)? as u64,
        created_at_us: r.get(11)?,
        attempts: r.get::<_, i64>(12)? as u32,
        next_at_us: r.get(13)?,
    })
}

#[async_trait]
impl PushStore for SqliteStore {
    async fn token_holders(&self, uins: Vec<Uin>) -> StoreResult<Vec<Uin>> {
        let holders = self.token_holders.lock();
        Ok(uins
            .into_iter()
            .filter(|u| holders.contains(&u.0))
            .collect())
    }

    async fn enqueue_push(&self, entry: PushEntry) -> StoreResult<()> {
        to_sql_id(entry.ref_id)?;
        self.write(move |conn| insert_entry(conn, &entry).map_err(backend))
            .await
    }

    async fn push_entries(&self, limit: usize) -> StoreResult<Vec<PushEntry>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, kind, group_id, ref_id, sender, recipients, created_at
                 FROM push_outbox ORDER BY id LIMIT ?1",
            )?;
            let rows = stmt.query_map([limit], |r| {
                Ok(PushEntry {
                    id: r.get::<_, i64>(0)? as u64,
                    kind: PushKind::from_code(r.get(1)?).unwrap_or(PushKind::Message),
                    group_id: GroupId(r.get::<_, i64>(2)? as u64),
                    ref_id: r.get::<_, i64>(3)? as u64,
                    sender: Uin(r.get::<_, i64>(4)? as u64),
                    recipients: decode_uins(&r.get::<_, String>(5)?),
                    created_at_us: r.get(6)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    async fn expand_push(
        &self,
        entry_id: u64,
        deliveries: Vec<PushDelivery>,
        cancel_call: Option<u64>,
    ) -> StoreResult<()> {
        let entry_id = to_sql_id(entry_id)?;
        self.write(move |conn| {
            // Whoever removes the entry inserts its deliveries, once.
            if exec(conn, "DELETE FROM push_outbox WHERE id = ?1", [entry_id]).map_err(backend)?
                == 0
            {
                return Ok(());
            }
            if let Some(call) = cancel_call {
                exec(
                    conn,
                    "DELETE FROM push_queue WHERE call_id = ?1 AND kind = ?2",
                    params![call as i64, PushKind::Call as i64],
                )
                .map_err(backend)?;
            }
            for d in &deliveries {
                exec(
                    conn,
                    "INSERT INTO push_queue (kind, uin, token_type, token, group_id, message_id,
                        call_id, title, body, badge, created_at, attempts, next_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, 0, ?11)",
                    params![
                        d.kind as i64,
                        d.uin.0 as i64,
                        d.token_type,
                        d.token,
                        d.group_id.0 as i64,
                        d.message_id.map(|v| v as i64),
                        d.call_id.map(|v| v as i64),
                        d.title,
                        d.body,
                        i64::try_from(d.badge).unwrap_or(i64::MAX),
                        d.created_at_us,
                    ],
                )
                .map_err(backend)?;
            }
            Ok(())
        })
        .await
    }

    async fn claim_pushes(
        &self,
        node: &str,
        token_types: &[u8],
        now_us: i64,
        lease_until_us: i64,
        limit: usize,
    ) -> StoreResult<Vec<PushDelivery>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let node = node.to_string();
        // Token types are small numbers; as a list of literals, one statement serves any.
        let types = token_types
            .iter()
            .map(|t| t.to_string())
            .collect::<Vec<_>>()
            .join(",");
        if types.is_empty() {
            return Ok(Vec::new());
        }
        // Most rounds find nothing due: a read says so without taking the writer.
        let select = format!(
            "SELECT {QUEUE_COLUMNS} FROM push_queue
             WHERE next_at <= ?1 AND token_type IN ({types})
             ORDER BY next_at, id LIMIT ?2"
        );
        let probe = select.clone();
        let any = self
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(&probe)?;
                stmt.exists(params![now_us, 1])
            })
            .await?;
        if !any {
            return Ok(Vec::new());
        }
        self.write(move |conn| {
            let mut stmt = conn.prepare_cached(&select).map_err(backend)?;
            let due = stmt
                .query_map(params![now_us, limit], delivery_row)
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(backend)?;
            for d in &due {
                exec(
                    conn,
                    "UPDATE push_queue SET next_at = ?2, claimed_by = ?3 WHERE id = ?1",
                    params![d.id as i64, lease_until_us, node],
                )
                .map_err(backend)?;
            }
            Ok(due)
        })
        .await
    }

    async fn release_push_claims(&self, node: &str, now_us: i64) -> StoreResult<()> {
        let node = node.to_string();
        self.write(move |conn| {
            exec(
                conn,
                "UPDATE push_queue SET next_at = MIN(next_at, ?2), claimed_by = NULL
                 WHERE claimed_by = ?1",
                params![node, now_us],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn next_push_at(&self) -> StoreResult<Option<i64>> {
        self.read(|conn| {
            query_row(conn, "SELECT MIN(next_at) FROM push_queue", [], |r| {
                r.get::<_, Option<i64>>(0)
            })
            .optional()
            .map(Option::flatten)
        })
        .await
    }

    async fn push_done(&self, id: u64) -> StoreResult<()> {
        let id = to_sql_id(id)?;
        self.write(move |conn| {
            exec(conn, "DELETE FROM push_queue WHERE id = ?1", [id]).map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn push_retry(&self, id: u64, attempts: u32, next_at_us: i64) -> StoreResult<()> {
        let id = to_sql_id(id)?;
        self.write(move |conn| {
            exec(
                conn,
                "UPDATE push_queue SET attempts = ?2, next_at = ?3, claimed_by = NULL WHERE id = ?1",
                params![id, attempts, next_at_us],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn remove_dead_token(&self, token: &str) -> StoreResult<()> {
        let token = token.to_string();
        self.write(move |conn| {
            exec(conn, "DELETE FROM device_tokens WHERE token = ?1", [&token]).map_err(backend)?;
            exec(conn, "DELETE FROM push_queue WHERE token = ?1", [&token]).map_err(backend)?;
            Ok(())
        })
        .await
    }
}
