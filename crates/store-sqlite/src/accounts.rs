//! `AccountStore` on SQLite.

use async_trait::async_trait;
use confer_core::model::{Account, NewAccount, Presence};
use confer_core::store::{AccountStore, StoreResult};
use confer_core::Uin;
use rusqlite::{params, OptionalExtension, Row};

use crate::{backend, conflict_or_backend, exec, query_row, to_sql_id, SqliteStore};

const COLUMNS: &str = "uin, login, name, avatar_url, password_hash, created_at";

fn account(row: &Row<'_>) -> rusqlite::Result<Account> {
    Ok(Account {
        uin: Uin(row.get::<_, i64>(0)? as u64),
        login: row.get(1)?,
        name: row.get(2)?,
        avatar_url: row.get(3)?,
        password_hash: row.get(4)?,
        created_at_us: row.get(5)?,
    })
}

#[async_trait]
impl AccountStore for SqliteStore {
    async fn create_account(&self, new: NewAccount) -> StoreResult<Account> {
        let uin = new.uin.map(|u| to_sql_id(u.0)).transpose()?;
        self.write(move |conn| {
            exec(
                conn,
                "INSERT INTO accounts (uin, login, name, password_hash, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    uin,
                    new.login,
                    new.name,
                    new.password_hash,
                    new.created_at_us
                ],
            )
            .map_err(|e| conflict_or_backend(e, "login or uin"))?;
            let uin = conn.last_insert_rowid();
            query_row(
                conn,
                &format!("SELECT {COLUMNS} FROM accounts WHERE uin = ?1"),
                [uin],
                account,
            )
            .map_err(backend)
        })
        .await
    }

    async fn account_by_login(&self, login: &str) -> StoreResult<Option<Account>> {
        let login = login.to_string();
        self.read(move |conn| {
            query_row(
                conn,
                &format!("SELECT {COLUMNS} FROM accounts WHERE login = ?1"),
                [login],
                account,
            )
            .optional()
        })
        .await
    }

    async fn account_by_uin(&self, uin: Uin) -> StoreResult<Option<Account>> {
        let uin = to_sql_id(uin.0)?;
        self.read(move |conn| {
            query_row(
                conn,
                &format!("SELECT {COLUMNS} FROM accounts WHERE uin = ?1"),
                [uin],
                account,
            )
            .optional()
        })
        .await
    }

    async fn list_accounts(&self) -> StoreResult<Vec<Account>> {
        self.read(|conn| {
            let mut stmt = conn.prepare(&format!("SELECT {COLUMNS} FROM accounts ORDER BY uin"))?;
            let rows = stmt.query_map([], account)?;
            rows.collect()
        })
        .await
    }

    async fn set_password_hash(&self, uin: Uin, password_hash: String) -> StoreResult<()> {
        let uin = to_sql_id(uin.0)?;
        self.write(move |conn| {
            let n = conn
                .execute(
                    "UPDATE accounts SET password_hash = ?1 WHERE uin = ?2",
                    params![password_hash, uin],
                )
                .map_err(backend)?;
            if n == 0 {
                return Err(confer_core::store::StoreError::NotFound);
            }
            Ok(())
        })
        .await
    }

    async fn set_last_seen(&self, uin: Uin, at_us: i64) -> StoreResult<()> {
        let uin = to_sql_id(uin.0)?;
        self.write(move |conn| {
            exec(
                conn,
                "UPDATE accounts SET last_seen = ?1 WHERE uin = ?2",
                params![at_us, uin],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn last_seen(&self, uin: Uin) -> StoreResult<Option<i64>> {
        let uin = to_sql_id(uin.0)?;
        self.read(move |conn| {
            query_row(
                conn,
                "SELECT last_seen FROM accounts WHERE uin = ?1",
                [uin],
                |r| r.get(0),
            )
            .optional()
            .map(Option::flatten)
        })
        .await
    }

    async fn set_presence(
        &self,
        uin: Uin,
        online_status: u8,
        message_status: String,
    ) -> StoreResult<()> {
        let uin = to_sql_id(uin.0)?;
        self.write(move |conn| {
            exec(
                conn,
                "UPDATE accounts SET online_status = ?1, message_status = ?2 WHERE uin = ?3",
                params![online_status as i64, message_status, uin],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn set_profile(
        &self,
        uin: Uin,
        name: Option<String>,
        avatar_url: Option<String>,
    ) -> StoreResult<()> {
        let uin = to_sql_id(uin.0)?;
        self.write(move |conn| {
            let n = exec(
                conn,
                "UPDATE accounts SET name = ?2, avatar_url = ?3 WHERE uin = ?1",
                params![uin, name, avatar_url],
            )
            .map_err(backend)?;
            if n == 0 {
                return Err(confer_core::store::StoreError::NotFound);
            }
            Ok(())
        })
        .await
    }

    async fn presences(&self, uins: Vec<Uin>) -> StoreResult<Vec<Presence>> {
        let ids = uins
            .iter()
            .map(|u| to_sql_id(u.0))
            .collect::<StoreResult<Vec<i64>>>()?;
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT online_status, message_status, last_seen FROM accounts WHERE uin = ?1",
            )?;
            let mut found = Vec::with_capacity(ids.len());
            for id in ids {
                let row = stmt
                    .query_row([id], |r| {
                        Ok(Presence {
                            uin: Uin(id as u64),
                            online_status: u8::try_from(r.get::<_, i64>(0)?).unwrap_or(1),
                            message_status: r.get(1)?,
                            last_seen_at_us: r.get(2)?,
                        })
                    })
                    .optional()?;
                found.extend(row);
            }
            Ok(found)
        })
        .await
    }
}
