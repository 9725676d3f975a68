//! Logging in: passwords, tokens, the admin, and the errors around them.

use serde_json::json;

use crate::common::{code, ok_data, TestServer, ADMIN_PASSWORD};

#[tokio::test]
async fn admin_and_accounts_log_in_and_wrong_passwords_are_refused() {
    let server = TestServer::start().await;
    server.add_user("alice@example.com", "alice-pw").await;

    let (_admin, admin_session) = server.login("admin", ADMIN_PASSWORD).await;
    assert!(!admin_session.is_empty());
    let (_alice, alice_session) = server.login("alice@example.com", "alice-pw").await;
    assert_ne!(alice_session, admin_session);

    let c = server.connect().await;
    let wrong = c
        .login_with(json!({"user": "alice@example.com", "password": "nope"}))
        .await;
    assert_eq!(code(&wrong), 100030);
    let unknown = c
        .login_with(json!({"user": "nobody", "password": "x"}))
        .await;
    assert_eq!(
        code(&unknown),
        100030,
        "unknown users look like wrong passwords"
    );
    let admin_wrong = c
        .login_with(json!({"user": "admin", "password": "x"}))
        .await;
    assert_eq!(code(&admin_wrong), 100030);
    // The connection is still usable after failures.
    let ok = c
        .login_with(json!({"user": "alice@example.com", "password": "alice-pw"}))
        .await;
    ok_data(&ok);
    server.stop().await;
}

#[tokio::test]
async fn commands_before_login_second_login_and_duplicate_session_ids() {
    let server = TestServer::start().await;
    let c = server.connect().await;
    assert_eq!(
        code(&c.call("core", "user", "list", json!(null)).await),
        100031
    );
    assert_eq!(
        code(&c.call("media", "conf", "get_list", json!(null)).await),
        100031
    );

    let first = c
        .login_with(
            json!({"user": "admin", "password": ADMIN_PASSWORD, "session_id": "my-session"}),
        )
        .await;
    assert_eq!(ok_data(&first)["session_id"], "my-session");
    let again = c
        .login_with(json!({"user": "admin", "password": ADMIN_PASSWORD}))
        .await;
    assert_eq!(code(&again), 100032);

    let other = server.connect().await;
    let dup = other
        .login_with(
            json!({"user": "admin", "password": ADMIN_PASSWORD, "session_id": "my-session"}),
        )
        .await;
    assert_eq!(code(&dup), 100034);
    let missing = other.login_with(json!({"user": "admin"})).await;
    assert_eq!(code(&missing), 100045);
    server.stop().await;
}

#[tokio::test]
async fn a_token_from_http_login_opens_a_websocket_session_until_logout() {
    let server = TestServer::start().await;
    server.add_user("bob", "bob-pw").await;
    let (status, body) = server
        .http(
            "POST",
            "/api/v1/login",
            &[("Content-Type", "application/json")],
            r#"{"user":"bob","password":"bob-pw"}"#,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let reply: serde_json::Value = serde_json::from_str(&body).unwrap();
    let token = reply["session"].as_str().unwrap().to_string();
    assert!(token.len() >= 32, "at least 128 bits");
    assert_eq!(reply["user"], "bob");
    assert!(reply["uin"].as_str().unwrap().parse::<u64>().unwrap() > 0);

    let c = server.connect().await;
    let ok = c.login_with(json!({"user": "bob", "token": token})).await;
    ok_data(&ok);
    let c2 = server.connect().await;
    let wrong_user = c2
        .login_with(json!({"user": "admin", "token": token}))
        .await;
    assert_eq!(code(&wrong_user), 100030);

    let (status, _) = server
        .http(
            "POST",
            "/api/v1/logout",
            &[("Authorization", &format!("Bearer {token}"))],
            "",
        )
        .await;
    assert_eq!(status, 200);
    let after = c2.login_with(json!({"user": "bob", "token": token})).await;
    assert_eq!(code(&after), 100030);

    let (status, body) = server
        .http(
            "POST",
            "/api/v1/login",
            &[],
            r#"{"user":"bob","password":"wrong"}"#,
        )
        .await;
    assert_eq!(status, 401);
    assert!(body.contains("\"error\""), "{body}");
    let (status, _) = server.http("POST", "/api/v1/login", &[], "not json").await;
    assert_eq!(status, 400);
    server.stop().await;
}

#[tokio::test]
async fn accounts_and_logins_survive_a_restart() {
    let server = TestServer::start().await;
    server.add_user("carol", "carol-pw").await;
    let server = server.restart().await;
    let (_c, session) = server.login("carol", "carol-pw").await;
    assert!(!session.is_empty());
    server.stop().await;
}
