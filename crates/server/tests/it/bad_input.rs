//! Bad input of every kind gets its documented error, and the connection stays usable.

use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::common::{code, ok_data, TestServer, ADMIN_PASSWORD};

#[tokio::test]
async fn malformed_frames_get_error_frames_and_the_connection_survives() {
    let server = TestServer::start().await;
    let (c, _) = server.login("admin", ADMIN_PASSWORD).await;

    // Undecodable frames are answered under tid 0.
    let bad_json = c.raw_call(0, "{\"class\": \"core\", ").await;
    assert_eq!(code(&bad_json), 100044);
    let not_object = c.raw_call(0, "[1, 2, 3]").await;
    assert_eq!(code(&not_object), 100044);
    let no_tid = c
        .raw_call(0, r#"{"class":"core","subclass":"user","cmd":"list"}"#)
        .await;
    assert_eq!(code(&no_tid), 100045);
    c.send_message(Message::Binary(vec![1, 2, 3].into()));
    let binary = c.raw_call(0, "").await;
    assert_eq!(code(&binary), 100044);

    let missing_cmd = c.raw_call(7, r#"{"class":"core","tid":7}"#).await;
    assert_eq!(code(&missing_cmd), 100045);
    let wrong_type = c.raw_call(8, r#"{"class":5,"cmd":"list","tid":8}"#).await;
    assert_eq!(code(&wrong_type), 100046);

    assert_eq!(
        code(&c.call("nope", "core", "x", Value::Null).await),
        100042
    );
    assert_eq!(
        code(&c.call("core", "user", "fly", Value::Null).await),
        100042
    );
    assert_eq!(
        code(&c.call("core", "user", "get", json!([1])).await),
        100041
    );
    assert_eq!(
        code(&c.call("core", "user", "get", json!({})).await),
        100045
    );
    assert_eq!(
        code(&c.call("core", "user", "get", json!({"user": 42})).await),
        100046
    );
    assert_eq!(
        code(
            &c.call(
                "media",
                "conf",
                "msglog_send",
                json!({"conf_id": "x", "msg": "not an object"})
            )
            .await
        ),
        100046
    );
    assert_eq!(
        code(
            &c.call(
                "core",
                "session",
                "log",
                json!({"source": "h", "message": "m", "level": 99})
            )
            .await
        ),
        100046
    );

    // Still logged in and working.
    let list = ok_data(&c.call("core", "user", "list", Value::Null).await);
    assert!(list["admin"].is_array());
    server.stop().await;
}

#[tokio::test]
async fn an_oversize_frame_closes_with_1009_and_stored_messages_remain() {
    let server = TestServer::start_with(|c| c.max_frame_bytes = 4096).await;
    let (c, _) = server.login("admin", ADMIN_PASSWORD).await;
    ok_data(
        &c.call("media", "conf", "create", json!({"conf_id": "big"}))
            .await,
    );
    let sent = c
        .call(
            "media",
            "conf",
            "msglog_send",
            json!({"conf_id": "big", "msg": {"text": "kept"}}),
        )
        .await;
    assert_eq!(ok_data(&sent)["msg_id"], 1);

    let huge = json!({"class": "core", "subclass": "user", "cmd": "list", "tid": 99, "data": {"x": "y".repeat(10_000)}});
    c.send_text(&huge.to_string());
    let (close_code, reason) = c.closed().await.expect("a close frame");
    assert_eq!(close_code, 1009);
    assert!(reason.contains("too large"), "{reason}");

    let (c2, _) = server.login("admin", ADMIN_PASSWORD).await;
    let log = ok_data(
        &c2.call("media", "conf", "msglog_get", json!({"conf_id": "big"}))
            .await,
    );
    assert_eq!(log[0]["text"], "kept");
    server.stop().await;
}

#[tokio::test]
async fn unknown_data_fields_succeed_and_raise_unrecognized_fields() {
    let server = TestServer::start().await;
    let (c, session) = server.login("admin", ADMIN_PASSWORD).await;
    let reply = c
        .call("core", "user", "list", json!({"colour": "blue", "size": 3}))
        .await;
    ok_data(&reply);
    let event = c.event_of_type("unrecognized_fields").await;
    assert_eq!(event["class"], "core");
    assert_eq!(event["subclass"], "session_event");
    assert_eq!(event["obj_id"], session.as_str());
    assert_eq!(
        event["body"],
        json!({"class": "core", "subclass": "user", "cmd": "list", "fields": ["colour", "size"]})
    );
    server.stop().await;
}
