//! The client side of the raw WebSocket broadcast peer (`bench/peers/rust-relays`
//! `ws-broadcast`), shaped like the Socket.IO client so the scenarios drive both alike.

use anyhow::anyhow;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use crate::sio::{Sio, SioEvent};

pub struct RawWs {
    out: mpsc::UnboundedSender<Message>,
}

impl RawWs {
    pub async fn connect(base: &str) -> anyhow::Result<(RawWs, mpsc::UnboundedReceiver<SioEvent>)> {
        let addr = base.trim_start_matches("ws://");
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let (ws, _) = tokio_tungstenite::client_async_with_config(
            format!("{base}/ws"),
            tcp,
            crate::sio::ws_config(),
        )
        .await?;
        let (mut sink, mut stream) = ws.split();
        let (out, mut out_rx) = mpsc::unbounded_channel::<Message>();
        let (events_tx, events) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(m) = out_rx.recv().await {
                if sink.send(m).await.is_err() {
                    break;
                }
            }
        });
        tokio::spawn(async move {
            while let Some(Ok(Message::Text(frame))) = stream.next().await {
                let _ = events_tx.send(SioEvent::raw(frame));
            }
        });
        Ok((RawWs { out }, events))
    }

    fn send(&self, v: &Value) -> anyhow::Result<i64> {
        self.out
            .send(Message::Text(v.to_string().into()))
            .map_err(|_| anyhow!("connection closed"))?;
        Ok(0)
    }
}

/// Either client, driven the same way by the scenarios.
pub enum AnyClient {
    Sio(Sio),
    Raw(RawWs),
    Xmpp(crate::peers::xmpp::Xmpp),
    Matrix(crate::peers::matrix::Matrix),
}

impl AnyClient {
    /// `join` and `create_message` as the relays understand them, giving the ack's
    /// `result`; the raw peer has no acks, so its calls return 0 as soon as the frame is
    /// queued.
    pub async fn call(&self, name: &str, arg: &Value) -> anyhow::Result<i64> {
        match self {
            AnyClient::Sio(c) => c.call_result(name, arg).await,
            AnyClient::Raw(c) if name == "join" => c.send(&json!({"join": arg["group_id"]})),
            AnyClient::Raw(c) => c.send(arg),
            AnyClient::Matrix(_) if name == "join" => Ok(0),
            AnyClient::Matrix(c) => c.send_message(arg["message"].as_str().unwrap_or("")).await,
            AnyClient::Xmpp(c) => {
                let group = arg["group_id"].as_str().unwrap_or("");
                if name == "join" {
                    c.join(group).await.map(|()| 0)
                } else {
                    c.send_message(group, arg["message"].as_str().unwrap_or(""))
                        .await
                }
            }
        }
    }
}
