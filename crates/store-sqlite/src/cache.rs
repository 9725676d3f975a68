//! Conversations as last committed, kept in memory.
//!
//! Posting a message reads its group (occupants, blocks, destroyed) every time; the
//! ingest profile showed that read, a query on the blocking pool and two thread hand-offs,
//! costing more than the insert itself. This cache answers it without either.
//!
//! It is correct because this process is the database's only writer (the writer thread):
//! every write that changes a conversation's row, occupants or blocks calls
//! [`ConversationCache::forget`] once it has committed. A read that raced with such a write
//! must not put back what it read before the commit, so reads take a generation ticket
//! first and [`ConversationCache::put`] refuses a ticket older than the last forget.
//! Message sequence numbers are not part of a cached conversation (see `last_seq`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use confer_core::model::Conversation;
use confer_core::GroupId;

/// The most conversations kept; past it, an arbitrary one is dropped to make room.
const CAPACITY: usize = 65_536;

/// A generation read before a query, to hand back to [`ConversationCache::put`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ticket(u64);

#[derive(Default)]
pub(crate) struct ConversationCache {
    /// A std `Mutex`: held for a map operation only, never across an `.await`.
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    generation: u64,
    map: HashMap<GroupId, Arc<Conversation>>,
}

impl ConversationCache {
    /// The cached conversation, or a ticket to store what a query finds.
    pub(crate) fn get(&self, id: GroupId) -> Result<Arc<Conversation>, Ticket> {
        let inner = self.lock();
        match inner.map.get(&id) {
            Some(conv) => Ok(conv.clone()),
            None => Err(Ticket(inner.generation)),
        }
    }

    /// Keep `conv`, read after `ticket` was taken, unless a write has committed since.
    pub(crate) fn put(&self, ticket: Ticket, conv: Arc<Conversation>) {
        let mut inner = self.lock();
        if inner.generation != ticket.0 {
            return;
        }
        if inner.map.len() >= CAPACITY && !inner.map.contains_key(&conv.group_id) {
            if let Some(victim) = inner.map.keys().next().copied() {
                inner.map.remove(&victim);
            }
        }
        inner.map.insert(conv.group_id, conv);
    }

    /// A write to `id` has committed: drop it, and refuse reads that started before.
    pub(crate) fn forget(&self, id: GroupId) {
        let mut inner = self.lock();
        inner.generation += 1;
        inner.map.remove(&id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The map is always consistent between operations, so a poisoned lock is usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use confer_core::model::ConversationKind;
    use confer_core::Uin;

    fn conv(id: u64, name: &str) -> Arc<Conversation> {
        Arc::new(Conversation {
            group_id: GroupId(id),
            alias: None,
            kind: ConversationKind::Group,
            name: Some(name.into()),
            avatar_url: None,
            owner: Uin(1),
            creator: Uin(1),
            occupants: Default::default(),
            blocked: Default::default(),
            created_at_us: 0,
            updated_at_us: 0,
            destroyed: false,
            last_message_id: 0,
            change_seq: 0,
            hidden: Default::default(),
        })
    }

    #[test]
    fn a_read_that_started_before_a_write_is_not_kept() {
        let cache = ConversationCache::default();
        let Err(ticket) = cache.get(GroupId(7)) else {
            panic!("empty cache answered")
        };
        cache.forget(GroupId(7)); // a write commits while the read runs
        cache.put(ticket, conv(7, "before the write"));
        assert!(cache.get(GroupId(7)).is_err());

        let Err(ticket) = cache.get(GroupId(7)) else {
            panic!("forgotten entry answered")
        };
        cache.put(ticket, conv(7, "after"));
        let cached = cache.get(GroupId(7)).ok().and_then(|c| c.name.clone());
        assert_eq!(cached.as_deref(), Some("after"));
        cache.forget(GroupId(7));
        assert!(cache.get(GroupId(7)).is_err());
    }
}
