//! Sign-up (`POST /api/v1/register`): closed unless `open_registration` is on; then a new
//! account logs in at once and everywhere, with the rules of `user add` and the login
//! limits of a password login.

use serde_json::{json, Value};

use crate::common::TestServer;

async fn register(server: &TestServer, body: Value) -> (u16, Value) {
    let (status, text) = server
        .http(
            "POST",
            "/api/v1/register",
            &[("Content-Type", "application/json")],
            &body.to_string(),
        )
        .await;
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test]
async fn registration_is_closed_by_default() {
    let server = TestServer::start().await;
    let (status, body) = register(&server, json!({"user": "eve", "password": "pw"})).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"], "registration is closed");
    // Nothing was created: the login is unknown.
    let (status, _) = server
        .http(
            "POST",
            "/api/v1/login",
            &[],
            &json!({"user": "eve", "password": "pw"}).to_string(),
        )
        .await;
    assert_eq!(status, 401);
    server.stop().await;
}

#[tokio::test]
async fn an_open_server_signs_up_a_new_account_that_logs_in_everywhere() {
    let server = TestServer::start_with(|c| c.open_registration = true).await;
    let (status, body) = register(
        &server,
        json!({"user": "carol@example.com", "password": "carol-pw", "name": "Carol"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"], "carol@example.com");
    assert!(body["uin"].as_str().is_some_and(|u| u != "0"), "{body}");
    let token = body["session"].as_str().unwrap();

    // The token it got opens the External API, and the password logs in as usual.
    let c = server.connect().await;
    let reply = c
        .login_with(json!({"user": "carol@example.com", "token": token}))
        .await;
    assert_eq!(reply["result"], "ok", "{reply}");
    let (status, login) = server
        .http(
            "POST",
            "/api/v1/login",
            &[],
            &json!({"user": "carol@example.com", "password": "carol-pw"}).to_string(),
        )
        .await;
    assert_eq!(status, 200, "{login}");

    // The login is taken now; the same rules as `user add` hold.
    let (status, body) = register(
        &server,
        json!({"user": "carol@example.com", "password": "other"}),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    let (status, body) = register(&server, json!({"user": "dan", "password": ""})).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("password"),
        "{body}"
    );
    let (status, body) = register(&server, json!({"user": "admin", "password": "x"})).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = register(&server, json!({"user": "dan"})).await;
    assert_eq!(status, 400, "{body}");
    server.stop().await;
}

#[tokio::test]
async fn sign_ups_from_one_address_stop_at_the_login_limit() {
    let server = TestServer::start_with(|c| {
        c.open_registration = true;
        c.login_address_burst = 3;
        c.login_address_per_minute = 1;
    })
    .await;
    for n in 0..3 {
        let (status, body) = register(
            &server,
            json!({"user": format!("user{n}"), "password": "pw"}),
        )
        .await;
        assert_eq!(status, 200, "sign-up {n}: {body}");
    }
    let (status, body) = register(&server, json!({"user": "user3", "password": "pw"})).await;
    assert_eq!(status, 429, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("too many"),
        "{body}"
    );
    server.stop().await;
}
