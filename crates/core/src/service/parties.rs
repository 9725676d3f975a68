//! A conference's parties beyond joining and leaving: what each says about itself
//! (microphone, camera, raised hand), whether its media with the server's endpoint is
//! up, and the owner's kick, mute and end.
//!
//! A party is a session in a conference's live room (`RoomMember`, kept by the session
//! registry). Every change is published on the conference's events like a join
//! (`updated_member`; `media_ended` when its media ended), so every door in the conference
//! hears it, on every node. Who may do what: a party changes its own state; only the
//! owner (or the admin) kicks, mutes or ends.

use crate::bus::{PartyState, RoomMember};
use crate::error::{CoreError, CoreResult};
use crate::event::{Event, EventBody};
use crate::ids::SessionId;
use crate::media::PartyKey;
use crate::model::{Conversation, Principal};

use super::conferences::conference_subscription;
use super::Core;

/// A change of a party's state; `None` leaves a field as it is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PartyChange {
    pub mic: Option<bool>,
    pub cam: Option<bool>,
    pub hand_up: Option<bool>,
    /// Set by the door once the media endpoint answered the party's offer, never taken
    /// from a client.
    pub media: Option<bool>,
}

impl PartyChange {
    fn apply(&self, state: &mut PartyState) {
        if let Some(mic) = self.mic {
            state.mic = mic;
        }
        if let Some(cam) = self.cam {
            state.cam = cam;
        }
        if let Some(hand) = self.hand_up {
            state.hand_up = hand;
        }
        if let Some(media) = self.media {
            state.media = media;
        }
    }
}

impl Core {
    /// The name a user is shown by: its account's display name, else its login.
    pub async fn display_name(&self, who: &Principal) -> CoreResult<String> {
        let name = match who.admin {
            true => None,
            false => self
                .storage
                .account_by_uin(who.uin)
                .await?
                .and_then(|a| a.name)
                .filter(|n| !n.trim().is_empty()),
        };
        Ok(name.unwrap_or_else(|| who.login.clone()))
    }

    /// The caller's own party (this session) in a conference it sees.
    pub async fn own_party(
        &self,
        caller: &Principal,
        session: &SessionId,
        conf_id: &str,
    ) -> CoreResult<(Conversation, RoomMember)> {
        let conv = self.visible_conversation(caller, conf_id).await?;
        let member = self
            .registry
            .room_members(conv.group_id)
            .into_iter()
            .find(|m| &m.session_id == session)
            .ok_or_else(|| CoreError::InvalidOperation("not joined".into()))?;
        Ok((conv, member))
    }

    /// Change the caller's own party (this session's) in a conference; everyone in it
    /// hears `updated_member`.
    pub async fn change_party(
        &self,
        caller: &Principal,
        session: &SessionId,
        conf_id: &str,
        change: PartyChange,
    ) -> CoreResult<RoomMember> {
        let (conv, member) = self.own_party(caller, session, conf_id).await?;
        self.update_party(&conv, member.party, change, "updated_member")
    }

    /// The owner (or the admin) turns a party's microphone off.
    pub async fn mute_party(
        &self,
        caller: &Principal,
        conf_id: &str,
        party: u64,
    ) -> CoreResult<RoomMember> {
        let conv = self.owned_conference(caller, conf_id).await?;
        let change = PartyChange {
            mic: Some(false),
            ..PartyChange::default()
        };
        self.update_party(&conv, party, change, "updated_member")
    }

    /// The owner (or the admin) takes a party out of the live room. It hears its own
    /// `stopped_member` (so its door can tell it), then stops hearing the conference;
    /// it stays an occupant and may join again.
    pub async fn kick_party(
        &self,
        caller: &Principal,
        conf_id: &str,
        party: u64,
    ) -> CoreResult<()> {
        let conv = self.owned_conference(caller, conf_id).await?;
        let target = self
            .registry
            .room_members(conv.group_id)
            .into_iter()
            .find(|m| m.party == party)
            .ok_or_else(|| no_such_party(party))?;
        let Some(member) = self.registry.leave_room(conv.group_id, &target.session_id) else {
            // It left meanwhile: nothing left to do.
            return Ok(());
        };
        let public_id = conv.public_id();
        let session = member.session_id.clone();
        self.publish_member_change(public_id.clone(), member, "stopped_member");
        self.bus
            .unsubscribe(&session, &conference_subscription(&public_id));
        Ok(())
    }

    /// The owner (or the admin) ends a conference: it is destroyed (every party leaves,
    /// `destroyed` goes to all). A chat group is not ended here (it is deleted through
    /// its own door).
    pub async fn end_conference(&self, caller: &Principal, conf_id: &str) -> CoreResult<()> {
        let conv = self.owned_conference(caller, conf_id).await?;
        if conv.is_chat_group() {
            return Err(CoreError::InvalidOperation(
                "a chat group is not ended by its live room".into(),
            ));
        }
        self.destroy_conference(caller, conf_id).await
    }

    /// What the media endpoint said about a party: what it sends, or that its media
    /// ended (`media_ended`). A party that left meanwhile is ignored.
    pub async fn party_media(
        &self,
        key: PartyKey,
        change: PartyChange,
        ended: bool,
    ) -> CoreResult<()> {
        let Some(conv) = self.storage.conversation(key.conference).await? else {
            return Ok(());
        };
        let kind = if ended {
            "media_ended"
        } else {
            "updated_member"
        };
        match self.update_party(&conv, key.party, change, kind) {
            Ok(_) | Err(CoreError::InvalidValue(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The conversations the caller may enter as conferences, with how many parties
    /// each has now: the conferences it occupies and its chat groups (every conference,
    /// for the admin), destroyed ones left out, at most `max_list`, newest first.
    pub async fn enterable_conferences(
        &self,
        caller: &Principal,
    ) -> CoreResult<Vec<(Conversation, usize)>> {
        let mut list = self.list_conferences(caller).await?;
        if !caller.admin {
            let groups = self.storage.groups_of(caller.uin).await?;
            list.extend(
                groups
                    .into_iter()
                    .map(|g| g.conversation)
                    .filter(|c| !c.destroyed),
            );
        }
        list.sort_by_key(|c| std::cmp::Reverse(c.group_id));
        list.truncate(self.settings.max_list);
        Ok(list
            .into_iter()
            .map(|c| {
                let parties = self.registry.room_members(c.group_id).len();
                (c, parties)
            })
            .collect())
    }

    /// A conference the caller sees and owns (or any, for the admin).
    async fn owned_conference(
        &self,
        caller: &Principal,
        conf_id: &str,
    ) -> CoreResult<Conversation> {
        let conv = self.visible_conversation(caller, conf_id).await?;
        if conv.destroyed {
            return Err(CoreError::ConversationDestroyed);
        }
        if !caller.admin && conv.owner != caller.uin {
            return Err(CoreError::Unauthorized);
        }
        Ok(conv)
    }

    fn update_party(
        &self,
        conv: &Conversation,
        party: u64,
        change: PartyChange,
        kind: &str,
    ) -> CoreResult<RoomMember> {
        let member = self
            .registry
            .update_party(conv.group_id, party, &mut |state| change.apply(state))
            .ok_or_else(|| no_such_party(party))?;
        self.publish(Event::new(
            "media",
            Some("conf".into()),
            Some(kind.to_string()),
            Some(conv.public_id()),
            EventBody::Member(Box::new(member.clone())),
        ));
        Ok(member)
    }
}

fn no_such_party(party: u64) -> CoreError {
    CoreError::InvalidValue(format!("PartyID {party}: no such party in the conference"))
}
