//! Frames for other nodes that do not fit the publisher's queue are dropped, never waited
//! for, and counted where an operator looks (`confer_cluster_frames_dropped_total` on
//! `/metrics`): a node whose queue holds no byte drops its first frames (its `hello`,
//! its beats) and counts them; a node with room drops none.
//!
//! Needs `CONFER_TEST_REDIS_URL` (scripts/suite-scale starts a Redis); without it the
//! test says it skipped, unless `CONFER_REQUIRE_SERVICES` is set.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::redis_url;
use confer_bus::{LocalBus, LocalRegistry};
use confer_bus_redis::{RedisBus, RedisOptions, RedisRegistry};
use confer_core::metrics::Metrics;

fn node(url: &str, prefix: &str, queue_bytes: usize) -> (RedisBus, RedisRegistry, Arc<Metrics>) {
    let registry = Arc::new(LocalRegistry::new());
    let bus = Arc::new(LocalBus::new(registry.clone()));
    let metrics = Arc::new(Metrics::default());
    let options = RedisOptions {
        url: url.into(),
        node_id: format!("node-{queue_bytes}"),
        prefix: prefix.into(),
        queue: 1024,
        queue_bytes,
        node_timeout: Duration::from_millis(300),
        request_timeout: Duration::from_secs(1),
        metrics: metrics.clone(),
    };
    let (bus, registry) = confer_bus_redis::start(options, bus, registry).unwrap();
    (bus, registry, metrics)
}

/// The counter as `/metrics` shows it.
fn dropped(metrics: &Metrics) -> u64 {
    let text = metrics.render();
    let line = text
        .lines()
        .find(|l| l.starts_with("confer_cluster_frames_dropped_total "))
        .expect("the counter is rendered");
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

#[test]
fn frames_that_do_not_fit_the_queue_are_dropped_and_counted() {
    let Some(url) = redis_url() else {
        return;
    };
    let prefix = format!("confer-dropped-test-{}", std::process::id());
    let (full_bus, full, full_metrics) = node(&url, &prefix, 1);
    let (roomy_bus, roomy, roomy_metrics) = node(&url, &prefix, 1 << 20);

    // Both say `hello` at start and `beat` every 100 ms: the full queue takes none.
    let deadline = Instant::now() + Duration::from_secs(10);
    while dropped(&full_metrics) < 3 {
        assert!(
            Instant::now() < deadline,
            "the dropped frames were never counted"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        dropped(&roomy_metrics),
        0,
        "a queue with room drops nothing"
    );

    drop((full_bus, full, roomy_bus, roomy));
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut con = client.get_connection().unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query(&mut con)
        .unwrap();
    for key in keys {
        redis::cmd("DEL").arg(key).query::<()>(&mut con).unwrap();
    }
}
