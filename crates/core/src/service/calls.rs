//! Calls and their WebRTC signalling.
//!
//! A call belongs to a group: the caller and the callees must be members, and a group has
//! at most one live call (a second `create_call` is refused with
//! [`CoreError::CallInProgress`]). Callees hear `start_call`, except those who are busy (in
//! another live call, ringing or accepted) or unreachable (no chat socket): the caller hears
//! an `event` of type 7 for each of them at once, and they count as having declined. An
//! answer is told to everyone in the call (`answer_call`). A call ends (everyone hears
//! `stop_call` and a call message, type 1, with its duration lands in the group's
//! history) with status 2 (timeout) when nobody accepted within the configured timeout or
//! the last callee to decline answered 3 (timeout), and with status 3 (finished) when it
//! is stopped, every callee rejected or was unavailable, or its caller left. SDP and ICE
//! go only from one participant of a live call to another. With push on, an offline
//! callee with a device token is rung by push instead of being unreachable, and hears
//! that the call is over the same way (`push.rs`). The state machine is written
//! down in ARCHITECTURE.md ("Calls").

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::error::{CoreError, CoreResult};
use crate::event::{EventBody, Json};
use crate::ids::{GroupId, Uin};
use crate::model::{now_us, Call, CallStatus, NewMessage, Principal};

use super::Core;

/// Answers, numbered as the Chat API does.
pub const ANSWER_ACCEPT: u8 = 1;
/// The callee's device gave up ringing: ends the call as timed out if it was the last.
pub const ANSWER_TIMEOUT: u8 = 3;
/// The `event` type the caller gets for a callee who cannot be rung ("check call
/// availability" in the Chat API document), with `data` "busy" or "unreachable".
pub const EVENT_CALL_AVAILABILITY: u8 = 7;

/// The message type of a call record in history.
const CALL_MESSAGE: u32 = 1;

impl Core {
    fn push_call(
        &self,
        call: &Call,
        kind: &str,
        answer: Option<(Uin, u8)>,
        to: impl IntoIterator<Item = Uin>,
    ) {
        let body = EventBody::Call {
            call: Arc::new(call.clone()),
            answer,
        };
        self.push_chat(to, kind, call.call_id.to_string(), body);
    }

    fn everyone(call: &Call) -> BTreeSet<Uin> {
        let mut all = call.callees.clone();
        all.insert(call.caller);
        all
    }

    /// Start a call in a group. Callees default to every other member.
    pub async fn create_call(
        self: &Arc<Self>,
        caller: &Principal,
        group: GroupId,
        media_type: u8,
        callees: Option<BTreeSet<Uin>>,
        extra: Option<Json>,
    ) -> CoreResult<Call> {
        if !(1..=2).contains(&media_type) {
            return Err(CoreError::InvalidValue("media_type".into()));
        }
        let conv = self.member_group(caller, group).await?;
        if conv.blocked.contains(&caller.uin) {
            return Err(CoreError::Blocked);
        }
        let mut callees = callees.unwrap_or_else(|| conv.occupants.clone());
        callees.remove(&caller.uin);
        if callees.is_empty() {
            return Err(CoreError::InvalidValue("callee_uins".into()));
        }
        if !callees.is_subset(&conv.occupants) {
            return Err(CoreError::UserNotFound);
        }
        if self.calls.of_group(group).await?.is_some() {
            return Err(CoreError::CallInProgress);
        }
        // Whether each callee has a chat socket, or else can be rung by push.
        let all: Vec<Uin> = callees.iter().copied().collect();
        let online = self.delivered_live(&all);
        let offline: Vec<Uin> = all.into_iter().filter(|u| !online.contains(u)).collect();
        let by_push: BTreeSet<Uin> = self.push_ringable(offline).await.into_iter().collect();
        let unreachable: BTreeSet<Uin> = callees
            .iter()
            .copied()
            .filter(|u| !online.contains(u) && !by_push.contains(u))
            .collect();
        let call = self
            .storage
            .insert_call(Call {
                call_id: 0,
                group_id: group,
                media_type,
                status: CallStatus::Ongoing,
                caller: caller.uin,
                callees,
                accepted: BTreeSet::new(),
                declined: unreachable.clone(),
                extra,
                started_at_us: now_us(),
                accepted_at_us: None,
                stopped_at_us: None,
            })
            .await?;
        // Checked again as it becomes live, in one step with marking the busy callees: of
        // two racing calls in a group (on any nodes) only the first becomes live. Its
        // ringing timer is armed in the same step.
        let started = self
            .calls
            .start(call.clone(), self.settings.call_timeout)
            .await?;
        let Some((call, busy)) = started else {
            let mut call = call;
            call.status = CallStatus::Finished;
            call.stopped_at_us = Some(now_us());
            self.storage.update_call(call).await?;
            return Err(CoreError::CallInProgress);
        };
        self.start_call_timers();
        let unavailable: Vec<(Uin, &'static str)> = call
            .callees
            .iter()
            .filter_map(|u| {
                if busy.contains(u) {
                    Some((*u, "busy"))
                } else if unreachable.contains(u) {
                    Some((*u, "unreachable"))
                } else {
                    None
                }
            })
            .collect();
        let ringing: Vec<Uin> = call.callees.difference(&call.declined).copied().collect();
        let pushed: Vec<Uin> = ringing
            .iter()
            .copied()
            .filter(|u| by_push.contains(u))
            .collect();
        self.queue_call_push(&call, pushed).await;
        // The caller's sockets hear it too (its `caller_uin` says it is theirs), so its
        // other devices show the call; not when nobody is rung, as it ends at once.
        let caller_too = (!ringing.is_empty()).then_some(caller.uin);
        self.push_call(
            &call,
            "start_call",
            None,
            ringing.iter().copied().chain(caller_too),
        );
        for (callee, reason) in &unavailable {
            let body = format!(
                "{{\"type\":{},\"group_id\":\"{}\",\"call_id\":\"{}\",\"sender_uin\":\"{}\",\"receiver_uin\":\"{}\",\"data\":\"{}\"}}",
                EVENT_CALL_AVAILABILITY, group, call.call_id, callee, caller.uin, reason
            );
            self.push_chat(
                [caller.uin],
                "event",
                group.to_string(),
                EventBody::Signal(Json::from_validated(body)),
            );
        }
        if ringing.is_empty() {
            // Nobody to ring: over at once, told only to the caller.
            return self
                .end_call_told(call, CallStatus::Finished, Some(vec![caller.uin]))
                .await;
        }
        let call_id = call.call_id;
        // The call is live and its timer runs: a failed write of who declined is logged,
        // not answered, so the caller still holds a call that will end.
        if !busy.is_empty() {
            if let Err(e) = self.storage.update_call(call.clone()).await {
                tracing::warn!(error = %e, call_id, "storing a call's unavailable callees");
            }
        }
        Ok(call)
    }

    /// Start the task that ends calls whose ringing timed out, once per core. Every node
    /// of a cluster runs one (the server starts it at once), so a timer fires even when
    /// the node that rang the call is gone; each fires on one node only.
    pub fn start_call_timers(self: &Arc<Self>) {
        if self
            .call_timers
            .swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            return;
        }
        let calls = self.calls.clone();
        let core = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let due = calls.due().await;
                let Some(core) = core.upgrade() else {
                    return;
                };
                for call_id in due {
                    core.ring_timeout(call_id).await;
                }
            }
        });
    }

    /// An ongoing call of `group` that the caller takes part in.
    async fn live_call(
        &self,
        caller: &Principal,
        group: GroupId,
        call_id: u64,
    ) -> CoreResult<Call> {
        match self.calls.get(call_id).await? {
            Some(call) if call.group_id == group && call.involves(caller.uin) => Ok(call),
            _ => Err(CoreError::CallNotFound),
        }
    }

    pub async fn answer_call(
        &self,
        caller: &Principal,
        group: GroupId,
        call_id: u64,
        answer: u8,
    ) -> CoreResult<Call> {
        if !(1..=4).contains(&answer) {
            return Err(CoreError::InvalidValue("answer".into()));
        }
        let call = self.live_call(caller, group, call_id).await?;
        if !call.callees.contains(&caller.uin) {
            return Err(CoreError::InvalidOperation("only a callee answers".into()));
        }
        let uin = caller.uin;
        let now = now_us();
        let answered = move |call: &mut Call| {
            if answer == ANSWER_ACCEPT {
                call.accepted.insert(uin);
                call.declined.remove(&uin);
                call.accepted_at_us.get_or_insert(now);
            } else {
                call.declined.insert(uin);
                call.accepted.remove(&uin);
            }
        };
        // A call ended meanwhile stays ended.
        let Some(call) = self.calls.update(call_id, &answered).await? else {
            return Err(CoreError::CallNotFound);
        };
        self.storage.update_call(call.clone()).await?;
        self.push_call(
            &call,
            "answer_call",
            Some((caller.uin, answer)),
            Self::everyone(&call),
        );
        if answer == ANSWER_ACCEPT {
            // Answered: the devices it rang by push stop ringing.
            self.cancel_call_push(&call).await;
        }
        if call.declined == call.callees {
            let status = if answer == ANSWER_TIMEOUT {
                CallStatus::Timeout
            } else {
                CallStatus::Finished
            };
            return self.end_call(call, status).await;
        }
        Ok(call)
    }

    /// Stop a call (any participant).
    pub async fn stop_call(
        &self,
        caller: &Principal,
        group: GroupId,
        call_id: u64,
    ) -> CoreResult<Call> {
        let call = self.live_call(caller, group, call_id).await?;
        self.end_call(call, CallStatus::Finished).await
    }

    async fn ring_timeout(&self, call_id: u64) {
        let ringing = match self.calls.get(call_id).await {
            Ok(call) => call.filter(|c| c.accepted.is_empty()),
            Err(e) => {
                tracing::warn!(error = %e, call_id, "reading a call whose ringing timed out");
                None
            }
        };
        if let Some(call) = ringing {
            if let Err(e) = self.end_call(call, CallStatus::Timeout).await {
                tracing::warn!(error = %e, call_id, "call timeout");
            }
        }
    }

    async fn end_call(&self, call: Call, status: CallStatus) -> CoreResult<Call> {
        self.end_call_told(call, status, None).await
    }

    /// End a live call; `stop_call` goes to `to`, or to everyone in it when `None`.
    async fn end_call_told(
        &self,
        mut call: Call,
        status: CallStatus,
        to: Option<Vec<Uin>>,
    ) -> CoreResult<Call> {
        // Whoever removes it from the live calls ends it; a racing stop (on any node) finds
        // nothing.
        if self.calls.remove(call.call_id).await?.is_none() {
            return Err(CoreError::CallNotFound);
        }
        let now = now_us();
        call.status = status;
        call.stopped_at_us = Some(now);
        self.storage.update_call(call.clone()).await?;
        self.cancel_call_push(&call).await;
        let to = to.unwrap_or_else(|| Self::everyone(&call).into_iter().collect());
        self.push_call(&call, "stop_call", None, to);
        let duration_s = call
            .accepted_at_us
            .map_or(0, |a| (now - a).max(0) / 1_000_000);
        let record = format!(
            "{{\"call_id\":\"{}\",\"media_type\":{},\"call_status\":{},\"duration\":{}}}",
            call.call_id, call.media_type, status as u8, duration_s
        );
        if let Some(conv) = self.storage.conversation(call.group_id).await? {
            let caller = crate::model::Principal {
                uin: call.caller,
                login: self
                    .storage
                    .account_by_uin(call.caller)
                    .await?
                    .map(|a| a.login)
                    .unwrap_or_default(),
                admin: false,
            };
            let new = NewMessage {
                group_id: call.group_id,
                sender: call.caller,
                sender_login: caller.login.clone(),
                session_id: None,
                kind: CALL_MESSAGE,
                text: Some(record),
                attachments: None,
                body: None,
                nonce: Some(format!("call-{}", call.call_id)),
                version: 0,
                created_at_us: now,
                files: Vec::new(),
                push_to: Vec::new(),
            };
            if let Err(e) = self.store_message(&conv, &caller, new, &[]).await {
                tracing::warn!(error = %e, call_id = call.call_id, "call record not stored");
            }
        }
        Ok(call)
    }

    /// End the call participation of members who left or were removed from `group`: a
    /// live call they placed ends (finished); otherwise they leave its callees and hear
    /// `stop_call`, and a call left with no callee ends. From then on they cannot answer
    /// it or relay SDP/ICE in it: participation ends with membership.
    pub(super) async fn end_call_participation(&self, group: GroupId, gone: &BTreeSet<Uin>) {
        if gone.is_empty() {
            return;
        }
        // A group has at most one live call.
        let affected = match self.calls.of_group(group).await {
            Ok(call) => call.filter(|c| gone.iter().any(|u| c.involves(*u))),
            Err(e) => {
                tracing::warn!(error = %e, %group, "reading the call of a group members left");
                None
            }
        };
        let Some(call) = affected else {
            return;
        };
        let call_id = call.call_id;
        let result = if gone.contains(&call.caller) {
            self.end_call(call, CallStatus::Finished).await.map(|_| ())
        } else {
            self.drop_callees(call, gone).await
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, call_id, "ending a departed member's call");
        }
    }

    /// Take departed callees out of a live call: they hear `stop_call`, and a call left
    /// with no callee, or only callees who declined, ends.
    async fn drop_callees(&self, call: Call, gone: &BTreeSet<Uin>) -> CoreResult<()> {
        let left: Vec<Uin> = call.callees.intersection(gone).copied().collect();
        let leave = |c: &mut Call| {
            c.callees.retain(|u| !gone.contains(u));
            c.accepted.retain(|u| !gone.contains(u));
            c.declined.retain(|u| !gone.contains(u));
        };
        let Some(call) = self.calls.update(call.call_id, &leave).await? else {
            return Ok(());
        };
        let only_declined = !call.callees.is_empty() && call.declined == call.callees;
        if call.callees.is_empty() || only_declined {
            // The departed still hear it end: they were in it.
            let mut told = call;
            told.callees.extend(left);
            return match self.end_call(told, CallStatus::Finished).await {
                Ok(_) | Err(CoreError::CallNotFound) => Ok(()),
                Err(e) => Err(e),
            };
        }
        let mut ended = call.clone();
        ended.status = CallStatus::Finished;
        ended.stopped_at_us = Some(now_us());
        self.push_call(&ended, "stop_call", None, left);
        self.storage.update_call(call).await.map_err(Into::into)
    }

    /// A call's state, for any member of its group.
    pub async fn call_status(
        &self,
        caller: &Principal,
        group: GroupId,
        call_id: u64,
    ) -> CoreResult<Call> {
        self.member_group(caller, group).await?;
        self.storage
            .call(call_id)
            .await?
            .filter(|c| c.group_id == group)
            .ok_or(CoreError::CallNotFound)
    }

    /// Relay SDP or ICE (`kind`) from the caller to one other participant of a live call.
    pub async fn relay_call_signal(
        &self,
        caller: &Principal,
        group: GroupId,
        call_id: u64,
        receiver: Uin,
        kind: &str,
        payload: Json,
    ) -> CoreResult<()> {
        let call = self.live_call(caller, group, call_id).await?;
        if receiver == caller.uin || !call.involves(receiver) {
            return Err(CoreError::UserNotFound);
        }
        self.push_chat(
            [receiver],
            kind,
            call_id.to_string(),
            EventBody::Signal(payload),
        );
        Ok(())
    }

    /// Relay a client `event` (typing, call events) to one member, or to every other
    /// member of the group when `receiver` is `None`.
    /// `kind` is the event's type: typing (8, 9) is also noted, so that it ends by itself
    /// (`typing.rs`).
    pub async fn relay_group_event(
        self: &Arc<Self>,
        caller: &Principal,
        group: GroupId,
        receiver: Option<Uin>,
        kind: u8,
        payload: Json,
    ) -> CoreResult<usize> {
        let conv = self.member_group(caller, group).await?;
        let targets: Vec<Uin> = match receiver {
            Some(r) if conv.occupants.contains(&r) && r != caller.uin => vec![r],
            Some(_) => return Err(CoreError::UserNotFound),
            None => conv
                .occupants
                .iter()
                .copied()
                .filter(|u| *u != caller.uin)
                .collect(),
        };
        let told = self.push_chat(
            targets,
            "event",
            group.to_string(),
            EventBody::Signal(payload),
        );
        self.note_typing(caller.uin, group, receiver, kind);
        Ok(told)
    }
}
