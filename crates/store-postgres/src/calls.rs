//! `CallStore` on PostgreSQL. Participant sets are stored as comma-separated numbers, as
//! the SQLite backend stores them (so `confer migrate` copies them as they are).

use std::collections::BTreeSet;

use async_trait::async_trait;
use confer_core::model::{Call, CallStatus};
use confer_core::store::{CallStore, StoreResult};
use confer_core::{GroupId, Json, Uin};
use tokio_postgres::Row;

use crate::{backend, from_sql_id, one_row, to_sql_id, PgStore};

const COLUMNS: &str = "call_id, group_id, media_type, status, caller, callees, accepted, \
                       declined, extra, started_at, accepted_at, stopped_at";

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

fn call_row(row: &Row) -> Result<Call, tokio_postgres::Error> {
    let status = match row.try_get::<_, i64>(3)? {
        1 => CallStatus::Ongoing,
        2 => CallStatus::Timeout,
        _ => CallStatus::Finished,
    };
    Ok(Call {
        call_id: from_sql_id(row.try_get(0)?),
        group_id: GroupId(from_sql_id(row.try_get(1)?)),
        media_type: u8::try_from(row.try_get::<_, i64>(2)?).unwrap_or(0),
        status,
        caller: Uin(from_sql_id(row.try_get(4)?)),
        callees: split(row.try_get(5)?),
        accepted: split(row.try_get(6)?),
        declined: split(row.try_get(7)?),
        // Stored extras were validated as JSON by the door that received them.
        extra: row
            .try_get::<_, Option<String>>(8)?
            .map(Json::from_validated),
        started_at_us: row.try_get(9)?,
        accepted_at_us: row.try_get(10)?,
        stopped_at_us: row.try_get(11)?,
    })
}

#[async_trait]
impl CallStore for PgStore {
    async fn insert_call(&self, call: Call) -> StoreResult<Call> {
        let group = to_sql_id(call.group_id.0)?;
        let caller = to_sql_id(call.caller.0)?;
        let client = self.client().await?;
        let row = client
            .query_one(
                "INSERT INTO calls (group_id, media_type, status, caller, callees, accepted,
                    declined, extra, started_at, accepted_at, stopped_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
                 RETURNING call_id",
                &[
                    &group,
                    &i64::from(call.media_type),
                    &(call.status as i64),
                    &caller,
                    &join(&call.callees),
                    &join(&call.accepted),
                    &join(&call.declined),
                    &call.extra.as_ref().map(|e| e.as_str()),
                    &call.started_at_us,
                    &call.accepted_at_us,
                    &call.stopped_at_us,
                ],
            )
            .await
            .map_err(crate::missing_or_backend)?;
        let call_id = from_sql_id(row.try_get(0).map_err(backend)?);
        Ok(Call { call_id, ..call })
    }

    async fn update_call(&self, call: Call) -> StoreResult<()> {
        let id = to_sql_id(call.call_id)?;
        let client = self.client().await?;
        one_row(
            client
                .execute(
                    "UPDATE calls SET status = $2, accepted = $3, declined = $4, accepted_at = $5,
                        stopped_at = $6 WHERE call_id = $1",
                    &[
                        &id,
                        &(call.status as i64),
                        &join(&call.accepted),
                        &join(&call.declined),
                        &call.accepted_at_us,
                        &call.stopped_at_us,
                    ],
                )
                .await,
        )
    }

    async fn call(&self, call_id: u64) -> StoreResult<Option<Call>> {
        let id = to_sql_id(call_id)?;
        let client = self.client().await?;
        let row = client
            .query_opt(
                &format!("SELECT {COLUMNS} FROM calls WHERE call_id = $1"),
                &[&id],
            )
            .await
            .map_err(backend)?;
        row.as_ref().map(call_row).transpose().map_err(backend)
    }
}
