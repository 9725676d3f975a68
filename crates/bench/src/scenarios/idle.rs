//! `idle`: hold N authenticated connections; server RSS per connection. confer through
//! either door, or a peer that stores (ejabberd, Synapse) through its own protocol.

use std::time::Duration;

use crate::clients::{chat_connect, ext_connect, source};
use crate::cluster::Layout;
use crate::peers::confer::prepare_for;
use crate::peers::{connect_idle, run_name, start_target};
use crate::report::Row;
use crate::{Cli, Door, Target};

pub(crate) async fn idle(
    cli: &Cli,
    n: usize,
    door: Door,
    hold: u64,
    target: Target,
) -> anyhow::Result<Vec<Row>> {
    let fixture = prepare_for(cli, n, 0).await?;
    let users = fixture.users.clone();
    let server = start_target(cli, target, fixture).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let base = server.rss_kb();
    let mut held_chat = Vec::new();
    let mut held_ext = Vec::new();
    let mut held_peer = Vec::new();
    for (batch_no, batch) in users.chunks(250).enumerate() {
        let tasks = batch.iter().enumerate().map(|(i, user)| {
            let (ws, server) = (server.node(batch_no * 250 + i).ws(), &server);
            let bind = source(batch_no * 250 + i, cli.sources);
            let (who, token) = user;
            async move {
                match (target, door) {
                    (Target::Confer, Door::Chat) => chat_connect(&ws, Some(token), bind)
                        .await
                        .map(|c| (Some(c), None, None)),
                    (Target::Confer, Door::Ext) => ext_connect(&ws, &who.login, token)
                        .await
                        .map(|h| (None, Some(h), None)),
                    (peer, _) => connect_idle(peer, server, user, bind)
                        .await
                        .map(|c| (None, None, Some(c))),
                }
            }
        });
        for r in futures_util::future::join_all(tasks).await {
            let (c, h, p) = r?;
            held_chat.extend(c);
            held_ext.extend(h);
            held_peer.extend(p);
        }
    }
    tokio::time::sleep(Duration::from_secs(hold)).await;
    let loaded = server.rss_kb();
    let per_conn = (loaded.saturating_sub(base)) as f64 * 1024.0 / n as f64;
    let suffix = Layout::of(cli)?.suffix();
    let target = match (target, door) {
        (Target::Confer, Door::Chat) => format!("confer (Socket.IO{suffix})"),
        (Target::Confer, Door::Ext) => format!("confer (External API{suffix})"),
        (peer, _) => run_name(peer),
    };
    let services = server.services.rows("idle", &target, [None, None], 1.0);
    let mut rows = vec![
        Row {
            scenario: "idle",
            target: target.clone(),
            metric: "connections held",
            value: (held_chat.len() + held_ext.len() + held_peer.len()) as f64,
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
    ];
    // The services' memory with every connection held (their CPU rows say nothing here).
    rows.extend(services.into_iter().filter(|r| r.unit == "MiB"));
    Ok(rows)
}
