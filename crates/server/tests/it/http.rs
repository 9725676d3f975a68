//! Health and metrics endpoints.

use serde_json::json;

use crate::common::{ok_data, TestServer, ADMIN_PASSWORD};

#[tokio::test]
async fn healthz_and_metrics_report_what_happened() {
    let server = TestServer::start().await;
    let (status, body) = server.http("GET", "/healthz", &[], "").await;
    assert_eq!((status, body.as_str()), (200, "ok"));

    let (admin, _) = server.login("admin", ADMIN_PASSWORD).await;
    ok_data(
        &admin
            .call("media", "conf", "create", json!({"conf_id": "m"}))
            .await,
    );
    ok_data(
        &admin
            .call(
                "media",
                "conf",
                "msglog_send",
                json!({"conf_id": "m", "msg": {"a": 1}}),
            )
            .await,
    );
    let _ = admin.call("core", "user", "nope", json!(null)).await;

    let (status, text) = server.http("GET", "/metrics", &[], "").await;
    assert_eq!(status, 200);
    assert!(
        text.contains("confer_connections{door=\"api_server\"} 1"),
        "{text}"
    );
    assert!(text.contains("confer_commands_total{door=\"api_server\",command=\"core/user/login\",result=\"ok\"} 1"), "{text}");
    assert!(
        text.contains("command=\"unknown\",result=\"error\"} 1"),
        "{text}"
    );
    assert!(text.contains("confer_messages_stored_total 1"), "{text}");
    assert!(
        text.contains("confer_storage_commit_seconds_count"),
        "{text}"
    );
    server.stop().await;
}

#[tokio::test]
async fn an_oversized_request_head_is_refused_and_the_server_goes_on() {
    let server = TestServer::start_with(|c| c.http_read_buffer_bytes = 8 * 1024).await;
    let cookie = "c".repeat(12 * 1024);
    let (status, _) = server
        .http("GET", "/healthz", &[("Cookie", cookie.as_str())], "")
        .await;
    assert_eq!(status, 431);
    let (status, body) = server.http("GET", "/healthz", &[], "").await;
    assert_eq!((status, body.as_str()), (200, "ok"));
}

#[tokio::test]
async fn the_server_keeps_serving_past_its_shutdown_grace_period() {
    // The grace period bounds the wait at shutdown only; it must not start at startup.
    let server = TestServer::start_with(|c| c.shutdown_grace_ms = 50).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (status, body) = server.http("GET", "/healthz", &[], "").await;
    assert_eq!((status, body.as_str()), (200, "ok"));
    let (_admin, _) = server.login("admin", ADMIN_PASSWORD).await;
}
