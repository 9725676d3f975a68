//! Engine.IO long-polling against a client that never logs in and never reads: the
//! outbox is bounded in bytes, a ping's payload is capped, a socket that stops polling is
//! closed, and POSTs to one socket do not overlap. Plain HTTP, as such a client would be.

use std::time::Duration;

use serde_json::Value;
use tokio::io::AsyncWriteExt;

use crate::common::{TestServer, WAIT};

const SEP: char = '\u{1e}';

/// A new polling socket's sid.
async fn open(server: &TestServer) -> String {
    let (status, body) = server
        .http("GET", "/socket.io/?EIO=4&transport=polling", &[], "")
        .await;
    assert_eq!(status, 200, "{body}");
    let open: Value = serde_json::from_str(body.strip_prefix('0').unwrap()).unwrap();
    open["sid"].as_str().unwrap().to_string()
}

fn path(sid: &str) -> String {
    format!("/socket.io/?EIO=4&transport=polling&sid={sid}")
}

async fn post(server: &TestServer, sid: &str, body: &str) -> (u16, String) {
    server.http("POST", &path(sid), &[], body).await
}

/// One GET: what the server had waiting.
async fn poll(server: &TestServer, sid: &str) -> (u16, String) {
    tokio::time::timeout(WAIT, server.http("GET", &path(sid), &[], ""))
        .await
        .expect("a poll got nothing")
}

#[tokio::test]
async fn a_ping_with_a_huge_payload_closes_the_socket_instead_of_echoing() {
    let server = TestServer::start().await;
    let sid = open(&server).await;
    let ping = format!("2{}", "x".repeat(100_000));
    let _ = post(&server, &sid, &ping).await;
    let (status, body) = poll(&server, &sid).await;
    assert_eq!(status, 200);
    assert!(
        !body.contains("3xxx"),
        "the payload was echoed ({} bytes)",
        body.len()
    );
    assert!(body.ends_with('1'), "the socket is closed: {body}");
}

#[tokio::test]
async fn a_polling_outbox_is_bounded_in_bytes() {
    let server = TestServer::start_with(|c| c.poll_outbox_bytes = 2000).await;
    let sid = open(&server).await;
    // 100 pongs of 31 bytes wait for a client that does not poll: 3,100 bytes. When the
    // POST is through, all but the 16 its queue holds have been answered (over 2,000).
    let pings: Vec<String> = (0..100).map(|i| format!("2{i:030}")).collect();
    let _ = post(&server, &sid, &pings.join(&SEP.to_string())).await;
    let (status, body) = poll(&server, &sid).await;
    assert_eq!(status, 200);
    assert!(
        body.len() < 2000 && body.ends_with('1'),
        "the socket is cut, its outbox freed ({} bytes): {}…",
        body.len(),
        &body[..body.len().min(100)]
    );
}

#[tokio::test]
async fn a_polling_socket_that_never_polls_is_closed() {
    let server = TestServer::start_with(|c| {
        c.chat_ping_interval_ms = 200;
        c.chat_ping_timeout_ms = 200;
    })
    .await;
    let sid = open(&server).await;
    // Unasked pongs, never a GET: the socket must not live on them.
    let closed = tokio::time::timeout(WAIT, async {
        loop {
            let (status, _) = post(&server, &sid, "3").await;
            if status != 200 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(closed.is_ok(), "a socket that never polls stays open");
}

#[tokio::test]
async fn overlapping_posts_end_the_socket() {
    let server = TestServer::start().await;
    let sid = open(&server).await;
    // A first POST whose body is still coming.
    let mut first = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: confer\r\nContent-Length: 1000\r\n\r\n2",
        path(&sid)
    );
    first.write_all(head.as_bytes()).await.unwrap();
    // The second waits until the first is being read, then overlaps it.
    let refused = tokio::time::timeout(WAIT, async {
        loop {
            let (status, body) = post(&server, &sid, "2").await;
            if status == 400 {
                return body;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("overlapping POSTs are accepted");
    assert!(refused.contains("\"code\":3"), "{refused}");
    let (_, body) = poll(&server, &sid).await;
    assert!(body.ends_with('1'), "the socket is closed: {body}");
}
