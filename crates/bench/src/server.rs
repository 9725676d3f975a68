//! A started server process (confer or a peer), killed on drop, and what the benchmarks read
//! about it from `/proc`: CPU time of the process and of named threads, resident memory.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::peers::confer::spawn_confer;

/// A started server process, killed on drop.
pub(crate) struct Server {
    pub(crate) child: tokio::process::Child,
    pub(crate) port: u16,
    pub(crate) _dir: Option<tempfile::TempDir>,
    /// How to start it again (confer only): binary and data folder.
    pub(crate) respawn: Option<(PathBuf, PathBuf)>,
    /// What a peer issued at setup that its clients need (Matrix access tokens and room
    /// ids); `None` for the others.
    pub(crate) accounts: Option<std::sync::Arc<crate::peers::Accounts>>,
}

impl Server {
    pub(crate) fn ws(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }

    /// Kill the process (every connection is cut at once) and start it again on the same
    /// port and data folder.
    pub(crate) async fn restart(&mut self) -> anyhow::Result<()> {
        let (bin, data) = self
            .respawn
            .clone()
            .ok_or_else(|| anyhow!("cannot restart a peer"))?;
        self.child.kill().await?;
        self.child = spawn_confer(&bin, &data, self.port)?;
        wait_healthy(self.port).await
    }

    /// CPU time the server process has used so far (user + system), in seconds.
    pub(crate) fn cpu_seconds(&self) -> f64 {
        self.child
            .id()
            .and_then(|pid| cpu_seconds(&pid.to_string()))
            .unwrap_or(0.0)
    }

    /// Wait (30 s at most) until the process is nearly idle: a peer that listens may
    /// still be loading (the BEAM's modules, Synapse's caches), and that CPU is not the
    /// scenario's.
    pub(crate) async fn settle(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut last = self.cpu_seconds();
        while Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let now = self.cpu_seconds();
            if now - last < 0.05 {
                return;
            }
            last = now;
        }
    }

    pub(crate) fn rss_kb(&self) -> u64 {
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
pub(crate) const WRITER_THREAD: &str = "confer-sqlite-writer";

/// Clock ticks per second in `/proc/<pid>/stat` (`USER_HZ`, 100 on Linux).
pub(crate) const CLOCK_TICKS: f64 = 100.0;

/// CPU time (user + system) process `pid` ("self" for this one) has used, in seconds.
pub(crate) fn cpu_seconds(pid: &str) -> Option<f64> {
    stat_cpu_seconds(&format!("/proc/{pid}/stat"))
}

/// CPU time of process `pid`'s threads named `name`.
pub(crate) fn thread_cpu_seconds(pid: u32, name: &str) -> f64 {
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
pub(crate) fn stat_cpu_seconds(path: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(path).ok()?;
    // The command name in field 2 may hold spaces; the fields after it are plain.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat(5); `fields` starts at field 3.
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / CLOCK_TICKS)
}

pub(crate) fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

pub(crate) async fn wait_healthy(port: u16) -> anyhow::Result<()> {
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
