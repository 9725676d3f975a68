//! Connecting load clients through each door: the Chat API (Socket.IO) and the External API
//! (WebSocket), logged in and ready, spread over source addresses.

use std::net::IpAddr;

use anyhow::{anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};

use crate::sio::{self, Sio};

pub(crate) fn source(i: usize, sources: u8) -> Option<IpAddr> {
    (sources > 1).then(|| IpAddr::from([127, 0, 0, 1 + (i % sources as usize) as u8]))
}

/// A logged-in Chat API connection (login result 0 awaited).
pub(crate) async fn chat_connect(
    ws: &str,
    token: Option<&str>,
    bind: Option<IpAddr>,
) -> anyhow::Result<(Sio, tokio::sync::mpsc::UnboundedReceiver<sio::SioEvent>)> {
    let auth = token.map(|t| json!({"session": t}));
    let (c, mut events) = Sio::connect(ws, "/data", auth, bind).await?;
    loop {
        let (name, arg) = events
            .recv()
            .await
            .ok_or_else(|| anyhow!("closed before login"))?
            .parse();
        if name == "login" {
            if arg["result"] != 0 {
                bail!("login refused: {arg}");
            }
            return Ok((c, events));
        }
    }
}

/// A logged-in External API connection that answers pings and events; returned as the
/// task holding it.
pub(crate) async fn ext_connect(
    ws: &str,
    user: &str,
    token: &str,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let (conn, _) = tokio_tungstenite::connect_async_with_config(
        format!("{ws}/api/ws"),
        sio::ws_config(),
        true,
    )
    .await?;
    let (mut sink, mut stream) = conn.split();
    let login = json!({"class": "core", "subclass": "user", "cmd": "login", "data": {"user": user, "token": token}, "tid": 1});
    sink.send(login.to_string().into()).await?;
    loop {
        let m = stream
            .next()
            .await
            .ok_or_else(|| anyhow!("closed before login"))??;
        let v: Value = serde_json::from_str(m.to_text().unwrap_or("null")).unwrap_or(Value::Null);
        if v["tid"] == 1 && v.get("result").is_some() {
            if v["result"] != "ok" {
                bail!("login refused: {v}");
            }
            break;
        }
    }
    Ok(tokio::spawn(async move {
        while let Some(Ok(m)) = stream.next().await {
            let v: Value =
                serde_json::from_str(m.to_text().unwrap_or("null")).unwrap_or(Value::Null);
            if v.get("cmd").is_some() {
                let ok = json!({"result": "ok", "tid": v["tid"]});
                if sink.send(ok.to_string().into()).await.is_err() {
                    break;
                }
            }
        }
    }))
}
