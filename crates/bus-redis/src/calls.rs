//! Live calls shared by every node of a cluster: [`RedisCalls`], the core's `CallState`
//! kept in Redis, so that a call between users on two nodes rings, connects, is stopped
//! or times out the same as on one.
//!
//! Keys (in the database `redis_url` names, under the cluster's `redis_prefix`, as every
//! key of this crate, so clusters sharing one Redis never see each other's calls):
//! - `<prefix>:call:<id>`: a hash per live call: `v` (its version), `group`, `call` (the
//!   call as the codec's JSON), `members` (who it counts as busy: the caller and the
//!   callees who have not declined), `busy` (callees found busy when it started, which
//!   the start added to `declined`; folded into `call` by the first update);
//! - `<prefix>:call-of:<group>`: the live call of a group;
//! - `<prefix>:call-busy`: a hash, user → how many live calls count them;
//! - `<prefix>:call-timers`: a sorted set, call id → when its ringing times out (ms, by
//!   Redis's own clock, so nodes' clocks need not agree).
//!
//! Each change is one Lua script, which Redis runs alone: a start checks the group and
//! the busy counts and writes all of it in one step; an update writes only over the
//! version it read (compare and set, retried on a concurrent change); a removal happens
//! once. Every node polls the timers every [`POLL`]; the script that takes due timers
//! removes what it returns, so each timer fires on one node, whichever asks first.
//!
//! The commands are blocking, over one connection per node (`blocking.rs`): a node's
//! call operations take turns, which bounds them.

use std::time::Duration;

use async_trait::async_trait;
use confer_core::calls::{counted, CallChange, CallState};
use confer_core::model::Call;
use confer_core::store::{StoreError, StoreResult};
use confer_core::{GroupId, Uin};

use crate::blocking::{eval, Blocking};
use crate::codec;
use crate::{Names, RedisBusError};

/// How often each node looks for due ringing timers.
pub const POLL: Duration = Duration::from_millis(250);
/// The most timers one poll takes.
const DUE_BATCH: usize = 100;
/// How many times an update is tried against concurrent changes before it fails.
const UPDATE_TRIES: usize = 32;

/// The names of the calls' keys, under the cluster's prefix.
#[derive(Clone, Debug)]
struct Keys {
    names: Names,
}

impl Keys {
    fn busy(&self) -> String {
        self.names.key("call-busy")
    }

    fn timers(&self) -> String {
        self.names.key("call-timers")
    }

    fn call(&self, call_id: u64) -> String {
        self.names.key(&format!("call:{call_id}"))
    }

    fn group(&self, group: u64) -> String {
        self.names.key(&format!("call-of:{group}"))
    }
}

fn join(uins: impl IntoIterator<Item = Uin>) -> String {
    uins.into_iter()
        .map(|u| u.0.to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

const START: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local declined = {}
for u in string.gmatch(ARGV[6], '%S+') do declined[u] = true end
local busy = {}
local members = {ARGV[4]}
for u in string.gmatch(ARGV[5], '%S+') do
  if tonumber(redis.call('HGET', KEYS[3], u) or '0') > 0 then
    table.insert(busy, u)
  elseif not declined[u] then
    table.insert(members, u)
  end
end
for _, u in ipairs(members) do redis.call('HINCRBY', KEYS[3], u, 1) end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[2], 'v', 1, 'group', ARGV[2], 'call', ARGV[3],
  'members', table.concat(members, ' '), 'busy', table.concat(busy, ' '))
local t = redis.call('TIME')
local at = t[1] * 1000 + math.floor(t[2] / 1000) + tonumber(ARGV[7])
redis.call('ZADD', KEYS[4], string.format('%d', at), ARGV[1])
return busy
";

const UPDATE: &str = r"
local v = redis.call('HGET', KEYS[1], 'v')
if not v then return -1 end
if v ~= ARGV[1] then return 0 end
for u in string.gmatch(redis.call('HGET', KEYS[1], 'members') or '', '%S+') do
  if redis.call('HINCRBY', KEYS[2], u, -1) <= 0 then redis.call('HDEL', KEYS[2], u) end
end
for u in string.gmatch(ARGV[3], '%S+') do redis.call('HINCRBY', KEYS[2], u, 1) end
redis.call('HSET', KEYS[1], 'v', tonumber(v) + 1, 'call', ARGV[2], 'members', ARGV[3])
redis.call('HDEL', KEYS[1], 'busy')
return 1
";

const REMOVE: &str = r"
local got = redis.call('HMGET', KEYS[1], 'call', 'busy', 'members')
if not got[1] then return false end
for u in string.gmatch(got[3] or '', '%S+') do
  if redis.call('HINCRBY', KEYS[2], u, -1) <= 0 then redis.call('HDEL', KEYS[2], u) end
end
redis.call('DEL', KEYS[1])
if redis.call('GET', KEYS[4]) == ARGV[1] then redis.call('DEL', KEYS[4]) end
redis.call('ZREM', KEYS[3], ARGV[1])
return {got[1], got[2] or ''}
";

const DUE: &str = r"
local t = redis.call('TIME')
local now = string.format('%d', t[1] * 1000 + math.floor(t[2] / 1000))
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
for _, id in ipairs(due) do redis.call('ZREM', KEYS[1], id) end
return due
";

/// A stored call and the callees its start found busy.
fn decode(call: &str, busy: &str) -> StoreResult<Call> {
    let mut call = serde_json::from_str(call)
        .ok()
        .and_then(|v| codec::call_from(&v))
        .ok_or_else(|| StoreError::Backend("redis: a live call that does not decode".into()))?;
    for u in busy.split_whitespace() {
        let uin = u
            .parse()
            .map_err(|_| StoreError::Backend("redis: a busy callee that is not a uin".into()))?;
        call.declined.insert(Uin(uin));
    }
    Ok(call)
}

/// [`CallState`] in Redis, shared by every node pointed at the same database.
pub struct RedisCalls {
    keys: Keys,
    redis: Blocking,
}

impl RedisCalls {
    /// Connect now: a node whose calls cannot reach Redis fails to start rather than
    /// keep calls of its own. `prefix` is the cluster's (`redis_prefix`; empty:
    /// [`DEFAULT_PREFIX`](crate::DEFAULT_PREFIX)), the same as its bus's.
    pub fn connect(url: &str, prefix: &str) -> Result<RedisCalls, RedisBusError> {
        Ok(RedisCalls {
            keys: Keys {
                names: Names::new(prefix),
            },
            redis: Blocking::connect(url, "redis call state")?,
        })
    }

    /// A live call with its version.
    async fn read(&self, call_id: u64) -> StoreResult<Option<(String, Call)>> {
        let key = self.keys.call(call_id);
        let got: (Option<String>, Option<String>, Option<String>) = self
            .redis
            .run(move |con| {
                redis::cmd("HMGET")
                    .arg(key)
                    .arg("v")
                    .arg("call")
                    .arg("busy")
                    .query(con)
            })
            .await?;
        match got {
            (Some(v), Some(call), busy) => {
                Ok(Some((v, decode(&call, busy.as_deref().unwrap_or(""))?)))
            }
            _ => Ok(None),
        }
    }
}

#[async_trait]
impl CallState for RedisCalls {
    async fn get(&self, call_id: u64) -> StoreResult<Option<Call>> {
        Ok(self.read(call_id).await?.map(|(_, call)| call))
    }

    async fn of_group(&self, group: GroupId) -> StoreResult<Option<Call>> {
        let key = self.keys.group(group.0);
        let id: Option<u64> = self
            .redis
            .run(move |con| redis::cmd("GET").arg(key).query(con))
            .await?;
        match id {
            Some(id) => self.get(id).await,
            None => Ok(None),
        }
    }

    async fn start(&self, call: Call, ring_for: Duration) -> StoreResult<Option<(Call, Vec<Uin>)>> {
        let json = codec::call(&call).to_string();
        let (id, group, caller) = (call.call_id, call.group_id.0, call.caller.0);
        let callees = join(call.callees.iter().copied());
        let declined = join(call.declined.iter().copied());
        let ring_ms = u64::try_from(ring_for.as_millis()).unwrap_or(u64::MAX / 2);
        let k = self.keys.clone();
        let busy: Option<Vec<u64>> = self
            .redis
            .run(move |con| {
                eval(
                    START,
                    &[&k.group(group), &k.call(id), &k.busy(), &k.timers()],
                )
                .arg(id)
                .arg(group)
                .arg(json)
                .arg(caller)
                .arg(callees)
                .arg(declined)
                .arg(ring_ms)
                .query(con)
            })
            .await?;
        Ok(busy.map(|busy| {
            let busy: Vec<Uin> = busy.into_iter().map(Uin).collect();
            let mut call = call;
            call.declined.extend(busy.iter().copied());
            (call, busy)
        }))
    }

    async fn update(&self, call_id: u64, change: CallChange<'_>) -> StoreResult<Option<Call>> {
        for _ in 0..UPDATE_TRIES {
            let Some((version, mut call)) = self.read(call_id).await? else {
                return Ok(None);
            };
            change(&mut call);
            let json = codec::call(&call).to_string();
            let members = join(counted(&call));
            let k = self.keys.clone();
            let written: i64 = self
                .redis
                .run(move |con| {
                    eval(UPDATE, &[&k.call(call_id), &k.busy()])
                        .arg(version)
                        .arg(json)
                        .arg(members)
                        .query(con)
                })
                .await?;
            match written {
                1 => return Ok(Some(call)),
                -1 => return Ok(None),
                _ => continue,
            }
        }
        Err(StoreError::Backend(format!(
            "redis: call {call_id} changed by others {UPDATE_TRIES} times in a row"
        )))
    }

    async fn remove(&self, call_id: u64) -> StoreResult<Option<Call>> {
        let key = self.keys.call(call_id);
        let group: Option<u64> = self
            .redis
            .run(move |con| redis::cmd("HGET").arg(key).arg("group").query(con))
            .await?;
        let Some(group) = group else {
            return Ok(None);
        };
        let k = self.keys.clone();
        let removed: Option<(String, String)> = self
            .redis
            .run(move |con| {
                eval(
                    REMOVE,
                    &[&k.call(call_id), &k.busy(), &k.timers(), &k.group(group)],
                )
                .arg(call_id)
                .query(con)
            })
            .await?;
        removed.map(|(call, busy)| decode(&call, &busy)).transpose()
    }

    async fn due(&self) -> Vec<u64> {
        let mut failing = false;
        loop {
            tokio::time::sleep(POLL).await;
            let timers = self.keys.timers();
            let due: StoreResult<Vec<u64>> = self
                .redis
                .run(move |con| eval(DUE, &[&timers]).arg(DUE_BATCH).query(con))
                .await;
            match due {
                Ok(due) if !due.is_empty() => return due,
                Ok(_) => failing = false,
                Err(e) => {
                    if !failing {
                        tracing::warn!(error = %e, "polling the calls' ringing timers");
                    }
                    failing = true;
                }
            }
        }
    }
}
