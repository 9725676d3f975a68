//! One node's blocking Redis connections, used from async code: what the calls' state
//! (`calls.rs`) runs on. (The presence count, `online.rs`, batches its scripts on a
//! thread of its own over one connection opened by [`open`].)
//!
//! The commands are blocking (the `redis` crate without its async runtime, as the rest of
//! this crate), so they run on the runtime's blocking threads over [`CONNECTIONS`]
//! connections, taken in turn: at most that many operations of one user run at once,
//! which bounds them, and the others wait for their turn asynchronously (a storm of
//! connects holds a few blocking threads, not one each). A dropped connection is opened
//! again by the next operation on it; each command may take [`IO_TIMEOUT`] at most.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use confer_core::store::{StoreError, StoreResult};
use redis::{Connection, RedisResult};
use tokio::sync::Mutex;

use crate::RedisBusError;

/// How long one Redis command may take before the operation fails.
pub(crate) const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// How many connections a node's calls have: on a machine whose threads wait to be
/// scheduled, one at a time fell behind a storm.
pub(crate) const CONNECTIONS: usize = 4;

type Slot = Arc<Mutex<Option<Connection>>>;

/// [`CONNECTIONS`] connections, each opened again when it dropped.
pub(crate) struct Blocking {
    client: redis::Client,
    connections: Vec<Slot>,
    next: AtomicUsize,
    /// What it serves, for errors ("redis call state").
    what: &'static str,
}

impl Blocking {
    /// Connect now, and check Redis answers: a node whose state cannot reach Redis fails
    /// to start rather than keep a state of its own.
    pub(crate) fn connect(url: &str, what: &'static str) -> Result<Blocking, RedisBusError> {
        let client = redis::Client::open(url)?;
        let mut connection = open(&client)?;
        redis::cmd("PING").query::<String>(&mut connection)?;
        // The first is opened now (Redis answers); the others by their first operation.
        let mut connections = vec![Arc::new(Mutex::new(Some(connection)))];
        connections.resize_with(CONNECTIONS, Slot::default);
        Ok(Blocking {
            client,
            connections,
            next: AtomicUsize::new(0),
            what,
        })
    }

    /// Run `f` on the connection, on a blocking thread.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> RedisResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let client = self.client.clone();
        let turn = self.next.fetch_add(1, Ordering::Relaxed) % self.connections.len();
        let mut slot = self.connections[turn].clone().lock_owned().await;
        let run = move || {
            let con = match slot.as_mut() {
                Some(con) => con,
                None => slot.insert(open(&client)?),
            };
            let result = f(con);
            if let Err(e) = &result {
                if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() {
                    *slot = None;
                }
            }
            result
        };
        match tokio::task::spawn_blocking(run).await {
            Ok(result) => result.map_err(|e| StoreError::Backend(format!("redis: {e}"))),
            Err(e) => Err(StoreError::Backend(format!("{}: {e}", self.what))),
        }
    }
}

/// A connection whose every command may take [`IO_TIMEOUT`] at most.
pub(crate) fn open(client: &redis::Client) -> RedisResult<Connection> {
    let con = client.get_connection_with_timeout(IO_TIMEOUT)?;
    con.set_read_timeout(Some(IO_TIMEOUT))?;
    con.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(con)
}

/// `EVAL script` over `keys`; the caller adds the arguments.
pub(crate) fn eval(script: &str, keys: &[&str]) -> redis::Cmd {
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(script).arg(keys.len());
    for k in keys {
        cmd.arg(*k);
    }
    cmd
}
