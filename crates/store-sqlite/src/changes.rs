//! Change numbers: the one server-wide rising count that orders every change a client may
//! need to catch up on (a message posted, edited or deleted; a group created or changed; a
//! member's marks; a member leaving), so "everything after N" is one bound.
//!
//! A new message's number is its `message_id` (so posting writes no extra column or
//! index); an edit or delete writes the number it takes into `messages.rev`, which only
//! changed messages have (a partial index). Groups keep theirs in `conversations.rev`,
//! members' marks in `occupants.rev`, leavings in `departures`.
//!
//! The count lives here, in memory, and only writes on the writer thread take from it,
//! in the order they run; since batches commit in that order, a reader that sees number
//! N sees every change numbered below it that will ever exist (a rolled-back write only
//! leaves a gap). It starts past the largest number stored.

use std::sync::atomic::{AtomicU64, Ordering};

use rusqlite::Connection;

use crate::query_row;

/// The next change number (see the module doc).
#[derive(Debug, Default)]
pub(crate) struct Clock(AtomicU64);

impl Clock {
    /// Start past every number stored in `conn`'s database.
    pub(crate) fn load(conn: &Connection) -> rusqlite::Result<Clock> {
        let largest: i64 = query_row(
            conn,
            "SELECT MAX(
                (SELECT COALESCE(MAX(message_id), 0) FROM messages),
                (SELECT COALESCE(MAX(rev), 0) FROM messages WHERE rev IS NOT NULL),
                (SELECT COALESCE(MAX(rev), 0) FROM conversations),
                (SELECT COALESCE(MAX(rev), 0) FROM occupants),
                (SELECT COALESCE(MAX(rev), 0) FROM departures))",
            [],
            |r| r.get(0),
        )?;
        Ok(Clock(AtomicU64::new(largest.max(0) as u64)))
    }

    /// Take the next number. Called only on the writer thread.
    pub(crate) fn next(&self) -> i64 {
        let n = self.0.fetch_add(1, Ordering::Relaxed) + 1;
        i64::try_from(n).unwrap_or(i64::MAX)
    }
}
