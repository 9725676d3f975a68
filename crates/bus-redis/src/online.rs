//! Who is online, counted once for the whole cluster: [`RedisOnline`], the core's
//! `OnlineState` in Redis, so that a user's first chat session and its last are the same
//! whichever nodes its sockets are on (`confer_core::online` says why the session
//! directory's copy, which comes a little late, cannot decide this).
//!
//! Keys (under the cluster's `redis_prefix`, as every key of this crate):
//! - `<prefix>:online:<uin>`: a hash per connected user, chat session id → the node that
//!   holds it. Redis drops it with its last field.
//!
//! A join writes its field and counts the user's fields, a leave removes its field and
//! counts what is left, each in one Lua script, which Redis runs alone: of two sessions
//! opening at once one is first, of two closing at once one is last. A field of a node
//! whose `<prefix>:alive:<node>` key is gone (a dead node) is not counted, and is removed
//! on the way: a node killed with its users online never keeps them online. The dead
//! node's closer still closes those sessions (their leave finds nothing, and the core
//! lets the registry decide); a node that was only taken for dead writes its sessions'
//! fields again with its heartbeat (`lib.rs`).
//!
//! The scripts read `alive` keys they are not given as KEYS: right on one Redis (or
//! Valkey) server, not on Redis Cluster, which this crate does not support.

use async_trait::async_trait;
use confer_core::online::OnlineState;
use confer_core::store::StoreResult;
use confer_core::{SessionId, Uin};

use crate::blocking::{eval, Blocking};
use crate::{Names, RedisBusError};

/// Counts the fields of `KEYS[1]` whose node is this one (`ARGV[2]`) or alive (its key
/// `ARGV[3] .. node` exists), removing the others.
const LIVE: &str = r"
local function live()
  local entries = redis.call('HGETALL', KEYS[1])
  local n = 0
  for i = 1, #entries, 2 do
    local node = entries[i + 1]
    if node == ARGV[2] or redis.call('EXISTS', ARGV[3] .. node) == 1 then
      n = n + 1
    else
      redis.call('HDEL', KEYS[1], entries[i])
    end
  end
  return n
end
";

/// The user's live sessions once `ARGV[1]` is one of them.
const JOIN: &str = r"
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return live()
";

/// -1 when `ARGV[1]` was not counted, else the user's live sessions left.
const LEAVE: &str = r"
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return -1 end
return live()
";

/// [`OnlineState`] in Redis, shared by every node of a cluster.
pub struct RedisOnline {
    names: Names,
    node_id: String,
    redis: Blocking,
    join: String,
    leave: String,
}

impl RedisOnline {
    /// Connect now (a node that cannot reach Redis fails to start). `prefix` is the
    /// cluster's (`redis_prefix`), `node_id` this node's, both as its bus has them.
    pub fn connect(url: &str, prefix: &str, node_id: &str) -> Result<RedisOnline, RedisBusError> {
        Ok(RedisOnline {
            names: Names::new(prefix),
            node_id: node_id.to_string(),
            redis: Blocking::connect(url, "redis presence")?,
            join: format!("{LIVE}{JOIN}"),
            leave: format!("{LIVE}{LEAVE}"),
        })
    }

    async fn count(&self, script: &str, uin: Uin, session: &SessionId) -> StoreResult<i64> {
        let (script, key) = (script.to_string(), self.names.online(uin));
        let (session, node, alive) = (
            session.to_string(),
            self.node_id.clone(),
            self.names.alive(""),
        );
        self.redis
            .run(move |con| {
                eval(&script, &[&key])
                    .arg(session)
                    .arg(node)
                    .arg(alive)
                    .query(con)
            })
            .await
    }
}

#[async_trait]
impl OnlineState for RedisOnline {
    async fn join(&self, uin: Uin, session: &SessionId) -> StoreResult<bool> {
        Ok(self.count(&self.join, uin, session).await? == 1)
    }

    async fn leave(&self, uin: Uin, session: &SessionId) -> StoreResult<Option<bool>> {
        let left = self.count(&self.leave, uin, session).await?;
        Ok((left >= 0).then_some(left == 0))
    }
}
