//! The Rust peers of `bench/peers/rust-relays`: the socketioxide relay and the tokio
//! WebSocket broadcast (the raw ceiling).

use std::time::Duration;

use anyhow::{anyhow, bail, Context};

use crate::server::{free_port, Server};

/// Wait until a started peer accepts connections on `port`.
pub(crate) async fn peer_listening(
    child: tokio::process::Child,
    port: u16,
    name: &str,
) -> anyhow::Result<Server> {
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Ok(Server {
                child,
                port,
                _dir: None,
                respawn: None,
                accounts: None,
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("{name} did not start")
}

/// Start a Rust peer (`bench/peers/rust-relays`), built beside this binary.
pub(crate) async fn start_rust_peer(name: &str) -> anyhow::Result<Server> {
    let bin = std::env::current_exe()?
        .parent()
        .map(|d| d.join(name))
        .ok_or_else(|| anyhow!("no directory for {name}"))?;
    if !bin.exists() {
        bail!(
            "{} missing: cargo build --manifest-path bench/peers/rust-relays/Cargo.toml --target-dir target",
            bin.display()
        );
    }
    let port = free_port()?;
    let child = tokio::process::Command::new(&bin)
        .env("PORT", port.to_string())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    peer_listening(child, port, name).await
}
