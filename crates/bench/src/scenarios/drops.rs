//! `drops`: fan-out while receivers are cut at random and resume with `list_message` after
//! the last id they saw; messages delivered once, lost, seen twice.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::json;

use crate::clients::{chat_connect, source};
use crate::peers::confer::{confer_bin, prepare, start_confer};
use crate::report::{now_us, Row};
use crate::sio::{self, Sio};
use crate::Cli;

/// Message ids one receiver got, with how many times each.
pub(crate) type Receipts = Arc<std::sync::Mutex<std::collections::BTreeMap<u64, u32>>>;

/// The id of a pushed chat message.
pub(crate) fn message_id(event: &sio::SioEvent) -> Option<u64> {
    let (_, arg) = event.parse();
    arg["message"]["message_id"].as_str()?.parse().ok()
}

pub(crate) fn record(receipts: &Receipts, id: u64) {
    *receipts
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(id)
        .or_insert(0) += 1;
}

pub(crate) fn last_id(receipts: &Receipts) -> u64 {
    receipts
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .keys()
        .next_back()
        .copied()
        .unwrap_or(0)
}

/// Page `list_message` after `after` until empty, recording every message.
pub(crate) async fn catch_up(
    c: &Sio,
    group: u64,
    mut after: u64,
    receipts: &Receipts,
) -> anyhow::Result<()> {
    loop {
        let args = json!({"group_id": group.to_string(), "last_seen_message_id": after.to_string(), "psize": 200});
        let page = c.call("list_message", &args).await?;
        let messages = page["messages"].as_array().cloned().unwrap_or_default();
        if messages.is_empty() {
            return Ok(());
        }
        for m in &messages {
            if let Some(id) = m["message_id"].as_str().and_then(|i| i.parse().ok()) {
                record(receipts, id);
                after = after.max(id);
            }
        }
    }
}

/// One receiver: connect, catch up after what it has, take pushes until told to drop,
/// then wait a little and start over.
pub(crate) async fn drop_prone_receiver(
    ws: String,
    token: String,
    group: u64,
    receipts: Receipts,
    mut cut: tokio::sync::mpsc::Receiver<Duration>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let resume_after = last_id(&receipts);
        let Ok((c, mut events)) = chat_connect(&ws, Some(&token), None).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        if resume_after > 0 && catch_up(&c, group, resume_after, &receipts).await.is_err() {
            continue;
        }
        let pause = loop {
            tokio::select! {
                e = events.recv() => match e {
                    Some(event) if event.is("message") => {
                        if let Some(id) = message_id(&event) {
                            record(&receipts, id);
                        }
                    }
                    Some(_) => {}
                    None => break Duration::ZERO,
                },
                d = cut.recv() => break d.unwrap_or(Duration::ZERO),
                _ = stop.changed() => {
                    // A final catch-up, then done.
                    let after = last_id(&receipts);
                    let _ = catch_up(&c, group, after, &receipts).await;
                    return;
                }
            }
        };
        c.close();
        tokio::time::sleep(pause).await;
    }
}

/// A small xorshift generator: the bench needs spread, not cryptography.
pub(crate) fn next_random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

pub(crate) async fn drops(
    cli: &Cli,
    groups: usize,
    members: usize,
    rate: u64,
    seconds: u64,
    cuts: u64,
) -> anyhow::Result<Vec<Row>> {
    if members < 2 {
        bail!("drops needs at least 2 members per group");
    }
    let fixture = prepare(groups * members, members).await?;
    let users = fixture.users.clone();
    let group_ids = fixture.groups.clone();
    let server = start_confer(&confer_bin(cli), fixture).await?;
    let ws = server.ws();
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let mut receivers = Vec::new();
    let mut cutters = Vec::new();
    let mut senders = Vec::new();
    for (i, (_, token)) in users.iter().enumerate() {
        let group = group_ids[i / members];
        if i % members == 0 {
            let (c, events) = chat_connect(&ws, Some(token), source(i, cli.sources)).await?;
            senders.push((Arc::new(c), group, events));
            continue;
        }
        let receipts: Receipts = Arc::default();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let task = tokio::spawn(drop_prone_receiver(
            ws.clone(),
            token.clone(),
            group,
            receipts.clone(),
            rx,
            stop_rx.clone(),
        ));
        receivers.push((group, receipts, task));
        cutters.push(tx);
    }
    let sent_ids: Arc<std::sync::Mutex<std::collections::BTreeMap<u64, Vec<u64>>>> = Arc::default();
    let per_sender = (rate as f64 / senders.len().max(1) as f64).max(0.001);
    let interval = Duration::from_secs_f64(1.0 / per_sender);
    let end = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for (c, group, _events) in &senders {
        let (c, group, sent_ids) = (c.clone(), *group, sent_ids.clone());
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            while Instant::now() < end {
                tick.tick().await;
                let msg =
                    json!({"group_id": group.to_string(), "message": format!("t={}", now_us())});
                if let Ok(ack) = c.call("create_message", &msg).await {
                    if let Some(id) = ack["message"]["message_id"]
                        .as_str()
                        .and_then(|i| i.parse().ok())
                    {
                        sent_ids
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .entry(group)
                            .or_default()
                            .push(id);
                    }
                }
            }
        }));
    }
    let cut_every = Duration::from_secs_f64(1.0 / cuts.max(1) as f64);
    let mut seed = now_us() | 1;
    let mut cuts_done = 0u64;
    while Instant::now() < end {
        tokio::time::sleep(cut_every).await;
        let who = (next_random(&mut seed) % cutters.len() as u64) as usize;
        let pause = Duration::from_millis(20 + next_random(&mut seed) % 300);
        if cutters[who].try_send(pause).is_ok() {
            cuts_done += 1;
        }
    }
    for t in tasks {
        let _ = t.await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let _ = stop.send(true);
    let sent_ids = sent_ids.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let (mut expected, mut once, mut lost, mut duplicated) = (0u64, 0u64, 0u64, 0u64);
    for (group, receipts, task) in receivers {
        let _ = tokio::time::timeout(Duration::from_secs(30), task).await;
        let got = receipts.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for id in sent_ids.get(&group).into_iter().flatten() {
            expected += 1;
            match got.get(id) {
                None => lost += 1,
                Some(1) => once += 1,
                Some(n) => {
                    once += 1;
                    duplicated += u64::from(*n - 1);
                }
            }
        }
    }
    drop(server);
    let target = "confer (stored)".to_string();
    Ok(vec![
        Row {
            scenario: "drops",
            target: target.clone(),
            metric: "disconnects",
            value: cuts_done as f64,
            unit: "",
        },
        Row {
            scenario: "drops",
            target: target.clone(),
            metric: "expected deliveries",
            value: expected as f64,
            unit: "",
        },
        Row {
            scenario: "drops",
            target: target.clone(),
            metric: "delivered (unique)",
            value: if expected > 0 {
                once as f64 / expected as f64 * 100.0
            } else {
                0.0
            },
            unit: "%",
        },
        Row {
            scenario: "drops",
            target: target.clone(),
            metric: "lost",
            value: lost as f64,
            unit: "",
        },
        Row {
            scenario: "drops",
            target,
            metric: "seen twice (push + catch-up; dropped by id)",
            value: duplicated as f64,
            unit: "",
        },
    ])
}

/// A client that reconnects whenever its connection ends and catches up with
/// `list_message`; it counts each resume.
pub(crate) async fn resuming_client(
    ws: String,
    token: String,
    group: u64,
    bind: Option<IpAddr>,
    resumed: Arc<AtomicU64>,
    phase: Arc<std::sync::atomic::AtomicU8>,
) {
    let receipts: Receipts = Arc::default();
    loop {
        phase.store(1, Ordering::Relaxed);
        let after = last_id(&receipts);
        let Ok((c, mut events)) = chat_connect(&ws, Some(&token), bind).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        phase.store(2, Ordering::Relaxed);
        if catch_up(&c, group, after, &receipts).await.is_err() {
            continue;
        }
        resumed.fetch_add(1, Ordering::Relaxed);
        phase.store(3, Ordering::Relaxed);
        while let Some(event) = events.recv().await {
            if event.is("message") {
                if let Some(id) = message_id(&event) {
                    record(&receipts, id);
                }
            }
        }
    }
}
