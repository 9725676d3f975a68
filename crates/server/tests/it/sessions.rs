//! Users and sessions: list, get, events between users and sessions, stop, forwarded
//! commands, pings and their timeout.

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};

use crate::common::{code, ok_data, Client, TestServer, ADMIN_PASSWORD};

#[tokio::test]
async fn two_users_exchange_user_events() {
    let server = TestServer::start().await;
    server.add_user("alice", "a").await;
    server.add_user("bob", "b").await;
    let (alice, _) = server.login("alice", "a").await;
    let (bob1, _) = server.login("bob", "b").await;
    let (bob2, _) = server.login("bob", "b").await;

    let sent = alice
        .call(
            "core",
            "user",
            "send_event",
            json!({"user": "bob", "type": "hello", "body": {"n": 1}}),
        )
        .await;
    ok_data(&sent);
    for bob in [&bob1, &bob2] {
        let e = bob.event_of_type("hello").await;
        assert_eq!(
            e,
            json!({"class": "core", "subclass": "user_event", "type": "hello", "obj_id": "bob", "body": {"n": 1}})
        );
    }
    ok_data(
        &bob1
            .call(
                "core",
                "user",
                "send_event",
                json!({"user": "alice", "type": "hi"}),
            )
            .await,
    );
    let e = alice.event_of_type("hi").await;
    assert_eq!(e["obj_id"], "alice");
    assert!(e.get("body").is_none(), "an empty body is left out: {e}");

    assert_eq!(
        code(
            &alice
                .call("core", "user", "send_event", json!({"user": "nobody"}))
                .await
        ),
        100033
    );
    server.stop().await;
}

#[tokio::test]
async fn user_list_and_get_show_live_sessions_to_the_right_callers() {
    let server = TestServer::start().await;
    server.add_user("alice", "a").await;
    let (admin, admin_session) = server.login("admin", ADMIN_PASSWORD).await;
    let (alice, alice_session) = server.login("alice", "a").await;

    let all = ok_data(&admin.call("core", "user", "list", Value::Null).await);
    assert_eq!(all["admin"], json!([admin_session]));
    assert_eq!(all["alice"], json!([alice_session]));
    let mine = ok_data(&alice.call("core", "user", "list", Value::Null).await);
    assert_eq!(mine, json!({"alice": [alice_session]}));

    let info = ok_data(
        &admin
            .call("core", "user", "get", json!({"user": "alice"}))
            .await,
    );
    assert_eq!(info[&alice_session]["type"], "api_server");
    assert!(info[&alice_session]["remote"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    assert_eq!(
        code(
            &alice
                .call("core", "user", "get", json!({"user": "admin"}))
                .await
        ),
        100030
    );
    assert_eq!(
        code(
            &admin
                .call("core", "user", "get", json!({"user": "ghost"}))
                .await
        ),
        100033
    );
    server.stop().await;
}

#[tokio::test]
async fn session_events_and_stop() {
    let server = TestServer::start().await;
    server.add_user("alice", "a").await;
    server.add_user("bob", "b").await;
    let (alice, alice_session) = server.login("alice", "a").await;
    let (bob, bob_session) = server.login("bob", "b").await;

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
    assert_eq!(
        e,
        json!({"class": "core", "subclass": "session_event", "type": "poke", "obj_id": alice_session})
    );
    assert_eq!(
        code(
            &bob.call(
                "core",
                "session",
                "send_event",
                json!({"session_id": "nope"})
            )
            .await
        ),
        100062
    );

    // Nobody stops another user's session; the admin may.
    assert_eq!(
        code(
            &bob.call(
                "core",
                "session",
                "stop",
                json!({"session_id": alice_session})
            )
            .await
        ),
        100030
    );
    assert_eq!(
        code(
            &bob.call("core", "session", "stop", json!({"session_id": "nope"}))
                .await
        ),
        100062
    );
    let (admin, _) = server.login("admin", ADMIN_PASSWORD).await;
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
    assert!(alice.closed().await.is_some());
    let users = ok_data(&admin.call("core", "user", "list", Value::Null).await);
    assert!(users.get("alice").is_none(), "{users}");
    assert_eq!(users["bob"], json!([bob_session]));
    server.stop().await;
}

#[tokio::test]
async fn session_cmd_is_relayed_both_ways_including_errors() {
    let server = TestServer::start().await;
    let (caller, _) = server.login("admin", ADMIN_PASSWORD).await;
    let (target, target_session) = server.login("admin", ADMIN_PASSWORD).await;

    let answering = async {
        let req = loop {
            let r = target.next_request().await;
            if r["cmd"] == "my_cmd" {
                break r;
            }
        };
        assert_eq!(req["class"], "my_class");
        assert_eq!(req["data"], json!({"key": "val"}));
        target.answer(json!({"result": "ok", "tid": req["tid"], "data": {"received": true}}));
        let req = loop {
            let r = target.next_request().await;
            if r["cmd"] == "bad_cmd" {
                break r;
            }
        };
        target.answer(
            json!({"result": "error", "tid": req["tid"], "data": {"code": 123, "error": "no way"}}),
        );
    };
    let calling = async {
        let ok = caller
            .call("core", "session", "cmd", json!({"session_id": target_session, "class": "my_class", "cmd": "my_cmd", "data": {"key": "val"}}))
            .await;
        assert_eq!(ok_data(&ok), json!({"received": true}));
        let err = caller
            .call(
                "core",
                "session",
                "cmd",
                json!({"session_id": target_session, "class": "my_class", "cmd": "bad_cmd"}),
            )
            .await;
        assert_eq!(code(&err), 123);
        assert_eq!(err["data"]["error"], "no way");
    };
    tokio::join!(answering, calling);

    let missing = caller
        .call(
            "core",
            "session",
            "cmd",
            json!({"session_id": "nobody", "class": "x", "cmd": "y"}),
        )
        .await;
    assert_eq!(code(&missing), 100062);
    server.stop().await;
}

#[tokio::test]
async fn a_client_that_never_answers_pings_is_disconnected() {
    let server = TestServer::start_with(|c| {
        c.ping_interval_ms = 100;
        // Generous for the polite client on a loaded CI machine; the silent one still goes.
        c.reply_timeout_ms = 1000;
    })
    .await;
    // A polite client answers pings and stays.
    let (polite, _) = server.login("admin", ADMIN_PASSWORD).await;
    // A silent one answers nothing.
    let silent = Client::connect(&server.ws_url(), false).await;
    ok_data(
        &silent
            .login_with(json!({"user": "admin", "password": ADMIN_PASSWORD}))
            .await,
    );
    let ping = silent.next_request().await;
    assert_eq!(ping["cmd"], "ping");
    assert!(ping["data"]["time"].as_u64().unwrap() > 1_600_000_000);
    let (close_code, reason) = silent.closed().await.expect("closed with a reason");
    assert_eq!(close_code, 1008);
    assert!(reason.contains("timeout"), "{reason}");
    // The polite client is still served after several ping rounds.
    ok_data(&polite.call("core", "user", "list", Value::Null).await);
    server.stop().await;
}

#[tokio::test]
async fn shutdown_closes_connections_with_1001_and_keeps_what_was_acknowledged() {
    let server = TestServer::start().await;
    let (c, _) = server.login("admin", ADMIN_PASSWORD).await;
    ok_data(
        &c.call("media", "conf", "create", json!({"conf_id": "s"}))
            .await,
    );
    ok_data(
        &c.call(
            "media",
            "conf",
            "msglog_send",
            json!({"conf_id": "s", "msg": {"n": 1}}),
        )
        .await,
    );
    let server = server.restart().await;
    let (close_code, reason) = c.closed().await.expect("a close frame");
    assert_eq!(close_code, 1001);
    assert!(reason.contains("shutting down"), "{reason}");
    let (c2, _) = server.login("admin", ADMIN_PASSWORD).await;
    let log = ok_data(
        &c2.call("media", "conf", "msglog_get", json!({"conf_id": "s"}))
            .await,
    );
    assert_eq!(log[0]["n"], 1);
    server.stop().await;
}

#[tokio::test]
async fn a_client_that_stops_reading_is_cut_and_nobody_else_waits() {
    use tokio::io::AsyncWriteExt;

    let server = TestServer::start_with(|c| {
        c.outbound_queue = 8;
        c.write_timeout_ms = 1000;
        // Long enough that only the slow-consumer cut, not the reply timeout, can end it.
        c.reply_timeout_ms = 60_000;
        // The flood below is one connection's: not what this test is about.
        c.extapi_rate_burst = 100_000;
    })
    .await;
    let (admin, _) = server.login("admin", ADMIN_PASSWORD).await;
    let (fast, _) = server.login("admin", ADMIN_PASSWORD).await;
    ok_data(
        &fast
            .call("core", "event", "subscribe", json!({"class": "flood"}))
            .await,
    );

    // The slow client: a real WebSocket with a tiny receive buffer that logs in,
    // subscribes, and then never reads again.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(server.addr).await.unwrap();
    let (ws, _) = tokio_tungstenite::client_async(server.ws_url(), stream)
        .await
        .unwrap();
    let mut ws = ws;
    for (tid, frame) in [
        json!({"class": "core", "subclass": "user", "cmd": "login", "data": {"user": "admin", "password": ADMIN_PASSWORD, "session_id": "slow"}, "tid": 1}),
        json!({"class": "core", "subclass": "event", "cmd": "subscribe", "data": {"class": "flood"}, "tid": 2}),
    ]
    .into_iter()
    .enumerate()
    {
        ws.send(tokio_tungstenite::tungstenite::Message::Text(frame.to_string().into())).await.unwrap();
        let answer = ws.next().await.unwrap().unwrap();
        assert!(answer.to_text().unwrap().contains("\"ok\""), "step {tid}: {answer}");
    }

    // Flood: 3,000 events of 4 KiB, more than the kernel buffers between the server and a
    // client that does not read can hold.
    let n = 3000;
    let body = json!({"pad": "x".repeat(4096)});
    for _ in 0..n {
        ok_data(
            &admin
                .call(
                    "core",
                    "event",
                    "send",
                    json!({"class": "flood", "body": body}),
                )
                .await,
        );
    }
    // The fast subscriber got every one of them.
    let mut got = 0;
    while got < n {
        if fast.next_event().await["class"] == "flood" {
            got += 1;
        }
    }
    // And the slow one was cut: its session is gone.
    let mut gone = false;
    for _ in 0..100 {
        let users = ok_data(&admin.call("core", "user", "list", Value::Null).await);
        if !users["admin"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s == "slow")
        {
            gone = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(gone, "the slow session should have been disconnected");
    let (_, metrics) = server.http("GET", "/metrics", &[], "").await;
    assert!(
        !metrics.contains("confer_slow_consumers_cut_total 0"),
        "{metrics}"
    );
    let _ = ws.get_mut().flush().await;
    server.stop().await;
}
