//! The shared HTTP layer against slow and greedy clients: a request head or body that
//! trickles, an idle keep-alive connection, a huge declared body, a long head, and too
//! many connections from one address. Raw TCP, as such a client would be.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{TestServer, WAIT};

/// Send `head`, then one byte of `drip` every 50 ms, until the server closes the
/// connection: what it sent before closing, or `None` if it was still open after WAIT.
async fn drip_until_closed(addr: SocketAddr, head: &[u8], drip: u8) -> Option<String> {
    let (mut rd, mut wr) = TcpStream::connect(addr).await.unwrap().into_split();
    wr.write_all(head).await.unwrap();
    let reader = async move {
        let mut got = Vec::new();
        // A reset (our dripped bytes unread when it closed) ends the read as well.
        let _ = rd.read_to_end(&mut got).await;
        String::from_utf8_lossy(&got).into_owned()
    };
    let drip = async move {
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let _ = wr.write_all(&[drip]).await;
        }
    };
    tokio::time::timeout(WAIT, async {
        tokio::select! {
            got = reader => got,
            () = drip => unreachable!(),
        }
    })
    .await
    .ok()
}

/// Send `request` and read until the server closes: `None` if it was still open after WAIT.
async fn send_until_closed(addr: SocketAddr, request: &[u8]) -> Option<String> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let _ = stream.write_all(request).await;
    let mut got = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut got))
        .await
        .ok()
        .map(|_| String::from_utf8_lossy(&got).into_owned())
}

fn status(answer: &str) -> u16 {
    answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_request_head_sent_slowly_is_closed() {
    let server = TestServer::start_with(|c| c.http_header_timeout_ms = 300).await;
    let head = b"GET /healthz HTTP/1.1\r\nHost: confer\r\nX-Slow: ";
    let answer = drip_until_closed(server.addr, head, b'a').await;
    assert!(
        answer.is_some(),
        "a head that never ends keeps its connection"
    );
    let (code, body) = server.http("GET", "/healthz", &[], "").await;
    assert_eq!((code, body.as_str()), (200, "ok"), "the server goes on");
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let server = TestServer::start_with(|c| c.http_header_timeout_ms = 300).await;
    let answer = send_until_closed(
        server.addr,
        b"GET /healthz HTTP/1.1\r\nHost: confer\r\n\r\n",
    )
    .await
    .expect("an idle keep-alive connection stays open");
    assert_eq!(status(&answer), 200, "{answer}");
    assert!(answer.ends_with("ok"), "{answer}");
}

#[tokio::test]
async fn a_request_body_that_trickles_is_aborted() {
    let server = TestServer::start_with(|c| {
        c.http_body_timeout_ms = 300;
        c.http_body_min_bytes = 100;
    })
    .await;
    // 20 bytes a second for a 100,000-byte body: it would take more than an hour.
    let head = b"POST /api/v1/login HTTP/1.1\r\nHost: confer\r\nContent-Length: 100000\r\n\r\n{";
    let answer = drip_until_closed(server.addr, head, b' ')
        .await
        .expect("a trickling body keeps its connection");
    assert_ne!(status(&answer), 200, "{answer}");
}

#[tokio::test]
async fn a_huge_declared_body_is_refused_before_it_is_sent() {
    let server = TestServer::start().await;
    server.add_user("alice", "pw").await;
    let (code, body) = server
        .http(
            "POST",
            "/api/v1/login",
            &[],
            &json!({"user": "alice", "password": "pw"}).to_string(),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    let token = serde_json::from_str::<Value>(&body).unwrap()["session"]
        .as_str()
        .unwrap()
        .to_string();
    let request = format!(
        "POST /api/v1/files HTTP/1.1\r\nHost: confer\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 2000000000\r\n\r\n"
    );
    let answer = send_until_closed(server.addr, request.as_bytes())
        .await
        .expect("no answer before the body");
    assert_eq!(status(&answer), 413, "{answer}");
}

#[tokio::test]
async fn a_long_request_head_is_refused_by_default() {
    let server = TestServer::start().await;
    let cookie = "c".repeat(20 * 1024);
    let (code, _) = server
        .http("GET", "/healthz", &[("Cookie", cookie.as_str())], "")
        .await;
    assert_eq!(code, 431);
    let (code, body) = server.http("GET", "/healthz", &[], "").await;
    assert_eq!((code, body.as_str()), (200, "ok"));
}

#[tokio::test]
async fn connections_per_address_are_capped_websockets_included() {
    let server = TestServer::start_with(|c| c.max_connections_per_ip = 3).await;
    let mut sockets = Vec::new();
    for _ in 0..3 {
        let (ws, _) = tokio_tungstenite::connect_async(server.ws_url())
            .await
            .unwrap();
        sockets.push(ws);
    }
    let (code, _) = server.http("GET", "/healthz", &[], "").await;
    assert_eq!(
        code, 0,
        "a fourth connection from the address is closed unanswered"
    );

    sockets.pop();
    // The server notices the closed WebSocket soon; then its slot is free again.
    let freed = tokio::time::timeout(WAIT, async {
        loop {
            if server.http("GET", "/healthz", &[], "").await.0 == 200 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(freed.is_ok(), "a closed connection gives its slot back");
}
