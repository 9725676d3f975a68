//! Chat groups: creating, changing, leaving, listing, blocking, and each member's own
//! mute / pin / clear / seen marks.
//!
//! Rules: only members see or touch a group (anyone else is told it does not exist);
//! only the owner changes it or blocks, except that in a private (1:1) group either
//! member may block the other. A private group has exactly two members and exists once
//! per pair: creating it again returns the existing one. Leaving a private group hides it
//! from the leaver, who stays a member: it comes back, with its history, on the next
//! message in it or the leaver's `check_group`/`create_group` for the pair.
//!
//! Catching up: [`Core::list_group_changes`] gives every group whose listing changed
//! after a change number, and every group the caller stopped seeing.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::error::{CoreError, CoreResult};
use crate::event::{EventBody, Grant};
use crate::ids::{GroupId, Uin};
use crate::model::{
    now_us, Conversation, ConversationKind, GroupListing, LeftGroup, MemberState, MessageQuery,
    NewConversation, Principal,
};

use super::Core;

/// The longest group name or avatar URL accepted.
const MAX_FIELD_LEN: usize = 1024;
/// The most members a group may have.
const MAX_MEMBERS: usize = 10_000;

/// How `list_group` orders groups (after pinned ones).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupSort {
    /// Newest last message first (groups without messages by creation time).
    LastMessage,
    /// Newest group first.
    Created,
}

/// What `update_group` may change; `None` leaves a field as it is.
#[derive(Clone, Debug, Default)]
pub struct GroupChanges {
    pub name: Option<String>,
    pub avatar_url: Option<String>,
    pub owner: Option<Uin>,
    pub kind: Option<ConversationKind>,
    pub add: BTreeSet<Uin>,
    pub remove: BTreeSet<Uin>,
}

/// Why a page size of 0 is refused, for every listing of chat groups and messages.
pub(super) const PAGE_SIZE_ZERO: &str = "psize: a page holds at least 1 item";

fn check_len(value: &Option<String>, what: &'static str) -> CoreResult<()> {
    match value {
        Some(v) if v.len() > MAX_FIELD_LEN => Err(CoreError::TooLarge(what)),
        _ => Ok(()),
    }
}

impl Core {
    /// A chat group the caller is a member of; anything else is "not found".
    pub(super) async fn member_group(
        &self,
        caller: &Principal,
        group: GroupId,
    ) -> CoreResult<Conversation> {
        match self.storage.conversation(group).await? {
            Some(c) if c.is_chat_group() && !c.destroyed && c.occupants.contains(&caller.uin) => {
                Ok(c)
            }
            _ => Err(CoreError::ConversationNotFound),
        }
    }

    async fn require_accounts(&self, uins: &BTreeSet<Uin>) -> CoreResult<()> {
        for uin in uins {
            if self.storage.account_by_uin(*uin).await?.is_none() {
                return Err(CoreError::UserNotFound);
            }
        }
        Ok(())
    }

    /// `group` with its `last_message_id` filled in, as answers and pushes show it.
    pub(super) async fn with_last_message(
        &self,
        mut group: Conversation,
    ) -> CoreResult<Conversation> {
        let newest = MessageQuery {
            limit: 1,
            max_bytes: usize::MAX,
            ..MessageQuery::default()
        };
        let page = self.storage.list_messages(group.group_id, newest).await?;
        group.last_message_id = page.messages.first().map_or(0, |m| m.message_id);
        Ok(group)
    }

    async fn push_group(
        &self,
        to: impl IntoIterator<Item = Uin>,
        kind: &str,
        group: &Conversation,
    ) {
        let group = match self.with_last_message(group.clone()).await {
            Ok(g) => g,
            Err(e) => {
                tracing::warn!(error = %e, "group push without last_message_id");
                group.clone()
            }
        };
        let body = EventBody::Group(Arc::new(group.clone()));
        self.push_chat(to, kind, group.group_id.to_string(), body);
    }

    /// Show a private group again to those of `uins` it was hidden from; they hear
    /// `group`.
    pub(super) async fn unhide(&self, conv: &Conversation, uins: BTreeSet<Uin>) -> CoreResult<()> {
        let uins: BTreeSet<Uin> = uins.intersection(&conv.hidden).copied().collect();
        if uins.is_empty() {
            return Ok(());
        }
        self.storage
            .set_hidden(conv.group_id, uins.clone(), false)
            .await?;
        let mut shown = conv.clone();
        shown.hidden.retain(|u| !uins.contains(u));
        self.push_group(uins, "group", &shown).await;
        Ok(())
    }

    /// `group` shown again to the caller if they had left it (private groups).
    async fn come_back(
        &self,
        caller: &Principal,
        mut group: Conversation,
    ) -> CoreResult<Conversation> {
        if group.hidden.contains(&caller.uin) {
            self.unhide(&group, BTreeSet::from([caller.uin])).await?;
            group.hidden.remove(&caller.uin);
        }
        self.with_last_message(group).await
    }

    /// Create a chat group; the caller is always a member. For a private group that
    /// exists already, the existing one is returned with `false`.
    pub async fn create_group(
        &self,
        caller: &Principal,
        kind: ConversationKind,
        name: Option<String>,
        avatar_url: Option<String>,
        owner: Option<Uin>,
        mut occupants: BTreeSet<Uin>,
    ) -> CoreResult<(Conversation, bool)> {
        check_len(&name, "name")?;
        check_len(&avatar_url, "avatar_url")?;
        if matches!(kind, ConversationKind::Conference { .. }) {
            return Err(CoreError::InvalidValue("type".into()));
        }
        occupants.insert(caller.uin);
        if occupants.len() > MAX_MEMBERS {
            return Err(CoreError::TooLarge("occupants_uins"));
        }
        if kind == ConversationKind::Private && occupants.len() != 2 {
            return Err(CoreError::InvalidValue(
                "a private group has exactly two members".into(),
            ));
        }
        let owner = owner.unwrap_or(caller.uin);
        if !occupants.contains(&owner) {
            return Err(CoreError::InvalidValue("owner_uin must be a member".into()));
        }
        self.require_accounts(&occupants).await?;
        if kind == ConversationKind::Private {
            if let Some(existing) = self
                .storage
                .find_group_with_occupants(&kind, &occupants)
                .await?
            {
                return Ok((self.come_back(caller, existing).await?, false));
            }
        }
        let group = self
            .storage
            .create_conversation(NewConversation {
                alias: None,
                kind,
                name,
                avatar_url,
                owner,
                creator: caller.uin,
                occupants,
                created_at_us: now_us(),
            })
            .await?;
        self.push_group(group.occupants.iter().copied(), "group", &group)
            .await;
        Ok((group, true))
    }

    /// The private or public group whose members are exactly the caller and `others`.
    pub async fn check_group(
        &self,
        caller: &Principal,
        kind: ConversationKind,
        mut occupants: BTreeSet<Uin>,
    ) -> CoreResult<Conversation> {
        if !matches!(kind, ConversationKind::Private | ConversationKind::Public) {
            return Err(CoreError::InvalidValue("type must be 1 or 3".into()));
        }
        occupants.insert(caller.uin);
        let group = self
            .storage
            .find_group_with_occupants(&kind, &occupants)
            .await?
            .ok_or(CoreError::ConversationNotFound)?;
        self.come_back(caller, group).await
    }

    pub async fn update_group(
        &self,
        caller: &Principal,
        group: GroupId,
        changes: GroupChanges,
    ) -> CoreResult<Conversation> {
        let mut conv = self.member_group(caller, group).await?;
        if conv.owner != caller.uin {
            return Err(CoreError::Unauthorized);
        }
        check_len(&changes.name, "name")?;
        check_len(&changes.avatar_url, "avatar_url")?;
        if conv.kind == ConversationKind::Private
            && (!changes.add.is_empty() || !changes.remove.is_empty())
        {
            return Err(CoreError::InvalidOperation(
                "a private group keeps its two members".into(),
            ));
        }
        if let Some(kind) = changes.kind {
            let allowed = matches!(
                (&conv.kind, &kind),
                (
                    ConversationKind::Group | ConversationKind::Public,
                    ConversationKind::Group | ConversationKind::Public
                )
            ) || conv.kind == kind;
            if !allowed {
                return Err(CoreError::InvalidValue("type".into()));
            }
            conv.kind = kind;
        }
        self.require_accounts(&changes.add).await?;
        // The whole change is checked before anything is written, then written in one
        // transaction: a refused change changes nothing.
        let before = conv.occupants.clone();
        let added: BTreeSet<Uin> = changes.add.difference(&before).copied().collect();
        let removed: BTreeSet<Uin> = changes.remove.intersection(&before).copied().collect();
        let mut occupants: BTreeSet<Uin> = before.union(&added).copied().collect();
        occupants.retain(|u| !changes.remove.contains(u));
        let new_owner = changes.owner.unwrap_or(conv.owner);
        if changes.remove.contains(&new_owner) {
            return Err(CoreError::InvalidOperation(
                "the owner cannot be removed".into(),
            ));
        }
        if !occupants.contains(&new_owner) {
            return Err(CoreError::InvalidValue("owner_uin must be a member".into()));
        }
        if occupants.len() > MAX_MEMBERS {
            return Err(CoreError::TooLarge("occupants_uins"));
        }
        conv.occupants = occupants;
        conv.owner = new_owner;
        if let Some(name) = changes.name {
            conv.name = Some(name);
        }
        if let Some(avatar) = changes.avatar_url {
            conv.avatar_url = Some(avatar);
        }
        let now = now_us();
        self.storage
            .change_group(conv.clone(), added, removed.clone(), now)
            .await?;
        for uin in &removed {
            self.revoke_grant(Grant::Member { group, uin: *uin });
        }
        conv.updated_at_us = now;
        self.end_call_participation(group, &removed).await;
        let (stayed, added): (Vec<Uin>, Vec<Uin>) =
            conv.occupants.iter().partition(|u| before.contains(u));
        self.push_group(stayed, "update_group", &conv).await;
        self.push_group(added, "group", &conv).await;
        self.push_group(removed, "delete_group", &conv).await;
        self.with_last_message(conv).await
    }

    /// Leave a group. An owner who leaves hands the group to the member with the lowest
    /// number; the last member to leave ends the group. Leaving a private group hides it
    /// from the caller instead (see the module doc): the pair keeps its one group.
    pub async fn leave_group(&self, caller: &Principal, group: GroupId) -> CoreResult<()> {
        let mut conv = self.member_group(caller, group).await?;
        let now = now_us();
        let leaving = BTreeSet::from([caller.uin]);
        if conv.kind == ConversationKind::Private {
            if !conv.hidden.contains(&caller.uin) {
                self.storage
                    .set_hidden(group, leaving.clone(), true)
                    .await?;
                conv.hidden.insert(caller.uin);
            }
            self.end_call_participation(group, &leaving).await;
            self.push_group([caller.uin], "delete_group", &conv).await;
            return Ok(());
        }
        conv.occupants.remove(&caller.uin);
        conv.updated_at_us = now;
        let heir = conv.occupants.iter().next().copied();
        match heir {
            Some(heir) => {
                if conv.owner == caller.uin {
                    conv.owner = heir;
                }
                // One write: the member leaves and the group is handed over together.
                self.storage
                    .change_group(conv.clone(), BTreeSet::new(), leaving.clone(), now)
                    .await?;
            }
            None => {
                self.storage.remove_occupant(group, caller.uin, now).await?;
                self.storage.mark_destroyed(group, now).await?;
            }
        }
        self.revoke_grant(Grant::Member {
            group,
            uin: caller.uin,
        });
        self.end_call_participation(group, &leaving).await;
        self.push_group([caller.uin], "delete_group", &conv).await;
        if heir.is_some() {
            self.push_group(conv.occupants.iter().copied(), "update_group", &conv)
                .await;
        }
        Ok(())
    }

    /// The caller's groups, pinned first, then in `sort` order, one page. A page size of
    /// 0 is refused (`psize` must be at least 1); larger ones are capped by `max_list`.
    pub async fn list_groups(
        &self,
        caller: &Principal,
        page: usize,
        page_size: usize,
        sort: GroupSort,
    ) -> CoreResult<Vec<GroupListing>> {
        if page_size == 0 {
            return Err(CoreError::InvalidValue(PAGE_SIZE_ZERO.into()));
        }
        let mut groups = self.storage.groups_of(caller.uin).await?;
        let activity = |g: &GroupListing| match sort {
            GroupSort::LastMessage => g
                .last_message
                .as_ref()
                .map_or(g.conversation.created_at_us, |m| m.created_at_us),
            GroupSort::Created => g.conversation.created_at_us,
        };
        groups.sort_by(|a, b| {
            b.state
                .pinned_at_us
                .is_some()
                .cmp(&a.state.pinned_at_us.is_some())
                .then(b.state.pinned_at_us.cmp(&a.state.pinned_at_us))
                .then(activity(b).cmp(&activity(a)))
                .then(b.conversation.group_id.cmp(&a.conversation.group_id))
        });
        let size = page_size.clamp(1, self.settings.max_list);
        let mut groups: Vec<GroupListing> = groups
            .into_iter()
            .skip(page.saturating_mul(size))
            .take(size)
            .collect();
        // The last message shows its status as a listed one does (`receipts.rs`).
        for g in &mut groups {
            if let Some(last) = g.last_message.take() {
                g.last_message = Some(self.receipted(last).await);
            }
        }
        Ok(groups)
    }

    /// Every change after change number `since` in what the caller's `list_group` shows,
    /// oldest change first: groups whose listing changed (created, renamed, members,
    /// blocks, the caller's marks, new, edited or deleted messages), and groups the caller
    /// no longer sees (left, removed, ended, a private group left). At most `page_size`
    /// (capped by `max_list`; 0 is refused) items of both kinds together, and whether
    /// there are more: continue from the last `change_seq` received.
    pub async fn list_group_changes(
        &self,
        caller: &Principal,
        since: u64,
        page_size: usize,
    ) -> CoreResult<(Vec<GroupListing>, Vec<LeftGroup>, bool)> {
        if page_size == 0 {
            return Err(CoreError::InvalidValue(PAGE_SIZE_ZERO.into()));
        }
        let size = page_size.clamp(1, self.settings.max_list);
        let changed = self.storage.groups_changed(caller.uin, since).await?;
        let mut items: Vec<(u64, Result<GroupListing, LeftGroup>)> = changed
            .groups
            .into_iter()
            .map(|g| (g.change_seq, Ok(g)))
            .chain(changed.left.into_iter().map(|l| (l.change_seq, Err(l))))
            .collect();
        items.sort_by_key(|(seq, _)| *seq);
        let more = items.len() > size;
        let (mut groups, mut left) = (Vec::new(), Vec::new());
        for (_, item) in items.into_iter().take(size) {
            match item {
                Ok(g) => groups.push(g),
                Err(l) => left.push(l),
            }
        }
        // The last message shows its status as a listed one does (`receipts.rs`).
        for g in &mut groups {
            if let Some(last) = g.last_message.take() {
                g.last_message = Some(self.receipted(last).await);
            }
        }
        Ok((groups, left, more))
    }

    /// Block or unblock a member from posting in a group.
    pub async fn set_blocked(
        &self,
        caller: &Principal,
        group: GroupId,
        target: Uin,
        blocked: bool,
    ) -> CoreResult<Conversation> {
        let mut conv = self.member_group(caller, group).await?;
        let may = conv.owner == caller.uin || conv.kind == ConversationKind::Private;
        if !may {
            return Err(CoreError::Unauthorized);
        }
        if target == caller.uin {
            return Err(CoreError::InvalidValue("cannot block yourself".into()));
        }
        if !conv.occupants.contains(&target) && blocked {
            return Err(CoreError::UserNotFound);
        }
        let now = now_us();
        self.storage
            .set_blocked(group, target, blocked, now)
            .await?;
        conv.updated_at_us = now;
        if blocked {
            conv.blocked.insert(target);
        } else {
            conv.blocked.remove(&target);
        }
        self.push_group(conv.occupants.iter().copied(), "update_group", &conv)
            .await;
        self.with_last_message(conv).await
    }

    /// Change the caller's own marks on a group through `change`; returns the new marks.
    pub(super) async fn change_state(
        &self,
        caller: &Principal,
        group: GroupId,
        change: impl FnOnce(&mut MemberState, &Conversation),
    ) -> CoreResult<(Conversation, MemberState)> {
        let conv = self.member_group(caller, group).await?;
        let mut state = self
            .storage
            .member_state(group, caller.uin)
            .await?
            .ok_or(CoreError::ConversationNotFound)?;
        change(&mut state, &conv);
        self.storage
            .set_member_state(group, caller.uin, state.clone())
            .await?;
        Ok((conv, state))
    }

    pub async fn set_muted(
        &self,
        caller: &Principal,
        group: GroupId,
        muted: bool,
    ) -> CoreResult<()> {
        let (conv, _) = self
            .change_state(caller, group, |s, _| s.muted = muted)
            .await?;
        // The caller's own sockets only, so its other devices show the same (`pin_group`
        // likewise); the other members hear nothing of a member's own marks.
        let kind = if muted { "mute_group" } else { "unmute_group" };
        self.push_group([caller.uin], kind, &conv).await;
        Ok(())
    }

    /// Pin or unpin; the caller's other devices hear `pin_group` / `unpin_group`.
    pub async fn set_pinned(
        &self,
        caller: &Principal,
        group: GroupId,
        pinned: bool,
    ) -> CoreResult<()> {
        let now = now_us();
        let (conv, _) = self
            .change_state(caller, group, |s, _| s.pinned_at_us = pinned.then_some(now))
            .await?;
        self.push_group(
            [caller.uin],
            if pinned { "pin_group" } else { "unpin_group" },
            &conv,
        )
        .await;
        Ok(())
    }

    /// Clear the conversation's history for the caller only; its sockets hear
    /// `delete_conversation`.
    pub async fn clear_history(&self, caller: &Principal, group: GroupId) -> CoreResult<()> {
        let last = self.storage.last_seq(group).await?;
        let (conv, _) = self
            .change_state(caller, group, |s, _| {
                s.cleared_seq = last;
                s.seen_seq = s.seen_seq.max(last);
            })
            .await?;
        self.push_group([caller.uin], "delete_conversation", &conv)
            .await;
        Ok(())
    }

    /// The caller's device tokens are stored for push delivery (a later door sends them).
    pub async fn register_device_token(
        &self,
        caller: &Principal,
        kind: u8,
        token: String,
    ) -> CoreResult<()> {
        if !(1..=4).contains(&kind) {
            return Err(CoreError::InvalidValue("type".into()));
        }
        if token.is_empty() || token.len() > 4096 {
            return Err(CoreError::InvalidValue("token".into()));
        }
        self.storage
            .register_token(crate::model::DeviceToken {
                uin: caller.uin,
                kind,
                token,
            })
            .await?;
        Ok(())
    }

    pub async fn unregister_device_token(&self, caller: &Principal, token: &str) -> CoreResult<()> {
        if self.storage.unregister_token(caller.uin, token).await? {
            Ok(())
        } else {
            Err(CoreError::InvalidValue("no such token".into()))
        }
    }

    pub async fn device_tokens(
        &self,
        caller: &Principal,
    ) -> CoreResult<Vec<crate::model::DeviceToken>> {
        Ok(self.storage.device_tokens(caller.uin).await?)
    }
}
