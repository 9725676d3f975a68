//! Who is online as two nodes count it (`RedisOnline`, two connections to one database):
//! a user's sockets spread over two nodes are one presence (the first join and the last
//! leave are each told once, whatever the order and however close together), and a
//! node that died (its `alive` key gone) keeps nobody online.
//!
//! Needs `CONFER_TEST_REDIS_URL` (scripts/suite-scale starts a Redis); without it the
//! test says it skipped, unless `CONFER_REQUIRE_SERVICES` is set.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use confer_bus_redis::online::RedisOnline;
use confer_core::online::OnlineState;
use confer_core::{SessionId, Uin};

/// Marks `node` alive, as its heartbeat would.
fn alive(url: &str, prefix: &str, node: &str) {
    let mut con = redis::Client::open(url).unwrap().get_connection().unwrap();
    redis::cmd("SET")
        .arg(format!("{prefix}:alive:{node}"))
        .arg(1)
        .query::<()>(&mut con)
        .unwrap();
}

/// Two live nodes, `n0` and `n1`, counting in `url`'s database under prefix `t`.
fn two_live_nodes(url: &str) -> (RedisOnline, RedisOnline) {
    alive(url, "t", "n0");
    alive(url, "t", "n1");
    (
        RedisOnline::connect(url, "t", "n0").unwrap(),
        RedisOnline::connect(url, "t", "n1").unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_sockets_on_two_nodes_are_one_presence() {
    let Some(url) = common::redis_db(10) else {
        return;
    };
    let (n0, n1) = two_live_nodes(&url);
    let sam = Uin(42);
    let (first, second) = (SessionId::random(), SessionId::random());

    assert!(n0.join(sam, &first).await.unwrap(), "sam comes online");
    assert!(!n1.join(sam, &second).await.unwrap(), "already online");
    // Node 0 closes sam's first socket: node 1's is still counted, whatever node 0's
    // copy of the directory knows yet.
    assert_eq!(n0.leave(sam, &first).await.unwrap(), Some(false));
    assert_eq!(
        n1.leave(sam, &second).await.unwrap(),
        Some(true),
        "the last one"
    );
    // Left twice (a conflict and then the door): the second is not counted.
    assert_eq!(n1.leave(sam, &second).await.unwrap(), None);
    assert!(n1.join(sam, &second).await.unwrap(), "back: first again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_sockets_opening_or_closing_at_once_on_two_nodes_one_is_first_and_one_last() {
    let Some(url) = common::redis_db(11) else {
        return;
    };
    let (n0, n1) = two_live_nodes(&url);
    for round in 0..50u64 {
        let uin = Uin(1000 + round);
        let (a, b) = (SessionId::random(), SessionId::random());
        let (ja, jb) = tokio::join!(n0.join(uin, &a), n1.join(uin, &b));
        let firsts = [ja.unwrap(), jb.unwrap()];
        assert_eq!(
            firsts.iter().filter(|f| **f).count(),
            1,
            "one first: {firsts:?}"
        );
        let (la, lb) = tokio::join!(n0.leave(uin, &a), n1.leave(uin, &b));
        let lasts = [la.unwrap(), lb.unwrap()];
        assert_eq!(
            lasts.iter().filter(|l| **l == Some(true)).count(),
            1,
            "one last: {lasts:?}"
        );
        assert!(lasts.iter().all(|l| l.is_some()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_nodes_sessions_keep_nobody_online() {
    let Some(url) = common::redis_db(12) else {
        return;
    };
    // n1 has no `alive` key: it died (or never was).
    alive(&url, "t", "n0");
    let n0 = RedisOnline::connect(&url, "t", "n0").unwrap();
    let n1 = RedisOnline::connect(&url, "t", "n1").unwrap();
    let kim = Uin(7);
    let (on_dead, here) = (SessionId::random(), SessionId::random());
    assert!(n1.join(kim, &on_dead).await.unwrap());
    // A session on node 0: the dead node's does not count, so this one is first.
    assert!(n0.join(kim, &here).await.unwrap());
    assert_eq!(n0.leave(kim, &here).await.unwrap(), Some(true));
    // Its field was removed on the way: the dead node's closer finds nothing to leave.
    assert_eq!(n0.leave(kim, &on_dead).await.unwrap(), None);
    // Every key it used is under its prefix, and none is left.
    let mut con = redis::Client::open(url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut con).unwrap();
    assert_eq!(keys, ["t:alive:n0"]);
}
