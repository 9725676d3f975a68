//! One file per command. Each parses its own `data`, applies itself to the core and says
//! what to answer; [`Command::parse`] only finds the name in [`COMMANDS`], as in mini-redis.

mod conf_create;
mod conf_destroy;
mod conf_get_info;
mod conf_get_list;
mod conf_join;
mod conf_leave;
mod event_get_subscriptions;
mod event_send;
mod event_subscribe;
mod event_unsubscribe;
mod msglog_get;
mod msglog_send;
mod session_cmd;
mod session_log;
mod session_send_event;
mod session_stop;
mod user_get;
mod user_list;
mod user_login;

pub use user_login::DOOR;
mod user_send_event;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use confer_core::bus::{Mailbox, SessionInfo};
use confer_core::{Core, Json, Principal};
use futures_util::stream::FuturesUnordered;
use serde_json::{Map, Value};

use crate::args::Args;
use crate::error::{CmdError, NOT_AUTHENTICATED, SERVICE_NOT_FOUND, UNKNOWN_COMMAND};

/// What a command answers.
pub enum Reply {
    /// Answer now with this data (`None`: no data).
    Data(Option<Value>),
    /// Answer now with one page of a listing; `more` (sent beside `data` as
    /// `"more":true`) when the listing stopped at a limit with items left beyond it.
    Page { list: Value, more: bool },
    /// The command answers later: it left a [`Deferred`] in the context.
    Deferred,
}

pub type CmdResult = Result<Reply, CmdError>;

/// An answer that a command produces after it returned: (tid, result).
pub type DeferredAnswer = (u64, Result<Option<Value>, CmdError>);

/// The rest of a command that answers later, polled by its connection beside its other
/// work (no task or channel of its own: deferred answers are rare, connections many).
pub type Deferred = Pin<Box<dyn Future<Output = DeferredAnswer> + Send>>;

/// A connection's login state, changed only by `login`.
pub struct ConnState {
    pub remote: String,
    /// The client's address, for the core's login limits.
    pub peer: SocketAddr,
    pub login: Option<LoggedIn>,
    /// The session's mailbox until login registers it.
    pub mailbox: Option<Mailbox>,
}

pub struct LoggedIn {
    pub who: Principal,
    pub session: SessionInfo,
}

/// What a command runs with.
pub struct Ctx<'a> {
    pub core: &'a Arc<Core>,
    pub state: &'a mut ConnState,
    /// Where commands that answer later leave the rest of their work.
    pub deferred: &'a mut FuturesUnordered<Deferred>,
    pub tid: u64,
    /// This server's service name (`service` in `event subscribe`/`send`).
    pub service: &'a str,
}

impl Ctx<'_> {
    pub fn logged_in(&self) -> Result<&LoggedIn, CmdError> {
        self.state
            .login
            .as_ref()
            .ok_or_else(|| CmdError::new(NOT_AUTHENTICATED, "not authenticated"))
    }

    /// A command's optional `service` must be this server's: there is no other.
    pub fn this_service(&self, service: Option<&str>) -> Result<(), CmdError> {
        match service {
            Some(s) if s != self.service => Err(CmdError::new(
                SERVICE_NOT_FOUND,
                format!("service not found: {s}"),
            )),
            _ => Ok(()),
        }
    }
}

/// Every command the door knows.
pub enum Command {
    UserLogin(user_login::UserLogin),
    UserList(user_list::UserList),
    UserGet(user_get::UserGet),
    UserSendEvent(user_send_event::UserSendEvent),
    SessionStop(session_stop::SessionStop),
    SessionSendEvent(session_send_event::SessionSendEvent),
    SessionCmd(session_cmd::SessionCmd),
    SessionLog(session_log::SessionLog),
    EventSubscribe(event_subscribe::EventSubscribe),
    EventUnsubscribe(event_unsubscribe::EventUnsubscribe),
    EventGetSubscriptions(event_get_subscriptions::EventGetSubscriptions),
    EventSend(event_send::EventSend),
    ConfCreate(conf_create::ConfCreate),
    ConfDestroy(conf_destroy::ConfDestroy),
    ConfGetList(conf_get_list::ConfGetList),
    ConfGetInfo(conf_get_info::ConfGetInfo),
    ConfJoin(conf_join::ConfJoin),
    ConfLeave(conf_leave::ConfLeave),
    MsglogSend(msglog_send::MsglogSend),
    MsglogGet(msglog_get::MsglogGet),
}

/// A command's parser, found by name.
type Parser = fn(&mut Args) -> Result<Command, CmdError>;

/// Every command the door takes, by `(class, subclass, cmd)`, with its parser.
/// [`Command::parse`] finds commands here and nowhere else, so this table is the door's
/// list of commands (see [`command_names`]; docs/asyncapi.yaml is checked against it).
const COMMANDS: &[(&str, &str, &str, Parser)] = {
    use Command as C;
    &[
        ("core", "user", "login", |a| {
            Ok(C::UserLogin(user_login::UserLogin::parse(a)?))
        }),
        ("core", "user", "list", |_| {
            Ok(C::UserList(user_list::UserList))
        }),
        ("core", "user", "get", |a| {
            Ok(C::UserGet(user_get::UserGet::parse(a)?))
        }),
        ("core", "user", "send_event", |a| {
            Ok(C::UserSendEvent(user_send_event::UserSendEvent::parse(a)?))
        }),
        ("core", "session", "stop", |a| {
            Ok(C::SessionStop(session_stop::SessionStop::parse(a)?))
        }),
        ("core", "session", "send_event", |a| {
            Ok(C::SessionSendEvent(
                session_send_event::SessionSendEvent::parse(a)?,
            ))
        }),
        ("core", "session", "cmd", |a| {
            Ok(C::SessionCmd(session_cmd::SessionCmd::parse(a)?))
        }),
        ("core", "session", "log", |a| {
            Ok(C::SessionLog(session_log::SessionLog::parse(a)?))
        }),
        ("core", "event", "subscribe", |a| {
            Ok(C::EventSubscribe(event_subscribe::EventSubscribe::parse(
                a,
            )?))
        }),
        ("core", "event", "unsubscribe", |a| {
            Ok(C::EventUnsubscribe(
                event_unsubscribe::EventUnsubscribe::parse(a)?,
            ))
        }),
        ("core", "event", "get_subscriptions", |_| {
            Ok(C::EventGetSubscriptions(
                event_get_subscriptions::EventGetSubscriptions,
            ))
        }),
        // The original code names it `send`, its document `send_event`: both are taken.
        ("core", "event", "send", |a| {
            Ok(C::EventSend(event_send::EventSend::parse(a)?))
        }),
        ("core", "event", "send_event", |a| {
            Ok(C::EventSend(event_send::EventSend::parse(a)?))
        }),
        ("media", "conf", "create", |a| {
            Ok(C::ConfCreate(conf_create::ConfCreate::parse(a)?))
        }),
        ("media", "conf", "destroy", |a| {
            Ok(C::ConfDestroy(conf_destroy::ConfDestroy::parse(a)?))
        }),
        ("media", "conf", "get_list", |_| {
            Ok(C::ConfGetList(conf_get_list::ConfGetList))
        }),
        ("media", "conf", "get_info", |a| {
            Ok(C::ConfGetInfo(conf_get_info::ConfGetInfo::parse(a)?))
        }),
        ("media", "conf", "join", |a| {
            Ok(C::ConfJoin(conf_join::ConfJoin::parse(a)?))
        }),
        ("media", "conf", "leave", |a| {
            Ok(C::ConfLeave(conf_leave::ConfLeave::parse(a)?))
        }),
        ("media", "conf", "msglog_send", |a| {
            Ok(C::MsglogSend(msglog_send::MsglogSend::parse(a)?))
        }),
        ("media", "conf", "msglog_get", |a| {
            Ok(C::MsglogGet(msglog_get::MsglogGet::parse(a)?))
        }),
    ]
};

/// The `(class, subclass, cmd)` of every command the door takes, in table order.
pub fn command_names() -> impl Iterator<Item = (&'static str, &'static str, &'static str)> {
    COMMANDS.iter().map(|(c, s, m, _)| (*c, *s, *m))
}

impl Command {
    /// Find the command by name and let it parse its data. `login` is the only command
    /// taken before login; an unknown name is told as such even before login.
    pub fn parse(
        class: &str,
        subclass: &str,
        cmd: &str,
        args: &mut Args,
        logged_in: bool,
    ) -> Result<Command, CmdError> {
        let parser = Self::lookup(class, subclass, cmd).ok_or_else(|| {
            CmdError::new(
                UNKNOWN_COMMAND,
                format!("unknown command: {class}/{subclass}/{cmd}"),
            )
        })?;
        if !logged_in && (class, subclass, cmd) != ("core", "user", "login") {
            return Err(CmdError::new(NOT_AUTHENTICATED, "not authenticated"));
        }
        parser(args)
    }

    fn lookup(class: &str, subclass: &str, cmd: &str) -> Option<Parser> {
        COMMANDS
            .iter()
            .find(|(c, s, m, _)| (*c, *s, *m) == (class, subclass, cmd))
            .map(|(.., parser)| *parser)
    }

    pub async fn apply(self, ctx: &mut Ctx<'_>) -> CmdResult {
        match self {
            Command::UserLogin(c) => c.apply(ctx).await,
            Command::UserList(c) => c.apply(ctx),
            Command::UserGet(c) => c.apply(ctx),
            Command::UserSendEvent(c) => c.apply(ctx).await,
            Command::SessionStop(c) => c.apply(ctx),
            Command::SessionSendEvent(c) => c.apply(ctx),
            Command::SessionCmd(c) => c.apply(ctx),
            Command::SessionLog(c) => c.apply(ctx).await,
            Command::EventSubscribe(c) => c.apply(ctx).await,
            Command::EventUnsubscribe(c) => c.apply(ctx),
            Command::EventGetSubscriptions(c) => c.apply(ctx),
            Command::EventSend(c) => c.apply(ctx),
            Command::ConfCreate(c) => c.apply(ctx).await,
            Command::ConfDestroy(c) => c.apply(ctx).await,
            Command::ConfGetList(c) => c.apply(ctx).await,
            Command::ConfGetInfo(c) => c.apply(ctx).await,
            Command::ConfJoin(c) => c.apply(ctx).await,
            Command::ConfLeave(c) => c.apply(ctx).await,
            Command::MsglogSend(c) => c.apply(ctx).await,
            Command::MsglogGet(c) => c.apply(ctx).await,
        }
    }
}

/// An optional event `body`: it must be an object. Returned as validated JSON text.
pub fn body_arg(args: &mut Args, key: &str) -> Result<Option<Json>, CmdError> {
    Ok(args.opt_object(key)?.map(object_json))
}

/// A JSON object as validated text for the core.
pub fn object_json(map: Map<String, Value>) -> Json {
    Json::from_validated(Value::Object(map).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_is_found_by_its_name_once() {
        let mut seen = std::collections::BTreeSet::new();
        for (class, subclass, cmd) in command_names() {
            assert!(
                seen.insert((class, subclass, cmd)),
                "{class}/{subclass}/{cmd} twice"
            );
            assert!(Command::lookup(class, subclass, cmd).is_some());
        }
        assert_eq!(seen.len(), 21);
        assert!(Command::lookup("core", "user", "logout").is_none());
        assert!(Command::lookup("media", "user", "login").is_none());
    }
}
