//! `cargo bench -p confer-store-sqlite --bench append`: durable appends per second through
//! the SQLite backend alone, with no network, door or client in the way.
//!
//! `senders` tasks each append to their own group and wait for the durable answer before
//! the next, as the `ingest` scenario's Socket.IO clients do; comparing the two tells how
//! much of ingest's cost is storage. Arguments: `[senders] [seconds]` (default 200, 5).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use confer_core::metrics::Metrics;
use confer_core::model::{ConversationKind, NewConversation, NewMessage};
use confer_core::store::{ConversationStore, MessageStore};
use confer_core::{GroupId, Uin};
use confer_store_sqlite::SqliteStore;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // `cargo bench` passes `--bench`; numbers are ours.
    let numbers: Vec<u64> = std::env::args().filter_map(|a| a.parse().ok()).collect();
    let senders = numbers.first().copied().unwrap_or(200);
    let seconds = numbers.get(1).copied().unwrap_or(5);
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(run(senders, seconds))
}

async fn run(senders: u64, seconds: u64) -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let store = Arc::new(SqliteStore::open(dir.path(), Arc::new(Metrics::default()))?);
    let mut groups = Vec::new();
    for i in 0..senders {
        let uin = Uin(i + 1);
        let conv = store
            .create_conversation(NewConversation {
                alias: None,
                kind: ConversationKind::Group,
                name: None,
                avatar_url: None,
                owner: uin,
                creator: uin,
                occupants: BTreeSet::from([uin]),
                created_at_us: 0,
            })
            .await?;
        groups.push((conv.group_id, uin));
    }
    let appended = Arc::new(AtomicU64::new(0));
    let writer_before = writer_cpu_seconds();
    let end = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (group, uin) in groups {
        let (store, appended) = (store.clone(), appended.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < end {
                n += 1;
                if store.append_message(message(group, uin, n)).await.is_err() {
                    return;
                }
                appended.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let appended = appended.load(Ordering::Relaxed);
    let rate = appended as f64 / started.elapsed().as_secs_f64();
    // The writer's CPU per append moves less between runs than the rate does (the rate
    // also depends on how the scheduler shares two cores among the writer and the tasks).
    let writer_us = (writer_cpu_seconds() - writer_before) * 1e6 / appended.max(1) as f64;
    println!(
        "store append, {senders} senders: {appended} appends, {rate:.0} durable appends/s, writer thread {writer_us:.2} us CPU per append"
    );
    Ok(())
}

/// CPU time (user + system) the storage writer thread has used so far, in seconds, from
/// `/proc/self/task/*/stat` (Linux; 0 elsewhere).
fn writer_cpu_seconds() -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    tasks
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm"))
                .is_ok_and(|c| c.trim_end() == "confer-sqlite-w")
        })
        .filter_map(|t| std::fs::read_to_string(t.path().join("stat")).ok())
        .filter_map(|stat| {
            // utime and stime, fields 14 and 15, after the parenthesised name.
            let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
            let ticks =
                fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
            Some(ticks as f64 / 100.0)
        })
        .sum()
}

fn message(group: GroupId, sender: Uin, n: u64) -> NewMessage {
    NewMessage {
        group_id: group,
        sender,
        sender_login: format!("user{}", sender.0),
        session_id: None,
        kind: 0,
        text: Some("x".into()),
        attachments: None,
        body: None,
        nonce: Some(n.to_string()),
        version: 0,
        created_at_us: 0,
        files: Vec::new(),
        push_to: Vec::new(),
    }
}
