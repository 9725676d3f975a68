//! One node's blocking Redis connection, used from async code: what the calls' state
//! (`calls.rs`) runs on, and how a connection is opened and found broken (the presence
//! count, `online.rs`, batches its scripts on a thread of its own).
//!
//! The commands are blocking (the `redis` crate without its async runtime, as the rest of
//! this crate), so they run on the runtime's blocking threads over one connection: the
//! operations of one user of it take turns, which bounds them, and they wait for their
//! turn asynchronously (a storm of connects holds one blocking thread, not one each). A
//! dropped connection is opened again by the next operation; each command may take
//! [`IO_TIMEOUT`] at most.

use std::sync::Arc;
use std::time::Duration;

use confer_core::store::{StoreError, StoreResult};
use redis::{Connection, RedisResult};
use tokio::sync::Mutex;

use crate::RedisBusError;

/// How long one Redis command may take before the operation fails.
pub(crate) const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection, opened again when it dropped.
pub(crate) struct Blocking {
    client: redis::Client,
    connection: Arc<Mutex<Option<Connection>>>,
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
        Ok(Blocking {
            client,
            connection: Arc::new(Mutex::new(Some(connection))),
            what,
        })
    }

    /// Run `f` on the connection, on a blocking thread.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> RedisResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let client = self.client.clone();
        let mut slot = self.connection.clone().lock_owned().await;
        let run = move || {
            let con = match slot.as_mut() {
                Some(con) => con,
                None => slot.insert(open(&client)?),
            };
            let result = f(con);
            if result.as_ref().is_err_and(broken) {
                *slot = None;
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

/// Whether `e` leaves its connection unusable, to be opened again.
pub(crate) fn broken(e: &redis::RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_timeout()
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
