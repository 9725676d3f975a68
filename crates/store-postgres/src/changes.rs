//! Change numbers on PostgreSQL: the one server-wide rising count that orders every change
//! a client may need to catch up on (a message posted, edited or deleted; a group created
//! or changed; a member's marks; a member leaving or hiding a group), with the SQLite
//! backend's meaning (`crates/store-sqlite/src/changes.rs`).
//!
//! Catching up relies on one rule: **a reader that sees number N sees every change
//! numbered below N that will ever exist.** SQLite's one writer gets it from taking
//! numbers in commit order. Here several nodes write at once, so the count is one row,
//! `change_clock`, that a numbered change locks (`SELECT … FOR UPDATE`) and holds until
//! its commit: numbered changes take turns across nodes, so their numbers are in commit
//! order too. (A sequence would not do: a transaction holding 7 may commit after one
//! holding 8, and a reader that saw 8 would skip 7 for good.) The cost is that numbered
//! writes commit one at a time for the whole database, as on SQLite.
//!
//! **Lock order, so no two transactions wait for each other:** a transaction locks its
//! conversation's row first (if it has one), then the clock, then the rows it changes.
//! No transaction locks two conversations.
//!
//! A new message's number is its `message_id`; an edit or delete writes its number into
//! `messages.rev`. Groups keep theirs in `conversations.rev`, members' marks in
//! `occupants.rev`, leavings in `departures`.

use confer_core::store::StoreResult;
use tokio_postgres::Transaction;

use crate::backend;

/// The clock, locked by one transaction until its commit; numbers are taken from it in
/// memory and the last one written back by [`Clock::save`].
pub(crate) struct Clock {
    last: i64,
    taken: bool,
}

impl Clock {
    /// Lock the clock row (waits while another transaction holds it).
    pub(crate) async fn lock(tx: &Transaction<'_>) -> StoreResult<Clock> {
        let row = tx
            .query_one("SELECT n FROM change_clock FOR UPDATE", &[])
            .await
            .map_err(backend)?;
        Ok(Clock {
            last: row.try_get(0).map_err(backend)?,
            taken: false,
        })
    }

    /// The next number.
    pub(crate) fn next(&mut self) -> i64 {
        self.last = self.last.saturating_add(1);
        self.taken = true;
        self.last
    }

    /// Write the last number taken back (before the commit).
    pub(crate) async fn save(self, tx: &Transaction<'_>) -> StoreResult<()> {
        if self.taken {
            tx.execute("UPDATE change_clock SET n = $1", &[&self.last])
                .await
                .map_err(backend)?;
        }
        Ok(())
    }
}

/// Lock a conversation's row for a change (first, by the lock order above); `false` if
/// there is no such conversation. `NO KEY UPDATE`, so inserts that reference the row
/// (occupants, messages) are not blocked by it.
pub(crate) async fn lock_conversation(tx: &Transaction<'_>, id: i64) -> StoreResult<bool> {
    Ok(tx
        .query_opt(
            "SELECT 1 FROM conversations WHERE group_id = $1 FOR NO KEY UPDATE",
            &[&id],
        )
        .await
        .map_err(backend)?
        .is_some())
}
