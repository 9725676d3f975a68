//! The admin HTTP API (`/api/v1/admin/`) over real HTTP: who may call it, groups and
//! their members, a message sent in a member's name reaching both doors' clients, and
//! live sessions listed and stopped.

use std::net::SocketAddr;

use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::common::{http, http_bytes, ok_data, TestServer, ADMIN_PASSWORD, WAIT};

fn basic(user: &str, password: &str) -> String {
    let raw = format!("{user}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

/// An admin request with the right credentials: (status, JSON body).
async fn admin(server: &TestServer, method: &str, path: &str, body: Value) -> (u16, Value) {
    let auth = basic("admin", ADMIN_PASSWORD);
    let body = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    let (status, text) = server
        .http(
            method,
            path,
            &[
                ("Authorization", auth.as_str()),
                ("Content-Type", "application/json"),
            ],
            &body,
        )
        .await;
    let value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text:?}"));
    (status, value)
}

async fn token(server: &TestServer, user: &str, password: &str) -> String {
    let (status, body) = server
        .http(
            "POST",
            "/api/v1/login",
            &[],
            &json!({"user": user, "password": password}).to_string(),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    v["session"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn without_an_admin_password_every_admin_request_is_403() {
    let server = TestServer::start_with(|c| c.admin_password = None).await;
    for (method, path) in [
        ("GET", "/api/v1/admin/groups"),
        ("GET", "/api/v1/admin/sessions"),
        ("DELETE", "/api/v1/admin/sessions/x"),
    ] {
        let (status, body) = http(
            server.addr,
            method,
            path,
            &[("Authorization", &basic("admin", ""))],
            "",
        )
        .await;
        assert_eq!(status, 403, "{method} {path}");
        assert_eq!(
            serde_json::from_str::<Value>(&body).unwrap(),
            json!({"error": "admin API disabled: no admin_password"})
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn missing_or_wrong_credentials_are_401_with_a_basic_challenge() {
    let server = TestServer::start().await;
    server.add_user("alice@example.com", "pw").await;
    let alice_token = token(&server, "alice@example.com", "pw").await;
    let bearer = format!("Bearer {alice_token}");
    let wrong = basic("admin", "wrong");
    let user = basic("alice@example.com", "pw");
    let cases: [&[(&str, &str)]; 5] = [
        &[],
        &[("Authorization", wrong.as_str())],
        &[("Authorization", user.as_str())],
        &[("Authorization", bearer.as_str())],
        &[("Authorization", "Basic not-base64!")],
    ];
    for headers in cases {
        let (status, head, body) =
            http_bytes(server.addr, "GET", "/api/v1/admin/groups", headers, b"").await;
        assert_eq!(status, 401, "{headers:?}");
        assert!(
            head.contains("www-authenticate: basic realm=\"confer admin\""),
            "{head}"
        );
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert!(body["error"].is_string(), "{body}");
    }
    let (status, body) = admin(&server, "GET", "/api/v1/admin/groups", Value::Null).await;
    assert_eq!((status, body), (200, json!([])));
    server.stop().await;
}

#[tokio::test]
async fn groups_are_created_listed_and_their_members_changed() {
    let server = TestServer::start().await;
    for u in ["alice@example.com", "bob@example.com", "carol@example.com"] {
        server.add_user(u, "pw").await;
    }
    // Users by login or by uin (bob is 2).
    let (status, group) = admin(
        &server,
        "POST",
        "/api/v1/admin/groups",
        json!({"name": "Team", "owner": "alice@example.com", "members": ["2"]}),
    )
    .await;
    assert_eq!(status, 201, "{group}");
    let id = group["group_id"].as_str().unwrap().to_string();
    assert_eq!(group["type"], 2);
    assert_eq!(group["name"], "Team");
    assert_eq!(group["owner_uin"], "1");
    assert_eq!(group["members"], json!(["1", "2"]));
    assert!(group["created_at"].as_i64().unwrap() > 1_600_000_000);

    let (status, list) = admin(&server, "GET", "/api/v1/admin/groups", Value::Null).await;
    assert_eq!((status, list), (200, json!([group])));

    let members = format!("/api/v1/admin/groups/{id}/members");
    let (status, g) = admin(
        &server,
        "POST",
        &members,
        json!({"user": "carol@example.com"}),
    )
    .await;
    assert_eq!(status, 200, "{g}");
    assert_eq!(g["members"], json!(["1", "2", "3"]));
    let (status, g) = admin(
        &server,
        "DELETE",
        &format!("{members}/bob@example.com"),
        Value::Null,
    )
    .await;
    assert_eq!(status, 200, "{g}");
    assert_eq!(g["members"], json!(["1", "3"]));
    // Carol sees it as a member would: her Chat API listing is not tested here, the
    // admin's own listing follows.
    let (_, list) = admin(&server, "GET", "/api/v1/admin/groups", Value::Null).await;
    assert_eq!(list[0]["members"], json!(["1", "3"]));

    // Errors, each in the API's own form.
    let cases = [
        (
            "POST",
            "/api/v1/admin/groups".to_string(),
            json!({"name": "X", "owner": "nobody"}),
            404,
        ),
        (
            "POST",
            "/api/v1/admin/groups".to_string(),
            json!({"name": "X", "owner": "alice@example.com", "occupants": ["2"]}),
            400,
        ),
        (
            "POST",
            "/api/v1/admin/groups".to_string(),
            json!({"name": "X", "owner": "alice@example.com", "type": 7}),
            400,
        ),
        (
            "POST",
            "/api/v1/admin/groups".to_string(),
            json!({"name": "X", "owner": "alice@example.com", "type": null}),
            400,
        ),
        (
            "POST",
            "/api/v1/admin/groups".to_string(),
            json!({"owner": "alice@example.com"}),
            400,
        ),
        (
            "POST",
            members.clone(),
            json!({"user": "carol@example.com"}),
            409,
        ),
        ("DELETE", format!("{members}/1"), Value::Null, 409),
        (
            "DELETE",
            format!("{members}/bob@example.com"),
            Value::Null,
            409,
        ),
        (
            "POST",
            "/api/v1/admin/groups/999/members".to_string(),
            json!({"user": "bob@example.com"}),
            404,
        ),
        (
            "POST",
            "/api/v1/admin/groups/abc/members".to_string(),
            json!({"user": "bob@example.com"}),
            400,
        ),
        ("GET", "/api/v1/admin/nothing".to_string(), Value::Null, 404),
    ];
    for (method, path, body, expected) in cases {
        let (status, answer) = admin(&server, method, &path, body.clone()).await;
        assert_eq!(status, expected, "{method} {path} {body}: {answer}");
        assert!(answer["error"].is_string(), "{answer}");
    }
    let (status, answer) = http(
        server.addr,
        "POST",
        "/api/v1/admin/groups",
        &[("Authorization", &basic("admin", ADMIN_PASSWORD))],
        "{not json",
    )
    .await;
    assert_eq!(status, 400);
    assert!(answer.contains("invalid body"), "{answer}");
    server.stop().await;
}

/// A minimal Socket.IO client over WebSocket (Engine.IO v4): connects to `/data` with a
/// login token and yields the chat events it is sent, answering pings.
struct ChatClient {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

impl ChatClient {
    async fn connect(addr: SocketAddr, token: &str) -> ChatClient {
        let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket&session={token}");
        let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        let mut client = ChatClient { ws };
        let open = client.next_packet().await;
        assert!(open.starts_with('0'), "{open}");
        client
            .ws
            .send(Message::Text("40/data,".into()))
            .await
            .unwrap();
        let (name, login) = client.next_event().await;
        assert_eq!(
            (name.as_str(), login["result"].as_i64()),
            ("login", Some(0))
        );
        client
    }

    /// The next Engine.IO packet that is not a ping (pings are answered).
    async fn next_packet(&mut self) -> String {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("no packet")
                .expect("closed")
                .unwrap();
            let Message::Text(text) = msg else { continue };
            if text.as_str() == "2" {
                self.ws.send(Message::Text("3".into())).await.unwrap();
                continue;
            }
            return text.to_string();
        }
    }

    /// The next event on `/data`: (name, first argument).
    async fn next_event(&mut self) -> (String, Value) {
        loop {
            let packet = self.next_packet().await;
            if let Some(json) = packet.strip_prefix("42/data,") {
                let v: Value = serde_json::from_str(json).unwrap();
                return (v[0].as_str().unwrap().to_string(), v[1].clone());
            }
        }
    }

    /// The next event named `name`, skipping others (presence and the like).
    async fn event(&mut self, name: &str) -> Value {
        loop {
            let (n, arg) = self.next_event().await;
            if n == name {
                return arg;
            }
        }
    }

    /// Wait for the server to end the socket: whether it did (close frame or EOF).
    async fn ended(&mut self) -> bool {
        loop {
            match tokio::time::timeout(WAIT, self.ws.next()).await {
                Err(_) => return false,
                Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => return true,
                Ok(Some(Ok(Message::Text(t)))) if t.as_str() == "2" => {
                    let _ = self.ws.send(Message::Text("3".into())).await;
                }
                Ok(Some(Ok(_))) => {}
            }
        }
    }
}

#[tokio::test]
async fn a_message_sent_by_the_admin_reaches_both_doors_clients() {
    let server = TestServer::start().await;
    for u in ["alice@example.com", "bob@example.com"] {
        server.add_user(u, "pw").await;
    }
    let (_, group) = admin(
        &server,
        "POST",
        "/api/v1/admin/groups",
        json!({"name": "Team", "owner": "alice@example.com", "members": ["bob@example.com"]}),
    )
    .await;
    let id = group["group_id"].as_str().unwrap().to_string();

    // Bob on the Chat API, and on the External API subscribed to the group's messages.
    let bob_token = token(&server, "bob@example.com", "pw").await;
    let mut bob_chat = ChatClient::connect(server.addr, &bob_token).await;
    let (bob_ext, _) = server.login("bob@example.com", "pw").await;
    ok_data(
        &bob_ext
            .call(
                "core",
                "event",
                "subscribe",
                json!({"class": "media", "subclass": "conf", "type": "msglog_new_msg", "obj_id": id}),
            )
            .await,
    );

    let messages = format!("/api/v1/admin/groups/{id}/messages");
    let (status, sent) = admin(&server, "POST", &messages, json!({"text": "hello team"})).await;
    assert_eq!(status, 201, "{sent}");
    assert_eq!(sent["group_id"], id.as_str());
    assert_eq!(sent["seq"], 1);
    assert_eq!(sent["sender_uin"], "1", "the owner by default");
    assert!(sent["created_at"].as_i64().unwrap() > 1_600_000_000_000_000);
    assert!(sent["message_id"].is_string());

    let push = bob_chat.event("message").await;
    assert_eq!(push["message"]["message"], "hello team");
    assert_eq!(push["message"]["group_id"], id.as_str());
    assert_eq!(push["message"]["sender_uin"], "1");
    assert_eq!(push["message"]["message_id"], sent["message_id"]);
    let event = bob_ext.event_of_type("msglog_new_msg").await;
    assert_eq!(event["obj_id"], id.as_str());
    assert_eq!(event["body"]["message"], "hello team");
    assert_eq!(event["body"]["user_id"], "alice@example.com");

    // In bob's name; not in the name of someone outside the group.
    let (status, sent) = admin(
        &server,
        "POST",
        &messages,
        json!({"text": "from bob", "as": "bob@example.com"}),
    )
    .await;
    assert_eq!(status, 201, "{sent}");
    assert_eq!(sent["sender_uin"], "2");
    assert_eq!(sent["seq"], 2);
    assert_eq!(
        bob_chat.event("message").await["message"]["message"],
        "from bob"
    );
    server.add_user("eve@example.com", "pw").await;
    for (body, expected) in [
        (json!({"text": "x", "as": "eve@example.com"}), 400),
        (json!({"text": "x", "as": "nobody"}), 404),
        (json!({"text": ""}), 400),
        (json!({"message": "x"}), 400),
        (json!({"text": "x", "as": null}), 400),
    ] {
        let (status, answer) = admin(&server, "POST", &messages, body.clone()).await;
        assert_eq!(status, expected, "{body}: {answer}");
    }
    let (status, _) = admin(
        &server,
        "POST",
        "/api/v1/admin/groups/999/messages",
        json!({"text": "x"}),
    )
    .await;
    assert_eq!(status, 404);
    server.stop().await;
}

#[tokio::test]
async fn live_sessions_are_listed_and_a_stopped_one_is_disconnected() {
    let server = TestServer::start().await;
    server.add_user("alice@example.com", "pw").await;
    server.add_user("bob@example.com", "pw").await;
    let (alice, alice_session) = server.login("alice@example.com", "pw").await;
    let bob_token = token(&server, "bob@example.com", "pw").await;
    let mut bob_chat = ChatClient::connect(server.addr, &bob_token).await;

    let (status, list) = admin(&server, "GET", "/api/v1/admin/sessions", Value::Null).await;
    assert_eq!(status, 200, "{list}");
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2, "{list:?}");
    let ext = list.iter().find(|s| s["door"] == "extapi").unwrap();
    assert_eq!(ext["session_id"], alice_session.as_str());
    assert_eq!(ext["user"], "alice@example.com");
    assert_eq!(ext["uin"], "1");
    assert!(ext["remote"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(ext["started_at"].as_i64().unwrap() > 1_600_000_000);
    let chat = list.iter().find(|s| s["door"] == "chat").unwrap();
    assert_eq!(chat["user"], "bob@example.com");
    let chat_session = chat["session_id"].as_str().unwrap().to_string();

    let path = format!("/api/v1/admin/sessions/{alice_session}");
    let (status, answer) = admin(&server, "DELETE", &path, Value::Null).await;
    assert_eq!((status, answer), (200, json!({"stopped": true})));
    let (code, _) = alice.closed().await.expect("a close frame");
    assert_eq!(code, 1000);
    let (status, answer) = admin(
        &server,
        "DELETE",
        &format!("/api/v1/admin/sessions/{chat_session}"),
        Value::Null,
    )
    .await;
    assert_eq!((status, answer), (200, json!({"stopped": true})));
    assert!(bob_chat.ended().await, "the chat socket is closed");

    let (status, answer) = admin(&server, "DELETE", &path, Value::Null).await;
    assert_eq!(status, 404, "{answer}");
    assert!(answer["error"].is_string());
    server.stop().await;
}

#[tokio::test]
async fn guessing_the_admin_password_is_limited_like_any_password_login() {
    let server = TestServer::start_with(|c| {
        c.login_account_burst = 3;
        c.login_address_burst = 100;
    })
    .await;
    let wrong = basic("admin", "guess");
    for _ in 0..3 {
        let (status, _, _) = http_bytes(
            server.addr,
            "GET",
            "/api/v1/admin/groups",
            &[("Authorization", wrong.as_str())],
            b"",
        )
        .await;
        assert_eq!(status, 401);
    }
    // Past the account's burst even the right password is refused, before it is checked,
    // and the limit is the one `POST /api/v1/login` applies to the same account.
    let right = basic("admin", ADMIN_PASSWORD);
    let (status, head, body) = http_bytes(
        server.addr,
        "GET",
        "/api/v1/admin/groups",
        &[("Authorization", right.as_str())],
        b"",
    )
    .await;
    assert_eq!(status, 429, "{head}");
    assert!(head.contains("retry-after:"), "{head}");
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert!(body["error"].is_string(), "{body}");
    let (status, _) = server
        .http(
            "POST",
            "/api/v1/login",
            &[],
            &json!({"user": "admin", "password": ADMIN_PASSWORD}).to_string(),
        )
        .await;
    assert_eq!(status, 429);
    server.stop().await;
}
