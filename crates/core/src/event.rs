//! Events, subscriptions and wildcard matching.
//!
//! An event has a `class` and optional `subclass`, `type` and `obj_id` (absent means the
//! sender left it as `"*"`). A subscription field that is absent matches anything; a
//! present one matches only the same value. Event bodies are either client JSON, carried
//! opaquely, or a domain payload that each door renders in its own form.

use std::any::Any;
use std::sync::{Arc, OnceLock};

use crate::bus::RoomMember;
use crate::ids::{GroupId, SessionId, Uin};
use crate::model::{Call, Conversation, Message};

/// JSON text validated by the door that received it. The core never parses it; doors
/// that render it trust it to be well-formed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Json(Arc<str>);

impl Json {
    /// Wrap text that the caller has already checked to be valid JSON.
    pub fn from_validated(text: impl Into<Arc<str>>) -> Self {
        Json(text.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What an event carries.
#[derive(Clone, Debug)]
pub enum EventBody {
    /// No body.
    Empty,
    /// A body given by a client (an object, checked by the door that received it).
    Json(Json),
    /// A message was stored (`media/conf/msglog_new_msg`).
    Message(Arc<Message>),
    /// A party joined or left a conference, or its state changed (`started_member`,
    /// `stopped_member`, `updated_member`, `media_ended`): the party as it now is.
    Member(Box<RoomMember>),
    /// A conference was destroyed.
    Destroyed { code: u64, reason: String },
    /// A chat group as it now is (`group`, `update_group`, `delete_group`, `pin_group` …).
    Group(Arc<Conversation>),
    /// A user's presence changed: came online or went offline, or chose another status.
    UserStatus {
        uin: Uin,
        /// Whether it is shown online (`online_status` other than 2).
        online: bool,
        /// The status shown to this event's recipients (1 online, 2 offline, 3 idle,
        /// 4 invisible (to the user's own sockets only), 5 away, 6 busy).
        online_status: u8,
        message_status: String,
        last_seen_at_us: Option<i64>,
    },
    /// A call and what just happened to it (`start_call`, `answer_call`, `stop_call`).
    Call {
        call: Arc<Call>,
        /// Who answered, and how (for `answer_call`).
        answer: Option<(Uin, u8)>,
    },
    /// Client signalling relayed as sent (typing and call events, SDP, ICE). The door
    /// that received it has put the authenticated sender in it.
    Signal(Json),
    /// A command carried data fields it does not know (`unrecognized_fields`).
    UnrecognizedFields {
        class: String,
        subclass: String,
        cmd: String,
        fields: Vec<String>,
    },
}

/// Which door rendered a cached copy. One slot per door that renders events.
#[derive(Clone, Copy, Debug)]
pub enum DoorSlot {
    ExternalApi = 0,
    ChatApi = 1,
    Conference = 2,
}

const DOOR_SLOTS: usize = 3;

/// An event on the bus. Shared as `Arc<Event>` by every recipient; each door renders it at
/// most once through [`Event::rendered`], whatever the number of recipients.
#[derive(Debug)]
pub struct Event {
    pub class: String,
    pub subclass: Option<String>,
    pub kind: Option<String>,
    pub obj_id: Option<String>,
    pub body: EventBody,
    /// Each door's rendering, of the door's own type (text, or its transport's shared
    /// frame): a recipient then costs a clone of it.
    cache: [OnceLock<Box<dyn Any + Send + Sync>>; DOOR_SLOTS],
}

impl Event {
    pub fn new(
        class: impl Into<String>,
        subclass: Option<String>,
        kind: Option<String>,
        obj_id: Option<String>,
        body: EventBody,
    ) -> Self {
        Event {
            class: class.into(),
            subclass,
            kind,
            obj_id,
            body,
            cache: Default::default(),
        }
    }

    /// The door's rendering of this event, computed by `render` on first use only. A
    /// door keeps one type in its slot; `None` only if a slot were asked for another.
    pub fn rendered<T>(&self, slot: DoorSlot, render: impl FnOnce(&Event) -> T) -> Option<T>
    where
        T: Any + Clone + Send + Sync,
    {
        self.cache[slot as usize]
            .get_or_init(|| Box::new(render(self)))
            .downcast_ref::<T>()
            .cloned()
    }
}

/// A session's subscription. `None` fields are wildcards.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscription {
    pub class: String,
    pub subclass: Option<String>,
    pub kind: Option<String>,
    pub obj_id: Option<String>,
    /// Merged into the body of every event delivered through this subscription, when both
    /// are objects.
    pub body: Option<Json>,
}

/// The right a subscription rests on, beyond being logged in: when the right ends, the
/// core revokes it through [`crate::bus::EventBus::revoke`] and every subscription that
/// rested on it goes, whichever door or node holds it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Grant {
    /// `uin` occupies conversation `group` (`media/conf/*/<group>`).
    Member { group: GroupId, uin: Uin },
    /// The session with this id is live, and is the subscriber's user's
    /// (`core/session_event/<id>`): it ends with that session, not with its name.
    Session(SessionId),
}

impl Subscription {
    /// A subscription on `class`/`subclass`/`obj_id`, any type.
    pub fn to_object(class: &str, subclass: &str, obj_id: &str) -> Self {
        Subscription {
            class: class.to_string(),
            subclass: Some(subclass.to_string()),
            kind: None,
            obj_id: Some(obj_id.to_string()),
            body: None,
        }
    }

    pub fn matches(&self, event: &Event) -> bool {
        fn field(want: &Option<String>, have: &Option<String>) -> bool {
            match want {
                None => true,
                Some(w) => have.as_deref() == Some(w.as_str()),
            }
        }
        self.class == event.class
            && field(&self.subclass, &event.subclass)
            && field(&self.kind, &event.kind)
            && field(&self.obj_id, &event.obj_id)
    }

    /// Whether two subscriptions name the same events (everything but `body`), which is
    /// how `unsubscribe` finds the one to remove.
    pub fn same_pattern(&self, other: &Subscription) -> bool {
        self.class == other.class
            && self.subclass == other.subclass
            && self.kind == other.kind
            && self.obj_id == other.obj_id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(class: &str, sub: Option<&str>, kind: Option<&str>, obj: Option<&str>) -> Event {
        Event::new(
            class,
            sub.map(str::to_string),
            kind.map(str::to_string),
            obj.map(str::to_string),
            EventBody::Empty,
        )
    }

    fn sub(class: &str, s: Option<&str>, kind: Option<&str>, obj: Option<&str>) -> Subscription {
        Subscription {
            class: class.into(),
            subclass: s.map(str::to_string),
            kind: kind.map(str::to_string),
            obj_id: obj.map(str::to_string),
            body: None,
        }
    }

    #[test]
    fn wildcards_match_anything_including_absent_fields() {
        let s = sub("app", None, None, None);
        assert!(s.matches(&ev("app", Some("x"), Some("t"), Some("o"))));
        assert!(s.matches(&ev("app", None, None, None)));
        assert!(!s.matches(&ev("other", None, None, None)));
    }

    #[test]
    fn a_concrete_field_needs_the_same_value_in_the_event() {
        let s = sub("app", Some("x"), None, Some("o1"));
        assert!(s.matches(&ev("app", Some("x"), Some("t"), Some("o1"))));
        assert!(!s.matches(&ev("app", Some("x"), Some("t"), Some("o2"))));
        // An event sent with "*" (absent) reaches only wildcard subscribers.
        assert!(!s.matches(&ev("app", None, Some("t"), Some("o1"))));
    }

    #[test]
    fn render_cache_renders_once_per_door() {
        let e = ev("app", None, None, None);
        let mut calls = 0;
        let a = e.rendered(DoorSlot::ExternalApi, |_| {
            calls += 1;
            Arc::<str>::from("x")
        });
        let b = e.rendered(DoorSlot::ExternalApi, |_| {
            calls += 1;
            Arc::<str>::from("y")
        });
        assert_eq!(
            (a.as_deref(), b.as_deref(), calls),
            (Some("x"), Some("x"), 1)
        );
        // Another door's slot is its own.
        assert_eq!(e.rendered(DoorSlot::ChatApi, |_| 7u8), Some(7));
    }
}
