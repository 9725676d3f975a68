//! confer as several nodes over PostgreSQL and Redis (`--database-url`, `--redis-url`,
//! `--nodes`): a fresh database per run, the started nodes as one [`Deployment`] whose CPU
//! and memory are their sum, and what `/proc` says about the PostgreSQL and Redis
//! processes beside them ([`Services`]).
//!
//! It lives apart from `peers/confer.rs` because only confer runs this way, and apart
//! from `server.rs` because a [`Server`] is one process while a deployment is several
//! plus the services they share.

use std::ops::Deref;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{anyhow, bail, Context};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::report::Row;
use crate::server::{stat_cpu_seconds, Server};
use crate::Cli;

/// How confer stores and joins its nodes in this run, from the command line.
#[derive(Clone, Debug, Default)]
pub(crate) struct Layout {
    /// A PostgreSQL server URL; each run gets a fresh database on it.
    pub(crate) database_url: Option<String>,
    pub(crate) redis_url: Option<String>,
    pub(crate) nodes: usize,
    /// `database_pool_size` of each node.
    pub(crate) pool: usize,
}

impl Layout {
    pub(crate) fn of(cli: &Cli) -> anyhow::Result<Layout> {
        let layout = Layout {
            database_url: cli.database_url.clone().filter(|u| !u.is_empty()),
            redis_url: cli.redis_url.clone().filter(|u| !u.is_empty()),
            nodes: cli.nodes.max(1),
            pool: cli.pool_size.max(1),
        };
        if layout.nodes > 1 && (layout.database_url.is_none() || layout.redis_url.is_none()) {
            bail!(
                "--nodes {} needs --database-url and --redis-url: nodes share both",
                cli.nodes
            );
        }
        Ok(layout)
    }

    /// How the run's rows name confer's deployment: nothing for the default (one node on
    /// SQLite), so the figures of earlier sections keep their names.
    pub(crate) fn suffix(&self) -> String {
        match (&self.database_url, &self.redis_url) {
            (None, _) => String::new(),
            (Some(_), None) => ", 1 node, PostgreSQL".into(),
            (Some(_), Some(_)) => {
                let s = if self.nodes == 1 { "" } else { "s" };
                format!(", {} node{s}, PostgreSQL + Redis", self.nodes)
            }
        }
    }
}

/// A database created for one run on the server of `--database-url`, dropped (with its
/// sessions forced out) when this is dropped.
pub(crate) struct FreshDatabase {
    pub(crate) url: String,
    admin: String,
    name: String,
}

static RUNS: AtomicU32 = AtomicU32::new(0);

/// A name unique to this process and run: databases and Redis prefixes of earlier runs
/// (or of another bench beside this one) are never reused.
pub(crate) fn run_id() -> String {
    format!(
        "bench_{}_{}",
        std::process::id(),
        RUNS.fetch_add(1, Ordering::Relaxed)
    )
}

/// `url` with its database name replaced by `name` (query parameters kept).
pub(crate) fn with_database(url: &str, name: &str) -> anyhow::Result<String> {
    let scheme_end = url
        .find("://")
        .ok_or_else(|| anyhow!("--database-url must look like postgres://user@host:port/db"))?
        + 3;
    let (base, rest) = url.split_at(scheme_end);
    let (authority, tail) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let query = tail.find('?').map_or("", |q| &tail[q..]);
    Ok(format!("{base}{authority}/{name}{query}"))
}

async fn admin_client(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .with_context(|| format!("connecting to PostgreSQL at {url}"))?;
    tokio::spawn(conn);
    Ok(client)
}

impl FreshDatabase {
    pub(crate) async fn create(admin: &str) -> anyhow::Result<FreshDatabase> {
        let name = run_id();
        let client = admin_client(admin).await?;
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .with_context(|| format!("creating database {name}"))?;
        Ok(FreshDatabase {
            url: with_database(admin, &name)?,
            admin: admin.to_string(),
            name,
        })
    }
}

impl Drop for FreshDatabase {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        // Drop runs inside the scenario's runtime, which cannot be blocked on: a thread of
        // its own with a runtime of its own waits for the DROP.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                let client = admin_client(&admin).await?;
                client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await?;
                anyhow::Ok(())
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop database {}: drop it by hand", self.name);
        }
    }
}

/// The PostgreSQL and Redis processes the nodes share, found through the servers
/// themselves (PostgreSQL: the parent of our backend's process; Redis: `INFO server`),
/// so they are measured only when they run on this machine.
#[derive(Default)]
pub(crate) struct Services {
    postmaster: Option<u32>,
    redis: Option<u32>,
}

/// CPU seconds and memory (KiB) of a set of processes at one moment.
#[derive(Clone, Copy, Default)]
pub(crate) struct Usage {
    pub(crate) cpu: f64,
    pub(crate) kb: u64,
}

impl Services {
    pub(crate) async fn find(layout: &Layout) -> Services {
        let mut found = Services::default();
        if let Some(url) = &layout.database_url {
            match postmaster_pid(url).await {
                Ok(pid) => found.postmaster = Some(pid),
                Err(e) => eprintln!("PostgreSQL's CPU and memory left out: {e:#}"),
            }
        }
        if let Some(url) = &layout.redis_url {
            match redis_pid(url).await {
                Ok(pid) => found.redis = Some(pid),
                Err(e) => eprintln!("Redis's CPU and memory left out: {e:#}"),
            }
        }
        found
    }

    /// PostgreSQL: the postmaster and every process it forked (backends, writer, WAL
    /// writer, …), memory as PSS so the shared buffers count once.
    pub(crate) fn postgres(&self) -> Option<Usage> {
        let pm = self.postmaster?;
        let mut pids = vec![pm];
        if let Ok(dir) = std::fs::read_dir("/proc") {
            for e in dir.flatten() {
                let Some(pid) = e.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else {
                    continue;
                };
                if parent_of(pid) == Some(pm) {
                    pids.push(pid);
                }
            }
        }
        Some(pids.iter().fold(Usage::default(), |u, &pid| Usage {
            cpu: u.cpu + stat_cpu_seconds(&format!("/proc/{pid}/stat")).unwrap_or(0.0),
            kb: u.kb + proc_kb(pid, "smaps_rollup", "Pss:"),
        }))
    }

    pub(crate) fn redis(&self) -> Option<Usage> {
        let pid = self.redis?;
        Some(Usage {
            cpu: stat_cpu_seconds(&format!("/proc/{pid}/stat")).unwrap_or(0.0),
            kb: proc_kb(pid, "status", "VmRSS:"),
        })
    }

    /// Rows of the services' CPU over a run (from `before`, taken with [`Services::now`])
    /// and their memory at its end.
    pub(crate) fn rows(
        &self,
        scenario: &'static str,
        target: &str,
        before: [Option<Usage>; 2],
        elapsed: f64,
    ) -> Vec<Row> {
        let mut rows = Vec::new();
        let now = self.now();
        for (i, (name_cpu, name_mem)) in [
            ("PostgreSQL CPU", "PostgreSQL memory (PSS)"),
            ("Redis CPU", "Redis RSS"),
        ]
        .into_iter()
        .enumerate()
        {
            let Some(now) = now[i] else { continue };
            let cpu = now.cpu - before[i].map_or(now.cpu, |b| b.cpu);
            rows.push(Row {
                scenario,
                target: target.to_string(),
                metric: name_cpu,
                value: cpu / elapsed.max(1e-9),
                unit: "cores",
            });
            rows.push(Row {
                scenario,
                target: target.to_string(),
                metric: name_mem,
                value: now.kb as f64 / 1024.0,
                unit: "MiB",
            });
        }
        rows
    }

    pub(crate) fn now(&self) -> [Option<Usage>; 2] {
        [self.postgres(), self.redis()]
    }
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Field 4 of stat(5), the second after the parenthesised command name.
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// A `kB` line of `/proc/<pid>/<file>`.
pub(crate) fn proc_kb(pid: u32, file: &str, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/{file}"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

async fn postmaster_pid(url: &str) -> anyhow::Result<u32> {
    let client = admin_client(url).await?;
    let row = client.query_one("SELECT pg_backend_pid()", &[]).await?;
    let backend = u32::try_from(row.get::<_, i32>(0))?;
    parent_of(backend).ok_or_else(|| anyhow!("backend {backend} is not a process here"))
}

/// Redis's pid from `INFO server` over a plain connection (host and port of the URL).
async fn redis_pid(url: &str) -> anyhow::Result<u32> {
    let rest = url
        .strip_prefix("redis://")
        .ok_or_else(|| anyhow!("--redis-url must look like redis://host:port/"))?;
    let authority = rest.split('/').next().unwrap_or(rest);
    let host = authority.rsplit('@').next().unwrap_or(authority);
    let addr = if host.contains(':') {
        host.to_string()
    } else {
        format!("{host}:6379")
    };
    let mut s = tokio::net::TcpStream::connect(&addr)
        .await
        .with_context(|| format!("connecting to Redis at {addr}"))?;
    s.write_all(b"INFO server\r\n").await?;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let n = tokio::time::timeout_at(deadline, s.read(&mut buf)).await??;
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got);
        if let Some(pid) = text
            .lines()
            .find_map(|l| l.strip_prefix("process_id:"))
            .and_then(|p| p.trim().parse().ok())
        {
            let pid: u32 = pid;
            if std::path::Path::new(&format!("/proc/{pid}")).exists() {
                return Ok(pid);
            }
            bail!("Redis's process {pid} is not a process here");
        }
    }
    bail!("Redis's INFO server named no process_id")
}

/// The servers a scenario runs against: one (a peer, or confer alone), or confer's nodes;
/// their CPU and memory are the sums over all of them. Derefs to the first.
pub(crate) struct Deployment {
    /// At least one. Dropped (killed) before the database they use.
    pub(crate) nodes: Vec<Server>,
    pub(crate) services: Services,
    pub(crate) _database: Option<FreshDatabase>,
}

impl Deref for Deployment {
    type Target = Server;
    fn deref(&self) -> &Server {
        &self.nodes[0]
    }
}

impl From<Server> for Deployment {
    fn from(server: Server) -> Deployment {
        Deployment {
            nodes: vec![server],
            services: Services::default(),
            _database: None,
        }
    }
}

impl Deployment {
    /// The node client `i` connects to: round-robin.
    pub(crate) fn node(&self, i: usize) -> &Server {
        &self.nodes[i % self.nodes.len()]
    }

    /// CPU time of every node so far (seconds).
    pub(crate) fn cpu_seconds(&self) -> f64 {
        self.nodes.iter().map(Server::cpu_seconds).sum()
    }

    /// Resident memory of every node (KiB).
    pub(crate) fn rss_kb(&self) -> u64 {
        self.nodes.iter().map(Server::rss_kb).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn a_fresh_database_replaces_only_the_name_of_the_url() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "bench_1_0").unwrap(),
            "postgres://postgres@127.0.0.1:5432/bench_1_0"
        );
        assert_eq!(
            with_database("postgres://u:p@h/db?sslmode=disable", "b").unwrap(),
            "postgres://u:p@h/b?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://h:1", "b").unwrap(),
            "postgres://h:1/b"
        );
        assert!(with_database("h:1/db", "b").is_err());
    }
}
