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
//! counts what is left, inside a Lua script, which Redis runs alone: of two sessions
//! opening at once one is first, of two closing at once one is last. A field of a node
//! whose `<prefix>:alive:<node>` key is gone (a dead node) is not counted, and is removed
//! on the way: a node killed with its users online never keeps them online. The dead
//! node's closer still closes those sessions (their leave finds nothing, and the core
//! lets the registry decide); a node that was only taken for dead writes its sessions'
//! fields again with its heartbeat (`lib.rs`).
//!
//! **A node's joins and leaves reach Redis in the order they were asked, in batches:**
//! they queue for one thread of the node's, which takes whatever has queued, up to
//! [`BATCH`], into one script run, so a storm of connects costs a round trip per batch,
//! not one each. The order matters: a leave asked after its join (even one whose caller
//! stopped waiting for it) never runs before that join, which would leave the join's
//! field behind and keep the user online for good. For the same reason a leave is never
//! refused: the queue is bounded by refusing joins, once [`QUEUE`] operations (of a
//! hundred bytes or so each) wait, and a leave of a session whose join was refused is
//! not sent at all. So at most [`QUEUE`] joins and one leave per counted session wait.
//! A refused join fails at once, and the core decides from its own view, as it does for
//! a count that comes too late.
//!
//! The script reads `alive` keys it is not given as KEYS: right on one Redis (or Valkey)
//! server, not on Redis Cluster, which this crate does not support.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use confer_core::online::OnlineState;
use confer_core::store::{StoreError, StoreResult};
use confer_core::{SessionId, Uin};
use redis::{Client, Connection};
use tokio::sync::oneshot;

use crate::blocking::{broken, eval, open};
use crate::{Names, RedisBusError};

/// How many joins and leaves may wait for the node's Redis thread before joins are
/// refused.
pub const QUEUE: usize = 16_384;

/// How many of them one script run takes (it runs alone in Redis: a few µs each).
pub const BATCH: usize = 256;

/// Runs a batch: operation `i` is on the user hash `KEYS[i]`, and `ARGV[2 + i]` is `j`
/// (join) or `l` (leave) followed by the session id; `ARGV[1]` is this node and
/// `ARGV[2]` the prefix of the `alive` keys. Answers, per operation, the user's live
/// sessions after it, or -1 for a leave of a session that was not counted. A field is
/// live when its node is this one or alive; the others are removed on the way.
const SCRIPT: &str = r"
local function live(key)
  local entries = redis.call('HGETALL', key)
  local n = 0
  for i = 1, #entries, 2 do
    local node = entries[i + 1]
    if node == ARGV[1] or redis.call('EXISTS', ARGV[2] .. node) == 1 then
      n = n + 1
    else
      redis.call('HDEL', key, entries[i])
    end
  end
  return n
end
local out = {}
for i = 1, #KEYS do
  local op = ARGV[2 + i]
  local session = string.sub(op, 2)
  if string.sub(op, 1, 1) == 'j' then
    redis.call('HSET', KEYS[i], session, ARGV[1])
    out[i] = live(KEYS[i])
  elseif redis.call('HDEL', KEYS[i], session) == 0 then
    out[i] = -1
  else
    out[i] = live(KEYS[i])
  end
end
return out
";

/// One join or leave, waiting for its batch.
struct Op {
    key: String,
    /// `j` or `l`, then the session id.
    op: String,
    reply: oneshot::Sender<StoreResult<i64>>,
}

/// [`OnlineState`] in Redis, shared by every node of a cluster.
pub struct RedisOnline {
    names: Names,
    queue: Sender<Op>,
    /// How many operations the queue holds.
    waiting: Arc<AtomicUsize>,
    /// The sessions whose join was refused, so their leave is not sent.
    refused: Mutex<HashSet<SessionId>>,
}

impl RedisOnline {
    /// Connect now (a node that cannot reach Redis fails to start), and start the
    /// node's Redis thread for the count. `prefix` is the cluster's (`redis_prefix`),
    /// `node_id` this node's, both as its bus has them.
    pub fn connect(url: &str, prefix: &str, node_id: &str) -> Result<RedisOnline, RedisBusError> {
        let names = Names::new(prefix);
        let client = Client::open(url)?;
        let mut first = open(&client)?;
        redis::cmd("PING").query::<String>(&mut first)?;
        let (queue, ops) = channel();
        let waiting = Arc::new(AtomicUsize::new(0));
        let counter = Counter {
            client,
            connection: Some(first),
            node: node_id.to_string(),
            alive: names.alive(""),
            waiting: waiting.clone(),
        };
        std::thread::Builder::new()
            .name("confer-presence".into())
            .spawn(move || counter.serve(ops))
            .map_err(|e| RedisBusError::Thread(e.to_string()))?;
        Ok(RedisOnline {
            names,
            queue,
            waiting,
            refused: Mutex::default(),
        })
    }

    fn refused(&self) -> std::sync::MutexGuard<'_, HashSet<SessionId>> {
        self.refused.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queue the operation and wait for its batch's answer.
    async fn count(&self, kind: char, uin: Uin, session: &SessionId) -> StoreResult<i64> {
        let (reply, answer) = oneshot::channel();
        let op = Op {
            key: self.names.online(uin),
            op: format!("{kind}{session}"),
            reply,
        };
        self.waiting.fetch_add(1, Ordering::Relaxed);
        if self.queue.send(op).is_err() {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            return Err(backend("the presence thread ended"));
        }
        answer
            .await
            .unwrap_or_else(|_| Err(backend("the presence thread ended")))
    }
}

fn backend(what: &str) -> StoreError {
    StoreError::Backend(format!("redis presence: {what}"))
}

/// The node's Redis thread for the count: its connection, opened again when it dropped.
struct Counter {
    client: Client,
    connection: Option<Connection>,
    node: String,
    alive: String,
    waiting: Arc<AtomicUsize>,
}

impl Counter {
    /// Run batches until the [`RedisOnline`] is dropped.
    fn serve(mut self, ops: Receiver<Op>) {
        while let Ok(op) = ops.recv() {
            let mut batch = vec![op];
            while batch.len() < BATCH {
                match ops.try_recv() {
                    Ok(op) => batch.push(op),
                    Err(_) => break,
                }
            }
            self.waiting.fetch_sub(batch.len(), Ordering::Relaxed);
            let answers = self.run(&batch);
            for (i, op) in batch.into_iter().enumerate() {
                let answer = match &answers {
                    Ok(counts) => counts
                        .get(i)
                        .copied()
                        .ok_or_else(|| backend("a short answer")),
                    Err(e) => Err(backend(e)),
                };
                // A caller that stopped waiting is no matter: its operation is done.
                let _ = op.reply.send(answer);
            }
        }
    }

    /// One script run for the batch; an error is the same for each of its operations.
    fn run(&mut self, batch: &[Op]) -> Result<Vec<i64>, String> {
        let con = match self.connection.as_mut() {
            Some(con) => con,
            None => self
                .connection
                .insert(open(&self.client).map_err(|e| e.to_string())?),
        };
        let keys: Vec<&str> = batch.iter().map(|op| op.key.as_str()).collect();
        let mut cmd = eval(SCRIPT, &keys);
        cmd.arg(&self.node).arg(&self.alive);
        for op in batch {
            cmd.arg(&op.op);
        }
        cmd.query(con).map_err(|e| {
            if broken(&e) {
                self.connection = None;
            }
            e.to_string()
        })
    }
}

#[async_trait]
impl OnlineState for RedisOnline {
    async fn join(&self, uin: Uin, session: &SessionId) -> StoreResult<bool> {
        if self.waiting.load(Ordering::Relaxed) >= QUEUE {
            self.refused().insert(session.clone());
            return Err(backend("the presence queue is full"));
        }
        Ok(self.count('j', uin, session).await? == 1)
    }

    async fn leave(&self, uin: Uin, session: &SessionId) -> StoreResult<Option<bool>> {
        if self.refused().remove(session) {
            return Ok(None);
        }
        let left = self.count('l', uin, session).await?;
        Ok((left >= 0).then_some(left == 0))
    }
}
