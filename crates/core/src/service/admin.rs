//! The admin's operations on a running server (the admin HTTP API and the `confer group`,
//! `message` and `session` commands that call it): every chat group, its members,
//! messages posted in a member's name, and every live session.
//!
//! They live here, beside the users' own operations, so that what the admin does goes
//! through the same checks, storage writes and pushes: a group the admin changes is
//! announced to its members, and a message the admin sends is stored and announced
//! exactly like a Chat API `create_message`. The admin acts on a group as its owner and
//! posts as one of its members (by default the owner); only the admin may call these.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::bus::SessionInfo;
use crate::error::{CoreError, CoreResult};
use crate::ids::{GroupId, Uin};
use crate::model::{Account, Conversation, ConversationKind, Message, Principal};

use super::{ChatMessageInput, Core, GroupChanges};

fn require_admin(caller: &Principal) -> CoreResult<()> {
    if caller.admin {
        Ok(())
    } else {
        Err(CoreError::Unauthorized)
    }
}

fn principal_of(account: Account) -> Principal {
    Principal {
        uin: account.uin,
        login: account.login,
        admin: false,
    }
}

impl Core {
    /// Whether an admin password is configured (without one the admin cannot log in).
    pub fn admin_enabled(&self) -> bool {
        self.settings.admin_password.is_some()
    }

    /// An account named by its login, or by its decimal `uin`.
    pub async fn find_user(&self, name: &str) -> CoreResult<Account> {
        if let Some(account) = self.storage.account_by_login(name).await? {
            return Ok(account);
        }
        if let Ok(n) = name.parse::<u64>() {
            if let Some(account) = self.storage.account_by_uin(Uin(n)).await? {
                return Ok(account);
            }
        }
        Err(CoreError::UserNotFound)
    }

    async fn account_principal(&self, uin: Uin) -> CoreResult<Principal> {
        self.storage
            .account_by_uin(uin)
            .await?
            .map(principal_of)
            .ok_or(CoreError::UserNotFound)
    }

    /// A live chat group, whoever its members are.
    async fn any_group(&self, group: GroupId) -> CoreResult<Conversation> {
        match self.storage.conversation(group).await? {
            Some(c) if c.is_chat_group() && !c.destroyed => Ok(c),
            _ => Err(CoreError::ConversationNotFound),
        }
    }

    /// Every live chat group (not conferences), by id.
    pub async fn admin_list_groups(&self, caller: &Principal) -> CoreResult<Vec<Conversation>> {
        require_admin(caller)?;
        Ok(self.storage.list_chat_groups().await?)
    }

    /// Create a chat group owned by `owner`, with `members` (the owner is one), as if the
    /// owner had created it: its members are told (`group`).
    pub async fn admin_create_group(
        &self,
        caller: &Principal,
        kind: ConversationKind,
        name: Option<String>,
        owner: Uin,
        members: BTreeSet<Uin>,
    ) -> CoreResult<Conversation> {
        require_admin(caller)?;
        let owner = self.account_principal(owner).await?;
        let (group, created) = self
            .create_group(&owner, kind, name, None, None, members)
            .await?;
        if !created {
            return Err(CoreError::InvalidOperation(format!(
                "these two users have a private group already: {}",
                group.group_id
            )));
        }
        Ok(group)
    }

    /// Add a member, as the group's owner would (`update_group` / `group` pushes).
    pub async fn admin_add_member(
        &self,
        caller: &Principal,
        group: GroupId,
        user: Uin,
    ) -> CoreResult<Conversation> {
        require_admin(caller)?;
        let conv = self.any_group(group).await?;
        if conv.occupants.contains(&user) {
            return Err(CoreError::InvalidOperation("already a member".into()));
        }
        let owner = self.account_principal(conv.owner).await?;
        let changes = GroupChanges {
            add: BTreeSet::from([user]),
            ..GroupChanges::default()
        };
        self.update_group(&owner, group, changes).await
    }

    /// Remove a member (not the owner), as the group's owner would.
    pub async fn admin_remove_member(
        &self,
        caller: &Principal,
        group: GroupId,
        user: Uin,
    ) -> CoreResult<Conversation> {
        require_admin(caller)?;
        let conv = self.any_group(group).await?;
        if !conv.occupants.contains(&user) {
            return Err(CoreError::InvalidOperation(format!(
                "{user} is not a member of group {group}"
            )));
        }
        let owner = self.account_principal(conv.owner).await?;
        let changes = GroupChanges {
            remove: BTreeSet::from([user]),
            ..GroupChanges::default()
        };
        self.update_group(&owner, group, changes).await
    }

    /// Post a text message in `group` in the name of member `sender` (default: the
    /// owner): stored and announced exactly like a Chat API `create_message`.
    pub async fn admin_post_message(
        &self,
        caller: &Principal,
        group: GroupId,
        sender: Option<Uin>,
        text: String,
    ) -> CoreResult<Arc<Message>> {
        require_admin(caller)?;
        if text.is_empty() {
            return Err(CoreError::InvalidValue("text must not be empty".into()));
        }
        let conv = self.any_group(group).await?;
        let sender = sender.unwrap_or(conv.owner);
        if !conv.occupants.contains(&sender) {
            return Err(CoreError::InvalidValue(
                "the sender is not a member of the group".into(),
            ));
        }
        let sender = self.account_principal(sender).await?;
        let input = ChatMessageInput {
            text: Some(text),
            ..ChatMessageInput::default()
        };
        let (message, _) = self
            .post_chat_message_from(&sender, None, group, input)
            .await?;
        Ok(message)
    }

    /// Every live session of this server, oldest first.
    pub fn admin_sessions(&self, caller: &Principal) -> CoreResult<Vec<SessionInfo>> {
        require_admin(caller)?;
        let mut sessions = self.registry.all_sessions();
        sessions.sort_by(|a, b| {
            a.started_at_us
                .cmp(&b.started_at_us)
                .then_with(|| a.session_id.cmp(&b.session_id))
        });
        Ok(sessions)
    }
}
