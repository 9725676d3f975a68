//! The WebSocket protocol itself on both doors that speak it (External API and the Chat
//! API's WebSocket transport): a client's Close is answered with a Close frame, invalid
//! UTF-8 in a text message is closed with 1007, an unmasked client frame with 1002
//! (RFC 6455 §5.1, §5.5.1, §7.4). A real client for the first two, a raw socket for the
//! unmasked frame (no client library sends one).

use std::net::SocketAddr;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{CloseFrame, Frame};
use tokio_tungstenite::tungstenite::Message;

use crate::common::{TestServer, WAIT};

const EXTAPI: &str = "/api/ws";
const CHAT: &str = "/socket.io/?EIO=4&transport=websocket";

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

async fn connect(server: &TestServer, path: &str) -> Ws {
    let url = format!("ws://{}{path}", server.addr);
    tokio_tungstenite::connect_async(url).await.unwrap().0
}

/// The code of the Close frame the server sends, as a client reports it: 1005 for a
/// Close frame without a code, 1006 when the connection ended without one.
async fn close_code(ws: &mut Ws) -> u16 {
    let code = async {
        while let Some(Ok(message)) = ws.next().await {
            if let Message::Close(frame) = message {
                return frame.map_or(1005, |f| u16::from(f.code));
            }
        }
        1006
    };
    tokio::time::timeout(WAIT, code)
        .await
        .expect("the connection stayed open")
}

async fn client_close_is_answered(path: &str) {
    let server = TestServer::start().await;
    let mut ws = connect(&server, path).await;
    let bye = CloseFrame {
        code: CloseCode::Normal,
        reason: "bye".into(),
    };
    ws.send(Message::Close(Some(bye))).await.unwrap();
    assert_eq!(close_code(&mut ws).await, 1000, "{path}");
}

async fn invalid_utf8_is_closed_with_1007(path: &str) {
    let server = TestServer::start().await;
    let mut ws = connect(&server, path).await;
    let bad = Frame::message(vec![b'4', 0xff, 0xfe], OpCode::Data(Data::Text), true);
    ws.send(Message::Frame(bad)).await.unwrap();
    assert_eq!(close_code(&mut ws).await, 1007, "{path}");
}

/// A WebSocket opened by hand: the socket after the 101, and the bytes read past it.
async fn raw_open(addr: SocketAddr, path: &str) -> (TcpStream, Vec<u8>) {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let hello = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    tcp.write_all(hello.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let end = loop {
        if let Some(at) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let mut chunk = [0u8; 1024];
        let n = tcp.read(&mut chunk).await.unwrap();
        assert!(n > 0, "closed during the handshake");
        got.extend_from_slice(&chunk[..n]);
    };
    assert!(
        got.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    (tcp, got.split_off(end))
}

/// Read server frames (unmasked) until a Close: its code (1005 without one, 1006 when the
/// connection ended first).
async fn raw_close_code(tcp: &mut TcpStream, mut buf: Vec<u8>) -> u16 {
    let read = async {
        loop {
            // One whole frame at the front of `buf`?
            if buf.len() >= 2 {
                let (opcode, short) = (buf[0] & 0x0f, usize::from(buf[1] & 0x7f));
                let (len, start) = match short {
                    126 if buf.len() >= 4 => (usize::from(u16::from_be_bytes([buf[2], buf[3]])), 4),
                    127 if buf.len() >= 10 => {
                        let mut n = [0u8; 8];
                        n.copy_from_slice(&buf[2..10]);
                        (usize::try_from(u64::from_be_bytes(n)).unwrap(), 10)
                    }
                    126 | 127 => (usize::MAX, 0),
                    n => (n, 2),
                };
                if len != usize::MAX && buf.len() >= start + len {
                    if opcode == 8 {
                        return if len >= 2 {
                            u16::from_be_bytes([buf[start], buf[start + 1]])
                        } else {
                            1005
                        };
                    }
                    buf.drain(..start + len);
                    continue;
                }
            }
            let mut chunk = [0u8; 4096];
            match tcp.read(&mut chunk).await {
                Ok(0) | Err(_) => return 1006,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    tokio::time::timeout(WAIT, read)
        .await
        .expect("the connection stayed open")
}

async fn unmasked_frame_is_closed_with_1002(path: &str) {
    let server = TestServer::start().await;
    let (mut tcp, rest) = raw_open(server.addr, path).await;
    // FIN + text, length 2, no mask bit: a client must mask every frame.
    tcp.write_all(&[0x81, 0x02, b'4', b'2']).await.unwrap();
    assert_eq!(raw_close_code(&mut tcp, rest).await, 1002, "{path}");
}

#[tokio::test]
async fn a_client_close_is_answered_with_a_close_frame() {
    client_close_is_answered(EXTAPI).await;
    client_close_is_answered(CHAT).await;
}

#[tokio::test]
async fn invalid_utf8_in_a_text_message_closes_with_1007() {
    invalid_utf8_is_closed_with_1007(EXTAPI).await;
    invalid_utf8_is_closed_with_1007(CHAT).await;
}

#[tokio::test]
async fn an_unmasked_client_frame_closes_with_1002() {
    unmasked_frame_is_closed_with_1002(EXTAPI).await;
    unmasked_frame_is_closed_with_1002(CHAT).await;
}
