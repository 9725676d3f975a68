//! A node's presence queue when Redis stalls (`RedisOnline`): past `QUEUE` waiting
//! operations joins are refused at once, while a leave is never refused (it would leave
//! its join's field behind, and the user online for good), and the leave of a refused
//! join is not sent. Apart from the other Redis tests: it pauses the test Redis's
//! writes, so no other test may use that Redis meanwhile (cargo runs test files one
//! after another).
//!
//! Needs `CONFER_TEST_REDIS_URL` (scripts/suite-scale starts a Redis); without it the
//! test says it skipped, unless `CONFER_REQUIRE_SERVICES` is set.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{alive, online_keys};
use confer_bus_redis::online::{RedisOnline, BATCH, QUEUE};
use confer_core::online::OnlineState;
use confer_core::{SessionId, Uin};
use futures_util::FutureExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_refuses_joins_never_leaves() {
    let Some(url) = common::redis_db(15) else {
        return;
    };
    alive(&url, "t", "n0");
    let n0 = RedisOnline::connect(&url, "t", "n0").unwrap();
    let mut con = redis::Client::open(url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    // Redis holds every write for now: the node's joins pile up in its queue.
    redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(20_000)
        .arg("WRITE")
        .query::<()>(&mut con)
        .unwrap();
    let sessions: Vec<(Uin, SessionId)> = (0..QUEUE as u64 + 1000)
        .map(|i| (Uin(20_000 + i), SessionId::random()))
        .collect();
    let mut refused = Vec::new();
    for (uin, session) in &sessions {
        // Polled once (queued, or refused at once), then left to run.
        if let Some(answer) = n0.join(*uin, session).now_or_never() {
            assert!(answer.is_err(), "{uin:?} answered while Redis was paused");
            refused.push(session.clone());
        }
    }
    // The thread took one batch at most before Redis held it.
    assert!(
        refused.len() >= 1000 - BATCH,
        "{} joins refused",
        refused.len()
    );
    // Every session closes while the queue is still full: no leave is refused, and the
    // leave of a refused join is not sent.
    let unpause = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(500));
        redis::cmd("CLIENT")
            .arg("UNPAUSE")
            .query::<()>(&mut con)
            .unwrap();
    });
    let leaves = sessions.iter().map(|(uin, s)| n0.leave(*uin, s));
    let answers = futures_util::future::join_all(leaves).await;
    unpause.join().unwrap();
    for ((uin, session), answer) in sessions.iter().zip(answers) {
        let expected = if refused.contains(session) {
            None
        } else {
            Some(true)
        };
        assert_eq!(answer.unwrap(), expected, "{uin:?}");
    }
    assert!(online_keys(&url).is_empty(), "nobody is left online");
}
