//! The servers a scenario can run against: confer and the peers of `bench/peers`, one module
//! each; how to start a target and connect a client to it.

pub(crate) mod confer;
pub(crate) mod node_durable;
pub(crate) mod node_relay;
pub(crate) mod rust_relays;

use std::net::IpAddr;

use serde_json::json;

use crate::clients::chat_connect;
use crate::peers::confer::{confer_bin, start_confer, Fixture};
use crate::peers::node_durable::start_node_durable;
use crate::peers::node_relay::start_node_relay;
use crate::peers::rust_relays::start_rust_peer;
use crate::raw_ws::{AnyClient, RawWs};
use crate::server::Server;
use crate::sio::{self};
use crate::{Cli, Target};

/// Start `target`: confer on the prepared fixture, or a peer (which ignores it).
pub(crate) async fn start_target(
    cli: &Cli,
    target: Target,
    fixture: Fixture,
) -> anyhow::Result<Server> {
    match target {
        Target::Confer => start_confer(&confer_bin(cli), fixture).await,
        Target::NodeRelay => start_node_relay().await,
        Target::NodeDurable => start_node_durable().await,
        Target::SioRelay => start_rust_peer("sio-relay").await,
        Target::WsBroadcast => start_rust_peer("ws-broadcast").await,
    }
}

/// A client of `target` in `group`: confer's members are in their groups already (logged
/// in with `token`); a peer's client joins the group's room, so both get the same echoes.
pub(crate) async fn connect_target(
    target: Target,
    ws: &str,
    token: &str,
    group: u64,
    bind: Option<IpAddr>,
) -> anyhow::Result<(
    AnyClient,
    tokio::sync::mpsc::UnboundedReceiver<sio::SioEvent>,
)> {
    let (c, events) = match target {
        Target::Confer => {
            let (c, e) = chat_connect(ws, Some(token), bind).await?;
            return Ok((AnyClient::Sio(c), e));
        }
        Target::NodeRelay | Target::NodeDurable | Target::SioRelay => {
            let (c, e) = chat_connect(ws, None, bind).await?;
            (AnyClient::Sio(c), e)
        }
        Target::WsBroadcast => {
            let (c, e) = RawWs::connect(ws).await?;
            (AnyClient::Raw(c), e)
        }
    };
    c.call("join", &json!({"group_id": group.to_string()}))
        .await?;
    Ok((c, events))
}

pub(crate) fn run_name(t: Target) -> String {
    match t {
        Target::Confer => "confer (stored)",
        Target::NodeRelay => "node socket.io relay",
        Target::NodeDurable => "node socket.io + SQLite",
        Target::SioRelay => "socketioxide relay",
        Target::WsBroadcast => "tokio ws broadcast",
    }
    .to_string()
}
