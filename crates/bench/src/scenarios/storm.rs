//! `storm`: N clients all cut by a server restart; how many resume, and how fast.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::clients::source;
use crate::peers::confer::{confer_bin, prepare, start_confer};
use crate::report::Row;
use crate::scenarios::drops::resuming_client;
use crate::Cli;

/// Local ports the kernel hands out for outgoing connections (`ip_local_port_range`).
pub(crate) fn local_ports() -> Option<usize> {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let mut bounds = range.split_whitespace().map(|n| n.parse::<usize>().ok());
    let (low, high) = (bounds.next()??, bounds.next()??);
    Some(high.saturating_sub(low) + 1)
}

pub(crate) async fn storm(cli: &Cli, clients: usize, timeout: u64) -> anyhow::Result<Vec<Row>> {
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
