//! The writer thread and its group commit.
//!
//! SQLite allows one writer at a time, and each commit costs an fsync. Rather than make
//! concurrent writers queue for both, every write is a closure sent to one thread. The
//! thread takes the first waiting job, then every other job already queued (up to
//! [`MAX_BATCH`]), runs them all inside one transaction (each in its own savepoint, so one
//! failing job does not undo the others), commits once, and only then answers each caller.
//! Under load many writes share one fsync; alone, a write pays for one. A small batch
//! waits a moment for company before it commits ([`DEFAULT_LINGER`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use confer_core::metrics::Metrics;
use confer_core::store::{StoreError, StoreResult};
use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use crate::backend;

/// The most jobs that share one transaction.
pub const MAX_BATCH: usize = 512;
/// When a batch has more than one write but fewer than [`LINGER_BELOW`], the writer waits
/// the linger ([`DEFAULT_LINGER`] unless configured) once for more before it commits. Each commit costs an fsync and rewrites
/// every page its writes touched, whatever their number; at a few thousand messages a
/// second the batches stayed at ~5 writes (~750 commits/s), and the fixed cost of a
/// commit (~150 us of CPU here) was most of the writer's time. A lone write (a quiet
/// server) commits at once. `confer-bench fanout --groups 100 --members 10 --rate 4000
/// --targets confer`, the server's CPU: 0.61-0.72 cores without waiting, 0.61 at 500 us,
/// 0.55-0.58 at 1 ms, 0.52 at 2 ms; 1 ms adds 0.6-1.4 ms to the median latency under load.
const LINGER_BELOW: usize = 16;
pub const DEFAULT_LINGER: Duration = Duration::from_millis(1);
/// Jobs waiting for the writer; senders wait (asynchronously) when it is full.
const QUEUE: usize = 4096;

/// Called with the commit's outcome, to answer the job's caller.
type Completion = Box<dyn FnOnce(Result<(), &StoreError>) + Send>;

/// A write: runs inside the batch's transaction and returns how to answer its caller.
type WriteJob = Box<dyn FnOnce(&Connection) -> Completion + Send>;

enum Job {
    Write(WriteJob),
    /// Answer once everything queued before is committed, after a WAL checkpoint.
    Checkpoint(oneshot::Sender<StoreResult<()>>),
}

/// The handle to the writer thread. The thread stops when the last handle is dropped.
pub struct Writer {
    /// Bounded queue into the writer thread.
    jobs: mpsc::Sender<Job>,
}

impl Writer {
    /// Start the writer thread; `linger` is how long a small batch waits for more
    /// (zero: never).
    pub fn start(conn: Connection, metrics: Arc<Metrics>, linger: Duration) -> StoreResult<Self> {
        let (jobs, rx) = mpsc::channel(QUEUE);
        std::thread::Builder::new()
            .name("confer-sqlite-writer".into())
            .spawn(move || run(conn, rx, metrics, linger))
            .map_err(|e| StoreError::Backend(format!("spawn writer: {e}")))?;
        Ok(Writer { jobs })
    }

    /// Run `f` in the next transaction; returns its result once the commit is durable.
    pub async fn write<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel::<StoreResult<T>>();
        let job = Job::Write(Box::new(move |conn: &Connection| {
            let result = in_savepoint(conn, f);
            Box::new(move |commit: Result<(), &StoreError>| {
                let outcome = match commit {
                    Ok(()) => result,
                    Err(e) => Err(StoreError::Backend(format!("commit failed: {e}"))),
                };
                let _ = tx.send(outcome);
            }) as Completion
        }));
        self.jobs
            .send(job)
            .await
            .map_err(|_| StoreError::Backend("storage writer stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Backend("storage writer stopped".into()))?
    }

    /// Wait for everything queued so far, then checkpoint the WAL into the main file.
    pub async fn checkpoint(&self) -> StoreResult<()> {
        let (tx, rx) = oneshot::channel();
        self.jobs
            .send(Job::Checkpoint(tx))
            .await
            .map_err(|_| StoreError::Backend("storage writer stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Backend("storage writer stopped".into()))?
    }
}

fn in_savepoint<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> StoreResult<T>,
) -> StoreResult<T> {
    control(conn, "SAVEPOINT job")?;
    let result = f(conn);
    if result.is_err() {
        control(conn, "ROLLBACK TO job")?;
    }
    control(conn, "RELEASE job")?;
    result
}

/// A transaction-control statement, from the statement cache: these run several times per
/// message, and parsing them each time showed in the writer's profile.
fn control(conn: &Connection, sql: &str) -> StoreResult<()> {
    crate::exec(conn, sql, []).map(|_| ()).map_err(backend)
}

fn run(conn: Connection, mut rx: mpsc::Receiver<Job>, metrics: Arc<Metrics>, linger: Duration) {
    let mut batch: Vec<WriteJob> = Vec::new();
    let mut next = rx.blocking_recv();
    while let Some(first) = next.take() {
        let mut checkpoint = None;
        let mut job = Some(first);
        // Take what is already queued, waiting at most once (see [`DEFAULT_LINGER`]). A checkpoint
        // ends the batch: it must see everything queued before it.
        let mut lingered = false;
        while let Some(j) = job.take() {
            match j {
                Job::Write(w) => batch.push(w),
                Job::Checkpoint(done) => checkpoint = Some(done),
            }
            if batch.len() < MAX_BATCH && checkpoint.is_none() {
                job = rx.try_recv().ok();
                if job.is_none()
                    && !lingered
                    && !linger.is_zero()
                    && (2..LINGER_BELOW).contains(&batch.len())
                {
                    lingered = true;
                    std::thread::sleep(linger);
                    job = rx.try_recv().ok();
                }
            }
        }
        if !batch.is_empty() {
            commit_batch(&conn, std::mem::take(&mut batch), &metrics);
        }
        if let Some(done) = checkpoint {
            let result = conn
                .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
                .map_err(backend);
            let _ = done.send(result);
        }
        next = rx.blocking_recv();
    }
    tracing::debug!("storage writer stopped");
}

fn commit_batch(conn: &Connection, batch: Vec<WriteJob>, metrics: &Metrics) {
    let started = Instant::now();
    let ops = batch.len();
    if let Err(e) = control(conn, "BEGIN IMMEDIATE") {
        tracing::error!(error = %e, "storage: cannot begin a transaction");
        // The jobs never ran: dropping them drops their reply senders, and each caller
        // gets a storage error.
        drop(batch);
        return;
    }
    let completions: Vec<Completion> = batch.into_iter().map(|job| job(conn)).collect();
    let commit = control(conn, "COMMIT");
    if commit.is_err() {
        let _ = control(conn, "ROLLBACK");
    }
    metrics.commit(started.elapsed(), ops);
    for done in completions {
        done(commit.as_ref().map(|_| ()));
    }
}
