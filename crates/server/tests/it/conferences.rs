//! Conferences and their message log, including persistence across a restart.

use serde_json::{json, Value};

use crate::common::{code, ok_data, TestServer, ADMIN_PASSWORD};

#[tokio::test]
async fn create_join_leave_info_list_and_destroy_with_member_events() {
    let server = TestServer::start().await;
    server.add_user("alice", "a").await;
    server.add_user("bob", "b").await;
    let (alice, alice_session) = server.login("alice", "a").await;
    let (bob, bob_session) = server.login("bob", "b").await;

    let created = ok_data(
        &alice
            .call(
                "media",
                "conf",
                "create",
                json!({"conf_id": "standup", "class": "sfu"}),
            )
            .await,
    );
    assert_eq!(created["conf_id"], "standup");
    assert_eq!(
        code(
            &bob.call("media", "conf", "create", json!({"conf_id": "standup"}))
                .await
        ),
        304002
    );
    assert_eq!(
        code(
            &bob.call("media", "conf", "create", json!({"class": "p2p"}))
                .await
        ),
        100046
    );
    let generated = ok_data(
        &bob.call("media", "conf", "create", json!({"class": "mcu"}))
            .await,
    );
    assert!(generated["conf_id"].as_str().unwrap().len() >= 32);

    // Bob does not see Alice's conference until he joins it.
    let bobs = ok_data(&bob.call("media", "conf", "get_list", Value::Null).await);
    assert_eq!(
        bobs,
        json!([{"conf_id": generated["conf_id"], "class": "mcu"}])
    );
    assert_eq!(
        code(
            &bob.call("media", "conf", "get_info", json!({"conf_id": "standup"}))
                .await
        ),
        304001
    );

    ok_data(
        &alice
            .call("media", "conf", "join", json!({"conf_id": "standup"}))
            .await,
    );
    let started = alice.event_of_type("started_member").await;
    assert_eq!(started["obj_id"], "standup");
    assert_eq!(
        started["body"],
        json!({"session_id": alice_session, "role": "member", "user_id": "alice"})
    );
    assert_eq!(
        code(
            &alice
                .call("media", "conf", "join", json!({"conf_id": "standup"}))
                .await
        ),
        100040
    );

    ok_data(
        &bob.call(
            "media",
            "conf",
            "join",
            json!({"conf_id": "standup", "role": "presenter"}),
        )
        .await,
    );
    let seen = alice.event_of_type("started_member").await;
    assert_eq!(seen["body"]["session_id"], bob_session.as_str());
    assert_eq!(seen["body"]["role"], "presenter");

    let info = ok_data(
        &bob.call("media", "conf", "get_info", json!({"conf_id": "standup"}))
            .await,
    );
    assert_eq!(info["class"], "sfu");
    assert_eq!(
        info["members"][&alice_session],
        json!({"role": "member", "user_id": "alice"})
    );
    assert_eq!(
        info["members"][&bob_session],
        json!({"role": "presenter", "user_id": "bob"})
    );

    ok_data(
        &bob.call("media", "conf", "leave", json!({"conf_id": "standup"}))
            .await,
    );
    let stopped = alice.event_of_type("stopped_member").await;
    assert_eq!(stopped["body"]["user_id"], "bob");
    assert_eq!(
        code(
            &bob.call("media", "conf", "leave", json!({"conf_id": "standup"}))
                .await
        ),
        304001
    );

    ok_data(
        &bob.call(
            "media",
            "conf",
            "destroy",
            json!({"conf_id": generated["conf_id"].clone()}),
        )
        .await,
    );
    ok_data(
        &bob.call("media", "conf", "join", json!({"conf_id": "standup"}))
            .await,
    );
    assert_eq!(
        code(
            &bob.call("media", "conf", "destroy", json!({"conf_id": "standup"}))
                .await
        ),
        100030
    );
    ok_data(
        &alice
            .call("media", "conf", "destroy", json!({"conf_id": "standup"}))
            .await,
    );
    // Bob created (so watched) and destroyed the generated one: its `destroyed` first.
    let generated_gone = bob.event_of_type("destroyed").await;
    assert_eq!(generated_gone["obj_id"], generated["conf_id"]);
    let destroyed = bob.event_of_type("destroyed").await;
    assert_eq!(destroyed["obj_id"], "standup");
    assert_eq!(destroyed["body"]["code"], 100001);
    assert_eq!(
        code(
            &alice
                .call("media", "conf", "get_info", json!({"conf_id": "standup"}))
                .await
        ),
        304003
    );
    assert_eq!(
        code(
            &alice
                .call("media", "conf", "destroy", json!({"conf_id": "standup"}))
                .await
        ),
        304003
    );
    assert_eq!(
        code(
            &alice
                .call("media", "conf", "get_info", json!({"conf_id": "nope"}))
                .await
        ),
        304001
    );
    server.stop().await;
}

#[tokio::test]
async fn msglog_messages_are_stored_delivered_and_survive_a_restart() {
    let server = TestServer::start().await;
    server.add_user("alice", "a").await;
    server.add_user("bob", "b").await;
    let (alice, alice_session) = server.login("alice", "a").await;
    let (bob, _) = server.login("bob", "b").await;
    ok_data(
        &alice
            .call("media", "conf", "create", json!({"conf_id": "room"}))
            .await,
    );
    ok_data(
        &bob.call("media", "conf", "join", json!({"conf_id": "room"}))
            .await,
    );
    assert_eq!(
        code(
            &server
                .login("admin", ADMIN_PASSWORD)
                .await
                .0
                .call(
                    "media",
                    "conf",
                    "msglog_send",
                    json!({"conf_id": "nope", "msg": {}})
                )
                .await
        ),
        304001
    );

    for i in 1..=3u64 {
        let sent = ok_data(
            &alice
                .call(
                    "media",
                    "conf",
                    "msglog_send",
                    json!({"conf_id": "room", "msg": {"text": format!("m{i}")}}),
                )
                .await,
        );
        assert_eq!(sent["msg_id"], i);
        let e = bob.event_of_type("msglog_new_msg").await;
        assert_eq!(e["class"], "media");
        assert_eq!(e["subclass"], "conf");
        assert_eq!(e["obj_id"], "room");
        assert_eq!(e["body"]["msg_id"], i);
        assert_eq!(e["body"]["text"], format!("m{i}"));
        assert_eq!(e["body"]["user_id"], "alice");
        assert_eq!(e["body"]["session_id"], alice_session.as_str());
        assert!(e["body"]["timestamp"].as_u64().unwrap() > 1_600_000_000_000_000);
    }
    let log = ok_data(
        &bob.call("media", "conf", "msglog_get", json!({"conf_id": "room"}))
            .await,
    );
    let texts: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["m1", "m2", "m3"]);
    let page = ok_data(
        &bob.call(
            "media",
            "conf",
            "msglog_get",
            json!({"conf_id": "room", "after_msg_id": 1, "limit": 1}),
        )
        .await,
    );
    assert_eq!(page.as_array().unwrap().len(), 1);
    assert_eq!(page[0]["msg_id"], 2);

    // A stranger can neither read nor write.
    server.add_user("eve", "e").await;
    let (eve, _) = server.login("eve", "e").await;
    assert_eq!(
        code(
            &eve.call("media", "conf", "msglog_get", json!({"conf_id": "room"}))
                .await
        ),
        304001
    );
    assert_eq!(
        code(
            &eve.call(
                "media",
                "conf",
                "msglog_send",
                json!({"conf_id": "room", "msg": {}})
            )
            .await
        ),
        304001
    );
    drop((alice, bob, eve));

    let server = server.restart().await;
    let (alice, _) = server.login("alice", "a").await;
    let log = ok_data(
        &alice
            .call("media", "conf", "msglog_get", json!({"conf_id": "room"}))
            .await,
    );
    assert_eq!(log.as_array().unwrap().len(), 3);
    assert_eq!(log[2]["text"], "m3");
    let next = ok_data(
        &alice
            .call(
                "media",
                "conf",
                "msglog_send",
                json!({"conf_id": "room", "msg": {"text": "m4"}}),
            )
            .await,
    );
    assert_eq!(next["msg_id"], 4, "msg_id continues after a restart");
    server.stop().await;
}
