//! `AccountStore` on PostgreSQL.

use async_trait::async_trait;
use confer_core::model::{Account, NewAccount, Presence};
use confer_core::store::{AccountStore, StoreError, StoreResult};
use confer_core::Uin;
use tokio_postgres::Row;

use crate::{backend, conflict_or_backend, from_sql_id, one_row, to_sql_id, PgStore};

const COLUMNS: &str = "uin, login, name, avatar_url, password_hash, created_at";

fn account(row: &Row) -> Result<Account, tokio_postgres::Error> {
    Ok(Account {
        uin: Uin(from_sql_id(row.try_get(0)?)),
        login: row.try_get(1)?,
        name: row.try_get(2)?,
        avatar_url: row.try_get(3)?,
        password_hash: row.try_get(4)?,
        created_at_us: row.try_get(5)?,
    })
}

#[async_trait]
impl AccountStore for PgStore {
    async fn create_account(&self, new: NewAccount) -> StoreResult<Account> {
        let uin = new.uin.map(|u| to_sql_id(u.0)).transpose()?;
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(backend)?;
        // A uin left out is one past the largest, as SQLite's rowids are; the lock makes
        // two nodes creating accounts at once take turns (accounts are made rarely).
        tx.batch_execute("LOCK TABLE accounts IN SHARE ROW EXCLUSIVE MODE")
            .await
            .map_err(backend)?;
        let row = tx
            .query_one(
                &format!(
                    "INSERT INTO accounts (uin, login, name, password_hash, created_at)
                     VALUES (COALESCE($1, (SELECT COALESCE(MAX(uin), 0) + 1 FROM accounts)),
                             $2, $3, $4, $5)
                     RETURNING {COLUMNS}"
                ),
                &[
                    &uin,
                    &new.login,
                    &new.name,
                    &new.password_hash,
                    &new.created_at_us,
                ],
            )
            .await
            .map_err(|e| conflict_or_backend(e, "login or uin"))?;
        let created = account(&row).map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(created)
    }

    async fn account_by_login(&self, login: &str) -> StoreResult<Option<Account>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                &format!("SELECT {COLUMNS} FROM accounts WHERE login = $1"),
                &[&login],
            )
            .await
            .map_err(backend)?;
        row.as_ref().map(account).transpose().map_err(backend)
    }

    async fn account_by_uin(&self, uin: Uin) -> StoreResult<Option<Account>> {
        let uin = to_sql_id(uin.0)?;
        let client = self.client().await?;
        // On every post's path (the sender's name): prepared once per connection.
        let stmt = client
            .prepare_cached(&format!("SELECT {COLUMNS} FROM accounts WHERE uin = $1"))
            .await
            .map_err(backend)?;
        let row = client.query_opt(&stmt, &[&uin]).await.map_err(backend)?;
        row.as_ref().map(account).transpose().map_err(backend)
    }

    async fn list_accounts(&self) -> StoreResult<Vec<Account>> {
        let client = self.client().await?;
        let rows = client
            .query(&format!("SELECT {COLUMNS} FROM accounts ORDER BY uin"), &[])
            .await
            .map_err(backend)?;
        rows.iter()
            .map(account)
            .collect::<Result<_, _>>()
            .map_err(backend)
    }

    async fn set_password_hash(&self, uin: Uin, password_hash: String) -> StoreResult<()> {
        let uin = to_sql_id(uin.0)?;
        let client = self.client().await?;
        one_row(
            client
                .execute(
                    "UPDATE accounts SET password_hash = $1 WHERE uin = $2",
                    &[&password_hash, &uin],
                )
                .await,
        )
    }

    async fn set_profile(
        &self,
        uin: Uin,
        name: Option<String>,
        avatar_url: Option<String>,
    ) -> StoreResult<()> {
        let uin = to_sql_id(uin.0)?;
        let client = self.client().await?;
        let n = client
            .execute(
                "UPDATE accounts SET name = $2, avatar_url = $3 WHERE uin = $1",
                &[&uin, &name, &avatar_url],
            )
            .await
            .map_err(backend)?;
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn set_last_seen(&self, uin: Uin, at_us: i64) -> StoreResult<()> {
        let uin = to_sql_id(uin.0)?;
        let client = self.client().await?;
        client
            .execute(
                "UPDATE accounts SET last_seen = $1 WHERE uin = $2",
                &[&at_us, &uin],
            )
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn last_seen(&self, uin: Uin) -> StoreResult<Option<i64>> {
        let uin = to_sql_id(uin.0)?;
        let client = self.client().await?;
        let row = client
            .query_opt("SELECT last_seen FROM accounts WHERE uin = $1", &[&uin])
            .await
            .map_err(backend)?;
        match row {
            Some(row) => row.try_get::<_, Option<i64>>(0).map_err(backend),
            None => Ok(None),
        }
    }

    async fn set_presence(
        &self,
        uin: Uin,
        online_status: u8,
        message_status: String,
    ) -> StoreResult<()> {
        let uin = to_sql_id(uin.0)?;
        let client = self.client().await?;
        client
            .execute(
                "UPDATE accounts SET online_status = $1, message_status = $2 WHERE uin = $3",
                &[&i64::from(online_status), &message_status, &uin],
            )
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn presences(&self, uins: Vec<Uin>) -> StoreResult<Vec<Presence>> {
        let ids = uins
            .iter()
            .map(|u| to_sql_id(u.0))
            .collect::<StoreResult<Vec<i64>>>()?;
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT uin, online_status, message_status, last_seen FROM accounts
                 WHERE uin = ANY($1) ORDER BY uin",
                &[&ids],
            )
            .await
            .map_err(backend)?;
        rows.iter()
            .map(|r| {
                Ok(Presence {
                    uin: Uin(from_sql_id(r.try_get(0)?)),
                    online_status: u8::try_from(r.try_get::<_, i64>(1)?).unwrap_or(1),
                    message_status: r.try_get(2)?,
                    last_seen_at_us: r.try_get(3)?,
                })
            })
            .collect::<Result<Vec<_>, tokio_postgres::Error>>()
            .map_err(backend)
    }
}
