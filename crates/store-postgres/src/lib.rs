//! # confer-store-postgres: the PostgreSQL storage backend
//!
//! The backend for several confer nodes over one database (`database_url =
//! "postgres://…"`). It implements every storage trait of `confer_core::store` with the
//! same semantics as the embedded SQLite backend, but with no assumption that this
//! process is the database's only writer: nothing is cached between calls, and every rule
//! SQLite's one writer thread gave for free is a row lock or a constraint here.
//!
//! ## Layout
//! - `migrations`: the schema, versioned in `confer_schema`, applied at open under an
//!   advisory lock (nodes starting together migrate once).
//! - `changes`: the change numbers clients catch up by (one clock row, in commit order).
//! - `accounts`, `tokens`, `conversations`, `messages`, `devices`, `calls`,
//!   `attachments`, `hub` (the edge-to-hub sync): the core's storage traits, one file per
//!   aggregate.
//!
//! ## Durability and group commit
//! A write returns after `COMMIT` returned, with PostgreSQL's `synchronous_commit` on
//! (each connection asks for it, whatever the server's default): the change is in the flushed WAL. Writes
//! run on a bounded pool of connections ([`PgOptions::pool_size`]); PostgreSQL flushes
//! the WAL of transactions that commit at the same moment together (its own group
//! commit), so the pool's concurrent commits share fsyncs the way SQLite's writer thread
//! batches them.

mod accounts;
mod appender;
mod attachments;
mod calls;
mod changes;
mod conversations;
mod devices;
mod hub;
mod messages;
mod migrations;
mod push;
mod tokens;

use std::sync::{Arc, OnceLock};

use appender::Appender;
use async_trait::async_trait;
use confer_core::metrics::Metrics;
use confer_core::store::{Storage, StoreError, StoreResult};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::error::SqlState;
use tokio_postgres::NoTls;

/// How the PostgreSQL backend runs.
#[derive(Clone)]
pub struct PgOptions {
    /// Connections this node holds at most. Every node holds its own pool, so the sum
    /// over nodes (plus the administrator's own) must stay under the server's
    /// `max_connections` (100 unless configured).
    pub pool_size: usize,
    /// Where the appender's commits are counted (`confer_storage_commit_seconds`, as the
    /// SQLite writer's are).
    pub metrics: Arc<Metrics>,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            pool_size: 16,
            metrics: Arc::default(),
        }
    }
}

/// The PostgreSQL backend: a bounded pool of connections to one database.
pub struct PgStore {
    pool: Pool,
    /// The group-commit task for appends, started by the first one (on its runtime).
    appender: OnceLock<Appender>,
    metrics: Arc<Metrics>,
}

impl PgStore {
    /// Connect to `url` (`postgres://user:password@host:port/database`) and bring the
    /// schema up to date.
    ///
    /// Synchronous, so that it can be called where the SQLite backend is opened: the
    /// migrations run on a connection of their own, on a thread of their own; the pool's
    /// connections are made on the caller's runtime as they are first needed.
    pub fn open(url: &str, options: PgOptions) -> StoreResult<Self> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Backend(format!("database_url: {e}")))?;
        // Acknowledged means durable, whatever the server's or the role's default says.
        let session = format!(
            "{} -c synchronous_commit=on",
            config.get_options().unwrap_or_default()
        );
        config.options(session.trim());
        let migrate_config = config.clone();
        std::thread::scope(|scope| {
            scope
                .spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| StoreError::Backend(format!("migration runtime: {e}")))?;
                    runtime.block_on(migrations::run(&migrate_config))
                })
                .join()
                .map_err(|_| StoreError::Backend("the migration thread panicked".into()))?
        })?;
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(1))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::Backend(format!("connection pool: {e}")))?;
        Ok(PgStore {
            pool,
            appender: OnceLock::new(),
            metrics: options.metrics,
        })
    }

    /// This node's append task (`appender.rs`); must be called on a Tokio runtime.
    pub(crate) fn appender(&self) -> &Appender {
        self.appender
            .get_or_init(|| Appender::start(self.pool.clone(), self.metrics.clone()))
    }

    /// A pooled connection; waits while every one is busy.
    pub(crate) async fn client(&self) -> StoreResult<deadpool_postgres::Client> {
        self.pool
            .get()
            .await
            .map_err(|e| StoreError::Backend(format!("database connection: {e}")))
    }
}

#[async_trait]
impl Storage for PgStore {
    async fn flush(&self) -> StoreResult<()> {
        // Every write was committed before it returned; nothing is pending.
        Ok(())
    }

    /// Several nodes write one database.
    fn shared(&self) -> bool {
        true
    }
}

pub(crate) fn backend(e: tokio_postgres::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// Map a unique-constraint failure to `Conflict`, anything else to `Backend`.
pub(crate) fn conflict_or_backend(e: tokio_postgres::Error, what: &str) -> StoreError {
    if e.code() == Some(&SqlState::UNIQUE_VIOLATION) {
        StoreError::Conflict(what.to_string())
    } else {
        backend(e)
    }
}

/// A row that names another that does not exist (a foreign key) is `NotFound`.
pub(crate) fn missing_or_backend(e: tokio_postgres::Error) -> StoreError {
    if e.code() == Some(&SqlState::FOREIGN_KEY_VIOLATION) {
        StoreError::NotFound
    } else {
        backend(e)
    }
}

/// An update that must change exactly the row it names: no row is `NotFound`.
pub(crate) fn one_row(changed: Result<u64, tokio_postgres::Error>) -> StoreResult<()> {
    match changed.map_err(backend)? {
        0 => Err(StoreError::NotFound),
        _ => Ok(()),
    }
}

/// PostgreSQL's `BIGINT` is signed 64-bit; ids beyond that range are refused.
pub(crate) fn to_sql_id(id: u64) -> StoreResult<i64> {
    i64::try_from(id).map_err(|_| StoreError::Backend(format!("id {id} out of range")))
}

/// A stored id (never negative: every id came through [`to_sql_id`] or a sequence).
pub(crate) fn from_sql_id(id: i64) -> u64 {
    u64::try_from(id).unwrap_or(0)
}
