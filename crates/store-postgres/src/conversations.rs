//! `ConversationStore` on PostgreSQL: conversations and their occupants.
//!
//! Nothing is cached: another node may change a conversation at any time (SQLite's
//! conversation cache is correct only because its process is the sole writer). Every
//! change takes a change number (`changes.rs`), locking the conversation, then the clock.

use std::collections::BTreeSet;

use async_trait::async_trait;
use confer_core::model::{
    ChangedGroups, Conversation, ConversationKind, GroupListing, LeftGroup, MemberState,
    NewConversation, ReadMark,
};
use confer_core::store::{ConversationStore, StoreError, StoreResult};
use confer_core::{GroupId, Uin};
use tokio_postgres::types::ToSql;
use tokio_postgres::{GenericClient, IsolationLevel, Row, Transaction};

use crate::changes::{lock_conversation, Clock};
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
                       updated_at, destroyed, avatar_url, rev";

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
        change_seq: from_sql_id(row.try_get(11)?),
        hidden: BTreeSet::new(),
    })
}

fn uins(rows: &[Row]) -> PgResult<BTreeSet<Uin>> {
    rows.iter()
        .map(|r| Ok(Uin(from_sql_id(r.try_get(0)?))))
        .collect()
}

/// Load one conversation with its occupants, blocked and hidden users: one prepared
/// statement (a post reads its conversation, so this is on every post's path).
async fn load<C: deadpool_postgres::GenericClient + Sync>(
    client: &C,
    where_clause: &str,
    key: &(dyn ToSql + Sync),
) -> PgResult<Option<Conversation>> {
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {COLUMNS},
                ARRAY(SELECT o.uin FROM occupants o WHERE o.group_id = c.group_id),
                ARRAY(SELECT b.uin FROM blocks b WHERE b.group_id = c.group_id),
                ARRAY(SELECT o.uin FROM occupants o WHERE o.group_id = c.group_id AND o.hidden)
             FROM conversations c WHERE {where_clause}"
        ))
        .await?;
    let Some(row) = client.query_opt(&stmt, &[key]).await? else {
        return Ok(None);
    };
    let mut conv = conversation_row(&row)?;
    let set = |i: usize| -> PgResult<BTreeSet<Uin>> {
        Ok(row
            .try_get::<_, Vec<i64>>(i)?
            .into_iter()
            .map(|u| Uin(from_sql_id(u)))
            .collect())
    };
    conv.occupants = set(12)?;
    conv.blocked = set(13)?;
    conv.hidden = set(14)?;
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
    let rows = client
        .query(
            "SELECT uin FROM occupants WHERE group_id = $1 AND hidden",
            &[&id],
        )
        .await?;
    conv.hidden = uins(&rows)?;
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

/// A change of the group's own: its `updated_at` and change number move.
async fn touch(tx: &Transaction<'_>, id: i64, now_us: i64, clock: &mut Clock) -> StoreResult<()> {
    one_row(
        tx.execute(
            "UPDATE conversations SET updated_at = $2, rev = $3 WHERE group_id = $1",
            &[&id, &now_us, &clock.next()],
        )
        .await,
    )
}

/// `uin` joins group `id` (no longer one it left).
async fn add(
    tx: &Transaction<'_>,
    id: i64,
    uin: i64,
    now: i64,
    clock: &mut Clock,
) -> StoreResult<()> {
    tx.execute(
        "INSERT INTO occupants (group_id, uin, joined_at, rev) VALUES ($1, $2, $3, $4)
         ON CONFLICT DO NOTHING",
        &[&id, &uin, &now, &clock.next()],
    )
    .await
    .map_err(missing_or_backend)?;
    tx.execute(
        "DELETE FROM departures WHERE uin = $2 AND group_id = $1",
        &[&id, &uin],
    )
    .await
    .map_err(backend)?;
    Ok(())
}

/// `uin` leaves group `id`, remembered with a change number for catching up.
async fn remove(tx: &Transaction<'_>, id: i64, uin: i64, clock: &mut Clock) -> StoreResult<()> {
    let gone = tx
        .execute(
            "DELETE FROM occupants WHERE group_id = $1 AND uin = $2",
            &[&id, &uin],
        )
        .await
        .map_err(backend)?;
    if gone > 0 {
        tx.execute(
            "INSERT INTO departures (uin, group_id, rev) VALUES ($2, $1, $3)
             ON CONFLICT (uin, group_id) DO UPDATE SET rev = excluded.rev",
            &[&id, &uin, &clock.next()],
        )
        .await
        .map_err(missing_or_backend)?;
    }
    Ok(())
}

/// Begin a change of conversation `id`: its row locked, then the clock (`changes.rs`).
async fn begin_change(tx: &Transaction<'_>, id: i64) -> StoreResult<Clock> {
    if !lock_conversation(tx, id).await? {
        return Err(StoreError::NotFound);
    }
    Clock::lock(tx).await
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
        // A new conversation has no row to lock yet: the clock is its first lock.
        let mut clock = Clock::lock(&tx).await?;
        let row = tx
            .query_one(
                "INSERT INTO conversations (alias, kind, conf_class, name, avatar_url, owner,
                    creator, created_at, updated_at, rev)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9) RETURNING group_id",
                &[
                    &new.alias,
                    &kind,
                    &class,
                    &new.name,
                    &new.avatar_url,
                    &owner,
                    &creator,
                    &new.created_at_us,
                    &clock.next(),
                ],
            )
            .await
            .map_err(|e| conflict_or_backend(e, "alias"))?;
        let id: i64 = row.try_get(0).map_err(backend)?;
        // The group's own number covers its first members (as on SQLite).
        for uin in occupants {
            tx.execute(
                "INSERT INTO occupants (group_id, uin, joined_at) VALUES ($1, $2, $3)
                 ON CONFLICT DO NOTHING",
                &[&id, &uin, &new.created_at_us],
            )
            .await
            .map_err(backend)?;
        }
        clock.save(&tx).await?;
        let conv = load(&tx, "group_id = $1", &id)
            .await
            .map_err(backend)?
            .ok_or(StoreError::NotFound)?;
        tx.commit().await.map_err(backend)?;
        Ok(conv)
    }

    async fn conversation(&self, id: GroupId) -> StoreResult<Option<Conversation>> {
        let key = to_sql_id(id.0)?;
        let client = self.client().await?;
        load(&client, "group_id = $1", &key).await.map_err(backend)
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
        load(&client, "alias = $1", &alias).await.map_err(backend)
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
        let mut clock = begin_change(&tx, id).await?;
        add(&tx, id, uin, now_us, &mut clock).await?;
        touch(&tx, id, now_us, &mut clock).await?;
        clock.save(&tx).await?;
        tx.commit().await.map_err(backend)
    }

    async fn remove_occupant(&self, id: GroupId, uin: Uin, now_us: i64) -> StoreResult<()> {
        let (id, uin) = (to_sql_id(id.0)?, to_sql_id(uin.0)?);
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(backend)?;
        let mut clock = begin_change(&tx, id).await?;
        remove(&tx, id, uin, &mut clock).await?;
        touch(&tx, id, now_us, &mut clock).await?;
        clock.save(&tx).await?;
        tx.commit().await.map_err(backend)
    }

    async fn mark_destroyed(&self, id: GroupId, now_us: i64) -> StoreResult<()> {
        let id = to_sql_id(id.0)?;
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(backend)?;
        let mut clock = begin_change(&tx, id).await?;
        tx.execute(
            "UPDATE conversations SET destroyed = TRUE WHERE group_id = $1",
            &[&id],
        )
        .await
        .map_err(backend)?;
        touch(&tx, id, now_us, &mut clock).await?;
        clock.save(&tx).await?;
        tx.commit().await.map_err(backend)
    }

    async fn update_group(&self, group: Conversation, now_us: i64) -> StoreResult<()> {
        let id = to_sql_id(group.group_id.0)?;
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(backend)?;
        let mut clock = begin_change(&tx, id).await?;
        set_fields(&*tx, id, &group).await?;
        touch(&tx, id, now_us, &mut clock).await?;
        clock.save(&tx).await?;
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
        let mut clock = begin_change(&tx, id).await?;
        for uin in add_ids {
            add(&tx, id, uin, now_us, &mut clock).await?;
        }
        for uin in remove_ids {
            remove(&tx, id, uin, &mut clock).await?;
        }
        set_fields(&*tx, id, &group).await?;
        touch(&tx, id, now_us, &mut clock).await?;
        clock.save(&tx).await?;
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
        let mut clock = begin_change(&tx, id).await?;
        tx.execute(sql, &[&id, &uin])
            .await
            .map_err(missing_or_backend)?;
        touch(&tx, id, now_us, &mut clock).await?;
        clock.save(&tx).await?;
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
                return load(&client, "group_id = $1", &id).await.map_err(backend);
            }
        }
        Ok(None)
    }

    async fn groups_of(&self, uin: Uin) -> StoreResult<Vec<GroupListing>> {
        let me = to_sql_id(uin.0)?;
        let client = self.client().await?;
        listings(&**client, me).await
    }

    async fn groups_changed(&self, uin: Uin, since: u64) -> StoreResult<ChangedGroups> {
        let me = to_sql_id(uin.0)?;
        let after = i64::try_from(since).unwrap_or(i64::MAX);
        let mut client = self.client().await?;
        // One snapshot: every part is read at the same instant, so no change numbered
        // below the largest returned is missed (`changes.rs`).
        let tx = client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(backend)?;
        let groups: Vec<GroupListing> = listings(&*tx, me)
            .await?
            .into_iter()
            .filter(|g| g.change_seq > since)
            .collect();
        let rows = tx
            .query(
                &format!(
                    "SELECT d.group_id, d.rev FROM departures d JOIN conversations c USING (group_id)
                         WHERE d.uin = $1 AND d.rev > $2 AND c.kind != {KIND_CONFERENCE}
                     UNION ALL
                     SELECT o.group_id, o.rev FROM occupants o JOIN conversations c USING (group_id)
                         WHERE o.uin = $1 AND o.hidden AND o.rev > $2 AND NOT c.destroyed
                     UNION ALL
                     SELECT c.group_id, c.rev FROM occupants o JOIN conversations c USING (group_id)
                         WHERE o.uin = $1 AND c.destroyed AND c.rev > $2
                           AND c.kind != {KIND_CONFERENCE}"
                ),
                &[&me, &after],
            )
            .await
            .map_err(backend)?;
        let left = rows
            .iter()
            .map(|r| {
                Ok(LeftGroup {
                    group_id: GroupId(from_sql_id(r.try_get(0)?)),
                    change_seq: from_sql_id(r.try_get(1)?),
                })
            })
            .collect::<PgResult<Vec<_>>>()
            .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(ChangedGroups { groups, left })
    }

    async fn set_hidden(&self, id: GroupId, uins: BTreeSet<Uin>, hidden: bool) -> StoreResult<()> {
        let id = to_sql_id(id.0)?;
        let uins: Vec<i64> = uins
            .iter()
            .map(|u| to_sql_id(u.0))
            .collect::<StoreResult<_>>()?;
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(backend)?;
        let mut clock = begin_change(&tx, id).await?;
        for uin in uins {
            one_row(
                tx.execute(
                    "UPDATE occupants SET hidden = $3, rev = $4 WHERE group_id = $1 AND uin = $2",
                    &[&id, &uin, &hidden, &clock.next()],
                )
                .await,
            )?;
        }
        clock.save(&tx).await?;
        tx.commit().await.map_err(backend)
    }

    async fn member_state(&self, id: GroupId, uin: Uin) -> StoreResult<Option<MemberState>> {
        let (id, uin) = (to_sql_id(id.0)?, to_sql_id(uin.0)?);
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT muted, pinned_at, cleared_seq, seen_seq, received_seq, hidden
                 FROM occupants WHERE group_id = $1 AND uin = $2",
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
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(backend)?;
        // No conversation row changes: the clock is the first lock. `hidden` is not
        // written here (`set_hidden`).
        let mut clock = Clock::lock(&tx).await?;
        one_row(
            tx.execute(
                "UPDATE occupants SET muted = $3, pinned_at = $4, cleared_seq = $5,
                    seen_seq = $6, received_seq = $7, rev = $8 WHERE group_id = $1 AND uin = $2",
                &[
                    &id,
                    &uin,
                    &state.muted,
                    &state.pinned_at_us,
                    &cleared,
                    &seen,
                    &received,
                    &clock.next(),
                ],
            )
            .await,
        )?;
        clock.save(&tx).await?;
        tx.commit().await.map_err(backend)
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

/// A member's state from six columns starting at `at`.
fn member_state_at(row: &Row, at: usize) -> PgResult<MemberState> {
    Ok(MemberState {
        muted: row.try_get(at)?,
        pinned_at_us: row.try_get(at + 1)?,
        cleared_seq: from_sql_id(row.try_get(at + 2)?),
        seen_seq: from_sql_id(row.try_get(at + 3)?),
        received_seq: from_sql_id(row.try_get(at + 4)?),
        hidden: row.try_get(at + 5)?,
    })
}

/// The chat groups `me` occupies and sees (not hidden), each with its state, the last
/// message it can see, its unread count and its last change number.
async fn listings<C: GenericClient + Sync>(client: &C, me: i64) -> StoreResult<Vec<GroupListing>> {
    let columns: String = COLUMNS
        .split(", ")
        .map(|c| format!("c.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ");
    let rows = client
        .query(
            &format!(
                "SELECT {columns}, o.muted, o.pinned_at, o.cleared_seq, o.seen_seq,
                    o.received_seq, o.hidden, o.rev
                 FROM occupants o JOIN conversations c ON c.group_id = o.group_id
                 WHERE o.uin = $1 AND c.kind != {KIND_CONFERENCE} AND NOT c.destroyed
                   AND NOT o.hidden
                 ORDER BY c.group_id"
            ),
            &[&me],
        )
        .await
        .map_err(backend)?;
    let mut listings = Vec::with_capacity(rows.len());
    for row in rows {
        let mut conversation = conversation_row(&row).map_err(backend)?;
        let state = member_state_at(&row, 12).map_err(backend)?;
        let marks_rev: i64 = row.try_get(18).map_err(backend)?;
        fill(client, &mut conversation).await.map_err(backend)?;
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
        // Its last change: its own, the member's marks, or a message's (the newest id,
        // or the largest number an edit or delete took).
        let messages_rev: i64 = client
            .query_one(
                "SELECT GREATEST(
                    COALESCE((SELECT message_id FROM messages WHERE group_id = $1
                        ORDER BY seq DESC LIMIT 1), 0),
                    COALESCE((SELECT rev FROM messages WHERE group_id = $1 AND rev IS NOT NULL
                        ORDER BY rev DESC LIMIT 1), 0))",
                &[&group],
            )
            .await
            .map_err(backend)?
            .try_get(0)
            .map_err(backend)?;
        let change_seq = (conversation.change_seq as i64)
            .max(marks_rev)
            .max(messages_rev);
        listings.push(GroupListing {
            conversation,
            state,
            last_message,
            unread: from_sql_id(unread),
            change_seq: from_sql_id(change_seq),
        });
    }
    Ok(listings)
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
