//! `nd login {token}` or `{user, password}` → `{uin, username}`: required first.
//!
//! A token comes from `POST /api/v1/login` (the session then ends with the token); a
//! password login passes the core's login limits and its doubling delay after failures,
//! as on every door.

use confer_core::CoreError;
use serde_json::Value;

use super::{fields, CmdResult, Ctx, LoggedIn, DOOR};
use crate::codes::{VspError, INTERNAL_ERROR, INVALID_STATE, LOGIN_FAILED};
use crate::frame::Params;

pub struct NdLogin {
    token: Option<String>,
    user: Option<String>,
    password: Option<String>,
}

impl NdLogin {
    pub fn parse(p: &mut Params) -> Result<Self, VspError> {
        let login = NdLogin {
            token: p.opt("token"),
            user: p.opt("user"),
            password: p.opt("password"),
        };
        if login.token.is_none() && (login.user.is_none() || login.password.is_none()) {
            return Err(VspError::bad_param(
                "token",
                "give a token, or user and password",
            ));
        }
        Ok(login)
    }

    pub async fn apply(self, ctx: &mut Ctx<'_>) -> CmdResult {
        if ctx.state.login.is_some() {
            return Err(VspError::new(INVALID_STATE, "already logged in"));
        }
        let core = &ctx.door.core;
        let checked = match (&self.user, &self.password, &self.token) {
            (Some(user), Some(password), _) => {
                core.authenticate_password(user, password, ctx.state.peer.ip())
                    .await
            }
            (user, _, Some(token)) => core.authenticate_token(user.as_deref(), token).await,
            _ => return Err(VspError::bad_param("token", "missing")),
        };
        let who = match checked {
            Ok(who) => who,
            Err(CoreError::InvalidCredentials) => {
                return Err(VspError::new(
                    LOGIN_FAILED,
                    "invalid user, password or token",
                ))
            }
            Err(other) => return Err(other.into()),
        };
        let username = core.display_name(&who).await?;
        let mailbox = ctx
            .state
            .mailbox
            .clone()
            .ok_or_else(|| VspError::new(INTERNAL_ERROR, "connection has no mailbox"))?;
        let token = match &self.password {
            Some(_) => None,
            None => self.token.as_deref(),
        };
        let session = core.open_session(
            &who,
            None,
            token,
            ctx.state.peer.to_string(),
            DOOR,
            mailbox,
            None,
        )?;
        tracing::info!(user = %who.login, session = %session.session_id, "conference door login");
        let uin = who.uin.0;
        ctx.state.login = Some(LoggedIn { who, session });
        Ok(fields([
            ("uin", Value::from(uin)),
            ("username", Value::from(username)),
        ]))
    }
}
