//! # confer-bench: the load generator
//!
//! Starts a fresh confer (or a peer server), prepares accounts, tokens and groups, drives
//! real connections through the Chat API (Socket.IO) or the External API (WebSocket), and
//! reports JSON lines plus a Markdown table. Scenarios:
//!
//! - `idle`: hold N authenticated connections; server RSS per connection.
//! - `fanout`: G groups × M members, one sender per group at a total target rate; delivered
//!   messages/s and send→deliver latency. Targets: `confer`, `node-relay` (bench/peers).
//! - `ingest`: S senders each waiting for the ack; durable acknowledged messages/s, and the
//!   bare batched SQLite insert loop on the same disk as a peer.
//!
//! It measures; it never asserts a time. See BENCHMARKS.md for the commands and results.

mod sio;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use clap::{Parser, Subcommand, ValueEnum};
use confer_core::{ConversationKind, Principal};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::sio::Sio;

#[derive(Parser)]
#[command(
    name = "confer-bench",
    about = "Load generator for confer and its peers"
)]
struct Cli {
    /// The confer binary to start (default: `confer` beside this one).
    #[arg(long, global = true)]
    confer: Option<PathBuf>,
    /// Spread client sockets over this many source addresses 127.0.0.1…N (past ~60k
    /// connections one source address runs out of ports).
    #[arg(long, global = true, default_value_t = 1)]
    sources: u8,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum Door {
    Chat,
    Ext,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum Target {
    Confer,
    NodeRelay,
}

#[derive(Subcommand)]
enum Scenario {
    /// Hold N authenticated connections and report memory per connection.
    Idle {
        #[arg(long, default_value_t = 1000)]
        connections: usize,
        #[arg(long, value_enum, default_value_t = Door::Chat)]
        door: Door,
        /// Seconds to hold them before measuring.
        #[arg(long, default_value_t = 2)]
        hold: u64,
    },
    /// Group fan-out at a target rate, with latency.
    Fanout {
        #[arg(long, default_value_t = 100)]
        groups: usize,
        #[arg(long, default_value_t = 10)]
        members: usize,
        /// Messages per second sent in total.
        #[arg(long, default_value_t = 1000)]
        rate: u64,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Which servers to run, one after the other.
        #[arg(
            long,
            value_enum,
            value_delimiter = ',',
            default_value = "confer,node-relay"
        )]
        targets: Vec<Target>,
    },
    /// Senders that each wait for the durable ack.
    Ingest {
        #[arg(long, default_value_t = 200)]
        senders: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
}

/// One measured figure.
struct Row {
    scenario: &'static str,
    target: String,
    metric: &'static str,
    value: f64,
    unit: &'static str,
}

fn print_rows(rows: &[Row]) {
    for r in rows {
        println!(
            "{}",
            json!({"scenario": r.scenario, "target": r.target, "metric": r.metric, "value": r.value, "unit": r.unit})
        );
    }
    println!("\n| scenario | target | metric | value |\n|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {} | {} | {:.3} {} |",
            r.scenario, r.target, r.metric, r.value, r.unit
        );
    }
}

fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// A started server process, killed on drop.
struct Server {
    child: tokio::process::Child,
    port: u16,
    _dir: Option<tempfile::TempDir>,
}

impl Server {
    fn ws(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }

    fn rss_kb(&self) -> u64 {
        let Some(pid) = self.child.id() else { return 0 };
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            })
            .unwrap_or(0)
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn wait_healthy(port: u16) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            let _ = s
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .await;
            let mut buf = Vec::new();
            let _ = s.read_to_end(&mut buf).await;
            if buf.starts_with(b"HTTP/1.1 200") {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("server on port {port} did not become healthy")
}

fn confer_bin(cli: &Cli) -> PathBuf {
    cli.confer.clone().unwrap_or_else(|| {
        std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(|d| d.join("confer")))
            .unwrap_or_else(|| PathBuf::from("confer"))
    })
}

/// Accounts, tokens and chat groups prepared directly in a fresh data folder.
struct Fixture {
    dir: tempfile::TempDir,
    users: Vec<(Principal, String)>,
    groups: Vec<u64>,
}

/// `users` accounts (one password hash shared, so preparing is fast), a token each, and
/// groups of consecutive users of `group_size`.
async fn prepare(users: usize, group_size: usize) -> anyhow::Result<Fixture> {
    let dir = tempfile::tempdir()?;
    let config = confer_server::Config {
        data_dir: dir.path().join("data"),
        ..confer_server::Config::default()
    };
    let core = confer_server::build_core(&config)?;
    let hash = confer_core::auth::hash_password("bench")?;
    let mut made = Vec::with_capacity(users);
    let chunks: Vec<usize> = (0..users).collect();
    for chunk in chunks.chunks(256) {
        let tasks = chunk.iter().map(|i| {
            let (core, hash) = (core.clone(), hash.clone());
            async move {
                let a = core
                    .import_account(&format!("u{i}"), &hash, None, None)
                    .await?;
                let who = Principal {
                    uin: a.uin,
                    login: a.login,
                    admin: false,
                };
                let (token, _) = core.issue_token(&who).await?;
                anyhow::Ok((who, token))
            }
        });
        for r in futures_util::future::join_all(tasks).await {
            made.push(r?);
        }
    }
    let mut groups = Vec::new();
    if group_size > 1 {
        for members in made.chunks(group_size) {
            let occupants = members.iter().map(|(p, _)| p.uin).collect();
            let (g, _) = core
                .create_group(
                    &members[0].0,
                    ConversationKind::Group,
                    Some("bench".into()),
                    None,
                    None,
                    occupants,
                )
                .await?;
            groups.push(g.group_id.0);
        }
    }
    core.flush().await?;
    Ok(Fixture {
        dir,
        users: made,
        groups,
    })
}

async fn start_confer(bin: &Path, fixture: Fixture) -> anyhow::Result<Server> {
    let port = free_port()?;
    let child = tokio::process::Command::new(bin)
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(fixture.dir.path().join("data"))
        .env("CONFER_LOG_LEVEL", "warn")
        .env("CONFER_CHAT_RATE_PER_SEC", "1000000")
        .env("CONFER_CHAT_RATE_BURST", "1000000")
        .env("CONFER_OUTBOUND_QUEUE", "8192")
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    wait_healthy(port).await?;
    Ok(Server {
        child,
        port,
        _dir: Some(fixture.dir),
    })
}

async fn start_node_relay() -> anyhow::Result<Server> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../bench/peers/node-relay");
    if !dir.join("node_modules/socket.io").exists() {
        bail!(
            "node relay peer not installed: run scripts/bench (npm ci in {})",
            dir.display()
        );
    }
    let port = free_port()?;
    let child = tokio::process::Command::new("node")
        .arg("server.js")
        .current_dir(&dir)
        .env("PORT", port.to_string())
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("starting node (is Node.js installed?)")?;
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Ok(Server {
                child,
                port,
                _dir: None,
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("node relay did not start")
}

fn source(i: usize, sources: u8) -> Option<IpAddr> {
    (sources > 1).then(|| IpAddr::from([127, 0, 0, 1 + (i % sources as usize) as u8]))
}

/// A logged-in Chat API connection (login result 0 awaited).
async fn chat_connect(
    ws: &str,
    token: Option<&str>,
    bind: Option<IpAddr>,
) -> anyhow::Result<(Sio, tokio::sync::mpsc::UnboundedReceiver<sio::SioEvent>)> {
    let auth = token.map(|t| json!({"session": t}));
    let (c, mut events) = Sio::connect(ws, "/data", auth, bind).await?;
    loop {
        let (name, arg) = events
            .recv()
            .await
            .ok_or_else(|| anyhow!("closed before login"))?;
        if name == "login" {
            if arg["result"] != 0 {
                bail!("login refused: {arg}");
            }
            return Ok((c, events));
        }
    }
}

/// A logged-in External API connection that answers pings and events; returned as the
/// task holding it.
async fn ext_connect(
    ws: &str,
    user: &str,
    token: &str,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let (conn, _) = tokio_tungstenite::connect_async(format!("{ws}/api/ws")).await?;
    let (mut sink, mut stream) = conn.split();
    let login = json!({"class": "core", "subclass": "user", "cmd": "login", "data": {"user": user, "token": token}, "tid": 1});
    sink.send(login.to_string().into()).await?;
    loop {
        let m = stream
            .next()
            .await
            .ok_or_else(|| anyhow!("closed before login"))??;
        let v: Value = serde_json::from_str(m.to_text().unwrap_or("null")).unwrap_or(Value::Null);
        if v["tid"] == 1 && v.get("result").is_some() {
            if v["result"] != "ok" {
                bail!("login refused: {v}");
            }
            break;
        }
    }
    Ok(tokio::spawn(async move {
        while let Some(Ok(m)) = stream.next().await {
            let v: Value =
                serde_json::from_str(m.to_text().unwrap_or("null")).unwrap_or(Value::Null);
            if v.get("cmd").is_some() {
                let ok = json!({"result": "ok", "tid": v["tid"]});
                if sink.send(ok.to_string().into()).await.is_err() {
                    break;
                }
            }
        }
    }))
}

async fn idle(cli: &Cli, n: usize, door: Door, hold: u64) -> anyhow::Result<Vec<Row>> {
    let fixture = prepare(n, 0).await?;
    let users = fixture.users.clone();
    let server = start_confer(&confer_bin(cli), fixture).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let base = server.rss_kb();
    let ws = server.ws();
    let mut held_chat = Vec::new();
    let mut held_ext = Vec::new();
    for (batch_no, batch) in users.chunks(250).enumerate() {
        let tasks = batch.iter().enumerate().map(|(i, (who, token))| {
            let ws = ws.clone();
            let bind = source(batch_no * 250 + i, cli.sources);
            async move {
                match door {
                    Door::Chat => chat_connect(&ws, Some(token), bind)
                        .await
                        .map(|c| (Some(c), None)),
                    Door::Ext => ext_connect(&ws, &who.login, token)
                        .await
                        .map(|h| (None, Some(h))),
                }
            }
        });
        for r in futures_util::future::join_all(tasks).await {
            let (c, h) = r?;
            held_chat.extend(c);
            held_ext.extend(h);
        }
    }
    tokio::time::sleep(Duration::from_secs(hold)).await;
    let loaded = server.rss_kb();
    let per_conn = (loaded.saturating_sub(base)) as f64 * 1024.0 / n as f64;
    let target = format!(
        "confer ({})",
        if door == Door::Chat {
            "Socket.IO"
        } else {
            "External API"
        }
    );
    Ok(vec![
        Row {
            scenario: "idle",
            target: target.clone(),
            metric: "connections held",
            value: (held_chat.len() + held_ext.len()) as f64,
            unit: "",
        },
        Row {
            scenario: "idle",
            target: target.clone(),
            metric: "baseline RSS",
            value: base as f64 / 1024.0,
            unit: "MiB",
        },
        Row {
            scenario: "idle",
            target,
            metric: "RSS per connection",
            value: per_conn / 1024.0,
            unit: "KiB",
        },
    ])
}

/// Latency percentiles (ms) of sorted microsecond samples.
fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64 / 1000.0
}

async fn fanout(
    cli: &Cli,
    groups: usize,
    members: usize,
    rate: u64,
    seconds: u64,
    target: Target,
) -> anyhow::Result<Vec<Row>> {
    let fixture = prepare(groups * members, members).await?;
    let users = fixture.users.clone();
    let group_ids = fixture.groups.clone();
    let server = match target {
        Target::Confer => start_confer(&confer_bin(cli), fixture).await?,
        Target::NodeRelay => start_node_relay().await?,
    };
    let ws = server.ws();
    let received = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(std::sync::Mutex::new(Vec::<u64>::new()));
    let mut senders = Vec::new();
    let mut held = Vec::new();
    for (i, (_, token)) in users.iter().enumerate() {
        let group = group_ids[i / members];
        let (c, mut events) = match target {
            Target::Confer => chat_connect(&ws, Some(token), source(i, cli.sources)).await?,
            Target::NodeRelay => {
                let (c, e) = chat_connect(&ws, None, source(i, cli.sources)).await?;
                c.call("join", &json!({"group_id": group})).await?;
                (c, e)
            }
        };
        let (received, latencies) = (received.clone(), latencies.clone());
        tokio::spawn(async move {
            while let Some((name, arg)) = events.recv().await {
                if name != "message" {
                    continue;
                }
                let sent = arg["message"]["message"]
                    .as_str()
                    .and_then(|t| t.strip_prefix("t="))
                    .and_then(|t| t.parse::<u64>().ok());
                if let Some(sent) = sent {
                    let latency = now_us().saturating_sub(sent);
                    latencies
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(latency);
                    received.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        if i % members == 0 {
            senders.push((Arc::new(c), group));
        } else {
            held.push(c);
        }
    }
    let per_sender = (rate as f64 / senders.len().max(1) as f64).max(0.001);
    let interval = Duration::from_secs_f64(1.0 / per_sender);
    let sent = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let end = started + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for (c, group) in senders {
        let sent = sent.clone();
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            while Instant::now() < end {
                tick.tick().await;
                let c = c.clone();
                let sent = sent.clone();
                tokio::spawn(async move {
                    let msg = json!({"group_id": group.to_string(), "message": format!("t={}", now_us())});
                    if c.call("create_message", &msg).await.is_ok() {
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let elapsed = started.elapsed().as_secs_f64();
    let delivered = received.load(Ordering::Relaxed);
    let sent = sent.load(Ordering::Relaxed);
    let mut lat = latencies.lock().unwrap_or_else(|e| e.into_inner()).clone();
    lat.sort_unstable();
    let name = match target {
        Target::Confer => "confer (stored)".to_string(),
        Target::NodeRelay => "node socket.io relay".to_string(),
    };
    let expected = sent * members as u64;
    drop(held);
    drop(server);
    Ok(vec![
        Row {
            scenario: "fanout",
            target: name.clone(),
            metric: "messages sent",
            value: sent as f64,
            unit: "",
        },
        Row {
            scenario: "fanout",
            target: name.clone(),
            metric: "delivered / expected",
            value: if expected > 0 {
                delivered as f64 / expected as f64
            } else {
                0.0
            },
            unit: "",
        },
        Row {
            scenario: "fanout",
            target: name.clone(),
            metric: "delivered",
            value: delivered as f64 / elapsed,
            unit: "msg/s",
        },
        Row {
            scenario: "fanout",
            target: name.clone(),
            metric: "latency p50",
            value: percentile(&lat, 0.5),
            unit: "ms",
        },
        Row {
            scenario: "fanout",
            target: name.clone(),
            metric: "latency p99",
            value: percentile(&lat, 0.99),
            unit: "ms",
        },
        Row {
            scenario: "fanout",
            target: name,
            metric: "latency p99.9",
            value: percentile(&lat, 0.999),
            unit: "ms",
        },
    ])
}

async fn ingest(cli: &Cli, senders: usize, seconds: u64) -> anyhow::Result<Vec<Row>> {
    let fixture = prepare(senders * 2, 2).await?;
    let users = fixture.users.clone();
    let groups = fixture.groups.clone();
    let server = start_confer(&confer_bin(cli), fixture).await?;
    let ws = server.ws();
    let acked = Arc::new(AtomicU64::new(0));
    let end = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for (i, group) in groups.iter().enumerate() {
        let (c, _events) = chat_connect(&ws, Some(&users[i * 2].1), source(i, cli.sources)).await?;
        let (acked, group) = (acked.clone(), *group);
        tasks.push(tokio::spawn(async move {
            let _events = _events;
            let mut n = 0u64;
            while Instant::now() < end {
                n += 1;
                let msg =
                    json!({"group_id": group.to_string(), "message": "x", "nonce": format!("{n}")});
                match c.call("create_message", &msg).await {
                    Ok(v) if v["result"] == 0 => {
                        acked.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => break,
                }
            }
        }));
    }
    let started = Instant::now();
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = started.elapsed().as_secs_f64().max(seconds as f64);
    let rate = acked.load(Ordering::Relaxed) as f64 / elapsed;
    drop(server);
    let peer = sqlite_loop(seconds)?;
    Ok(vec![
        Row {
            scenario: "ingest",
            target: "confer (durable acks)".into(),
            metric: "acked",
            value: rate,
            unit: "msg/s",
        },
        Row {
            scenario: "ingest",
            target: "bare SQLite batched inserts".into(),
            metric: "rows",
            value: peer,
            unit: "rows/s",
        },
        Row {
            scenario: "ingest",
            target: "confer / SQLite loop".into(),
            metric: "ratio",
            value: rate / peer.max(1.0),
            unit: "",
        },
    ])
}

/// The peer for ingest: inserting rows in batched transactions with the same durability
/// settings confer uses (WAL, synchronous=FULL), on the same disk.
fn sqlite_loop(seconds: u64) -> anyhow::Result<f64> {
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rows = match &cli.scenario {
        Scenario::Idle {
            connections,
            door,
            hold,
        } => idle(&cli, *connections, *door, *hold).await?,
        Scenario::Fanout {
            groups,
            members,
            rate,
            seconds,
            targets,
        } => {
            let mut rows = Vec::new();
            for t in targets {
                rows.extend(fanout(&cli, *groups, *members, *rate, *seconds, *t).await?);
            }
            rows
        }
        Scenario::Ingest { senders, seconds } => ingest(&cli, *senders, *seconds).await?,
    };
    print_rows(&rows);
    Ok(())
}
