//! # confer-store-sqlite: the embedded storage backend
//!
//! One SQLite file (`confer.db`) in the data folder, in WAL mode with `synchronous=FULL`,
//! so a committed transaction survives power loss and readers never block the writer.
//!
//! ## Layout
//! - [`writer`]: the one writer thread and its group commit: many concurrent writes share
//!   one transaction and one fsync; each caller hears back only after that commit.
//! - `cache`: conversations as last committed, so posting a message needs no query to
//!   check its group.
//! - [`nonces`]: the window in which a retried message (same nonce) is recognized.
//! - `changes`: the change numbers clients catch up by.
//! - `migrations`: the schema, embedded and applied at open.
//! - `accounts`, `tokens`, `conversations`, `messages`, `devices`, `calls`,
//!   `attachments`, `hub` (the edge-to-hub sync), `push` (the push outbox): the core's
//!   storage traits, one file per aggregate.

mod accounts;
mod attachments;
mod cache;
mod calls;
mod changes;
mod conversations;
mod devices;
mod hub;
mod messages;
mod migrations;
pub mod nonces;
mod push;
mod tokens;
pub mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use confer_core::metrics::Metrics;
use confer_core::store::{Storage, StoreError, StoreResult};
use rusqlite::{Connection, OpenFlags};

use nonces::{NonceOptions, NonceWindow};
use writer::Writer;

/// The file name of the database inside the data folder.
pub const DB_FILE: &str = "confer.db";

/// The SQLite backend: one writer thread, a small pool of reader connections.
pub struct SqliteStore {
    path: PathBuf,
    writer: Writer,
    /// Idle reader connections. A std `Mutex` because it is held only to pop or push one
    /// connection, never while a query runs.
    readers: Arc<Mutex<Vec<Connection>>>,
    /// One permit per reader connection there may be ([`READERS`]); a read waits for one.
    reader_slots: Arc<tokio::sync::Semaphore>,
    conversations: cache::ConversationCache,
    /// Recent nonces; used by the writer thread alone (see [`nonces`]).
    nonces: Arc<Mutex<NonceWindow>>,
    /// The next change number; taken by the writer thread alone (see `changes`).
    clock: Arc<changes::Clock>,
    /// Users who may hold a device token (`push.rs`): read on every post.
    token_holders: push::TokenHolders,
}

/// How the SQLite backend runs; [`Default`] is what `confer serve` uses unless configured.
#[derive(Clone, Copy, Debug)]
pub struct SqliteOptions {
    /// How long a small batch of writes waits for more before its commit (zero: never;
    /// see [`writer::DEFAULT_LINGER`]).
    pub linger: std::time::Duration,
    /// How long and how many nonces a retry is recognized by.
    pub nonces: NonceOptions,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            linger: writer::DEFAULT_LINGER,
            nonces: NonceOptions::default(),
        }
    }
}

impl SqliteStore {
    /// Open (creating if needed) the database in `data_dir` and bring its schema up to date.
    pub fn open(data_dir: &Path, metrics: Arc<Metrics>) -> StoreResult<Self> {
        Self::open_with(data_dir, metrics, SqliteOptions::default())
    }

    /// [`Self::open`] with other options.
    pub fn open_with(
        data_dir: &Path,
        metrics: Arc<Metrics>,
        options: SqliteOptions,
    ) -> StoreResult<Self> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| StoreError::Backend(format!("create {}: {e}", data_dir.display())))?;
        let path = data_dir.join(DB_FILE);
        let mut conn = Connection::open(&path).map_err(backend)?;
        configure(&conn)?;
        conn.execute_batch(&format!("PRAGMA cache_size = -{WRITER_CACHE_KIB};"))
            .map_err(backend)?;
        migrations::run(&mut conn)?;
        let mut nonces = NonceWindow::new(options.nonces);
        nonces
            .load(&conn, confer_core::model::now_us())
            .map_err(backend)?;
        let clock = Arc::new(changes::Clock::load(&conn).map_err(backend)?);
        let token_holders = push::TokenHolders::load(&conn).map_err(backend)?;
        push::release_claims(&conn, confer_core::model::now_us()).map_err(backend)?;
        let writer = Writer::start(conn, metrics, options.linger)?;
        Ok(SqliteStore {
            path,
            writer,
            readers: Arc::new(Mutex::new(Vec::new())),
            reader_slots: Arc::new(tokio::sync::Semaphore::new(READERS)),
            conversations: cache::ConversationCache::default(),
            nonces: Arc::new(Mutex::new(nonces)),
            clock,
            token_holders,
        })
    }

    /// Run a read-only query on a pooled connection, off the async executor.
    pub(crate) async fn read<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let readers = self.readers.clone();
        let path = self.path.clone();
        let slot = self
            .reader_slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Backend("storage readers closed".into()))?;
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            let pooled = readers.lock().unwrap_or_else(|e| e.into_inner()).pop();
            let conn = match pooled {
                Some(conn) => conn,
                None => open_reader(&path)?,
            };
            let result = f(&conn).map_err(backend);
            readers.lock().unwrap_or_else(|e| e.into_inner()).push(conn);
            result
        })
        .await
        .map_err(|e| StoreError::Backend(format!("reader task: {e}")))?
    }

    /// Run a write in the next group commit; returns once it is durable.
    pub(crate) async fn write<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        self.writer.write(f).await
    }

    /// [`write`](Self::write) without a savepoint, for a write that cannot fail part-way
    /// ([`Writer::write_unguarded`]).
    pub(crate) async fn write_unguarded<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        self.writer.write_unguarded(f).await
    }
}

#[async_trait]
impl Storage for SqliteStore {
    async fn flush(&self) -> StoreResult<()> {
        self.writer.checkpoint().await
    }
}

/// WAL pages after which a commit also checkpoints (SQLite's default is 1,000). Each
/// message rewrites a few index pages that later messages rewrite again; the longer the
/// WAL runs between checkpoints, the more of those copies one checkpoint collapses into
/// one. The checkpoint was 27% of the writer's time at the default; at 10,000 (a WAL of
/// up to ~40 MB) `cargo bench -p confer-store-sqlite --bench append` goes from ~25,000 to
/// ~30,000 durable appends/s.
const WAL_CHECKPOINT_PAGES: u32 = 10_000;

/// The writer's page cache, in KiB (SQLite's default is 2,000). Every message touches
/// a few index leaves of its own conversation; with a few hundred busy conversations the
/// default cache no longer holds them, and the writer re-read pages from the file (~8% of
/// its time in `readDbPage` during `cargo bench -p confer-store-sqlite --bench append`).
/// The cache grows only as pages are used.
const WRITER_CACHE_KIB: u32 = 32 * 1024;

/// Reader connections at most. Each keeps its own page cache ([`READER_CACHE_KIB`]) and
/// lives as long as the store; with no bound a burst of logins opened one per blocking
/// thread (a dozen at 10,000 logins), ~2 MB each, kept for good. Two cores gain nothing
/// from more concurrent reads than this.
const READERS: usize = 4;

/// A reader's page cache, in KiB (SQLite's default is 2,000). Readers look up tokens,
/// accounts and message pages; the operating system caches the file below them.
const READER_CACHE_KIB: u32 = 1024;

/// Statements kept prepared per connection (see [`exec`]).
const STATEMENT_CACHE: usize = 64;

fn configure(conn: &Connection) -> StoreResult<()> {
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         PRAGMA foreign_keys = ON;
         PRAGMA busy_timeout = 5000;
         PRAGMA wal_autocheckpoint = {WAL_CHECKPOINT_PAGES};"
    ))
    .map_err(backend)
}

fn open_reader(path: &Path) -> StoreResult<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(backend)?;
    conn.execute_batch(&format!(
        "PRAGMA busy_timeout = 5000; PRAGMA cache_size = -{READER_CACHE_KIB};"
    ))
    .map_err(backend)?;
    Ok(conn)
}

pub(crate) fn backend(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// Run one statement from the connection's statement cache: hot statements are parsed
/// once per connection, not once per call (SQL parsing showed in the ingest profile).
pub(crate) fn exec<P: rusqlite::Params>(
    conn: &Connection,
    sql: &str,
    params: P,
) -> rusqlite::Result<usize> {
    conn.prepare_cached(sql)?.execute(params)
}

/// [`exec`] for a query that returns one row.
pub(crate) fn query_row<T, P, F>(
    conn: &Connection,
    sql: &str,
    params: P,
    f: F,
) -> rusqlite::Result<T>
where
    P: rusqlite::Params,
    F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
{
    conn.prepare_cached(sql)?.query_row(params, f)
}

/// An update that must change exactly the row it names: no row is `NotFound`.
pub(crate) fn one_row(changed: rusqlite::Result<usize>) -> StoreResult<()> {
    match changed.map_err(backend)? {
        0 => Err(StoreError::NotFound),
        _ => Ok(()),
    }
}

/// Map a unique-constraint failure to `Conflict`, anything else to `Backend`.
pub(crate) fn conflict_or_backend(e: rusqlite::Error, what: &str) -> StoreError {
    match e {
        rusqlite::Error::SqliteFailure(err, _)
            if err.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            StoreError::Conflict(what.to_string())
        }
        other => backend(other),
    }
}

/// SQLite stores signed 64-bit integers; ids beyond that range are refused.
pub(crate) fn to_sql_id(id: u64) -> StoreResult<i64> {
    i64::try_from(id).map_err(|_| StoreError::Backend(format!("id {id} out of range")))
}

#[cfg(test)]
mod tests;
