//! Push notifications to offline devices: who gets one, and the durable outbox they wait
//! in until the worker (`confer-push`) has sent them.
//!
//! The rules live here, for every door: a message or call is pushed only to recipients no
//! live socket of theirs received it on ([`Core::delivered_live`], the one place that
//! decides it), who may hold a device token. A message's outbox entry is written in the
//! same store write as the message (`NewMessage::push_to`), a call's right after the call
//! is stored and before anyone is told, so a crash loses nothing. Turning an entry into
//! one delivery per device ([`Core::prepare_pushes`]) applies the rules that need reads,
//! off the posting path: muted groups skip messages (never calls), a sender blocked in
//! the group never pushes, a recipient who left gets nothing, message text only with
//! `push_preview`, the badge is the recipient's unread count over every group. A call's
//! pushes are followed by a `call_cancelled` push when it is answered, stopped or times
//! out.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use crate::error::CoreResult;
use crate::ids::Uin;
use crate::model::{
    now_us, Call, Conversation, ConversationKind, PushDelivery, PushEntry, PushKind,
};

use super::Core;

/// The message type of the server's own call records: the call's pushes stand for them.
const CALL_RECORD: u32 = 1;

/// The token type of iOS PushKit (VoIP) tokens.
const PUSHKIT: u8 = 4;

/// The most characters of message text a push carries (providers cap a payload at 4 KiB).
const MAX_BODY_CHARS: usize = 256;

/// The core's push knobs (the providers' own are the worker's).
#[derive(Clone, Debug)]
pub struct PushSettings {
    /// The token types (1 FCM, 2 APNs, 3 Web, 4 PushKit) some provider delivers. Empty:
    /// push is off, nothing is queued, and an offline callee is unreachable.
    pub token_types: BTreeSet<u8>,
    /// Whether a message's text goes in its push (`push_preview`); off, only the title.
    pub preview: bool,
}

impl Default for PushSettings {
    fn default() -> Self {
        PushSettings {
            token_types: BTreeSet::new(),
            preview: true,
        }
    }
}

/// What the core keeps about pushes between calls: the worker's wake-up, and who each
/// live call rang by push (to cancel it there). Bounded by the live calls.
#[derive(Default)]
pub(super) struct PushState {
    wake: tokio::sync::Notify,
    /// Call id → the callees rung by push.
    rung: Mutex<HashMap<u64, Vec<Uin>>>,
}

impl Core {
    fn push_on(&self) -> bool {
        !self.settings.push.token_types.is_empty()
    }

    /// Of `uins`, those a live socket reaches now. The one place that decides "delivered
    /// live": with a registry shared by nodes, this is where every node is asked.
    pub(super) fn delivered_live(&self, uins: &[Uin]) -> BTreeSet<Uin> {
        uins.iter()
            .copied()
            .filter(|u| self.is_online(*u))
            .collect()
    }

    /// Of `uins`, those to push to instead: not reached live, possibly holding a token.
    async fn push_candidates(&self, uins: Vec<Uin>) -> CoreResult<Vec<Uin>> {
        if !self.push_on() || uins.is_empty() {
            return Ok(Vec::new());
        }
        let holders = self.storage.token_holders(uins).await?;
        let live = self.delivered_live(&holders);
        Ok(holders.into_iter().filter(|u| !live.contains(u)).collect())
    }

    /// Who gets a push for a message `sender` posts in `conv`: the other members with a
    /// device token that no live socket reaches. Read from memory (the registry and the
    /// store's token holders), on the posting path.
    pub(super) async fn message_push_targets(
        &self,
        conv: &Conversation,
        sender: Uin,
        kind: u32,
    ) -> CoreResult<Vec<Uin>> {
        if !self.push_on() || !conv.is_chat_group() || kind == CALL_RECORD {
            return Ok(Vec::new());
        }
        let others: Vec<Uin> = conv
            .occupants
            .iter()
            .copied()
            .filter(|u| *u != sender)
            .collect();
        self.push_candidates(others).await
    }

    /// Of callees with no live socket, those a push can ring. A failed read rings none.
    pub(super) async fn push_ringable(&self, offline: Vec<Uin>) -> Vec<Uin> {
        match self.push_candidates(offline).await {
            Ok(ringable) => ringable,
            Err(e) => {
                tracing::warn!(error = %e, "push: device tokens unavailable; offline callees are unreachable");
                Vec::new()
            }
        }
    }

    /// Queue a call's push to the callees it rings that way, before anyone is told.
    pub(super) async fn queue_call_push(&self, call: &Call, to: Vec<Uin>) {
        if to.is_empty() {
            return;
        }
        let entry = PushEntry {
            id: 0,
            kind: PushKind::Call,
            group_id: call.group_id,
            ref_id: call.call_id,
            sender: call.caller,
            recipients: to.clone(),
            created_at_us: now_us(),
        };
        match self.storage.enqueue_push(entry).await {
            Ok(()) => {
                self.push_lock().insert(call.call_id, to);
                self.push.wake.notify_one();
            }
            Err(e) => {
                tracing::warn!(error = %e, call_id = call.call_id, "push: call push not queued")
            }
        }
    }

    /// The call was answered, stopped or timed out: those it rang by push get a
    /// `call_cancelled` push (once; a later end finds nothing).
    pub(super) async fn cancel_call_push(&self, call: &Call) {
        let Some(rung) = self.push_lock().remove(&call.call_id) else {
            return;
        };
        let entry = PushEntry {
            id: 0,
            kind: PushKind::CallCancelled,
            group_id: call.group_id,
            ref_id: call.call_id,
            sender: call.caller,
            recipients: rung,
            created_at_us: now_us(),
        };
        match self.storage.enqueue_push(entry).await {
            Ok(()) => self.push.wake.notify_one(),
            Err(e) => {
                tracing::warn!(error = %e, call_id = call.call_id, "push: call cancellation not queued")
            }
        }
    }

    /// A message with pushes was stored: wake the worker.
    pub(super) fn pushes_queued(&self) {
        self.push.wake.notify_one();
    }

    fn push_lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Vec<Uin>>> {
        self.push.rung.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Resolves when something was queued since the last wait (the worker's alarm).
    pub async fn pushes_waiting(&self) {
        self.push.wake.notified().await;
    }

    /// Turn up to `limit` outbox entries into deliveries, one per device token of each
    /// recipient the rules leave; how many entries were handled.
    pub async fn prepare_pushes(&self, limit: usize) -> CoreResult<usize> {
        let entries = self.storage.push_entries(limit).await?;
        for entry in &entries {
            let deliveries = self.deliveries_for(entry).await?;
            let cancel = (entry.kind == PushKind::CallCancelled).then_some(entry.ref_id);
            self.storage
                .expand_push(entry.id, deliveries, cancel)
                .await?;
        }
        Ok(entries.len())
    }

    async fn deliveries_for(&self, entry: &PushEntry) -> CoreResult<Vec<PushDelivery>> {
        let Some(conv) = self.storage.conversation(entry.group_id).await? else {
            return Ok(Vec::new());
        };
        // A sender blocked since never pushes.
        if conv.destroyed || conv.blocked.contains(&entry.sender) {
            return Ok(Vec::new());
        }
        let (message_id, call_id, body) = match entry.kind {
            PushKind::Message => {
                let Some(message) = self.storage.message(entry.ref_id).await? else {
                    return Ok(Vec::new());
                };
                if message.deleted {
                    return Ok(Vec::new());
                }
                let body = if self.settings.push.preview {
                    message
                        .text
                        .as_deref()
                        .map(|t| t.chars().take(MAX_BODY_CHARS).collect::<String>())
                } else {
                    None
                };
                (Some(entry.ref_id), None, body)
            }
            PushKind::Call | PushKind::CallCancelled => (None, Some(entry.ref_id), None),
        };
        let title = self.push_title(&conv, entry.sender).await?;
        let mut out = Vec::new();
        for uin in &entry.recipients {
            if !conv.occupants.contains(uin) {
                continue;
            }
            if entry.kind == PushKind::Message {
                let muted = self
                    .storage
                    .member_state(conv.group_id, *uin)
                    .await?
                    .is_some_and(|s| s.muted);
                if muted {
                    continue;
                }
            }
            let tokens: Vec<_> = self
                .storage
                .device_tokens(*uin)
                .await?
                .into_iter()
                .filter(|t| self.settings.push.token_types.contains(&t.kind))
                // PushKit tokens wake the app for calls only (Apple's rule).
                .filter(|t| t.kind != PUSHKIT || entry.kind != PushKind::Message)
                .collect();
            if tokens.is_empty() {
                continue;
            }
            let badge = self
                .storage
                .groups_of(*uin)
                .await?
                .iter()
                .map(|g| g.unread)
                .sum();
            for token in tokens {
                out.push(PushDelivery {
                    id: 0,
                    kind: entry.kind,
                    uin: *uin,
                    token_type: token.kind,
                    token: token.token,
                    group_id: entry.group_id,
                    message_id,
                    call_id,
                    title: title.clone(),
                    body: body.clone(),
                    badge,
                    created_at_us: entry.created_at_us,
                    attempts: 0,
                    next_at_us: 0,
                });
            }
        }
        Ok(out)
    }

    /// A group's name for groups, the sender's name in a private chat.
    async fn push_title(&self, conv: &Conversation, sender: Uin) -> CoreResult<String> {
        if conv.kind != ConversationKind::Private {
            if let Some(name) = conv.name.as_ref().filter(|n| !n.is_empty()) {
                return Ok(name.clone());
            }
        }
        Ok(match self.storage.account_by_uin(sender).await? {
            Some(account) => account.name.unwrap_or(account.login),
            None => sender.to_string(),
        })
    }

    /// Claim for `node` up to `limit` deliveries of `token_types` due at `now_us`, until
    /// `lease_until_us` (see [`crate::store::PushStore::claim_pushes`]).
    pub async fn claim_pushes(
        &self,
        node: &str,
        token_types: &[u8],
        now_us: i64,
        lease_until_us: i64,
        limit: usize,
    ) -> CoreResult<Vec<PushDelivery>> {
        Ok(self
            .storage
            .claim_pushes(node, token_types, now_us, lease_until_us, limit)
            .await?)
    }

    /// `node` (re)started: what it had claimed before is due again.
    pub async fn release_push_claims(&self, node: &str) -> CoreResult<()> {
        Ok(self.storage.release_push_claims(node, now_us()).await?)
    }

    /// When the next queued delivery is due.
    pub async fn next_push_at(&self) -> CoreResult<Option<i64>> {
        Ok(self.storage.next_push_at().await?)
    }

    /// A delivery is finished: sent, refused for good, or too old.
    pub async fn push_done(&self, id: u64) -> CoreResult<()> {
        Ok(self.storage.push_done(id).await?)
    }

    /// A delivery failed for now; try again at `next_at_us`.
    pub async fn push_retry(&self, id: u64, attempts: u32, next_at_us: i64) -> CoreResult<()> {
        Ok(self.storage.push_retry(id, attempts, next_at_us).await?)
    }

    /// A provider said a token is dead: it is removed, with what was queued for it.
    pub async fn push_token_dead(&self, token: &str) -> CoreResult<()> {
        Ok(self.storage.remove_dead_token(token).await?)
    }
}
