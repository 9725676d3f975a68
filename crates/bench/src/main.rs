//! # confer-bench: the load generator
//!
//! Starts a fresh confer (or a peer server), prepares accounts, tokens and groups, drives
//! real connections through the Chat API (Socket.IO) or the External API (WebSocket), and
//! reports JSON lines plus a Markdown table. Scenarios:
//!
//! - `idle`: hold N authenticated connections; server RSS per connection.
//! - `fanout`: G groups × M members, one sender per group at a total target rate; delivered
//!   messages/s and send→deliver latency; `--peak` searches each target's highest rate.
//!   Targets: `confer` and the peers of `bench/peers` (Node and socketioxide relays, a
//!   tokio WebSocket broadcast).
//! - `ingest`: S senders each waiting for the ack; durable acknowledged messages/s, the
//!   two Socket.IO relays acking without storage (the ceiling here), and the bare batched
//!   SQLite insert loop on the same disk.
//! - `drops`: fan-out while receivers are cut at random and resume with `list_message`
//!   after the last id they saw; messages delivered once, lost, seen twice.
//! - `storm`: N clients all cut by a server restart; how many resume, and how fast.
//! - `logins`: password login bursts and floods of wrong guesses over HTTP: logins/s, server
//!   RSS, a real login's latency during a flood (`logins.rs`).
//!
//! - `sfu`: P synthetic WebRTC parties (str0m peers) sending generated video and audio
//!   through the media endpoint: forwarded frames/s, per-receiver loss and jitter, CPU per
//!   forwarded frame (`sfu.rs`).
//!
//! It measures; it never asserts a time. See BENCHMARKS.md for the commands and results.

mod logins;
mod raw_ws;
mod sfu;
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

use crate::raw_ws::{AnyClient, RawWs};
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
    /// Threads of the load client's runtime; by default one for `ingest` and one per core
    /// for the rest. Ingest's senders each wait for an ack, and one thread serves them
    /// with the fewest wake-ups (7.5 against 9–10 µs of client CPU per ack); fan-out's
    /// thousands of receivers need more than one core to take what the servers send.
    #[arg(long, global = true)]
    client_threads: Option<usize>,
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
    SioRelay,
    WsBroadcast,
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
            default_value = "confer,node-relay,sio-relay,ws-broadcast"
        )]
        targets: Vec<Target>,
        /// Search each target's peak: double the rate from --rate until it stops keeping
        /// up (some messages undelivered after the drain, or fewer sent than asked), then
        /// bisect; report the last rate that kept up, then compare confer to each peer.
        #[arg(long)]
        peak: bool,
        /// Bisection steps after the doubling (each halves the uncertainty).
        #[arg(long, default_value_t = 3)]
        refine: u32,
        /// With --peak, a rate is kept up only if its p99 latency is at most this many
        /// milliseconds too: past it the server is queueing (writes batch up and rates
        /// rise while every message waits), not keeping up.
        #[arg(long, default_value_t = 100.0)]
        max_p99_ms: f64,
    },
    /// Like fanout, but receivers are cut at random and resume with list_message.
    Drops {
        #[arg(long, default_value_t = 20)]
        groups: usize,
        #[arg(long, default_value_t = 5)]
        members: usize,
        #[arg(long, default_value_t = 200)]
        rate: u64,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Disconnects per second (spread over random receivers).
        #[arg(long, default_value_t = 10)]
        cuts: u64,
    },
    /// N clients all cut at once by a server restart; how many resume, and how fast.
    Storm {
        #[arg(long, default_value_t = 1000)]
        clients: usize,
        /// Give up waiting after this many seconds.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
    /// Password logins over HTTP: a burst of correct ones, then floods of wrong guesses
    /// while a real user logs in.
    Logins {
        /// Correct logins in the burst (distinct accounts).
        #[arg(long, default_value_t = 300)]
        logins: usize,
        /// Wrong guesses in each flood.
        #[arg(long, default_value_t = 1000)]
        guesses: usize,
        /// Requests at once.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
    },
    /// Synthetic WebRTC parties sending ~500 kbit/s video + ~32 kbit/s audio through the
    /// media endpoint, each receiving every other party of its conference.
    Sfu {
        #[arg(long, default_value_t = 6)]
        parties: usize,
        #[arg(long, default_value_t = 2)]
        conferences: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// Senders that each wait for the durable ack.
    Ingest {
        #[arg(long, default_value_t = 200)]
        senders: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Which servers to run, one after the other: the relays ack without storing,
        /// the ceiling of this client and protocol on this machine.
        #[arg(
            long,
            value_enum,
            value_delimiter = ',',
            default_value = "confer,node-relay,sio-relay"
        )]
        targets: Vec<Target>,
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

impl Row {
    /// confer's figure as a ratio of a peer's.
    fn ratio(
        scenario: &'static str,
        target: String,
        metric: &'static str,
        confer: f64,
        peer: f64,
    ) -> Row {
        Row {
            scenario,
            target,
            metric,
            value: confer / peer.max(1.0),
            unit: "",
        }
    }
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
    /// How to start it again (confer only): binary and data folder.
    respawn: Option<(PathBuf, PathBuf)>,
}

impl Server {
    fn ws(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }

    /// Kill the process (every connection is cut at once) and start it again on the same
    /// port and data folder.
    async fn restart(&mut self) -> anyhow::Result<()> {
        let (bin, data) = self
            .respawn
            .clone()
            .ok_or_else(|| anyhow!("cannot restart a peer"))?;
        self.child.kill().await?;
        self.child = spawn_confer(&bin, &data, self.port)?;
        wait_healthy(self.port).await
    }

    /// CPU time the server process has used so far (user + system), in seconds.
    fn cpu_seconds(&self) -> f64 {
        self.child
            .id()
            .and_then(|pid| cpu_seconds(&pid.to_string()))
            .unwrap_or(0.0)
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

/// The name confer gives its storage writer thread (`crates/store-sqlite/src/writer.rs`).
const WRITER_THREAD: &str = "confer-sqlite-writer";

/// Clock ticks per second in `/proc/<pid>/stat` (`USER_HZ`, 100 on Linux).
const CLOCK_TICKS: f64 = 100.0;

/// CPU time (user + system) process `pid` ("self" for this one) has used, in seconds.
fn cpu_seconds(pid: &str) -> Option<f64> {
    stat_cpu_seconds(&format!("/proc/{pid}/stat"))
}

/// CPU time of process `pid`'s threads named `name`.
fn thread_cpu_seconds(pid: u32, name: &str) -> f64 {
    // Linux keeps the first 15 bytes of a thread's name.
    let shown = &name[..name.len().min(15)];
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0.0;
    };
    tasks
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm"))
                .is_ok_and(|comm| comm.trim_end() == shown)
        })
        .filter_map(|t| stat_cpu_seconds(&t.path().join("stat").to_string_lossy()))
        .sum()
}

/// utime + stime from a `stat` file of `/proc`, in seconds.
fn stat_cpu_seconds(path: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(path).ok()?;
    // The command name in field 2 may hold spaces; the fields after it are plain.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat(5); `fields` starts at field 3.
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / CLOCK_TICKS)
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

fn spawn_confer(bin: &Path, data: &Path, port: u16) -> anyhow::Result<tokio::process::Child> {
    tokio::process::Command::new(bin)
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(data)
        .env("CONFER_LOG_LEVEL", "warn")
        .env("CONFER_CHAT_RATE_PER_SEC", "1000000")
        .env("CONFER_CHAT_RATE_BURST", "1000000")
        .env("CONFER_OUTBOUND_QUEUE", "8192")
        // Every simulated client comes from 127.0.0.1.
        .env("CONFER_MAX_CONNECTIONS_PER_IP", "0")
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))
}

async fn start_confer(bin: &Path, fixture: Fixture) -> anyhow::Result<Server> {
    let port = free_port()?;
    let data = fixture.dir.path().join("data");
    let child = spawn_confer(bin, &data, port)?;
    wait_healthy(port).await?;
    Ok(Server {
        child,
        port,
        _dir: Some(fixture.dir),
        respawn: Some((bin.to_path_buf(), data)),
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
    peer_listening(child, port, "node relay").await
}

/// Wait until a started peer accepts connections on `port`.
async fn peer_listening(
    child: tokio::process::Child,
    port: u16,
    name: &str,
) -> anyhow::Result<Server> {
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Ok(Server {
                child,
                port,
                _dir: None,
                respawn: None,
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("{name} did not start")
}

/// Start a Rust peer (`bench/peers/rust-relays`), built beside this binary.
async fn start_rust_peer(name: &str) -> anyhow::Result<Server> {
    let bin = std::env::current_exe()?
        .parent()
        .map(|d| d.join(name))
        .ok_or_else(|| anyhow!("no directory for {name}"))?;
    if !bin.exists() {
        bail!(
            "{} missing: cargo build --manifest-path bench/peers/rust-relays/Cargo.toml --target-dir target",
            bin.display()
        );
    }
    let port = free_port()?;
    let child = tokio::process::Command::new(&bin)
        .env("PORT", port.to_string())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    peer_listening(child, port, name).await
}

/// Start `target`: confer on the prepared fixture, or a peer (which ignores it).
async fn start_target(cli: &Cli, target: Target, fixture: Fixture) -> anyhow::Result<Server> {
    match target {
        Target::Confer => start_confer(&confer_bin(cli), fixture).await,
        Target::NodeRelay => start_node_relay().await,
        Target::SioRelay => start_rust_peer("sio-relay").await,
        Target::WsBroadcast => start_rust_peer("ws-broadcast").await,
    }
}

/// A client of `target` in `group`: confer's members are in their groups already (logged
/// in with `token`); a peer's client joins the group's room, so both get the same echoes.
async fn connect_target(
    target: Target,
    ws: &str,
    token: &str,
    group: u64,
    bind: Option<IpAddr>,
) -> anyhow::Result<(
    AnyClient,
    tokio::sync::mpsc::UnboundedReceiver<sio::SioEvent>,
)> {
    let (c, events) = match target {
        Target::Confer => {
            let (c, e) = chat_connect(ws, Some(token), bind).await?;
            return Ok((AnyClient::Sio(c), e));
        }
        Target::NodeRelay | Target::SioRelay => {
            let (c, e) = chat_connect(ws, None, bind).await?;
            (AnyClient::Sio(c), e)
        }
        Target::WsBroadcast => {
            let (c, e) = RawWs::connect(ws).await?;
            (AnyClient::Raw(c), e)
        }
    };
    c.call("join", &json!({"group_id": group.to_string()}))
        .await?;
    Ok((c, events))
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
            .ok_or_else(|| anyhow!("closed before login"))?
            .parse();
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
    let (conn, _) = tokio_tungstenite::connect_async_with_config(
        format!("{ws}/api/ws"),
        sio::ws_config(),
        true,
    )
    .await?;
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
    let server = start_target(cli, target, fixture).await?;
    let ws = server.ws();
    let received = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(std::sync::Mutex::new(Vec::<u64>::new()));
    let mut senders = Vec::new();
    let mut held = Vec::new();
    for (i, (_, token)) in users.iter().enumerate() {
        let group = group_ids[i / members];
        let (c, mut events) =
            connect_target(target, &ws, token, group, source(i, cli.sources)).await?;
        let (received, latencies) = (received.clone(), latencies.clone());
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                if !event.is("message") {
                    continue;
                }
                if let Some(sent) = event.stamp() {
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
    // Ticks the senders kept: fewer than asked when the load client itself falls behind.
    let attempted = Arc::new(AtomicU64::new(0));
    // CPU is the steadier comparison between targets: at one rate that every target keeps
    // up with, what each server (and the shared load client) spends on it.
    let server_cpu_before = server.cpu_seconds();
    let client_cpu_before = cpu_seconds("self").unwrap_or(0.0);
    let started = Instant::now();
    let end = started + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    let count = senders.len().max(1);
    for (i, (c, group)) in senders.into_iter().enumerate() {
        let (sent, attempted) = (sent.clone(), attempted.clone());
        // Senders are spread evenly over one interval: started together, they would send
        // in bursts of one message each, and latency would measure the burst's drain.
        let first =
            tokio::time::Instant::from_std(started) + interval.mul_f64(i as f64 / count as f64);
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(first, interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            while Instant::now() < end {
                tick.tick().await;
                attempted.fetch_add(1, Ordering::Relaxed);
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
    let server_cpu = server.cpu_seconds() - server_cpu_before;
    let client_cpu = cpu_seconds("self").unwrap_or(0.0) - client_cpu_before;
    let delivered = received.load(Ordering::Relaxed);
    let sent = sent.load(Ordering::Relaxed);
    let attempted = attempted.load(Ordering::Relaxed);
    let mut lat = latencies.lock().unwrap_or_else(|e| e.into_inner()).clone();
    lat.sort_unstable();
    let name = run_name(target);
    let expected = sent * members as u64;
    drop(held);
    drop(server);
    Ok(vec![
        Row {
            scenario: "fanout",
            target: name.clone(),
            metric: "messages attempted",
            value: attempted as f64,
            unit: "",
        },
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
            target: name.clone(),
            metric: "latency p99.9",
            value: percentile(&lat, 0.999),
            unit: "ms",
        },
        Row {
            scenario: "fanout",
            target: name.clone(),
            metric: "server CPU",
            value: server_cpu / elapsed,
            unit: "cores",
        },
        Row {
            scenario: "fanout",
            target: name.clone(),
            metric: "server CPU per delivery",
            value: server_cpu * 1e6 / delivered.max(1) as f64,
            unit: "µs",
        },
        Row {
            scenario: "fanout",
            target: name,
            metric: "load client CPU",
            value: client_cpu / elapsed,
            unit: "cores",
        },
    ])
}

async fn ingest(
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

fn ingest_name(t: Target) -> String {
    match t {
        Target::Confer => "confer (durable acks)".into(),
        peer => format!("{} (acks, no storage)", run_name(peer)),
    }
}

/// One target's ingest: `senders` clients, each in a group of its own (with one member
/// who is not connected), each sending its next message when the last one is acked. A
/// peer acks without storing, so it is the ceiling of this client and protocol here.
async fn ingest_one(
    cli: &Cli,
    senders: usize,
    seconds: u64,
    target: Target,
) -> anyhow::Result<(Vec<Row>, f64)> {
    let fixture = prepare(senders * 2, 2).await?;
    let users = fixture.users.clone();
    let groups = fixture.groups.clone();
    let server = start_target(cli, target, fixture).await?;
    let ws = server.ws();
    let acked = Arc::new(AtomicU64::new(0));
    let writer = |server: &Server| {
        server
            .child
            .id()
            .map_or(0.0, |pid| thread_cpu_seconds(pid, WRITER_THREAD))
    };
    let mut clients = Vec::new();
    for (i, group) in groups.iter().enumerate() {
        let (c, events) =
            connect_target(target, &ws, &users[i * 2].1, *group, source(i, cli.sources)).await?;
        // Senders read only their acks; their own echoes are dropped unread.
        drop(events);
        clients.push((c, *group));
    }
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
    drop(server);
    let name = ingest_name(target);
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
    if target == Target::Confer {
        rows.push(row("of which storage writer", writer_us, "µs"));
    }
    rows.push(row("load client CPU per ack", client_us, "µs"));
    Ok((rows, rate))
}

/// The value of one metric in a scenario's rows.
fn metric(rows: &[Row], name: &str) -> f64 {
    rows.iter()
        .find(|r| r.metric == name)
        .map_or(0.0, |r| r.value)
}

/// A peak search's runs per target at most, whatever the rates do.
const MAX_PEAK_RUNS: u32 = 16;

/// How far a peak search goes: doubling from `start`, then `refine` bisection steps. A
/// run kept up when everything sent was delivered and p99 stayed within `max_p99_ms`.
struct PeakSearch {
    start: u64,
    refine: u32,
    max_p99_ms: f64,
}

/// For each target, the most it delivered in a run that kept up, with that run's rate;
/// then confer's as a ratio of each peer's.
///
/// The load client shares the machine. When it cannot send the rate asked (fewer than 95%
/// of the messages), the run still counts if what it sent was delivered in time, and the
/// search says so: the figure is then what this machine delivers with that server and
/// this client, which is what the targets compare, and the CPU rows of a fixed-rate run
/// tell the servers apart. (Counting such runs as failures made the peak depend on how
/// far the client happened to lag in one run.)
async fn peak_search(
    cli: &Cli,
    groups: usize,
    members: usize,
    seconds: u64,
    search: &PeakSearch,
    targets: &[Target],
) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    let mut peaks = Vec::new();
    for t in targets {
        // Double until it falls behind, then halve the gap between the highest rate that
        // kept up and the lowest that did not, `refine` times.
        let mut best: Option<(u64, f64, f64)> = None;
        let mut kept: Option<u64> = None;
        let mut failed: Option<u64> = None;
        let mut rate = search.start.max(1);
        let mut steps_left = search.refine;
        let mut client_bound_at: Option<u64> = None;
        let mut runs = 0;
        loop {
            let run = fanout(cli, groups, members, rate, seconds, *t).await?;
            let asked = (rate * seconds) as f64;
            let p99 = metric(&run, "latency p99");
            let attempted = metric(&run, "messages attempted");
            let client_bound = attempted < 0.95 * asked;
            let kept_up = metric(&run, "delivered / expected") >= 0.999
                && metric(&run, "messages sent") >= 0.99 * attempted
                && p99 <= search.max_p99_ms;
            eprintln!(
                "{:?} at {rate} msg/s: {}{} (p99 {p99:.1} ms)",
                t,
                if kept_up { "kept up" } else { "fell behind" },
                if client_bound {
                    format!(", the load client sent only {attempted:.0} of {asked:.0}")
                } else {
                    String::new()
                }
            );
            let delivered = metric(&run, "delivered");
            // Asking more of a client that already lags only helps while the deliveries
            // still grow; once they do not, this is the machine's peak with this server.
            let saturated = kept_up && client_bound && best.is_some_and(|b| delivered < 1.05 * b.1);
            if kept_up {
                if best.is_none_or(|b| delivered > b.1) {
                    best = Some((rate, delivered, p99));
                }
                kept = Some(kept.map_or(rate, |k| k.max(rate)));
            } else {
                failed = Some(failed.map_or(rate, |f| f.min(rate)));
            }
            if client_bound {
                client_bound_at = Some(client_bound_at.map_or(rate, |c| c.min(rate)));
            }
            runs += 1;
            if saturated || runs >= MAX_PEAK_RUNS {
                break;
            }
            let low = kept.unwrap_or(0);
            rate = match failed {
                None => rate.saturating_mul(2),
                Some(high) if steps_left > 0 && high > low + 1 => {
                    steps_left -= 1;
                    low + (high - low) / 2
                }
                Some(_) => break,
            };
        }
        let name = run_name(*t);
        let (peak_rate, delivered, p99) = best.unwrap_or((0, 0.0, 0.0));
        rows.push(Row {
            scenario: "fanout peak",
            target: name.clone(),
            metric: "send rate of the run that delivered most",
            value: peak_rate as f64,
            unit: "msg/s",
        });
        rows.push(Row {
            scenario: "fanout peak",
            target: name.clone(),
            metric: "delivered, all within p99",
            value: delivered,
            unit: "msg/s",
        });
        rows.push(Row {
            scenario: "fanout peak",
            target: name.clone(),
            metric: "latency p99 there",
            value: p99,
            unit: "ms",
        });
        if let Some(at) = client_bound_at {
            rows.push(Row {
                scenario: "fanout peak",
                target: name,
                metric: "load client could not send (lowest such rate asked)",
                value: at as f64,
                unit: "msg/s",
            });
        }
        peaks.push((*t, delivered));
    }
    if let Some((_, confer)) = peaks.iter().find(|(t, _)| *t == Target::Confer).copied() {
        for (t, peer) in peaks.iter().filter(|(t, _)| *t != Target::Confer) {
            let name = format!("confer / {}", run_name(*t));
            rows.push(Row::ratio(
                "fanout peak",
                name,
                "ratio of delivered at peak",
                confer,
                *peer,
            ));
        }
    }
    Ok(rows)
}

fn run_name(t: Target) -> String {
    match t {
        Target::Confer => "confer (stored)",
        Target::NodeRelay => "node socket.io relay",
        Target::SioRelay => "socketioxide relay",
        Target::WsBroadcast => "tokio ws broadcast",
    }
    .to_string()
}

/// Message ids one receiver got, with how many times each.
type Receipts = Arc<std::sync::Mutex<std::collections::BTreeMap<u64, u32>>>;

/// The id of a pushed chat message.
fn message_id(event: &sio::SioEvent) -> Option<u64> {
    let (_, arg) = event.parse();
    arg["message"]["message_id"].as_str()?.parse().ok()
}

fn record(receipts: &Receipts, id: u64) {
    *receipts
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(id)
        .or_insert(0) += 1;
}

fn last_id(receipts: &Receipts) -> u64 {
    receipts
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .keys()
        .next_back()
        .copied()
        .unwrap_or(0)
}

/// Page `list_message` after `after` until empty, recording every message.
async fn catch_up(c: &Sio, group: u64, mut after: u64, receipts: &Receipts) -> anyhow::Result<()> {
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
async fn drop_prone_receiver(
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
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

async fn drops(
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
async fn resuming_client(
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

/// Local ports the kernel hands out for outgoing connections (`ip_local_port_range`).
fn local_ports() -> Option<usize> {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let mut bounds = range.split_whitespace().map(|n| n.parse::<usize>().ok());
    let (low, high) = (bounds.next()??, bounds.next()??);
    Some(high.saturating_sub(low) + 1)
}

async fn storm(cli: &Cli, clients: usize, timeout: u64) -> anyhow::Result<Vec<Row>> {
    // Reconnecting needs a second port per client while the killed connections' ports
    // wait in TIME_WAIT; when one source address has too few, the kernel's search for a
    // free port becomes the bottleneck (measured: it took most of the client's CPU).
    if let Some(ports) = local_ports() {
        let per_source = clients * 2 / usize::from(cli.sources.max(1));
        if per_source > ports {
            eprintln!(
                "storm: {per_source} local ports needed per source address, {ports} exist: \
                 the client will be the bottleneck; add --sources {}",
                clients * 2 / ports + 1
            );
        }
    }
    let members = 10.min(clients.max(2));
    let fixture = prepare(clients, members).await?;
    let users = fixture.users.clone();
    let groups = fixture.groups.clone();
    let mut server = start_confer(&confer_bin(cli), fixture).await?;
    let resumed = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    let phases: Vec<Arc<std::sync::atomic::AtomicU8>> =
        (0..users.len()).map(|_| Arc::default()).collect();
    for (i, (_, token)) in users.iter().enumerate() {
        let group = groups[(i / members).min(groups.len() - 1)];
        tasks.push(tokio::spawn(resuming_client(
            server.ws(),
            token.clone(),
            group,
            source(i, cli.sources),
            resumed.clone(),
            phases[i].clone(),
        )));
    }
    let wait_for = |target: u64, resumed: Arc<AtomicU64>| async move {
        let deadline = Instant::now() + Duration::from_secs(timeout);
        while resumed.load(Ordering::Relaxed) < target && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let n = clients as u64;
    wait_for(n, resumed.clone()).await;
    let connected = resumed.load(Ordering::Relaxed);
    let started = Instant::now();
    server.restart().await?;
    // Killing the server and starting it until healthy, within the total.
    let restart = started.elapsed().as_secs_f64();
    wait_for(connected + n, resumed.clone()).await;
    let took = started.elapsed().as_secs_f64();
    let again = resumed.load(Ordering::Relaxed).saturating_sub(connected);
    let mut by_phase = [0usize; 4];
    for p in &phases {
        by_phase[usize::from(p.load(Ordering::Relaxed).min(3))] += 1;
    }
    if again < n {
        eprintln!(
            "storm: not all resumed; clients by phase (start, connecting, catching up, \
             resumed): {by_phase:?}"
        );
    }
    for t in tasks {
        t.abort();
    }
    drop(server);
    let target = "confer".to_string();
    Ok(vec![
        Row {
            scenario: "storm",
            target: target.clone(),
            metric: "connected before",
            value: connected as f64,
            unit: "",
        },
        Row {
            scenario: "storm",
            target: target.clone(),
            metric: "resumed after restart",
            value: again as f64,
            unit: "",
        },
        Row {
            scenario: "storm",
            target: target.clone(),
            metric: "of which server restart",
            value: restart,
            unit: "s",
        },
        Row {
            scenario: "storm",
            target,
            metric: "time to resume all",
            value: took,
            unit: "s",
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

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let threads = cli.client_threads.unwrap_or(match cli.scenario {
        Scenario::Ingest { .. } => 1,
        _ => std::thread::available_parallelism().map_or(1, usize::from),
    });
    let runtime = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()?
    };
    runtime.block_on(run(&cli))
}

async fn run(cli: &Cli) -> anyhow::Result<()> {
    let rows = match &cli.scenario {
        Scenario::Idle {
            connections,
            door,
            hold,
        } => idle(cli, *connections, *door, *hold).await?,
        Scenario::Fanout {
            groups,
            members,
            rate,
            seconds,
            targets,
            peak,
            refine,
            max_p99_ms,
        } => {
            let mut rows = Vec::new();
            if *peak {
                rows.extend(
                    peak_search(
                        cli,
                        *groups,
                        *members,
                        *seconds,
                        &PeakSearch {
                            start: *rate,
                            refine: *refine,
                            max_p99_ms: *max_p99_ms,
                        },
                        targets,
                    )
                    .await?,
                );
            } else {
                for t in targets {
                    rows.extend(fanout(cli, *groups, *members, *rate, *seconds, *t).await?);
                }
            }
            rows
        }
        Scenario::Ingest {
            senders,
            seconds,
            targets,
        } => ingest(cli, *senders, *seconds, targets).await?,
        Scenario::Storm { clients, timeout } => storm(cli, *clients, *timeout).await?,
        Scenario::Logins {
            logins,
            guesses,
            concurrency,
        } => {
            let ask = logins::Logins {
                logins: *logins,
                guesses: *guesses,
                concurrency: (*concurrency).max(1),
            };
            logins::logins(&confer_bin(cli), &ask).await?
        }
        Scenario::Drops {
            groups,
            members,
            rate,
            seconds,
            cuts,
        } => drops(cli, *groups, *members, *rate, *seconds, *cuts).await?,
        Scenario::Sfu {
            parties,
            conferences,
            seconds,
        } => {
            let run = sfu::SfuRun {
                parties: *parties,
                conferences: *conferences,
                seconds: *seconds,
            };
            sfu::sfu(&run).await?
        }
    };
    print_rows(&rows);
    Ok(())
}
