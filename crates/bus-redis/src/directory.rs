//! The session directory's copy of the other nodes' sessions, and which nodes are alive.
//!
//! Each node writes its own sessions to Redis (a hash per node, `<prefix>:sessions:<node>`,
//! for nodes that start later) and announces each one coming and going on the cluster
//! channel; every node keeps what the others announced here, in memory, so that the
//! core's lookups (`session`, a user's sessions, presence, `user list`) stay synchronous
//! and cost no round trip. A node is alive while its heartbeats keep coming; one silent
//! for `node_timeout` is dead: its sessions leave this copy, and the live node with the
//! lowest id closes them (the core's `close_orphans`), so that happens once.
//!
//! Conference rooms the same way: each node announces its own sessions' parties joining,
//! leaving and changing (`joined`, `left`, `party`, `cleared`), and every node keeps the
//! others' here, so a room's member list is the whole room whichever node asks. A dead
//! node's parties stay until its closer closes their sessions (which leaves their rooms
//! and says so to every node).
//!
//! A std `RwLock`, never held across anything that waits.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::RwLock;
use std::time::{Duration, Instant};

use confer_core::bus::{PartyState, RoomMember, SessionInfo};
use confer_core::{GroupId, SessionId, Uin};

pub(crate) struct Directory {
    me: String,
    timeout: Duration,
    inner: RwLock<Inner>,
}

#[derive(Default)]
struct Inner {
    sessions: HashMap<SessionId, (String, SessionInfo)>,
    by_user: HashMap<String, Vec<SessionId>>,
    by_uin: HashMap<Uin, Vec<SessionId>>,
    nodes: HashMap<String, Node>,
    /// Other nodes' parties, by room, with the node holding each.
    rooms: HashMap<GroupId, BTreeMap<SessionId, (String, RoomMember)>>,
}

struct Node {
    last_heard: Instant,
    sessions: HashSet<SessionId>,
}

/// What one sweep found: nodes that died, and the sessions they left (for this node to
/// close when it is the closer).
pub(crate) struct Expired {
    pub nodes: Vec<String>,
    pub sessions: Vec<SessionInfo>,
    pub closer: bool,
}

impl Inner {
    fn remove(&mut self, id: &SessionId) -> Option<(String, SessionInfo)> {
        let (node, info) = self.sessions.remove(id)?;
        if let Some(list) = self.by_user.get_mut(&info.user) {
            list.retain(|s| s != id);
            if list.is_empty() {
                self.by_user.remove(&info.user);
            }
        }
        if let Some(list) = self.by_uin.get_mut(&info.uin) {
            list.retain(|s| s != id);
            if list.is_empty() {
                self.by_uin.remove(&info.uin);
            }
        }
        if let Some(n) = self.nodes.get_mut(&node) {
            n.sessions.remove(id);
        }
        Some((node, info))
    }

    fn infos(&self, ids: Option<&Vec<SessionId>>) -> Vec<SessionInfo> {
        ids.into_iter()
            .flatten()
            .filter_map(|id| self.sessions.get(id).map(|(_, info)| info.clone()))
            .collect()
    }

    fn node(&mut self, node: &str, heard: Instant) -> &mut Node {
        self.nodes.entry(node.to_string()).or_insert_with(|| Node {
            last_heard: heard,
            sessions: HashSet::new(),
        })
    }
}

impl Directory {
    pub fn new(me: String, timeout: Duration) -> Self {
        Directory {
            me,
            timeout,
            inner: RwLock::default(),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Something came from `node`: it is alive now.
    pub fn heard(&self, node: &str) {
        if node == self.me {
            return;
        }
        let now = Instant::now();
        self.write().node(node, now).last_heard = now;
    }

    /// A node known from Redis at start whose heartbeat key had already expired: dead
    /// from the first sweep on.
    pub fn known_dead(&self, node: &str) {
        let long_ago = Instant::now()
            .checked_sub(self.timeout * 2)
            .unwrap_or_else(Instant::now);
        self.write().node(node, long_ago).last_heard = long_ago;
    }

    /// A session of `node` (another node) is live.
    pub fn up(&self, node: &str, info: SessionInfo) {
        if node == self.me {
            return;
        }
        let mut inner = self.write();
        let id = info.session_id.clone();
        inner.remove(&id);
        let heard = Instant::now();
        inner.node(node, heard).sessions.insert(id.clone());
        inner
            .by_user
            .entry(info.user.clone())
            .or_default()
            .push(id.clone());
        inner.by_uin.entry(info.uin).or_default().push(id.clone());
        inner.sessions.insert(id, (node.to_string(), info));
    }

    /// A session ended (wherever it was).
    pub fn down(&self, id: &SessionId) -> Option<(String, SessionInfo)> {
        self.write().remove(id)
    }

    /// `node` started again (or came back after being taken for dead): forget what it
    /// had; it announces its sessions again.
    pub fn reset(&self, node: &str) {
        let mut inner = self.write();
        let ids: Vec<SessionId> = inner
            .nodes
            .get(node)
            .map(|n| n.sessions.iter().cloned().collect())
            .unwrap_or_default();
        for id in ids {
            inner.remove(&id);
        }
    }

    pub fn session(&self, id: &SessionId) -> Option<(String, SessionInfo)> {
        self.read().sessions.get(id).cloned()
    }

    pub fn of_user(&self, user: &str) -> Vec<SessionInfo> {
        let inner = self.read();
        inner.infos(inner.by_user.get(user))
    }

    pub fn of_uin(&self, uin: Uin) -> Vec<SessionInfo> {
        let inner = self.read();
        inner.infos(inner.by_uin.get(&uin))
    }

    pub fn all(&self) -> Vec<SessionInfo> {
        self.read()
            .sessions
            .values()
            .map(|(_, info)| info.clone())
            .collect()
    }

    /// Take out the nodes not heard from for `node_timeout`, with their sessions. This
    /// node is their closer when no live node has a lower id.
    pub fn expire(&self) -> Expired {
        let mut inner = self.write();
        let now = Instant::now();
        let timeout = self.timeout;
        let dead: Vec<String> = inner
            .nodes
            .iter()
            .filter(|(_, n)| now.duration_since(n.last_heard) >= timeout)
            .map(|(id, _)| id.clone())
            .collect();
        let mut sessions = Vec::new();
        for node in &dead {
            if let Some(n) = inner.nodes.remove(node) {
                for id in n.sessions {
                    if let Some((_, info)) = inner.remove(&id) {
                        sessions.push(info);
                    }
                }
            }
        }
        let closer = inner.nodes.keys().all(|other| *other > self.me);
        Expired {
            nodes: dead,
            sessions,
            closer,
        }
    }
}

/// Rooms: the other nodes' parties.
impl Directory {
    pub fn joined(&self, node: &str, room: GroupId, member: RoomMember) {
        if node == self.me {
            return;
        }
        self.write()
            .rooms
            .entry(room)
            .or_default()
            .insert(member.session_id.clone(), (node.to_string(), member));
    }

    /// A party left a room; the member it was, if this copy had it.
    pub fn left(&self, room: GroupId, session: &SessionId) -> Option<(String, RoomMember)> {
        let mut inner = self.write();
        let members = inner.rooms.get_mut(&room)?;
        let gone = members.remove(session);
        if members.is_empty() {
            inner.rooms.remove(&room);
        }
        gone
    }

    pub fn members(&self, room: GroupId) -> Vec<RoomMember> {
        self.read()
            .rooms
            .get(&room)
            .map(|m| m.values().map(|(_, member)| member.clone()).collect())
            .unwrap_or_default()
    }

    /// Change the state of party `party` in `room` here; the node holding it and the
    /// member as it now is.
    pub fn update_party(
        &self,
        room: GroupId,
        party: u64,
        change: &mut dyn FnMut(&mut PartyState),
    ) -> Option<(String, RoomMember)> {
        let mut inner = self.write();
        let (node, member) = inner
            .rooms
            .get_mut(&room)?
            .values_mut()
            .find(|(_, m)| m.party == party)?;
        change(&mut member.state);
        Some((node.clone(), member.clone()))
    }

    /// Set a party's state as its node says it is.
    pub fn set_party(&self, room: GroupId, member: RoomMember) {
        let mut inner = self.write();
        if let Some((_, m)) = inner
            .rooms
            .get_mut(&room)
            .and_then(|r| r.get_mut(&member.session_id))
        {
            *m = member;
        }
    }

    pub fn rooms_of(&self, session: &SessionId) -> Vec<GroupId> {
        self.read()
            .rooms
            .iter()
            .filter(|(_, members)| members.contains_key(session))
            .map(|(room, _)| *room)
            .collect()
    }

    /// Empty a room; the members it had here.
    pub fn clear_room(&self, room: GroupId) -> Vec<RoomMember> {
        self.write()
            .rooms
            .remove(&room)
            .map(|m| m.into_values().map(|(_, member)| member).collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(id: &str, user: &str, uin: u64) -> SessionInfo {
        SessionInfo {
            session_id: SessionId::new(id),
            uin: Uin(uin),
            user: user.into(),
            remote: String::new(),
            door: "chat",
            token_hash: None,
            started_at_us: 0,
            meta: None,
        }
    }

    #[test]
    fn a_silent_node_expires_with_its_sessions_and_the_lowest_live_node_closes_them() {
        let d = Directory::new("b".into(), Duration::from_millis(50));
        d.up("a", info("s1", "alice", 1));
        d.up("c", info("s2", "alice", 1));
        assert_eq!(d.of_uin(Uin(1)).len(), 2);
        std::thread::sleep(Duration::from_millis(60));
        d.heard("a");
        let gone = d.expire();
        assert_eq!(gone.nodes, ["c"]);
        assert_eq!(gone.sessions, [info("s2", "alice", 1)]);
        assert!(!gone.closer, "a is alive and lower than b");
        assert_eq!(d.of_user("alice"), [info("s1", "alice", 1)]);
        d.reset("a");
        assert!(d.all().is_empty());
        let gone = d.expire();
        assert!(gone.sessions.is_empty());
    }
}
