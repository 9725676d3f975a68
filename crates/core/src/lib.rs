//! # confer-core: the domain every door shares
//!
//! The core owns accounts, sessions, conversations (conferences now, chat groups next),
//! stored messages and the event model. Each protocol door is a thin adapter that decodes
//! its wire format, calls a method on [`Core`], and renders the result its own way.
//!
//! **Architecture invariant:** this crate never imports a door, a web framework, SQL or a
//! JSON library. Client-supplied JSON travels through it as opaque, door-validated
//! [`Json`] text; domain payloads ([`EventBody`]) are rendered by each door.
//!
//! ## Layout
//! - [`ids`]: typed identifiers (`Uin`, `GroupId`, `SessionId`).
//! - [`model`]: accounts, principals, conversations, messages.
//! - [`references`]: how a message names uploaded files, and an upload's URL.
//! - [`event`]: events, subscriptions and their wildcard matching, the per-door render cache.
//! - [`hub`]: what the edge-to-hub sync stores (boxes, keys, rosters, batches, logs,
//!   settings), for both roles.
//! - [`store`]: one storage trait per aggregate; backends live in their own crates.
//! - [`bus`]: the event bus and session registry traits, deliveries and mailboxes.
//! - [`calls`]: where live calls and their ringing timers are kept (one process, or a cluster).
//! - [`rate`]: the token bucket every door rate-limits a session's commands with.
//! - [`auth`]: Argon2 password hashes and random session tokens.
//! - [`logsink`]: where `session log` records go (GELF in the binary).
//! - [`media`]: the seam to the server's own WebRTC endpoint (the SFU) a door opens media through.
//! - [`turn`]: time-limited TURN credentials (the TURN REST API form coturn checks) and
//!   the ICE servers every door hands its callers.
//! - [`metrics`]: counters and histograms rendered in Prometheus text format.
//! - [`service`]: [`Core`], the operations the doors call, each checking its caller.
//! - [`error`]: [`CoreError`], the one error every door maps to its own codes.

pub mod auth;
pub mod bus;
pub mod calls;
pub mod error;
pub mod event;
pub mod hasher;
pub mod hub;
pub mod ids;
pub mod login_limits;
pub mod logsink;
pub mod media;
pub mod metrics;
pub mod model;
pub mod online;
pub mod rate;
pub mod references;
pub mod service;
pub mod store;
pub mod turn;

pub use error::{CoreError, CoreResult};
pub use event::{Event, EventBody, Grant, Json, Subscription};
pub use ids::{GroupId, SessionId, Uin};
pub use model::{Account, Conversation, ConversationKind, Message, Principal};
pub use service::{Core, CoreSettings};
