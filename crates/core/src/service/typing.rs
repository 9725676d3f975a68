//! Typing indicators that end by themselves.
//!
//! A client says "typing" with `event {"type":8}` and "stopped" with type 9, but a client
//! that goes quiet or away never sends the 9. So the core keeps one entry per typer per
//! group (its deadline and to whom it was typing) and says type 9 itself, to the same
//! members, when `typing_timeout` passes without a renewal, or at once when the typer's
//! last chat session closes. One sweeper task serves every entry (started with the first
//! one; it holds only a weak reference to the core): no task, timer or allocation per
//! typing event beyond the entry it renews.
//!
//! The table is this process's; in a cluster each entry's start and end (not each
//! renewal) is told to the registry (`SessionRegistry::typing`), which keeps them where
//! the node that closes this node's sessions after its death finds them: that node says
//! type 9 for each ([`Core::close_orphan_typing`]), since this one never will.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Weak};

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::bus::TypingEntry;
use crate::event::{EventBody, Json};
use crate::ids::{GroupId, Uin};

use super::Core;

/// The `event` type that says a member started typing.
pub const TYPING_STARTED: u8 = 8;
/// The `event` type that says a member stopped typing.
pub const TYPING_STOPPED: u8 = 9;

/// Who is typing where, with deadlines. At most one entry per (typer, group).
#[derive(Default)]
pub(super) struct Typing {
    /// Each typer's groups: the deadline and the one receiver it typed to (`None`: the
    /// group's other members).
    by_user: HashMap<Uin, HashMap<GroupId, (Instant, Option<Uin>)>>,
    /// The same entries in deadline order.
    queue: BTreeSet<(Instant, Uin, GroupId)>,
    /// Whether the sweeper task runs.
    sweeping: bool,
}

/// The shared typing table and the sweeper's wake-up.
#[derive(Default)]
pub(super) struct TypingState {
    table: std::sync::Mutex<Typing>,
    wake: Arc<Notify>,
}

impl TypingState {
    fn lock(&self) -> std::sync::MutexGuard<'_, Typing> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Core {
    /// Note a relayed typing event of `who` in `group` (types 8 and 9; others are
    /// ignored): 8 (re)starts its deadline, 9 forgets it.
    pub(super) fn note_typing(
        self: &Arc<Self>,
        who: Uin,
        group: GroupId,
        receiver: Option<Uin>,
        kind: u8,
    ) {
        let state = &self.typing;
        let mut table = state.lock();
        let entry = |receiver| TypingEntry {
            who,
            group,
            receiver,
        };
        let old = table.by_user.get_mut(&who).and_then(|g| g.remove(&group));
        if let Some((at, _)) = old {
            table.queue.remove(&(at, who, group));
        }
        let renewed = kind == TYPING_STARTED && old.is_some_and(|(_, r)| r == receiver);
        if let Some((_, old_receiver)) = old.filter(|_| !renewed) {
            self.registry.typing(entry(old_receiver), false);
        }
        if kind != TYPING_STARTED {
            if table.by_user.get(&who).is_some_and(|g| g.is_empty()) {
                table.by_user.remove(&who);
            }
            return;
        }
        if !renewed {
            self.registry.typing(entry(receiver), true);
        }
        let deadline = Instant::now() + self.settings.typing_timeout;
        let earliest = table.queue.first().is_none_or(|(at, _, _)| deadline < *at);
        table
            .by_user
            .entry(who)
            .or_default()
            .insert(group, (deadline, receiver));
        table.queue.insert((deadline, who, group));
        if !table.sweeping {
            table.sweeping = true;
            let weak = Arc::downgrade(self);
            let wake = state.wake.clone();
            tokio::spawn(sweep(weak, wake));
        } else if earliest {
            state.wake.notify_one();
        }
    }

    /// The typer's last chat session closed: it stopped typing everywhere, at once.
    pub(super) async fn typing_gone(&self, who: Uin) {
        let groups = {
            let mut table = self.typing.lock();
            let groups = table.by_user.remove(&who).unwrap_or_default();
            for (group, (at, receiver)) in &groups {
                table.queue.remove(&(*at, who, *group));
                let (group, receiver) = (*group, *receiver);
                self.registry.typing(
                    TypingEntry {
                        who,
                        group,
                        receiver,
                    },
                    false,
                );
            }
            groups
        };
        for (group, (_, receiver)) in groups {
            self.say_stopped(who, group, receiver).await;
        }
    }

    /// Forget the entries whose deadline passed and say type 9 for each; the next
    /// deadline, if any.
    async fn expire_typing(&self) -> Option<Instant> {
        let now = Instant::now();
        let (due, next) = {
            let mut table = self.typing.lock();
            let mut due = Vec::new();
            while let Some(&(at, who, group)) = table.queue.first() {
                if at > now {
                    break;
                }
                table.queue.pop_first();
                let receiver = table
                    .by_user
                    .get_mut(&who)
                    .and_then(|g| g.remove(&group))
                    .and_then(|(_, r)| r);
                if table.by_user.get(&who).is_some_and(|g| g.is_empty()) {
                    table.by_user.remove(&who);
                }
                let entry = TypingEntry {
                    who,
                    group,
                    receiver,
                };
                self.registry.typing(entry, false);
                due.push((who, group, receiver));
            }
            (due, table.queue.first().map(|(at, _, _)| *at))
        };
        for (who, group, receiver) in due {
            self.say_stopped(who, group, receiver).await;
        }
        next
    }

    /// Say type 9 for each typing entry a dead node left (`SessionRegistry::orphan_typing`):
    /// its sweeper died with it. How many.
    pub(super) async fn close_orphan_typing(&self) -> usize {
        let entries = self.registry.orphan_typing();
        for e in &entries {
            self.say_stopped(e.who, e.group, e.receiver).await;
        }
        entries.len()
    }

    /// Push `event {"type":9}` from `who` to whom it was typing in `group` (the members
    /// it still has, the typer's own sockets excepted).
    async fn say_stopped(&self, who: Uin, group: GroupId, receiver: Option<Uin>) {
        let conv = match self.storage.conversation(group).await {
            Ok(Some(conv)) => conv,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "typing: group unavailable");
                return;
            }
        };
        let targets: Vec<Uin> = conv
            .occupants
            .iter()
            .copied()
            .filter(|u| *u != who && receiver.is_none_or(|r| r == *u))
            .collect();
        let receiver_field =
            receiver.map_or(String::new(), |r| format!(",\"receiver_uin\":\"{r}\""));
        let body = format!(
            "{{\"type\":{TYPING_STOPPED},\"group_id\":\"{group}\",\"sender_uin\":\"{who}\"{receiver_field}}}"
        );
        self.push_chat(
            targets,
            "event",
            group.to_string(),
            EventBody::Signal(Json::from_validated(body)),
        );
    }
}

/// The one sweeper: sleeps until the earliest deadline (or a new earlier one), then
/// expires what is due. Ends when the core is gone.
async fn sweep(core: Weak<Core>, wake: Arc<Notify>) {
    loop {
        let next = match core.upgrade() {
            Some(core) => core.expire_typing().await,
            None => return,
        };
        match next {
            Some(at) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(at) => {}
                    _ = wake.notified() => {}
                }
            }
            None => wake.notified().await,
        }
    }
}
