//! One message size limit for every door, listings capped in bytes, and a msglog body
//! that cannot pass its own keys for the server's (issue 14.8, 14.13), over the External
//! API.

use serde_json::{json, Value};

use crate::common::{code, ok_data, Client, TestServer};

async fn conference(server: &TestServer, alias: &str) -> Client {
    server.add_user("alice", "a").await;
    let (alice, _) = server.login("alice", "a").await;
    ok_data(
        &alice
            .call(
                "media",
                "conf",
                "create",
                json!({"conf_id": alias, "class": "sfu"}),
            )
            .await,
    );
    alice
}

async fn send(client: &Client, conf: &str, msg: Value) -> Value {
    client
        .call(
            "media",
            "conf",
            "msglog_send",
            json!({"conf_id": conf, "msg": msg}),
        )
        .await
}

#[tokio::test]
async fn msglog_send_is_held_to_max_message_bytes() {
    let server = TestServer::start_with(|c| c.max_message_bytes = 64 * 1024).await;
    let alice = conference(&server, "room").await;
    let big = "x".repeat(70 * 1024);
    let refused = send(&alice, "room", json!({ "text": big })).await;
    assert_eq!(code(&refused), 100046);
    let text = refused["data"]["error"].as_str().unwrap();
    assert!(text.contains("max_message_bytes"), "a clear text: {text}");
    ok_data(&send(&alice, "room", json!({"text": "small"})).await);
    let list = ok_data(
        &alice
            .call("media", "conf", "msglog_get", json!({"conf_id": "room"}))
            .await,
    );
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 1, "only the small one is stored");
    assert_eq!(list[0]["text"], "small");
    server.stop().await;
}

#[tokio::test]
async fn msglog_get_stops_at_max_list_bytes_says_more_and_pages_on() {
    let server = TestServer::start_with(|c| c.max_list_bytes = 50_000).await;
    let alice = conference(&server, "room").await;
    for i in 0..10 {
        let text = i.to_string().repeat(20_000);
        ok_data(&send(&alice, "room", json!({ "text": text, "i": i })).await);
    }
    let mut seen = Vec::new();
    let mut after = 0;
    let mut pages = 0;
    loop {
        let reply = alice
            .call(
                "media",
                "conf",
                "msglog_get",
                json!({"conf_id": "room", "after_msg_id": after, "limit": 300}),
            )
            .await;
        let list = ok_data(&reply);
        let list = list.as_array().unwrap();
        assert!(
            list.len() <= 2,
            "50,000 bytes hold two 20,000-byte messages"
        );
        seen.extend(list.iter().map(|m| m["i"].as_u64().unwrap()));
        pages += 1;
        if reply.get("more") != Some(&Value::Bool(true)) {
            break;
        }
        after = list.last().unwrap()["msg_id"].as_u64().unwrap();
    }
    assert_eq!(seen, (0..10).collect::<Vec<u64>>());
    assert_eq!(pages, 5);
    // A listing that holds everything says no more.
    let small = alice
        .call(
            "media",
            "conf",
            "msglog_get",
            json!({"conf_id": "room", "after_msg_id": 9}),
        )
        .await;
    assert_eq!(ok_data(&small).as_array().unwrap().len(), 1);
    assert!(small.get("more").is_none());
    server.stop().await;
}

#[tokio::test]
async fn msglog_send_cannot_pass_its_own_keys_for_the_servers() {
    let server = TestServer::start().await;
    let alice = conference(&server, "room").await;
    for key in ["message_id", "type", "deleted", "files"] {
        let mut msg = json!({"text": "hi"});
        msg[key] = json!("forged");
        let refused = send(&alice, "room", msg).await;
        assert_eq!(code(&refused), 100046, "{key}");
        let text = refused["data"]["error"].as_str().unwrap();
        assert!(text.contains(key), "the text names the key: {text}");
    }
    // The server's own fields win over the client's.
    let sent = ok_data(
        &send(
            &alice,
            "room",
            json!({"text": "hi", "msg_id": 99, "user_id": "mallory", "timestamp": 1}),
        )
        .await,
    );
    assert_eq!(sent["msg_id"], 1);
    let list = ok_data(
        &alice
            .call("media", "conf", "msglog_get", json!({"conf_id": "room"}))
            .await,
    );
    let m = &list[0];
    assert_eq!(m["msg_id"], 1);
    assert_eq!(m["user_id"], "alice");
    assert_ne!(m["timestamp"], 1);
    assert!(m.get("type").is_none() && m.get("message_id").is_none());
    server.stop().await;
}
