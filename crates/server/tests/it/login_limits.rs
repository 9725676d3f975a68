//! Password logins cost what they should: past the per-account or per-address limit they
//! are refused (HTTP 429 with `Retry-After`, External API 100050) on every connection,
//! while other accounts and addresses still log in; an unknown user costs one Argon2
//! verification like a known one. Other client addresses are other loopback addresses
//! (Linux routes all of 127/8 to `lo`).

use std::net::{IpAddr, SocketAddr};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::{code, ok_data, TestServer};

const HOME: [u8; 4] = [127, 0, 0, 1];
const AWAY: [u8; 4] = [127, 0, 0, 2];

/// `POST /api/v1/login` from the client address `from`: (status, lower-cased head).
async fn login_from(
    server: &TestServer,
    from: [u8; 4],
    user: &str,
    password: &str,
) -> (u16, String) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(IpAddr::from(from), 0)).unwrap();
    let mut stream = socket.connect(server.addr).await.unwrap();
    let body = json!({"user": user, "password": password}).to_string();
    let request = format!(
        "POST /api/v1/login HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        server.addr,
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).to_ascii_lowercase();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// The `Retry-After` seconds of a response head.
fn retry_after(head: &str) -> u64 {
    head.lines()
        .find_map(|l| l.strip_prefix("retry-after:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Retry-After in {head}"))
}

/// A counter's value in `GET /metrics`.
async fn metric(server: &TestServer, name: &str) -> u64 {
    let (status, text) = server.http("GET", "/metrics", &[], "").await;
    assert_eq!(status, 200);
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

#[tokio::test]
async fn past_the_account_limit_http_login_is_429_and_other_accounts_still_log_in() {
    let server = TestServer::start_with(|c| {
        c.login_account_burst = 3;
        c.login_account_per_minute = 1;
    })
    .await;
    server.add_user("alice", "alice-pw").await;
    server.add_user("bob", "bob-pw").await;
    for _ in 0..3 {
        let (status, head) = login_from(&server, HOME, "alice", "guess").await;
        assert_eq!(status, 401, "{head}");
    }
    // Refused even with the right password, and from another address: the account's
    // guesses are used up.
    for from in [HOME, AWAY] {
        let (status, head) = login_from(&server, from, "alice", "alice-pw").await;
        assert_eq!(status, 429, "{head}");
        let wait = retry_after(&head);
        assert!((1..=60).contains(&wait), "Retry-After: {wait}");
    }
    let (status, head) = login_from(&server, HOME, "bob", "bob-pw").await;
    assert_eq!(status, 200, "another account still logs in: {head}");
    assert_eq!(metric(&server, "confer_logins_throttled_total").await, 2);
    server.stop().await;
}

#[tokio::test]
async fn past_the_address_limit_http_login_is_429_and_other_addresses_still_log_in() {
    let server = TestServer::start_with(|c| {
        c.login_address_burst = 3;
        c.login_address_per_minute = 1;
    })
    .await;
    server.add_user("alice", "alice-pw").await;
    for user in ["nobody", "alice", "someone"] {
        let (status, head) = login_from(&server, HOME, user, "guess").await;
        assert_eq!(status, 401, "{head}");
    }
    let (status, head) = login_from(&server, HOME, "alice", "alice-pw").await;
    assert_eq!(status, 429, "{head}");
    assert!(retry_after(&head) >= 1);
    let (status, head) = login_from(&server, AWAY, "alice", "alice-pw").await;
    assert_eq!(status, 200, "another address still logs in: {head}");
    server.stop().await;
}

#[tokio::test]
async fn an_unknown_user_costs_a_password_verification_like_a_known_one() {
    let server = TestServer::start().await;
    server.add_user("alice", "alice-pw").await;
    let before = metric(&server, "confer_password_hashes_total").await;
    let (status, _) = login_from(&server, HOME, "nobody", "guess").await;
    assert_eq!(status, 401);
    assert_eq!(
        metric(&server, "confer_password_hashes_total").await,
        before + 1,
        "the unknown user was verified against a dummy hash"
    );
    let (status, _) = login_from(&server, HOME, "alice", "guess").await;
    assert_eq!(status, 401);
    assert_eq!(
        metric(&server, "confer_password_hashes_total").await,
        before + 2
    );
    server.stop().await;
}

#[tokio::test]
async fn external_api_limits_do_not_reset_on_a_new_connection() {
    let server = TestServer::start_with(|c| {
        c.login_account_burst = 2;
        c.login_account_per_minute = 1;
    })
    .await;
    server.add_user("alice", "alice-pw").await;
    server.add_user("bob", "bob-pw").await;
    for _ in 0..2 {
        let c = server.connect().await;
        let reply = c
            .login_with(json!({"user": "alice", "password": "guess"}))
            .await;
        assert_eq!(code(&reply), 100030);
    }
    let c = server.connect().await;
    let reply = c
        .login_with(json!({"user": "alice", "password": "alice-pw"}))
        .await;
    assert_eq!(code(&reply), 100050, "{reply}");
    assert!(
        reply["data"]["error"]
            .as_str()
            .unwrap()
            .contains("retry in"),
        "{reply}"
    );
    let (status, _) = login_from(&server, HOME, "alice", "alice-pw").await;
    assert_eq!(status, 429, "one limit for every door");
    let reply = c
        .login_with(json!({"user": "bob", "password": "bob-pw"}))
        .await;
    ok_data(&reply);
    server.stop().await;
}
