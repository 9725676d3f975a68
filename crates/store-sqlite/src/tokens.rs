//! `TokenStore` on SQLite: only token hashes are stored. A revoked token is deleted and
//! its hash kept for an hour in `token_revocations`, in the same write, so that a server
//! on this folder learns of a revocation made by another process (`confer user passwd`)
//! from one indexed read instead of reading again every token its sessions hold.

use async_trait::async_trait;
use confer_core::model::{now_us, TokenRecord};
use confer_core::store::{StoreResult, TokenStore, TOKEN_REVOCATIONS_KEPT_US};
use confer_core::Uin;
use rusqlite::{params, Connection, OptionalExtension};

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
        self.write(move |conn| Ok(revoke(conn, "token_hash = ?1", &token_hash[..])? > 0))
            .await
    }

    async fn live_tokens(
        &self,
        token_hashes: Vec<[u8; 32]>,
        now_us: i64,
    ) -> StoreResult<Vec<([u8; 32], i64)>> {
        self.read(move |conn| {
            let mut live = Vec::with_capacity(token_hashes.len());
            let mut stmt = conn.prepare_cached(
                "SELECT expires_at FROM tokens WHERE token_hash = ?1 AND expires_at > ?2",
            )?;
            for hash in token_hashes {
                let expires: Option<i64> = stmt
                    .query_row(params![&hash[..], now_us], |r| r.get(0))
                    .optional()?;
                if let Some(expires) = expires {
                    live.push((hash, expires));
                }
            }
            Ok(live)
        })
        .await
    }

    async fn delete_tokens_of(&self, uin: Uin) -> StoreResult<usize> {
        let uin = to_sql_id(uin.0)?;
        self.write(move |conn| revoke(conn, "uin = ?1", uin)).await
    }

    async fn revoked_tokens(&self, since_us: i64, limit: usize) -> StoreResult<Vec<[u8; 32]>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT token_hash FROM token_revocations WHERE revoked_at >= ?1 LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![since_us, limit], |r| r.get::<_, Vec<u8>>(0))?;
            let mut revoked = Vec::new();
            for row in rows {
                if let Ok(hash) = <[u8; 32]>::try_from(row?.as_slice()) {
                    revoked.push(hash);
                }
            }
            Ok(revoked)
        })
        .await
    }
}

/// Delete the tokens `which` (a condition on `tokens` with one parameter) selects,
/// recording each as revoked now, and forget revocations older than
/// [`TOKEN_REVOCATIONS_KEPT_US`]; how many were deleted.
fn revoke(conn: &Connection, which: &str, param: impl rusqlite::ToSql) -> StoreResult<usize> {
    let now = now_us();
    exec(
        conn,
        "DELETE FROM token_revocations WHERE revoked_at < ?1",
        [now.saturating_sub(TOKEN_REVOCATIONS_KEPT_US)],
    )
    .map_err(backend)?;
    let record = format!(
        "INSERT INTO token_revocations (token_hash, revoked_at)
         SELECT token_hash, ?2 FROM tokens WHERE {which}"
    );
    exec(conn, &record, params![&param, now]).map_err(backend)?;
    exec(conn, &format!("DELETE FROM tokens WHERE {which}"), [param]).map_err(backend)
}
