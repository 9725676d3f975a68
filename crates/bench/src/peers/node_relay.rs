//! The Node socket.io relay of `bench/peers/node-relay` (stores nothing, acks at once).

use std::path::PathBuf;

use anyhow::{bail, Context};

use crate::peers::rust_relays::peer_listening;
use crate::server::{free_port, Server};

pub(crate) async fn start_node_relay() -> anyhow::Result<Server> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../bench/peers/node-relay");
    if !dir.join("node_modules/socket.io").exists() {
        bail!(
            "node relay peer not installed: run scripts/bench (npm ci in {})",
            dir.display()
        );
    }
    let port = free_port()?;
    let child = tokio::process::Command::new("node")
        .arg("server.js")
        .current_dir(&dir)
        .env("PORT", port.to_string())
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("starting node (is Node.js installed?)")?;
    peer_listening(child, port, "node relay").await
}
