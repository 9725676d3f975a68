//! `idle --workers W`: more idle connections than one process may hold (here 20,000
//! descriptors each, a hard limit), spread over confer's `--nodes` and over W load-client
//! processes (this binary again, as `idle-worker`, each holding at most
//! [`MAX_PER_WORKER`]); total and per-connection memory of the nodes, PostgreSQL and Redis
//! included; then, with `--fanout-rate`, a fan-out at that rate across all of them, with
//! latency.
//!
//! Apart from `idle.rs` because the work is split over processes: the parent prepares,
//! starts the nodes and measures; each worker connects its share, holds it, sends and
//! receives its part of the fan-out, and reports back over its standard output.
//!
//! The parent speaks to a worker over its standard input, one line each:
//! `<index> <ws url> <token> <group> <0|1 sender>` per client, then `connect`; the worker
//! answers `connected <n> <handshakes tried again> <clients given up>`. Then `fanout`; it
//! answers `result <json>`. When its input closes, it exits (its connections close with
//! it). A client whose handshake fails [`CONNECT_TRIES`] times is given up and counted,
//! not fatal: the run measures what it holds and says how many it asked for.

use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::clients::{chat_connect, source};
use crate::cluster::{proc_kb, Layout};
use crate::peers::confer::prepare_for;
use crate::peers::start_target;
use crate::report::{now_us, percentile, Row};
use crate::scenarios::fanout::count_deliveries;
use crate::scenarios::storm::local_ports;
use crate::{Cli, Target};

/// Connections one worker holds at most: a process here may hold 20,000 descriptors.
pub(crate) const MAX_PER_WORKER: usize = 18_000;

/// What the crowd run was asked.
pub(crate) struct Crowd {
    pub(crate) connections: usize,
    pub(crate) workers: usize,
    pub(crate) hold: u64,
    /// Group size for the fan-out (each group's first member sends).
    pub(crate) members: usize,
    /// Messages per second sent in total; 0: no fan-out.
    pub(crate) rate: u64,
    pub(crate) seconds: u64,
}

/// One worker process and its pipes.
struct Worker {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl Worker {
    async fn expect(&mut self, word: &str) -> anyhow::Result<String> {
        let line = self
            .lines
            .next_line()
            .await?
            .ok_or_else(|| anyhow!("a worker exited before it said {word}"))?;
        line.strip_prefix(word)
            .map(|r| r.trim().to_string())
            .ok_or_else(|| anyhow!("a worker said {line:?}, not {word}"))
    }
}

/// A `TcpExt` counter of `/proc/net/netstat` (a name line, then a value line).
fn tcp_ext(name: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/net/netstat").ok()?;
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("TcpExt:")).collect();
    let [names, values] = lines[..] else {
        return None;
    };
    let at = names.split_whitespace().position(|n| n == name)?;
    values.split_whitespace().nth(at)?.parse().ok()
}

/// The kernel's counters of refused or reset connections that explain failed handshakes.
const TCP_COUNTERS: [&str; 3] = ["ListenOverflows", "ListenDrops", "TCPAbortOnData"];

/// What the kernel allows, as rows (and the reason for each limit in BENCHMARKS.md).
fn kernel_rows() -> Vec<Row> {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
    };
    let mut rows = Vec::new();
    let mut add = |metric, value: Option<f64>, unit| {
        if let Some(value) = value {
            rows.push(Row {
                scenario: "idle",
                target: "kernel".into(),
                metric,
                value,
                unit,
            });
        }
    };
    add(
        "local ports per source address",
        local_ports().map(|p| p as f64),
        "",
    );
    add("somaxconn", read("/proc/sys/net/core/somaxconn"), "");
    add(
        "tcp_max_syn_backlog",
        read("/proc/sys/net/ipv4/tcp_max_syn_backlog"),
        "",
    );
    // Loopback connections are tracked too when netfilter's conntrack is loaded: past
    // this many (both directions of one connection are one entry) new ones are dropped.
    add(
        "nf_conntrack_max",
        read("/proc/sys/net/netfilter/nf_conntrack_max"),
        "",
    );
    add("fs.file-max", read("/proc/sys/fs/file-max"), "");
    add("fs.nr_open", read("/proc/sys/fs/nr_open"), "");
    add(
        "MemTotal",
        std::fs::read_to_string("/proc/meminfo").ok().and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
                .map(|kb| kb / 1024.0 / 1024.0)
        }),
        "GiB",
    );
    // tcp_mem's third figure: pages all TCP sockets may use before the kernel refuses.
    add(
        "tcp_mem max",
        std::fs::read_to_string("/proc/sys/net/ipv4/tcp_mem")
            .ok()
            .and_then(|s| s.split_whitespace().nth(2)?.parse::<f64>().ok())
            .map(|pages| pages * 4096.0 / (1u64 << 30) as f64),
        "GiB",
    );
    rows
}

pub(crate) async fn crowd(cli: &Cli, ask: &Crowd) -> anyhow::Result<Vec<Row>> {
    let n = ask.connections;
    let layout = Layout::of(cli)?;
    let workers = ask.workers.max(n.div_ceil(MAX_PER_WORKER)).max(1);
    if n.div_ceil(layout.nodes) > MAX_PER_WORKER {
        eprintln!(
            "idle: {} connections per node need more descriptors than 20,000: add --nodes {}",
            n.div_ceil(layout.nodes),
            n.div_ceil(MAX_PER_WORKER)
        );
    }
    if let Some(ports) = local_ports() {
        // Sockets bound to a source address each take a port of it, whatever the node.
        let per_source = n.div_ceil(usize::from(cli.sources.max(1)));
        if per_source > ports {
            bail!(
                "{per_source} connections per source address, {ports} local ports: add --sources {}",
                n.div_ceil(ports) + 1
            );
        }
    }
    let members = ask.members.max(2);
    let started_at = Instant::now();
    let fixture = prepare_for(cli, n, members).await?;
    eprintln!(
        "idle: {n} accounts, tokens and {} groups prepared in {:.0} s",
        fixture.groups.len(),
        started_at.elapsed().as_secs_f64()
    );
    let users = fixture.users.clone();
    let groups = fixture.groups.clone();
    let server = start_target(cli, Target::Confer, fixture).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let base_nodes = server.rss_kb();
    let [base_pg, base_redis] = server.services.now();

    // Each worker a contiguous share; members of a group are consecutive users, so a
    // group's members sit on consecutive nodes (round-robin) and mostly in one worker.
    let exe = std::env::current_exe()?;
    let share = n.div_ceil(workers);
    let mut procs = Vec::new();
    for (w, chunk) in users.chunks(share.max(1)).enumerate() {
        let per_worker = ask.rate as f64 / workers as f64;
        let mut child = tokio::process::Command::new(&exe)
            .args(["--sources", &cli.sources.to_string(), "idle-worker"])
            .args(["--rate", &per_worker.to_string()])
            .args(["--seconds", &ask.seconds.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting a load-client worker")?;
        let mut stdin = child.stdin.take().ok_or_else(|| anyhow!("no stdin"))?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let mut plan = String::new();
        for (j, (_, token)) in chunk.iter().enumerate() {
            let i = w * share + j;
            let group = groups.get(i / members).copied().unwrap_or(0);
            let sender = u8::from(i.is_multiple_of(members) && ask.rate > 0);
            plan.push_str(&format!(
                "{i} {} {token} {group} {sender}\n",
                server.node(i).ws()
            ));
        }
        plan.push_str("connect\n");
        stdin.write_all(plan.as_bytes()).await?;
        procs.push(Worker {
            child,
            stdin,
            lines: BufReader::new(stdout).lines(),
        });
    }
    let connect_started = Instant::now();
    let counters_before = TCP_COUNTERS.map(tcp_ext);
    let (mut held, mut retried, mut given_up) = (0usize, 0usize, 0usize);
    for w in &mut procs {
        let answer = w.expect("connected").await?;
        let mut counts = answer.split(' ').map(str::parse::<usize>);
        held += counts.next().context("connected without a count")??;
        retried += counts.next().unwrap_or(Ok(0))?;
        given_up += counts.next().unwrap_or(Ok(0))?;
    }
    let connect_secs = connect_started.elapsed().as_secs_f64();
    let counters_after = TCP_COUNTERS.map(tcp_ext);
    if given_up > 0 {
        eprintln!("idle: {given_up} of {n} clients could not connect; measuring the {held} held");
    }
    tokio::time::sleep(Duration::from_secs(ask.hold)).await;
    let nodes_kb = server.rss_kb();
    let most_kb = server.nodes.iter().map(|s| s.rss_kb()).max().unwrap_or(0);
    let [pg, redis] = server.services.now();
    let workers_kb: u64 = procs
        .iter()
        .filter_map(|w| w.child.id())
        .map(|pid| proc_kb(pid, "status", "VmRSS:"))
        .sum();
    let kb = |u: Option<crate::cluster::Usage>| u.map_or(0, |u| u.kb);
    let total = nodes_kb + kb(pg) + kb(redis);
    let base_total = base_nodes + kb(base_pg) + kb(base_redis);
    let target = format!("confer (Socket.IO{})", layout.suffix());
    let row = |metric, value, unit| Row {
        scenario: "idle",
        target: target.clone(),
        metric,
        value,
        unit,
    };
    let mib = |kb: u64| kb as f64 / 1024.0;
    let per = |kb: u64| kb as f64 / held.max(1) as f64;
    let mut rows = kernel_rows();
    rows.extend([
        row("connections asked", n as f64, ""),
        row("connections held", held as f64, ""),
        row("clients given up", given_up as f64, ""),
        row("nodes", server.nodes.len() as f64, ""),
        row("load-client processes", procs.len() as f64, ""),
        row("time to connect all", connect_secs, "s"),
        row("handshakes tried again", retried as f64, ""),
        row("nodes RSS, idle", mib(base_nodes), "MiB"),
        row("nodes RSS, holding all", mib(nodes_kb), "MiB"),
        row("largest node RSS", mib(most_kb), "MiB"),
        row("PostgreSQL memory (PSS)", mib(kb(pg)), "MiB"),
        row("Redis RSS", mib(kb(redis)), "MiB"),
        row("total (nodes + PostgreSQL + Redis)", mib(total), "MiB"),
        row(
            "total per connection",
            per(total.saturating_sub(base_total)),
            "KiB",
        ),
        row(
            "nodes per connection",
            per(nodes_kb.saturating_sub(base_nodes)),
            "KiB",
        ),
        row(
            "load clients RSS (not counted above)",
            mib(workers_kb),
            "MiB",
        ),
    ]);
    for ((name, before), after) in TCP_COUNTERS.iter().zip(counters_before).zip(counters_after) {
        if let (Some(before), Some(after)) = (before, after) {
            rows.push(Row {
                scenario: "idle",
                target: "kernel".into(),
                metric: match *name {
                    "ListenOverflows" => "listen queue overflows while connecting",
                    "ListenDrops" => "SYNs dropped at listen while connecting",
                    _ => "closed sockets reset on data (TCPAbortOnData) while connecting",
                },
                value: after.saturating_sub(before) as f64,
                unit: "",
            });
        }
    }
    if ask.rate > 0 {
        let cpu_before = server.cpu_seconds();
        let services_before = server.services.now();
        let started = Instant::now();
        for w in &mut procs {
            w.stdin.write_all(b"fanout\n").await?;
        }
        let (mut sent, mut attempted, mut received) = (0u64, 0u64, 0u64);
        let mut lat: Vec<u64> = Vec::new();
        for w in &mut procs {
            let result: serde_json::Value = serde_json::from_str(&w.expect("result").await?)?;
            sent += result["sent"].as_u64().unwrap_or(0);
            attempted += result["attempted"].as_u64().unwrap_or(0);
            received += result["received"].as_u64().unwrap_or(0);
            if let Some(l) = result["latencies"].as_array() {
                lat.extend(l.iter().filter_map(|v| v.as_u64()));
            }
        }
        let elapsed = started.elapsed().as_secs_f64();
        lat.sort_unstable();
        let cpu = server.cpu_seconds() - cpu_before;
        let expected = sent * members as u64;
        let row = |metric, value, unit| Row {
            scenario: "idle fan-out",
            target: target.clone(),
            metric,
            value,
            unit,
        };
        rows.extend([
            row("messages attempted", attempted as f64, ""),
            row("messages sent", sent as f64, ""),
            row(
                "delivered / expected",
                received as f64 / expected.max(1) as f64,
                "",
            ),
            row("delivered", received as f64 / elapsed, "msg/s"),
            row("latency p50", percentile(&lat, 0.5), "ms"),
            row("latency p99", percentile(&lat, 0.99), "ms"),
            row("latency p99.9", percentile(&lat, 0.999), "ms"),
            row("nodes CPU", cpu / elapsed, "cores"),
        ]);
        rows.extend(
            server
                .services
                .rows("idle fan-out", &target, services_before, elapsed)
                .into_iter()
                .filter(|r| r.unit == "cores"),
        );
    }
    for w in procs {
        drop(w.stdin);
        let mut child = w.child;
        let _ = child.wait().await;
    }
    drop(server);
    Ok(rows)
}

/// How often a worker tries one client's handshake again before it gives up.
const CONNECT_TRIES: usize = 4;

/// The worker: reads its clients, connects them (100 at once: twelve workers' handshakes
/// in flight stay under the listen backlogs), says how many, then on
/// `fanout` sends `rate` messages/s in total from its senders (round-robin) for
/// `seconds`, waits two seconds for the last deliveries, and reports.
pub(crate) async fn worker(cli: &Cli, rate: f64, seconds: u64) -> anyhow::Result<()> {
    // Standard input read by a thread of its own (tokio's `io-std` is not among the
    // workspace's features, and enabling it here would rebuild tokio for every crate).
    let (lines_tx, mut input) = tokio::sync::mpsc::channel::<String>(1024);
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { break };
            if lines_tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    let mut plan = Vec::new();
    while let Some(line) = input.recv().await {
        if line == "connect" {
            break;
        }
        let f: Vec<&str> = line.split(' ').collect();
        let [i, ws, token, group, sender] = f[..] else {
            bail!("a worker's plan line has five fields: {line:?}");
        };
        plan.push((
            i.parse::<usize>()?,
            ws.to_string(),
            token.to_string(),
            group.parse::<u64>()?,
            sender == "1",
        ));
    }
    let received = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(std::sync::Mutex::new(Vec::<u64>::new()));
    let mut senders = Vec::new();
    let mut held = Vec::new();
    let (mut retried, mut given_up) = (0usize, 0usize);
    for batch in plan.chunks(100) {
        let tasks = batch
            .iter()
            .map(|(i, ws, token, group, sender)| async move {
                let mut tries = 0;
                loop {
                    match chat_connect(ws, Some(token), source(*i, cli.sources)).await {
                        Ok((c, events)) => break anyhow::Ok((c, events, *group, *sender, tries)),
                        // Among a hundred thousand handshakes an odd one fails (a full
                        // backlog, a reset): try it again before giving the client up.
                        Err(e) if tries < CONNECT_TRIES => {
                            tries += 1;
                            eprintln!("client {i}: {e:#}; trying again ({tries})");
                            tokio::time::sleep(Duration::from_millis(250 << tries)).await;
                        }
                        Err(e) => {
                            eprintln!("client {i}: {e:#}; given up");
                            break Err(e);
                        }
                    }
                }
            });
        for r in futures_util::future::join_all(tasks).await {
            let Ok((c, events, group, sender, tries)) = r else {
                given_up += 1;
                retried += CONNECT_TRIES;
                continue;
            };
            retried += tries;
            count_deliveries(events, received.clone(), latencies.clone());
            let c = Arc::new(c);
            if sender {
                senders.push((c.clone(), group));
            }
            held.push(c);
        }
    }
    println!("connected {} {retried} {given_up}", held.len());
    while let Some(line) = input.recv().await {
        if line != "fanout" {
            continue;
        }
        let sent = Arc::new(AtomicU64::new(0));
        let mut attempted = 0u64;
        if rate > 0.0 && !senders.is_empty() {
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let end = Instant::now() + Duration::from_secs(seconds);
            while Instant::now() < end {
                tick.tick().await;
                let (c, group) = senders[attempted as usize % senders.len()].clone();
                attempted += 1;
                let sent = sent.clone();
                tokio::spawn(async move {
                    let msg = json!({"group_id": group.to_string(), "message": format!("t={}", now_us())});
                    if c.call("create_message", &msg).await.is_ok() {
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let lat = std::mem::take(&mut *latencies.lock().unwrap_or_else(|e| e.into_inner()));
        let result = json!({
            "attempted": attempted,
            "sent": sent.load(Ordering::Relaxed),
            "received": received.swap(0, Ordering::Relaxed),
            "latencies": lat,
        });
        println!("result {result}");
    }
    drop(held);
    Ok(())
}
