//! Conference media between parties on different nodes (issue 20): two confer nodes over
//! one PostgreSQL and one Redis, each with its own media endpoint; two parties of one
//! conference, one joined through each node's conference door, each with a synthetic
//! str0m peer doing `CALLME_S2` with real ICE and DTLS-SRTP. Both are answered by the
//! node that opened the conference's media first (the same media address), each
//! receives the other's frames, what one sends shows in its party's state on the other
//! node, and a hang-up on the host's other node closes that party's media. When the host
//! is killed, the other node's party is told
//! `conf.webrtc.Disconnected`, and its next `CALLME_S2` opens on a live node, where a
//! party of a third node then meets it; when a party's own node is killed, the host
//! ends that party's media. A host that restarts within `node_timeout` is dead to the
//! parties of its earlier life; a host whose claim another node took (it had been taken
//! for dead) ends its parties there, and they meet again on the claim's holder.
//!
//! Needs `CONFER_TEST_POSTGRES_URL` and `CONFER_TEST_REDIS_URL` (scripts/suite-scale);
//! without them the tests say they skipped, unless `CONFER_REQUIRE_SERVICES` is set.

use confer_store_tests::pg::TestDatabase;
use serde_json::{json, Value};

use crate::common::{TestServer, ADMIN_PASSWORD, WAIT};
use crate::media::{call_in, callme, hears_and_sees, until, Call, Vsp};
use crate::nodes::{cluster_prefix, redis_url};

/// A node of the cluster over `db` and `redis`, with a media endpoint of its own.
async fn media_node(db: &TestDatabase, redis: &str) -> TestServer {
    media_node_with(db, redis, None, 1).await
}

/// The same, with the `node_id` (none: the default) and `node_timeout_secs` given.
async fn media_node_with(
    db: &TestDatabase,
    redis: &str,
    id: Option<&str>,
    node_timeout_secs: u64,
) -> TestServer {
    let (url, redis, prefix) = (db.url.clone(), redis.to_string(), cluster_prefix(db));
    let id = id.map(str::to_string);
    TestServer::start_with(move |c| {
        c.node_id = id;
        c.database_url = Some(url);
        c.database_pool_size = 4;
        c.redis_url = Some(redis);
        c.redis_prefix = prefix;
        c.node_timeout_secs = node_timeout_secs;
        c.media_udp_bind = "127.0.0.1:0".into();
    })
    .await
}

/// A conference owned by `user`, made through `server`'s conference door.
async fn conference(server: &TestServer, user: &str) -> u64 {
    let mut owner = Vsp::login(server, user, "pw").await;
    let created = owner.call("cd", "create", json!({"name": "Standup"})).await;
    created["result"]["ID"].as_u64().unwrap()
}

/// A node of the cluster that is the real binary in a process of its own (to be killed
/// with SIGKILL), with a media endpoint; the `TestServer` only names its address.
async fn doomed_node(db: &TestDatabase, redis: &str) -> (tokio::process::Child, TestServer) {
    let id = format!("doomed-{:016x}", rand::random::<u64>());
    doomed_node_as(db, redis, &id, 1).await
}

/// The same, with the `node_id` and `node_timeout_secs` given (a restart takes the same
/// id again).
async fn doomed_node_as(
    db: &TestDatabase,
    redis: &str,
    id: &str,
    node_timeout_secs: u64,
) -> (tokio::process::Child, TestServer) {
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let dir = tempfile::tempdir().unwrap();
    let doomed = tokio::process::Command::new(env!("CARGO_BIN_EXE_confer"))
        .arg("serve")
        .env("CONFER_LISTEN", format!("127.0.0.1:{port}"))
        .env("CONFER_DATA_DIR", dir.path().join("data"))
        .env("CONFER_DATABASE_URL", &db.url)
        .env("CONFER_DATABASE_POOL_SIZE", "4")
        .env("CONFER_REDIS_URL", redis)
        .env("CONFER_REDIS_PREFIX", cluster_prefix(db))
        .env("CONFER_NODE_ID", id)
        .env("CONFER_NODE_TIMEOUT_SECS", node_timeout_secs.to_string())
        .env("CONFER_MEDIA_UDP_BIND", "127.0.0.1:0")
        .env("CONFER_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    tokio::time::timeout(WAIT, async {
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the node to kill starts");
    let node = TestServer {
        running: None,
        addr,
        dir: std::sync::Arc::new(dir),
        config: confer_server::Config::default(),
    };
    (doomed, node)
}

fn media_address(answer: &Value) -> (String, u64) {
    (
        answer["ip"].as_str().unwrap_or_default().to_string(),
        answer["port"].as_u64().unwrap_or_default(),
    )
}

/// Ann calls in on `host` first (so its SFU hosts the conference), then ben on `other`:
/// both answered by the host, and ben gets ann's media through it.
async fn ann_hosts_and_ben_hears(
    host: &TestServer,
    other: &TestServer,
    conference: u64,
) -> (Call, Call) {
    let ann = call_in(host, "ann", conference, 1).await;
    let ben = call_in(other, "ben", conference, 2).await;
    assert_eq!(media_address(&ann.answer), media_address(&ben.answer));
    until("ben gets ann's media through the host", || {
        hears_and_sees(&ben, 1)
    })
    .await;
    (ann, ben)
}

/// The party's own media ended: its door says `conf.webrtc.Disconnected` for it (another
/// party leaving is `Disconnected` too, with its own id).
async fn told_disconnected(call: &mut Call) {
    let party = call.party;
    call.vsp
        .event("webrtc", Some("Disconnected"), |r| r["PartyID"] == party)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parties_on_two_nodes_receive_each_others_media() {
    let (Some(db), Some(redis)) = (TestDatabase::fresh("confer_it"), redis_url()) else {
        return;
    };
    let one = media_node(&db, &redis).await;
    let two = media_node(&db, &redis).await;
    one.add_user("ann", "pw").await;
    one.add_user("ben", "pw").await;
    let conference = conference(&one, "ann").await;

    let mut ann = call_in(&one, "ann", conference, 1).await;
    let mut ben = call_in(&two, "ben", conference, 2).await;
    until("ann, on node one, gets ben's audio and video", || {
        hears_and_sees(&ann, 2)
    })
    .await;
    until("ben, on node two, gets ann's audio and video", || {
        hears_and_sees(&ben, 1)
    })
    .await;
    // Both were answered by the conference's one media host, the first opener's node.
    assert_eq!(media_address(&ann.answer), media_address(&ben.answer));

    // What ben sends through the host shows in his state on ann's node.
    let ben_party = ben.party;
    ann.vsp
        .event("changed", None, |r| {
            r["updParties"].as_array().is_some_and(|parties| {
                parties.iter().any(|p| {
                    p["PartyID"] == ben_party && p["bMicOn"] == true && p["bCamOn"] == true
                })
            })
        })
        .await;
    // Ben's hang-up on node two closes his media on the host.
    let hung = ben
        .vsp
        .call("conf", "hangup", json!({"ID": conference.to_string()}))
        .await;
    assert_eq!(hung["result"]["code"], 0, "{hung}");
    ben.vsp
        .event("webrtc", Some("Disconnected"), |r| {
            r["PartyID"] == ben_party
        })
        .await;
    until("ben's peer sees its connection end", || {
        ben.state.lock().unwrap().ended
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_media_host_dies_its_parties_are_told_and_call_again_on_a_live_node() {
    let (Some(db), Some(redis)) = (TestDatabase::fresh("confer_it"), redis_url()) else {
        return;
    };
    let survivor = media_node(&db, &redis).await;
    let third = media_node(&db, &redis).await;
    for user in ["ann", "ben", "cid"] {
        survivor.add_user(user, "pw").await;
    }
    let conference = conference(&survivor, "ann").await;

    // The host is the real binary in a process of its own, to be killed.
    let (mut doomed, doomed_node) = doomed_node(&db, &redis).await;

    // Ann opens the conference's media first, on the doomed node: it hosts it.
    let (ann, mut ben) = ann_hosts_and_ben_hears(&doomed_node, &survivor, conference).await;

    doomed.kill().await.unwrap();
    told_disconnected(&mut ben).await;

    // Ben calls again: a live node hosts the conference now, and cid, on a third node,
    // meets him there.
    let ben = callme(ben.vsp, conference, ben.party, 3).await;
    assert_ne!(media_address(&ben.answer), media_address(&ann.answer));
    let cid = call_in(&third, "cid", conference, 4).await;
    assert_eq!(media_address(&cid.answer), media_address(&ben.answer));
    until("ben gets cid's media on the new host", || {
        hears_and_sees(&ben, 4)
    })
    .await;
    until("cid gets ben's media on the new host", || {
        hears_and_sees(&cid, 3)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_a_partys_node_dies_the_media_host_closes_its_media() {
    let (Some(db), Some(redis)) = (TestDatabase::fresh("confer_it"), redis_url()) else {
        return;
    };
    let host = media_node(&db, &redis).await;
    host.add_user("ann", "pw").await;
    host.add_user("ben", "pw").await;
    let conference = conference(&host, "ann").await;
    let (mut doomed, doomed_node) = doomed_node(&db, &redis).await;

    let ann = call_in(&host, "ann", conference, 1).await;
    // Ben's socket is on the doomed node, his media on the host.
    let ben = call_in(&doomed_node, "ben", conference, 2).await;
    assert_eq!(media_address(&ann.answer), media_address(&ben.answer));
    until("ann gets ben's media", || hears_and_sees(&ann, 2)).await;

    // Ben's peer lives on (it is in this process); his node does not: the host ends
    // the media nobody can hang up any more.
    doomed.kill().await.unwrap();
    until("ben's peer sees the host end its connection", || {
        ben.state.lock().unwrap().ended
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_media_host_restarted_within_node_timeout_is_dead_to_its_earlier_parties() {
    let (Some(db), Some(redis)) = (TestDatabase::fresh("confer_it"), redis_url()) else {
        return;
    };
    // Every node is alive in Redis for 10 s after its last beat: the restart below comes
    // well before that.
    let survivor = media_node_with(&db, &redis, None, 10).await;
    survivor.add_user("ann", "pw").await;
    survivor.add_user("ben", "pw").await;
    let conference = conference(&survivor, "ann").await;

    let id = format!("restarted-{:016x}", rand::random::<u64>());
    let (mut first, first_life) = doomed_node_as(&db, &redis, &id, 10).await;
    let (ann, mut ben) = ann_hosts_and_ben_hears(&first_life, &survivor, conference).await;

    // The host's process dies and its node comes back at once under the same id: the
    // new process has none of the old one's media.
    first.kill().await.unwrap();
    let (_second, _second_life) = doomed_node_as(&db, &redis, &id, 10).await;
    told_disconnected(&mut ben).await;

    // His next call is answered by a live SFU, not the dead process's address.
    let ben = callme(ben.vsp, conference, ben.party, 3).await;
    assert_ne!(media_address(&ben.answer), media_address(&ann.answer));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_whose_claim_another_node_took_ends_its_parties_and_they_meet_on_the_new_host() {
    let (Some(db), Some(redis_at)) = (TestDatabase::fresh("confer_it"), redis_url()) else {
        return;
    };
    let one = media_node(&db, &redis_at).await;
    let two_id = format!("two-{:016x}", rand::random::<u64>());
    let two = media_node_with(&db, &redis_at, Some(&two_id), 1).await;
    one.add_user("ann", "pw").await;
    one.add_user("ben", "pw").await;
    let conference = conference(&one, "ann").await;

    // Ann opens the conference's media first: node one hosts it.
    let mut ann = call_in(&one, "ann", conference, 1).await;

    // Node one stalled past node_timeout, was taken for dead, and node two claimed the
    // conference meanwhile (what its claim script does when the holder's alive key is
    // gone): here the claim is written as node two's directly.
    let client = redis::Client::open(redis_at.as_str()).unwrap();
    let mut conn = client.get_connection().unwrap();
    let claim = format!("{}:media:host:{conference}", cluster_prefix(&db));
    let () = redis::cmd("SET")
        .arg(&claim)
        .arg(&two_id)
        .arg("PX")
        .arg(60_000)
        .query(&mut conn)
        .unwrap();

    // Node one ends ann's media there rather than host half of the conference.
    told_disconnected(&mut ann).await;
    let ann = callme(ann.vsp, conference, ann.party, 3).await;
    let ben = call_in(&two, "ben", conference, 2).await;
    assert_eq!(media_address(&ann.answer), media_address(&ben.answer));
    until(
        "ann, on node one, gets ben's media on node two's SFU",
        || hears_and_sees(&ann, 2),
    )
    .await;
    until("ben gets ann's media", || hears_and_sees(&ben, 3)).await;
}
