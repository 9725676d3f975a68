//! `fanout --peak`: each target's highest fan-out rate whose p99 latency stays under the
//! bound and that delivers everything, by doubling and then bisecting (halving first
//! while no rate has kept up yet); then one run at half that peak for its latency.

use crate::peers::run_name;
use crate::report::{metric, Row};
use crate::scenarios::fanout::fanout;
use crate::{Cli, Target};

/// A peak search's runs per target at most, whatever the rates do.
pub(crate) const MAX_PEAK_RUNS: u32 = 16;

/// How far a peak search goes: doubling from `start`, then `refine` bisection steps. A
/// run kept up when everything sent was delivered and p99 stayed within `max_p99_ms`.
pub(crate) struct PeakSearch {
    pub(crate) start: u64,
    pub(crate) refine: u32,
    pub(crate) max_p99_ms: f64,
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
pub(crate) async fn peak_search(
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
                // Nothing kept up yet: halve, down to 1 msg/s, before bisecting (ejabberd
                // and Synapse keep up at a few messages/s only).
                Some(_) if kept.is_none() && rate > 1 => rate / 2,
                Some(high) if steps_left > 0 && high > low + 1 => {
                    steps_left -= 1;
                    low + (high - low) / 2
                }
                Some(_) => break,
            };
        }
        let name = run_name(*t);
        let (peak_rate, delivered, p99) = best.unwrap_or((0, 0.0, 0.0));
        // Latency where the target is not pushed: half its own peak's rate.
        if peak_rate > 0 {
            let half = (peak_rate / 2).max(1);
            let run = fanout(cli, groups, members, half, seconds, *t).await?;
            eprintln!(
                "{t:?} at {half} msg/s, half its peak: p50 {:.1} ms, p99 {:.1} ms",
                metric(&run, "latency p50"),
                metric(&run, "latency p99")
            );
            rows.push(Row {
                scenario: "fanout at half the peak",
                target: name.clone(),
                metric: "send rate",
                value: half as f64,
                unit: "msg/s",
            });
            const KEPT: [&str; 5] = [
                "delivered / expected",
                "latency p50",
                "latency p99",
                "latency p99.9",
                "server CPU per delivery",
            ];
            rows.extend(
                run.into_iter()
                    .filter(|r| KEPT.contains(&r.metric))
                    .map(|r| Row {
                        scenario: "fanout at half the peak",
                        ..r
                    }),
            );
        }
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
