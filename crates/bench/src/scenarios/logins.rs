//! The `logins` scenario: what password logins cost the server (issue 14.6).
//!
//! Over `POST /api/v1/login`, against fresh servers:
//!
//! 1. **burst**: `--logins` correct logins of distinct accounts, `--concurrency` at a
//!    time, with the login limits off so every attempt reaches the hasher: logins/s, the
//!    answers (200, 503 "busy"), and server RSS before and at its peak.
//! 2. **flood, one address**: `--guesses` wrong passwords at random accounts from
//!    127.0.0.1, `--concurrency` at a time, default limits; meanwhile a real user logs in
//!    from 127.0.0.2 again and again: the answers to the flood (401, 429, 503) and the
//!    real logins' latency.
//! 3. **flood, limits off**: the same with the limits off, as a flood spread over many
//!    addresses would look: only the hasher's bound protects the real login.
//!
//! It measures; it never asserts a time.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::StreamExt;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::peers::confer::prepare;
use crate::report::{percentile, Row};
use crate::server::{free_port, wait_healthy, Server};

const SCENARIO: &str = "logins";
const FLOOD_FROM: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
const REAL_FROM: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// What the scenario is asked to do.
pub struct Logins {
    pub logins: usize,
    pub guesses: usize,
    pub concurrency: usize,
}

pub async fn logins(bin: &Path, ask: &Logins) -> anyhow::Result<Vec<Row>> {
    let accounts = ask.logins.max(2);
    let mut rows = Vec::new();

    let server = start(bin, accounts, true).await?;
    rows.push(row(
        "burst",
        "server RSS before",
        server.rss_kb() as f64 / 1024.0,
        "MB",
    ));
    let peak = RssPeak::watch(&server);
    let started = Instant::now();
    let users: Vec<String> = (0..ask.logins).map(|i| format!("u{i}")).collect();
    let statuses: Vec<u16> = futures_util::stream::iter(users)
        .map(|user| {
            let port = server.port;
            async move {
                login(port, FLOOD_FROM, &user, "bench")
                    .await
                    .map(|(s, _)| s)
            }
        })
        .buffer_unordered(ask.concurrency)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    let took = started.elapsed().as_secs_f64();
    let ok = statuses.iter().filter(|s| **s == 200).count();
    rows.push(row("burst", "logins/s (200 only)", ok as f64 / took, "/s"));
    rows.push(row("burst", "answered 200", ok as f64, ""));
    rows.push(row(
        "burst",
        "answered 429 limited",
        count(&statuses, 429),
        "",
    ));
    rows.push(row("burst", "answered 503 busy", count(&statuses, 503), ""));
    rows.push(row(
        "burst",
        "server RSS peak",
        peak.stop().await / 1024.0,
        "MB",
    ));
    rows.push(row(
        "burst",
        "server RSS after",
        server.rss_kb() as f64 / 1024.0,
        "MB",
    ));
    drop(server);

    for (phase, limits) in [("flood, one address", true), ("flood, limits off", false)] {
        let server = start(bin, accounts, !limits).await?;
        rows.extend(flood(&server, phase, ask, accounts).await?);
    }
    Ok(rows)
}

/// Wrong guesses from one address, while a real user logs in from another.
async fn flood(
    server: &Server,
    phase: &'static str,
    ask: &Logins,
    accounts: usize,
) -> anyhow::Result<Vec<Row>> {
    let port = server.port;
    let peak = RssPeak::watch(server);
    let done = Arc::new(AtomicBool::new(false));
    let real = {
        let done = done.clone();
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut refused = 0u64;
            while !done.load(Ordering::Relaxed) {
                let (status, took) = login(port, REAL_FROM, "u0", "bench").await?;
                if status == 200 {
                    latencies.push(took.as_micros() as u64);
                } else {
                    refused += 1;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            anyhow::Ok((latencies, refused))
        })
    };
    let started = Instant::now();
    let statuses: Vec<u16> = futures_util::stream::iter(0..ask.guesses)
        .map(|i| {
            let user = format!("u{}", 1 + i % (accounts - 1));
            async move {
                login(port, FLOOD_FROM, &user, "wrong")
                    .await
                    .map(|(s, _)| s)
            }
        })
        .buffer_unordered(ask.concurrency)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    let took = started.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    let (mut latencies, refused) = real.await??;
    latencies.sort_unstable();
    // `percentile` takes a fraction and answers milliseconds from microseconds.
    let ms = |p: f64| percentile(&latencies, p);
    Ok(vec![
        row(
            phase,
            "guesses answered/s",
            statuses.len() as f64 / took,
            "/s",
        ),
        row(phase, "answered 401", count(&statuses, 401), ""),
        row(phase, "answered 429 limited", count(&statuses, 429), ""),
        row(phase, "answered 503 busy", count(&statuses, 503), ""),
        row(phase, "real logins ok", latencies.len() as f64, ""),
        row(phase, "real logins refused", refused as f64, ""),
        row(phase, "real login p50", ms(0.5), "ms"),
        row(phase, "real login max", ms(1.0), "ms"),
        row(phase, "server RSS peak", peak.stop().await / 1024.0, "MB"),
    ])
}

/// A fresh confer with `accounts` users `u0`… (password "bench"); `open` turns the login
/// limits off.
async fn start(bin: &Path, accounts: usize, open: bool) -> anyhow::Result<Server> {
    let fixture = prepare(accounts, 1).await?;
    let port = free_port()?;
    let data = fixture.dir.path().join("data");
    let mut command = tokio::process::Command::new(bin);
    command
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(&data)
        .env("CONFER_LOG_LEVEL", "error")
        .kill_on_drop(true);
    if open {
        command
            .env("CONFER_LOGIN_ACCOUNT_BURST", "0")
            .env("CONFER_LOGIN_ADDRESS_BURST", "0");
    }
    let child = command
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    wait_healthy(port).await?;
    Ok(Server {
        child,
        port,
        _dir: Some(fixture.dir),
        respawn: None,
        accounts: None,
    })
}

/// One `POST /api/v1/login` from source address `from`: its status and how long it took.
async fn login(
    port: u16,
    from: Ipv4Addr,
    user: &str,
    password: &str,
) -> anyhow::Result<(u16, Duration)> {
    let started = Instant::now();
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(IpAddr::V4(from), 0))?;
    let mut stream = socket
        .connect(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port))
        .await?;
    let body = json!({"user": user, "password": password}).to_string();
    let request = format!(
        "POST /api/v1/login HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await?;
    let status = String::from_utf8_lossy(&answer)
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok((status, started.elapsed()))
}

fn count(statuses: &[u16], status: u16) -> f64 {
    statuses.iter().filter(|s| **s == status).count() as f64
}

fn row(phase: &'static str, metric: &'static str, value: f64, unit: &'static str) -> Row {
    Row {
        scenario: SCENARIO,
        target: phase.to_string(),
        metric,
        value,
        unit,
    }
}

/// The server's highest RSS while a phase runs, sampled every 20 ms.
struct RssPeak {
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) task: tokio::task::JoinHandle<u64>,
}

impl RssPeak {
    fn watch(server: &Server) -> RssPeak {
        let pid = server.child.id();
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(0));
        let task = {
            let stop = stop.clone();
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    if let Some(kb) = pid.and_then(rss_kb) {
                        peak.fetch_max(kb, Ordering::Relaxed);
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                peak.load(Ordering::Relaxed)
            })
        };
        RssPeak { stop, task }
    }

    /// The peak in KiB.
    async fn stop(self) -> f64 {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap_or(0) as f64
    }
}

fn rss_kb(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}
