//! `sfu`: P synthetic parties (str0m peers, `confer_media::synthetic`) in C conferences,
//! each sending ~500 kbit/s of generated VP8 frames and ~32 kbit/s of Opus frames through
//! the media endpoint, every party receiving every other of its conference (one receive
//! slot per other party). Reports forwarded frames/s, per-receiver loss and jitter, and
//! the process CPU per forwarded frame.
//!
//! The endpoint runs in this process (the same `Sfu` the server starts), so the CPU figure
//! includes the peers' own work: an upper bound of the endpoint's.
//!
//! With `--search` ([`search`]), it runs at rising sizes (one more party per conference
//! each step) until the worst receiver loses 1 % or more, and reports the most parties at
//! which every receiver's loss stayed under 1 %.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use confer_core::media::{MediaEndpoint, MediaOffer, PartyKey};
use confer_core::metrics::Metrics;
use confer_core::{GroupId, Uin};
use confer_media::synthetic::{PeerOptions, PeerState, SyntheticPeer};
use confer_media::{Sfu, SfuConfig};

use crate::report::Row;

pub struct SfuRun {
    pub parties: usize,
    pub conferences: usize,
    pub seconds: u64,
}

/// CPU seconds this process has used (user + system), from /proc/self/stat.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    let Some(after) = stat.rsplit_once(')').map(|(_, rest)| rest) else {
        return 0.0;
    };
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the command.
    (ticks(11) + ticks(12)) / 100.0
}

pub async fn sfu(run: &SfuRun) -> anyhow::Result<Vec<Row>> {
    let conferences = run.conferences.max(1);
    let per_conference = run.parties.div_ceil(conferences).max(2);
    let metrics = Arc::new(Metrics::default());
    let config = SfuConfig {
        max_parties_per_conference: per_conference,
        ..SfuConfig::default()
    };
    let endpoint = Sfu::start(config, metrics.clone()).await?;
    let mut peers = Vec::new();
    for i in 0..run.parties {
        let conference = (i % conferences) as u64 + 1;
        let options = PeerOptions {
            id: i as u64 + 1,
            slots: per_conference - 1,
            ..PeerOptions::default()
        };
        let (mut peer, offer) =
            SyntheticPeer::new(options, IpAddr::V4(Ipv4Addr::LOCALHOST)).await?;
        let key = PartyKey {
            conference: GroupId(conference),
            party: i as u64 + 1,
        };
        let offer = MediaOffer {
            sdp: Some(offer),
            ..MediaOffer::default()
        };
        let answer = endpoint.open(key, Uin(i as u64 + 1), offer).await?;
        peer.accept_answer(&answer.sdp)
            .map_err(anyhow::Error::msg)?;
        let state = Arc::new(Mutex::new(PeerState::default()));
        let (stop, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(peer.run(state.clone(), stopped));
        peers.push((state, stop));
    }
    // Let ICE and DTLS settle before measuring.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let forwarded_before = metrics.media_forwarded_total();
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(run.seconds.max(1))).await;
    let elapsed = started.elapsed().as_secs_f64();
    let forwarded = metrics.media_forwarded_total() - forwarded_before;
    let cpu = cpu_seconds() - cpu_before;
    let mut lost = 0u64;
    let mut received = 0u64;
    let mut jitter = Vec::new();
    // The worst receiver's loss from any one sender, and whether anyone got nothing.
    let mut worst_loss_pct = 0.0f64;
    let mut streams = 0usize;
    for (state, stop) in &peers {
        let _ = stop.send(true);
        let state = state.lock().unwrap_or_else(|p| p.into_inner());
        for from in state.received.values() {
            lost += from.lost;
            let got = from.audio_frames + from.video_frames;
            received += got;
            jitter.push(from.jitter_ms);
            streams += 1;
            worst_loss_pct =
                worst_loss_pct.max(100.0 * from.lost as f64 / (from.lost + got).max(1) as f64);
        }
    }
    // A receiver that heard nothing from a party of its conference lost all of it.
    let expected_streams = (0..conferences)
        .map(|c| {
            let n = (0..run.parties).filter(|i| i % conferences == c).count();
            n * n.saturating_sub(1)
        })
        .sum::<usize>();
    if streams < expected_streams {
        worst_loss_pct = 100.0;
    }
    jitter.sort_by(f64::total_cmp);
    let loss_pct = 100.0 * lost as f64 / (lost + received).max(1) as f64;
    let median_jitter = jitter.get(jitter.len() / 2).copied().unwrap_or(0.0);
    let max_jitter = jitter.last().copied().unwrap_or(0.0);
    let target = format!("confer {} parties / {} conf", run.parties, conferences);
    let row = |metric, value, unit| Row {
        scenario: "sfu",
        target: target.clone(),
        metric,
        value,
        unit,
    };
    Ok(vec![
        row(
            "forwarded_frames_per_sec",
            forwarded as f64 / elapsed,
            "frames/s",
        ),
        row("receiver_loss", loss_pct, "%"),
        row("receiver_loss_worst", worst_loss_pct, "%"),
        row("receiver_jitter_median", median_jitter, "ms"),
        row("receiver_jitter_max", max_jitter, "ms"),
        row(
            "cpu_per_forwarded_frame",
            1e6 * cpu / (forwarded.max(1) as f64),
            "µs (process, peers included)",
        ),
    ])
}

/// Runs [`sfu`] at `conferences × 2` parties, then one more party per conference each
/// step, until the worst receiver's loss reaches 1 % or `max_parties` is passed; every
/// step's rows, then `most_parties_under_1pct_loss` (0 when even the first step lost 1 %).
pub async fn search(
    conferences: usize,
    max_parties: usize,
    seconds: u64,
) -> anyhow::Result<Vec<Row>> {
    let conferences = conferences.max(1);
    let mut rows = Vec::new();
    let mut best = 0usize;
    let mut parties = conferences * 2;
    while parties <= max_parties.max(conferences * 2) {
        let step = sfu(&SfuRun {
            parties,
            conferences,
            seconds,
        })
        .await?;
        let worst = step
            .iter()
            .find(|r| r.metric == "receiver_loss_worst")
            .map_or(100.0, |r| r.value);
        rows.extend(step);
        if worst >= 1.0 {
            break;
        }
        best = parties;
        parties += conferences;
    }
    rows.push(Row {
        scenario: "sfu",
        target: format!("confer, {conferences} conf"),
        metric: "most_parties_under_1pct_loss",
        value: best as f64,
        unit: "parties",
    });
    Ok(rows)
}
