//! [`LocalRegistry`]: live sessions and conference rooms of this process.
//!
//! A std `RwLock` guards the maps: no `.await` happens while it is held, and delivering
//! is a non-blocking `try_send`, so the lock is held for microseconds.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::RwLock;

use confer_core::bus::{
    Delivery, Mailbox, PartyState, PushError, RoomMember, SessionInfo, SessionRegistry,
};
use confer_core::{GroupId, SessionId, Uin};

#[derive(Default)]
pub struct LocalRegistry {
    inner: RwLock<Inner>,
}

/// The hasher of the maps looked up for every recipient of every push: foldhash instead of
/// SipHash, whose hashing was ~2% of the server's CPU in `fanout`. Their keys are made by
/// the server (session ids, account numbers), not chosen by clients, and the seed is still
/// random per process.
type Fast = foldhash::fast::RandomState;

#[derive(Default)]
struct Inner {
    sessions: HashMap<SessionId, (SessionInfo, Mailbox), Fast>,
    by_user: HashMap<String, SessionList>,
    by_uin: HashMap<Uin, SessionList, Fast>,
    rooms: HashMap<GroupId, BTreeMap<SessionId, RoomMember>>,
    rooms_of: HashMap<SessionId, BTreeSet<GroupId>>,
}

/// A user's sessions, in the order they came. A `Vec`, not a set: a user has one or two
/// sessions, and a set's first node costs every session ~280 bytes.
type SessionList = Vec<SessionId>;

fn add(list: &mut SessionList, id: &SessionId) {
    if !list.contains(id) {
        list.reserve_exact(1);
        list.push(id.clone());
    }
}

/// Take `id` out; `true` when the list is left empty.
fn take(list: &mut SessionList, id: &SessionId) -> bool {
    list.retain(|s| s != id);
    list.is_empty()
}

impl LocalRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps half-changed in a way that
        // matters more than losing the whole registry, so poisoning is ignored.
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }
}

impl Inner {
    /// The records of the sessions named in an index entry (none when it is absent).
    fn infos(&self, ids: Option<&SessionList>) -> Vec<SessionInfo> {
        ids.into_iter()
            .flatten()
            .filter_map(|id| self.sessions.get(id).map(|(info, _)| info.clone()))
            .collect()
    }
}

impl SessionRegistry for LocalRegistry {
    fn register(&self, info: SessionInfo, mailbox: Mailbox) -> bool {
        let mut inner = self.write();
        if inner.sessions.contains_key(&info.session_id) {
            return false;
        }
        add(
            inner.by_user.entry(info.user.clone()).or_default(),
            &info.session_id,
        );
        add(inner.by_uin.entry(info.uin).or_default(), &info.session_id);
        inner
            .sessions
            .insert(info.session_id.clone(), (info, mailbox));
        true
    }

    fn unregister(&self, session: &SessionId) {
        let mut inner = self.write();
        let Some((info, _)) = inner.sessions.remove(session) else {
            return;
        };
        if inner
            .by_user
            .get_mut(&info.user)
            .is_some_and(|list| take(list, session))
        {
            inner.by_user.remove(&info.user);
        }
        if inner
            .by_uin
            .get_mut(&info.uin)
            .is_some_and(|list| take(list, session))
        {
            inner.by_uin.remove(&info.uin);
        }
        for room in inner.rooms_of.remove(session).unwrap_or_default() {
            if let Some(members) = inner.rooms.get_mut(&room) {
                members.remove(session);
                if members.is_empty() {
                    inner.rooms.remove(&room);
                }
            }
        }
    }

    fn session(&self, session: &SessionId) -> Option<SessionInfo> {
        self.read()
            .sessions
            .get(session)
            .map(|(info, _)| info.clone())
    }

    fn sessions_of_user(&self, user: &str) -> Vec<SessionInfo> {
        let inner = self.read();
        inner.infos(inner.by_user.get(user))
    }

    fn sessions_of_uin(&self, uin: Uin) -> Vec<SessionInfo> {
        let inner = self.read();
        inner.infos(inner.by_uin.get(&uin))
    }

    fn all_sessions(&self) -> Vec<SessionInfo> {
        self.read()
            .sessions
            .values()
            .map(|(info, _)| info.clone())
            .collect()
    }

    fn deliver(&self, session: &SessionId, delivery: Delivery) -> Result<(), PushError> {
        let inner = self.read();
        match inner.sessions.get(session) {
            Some((_, mailbox)) => mailbox.push(delivery),
            None => Err(PushError::Closed),
        }
    }

    fn deliver_to_users(
        &self,
        uins: &mut dyn Iterator<Item = Uin>,
        door: &str,
        make: &dyn Fn() -> Delivery,
    ) -> usize {
        let inner = self.read();
        uins.filter_map(|uin| inner.by_uin.get(&uin))
            .flatten()
            .filter_map(|id| inner.sessions.get(id))
            .filter(|(info, _)| info.door == door)
            .filter(|(_, mailbox)| mailbox.push(make()).is_ok())
            .count()
    }

    fn join_room(&self, room: GroupId, member: RoomMember) -> bool {
        let mut inner = self.write();
        let session = member.session_id.clone();
        if !inner.sessions.contains_key(&session) {
            return false;
        }
        let members = inner.rooms.entry(room).or_default();
        if members.contains_key(&session) {
            return false;
        }
        members.insert(session.clone(), member);
        inner.rooms_of.entry(session).or_default().insert(room);
        true
    }

    fn leave_room(&self, room: GroupId, session: &SessionId) -> Option<RoomMember> {
        let mut inner = self.write();
        let members = inner.rooms.get_mut(&room)?;
        let member = members.remove(session)?;
        if members.is_empty() {
            inner.rooms.remove(&room);
        }
        if let Some(rooms) = inner.rooms_of.get_mut(session) {
            rooms.remove(&room);
        }
        Some(member)
    }

    fn room_members(&self, room: GroupId) -> Vec<RoomMember> {
        self.read()
            .rooms
            .get(&room)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    fn update_party(
        &self,
        room: GroupId,
        party: u64,
        change: &mut dyn FnMut(&mut PartyState),
    ) -> Option<RoomMember> {
        let mut inner = self.write();
        let member = inner
            .rooms
            .get_mut(&room)?
            .values_mut()
            .find(|m| m.party == party)?;
        change(&mut member.state);
        Some(member.clone())
    }

    fn rooms_of(&self, session: &SessionId) -> Vec<GroupId> {
        self.read()
            .rooms_of
            .get(session)
            .map(|r| r.iter().copied().collect())
            .unwrap_or_default()
    }

    fn clear_room(&self, room: GroupId) -> Vec<RoomMember> {
        let mut inner = self.write();
        let members: Vec<RoomMember> = inner
            .rooms
            .remove(&room)
            .map(|m| m.into_values().collect())
            .unwrap_or_default();
        for m in &members {
            if let Some(rooms) = inner.rooms_of.get_mut(&m.session_id) {
                rooms.remove(&room);
            }
        }
        members
    }
}
