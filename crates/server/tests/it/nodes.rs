//! Several confer nodes over one PostgreSQL database (issue 20): accounts and login tokens
//! on every node (a logout on one ends the token's sessions on another), concurrent
//! posting to one conversation from three nodes (seqs 1..N, each acked message stored
//! once, each node's group commits counted on its `/metrics`), `confer migrate` of a populated SQLite folder (its queued pushes too), a hub of
//! the edge-to-hub sync on PostgreSQL, seen alike by each of its nodes, and (with
//! `CONFER_TEST_REDIS_URL` too) events reaching sessions on other nodes through Redis, one
//! session directory over three nodes (`user list`/`get`, `session send_event`/`cmd`/`stop`
//! across nodes), and `kill -9` of a node mid-traffic losing no acked message, its session
//! expiring from the directory and its client back on another node with the same token at
//! once, and a conference's live room spanning nodes.
//!
//! The database server is `CONFER_TEST_POSTGRES_URL` (scripts/suite-scale starts one);
//! each test makes a database of its own there. Without it the tests say they skipped,
//! unless `CONFER_REQUIRE_SERVICES` is set (the test command sets it).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use confer_server::sync::Hooks;
use confer_store_tests::pg::{admin, TestDatabase};
use serde_json::json;

use crate::chathost::{Pair, BOX};
use crate::common::{code, login, ok_data, token, Client, TestServer, ADMIN_PASSWORD, WAIT};

async fn node(db: &TestDatabase) -> TestServer {
    let url = db.url.clone();
    TestServer::start_with(move |c| {
        c.database_url = Some(url);
        c.database_pool_size = 4;
    })
    .await
}

async fn msglog_send(client: &Client, text: &str) -> serde_json::Value {
    client
        .call(
            "media",
            "conf",
            "msglog_send",
            json!({"conf_id": "room", "msg": {"text": text}}),
        )
        .await
}

async fn msglog_texts(client: &Client) -> Vec<(u64, String)> {
    let log = ok_data(
        &client
            .call("media", "conf", "msglog_get", json!({"conf_id": "room"}))
            .await,
    );
    log.as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["msg_id"].as_u64().unwrap(),
                m["text"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_share_accounts_tokens_and_one_gapless_conversation() {
    let Some(db) = TestDatabase::fresh("confer_it") else {
        return;
    };
    let nodes = [node(&db).await, node(&db).await, node(&db).await];
    nodes[0].add_user("alice", "a").await;

    // A token from one node's HTTP login opens a session on another.
    let token = token(nodes[0].addr, "alice", "a").await;
    let on_two = nodes[2].connect().await;
    login(&on_two, "alice", &token).await;

    let mut clients = Vec::new();
    for n in &nodes {
        clients.push(Arc::new(n.login("alice", "a").await.0));
    }
    ok_data(
        &clients[0]
            .call(
                "media",
                "conf",
                "create",
                json!({"conf_id": "room", "class": "sfu"}),
            )
            .await,
    );
    // 30 messages from each node at once.
    let mut tasks = Vec::new();
    for (n, client) in clients.iter().enumerate() {
        for i in 0..30 {
            let client = client.clone();
            tasks.push(tokio::spawn(async move {
                let text = format!("node{n}-{i}");
                let sent = ok_data(&msglog_send(&client, &text).await);
                (sent["msg_id"].as_u64().unwrap(), text)
            }));
        }
    }
    let mut acked = Vec::new();
    for t in tasks {
        acked.push(t.await.unwrap());
    }
    let seqs: BTreeSet<u64> = acked.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(
        seqs,
        (1..=90).collect::<BTreeSet<u64>>(),
        "no gap, no duplicate"
    );
    acked.sort();
    for client in &clients {
        assert_eq!(
            msglog_texts(client).await,
            acked,
            "every node lists the same log"
        );
    }
    // Each node's appends went through its own group commit, counted on its /metrics.
    for n in &nodes {
        let (status, text) = n.http("GET", "/metrics", &[], "").await;
        assert_eq!(status, 200);
        let ops: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix("confer_storage_commit_ops_total "))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        assert!(ops >= 30, "30 appends committed on this node: {text}");
        assert!(
            !text.contains("confer_storage_commit_seconds_count 0\n"),
            "{text}"
        );
    }
    for n in nodes {
        n.stop().await;
    }
}

/// A logout on one node ends the sessions of its token on another (each node reads the
/// shared database's revocation log).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_on_one_node_ends_the_tokens_sessions_on_another() {
    let Some(db) = TestDatabase::fresh("confer_it") else {
        return;
    };
    let (a, b) = (node(&db).await, node(&db).await);
    a.add_user("alice", "a").await;
    let token = token(a.addr, "alice", "a").await;
    let on_b = b.connect().await;
    login(&on_b, "alice", &token).await;
    let bearer = format!("Bearer {token}");
    let (status, _) = a
        .http("POST", "/api/v1/logout", &[("Authorization", &bearer)], "")
        .await;
    assert_eq!(status, 200);
    let closed = on_b.closed().await;
    assert_eq!(
        closed.as_ref().map(|(c, r)| (*c, r.as_str())),
        Some((1008, "token revoked or expired"))
    );
    a.stop().await;
    b.stop().await;
}

/// A node killed with SIGKILL while its client posts loses no acknowledged message: the
/// client logs in on another node with the same token at once and finds each acked
/// message exactly once; the dead node's session leaves the directory of the survivor
/// once `node_timeout_secs` passed without its heartbeat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_traffic_loses_no_acked_message() {
    let (Some(db), Some(redis)) = (TestDatabase::fresh("confer_it"), redis_url()) else {
        return;
    };
    let survivor = clustered_node(&db, &redis).await;
    survivor.add_user("alice", "a").await;
    let (admin, _) = survivor.login("admin", ADMIN_PASSWORD).await;
    let token = token(survivor.addr, "alice", "a").await;

    // The node to kill is the real binary in a process of its own.
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let dir = tempfile::tempdir().unwrap();
    let mut doomed = tokio::process::Command::new(env!("CARGO_BIN_EXE_confer"))
        .arg("serve")
        .env("CONFER_LISTEN", format!("127.0.0.1:{port}"))
        .env("CONFER_DATA_DIR", dir.path().join("data"))
        .env("CONFER_DATABASE_URL", &db.url)
        .env("CONFER_REDIS_URL", &redis)
        .env("CONFER_REDIS_PREFIX", cluster_prefix(&db))
        .env("CONFER_NODE_TIMEOUT_SECS", "1")
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

    let client = Client::connect(&format!("ws://{addr}/api/ws"), true).await;
    let doomed_session = login(&client, "alice", &token).await;
    // The survivor's directory knows the session on the other node.
    eventually(&admin, ("core", "user", "list"), json!(null), |r| {
        r["data"]["alice"] == json!([doomed_session])
    })
    .await;
    ok_data(
        &client
            .call(
                "media",
                "conf",
                "create",
                json!({"conf_id": "room", "class": "sfu"}),
            )
            .await,
    );

    // Three posters keep sending; each remembers what was acknowledged.
    let client = Arc::new(client);
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let sent = Arc::new(AtomicUsize::new(0));
    let mut posters = Vec::new();
    for p in 0..3 {
        let (client, acked, sent) = (client.clone(), acked.clone(), sent.clone());
        posters.push(tokio::spawn(async move {
            for i in 0.. {
                let text = format!("p{p}-{i}");
                sent.fetch_add(1, Ordering::Relaxed);
                // No answer comes once the node is dead.
                let reply = client
                    .try_call(
                        "media",
                        "conf",
                        "msglog_send",
                        json!({"conf_id": "room", "msg": {"text": text}}),
                    )
                    .await;
                match reply {
                    Some(reply) if reply["result"] == "ok" => acked.lock().unwrap().push(text),
                    _ => break,
                }
            }
        }));
    }
    // Mid-traffic: once some messages are acked, and more are in flight.
    tokio::time::timeout(WAIT, async {
        while acked.lock().unwrap().len() < 30 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("messages are acked before the kill");
    doomed.start_kill().unwrap();
    doomed.wait().await.unwrap();
    for p in posters {
        p.await.unwrap();
    }

    // At once, with the same token: the session left on the dead node is no obstacle.
    let reconnected = survivor.connect().await;
    let new_session = login(&reconnected, "alice", &token).await;
    // The dead node's session expires from the directory; the new one stays.
    eventually(&admin, ("core", "user", "list"), json!(null), |r| {
        r["data"]["alice"] == json!([new_session])
    })
    .await;
    let stored = msglog_texts(&reconnected).await;
    let seqs: Vec<u64> = stored.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(
        seqs,
        (1..=stored.len() as u64).collect::<Vec<_>>(),
        "seqs 1..N"
    );
    let texts: Vec<&str> = stored.iter().map(|(_, t)| t.as_str()).collect();
    let unique: BTreeSet<&str> = texts.iter().copied().collect();
    assert_eq!(unique.len(), texts.len(), "each message stored once");
    for text in acked.lock().unwrap().iter() {
        assert!(unique.contains(text.as_str()), "acked {text} is stored");
    }
    assert!(stored.len() <= sent.load(Ordering::Relaxed));
    survivor.stop().await;
}

/// `confer migrate` with the data folder of a stopped server.
async fn migrate(data_dir: &std::path::Path, url: &str) -> (bool, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_confer"))
        .args(["migrate", "--to", url])
        .env("CONFER_DATA_DIR", data_dir)
        .output()
        .await
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A user of the core over `config`'s storage.
async fn principal(core: &confer_core::Core, login: &str) -> confer_core::Principal {
    let a = core
        .list_accounts()
        .await
        .unwrap()
        .into_iter()
        .find(|a| a.login == login)
        .unwrap();
    confer_core::Principal {
        uin: a.uin,
        login: a.login,
        admin: false,
    }
}

/// Rows of every kind the SQLite store has beyond the hub's and the conference's: chosen
/// presences, the admin flag, chat groups with edits, deletes, received and seen marks,
/// a departure and a hidden private group, device tokens, a call, an upload attached to a
/// message.
async fn populate_every_kind(server: &TestServer) {
    let core = confer_server::build_core(&server.config).unwrap();
    let (alice, bob) = (
        principal(&core, "alice").await,
        principal(&core, "bob").await,
    );
    core.set_account_admin("bob", true).await.unwrap();
    core.set_user_status(&alice, 6, Some("in a meeting".into()))
        .await
        .unwrap();
    let session = confer_core::SessionId::new("migrate-test");
    let (group, _) = core
        .create_group(
            &alice,
            confer_core::ConversationKind::Group,
            Some("Team".into()),
            None,
            None,
            BTreeSet::from([bob.uin]),
        )
        .await
        .unwrap();
    let upload = core
        .register_upload(
            &alice,
            "ab".repeat(32),
            3,
            "text/plain".into(),
            "a.txt".into(),
        )
        .await
        .unwrap();
    let mut ids = Vec::new();
    for (i, files) in [vec![upload.item_id], vec![], vec![]]
        .into_iter()
        .enumerate()
    {
        let input = confer_core::service::ChatMessageInput {
            kind: if files.is_empty() { 0 } else { 12 },
            text: Some(format!("chat {i}")),
            attachments: None,
            nonce: Some(format!("n{i}")),
            version: 0,
            extra: None,
            attachment_ids: files,
        };
        let (m, _) = core
            .post_chat_message(&alice, &session, group.group_id, input)
            .await
            .unwrap();
        ids.push(m.message_id);
    }
    core.edit_chat_message(&alice, group.group_id, ids[1], Some("edited".into()), None)
        .await
        .unwrap();
    core.delete_chat_message(&alice, group.group_id, ids[2])
        .await
        .unwrap();
    use confer_core::service::Receipt;
    core.mark_message(&bob, group.group_id, ids[1], Receipt::Received)
        .await
        .unwrap();
    core.mark_message(&bob, group.group_id, ids[0], Receipt::Seen)
        .await
        .unwrap();
    core.set_muted(&bob, group.group_id, true).await.unwrap();
    core.register_device_token(&bob, 1, "fcm-token-of-bob".into())
        .await
        .unwrap();
    // Nobody can be rung (no sockets here): stored, and over at once.
    core.create_call(&alice, group.group_id, 1, None, None)
        .await
        .unwrap();
    // A private group bob leaves: a departure, and hidden from him.
    let (private, _) = core
        .create_group(
            &alice,
            confer_core::ConversationKind::Private,
            None,
            None,
            None,
            BTreeSet::from([bob.uin]),
        )
        .await
        .unwrap();
    core.leave_group(&bob, private.group_id).await.unwrap();
    // Groups bob is blocked in, and leaves.
    for (name, leaves) in [("Quiet", false), ("Club", true)] {
        let (g, _) = core
            .create_group(
                &alice,
                confer_core::ConversationKind::Group,
                Some(name.into()),
                None,
                None,
                BTreeSet::from([bob.uin]),
            )
            .await
            .unwrap();
        if leaves {
            core.leave_group(&bob, g.group_id).await.unwrap();
        } else {
            core.set_blocked(&alice, g.group_id, bob.uin, true)
                .await
                .unwrap();
        }
    }
    core.hub_add_logs(
        BOX,
        "sync",
        vec![confer_core::Json::from_validated("{\"ok\":true}")],
    )
    .await
    .unwrap();
    core.flush().await.unwrap();
}

/// What `who` lists through the core, every listing a door renders from, as text.
async fn listings(core: &confer_core::Core, who: &str) -> Vec<String> {
    use confer_core::service::GroupSort;
    let me = principal(core, who).await;
    let mut out = vec![
        format!("{:?}", core.list_accounts().await.unwrap()),
        format!("{:?}", core.presence_snapshot(&me).await.unwrap()),
        format!("{:?}", core.device_tokens(&me).await.unwrap()),
    ];
    let groups = core
        .list_groups(&me, 0, 100, GroupSort::Created)
        .await
        .unwrap();
    out.push(format!("{groups:?}"));
    for g in &groups {
        let id = g.conversation.group_id;
        out.push(format!(
            "{:?}",
            core.list_chat_messages(&me, id, None, None, 0, 100)
                .await
                .unwrap()
        ));
        out.push(format!(
            "{:?}",
            core.list_chat_changes(&me, id, 0, 100).await.unwrap()
        ));
    }
    out.push(format!("{:?}", core.hub_boxes().await.unwrap()));
    out.push(format!("{:?}", core.hub_logs(BOX).await.unwrap()));
    out.push(format!("{:?}", core.hub_settings(BOX).await.unwrap()));
    out
}

/// Rows per table of a SQLite data folder.
fn sqlite_rows(data_dir: &std::path::Path) -> Vec<(String, i64)> {
    let con = rusqlite::Connection::open(data_dir.join(confer_store_sqlite::DB_FILE)).unwrap();
    let names: Vec<String> = con
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    names
        .into_iter()
        .map(|t| {
            let n = con
                .query_row(&format!("SELECT COUNT(*) FROM {t}"), [], |r| r.get(0))
                .unwrap();
            (t, n)
        })
        .collect()
}

/// The messages a first run stopped midway would not have copied yet: those after some
/// id, as rows are copied in key order (after the last one an attachment refers to, which
/// a DELETE could not take away).
const LATER: &str = "messages WHERE message_id > (SELECT MAX(message_id) FROM message_attachments)";

/// A populated SQLite folder (a hub with a synced box, a conference, chat groups and
/// rows of every other kind) moves to PostgreSQL: verified, resumable after a partial
/// copy, a changed row is caught, and a node over the copy answers the same listings,
/// takes the same login token, and goes on with the next seq.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_copies_a_folder_and_the_migrated_server_answers_the_same() {
    let Some(db) = TestDatabase::fresh("confer_it") else {
        return;
    };
    // The hub of a synced box: boxes, keys, teachers, links, groups, logs.
    let pair = Pair::with_hub(
        TestServer::start_with(|c| {
            c.hub_role = true;
        })
        .await,
    )
    .await;
    let report = pair.run(Hooks::default()).await;
    assert_eq!(report.failed, None, "{:?}", report.steps);
    let old = pair.into_hub();
    {
        let core = confer_server::build_core(&old.config).unwrap();
        core.hub_queue_setting(BOX, "wifi", "on").await.unwrap();
        core.flush().await.unwrap();
    }
    old.add_user("alice", "a").await;
    old.add_user("bob", "b").await;
    let (alice, _) = old.login("alice", "a").await;
    ok_data(
        &alice
            .call(
                "media",
                "conf",
                "create",
                json!({"conf_id": "room", "class": "sfu"}),
            )
            .await,
    );
    let (bob, _) = old.login("bob", "b").await;
    ok_data(
        &bob.call("media", "conf", "join", json!({"conf_id": "room"}))
            .await,
    );
    for i in 1..=5 {
        ok_data(&msglog_send(&alice, &format!("m{i}")).await);
    }
    // A token logged out: its revocation is logged in SQLite, and not copied.
    let revoked = token(old.addr, "alice", "a").await;
    let token = token(old.addr, "bob", "b").await;
    let bearer = format!("Bearer {revoked}");
    let (status, _) = old
        .http("POST", "/api/v1/logout", &[("Authorization", &bearer)], "")
        .await;
    assert_eq!(status, 200);
    let log_before = ok_data(
        &bob.call("media", "conf", "msglog_get", json!({"conf_id": "room"}))
            .await,
    );
    let list_before = ok_data(&bob.call("media", "conf", "get_list", json!({})).await);
    populate_every_kind(&old).await;
    let (core_before, bob_before) = {
        let core = confer_server::build_core(&old.config).unwrap();
        (listings(&core, "alice").await, listings(&core, "bob").await)
    };
    let data_dir = old.data_dir();
    let _keep = old.dir.clone();
    old.stop().await;
    // A push still waiting (push is off here, so written as the push worker would find it).
    rusqlite::Connection::open(data_dir.join(confer_store_sqlite::DB_FILE))
        .unwrap()
        .execute_batch(
            "INSERT INTO push_outbox (kind, group_id, ref_id, sender, recipients, created_at)
                 VALUES (1, 1, 1, 1, '2', 1);
             INSERT INTO push_queue (kind, uin, token_type, token, group_id, title, badge,
                 created_at, next_at) VALUES (1, 2, 1, 'fcm-token-of-bob', 1, 't', 0, 1, 1);",
        )
        .unwrap();
    let rows = sqlite_rows(&data_dir);
    let empty: Vec<&str> = rows
        .iter()
        .filter(|(t, n)| *n == 0 && t != "hub_batch")
        .map(|(t, _)| t.as_str())
        .collect();
    assert!(empty.is_empty(), "tables the test leaves empty: {empty:?}");

    let (ok, out, err) = migrate(&data_dir, &db.url).await;
    assert!(ok, "{out}{err}");
    let count = |table: &str| rows.iter().find(|(t, _)| t == table).unwrap().1;
    let messages = count("messages");
    assert!(
        out.contains(&format!(
            "messages: {messages} rows ({messages} copied by this run)"
        )),
        "{out}"
    );
    assert!(out.contains("verified"), "{out}");
    assert!(
        out.contains("push_outbox: 1 rows not copied"),
        "pending pushes are named: {out}"
    );
    assert!(
        out.contains("token_revocations: 1 rows not copied"),
        "the revocation log is named: {out}"
    );
    assert_same_columns(&data_dir, &db.url).await;

    // As if the first run had stopped after two messages: a second run copies the rest.
    let later: i64 = rusqlite::Connection::open(data_dir.join(confer_store_sqlite::DB_FILE))
        .unwrap()
        .query_row(&format!("SELECT COUNT(*) FROM {LATER}"), [], |r| r.get(0))
        .unwrap();
    assert!(later > 0);
    admin(&db.url, &format!("DELETE FROM {LATER}"));
    let (ok, out, err) = migrate(&data_dir, &db.url).await;
    assert!(ok, "{out}{err}");
    assert!(
        out.contains(&format!(
            "messages: {messages} rows ({later} copied by this run)"
        )),
        "{out}"
    );
    let accounts = count("accounts");
    assert!(
        out.contains(&format!("accounts: {accounts} rows (0 copied by this run)")),
        "{out}"
    );
    assert!(
        out.contains("hub_links: 4 rows (0 copied by this run)"),
        "a table with a key of several columns copies nothing twice: {out}"
    );

    // A row that differs is found by the checksum, and the run fails.
    admin(
        &db.url,
        "UPDATE accounts SET name = 'changed' WHERE login = 'bob'",
    );
    let (ok, out, err) = migrate(&data_dir, &db.url).await;
    assert!(!ok, "{out}");
    assert!(err.contains("accounts: the rows differ"), "{err}");
    admin(
        &db.url,
        "UPDATE accounts SET name = NULL WHERE login = 'bob'",
    );

    let new = node(&db).await;
    let migrated = new.connect().await;
    login(&migrated, "bob", &token).await;
    let refused = new.connect().await;
    let r = refused
        .login_with(json!({"user": "alice", "token": revoked}))
        .await;
    assert_eq!(code(&r), 100030, "{r}");
    let log_after = ok_data(
        &migrated
            .call("media", "conf", "msglog_get", json!({"conf_id": "room"}))
            .await,
    );
    assert_eq!(log_after, log_before);
    let list_after = ok_data(&migrated.call("media", "conf", "get_list", json!({})).await);
    assert_eq!(list_after, list_before);
    {
        let core = confer_server::build_core(&new.config).unwrap();
        assert_eq!(listings(&core, "alice").await, core_before);
        assert_eq!(listings(&core, "bob").await, bob_before);
    }
    let (alice, _) = new.login("alice", "a").await;
    let next = ok_data(&msglog_send(&alice, "after the move").await);
    assert_eq!(next["msg_id"], 6, "seqs go on after the copied ones");
    new.stop().await;
}

/// Every SQLite table and column has its PostgreSQL counterpart (a column added to one
/// schema only fails here), but for the tables `migrate` names as left behind and what
/// only PostgreSQL keeps.
async fn assert_same_columns(data_dir: &std::path::Path, url: &str) {
    use std::collections::BTreeMap;
    let con = rusqlite::Connection::open(data_dir.join(confer_store_sqlite::DB_FILE)).unwrap();
    let mut sqlite: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (table, _) in sqlite_rows(data_dir) {
        let columns = con
            .prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<BTreeSet<String>, _>>()
            .unwrap();
        sqlite.insert(table, columns);
    }
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let driver = tokio::spawn(connection);
    let mut pg: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for row in client
        .query(
            "SELECT table_name::text, column_name::text FROM information_schema.columns
             WHERE table_schema = 'public'",
            &[],
        )
        .await
        .unwrap()
    {
        pg.entry(row.get(0)).or_default().insert(row.get(1));
    }
    drop(client);
    let _ = driver.await;
    // PostgreSQL's own: its schema version, the change clock, each conversation's last seq.
    for only_pg in ["confer_schema", "change_clock"] {
        assert!(pg.remove(only_pg).is_some(), "{only_pg}");
    }
    assert!(pg
        .get_mut("conversations")
        .is_some_and(|c| c.remove("last_seq")));
    // A table left behind may or may not have its like on PostgreSQL (push_outbox does,
    // with other column types): it is not compared.
    for left in confer_server::migrate::NOT_COPIED {
        assert!(sqlite.remove(left.0).is_some(), "{}", left.0);
        pg.remove(left.0);
    }
    assert_eq!(
        sqlite, pg,
        "SQLite's tables and columns against PostgreSQL's"
    );
}

/// `CONFER_TEST_REDIS_URL`, or `None` (saying why) when the tests may skip.
pub(crate) fn redis_url() -> Option<String> {
    match std::env::var("CONFER_TEST_REDIS_URL") {
        Ok(url) => Some(url),
        Err(_) => {
            assert!(
                std::env::var_os("CONFER_REQUIRE_SERVICES").is_none(),
                "CONFER_REQUIRE_SERVICES is set but CONFER_TEST_REDIS_URL is not"
            );
            eprintln!("skipped: CONFER_TEST_REDIS_URL is not set (scripts/suite-scale sets it)");
            None
        }
    }
}

/// The Redis prefix of the cluster over `db`.
pub(crate) fn cluster_prefix(db: &TestDatabase) -> String {
    format!("confer-test:{}", db.url)
}

async fn clustered_node(db: &TestDatabase, redis: &str) -> TestServer {
    let (url, redis, prefix) = (db.url.clone(), redis.to_string(), cluster_prefix(db));
    TestServer::start_with(move |c| {
        c.database_url = Some(url);
        c.database_pool_size = 4;
        c.redis_url = Some(redis);
        // One cluster per test database, though the tests share one Redis.
        c.redis_prefix = prefix;
        // A session cmd nobody answers times out soon.
        c.reply_timeout_ms = 1_000;
        c.node_timeout_secs = 1;
    })
    .await
}

/// Three nodes over one PostgreSQL and one Redis: a conference message posted on one
/// node reaches an occupant's session on another as `msglog_new_msg`, and a
/// `user send_event` reaches the user's sessions on every node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_sessions_on_other_nodes_through_redis() {
    let (Some(db), Some(redis)) = (TestDatabase::fresh("confer_it"), redis_url()) else {
        return;
    };
    let nodes = [
        clustered_node(&db, &redis).await,
        clustered_node(&db, &redis).await,
        clustered_node(&db, &redis).await,
    ];
    nodes[0].add_user("alice", "a").await;
    nodes[0].add_user("bob", "b").await;
    let (alice, alice_session) = nodes[0].login("alice", "a").await;
    let (bob, _) = nodes[1].login("bob", "b").await;
    let (bob_too, _) = nodes[2].login("bob", "b").await;
    ok_data(
        &alice
            .call(
                "media",
                "conf",
                "create",
                json!({"conf_id": "room", "class": "sfu"}),
            )
            .await,
    );
    ok_data(
        &bob.call("media", "conf", "join", json!({"conf_id": "room"}))
            .await,
    );
    let sent = ok_data(&msglog_send(&alice, "across").await);
    let e = bob.event_of_type("msglog_new_msg").await;
    assert_eq!(e["obj_id"], "room");
    assert_eq!(e["body"]["msg_id"], sent["msg_id"]);
    assert_eq!(e["body"]["text"], "across");
    assert_eq!(e["body"]["session_id"], alice_session.as_str());

    ok_data(
        &alice
            .call(
                "core",
                "user",
                "send_event",
                json!({"user": "bob", "type": "hi", "body": {"n": 1}}),
            )
            .await,
    );
    for session in [&bob, &bob_too] {
        let e = session.event_of_type("hi").await;
        assert_eq!(e["obj_id"], "bob");
        assert_eq!(e["body"], json!({"n": 1}));
    }
    for n in nodes {
        n.stop().await;
    }
}

/// Call until the answer satisfies `ok` (the directory reaches other nodes a moment after
/// a session comes or goes); the last answer. Fails after [`WAIT`].
async fn eventually(
    client: &Client,
    (class, subclass, cmd): (&str, &str, &str),
    data: serde_json::Value,
    ok: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let reply = client.call(class, subclass, cmd, data.clone()).await;
        if ok(&reply) {
            return reply;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{cmd} never answered as expected; last: {reply}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The next server request whose `cmd` is `cmd`, skipping events and pings.
async fn request_of(client: &Client, cmd: &str) -> serde_json::Value {
    loop {
        let r = client.next_request().await;
        if r["cmd"] == cmd {
            return r;
        }
    }
}

/// Three nodes over one PostgreSQL and one Redis share one session directory: `user
/// list` and `user get` on one node show every node's sessions; `session send_event`,
/// `session cmd` (its answer and its error routed back to the asking node, a target that
/// never answers timed out) and `session stop` reach a session on another node; a
/// stopped session leaves every node's directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_session_directory_spans_three_nodes() {
    let (Some(db), Some(redis)) = (TestDatabase::fresh("confer_it"), redis_url()) else {
        return;
    };
    let nodes = [
        clustered_node(&db, &redis).await,
        clustered_node(&db, &redis).await,
        clustered_node(&db, &redis).await,
    ];
    nodes[0].add_user("alice", "a").await;
    nodes[0].add_user("bob", "b").await;
    let (alice, alice_session) = nodes[0].login("alice", "a").await;
    let (bob, bob_session) = nodes[1].login("bob", "b").await;
    let (admin, _) = nodes[2].login("admin", ADMIN_PASSWORD).await;

    let users = eventually(&admin, ("core", "user", "list"), json!(null), |r| {
        r["data"]["alice"] == json!([alice_session]) && r["data"]["bob"] == json!([bob_session])
    })
    .await;
    assert_eq!(users["result"], "ok");
    let got = ok_data(
        &admin
            .call("core", "user", "get", json!({"user": "alice"}))
            .await,
    );
    assert_eq!(got[&alice_session]["type"], "api_server", "{got}");
    // A user's own sessions on two nodes, seen from a third.
    let (_alice_too, alice_too_session) = nodes[1].login("alice", "a").await;
    let (alice_three, _) = nodes[2].login("alice", "a").await;
    let mine = eventually(
        &alice_three,
        ("core", "user", "get"),
        json!({"user": "alice"}),
        |r| r["data"].as_object().is_some_and(|m| m.len() == 3),
    )
    .await;
    assert!(mine["data"].get(&alice_too_session).is_some(), "{mine}");

    ok_data(
        &bob.call(
            "core",
            "session",
            "send_event",
            json!({"session_id": alice_session, "type": "poke"}),
        )
        .await,
    );
    let e = alice.event_of_type("poke").await;
    assert_eq!(e["obj_id"], alice_session.as_str());

    // `session cmd` from node 1 to a session on node 0: the answer comes back, and so
    // does an error.
    let answering = async {
        let req = request_of(&alice, "my_cmd").await;
        assert_eq!(req["class"], "my_class");
        assert_eq!(req["data"], json!({"key": "val"}));
        alice.answer(json!({"result": "ok", "tid": req["tid"], "data": {"received": true}}));
        let req = request_of(&alice, "bad_cmd").await;
        alice.answer(
            json!({"result": "error", "tid": req["tid"], "data": {"code": 123, "error": "no way"}}),
        );
    };
    let calling = async {
        let ok = bob
            .call(
                "core",
                "session",
                "cmd",
                json!({"session_id": alice_session, "class": "my_class", "cmd": "my_cmd", "data": {"key": "val"}}),
            )
            .await;
        assert_eq!(ok_data(&ok), json!({"received": true}));
        let err = bob
            .call(
                "core",
                "session",
                "cmd",
                json!({"session_id": alice_session, "class": "my_class", "cmd": "bad_cmd"}),
            )
            .await;
        assert_eq!(code(&err), 123, "{err}");
        assert_eq!(err["data"]["error"], "no way");
    };
    tokio::join!(answering, calling);
    // A target that never answers: its node's timeout answer reaches the caller.
    let silent = bob
        .call(
            "core",
            "session",
            "cmd",
            json!({"session_id": alice_too_session, "class": "x", "cmd": "unanswered"}),
        )
        .await;
    assert_eq!(code(&silent), 100005, "{silent}");

    // Stopping across nodes: not another user's session; the admin's, from a third node.
    let refused = bob
        .call(
            "core",
            "session",
            "stop",
            json!({"session_id": alice_session}),
        )
        .await;
    assert_eq!(code(&refused), 100030, "{refused}");
    ok_data(
        &admin
            .call(
                "core",
                "session",
                "stop",
                json!({"session_id": alice_session}),
            )
            .await,
    );
    assert_eq!(alice.closed().await.map(|(c, _)| c), Some(1000));
    eventually(&admin, ("core", "user", "list"), json!(null), |r| {
        r["data"]["alice"]
            .as_array()
            .is_some_and(|s| !s.contains(&json!(alice_session)))
    })
    .await;
    eventually(
        &bob,
        ("core", "session", "cmd"),
        json!({"session_id": alice_session, "class": "x", "cmd": "y"}),
        |r| code(r) == 100062,
    )
    .await;
    for n in nodes {
        n.stop().await;
    }
}

/// The sessions in a conference's live room, as `get_info` lists them.
fn room_sessions(reply: &serde_json::Value) -> BTreeSet<String> {
    reply["data"]["members"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

/// A conference's live room spans nodes: `get_info` on any node lists the parties of
/// every node, a party leaving on one node leaves every node's list, and a party's
/// session closing on its node (here: a node stopped) takes it out everywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conference_room_spans_three_nodes() {
    let (Some(db), Some(redis)) = (TestDatabase::fresh("confer_it"), redis_url()) else {
        return;
    };
    let nodes = [
        clustered_node(&db, &redis).await,
        clustered_node(&db, &redis).await,
        clustered_node(&db, &redis).await,
    ];
    for user in ["alice", "bob", "carol"] {
        nodes[0].add_user(user, "p").await;
    }
    let (alice, alice_session) = nodes[0].login("alice", "p").await;
    let (bob, bob_session) = nodes[1].login("bob", "p").await;
    let (carol, carol_session) = nodes[2].login("carol", "p").await;
    ok_data(
        &alice
            .call(
                "media",
                "conf",
                "create",
                json!({"conf_id": "room", "class": "sfu"}),
            )
            .await,
    );
    for client in [&alice, &bob, &carol] {
        ok_data(
            &client
                .call("media", "conf", "join", json!({"conf_id": "room"}))
                .await,
        );
    }
    let everyone: BTreeSet<String> = [&alice_session, &bob_session, &carol_session]
        .into_iter()
        .cloned()
        .collect();
    for client in [&alice, &bob, &carol] {
        eventually(
            client,
            ("media", "conf", "get_info"),
            json!({"conf_id": "room"}),
            |r| room_sessions(r) == everyone,
        )
        .await;
    }
    ok_data(
        &bob.call("media", "conf", "leave", json!({"conf_id": "room"}))
            .await,
    );
    let without_bob: BTreeSet<String> = [&alice_session, &carol_session]
        .into_iter()
        .cloned()
        .collect();
    eventually(
        &carol,
        ("media", "conf", "get_info"),
        json!({"conf_id": "room"}),
        |r| room_sessions(r) == without_bob,
    )
    .await;
    let [n0, n1, n2] = nodes;
    n2.stop().await;
    let only_alice: BTreeSet<String> = [alice_session.clone()].into_iter().collect();
    eventually(
        &alice,
        ("media", "conf", "get_info"),
        json!({"conf_id": "room"}),
        |r| room_sessions(r) == only_alice,
    )
    .await;
    n0.stop().await;
    n1.stop().await;
}

async fn hub_node(db: &TestDatabase) -> TestServer {
    let url = db.url.clone();
    TestServer::start_with(move |c| {
        c.database_url = Some(url);
        c.database_pool_size = 4;
        c.hub_role = true;
    })
    .await
}

/// A hub runs on PostgreSQL (`serve` used to refuse `hub_role` with a `database_url`): an
/// edge syncs with one hub node both ways, and another node of the same database sees
/// the box, its roster, the edge's messages and the sync's logs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_on_postgresql_syncs_with_an_edge_and_its_other_node_sees_it_all() {
    let Some(db) = TestDatabase::fresh("confer_it") else {
        return;
    };
    let pair = Pair::with_hub(hub_node(&db).await).await;
    let report = pair.run(Hooks::default()).await;
    assert_eq!(report.failed, None, "{:?}", report.steps);
    assert_eq!((report.messages_sent, report.attachments_sent), (2, 1));

    let other = hub_node(&db).await;
    let core = confer_server::build_core(&other.config).unwrap();
    let b = core
        .hub_box(BOX)
        .await
        .unwrap()
        .expect("the box, from the other node");
    assert!(b.roster.unwrap().as_str().contains("\"Math\""));
    core.hub_queue_setting(BOX, "wifi", "on").await.unwrap();
    core.flush().await.unwrap();

    pair.teacher_answers("well done, Sam").await;
    let report = pair.run(Hooks::default()).await;
    assert_eq!(report.failed, None, "{:?}", report.steps);
    assert_eq!((report.messages_sent, report.messages_received), (0, 1));
    assert_eq!(report.settings_applied, ["wifi"]);
    let (hub, edge) = pair.both_sides().await;
    assert_eq!(hub[1..3], ["hello from the box", "[image/png]"]);
    assert_eq!(edge.last().map(String::as_str), Some("well done, Sam"));
    assert!(!core.hub_logs(BOX).await.unwrap().is_empty());

    let report = pair.run(Hooks::default()).await;
    assert_eq!(
        (
            report.failed,
            report.messages_sent,
            report.messages_received
        ),
        (None, 0, 0),
        "a third run moves nothing"
    );
}

/// A push queued in a SQLite folder (its provider was down when the server stopped) is
/// still queued after `confer migrate`, for a node over PostgreSQL to send.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_carries_queued_pushes() {
    use confer_core::model::PushKind;
    use confer_core::store::{MessageStore, PushStore, Storage};
    let Some(db) = TestDatabase::fresh("confer_it") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    {
        let store = confer_store_sqlite::SqliteStore::open(
            dir.path(),
            Arc::new(confer_core::metrics::Metrics::default()),
        )
        .unwrap();
        let group = confer_store_tests::conference(&store, "pushed").await;
        let posted = store
            .append_message(confer_core::model::NewMessage {
                push_to: vec![confer_core::Uin(2)],
                ..confer_store_tests::message(group, None, "queued")
            })
            .await
            .unwrap();
        let entry = store.push_entries(1).await.unwrap().remove(0);
        let d = confer_store_tests::delivery(
            PushKind::Message,
            group,
            posted.message.message_id,
            "tok",
        );
        store.expand_push(entry.id, vec![d], None).await.unwrap();
        let claimed = store.claim_pushes("old", &[1], 10, 70, 1).await.unwrap();
        store.push_retry(claimed[0].id, 3, 500).await.unwrap();
        store.flush().await.unwrap();
    }
    let (ok, out, err) = migrate(dir.path(), &db.url).await;
    assert!(ok, "{out}\n{err}");
    let pg = confer_store_postgres::PgStore::open(&db.url, Default::default()).unwrap();
    let due = pg.claim_pushes("new", &[1], 500, 560, 10).await.unwrap();
    assert_eq!(due.len(), 1, "the queued push is there");
    assert_eq!((due[0].attempts, due[0].body.as_deref()), (3, Some("hi")));
}
