//! `CallStore` on SQLite. Participant sets are stored as comma-separated numbers.

use std::collections::BTreeSet;

use async_trait::async_trait;
use confer_core::model::{Call, CallStatus};
use confer_core::store::{CallStore, StoreResult};
use confer_core::{GroupId, Json, Uin};
use rusqlite::{params, OptionalExtension, Row};

use crate::{backend, exec, one_row, query_row, to_sql_id, SqliteStore};

const COLUMNS: &str =
    "call_id, group_id, media_type, status, caller, callees, accepted, declined, \
                       extra, started_at, accepted_at, stopped_at";

fn join(set: &BTreeSet<Uin>) -> String {
    set.iter()
        .map(|u| u.0.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn split(text: &str) -> BTreeSet<Uin> {
    text.split(',')
        .filter_map(|s| s.parse().ok())
        .map(Uin)
        .collect()
}

fn call_row(row: &Row<'_>) -> rusqlite::Result<Call> {
    let status = match row.get::<_, i64>(3)? {
        1 => CallStatus::Ongoing,
        2 => CallStatus::Timeout,
        _ => CallStatus::Finished,
    };
    Ok(Call {
        call_id: row.get::<_, i64>(0)? as u64,
        group_id: GroupId(row.get::<_, i64>(1)? as u64),
        media_type: row.get::<_, i64>(2)? as u8,
        status,
        caller: Uin(row.get::<_, i64>(4)? as u64),
        callees: split(&row.get::<_, String>(5)?),
        accepted: split(&row.get::<_, String>(6)?),
        declined: split(&row.get::<_, String>(7)?),
        extra: row.get::<_, Option<String>>(8)?.map(Json::from_validated),
        started_at_us: row.get(9)?,
        accepted_at_us: row.get(10)?,
        stopped_at_us: row.get(11)?,
    })
}

#[async_trait]
impl CallStore for SqliteStore {
    async fn insert_call(&self, call: Call) -> StoreResult<Call> {
        let group = to_sql_id(call.group_id.0)?;
        let caller = to_sql_id(call.caller.0)?;
        self.write(move |conn| {
            exec(conn,
                "INSERT INTO calls (group_id, media_type, status, caller, callees, accepted, declined,
                    extra, started_at, accepted_at, stopped_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                params![
                    group,
                    call.media_type,
                    call.status as i64,
                    caller,
                    join(&call.callees),
                    join(&call.accepted),
                    join(&call.declined),
                    call.extra.as_ref().map(|e| e.as_str()),
                    call.started_at_us,
                    call.accepted_at_us,
                    call.stopped_at_us
                ],
            )
            .map_err(backend)?;
            Ok(Call {
                call_id: conn.last_insert_rowid() as u64,
                ..call
            })
        })
        .await
    }

    async fn update_call(&self, call: Call) -> StoreResult<()> {
        let id = to_sql_id(call.call_id)?;
        self.write(move |conn| {
            one_row(exec(
                conn,
                "UPDATE calls SET status = ?2, accepted = ?3, declined = ?4, accepted_at = ?5,
                        stopped_at = ?6 WHERE call_id = ?1",
                params![
                    id,
                    call.status as i64,
                    join(&call.accepted),
                    join(&call.declined),
                    call.accepted_at_us,
                    call.stopped_at_us
                ],
            ))?;
            Ok(())
        })
        .await
    }

    async fn call(&self, call_id: u64) -> StoreResult<Option<Call>> {
        let id = to_sql_id(call_id)?;
        self.read(move |conn| {
            query_row(
                conn,
                &format!("SELECT {COLUMNS} FROM calls WHERE call_id = ?1"),
                [id],
                call_row,
            )
            .optional()
        })
        .await
    }
}
