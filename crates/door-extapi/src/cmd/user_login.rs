//! `core/user/login {user, password | token, session_id?}` → `{session_id}`.
//!
//! The admin logs in with the configured password; accounts with theirs, or with a token
//! from `POST /api/v1/login`. The core's login limits apply to password logins: a failed
//! one is answered after a delay that doubles with the recent failures of its account or
//! address (on any connection), and past the limit the answer is 100050 (try later).

use confer_core::CoreError;
use serde_json::json;

use super::{CmdResult, Ctx, LoggedIn, Reply};
use crate::args::Args;
use crate::error::{CmdError, ALREADY_AUTHENTICATED, INTERNAL_ERROR, UNAUTHORIZED};

/// The door name sessions of this door carry (`user get` shows it as `type`).
pub const DOOR: &str = "api_server";

pub struct UserLogin {
    user: String,
    password: Option<String>,
    token: Option<String>,
    session_id: Option<String>,
}

impl UserLogin {
    pub fn parse(args: &mut Args) -> Result<Self, CmdError> {
        Ok(UserLogin {
            user: args.req_str("user")?,
            password: args.opt_str("password")?,
            token: args.opt_str("token")?,
            session_id: args.opt_str("session_id")?,
        })
    }

    pub async fn apply(self, ctx: &mut Ctx<'_>) -> CmdResult {
        if ctx.state.login.is_some() {
            return Err(CmdError::new(
                ALREADY_AUTHENTICATED,
                "already authenticated",
            ));
        }
        let checked = match (&self.password, &self.token) {
            (Some(password), _) => {
                let from = ctx.state.peer.ip();
                ctx.core
                    .authenticate_password(&self.user, password, from)
                    .await
            }
            (None, Some(token)) => ctx.core.authenticate_token(Some(&self.user), token).await,
            (None, None) => return Err(CmdError::missing("password")),
        };
        let who = match checked {
            Ok(who) => who,
            Err(CoreError::InvalidCredentials) => {
                return Err(CmdError::new(UNAUTHORIZED, "invalid user or password"));
            }
            Err(other) => return Err(other.into()),
        };
        let mailbox = ctx
            .state
            .mailbox
            .clone()
            .ok_or_else(|| CmdError::new(INTERNAL_ERROR, "connection has no mailbox"))?;
        // A session opened with a token ends when the token is revoked or expires.
        let token = match &self.password {
            Some(_) => None,
            None => self.token.as_deref(),
        };
        let session = ctx.core.open_session(
            &who,
            self.session_id,
            token,
            ctx.state.remote.clone(),
            DOOR,
            mailbox,
        )?;
        let session_id = session.session_id.to_string();
        tracing::info!(user = %who.login, %session_id, "external api login");
        ctx.state.login = Some(LoggedIn { who, session });
        Ok(Reply::Data(Some(json!({ "session_id": session_id }))))
    }
}
