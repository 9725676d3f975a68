//! `ingest`: S senders each waiting for the ack; durable acknowledged messages/s, the
//! Socket.IO relays acking without storage (the ceiling), and the bare batched SQLite insert
//! loop on the same disk.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::json;

use crate::clients::source;
use crate::cluster::{Deployment, Layout};
use crate::peers::confer::prepare_for;
use crate::peers::{connect_target, run_name, start_target};
use crate::report::Row;
use crate::server::{cpu_seconds, thread_cpu_seconds, WRITER_THREAD};
use crate::{Cli, Target};

pub(crate) async fn ingest(
    cli: &Cli,
    senders: usize,
    seconds: u64,
    targets: &[Target],
) -> anyhow::Result<Vec<Row>> {
    if targets.contains(&Target::WsBroadcast) {
        bail!("ingest measures acks, and the raw WebSocket peer sends none: leave it out");
    }
    let mut rows = Vec::new();
    let mut confer_rate = None;
    for &target in targets {
        let (target_rows, rate) = ingest_one(cli, senders, seconds, target).await?;
        rows.extend(target_rows);
        match target {
            Target::Confer => confer_rate = Some(rate),
            // The peers' rates, as the ceiling confer's is measured against.
            _ => {
                if let Some(confer) = confer_rate {
                    let name = format!("confer / {}", ingest_name(target));
                    rows.push(Row::ratio("ingest", name, "ratio", confer, rate));
                }
            }
        }
    }
    // The bare SQLite loop is SQLite's ceiling: beside confer on PostgreSQL it says nothing.
    if cli.database_url.is_some() {
        return Ok(rows);
    }
    let peer = sqlite_loop(seconds)?;
    rows.push(Row {
        scenario: "ingest",
        target: "bare SQLite batched inserts".into(),
        metric: "rows",
        value: peer,
        unit: "rows/s",
    });
    if let Some(confer) = confer_rate {
        let name = "confer / SQLite loop".to_string();
        rows.push(Row::ratio("ingest", name, "ratio", confer, peer));
    }
    Ok(rows)
}

pub(crate) fn ingest_name(t: Target) -> String {
    ingest_name_in(t, &Layout::default())
}

/// [`ingest_name`], confer's naming its deployment when it is not one node on SQLite.
pub(crate) fn ingest_name_in(t: Target, layout: &Layout) -> String {
    match t {
        Target::Confer => format!("confer (durable acks{})", layout.suffix()),
        Target::NodeDurable | Target::Ejabberd | Target::Synapse | Target::SynapsePg => {
            format!("{} (durable acks)", run_name(t))
        }
        peer => format!("{} (acks, no storage)", run_name(peer)),
    }
}

/// One target's ingest: `senders` clients, each in a group of its own (with one member
/// who is not connected), each sending its next message when the last one is acked. A
/// peer acks without storing, so it is the ceiling of this client and protocol here.
pub(crate) async fn ingest_one(
    cli: &Cli,
    senders: usize,
    seconds: u64,
    target: Target,
) -> anyhow::Result<(Vec<Row>, f64)> {
    let fixture = prepare_for(cli, senders * 2, 2).await?;
    let users = fixture.users.clone();
    let groups = fixture.groups.clone();
    let server = start_target(cli, target, fixture).await?;
    let acked = Arc::new(AtomicU64::new(0));
    let writer = |server: &Deployment| {
        server
            .nodes
            .iter()
            .filter_map(|n| n.child.id())
            .map(|pid| thread_cpu_seconds(pid, WRITER_THREAD))
            .sum::<f64>()
    };
    let mut clients = Vec::new();
    for (i, group) in groups.iter().enumerate() {
        let (c, events) = connect_target(
            target,
            server.node(i),
            &users[i * 2],
            *group,
            source(i, cli.sources),
        )
        .await?;
        // Senders read only their acks; their own echoes are dropped unread.
        drop(events);
        clients.push((c, *group));
    }
    let services_before = server.services.now();
    let before = (
        server.cpu_seconds(),
        writer(&server),
        cpu_seconds("self").unwrap_or(0.0),
    );
    let started = Instant::now();
    let end = started + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for (c, group) in clients {
        let acked = acked.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < end {
                n += 1;
                let msg =
                    json!({"group_id": group.to_string(), "message": "x", "nonce": format!("{n}")});
                match c.call("create_message", &msg).await {
                    Ok(0) => {
                        acked.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => break,
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = started.elapsed().as_secs_f64().max(seconds as f64);
    let acked = acked.load(Ordering::Relaxed);
    let rate = acked as f64 / elapsed;
    // Where the CPU went, per acknowledged message: the server, its storage writer
    // thread (part of the server's; confer only), and this load client.
    let per_message = |cpu: f64| cpu * 1e6 / acked.max(1) as f64;
    let server_us = per_message(server.cpu_seconds() - before.0);
    let writer_us = per_message(writer(&server) - before.1);
    let client_us = per_message(cpu_seconds("self").unwrap_or(0.0) - before.2);
    let layout = Layout::of(cli)?;
    let name = ingest_name_in(target, &layout);
    let services = server
        .services
        .rows("ingest", &name, services_before, elapsed);
    drop(server);
    let row = |metric, value, unit| Row {
        scenario: "ingest",
        target: name.clone(),
        metric,
        value,
        unit,
    };
    let mut rows = vec![
        row("acked", rate, "msg/s"),
        row("server CPU per ack", server_us, "µs"),
    ];
    if target == Target::Confer && layout.database_url.is_none() {
        rows.push(row("of which storage writer", writer_us, "µs"));
    }
    rows.push(row("load client CPU per ack", client_us, "µs"));
    rows.extend(services);
    Ok((rows, rate))
}

/// The peer for ingest: inserting rows in batched transactions with the same durability
/// settings confer uses (WAL, synchronous=FULL), on the same disk.
pub(crate) fn sqlite_loop(seconds: u64) -> anyhow::Result<f64> {
    let dir = tempfile::tempdir()?;
    let conn = rusqlite::Connection::open(dir.path().join("peer.db"))?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;
         CREATE TABLE m (id INTEGER PRIMARY KEY, g INTEGER, s INTEGER, body TEXT, t INTEGER);",
    )?;
    let end = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut rows = 0u64;
    while Instant::now() < end {
        let tx = conn.unchecked_transaction()?;
        {
            let mut stmt =
                tx.prepare_cached("INSERT INTO m (g, s, body, t) VALUES (?1, ?2, ?3, ?4)")?;
            for _ in 0..512 {
                rows += 1;
                stmt.execute(rusqlite::params![rows % 100, rows, "x", rows as i64])?;
            }
        }
        tx.commit()?;
    }
    Ok(rows as f64 / started.elapsed().as_secs_f64())
}
