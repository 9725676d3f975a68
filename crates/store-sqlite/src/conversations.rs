//! `ConversationStore` on SQLite: conversations and their occupants.

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use confer_core::model::{
    ChangedGroups, Conversation, ConversationKind, GroupListing, LeftGroup, MemberState,
    NewConversation, ReadMark,
};
use confer_core::store::{ConversationStore, StoreError, StoreResult};
use confer_core::{GroupId, Uin};
use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::changes::Clock;
use crate::{backend, conflict_or_backend, exec, one_row, query_row, to_sql_id, SqliteStore};

/// The `kind` column: chat group types keep the Chat API's numbers.
const KIND_PRIVATE: i64 = 1;
const KIND_GROUP: i64 = 2;
const KIND_PUBLIC: i64 = 3;
const KIND_CONFERENCE: i64 = 10;

const COLUMNS: &str = "group_id, alias, kind, conf_class, name, owner, creator, created_at, \
                       updated_at, destroyed, avatar_url, rev";

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
        avatar_url: row.get(10)?,
        owner: Uin(row.get::<_, i64>(5)? as u64),
        creator: Uin(row.get::<_, i64>(6)? as u64),
        occupants: BTreeSet::new(),
        blocked: BTreeSet::new(),
        created_at_us: row.get(7)?,
        updated_at_us: row.get(8)?,
        destroyed: row.get::<_, i64>(9)? != 0,
        last_message_id: 0,
        change_seq: row.get::<_, i64>(11)? as u64,
        hidden: BTreeSet::new(),
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
    fill(conn, &mut conv)?;
    Ok(Some(conv))
}

/// Load a conversation's occupants and blocked users.
fn fill(conn: &Connection, conv: &mut Conversation) -> rusqlite::Result<()> {
    conv.occupants = occupants(conn, conv.group_id)?;
    let mut stmt = conn.prepare_cached("SELECT uin FROM blocks WHERE group_id = ?1")?;
    let rows = stmt.query_map([conv.group_id.0 as i64], |r| {
        Ok(Uin(r.get::<_, i64>(0)? as u64))
    })?;
    conv.blocked = rows.collect::<rusqlite::Result<_>>()?;
    let mut stmt =
        conn.prepare_cached("SELECT uin FROM occupants WHERE group_id = ?1 AND hidden = 1")?;
    let rows = stmt.query_map([conv.group_id.0 as i64], |r| {
        Ok(Uin(r.get::<_, i64>(0)? as u64))
    })?;
    conv.hidden = rows.collect::<rusqlite::Result<_>>()?;
    Ok(())
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
        let creator = to_sql_id(new.creator.0)?;
        let occupants: Vec<i64> = new
            .occupants
            .iter()
            .map(|u| to_sql_id(u.0))
            .collect::<StoreResult<_>>()?;
        let clock = self.clock.clone();
        self.write(move |conn| {
            let (kind, class) = kind_columns(&new.kind);
            exec(conn,
                "INSERT INTO conversations (alias, kind, conf_class, name, avatar_url, owner, creator,
                    created_at, updated_at, rev)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, ?9)",
                params![new.alias, kind, class, new.name, new.avatar_url, owner, creator, new.created_at_us, clock.next()],
            )
            .map_err(|e| conflict_or_backend(e, "alias"))?;
            let id = conn.last_insert_rowid();
            for uin in occupants {
                exec(conn,
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
        let ticket = match self.conversations.get(id) {
            Ok(cached) => return Ok(Some(Conversation::clone(&cached))),
            Err(ticket) => ticket,
        };
        let key = to_sql_id(id.0)?;
        let found = self
            .read(move |conn| load(conn, "group_id = ?1", &key))
            .await?;
        if let Some(conv) = &found {
            self.conversations.put(ticket, Arc::new(conv.clone()));
        }
        Ok(found)
    }

    async fn last_seq(&self, id: GroupId) -> StoreResult<u64> {
        let id = to_sql_id(id.0)?;
        let seq: Option<i64> = self
            .read(move |conn| {
                query_row(
                    conn,
                    "SELECT (SELECT COALESCE(MAX(seq), 0) FROM messages WHERE group_id = ?1)
                     FROM conversations WHERE group_id = ?1",
                    [id],
                    |r| r.get(0),
                )
                .optional()
            })
            .await?;
        seq.map(|s| s as u64).ok_or(StoreError::NotFound)
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
                fill(conn, conv)?;
            }
            Ok(list)
        })
        .await
    }

    async fn list_chat_groups(&self) -> StoreResult<Vec<Conversation>> {
        self.read(move |conn| {
            let mut list: Vec<Conversation> = conn
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM conversations WHERE kind <> {KIND_CONFERENCE}
                     AND destroyed = 0 ORDER BY group_id"
                ))?
                .query_map([], conversation_row)?
                .collect::<rusqlite::Result<_>>()?;
            for conv in &mut list {
                fill(conn, conv)?;
            }
            Ok(list)
        })
        .await
    }

    async fn add_occupant(&self, id: GroupId, uin: Uin, now_us: i64) -> StoreResult<()> {
        let changed = id;
        let (id, uin) = (to_sql_id(id.0)?, to_sql_id(uin.0)?);
        let clock = self.clock.clone();
        self.write_conversation(changed, move |conn| {
            arrive(conn, id, uin, now_us, &clock)?;
            touch(conn, id, now_us, &clock)
        })
        .await
    }

    async fn remove_occupant(&self, id: GroupId, uin: Uin, now_us: i64) -> StoreResult<()> {
        let changed = id;
        let (id, uin) = (to_sql_id(id.0)?, to_sql_id(uin.0)?);
        let clock = self.clock.clone();
        self.write_conversation(changed, move |conn| {
            depart(conn, id, uin, &clock)?;
            touch(conn, id, now_us, &clock)
        })
        .await
    }

    async fn mark_destroyed(&self, id: GroupId, now_us: i64) -> StoreResult<()> {
        let changed = id;
        let id = to_sql_id(id.0)?;
        let clock = self.clock.clone();
        self.write_conversation(changed, move |conn| {
            exec(
                conn,
                "UPDATE conversations SET destroyed = 1 WHERE group_id = ?1",
                [id],
            )
            .map_err(backend)?;
            touch(conn, id, now_us, &clock)
        })
        .await
    }

    async fn update_group(&self, group: Conversation, now_us: i64) -> StoreResult<()> {
        let changed = group.group_id;
        let id = to_sql_id(group.group_id.0)?;
        let owner = to_sql_id(group.owner.0)?;
        let clock = self.clock.clone();
        self.write_conversation(changed, move |conn| {
            let (kind, class) = kind_columns(&group.kind);
            exec(
                conn,
                "UPDATE conversations SET name = ?2, avatar_url = ?3, owner = ?4, kind = ?5,
                    conf_class = ?6 WHERE group_id = ?1",
                params![id, group.name, group.avatar_url, owner, kind, class],
            )
            .map_err(backend)?;
            touch(conn, id, now_us, &clock)
        })
        .await
    }

    async fn change_group(
        &self,
        group: Conversation,
        add: BTreeSet<Uin>,
        remove: BTreeSet<Uin>,
        now_us: i64,
    ) -> StoreResult<()> {
        let changed = group.group_id;
        let id = to_sql_id(group.group_id.0)?;
        let owner = to_sql_id(group.owner.0)?;
        let ids = |set: BTreeSet<Uin>| -> StoreResult<Vec<i64>> {
            set.iter().map(|u| to_sql_id(u.0)).collect()
        };
        let (add, remove) = (ids(add)?, ids(remove)?);
        let clock = self.clock.clone();
        // One write, so one savepoint: a failure anywhere rolls back every step.
        self.write_conversation(changed, move |conn| {
            for uin in add {
                arrive(conn, id, uin, now_us, &clock)?;
            }
            for uin in remove {
                depart(conn, id, uin, &clock)?;
            }
            let (kind, class) = kind_columns(&group.kind);
            one_row(exec(
                conn,
                "UPDATE conversations SET name = ?2, avatar_url = ?3, owner = ?4, kind = ?5,
                    conf_class = ?6 WHERE group_id = ?1",
                params![id, group.name, group.avatar_url, owner, kind, class],
            ))?;
            touch(conn, id, now_us, &clock)
        })
        .await
    }

    async fn set_blocked(
        &self,
        id: GroupId,
        uin: Uin,
        blocked: bool,
        now_us: i64,
    ) -> StoreResult<()> {
        let changed = id;
        let (id, uin) = (to_sql_id(id.0)?, to_sql_id(uin.0)?);
        let clock = self.clock.clone();
        self.write_conversation(changed, move |conn| {
            let sql = if blocked {
                "INSERT OR IGNORE INTO blocks (group_id, uin) VALUES (?1, ?2)"
            } else {
                "DELETE FROM blocks WHERE group_id = ?1 AND uin = ?2"
            };
            exec(conn, sql, params![id, uin]).map_err(backend)?;
            touch(conn, id, now_us, &clock)
        })
        .await
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
        let wanted = wanted.clone();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT c.group_id FROM conversations c JOIN occupants o ON o.group_id = c.group_id
                 WHERE o.uin = ?1 AND c.kind = ?2 AND c.destroyed = 0",
            )?;
            let ids: Vec<i64> = stmt
                .query_map(params![first, kind], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            for id in ids {
                if occupants(conn, GroupId(id as u64))? == wanted {
                    return load(conn, "group_id = ?1", &id);
                }
            }
            Ok(None)
        })
        .await
    }

    async fn groups_of(&self, uin: Uin) -> StoreResult<Vec<GroupListing>> {
        let me = to_sql_id(uin.0)?;
        self.read(move |conn| listings(conn, me)).await
    }

    async fn groups_changed(&self, uin: Uin, since: u64) -> StoreResult<ChangedGroups> {
        let me = to_sql_id(uin.0)?;
        let after = i64::try_from(since).unwrap_or(i64::MAX);
        self.read(move |conn| {
            // One read transaction: every part is read at the same instant, so no change
            // numbered below the largest returned is missed.
            let tx = conn.unchecked_transaction()?;
            let groups: Vec<GroupListing> = listings(&tx, me)?
                .into_iter()
                .filter(|g| g.change_seq > since)
                .collect();
            let mut stmt = tx.prepare_cached(&format!(
                "SELECT d.group_id, d.rev FROM departures d JOIN conversations c USING (group_id)
                     WHERE d.uin = ?1 AND d.rev > ?2 AND c.kind != {KIND_CONFERENCE}
                 UNION ALL
                 SELECT o.group_id, o.rev FROM occupants o JOIN conversations c USING (group_id)
                     WHERE o.uin = ?1 AND o.hidden = 1 AND o.rev > ?2 AND c.destroyed = 0
                 UNION ALL
                 SELECT c.group_id, c.rev FROM occupants o JOIN conversations c USING (group_id)
                     WHERE o.uin = ?1 AND c.destroyed = 1 AND c.rev > ?2
                       AND c.kind != {KIND_CONFERENCE}"
            ))?;
            let left = stmt
                .query_map(params![me, after], |r| {
                    Ok(LeftGroup {
                        group_id: GroupId(r.get::<_, i64>(0)? as u64),
                        change_seq: r.get::<_, i64>(1)? as u64,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            drop(stmt);
            tx.commit()?;
            Ok(ChangedGroups { groups, left })
        })
        .await
    }

    async fn set_hidden(&self, id: GroupId, uins: BTreeSet<Uin>, hidden: bool) -> StoreResult<()> {
        let changed = id;
        let id = to_sql_id(id.0)?;
        let uins: Vec<i64> = uins
            .iter()
            .map(|u| to_sql_id(u.0))
            .collect::<StoreResult<_>>()?;
        let clock = self.clock.clone();
        self.write_conversation(changed, move |conn| {
            for uin in uins {
                one_row(exec(
                    conn,
                    "UPDATE occupants SET hidden = ?3, rev = ?4 WHERE group_id = ?1 AND uin = ?2",
                    params![id, uin, hidden as i64, clock.next()],
                ))?;
            }
            Ok(())
        })
        .await
    }

    async fn member_state(&self, id: GroupId, uin: Uin) -> StoreResult<Option<MemberState>> {
        let (id, uin) = (to_sql_id(id.0)?, to_sql_id(uin.0)?);
        self.read(move |conn| {
            query_row(
                conn,
                "SELECT muted, pinned_at, cleared_seq, seen_seq, received_seq, hidden FROM occupants
                 WHERE group_id = ?1 AND uin = ?2",
                params![id, uin],
                |row| {
                    Ok(MemberState {
                        muted: row.get::<_, i64>(0)? != 0,
                        pinned_at_us: row.get(1)?,
                        cleared_seq: row.get::<_, i64>(2)? as u64,
                        seen_seq: row.get::<_, i64>(3)? as u64,
                        received_seq: row.get::<_, i64>(4)? as u64,
                        hidden: row.get::<_, i64>(5)? != 0,
                    })
                },
            )
            .optional()
        })
        .await
    }

    async fn set_member_state(&self, id: GroupId, uin: Uin, state: MemberState) -> StoreResult<()> {
        let (id, uin) = (to_sql_id(id.0)?, to_sql_id(uin.0)?);
        let clock = self.clock.clone();
        // `hidden` is not written here: it is part of the cached conversation
        // (`set_hidden`).
        self.write(move |conn| {
            one_row(exec(
                conn,
                "UPDATE occupants SET muted = ?3, pinned_at = ?4, cleared_seq = ?5, seen_seq = ?6,
                     received_seq = ?7, rev = ?8
                     WHERE group_id = ?1 AND uin = ?2",
                params![
                    id,
                    uin,
                    state.muted as i64,
                    state.pinned_at_us,
                    state.cleared_seq as i64,
                    state.seen_seq as i64,
                    state.received_seq as i64,
                    clock.next()
                ],
            ))?;
            Ok(())
        })
        .await
    }

    async fn read_marks(&self, id: GroupId, from_seq: u64) -> StoreResult<Vec<ReadMark>> {
        let id = to_sql_id(id.0)?;
        let from = i64::try_from(from_seq).unwrap_or(i64::MAX);
        self.read(move |conn| {
            // A member's own newest message at or after `from_seq` counts as its seen mark
            // (posting means having read what came before), read from the range of the
            // (group_id, seq) index the messages shown lie in, as `groups_of` does.
            let mut stmt = conn.prepare_cached(
                "SELECT o.uin, o.received_seq, o.seen_seq, COALESCE(p.last, 0)
                 FROM occupants o LEFT JOIN (
                     SELECT sender, MAX(seq) AS last FROM messages
                     WHERE group_id = ?1 AND seq >= ?2 GROUP BY sender
                 ) p ON p.sender = o.uin
                 WHERE o.group_id = ?1",
            )?;
            let rows = stmt.query_map(params![id, from], |r| {
                let posted = r.get::<_, i64>(3)? as u64;
                Ok(ReadMark {
                    uin: Uin(r.get::<_, i64>(0)? as u64),
                    received_seq: r.get::<_, i64>(1)? as u64,
                    seen_seq: (r.get::<_, i64>(2)? as u64).max(posted),
                })
            })?;
            rows.collect()
        })
        .await
    }

    async fn peers_of(&self, uin: Uin) -> StoreResult<BTreeSet<Uin>> {
        let me = to_sql_id(uin.0)?;
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT DISTINCT other.uin FROM occupants mine
                 JOIN conversations c ON c.group_id = mine.group_id
                 JOIN occupants other ON other.group_id = mine.group_id
                 WHERE mine.uin = ?1 AND other.uin != ?1 AND c.kind != {KIND_CONFERENCE}
                   AND c.destroyed = 0"
            ))?;
            let rows = stmt.query_map([me], |r| Ok(Uin(r.get::<_, i64>(0)? as u64)))?;
            rows.collect()
        })
        .await
    }
}

impl SqliteStore {
    /// A write that changes conversation `id`: its cached copy is forgotten once the write
    /// has committed (or failed), before the caller hears back.
    async fn write_conversation<T, F>(&self, id: GroupId, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let result = self.write(f).await;
        self.conversations.forget(id);
        result
    }
}

/// A change of the group's own: its `updated_at` and change number move.
fn touch(conn: &Connection, id: i64, now_us: i64, clock: &Clock) -> StoreResult<()> {
    one_row(exec(
        conn,
        "UPDATE conversations SET updated_at = ?2, rev = ?3 WHERE group_id = ?1",
        params![id, now_us, clock.next()],
    ))?;
    Ok(())
}

/// `uin` joins group `id` (no longer one it left).
fn arrive(conn: &Connection, id: i64, uin: i64, now_us: i64, clock: &Clock) -> StoreResult<()> {
    exec(
        conn,
        "INSERT OR IGNORE INTO occupants (group_id, uin, joined_at, rev) VALUES (?1, ?2, ?3, ?4)",
        params![id, uin, now_us, clock.next()],
    )
    .map_err(backend)?;
    exec(
        conn,
        "DELETE FROM departures WHERE uin = ?2 AND group_id = ?1",
        params![id, uin],
    )
    .map_err(backend)?;
    Ok(())
}

/// `uin` leaves group `id`, remembered with a change number for catching up.
fn depart(conn: &Connection, id: i64, uin: i64, clock: &Clock) -> StoreResult<()> {
    let gone = exec(
        conn,
        "DELETE FROM occupants WHERE group_id = ?1 AND uin = ?2",
        params![id, uin],
    )
    .map_err(backend)?;
    if gone > 0 {
        exec(
            conn,
            "INSERT OR REPLACE INTO departures (uin, group_id, rev) VALUES (?2, ?1, ?3)",
            params![id, uin, clock.next()],
        )
        .map_err(backend)?;
    }
    Ok(())
}

/// The chat groups `me` occupies and sees (not hidden), each with its state, the last
/// message it can see, its unread count and its last change number.
fn listings(conn: &Connection, me: i64) -> rusqlite::Result<Vec<GroupListing>> {
    let columns: String = COLUMNS
        .split(", ")
        .map(|c| format!("c.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ");
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {columns}, o.muted, o.pinned_at, o.cleared_seq, o.seen_seq, o.received_seq, o.rev
         FROM occupants o JOIN conversations c ON c.group_id = o.group_id
         WHERE o.uin = ?1 AND c.kind != {KIND_CONFERENCE} AND c.destroyed = 0
           AND o.hidden = 0"
    ))?;
    let rows: Vec<(Conversation, MemberState, i64)> = stmt
        .query_map([me], |row| {
            Ok((
                conversation_row(row)?,
                MemberState {
                    muted: row.get::<_, i64>(12)? != 0,
                    pinned_at_us: row.get(13)?,
                    cleared_seq: row.get::<_, i64>(14)? as u64,
                    seen_seq: row.get::<_, i64>(15)? as u64,
                    received_seq: row.get::<_, i64>(16)? as u64,
                    hidden: false,
                },
                row.get::<_, i64>(17)?,
            ))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut listings = Vec::with_capacity(rows.len());
    for (mut conversation, state, marks_rev) in rows {
        fill(conn, &mut conversation)?;
        let group = conversation.group_id.0 as i64;
        let cleared = state.cleared_seq as i64;
        let last_message = conn
            .query_row(
                &format!(
                    "SELECT {} FROM messages WHERE group_id = ?1 AND seq > ?2 ORDER BY seq DESC LIMIT 1",
                    crate::messages::COLUMNS
                ),
                params![group, cleared],
                crate::messages::message_row,
            )
            .optional()?;
        // Posting means having read everything before it, so the count starts
        // after the member's own last message too. Read here, from the range the
        // count visits anyway, rather than written with every post: a seen mark
        // moved per message was a third of the pages each commit wrote under
        // fan-out.
        let unread: i64 = query_row(
            conn,
            "SELECT COUNT(*) FROM messages WHERE group_id = ?1 AND sender != ?3
                AND deleted = 0
                AND seq > (SELECT COALESCE(MAX(seq), ?2) FROM messages
                    WHERE group_id = ?1 AND seq > ?2 AND sender = ?3)",
            params![group, cleared.max(state.seen_seq as i64), me],
            |r| r.get(0),
        )?;
        // Its last change: its own, the member's marks, or a message's (the newest
        // id, or the largest number an edit or delete took).
        let messages_rev: i64 = query_row(
            conn,
            "SELECT MAX(
                COALESCE((SELECT message_id FROM messages WHERE group_id = ?1
                    ORDER BY seq DESC LIMIT 1), 0),
                COALESCE((SELECT rev FROM messages WHERE group_id = ?1 AND rev IS NOT NULL
                    ORDER BY rev DESC LIMIT 1), 0))",
            [group],
            |r| r.get(0),
        )?;
        let change_seq = (conversation.change_seq as i64)
            .max(marks_rev)
            .max(messages_rev);
        listings.push(GroupListing {
            conversation,
            state,
            last_message,
            unread: unread as u64,
            change_seq: change_seq.max(0) as u64,
        });
    }
    Ok(listings)
}
