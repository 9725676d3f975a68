//! `DeviceTokenStore` on SQLite: push tokens, one owner per token.

use async_trait::async_trait;
use confer_core::model::DeviceToken;
use confer_core::store::{DeviceTokenStore, StoreResult};
use confer_core::Uin;
use rusqlite::params;

use crate::{backend, exec, to_sql_id, SqliteStore};

#[async_trait]
impl DeviceTokenStore for SqliteStore {
    async fn register_token(&self, token: DeviceToken) -> StoreResult<()> {
        let uin = to_sql_id(token.uin.0)?;
        let token_for_write = token.clone();
        self.write(move |conn| {
            let token = token_for_write;
            // A device that changes hands belongs to its newest user.
            exec(
                conn,
                "INSERT INTO device_tokens (token, uin, kind) VALUES (?1, ?2, ?3)
                 ON CONFLICT(token) DO UPDATE SET uin = excluded.uin, kind = excluded.kind",
                params![token.token, uin, token.kind],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await?;
        self.token_holders.add(token.uin);
        Ok(())
    }

    async fn unregister_token(&self, uin: Uin, token: &str) -> StoreResult<bool> {
        let uin = to_sql_id(uin.0)?;
        let token = token.to_string();
        self.write(move |conn| {
            let n = conn
                .execute(
                    "DELETE FROM device_tokens WHERE token = ?1 AND uin = ?2",
                    params![token, uin],
                )
                .map_err(backend)?;
            Ok(n > 0)
        })
        .await
    }

    async fn device_tokens(&self, uin: Uin) -> StoreResult<Vec<DeviceToken>> {
        let me = to_sql_id(uin.0)?;
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT token, kind FROM device_tokens WHERE uin = ?1 ORDER BY token",
            )?;
            let rows = stmt.query_map([me], |r| {
                Ok(DeviceToken {
                    uin,
                    token: r.get(0)?,
                    kind: r.get::<_, i64>(1)? as u8,
                })
            })?;
            rows.collect()
        })
        .await
    }
}
