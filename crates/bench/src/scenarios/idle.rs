//! `idle`: hold N authenticated connections; server RSS per connection.

use std::time::Duration;

use crate::clients::{chat_connect, ext_connect, source};
use crate::peers::confer::{confer_bin, prepare, start_confer};
use crate::report::Row;
use crate::{Cli, Door};

pub(crate) async fn idle(cli: &Cli, n: usize, door: Door, hold: u64) -> anyhow::Result<Vec<Row>> {
    let fixture = prepare(n, 0).await?;
    let users = fixture.users.clone();
    let server = start_confer(&confer_bin(cli), fixture).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let base = server.rss_kb();
    let ws = server.ws();
    let mut held_chat = Vec::new();
    let mut held_ext = Vec::new();
    for (batch_no, batch) in users.chunks(250).enumerate() {
        let tasks = batch.iter().enumerate().map(|(i, (who, token))| {
            let ws = ws.clone();
            let bind = source(batch_no * 250 + i, cli.sources);
            async move {
                match door {
                    Door::Chat => chat_connect(&ws, Some(token), bind)
                        .await
                        .map(|c| (Some(c), None)),
                    Door::Ext => ext_connect(&ws, &who.login, token)
                        .await
                        .map(|h| (None, Some(h))),
                }
            }
        });
        for r in futures_util::future::join_all(tasks).await {
            let (c, h) = r?;
            held_chat.extend(c);
            held_ext.extend(h);
        }
    }
    tokio::time::sleep(Duration::from_secs(hold)).await;
    let loaded = server.rss_kb();
    let per_conn = (loaded.saturating_sub(base)) as f64 * 1024.0 / n as f64;
    let target = format!(
        "confer ({})",
        if door == Door::Chat {
            "Socket.IO"
        } else {
            "External API"
        }
    );
    Ok(vec![
        Row {
            scenario: "idle",
            target: target.clone(),
            metric: "connections held",
            value: (held_chat.len() + held_ext.len()) as f64,
            unit: "",
        },
        Row {
            scenario: "idle",
            target: target.clone(),
            metric: "baseline RSS",
            value: base as f64 / 1024.0,
            unit: "MiB",
        },
        Row {
            scenario: "idle",
            target,
            metric: "RSS per connection",
            value: per_conn / 1024.0,
            unit: "KiB",
        },
    ])
}
