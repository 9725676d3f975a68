//! `core/user/login {user, password | token, session_id?, …}` → `{session_id}`.
//!
//! Any other field is session metadata (the spec's `meta1: "value1"`): kept with the
//! session and shown by `user get` beside the server's own fields, at most
//! [`MAX_META_BYTES`] of it as JSON.
//!
//! The admin logs in with the configured password; accounts with theirs, or with a token
//! from `POST /api/v1/login`. The core's login limits apply to password logins: a failed
//! one is answered after a delay that doubles with the recent failures of its account or
//! address (on any connection), and past the limit the answer is 100050 (try later).

use confer_core::CoreError;
use serde_json::{json, Map, Value};

use super::{CmdResult, Ctx, LoggedIn, Reply};
use crate::args::Args;
use crate::error::{CmdError, ALREADY_AUTHENTICATED, INTERNAL_ERROR, INVALID_VALUE, UNAUTHORIZED};

/// The door name sessions of this door carry (`user get` shows it as `type`).
pub const DOOR: &str = "api_server";

/// The most login metadata a session keeps (its JSON text, bytes).
pub const MAX_META_BYTES: usize = 4096;

pub struct UserLogin {
    user: String,
    password: Option<String>,
    token: Option<String>,
    session_id: Option<String>,
    meta: Map<String, Value>,
}

impl UserLogin {
    pub fn parse(args: &mut Args) -> Result<Self, CmdError> {
        Ok(UserLogin {
            user: args.req_str("user")?,
            password: args.opt_str("password")?,
            token: args.opt_str("token")?,
            session_id: args.opt_str("session_id")?,
            meta: args.rest(),
        })
    }

    pub async fn apply(self, ctx: &mut Ctx<'_>) -> CmdResult {
        if ctx.state.login.is_some() {
            return Err(CmdError::new(
                ALREADY_AUTHENTICATED,
                "already authenticated",
            ));
        }
        let meta = match self.meta.is_empty() {
            true => None,
            false => {
                let text = Value::Object(self.meta).to_string();
                if text.len() > MAX_META_BYTES {
                    return Err(CmdError::new(
                        INVALID_VALUE,
                        format!("invalid value: login metadata over {MAX_META_BYTES} bytes"),
                    ));
                }
                Some(confer_core::Json::from_validated(text))
            }
        };
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
            meta,
        )?;
        let session_id = session.session_id.to_string();
        tracing::info!(user = %who.login, %session_id, "external api login");
        ctx.state.login = Some(LoggedIn { who, session });
        Ok(Reply::Data(Some(json!({ "session_id": session_id }))))
    }
}
