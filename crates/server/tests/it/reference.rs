//! Answers that docs/openapi.yaml promises and the schemathesis run of tests/docs found
//! the server breaking: every error of these endpoints is this door's own JSON.

use serde_json::{json, Value};

use crate::common::{http_bytes, TestServer};

async fn token(server: &TestServer) -> String {
    server.add_user("ref@example.com", "pw").await;
    let (status, body) = server
        .http(
            "POST",
            "/api/v1/login",
            &[],
            r#"{"user":"ref@example.com","password":"pw"}"#,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let login: Value = serde_json::from_str(&body).unwrap();
    login["session"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn an_upload_that_is_not_multipart_is_told_so_in_json() {
    let server = TestServer::start().await;
    let t = token(&server).await;
    let bearer = format!("Bearer {t}");
    for content_type in [None, Some("application/json"), Some("multipart/form-data")] {
        let mut headers = vec![("Authorization", bearer.as_str())];
        if let Some(ct) = content_type {
            headers.push(("Content-Type", ct));
        }
        let (status, head, body) =
            http_bytes(server.addr, "POST", "/api/v1/files", &headers, b"{}").await;
        assert_eq!(status, 400, "{content_type:?}");
        assert!(head.contains("content-type: application/json"), "{head}");
        let body: Value = serde_json::from_slice(&body).unwrap();
        let error = body["error"].as_str().unwrap();
        assert!(error.contains("multipart/form-data"), "{error}");
    }
    server.stop().await;
}

#[tokio::test]
async fn logout_refuses_a_malformed_body_even_beside_a_bearer_token() {
    let server = TestServer::start().await;
    let t = token(&server).await;
    let bearer = format!("Bearer {t}");
    let (status, body) = server
        .http(
            "POST",
            "/api/v1/logout",
            &[("Authorization", bearer.as_str())],
            r#"{"session": 5}"#,
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("invalid body"), "{body}");
    // Nothing was revoked: the same token still logs out once.
    let (status, body) = server
        .http(
            "POST",
            "/api/v1/logout",
            &[("Authorization", bearer.as_str())],
            "",
        )
        .await;
    assert_eq!(
        (status, serde_json::from_str::<Value>(&body).unwrap()),
        (200, json!({"result": "ok"}))
    );
    server.stop().await;
}

#[tokio::test]
async fn a_login_body_over_the_limit_is_refused_in_json() {
    let server = TestServer::start().await;
    let big = vec![b'a'; 3 * 1024 * 1024];
    for path in ["/api/v1/login", "/api/v1/logout"] {
        let (status, head, body) = http_bytes(server.addr, "POST", path, &[], &big).await;
        assert_eq!(status, 413, "{path}");
        assert!(head.contains("content-type: application/json"), "{head}");
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert!(
            body["error"].as_str().unwrap().contains("length limit"),
            "{body}"
        );
    }
    server.stop().await;
}
