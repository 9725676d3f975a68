//! `session log` reaches a GELF server over UDP (whole and chunked) and TCP, and its
//! `meta` cannot stand in for the server's own fields.

use serde_json::{json, Value};
use tokio::io::AsyncReadExt;

use crate::common::{code, ok_data, TestServer, ADMIN_PASSWORD, WAIT};

fn log_request(message: &str) -> Value {
    json!({"source": "my host", "message": message, "full_message": "details", "level": 3,
           "meta": {"key1": "val1", "key2": 2}})
}

fn assert_gelf(gelf: &Value, session: &str, message: &str) {
    assert_eq!(gelf["version"], "1.1");
    assert_eq!(gelf["host"], "my host");
    assert_eq!(gelf["short_message"], message);
    assert_eq!(gelf["full_message"], "details");
    assert_eq!(gelf["level"], 3);
    assert_eq!(gelf["_key1"], "val1");
    assert_eq!(gelf["_key2"], 2);
    assert_eq!(gelf["_user"], "admin");
    assert_eq!(gelf["_session_id"], session);
}

/// Receive one GELF message, reassembling chunks; also returns how many datagrams it took.
async fn receive_udp(socket: &tokio::net::UdpSocket) -> (Value, usize) {
    let mut parts: Vec<Option<Vec<u8>>> = Vec::new();
    let mut datagrams = 0;
    loop {
        let mut buf = vec![0u8; 65536];
        let n = tokio::time::timeout(WAIT, socket.recv(&mut buf))
            .await
            .unwrap()
            .unwrap();
        datagrams += 1;
        let d = &buf[..n];
        if d[..2] != [0x1e, 0x0f] {
            return (serde_json::from_slice(d).unwrap(), datagrams);
        }
        let (seq, count) = (d[10] as usize, d[11] as usize);
        parts.resize(count, None);
        parts[seq] = Some(d[12..].to_vec());
        if parts.iter().all(Option::is_some) {
            let whole: Vec<u8> = parts.into_iter().flatten().flatten().collect();
            return (serde_json::from_slice(&whole).unwrap(), datagrams);
        }
    }
}

#[tokio::test]
async fn udp_gelf_whole_and_chunked() {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let url = format!("udp://{}", socket.local_addr().unwrap());
    let server = TestServer::start_with(|c| {
        c.gelf = Some(url);
        c.gelf_chunk_size = 200;
    })
    .await;
    let (admin, session) = server.login("admin", ADMIN_PASSWORD).await;

    ok_data(
        &admin
            .call("core", "session", "log", log_request("short"))
            .await,
    );
    let (gelf, datagrams) = receive_udp(&socket).await;
    assert_gelf(&gelf, &session, "short");
    assert!(datagrams >= 2, "a message over 200 bytes is chunked");

    let long = "x".repeat(2000);
    ok_data(
        &admin
            .call("core", "session", "log", log_request(&long))
            .await,
    );
    let (gelf, datagrams) = receive_udp(&socket).await;
    assert_gelf(&gelf, &session, &long);
    assert!(datagrams >= 10, "{datagrams} datagrams");

    let bad_meta = json!({"source": "h", "message": "m", "meta": {"nested": {"a": 1}}});
    assert_eq!(
        code(&admin.call("core", "session", "log", bad_meta).await),
        100046
    );
    server.stop().await;
}

#[tokio::test]
async fn meta_keys_cannot_forge_the_servers_fields() {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let url = format!("udp://{}", socket.local_addr().unwrap());
    let server = TestServer::start_with(|c| c.gelf = Some(url)).await;
    server.add_user("mallory", "mallory-pw").await;
    let (mallory, session) = server.login("mallory", "mallory-pw").await;

    let forged = json!({"source": "h", "message": "m",
        "meta": {"user": "admin", "session_id": "forged", "id": 7, "version": "0.1"}});
    ok_data(&mallory.call("core", "session", "log", forged).await);
    let (gelf, _) = receive_udp(&socket).await;
    assert_eq!(gelf["_user"], "mallory");
    assert_eq!(gelf["_session_id"], session);
    assert_eq!(gelf["version"], "1.1");
    assert!(gelf.get("_id").is_none(), "GELF forbids _id: {gelf}");
    assert_eq!(gelf["_meta_user"], "admin");
    assert_eq!(gelf["_meta_session_id"], "forged");
    assert_eq!(gelf["_meta_id"], 7);
    assert_eq!(gelf["_version"], "0.1");
    server.stop().await;
}

#[tokio::test]
async fn tcp_gelf_messages_are_null_terminated() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("tcp://{}", listener.local_addr().unwrap());
    let server = TestServer::start_with(|c| c.gelf = Some(url)).await;
    let (admin, session) = server.login("admin", ADMIN_PASSWORD).await;
    ok_data(
        &admin
            .call("core", "session", "log", log_request("one"))
            .await,
    );
    ok_data(
        &admin
            .call("core", "session", "log", log_request("two"))
            .await,
    );

    let (mut stream, _) = tokio::time::timeout(WAIT, listener.accept())
        .await
        .unwrap()
        .unwrap();
    let mut received = Vec::new();
    while received.iter().filter(|b| **b == 0).count() < 2 {
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout(WAIT, stream.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "stream closed early");
        received.extend_from_slice(&buf[..n]);
    }
    let messages: Vec<Value> = received
        .split(|b| *b == 0)
        .filter(|m| !m.is_empty())
        .map(|m| serde_json::from_slice(m).unwrap())
        .collect();
    assert_gelf(&messages[0], &session, "one");
    assert_gelf(&messages[1], &session, "two");
    server.stop().await;
}

#[tokio::test]
async fn without_a_gelf_server_log_answers_not_implemented() {
    let server = TestServer::start().await;
    let (admin, _) = server.login("admin", ADMIN_PASSWORD).await;
    assert_eq!(
        code(&admin.call("core", "session", "log", log_request("m")).await),
        100006
    );
    server.stop().await;
}
