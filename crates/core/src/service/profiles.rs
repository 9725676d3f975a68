//! Profiles: each account's display name and avatar URL, set by the user themselves, and
//! the display fields the server writes into every chat message it stores from them.
//!
//! A chat message carries `sender_name`, `sender_avatar`, `group_name` and `group_avatar`
//! as they were when it was posted: the server fills them from the sender's account and
//! the group ([`Core::display_fields`]); what a client sends under those names is ignored.
//! Profiles are read on every post, so they are cached here (bounded), but only while
//! this process is the storage's sole writer: over a database that other nodes write
//! (`Storage::shared`, PostgreSQL) a profile one node changed would stay stale on the
//! others, so each post reads it (one indexed row).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::error::{CoreError, CoreResult};
use crate::event::Json;
use crate::ids::Uin;
use crate::model::{Conversation, Principal};

use super::Core;

/// The longest display name accepted, in bytes.
const MAX_NAME_BYTES: usize = 256;
/// The longest avatar URL accepted, in bytes.
const MAX_AVATAR_BYTES: usize = 1024;
/// Profiles kept in memory at most; past it the cache starts over.
const CACHE_ENTRIES: usize = 100_000;

/// A user's public face.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Profile {
    pub uin: Uin,
    pub name: Option<String>,
    pub avatar_url: Option<String>,
}

/// Profiles by user, as last read or written. A std `Mutex`: held for one lookup.
#[derive(Default)]
pub(super) struct ProfileCache(Mutex<HashMap<Uin, Arc<Profile>>>);

impl ProfileCache {
    fn get(&self, uin: Uin) -> Option<Arc<Profile>> {
        self.lock().get(&uin).cloned()
    }

    fn put(&self, profile: Arc<Profile>) {
        let mut map = self.lock();
        if map.len() >= CACHE_ENTRIES {
            map.clear();
        }
        map.insert(profile.uin, profile);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uin, Arc<Profile>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A field's new value: `None` keeps it, an empty string clears it.
fn checked(value: Option<String>, max: usize, what: &'static str) -> CoreResult<Option<String>> {
    match value {
        Some(v) if v.len() > max => Err(CoreError::TooLarge(what)),
        Some(v) if v.chars().any(char::is_control) => Err(CoreError::InvalidValue(format!(
            "{what}: no control characters"
        ))),
        other => Ok(other),
    }
}

/// `s` as a JSON string literal.
fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

impl Core {
    /// A user's profile, from the cache or storage.
    pub(super) async fn profile(&self, uin: Uin) -> CoreResult<Arc<Profile>> {
        let cached = !self.storage.shared();
        if let Some(p) = self.profiles.get(uin).filter(|_| cached) {
            return Ok(p);
        }
        let account = self
            .storage
            .account_by_uin(uin)
            .await?
            .ok_or(CoreError::UserNotFound)?;
        let profile = Arc::new(Profile {
            uin,
            name: account.name,
            avatar_url: account.avatar_url,
        });
        if cached {
            self.profiles.put(profile.clone());
        }
        Ok(profile)
    }

    /// Change the caller's own display name and/or avatar URL (`None` keeps a field, an
    /// empty string clears it); returns the profile as it now is.
    pub async fn update_profile(
        &self,
        caller: &Principal,
        name: Option<String>,
        avatar_url: Option<String>,
    ) -> CoreResult<Profile> {
        if caller.admin {
            return Err(CoreError::InvalidOperation(
                "the admin has no profile".into(),
            ));
        }
        if name.is_none() && avatar_url.is_none() {
            return Err(CoreError::InvalidValue(
                "nothing to change: give name or avatar_url".into(),
            ));
        }
        let name = checked(name, MAX_NAME_BYTES, "name")?;
        let avatar_url = checked(avatar_url, MAX_AVATAR_BYTES, "avatar_url")?;
        let old = self.profile(caller.uin).await?;
        let pick = |new: Option<String>, old: &Option<String>| match new {
            Some(v) if v.is_empty() => None,
            Some(v) => Some(v),
            None => old.clone(),
        };
        let profile = Profile {
            uin: caller.uin,
            name: pick(name, &old.name),
            avatar_url: pick(avatar_url, &old.avatar_url),
        };
        self.storage
            .set_profile(caller.uin, profile.name.clone(), profile.avatar_url.clone())
            .await?;
        if !self.storage.shared() {
            self.profiles.put(Arc::new(profile.clone()));
        }
        Ok(profile)
    }

    /// A user's profile: the caller's own, or that of someone sharing a live chat group
    /// with the caller; anyone else is "not found".
    pub async fn get_profile(&self, caller: &Principal, uin: Uin) -> CoreResult<Profile> {
        if uin != caller.uin && !self.storage.peers_of(caller.uin).await?.contains(&uin) {
            return Err(CoreError::UserNotFound);
        }
        Ok(Profile::clone(&*self.profile(uin).await?))
    }

    /// The display fields a chat message from `sender` in `conv` is stored with, as a JSON
    /// object: the sender's name and avatar and the group's, those that are set (`None`
    /// when none is, so a message from a user without a profile stores nothing more; the
    /// Chat API shows an unset one as `null`).
    pub(super) async fn display_fields(
        &self,
        conv: &Conversation,
        sender: Uin,
    ) -> CoreResult<Option<Json>> {
        let profile = self.profile(sender).await?;
        let fields = [
            ("group_name", &conv.name),
            ("group_avatar", &conv.avatar_url),
            ("sender_name", &profile.name),
            ("sender_avatar", &profile.avatar_url),
        ];
        let mut out = String::new();
        for (key, value) in fields {
            let Some(value) = value else { continue };
            out.push(if out.is_empty() { '{' } else { ',' });
            json_string(&mut out, key);
            out.push(':');
            json_string(&mut out, value);
        }
        if out.is_empty() {
            return Ok(None);
        }
        out.push('}');
        Ok(Some(Json::from_validated(out)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped_as_json() {
        let mut out = String::new();
        json_string(&mut out, "a\"b\\c\u{1}é");
        assert_eq!(out, r#""a\"b\\c\u0001é""#);
    }
}
