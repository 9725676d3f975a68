//! The live calls in Redis as two nodes see them (`RedisCalls`, two connections to one
//! database): one live call per group whichever node starts it, busy callees across
//! nodes, a version-checked update, one removal, and each ringing timer claimed by one
//! node only; two clusters with different `redis_prefix`es on one Redis never see each
//! other's calls, and every key the calls leave starts with its cluster's prefix.
//!
//! Needs `CONFER_TEST_REDIS_URL` (scripts/suite-scale starts a Redis); without it the
//! test says it skipped, unless `CONFER_REQUIRE_SERVICES` is set.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use confer_bus_redis::calls::RedisCalls;
use confer_core::calls::CallState;
use confer_core::model::{Call, CallStatus};
use confer_core::{GroupId, Uin};

fn redis_url() -> Option<String> {
    common::redis_db(8)
}

fn call(id: u64, group: u64, caller: u64, callees: &[u64]) -> Call {
    Call {
        call_id: id,
        group_id: GroupId(group),
        media_type: 1,
        status: CallStatus::Ongoing,
        caller: Uin(caller),
        callees: callees.iter().map(|u| Uin(*u)).collect(),
        accepted: BTreeSet::new(),
        declined: BTreeSet::new(),
        extra: None,
        started_at_us: 1,
        accepted_at_us: None,
        stopped_at_us: None,
    }
}

/// What `due` hands this node within a second (nothing, if the other took it all).
async fn due_within(calls: &RedisCalls) -> Vec<u64> {
    tokio::select! {
        due = calls.due() => due,
        _ = tokio::time::sleep(Duration::from_secs(1)) => Vec::new(),
    }
}

const LONG: Duration = Duration::from_secs(3600);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_live_calls_busy_callees_and_fire_each_timer_once() {
    let Some(url) = redis_url() else {
        return;
    };
    let one = RedisCalls::connect(&url, "").unwrap();
    let two = RedisCalls::connect(&url, "").unwrap();

    let (started, busy) = one
        .start(call(1, 10, 1, &[2, 3]), LONG)
        .await
        .unwrap()
        .unwrap();
    assert!(busy.is_empty());
    assert_eq!(started.callees.len(), 2);
    assert!(
        two.start(call(2, 10, 4, &[5]), LONG)
            .await
            .unwrap()
            .is_none(),
        "the group has a live call, started on the other node"
    );
    assert_eq!(two.of_group(GroupId(10)).await.unwrap().unwrap().call_id, 1);

    // 2 is in call 1: the other node's call marks him busy (declined) at its start.
    let (started, busy) = two
        .start(call(3, 11, 6, &[2, 7]), LONG)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(busy, [Uin(2)]);
    assert!(started.declined.contains(&Uin(2)));
    let seen = one.get(3).await.unwrap().unwrap();
    assert!(
        seen.declined.contains(&Uin(2)),
        "busy is part of the stored call"
    );

    // An update on one node is seen by the other; 2 declining call 1 frees him.
    let accept = |c: &mut Call| {
        c.accepted.insert(Uin(3));
        c.declined.insert(Uin(2));
    };
    let updated = two.update(1, &accept).await.unwrap().unwrap();
    assert!(updated.accepted.contains(&Uin(3)));
    assert_eq!(one.get(1).await.unwrap().unwrap(), updated);
    let (_, busy) = one
        .start(call(4, 12, 8, &[2, 3]), LONG)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(busy, [Uin(3)], "2 declined call 1, 3 is still in it");

    // One removal wins; the group may call again.
    assert!(one.remove(1).await.unwrap().is_some());
    assert!(two.remove(1).await.unwrap().is_none());
    assert!(
        two.update(1, &accept).await.unwrap().is_none(),
        "ended stays ended"
    );
    assert!(one.of_group(GroupId(10)).await.unwrap().is_none());
    assert!(two
        .start(call(5, 10, 1, &[2]), LONG)
        .await
        .unwrap()
        .is_some());
    for id in [3, 4, 5] {
        one.remove(id).await.unwrap();
    }

    // Ringing timers: both nodes poll; each due call comes out once, on one of them.
    let ids: Vec<u64> = (100..110).collect();
    for id in &ids {
        one.start(
            call(*id, *id, 1000 + id, &[2000 + id]),
            Duration::from_millis(1),
        )
        .await
        .unwrap()
        .unwrap();
    }
    let mut fired = Vec::new();
    while fired.len() < ids.len() {
        let (x, y) = tokio::join!(due_within(&one), due_within(&two));
        fired.extend(x);
        fired.extend(y);
    }
    fired.sort_unstable();
    assert_eq!(fired, ids, "every timer fired, none twice");
    // Timers are claimed, not removed with the calls: the calls are still live.
    assert!(one.get(100).await.unwrap().is_some());
}

/// Every key of the database `url` names (SCAN, as an operator would list them).
fn keys(url: &str) -> Vec<String> {
    let client = redis::Client::open(url).unwrap();
    let mut con = client.get_connection().unwrap();
    let mut keys: Vec<String> = redis::cmd("SCAN")
        .cursor_arg(0)
        .arg("COUNT")
        .arg(1000)
        .clone()
        .iter::<String>(&mut con)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    keys.sort();
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clusters_with_their_own_prefixes_on_one_redis_never_see_each_others_calls() {
    let Some(url) = common::redis_db(9) else {
        return;
    };
    let blue = RedisCalls::connect(&url, "blue").unwrap();
    let green = RedisCalls::connect(&url, "green").unwrap();

    // The same call id, group and users in both clusters: each its own.
    blue.start(call(1, 10, 1, &[2]), Duration::from_millis(1))
        .await
        .unwrap()
        .expect("blue's group has no call");
    let (_, busy) = green
        .start(call(1, 10, 3, &[2]), LONG)
        .await
        .unwrap()
        .expect("green's group 10 has no call: blue's is not green's");
    assert!(busy.is_empty(), "2 is busy in blue only");
    assert_eq!(blue.get(1).await.unwrap().unwrap().caller, Uin(1));
    assert_eq!(green.get(1).await.unwrap().unwrap().caller, Uin(3));
    assert_eq!(
        green.of_group(GroupId(10)).await.unwrap().unwrap().caller,
        Uin(3)
    );
    // Blue's ringing timer is due at once; green's node never takes it.
    assert!(
        due_within(&green).await.is_empty(),
        "blue's timer is blue's"
    );
    assert_eq!(blue.due().await, [1]);

    let left = keys(&url);
    assert!(!left.is_empty());
    for key in &left {
        assert!(
            key.starts_with("blue:") || key.starts_with("green:"),
            "{key} is outside both clusters' prefixes"
        );
    }
    assert!(left.iter().any(|k| k.starts_with("blue:call")), "{left:?}");

    // Removing blue's call leaves green's alone.
    assert!(blue.remove(1).await.unwrap().is_some());
    assert!(green.get(1).await.unwrap().is_some());
    assert!(keys(&url).iter().all(|k| !k.starts_with("blue:call:")));
}
