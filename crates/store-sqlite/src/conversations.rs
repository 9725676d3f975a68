//! `ConversationStore` on SQLite: conversations and their occupants.

use std::collections::BTreeSet;

use async_trait::async_trait;
use confer_core::model::{Conversation, ConversationKind, NewConversation};
use confer_core::store::{ConversationStore, StoreError, StoreResult};
use confer_core::{GroupId, Uin};
use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::{backend, conflict_or_backend, to_sql_id, SqliteStore};

/// The `kind` column: chat group types keep the Chat API's numbers.
const KIND_PRIVATE: i64 = 1;
const KIND_GROUP: i64 = 2;
const KIND_PUBLIC: i64 = 3;
const KIND_CONFERENCE: i64 = 10;

const COLUMNS: &str = "group_id, alias, kind, conf_class, name, owner, creator, created_at, \
                       updated_at, last_seq, destroyed";

fn kind_columns(kind: &ConversationKind) -> (i64, Option<String>) {
    match kind {
        ConversationKind::Private => (KIND_PRIVATE, None),
        ConversationKind::Group => (KIND_GROUP, None),
        ConversationKind::Public => (KIND_PUBLIC, None),
        ConversationKind::Conference { class } => (KIND_CONFERENCE, Some(class.clone())),
    }
}

fn conversation_row(row: &Row<'_>) -> rusqlite::Result<Conversation> {
    let kind = match row.get::<_, i64>(2)? {
        KIND_PRIVATE => ConversationKind::Private,
        KIND_GROUP => ConversationKind::Group,
        KIND_PUBLIC => ConversationKind::Public,
        _ => ConversationKind::Conference {
            class: row.get::<_, Option<String>>(3)?.unwrap_or_default(),
        },
    };
    Ok(Conversation {
        group_id: GroupId(row.get::<_, i64>(0)? as u64),
        alias: row.get(1)?,
        kind,
        name: row.get(4)?,
        owner: Uin(row.get::<_, i64>(5)? as u64),
        creator: Uin(row.get::<_, i64>(6)? as u64),
        occupants: BTreeSet::new(),
        created_at_us: row.get(7)?,
        updated_at_us: row.get(8)?,
        last_seq: row.get::<_, i64>(9)? as u64,
        destroyed: row.get::<_, i64>(10)? != 0,
    })
}

/// Load one conversation with its occupants.
fn load(
    conn: &Connection,
    where_clause: &str,
    key: &dyn rusqlite::ToSql,
) -> rusqlite::Result<Option<Conversation>> {
    let Some(mut conv) = conn
        .query_row(
            &format!("SELECT {COLUMNS} FROM conversations WHERE {where_clause}"),
            [key],
            conversation_row,
        )
        .optional()?
    else {
        return Ok(None);
    };
    conv.occupants = occupants(conn, conv.group_id)?;
    Ok(Some(conv))
}

fn occupants(conn: &Connection, id: GroupId) -> rusqlite::Result<BTreeSet<Uin>> {
    let mut stmt = conn.prepare_cached("SELECT uin FROM occupants WHERE group_id = ?1")?;
    let rows = stmt.query_map([id.0 as i64], |r| Ok(Uin(r.get::<_, i64>(0)? as u64)))?;
    rows.collect()
}

#[async_trait]
impl ConversationStore for SqliteStore {
    async fn create_conversation(&self, new: NewConversation) -> StoreResult<Conversation> {
        let owner = to_sql_id(new.owner.0)?;
        let occupants: Vec<i64> = new
            .occupants
            .iter()
            .map(|u| to_sql_id(u.0))
            .collect::<StoreResult<_>>()?;
        self.write(move |conn| {
            let (kind, class) = kind_columns(&new.kind);
            conn.execute(
                "INSERT INTO conversations (alias, kind, conf_class, name, owner, creator, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6, ?6)",
                params![new.alias, kind, class, new.name, owner, new.created_at_us],
            )
            .map_err(|e| conflict_or_backend(e, "alias"))?;
            let id = conn.last_insert_rowid();
            for uin in occupants {
                conn.execute(
                    "INSERT OR IGNORE INTO occupants (group_id, uin, joined_at) VALUES (?1, ?2, ?3)",
                    params![id, uin, new.created_at_us],
                )
                .map_err(backend)?;
            }
            load(conn, "group_id = ?1", &id)
                .map_err(backend)?
                .ok_or(StoreError::NotFound)
        })
        .await
    }

    async fn conversation(&self, id: GroupId) -> StoreResult<Option<Conversation>> {
        let id = to_sql_id(id.0)?;
        self.read(move |conn| load(conn, "group_id = ?1", &id))
            .await
    }

    async fn conversation_by_alias(&self, alias: &str) -> StoreResult<Option<Conversation>> {
        let alias = alias.to_string();
        self.read(move |conn| load(conn, "alias = ?1", &alias))
            .await
    }

    async fn list_conferences(&self, member: Option<Uin>) -> StoreResult<Vec<Conversation>> {
        let member = member.map(|u| to_sql_id(u.0)).transpose()?;
        self.read(move |conn| {
            let mut list: Vec<Conversation> = match member {
                Some(uin) => conn
                    .prepare_cached(&format!(
                        "SELECT {COLUMNS} FROM conversations WHERE kind = {KIND_CONFERENCE}
                         AND group_id IN (SELECT group_id FROM occupants WHERE uin = ?1)
                         ORDER BY group_id"
                    ))?
                    .query_map([uin], conversation_row)?
                    .collect::<rusqlite::Result<_>>()?,
                None => conn
                    .prepare_cached(&format!(
                        "SELECT {COLUMNS} FROM conversations WHERE kind = {KIND_CONFERENCE}
                         ORDER BY group_id"
                    ))?
                    .query_map([], conversation_row)?
                    .collect::<rusqlite::Result<_>>()?,
            };
            for conv in &mut list {
                conv.occupants = occupants(conn, conv.group_id)?;
            }
            Ok(list)
        })
        .await
    }

    async fn add_occupant(&self, id: GroupId, uin: Uin, now_us: i64) -> StoreResult<()> {
        let (id, uin) = (to_sql_id(id.0)?, to_sql_id(uin.0)?);
        self.write(move |conn| {
            conn.execute(
                "INSERT OR IGNORE INTO occupants (group_id, uin, joined_at) VALUES (?1, ?2, ?3)",
                params![id, uin, now_us],
            )
            .map_err(backend)?;
            touch(conn, id, now_us)
        })
        .await
    }

    async fn remove_occupant(&self, id: GroupId, uin: Uin, now_us: i64) -> StoreResult<()> {
        let (id, uin) = (to_sql_id(id.0)?, to_sql_id(uin.0)?);
        self.write(move |conn| {
            conn.execute(
                "DELETE FROM occupants WHERE group_id = ?1 AND uin = ?2",
                params![id, uin],
            )
            .map_err(backend)?;
            touch(conn, id, now_us)
        })
        .await
    }

    async fn mark_destroyed(&self, id: GroupId, now_us: i64) -> StoreResult<()> {
        let id = to_sql_id(id.0)?;
        self.write(move |conn| {
            conn.execute(
                "UPDATE conversations SET destroyed = 1 WHERE group_id = ?1",
                [id],
            )
            .map_err(backend)?;
            touch(conn, id, now_us)
        })
        .await
    }
}

fn touch(conn: &Connection, id: i64, now_us: i64) -> StoreResult<()> {
    let n = conn
        .execute(
            "UPDATE conversations SET updated_at = ?2 WHERE group_id = ?1",
            params![id, now_us],
        )
        .map_err(backend)?;
    if n == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}
