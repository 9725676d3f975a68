//! `core/session/cmd {session_id, class, subclass?, cmd, data?}`: forward a request to
//! another session and relay its answer (ok or error) under the caller's tid.
//!
//! The wait is left with the connection, which polls it beside its other work, so it
//! keeps serving other frames meanwhile (including, when a session calls itself, the
//! forwarded request).

use confer_core::{Json, SessionId};

use super::{CmdResult, Ctx, Reply};
use crate::args::Args;
use crate::error::CmdError;
use crate::render::json_value;

pub struct SessionCmd {
    session_id: SessionId,
    class: String,
    subclass: Option<String>,
    cmd: String,
    data: Option<Json>,
}

impl SessionCmd {
    pub fn parse(args: &mut Args) -> Result<Self, CmdError> {
        Ok(SessionCmd {
            session_id: SessionId::new(args.req_str("session_id")?),
            class: args.req_str("class")?,
            subclass: args.opt_str("subclass")?,
            cmd: args.req_str("cmd")?,
            data: args
                .take("data")
                .filter(|d| !d.is_null())
                .map(|d| Json::from_validated(d.to_string())),
        })
    }

    pub fn apply(self, ctx: &mut Ctx<'_>) -> CmdResult {
        ctx.logged_in()?;
        let core = ctx.core.clone();
        let tid = ctx.tid;
        ctx.deferred.push(Box::pin(async move {
            let answer = core
                .forward_command(
                    &self.session_id,
                    self.class,
                    self.subclass,
                    self.cmd,
                    self.data,
                )
                .await
                .map(|data| data.as_ref().map(json_value).filter(|v| !v.is_null()))
                .map_err(CmdError::from);
            (tid, answer)
        }));
        Ok(Reply::Deferred)
    }
}
