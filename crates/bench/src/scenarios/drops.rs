//! `drops`: fan-out while receivers are cut at random and resume by their protocol's own
//! mechanism after the last message they saw: confer's `list_message` after an id (the
//! durable Node server's too: it answers the same call, its receivers `join` their room
//! first), ejabberd's room archive (XMPP MAM) after an archive id, Synapse's `/sync` after a
//! `since` token; messages delivered once, lost, seen twice.
//!
//! confer's messages are told apart by the id its ack gives; the peers' by a number
//! each body carries (`d=N`), since their acks and archives name a message differently.
//! The peers' receivers live beside their clients (`peers/xmpp.rs`, `peers/matrix.rs`);
//! what is counted, and how, is the same for every target ([`tally`]).

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::json;

use crate::clients::{chat_connect, source};
use crate::peers::confer::prepare;
use crate::peers::{connect_target, matrix, run_name, start_target, xmpp};
use crate::report::{now_us, Row};
use crate::scenarios::fanout::{paced, pacing};
use crate::sio::{self, Sio};
use crate::{Cli, Target};

/// Message ids each group's sender had acked.
type Sent = Arc<std::sync::Mutex<std::collections::BTreeMap<u64, Vec<u64>>>>;

/// What a peer's receiver records: its receipts, and the count of messages it first
/// saw on a resume (shared by all receivers: that the resume worked, not only the push).
pub(crate) struct Resume {
    pub(crate) receipts: Receipts,
    pub(crate) recovered: Arc<AtomicU64>,
}

impl Resume {
    /// Record `seq`, found on a resume if `resumed`.
    pub(crate) fn record(&self, seq: u64, resumed: bool) {
        if record(&self.receipts, seq) && resumed {
            self.recovered.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The number a peer's message body carries (`d=N`).
pub(crate) fn body_seq(body: &str) -> Option<u64> {
    body.strip_prefix("d=")?.parse().ok()
}

/// Message ids one receiver got, with how many times each.
pub(crate) type Receipts = Arc<std::sync::Mutex<std::collections::BTreeMap<u64, u32>>>;

/// The id of a pushed chat message.
pub(crate) fn message_id(event: &sio::SioEvent) -> Option<u64> {
    let (_, arg) = event.parse();
    arg["message"]["message_id"].as_str()?.parse().ok()
}

/// Count one receipt of `id`: true if it is the first.
pub(crate) fn record(receipts: &Receipts, id: u64) -> bool {
    let mut got = receipts.lock().unwrap_or_else(|e| e.into_inner());
    let n = got.entry(id).or_insert(0);
    *n += 1;
    *n == 1
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

/// One receiver: connect (with confer's token; without one, to the durable Node server,
/// joining the group's room), catch up after what it has, take pushes until told to
/// drop, then wait a little and start over.
pub(crate) async fn drop_prone_receiver(
    ws: String,
    token: Option<String>,
    group: u64,
    receipts: Receipts,
    mut cut: tokio::sync::mpsc::Receiver<Duration>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let resume_after = last_id(&receipts);
        let Ok((c, mut events)) = chat_connect(&ws, token.as_deref(), None).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        // The Node server's rooms are joined per connection: after the join, the pushes;
        // before it, what the catch-up finds.
        let joins = token.is_none();
        if joins
            && c.call("join", &json!({"group_id": group.to_string()}))
                .await
                .is_err()
        {
            continue;
        }
        // Every connection catches up once its pushes flow, the first too (from the
        // group's start): the senders do not wait for the receivers' first connections,
        // and what was posted before one, or during a cut before its first push, is
        // found here.
        if catch_up(&c, group, resume_after, &receipts).await.is_err() {
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

/// The shape of one `drops` run.
pub(crate) struct DropsRun {
    pub(crate) groups: usize,
    pub(crate) members: usize,
    pub(crate) rate: u64,
    pub(crate) seconds: u64,
    /// Disconnects per second.
    pub(crate) cuts: u64,
}

/// `drops` on each of `targets`, one after the other.
pub(crate) async fn drops(
    cli: &Cli,
    run: &DropsRun,
    targets: &[Target],
) -> anyhow::Result<Vec<Row>> {
    if run.members < 2 {
        bail!("drops needs at least 2 members per group");
    }
    let mut rows = Vec::new();
    for t in targets {
        rows.extend(match t {
            Target::Confer | Target::NodeDurable => drops_chat(cli, run, *t).await?,
            Target::Ejabberd | Target::Synapse | Target::SynapsePg => {
                drops_peer(cli, run, *t).await?
            }
            other => bail!(
                "drops needs a server that stores and a way to resume: confer, node-durable, ejabberd or synapse, not {other:?}"
            ),
        });
    }
    Ok(rows)
}

/// Cut a random receiver every `1 / cuts` s until `end`, each for 20–320 ms: how many
/// cuts were made.
async fn cut_at_random(
    cutters: &[tokio::sync::mpsc::Sender<Duration>],
    cuts: u64,
    end: Instant,
) -> u64 {
    let cut_every = Duration::from_secs_f64(1.0 / cuts.max(1) as f64);
    let mut seed = now_us() | 1;
    let mut cuts_done = 0u64;
    while Instant::now() < end && !cutters.is_empty() {
        tokio::time::sleep(cut_every).await;
        let who = (next_random(&mut seed) % cutters.len() as u64) as usize;
        let pause = Duration::from_millis(20 + next_random(&mut seed) % 300);
        if cutters[who].try_send(pause).is_ok() {
            cuts_done += 1;
        }
    }
    cuts_done
}

/// `drops` on ejabberd or Synapse: every receiver connected and caught up before the
/// senders start (their set-up is slower than confer's), then each sender sends its
/// share of `rate` with a number in each body, not waiting for one ack before the next
/// send (Synapse's acks take seconds), and counts those acked.
async fn drops_peer(cli: &Cli, run: &DropsRun, target: Target) -> anyhow::Result<Vec<Row>> {
    let members = run.members;
    let fixture = prepare(run.groups * members, members).await?;
    let users = fixture.users.clone();
    let group_ids = fixture.groups.clone();
    let server = start_target(cli, target, fixture).await?;
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let (ready_tx, mut ready) = tokio::sync::mpsc::channel(1);
    let (mut receivers, mut cutters, mut senders) = (Vec::new(), Vec::new(), Vec::new());
    let recovered = Arc::new(AtomicU64::new(0));
    for (i, user) in users.iter().enumerate() {
        let group = group_ids[i / members];
        if i % members == 0 {
            let (c, events) =
                connect_target(target, &server, user, group, source(i, cli.sources)).await?;
            senders.push((Arc::new(c), group, events));
            continue;
        }
        let receipts: Receipts = Arc::default();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let (stop_rx, ready_tx) = (stop_rx.clone(), ready_tx.clone());
        let recovered = recovered.clone();
        let task = if target == Target::Ejabberd {
            let login = user.0.login.clone();
            tokio::spawn(xmpp::drop_prone_receiver(
                server.port,
                login,
                group,
                Resume {
                    receipts: receipts.clone(),
                    recovered,
                },
                rx,
                stop_rx,
                ready_tx,
            ))
        } else {
            let token = server
                .accounts
                .as_ref()
                .and_then(|a| a.tokens.get(&user.0.login))
                .ok_or_else(|| anyhow::anyhow!("{} was not registered", user.0.login))?
                .clone();
            tokio::spawn(matrix::drop_prone_receiver(
                server.port,
                token,
                Resume {
                    receipts: receipts.clone(),
                    recovered,
                },
                rx,
                stop_rx,
                ready_tx,
            ))
        };
        receivers.push((group, receipts, task));
        cutters.push(tx);
    }
    drop(ready_tx);
    for _ in 0..receivers.len() {
        match tokio::time::timeout(Duration::from_secs(120), ready.recv()).await {
            Ok(Some(())) => {}
            _ => bail!("{target:?}: not every receiver connected and caught up within 120 s"),
        }
    }
    let sent_ids: Sent = Arc::default();
    let next = Arc::new(AtomicU64::new(1));
    let in_flight = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let end = started + Duration::from_secs(run.seconds);
    let start = tokio::time::Instant::from_std(started);
    let mut tasks = Vec::new();
    let count = senders.len();
    for (i, (c, group, _events)) in senders.iter().enumerate() {
        let (c, group, sent_ids) = (c.clone(), *group, sent_ids.clone());
        let (next, in_flight) = (next.clone(), in_flight.clone());
        let (first, interval) = pacing(run.rate, count, i);
        tasks.push(tokio::spawn(paced(
            start + first,
            interval,
            tokio::time::Instant::from_std(end),
            move || {
                let seq = next.fetch_add(1, Ordering::Relaxed);
                let (c, sent_ids, in_flight) = (c.clone(), sent_ids.clone(), in_flight.clone());
                in_flight.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(async move {
                    let msg = json!({"group_id": group.to_string(), "message": format!("d={seq}")});
                    if let Ok(0) = c.call("create_message", &msg).await {
                        sent_ids
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .entry(group)
                            .or_default()
                            .push(seq);
                    }
                    in_flight.fetch_sub(1, Ordering::Relaxed);
                });
            },
        )));
    }
    let cuts_done = cut_at_random(&cutters, run.cuts, end).await;
    for t in tasks {
        let _ = t.await;
    }
    // The last sends' acks (Synapse's take seconds), for a minute at most.
    let waited = Instant::now();
    while in_flight.load(Ordering::Relaxed) > 0 && waited.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let _ = stop.send(true);
    let sent = sent_ids.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut got = Vec::new();
    for (group, receipts, task) in receivers {
        match tokio::time::timeout(Duration::from_secs(60), task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => return Err(e.context(format!("{target:?}: a receiver failed"))),
            _ => bail!("{target:?}: a receiver did not finish its last catch-up within 60 s"),
        }
        got.push((group, receipts));
    }
    drop(senders);
    drop(server);
    let mut rows = tally(run_name(target), cuts_done, &sent, &got);
    rows.push(Row {
        scenario: "drops",
        target: run_name(target),
        metric: "first seen on a resume (the archive or a since token)",
        value: recovered.load(Ordering::Relaxed) as f64,
        unit: "",
    });
    Ok(rows)
}

/// The rows of a `drops` run: for every message a group's sender had acked, whether each
/// receiver of that group got it once, not at all, or more than once.
fn tally(
    target: String,
    cuts_done: u64,
    sent_ids: &std::collections::BTreeMap<u64, Vec<u64>>,
    receivers: &[(u64, Receipts)],
) -> Vec<Row> {
    let (mut expected, mut once, mut lost, mut duplicated) = (0u64, 0u64, 0u64, 0u64);
    for (group, receipts) in receivers {
        let got = receipts.lock().unwrap_or_else(|e| e.into_inner());
        for id in sent_ids.get(group).into_iter().flatten() {
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
    vec![
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
    ]
}

/// `drops` on confer or the durable Node server: receivers resume with `list_message`
/// after the last id.
async fn drops_chat(cli: &Cli, run: &DropsRun, target: Target) -> anyhow::Result<Vec<Row>> {
    let (groups, members, rate, seconds, cuts) =
        (run.groups, run.members, run.rate, run.seconds, run.cuts);
    let fixture = prepare(groups * members, members).await?;
    let users = fixture.users.clone();
    let group_ids = fixture.groups.clone();
    let server = start_target(cli, target, fixture).await?;
    let ws = server.ws();
    // confer knows its users; the Node server takes anyone.
    let token_of = |token: &String| (target == Target::Confer).then(|| token.clone());
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let mut receivers = Vec::new();
    let mut cutters = Vec::new();
    let mut senders = Vec::new();
    for (i, (_, token)) in users.iter().enumerate() {
        let group = group_ids[i / members];
        if i % members == 0 {
            let token = token_of(token);
            let (c, events) = chat_connect(&ws, token.as_deref(), source(i, cli.sources)).await?;
            senders.push((Arc::new(c), group, events));
            continue;
        }
        let receipts: Receipts = Arc::default();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let task = tokio::spawn(drop_prone_receiver(
            ws.clone(),
            token_of(token),
            group,
            receipts.clone(),
            rx,
            stop_rx.clone(),
        ));
        receivers.push((group, receipts, task));
        cutters.push(tx);
    }
    let sent_ids: Sent = Arc::default();
    let end = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for (c, group, _events) in &senders {
        let (c, group, sent_ids) = (c.clone(), *group, sent_ids.clone());
        let (_, interval) = pacing(rate, senders.len(), 0);
        tasks.push(tokio::spawn(async move {
            // Each sender waits for its ack before its next send; a tick due at or past
            // the end sends nothing.
            let mut tick = tokio::time::interval(interval);
            loop {
                if tick.tick().await >= tokio::time::Instant::from_std(end) {
                    break;
                }
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
    let cuts_done = cut_at_random(&cutters, cuts, end).await;
    for t in tasks {
        let _ = t.await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let _ = stop.send(true);
    let sent_ids = sent_ids.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut got = Vec::new();
    for (group, receipts, task) in receivers {
        let _ = tokio::time::timeout(Duration::from_secs(30), task).await;
        got.push((group, receipts));
    }
    drop(server);
    Ok(tally(run_name(target), cuts_done, &sent_ids, &got))
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
