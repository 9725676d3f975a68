//! A dead node's typing, as the node that closes its sessions finds it: two nodes over one
//! Redis (`confer_bus_redis::start`, each with its own local pair); the first notes a
//! typing entry (`SessionRegistry::typing`) and stops without a word; once it is taken
//! for dead, the other hands the entry to its core once (`orphan_typing`), and nothing
//! of the dead node's typing is left in Redis. An entry that ended is not handed over.
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
use confer_core::bus::{SessionRegistry, TypingEntry};
use confer_core::{GroupId, Uin};

const WAIT: Duration = Duration::from_secs(10);

fn node(url: &str, prefix: &str, id: &str) -> (RedisBus, RedisRegistry) {
    let registry = Arc::new(LocalRegistry::new());
    let bus = Arc::new(LocalBus::new(registry.clone()));
    let options = RedisOptions {
        url: url.into(),
        node_id: id.into(),
        prefix: prefix.into(),
        queue: 1024,
        queue_bytes: 1 << 20,
        node_timeout: Duration::from_millis(300),
        request_timeout: Duration::from_secs(1),
        metrics: Arc::default(),
    };
    confer_bus_redis::start(options, bus, registry).unwrap()
}

fn keys(url: &str, pattern: &str) -> Vec<String> {
    let client = redis::Client::open(url).unwrap();
    let mut con = client.get_connection().unwrap();
    redis::cmd("KEYS").arg(pattern).query(&mut con).unwrap()
}

/// Wait until `ok` holds, failing after [`WAIT`].
fn eventually(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !ok() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_dead_nodes_typing_goes_to_its_closer_once() {
    let Some(url) = redis_url() else {
        return;
    };
    let prefix = format!("confer-typing-test-{}", std::process::id());
    // "a" < "b": b is the closer of a, never the other way round.
    let (b_bus, b) = node(&url, &prefix, "b");
    let (a_bus, a) = node(&url, &prefix, "a");
    let typing = TypingEntry {
        who: Uin(1),
        group: GroupId(10),
        receiver: None,
    };
    let ended = TypingEntry {
        who: Uin(2),
        group: GroupId(10),
        receiver: Some(Uin(1)),
    };
    a.typing(typing, true);
    a.typing(ended, true);
    a.typing(ended, false);
    let key = format!("{prefix}:typing:a");
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut con = client.get_connection().unwrap();
    eventually("a's typing is in Redis, the ended entry gone", || {
        let fields: Vec<String> = redis::cmd("HKEYS").arg(&key).query(&mut con).unwrap();
        fields == ["1:10"]
    });
    assert!(b.orphan_typing().is_empty(), "a is alive");

    // a stops without a word (its threads end, its heartbeat with them).
    drop((a_bus, a));
    let mut handed = Vec::new();
    eventually("b takes a's typing", || {
        handed.extend(b.orphan_typing());
        !handed.is_empty()
    });
    assert_eq!(handed, [typing]);
    assert!(keys(&url, &format!("{prefix}:typing:*")).is_empty());
    assert!(b.orphan_typing().is_empty(), "handed once");
    drop((b_bus, b));
    for key in keys(&url, &format!("{prefix}:*")) {
        redis::cmd("DEL").arg(key).query::<()>(&mut con).unwrap();
    }
}
