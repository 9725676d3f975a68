//! Who is online as two nodes count it (`RedisOnline`, two connections to one database):
//! a user's sockets spread over two nodes are one presence (the first join and the last
//! leave are each told once, whatever the order and however close together), and a
//! node that died (its `alive` key gone) keeps nobody online. A storm of joins and leaves
//! from one node is counted right, and a leave never overtakes the join before it.
//!
//! Needs `CONFER_TEST_REDIS_URL` (scripts/suite-scale starts a Redis); without it the
//! test says it skipped, unless `CONFER_REQUIRE_SERVICES` is set.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{alive, online_keys};
use confer_bus_redis::online::RedisOnline;
use confer_core::online::OnlineState;
use confer_core::{SessionId, Uin};
use futures_util::FutureExt;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_joins_and_leaves_from_one_node_is_counted_right() {
    let Some(url) = common::redis_db(13) else {
        return;
    };
    let (n0, _) = two_live_nodes(&url);
    // 3,000 users with two sockets each, all opening at once, then all closing: many
    // batches, each with both sessions of some users in it.
    let users: Vec<(Uin, SessionId, SessionId)> = (0..3000u64)
        .map(|i| (Uin(5000 + i), SessionId::random(), SessionId::random()))
        .collect();
    let joins = users.iter().map(|(uin, a, b)| async {
        let (ja, jb) = tokio::join!(n0.join(*uin, a), n0.join(*uin, b));
        [ja.unwrap(), jb.unwrap()]
    });
    for (firsts, (uin, ..)) in futures_util::future::join_all(joins)
        .await
        .iter()
        .zip(&users)
    {
        assert_eq!(
            firsts.iter().filter(|f| **f).count(),
            1,
            "{uin:?}: {firsts:?}"
        );
    }
    assert_eq!(online_keys(&url).len(), users.len());
    let leaves = users.iter().map(|(uin, a, b)| async {
        let (la, lb) = tokio::join!(n0.leave(*uin, a), n0.leave(*uin, b));
        [la.unwrap(), lb.unwrap()]
    });
    for (lasts, (uin, ..)) in futures_util::future::join_all(leaves)
        .await
        .iter()
        .zip(&users)
    {
        let mut lasts = lasts.to_vec();
        lasts.sort();
        assert_eq!(lasts, [Some(false), Some(true)], "{uin:?}");
    }
    assert!(online_keys(&url).is_empty(), "nobody is left online");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leave_never_overtakes_the_join_whose_caller_stopped_waiting() {
    let Some(url) = common::redis_db(14) else {
        return;
    };
    let (n0, _) = two_live_nodes(&url);
    // As the core does when a count is late: it stops waiting for the join, decides from
    // its own view, and later asks for the leave. Had the leave run first, the join's
    // field would be left behind and the user online for good.
    let mut given_up = 0;
    for i in 0..300u64 {
        let (uin, session) = (Uin(9000 + i), SessionId::random());
        // Polled once, then dropped.
        given_up += usize::from(n0.join(uin, &session).now_or_never().is_none());
        assert_eq!(
            n0.leave(uin, &session).await.unwrap(),
            Some(true),
            "{uin:?}"
        );
    }
    assert!(online_keys(&url).is_empty(), "nobody is left online");
    // Each join was queued by its first poll; Redis answers far later than that poll.
    assert!(
        given_up > 150,
        "only {given_up} of 300 joins were given up on"
    );
}
