//! `TokenStore` on PostgreSQL: only token hashes are stored, so a token issued by one node
//! logs in on every other. A revoked token is deleted and its hash kept for an hour in
//! `token_revocations`, in the same transaction, so that every node learns of it from one
//! indexed read instead of reading again every token its sessions hold.

use async_trait::async_trait;
use confer_core::model::{now_us, TokenRecord};
use confer_core::store::{StoreResult, TokenStore, TOKEN_REVOCATIONS_KEPT_US};
use confer_core::Uin;
use tokio_postgres::types::ToSql;
use tokio_postgres::Transaction;

use crate::{backend, from_sql_id, to_sql_id, PgStore};

#[async_trait]
impl TokenStore for PgStore {
    async fn insert_token(&self, token: TokenRecord) -> StoreResult<()> {
        let uin = to_sql_id(token.uin.0)?;
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(backend)?;
        // Expired tokens are swept as new ones arrive, so the table stays small.
        tx.execute("DELETE FROM tokens WHERE expires_at < $1", &[&now_us()])
            .await
            .map_err(backend)?;
        tx.execute(
            "INSERT INTO tokens (token_hash, uin, login, expires_at) VALUES ($1, $2, $3, $4)",
            &[
                &&token.token_hash[..],
                &uin,
                &token.login,
                &token.expires_at_us,
            ],
        )
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)
    }

    async fn token(&self, token_hash: [u8; 32], now_us: i64) -> StoreResult<Option<TokenRecord>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT uin, login, expires_at FROM tokens WHERE token_hash = $1 AND expires_at > $2",
                &[&&token_hash[..], &now_us],
            )
            .await
            .map_err(backend)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let record = (|| {
            Ok::<_, tokio_postgres::Error>(TokenRecord {
                token_hash,
                uin: Uin(from_sql_id(row.try_get(0)?)),
                login: row.try_get(1)?,
                expires_at_us: row.try_get(2)?,
            })
        })()
        .map_err(backend)?;
        Ok(Some(record))
    }

    async fn delete_token(&self, token_hash: [u8; 32]) -> StoreResult<bool> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(backend)?;
        let n = revoke(&tx, "token_hash = $1", &&token_hash[..]).await?;
        tx.commit().await.map_err(backend)?;
        Ok(n > 0)
    }

    async fn live_tokens(
        &self,
        token_hashes: Vec<[u8; 32]>,
        now_us: i64,
    ) -> StoreResult<Vec<([u8; 32], i64)>> {
        if token_hashes.is_empty() {
            return Ok(Vec::new());
        }
        let hashes: Vec<&[u8]> = token_hashes.iter().map(|h| &h[..]).collect();
        let client = self.client().await?;
        // One query for the lot, each an index lookup.
        let rows = client
            .query(
                "SELECT token_hash, expires_at FROM tokens WHERE token_hash = ANY($1) AND expires_at > $2",
                &[&hashes, &now_us],
            )
            .await
            .map_err(backend)?;
        let mut live = Vec::with_capacity(rows.len());
        for row in rows {
            let bytes: &[u8] = row.try_get(0).map_err(backend)?;
            let expires: i64 = row.try_get(1).map_err(backend)?;
            if let Ok(hash) = <[u8; 32]>::try_from(bytes) {
                live.push((hash, expires));
            }
        }
        Ok(live)
    }

    async fn delete_tokens_of(&self, uin: Uin) -> StoreResult<usize> {
        let uin = to_sql_id(uin.0)?;
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(backend)?;
        let n = revoke(&tx, "uin = $1", &uin).await?;
        tx.commit().await.map_err(backend)?;
        Ok(n)
    }

    async fn revoked_tokens(&self, since_us: i64, limit: usize) -> StoreResult<Vec<[u8; 32]>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT token_hash FROM token_revocations WHERE revoked_at >= $1 LIMIT $2",
                &[&since_us, &limit],
            )
            .await
            .map_err(backend)?;
        let mut revoked = Vec::with_capacity(rows.len());
        for row in rows {
            let bytes: &[u8] = row.try_get(0).map_err(backend)?;
            if let Ok(hash) = <[u8; 32]>::try_from(bytes) {
                revoked.push(hash);
            }
        }
        Ok(revoked)
    }
}

/// Delete the tokens `which` (a condition on `tokens` with one parameter) selects,
/// recording each as revoked now, and forget revocations older than
/// [`TOKEN_REVOCATIONS_KEPT_US`]; how many were deleted.
async fn revoke(
    tx: &Transaction<'_>,
    which: &str,
    param: &(dyn ToSql + Sync),
) -> StoreResult<usize> {
    let now = now_us();
    tx.execute(
        "DELETE FROM token_revocations WHERE revoked_at < $1",
        &[&now.saturating_sub(TOKEN_REVOCATIONS_KEPT_US)],
    )
    .await
    .map_err(backend)?;
    let deleted = format!(
        "WITH gone AS (DELETE FROM tokens WHERE {which} RETURNING token_hash)
         INSERT INTO token_revocations (token_hash, revoked_at) SELECT token_hash, $2 FROM gone"
    );
    let n = tx
        .execute(&deleted, &[param, &now])
        .await
        .map_err(backend)?;
    Ok(usize::try_from(n).unwrap_or(usize::MAX))
}
