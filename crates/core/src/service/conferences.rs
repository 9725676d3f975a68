//! Conferences: stored conversations of kind `Conference`, plus the live room of sessions
//! that joined them (kept by the session registry, so it can span nodes).
//!
//! Who may do what: any logged-in user creates a conference and becomes its owner and
//! first occupant (creating does not join the room: the creating session is subscribed
//! to the conference's events, `created` first, and joins like anyone else). A destroyed
//! conference's id is never used again: creating with it is "destroyed" (304003), so an
//! old reference can never reach a new conference. Anyone who knows a conference's id may join it (joining makes the user
//! an occupant and subscribes the session to the conference's events); only occupants see
//! it in `get_list` and `get_info` (others are told it does not exist); only the owner or
//! the admin destroys it. Leaving takes the session out of the room, and the user stops
//! being an occupant when its last session leaves; a session that disconnects leaves the
//! room but keeps the user's occupancy. A chat group's live room is entered by its members
//! only (the conference door shows groups as conferences too).

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;

use crate::bus::{PartyState, RoomMember};
use crate::error::{CoreError, CoreResult};
use crate::event::{Event, EventBody, Grant, Subscription};
use crate::ids::{GroupId, SessionId, Uin};
use crate::model::{now_us, Conversation, ConversationKind, NewConversation, Principal};
use crate::store::StoreError;

use super::Core;

/// The longest conference id accepted.
const MAX_CONF_ID_LEN: usize = 256;

/// The longest conference name accepted (bytes).
const MAX_CONF_NAME_LEN: usize = 256;

/// The code in a `destroyed` event when a client destroyed the conference.
pub const DESTROYED_BY_REQUEST: u64 = 100001;

impl Core {
    /// Find a conversation by its alias, or by its decimal number.
    pub async fn resolve_conversation(&self, conf_id: &str) -> CoreResult<Conversation> {
        if let Some(conv) = self.storage.conversation_by_alias(conf_id).await? {
            return Ok(conv);
        }
        if let Ok(n) = conf_id.parse::<u64>() {
            if let Some(conv) = self.storage.conversation(GroupId(n)).await? {
                return Ok(conv);
            }
        }
        Err(CoreError::ConversationNotFound)
    }

    /// A conversation the caller may see: the admin sees all, others only those they
    /// occupy (anything else is "not found", so its existence does not leak).
    pub(super) async fn visible_conversation(
        &self,
        caller: &Principal,
        conf_id: &str,
    ) -> CoreResult<Conversation> {
        let conv = self.resolve_conversation(conf_id).await?;
        if caller.admin || conv.occupants.contains(&caller.uin) {
            Ok(conv)
        } else {
            Err(CoreError::ConversationNotFound)
        }
    }

    /// Create a conference owned by `caller`; `session` (the creating one) is subscribed
    /// to its events, so it sees `created`.
    pub async fn create_conference(
        &self,
        caller: &Principal,
        session: &SessionId,
        conf_id: Option<String>,
        class: String,
    ) -> CoreResult<Conversation> {
        self.create_named_conference(caller, session, conf_id, class, None)
            .await
    }

    /// [`Core::create_conference`] with a display name (the conference door's `cd create`).
    pub async fn create_named_conference(
        &self,
        caller: &Principal,
        session: &SessionId,
        conf_id: Option<String>,
        class: String,
        name: Option<String>,
    ) -> CoreResult<Conversation> {
        if name
            .as_ref()
            .is_some_and(|n| n.trim().is_empty() || n.len() > MAX_CONF_NAME_LEN)
        {
            return Err(CoreError::InvalidValue("name".into()));
        }
        if class != "sfu" && class != "mcu" {
            return Err(CoreError::InvalidValue(
                "class must be \"sfu\" or \"mcu\"".into(),
            ));
        }
        let alias = match conf_id {
            Some(id) if id.is_empty() || id.len() > MAX_CONF_ID_LEN => {
                return Err(CoreError::InvalidValue("conf_id".into()))
            }
            Some(id) => id,
            None => uuid::Uuid::new_v4().to_string(),
        };
        // A purely numeric alias would shadow the decimal id of another conversation.
        if alias.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CoreError::InvalidValue(
                "conf_id must not be a number".into(),
            ));
        }
        let new = NewConversation {
            alias: Some(alias.clone()),
            kind: ConversationKind::Conference { class },
            name,
            avatar_url: None,
            owner: caller.uin,
            creator: caller.uin,
            occupants: BTreeSet::from([caller.uin]),
            created_at_us: now_us(),
        };
        let conv = match self.storage.create_conversation(new).await {
            Err(StoreError::Conflict(_)) => {
                // Ids are not reused: say why this one is taken.
                let taken = self.storage.conversation_by_alias(&alias).await?;
                return Err(match taken {
                    Some(c) if c.destroyed => CoreError::ConversationDestroyed,
                    _ => CoreError::ConversationExists,
                });
            }
            other => other?,
        };
        let grant = Grant::Member {
            group: conv.group_id,
            uin: caller.uin,
        };
        // Within the session's cap; past it the conference is still made, unwatched.
        let max = self
            .settings
            .max_subscriptions_per_session
            .saturating_add(super::sessions::OWN_SUBSCRIPTIONS);
        self.bus
            .subscribe(session, conference_subscription(&alias), Some(grant), max);
        self.publish(Event::new(
            "media",
            Some("conf".into()),
            Some("created".into()),
            Some(alias),
            EventBody::Empty,
        ));
        Ok(conv)
    }

    pub async fn destroy_conference(&self, caller: &Principal, conf_id: &str) -> CoreResult<()> {
        let conv = self.visible_conversation(caller, conf_id).await?;
        if !caller.admin && conv.owner != caller.uin {
            return Err(CoreError::Unauthorized);
        }
        if conv.destroyed {
            return Err(CoreError::ConversationDestroyed);
        }
        self.storage.mark_destroyed(conv.group_id, now_us()).await?;
        let public_id = conv.public_id();
        self.publish(Event::new(
            "media",
            Some("conf".into()),
            Some("destroyed".into()),
            Some(public_id.clone()),
            EventBody::Destroyed {
                code: DESTROYED_BY_REQUEST,
                reason: "destroyed".into(),
            },
        ));
        let pattern = conference_subscription(&public_id);
        for member in self.registry.clear_room(conv.group_id) {
            self.bus.unsubscribe(&member.session_id, &pattern);
        }
        for uin in conv.occupants {
            self.revoke_grant(Grant::Member {
                group: conv.group_id,
                uin,
            });
        }
        Ok(())
    }

    /// Take `uin` out of a conversation's occupants: the one path by which a membership
    /// ends, so every subscription it authorised ends with it.
    pub(super) async fn remove_occupant(
        &self,
        group: GroupId,
        uin: Uin,
        at_us: i64,
    ) -> CoreResult<()> {
        self.storage.remove_occupant(group, uin, at_us).await?;
        self.revoke_grant(Grant::Member { group, uin });
        Ok(())
    }

    /// Conferences the caller occupies (every one, for the admin), destroyed ones left out.
    pub async fn list_conferences(&self, caller: &Principal) -> CoreResult<Vec<Conversation>> {
        let member = if caller.admin { None } else { Some(caller.uin) };
        let mut list = self.storage.list_conferences(member).await?;
        list.retain(|c| !c.destroyed);
        Ok(list)
    }

    /// A conference and the sessions in its room now.
    pub async fn conference_info(
        &self,
        caller: &Principal,
        conf_id: &str,
    ) -> CoreResult<(Conversation, Vec<RoomMember>)> {
        let conv = self.visible_conversation(caller, conf_id).await?;
        if conv.destroyed {
            return Err(CoreError::ConversationDestroyed);
        }
        let members = self.registry.room_members(conv.group_id);
        Ok((conv, members))
    }

    pub async fn join_conference(
        &self,
        caller: &Principal,
        session: &SessionId,
        conf_id: &str,
        role: String,
    ) -> CoreResult<(Conversation, RoomMember)> {
        let conv = self.resolve_conversation(conf_id).await?;
        if conv.destroyed {
            return Err(CoreError::ConversationDestroyed);
        }
        let is_conference = matches!(conv.kind, ConversationKind::Conference { .. });
        if !is_conference && !conv.occupants.contains(&caller.uin) {
            // Chat groups are entered by their own door's rules, not by knowing an id:
            // only a member enters its group's live room.
            return Err(CoreError::ConversationNotFound);
        }
        if !conv.occupants.contains(&caller.uin) {
            self.storage
                .add_occupant(conv.group_id, caller.uin, now_us())
                .await?;
        }
        let name = self.display_name(caller).await?;
        let index = self.registry.room_members(conv.group_id).len();
        let member = RoomMember {
            session_id: session.clone(),
            uin: caller.uin,
            user: caller.login.clone(),
            role,
            party: self
                .registry
                .party_id(self.next_party.fetch_add(1, Ordering::Relaxed)),
            name,
            index: u32::try_from(index).unwrap_or(u32::MAX),
            state: PartyState::default(),
        };
        if !self.registry.join_room(conv.group_id, member.clone()) {
            return Err(CoreError::InvalidOperation("already joined".into()));
        }
        let public_id = conv.public_id();
        let grant = Grant::Member {
            group: conv.group_id,
            uin: caller.uin,
        };
        self.bus.subscribe(
            session,
            conference_subscription(&public_id),
            Some(grant),
            usize::MAX,
        );
        self.publish_member_change(public_id, member.clone(), "started_member");
        Ok((conv, member))
    }

    pub async fn leave_conference(
        &self,
        caller: &Principal,
        session: &SessionId,
        conf_id: &str,
    ) -> CoreResult<()> {
        let conv = self.visible_conversation(caller, conf_id).await?;
        let member = self
            .registry
            .leave_room(conv.group_id, session)
            .ok_or_else(|| CoreError::InvalidOperation("not joined".into()))?;
        let public_id = conv.public_id();
        self.bus
            .unsubscribe(session, &conference_subscription(&public_id));
        self.publish_member_change(public_id, member, "stopped_member");
        let still_there = self
            .registry
            .room_members(conv.group_id)
            .iter()
            .any(|m| m.uin == caller.uin);
        // Leaving a chat group's live room is not leaving the group.
        if !still_there && conv.owner != caller.uin && !conv.is_chat_group() {
            self.remove_occupant(conv.group_id, caller.uin, now_us())
                .await?;
        }
        Ok(())
    }

    /// Tell a conference (by its public id) that a session joined or left.
    pub(super) fn publish_member_change(&self, public_id: String, member: RoomMember, kind: &str) {
        self.publish(Event::new(
            "media",
            Some("conf".into()),
            Some(kind.to_string()),
            Some(public_id),
            EventBody::Member(Box::new(member)),
        ));
    }
}

/// The subscription a session gets to a conference it joins.
pub(super) fn conference_subscription(public_id: &str) -> Subscription {
    Subscription {
        class: "media".into(),
        subclass: Some("conf".into()),
        kind: None,
        obj_id: Some(public_id.to_string()),
        body: None,
    }
}
