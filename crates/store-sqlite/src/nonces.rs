//! The window in which a retried message (same group, sender and `nonce`) is recognized.
//!
//! A unique index on the nonce did this before, forever, and cost every message one more
//! page written per commit: nonces are random, so each lands on a leaf of its own, and
//! that index was ~40% of the writer's CPU per message (`cargo bench -p
//! confer-store-sqlite --bench append`: 14.4 -> 8.8 us per append without it). Retries
//! come within seconds or minutes (a lost ack, a reconnect, a server restart), so the
//! writer keeps the recent nonces in memory instead, like the idempotency windows of
//! other messaging servers: the last [`NonceOptions::window`] of them, at most
//! [`NonceOptions::max`], whichever is fewer. On open the window is filled again from the
//! newest messages, so a retry across a restart is still recognized.
//!
//! Only the writer thread reads and changes the window (the caller's lock is never
//! contended). An entry is a 64-bit hash of (group, sender, nonce) with a per-process
//! random key; a hit is confirmed against the stored row, so a collision or an entry
//! left by a rolled-back write never makes a new message a duplicate.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

use rusqlite::{params, Connection};

/// How long and how many nonces are remembered.
#[derive(Clone, Copy, Debug)]
pub struct NonceOptions {
    /// Messages older than this (by creation time, against the newest) are forgotten.
    pub window: Duration,
    /// The most nonces remembered; past it the oldest go first. Each costs 44-90 bytes
    /// (a map entry and a queue slot; both tables grow by doubling).
    pub max: usize,
}

impl Default for NonceOptions {
    fn default() -> Self {
        NonceOptions {
            window: Duration::from_secs(24 * 3600),
            max: 1_000_000,
        }
    }
}

pub(crate) struct NonceWindow {
    options: NonceOptions,
    hasher: RandomState,
    /// Key -> the message id that used it last.
    by_key: HashMap<u64, u64>,
    /// (message id, created at µs, key), oldest first: what to forget next.
    order: VecDeque<(u64, i64, u64)>,
}

impl NonceWindow {
    pub fn new(options: NonceOptions) -> Self {
        NonceWindow {
            options,
            hasher: RandomState::new(),
            by_key: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    fn window_us(&self) -> i64 {
        i64::try_from(self.options.window.as_micros()).unwrap_or(i64::MAX)
    }

    pub fn key(&self, group: i64, sender: i64, nonce: &str) -> u64 {
        self.hasher.hash_one((group, sender, nonce))
    }

    /// The message that last used `key`, if still remembered (to be confirmed by the caller).
    pub fn get(&self, key: u64) -> Option<u64> {
        self.by_key.get(&key).copied()
    }

    /// Remember that `message_id`, created at `created_at_us`, used `key`; forget what has
    /// left the window.
    pub fn remember(&mut self, key: u64, message_id: u64, created_at_us: i64) {
        if self.options.max == 0 {
            return;
        }
        self.by_key.insert(key, message_id);
        self.order.push_back((message_id, created_at_us, key));
        let oldest_kept = created_at_us.saturating_sub(self.window_us());
        while let Some(&(id, created, key)) = self.order.front() {
            if self.order.len() <= self.options.max && created >= oldest_kept {
                break;
            }
            self.order.pop_front();
            // A later message may have taken the key over (a rolled-back write's id).
            if self.by_key.get(&key) == Some(&id) {
                self.by_key.remove(&key);
            }
        }
        if self.by_key.capacity() > 2 * self.by_key.len() + 1024 {
            self.by_key.shrink_to_fit();
            self.order.shrink_to_fit();
        }
    }

    /// Fill the window from the newest stored messages (at open).
    pub fn load(&mut self, conn: &Connection, now_us: i64) -> rusqlite::Result<()> {
        let max = i64::try_from(self.options.max).unwrap_or(i64::MAX);
        let mut stmt = conn.prepare(
            "SELECT message_id, group_id, sender, nonce, created_at FROM messages
             WHERE message_id > (SELECT COALESCE(MAX(message_id), 0) FROM messages) - ?1
               AND created_at >= ?2 AND nonce IS NOT NULL
             ORDER BY message_id",
        )?;
        let rows = stmt.query_map(params![max, now_us.saturating_sub(self.window_us())], |r| {
            Ok((
                r.get::<_, i64>(0)? as u64,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, i64>(4)?,
            ))
        })?;
        for row in rows {
            let (id, group, sender, nonce, created) = row?;
            let key = self.key(group, sender, &nonce);
            self.remember(key, id, created);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_go_first_past_the_count_or_the_window() {
        let mut w = NonceWindow::new(NonceOptions {
            window: Duration::from_secs(10),
            max: 2,
        });
        let (a, b, c) = (w.key(1, 1, "a"), w.key(1, 1, "b"), w.key(1, 1, "c"));
        w.remember(a, 1, 0);
        w.remember(b, 2, 0);
        assert_eq!((w.get(a), w.get(b)), (Some(1), Some(2)));
        w.remember(c, 3, 0);
        assert_eq!((w.get(a), w.get(b), w.get(c)), (None, Some(2), Some(3)));
        // 11 s later both earlier ones are out of the 10 s window.
        let d = w.key(1, 1, "d");
        w.remember(d, 4, 11_000_000);
        assert_eq!((w.get(b), w.get(c), w.get(d)), (None, None, Some(4)));
    }

    #[test]
    fn a_key_taken_over_stays_when_its_first_use_is_forgotten() {
        let mut w = NonceWindow::new(NonceOptions {
            window: Duration::from_secs(10),
            max: 2,
        });
        let a = w.key(1, 1, "a");
        w.remember(a, 1, 0);
        w.remember(a, 2, 0);
        w.remember(w.key(1, 1, "b"), 3, 0);
        assert_eq!(w.get(a), Some(2));
    }

    #[test]
    fn keys_differ_by_group_sender_and_nonce() {
        let w = NonceWindow::new(NonceOptions::default());
        let k = w.key(1, 2, "n");
        assert_ne!(k, w.key(2, 2, "n"));
        assert_ne!(k, w.key(1, 3, "n"));
        assert_ne!(k, w.key(1, 2, "m"));
    }
}
