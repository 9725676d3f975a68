//! One file per command. Each parses its own `params`, applies itself to the core and
//! says what to answer; [`Command::parse`] only finds `(obj, cmd)` in [`COMMANDS`].

mod cd_create;
mod cd_info;
mod cd_list;
mod conf_callme_s1;
mod conf_callme_s2;
mod conf_end;
mod conf_hangup;
mod conf_instantmsg;
mod conf_join;
mod conf_kick;
mod conf_leave;
mod conf_mute;
mod conf_state;
mod nd_login;
mod nd_logout;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use confer_core::bus::{Mailbox, RoomMember, SessionInfo};
use confer_core::media::PartyKey;
use confer_core::{GroupId, Principal};
use serde_json::{Map, Value};

use crate::codes::{VspError, NOT_LOGGED_IN, UNKNOWN_COMMAND};
use crate::frame::Params;
use crate::Vsp;

/// The door name its sessions carry (`user get` shows it as `type`).
pub const DOOR: &str = "vsp";

/// The most conferences one connection is in at once; another `join` is refused
/// ([`crate::codes::INVALID_STATE`]), which bounds what a connection keeps of them.
pub const MAX_JOINED: usize = 16;

/// The fields of a successful answer's `result` beyond `code`.
pub type CmdResult = Result<Map<String, Value>, VspError>;

/// A connection's state, changed by its commands and its conferences' events.
pub struct ConnState {
    pub peer: SocketAddr,
    pub login: Option<LoggedIn>,
    /// The session's mailbox until login registers it.
    pub mailbox: Option<Mailbox>,
    /// The conferences this connection joined, by `ID`.
    pub joined: BTreeMap<GroupId, Joined>,
    /// `nd logout` was answered: close.
    pub logout: bool,
    /// The media endpoint's events, from this connection's first `CALLME_S2` on (before
    /// its `open`, so the first `Slots` is not missed): the connection renders the
    /// `Slots` of its own parties as `conf.webrtc.slots`.
    pub media_events: Option<tokio::sync::broadcast::Receiver<confer_core::media::MediaEvent>>,
}

pub struct LoggedIn {
    pub who: Principal,
    pub session: SessionInfo,
}

/// A conference this connection is in: its own party, and the parties it told the
/// client of (so a party is added once, and `end` can remove them all).
pub struct Joined {
    pub public_id: String,
    pub party: u64,
    /// Its media was opened with the endpoint (to close when it leaves).
    pub media: bool,
    pub parties: BTreeMap<u64, RoomMember>,
}

/// What a command runs with.
pub struct Ctx<'a> {
    pub door: &'a Arc<Vsp>,
    pub state: &'a mut ConnState,
    /// Events to send after the answer (the joiner's party list, `servdesc`, …).
    pub events: &'a mut Vec<String>,
}

impl Ctx<'_> {
    pub fn logged_in(&self) -> Result<&LoggedIn, VspError> {
        self.state
            .login
            .as_ref()
            .ok_or_else(|| VspError::new(NOT_LOGGED_IN, "not logged in"))
    }

    pub fn cluster(&self) -> u64 {
        self.door.settings.cluster_id
    }

    /// The caller's own party in conference `id` (which it must see and have joined).
    pub async fn own_party(&self, id: u64) -> Result<PartyKey, VspError> {
        let me = self.logged_in()?;
        let (conv, member) = self
            .door
            .core
            .own_party(&me.who, &me.session.session_id, &id.to_string())
            .await?;
        Ok(PartyKey {
            conference: conv.group_id,
            party: member.party,
        })
    }
}

/// Every command the door knows.
pub enum Command {
    NdLogin(nd_login::NdLogin),
    NdLogout(nd_logout::NdLogout),
    CdList(cd_list::CdList),
    CdCreate(cd_create::CdCreate),
    CdInfo(cd_info::CdInfo),
    ConfJoin(conf_join::ConfJoin),
    ConfLeave(conf_leave::ConfLeave),
    ConfInstantmsg(conf_instantmsg::ConfInstantmsg),
    ConfState(conf_state::ConfState),
    ConfCallmeS1(conf_callme_s1::ConfCallmeS1),
    ConfCallmeS2(conf_callme_s2::ConfCallmeS2),
    ConfHangup(conf_hangup::ConfHangup),
    ConfKick(conf_kick::ConfKick),
    ConfMute(conf_mute::ConfMute),
    ConfEnd(conf_end::ConfEnd),
}

type Parser = fn(&mut Params) -> Result<Command, VspError>;

/// Every command the door takes, by `(obj, cmd)`, with its parser: the door's list of
/// commands ([`command_names`]); nothing outside it exists.
const COMMANDS: &[(&str, &str, Parser)] = {
    use Command as C;
    &[
        ("nd", "login", |p| {
            Ok(C::NdLogin(nd_login::NdLogin::parse(p)?))
        }),
        ("nd", "logout", |_| Ok(C::NdLogout(nd_logout::NdLogout))),
        ("cd", "list", |_| Ok(C::CdList(cd_list::CdList))),
        ("cd", "create", |p| {
            Ok(C::CdCreate(cd_create::CdCreate::parse(p)?))
        }),
        ("cd", "info", |p| Ok(C::CdInfo(cd_info::CdInfo::parse(p)?))),
        ("conf", "join", |p| {
            Ok(C::ConfJoin(conf_join::ConfJoin::parse(p)?))
        }),
        ("conf", "leave", |p| {
            Ok(C::ConfLeave(conf_leave::ConfLeave::parse(p)?))
        }),
        ("conf", "instantmsg", |p| {
            Ok(C::ConfInstantmsg(conf_instantmsg::ConfInstantmsg::parse(
                p,
            )?))
        }),
        ("conf", "state", |p| {
            Ok(C::ConfState(conf_state::ConfState::parse(p)?))
        }),
        ("conf", "CALLME_S1", |p| {
            Ok(C::ConfCallmeS1(conf_callme_s1::ConfCallmeS1::parse(p)?))
        }),
        ("conf", "CALLME_S2", |p| {
            Ok(C::ConfCallmeS2(conf_callme_s2::ConfCallmeS2::parse(p)?))
        }),
        ("conf", "hangup", |p| {
            Ok(C::ConfHangup(conf_hangup::ConfHangup::parse(p)?))
        }),
        ("conf", "kick", |p| {
            Ok(C::ConfKick(conf_kick::ConfKick::parse(p)?))
        }),
        ("conf", "mute", |p| {
            Ok(C::ConfMute(conf_mute::ConfMute::parse(p)?))
        }),
        ("conf", "end", |p| {
            Ok(C::ConfEnd(conf_end::ConfEnd::parse(p)?))
        }),
    ]
};

/// The `(obj, cmd)` of every command the door takes, in table order.
pub fn command_names() -> impl Iterator<Item = (&'static str, &'static str)> {
    COMMANDS.iter().map(|(o, c, _)| (*o, *c))
}

impl Command {
    /// Find the command by name and let it parse its params. Only `nd login` is taken
    /// before login; an unknown name is told as such even before login.
    pub fn parse(
        obj: &str,
        cmd: &str,
        params: &mut Params,
        logged_in: bool,
    ) -> Result<Command, VspError> {
        let parser = COMMANDS
            .iter()
            .find(|(o, c, _)| (*o, *c) == (obj, cmd))
            .map(|(.., parser)| *parser)
            .ok_or_else(|| {
                VspError::new(UNKNOWN_COMMAND, format!("unknown command: {obj} {cmd}"))
            })?;
        if !logged_in && (obj, cmd) != ("nd", "login") {
            return Err(VspError::new(
                NOT_LOGGED_IN,
                "not logged in: send nd login first",
            ));
        }
        parser(params)
    }

    pub async fn apply(self, ctx: &mut Ctx<'_>) -> CmdResult {
        match self {
            Command::NdLogin(c) => c.apply(ctx).await,
            Command::NdLogout(c) => c.apply(ctx),
            Command::CdList(c) => c.apply(ctx).await,
            Command::CdCreate(c) => c.apply(ctx).await,
            Command::CdInfo(c) => c.apply(ctx).await,
            Command::ConfJoin(c) => c.apply(ctx).await,
            Command::ConfLeave(c) => c.apply(ctx).await,
            Command::ConfInstantmsg(c) => c.apply(ctx).await,
            Command::ConfState(c) => c.apply(ctx).await,
            Command::ConfCallmeS1(c) => c.apply(ctx).await,
            Command::ConfCallmeS2(c) => c.apply(ctx).await,
            Command::ConfHangup(c) => c.apply(ctx).await,
            Command::ConfKick(c) => c.apply(ctx).await,
            Command::ConfMute(c) => c.apply(ctx).await,
            Command::ConfEnd(c) => c.apply(ctx).await,
        }
    }
}

/// An answer's `result` fields from pairs.
pub fn fields<const N: usize>(pairs: [(&str, Value); N]) -> Map<String, Value> {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_is_found_by_its_name_once() {
        let mut seen = std::collections::BTreeSet::new();
        for (obj, cmd) in command_names() {
            assert!(seen.insert((obj, cmd)), "{obj} {cmd} twice");
            let parsed = Command::parse(obj, cmd, &mut Params::default(), true);
            assert!(!matches!(parsed, Err(ref e) if e.code == UNKNOWN_COMMAND));
        }
        assert_eq!(seen.len(), 15);
        let unknown = Command::parse("conf", "callme_s1", &mut Params::default(), true);
        assert!(matches!(unknown, Err(e) if e.code == UNKNOWN_COMMAND));
    }
}
