//! Access that outlives its right: subscriptions that end with the membership or the
//! session that authorised them, sessions that end with their token, and the bounds on
//! what one session may subscribe to or send.

use std::time::Duration;

use futures_util::future::join_all;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::common::{code, ok_data, Client, TestServer, WAIT};

/// Events of `client` up to the first one of type `marker`: the ones before it.
async fn events_until(client: &Client, marker: &str) -> Vec<Value> {
    let mut before = Vec::new();
    loop {
        let e = client.next_event().await;
        if e["type"] == marker {
            return before;
        }
        before.push(e);
    }
}

/// Send `user` a `core/user_event` of type `marker` (through `via`), so that what `user`
/// receives before it is everything that was published before it.
async fn mark(via: &Client, user: &str, marker: &str) {
    ok_data(
        &via.call(
            "core",
            "user",
            "send_event",
            json!({"user": user, "type": marker}),
        )
        .await,
    );
}

fn types(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["type"].as_str().unwrap_or("*").to_string())
        .collect()
}

#[tokio::test]
async fn leaving_a_conference_ends_the_subscriptions_it_authorised() {
    let server = TestServer::start().await;
    server.add_user("alice", "pw-a").await;
    server.add_user("bob", "pw-b").await;
    let (alice, _) = server.login("alice", "pw-a").await;
    let (bob, _) = server.login("bob", "pw-b").await;
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
    let msglog =
        json!({"class": "media", "subclass": "conf", "type": "msglog_new_msg", "obj_id": "room"});
    ok_data(&bob.call("core", "event", "subscribe", msglog).await);
    let send = json!({"conf_id": "room", "msg": {"text": "while bob is in"}});
    ok_data(&alice.call("media", "conf", "msglog_send", send).await);
    mark(&alice, "bob", "in").await;
    assert!(types(&events_until(&bob, "in").await).contains(&"msglog_new_msg".to_string()));

    ok_data(
        &bob.call("media", "conf", "leave", json!({"conf_id": "room"}))
            .await,
    );
    let get = bob
        .call("media", "conf", "msglog_get", json!({"conf_id": "room"}))
        .await;
    assert_eq!(code(&get), 304001, "bob no longer reads the conference");
    let send = json!({"conf_id": "room", "msg": {"text": "after bob left"}});
    ok_data(&alice.call("media", "conf", "msglog_send", send).await);
    mark(&alice, "bob", "out").await;
    let after = events_until(&bob, "out").await;
    assert!(
        !types(&after).contains(&"msglog_new_msg".to_string()),
        "bob still hears the conference after leaving it: {after:?}"
    );
    let subs = ok_data(
        &bob.call("core", "event", "get_subscriptions", Value::Null)
            .await,
    );
    assert!(
        !subs.to_string().contains("msglog_new_msg"),
        "the subscription is gone from bob's list: {subs}"
    );
    server.stop().await;
}

#[tokio::test]
async fn watching_a_session_ends_with_it_and_does_not_pass_to_a_new_one_of_that_id() {
    let server = TestServer::start().await;
    server.add_user("alice", "pw-a").await;
    server.add_user("bob", "pw-b").await;
    let (watcher, _) = server.login("alice", "pw-a").await;
    let second = server.connect().await;
    let reply = second
        .login_with(json!({"user": "alice", "password": "pw-a", "session_id": "X"}))
        .await;
    ok_data(&reply);
    let watch = json!({"class": "core", "subclass": "session_event", "obj_id": "X"});
    ok_data(&watcher.call("core", "event", "subscribe", watch).await);
    second.send_message(Message::Close(None));
    second.closed().await;

    // Bob takes the id once alice's session has gone (until then it is a duplicate).
    let bob = loop {
        let c = server.connect().await;
        let r = c
            .login_with(json!({"user": "bob", "password": "pw-b", "session_id": "X"}))
            .await;
        if r["result"] == "ok" {
            break c;
        }
        assert_eq!(code(&r), 100034, "{r}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let secret = json!({"session_id": "X", "type": "bobs_secret"});
    ok_data(&bob.call("core", "session", "send_event", secret).await);
    mark(&bob, "alice", "done").await;
    let seen = events_until(&watcher, "done").await;
    assert!(
        !types(&seen).contains(&"bobs_secret".to_string()),
        "alice hears bob's session events: {seen:?}"
    );
    server.stop().await;
}

/// A token from `POST /api/v1/login`.
async fn token(server: &TestServer, user: &str, password: &str) -> String {
    let body = json!({"user": user, "password": password}).to_string();
    let (status, body) = server.http("POST", "/api/v1/login", &[], &body).await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    v["session"].as_str().unwrap().to_string()
}

async fn login_by_token(server: &TestServer, user: &str, token: &str) -> Client {
    let client = server.connect().await;
    ok_data(
        &client
            .login_with(json!({"user": user, "token": token}))
            .await,
    );
    client
}

const TOKEN_ENDED: (u16, &str) = (1008, "token revoked or expired");

#[tokio::test]
async fn logout_ends_the_external_api_sessions_of_the_token() {
    let server = TestServer::start_with(|c| c.token_check_interval_ms = 0).await;
    server.add_user("alice", "pw-a").await;
    let t = token(&server, "alice", "pw-a").await;
    let by_token = login_by_token(&server, "alice", &t).await;
    let (by_password, _) = server.login("alice", "pw-a").await;
    let bearer = format!("Bearer {t}");
    let (status, _) = server
        .http("POST", "/api/v1/logout", &[("Authorization", &bearer)], "")
        .await;
    assert_eq!(status, 200);
    let closed = by_token.closed().await;
    assert_eq!(
        closed.as_ref().map(|(c, r)| (*c, r.as_str())),
        Some(TOKEN_ENDED)
    );
    // A session that proved the password itself is not the token's.
    ok_data(
        &by_password
            .call("core", "user", "get", json!({"user": "alice"}))
            .await,
    );
    server.stop().await;
}

#[tokio::test]
async fn a_password_changed_by_another_process_ends_the_sessions_of_its_tokens() {
    let server = TestServer::start_with(|c| c.token_check_interval_ms = 50).await;
    server.add_user("alice", "pw-a").await;
    let t = token(&server, "alice", "pw-a").await;
    let session = login_by_token(&server, "alice", &t).await;
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_confer"))
        .args([
            "user",
            "passwd",
            "alice",
            "--password",
            "new-pw",
            "--data-dir",
        ])
        .arg(server.data_dir())
        .env("CONFER_LOG_LEVEL", "warn")
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let closed = session.closed().await;
    assert_eq!(
        closed.as_ref().map(|(c, r)| (*c, r.as_str())),
        Some(TOKEN_ENDED)
    );
    // The old token no longer logs in either.
    let again = server.connect().await;
    let r = again.login_with(json!({"user": "alice", "token": t})).await;
    assert_eq!(code(&r), 100030);
    server.stop().await;
}

#[tokio::test]
async fn a_token_that_expires_ends_its_external_api_session() {
    let server = TestServer::start_with(|c| {
        c.token_lifetime_secs = 1;
        c.token_check_interval_ms = 50;
    })
    .await;
    server.add_user("alice", "pw-a").await;
    let t = token(&server, "alice", "pw-a").await;
    let session = login_by_token(&server, "alice", &t).await;
    let closed = session.closed().await;
    assert_eq!(
        closed.as_ref().map(|(c, r)| (*c, r.as_str())),
        Some(TOKEN_ENDED)
    );
    server.stop().await;
}

#[tokio::test]
async fn subscriptions_per_session_are_capped_with_a_clear_error() {
    let server = TestServer::start_with(|c| c.max_subscriptions_per_session = 3).await;
    server.add_user("alice", "pw-a").await;
    let (alice, _) = server.login("alice", "pw-a").await;
    let sub = |obj: &str| json!({"class": "app", "obj_id": obj});
    for obj in ["1", "2", "3"] {
        ok_data(&alice.call("core", "event", "subscribe", sub(obj)).await);
    }
    let refused = alice.call("core", "event", "subscribe", sub("4")).await;
    assert_eq!(code(&refused), 100040);
    let text = refused["data"]["error"].as_str().unwrap();
    assert!(text.contains("too many subscriptions"), "{text}");
    // The same pattern again replaces, it does not count twice; dropping one makes room.
    ok_data(&alice.call("core", "event", "subscribe", sub("3")).await);
    ok_data(&alice.call("core", "event", "unsubscribe", sub("3")).await);
    ok_data(&alice.call("core", "event", "subscribe", sub("4")).await);
    server.stop().await;
}

#[tokio::test]
async fn senders_that_flood_are_throttled_and_their_target_is_not_cut() {
    let server = TestServer::start_with(|c| {
        c.extapi_rate_per_sec = 1;
        c.extapi_rate_burst = 5;
        c.outbound_queue = 64;
    })
    .await;
    server.add_user("victim", "pw-v").await;
    server.add_user("flood", "pw-f").await;
    // The victim is a plain WebSocket that does not read while the flood goes on: what
    // reaches it must fit what its socket and queue hold.
    let (mut victim, _) = tokio_tungstenite::connect_async(server.ws_url())
        .await
        .unwrap();
    let login = json!({"class": "core", "subclass": "user", "cmd": "login", "tid": 1,
        "data": {"user": "victim", "password": "pw-v"}});
    victim
        .send(Message::Text(login.to_string().into()))
        .await
        .unwrap();
    let answer = victim.next().await.unwrap().unwrap();
    assert!(answer.to_text().unwrap().contains("\"ok\""), "{answer:?}");

    let mut senders = Vec::new();
    for _ in 0..8 {
        senders.push(server.login("flood", "pw-f").await.0);
    }
    let body = json!({"pad": "x".repeat(16 * 1024)});
    let floods = senders.iter().map(|s| {
        let body = body.clone();
        async move {
            let calls = (0..150).map(|_| {
                s.call(
                    "core",
                    "user",
                    "send_event",
                    json!({"user": "victim", "type": "spam", "body": body}),
                )
            });
            join_all(calls).await
        }
    });
    let answers: Vec<Value> = join_all(floods).await.into_iter().flatten().collect();
    let limited = answers
        .iter()
        .filter(|a| a["result"] == "error" && a["data"]["code"] == 100043)
        .count();
    // The victim reads now: it gets what was let through, and is still connected.
    let get = json!({"class": "core", "subclass": "user", "cmd": "get", "tid": 2,
        "data": {"user": "victim"}});
    victim
        .send(Message::Text(get.to_string().into()))
        .await
        .unwrap();
    let mut spam = 0;
    loop {
        let next = tokio::time::timeout(WAIT, victim.next())
            .await
            .expect("victim waits");
        match next {
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                if v["tid"] == 2 && v.get("result").is_some() {
                    assert_eq!(v["result"], "ok", "{v}");
                    break;
                }
                if v["cmd"] == "event" || v["cmd"] == "ping" {
                    spam += usize::from(v["data"]["type"] == "spam");
                    let ok = json!({"result": "ok", "tid": v["tid"]});
                    let sent = victim.send(Message::Text(ok.to_string().into())).await;
                    sent.expect("the victim was cut");
                }
            }
            Some(Ok(Message::Close(f))) => panic!("the victim was cut: {f:?}"),
            Some(Ok(_)) => {}
            other => panic!("the victim's connection ended: {other:?}"),
        }
    }
    assert_eq!(
        spam,
        answers.len() - limited,
        "every accepted event arrived"
    );
    assert!(limited > 0, "no sender was throttled");
    assert!(
        answers
            .iter()
            .all(|a| a["result"] == "ok" || a["data"]["code"] == 100043),
        "answers are ok or rate limited"
    );
    server.stop().await;
}
