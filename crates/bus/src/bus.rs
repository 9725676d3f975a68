//! [`LocalBus`]: subscriptions of this process's sessions, indexed for fast matching.
//!
//! Subscriptions are indexed by class, then by `obj_id` (concrete ids in a map, wildcard
//! ones in a list), so publishing a user or session event looks at that object's
//! subscribers only, not at every session. A session gets an event once even when several
//! of its subscriptions match (the first one's body is merged).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use confer_core::bus::{Delivery, EventBus, PushError, SessionRegistry};
use confer_core::{Event, SessionId, Subscription};

pub struct LocalBus {
    registry: Arc<dyn SessionRegistry>,
    /// std `RwLock`: held only to read or edit the index, never across an `.await`.
    index: RwLock<Index>,
}

/// Both indexes hold the same `Arc<Subscription>`: a subscription is kept once, not copied
/// into each (each copy was ~170 bytes and three small strings per session; every
/// External API session starts with two).
#[derive(Default)]
struct Index {
    by_session: HashMap<SessionId, Vec<Arc<Subscription>>>,
    by_class: HashMap<String, ClassIndex>,
}

type Slot = Vec<(SessionId, Arc<Subscription>)>;

#[derive(Default)]
struct ClassIndex {
    by_obj: HashMap<String, Slot>,
    any_obj: Slot,
}

impl ClassIndex {
    fn slot(&mut self, obj_id: &Option<String>) -> &mut Slot {
        match obj_id {
            // Most objects (a session, a user) have one or two subscribers: a new list
            // starts with room for one, not the four `Vec` would reserve on first push.
            Some(obj) => self
                .by_obj
                .entry(obj.clone())
                .or_insert_with(|| Vec::with_capacity(1)),
            None => &mut self.any_obj,
        }
    }

    fn remove(&mut self, session: &SessionId, pattern: &Subscription) {
        let slot = self.slot(&pattern.obj_id);
        slot.retain(|(s, sub)| !(s == session && sub.same_pattern(pattern)));
        if slot.is_empty() {
            if let Some(obj) = &pattern.obj_id {
                self.by_obj.remove(obj);
            }
        }
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
    fn subscribe(&self, session: &SessionId, subscription: Subscription) {
        let subscription = Arc::new(subscription);
        let mut index = self.write();
        let class = index
            .by_class
            .entry(subscription.class.clone())
            .or_default();
        class.remove(session, &subscription);
        class
            .slot(&subscription.obj_id)
            .push((session.clone(), Arc::clone(&subscription)));
        let mine = index.by_session.entry(session.clone()).or_default();
        mine.retain(|s| !s.same_pattern(&subscription));
        // Grown one at a time: a session has a handful of subscriptions, held for its
        // whole life, and subscribing is rare next to holding.
        mine.reserve_exact(1);
        mine.push(subscription);
    }

    fn unsubscribe(&self, session: &SessionId, pattern: &Subscription) -> bool {
        let mut index = self.write();
        let Some(mine) = index.by_session.get_mut(session) else {
            return false;
        };
        let before = mine.len();
        mine.retain(|s| !s.same_pattern(pattern));
        if mine.len() == before {
            return false;
        }
        if let Some(class) = index.by_class.get_mut(&pattern.class) {
            class.remove(session, pattern);
        }
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
        for sub in subs {
            if let Some(class) = index.by_class.get_mut(&sub.class) {
                class.remove(session, &sub);
            }
        }
    }

    fn publish(&self, event: Event) -> usize {
        let event = Arc::new(event);
        let targets: Vec<(SessionId, Option<confer_core::Json>)> = {
            let index = self.read();
            let Some(class) = index.by_class.get(&event.class) else {
                return 0;
            };
            let concrete = event
                .obj_id
                .as_ref()
                .and_then(|obj| class.by_obj.get(obj))
                .into_iter()
                .flatten();
            let mut seen = HashSet::new();
            concrete
                .chain(class.any_obj.iter())
                .filter(|(_, sub)| sub.matches(&event))
                .filter(|(session, _)| seen.insert(session.clone()))
                .map(|(session, sub)| (session.clone(), sub.body.clone()))
                .collect()
        };
        let mut delivered = 0;
        for (session, merge) in targets {
            let delivery = Delivery::Event {
                event: event.clone(),
                merge,
            };
            match self.registry.deliver(&session, delivery) {
                Ok(()) => delivered += 1,
                Err(PushError::Full) => {
                    tracing::warn!(%session, "outbound queue full: session cut");
                }
                Err(PushError::Closed) => {}
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
                token_id: None,
                started_at_us: 0,
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
        bus.subscribe(&a, sub("app", Some("o1")));
        bus.subscribe(&a, sub("app", None));
        bus.subscribe(&b, sub("app", Some("o2")));
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
    fn a_full_queue_cuts_that_session_only() {
        let registry = Arc::new(LocalRegistry::new());
        let bus = LocalBus::new(registry.clone());
        let (slow, _rx_slow, slow_cut) = session(&registry, "slow", 1);
        let (fast, mut rx_fast, fast_cut) = session(&registry, "fast", 8);
        bus.subscribe(&slow, sub("app", None));
        bus.subscribe(&fast, sub("app", None));
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
