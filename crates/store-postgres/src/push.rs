//! The push outbox on PostgreSQL: **not ported yet**, but for `token_holders`, which every
//! post asks while push is on. The outbox methods answer a backend error saying so, and
//! `confer serve` refuses push providers with a `database_url` (`crates/server/src/lib.rs`),
//! so nothing is ever queued here.

use async_trait::async_trait;
use confer_core::model::{PushDelivery, PushEntry};
use confer_core::store::{PushStore, StoreError, StoreResult};
use confer_core::Uin;

use crate::{backend, from_sql_id, to_sql_id, PgStore};

fn not_ported<T>() -> StoreResult<T> {
    Err(StoreError::Backend(
        "the push outbox is not available on PostgreSQL yet".into(),
    ))
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
    async fn enqueue_push(&self, _entry: PushEntry) -> StoreResult<()> {
        not_ported()
    }
    async fn push_entries(&self, _limit: usize) -> StoreResult<Vec<PushEntry>> {
        not_ported()
    }
    async fn expand_push(
        &self,
        _entry_id: u64,
        _deliveries: Vec<PushDelivery>,
        _cancel_call: Option<u64>,
    ) -> StoreResult<()> {
        not_ported()
    }
    async fn due_pushes(&self, _now_us: i64, _limit: usize) -> StoreResult<Vec<PushDelivery>> {
        not_ported()
    }
    async fn next_push_at(&self) -> StoreResult<Option<i64>> {
        not_ported()
    }
    async fn push_done(&self, _id: u64) -> StoreResult<()> {
        not_ported()
    }
    async fn push_retry(&self, _id: u64, _attempts: u32, _next_at_us: i64) -> StoreResult<()> {
        not_ported()
    }
    async fn remove_dead_token(&self, _token: &str) -> StoreResult<()> {
        not_ported()
    }
}
