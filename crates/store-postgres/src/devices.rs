//! `DeviceTokenStore` on PostgreSQL: push tokens, one owner per token.

use async_trait::async_trait;
use confer_core::model::DeviceToken;
use confer_core::store::{DeviceTokenStore, StoreResult};
use confer_core::Uin;

use crate::{backend, to_sql_id, PgStore};

#[async_trait]
impl DeviceTokenStore for PgStore {
    async fn register_token(&self, token: DeviceToken) -> StoreResult<()> {
        let uin = to_sql_id(token.uin.0)?;
        let kind = i64::from(token.kind);
        let client = self.client().await?;
        // A device that changes hands belongs to its newest user.
        client
            .execute(
                "INSERT INTO device_tokens (token, uin, kind) VALUES ($1, $2, $3)
                 ON CONFLICT (token) DO UPDATE SET uin = excluded.uin, kind = excluded.kind",
                &[&token.token, &uin, &kind],
            )
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn unregister_token(&self, uin: Uin, token: &str) -> StoreResult<bool> {
        let uin = to_sql_id(uin.0)?;
        let client = self.client().await?;
        let n = client
            .execute(
                "DELETE FROM device_tokens WHERE token = $1 AND uin = $2",
                &[&token, &uin],
            )
            .await
            .map_err(backend)?;
        Ok(n > 0)
    }

    async fn device_tokens(&self, uin: Uin) -> StoreResult<Vec<DeviceToken>> {
        let me = to_sql_id(uin.0)?;
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT token, kind FROM device_tokens WHERE uin = $1 ORDER BY token",
                &[&me],
            )
            .await
            .map_err(backend)?;
        rows.iter()
            .map(|r| {
                Ok(DeviceToken {
                    uin,
                    token: r.try_get(0)?,
                    kind: u8::try_from(r.try_get::<_, i64>(1)?).unwrap_or(0),
                })
            })
            .collect::<Result<_, tokio_postgres::Error>>()
            .map_err(backend)
    }
}
