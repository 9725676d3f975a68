//! The raw ceiling on this machine: a minimal tokio WebSocket broadcast server. A client
//! sends `{"join": G}` once, then `{"group_id": G, "message": "…"}` frames; every member of
//! G gets `{"message": {"group_id": G, "message": "…"}}`, serialized once per message.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::routing::get;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::mpsc;

type Rooms = Arc<Mutex<HashMap<String, Vec<mpsc::Sender<Arc<str>>>>>>;

async fn client(socket: WebSocket, rooms: Rooms) {
    let (mut sink, mut stream) = socket.split();
    let (tx, mut rx) = mpsc::channel::<Arc<str>>(1024);
    tokio::spawn(async move {
        while let Some(text) = rx.recv().await {
            if sink
                .send(Message::Text(text.as_ref().into()))
                .await
                .is_err()
            {
                break;
            }
        }
    });
    while let Some(Ok(Message::Text(t))) = stream.next().await {
        let Ok(v) = serde_json::from_str::<Value>(t.as_str()) else {
            continue;
        };
        if let Some(g) = v.get("join") {
            rooms
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(g.to_string())
                .or_default()
                .push(tx.clone());
            continue;
        }
        let text: Arc<str> =
            json!({"message": {"group_id": v["group_id"], "message": v["message"]}})
                .to_string()
                .into();
        let members = rooms
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&v["group_id"].to_string())
            .cloned()
            .unwrap_or_default();
        for m in members {
            let _ = m.try_send(text.clone());
        }
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let rooms: Rooms = Arc::default();
    let app = axum::Router::new()
        .route(
            "/ws",
            get(
                |ws: WebSocketUpgrade, State(rooms): State<Rooms>| async move {
                    ws.on_upgrade(move |s| client(s, rooms))
                },
            ),
        )
        .with_state(rooms);
    let port = std::env::var("PORT").unwrap_or_else(|_| "0".into());
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await?;
    // As confer does: small frames go out at once (no Nagle stalls).
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app).await
}
