//! The Node socket.io relay of `bench/peers/node-relay` (stores nothing, acks at once), and
//! how any Node peer of `bench/peers` is started.

use std::path::PathBuf;

use anyhow::{bail, Context};

use crate::peers::rust_relays::peer_listening;
use crate::server::{free_port, Server};

pub(crate) async fn start_node_relay() -> anyhow::Result<Server> {
    start_node_peer("node-relay", &["socket.io"], &[]).await
}

/// Start `bench/peers/<name>/server.js` on a free port with `env`, once the `modules` it
/// needs are installed (`scripts/bench` installs them).
pub(crate) async fn start_node_peer(
    name: &str,
    modules: &[&str],
    env: &[(&str, &std::ffi::OsStr)],
) -> anyhow::Result<Server> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../bench/peers")
        .join(name);
    if let Some(missing) = modules
        .iter()
        .find(|m| !dir.join("node_modules").join(m).exists())
    {
        bail!(
            "{name} peer not installed ({missing} is missing): run scripts/bench (npm ci in {})",
            dir.display()
        );
    }
    let port = free_port()?;
    let child = tokio::process::Command::new("node")
        .arg("server.js")
        .current_dir(&dir)
        .env("PORT", port.to_string())
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("starting node (is Node.js installed?)")?;
    peer_listening(child, port, name).await
}
