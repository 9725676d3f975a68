//! Subscriptions: the automatic ones, wildcards, body merge, unsubscribe, authorisation.

use serde_json::{json, Value};

use crate::common::{code, ok_data, TestServer, ADMIN_PASSWORD};

#[tokio::test]
async fn a_new_session_has_its_two_automatic_subscriptions() {
    let server = TestServer::start().await;
    server.add_user("alice", "a").await;
    let (alice, session) = server.login("alice", "a").await;
    let subs = ok_data(
        &alice
            .call("core", "event", "get_subscriptions", Value::Null)
            .await,
    );
    let mut subs = subs.as_array().unwrap().clone();
    subs.sort_by_key(|s| s["subclass"].as_str().unwrap().to_string());
    assert_eq!(
        subs,
        vec![
            json!({"class": "core", "subclass": "session_event", "type": "*", "obj_id": session}),
            json!({"class": "core", "subclass": "user_event", "type": "*", "obj_id": "alice"}),
        ]
    );
    server.stop().await;
}

#[tokio::test]
async fn wildcard_subscriptions_receive_matching_events_with_merged_bodies() {
    let server = TestServer::start().await;
    server.add_user("alice", "a").await;
    server.add_user("bob", "b").await;
    let (alice, _) = server.login("alice", "a").await;
    let (bob, _) = server.login("bob", "b").await;

    // Alice: every event of class "chat", subclass "room"; her body is merged in.
    ok_data(
        &alice
            .call(
                "core",
                "event",
                "subscribe",
                json!({"class": "chat", "subclass": "room", "body": {"tag": "mine", "n": 0}}),
            )
            .await,
    );
    // Bob: only type "typing" on object "r2".
    ok_data(
        &bob.call(
            "core",
            "event",
            "subscribe",
            json!({"class": "chat", "subclass": "*", "type": "typing", "obj_id": "r2"}),
        )
        .await,
    );

    ok_data(&bob.call("core", "event", "send", json!({"class": "chat", "subclass": "room", "type": "typing", "obj_id": "r1", "body": {"n": 7}})).await);
    let e = alice.next_event().await;
    assert_eq!(
        e,
        json!({"class": "chat", "subclass": "room", "type": "typing", "obj_id": "r1", "body": {"n": 7, "tag": "mine"}})
    );

    // `send_event` is the document's spelling of the same command.
    ok_data(
        &alice
            .call(
                "core",
                "event",
                "send_event",
                json!({"class": "chat", "subclass": "room", "type": "typing", "obj_id": "r2"}),
            )
            .await,
    );
    let to_bob = bob.next_event().await;
    assert_eq!(
        to_bob,
        json!({"class": "chat", "subclass": "room", "type": "typing", "obj_id": "r2"})
    );
    let to_alice = alice.next_event().await;
    assert_eq!(to_alice["body"], json!({"tag": "mine", "n": 0}));

    // An event sent with "*" for obj_id reaches only subscribers that left it open.
    ok_data(
        &alice
            .call(
                "core",
                "event",
                "send",
                json!({"class": "chat", "subclass": "room", "type": "typing"}),
            )
            .await,
    );
    assert!(alice.next_event().await.get("obj_id").is_none());
    assert!(
        bob.no_event_within(std::time::Duration::from_millis(300))
            .await
    );

    // Unsubscribe matches every field but the body.
    assert_eq!(
        code(
            &alice
                .call("core", "event", "unsubscribe", json!({"class": "chat"}))
                .await
        ),
        100046
    );
    ok_data(
        &alice
            .call(
                "core",
                "event",
                "unsubscribe",
                json!({"class": "chat", "subclass": "room"}),
            )
            .await,
    );
    ok_data(
        &bob.call(
            "core",
            "event",
            "send",
            json!({"class": "chat", "subclass": "room"}),
        )
        .await,
    );
    assert!(
        alice
            .no_event_within(std::time::Duration::from_millis(300))
            .await
    );
    server.stop().await;
}

#[tokio::test]
async fn users_cannot_observe_or_forge_the_servers_events() {
    let server = TestServer::start().await;
    server.add_user("alice", "a").await;
    server.add_user("bob", "b").await;
    let (alice, _) = server.login("alice", "a").await;
    let (_bob, bob_session) = server.login("bob", "b").await;

    // Each of these is someone else's, or the server's own: refused with 100030.
    let refused = [
        (
            "subscribe",
            json!({"class": "core", "subclass": "user_event", "obj_id": "bob"}),
        ),
        ("subscribe", json!({"class": "core"})),
        (
            "subscribe",
            json!({"class": "core", "subclass": "session_event", "obj_id": bob_session}),
        ),
        ("subscribe", json!({"class": "media", "subclass": "conf"})),
        (
            "send",
            json!({"class": "core", "subclass": "user_event", "obj_id": "bob"}),
        ),
        ("send", json!({"class": "media", "subclass": "conf"})),
    ];
    for (cmd, data) in refused {
        let reply = alice.call("core", "event", cmd, data.clone()).await;
        assert_eq!(code(&reply), 100030, "{cmd} {data}");
    }
    let own = json!({"class": "core", "subclass": "user_event", "obj_id": "alice"});
    ok_data(&alice.call("core", "event", "subscribe", own).await);

    // The admin may watch everything.
    let (admin, _) = server.login("admin", ADMIN_PASSWORD).await;
    ok_data(
        &admin
            .call(
                "core",
                "event",
                "subscribe",
                json!({"class": "core", "subclass": "user_event"}),
            )
            .await,
    );
    ok_data(
        &alice
            .call(
                "core",
                "user",
                "send_event",
                json!({"user": "bob", "type": "x"}),
            )
            .await,
    );
    assert_eq!(admin.event_of_type("x").await["obj_id"], "bob");
    server.stop().await;
}
