//! Subscriptions and fired events, with the subscription policy.
//!
//! Classes `core` and `media` are the server's own: only the admin may fire them, and a
//! user may subscribe only to its own user events, its own sessions' events and the
//! conferences it occupies. Every other class is an application class, open to every
//! logged-in session for both firing and subscribing.
//!
//! **A subscription that needs a right beyond the login rests on a [`Grant`]** (occupying
//! a conversation, or the observed session being live and the caller's): the core's one
//! path that ends such a right ([`Core::revoke_grant`], from `remove_occupant`,
//! destruction and `close_session`) revokes it through the `EventBus`, so it ends on
//! every door, and on every node once the bus spans them.

use crate::error::{CoreError, CoreResult};
use crate::event::{Event, Grant, Subscription};
use crate::ids::SessionId;
use crate::model::Principal;

use super::Core;

/// Classes whose events only the server (or the admin) emits.
const RESERVED_CLASSES: [&str; 2] = ["core", "media"];

impl Core {
    /// Subscribe a session. A subscription the caller may hold only while it has some
    /// right (occupying the conference, owning the observed session) rests on that
    /// [`Grant`], and goes when the right ends (see [`Core::revoke_grant`]). At most
    /// `max_subscriptions_per_session` patterns per session.
    pub async fn subscribe(
        &self,
        caller: &Principal,
        session: &SessionId,
        subscription: Subscription,
    ) -> CoreResult<()> {
        let grant = self.authorize_subscription(caller, &subscription).await?;
        let max = self.settings.max_subscriptions_per_session;
        // The session's own two (its user and session events) come on top.
        let held = max.saturating_add(super::sessions::OWN_SUBSCRIPTIONS);
        if !self
            .bus
            .subscribe(session, subscription.clone(), grant.clone(), held)
        {
            return Err(CoreError::InvalidOperation(format!(
                "too many subscriptions: at most {max} per session"
            )));
        }
        // The right may have ended between the check and the subscription, its
        // revocation running before there was anything to revoke: look again now that
        // the subscription is in place (a revocation from now on finds it).
        if grant.is_some() {
            let still = self.authorize_subscription(caller, &subscription).await;
            if !matches!(&still, Ok(g) if *g == grant) {
                self.bus.unsubscribe(session, &subscription);
                return Err(CoreError::Unauthorized);
            }
        }
        Ok(())
    }

    /// A right ended: every subscription resting on it, of every session, goes.
    pub(super) fn revoke_grant(&self, grant: Grant) {
        let n = self.bus.revoke(&grant);
        if n > 0 {
            tracing::debug!(
                ?grant,
                subscriptions = n,
                "right ended: subscriptions revoked"
            );
        }
    }

    /// Remove the subscription with the same class, subclass, type and obj_id.
    pub fn unsubscribe(&self, session: &SessionId, pattern: &Subscription) -> CoreResult<()> {
        if self.bus.unsubscribe(session, pattern) {
            Ok(())
        } else {
            Err(CoreError::InvalidValue("no such subscription".into()))
        }
    }

    pub fn subscriptions(&self, session: &SessionId) -> Vec<Subscription> {
        self.bus.subscriptions(session)
    }

    /// Fire an event on behalf of a client.
    pub fn fire_event(&self, caller: &Principal, event: Event) -> CoreResult<usize> {
        if !caller.admin && RESERVED_CLASSES.contains(&event.class.as_str()) {
            return Err(CoreError::Unauthorized);
        }
        Ok(self.publish(event))
    }

    /// Whether the caller may hold this subscription, and the right it then rests on
    /// (`None`: the login alone, or the admin's). `Unauthorized` if it may not.
    async fn authorize_subscription(
        &self,
        caller: &Principal,
        sub: &Subscription,
    ) -> CoreResult<Option<Grant>> {
        if caller.admin || !RESERVED_CLASSES.contains(&sub.class.as_str()) {
            return Ok(None);
        }
        let grant = match (
            sub.class.as_str(),
            sub.subclass.as_deref(),
            sub.obj_id.as_deref(),
        ) {
            ("core", Some("user_event"), Some(user)) if user == caller.login => Ok(None),
            ("core", Some("session_event"), Some(session)) => {
                let session = SessionId::new(session);
                match self.registry.session(&session) {
                    Some(s) if s.user == caller.login => Ok(Some(Grant::Session(session))),
                    _ => Err(CoreError::Unauthorized),
                }
            }
            ("media", Some("conf"), Some(conf_id)) => {
                match self.resolve_conversation(conf_id).await {
                    Ok(conv) if conv.occupants.contains(&caller.uin) => Ok(Some(Grant::Member {
                        group: conv.group_id,
                        uin: caller.uin,
                    })),
                    _ => Err(CoreError::Unauthorized),
                }
            }
            _ => Err(CoreError::Unauthorized),
        };
        grant
    }
}
