//! The External API where it used to differ from NkSERVICE (issue 15): `session cmd`
//! acks and timeouts, login metadata, `service`, overlapping subscriptions, `session log`
//! bounds, frames with an `ack` key, stray answers, conference ids, slow consumers.

use serde_json::{json, Value};

use crate::common::{code, ok_data, Client, TestServer, ADMIN_PASSWORD};

#[tokio::test]
async fn session_log_takes_levels_1_to_7_and_refuses_a_record_too_large_for_gelf() {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let url = format!("udp://{}", socket.local_addr().unwrap());
    let server = TestServer::start_with(|c| c.gelf = Some(url)).await;
    let (admin, _) = server.login("admin", ADMIN_PASSWORD).await;
    for level in [0, 8] {
        let reply = admin
            .call(
                "core",
                "session",
                "log",
                json!({"source": "h", "message": "m", "level": level}),
            )
            .await;
        assert_eq!(code(&reply), 100046, "level {level}: {reply}");
    }
    // 128 chunks of 1,420 bytes hold about 180 KB; this needs more.
    let huge = "x".repeat(400_000);
    let reply = admin
        .call(
            "core",
            "session",
            "log",
            json!({"source": "h", "message": "m", "full_message": huge}),
        )
        .await;
    assert_eq!(code(&reply), 100046, "{reply}");
    assert!(
        reply["data"]["error"].as_str().unwrap().contains("128"),
        "{reply}"
    );
    ok_data(
        &admin
            .call(
                "core",
                "session",
                "log",
                json!({"source": "h", "message": "m", "level": 7}),
            )
            .await,
    );
    server.stop().await;
}

#[tokio::test]
async fn a_request_with_an_ack_key_is_still_a_request() {
    let server = TestServer::start().await;
    let (admin, _) = server.login("admin", ADMIN_PASSWORD).await;
    let reply = admin
        .raw_call(
            77,
            r#"{"class":"core","subclass":"user","cmd":"list","tid":77,"ack":5}"#,
        )
        .await;
    assert_eq!(reply["result"], "ok", "{reply}");
    assert!(reply["data"]["admin"].is_array(), "{reply}");
    server.stop().await;
}

#[tokio::test]
async fn a_stray_answer_is_ignored_not_answered_in_the_clients_tid_space() {
    let server = TestServer::start().await;
    let (admin, _) = server.login("admin", ADMIN_PASSWORD).await;
    admin.send_text(r#"{"result":"maybe","tid":1}"#);
    admin.send_text(r#"{"result":"ok","tid":12345}"#);
    // The next answer the client sees under tid 1 is its own request's, not an error
    // about the stray frames.
    let reply = admin
        .raw_call(
            1,
            r#"{"class":"core","subclass":"user","cmd":"list","tid":1}"#,
        )
        .await;
    assert_eq!(reply["result"], "ok", "{reply}");
    ok_data(&admin.call("core", "user", "list", Value::Null).await);
    server.stop().await;
}

/// The next frame `{"ack":N}` a client received.
async fn next_ack(client: &Client) -> Value {
    loop {
        let r = client.next_request().await;
        if r.get("ack").is_some() {
            return r;
        }
    }
}

/// The next request forwarded to `client` with `cmd`.
async fn forwarded(client: &Client, cmd: &str) -> Value {
    loop {
        let r = client.next_request().await;
        if r["cmd"] == cmd {
            return r;
        }
    }
}

#[tokio::test]
async fn session_cmd_is_acked_and_a_silent_target_is_a_timeout() {
    let server = TestServer::start_with(|c| {
        c.reply_timeout_ms = 300;
        c.acked_reply_timeout_ms = 1000;
    })
    .await;
    let (caller, _) = server.login("admin", ADMIN_PASSWORD).await;
    let login = json!({"user": "admin", "password": ADMIN_PASSWORD});

    // A target that never answers: the caller is acked, then told 100005, not "session
    // not found" (the target is closed for not answering).
    let silent = Client::connect(&server.ws_url(), false).await;
    let sid = ok_data(&silent.login_with(login.clone()).await)["session_id"].clone();
    let reply = caller
        .raw_call(
            41,
            &json!({"class": "core", "subclass": "session", "cmd": "cmd", "tid": 41,
                    "data": {"session_id": sid, "class": "x", "cmd": "never"}})
            .to_string(),
        )
        .await;
    assert_eq!(code(&reply), 100005, "{reply}");
    assert_eq!(next_ack(&caller).await, json!({"ack": 41}));
    forwarded(&silent, "never").await;

    // A target that acks and then never answers: 100005 once its acked timeout
    // (`acked_reply_timeout_ms`) is over, not at a fixed 30 s.
    let slow = Client::connect(&server.ws_url(), false).await;
    let sid = ok_data(&slow.login_with(login).await)["session_id"].clone();
    let acking = async {
        let req = forwarded(&slow, "later").await;
        slow.answer(json!({"ack": req["tid"]}));
    };
    let calling = caller.call(
        "core",
        "session",
        "cmd",
        json!({"session_id": sid, "class": "x", "cmd": "later"}),
    );
    let ((), reply) = tokio::join!(acking, calling);
    assert_eq!(code(&reply), 100005, "{reply}");
    server.stop().await;
}

#[tokio::test]
async fn service_names_this_server_or_is_not_found() {
    let server = TestServer::start().await;
    let (admin, _) = server.login("admin", ADMIN_PASSWORD).await;
    ok_data(
        &admin
            .call(
                "core",
                "event",
                "subscribe",
                json!({"class": "app", "service": "confer"}),
            )
            .await,
    );
    ok_data(
        &admin
            .call(
                "core",
                "event",
                "send",
                json!({"class": "app", "type": "t", "service": "confer"}),
            )
            .await,
    );
    let e = admin.event_of_type("t").await;
    assert_eq!(e["class"], "app");
    // No `unrecognized_fields` event came for `service`: the next event is the marker.
    ok_data(
        &admin
            .call(
                "core",
                "event",
                "send",
                json!({"class": "app", "type": "marker"}),
            )
            .await,
    );
    assert_eq!(admin.next_event().await["type"], "marker");
    for cmd in ["subscribe", "send"] {
        let reply = admin
            .call(
                "core",
                "event",
                cmd,
                json!({"class": "app", "service": "elsewhere"}),
            )
            .await;
        assert_eq!(code(&reply), 100020, "{cmd}: {reply}");
    }
    server.stop().await;
}

#[tokio::test]
async fn login_metadata_is_kept_with_the_session_and_shown_by_user_get() {
    let server = TestServer::start().await;
    let client = server.connect().await;
    let login = client
        .login_with(json!({"user": "admin", "password": ADMIN_PASSWORD,
                           "meta1": "value1", "type": "forged"}))
        .await;
    let session = ok_data(&login)["session_id"].as_str().unwrap().to_string();
    let info = ok_data(
        &client
            .call("core", "user", "get", json!({"user": "admin"}))
            .await,
    );
    assert_eq!(info[&session]["meta1"], "value1", "{info}");
    assert_eq!(
        info[&session]["type"], "api_server",
        "the server's field wins"
    );
    assert!(info[&session]["remote"].is_string(), "{info}");
    // The extra fields were not reported as unrecognized: the first event is the marker.
    ok_data(
        &client
            .call(
                "core",
                "user",
                "send_event",
                json!({"user": "admin", "type": "marker"}),
            )
            .await,
    );
    assert_eq!(client.next_event().await["type"], "marker");

    let big = client_with_meta(&server, "x".repeat(5000)).await;
    assert_eq!(code(&big), 100046, "{big}");
    server.stop().await;
}

async fn client_with_meta(server: &TestServer, meta: String) -> Value {
    server
        .connect()
        .await
        .login_with(json!({"user": "admin", "password": ADMIN_PASSWORD, "meta1": meta}))
        .await
}

#[tokio::test]
async fn overlapping_subscriptions_deliver_once_with_every_body_merged() {
    let server = TestServer::start().await;
    // The admin, who may subscribe to every user's events.
    let (admin, _) = server.login("admin", ADMIN_PASSWORD).await;
    // Beside the automatic `core/user_event/admin`: the same events of type z, with a body.
    ok_data(
        &admin
            .call(
                "core",
                "event",
                "subscribe",
                json!({"class": "core", "subclass": "user_event", "type": "z",
                       "obj_id": "admin", "body": {"m": 1}}),
            )
            .await,
    );
    ok_data(
        &admin
            .call(
                "core",
                "event",
                "subscribe",
                json!({"class": "core", "subclass": "user_event", "type": "z",
                       "body": {"w": 2, "m": 9}}),
            )
            .await,
    );
    for (kind, body) in [("z", json!({"n": 0})), ("marker", json!({"n": 0}))] {
        ok_data(
            &admin
                .call(
                    "core",
                    "user",
                    "send_event",
                    json!({"user": "admin", "type": kind, "body": body}),
                )
                .await,
        );
    }
    let z = admin.next_event().await;
    assert_eq!(z["type"], "z");
    assert_eq!(z["body"], json!({"n": 0, "m": 1, "w": 2}), "{z}");
    assert_eq!(admin.next_event().await["type"], "marker", "z came once");
    server.stop().await;
}

#[tokio::test]
async fn the_creator_sees_created_and_a_destroyed_conf_id_is_answered_destroyed() {
    let server = TestServer::start().await;
    server.add_user("alice", "a").await;
    let (alice, _) = server.login("alice", "a").await;
    ok_data(
        &alice
            .call("media", "conf", "create", json!({"conf_id": "room1"}))
            .await,
    );
    let created = alice.next_event().await;
    assert_eq!(
        created,
        json!({"class": "media", "subclass": "conf", "type": "created", "obj_id": "room1"})
    );
    // Creating is not joining: the room has no members yet.
    let info = ok_data(
        &alice
            .call("media", "conf", "get_info", json!({"conf_id": "room1"}))
            .await,
    );
    assert_eq!(info["members"], json!({}), "{info}");

    let taken = alice
        .call("media", "conf", "create", json!({"conf_id": "room1"}))
        .await;
    assert_eq!(code(&taken), 304002, "{taken}");
    ok_data(
        &alice
            .call("media", "conf", "destroy", json!({"conf_id": "room1"}))
            .await,
    );
    assert_eq!(alice.event_of_type("destroyed").await["obj_id"], "room1");
    let again = alice
        .call("media", "conf", "create", json!({"conf_id": "room1"}))
        .await;
    assert_eq!(code(&again), 304003, "{again}");
    assert!(
        again["data"]["error"]
            .as_str()
            .unwrap()
            .contains("destroyed"),
        "{again}"
    );
    server.stop().await;
}

/// Log lines the server writes on this test's thread (a current-thread runtime runs the
/// whole server there).
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test]
async fn a_slow_consumer_is_logged_once_with_its_drop_count_and_drops_are_in_metrics() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let server = TestServer::start_with(|c| {
        c.outbound_queue = 8;
        c.write_timeout_ms = 1000;
        c.reply_timeout_ms = 60_000;
        c.extapi_rate_burst = 100_000;
    })
    .await;
    let (admin, _) = server.login("admin", ADMIN_PASSWORD).await;
    // A client that logs in, subscribes, and never reads again, with a tiny buffer.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(server.addr).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(server.ws_url(), stream)
        .await
        .unwrap();
    for frame in [
        json!({"class": "core", "subclass": "user", "cmd": "login", "data": {"user": "admin", "password": ADMIN_PASSWORD, "session_id": "slow"}, "tid": 1}),
        json!({"class": "core", "subclass": "event", "cmd": "subscribe", "data": {"class": "flood"}, "tid": 2}),
    ] {
        ws.send(Message::Text(frame.to_string().into()))
            .await
            .unwrap();
        let answer = ws.next().await.unwrap().unwrap();
        assert!(answer.to_text().unwrap().contains("\"ok\""), "{answer}");
    }
    let body = json!({"pad": "x".repeat(4096)});
    for _ in 0..2000 {
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
    // Wait for the cut to be over: the session is gone from the list.
    let mut gone = false;
    for _ in 0..200 {
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
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(gone, "the slow session should have been cut");
    let text = logs.text();
    let cuts: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("outbound queue full"))
        .collect();
    assert_eq!(cuts.len(), 1, "one line for the cut: {cuts:?}");
    assert!(cuts[0].contains("session=slow"), "{}", cuts[0]);
    let dropped: u64 = cuts[0]
        .split("dropped=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("the count of dropped deliveries");
    assert!(dropped > 1, "{}", cuts[0]);
    let (_, metrics) = server.http("GET", "/metrics", &[], "").await;
    assert!(
        metrics.contains(&format!("confer_deliveries_dropped_total {dropped}")),
        "{metrics}"
    );
    drop(ws);
    server.stop().await;
}
