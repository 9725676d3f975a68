//! The Rust Socket.IO ceiling: a minimal socketioxide relay, no storage. Same protocol as
//! the Node relay: `join {group_id}`, `create_message {group_id, message}` → `message` to
//! the room, both acked.

use serde_json::{json, Value};
use socketioxide::extract::{AckSender, SocketRef, TryData};
use socketioxide::SocketIo;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let (layer, io) = SocketIo::new_layer();
    io.ns("/data", async |s: SocketRef| {
        let _ = s.emit("login", &json!({"result": 0}));
        s.on(
            "join",
            async |s: SocketRef, ack: AckSender, TryData(v): TryData<Value>| {
                if let Ok(v) = v {
                    s.join(v["group_id"].to_string());
                }
                let _ = ack.send(&json!({"result": 0}));
            },
        );
        s.on(
            "create_message",
            async |s: SocketRef, ack: AckSender, TryData(v): TryData<Value>| {
                if let Ok(v) = v {
                    let out =
                        json!({"message": {"group_id": v["group_id"], "message": v["message"]}});
                    let _ = s
                        .within(v["group_id"].to_string())
                        .emit("message", &out)
                        .await;
                }
                let _ = ack.send(&json!({"result": 0}));
            },
        );
    });
    let app = axum::Router::new().layer(layer);
    let port = std::env::var("PORT").unwrap_or_else(|_| "0".into());
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await?;
    // As confer does: small frames go out at once (no Nagle stalls).
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app).await
}
