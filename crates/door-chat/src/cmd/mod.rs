//! The client events, by area. Each handler parses its own arguments, calls the core and
//! returns the ack's fields; [`handle`] runs one event by name (found in `EVENTS`), [`answer`] turns the
//! outcome into `{result, …}`.
//!
//! - `tokens`: register/unregister_profile_token.
//! - `groups`: create/update/leave/check/list_group, delete_conversation.
//! - `prefs`: block/unblock_user, mute/unmute_group, pin/unpin_group.
//! - `messages`: create/update/delete/list_message, received_message, seen_message.
//! - `calls`: create/answer/stop_call, call_status, ice_sdp, ice_candidate, event.
//! - `presence`: user_status (the caller's chosen online status and message_status).
//! - `profiles`: update_profile, get_profile.

mod calls;
mod groups;
mod messages;
mod prefs;
mod presence;
mod profiles;
mod tokens;

use std::sync::Arc;

use confer_core::bus::SessionInfo;
use confer_core::service::Receipt;
use confer_core::{Core, Principal, Uin};
use serde_json::Value;

use crate::args::Args;
use crate::codes::{Failure, FORBIDDEN, INVALID_PARAMETERS, OK, RATE_LIMITED, UNKNOWN_EVENT};
use crate::session::ChatSession;
use crate::ChatApi;

/// The door name in metrics.
pub const DOOR: &str = "chat_api";

/// What a handler runs with.
pub struct Ctx<'a> {
    pub core: &'a Arc<Core>,
    pub who: &'a Principal,
    pub session: &'a SessionInfo,
    /// The ICE servers calls are given (`ice_servers` in call answers).
    pub turn: &'a confer_core::turn::TurnSettings,
}

/// The ack's fields besides `result`, and the result code (0 unless said otherwise).
pub struct Reply {
    pub code: u64,
    /// Each field's name (a literal of ours, needing no escapes) and value.
    fields: Vec<(&'static str, Field)>,
}

enum Field {
    Value(Value),
    /// JSON text already written (see [`render::message_json`](crate::render::message_json)).
    Json(String),
}

impl Reply {
    pub fn ok() -> Reply {
        Reply {
            code: OK,
            fields: Vec::new(),
        }
    }

    pub fn with(mut self, key: &'static str, value: Value) -> Reply {
        self.fields.push((key, Field::Value(value)));
        self
    }

    /// `unknown_fields`: the argument fields the command did not read, when there are any
    /// (it ran without them).
    pub fn with_unknown_fields(self, names: Vec<String>) -> Reply {
        if names.is_empty() {
            return self;
        }
        self.with(
            "unknown_fields",
            Value::Array(names.into_iter().map(Value::String).collect()),
        )
    }

    /// A field whose value is JSON text already.
    pub fn with_json(mut self, key: &'static str, json: String) -> Reply {
        self.fields.push((key, Field::Json(json)));
        self
    }
}

pub type Outcome = Result<Reply, Failure>;

/// A `uin` the client sent about itself must be its own.
pub fn check_self(args: &mut Args, ctx: &Ctx<'_>, names: &[&str]) -> Result<(), Failure> {
    match args.opt_u64(names)? {
        Some(uin) if Uin(uin) != ctx.who.uin => {
            Err(Failure::new(FORBIDDEN, format!("{} is not you", names[0])))
        }
        _ => Ok(()),
    }
}

/// Display fields messages and calls carry along, with their documented misspellings.
/// On messages the server fills them itself (a client's are read and ignored); calls
/// still carry what the caller sent.
pub const DISPLAY_FIELDS: &[(&str, &str)] = &[
    ("group_name", "group_name"),
    ("group_avatar", "group_avatar"),
    ("sender_name", "sender_name"),
    ("sender_avatar", "send_avatar"),
];

/// A client event, once its name is known.
#[derive(Clone, Copy)]
enum Ev {
    RegisterProfileToken,
    UnregisterProfileToken,
    CreateGroup,
    UpdateGroup,
    LeaveGroup,
    DeleteConversation,
    ListGroup,
    BlockUser,
    UnblockUser,
    CheckGroup,
    MuteGroup,
    UnmuteGroup,
    PinGroup,
    UnpinGroup,
    CreateMessage,
    UpdateMessage,
    DeleteMessage,
    ListMessage,
    SeenMessage,
    ReceivedMessage,
    CreateCall,
    AnswerCall,
    StopCall,
    CallStatus,
    IceSdp,
    IceCandidate,
    Event,
    UserStatus,
    UpdateProfile,
    GetProfile,
}

/// Every client event the door answers, by name. [`dispatch`] finds events here and
/// nowhere else, and its `match` on [`Ev`] is exhaustive, so this table is the door's list
/// of events (see [`event_names`]; docs/asyncapi.yaml is checked against it).
const EVENTS: &[(&str, Ev)] = &[
    ("register_profile_token", Ev::RegisterProfileToken),
    ("unregister_profile_token", Ev::UnregisterProfileToken),
    ("create_group", Ev::CreateGroup),
    ("update_group", Ev::UpdateGroup),
    ("leave_group", Ev::LeaveGroup),
    ("delete_conversation", Ev::DeleteConversation),
    ("list_group", Ev::ListGroup),
    ("block_user", Ev::BlockUser),
    ("unblock_user", Ev::UnblockUser),
    ("check_group", Ev::CheckGroup),
    ("mute_group", Ev::MuteGroup),
    ("unmute_group", Ev::UnmuteGroup),
    ("pin_group", Ev::PinGroup),
    ("unpin_group", Ev::UnpinGroup),
    ("create_message", Ev::CreateMessage),
    ("update_message", Ev::UpdateMessage),
    ("delete_message", Ev::DeleteMessage),
    ("list_message", Ev::ListMessage),
    ("seen_message", Ev::SeenMessage),
    ("received_message", Ev::ReceivedMessage),
    ("create_call", Ev::CreateCall),
    ("answer_call", Ev::AnswerCall),
    ("stop_call", Ev::StopCall),
    ("call_status", Ev::CallStatus),
    ("ice_sdp", Ev::IceSdp),
    ("ice_candidate", Ev::IceCandidate),
    ("event", Ev::Event),
    ("user_status", Ev::UserStatus),
    ("update_profile", Ev::UpdateProfile),
    ("get_profile", Ev::GetProfile),
];

/// The name of every client event the door answers, in table order.
pub fn event_names() -> impl Iterator<Item = &'static str> {
    EVENTS.iter().map(|(name, _)| *name)
}

fn find(name: &str) -> Option<Ev> {
    EVENTS.iter().find(|(n, _)| *n == name).map(|(_, ev)| *ev)
}

async fn dispatch(name: &str, ctx: &Ctx<'_>, args: Args) -> Outcome {
    let Some(ev) = find(name) else {
        return Err(Failure::new(
            UNKNOWN_EVENT,
            format!("unknown event: {name}"),
        ));
    };
    match ev {
        Ev::RegisterProfileToken => tokens::register(ctx, args).await,
        Ev::UnregisterProfileToken => tokens::unregister(ctx, args).await,
        Ev::CreateGroup => groups::create(ctx, args).await,
        Ev::UpdateGroup => groups::update(ctx, args).await,
        Ev::LeaveGroup => groups::leave(ctx, args).await,
        Ev::DeleteConversation => groups::delete_conversation(ctx, args).await,
        Ev::ListGroup => groups::list(ctx, args).await,
        Ev::BlockUser => prefs::block(ctx, args, true).await,
        Ev::UnblockUser => prefs::block(ctx, args, false).await,
        Ev::CheckGroup => groups::check(ctx, args).await,
        Ev::MuteGroup => prefs::mute(ctx, args, true).await,
        Ev::UnmuteGroup => prefs::mute(ctx, args, false).await,
        Ev::PinGroup => prefs::pin(ctx, args, true).await,
        Ev::UnpinGroup => prefs::pin(ctx, args, false).await,
        Ev::CreateMessage => messages::create(ctx, args).await,
        Ev::UpdateMessage => messages::update(ctx, args).await,
        Ev::DeleteMessage => messages::delete(ctx, args).await,
        Ev::ListMessage => messages::list(ctx, args).await,
        Ev::SeenMessage => messages::mark(ctx, args, Receipt::Seen).await,
        Ev::ReceivedMessage => messages::mark(ctx, args, Receipt::Received).await,
        Ev::CreateCall => calls::create(ctx, args).await,
        Ev::AnswerCall => calls::answer(ctx, args).await,
        Ev::StopCall => calls::stop(ctx, args).await,
        Ev::CallStatus => calls::status(ctx, args).await,
        Ev::IceSdp => calls::signal(ctx, args, "ice_sdp").await,
        Ev::IceCandidate => calls::signal(ctx, args, "ice_candidate").await,
        Ev::Event => calls::event(ctx, args).await,
        Ev::UserStatus => presence::set(ctx, args).await,
        Ev::UpdateProfile => profiles::update(ctx, args).await,
        Ev::GetProfile => profiles::get(ctx, args).await,
    }
}

/// The ack's body for an outcome: `{result, …}`, with `message` on failure.
pub fn answer(outcome: Outcome) -> String {
    match outcome {
        Ok(reply) => {
            let mut body = format!(r#"{{"result":{}"#, reply.code);
            for (key, field) in reply.fields {
                body.push_str(",\"");
                body.push_str(key);
                body.push_str("\":");
                match field {
                    Field::Value(v) => body.push_str(&v.to_string()),
                    Field::Json(text) => body.push_str(&text),
                }
            }
            body.push('}');
            body
        }
        Err(f) => format!(
            r#"{{"result":{},"message":{}}}"#,
            f.code,
            Value::from(f.message)
        ),
    }
}

/// Run one client event of a logged-in socket (`allowed`: within its rate), count it,
/// and give the ack's body.
pub async fn handle(
    door: &ChatApi,
    session: &ChatSession,
    name: &str,
    data: Option<Value>,
    allowed: bool,
) -> String {
    let outcome = if !allowed {
        Err(Failure::new(RATE_LIMITED, "too many requests"))
    } else {
        match data.map(Args::tracked) {
            None => Err(Failure::new(INVALID_PARAMETERS, "arguments missing")),
            Some(Err(f)) => Err(f),
            Some(Ok((args, unread))) => {
                let ctx = Ctx {
                    core: &door.core,
                    who: &session.who,
                    session: &session.info,
                    turn: &door.settings.turn,
                };
                dispatch(name, &ctx, args)
                    .await
                    .map(|reply| reply.with_unknown_fields(unread.names()))
            }
        }
    };
    let label = if find(name).is_some() {
        name
    } else {
        "unknown"
    };
    door.core
        .metrics()
        .command(DOOR, label, matches!(&outcome, Ok(r) if r.code == OK));
    answer(outcome)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn an_answer_is_result_then_its_fields_or_the_failure_message() {
        let ok = answer(Ok(Reply::ok()
            .with("uin", Value::from("7"))
            .with_json("message", r#"{"a":[1]}"#.into())));
        assert_eq!(ok, r#"{"result":0,"uin":"7","message":{"a":[1]}}"#);
        let failed = answer(Err(Failure::new(INVALID_PARAMETERS, "no \"group_id\"")));
        assert_eq!(
            serde_json::from_str::<Value>(&failed).unwrap(),
            json!({"result": 1, "message": "no \"group_id\""})
        );
    }

    #[test]
    fn every_event_is_found_by_its_name_once() {
        let mut seen = std::collections::BTreeSet::new();
        for name in event_names() {
            assert!(seen.insert(name), "{name} twice");
            assert!(find(name).is_some());
        }
        assert_eq!(seen.len(), 30);
        assert!(find("login").is_none());
        assert!(find("create_messages").is_none());
    }
}
