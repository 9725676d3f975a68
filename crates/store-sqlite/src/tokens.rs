//! `TokenStore` on SQLite: only token hashes are stored.

use async_trait::async_trait;
use confer_core::model::{now_us, TokenRecord};
use confer_core::store::{StoreResult, TokenStore};
use confer_core::Uin;
use rusqlite::{params, OptionalExtension};

use crate::{backend, exec, query_row, to_sql_id, SqliteStore};

#[async_trait]
impl TokenStore for SqliteStore {
    async fn insert_token(&self, token: TokenRecord) -> StoreResult<()> {
        let uin = to_sql_id(token.uin.0)?;
        self.write(move |conn| {
            // Expired tokens are swept as new ones arrive, so the table stays small.
            exec(conn, "DELETE FROM tokens WHERE expires_at < ?1", [now_us()]).map_err(backend)?;
            exec(
                conn,
                "INSERT INTO tokens (token_hash, uin, login, expires_at) VALUES (?1, ?2, ?3, ?4)",
                params![&token.token_hash[..], uin, token.login, token.expires_at_us],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn token(&self, token_hash: [u8; 32], now_us: i64) -> StoreResult<Option<TokenRecord>> {
        self.read(move |conn| {
            query_row(conn,
                "SELECT uin, login, expires_at FROM tokens WHERE token_hash = ?1 AND expires_at > ?2",
                params![&token_hash[..], now_us],
                |row| {
                    Ok(TokenRecord {
                        token_hash,
                        uin: Uin(row.get::<_, i64>(0)? as u64),
                        login: row.get(1)?,
                        expires_at_us: row.get(2)?,
                    })
                },
            )
            .optional()
        })
        .await
    }

    async fn delete_token(&self, token_hash: [u8; 32]) -> StoreResult<bool> {
        self.write(move |conn| {
            let n = conn
                .execute(
                    "DELETE FROM tokens WHERE token_hash = ?1",
                    [&token_hash[..]],
                )
                .map_err(backend)?;
            Ok(n > 0)
        })
        .await
    }

    async fn live_tokens(
        &self,
        token_hashes: Vec<[u8; 32]>,
        now_us: i64,
    ) -> StoreResult<Vec<[u8; 32]>> {
        self.read(move |conn| {
            let mut live = Vec::with_capacity(token_hashes.len());
            let mut stmt = conn
                .prepare_cached("SELECT 1 FROM tokens WHERE token_hash = ?1 AND expires_at > ?2")?;
            for hash in token_hashes {
                if stmt.exists(params![&hash[..], now_us])? {
                    live.push(hash);
                }
            }
            Ok(live)
        })
        .await
    }

    async fn delete_tokens_of(&self, uin: Uin) -> StoreResult<usize> {
        let uin = to_sql_id(uin.0)?;
        self.write(move |conn| {
            conn.execute("DELETE FROM tokens WHERE uin = ?1", [uin])
                .map_err(backend)
        })
        .await
    }
}
