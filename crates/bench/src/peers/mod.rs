//! The servers a scenario can run against: confer and the peers of `bench/peers`, one module
//! each; how to start a target and connect a client to it.

pub(crate) mod confer;
pub(crate) mod matrix;
pub(crate) mod node_durable;
pub(crate) mod node_relay;
pub(crate) mod rust_relays;
pub(crate) mod xmpp;

use std::collections::HashMap;
use std::net::IpAddr;

use confer_core::Principal;

use serde_json::json;

use crate::clients::chat_connect;
use crate::cluster::Deployment;
use crate::peers::confer::{start_nodes, Fixture};
use crate::peers::matrix::{room_of, start_synapse, Matrix};
use crate::peers::node_durable::start_node_durable;
use crate::peers::node_relay::start_node_relay;
use crate::peers::rust_relays::start_rust_peer;
use crate::peers::xmpp::{start_ejabberd, Xmpp};
use crate::raw_ws::{AnyClient, RawWs};
use crate::server::Server;
use crate::sio::{self};
use crate::{Cli, Target};

/// What a peer issued while it was set up that its clients need to connect: the Matrix
/// access token of each login, and the room of each group.
#[derive(Default)]
pub(crate) struct Accounts {
    pub(crate) tokens: HashMap<String, String>,
    pub(crate) rooms: HashMap<u64, String>,
}

/// Start `target`: confer on the prepared fixture (one node, or `--nodes` over PostgreSQL
/// and Redis), or a peer: the relays ignore it, the XMPP and Matrix servers get its
/// accounts (and, Matrix, its groups as rooms).
pub(crate) async fn start_target(
    cli: &Cli,
    target: Target,
    fixture: Fixture,
) -> anyhow::Result<Deployment> {
    let server = match target {
        Target::Confer => return start_nodes(cli, fixture).await,
        Target::NodeRelay => start_node_relay().await,
        Target::NodeDurable => start_node_durable().await,
        Target::SioRelay => start_rust_peer("sio-relay").await,
        Target::WsBroadcast => start_rust_peer("ws-broadcast").await,
        Target::Ejabberd => start_ejabberd(&fixture.users).await,
        Target::Synapse => start_synapse(&fixture.users, &fixture.groups, false).await,
        Target::SynapsePg => start_synapse(&fixture.users, &fixture.groups, true).await,
    }?;
    Ok(server.into())
}

/// A client of `target` in `group`: confer's members are in their groups already (logged
/// in with `token`); a peer's client joins the group's room, so both get the same echoes.
pub(crate) async fn connect_target(
    target: Target,
    server: &Server,
    user: &(Principal, String),
    group: u64,
    bind: Option<IpAddr>,
) -> anyhow::Result<(
    AnyClient,
    tokio::sync::mpsc::UnboundedReceiver<sio::SioEvent>,
)> {
    let ws = &server.ws();
    let (c, events) = match target {
        Target::Confer => {
            let (c, e) = chat_connect(ws, Some(&user.1), bind).await?;
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
        Target::Ejabberd => {
            let (c, e) = Xmpp::connect(server.port, &user.0.login, bind).await?;
            (AnyClient::Xmpp(c), e)
        }
        Target::Synapse | Target::SynapsePg => {
            // Set-up joined every member to its room already.
            let room = room_of(server, group)?;
            let (c, e) = Matrix::connect(server, &user.0.login, room, bind).await?;
            return Ok((AnyClient::Matrix(c), e));
        }
    };
    c.call("join", &json!({"group_id": group.to_string()}))
        .await?;
    Ok((c, events))
}

/// An idle client of a peer that stores, as its users' clients stay connected: ejabberd's
/// logged in, bound and online; Synapse's waiting in a `/sync` long poll; the durable Node
/// server's connected to `/data` (it has no accounts: its `login` comes at once).
pub(crate) async fn connect_idle(
    target: Target,
    server: &Server,
    user: &(Principal, String),
    bind: Option<IpAddr>,
) -> anyhow::Result<AnyClient> {
    match target {
        Target::Ejabberd => {
            let (c, _) = Xmpp::connect(server.port, &user.0.login, bind).await?;
            c.online()?;
            Ok(AnyClient::Xmpp(c))
        }
        Target::Synapse | Target::SynapsePg => {
            let (c, _) = Matrix::connect(server, &user.0.login, String::new(), bind).await?;
            Ok(AnyClient::Matrix(c))
        }
        Target::NodeDurable => {
            let (c, _) = chat_connect(&server.ws(), None, bind).await?;
            Ok(AnyClient::Sio(c))
        }
        other => anyhow::bail!("idle measures confer and the peers that store: not {other:?}"),
    }
}

pub(crate) fn run_name(t: Target) -> String {
    match t {
        Target::Confer => "confer (stored)",
        Target::NodeRelay => "node socket.io relay",
        Target::NodeDurable => "node socket.io + SQLite",
        Target::SioRelay => "socketioxide relay",
        Target::WsBroadcast => "tokio ws broadcast",
        Target::Ejabberd => "ejabberd (MUC + MAM, SQLite)",
        Target::Synapse => "Synapse (SQLite)",
        Target::SynapsePg => "Synapse (PostgreSQL)",
    }
    .to_string()
}
