//! `ConversationStore` on PostgreSQL: conversations and their occupants.
//!
//! Nothing is cached: another node may change a conversation at any time (SQLite's
//! conversation cache is correct only because its process is the sole writer).

use std::collections::BTreeSet;

use async_trait::async_trait;
use confer_core::model::{
    ChangedGroups, Conversation, ConversationKind, GroupListing, MemberState, NewConversation,
    ReadMark,
};
use confer_core::store::{ConversationStore, StoreError, StoreResult};
use confer_core::{GroupId, Uin};
use tokio_postgres::types::ToSql;
use tokio_postgres::{GenericClient, Row};

use crate::messages::message_row;
use crate::{
    backend, conflict_or_backend, from_sql_id, missing_or_backend, one_row, to_sql_id, PgStore,
};

/// The `kind` column: chat group types keep the Chat API's numbers (as in SQLite).
const KIND_PRIVATE: i64 = 1;
const KIND_GROUP: i64 = 2;
const KIND_PUBLIC: i64 = 3;
const KIND_CONFERENCE: i64 = 10;

const COLUMNS: &str = "group_id, alias, kind, conf_class, name, owner, creator, created_at, \
                       updated_at, destroyed, avatar_url";

type PgResult<T> = Result<T, tokio_postgres::Error>;

fn kind_columns(kind: &ConversationKind) -> (i64, Option<String>) {
    match kind {
        ConversationKind::Private => (KIND_PRIVATE, None),
        ConversationKind::Group => (KIND_GROUP, None),
        ConversationKind::Public => (KIND_PUBLIC, None),
        ConversationKind::Conference { class } => (KIND_CONFERENCE, Some(class.clone())),
    }
}

fn conversation_row(row: &Row) -> PgResult<Conversation> {
    let kind = match row.try_get::<_, i64>(2)? {
        KIND_PRIVATE => ConversationKind::Private,
        KIND_GROUP => ConversationKind::Group,
        KIND_PUBLIC => ConversationKind::Public,
        _ => ConversationKind::Conference {
            class: row.try_get::<_, Option<String>>(3)?.unwrap_or_default(),
        },
    };
    Ok(Conversation {
        group_id: GroupId(from_sql_id(row.try_get(0)?)),
        alias: row.try_get(1)?,
        kind,
        name: row.try_get(4)?,
        avatar_url: row.try_get(10)?,
        owner: Uin(from_sql_id(row.try_get(5)?)),
        creator: Uin(from_sql_id(row.try_get(6)?)),
        occupants: BTreeSet::new(),
        blocked: BTreeSet::new(),
        created_at_us: row.try_get(7)?,
        updated_at_us: row.try_get(8)?,
        destroyed: row.try_get(9)?,
        last_message_id: 0,
        // Change numbers and hidden private groups are not on PostgreSQL yet.
        change_seq: 0,
        hidden: BTreeSet::new(),
    })
}

fn uins(rows: &[Row]) -> PgResult<BTreeSet<Uin>> {
    rows.iter()
        .map(|r| Ok(Uin(from_sql_id(r.try_get(0)?))))
        .collect()
}

/// Load one conversation with its occupants.
async fn load<C: GenericClient + Sync>(
    client: &C,
    where_clause: &str,
    key: &(dyn ToSql + Sync),
) -> PgResult<Option<Conversation>> {
    let row = client
        .query_opt(
            &format!("SELECT {COLUMNS} FROM conversations WHERE {where_clause}"),
            &[key],
        )
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let mut conv = conversation_row(&row)?;
    fill(client, &mut conv).await?;
    Ok(Some(conv))
}

/// Load a conversation's occupants and blocked users.
async fn fill<C: GenericClient + Sync>(client: &C, conv: &mut Conversation) -> PgResult<()> {
    let id = from_group(conv.group_id);
    conv.occupants = occupants(client, id).await?;
    let rows = client
        .query("SELECT uin FROM blocks WHERE group_id = $1", &[&id])
        .await?;
    conv.blocked = uins(&rows)?;
    Ok(())
}

async fn occupants<C: GenericClient + Sync>(client: &C, id: i64) -> PgResult<BTreeSet<Uin>> {
    let rows = client
        .query("SELECT uin FROM occupants WHERE group_id = $1", &[&id])
        .await?;
    uins(&rows)
}

/// A group id read back from the database fits `BIGINT` (it came from there).
fn from_group(id: GroupId) -> i64 {
    i64::try_from(id.0).unwrap_or(i64::MAX)
}

async fn touch<C: GenericClient + Sync>(client: &C, id: i64, now_us: i64) -> StoreResult<()> {
    one_row(
        client
            .execute(
                "UPDATE conversations SET updated_at = $2 WHERE group_id = $1",
                &[&id, &now_us],
            )
            .await,
    )
}

async fn add<C: GenericClient + Sync>(client: &C, id: i64, uin: i64, now: i64) -> StoreResult<()> {
    client
        .execute(
            "INSERT INTO occupants (group_id, uin, joined_at) VALUES ($1, $2, $3)
             ON CONFLICT DO NOTHING",
            &[&id, &uin, &now],
        )
        .await
        .map_err(missing_or_backend)?;
    Ok(())
}

async fn remove<C: GenericClient + Sync>(client: &C, id: i64, uin: i64) -> StoreResult<()> {
    client
        .execute(
            "DELETE FROM occupants WHERE group_id = $1 AND uin = $2",
            &[&id, &uin],
        )
        .await
        .map_err(backend)?;
    Ok(())
}

async fn set_fields<C: GenericClient + Sync>(
    client: &C,
    id: i64,
    group: &Conversation,
) -> StoreResult<()> {
    let owner = to_sql_id(group.owner.0)?;
    let (kind, class) = kind_columns(&group.kind);
    one_row(
        client
            .execute(
                "UPDATE conversations SET name = $2, avatar_url = $3, owner = $4, kind = $5,
                    conf_class = $6 WHERE group_id = $1",
                &[&id, &group.name, &group.avatar_url, &owner, &kind, &class],
            )
            .await,
    )
}

#[async_trait]
impl ConversationStore for PgStore {
    async fn create_conversation(&self, new: NewConversation) -> StoreResult<Conversation> {
        let owner = to_sql_id(new.owner.0)?;
        let creator = to_sql_id(new.creator.0)?;
        let occupants: Vec<i64> = new
            .occupants
            .iter()
            .map(|u| to_sql_id(u.0))
            .collect::<StoreResult<_>>()?;
        let (kind, class) = kind_columns(&new.kind);
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(backend)?;
        let row = tx
            .query_one(
                "INSERT INTO conversations (alias, kind, conf_class, name, avatar_url, owner,
                    creator, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) RETURNING group_id",
                &[
                    &new.alias,
                    &kind,
                    &class,
                    &new.name,
                    &new.avatar_url,
                    &owner,
                    &creator,
                    &new.created_at_us,
                ],
            )
            .await
            .map_err(|e| conflict_or_backend(e, "alias"))?;
        let id: i64 = row.try_get(0).map_err(backend)?;
        for uin in occupants {
            add(&*tx, id, uin, new.created_at_us).await?;
        }
        let conv = load(&*tx, "group_id = $1", &id)
            .await
            .map_err(backend)?
            .ok_or(StoreError::NotFound)?;
        tx.commit().await.map_err(backend)?;
        Ok(conv)
    }

    async fn conversation(&self, id: GroupId) -> StoreResult<Option<Conversation>> {
        let key = to_sql_id(id.0)?;
        let client = self.client().await?;
        load(&**client, "group_id = $1", &key)
            .await
            .map_err(backend)
    }

    async fn last_seq(&self, id: GroupId) -> StoreResult<u64> {
        let id = to_sql_id(id.0)?;
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT last_seq FROM conversations WHERE group_id = $1",
                &[&id],
            )
            .await
            .map_err(backend)?
            .ok_or(StoreError::NotFound)?;
        Ok(from_sql_id(row.try_get(0).map_err(backend)?))
    }

    async fn conversation_by_alias(&self, alias: &str) -> StoreResult<Option<Conversation>> {
        let alias = alias.to_string();
        let client = self.client().await?;
        load(&**client, "alias = $1", &alias).await.map_err(backend)
    }

    async fn list_conferences(&self, member: Option<Uin>) -> StoreResult<Vec<Conversation>> {
        let member = member.map(|u| to_sql_id(u.0)).transpose()?;
        let client = self.client().await?;
        let rows = match member {
            Some(uin) => {
                client
                    .query(
                        &format!(
                            "SELECT {COLUMNS} FROM conversations WHERE kind = {KIND_CONFERENCE}
                             AND group_id IN (SELECT group_id FROM occupants WHERE uin = $1)
                             ORDER BY group_id"
                        ),
                        &[&uin],
                    )
                    .await
            }
            None => {
                client
                    .query(
                        &format!(
                            "SELECT {COLUMNS} FROM conversations WHERE kind = {KIND_CONFERENCE}
                             ORDER BY group_id"
                        ),
                        &[],
                    )
                    .await
            }
        }
        .map_err(backend)?;
        filled(&**client, &rows).await
    }

    async fn list_chat_groups(&self) -> StoreResult<Vec<Conversation>> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM conversations WHERE kind <> {KIND_CONFERENCE}
                     AND NOT destroyed ORDER BY group_id"
                ),
                &[],
            )
            .await
            .map_err(backend)?;
        filled(&**client, &rows).await
    }

    async fn add_occupant(&self, id: GroupId, uin: Uin, now_us: i64) -> StoreResult<()> {
        let (id, uin) = (to_sql_id(id.0)?, to_sql_id(uin.0)?);
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(backend)?;
        add(&*tx, id, uin, now_us).await?;
        touch(&*tx, id, now_us).await?;
        tx.commit().await.map_err(backend)
    }

    async fn remove_occupant(&self, id: GroupId, uin: Uin, now_us: i64) -> StoreResult<()> {
        let (id, uin) = (to_sql_id(id.0)?, to_sql_id(uin.0)?);
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(backend)?;
        remove(&*tx, id, uin).await?;
        touch(&*tx, id, now_us).await?;
        tx.commit().await.map_err(backend)
    }

    async fn mark_destroyed(&self, id: GroupId, now_us: i64) -> StoreResult<()> {
        let id = to_sql_id(id.0)?;
        let client = self.client().await?;
        one_row(
            client
                .execute(
                    "UPDATE conversations SET destroyed = TRUE, updated_at = $2
                     WHERE group_id = $1",
                    &[&id, &now_us],
                )
                .await,
        )
    }

    async fn update_group(&self, group: Conversation, now_us: i64) -> StoreResult<()> {
        let id = to_sql_id(group.group_id.0)?;
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(backend)?;
        set_fields(&*tx, id, &group).await?;
        touch(&*tx, id, now_us).await?;
        tx.commit().await.map_err(backend)
    }

    async fn change_group(
        &self,
        group: Conversation,
        add_set: BTreeSet<Uin>,
        remove_set: BTreeSet<Uin>,
        now_us: i64,
    ) -> StoreResult<()> {
        let id = to_sql_id(group.group_id.0)?;
        let ids = |set: BTreeSet<Uin>| -> StoreResult<Vec<i64>> {
            set.iter().map(|u| to_sql_id(u.0)).collect()
        };
        let (add_ids, remove_ids) = (ids(add_set)?, ids(remove_set)?);
        let mut client = self.client().await?;
        // One transaction: a failure anywhere rolls back every step (the transaction is
        // dropped without its commit).
        let tx = client.transaction().await.map_err(backend)?;
        for uin in add_ids {
            add(&*tx, id, uin, now_us).await?;
        }
        for uin in remove_ids {
            remove(&*tx, id, uin).await?;
        }
        set_fields(&*tx, id, &group).await?;
        touch(&*tx, id, now_us).await?;
        tx.commit().await.map_err(backend)
    }

    async fn set_blocked(
        &self,
        id: GroupId,
        uin: Uin,
        blocked: bool,
        now_us: i64,
    ) -> StoreResult<()> {
        let (id, uin) = (to_sql_id(id.0)?, to_sql_id(uin.0)?);
        let sql = if blocked {
            "INSERT INTO blocks (group_id, uin) VALUES ($1, $2) ON CONFLICT DO NOTHING"
        } else {
            "DELETE FROM blocks WHERE group_id = $1 AND uin = $2"
        };
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(backend)?;
        tx.execute(sql, &[&id, &uin])
            .await
            .map_err(missing_or_backend)?;
        touch(&*tx, id, now_us).await?;
        tx.commit().await.map_err(backend)
    }

    async fn find_group_with_occupants(
        &self,
        kind: &ConversationKind,
        wanted: &BTreeSet<Uin>,
    ) -> StoreResult<Option<Conversation>> {
        let (kind, _) = kind_columns(kind);
        let Some(first) = wanted.iter().next() else {
            return Ok(None);
        };
        let first = to_sql_id(first.0)?;
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT c.group_id FROM conversations c
                 JOIN occupants o ON o.group_id = c.group_id
                 WHERE o.uin = $1 AND c.kind = $2 AND NOT c.destroyed ORDER BY c.group_id",
                &[&first, &kind],
            )
            .await
            .map_err(backend)?;
        for row in rows {
            let id: i64 = row.try_get(0).map_err(backend)?;
            if occupants(&**client, id).await.map_err(backend)? == *wanted {
                return load(&**client, "group_id = $1", &id).await.map_err(backend);
            }
        }
        Ok(None)
    }

    async fn groups_of(&self, uin: Uin) -> StoreResult<Vec<GroupListing>> {
        let me = to_sql_id(uin.0)?;
        let client = self.client().await?;
        let columns: String = COLUMNS
            .split(", ")
            .map(|c| format!("c.{}", c.trim()))
            .collect::<Vec<_>>()
            .join(", ");
        let rows = client
            .query(
                &format!(
                    "SELECT {columns}, o.muted, o.pinned_at, o.cleared_seq, o.seen_seq, o.received_seq
                     FROM occupants o JOIN conversations c ON c.group_id = o.group_id
                     WHERE o.uin = $1 AND c.kind != {KIND_CONFERENCE} AND NOT c.destroyed
                     ORDER BY c.group_id"
                ),
                &[&me],
            )
            .await
            .map_err(backend)?;
        let mut listings = Vec::with_capacity(rows.len());
        for row in rows {
            let mut conversation = conversation_row(&row).map_err(backend)?;
            let state = member_state_at(&row, 11).map_err(backend)?;
            fill(&**client, &mut conversation).await.map_err(backend)?;
            let group = from_group(conversation.group_id);
            let cleared = i64::try_from(state.cleared_seq).unwrap_or(i64::MAX);
            let seen = i64::try_from(state.seen_seq).unwrap_or(i64::MAX);
            let last = client
                .query_opt(
                    &format!(
                        "SELECT {} FROM messages WHERE group_id = $1 AND seq > $2
                         ORDER BY seq DESC LIMIT 1",
                        crate::messages::COLUMNS
                    ),
                    &[&group, &cleared],
                )
                .await
                .map_err(backend)?;
            let last_message = last
                .as_ref()
                .map(message_row)
                .transpose()
                .map_err(backend)?;
            // Posting means having read everything before it, so the count starts after
            // the member's own last message too (as in the SQLite backend).
            let unread: i64 = client
                .query_one(
                    "SELECT COUNT(*) FROM messages WHERE group_id = $1 AND sender != $3
                        AND NOT deleted
                        AND seq > (SELECT COALESCE(MAX(seq), $2) FROM messages
                            WHERE group_id = $1 AND seq > $2 AND sender = $3)",
                    &[&group, &cleared.max(seen), &me],
                )
                .await
                .map_err(backend)?
                .try_get(0)
                .map_err(backend)?;
            listings.push(GroupListing {
                conversation,
                state,
                last_message,
                unread: from_sql_id(unread),
                change_seq: 0,
            });
        }
        Ok(listings)
    }

    async fn member_state(&self, id: GroupId, uin: Uin) -> StoreResult<Option<MemberState>> {
        let (id, uin) = (to_sql_id(id.0)?, to_sql_id(uin.0)?);
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT muted, pinned_at, cleared_seq, seen_seq, received_seq FROM occupants
                 WHERE group_id = $1 AND uin = $2",
                &[&id, &uin],
            )
            .await
            .map_err(backend)?;
        row.map(|r| member_state_at(&r, 0))
            .transpose()
            .map_err(backend)
    }

    async fn set_member_state(&self, id: GroupId, uin: Uin, state: MemberState) -> StoreResult<()> {
        let (id, uin) = (to_sql_id(id.0)?, to_sql_id(uin.0)?);
        let cleared = to_sql_id(state.cleared_seq)?;
        let seen = to_sql_id(state.seen_seq)?;
        let received = to_sql_id(state.received_seq)?;
        let client = self.client().await?;
        one_row(
            client
                .execute(
                    "UPDATE occupants SET muted = $3, pinned_at = $4, cleared_seq = $5,
                        seen_seq = $6, received_seq = $7 WHERE group_id = $1 AND uin = $2",
                    &[
                        &id,
                        &uin,
                        &state.muted,
                        &state.pinned_at_us,
                        &cleared,
                        &seen,
                        &received,
                    ],
                )
                .await,
        )
    }

    async fn read_marks(&self, id: GroupId, from_seq: u64) -> StoreResult<Vec<ReadMark>> {
        let id = to_sql_id(id.0)?;
        let from = i64::try_from(from_seq).unwrap_or(i64::MAX);
        let client = self.client().await?;
        // A member's own newest message at or after `from_seq` counts as its seen mark
        // (posting means having read what came before), as in the SQLite backend.
        let rows = client
            .query(
                "SELECT o.uin, o.received_seq, o.seen_seq, COALESCE(p.last, 0)
                 FROM occupants o LEFT JOIN (
                     SELECT sender, MAX(seq) AS last FROM messages
                     WHERE group_id = $1 AND seq >= $2 GROUP BY sender
                 ) p ON p.sender = o.uin
                 WHERE o.group_id = $1",
                &[&id, &from],
            )
            .await
            .map_err(backend)?;
        rows.iter()
            .map(|r| {
                Ok(ReadMark {
                    uin: Uin(from_sql_id(r.try_get(0)?)),
                    received_seq: from_sql_id(r.try_get(1)?),
                    seen_seq: from_sql_id(r.try_get::<_, i64>(2)?.max(r.try_get(3)?)),
                })
            })
            .collect::<PgResult<Vec<_>>>()
            .map_err(backend)
    }

    async fn set_hidden(
        &self,
        _id: GroupId,
        _uins: BTreeSet<Uin>,
        _hidden: bool,
    ) -> StoreResult<()> {
        Err(StoreError::Backend(
            "hiding a private group left is not available on PostgreSQL yet".into(),
        ))
    }

    async fn groups_changed(&self, _uin: Uin, _since: u64) -> StoreResult<ChangedGroups> {
        Err(StoreError::Backend(
            "listing groups changed since a change number is not available on PostgreSQL yet"
                .into(),
        ))
    }

    async fn peers_of(&self, uin: Uin) -> StoreResult<BTreeSet<Uin>> {
        let me = to_sql_id(uin.0)?;
        let client = self.client().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT DISTINCT other.uin FROM occupants mine
                     JOIN conversations c ON c.group_id = mine.group_id
                     JOIN occupants other ON other.group_id = mine.group_id
                     WHERE mine.uin = $1 AND other.uin != $1 AND c.kind != {KIND_CONFERENCE}
                       AND NOT c.destroyed"
                ),
                &[&me],
            )
            .await
            .map_err(backend)?;
        uins(&rows).map_err(backend)
    }
}

/// A member's state from five columns starting at `at`.
fn member_state_at(row: &Row, at: usize) -> PgResult<MemberState> {
    Ok(MemberState {
        muted: row.try_get(at)?,
        pinned_at_us: row.try_get(at + 1)?,
        cleared_seq: from_sql_id(row.try_get(at + 2)?),
        seen_seq: from_sql_id(row.try_get(at + 3)?),
        received_seq: from_sql_id(row.try_get(at + 4)?),
        hidden: false,
    })
}

/// Conversations from their rows, each with its occupants and blocks.
async fn filled<C: GenericClient + Sync>(
    client: &C,
    rows: &[Row],
) -> StoreResult<Vec<Conversation>> {
    let mut list = Vec::with_capacity(rows.len());
    for row in rows {
        let mut conv = conversation_row(row).map_err(backend)?;
        fill(client, &mut conv).await.map_err(backend)?;
        list.push(conv);
    }
    Ok(list)
}
