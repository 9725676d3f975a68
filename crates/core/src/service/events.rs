//! Subscriptions and fired events, with the subscription policy.
//!
//! Classes `core` and `media` are the server's own: only the admin may fire them, and a
//! user may subscribe only to its own user events, its own sessions' events and the
//! conferences it occupies. Every other class is an application class, open to every
//! logged-in session for both firing and subscribing.

use crate::error::{CoreError, CoreResult};
use crate::event::{Event, Subscription};
use crate::ids::SessionId;
use crate::model::Principal;

use super::Core;

/// Classes whose events only the server (or the admin) emits.
const RESERVED_CLASSES: [&str; 2] = ["core", "media"];

impl Core {
    pub async fn subscribe(
        &self,
        caller: &Principal,
        session: &SessionId,
        subscription: Subscription,
    ) -> CoreResult<()> {
        self.authorize_subscription(caller, &subscription).await?;
        self.bus.subscribe(session, subscription);
        Ok(())
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

    async fn authorize_subscription(
        &self,
        caller: &Principal,
        sub: &Subscription,
    ) -> CoreResult<()> {
        if caller.admin || !RESERVED_CLASSES.contains(&sub.class.as_str()) {
            return Ok(());
        }
        let allowed = match (
            sub.class.as_str(),
            sub.subclass.as_deref(),
            sub.obj_id.as_deref(),
        ) {
            ("core", Some("user_event"), Some(user)) => user == caller.login,
            ("core", Some("session_event"), Some(session)) => self
                .registry
                .session(&SessionId::new(session))
                .is_some_and(|s| s.user == caller.login),
            ("media", Some("conf"), Some(conf_id)) => {
                match self.resolve_conversation(conf_id).await {
                    Ok(conv) => conv.occupants.contains(&caller.uin),
                    Err(_) => false,
                }
            }
            _ => false,
        };
        if allowed {
            Ok(())
        } else {
            Err(CoreError::Unauthorized)
        }
    }
}
