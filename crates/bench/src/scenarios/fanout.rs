//! `fanout`: G groups × M members, one sender per group at a total target rate; delivered
//! messages/s, send→deliver latency, server CPU per delivered message.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::clients::source;
use crate::cluster::Layout;
use crate::peers::confer::prepare_for;
use crate::peers::{connect_target, run_name, start_target};
use crate::report::{now_us, percentile, Row};
use crate::server::cpu_seconds;
use crate::{Cli, Target};

/// When sender `i` of `count` sends its share of `rate` messages/s: its first tick after
/// the start, and the interval between its ticks. Senders are spread evenly over one
/// interval: started together, they would send in bursts of one message each, and latency
/// would measure the burst's drain.
pub(crate) fn pacing(rate: u64, count: usize, i: usize) -> (Duration, Duration) {
    let count = count.max(1);
    let per_sender = (rate as f64 / count as f64).max(0.001);
    let interval = Duration::from_secs_f64(1.0 / per_sender);
    (interval.mul_f64(i as f64 / count as f64), interval)
}

/// Call `each` at `first` and every `interval` after it, for the ticks due before `end`:
/// `rate × seconds` calls over all senders. A tick is judged by when it was due, not by
/// when it fired, so a late wake-up adds none (checking the clock before waiting for the
/// next tick sent one more per sender, due past the end: 5 s at 4 msg/s over 100 senders
/// sent 120, not 20).
/// Ticks the load client missed are skipped, not sent in a burst.
pub(crate) async fn paced(
    first: tokio::time::Instant,
    interval: Duration,
    end: tokio::time::Instant,
    mut each: impl FnMut(),
) {
    let mut tick = tokio::time::interval_at(first, interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        if tick.tick().await >= end {
            return;
        }
        each();
    }
}

/// Count every fan-out message `events` brings in `received`, with its latency from the
/// send time it carries, until the connection ends (one task per receiving client).
pub(crate) fn count_deliveries(
    mut events: tokio::sync::mpsc::UnboundedReceiver<crate::sio::SioEvent>,
    received: Arc<AtomicU64>,
    latencies: Arc<std::sync::Mutex<Vec<u64>>>,
) {
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
}

pub(crate) async fn fanout(
    cli: &Cli,
    groups: usize,
    members: usize,
    rate: u64,
    seconds: u64,
    target: Target,
) -> anyhow::Result<Vec<Row>> {
    let fixture = prepare_for(cli, groups * members, members).await?;
    let users = fixture.users.clone();
    let group_ids = fixture.groups.clone();
    let server = start_target(cli, target, fixture).await?;
    let received = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(std::sync::Mutex::new(Vec::<u64>::new()));
    let mut senders = Vec::new();
    let mut held = Vec::new();
    for (i, user) in users.iter().enumerate() {
        let group = group_ids[i / members];
        let (c, events) =
            connect_target(target, server.node(i), user, group, source(i, cli.sources)).await?;
        count_deliveries(events, received.clone(), latencies.clone());
        if i % members == 0 {
            senders.push((Arc::new(c), group));
        } else {
            held.push(c);
        }
    }
    let sent = Arc::new(AtomicU64::new(0));
    // Ticks the senders kept: fewer than asked when the load client itself falls behind.
    let attempted = Arc::new(AtomicU64::new(0));
    // CPU is the steadier comparison between targets: at one rate that every target keeps
    // up with, what each server (and the shared load client) spends on it.
    let server_cpu_before = server.cpu_seconds();
    let services_before = server.services.now();
    let client_cpu_before = cpu_seconds("self").unwrap_or(0.0);
    let started = Instant::now();
    let start = tokio::time::Instant::from_std(started);
    let mut tasks = Vec::new();
    let count = senders.len();
    for (i, (c, group)) in senders.into_iter().enumerate() {
        let (sent, attempted) = (sent.clone(), attempted.clone());
        let (first, interval) = pacing(rate, count, i);
        tasks.push(tokio::spawn(paced(
            start + first,
            interval,
            start + Duration::from_secs(seconds),
            move || {
                attempted.fetch_add(1, Ordering::Relaxed);
                let c = c.clone();
                let sent = sent.clone();
                tokio::spawn(async move {
                    let msg = json!({"group_id": group.to_string(), "message": format!("t={}", now_us())});
                    if c.call("create_message", &msg).await.is_ok() {
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                });
            },
        )));
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
    let mut name = run_name(target);
    if target == Target::Confer {
        name.push_str(&Layout::of(cli)?.suffix());
    }
    let services = server
        .services
        .rows("fanout", &name, services_before, elapsed);
    let expected = sent * members as u64;
    drop(held);
    drop(server);
    let mut rows = vec![
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
        // Every message sent was acked (durably, by the targets that store): at one rate
        // that every target keeps up with, the other headline of issue 23.
        Row {
            scenario: "fanout",
            target: name.clone(),
            metric: "server CPU per acked message",
            value: server_cpu * 1e6 / sent.max(1) as f64,
            unit: "µs",
        },
        Row {
            scenario: "fanout",
            target: name,
            metric: "load client CPU",
            value: client_cpu / elapsed,
            unit: "cores",
        },
    ];
    rows.extend(services);
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The messages all senders send for `rate` msg/s over `seconds`, on tokio's paused
    /// clock (it jumps to each tick, so the count does not depend on this machine's load).
    async fn messages_sent(rate: u64, senders: usize, seconds: u64) -> u64 {
        let count = Arc::new(AtomicU64::new(0));
        let start = tokio::time::Instant::now();
        let end = start + Duration::from_secs(seconds);
        let mut tasks = Vec::new();
        for i in 0..senders {
            let (first, interval) = pacing(rate, senders, i);
            let count = count.clone();
            tasks.push(tokio::spawn(paced(
                start + first,
                interval,
                end,
                move || {
                    count.fetch_add(1, Ordering::Relaxed);
                },
            )));
        }
        for t in tasks {
            let _ = t.await;
        }
        count.load(Ordering::Relaxed)
    }

    #[tokio::test(start_paused = true)]
    async fn senders_send_rate_times_seconds_messages() {
        // The low rates of the peers' runs: fewer messages per sender than one per second.
        assert_eq!(messages_sent(4, 100, 5).await, 20);
        assert_eq!(messages_sent(2, 10, 10).await, 20);
        assert_eq!(messages_sent(15, 100, 10).await, 150);
        // One sender, and the rates of confer's runs.
        assert_eq!(messages_sent(10, 1, 3).await, 30);
        assert_eq!(messages_sent(250, 100, 5).await, 1250);
        assert_eq!(messages_sent(4000, 100, 5).await, 20_000);
    }
}
