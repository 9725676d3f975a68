//! The writer thread and its group commit.
//!
//! SQLite allows one writer at a time, and each commit costs an fsync. Rather than make
//! concurrent writers queue for both, every write is a closure sent to one thread. The
//! thread takes the first waiting job, then every other job already queued (up to
//! [`MAX_BATCH`]), runs them all inside one transaction (each in its own savepoint, so one
//! failing job does not undo the others), commits once, and only then answers each caller.
//! A job that cannot fail part-way may go without the savepoint ([`Writer::write_unguarded`]):
//! the savepoint copied every page the job touched into a sub-journal, 18% of an append's
//! instructions.
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
type WriteJob = Box<dyn FnOnce(&Connection) -> Ran + Send>;

/// What running a write left.
struct Ran {
    done: Completion,
    /// An unguarded write failed after it had changed rows: only rolling back the whole
    /// transaction undoes that.
    poisoned: bool,
}

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
    /// `f` runs in a savepoint of its own: when it fails, what it changed is undone and
    /// the other writes of the batch go on.
    pub async fn write<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        self.submit(f, true).await
    }

    /// [`write`](Self::write) without the savepoint, for a job that fails only before it
    /// changes anything (a statement that fails undoes itself) or, after that, only as the
    /// disk does. Should it fail after changing rows all the same, the writer cannot undo
    /// it alone: the whole batch is rolled back and every write in it fails.
    pub async fn write_unguarded<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        self.submit(f, false).await
    }

    async fn submit<T, F>(&self, f: F, guarded: bool) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel::<StoreResult<T>>();
        self.jobs
            .send(Job::Write(write_job(f, guarded, tx)))
            .await
            .map_err(|_| StoreError::Backend("storage writer stopped".into()))?;
        rx.await.map_err(|_| {
            StoreError::Backend(
                "write not run: the storage writer stopped or its batch failed".into(),
            )
        })?
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

/// `f` as the writer runs it, answering `tx` once the batch's commit is known.
fn write_job<T, F>(f: F, guarded: bool, tx: oneshot::Sender<StoreResult<T>>) -> WriteJob
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
{
    Box::new(move |conn: &Connection| {
        let (result, poisoned) = if guarded {
            (in_savepoint(conn, f), false)
        } else {
            let before = conn.total_changes();
            let result = f(conn);
            let poisoned = result.is_err() && conn.total_changes() != before;
            (result, poisoned)
        };
        let done = Box::new(move |commit: Result<(), &StoreError>| {
            let outcome = match commit {
                Ok(()) => result,
                Err(e) => Err(StoreError::Backend(format!("commit failed: {e}"))),
            };
            let _ = tx.send(outcome);
        }) as Completion;
        Ran { done, poisoned }
    })
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
    let mut poisoned = false;
    let mut completions: Vec<Completion> = Vec::with_capacity(ops);
    for job in batch {
        // SQLite rolls the whole transaction back by itself on some errors (a full disk,
        // an I/O error). The jobs after that would each commit on their own while their
        // callers were told the batch failed: they are not run (dropped, so each caller
        // gets a storage error).
        if conn.is_autocommit() {
            poisoned = true;
            break;
        }
        let ran = job(conn);
        poisoned |= ran.poisoned;
        completions.push(ran.done);
    }
    let commit = if poisoned {
        Err(StoreError::Backend(
            "a write failed part-way; its batch was rolled back".into(),
        ))
    } else {
        control(conn, "COMMIT")
    };
    if commit.is_err() {
        let _ = control(conn, "ROLLBACK");
    }
    metrics.commit(started.elapsed(), ops);
    for done in completions {
        done(commit.as_ref().map(|_| ()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec;

    type Answer = oneshot::Receiver<StoreResult<()>>;

    fn table() -> Connection {
        let conn = Connection::open_in_memory().expect("in-memory database");
        conn.execute_batch("CREATE TABLE t (v INTEGER PRIMARY KEY);")
            .expect("table");
        conn
    }

    /// A job inserting `values` one statement each, and failing after them if `fail`.
    fn inserts(values: &[i64], fail: bool, guarded: bool) -> (WriteJob, Answer) {
        let values = values.to_vec();
        let (tx, rx) = oneshot::channel();
        let f = move |conn: &Connection| {
            for v in &values {
                exec(conn, "INSERT INTO t (v) VALUES (?1)", [v]).map_err(backend)?;
            }
            if fail {
                return Err(StoreError::NotFound);
            }
            Ok(())
        };
        (write_job(f, guarded, tx), rx)
    }

    fn stored(conn: &Connection) -> Vec<i64> {
        let mut stmt = conn.prepare("SELECT v FROM t ORDER BY v").expect("select");
        let rows = stmt.query_map([], |r| r.get(0)).expect("rows");
        rows.map(|r| r.expect("row")).collect()
    }

    fn answer(mut rx: Answer) -> StoreResult<()> {
        rx.try_recv().expect("answered once the batch ended")
    }

    #[test]
    fn a_guarded_failure_is_undone_alone() {
        let conn = table();
        let (ok, ok_rx) = inserts(&[1], false, true);
        let (bad, bad_rx) = inserts(&[2, 3], true, true);
        commit_batch(&conn, vec![ok, bad], &Metrics::default());
        assert_eq!(stored(&conn), vec![1]);
        assert!(answer(ok_rx).is_ok());
        assert!(matches!(answer(bad_rx), Err(StoreError::NotFound)));
    }

    #[test]
    fn an_unguarded_failure_before_any_change_leaves_the_batch_alone() {
        let conn = table();
        let (ok, ok_rx) = inserts(&[1], false, false);
        // Its insert fails (the value exists) and undoes itself.
        let (clash, clash_rx) = inserts(&[1], false, false);
        commit_batch(&conn, vec![ok, clash], &Metrics::default());
        assert_eq!(stored(&conn), vec![1]);
        assert!(answer(ok_rx).is_ok());
        assert!(answer(clash_rx).is_err());
    }

    #[test]
    fn jobs_after_the_transaction_vanished_are_not_run() {
        let conn = table();
        let (ok, ok_rx) = inserts(&[1], false, false);
        // As SQLite does by itself on a full disk: the transaction is rolled back.
        let (tx, vanish_rx) = oneshot::channel();
        let vanish = write_job(
            |conn: &Connection| {
                conn.execute_batch("ROLLBACK").map_err(backend)?;
                Err::<(), _>(StoreError::Backend("disk full".into()))
            },
            false,
            tx,
        );
        let (after, after_rx) = inserts(&[2], false, false);
        commit_batch(&conn, vec![ok, vanish, after], &Metrics::default());
        assert_eq!(
            stored(&conn),
            Vec::<i64>::new(),
            "nothing committed on its own"
        );
        assert!(answer(ok_rx).is_err());
        assert!(answer(vanish_rx).is_err());
        let mut after_rx = after_rx;
        assert!(
            after_rx.try_recv().is_err(),
            "never run, so never answered Ok"
        );
    }

    #[test]
    fn an_unguarded_failure_after_a_change_rolls_back_the_batch() {
        let conn = table();
        let (ok, ok_rx) = inserts(&[1], false, true);
        let (part_way, part_rx) = inserts(&[2], true, false);
        commit_batch(&conn, vec![ok, part_way], &Metrics::default());
        assert_eq!(stored(&conn), Vec::<i64>::new());
        assert!(answer(ok_rx).is_err(), "its commit never happened");
        assert!(answer(part_rx).is_err());
        // The connection is usable for the next batch.
        let (next, next_rx) = inserts(&[4], false, false);
        commit_batch(&conn, vec![next], &Metrics::default());
        assert_eq!(stored(&conn), vec![4]);
        assert!(answer(next_rx).is_ok());
    }
}
