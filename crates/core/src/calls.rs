//! Where live calls are kept: [`CallState`], the live calls (ringing or accepted) with
//! their busy index and ringing timers, and [`LocalCalls`], its in-process implementation.
//!
//! The stored history of a call is the `CallStore`'s; this is what must be shared by
//! every node that serves a callee or a caller while the call is live: which call each
//! group has, who is busy, and when a ringing call times out. One node keeps it in memory
//! ([`LocalCalls`]); several nodes keep it in Redis (`confer-bus-redis`, `calls.rs`),
//! behind the same trait, so `service/calls.rs` reads the same either way.
//!
//! **Every change is atomic:** a start checks "no live call in this group" and marks busy
//! callees in one step, an update applies to the state it read (else it is retried),
//! and removal happens once, so whoever removes a call is the one who ends it. **A ringing
//! timer fires once:** [`CallState::due`] hands each due call to exactly one waiter, on
//! whichever node asks first.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use crate::ids::{GroupId, Uin};
use crate::model::Call;
use crate::store::StoreResult;

/// A change to a live call. It may run more than once, on the state as it is at each
/// attempt, when another node changed the call meanwhile.
pub type CallChange<'a> = &'a (dyn Fn(&mut Call) + Send + Sync);

/// The live calls of a server (one node's memory, or shared by a cluster). Backend
/// failures are [`StoreError::Backend`](crate::store::StoreError::Backend).
#[async_trait]
pub trait CallState: Send + Sync {
    /// A live call by id.
    async fn get(&self, call_id: u64) -> StoreResult<Option<Call>>;
    /// The live call of a group (a group has at most one).
    async fn of_group(&self, group: GroupId) -> StoreResult<Option<Call>>;
    /// Make `call` live and arm its ringing timer (`ring_for`), unless its group has a
    /// live call already (`None`, nothing changed). Callees in another live call (busy)
    /// join `declined` in the same step; the answer is the call as made live and those
    /// busy callees. Callees already in `declined` are not counted as busy in this one.
    async fn start(&self, call: Call, ring_for: Duration) -> StoreResult<Option<(Call, Vec<Uin>)>>;
    /// Change a live call; `None` (nothing changed) if it has ended.
    async fn update(&self, call_id: u64, change: CallChange<'_>) -> StoreResult<Option<Call>>;
    /// End a live call: its state, busy counts and timer go. `None` if it had ended, so
    /// of two racing removals one gets the call.
    async fn remove(&self, call_id: u64) -> StoreResult<Option<Call>>;
    /// Wait until ringing timers are due, and claim them: each due call id is returned to
    /// one caller only, whichever node it runs on. A call that ended before its timer
    /// was due may still be returned (its removal disarms the timer where it can).
    async fn due(&self) -> Vec<u64>;
}

/// Who a call counts as busy: its caller and the callees who have not declined.
pub fn counted(call: &Call) -> impl Iterator<Item = Uin> + '_ {
    std::iter::once(call.caller).chain(call.callees.difference(&call.declined).copied())
}

/// The live calls, with the indexes busy handling reads: the one live call of each group,
/// and how many live calls each user is in. Every change goes through `start`, `update`
/// and `remove`, which keep the indexes true; nothing scans the calls.
#[derive(Default)]
struct Live {
    by_id: HashMap<u64, Call>,
    by_group: HashMap<GroupId, u64>,
    in_calls: HashMap<Uin, usize>,
}

impl Live {
    fn count(&mut self, call: &Call, add: bool) {
        for uin in counted(call) {
            if add {
                *self.in_calls.entry(uin).or_default() += 1;
            } else if let Some(n) = self.in_calls.get_mut(&uin) {
                *n -= 1;
                if *n == 0 {
                    self.in_calls.remove(&uin);
                }
            }
        }
    }

    fn start(&mut self, mut call: Call) -> Option<(Call, Vec<Uin>)> {
        if self.by_group.contains_key(&call.group_id) {
            return None;
        }
        let busy: Vec<Uin> = call
            .callees
            .iter()
            .copied()
            .filter(|u| self.in_calls.contains_key(u))
            .collect();
        call.declined.extend(busy.iter().copied());
        self.by_group.insert(call.group_id, call.call_id);
        self.count(&call, true);
        self.by_id.insert(call.call_id, call.clone());
        Some((call, busy))
    }

    fn update(&mut self, call_id: u64, change: CallChange<'_>) -> Option<Call> {
        let mut call = self.by_id.remove(&call_id)?;
        self.count(&call, false);
        change(&mut call);
        self.count(&call, true);
        self.by_id.insert(call_id, call.clone());
        Some(call)
    }

    fn remove(&mut self, call_id: u64) -> Option<Call> {
        let call = self.by_id.remove(&call_id)?;
        self.by_group.remove(&call.group_id);
        self.count(&call, false);
        Some(call)
    }
}

/// [`CallState`] in this process's memory: the state of a single node. The ringing
/// timers are a heap of deadlines, bounded by the live calls (a removed call's entry is
/// skipped when it comes due).
#[derive(Default)]
pub struct LocalCalls {
    live: Mutex<Live>,
    timers: Mutex<BinaryHeap<Reverse<(Instant, u64)>>>,
    armed: tokio::sync::Notify,
}

impl LocalCalls {
    fn live(&self) -> std::sync::MutexGuard<'_, Live> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn timers(&self) -> std::sync::MutexGuard<'_, BinaryHeap<Reverse<(Instant, u64)>>> {
        self.timers.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl CallState for LocalCalls {
    async fn get(&self, call_id: u64) -> StoreResult<Option<Call>> {
        Ok(self.live().by_id.get(&call_id).cloned())
    }

    async fn of_group(&self, group: GroupId) -> StoreResult<Option<Call>> {
        let live = self.live();
        Ok(live
            .by_group
            .get(&group)
            .and_then(|id| live.by_id.get(id))
            .cloned())
    }

    async fn start(&self, call: Call, ring_for: Duration) -> StoreResult<Option<(Call, Vec<Uin>)>> {
        let call_id = call.call_id;
        let started = self.live().start(call);
        if started.is_some() {
            self.timers()
                .push(Reverse((Instant::now() + ring_for, call_id)));
            self.armed.notify_one();
        }
        Ok(started)
    }

    async fn update(&self, call_id: u64, change: CallChange<'_>) -> StoreResult<Option<Call>> {
        Ok(self.live().update(call_id, change))
    }

    async fn remove(&self, call_id: u64) -> StoreResult<Option<Call>> {
        Ok(self.live().remove(call_id))
    }

    async fn due(&self) -> Vec<u64> {
        loop {
            let next = {
                let mut timers = self.timers();
                let now = Instant::now();
                let mut due = Vec::new();
                while let Some(Reverse((at, id))) = timers.peek().copied() {
                    if at > now {
                        break;
                    }
                    timers.pop();
                    // A call that ended has no timer left to fire.
                    if self.live().by_id.contains_key(&id) {
                        due.push(id);
                    }
                }
                if !due.is_empty() {
                    return due;
                }
                timers.peek().map(|Reverse((at, _))| *at)
            };
            let armed = self.armed.notified();
            match next {
                Some(at) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(at) => {}
                        _ = armed => {}
                    }
                }
                None => armed.await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::model::CallStatus;

    fn call(id: u64, group: u64, caller: u64, callees: &[u64]) -> Call {
        Call {
            call_id: id,
            group_id: GroupId(group),
            media_type: 1,
            status: CallStatus::Ongoing,
            caller: Uin(caller),
            callees: callees.iter().map(|u| Uin(*u)).collect(),
            accepted: BTreeSet::new(),
            declined: BTreeSet::new(),
            extra: None,
            started_at_us: 0,
            accepted_at_us: None,
            stopped_at_us: None,
        }
    }

    const LONG: Duration = Duration::from_secs(3600);

    #[tokio::test]
    async fn the_indexes_follow_every_change() {
        let live = LocalCalls::default();
        let (_, busy) = live
            .start(call(1, 10, 1, &[2, 3]), LONG)
            .await
            .unwrap()
            .unwrap();
        assert!(busy.is_empty());
        assert!(
            live.start(call(2, 10, 4, &[5]), LONG)
                .await
                .unwrap()
                .is_none(),
            "one live call per group"
        );
        let (started, busy) = live
            .start(call(3, 11, 4, &[2]), LONG)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(busy, [Uin(2)], "2 is in call 1");
        assert!(started.declined.contains(&Uin(2)));
        // Declining call 1 leaves 3 free; 1 (its caller) stays busy.
        let decline = |c: &mut Call| c.declined = [Uin(2), Uin(3)].into_iter().collect();
        assert!(live.update(1, &decline).await.unwrap().is_some());
        {
            let l = live.live();
            assert!(l.in_calls.contains_key(&Uin(1)) && !l.in_calls.contains_key(&Uin(3)));
            assert!(!l.in_calls.contains_key(&Uin(2)), "declined both calls");
        }
        assert!(live.remove(3).await.unwrap().is_some());
        assert!(live.remove(3).await.unwrap().is_none(), "removed once");
        assert!(live.remove(1).await.unwrap().is_some());
        {
            let l = live.live();
            assert!(l.in_calls.is_empty() && l.by_group.is_empty() && l.by_id.is_empty());
        }
        assert!(
            live.update(1, &|_| {}).await.unwrap().is_none(),
            "an ended call stays ended"
        );
        assert!(live.of_group(GroupId(10)).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_ringing_timer_fires_once_and_not_for_an_ended_call() {
        let live = LocalCalls::default();
        for (id, ms) in [(1, 5), (2, 10), (3, 20)] {
            live.start(
                call(id, 10 + id, 1 + id * 2, &[2 + id * 2]),
                Duration::from_millis(ms),
            )
            .await
            .unwrap();
        }
        live.remove(2).await.unwrap();
        let mut fired = Vec::new();
        while fired.len() < 2 {
            fired.extend(live.due().await);
        }
        assert_eq!(fired, [1, 3], "each once, in deadline order; 2 ended first");
        assert!(live.timers().is_empty());
    }
}
