//! What the hub role of the edge-to-hub sync stores (the "chathost" API, served by
//! `confer-door-chathost`): boxes and their keys, rosters, which edge messages and
//! attachments are stored already, the conversations of each box and how far they were
//! handed to it, pending hub→edge batches, logs and the settings queue. The edge role
//! keeps its own small state in the same tables ([`HubLinkKind`] and the sync settings).
//!
//! These are plain values: rosters and log items stay the client's own JSON text
//! ([`Json`]), which the door validated; the core reads only the fields it needs, given
//! to it by the door as [`HubCourse`] and [`HubPerson`].

use crate::event::Json;
use crate::ids::GroupId;

/// A registered edge box.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubBox {
    /// The box id (its MAC address with dashes, as edges send it).
    pub boxid: String,
    pub created_at_us: i64,
    /// Unix seconds of its last sync (`messageStatus`), 0 if never.
    pub last_sync: i64,
    /// The latest roster it posted, as posted, and when.
    pub roster: Option<Json>,
    pub roster_at_us: Option<i64>,
    /// Which key the last roster came with (a hint, never the secret itself).
    pub roster_key: Option<String>,
    /// The address the last roster came from.
    pub siteip: Option<String>,
    /// How many keys it holds.
    pub keys: usize,
    /// How many hub→edge items wait in its batch.
    pub pending: usize,
}

/// Which map of stored keys a [`HubStore::hub_link`] lookup uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HubLinkKind {
    /// Hub: an edge message `<boxid>-<id>` → the message id it was stored as.
    EdgeMessage,
    /// Hub: an edge attachment `<boxid>-<id>` → its attachment item id.
    EdgeAttachment,
    /// Hub: a course `<boxid>|<course id>` → its class chat's group id.
    Course,
    /// Edge: a hub message id → the local message id it was stored as.
    FromHub,
    /// Edge: a local attachment item id (decimal) the hub confirmed it holds → 1.
    SentAttachment,
    /// Edge: a mark (`pushed`: the newest local message id the hub has stored, with
    /// every older one); a mark is replaced, not kept, when set again.
    EdgeMark,
}

impl HubLinkKind {
    pub fn as_str(self) -> &'static str {
        match self {
            HubLinkKind::EdgeMessage => "edge-message",
            HubLinkKind::EdgeAttachment => "edge-attachment",
            HubLinkKind::Course => "course",
            HubLinkKind::FromHub => "from-hub",
            HubLinkKind::SentAttachment => "sent-attachment",
            HubLinkKind::EdgeMark => "edge-mark",
        }
    }
}

/// A person of a roster, as far as the hub needs one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HubPerson {
    pub username: String,
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
}

impl HubPerson {
    /// "First Last", or `None` when neither is given.
    pub fn display_name(&self) -> Option<String> {
        let name = [self.first_name.as_deref(), self.last_name.as_deref()]
            .into_iter()
            .flatten()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        (!name.is_empty()).then_some(name)
    }
}

/// A course of a roster.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HubCourse {
    /// The course id as the edge sent it (a number or a string), as text.
    pub id: String,
    pub name: String,
    pub teachers: Vec<HubPerson>,
    pub students: Vec<HubPerson>,
}

/// An edge→hub message, as far as the hub needs it.
#[derive(Clone, Debug, Default)]
pub struct HubEdgeMessage {
    /// The edge's message id (its key is `<boxid>-<id>`).
    pub id: String,
    pub sender_username: String,
    pub recipient_email: String,
    /// The text to store (for an attachment message: its caption, if any).
    pub text: Option<String>,
    /// The attachment the message carries: the edge's attachment id and its kind
    /// (`photo`, `video`, `audio`, `document`).
    pub attachment: Option<(String, String)>,
    /// The Chat API `attachments` text naming the stored file, made by the door once the
    /// attachment's item id is known ([`crate::Core::hub_attachment`]).
    pub attachments_text: Option<String>,
}

/// Edge: a message the hub sent, to store locally.
#[derive(Clone, Debug, Default)]
pub struct HubIncoming {
    /// The hub's id of the item (stored once per id).
    pub hub_id: String,
    pub sender: HubPerson,
    /// The local login it is for.
    pub recipient: String,
    pub text: Option<String>,
    pub attachments: Option<String>,
    /// The Chat API message type.
    pub kind: u32,
    /// Downloaded files it carries (held by the admin until the message claims them).
    pub item_ids: Vec<u64>,
}

/// What became of one edge→hub message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HubPosted {
    Stored,
    /// Stored by an earlier post (same `<boxid>-<id>`).
    Duplicate,
    /// The recipient is no teacher the hub knows: skipped, neither stored nor failed.
    Skipped,
    /// Its attachment was not uploaded: the box retries it.
    MissingAttachment,
}

/// A conversation of a box, and the last seq handed to the box from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HubGroup {
    pub group_id: GroupId,
    pub handed_seq: u64,
}

/// One item of a hub→edge batch: a message and the student it goes to (login without
/// the `.<boxid>` suffix).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubBatchItem {
    pub message_id: u64,
    pub recipient: String,
}

/// A stored log item of a box.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubLog {
    pub id: u64,
    pub kind: String,
    pub item: Json,
    pub at_us: i64,
}

/// A setting queued for a box (hub), or one received from the hub (edge, `boxid` empty).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubSetting {
    pub id: u64,
    pub boxid: String,
    pub key: String,
    pub value: String,
    /// Unix seconds it was queued.
    pub timestamp: i64,
}
