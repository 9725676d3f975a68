//! [`LocalBus`]: subscriptions of this process's sessions, indexed for fast matching.
//!
//! Subscriptions are indexed by their whole pattern: class, then subclass, type and
//! `obj_id`, each level holding its concrete values in a map and its wildcard apart. An
//! event looks up at most eight slots (each field: its value, or the wildcard), and each
//! slot holds only subscriptions that match it, at most one per session: publishing
//! costs the number of recipients, whatever the number of subscriptions any one session
//! holds, and subscribing a new pattern costs the same whatever the session holds. A
//! session gets an event once even when several of its subscriptions match (the first
//! one's body is merged). Subscriptions that rest on a [`Grant`] are also indexed by it,
//! so revoking the right removes them all at once.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use confer_core::bus::{Delivery, EventBus, PushError, SessionRegistry};
use confer_core::{Event, Grant, SessionId, Subscription};

pub struct LocalBus {
    registry: Arc<dyn SessionRegistry>,
    /// std `RwLock`: held only to read or edit the index, never across an `.await`.
    index: RwLock<Index>,
}

/// The pattern index, the per-session lists and the grant index hold the same
/// `Arc<Subscription>`: a subscription is kept once, not copied into each (each copy was
/// ~170 bytes and three small strings per session; every External API session starts
/// with two).
#[derive(Default)]
struct Index {
    by_session: HashMap<SessionId, Vec<Arc<Subscription>>>,
    by_pattern: HashMap<String, Level<Level<Level<Slot>>>>,
    by_grant: HashMap<Grant, Vec<(SessionId, Arc<Subscription>)>>,
    /// The grant of each subscription that rests on one, by session: kept apart so that
    /// a session with none (most: their own two rest on the login) pays nothing for it.
    granted: HashMap<SessionId, Vec<(Arc<Subscription>, Grant)>>,
}

/// One field of a pattern: concrete values, and the wildcard.
struct Level<T> {
    by: HashMap<String, T>,
    any: Option<Box<T>>,
}

impl<T> Default for Level<T> {
    fn default() -> Self {
        Level {
            by: HashMap::new(),
            any: None,
        }
    }
}

impl<T: Default> Level<T> {
    fn entry(&mut self, key: &Option<String>) -> &mut T {
        match key {
            // Most objects (a session, a user) have one or two subscribers: maps start
            // empty and grow as entries come.
            Some(k) => self.by.entry(k.clone()).or_default(),
            None => self.any.get_or_insert_with(Default::default),
        }
    }
}

impl<T> Level<T> {
    fn get_mut(&mut self, key: &Option<String>) -> Option<&mut T> {
        match key {
            Some(k) => self.by.get_mut(k),
            None => self.any.as_deref_mut(),
        }
    }

    /// The entries an event's field value reaches: its own and the wildcard's.
    fn reached(&self, value: Option<&str>) -> impl Iterator<Item = &T> {
        value
            .and_then(|v| self.by.get(v))
            .into_iter()
            .chain(self.any.as_deref())
    }

    /// Drop the entry under `key` if `empty` says it holds nothing.
    fn prune(&mut self, key: &Option<String>, empty: impl Fn(&T) -> bool) {
        match key {
            Some(k) => {
                if self.by.get(k).is_some_and(&empty) {
                    self.by.remove(k);
                }
            }
            None => {
                if self.any.as_deref().is_some_and(&empty) {
                    self.any = None;
                }
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.by.is_empty() && self.any.is_none()
    }
}

/// The sessions subscribed to one exact pattern, at most one entry each: a short list
/// while small (most patterns name one session or one user), a map once it grows.
enum Slot {
    Few(Vec<(SessionId, Arc<Subscription>)>),
    /// Boxed: the slot stays as small as a `Vec` (most are `Few`, one per session), one
    /// extra allocation only for the few large ones.
    #[allow(clippy::box_collection)]
    Many(Box<HashMap<SessionId, Arc<Subscription>>>),
}

/// A slot longer than this becomes a map.
const FEW: usize = 16;

impl Default for Slot {
    fn default() -> Self {
        Slot::Few(Vec::new())
    }
}

impl Slot {
    fn get(&self, session: &SessionId) -> Option<&Arc<Subscription>> {
        match self {
            Slot::Few(v) => v.iter().find(|(s, _)| s == session).map(|(_, sub)| sub),
            Slot::Many(m) => m.get(session),
        }
    }

    fn insert(&mut self, session: &SessionId, sub: Arc<Subscription>) {
        match self {
            Slot::Few(v) => {
                if let Some(entry) = v.iter_mut().find(|(s, _)| s == session) {
                    entry.1 = sub;
                } else if v.len() < FEW {
                    v.reserve_exact(1);
                    v.push((session.clone(), sub));
                } else {
                    let mut m: HashMap<_, _> = v.drain(..).collect();
                    m.insert(session.clone(), sub);
                    *self = Slot::Many(Box::new(m));
                }
            }
            Slot::Many(m) => {
                m.insert(session.clone(), sub);
            }
        }
    }

    fn remove(&mut self, session: &SessionId) {
        match self {
            Slot::Few(v) => v.retain(|(s, _)| s != session),
            Slot::Many(m) => {
                m.remove(session);
            }
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            Slot::Few(v) => v.is_empty(),
            Slot::Many(m) => m.is_empty(),
        }
    }

    fn for_each(&self, mut f: impl FnMut(&SessionId, &Arc<Subscription>)) {
        match self {
            Slot::Few(v) => v.iter().for_each(|(s, sub)| f(s, sub)),
            Slot::Many(m) => m.iter().for_each(|(s, sub)| f(s, sub)),
        }
    }
}

impl Index {
    fn slot_mut(&mut self, p: &Subscription) -> Option<&mut Slot> {
        self.by_pattern
            .get_mut(&p.class)?
            .get_mut(&p.subclass)?
            .get_mut(&p.kind)?
            .get_mut(&p.obj_id)
    }

    /// Take `session`'s entry for pattern `p` out of the pattern index, pruning levels
    /// left empty.
    fn unindex(&mut self, session: &SessionId, p: &Subscription) {
        let Some(class) = self.by_pattern.get_mut(&p.class) else {
            return;
        };
        if let Some(sub) = class.get_mut(&p.subclass) {
            if let Some(kind) = sub.get_mut(&p.kind) {
                if let Some(slot) = kind.get_mut(&p.obj_id) {
                    slot.remove(session);
                }
                kind.prune(&p.obj_id, Slot::is_empty);
            }
            sub.prune(&p.kind, Level::is_empty);
        }
        class.prune(&p.subclass, Level::is_empty);
        if class.is_empty() {
            self.by_pattern.remove(&p.class);
        }
    }

    fn ungrant(&mut self, grant: &Grant, session: &SessionId, sub: &Arc<Subscription>) {
        if let Some(list) = self.by_grant.get_mut(grant) {
            list.retain(|(s, held)| !(s == session && Arc::ptr_eq(held, sub)));
            if list.is_empty() {
                self.by_grant.remove(grant);
            }
        }
    }

    /// Remove one subscription of `session` from every index but `by_session`.
    fn forget(&mut self, session: &SessionId, sub: &Arc<Subscription>) {
        self.unindex(session, sub);
        let Some(list) = self.granted.get_mut(session) else {
            return;
        };
        let Some(at) = list.iter().position(|(s, _)| Arc::ptr_eq(s, sub)) else {
            return;
        };
        let (_, grant) = list.remove(at);
        if list.is_empty() {
            self.granted.remove(session);
        }
        self.ungrant(&grant, session, sub);
    }
}

impl LocalBus {
    pub fn new(registry: Arc<dyn SessionRegistry>) -> Self {
        LocalBus {
            registry,
            index: RwLock::new(Index::default()),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Index> {
        self.index.write().unwrap_or_else(|e| e.into_inner())
    }
}

impl EventBus for LocalBus {
    fn subscribe(
        &self,
        session: &SessionId,
        subscription: Subscription,
        grant: Option<Grant>,
        max: usize,
    ) -> bool {
        let sub = Arc::new(subscription);
        let mut index = self.write();
        let replaced = index
            .slot_mut(&sub)
            .and_then(|slot| slot.get(session).cloned());
        match &replaced {
            // The same pattern again: swap it in place (found through the pattern index,
            // so only a replacement looks through the session's list).
            Some(old) => {
                index.forget(session, old);
                let mine = index.by_session.entry(session.clone()).or_default();
                let Some(at) = mine.iter().position(|s| Arc::ptr_eq(s, old)) else {
                    tracing::error!(%session, "subscription index out of step");
                    return false;
                };
                mine[at] = Arc::clone(&sub);
            }
            None => {
                let mine = index.by_session.entry(session.clone()).or_default();
                if mine.len() >= max {
                    if mine.is_empty() {
                        index.by_session.remove(session);
                    }
                    return false;
                }
                // Grown one at a time: most sessions hold a handful for their whole life.
                mine.reserve_exact(1);
                mine.push(Arc::clone(&sub));
            }
        }
        index
            .by_pattern
            .entry(sub.class.clone())
            .or_default()
            .entry(&sub.subclass)
            .entry(&sub.kind)
            .entry(&sub.obj_id)
            .insert(session, Arc::clone(&sub));
        if let Some(g) = grant {
            index
                .granted
                .entry(session.clone())
                .or_default()
                .push((Arc::clone(&sub), g.clone()));
            index
                .by_grant
                .entry(g)
                .or_default()
                .push((session.clone(), sub));
        }
        true
    }

    fn unsubscribe(&self, session: &SessionId, pattern: &Subscription) -> bool {
        let mut index = self.write();
        let Some(mine) = index.by_session.get_mut(session) else {
            return false;
        };
        let Some(at) = mine.iter().position(|s| s.same_pattern(pattern)) else {
            return false;
        };
        let held = mine.remove(at);
        if mine.is_empty() {
            index.by_session.remove(session);
        }
        index.forget(session, &held);
        true
    }

    fn subscriptions(&self, session: &SessionId) -> Vec<Subscription> {
        self.read()
            .by_session
            .get(session)
            .map(|subs| subs.iter().map(|s| Subscription::clone(s)).collect())
            .unwrap_or_default()
    }

    fn drop_session(&self, session: &SessionId) {
        let mut index = self.write();
        let Some(subs) = index.by_session.remove(session) else {
            return;
        };
        for sub in &subs {
            index.forget(session, sub);
        }
    }

    fn revoke(&self, grant: &Grant) -> usize {
        let mut index = self.write();
        let Some(list) = index.by_grant.remove(grant) else {
            return 0;
        };
        for (session, sub) in &list {
            index.unindex(session, sub);
            if let Some(mine) = index.by_session.get_mut(session) {
                mine.retain(|s| !Arc::ptr_eq(s, sub));
                if mine.is_empty() {
                    index.by_session.remove(session);
                }
            }
            if let Some(list) = index.granted.get_mut(session) {
                list.retain(|(s, _)| !Arc::ptr_eq(s, sub));
                if list.is_empty() {
                    index.granted.remove(session);
                }
            }
        }
        list.len()
    }

    fn publish(&self, event: Event) -> usize {
        let event = Arc::new(event);
        // One delivery per session, carrying the body of every subscription of it that
        // matched, most specific first (`reached` yields a field's own entry before its
        // wildcard's, level by level).
        let targets: Vec<(SessionId, Vec<confer_core::Json>)> = {
            let index = self.read();
            let Some(class) = index.by_pattern.get(&event.class) else {
                return 0;
            };
            let mut seen: HashMap<SessionId, usize> = HashMap::new();
            let mut targets: Vec<(SessionId, Vec<confer_core::Json>)> = Vec::new();
            for sub in class.reached(event.subclass.as_deref()) {
                for kind in sub.reached(event.kind.as_deref()) {
                    for slot in kind.reached(event.obj_id.as_deref()) {
                        slot.for_each(|session, s| match seen.get(session) {
                            Some(&at) => targets[at].1.extend(s.body.clone()),
                            None => {
                                seen.insert(session.clone(), targets.len());
                                targets.push((session.clone(), s.body.iter().cloned().collect()));
                            }
                        });
                    }
                }
            }
            targets
        };
        let mut delivered = 0;
        for (session, merge) in targets {
            let delivery = Delivery::Event {
                event: event.clone(),
                merge,
            };
            match self.registry.deliver(&session, delivery) {
                Ok(()) => delivered += 1,
                // Counted by the mailbox; its connection logs the cut once, with the count.
                Err(PushError::Full) | Err(PushError::Closed) => {}
            }
        }
        delivered
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LocalRegistry;
    use confer_core::bus::{Mailbox, SessionInfo};
    use confer_core::{EventBody, Uin};
    use tokio_util::sync::CancellationToken;

    fn session(
        registry: &LocalRegistry,
        id: &str,
        capacity: usize,
    ) -> (
        SessionId,
        confer_core::bus::MailboxReceiver,
        CancellationToken,
    ) {
        let overflow = CancellationToken::new();
        let (mailbox, rx) = Mailbox::bounded(capacity, overflow.clone());
        let sid = SessionId::new(id);
        assert!(registry.register(
            SessionInfo {
                session_id: sid.clone(),
                uin: Uin(1),
                user: "u".into(),
                remote: "test".into(),
                door: "test",
                token_hash: None,
                started_at_us: 0,
                meta: None,
            },
            mailbox,
        ));
        (sid, rx, overflow)
    }

    fn event(class: &str, obj: Option<&str>) -> Event {
        Event::new(class, None, None, obj.map(str::to_string), EventBody::Empty)
    }

    fn sub(class: &str, obj: Option<&str>) -> Subscription {
        Subscription {
            class: class.into(),
            subclass: None,
            kind: None,
            obj_id: obj.map(str::to_string),
            body: None,
        }
    }

    #[test]
    fn delivers_to_concrete_and_wildcard_subscribers_once_each() {
        let registry = Arc::new(LocalRegistry::new());
        let bus = LocalBus::new(registry.clone());
        let (a, mut rx_a, _) = session(&registry, "a", 8);
        let (b, mut rx_b, _) = session(&registry, "b", 8);
        assert!(bus.subscribe(&a, sub("app", Some("o1")), None, usize::MAX));
        assert!(bus.subscribe(&a, sub("app", None), None, usize::MAX));
        assert!(bus.subscribe(&b, sub("app", Some("o2")), None, usize::MAX));
        assert_eq!(bus.publish(event("app", Some("o1"))), 1);
        assert!(rx_a.try_recv().is_some());
        assert!(rx_a.try_recv().is_none(), "one delivery per session");
        assert!(rx_b.try_recv().is_none());
        assert!(bus.unsubscribe(&a, &sub("app", None)));
        assert!(!bus.unsubscribe(&a, &sub("app", None)));
        assert_eq!(bus.publish(event("app", Some("o3"))), 0);
        bus.drop_session(&a);
        assert!(bus.subscriptions(&a).is_empty());
        assert_eq!(bus.publish(event("app", Some("o1"))), 0);
    }

    #[test]
    fn matching_and_subscribing_do_not_scan_one_sessions_subscriptions() {
        let registry = Arc::new(LocalRegistry::new());
        let bus = LocalBus::new(registry.clone());
        let (a, mut rx, _) = session(&registry, "a", 8);
        for i in 0..5_000 {
            let obj = format!("o{i}");
            assert!(bus.subscribe(&a, sub("app", Some(&obj)), None, usize::MAX));
        }
        assert_eq!(bus.publish(event("app", Some("o4999"))), 1);
        assert!(rx.try_recv().is_some());
        assert_eq!(bus.publish(event("app", Some("nobody"))), 0);
        assert_eq!(bus.subscriptions(&a).len(), 5_000);
        bus.drop_session(&a);
        assert!(
            bus.read().by_pattern.is_empty(),
            "levels left empty are pruned"
        );
    }

    #[test]
    fn a_session_holds_at_most_max_new_patterns_but_may_replace_one() {
        let registry = Arc::new(LocalRegistry::new());
        let bus = LocalBus::new(registry.clone());
        let (a, _rx, _) = session(&registry, "a", 8);
        assert!(bus.subscribe(&a, sub("app", Some("1")), None, 2));
        assert!(bus.subscribe(&a, sub("app", Some("2")), None, 2));
        assert!(!bus.subscribe(&a, sub("app", Some("3")), None, 2));
        assert!(bus.subscribe(&a, sub("app", Some("2")), None, 2));
        assert_eq!(bus.subscriptions(&a).len(), 2);
    }

    #[test]
    fn revoking_a_grant_removes_what_rested_on_it_only() {
        let registry = Arc::new(LocalRegistry::new());
        let bus = LocalBus::new(registry.clone());
        let (a, mut rx_a, _) = session(&registry, "a", 8);
        let (b, mut rx_b, _) = session(&registry, "b", 8);
        let member = |uin| Grant::Member {
            group: confer_core::GroupId(7),
            uin: Uin(uin),
        };
        assert!(bus.subscribe(&a, sub("media", Some("g7")), Some(member(1)), 10));
        assert!(bus.subscribe(&a, sub("media", None), Some(member(1)), 10));
        assert!(bus.subscribe(&b, sub("media", Some("g7")), Some(member(2)), 10));
        assert!(bus.subscribe(&a, sub("app", None), None, 10));
        assert_eq!(bus.revoke(&member(1)), 2);
        assert_eq!(bus.revoke(&member(1)), 0);
        assert_eq!(bus.publish(event("media", Some("g7"))), 1);
        assert!(rx_b.try_recv().is_some());
        assert!(rx_a.try_recv().is_none());
        assert_eq!(bus.subscriptions(&a), vec![sub("app", None)]);
        // Replacing a pattern replaces its grant: the old one no longer reaches it.
        assert!(bus.subscribe(&b, sub("media", Some("g7")), None, 10));
        assert_eq!(bus.revoke(&member(2)), 0);
        assert_eq!(bus.subscriptions(&b).len(), 1);
        assert!(bus.subscribe(&a, sub("media", None), Some(member(1)), 10));
        bus.drop_session(&a);
        bus.drop_session(&b);
        let index = bus.read();
        assert!(index.by_grant.is_empty() && index.granted.is_empty());
        assert!(index.by_pattern.is_empty() && index.by_session.is_empty());
    }

    #[test]
    fn a_full_queue_cuts_that_session_only() {
        let registry = Arc::new(LocalRegistry::new());
        let bus = LocalBus::new(registry.clone());
        let (slow, _rx_slow, slow_cut) = session(&registry, "slow", 1);
        let (fast, mut rx_fast, fast_cut) = session(&registry, "fast", 8);
        assert!(bus.subscribe(&slow, sub("app", None), None, usize::MAX));
        assert!(bus.subscribe(&fast, sub("app", None), None, usize::MAX));
        assert_eq!(bus.publish(event("app", None)), 2);
        assert_eq!(bus.publish(event("app", None)), 1);
        assert!(slow_cut.is_cancelled());
        assert!(!fast_cut.is_cancelled());
        assert!(rx_fast.try_recv().is_some() && rx_fast.try_recv().is_some());
    }

    #[test]
    fn sessions_are_found_by_user_and_number_until_unregistered() {
        let registry = LocalRegistry::new();
        let (a, mut rx, _) = session(&registry, "a", 1);
        assert_eq!(registry.sessions_of_uin(Uin(1)).len(), 1);
        let make = || Delivery::Stop {
            code: 0,
            reason: String::new(),
        };
        assert_eq!(
            registry.deliver_to_users(&mut [Uin(1)].into_iter(), "other door", &make),
            0
        );
        assert_eq!(
            registry.deliver_to_users(&mut [Uin(1), Uin(2)].into_iter(), "test", &make),
            1
        );
        assert!(rx.try_recv().is_some());
        assert_eq!(registry.sessions_of_user("u").len(), 1);
        registry.unregister(&a);
        assert!(registry.sessions_of_uin(Uin(1)).is_empty());
        assert!(registry.sessions_of_user("u").is_empty());
    }
}
