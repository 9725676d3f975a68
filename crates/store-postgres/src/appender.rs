//! Group commit of appends on PostgreSQL: each node's new messages share transactions.
//!
//! Every new message takes a change number, and a change number holds the one clock row
//! until its transaction commits (`changes.rs`). With one transaction per message, the
//! whole database committed one message per WAL flush: ~700 acknowledged messages a
//! second on this machine however many nodes posted, most of PostgreSQL's time spent
//! waiting on that row. So appends go through one task per node, as SQLite's go through
//! its writer thread: it takes the first waiting append and every other already queued
//! (up to [`MAX_BATCH`]), writes them all in one transaction (a fixed number of
//! statements whatever the batch's size: the rows go in as arrays), commits once, and
//! only then answers each caller. Alone, an append pays for one commit; under load a
//! node's appends share it, and the clock is held once per batch instead of per message.
//!
//! **Same answers as one append at a time:** a conversation that does not exist answers
//! `NotFound` for its own appends only; a nonce already stored answers with the stored
//! original (`duplicate`), and two copies of one retry in the same batch store it once,
//! the second answered as the retry of the first; seqs stay gapless per conversation and
//! ids rise with seqs, because the batch walks its appends in order after locking.
//!
//! **Lock order:** a batch locks all of its conversations' rows first, in ascending
//! `group_id` (one statement, `ORDER BY … FOR NO KEY UPDATE`), then the clock. Every
//! other numbered write locks at most one conversation and then the clock, and other
//! nodes' batches take theirs in the same order, so no two transactions wait for each
//! other in a circle.
//!
//! **A batch that fails** as a whole before its COMMIT (the database said something the
//! batch did not expect, a deadlock it was chosen to break) is rolled back and each of
//! its appends is tried again alone, so one bad append fails only itself. A failed COMMIT
//! is not tried again: it may have taken effect, and a message without a nonce would be
//! stored twice. Each caller gets the error, as it would alone.
//!
//! **Bounded:** at most [`QUEUE`] appends and [`QUEUE_BYTES`] of their content wait for
//! the task; callers beyond that wait (asynchronously) for room.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use confer_core::metrics::Metrics;
use confer_core::model::{Appended, Message, NewMessage, PushEntry, PushKind};
use confer_core::store::{StoreError, StoreResult};
use deadpool_postgres::Pool;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

use crate::changes::Clock;
use crate::messages::{encode_files, message_row, COLUMNS};
use crate::{backend, from_sql_id, to_sql_id};

/// The most appends that share one transaction.
pub(crate) const MAX_BATCH: usize = 512;
/// Appends waiting for the task, at most.
const QUEUE: usize = 4096;
/// Bytes of content (text, attachments, body, files) waiting for the task, at most.
const QUEUE_BYTES: usize = 32 << 20;

type Reply = oneshot::Sender<StoreResult<Appended>>;

struct Job {
    new: NewMessage,
    reply: Reply,
    /// Its share of [`QUEUE_BYTES`], given back when the job is answered.
    _room: OwnedSemaphorePermit,
}

/// The handle to one node's append task; the task ends when the handle is dropped.
pub(crate) struct Appender {
    jobs: mpsc::Sender<Job>,
    room: Arc<Semaphore>,
}

impl Appender {
    /// Start the task on the current Tokio runtime; each batch's transaction is counted
    /// in `metrics`.
    pub(crate) fn start(pool: Pool, metrics: Arc<Metrics>) -> Self {
        let (jobs, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(pool, rx, metrics));
        Appender {
            jobs,
            room: Arc::new(Semaphore::new(QUEUE_BYTES)),
        }
    }

    /// Append `new` in the next batch; answers once that batch's commit is known.
    pub(crate) async fn append(&self, new: NewMessage) -> StoreResult<Appended> {
        let size = u32::try_from(content_bytes(&new).min(QUEUE_BYTES)).unwrap_or(u32::MAX);
        let room = self
            .room
            .clone()
            .acquire_many_owned(size)
            .await
            .map_err(|_| StoreError::Backend("message appender stopped".into()))?;
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job {
                new,
                reply,
                _room: room,
            })
            .await
            .map_err(|_| StoreError::Backend("message appender stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Backend("message appender stopped".into()))?
    }
}

/// What a queued append weighs against [`QUEUE_BYTES`].
fn content_bytes(new: &NewMessage) -> usize {
    let text = |s: &Option<String>| s.as_ref().map_or(0, String::len);
    let files: usize = new
        .files
        .iter()
        .map(|f| f.filename.len() + f.mimetype.len() + 32)
        .sum();
    128 + new.sender_login.len()
        + text(&new.text)
        + text(&new.attachments)
        + text(&new.nonce)
        + new.body.as_ref().map_or(0, |b| b.as_str().len())
        + files
        + new.push_to.len() * 8
}

async fn run(pool: Pool, mut rx: mpsc::Receiver<Job>, metrics: Arc<Metrics>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        commit(&pool, batch, &metrics).await;
    }
    tracing::debug!("message appender stopped");
}

/// Write `batch` in one transaction and answer each append; on a failure of the whole,
/// try each alone (see the module doc).
async fn commit(pool: &Pool, batch: Vec<Job>, metrics: &Metrics) {
    let news: Vec<&NewMessage> = batch.iter().map(|j| &j.new).collect();
    let started = Instant::now();
    match write(pool, &news).await {
        Ok(plans) => {
            metrics.commit(started.elapsed(), batch.len());
            answer(batch, plans)
        }
        // Whether a failed COMMIT took effect is unknown: trying again could store a
        // message twice, so each caller hears of the failure (as it would alone).
        Err(Failed::AtCommit(e)) | Err(Failed::Before(e)) if batch.len() == 1 => {
            if let Some(job) = batch.into_iter().next() {
                let _ = job.reply.send(Err(e));
            }
        }
        Err(Failed::AtCommit(e)) => {
            tracing::warn!(error = %e, appends = batch.len(), "a batch's commit failed");
            for job in batch {
                let _ = job.reply.send(Err(StoreError::Backend(e.to_string())));
            }
        }
        Err(Failed::Before(e)) => {
            tracing::warn!(error = %e, appends = batch.len(), "a batch of appends failed; trying each alone");
            for job in batch {
                match write(pool, &[&job.new]).await {
                    Ok(plans) => answer(vec![job], plans),
                    Err(Failed::Before(e) | Failed::AtCommit(e)) => {
                        let _ = job.reply.send(Err(e));
                    }
                }
            }
        }
    }
}

/// What a batch decided for one of its appends.
enum Plan {
    /// Its conversation does not exist.
    Missing,
    /// A retry of a stored message: that message.
    Stored(Arc<Message>),
    /// A retry of an earlier append of the same batch (its index).
    SameAs(usize),
    /// Stored now, with this seq and id.
    New { seq: i64, id: i64 },
}

/// Answer each job of a committed batch, building the stored messages from the appends.
fn answer(batch: Vec<Job>, plans: Vec<Plan>) {
    let mut made: Vec<Option<Arc<Message>>> = Vec::with_capacity(batch.len());
    for (job, plan) in batch.into_iter().zip(plans) {
        let outcome = match plan {
            Plan::Missing => Err(StoreError::NotFound),
            Plan::Stored(message) => Ok(Appended {
                message,
                duplicate: true,
            }),
            Plan::SameAs(i) => match made.get(i).cloned().flatten() {
                Some(message) => Ok(Appended {
                    message,
                    duplicate: true,
                }),
                None => Err(StoreError::Backend("a retry lost its original".into())),
            },
            Plan::New { seq, id } => {
                let message = Arc::new(job.new.into_stored(from_sql_id(id), from_sql_id(seq)));
                made.push(Some(message.clone()));
                let _ = job.reply.send(Ok(Appended {
                    message,
                    duplicate: false,
                }));
                continue;
            }
        };
        made.push(None);
        let _ = job.reply.send(outcome);
    }
}

/// A retry's identity: conversation, sender, nonce.
type RetryKey<'a> = (i64, i64, &'a str);

/// How a batch failed.
enum Failed {
    /// Before its COMMIT was sent: it was rolled back, nothing of it is stored.
    Before(StoreError),
    /// At its COMMIT: it may or may not be stored.
    AtCommit(StoreError),
}

/// Write the appends in one transaction and commit; the plan for each, in order.
async fn write(pool: &Pool, news: &[&NewMessage]) -> Result<Vec<Plan>, Failed> {
    let mut client = pool
        .get()
        .await
        .map_err(|e| Failed::Before(StoreError::Backend(format!("database connection: {e}"))))?;
    let tx = client
        .transaction()
        .await
        .map_err(|e| Failed::Before(backend(e)))?;
    // An error drops `tx` unfinished, which rolls it back.
    let plans = prepare(&tx, news).await.map_err(Failed::Before)?;
    tx.commit()
        .await
        .map_err(|e| Failed::AtCommit(backend(e)))?;
    Ok(plans)
}

/// Everything of [`write`] but its COMMIT: lock, plan, insert.
async fn prepare(
    tx: &deadpool_postgres::Transaction<'_>,
    news: &[&NewMessage],
) -> StoreResult<Vec<Plan>> {
    let ids = news
        .iter()
        .map(|n| Ok((to_sql_id(n.group_id.0)?, to_sql_id(n.sender.0)?)))
        .collect::<StoreResult<Vec<(i64, i64)>>>()?;
    let mut groups: Vec<i64> = ids.iter().map(|(g, _)| *g).collect();
    groups.sort_unstable();
    groups.dedup();

    // Every conversation's row, in ascending order (the lock order of the module doc).
    let lock = tx
        .prepare_cached(
            "SELECT group_id, last_seq FROM conversations WHERE group_id = ANY($1)
             ORDER BY group_id FOR NO KEY UPDATE",
        )
        .await
        .map_err(backend)?;
    let mut last_seq: HashMap<i64, i64> = HashMap::new();
    for row in tx.query(&lock, &[&groups]).await.map_err(backend)? {
        last_seq.insert(
            row.try_get(0).map_err(backend)?,
            row.try_get(1).map_err(backend)?,
        );
    }

    // Retries already stored, found under the locks (a retry on another node waits).
    let keys: Vec<RetryKey> = news
        .iter()
        .zip(&ids)
        .filter(|(_, (g, _))| last_seq.contains_key(g))
        .filter_map(|(n, (g, s))| n.nonce.as_deref().map(|nonce| (*g, *s, nonce)))
        .collect();
    let mut originals: HashMap<(i64, i64, String), Arc<Message>> = HashMap::new();
    if !keys.is_empty() {
        let find = tx
            .prepare_cached(&format!(
                "SELECT DISTINCT ON (group_id, sender, nonce) {COLUMNS}
                 FROM messages JOIN unnest($1::bigint[], $2::bigint[], $3::text[]) AS k(g, s, n)
                   ON group_id = k.g AND sender = k.s AND nonce = k.n
                 WHERE nonce IS NOT NULL
                 ORDER BY group_id, sender, nonce, message_id DESC"
            ))
            .await
            .map_err(backend)?;
        let (g, s, n): (Vec<i64>, Vec<i64>, Vec<&str>) = unzip3(&keys);
        for row in tx.query(&find, &[&g, &s, &n]).await.map_err(backend)? {
            let message = message_row(&row).map_err(backend)?;
            let key = (
                to_sql_id(message.group_id.0)?,
                to_sql_id(message.sender.0)?,
                message.nonce.clone().unwrap_or_default(),
            );
            originals.insert(key, Arc::new(message));
        }
    }

    // Walk the appends in order: seqs and numbers are taken as they would be one by one.
    let mut plans = Vec::with_capacity(news.len());
    let mut first_of: HashMap<RetryKey, usize> = HashMap::new();
    let mut changed: HashMap<i64, i64> = HashMap::new();
    for (i, (new, &(group, sender))) in news.iter().zip(&ids).enumerate() {
        let Some(last) = last_seq.get_mut(&group) else {
            plans.push(Plan::Missing);
            continue;
        };
        if let Some(nonce) = new.nonce.as_deref() {
            if let Some(original) = originals.get(&(group, sender, nonce.to_string())) {
                plans.push(Plan::Stored(original.clone()));
                continue;
            }
            if let Some(&first) = first_of.get(&(group, sender, nonce)) {
                plans.push(Plan::SameAs(first));
                continue;
            }
            first_of.insert((group, sender, nonce), i);
        }
        *last += 1;
        changed.insert(group, *last);
        plans.push(Plan::New { seq: *last, id: 0 });
    }

    if !changed.is_empty() {
        // Numbers after the conversations' locks (the lock order), in the batch's order.
        let mut clock = Clock::lock(tx).await?;
        for plan in &mut plans {
            if let Plan::New { id, .. } = plan {
                *id = clock.next();
            }
        }
        insert(tx, news, &ids, &plans).await?;
        let (g, s): (Vec<i64>, Vec<i64>) = changed.into_iter().unzip();
        let bump = tx
            .prepare_cached(
                "UPDATE conversations SET last_seq = u.s
                 FROM unnest($1::bigint[], $2::bigint[]) AS u(g, s)
                 WHERE group_id = u.g",
            )
            .await
            .map_err(backend)?;
        tx.execute(&bump, &[&g, &s]).await.map_err(backend)?;
        clock.save(tx).await?;
    }
    Ok(plans)
}

/// The new messages of a batch, as one statement, and their push outbox entries (which
/// commit with them or not at all).
async fn insert(
    tx: &deadpool_postgres::Transaction<'_>,
    news: &[&NewMessage],
    ids: &[(i64, i64)],
    plans: &[Plan],
) -> StoreResult<()> {
    let mut c = Columns::default();
    for ((new, &(group, sender)), plan) in news.iter().zip(ids).zip(plans) {
        let Plan::New { seq, id } = *plan else {
            continue;
        };
        c.group.push(group);
        c.seq.push(seq);
        c.sender.push(sender);
        c.login.push(&new.sender_login);
        c.session.push(new.session_id.as_ref().map(|s| s.as_str()));
        c.kind.push(i64::from(new.kind));
        c.text.push(new.text.as_deref());
        c.attachments.push(new.attachments.as_deref());
        c.body.push(new.body.as_ref().map(|b| b.as_str()));
        c.nonce.push(new.nonce.as_deref());
        c.version.push(i64::from(new.version));
        c.created.push(new.created_at_us);
        c.files.push(encode_files(&new.files));
        c.id.push(id);
    }
    let stmt = tx
        .prepare_cached(
            "INSERT INTO messages (group_id, seq, sender, sender_login, session_id, kind,
                text, attachments, body, nonce, version, created_at, updated_at, files,
                message_id)
             SELECT g, s, se, sl, si, k, t, a, b, n, v, c, c, f, id
             FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::text[], $5::text[],
                 $6::bigint[], $7::text[], $8::text[], $9::text[], $10::text[], $11::bigint[],
                 $12::bigint[], $13::text[], $14::bigint[])
               AS u(g, s, se, sl, si, k, t, a, b, n, v, c, f, id)",
        )
        .await
        .map_err(backend)?;
    tx.execute(
        &stmt,
        &[
            &c.group,
            &c.seq,
            &c.sender,
            &c.login,
            &c.session,
            &c.kind,
            &c.text,
            &c.attachments,
            &c.body,
            &c.nonce,
            &c.version,
            &c.created,
            &c.files,
            &c.id,
        ],
    )
    .await
    .map_err(backend)?;
    for (new, plan) in news.iter().zip(plans) {
        if let (Plan::New { id, .. }, false) = (plan, new.push_to.is_empty()) {
            crate::push::insert_entry(
                tx,
                &PushEntry {
                    id: 0,
                    kind: PushKind::Message,
                    group_id: new.group_id,
                    ref_id: from_sql_id(*id),
                    sender: new.sender,
                    recipients: new.push_to.clone(),
                    created_at_us: new.created_at_us,
                },
            )
            .await?;
        }
    }
    Ok(())
}

/// The new rows of a batch, column by column (PostgreSQL takes each as an array).
#[derive(Default)]
struct Columns<'a> {
    group: Vec<i64>,
    seq: Vec<i64>,
    sender: Vec<i64>,
    login: Vec<&'a str>,
    session: Vec<Option<&'a str>>,
    kind: Vec<i64>,
    text: Vec<Option<&'a str>>,
    attachments: Vec<Option<&'a str>>,
    body: Vec<Option<&'a str>>,
    nonce: Vec<Option<&'a str>>,
    version: Vec<i64>,
    created: Vec<i64>,
    files: Vec<Option<String>>,
    id: Vec<i64>,
}

fn unzip3<'a>(keys: &[RetryKey<'a>]) -> (Vec<i64>, Vec<i64>, Vec<&'a str>) {
    let mut out = (
        Vec::with_capacity(keys.len()),
        Vec::with_capacity(keys.len()),
        Vec::with_capacity(keys.len()),
    );
    for &(g, s, n) in keys {
        out.0.push(g);
        out.1.push(s);
        out.2.push(n);
    }
    out
}
